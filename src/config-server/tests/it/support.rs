//! Runs the real `config-server` binary on a free loopback port and talks
//! plain HTTP/1.1 to it over a `TcpStream`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_config-server");

/// The built-in demo document, byte for byte.
pub(crate) const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// A value planted in test configurations that must never show up in any output.
pub(crate) const SECRET: &str = "s3cr3t-Pa55word";

/// How long a test waits for something that normally takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 20 ms until it returns `Some` or `within` runs out.
pub(crate) fn wait_for<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Builder for one run of the sidecar. The environment starts empty, with
/// `CONFIG_SERVER_PORT` set to a free port.
pub(crate) struct Sidecar {
    command: Command,
    port: u16,
    /// Whether the port was picked here (and may be picked again if taken).
    picked_port: bool,
}

impl Sidecar {
    pub(crate) fn new() -> Self {
        Self::with_command(Command::new(BIN))
    }

    fn with_command(mut command: Command) -> Self {
        let port = free_port();
        command
            .env_clear()
            .env("CONFIG_SERVER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self {
            command,
            port,
            picked_port: true,
        }
    }

    /// Runs the sidecar as `bash -c '<prefix> exec config-server'`, e.g. to set a ulimit.
    pub(crate) fn wrap_in_shell(prefix: &str) -> Self {
        let mut command = Command::new("bash");
        command.args(["-c", &format!("{prefix} exec \"$0\""), BIN]);
        Self::with_command(command)
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub(crate) fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    pub(crate) fn port(mut self, port: u16) -> Self {
        self.port = port;
        self.picked_port = false;
        self.command.env("CONFIG_SERVER_PORT", port.to_string());
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    fn spawn(&mut self) -> Running {
        let mut child = self.command.spawn().expect("spawn config-server");
        let stdout = capture(child.stdout.take().expect("piped stdout"));
        let stderr = capture(child.stderr.take().expect("piped stderr"));
        Running {
            child,
            port: self.port,
            stdout,
            stderr,
        }
    }

    /// Starts the sidecar and waits until `/health` answers 200. A port picked
    /// here that something else took in the meantime (tests and other work run
    /// in parallel) is picked again.
    pub(crate) fn start(mut self) -> Running {
        let mut running = self.spawn();
        for _ in 0..3 {
            let exited = wait_for(PATIENCE, || {
                let exited = running.child.try_wait().ok().flatten().map(Some);
                let healthy = || running.try_get("/health").filter(|r| r.status == 200);
                exited.or_else(|| healthy().map(|_| None))
            });
            let Some(Some(status)) = exited else { break };
            let exited = running.exited(status);
            let taken = exited.code == Some(4) && exited.stderr.contains("Address already in use");
            if !(taken && self.picked_port) {
                break;
            }
            self.port = free_port();
            self.command
                .env("CONFIG_SERVER_PORT", self.port.to_string());
            running = self.spawn();
        }
        let healthy = wait_for(PATIENCE, || {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!(
                    "config-server exited with {status} before becoming healthy\nstdout:\n{}\nstderr:\n{}",
                    running.stdout(),
                    running.stderr()
                );
            }
            running.try_get("/health").filter(|r| r.status == 200)
        });
        assert!(
            healthy.is_some(),
            "config-server not healthy within {PATIENCE:?}\nstderr:\n{}",
            running.stderr()
        );
        // So that every test starts from the same stdout.
        running.wait_stdout("GET /health 200 ");
        running
    }

    /// Runs a sidecar that is expected to fail at startup, and waits for it to exit.
    pub(crate) fn run_to_exit(mut self) -> Exited {
        let mut running = self.spawn();
        let status = running.wait_exit(PATIENCE).unwrap_or_else(|| {
            panic!(
                "config-server still running after {PATIENCE:?}; stdout:\n{}",
                running.stdout()
            )
        });
        running.exited(status)
    }
}

pub(crate) fn capture(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().expect("capture lock").push_str(&line);
            line.clear();
        }
    });
    text
}

/// A running sidecar; killed on drop, so a failing test leaves nothing behind.
pub(crate) struct Running {
    child: Child,
    pub port: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until stderr holds `text`; returns all of stderr. The sidecar's output
    /// reaches the test through a reader thread: a line written just before an answer
    /// may arrive just after it.
    pub(crate) fn wait_stderr(&self, text: &str) -> String {
        wait_for(PATIENCE, || {
            Some(self.stderr()).filter(|err| err.contains(text))
        })
        .unwrap_or_else(|| panic!("stderr never showed {text:?}; it has:\n{}", self.stderr()))
    }

    /// Waits until stdout holds `text`; returns all of stdout.
    pub(crate) fn wait_stdout(&self, text: &str) -> String {
        wait_for(PATIENCE, || {
            Some(self.stdout()).filter(|out| out.contains(text))
        })
        .unwrap_or_else(|| panic!("stdout never showed {text:?}; it has:\n{}", self.stdout()))
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.request("GET", path)
    }

    pub(crate) fn request(&self, method: &str, path: &str) -> Response {
        request(self.port, method, path)
            .unwrap_or_else(|err| panic!("{method} {path} on port {}: {err}", self.port))
    }

    /// A new connection to the sidecar, whose reads give up after `PATIENCE`.
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream
    }

    /// The `ETag` of `GET path`.
    pub(crate) fn etag(&self, path: &str) -> String {
        let response = self.get(path);
        match response.header("etag") {
            Some(tag) => tag.to_owned(),
            None => panic!("no ETag: {response:#?}"),
        }
    }

    fn try_get(&self, path: &str) -> Option<Response> {
        request(self.port, "GET", path).ok()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Sends `signal` and waits for the exit; returns it and how long it took.
    pub(crate) fn stop(self, signal: &str) -> (Exited, Duration) {
        let sent = Instant::now();
        self.signal(signal);
        let exited = self.wait();
        (exited, sent.elapsed())
    }

    /// Waits for the process to exit (after a signal sent earlier).
    pub(crate) fn wait(mut self) -> Exited {
        let status = self
            .wait_exit(PATIENCE)
            .unwrap_or_else(|| panic!("config-server still running after {PATIENCE:?}"));
        self.exited(status)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_for(within, || self.child.try_wait().expect("try_wait"))
    }

    fn exited(&self, status: ExitStatus) -> Exited {
        // The capture threads see EOF right after the exit; give them a moment.
        let _ = wait_for(Duration::from_secs(2), || {
            (Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1)
                .then_some(())
        });
        Exited {
            code: status.code(),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a sidecar run ended.
#[derive(Debug)]
pub(crate) struct Exited {
    /// `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Exited {
    /// Asserts a startup failure: `code`, stderr exactly `error: <message>`
    /// (after any warnings), nothing served, no secret anywhere.
    pub(crate) fn assert_error(&self, code: i32, message: &str) {
        assert_eq!(self.code, Some(code), "{self:#?}");
        let last = self.stderr.lines().last().unwrap_or_default();
        assert_eq!(last, format!("error: {message}"), "{self:#?}");
        assert_eq!(
            self.stdout, "",
            "nothing is printed to stdout before listening"
        );
        assert_no_secret(&self.stderr);
    }
}

pub(crate) fn assert_no_secret(output: &str) {
    assert!(
        !output.contains(SECRET),
        "secret leaked into output:\n{output}"
    );
}

/// An HTTP response, headers keyed in lower case.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Asserts status, `Content-Type: application/json` and the whole body.
    pub(crate) fn assert_json(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status, self.header("content-type"), self.body.as_str()),
            (status, Some("application/json"), body),
            "{self:#?}"
        );
    }
}

/// One request on a fresh connection, `Connection: close`.
pub(crate) fn request(port: u16, method: &str, path: &str) -> std::io::Result<Response> {
    request_with(port, method, path, &[])
}

/// One request with extra headers on a fresh connection, `Connection: close`.
pub(crate) fn request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(parse_response(&raw))
}

/// Reads one response from a keep-alive connection (needs `Content-Length`).
pub(crate) fn read_response(stream: &mut TcpStream) -> Response {
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set timeout");
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    loop {
        // With a read timeout set, a signal interrupts read(2) even under SA_RESTART
        // (signal(7)), and glibc signals every thread of the test process now and then.
        let n = match stream.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            read => read.expect("read response"),
        };
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return parse_response(&raw);
            }
        }
    }
}

/// Parses one complete response (status line, headers, body up to EOF or Content-Length).
pub(crate) fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = match headers
        .get("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(len) => body.get(..len).unwrap_or(body),
        None => body,
    };
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The number of file descriptors the process has open.
pub(crate) fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .count()
}

/// The file descriptor the process would get next: a limit of open files this
/// low leaves it none (the count of open ones may be higher, with gaps below).
pub(crate) fn lowest_free_fd(pid: u32) -> usize {
    let open: BTreeSet<usize> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..=open.len())
        .find(|fd| !open.contains(fd))
        .unwrap_or_default()
}

/// Sets the sidecar's soft limit of open files.
pub(crate) fn set_open_files(pid: u32, files: usize) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid")).expect("a pid");
    let maximum = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|n| n.parse().ok());
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: Some(files as u64),
            maximum,
        },
    )
    .expect("prlimit on the sidecar");
}
