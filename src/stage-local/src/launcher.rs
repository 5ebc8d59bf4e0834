//! Running the droplet as CF's launcher and Diego run one instance: the web process and
//! each of its sidecars, every one as `bash -c` in `<droplet>/app` with the launcher's
//! environment, after sourcing `profile.d/*`, `app/.profile.d/*` and `app/.profile`.
//! They are codependent: when one exits, even with status 0, the others are stopped.

use crate::app::App;
use crate::env::{self, Ids, Instance};
use crate::errors::Error;
use crate::http;
use crate::identity::Credentials;
use crate::out;
use crate::ports;
use crate::process::{describe, running_as, Supervisor, TICK};
use crate::settings::Settings;
use crate::staging::{Area, Staged};
use anyhow::Context as _;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// What CF's launcher runs for a buildpack app (launcher_unix.go), with the command as
/// `$1` so that no quoting can break it. The working directory is `<droplet>/app`.
const LAUNCHER: &str = r#"
for env_file in ../profile.d/*; do [ -f "$env_file" ] && source "$env_file"; done
for env_file in .profile.d/*; do [ -f "$env_file" ] && source "$env_file"; done
[ -f .profile ] && source .profile
exec bash -c "$1"
"#;

/// How long one readiness probe or one GET may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_EVERY: Duration = Duration::from_millis(200);

pub fn run(s: &Settings, app: &App, staged: &Staged, area: &Area) -> anyhow::Result<()> {
    let web = staged
        .outcome
        .process_types
        .get("web")
        .map(|(command, _)| command.clone())
        .ok_or(Error::NoWebProcess)?;
    let sidecars = staged.outcome.sidecars_for("web");
    let (port, sidecar_ports) = ports::plan(app, &sidecars, s.port)?;
    let creds = Credentials::create(
        &area.path("instance-credentials"),
        &Ids::of(&app.name),
        env::INSTANCE_IP,
    )?;
    let web_mb = app.memory_mb as i64 - staged.outcome.sidecar_memory("web");
    let mut sup = Supervisor::new(s.grace);
    let instance = Launch {
        s,
        app,
        staged,
        port,
        creds: &creds,
    };
    let mut started = Vec::new();
    for sc in &sidecars {
        // Cloud Controller: a sidecar's MEMORY_LIMIT is its own memory, else the process's.
        let memory = sc
            .memory
            .filter(|m| *m > 0)
            .map_or(app.memory_mb, |m| m as u64);
        let source = format!("APP/PROC/WEB/SIDECAR/{}/0", sc.name.to_uppercase());
        let pid = instance.start(
            &mut sup,
            &format!("sidecar {}", sc.name),
            &source,
            &sc.command,
            memory,
        )?;
        let listens = sidecar_ports
            .iter()
            .find(|p| p.sidecar == sc.name)
            .map(|p| format!(", {}={}", p.var, p.port))
            .unwrap_or_default();
        started.push(format!(
            "sidecar {}: pid {pid}, MEMORY_LIMIT={memory}m{listens}",
            sc.name
        ));
    }
    let web_mb = web_mb.max(0) as u64;
    let pid = instance.start(&mut sup, "the web process", "APP/PROC/WEB/0", &web, web_mb)?;
    started.insert(
        0,
        format!("web: pid {pid}, PORT={port}, MEMORY_LIMIT={web_mb}m"),
    );

    let url = format!("http://127.0.0.1:{port}");
    out::say(format!(
        "waiting up to {} s for the app to answer on {url}/",
        s.wait.as_secs()
    ));
    wait_ready(s, &mut sup, port, &url)?;
    for g in &sup.groups {
        if let Some((exe, argv)) = running_as(g.pid()) {
            out::say(format!(
                "[{}] pid {} runs {exe} ({argv})",
                source_of(&g.label),
                g.pid()
            ));
        }
    }
    print_answers(s, port, &url);
    out::say(format!(
        "{} answers at {url}/\n  {}\n  droplet: {}{}",
        app.name,
        started.join("\n  "),
        staged.droplet.display(),
        s.droplet_tgz
            .as_ref()
            .map(|t| format!(" (and {})", t.display()))
            .unwrap_or_default()
    ));
    if !s.stop_after_answers {
        out::say("running; Ctrl-C stops the app and its sidecars");
    }
    loop {
        sup.reap();
        if let Some(g) = sup.exited() {
            let err = exited(g);
            stop(&mut sup);
            return Err(err.into());
        }
        if s.stop_after_answers || s.interrupted.load(Ordering::SeqCst) {
            stop(&mut sup);
            return Ok(());
        }
        thread::sleep(TICK);
    }
}

/// GETs each `--get` path and prints the answer.
fn print_answers(s: &Settings, port: u16, url: &str) {
    for path in &s.gets {
        let text = match http::get(port, path, PROBE_TIMEOUT) {
            Ok(a) => {
                let mut body = String::from_utf8_lossy(&a.body).to_string();
                if !body.ends_with('\n') {
                    body.push('\n');
                }
                format!(
                    "stage-local: GET {url}{path} -> {} {}\n{body}",
                    a.status, a.reason
                )
            }
            Err(e) => format!("stage-local: GET {url}{path} -> no answer: {e}\n"),
        };
        out::raw(&text);
    }
}

/// One instance of the web process type: what all its processes share.
struct Launch<'a> {
    s: &'a Settings,
    app: &'a App,
    staged: &'a Staged,
    port: u16,
    creds: &'a Credentials,
}

impl Launch<'_> {
    /// Starts one process of the instance through the launcher script; returns its pid.
    fn start(
        &self,
        sup: &mut Supervisor,
        label: &str,
        source: &str,
        command: &str,
        memory_mb: u64,
    ) -> anyhow::Result<i32> {
        let instance = Instance {
            droplet: &self.staged.droplet,
            port: self.port,
            memory_mb,
            process_type: "web",
            cert: &self.creds.cert,
            key: &self.creds.key,
        };
        let vars = env::running(self.s, self.app, &instance);
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(LAUNCHER)
            .arg("launcher")
            .arg(command)
            .current_dir(self.staged.droplet.join("app"));
        env::apply(&mut cmd, &vars);
        let g = sup
            .spawn(&mut cmd, &format!("{label} [{source}]"), Some(source))
            .context("cannot start bash")?;
        let pid = g.pid();
        out::say(format!(
            "started [{source}] as pid {pid} with MEMORY_LIMIT={memory_mb}m: {command}"
        ));
        Ok(pid)
    }
}

/// The `[...]` part of a group's label.
fn source_of(label: &str) -> &str {
    label
        .rsplit_once('[')
        .map(|(_, rest)| rest.trim_end_matches(']'))
        .unwrap_or(label)
}

fn exited(g: &crate::process::Group) -> Error {
    Error::Exited {
        label: g.label.clone(),
        pid: g.pid(),
        status: g.status.map(describe).unwrap_or_default(),
    }
}

fn stop(sup: &mut Supervisor) {
    let count = sup.groups.iter().filter(|g| g.status.is_none()).count();
    out::say(format!(
        "stopping {count} running process group(s): SIGTERM, then SIGKILL after the grace period"
    ));
    let stopped = sup.stop_all();
    for label in &stopped.killed {
        out::warn(format!(
            "{label} ignored SIGTERM for the whole grace period; it got SIGKILL"
        ));
    }
    for label in &stopped.left {
        out::warn(format!(
            "{label} left processes that escaped its process group"
        ));
    }
    out::say("stopped");
}

/// Probes `GET /` until any HTTP answer, a process exits, a stop is asked, or time is up.
fn wait_ready(s: &Settings, sup: &mut Supervisor, port: u16, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + s.wait;
    loop {
        sup.reap();
        if let Some(g) = sup.exited() {
            let err = exited(g);
            stop(sup);
            return Err(err.into());
        }
        if s.interrupted.load(Ordering::SeqCst) {
            stop(sup);
            return Err(Error::Interrupted {
                during: "waiting for the app to answer".into(),
            }
            .into());
        }
        if http::get(port, "/", PROBE_TIMEOUT).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            stop(sup);
            return Err(Error::NoAnswer {
                url: format!("{url}/"),
                seconds: s.wait.as_secs(),
            }
            .into());
        }
        thread::sleep(PROBE_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_carry_their_log_source() {
        assert_eq!(
            source_of("sidecar x [APP/PROC/WEB/SIDECAR/X/0]"),
            "APP/PROC/WEB/SIDECAR/X/0"
        );
    }
}
