//! Builders that keep each test short: a buildpack dir with a manifest and an
//! artifact, a scripted HTTP server on loopback, and a `supply` run against temp dirs.

#![allow(dead_code)]

use sidecar_buildpack::digest::copy_hashed;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
            uri: "https://releases.invalid/config-server/config-server-0.1.0.tgz".into(),
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
}

pub struct Outcome {
    pub code: i32,
    pub out: String,
    pub deps_idx: PathBuf,
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
        }
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
        let mut cmd = Command::new(SUPPLY);
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
        let out = cmd.output().expect("run supply");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_secret(&text);
        Outcome {
            code: out.status.code().unwrap_or(-1),
            out: text,
            deps_idx: self.dirs.deps().join(&self.idx),
        }
    }
}

impl Outcome {
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
    /// Sends `n` bytes, then goes silent for the duration.
    Stall(Vec<u8>, usize, Duration),
    /// Sends a chunk every `interval`.
    Slow(Vec<u8>, usize, Duration),
    Redirect(String),
}

/// A real HTTP/1.1 server on 127.0.0.1 that answers requests from a script; the
/// last reply repeats.
pub struct Server {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (h, p) = (hits.clone(), paths.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = h.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)].clone();
                let p = p.clone();
                thread::spawn(move || serve(stream, reply, &p));
            }
        });
        Server { addr, hits, paths }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.addr.port(), path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

fn serve(mut s: TcpStream, reply: Reply, paths: &Mutex<Vec<String>>) {
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
        Reply::Truncated(b, n) => s
            .write_all(head("200 OK", b.len(), "").as_bytes())
            .and_then(|()| s.write_all(&b[..n])),
        Reply::Stall(b, n, d) => {
            let r = s
                .write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.write_all(&b[..n]));
            thread::sleep(d);
            r
        }
        Reply::Slow(b, chunk, every) => {
            let mut r = s.write_all(head("200 OK", b.len(), "").as_bytes());
            for c in b.chunks(chunk) {
                if r.is_err() {
                    break;
                }
                thread::sleep(every);
                r = s.write_all(c);
            }
            r
        }
        Reply::Redirect(to) => {
            s.write_all(head("302 Found", 0, &format!("Location: {to}\r\n")).as_bytes())
        }
    };
    let _ = s.flush();
}
