//! `config-server`: a Cloud Foundry sidecar that hands the app its secret
//! configuration over `127.0.0.1:$CONFIG_SERVER_PORT`, so the app never parses
//! `VCAP_SERVICES` itself and no secret is reachable from outside the container.
//!
//! See README.md for the variables, endpoints and sources; exit codes are in
//! [`error`].

// The library declares only what it compiles in: its binary's SBOM and audit data list
// no more. (Its binary and tests see its dependencies too, and are not checked.)
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod bindings;
mod config;
mod conn;
mod document;
mod encode;
pub mod error;
mod metrics;
mod parse;
mod reload;
mod render;
mod requestlog;
mod routes;
mod sanitize;
mod server;
mod source;
mod token;
mod wait;
mod watch;
mod wire;

use std::collections::HashMap;
use std::process::ExitCode;

use config::Config;
use error::Error;
use source::Origin;

/// Runs the sidecar with this process's environment until it is stopped; returns the
/// exit code (see [`error`]).
#[must_use]
pub fn main_with_env() -> ExitCode {
    // Lossy, so a non-UTF-8 value fails loudly later (e.g. "cannot read it")
    // instead of silently counting as unset.
    let env: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.first().map(String::as_str) == Some("wait") {
        return wait::main(&args[1..], &env);
    }
    match run(&env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error::report(&err));
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(env: &HashMap<String, String>) -> Result<(), Error> {
    let config = Config::from_env(env)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    // What `config-server wait` reports from the app's side if this start fails.
    let note = wait::Note::new(env, config.port);
    if let Some(note) = &note {
        note.clear();
    }
    let noted = |err: &Error| {
        if let Some(note) = &note {
            note.write(err);
        }
    };
    // Every setting is checked before any file is read or written.
    let token = config
        .token
        .as_ref()
        .map(token::read)
        .transpose()
        .inspect_err(noted)?;
    let files = render::Files::from_setting(config.render.as_deref(), &config.app_dir)
        .inspect_err(noted)?;
    let loaded = source::load(&config.source).inspect_err(noted)?;
    if loaded.origin == Origin::Demo {
        eprintln!(
            "warning: no configuration found (CONFIG_SERVER_FILE is unset, and no bound service \
             instance is named by CONFIG_SERVER_SERVICE or tagged {}): serving the built-in \
             demo document",
            source::TAG
        );
    }
    // Written before the sidecar listens: an app that waits for it finds them.
    files.write_all(&loaded.document).inspect_err(noted)?;
    server::serve(config, loaded, files, token).inspect_err(noted)
}
