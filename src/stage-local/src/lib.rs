//! `stage-local`: stages an app with Cloud Foundry buildpacks by the rules of CF's
//! builder, then runs the droplet by the rules of CF's launcher. See docs/stage-local.md
//! and `stage-local --help`; exit codes are in [`errors::exit`].

mod app;
mod buildpack;
mod env;
pub mod errors;
mod files;
mod final_standin;
mod http;
mod identity;
mod launch_yml;
mod launcher;
mod out;
mod ports;
mod process;
mod result;
mod settings;
mod staging;
mod tarball;

use clap::Parser as _;
use errors::{exit, report};
use settings::{Cli, Settings};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Runs stage-local with this process's arguments and environment; returns the exit
/// code (see [`errors::exit`]).
#[must_use]
pub fn main_with_args() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    // Lossy: a non-UTF-8 variable must not panic; it is passed on as best it can be.
    let env: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(signal, interrupted.clone()) {
            out::warn(format!("cannot catch signal {signal}: {e}"));
        }
    }
    process::become_subreaper();
    match Settings::resolve(cli, &env, interrupted)
        .map_err(anyhow::Error::from)
        .and_then(|s| run(&s))
    {
        Ok(()) => exit::OK,
        Err(e) => {
            let (code, msg) = report(&e);
            eprintln!("stage-local: error: {msg}");
            code
        }
    }
}

fn run(s: &Settings) -> anyhow::Result<()> {
    let mut app = app::App::load(&s.app_dir)?;
    app.set_env(&s.env);
    // Held until this run ends: no other run may replace the droplet under the app.
    let area = staging::Area::open(&s.work_dir, &app)?;
    let staged = staging::stage(s, &app, &area)?;
    out::say(format!(
        "staged {}: droplet {}{}, result {}\n{}",
        app.name,
        staged.droplet.display(),
        s.droplet_tgz
            .as_ref()
            .map(|t| format!(" (and {})", t.display()))
            .unwrap_or_default(),
        staged.result_json.display(),
        staged.outcome.summary(&app)
    ));
    staged.outcome.check(&app)?;
    if s.stage_only {
        return Ok(());
    }
    launcher::run(s, &app, &staged, &area)
}
