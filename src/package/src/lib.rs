//! `package`: the buildpack's packager and the one tool that reads and writes
//! `manifest.yml` for scripts and tests, on the typed manifest that `supply` loads.
//!
//!   package zip    the zip for `cf create-buildpack` (scripts/package runs it)
//!   package pin    pin a build of a dependency: version, uri, sha256, stacks, default
//!   package sidecar declare a sidecar: which dependency, executable, memory, processes
//!   package get    print a value
//!   package dev    a development buildpack directory pinned to local artifacts
//!   package verify check that a uri serves the pinned bytes
//!
//! Exit codes (all subcommands): 0 done, 1 internal error, 2 usage, 3 configuration
//! (manifest.yml, a missing file, a bad value), 4 artifact (download or checksum),
//! 5 filesystem. Worded in `errors.rs`.

// The library declares only what it compiles in: its binary's SBOM and audit data list
// no more. (Its binary and tests see its dependencies too, and are not checked.)
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

// Named only to give zip's deflate its pure-Rust backend (Cargo.toml).
use flate2 as _;

mod dev;
mod edit;
mod errors;
mod pin;
mod verify;
mod zip;

use buildpack::digest::Sha256;
use buildpack::errors::exit;
use buildpack::log::StagingLog;
use buildpack::manifest::{parse_uri, valid_name, Manifest};
use buildpack::redact::Redacted;
use buildpack::{detail, step};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The buildpack's packager, and the tool that owns manifest.yml. Without a
/// subcommand it packages, as `package zip` does.
#[derive(Parser)]
#[command(
    name = "package",
    version,
    about = "The buildpack's packager, and the one tool that reads and writes manifest.yml",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    zip: ZipCli,
}

#[derive(clap::Args)]
struct ZipCli {
    /// The buildpack's source directory (holds manifest.yml and VERSION)
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The compiled, portable supply binary that becomes bin/supply
    #[arg(long, required = true)]
    supply: Option<PathBuf>,
    /// Put every dependency in the zip, for foundations without internet
    #[arg(long)]
    cached: bool,
    /// Bind the buildpack to one stack and keep only that stack's dependencies
    #[arg(long, value_parser = stack_name)]
    stack: Option<String>,
    /// Where to write the zip
    #[arg(long, default_value = "build")]
    output: PathBuf,
    /// A directory searched for dependency files by name before the network
    /// (local reproducible builds, mirrors); each is verified against its pin
    #[arg(long = "artifact-dir")]
    artifact_dirs: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Package the buildpack in ROOT into a zip for `cf create-buildpack` (the default)
    Zip(ZipCli),
    /// Pin a build of a dependency and its default_versions entry
    ///
    /// Sets NAME's version, uri, sha256 and stacks, and the matching
    /// default_versions entry. Replaces the default build (the one for --stack, when
    /// there is one per stack), or adds NAME. Comments and order stay; the result must
    /// load as exactly that change, else nothing is written.
    Pin {
        /// The dependency, as named in dependencies and default_versions
        name: String,
        #[arg(long)]
        version: String,
        /// https://, http:// or file://
        #[arg(long)]
        uri: String,
        #[arg(long)]
        sha256: Sha256,
        /// A stack of this build (repeat for several); default: the replaced build's
        #[arg(long = "stack", value_parser = stack_name)]
        stacks: Vec<String>,
        #[arg(long, default_value = "manifest.yml")]
        manifest: PathBuf,
        /// Write the pinned manifest here instead (`-` for stdout), e.g. to diff it
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Declare a sidecar, or change the one of that name
    ///
    /// Writes its entry in the manifest's sidecars: section: dependency carries it (pinned first), its executable, memory
    /// and process types. Comments and order stay; nothing is written on any error
    Sidecar {
        /// The sidecar's name: launch.yml's `type`, shown in logs
        name: String,
        /// The dependency that carries it (default: NAME)
        #[arg(long)]
        dependency: Option<String>,
        /// Its path inside the .tgz, or the installed name of a bare executable
        #[arg(long)]
        executable: String,
        /// An argument appended to its command (repeat for several)
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// limits.memory in MB, carved out of the app's memory
        #[arg(long)]
        memory_mb: u32,
        /// A process type it runs beside (repeat for several; default web)
        #[arg(long = "process-type")]
        process_types: Vec<String>,
        #[arg(long, default_value = "manifest.yml")]
        manifest: PathBuf,
    },
    /// Print a value of the manifest
    ///
    /// Prints the value at KEY, one line per list item. KEY is language, stack,
    /// pre_package, include_files, default_versions[NAME], dependencies[NAME].FIELD
    /// (its default build; FIELD is name, version, uri, sha256, cf_stacks or file) or
    /// sidecars[NAME].FIELD; NAME may be an index
    Get {
        key: String,
        /// Of a dependency with one build per stack: the build for this stack
        #[arg(long, value_parser = stack_name)]
        stack: Option<String>,
        #[arg(long, default_value = "manifest.yml")]
        manifest: PathBuf,
    },
    /// Make a development buildpack directory pinned to local artifacts
    ///
    /// Lays out OUT as the zip is, with each dependency NAME=FILE pinned to that local
    /// file (a file:// uri and its sha256)
    Dev {
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// The supply binary that becomes bin/supply (e.g. target/debug/supply)
        #[arg(long)]
        supply: PathBuf,
        /// The directory to create (missing or empty)
        #[arg(long)]
        out: PathBuf,
        /// NAME=FILE: pin dependency NAME to the artifact FILE
        #[arg(value_parser = artifact, required = true)]
        artifacts: Vec<(String, PathBuf)>,
    },
    /// Check that a uri serves the pinned bytes
    ///
    /// Fetches it as staging does (same client, proxies, CAs, retries): the pin of NAME in the manifest, --uri and --sha256, or with --all every build of every dependency and the prebuilt supply of bin/supply.lock (the git-URL route) beside the manifest
    Verify {
        /// The dependency whose pinned uri to check (its default build)
        #[arg(required_unless_present_any = ["uri", "all"], conflicts_with = "all")]
        name: Option<String>,
        /// Every pinned uri: each build of each dependency, and bin/supply.lock's
        #[arg(long, conflicts_with_all = ["uri", "stack"])]
        all: bool,
        #[arg(long, requires = "sha256")]
        uri: Option<String>,
        #[arg(long, requires = "uri")]
        sha256: Option<Sha256>,
        /// Of a dependency with one build per stack: the build for this stack
        #[arg(long, value_parser = stack_name)]
        stack: Option<String>,
        #[arg(long, default_value = "manifest.yml")]
        manifest: PathBuf,
    },
}

fn stack_name(s: &str) -> Result<String, String> {
    if valid_name(s) {
        Ok(s.to_string())
    } else {
        Err("a stack name is letters, digits, '-' or '_', such as cflinuxfs4".into())
    }
}

/// Checks a `--uri` here rather than in clap, whose error would print it whole:
/// a presigned uri carries its credentials in the query. Its secrets are scrubbed
/// from every line the tool prints from now on.
fn checked_uri(s: &str) -> anyhow::Result<()> {
    let url = parse_uri(s).map_err(|problem| errors::PackError::Argument {
        arg: "--uri",
        problem,
    })?;
    buildpack::redact::remember_url(&url);
    Ok(())
}

fn artifact(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, file)) if valid_name(name) && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err("expected NAME=FILE, such as config-server=target/debug/config-server".into()),
    }
}

/// Runs the packager with this process's arguments and environment; returns the exit
/// code (0 done, 1 internal, 2 usage, 3 configuration, 4 artifact, 5 filesystem).
#[must_use]
pub fn main_with_args() -> i32 {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Zip(cli.zip));
    let env = buildpack::settings::lossy_env(std::env::vars_os());
    // Where stdout carries a value (get, pin --output -), the log goes to stderr.
    let out: Box<dyn Write + Send> = match command {
        Command::Get { .. } | Command::Pin { .. } | Command::Sidecar { .. } => {
            Box::new(std::io::stderr())
        }
        _ => Box::new(std::io::stdout()),
    };
    StagingLog::new(out, buildpack::log::debug_wanted(env.get("BP_DEBUG"))).install();
    match run(command, &env) {
        Ok(()) => exit::OK,
        Err(e) => {
            let (code, msg) = errors::report(&e);
            tracing::error!("{msg}");
            code
        }
    }
}

fn run(command: Command, env: &HashMap<String, String>) -> anyhow::Result<()> {
    match command {
        Command::Zip(z) => zip::run(
            &zip::ZipArgs {
                root: &z.root,
                supply: z.supply.as_deref().unwrap_or(Path::new("")),
                cached: z.cached,
                stack: z.stack.as_deref(),
                output: &z.output,
                artifact_dirs: &z.artifact_dirs,
            },
            env,
        ),
        Command::Pin {
            name,
            version,
            uri,
            sha256,
            stacks,
            manifest,
            output,
        } => pin_command(
            pin::Pin {
                name,
                version,
                uri,
                sha256,
                stacks,
            },
            &manifest,
            output.as_deref(),
        ),
        Command::Sidecar {
            name,
            dependency,
            executable,
            args,
            memory_mb,
            process_types,
            manifest,
        } => sidecar_command(
            pin::SidecarSpec {
                dependency: dependency.unwrap_or_else(|| name.clone()),
                name,
                executable,
                args,
                memory_mb,
                process_types: if process_types.is_empty() {
                    vec!["web".into()]
                } else {
                    process_types
                },
            },
            &manifest,
        ),
        Command::Get {
            key,
            stack,
            manifest,
        } => get_command(&key, stack.as_deref(), &manifest),
        Command::Dev {
            root,
            supply,
            out,
            artifacts,
        } => dev::run(&dev::DevArgs {
            root: &root,
            supply: &supply,
            out: &out,
            artifacts: &artifacts,
        }),
        Command::Verify {
            all: true,
            manifest,
            ..
        } => verify::all(&manifest, env),
        Command::Verify {
            name,
            uri,
            sha256,
            stack,
            manifest,
            ..
        } => verify_command(name, uri, sha256, stack.as_deref(), &manifest, env),
    }
}

/// `package pin`: the build `p` into `manifest`, or onto `output` (`-`: stdout).
fn pin_command(p: pin::Pin, manifest: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    checked_uri(&p.uri)?;
    let text = zip::read(manifest)?;
    let pinned = pin::pin(&text, manifest, &p)?;
    for w in &pinned.warnings {
        tracing::warn!("{w}");
    }
    let pin::Pin {
        name,
        version,
        uri,
        sha256,
        ..
    } = &p;
    match output {
        Some(out) if out == Path::new("-") => {
            std::io::stdout().write_all(pinned.text.as_bytes())?;
        }
        Some(out) => write_atomic(out, &pinned.text, Some(manifest))?,
        None if pinned.text == text => {
            detail!(
                "{} already pins {name} {version} at {}",
                manifest.display(),
                Redacted::str(uri)
            );
        }
        None => {
            write_atomic(manifest, &pinned.text, Some(manifest))?;
            step!("Pinned {name} {version} in {}", manifest.display());
            detail!("uri:    {}", Redacted::str(uri));
            detail!("sha256: {sha256}");
        }
    }
    Ok(())
}

/// `package sidecar`: declares `spec` in `manifest`.
fn sidecar_command(spec: pin::SidecarSpec, manifest: &Path) -> anyhow::Result<()> {
    let text = zip::read(manifest)?;
    let new = pin::sidecar(&text, manifest, &spec)?;
    if new != text {
        write_atomic(manifest, &new, Some(manifest))?;
    }
    step!("Sidecar {} in {}", spec.name, manifest.display());
    detail!(
        "{} from {}, {} MB, beside [{}]",
        spec.executable,
        spec.dependency,
        spec.memory_mb,
        spec.process_types.join(", ")
    );
    Ok(())
}

/// `package get`: the values at `key`, one a line on stdout.
fn get_command(key: &str, stack: Option<&str>, manifest: &Path) -> anyhow::Result<()> {
    let m = Manifest::parse(&zip::read(manifest)?, manifest)?;
    let values = pin::get(&m, manifest, key, stack)?;
    let mut out = std::io::stdout();
    for v in values {
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// `package verify`: a uri and its sha256 from the command line, or a dependency's
/// build from `manifest`.
fn verify_command(
    name: Option<String>,
    uri: Option<String>,
    sha256: Option<Sha256>,
    stack: Option<&str>,
    manifest: &Path,
    env: &HashMap<String, String>,
) -> anyhow::Result<()> {
    if let (Some(uri), Some(sha256)) = (uri, sha256) {
        checked_uri(&uri)?;
        let name = name.unwrap_or_else(|| "the artifact".into());
        return verify::run(&name, "", &uri, sha256, env);
    }
    let m = Manifest::parse(&zip::read(manifest)?, manifest)?;
    let name = name.unwrap_or_default();
    pin::known_dependency(&m, manifest, &name)?;
    let dep = m.pick(&name, stack)?;
    verify::run(&dep.name, &dep.version, &dep.uri_text, dep.sha256, env)
}

/// Replaces `path` with `text` all at once: a temp file beside it, with the mode of
/// `like` (else 0644), fsynced, renamed over it, then the directory fsynced. On any
/// failure `path` is as it was. A symlink stays one: the file it leads to is replaced,
/// as an editor would write it.
fn write_atomic(path: &Path, text: &str, like: Option<&Path>) -> anyhow::Result<()> {
    use buildpack::errors::Error;
    use std::os::unix::fs::PermissionsExt;
    let target = std::fs::canonicalize(path).ok();
    let path = target.as_deref().unwrap_or(path);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = like
        .and_then(|l| std::fs::metadata(l).ok())
        .map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::Builder::new()
        .prefix(".manifest-")
        .tempfile_in(dir)
        .map_err(Error::write(dir))?;
    tmp.write_all(text.as_bytes()).map_err(Error::write(path))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(Error::write(path))?;
    tmp.as_file().sync_all().map_err(Error::write(path))?;
    tmp.persist(path).map_err(|e| Error::write(path)(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
