//! The real `cf-entrypoint` binary against a droplet in a temp dir (its `--root` and
//! `--plan`), with bash scripts for the app and its sidecar: what it starts, how their
//! output is prefixed, and how one exit or a SIGTERM stops them all.

use rustix::process::{kill_process, Pid, Signal};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cf-entrypoint");
const LIMIT: Duration = Duration::from_secs(30);

/// A droplet whose web process and `side` sidecar run `web` and `side` (bash), and a
/// plan for them.
struct Droplet {
    dir: tempfile::TempDir,
}

impl Droplet {
    fn new(web: &str, side: &str) -> Droplet {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("vcap");
        for d in ["app/.profile.d", "deps/0/bin", "tmp"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        // A profile script sees the command as $2, as CF's launcher hands it.
        fs::write(
            root.join("app/.profile.d/who.sh"),
            "export STARTED_AS=\"$2\"\n",
        )
        .expect("write");
        for (name, body) in [("web", web), ("side", side)] {
            let path = root.join("deps/0/bin").join(name);
            fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let plan = r#"{"processes": {"web": {"command": "$DEPS_DIR/0/bin/web", "memory_mb": 224,
            "sidecars": [{"name": "side", "command": "$DEPS_DIR/0/bin/side", "memory_mb": 32}]}}}"#;
        fs::write(dir.path().join("plan.json"), plan).expect("write");
        Droplet { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("vcap")
    }

    fn start(&self, args: &[&str]) -> Started {
        let mut child = Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .arg("--plan")
            .arg(self.dir.path().join("plan.json"))
            .args(args)
            .env("VCAP_APPLICATION", r#"{"name":"demo"}"#)
            .env("PORT", "8080")
            .env("INSTANCE_GUID", "guid")
            .env("INSTANCE_INDEX", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cf-entrypoint");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Started {
            child,
            lines,
            seen: Vec::new(),
        }
    }
}

struct Started {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Started {
    /// Waits for a line containing `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
        panic!("no line with {text:?} in:\n{}", self.seen.join("\n"));
    }

    /// Waits for the exit; returns the code and every line.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "cf-entrypoint did not exit");
            thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn pid_in(line: &str) -> i32 {
    line.split(" as pid ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

#[test]
fn runs_the_sidecar_and_the_process_through_the_launcher_with_their_own_memory() {
    let d = Droplet::new(
        "echo \"web $MEMORY_LIMIT $HOME $DEPS_DIR $TMPDIR $PWD $STARTED_AS\"; echo \"$VCAP_APPLICATION\"; exec sleep 60",
        "echo \"side $MEMORY_LIMIT\" >&2; exec sleep 60",
    );
    let mut run = d.start(&[]);
    let root = d.root();
    let web = run.wait_for("[APP/PROC/WEB/0] OUT web ");
    assert_eq!(
        web,
        format!(
            "[APP/PROC/WEB/0] OUT web 224m {r}/app {r}/deps {r}/tmp {r}/app $DEPS_DIR/0/bin/web",
            r = root.display()
        )
    );
    run.wait_for(r#"[APP/PROC/WEB/0] OUT {"host":"0.0.0.0","instance_id":"guid","instance_index":0,"name":"demo","port":8080}"#);
    run.wait_for("[APP/PROC/WEB/SIDECAR/SIDE/0] ERR side 32m");
    let side = pid_in(&run.wait_for("started [APP/PROC/WEB/SIDECAR/SIDE/0] as pid"));
    let web = pid_in(&run.wait_for("started [APP/PROC/WEB/0] as pid"));
    assert!(alive(side) && alive(web));
    kill_process(
        Pid::from_raw(run.child.id() as i32).expect("pid"),
        Signal::TERM,
    )
    .expect("SIGTERM");
    let (code, out) = run.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cf-entrypoint: stop requested"), "{out}");
    assert!(!alive(side) && !alive(web), "both stopped: {out}");
}

#[test]
fn when_one_exits_the_others_are_stopped_and_its_code_is_the_exit_code() {
    let d = Droplet::new("exec sleep 60", "sleep 0.5; exit 3");
    let mut run = d.start(&["--grace-period", "2"]);
    let web = pid_in(&run.wait_for("started [APP/PROC/WEB/0] as pid"));
    let (code, out) = run.finish();
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("cf-entrypoint: [APP/PROC/WEB/SIDECAR/SIDE/0] exited with exit status 3: stopping the others"),
        "{out}"
    );
    assert!(!alive(web), "web stopped: {out}");
}

#[test]
fn a_process_that_ignores_sigterm_gets_sigkill_after_the_grace_period() {
    let d = Droplet::new(
        "trap '' TERM; while true; do sleep 0.1; done",
        "exec sleep 60",
    );
    let mut run = d.start(&["--grace-period", "1"]);
    run.wait_for("started [APP/PROC/WEB/0] as pid");
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    kill_process(
        Pid::from_raw(run.child.id() as i32).expect("pid"),
        Signal::TERM,
    )
    .expect("SIGTERM");
    let (code, out) = run.finish();
    assert_eq!(code, 0, "{out}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the grace period"
    );
    assert!(
        out.contains(
            "warning: [APP/PROC/WEB/0] ignored SIGTERM for the whole grace period; it got SIGKILL"
        ),
        "{out}"
    );
}

#[test]
fn a_process_type_the_plan_lacks_or_a_bad_plan_is_refused_with_125() {
    let d = Droplet::new("exec sleep 60", "exec sleep 60");
    let (code, out) = d.start(&["worker"]).finish();
    assert_eq!(code, 125, "{out}");
    assert!(
        out.contains("the droplet has no \"worker\" process type; it has: web"),
        "{out}"
    );
    fs::write(d.dir.path().join("plan.json"), "{}").expect("write");
    let (code, out) = d.start(&[]).finish();
    assert_eq!(code, 125, "{out}");
    assert!(
        out.contains("is not a process plan: missing field `processes`"),
        "{out}"
    );
    let (code, out) = d.start(&["--nope"]).finish();
    assert_eq!(code, 125, "{out}");
    assert!(out.contains("unknown flag --nope"), "{out}");
}
