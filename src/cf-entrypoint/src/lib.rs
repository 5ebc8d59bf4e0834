//! `cf-entrypoint`: the entrypoint of the OCI image stage-local writes. It runs one
//! instance of a process type of the droplet (`web` unless told otherwise) as a Diego
//! cell does: every sidecar whose `sidecar_for` names that type, then the process
//! itself, each through CF's launcher steps ([`launcher`]) with its own MEMORY_LIMIT,
//! and their output prefixed as `cf logs` shows it. Like Diego's codependent actions,
//! when any of them exits the others are stopped and the container exits with that
//! process's code. SIGTERM (or SIGINT) stops them all: SIGTERM to each, SIGKILL to what
//! is left after the grace period.
//!
//! The library also holds what stage-local shares with it: the launcher's script and
//! environment, the process supervisor, and the plan's format.

pub mod launcher;
pub mod plan;
pub mod process;

use plan::{Plan, DROPLET_ROOT, PLAN_PATH};
use process::{describe, Supervisor, TICK};
use rustix::process::WaitStatus;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit codes of `cf-entrypoint`. When a process of the instance exits, the entrypoint
/// exits with that process's code (128 + N when signal N killed it), so its own
/// failures take the codes `docker run` and `podman run` use for theirs.
pub mod exit {
    /// Stopped on request (SIGTERM, SIGINT): every process was stopped.
    pub const OK: i32 = 0;
    /// Wrong command line, an unreadable plan, or a process type the droplet lacks.
    pub const ENTRYPOINT: i32 = 125;
    /// A process could not be started (no `bash` in the image).
    pub const CANNOT_START: i32 = 126;
}

const USAGE: &str =
    "usage: cf-entrypoint [--grace-period SECONDS] [--plan FILE] [--root DIR] [PROCESS_TYPE]

Runs PROCESS_TYPE (default: web) of the droplet at --root (default: /home/vcap) and the
sidecars its plan (default: /lifecycle/processes.json) gives it, as CF's launcher and
Diego run them. --grace-period (default: 10) is how long processes get between SIGTERM
and SIGKILL. Exits with the code of the first process that exits; 0 when stopped by
SIGTERM or SIGINT; 125 for a bad command line, plan or process type; 126 when a process
cannot be started.";

/// The command line, resolved.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    kind: String,
    plan: PathBuf,
    root: PathBuf,
    grace: Duration,
}

impl Options {
    /// `None` for `--help`.
    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut o = Options {
            kind: "web".into(),
            plan: PLAN_PATH.into(),
            root: DROPLET_ROOT.into(),
            grace: Duration::from_secs(10),
        };
        let mut kind = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--grace-period" => {
                    let v = value(arg)?;
                    let secs = v.parse::<u64>().map_err(|_| {
                        format!("--grace-period {v:?} is not a whole number of seconds")
                    })?;
                    o.grace = Duration::from_secs(secs);
                }
                "--plan" => o.plan = value(arg)?.into(),
                "--root" => o.root = value(arg)?.into(),
                flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
                k if kind.is_none() => kind = Some(k.to_string()),
                extra => return Err(format!("one process type only, not also {extra:?}")),
            }
        }
        if let Some(k) = kind {
            o.kind = k;
        }
        Ok(Some(o))
    }
}

/// Runs the entrypoint with this process's arguments and environment; returns the exit
/// code (see [`exit`]).
#[must_use]
pub fn main_with_args() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return exit::OK;
        }
        Err(problem) => {
            eprintln!("cf-entrypoint: error: {problem}\n{USAGE}");
            return exit::ENTRYPOINT;
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    // As a container's PID 1, a signal without a handler is ignored: these are needed.
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(signal, interrupted.clone()) {
            say(format!("warning: cannot catch signal {signal}: {e}"));
        }
    }
    process::become_subreaper();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let started = Plan::read(&opts.plan)
        .map_err(|problem| (exit::ENTRYPOINT, problem))
        .and_then(|plan| {
            let vcap = std::env::var("VCAP_APPLICATION").ok().map(|cc| {
                launcher::vcap_application(
                    &cc,
                    &env("INSTANCE_GUID"),
                    &env("PORT"),
                    &env("INSTANCE_INDEX"),
                )
            });
            start(&opts, &plan, vcap.as_deref())
        });
    match started {
        Ok(sup) => supervise(sup, &interrupted),
        Err((code, problem)) => {
            eprintln!("cf-entrypoint: error: {problem}");
            code
        }
    }
}

/// Starts the sidecars of `opts.kind`, then the process; a failure to start one stops
/// those already started (the supervisor's drop) and ends the run.
fn start(opts: &Options, plan: &Plan, vcap: Option<&str>) -> Result<Supervisor, (i32, String)> {
    let Some(process) = plan.processes.get(&opts.kind) else {
        return Err((
            exit::ENTRYPOINT,
            format!(
                "the droplet has no {:?} process type; it has: {}",
                opts.kind,
                plan.processes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let mut sup = Supervisor::new(opts.grace);
    let runs = process
        .sidecars
        .iter()
        .map(|s| (Some(s.name.as_str()), s.command.as_str(), s.memory_mb))
        .chain([(None, process.command.as_str(), process.memory_mb)]);
    for (sidecar, command, memory_mb) in runs {
        let source = launcher::log_source(&opts.kind, sidecar, 0);
        let mut cmd = launcher::command(&opts.root, command);
        cmd.envs(launcher::launcher_env(&opts.root))
            .env("MEMORY_LIMIT", format!("{memory_mb}m"));
        if let Some(v) = vcap {
            cmd.env("VCAP_APPLICATION", v);
        }
        match sup.spawn(&mut cmd, &source, Some(&source)) {
            Ok(g) => say(format!(
                "started [{source}] as pid {} with MEMORY_LIMIT={memory_mb}m: {command}",
                g.pid()
            )),
            Err(e) => {
                return Err((
                    exit::CANNOT_START,
                    format!("cannot start bash for [{source}]: {e}"),
                ))
            }
        }
    }
    Ok(sup)
}

/// Waits until a process exits or a stop is asked, then stops them all.
fn supervise(mut sup: Supervisor, interrupted: &AtomicBool) -> i32 {
    let code = loop {
        sup.reap();
        if let Some(g) = sup.exited() {
            let status = g.status.map(describe).unwrap_or_default();
            say(format!(
                "[{}] exited with {status}: stopping the others, as Diego stops the \
                 codependent processes of an instance",
                g.label
            ));
            break g.status.map_or(exit::ENTRYPOINT, code_of);
        }
        if interrupted.load(Ordering::SeqCst) {
            say("stop requested: SIGTERM to every process, SIGKILL after the grace period");
            break exit::OK;
        }
        std::thread::sleep(TICK);
    };
    let stopped = sup.stop_all();
    for label in &stopped.killed {
        say(format!(
            "warning: [{label}] ignored SIGTERM for the whole grace period; it got SIGKILL"
        ));
    }
    for label in &stopped.left {
        say(format!(
            "warning: [{label}] left processes that escaped its process group"
        ));
    }
    say(format!("stopped; exiting with {code}"));
    code
}

/// A status as a shell reports it: the exit code, or 128 + the signal.
fn code_of(status: WaitStatus) -> i32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => exit::ENTRYPOINT,
    }
}

/// One of the entrypoint's own lines, on stdout with the processes' lines.
fn say(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "cf-entrypoint: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(
            &args
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn the_command_line_defaults_to_web_in_the_droplet_of_the_image() {
        let o = parse(&[]).expect("ok").expect("not help");
        assert_eq!(o.kind, "web");
        assert_eq!(o.root, PathBuf::from("/home/vcap"));
        assert_eq!(o.plan, PathBuf::from("/lifecycle/processes.json"));
        assert_eq!(o.grace, Duration::from_secs(10));
        let o = parse(&["--grace-period", "3", "worker"])
            .expect("ok")
            .expect("not help");
        assert_eq!(
            (o.kind.as_str(), o.grace),
            ("worker", Duration::from_secs(3))
        );
        assert_eq!(parse(&["--help"]), Ok(None));
        for bad in [
            &["--grace-period", "x"][..],
            &["--nope"],
            &["a", "b"],
            &["--plan"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn statuses_become_exit_codes_as_a_shell_gives_them() {
        let mut sup = Supervisor::new(Duration::from_secs(1));
        let mut sh = std::process::Command::new("bash");
        sh.args(["-c", "exit 7"]);
        sup.spawn(&mut sh, "seven", None).expect("spawn");
        let mut sh = std::process::Command::new("bash");
        sh.args(["-c", "kill -9 $$"]);
        sup.spawn(&mut sh, "killed", None).expect("spawn");
        let never = AtomicBool::new(false);
        let seven = sup.wait(0, &never).expect("status");
        let killed = sup.wait(1, &never).expect("status");
        assert_eq!((code_of(seven), code_of(killed)), (7, 137));
    }
}
