//! Starting, watching and stopping processes so that none is left behind. Each child
//! leads its own process group, so a stop signal reaches its whole tree (`bundle exec`
//! and its ruby, a shell and its background jobs). stage-local is the child subreaper
//! of everything below it, so orphans come back to it and are reaped here, whatever
//! the machine's init does. Waiting goes through `reap`, group by group, never through
//! `std::process::Child`.

use rustix::process::{
    kill_process_group, test_kill_process_group, waitpgid, Pid, Signal, WaitOptions, WaitStatus,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How often the supervisor looks at its processes.
pub const TICK: Duration = Duration::from_millis(25);

/// Makes this process the reaper of its orphaned descendants. Best effort: without it,
/// orphans are reaped by init instead (or linger as zombies where init does not reap).
pub fn become_subreaper() {
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// One started process, leader of its own process group.
pub struct Group {
    /// As `cf logs` names the source, e.g. `APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0`.
    pub label: String,
    pub pid: Pid,
    /// Set once the leader has been reaped.
    pub status: Option<WaitStatus>,
    readers: Vec<mpsc::Receiver<()>>,
}

impl Group {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// True while any process of the group exists.
    fn alive(&self) -> bool {
        test_kill_process_group(self.pid).is_ok()
    }
}

/// The processes of one stage-local run. Dropping it stops them all.
pub struct Supervisor {
    pub groups: Vec<Group>,
    grace: Duration,
}

/// How stopping went, for the user.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Labels of the groups that ignored SIGTERM for the grace period.
    pub killed: Vec<String>,
    /// Labels of the groups still there even after SIGKILL (escaped with setsid).
    pub left: Vec<String>,
}

impl Supervisor {
    pub fn new(grace: Duration) -> Self {
        Supervisor {
            groups: Vec::new(),
            grace,
        }
    }

    /// Starts `cmd` in a new process group with stdin closed. With `log_source`, its
    /// stdout and stderr lines are printed as `cf logs` shows them:
    /// `[<log_source>] OUT line` and `[<log_source>] ERR line`; without, they go to
    /// stage-local's own stdout and stderr untouched.
    pub fn spawn(
        &mut self,
        cmd: &mut Command,
        label: &str,
        log_source: Option<&str>,
    ) -> std::io::Result<&Group> {
        cmd.process_group(0).stdin(Stdio::null());
        if log_source.is_some() {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        let mut child = cmd.spawn()?;
        let pid = Pid::from_child(&child);
        let mut readers = Vec::new();
        if let Some(source) = log_source {
            if let Some(out) = child.stdout.take() {
                readers.push(forward(out, format!("[{source}] OUT ")));
            }
            if let Some(err) = child.stderr.take() {
                readers.push(forward(err, format!("[{source}] ERR ")));
            }
        }
        // `child` is dropped without waiting: `reap` collects its status.
        self.groups.push(Group {
            label: label.to_string(),
            pid,
            status: None,
            readers,
        });
        Ok(&self.groups[self.groups.len() - 1])
    }

    /// Starts a helper in a new process group with the stdin `cmd` has, its stderr
    /// stage-local's, and its stdout piped back: returns its pid and that stdout.
    pub fn spawn_helper(
        &mut self,
        cmd: &mut Command,
        label: &str,
    ) -> std::io::Result<(i32, std::process::ChildStdout)> {
        cmd.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let pid = Pid::from_child(&child);
        self.groups.push(Group {
            label: label.to_string(),
            pid,
            status: None,
            readers: vec![],
        });
        Ok((pid.as_raw_nonzero().get(), stdout))
    }

    /// Collects every exited child in our groups: the leaders (their status is kept)
    /// and the orphans adopted as subreaper, which keep their group.
    pub fn reap(&mut self) {
        for g in &mut self.groups {
            while let Ok(Some((pid, status))) = waitpgid(g.pid, WaitOptions::NOHANG) {
                if pid == g.pid {
                    g.status = Some(status);
                }
            }
        }
    }

    /// The first group whose leader has exited, if any.
    pub fn exited(&self) -> Option<&Group> {
        self.groups.iter().find(|g| g.status.is_some())
    }

    /// Waits for the leader of group `i` to exit, stopping it if `interrupted` is set
    /// first. Returns its status, or `None` if interrupted.
    pub fn wait(&mut self, i: usize, interrupted: &AtomicBool) -> Option<WaitStatus> {
        loop {
            self.reap();
            if let Some(status) = self.groups[i].status {
                return Some(status);
            }
            if interrupted.load(Ordering::SeqCst) {
                self.stop_all();
                return None;
            }
            thread::sleep(TICK);
        }
    }

    /// True if group `i` still has processes although its leader exited.
    pub fn has_leftovers(&self, i: usize) -> bool {
        self.groups[i].alive()
    }

    /// SIGTERM to every group, SIGKILL to those still there after the grace period,
    /// then waits until all are gone. Idempotent.
    pub fn stop_all(&mut self) -> Stopped {
        let mut stopped = Stopped::default();
        for g in &self.groups {
            if g.alive() {
                let _ = kill_process_group(g.pid, Signal::TERM);
            }
        }
        if !self.settle(self.grace) {
            for g in &self.groups {
                if g.alive() {
                    stopped.killed.push(g.label.clone());
                    let _ = kill_process_group(g.pid, Signal::KILL);
                }
            }
            self.settle(Duration::from_secs(5));
        }
        stopped.left = self
            .groups
            .iter()
            .filter(|g| g.alive())
            .map(|g| g.label.clone())
            .collect();
        // Output still in flight reaches the terminal before stage-local's last words.
        let deadline = Instant::now() + Duration::from_secs(1);
        for g in &mut self.groups {
            for r in g.readers.drain(..) {
                let _ = r.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
        stopped
    }

    /// Reaps until no group has a process left, or `limit` passes. True if all gone.
    fn settle(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.reap();
            if self.groups.iter().all(|g| !g.alive()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(TICK);
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Copies `stream` to stdout line by line, each line prefixed. The receiver gets a
/// message (or a hang-up) when the stream ends.
fn forward(stream: impl Read + Send + 'static, prefix: String) -> mpsc::Receiver<()> {
    let (done, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    let _ = writeln!(std::io::stdout().lock(), "{prefix}{text}");
                }
            }
        }
        let _ = done.send(());
    });
    rx
}

/// `exit status 0`, or `signal 9 (SIGKILL)`, for messages.
pub fn describe(status: WaitStatus) -> String {
    if let Some(code) = status.exit_status() {
        format!("exit status {code}")
    } else if let Some(sig) = status.terminating_signal() {
        let name = match sig {
            1 => " (SIGHUP)",
            2 => " (SIGINT)",
            6 => " (SIGABRT)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("signal {sig}{name}")
    } else {
        "an unknown status".to_string()
    }
}

/// A process's executable and command line as the kernel sees them, for the report of
/// what actually runs (`/proc/<pid>/exe`, `/proc/<pid>/cmdline`).
pub fn running_as(pid: i32) -> Option<(String, String)> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).to_string())
        .collect();
    Some((exe.display().to_string(), args.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn stops_a_whole_group_including_what_ignores_sigterm() {
        become_subreaper();
        let mut sup = Supervisor::new(Duration::from_millis(300));
        let g = sup
            .spawn(
                &mut sh("trap '' TERM; sleep 30 & sleep 30"),
                "stubborn",
                Some("T"),
            )
            .expect("spawn");
        let pgid = g.pid;
        thread::sleep(Duration::from_millis(100));
        let stopped = sup.stop_all();
        assert_eq!(stopped.killed, vec!["stubborn"]);
        assert!(stopped.left.is_empty());
        assert!(test_kill_process_group(pgid).is_err(), "group must be gone");
        assert_eq!(
            sup.groups[0]
                .status
                .and_then(rustix::process::WaitStatus::terminating_signal),
            Some(9)
        );
    }

    #[test]
    fn wait_returns_the_status_and_describe_words_it() {
        let mut sup = Supervisor::new(Duration::from_secs(1));
        sup.spawn(&mut sh("exit 3"), "three", None).expect("spawn");
        let status = sup
            .wait(0, &AtomicBool::new(false))
            .expect("not interrupted");
        assert_eq!(describe(status), "exit status 3");
        let interrupted = AtomicBool::new(true);
        sup.spawn(&mut sh("sleep 30"), "sleeper", None)
            .expect("spawn");
        assert!(sup.wait(1, &interrupted).is_none());
        assert!(!sup.groups[1].alive());
    }
}
