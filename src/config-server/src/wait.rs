//! `config-server wait [--timeout D] [--only-for TYPES]`: waits until the sidecar
//! beside this process serves its configuration, for an app that must not start
//! before it (the buildpack's `HOLD_APP` hook runs it from `.profile.d`).
//!
//! Cloud Foundry has no readiness check for a sidecar and starts it and the app in no
//! defined order, so the app's own start is the only place to wait. It asks
//! `GET /health` on `127.0.0.1:$CONFIG_SERVER_PORT` every [`POLL`] until it answers
//! `200` with `"status":"ok"` (a document is loaded: the sidecar listens only once it
//! has one), and gives up at the timeout saying why.
//!
//! A sidecar that cannot load its configuration stops (exit 3): CF then restarts the
//! whole instance, app included, with a back-off, and shows it as crashed. Its sources
//! (the env, the binding files, the droplet) do not change during a container's life,
//! so a sidecar that kept running "not ready" would never recover, and would leave an
//! instance that passes its health check and takes traffic without its configuration.
//! The sidecar's own `error:` line in the app's log says what is missing and how to
//! fix it; it also leaves that error in a [`Note`], so that a `wait` that times out
//! says why in the app process's log too. (CF kills the app's process along with the
//! instance when the sidecar exits, so `wait` never races to report it first.)
//!
//! Exit codes: 0 ready (or not needed in this process type), 2 a bad argument, 3 a
//! setting the sidecar refuses at start, 5 not ready by the timeout.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error;

/// How often the sidecar is asked.
const POLL: Duration = Duration::from_millis(50);
/// The default and the longest timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most of a `/health` answer read.
const MAX_ANSWER: u64 = 64 * 1024;

pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_SETTING: u8 = 3;
pub(crate) const EXIT_TIMEOUT: u8 = 5;

const USAGE: &str = "usage: config-server wait [--timeout DURATION] [--only-for TYPE,...]\n\
    \n\
    Waits until the config-server sidecar on 127.0.0.1:$CONFIG_SERVER_PORT serves its\n\
    configuration. DURATION: seconds, or a number with ms, s or m (default 30s).\n\
    --only-for: wait only in these process types (VCAP_APPLICATION's process_type);\n\
    elsewhere, and where the process type is unknown (a task), exit 0 at once.";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    timeout: Duration,
    only_for: Option<Vec<String>>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        timeout: DEFAULT_TIMEOUT,
        only_for: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--timeout" => {
                let raw = value()?;
                parsed.timeout = parse_duration(&raw).ok_or_else(|| {
                    format!(
                        "--timeout {raw:?}: expected seconds, or a number with ms, s or m, \
                         up to 1h"
                    )
                })?;
            }
            "--only-for" => {
                let raw = value()?;
                let types: Vec<String> = raw.split(',').map(|t| t.trim().to_owned()).collect();
                if types.iter().any(String::is_empty) {
                    return Err(format!("--only-for {raw:?}: expected TYPE[,TYPE...]"));
                }
                parsed.only_for = Some(types);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

/// `30`, `30s`, `1500ms`, `2m`; from 1 ms to [`MAX_TIMEOUT`].
fn parse_duration(raw: &str) -> Option<Duration> {
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (num, unit) = raw.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero() && d <= MAX_TIMEOUT).then_some(d)
}

/// The sidecar's last startup error, in `$TMPDIR` (CF's launcher sets it to
/// /home/vcap/tmp for every process of an instance), keyed by its port. Without
/// `TMPDIR` (a local run) there is none.
pub(crate) struct Note {
    path: PathBuf,
}

impl Note {
    pub(crate) fn new(env: &HashMap<String, String>, port: u16) -> Option<Self> {
        let dir = env.get("TMPDIR").filter(|d| !d.is_empty())?;
        Some(Self {
            path: PathBuf::from(dir).join(format!("config-server-{port}.error")),
        })
    }

    /// Forgets an earlier start's error.
    pub(crate) fn clear(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Leaves `err` for `wait`; best effort: the error line in the log is what counts.
    pub(crate) fn write(&self, err: &error::Error) {
        let _ = fs::write(&self.path, error::report(err));
    }

    /// The error it holds, if any.
    fn read(&self) -> Option<String> {
        let text = fs::read_to_string(&self.path).ok()?;
        Some(text.lines().next().unwrap_or_default().to_owned())
    }
}

/// What one ask of `/health` found.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ready,
    /// Nothing listens yet (or the connection broke).
    Silent(String),
    /// It answered, but not ready.
    NotReady(String),
}

fn ask(port: u16) -> Answer {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => return Answer::Silent(e.to_string()),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Answer::Silent(e.to_string());
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.take(MAX_ANSWER).read_to_end(&mut raw) {
        return Answer::Silent(e.to_string());
    }
    judge(&raw)
}

/// Ready: `200` and a JSON body whose `status` is `ok`.
fn judge(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Answer::Silent("the answer ended early".into());
    };
    let status = head.split(' ').nth(1).unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    if status == "200" && field("status").as_deref() == Some("ok") {
        return Answer::Ready;
    }
    let why = field("last_error")
        .or_else(|| field("error"))
        .unwrap_or_else(|| format!("/health answered {status}"));
    Answer::NotReady(why)
}

/// The process type this process runs as, from `VCAP_APPLICATION`.
fn process_type(env: &HashMap<String, String>) -> Option<String> {
    let vcap: serde_json::Value = serde_json::from_str(env.get("VCAP_APPLICATION")?).ok()?;
    vcap.get("process_type")?.as_str().map(str::to_owned)
}

/// Runs `config-server wait ARGS` with `env`; returns the exit code.
pub(crate) fn main(args: &[String], env: &HashMap<String, String>) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: config-server wait: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(types) = &args.only_for {
        match process_type(env) {
            Some(t) if types.contains(&t) => {}
            // Not a process the sidecar serves (or a task, where sidecars never run).
            _ => return ExitCode::SUCCESS,
        }
    }
    // The sidecar reads the same settings: one it refuses, it refuses at start.
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(err) => {
            eprintln!(
                "error: config-server wait: config-server cannot start: {}",
                error::report(&err)
            );
            return ExitCode::from(EXIT_SETTING);
        }
    };
    let note = Note::new(env, config.port);
    let started = Instant::now();
    let last = loop {
        let last = match ask(config.port) {
            Answer::Ready => {
                println!(
                    "config-server is ready on 127.0.0.1:{} (waited {:.1} s)",
                    config.port,
                    started.elapsed().as_secs_f64()
                );
                return ExitCode::SUCCESS;
            }
            other => other,
        };
        if started.elapsed() >= args.timeout {
            break last;
        }
        std::thread::sleep(POLL.min(args.timeout.saturating_sub(started.elapsed())));
    };
    let why = match (last, note.as_ref().and_then(Note::read)) {
        (Answer::NotReady(why), _) => format!("it answers, but is not ready: {why}"),
        (_, Some(why)) => format!(
            "nothing answers, and its last start failed: {why}; Cloud Foundry restarts the \
             app instance until that is fixed"
        ),
        (Answer::Silent(e), None) => format!(
            "nothing answers on 127.0.0.1:{} ({e}): is the config-server sidecar declared for \
             this process type, and CONFIG_SERVER_PORT the same for the app and the sidecar?",
            config.port
        ),
        (Answer::Ready, None) => String::new(),
    };
    eprintln!(
        "error: config-server wait: not ready after {:.1} s: {why}; the app starts without it",
        args.timeout.as_secs_f64()
    );
    ExitCode::from(EXIT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        assert_eq!(
            args(&[]),
            Ok(Args {
                timeout: DEFAULT_TIMEOUT,
                only_for: None
            })
        );
        assert_eq!(
            args(&["--timeout", "1500ms", "--only-for=web, worker"]),
            Ok(Args {
                timeout: Duration::from_millis(1500),
                only_for: Some(vec!["web".into(), "worker".into()])
            })
        );
        assert_eq!(
            args(&["--timeout=2m"]).map(|a| a.timeout),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            args(&["--timeout", "7"]).map(|a| a.timeout),
            Ok(Duration::from_secs(7))
        );
        for bad in [
            &["--timeout"][..],
            &["--timeout", "0"],
            &["--timeout", "2h"],
            &["--timeout", "61m"],
            &["--timeout", "-1"],
            &["--only-for", "web,"],
            &["--port", "1"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn health_answers() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ok\",\"generation\":1}";
        assert_eq!(judge(ok), Answer::Ready);
        let not = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"not_ready\",\"last_error\":\"CONFIG_SERVER_FILE=/x: cannot read it\"}";
        assert_eq!(
            judge(not),
            Answer::NotReady("CONFIG_SERVER_FILE=/x: cannot read it".into())
        );
        assert_eq!(
            judge(b"HTTP/1.1 200 OK\r\n\r\n{\"status\":\"starting\"}"),
            Answer::NotReady("/health answered 200".into())
        );
        assert!(matches!(judge(b"HTTP/1.1 200"), Answer::Silent(_)));
    }

    #[test]
    fn process_type_from_vcap_application() {
        let env = |v: &str| HashMap::from([("VCAP_APPLICATION".to_owned(), v.to_owned())]);
        assert_eq!(
            process_type(&env(r#"{"process_type":"web","name":"a"}"#)),
            Some("web".into())
        );
        assert_eq!(process_type(&env(r#"{"name":"a"}"#)), None);
        assert_eq!(process_type(&env("not json")), None);
        assert_eq!(process_type(&HashMap::new()), None);
    }
}
