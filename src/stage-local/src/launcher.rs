//! Running the droplet as CF's launcher and Diego run one instance of each process type
//! asked for (`web` unless `--process` says otherwise): the process and each of its
//! sidecars, every one as `bash -c` in `<droplet>/app` with the launcher's environment,
//! after sourcing `profile.d/*`, `app/.profile.d/*` and `app/.profile`. Each instance
//! has its own PORT, ids and identity certificate, and its sidecars' log sources name
//! its type (`APP/PROC/WORKER/SIDECAR/<NAME>/0`). All are codependent here: when one
//! exits, even with status 0, all are stopped (on CF only its own instance restarts).

use crate::app::App;
use crate::env::{self, Ids, Instance};
use crate::errors::Error;
use crate::http;
use crate::identity::Credentials;
use crate::netns::{self, Network};
use crate::out;
use crate::ports::{self, InstancePorts, SidecarPort};
use crate::result::Sidecar;
use crate::settings::Settings;
use crate::staging::{Area, Staged};
use anyhow::Context as _;
use cf_entrypoint::launcher::{self as cf_launcher, log_source};
use cf_entrypoint::process::{describe, running_as, Supervisor, TICK};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// How long one readiness probe or one GET may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// One instance of a process type, as Diego runs it: the process and its sidecars.
struct Planned<'a> {
    kind: &'a str,
    /// INSTANCE_INDEX: 0 up to `--instances`.
    index: u32,
    command: String,
    sidecars: Vec<&'a Sidecar>,
}

impl Planned<'_> {
    /// How the summary names the instance: `web`, or `web/1` when there are several.
    fn name(&self, instances: u32) -> String {
        match instances {
            1 => self.kind.to_string(),
            _ => format!("{}/{}", self.kind, self.index),
        }
    }
}

pub(crate) fn run(s: &Settings, app: &App, staged: &Staged, area: &Area) -> anyhow::Result<()> {
    let outcome = &staged.outcome;
    let mut planned = Vec::new();
    for kind in &s.processes {
        let command = outcome
            .process_types
            .get(kind)
            .map(|(command, _)| command.clone())
            .ok_or_else(|| Error::NoProcessType {
                wanted: kind.clone(),
                have: outcome.process_types.keys().cloned().collect(),
            })?;
        // `--instances N` of each type, as `cf scale TYPE -i N`.
        for index in 0..s.instances {
            planned.push(Planned {
                kind,
                index,
                command: command.clone(),
                sidecars: outcome.sidecars_for(kind),
            });
        }
    }
    let network = netns::choose(s)?;
    let shapes: Vec<_> = planned
        .iter()
        .map(|p| (p.kind, p.sidecars.clone()))
        .collect();
    let ports = match network {
        Network::Host => ports::plan(app, &shapes, s.port)?,
        Network::Own(_) => ports::plan_own(app, &shapes, s.port)?,
    };
    // Removed when the run ends, after each instance's own credentials.
    let creds_dir = RemovedAtTheEnd(area.path("instance-credentials"));
    let mut creds = Vec::new();
    // The instances' network helpers: stopped after the instances (dropped after `sup`).
    let mut nets = Supervisor::new(s.grace);
    let mut sup = Supervisor::new(s.grace);
    let mut started = Vec::new();
    let mut web_ports = Vec::new();
    for (n, (p, mine)) in planned.iter().zip(&ports).enumerate() {
        let ids = Ids::of_instance(&app.name, p.kind, p.index);
        // Each instance is its own container on CF, with its own identity.
        creds.push(Credentials::create(
            &creds_dir.0.join(n.to_string()),
            &ids,
            env::INSTANCE_IP,
        )?);
        let name = p.name(s.instances);
        let (joined, port) = match &network {
            Network::Host => (None, mine.port),
            Network::Own(ns) => {
                let listener = bind(mine.port)?;
                let joined = ns.start(&mut nets, &format!("{name}'s instance"), listener)?;
                (Some(joined), netns::INNER_PORT)
            }
        };
        if p.kind == "web" {
            web_ports.push(mine.port);
        }
        let overrides = mine.overrides();
        let instance = Launch {
            s,
            app,
            staged,
            kind: p.kind,
            index: p.index,
            name,
            port,
            host_port: mine.port,
            network: joined,
            ids: &ids,
            overrides: &overrides,
            creds: &creds[n],
        };
        let listens =
            |sp: &SidecarPort| listens_on(sp, &keeper_of(&planned, &ports, sp, s.instances));
        started.extend(instance.start_all(&mut sup, p, mine, &listens)?);
    }

    // Only web gets a route and a port health check; other types get Cloud
    // Controller's `process` health check: running is ready.
    for port in &web_ports {
        let url = format!("http://127.0.0.1:{port}");
        out::say(format!(
            "waiting up to {} s for the app to answer on {url}/",
            s.wait.as_secs()
        ));
        wait_ready(s, &mut sup, &mut nets, *port, &url)?;
    }
    for g in &sup.groups {
        if let Some((exe, argv)) = running_as(g.pid()) {
            out::say(format!(
                "[{}] pid {} runs {exe} ({argv})",
                source_of(&g.label),
                g.pid()
            ));
        }
    }
    for port in &web_ports {
        print_answers(s, *port, &format!("http://127.0.0.1:{port}"));
    }
    let urls: Vec<String> = web_ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/"))
        .collect();
    let head = match urls.len() {
        0 => format!(
            "{} runs {} (no web process, so no route)",
            app.name,
            s.processes.join(", ")
        ),
        1 => format!("{} answers at {}", app.name, urls[0]),
        _ => format!(
            "{} answers at {} (one port per instance)",
            app.name,
            urls.join(", ")
        ),
    };
    out::say(format!(
        "{head}\n  {}\n  droplet: {}{}\n  app files: {} (a copy of APP_DIR: edit there \
         to change what the running app reads, e.g. to try a rotation)",
        started.join("\n  "),
        staged.droplet.display(),
        s.droplet_tgz
            .as_ref()
            .map(|t| format!(" (and {})", t.display()))
            .unwrap_or_default(),
        staged.droplet.join("app").display()
    ));
    if !s.stop_after_answers {
        out::say("running; Ctrl-C stops the app and its sidecars");
    }
    loop {
        if let Some(err) = exited(&mut sup, &mut nets) {
            stop(&mut sup, &mut nets);
            return Err(err.into());
        }
        if s.stop_after_answers || s.interrupted.load(Ordering::SeqCst) {
            stop(&mut sup, &mut nets);
            return Ok(());
        }
        thread::sleep(TICK);
    }
}

/// The listening socket of an instance's `PORT` on this machine's loopback, for its
/// network helper to accept on.
fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).map_err(|_| {
        Error::PortInUse {
            port,
            what: format!("the loopback port of an instance, {port},"),
            holder: ports::holder(port),
        }
        .into()
    })
}

/// `, CONFIG_SERVER_PORT=8082`, and, for a port moved off the app's, why.
fn listens_on(sp: &SidecarPort, first: &str) -> String {
    match sp.moved_from {
        None => format!(", {}={}", sp.var, sp.port),
        Some(was) => format!(
            ", {}={} (in place of the app's {was}, which {first}'s instance uses)",
            sp.var, sp.port
        ),
    }
}

/// The process type whose instance kept the app's value of `sp`'s variable.
fn keeper_of(
    planned: &[Planned<'_>],
    ports: &[InstancePorts],
    sp: &SidecarPort,
    instances: u32,
) -> String {
    planned
        .iter()
        .zip(ports)
        .find(|(_, ip)| {
            ip.sidecars
                .iter()
                .any(|o| o.var == sp.var && o.moved_from.is_none())
        })
        .map(|(p, _)| p.name(instances))
        .unwrap_or_default()
}

/// A directory removed when the run ends, however it ends.
struct RemovedAtTheEnd(std::path::PathBuf);

impl Drop for RemovedAtTheEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

/// One instance of a process type: what all its processes share.
struct Launch<'a> {
    s: &'a Settings,
    app: &'a App,
    staged: &'a Staged,
    kind: &'a str,
    index: u32,
    /// `web`, or `web/1` with several instances.
    name: String,
    /// PORT: 8080 in an instance's own network, else the loopback port here.
    port: u16,
    /// Where PORT is reached from this machine.
    host_port: u16,
    /// The instance's own network, if it has one.
    network: Option<netns::Joined>,
    ids: &'a Ids,
    overrides: &'a [(String, String)],
    creds: &'a Credentials,
}

impl Launch<'_> {
    /// Starts the instance's sidecars, then its process; returns the summary's lines
    /// about them. `listens` words a sidecar's port.
    fn start_all(
        &self,
        sup: &mut Supervisor,
        p: &Planned<'_>,
        ports: &InstancePorts,
        listens: &dyn Fn(&SidecarPort) -> String,
    ) -> anyhow::Result<Vec<String>> {
        let outcome = &self.staged.outcome;
        let (process_mb, _) = self.app.process_memory(p.kind);
        let of = if self.name == "web" {
            String::new()
        } else {
            format!(" of {}", self.name)
        };
        let index = self.index;
        let mut lines = Vec::new();
        for sc in &p.sidecars {
            // Cloud Controller: a sidecar's MEMORY_LIMIT is its own memory, else the process's.
            let memory = sc
                .memory
                .filter(|m| *m > 0)
                .map_or(process_mb, |m| m as u64);
            let source = log_source(p.kind, Some(&sc.name), index);
            let pid = self.start(
                sup,
                &format!("sidecar {}", sc.name),
                &source,
                &sc.command,
                memory,
            )?;
            let listens = ports
                .sidecars
                .iter()
                .find(|sp| sp.sidecar == sc.name)
                .map(listens)
                .unwrap_or_default();
            lines.push(format!(
                "sidecar {}{of}: pid {pid}, MEMORY_LIMIT={memory}m{listens}",
                sc.name
            ));
        }
        let mb = (process_mb as i64 - outcome.sidecar_memory(p.kind)).max(0) as u64;
        let pid = self.start(
            sup,
            &format!("the {} process", self.name),
            &log_source(p.kind, None, index),
            &p.command,
            mb,
        )?;
        let route = match (p.kind == "web", self.network.is_some()) {
            (true, false) => String::new(),
            (true, true) => format!(" (at http://127.0.0.1:{}/)", self.host_port),
            (false, false) => " (no route)".to_string(),
            (false, true) => format!(" (no route; reached at 127.0.0.1:{} here)", self.host_port),
        };
        let network = match self.network {
            Some(_) => ", its own network",
            None => "",
        };
        lines.insert(
            0,
            format!(
                "{}: pid {pid}, PORT={}{route}, MEMORY_LIMIT={mb}m{network}",
                self.name, self.port
            ),
        );
        Ok(lines)
    }

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
            host_port: self.host_port,
            index: self.index,
            memory_mb,
            process_type: self.kind,
            ids: self.ids,
            overrides: self.overrides,
            cert: &self.creds.cert,
            key: &self.creds.key,
        };
        let vars = env::running(self.s, self.app, &instance);
        let bash = match &self.network {
            Some(joined) => joined.command("bash"),
            None => Command::new("bash"),
        };
        let mut cmd = cf_launcher::command_with(bash, &self.staged.droplet, command);
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
        .map_or(label, |(_, rest)| rest.trim_end_matches(']'))
}

/// The first process of the instances, or of their network helpers, that has exited.
fn exited(sup: &mut Supervisor, nets: &mut Supervisor) -> Option<Error> {
    sup.reap();
    nets.reap();
    let g = sup.exited().or_else(|| nets.exited())?;
    Some(Error::Exited {
        label: g.label.clone(),
        pid: g.pid(),
        status: g.status.map(describe).unwrap_or_default(),
    })
}

/// Stops the instances, then their network helpers.
fn stop(sup: &mut Supervisor, nets: &mut Supervisor) {
    stop_instances(sup);
    nets.stop_all();
}

fn stop_instances(sup: &mut Supervisor) {
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
fn wait_ready(
    s: &Settings,
    sup: &mut Supervisor,
    nets: &mut Supervisor,
    port: u16,
    url: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + s.wait;
    loop {
        if let Some(err) = exited(sup, nets) {
            stop(sup, nets);
            return Err(err.into());
        }
        if s.interrupted.load(Ordering::SeqCst) {
            stop(sup, nets);
            return Err(Error::Interrupted {
                during: "waiting for the app to answer".into(),
            }
            .into());
        }
        if http::get(port, "/", PROBE_TIMEOUT).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            stop(sup, nets);
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
