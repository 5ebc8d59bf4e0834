//! `stage-local`: stages an app with Cloud Foundry buildpacks by the rules of CF's
//! builder, then runs the droplet by the rules of CF's launcher. See docs/stage-local.md
//! and `stage-local --help`; exit codes are in [`errors::exit`].

// The library declares only what it compiles in: its binary's SBOM and audit data list
// no more. (Its binary and tests see its dependencies too, and are not checked.)
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod app;
mod buildpack;
mod env;
pub mod errors;
mod files;
mod final_standin;
mod forward;
mod http;
mod identity;
mod image;
mod kube;
mod launch_yml;
mod launcher;
mod netns;
mod out;
mod ports;
mod result;
mod settings;
mod staging;
mod tarball;

use anyhow::Context as _;
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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == netns::HELPER) {
        return netns::helper_main(&args[2..]);
    }
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
    cf_entrypoint::process::become_subreaper();
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
    // The image's inputs are read before anything is staged: a bad --base changes nothing.
    let image_inputs = s
        .image
        .as_ref()
        .map(|i| image_inputs(s, i, &app))
        .transpose()?;
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
    if let (Some(i), Some(inputs)) = (&s.image, &image_inputs) {
        write_image(s, i, inputs, &app, &staged, &area)?;
    }
    if s.stage_only {
        return Ok(());
    }
    launcher::run(s, &app, &staged, &area)
}

/// What an image is made from besides the droplet: its base and its entrypoint.
struct ImageInputs {
    base: image::base::Base,
    standin: bool,
    entrypoint: Vec<u8>,
}

fn image_inputs(
    s: &Settings,
    i: &settings::ImageSettings,
    app: &app::App,
) -> anyhow::Result<ImageInputs> {
    let entrypoint = std::fs::read(&i.entrypoint)
        .with_context(|| format!("cannot read {}", i.entrypoint.display()))?;
    let (base, standin) = if let Some(path) = &i.base {
        let base = image::base::open(path)?;
        out::say(format!(
            "the image's base: {} ({} layer(s))",
            path.display(),
            base.layers.len()
        ));
        (base, false)
    } else {
        let recipe = image::standin::Recipe::for_app(&app.dir);
        let (base, _) = image::standin::ensure(&recipe, &s.work_dir.join("bases"))?;
        (base, true)
    };
    Ok(ImageInputs {
        base,
        standin,
        entrypoint,
    })
}

/// Writes the image (and the Kubernetes objects) of the staged droplet.
fn write_image(
    s: &Settings,
    i: &settings::ImageSettings,
    inputs: &ImageInputs,
    app: &app::App,
    staged: &staging::Staged,
    area: &staging::Area,
) -> anyhow::Result<()> {
    let plan = image::plan(app, &staged.outcome)?;
    let web_memory = plan.processes.get("web").map_or(0, |p| p.memory_mb);
    let name = image::name_of(&app.name);
    let parts = image::Parts {
        name: name.clone(),
        base: &inputs.base,
        droplet: &staged.droplet,
        entrypoint: &inputs.entrypoint,
        plan,
        env: env::image(s, app, image::PORT, web_memory),
    };
    let started = std::time::Instant::now();
    let digest = image::write(&parts, &i.targets, &area.root)?;
    image::report(
        &name,
        &digest,
        &i.targets,
        inputs.standin,
        started.elapsed(),
    );
    if let Some(file) = &i.kube {
        kube::Kube {
            app: &app.name,
            image: &name,
            port: image::PORT,
            memory_mb: app.process_memory("web").0,
            vcap_services: &s.vcap_services,
            grace_seconds: s.grace.as_secs(),
        }
        .write(file)?;
        out::say(format!(
            "wrote a Deployment, a Service and a Secret for {name} at {} (podman kube play, \
             kubectl apply)",
            file.display()
        ));
    }
    Ok(())
}
