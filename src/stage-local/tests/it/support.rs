//! Builders that keep each test short: a sandbox with an app, shell-script buildpacks
//! and a work dir; a `stage-local` run that must finish in bounded time; a background run
//! whose output can be waited on; checks that processes are really gone.

use rustix::process::{kill_process, Pid, Signal};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_stage-local");
/// No test may take longer than this; a hang is a failure, not a stuck CI job.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// A tiny web app: answers `/` with a greeting, `/env` with its environment and
/// working directory as JSON, and, when the app's env has CONFIG_SERVER_PORT, `/config`
/// with what its config-server serves (as fixtures/rubyapp does). Logs one line to
/// stdout and one to stderr at start.
pub(crate) const SERVER_PY: &str = r#"import http.server, json, os, sys, urllib.request
print("web up", flush=True)
print("web says on stderr", file=sys.stderr, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env":
            body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
        elif self.path == "/":
            body = b"hello from web"
        elif self.path == "/config" and "CONFIG_SERVER_PORT" in os.environ:
            url = "http://127.0.0.1:%s/config" % os.environ["CONFIG_SERVER_PORT"]
            body = urllib.request.urlopen(url, timeout=5).read()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

pub(crate) struct Sandbox {
    pub root: tempfile::TempDir,
}

impl Sandbox {
    /// An empty app dir named `app` (so the app is called "app" unless a manifest says).
    pub(crate) fn new() -> Sandbox {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("app")).expect("app dir");
        Sandbox { root }
    }

    /// An app that serves HTTP on $PORT (python3), named `demo`, with 256M.
    pub(crate) fn web_app() -> Sandbox {
        let sb = Sandbox::new();
        sb.file("server.py", SERVER_PY)
            .file("Procfile", "web: exec python3 server.py\n")
            .file(
                "manifest.yml",
                "applications:\n- name: demo\n  memory: 256M\n",
            );
        sb
    }

    pub(crate) fn app(&self) -> PathBuf {
        self.root.path().join("app")
    }

    pub(crate) fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    /// The app's dir under the work dir, for an app called `name`.
    pub(crate) fn area(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    /// Writes a file of the app.
    pub(crate) fn file(&self, rel: &str, text: &str) -> &Sandbox {
        write(&self.app().join(rel), text, 0o644);
        self
    }

    /// A directory buildpack whose bin/supply is `body` (bash, `set -euo pipefail`,
    /// with $build $cache $deps $idx set from the four arguments).
    pub(crate) fn buildpack(&self, name: &str, body: &str) -> PathBuf {
        let dir = self.root.path().join("buildpacks").join(name);
        let script = format!(
            "#!/usr/bin/env bash\nset -euo pipefail\nbuild=$1 cache=$2 deps=$3 idx=$4\n{body}\n"
        );
        write(&dir.join("bin/supply"), &script, 0o755);
        dir
    }

    /// A buildpack that installs `script` as `bin/<name>` and declares it a sidecar of
    /// `web` with `memory` (as written into launch.yml), at `<DEPS_DIR>/<DEPS_IDX>` only.
    pub(crate) fn sidecar_buildpack(&self, name: &str, memory: &str, script: &str) -> PathBuf {
        self.sidecar_buildpack_writing(name, memory, script, false)
    }

    /// Like [`Sandbox::sidecar_buildpack`]; with `unpadded_too`, also writes the same
    /// launch.yml at the index without leading zeros, where CF's builder reads it once
    /// an app has 10 or more buildpacks.
    pub(crate) fn sidecar_buildpack_writing(
        &self,
        name: &str,
        memory: &str,
        script: &str,
        unpadded_too: bool,
    ) -> PathBuf {
        let copy = if unpadded_too {
            r#"
plain=$((10#$idx))
if [ "$plain" != "$idx" ]; then mkdir -p "$deps/$plain"; cp "$deps/$idx/launch.yml" "$deps/$plain/launch.yml"; fi"#
        } else {
            ""
        };
        self.buildpack(
            &format!("{name}-buildpack"),
            &format!(
                r#"mkdir -p "$deps/$idx/bin"
cat > "$deps/$idx/bin/{name}" <<'SIDECAR'
#!/usr/bin/env bash
{script}
SIDECAR
chmod 755 "$deps/$idx/bin/{name}"
cat > "$deps/$idx/launch.yml" <<YML
processes:
- type: {name}
  command: '"\$DEPS_DIR/$idx/bin/{name}"'
  limits:
    memory: {memory}
  platforms:
    cloudfoundry:
      sidecar_for: [web]
YML{copy}
printf -- '---\nname: {name}\nversion: 1.2.3\nconfig: {{}}\n' > "$deps/$idx/config.yml"
echo "-----> {name} buildpack installed bin/{name}""#
            ),
        )
    }

    /// `stage-local --work-dir <work>` with the arguments to come; APP_DIR is added last.
    pub(crate) fn stage(&self) -> Run {
        Run {
            args: vec!["--work-dir".into(), self.work().display().to_string()],
            env: vec![],
            app: self.app(),
        }
    }
}

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub(crate) fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

pub(crate) struct Run {
    args: Vec<String>,
    env: Vec<(String, String)>,
    app: PathBuf,
}

impl Run {
    pub(crate) fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Run {
        self.args.push(a.as_ref().to_string_lossy().to_string());
        self
    }

    pub(crate) fn buildpack(self, p: impl AsRef<Path>) -> Run {
        self.arg("--buildpack").arg(p.as_ref())
    }

    /// `--network host`: every instance on this machine's loopback, as on a machine
    /// without network namespaces; for what only holds there (shared ports).
    pub(crate) fn host_network(self) -> Run {
        self.arg("--network").arg("host")
    }

    /// `--process TYPE`: start an instance of that process type.
    pub(crate) fn process(self, kind: &str) -> Run {
        self.arg("--process").arg(kind)
    }

    pub(crate) fn env(mut self, k: &str, v: &str) -> Run {
        self.env.push((k.into(), v.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .arg(&self.app)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs to the end (within `LIMIT`).
    pub(crate) fn run(self) -> Outcome {
        self.spawn().finish()
    }

    /// Starts in the background; output is collected as it comes.
    pub(crate) fn spawn(self) -> Running {
        let mut child = self.command().spawn().expect("start stage-local");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), out.clone()),
            collect(child.stderr.take().expect("stderr"), err.clone()),
        ];
        Running {
            child: Some(child),
            out,
            err,
            readers,
        }
    }
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().expect("lock");
            s.push_str(&line);
            s.push('\n');
        }
    })
}

pub(crate) struct Running {
    child: Option<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn stdout(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Waits until stdout has `text`; returns stdout so far.
    pub(crate) fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no {text:?} in time (exit: {exited:?}); stdout:\n{out}\nstderr:\n{}",
                self.err.lock().expect("lock")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn signal(&self, sig: Signal) {
        kill_process(pid(self.pid()), sig).expect("signal stage-local");
    }

    /// Kills stage-local with SIGKILL, as `kill -9` or the OOM killer would: it cannot
    /// stop what it started. Its output readers are left behind, since an orphan may
    /// hold the other end of its pipes.
    pub(crate) fn kill_hard(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = kill_process(pid(child.id() as i32), Signal::KILL);
        let _ = child.wait();
        self.readers.clear();
    }

    /// Waits for the end (within `LIMIT`, else kills it and fails).
    pub(crate) fn finish(mut self) -> Outcome {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = kill_process(pid(child.id() as i32), Signal::TERM);
                let _ = child.wait();
                panic!(
                    "stage-local did not finish in {LIMIT:?}; stdout:\n{}",
                    self.stdout()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Outcome {
            code: status.code().unwrap_or(-1),
            out: self.stdout(),
            err: self.err.lock().expect("lock").clone(),
        }
    }
}

impl Drop for Running {
    /// A failing test still stops stage-local, which stops what it started.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill_process(pid(child.id() as i32), Signal::TERM);
            let _ = child.wait();
        }
    }
}

pub(crate) struct Outcome {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Outcome {
    fn dump(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.out, self.err)
    }

    pub(crate) fn code(&self, want: i32) -> &Outcome {
        assert_eq!(self.code, want, "exit code; {}", self.dump());
        self
    }

    pub(crate) fn success(&self) -> &Outcome {
        self.code(0)
    }

    /// stdout or stderr contains `text`.
    pub(crate) fn has(&self, text: &str) -> &Outcome {
        assert!(
            self.out.contains(text) || self.err.contains(text),
            "output lacks {text:?}; {}",
            self.dump()
        );
        self
    }

    pub(crate) fn lacks(&self, text: &str) -> &Outcome {
        assert!(
            !self.out.contains(text) && !self.err.contains(text),
            "output has {text:?}; {}",
            self.dump()
        );
        self
    }

    /// The body stage-local printed for `GET <path>`.
    pub(crate) fn answer(&self, path: &str) -> String {
        let mut lines = self.out.lines();
        let head = format!("{path} -> ");
        lines
            .by_ref()
            .find(|l| l.starts_with("stage-local: GET ") && l.contains(&head))
            .unwrap_or_else(|| panic!("no answer for {path}; {}", self.dump()));
        lines.next().unwrap_or_default().to_string()
    }

    /// The pid stage-local reported starting for the log source, e.g. `APP/PROC/WEB/0`.
    pub(crate) fn started_pid(&self, source: &str) -> i32 {
        started_pid(&self.out, source)
    }
}

pub(crate) fn started_pid(out: &str, source: &str) -> i32 {
    let head = format!("stage-local: started [{source}] as pid ");
    out.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no start of {source} in:\n{out}"))
}

pub(crate) fn pid(raw: i32) -> Pid {
    Pid::from_raw(raw).expect("a pid")
}

/// True once `pid` is no more (or only a zombie nobody will run again).
pub(crate) fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Reads a pid a test process wrote into a file.
pub(crate) fn pid_in(path: &Path) -> i32 {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

/// The JSON object printed for `GET /env` by the test app.
pub(crate) fn env_answer(o: &Outcome) -> serde_json::Value {
    serde_json::from_str(&o.answer("/env")).expect("JSON from /env")
}

/// The environment a running process was started with. Read again while it comes back
/// empty: a process in the middle of an `exec` (the launcher's bash, then the command)
/// shows no environment for a moment.
pub(crate) fn environ(pid: i32) -> std::collections::BTreeMap<String, String> {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let raw = fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/environ: {e}"));
        let env: std::collections::BTreeMap<String, String> = raw
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        if !env.is_empty() || std::time::Instant::now() > deadline {
            return env;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The `process_type` of a process's VCAP_APPLICATION.
pub(crate) fn process_type(env: &std::collections::BTreeMap<String, String>) -> String {
    let vcap: serde_json::Value =
        serde_json::from_str(&env["VCAP_APPLICATION"]).expect("VCAP_APPLICATION");
    vcap["process_type"]
        .as_str()
        .expect("process_type")
        .to_string()
}

/// Every `[source]` stage-local reported starting, sorted.
pub(crate) fn started_sources(out: &str) -> Vec<String> {
    let mut sources: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("stage-local: started ["))
        .filter_map(|l| l.split_once(']').map(|(s, _)| s.to_string()))
        .collect();
    sources.sort();
    sources
}

/// Stops a run with Ctrl-C as a user would: it must exit 0 after stopping exactly
/// `pids`' process groups, and none of them may outlive it.
pub(crate) fn interrupt(running: Running, pids: &[i32]) -> Outcome {
    running.signal(Signal::INT);
    let o = running.finish();
    o.success().has(&format!(
        "stage-local: stopping {} running process group(s)",
        pids.len()
    ));
    for p in pids {
        assert!(gone(*p), "pid {p} outlived stage-local");
    }
    o
}

/// True when process `pid` itself holds the socket that listens on TCP `port`
/// (`/proc/<pid>/net/tcp*`, the tables of its own network, for the socket's inode,
/// `/proc/<pid>/fd` for who holds it).
pub(crate) fn listens(pid: i32, port: u16) -> bool {
    let inodes: Vec<String> = ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let local = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
                    (local == port && *f.get(3)? == "0A")
                        .then(|| f.get(9).map(std::string::ToString::to_string))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| {
            inodes
                .iter()
                .any(|i| l.as_os_str() == format!("socket:[{i}]").as_str())
        })
    })
}

/// This process's umask (children inherit it), from `/proc/self/status`.
pub(crate) fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        .expect("a Umask: line")
}

/// A binary of another workspace crate: `var` names it, else the one `cargo test
/// --workspace` built next to this test binary (`target/debug/<name>`).
pub(crate) fn built(var: &str, name: &str) -> PathBuf {
    let path = match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .expect("the test binary's path")
            .parent()
            .and_then(Path::parent)
            .expect("target/debug/deps")
            .join(name),
    };
    assert!(
        path.is_file(),
        "{} is not a file: build it (cargo build --workspace), or set {var} to it",
        path.display()
    );
    path
}
