//! `config-server`: a Cloud Foundry sidecar that hands the app its secret
//! configuration over `127.0.0.1:$CONFIG_SERVER_PORT`, so the app never parses
//! `VCAP_SERVICES` itself and no secret is reachable from outside the container.
//!
//! See README.md for the variables, endpoints and sources; exit codes are in
//! [`error`].

mod bindings;
mod config;
mod conn;
mod document;
pub mod error;
mod parse;
mod reload;
mod requestlog;
mod routes;
mod sanitize;
mod server;
mod source;
mod wait;
mod watch;

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
    let loaded = source::load(&config.source).inspect_err(noted)?;
    if loaded.origin == Origin::Demo {
        eprintln!(
            "warning: no configuration found (CONFIG_SERVER_FILE is unset, and no bound service \
             instance is named by CONFIG_SERVER_SERVICE or tagged {}): serving the built-in \
             demo document",
            source::TAG
        );
    }
    server::serve(config, loaded).inspect_err(noted)
}
