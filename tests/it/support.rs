//! Builders that keep each test short: a buildpack dir with a manifest and an
//! artifact, a scripted HTTP server on loopback, and a `supply` run against temp dirs.

#![allow(dead_code)]

use sidecar_buildpack::digest::copy_hashed;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const SUPPLY: &str = env!("CARGO_BIN_EXE_supply");
/// A secret that tests put in URLs; it must never appear in any output.
pub const SECRET: &str = "s3cr3t-T0KEN";

pub fn sha256_hex(bytes: &[u8]) -> String {
    let (d, _, _) = copy_hashed(&mut &bytes[..], std::io::sink()).expect("hash");
    d.to_string()
}

/// A gzipped tar holding regular files (path, contents, mode).
pub fn tgz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let raw: Vec<Entry> = entries
        .iter()
        .map(|(p, d, m)| Entry::file(p, d, *m))
        .collect();
    raw_tgz(&raw)
}

/// One tar entry, written as given: paths are not checked, so hostile archives can
/// be built (`../`, absolute paths, links, devices).
pub struct Entry {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
    pub kind: tar::EntryType,
    pub link: Option<String>,
}

impl Entry {
    pub fn file(path: &str, data: &[u8], mode: u32) -> Entry {
        Entry {
            path: path.into(),
            data: data.to_vec(),
            mode,
            kind: tar::EntryType::Regular,
            link: None,
        }
    }

    pub fn link(path: &str, kind: tar::EntryType, target: &str) -> Entry {
        Entry {
            path: path.into(),
            data: Vec::new(),
            mode: 0o777,
            kind,
            link: Some(target.into()),
        }
    }
}

pub fn raw_tgz(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        if let Some(l) = &e.link {
            let ln = &mut h.as_gnu_mut().expect("gnu header").linkname;
            ln[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_entry_type(e.kind);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &e.data[..]).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gzip")
}

/// A fake sidecar binary: a shell script, so the tests can tell it from others.
pub fn sidecar_bytes(tag: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho config-server {tag}\n").into_bytes()
}

/// A buildpack directory: manifest.yml, VERSION, and the artifact it pins.
pub struct Buildpack {
    pub dir: tempfile::TempDir,
    pub artifact: Vec<u8>,
    pub uri: String,
    pub file: Option<String>,
    pub extra: String,
    pub stacks: Vec<String>,
    pub sha: Option<String>,
}

impl Buildpack {
    /// A buildpack whose config-server artifact is a tgz with `bin/config-server`.
    pub fn new() -> Self {
        Buildpack {
            dir: tempfile::tempdir().expect("tempdir"),
            artifact: tgz(&[("bin/config-server", &sidecar_bytes("v1"), 0o755)]),
            // Secrets in the user-info and the query: no output may ever show them.
            uri: format!(
                "https://bob:hunter2@releases.invalid/config-server/config-server-0.1.0.tgz\
                 ?X-Amz-Signature={SECRET}"
            ),
            file: None,
            extra: String::new(),
            stacks: vec!["cflinuxfs3".into(), "cflinuxfs4".into()],
            sha: None,
        }
    }

    pub fn artifact(mut self, bytes: Vec<u8>) -> Self {
        self.artifact = bytes;
        self
    }

    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Pins a digest other than the artifact's.
    pub fn sha(mut self, sha: &str) -> Self {
        self.sha = Some(sha.into());
        self
    }

    /// Makes it a cached buildpack: the artifact sits at `file:` inside it.
    pub fn cached(mut self) -> Self {
        self.file = Some("dependencies/0123abcd/config-server-0.1.0.tgz".into());
        self
    }

    /// Extra keys appended to the sidecar entry (e.g. `  args: [--x]`).
    pub fn sidecar_extra(mut self, yaml: &str) -> Self {
        self.extra = yaml.into();
        self
    }

    pub fn write(self) -> Self {
        let sha = self
            .sha
            .clone()
            .unwrap_or_else(|| sha256_hex(&self.artifact));
        let file = self
            .file
            .as_ref()
            .map(|f| format!("  file: {f}\n"))
            .unwrap_or_default();
        let stacks: String = self.stacks.iter().map(|s| format!("  - {s}\n")).collect();
        let manifest = format!(
            "---\nlanguage: sidecar\ndefault_versions:\n- name: config-server\n  version: 0.1.0\n\
             dependencies:\n- name: config-server\n  version: 0.1.0\n  uri: {uri}\n  sha256: {sha}\n\
             {file}  cf_stacks:\n{stacks}sidecars:\n- name: config-server\n  dependency: config-server\n\
             \x20 executable: bin/config-server\n  memory_mb: 32\n{extra}",
            uri = self.uri,
            extra = self.extra,
        );
        fs::write(self.dir.path().join("manifest.yml"), manifest).expect("manifest");
        fs::write(self.dir.path().join("VERSION"), "1.2.3\n").expect("VERSION");
        if let Some(f) = &self.file {
            let p = self.dir.path().join(f);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, &self.artifact).expect("artifact");
        }
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("manifest.yml")
    }
}

/// The four staging dirs, fresh per test unless shared on purpose.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("app")).expect("app");
        Dirs { root }
    }
    pub fn build(&self) -> PathBuf {
        self.root.path().join("app")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }
    pub fn deps(&self) -> PathBuf {
        self.root.path().join("deps")
    }
}

/// One run of the real `supply` binary.
pub struct Stage<'a> {
    bp: &'a Buildpack,
    dirs: &'a Dirs,
    idx: String,
    env: HashMap<String, String>,
    wrapper: Vec<String>,
}

pub struct Outcome {
    pub code: i32,
    pub out: String,
    pub deps_idx: PathBuf,
    pub elapsed: Duration,
}

impl<'a> Stage<'a> {
    pub fn new(bp: &'a Buildpack, dirs: &'a Dirs) -> Self {
        let mut env = HashMap::new();
        env.insert("CF_STACK".into(), "cflinuxfs4".into());
        // Keep retries quick in tests; the defaults are documented in the README.
        env.insert("SIDECAR_BUILDPACK_RETRY_DELAY_MS".into(), "50".into());
        Stage {
            bp,
            dirs,
            idx: "0".into(),
            env,
            wrapper: Vec::new(),
        }
    }

    /// Runs supply under another command, e.g. `unshare -n --` (no network at all).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn idx(mut self, idx: &str) -> Self {
        self.idx = idx.into();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    pub fn no_env(mut self, k: &str) -> Self {
        self.env.remove(k);
        self
    }

    pub fn run(self) -> Outcome {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(SUPPLY);
                c
            }
            None => Command::new(SUPPLY),
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SIDECAR_BUILDPACK_DIR", self.bp.path())
            .envs(&self.env)
            .args([
                self.dirs.build(),
                self.dirs.cache(),
                self.dirs.deps(),
                PathBuf::from(&self.idx),
            ])
            .current_dir("/");
        Outcome::of(&mut cmd, self.dirs.deps().join(&self.idx))
    }
}

impl Outcome {
    /// Runs `cmd` to the end and checks that its output leaks no secret.
    pub fn of(cmd: &mut Command, deps_idx: PathBuf) -> Outcome {
        let started = Instant::now();
        let out = cmd.output().expect("run the command");
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_secret(&text);
        Outcome {
            code: out.status.code().unwrap_or(-1),
            out: text,
            deps_idx,
            elapsed,
        }
    }

    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(self.code, want, "exit code; output:\n{}", self.out);
        self
    }

    pub fn success(&self) -> &Self {
        self.code(0)
    }

    pub fn has(&self, text: &str) -> &Self {
        assert!(
            self.out.contains(text),
            "output lacks {text:?}; output:\n{}",
            self.out
        );
        self
    }

    pub fn lacks(&self, text: &str) -> &Self {
        assert!(
            !self.out.contains(text),
            "output has {text:?}; output:\n{}",
            self.out
        );
        self
    }

    pub fn launch_yml(&self) -> String {
        fs::read_to_string(self.deps_idx.join("launch.yml")).expect("launch.yml")
    }

    /// The installed executable's contents, after checking it is mode 0755.
    pub fn installed(&self) -> Vec<u8> {
        let p = self.deps_idx.join("bin/config-server");
        let mode = fs::metadata(&p).expect("installed").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "mode of {}", p.display());
        fs::read(p).expect("read")
    }

    pub fn not_installed(&self) -> &Self {
        assert!(
            !self.deps_idx.join("bin/config-server").exists(),
            "bin/config-server must not exist"
        );
        assert!(!self.deps_idx.join("launch.yml").exists(), "no launch.yml");
        self
    }
}

/// Fails if any file under `dir` is a leftover temp file.
pub fn assert_no_temp_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(
                !name.ends_with(".partial") && !name.starts_with(".unpack-"),
                "leftover temp file {}",
                e.path().display()
            );
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
}

pub fn assert_no_secret(text: &str) {
    for needle in [SECRET, "hunter2"] {
        assert!(!text.contains(needle), "secret {needle:?} leaked:\n{text}");
    }
}

/// What the test server does for one request.
#[derive(Clone)]
pub enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announces the full length, sends `n` bytes, closes.
    Truncated(Vec<u8>, usize),
    /// Announces the full length, sends `n` bytes, then resets the connection (RST).
    Reset(Vec<u8>, usize),
    /// Sends `n` bytes, then goes silent for the duration.
    Stall(Vec<u8>, usize, Duration),
    /// Sends a chunk every `interval`.
    Slow(Vec<u8>, usize, Duration),
    Redirect(String),
}

/// A real HTTP/1.1 server on a loopback address that answers requests from a script;
/// the last reply repeats. Plain HTTP, or HTTPS with a certificate from [`TestCa`].
pub struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(replies: Vec<Reply>) -> Server {
        Server::start_on(Ipv4Addr::LOCALHOST, replies)
    }

    /// On another loopback address, such as 127.0.0.2: another host to redirect to.
    pub fn start_on(ip: Ipv4Addr, replies: Vec<Reply>) -> Server {
        Server::listen(ip, None, replies)
    }

    /// HTTPS on 127.0.0.1 with `tls` (see [`TestCa::server`]).
    pub fn start_tls(tls: Arc<rustls::ServerConfig>, replies: Vec<Reply>) -> Server {
        Server::listen(Ipv4Addr::LOCALHOST, Some(tls), replies)
    }

    fn listen(ip: Ipv4Addr, tls: Option<Arc<rustls::ServerConfig>>, replies: Vec<Reply>) -> Server {
        assert!(ip.is_loopback(), "test servers listen on loopback only");
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (h, p) = (hits.clone(), paths.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = h.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)].clone();
                let p = p.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    if matches!(reply, Reply::Reset(..)) {
                        // Closing with a zero linger sends RST instead of FIN.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    }
                    match tls {
                        None => serve(stream, reply, &p),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut tls = rustls::StreamOwned::new(conn, stream);
                            serve(&mut tls, reply, &p);
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        }
                    }
                });
            }
        });
        Server {
            addr,
            scheme,
            hits,
            paths,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

fn serve(mut s: impl Read + Write, reply: Reply, paths: &Mutex<Vec<String>>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    paths
        .lock()
        .expect("lock")
        .push(line.split(' ').nth(1).unwrap_or("").to_string());
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    let _ = match reply {
        Reply::Body(b) => s
            .write_all(head("200 OK", b.len(), "").as_bytes())
            .and_then(|()| s.write_all(&b)),
        Reply::Status(code) => {
            let body = format!("<html><body>error {code}</body></html>");
            s.write_all(head(&format!("{code} X"), body.len(), "").as_bytes())
                .and_then(|()| s.write_all(body.as_bytes()))
        }
        Reply::Truncated(b, n) | Reply::Reset(b, n) => s
            .write_all(head("200 OK", b.len(), "").as_bytes())
            .and_then(|()| s.write_all(&b[..n]))
            .and_then(|()| s.flush())
            // Let the bytes leave before the close, so the client sees them first.
            .map(|()| thread::sleep(Duration::from_millis(100))),
        Reply::Stall(b, n, d) => {
            let r = s
                .write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.write_all(&b[..n]))
                .and_then(|()| s.flush());
            thread::sleep(d);
            r
        }
        Reply::Slow(b, chunk, every) => {
            let mut r = s
                .write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.flush());
            for c in b.chunks(chunk) {
                if r.is_err() {
                    break;
                }
                thread::sleep(every);
                r = s.write_all(c).and_then(|()| s.flush());
            }
            r
        }
        Reply::Redirect(to) => {
            s.write_all(head("302 Found", 0, &format!("Location: {to}\r\n")).as_bytes())
        }
    };
    let _ = s.flush();
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A certificate authority made fresh for one test: no key is ever committed.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sidecar-buildpack test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            cert,
        }
    }

    /// Writes the CA's certificate into `dir` (a CF_SYSTEM_CERT_PATH), with a file
    /// that is not PEM beside it, which must be skipped.
    pub fn install(&self, dir: &Path) {
        fs::create_dir_all(dir).expect("cert dir");
        fs::write(dir.join("test-ca.pem"), self.cert.pem()).expect("write CA");
        fs::write(dir.join("README"), "not a certificate\n").expect("write junk");
    }

    /// A TLS server config whose certificate, signed by this CA, names `names`
    /// (IP addresses or DNS names). `expired` makes one that ended in 2001.
    pub fn server(&self, names: &[&str], expired: bool) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sidecar-buildpack test server");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let chain = vec![cert.der().clone(), self.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(cfg)
    }
}

/// A real forward proxy (tinyproxy) on 127.0.0.1, logging every request it forwards.
/// scripts/test installs tinyproxy; without it the test fails and says so.
pub struct Tinyproxy {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub fn start() -> Tinyproxy {
        let dir = tempfile::tempdir().expect("proxy dir");
        let port = closed_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 16\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .expect("proxy conf");
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run tinyproxy ({e}): the proxy tests need it; scripts/test installs \
                     it (apt-get install tinyproxy)"
                )
            });
        let mut proxy = Tinyproxy { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "tinyproxy exited at start ({status}); log:\n{}",
                    proxy.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A filesystem mounted for one test, unmounted when dropped. Needs root (tests and
/// CI run as root); a failure to mount fails the test with the reason.
pub struct Mount {
    path: PathBuf,
}

impl Mount {
    /// A tmpfs at `path` (created) with `options`, e.g. `size=1m` or `ro,size=64k`.
    pub fn tmpfs(path: &Path, options: &str) -> Mount {
        fs::create_dir_all(path).expect("mount point");
        mount(&["-t", "tmpfs", "-o", options, "tmpfs", utf8(path)]);
        Mount {
            path: path.to_path_buf(),
        }
    }

    /// Makes the existing directory `path` read-only in place (a read-only bind
    /// mount: root ignores file modes, but not a read-only mount).
    pub fn read_only(path: &Path) -> Mount {
        mount(&["--bind", utf8(path), utf8(path)]);
        let m = Mount {
            path: path.to_path_buf(),
        };
        mount(&["-o", "remount,bind,ro", utf8(path)]);
        m
    }
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
    assert!(
        out.status.success(),
        "mount {} failed: {}. These tests need root with CAP_SYS_ADMIN, as in CI; they must \
         not pass without it.",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Every path under `dir` (relative) with what it is: a file's sha256 and mode, a
/// symlink's target, or `dir`. Compared before and after a run to prove nothing was
/// written outside where it belongs.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("under dir").to_path_buf();
            let m = fs::symlink_metadata(&p).expect("stat");
            let what = if m.is_symlink() {
                format!("link -> {}", fs::read_link(&p).expect("readlink").display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                let data = fs::read(&p).expect("read");
                format!(
                    "file {:o} {}",
                    m.permissions().mode() & 0o7777,
                    sha256_hex(&data)
                )
            } else if m.file_type().is_fifo() {
                "fifo".to_string()
            } else {
                "special".to_string()
            };
            out.insert(rel, what);
        }
    }
    out
}

/// The names of the entries directly in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}
