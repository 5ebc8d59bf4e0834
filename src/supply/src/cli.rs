//! `bin/supply BUILD_DIR CACHE_DIR DEPS_DIR DEPS_IDX`, as Cloud Foundry calls it: the
//! command line and the environment, read once into a [`Context`].

use crate::supply::{run, Context};
use buildpack::errors::{exit, report};
use buildpack::log::StagingLog;
use buildpack::settings::DIR_VAR;
use clap::Parser;
use std::path::PathBuf;

/// Installs a verified sidecar into the droplet and declares it in launch.yml.
///
/// Cloud Foundry runs this during staging for every buildpack listed before the
/// app's own. Exit codes: 0 staged, 1 internal error, 2 usage, 3 configuration,
/// 4 artifact (download, checksum, archive), 5 filesystem.
#[derive(Parser)]
#[command(name = "supply", version, about, long_about)]
struct Args {
    /// The app's files (/tmp/app on CF)
    build_dir: PathBuf,
    /// This buildpack's cache, kept between stagings
    cache_dir: PathBuf,
    /// Where buildpacks install dependencies (/home/vcap/deps at run time)
    deps_dir: PathBuf,
    /// This buildpack's index in DEPS_DIR, as given: 0, 03 ...
    deps_idx: String,
}

/// Runs one staging with this process's arguments and environment; returns the exit
/// code (see [`buildpack::errors::exit`]).
#[must_use]
pub fn main_with_args() -> i32 {
    let args = Args::parse();
    let env = buildpack::settings::lossy_env(std::env::vars_os());
    StagingLog::new(
        Box::new(std::io::stdout()),
        buildpack::log::debug_wanted(env.get("BP_DEBUG")),
    )
    .install();
    match buildpack_dir(env.get(DIR_VAR)) {
        Ok(buildpack_dir) => {
            let ctx = Context {
                build_dir: args.build_dir,
                cache_dir: args.cache_dir,
                deps_dir: args.deps_dir,
                deps_idx: args.deps_idx,
                buildpack_dir,
                env,
                now: std::time::SystemTime::now(),
            };
            match run(&ctx) {
                Ok(()) => exit::OK,
                Err(e) => fail(&e.into()),
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(err: &anyhow::Error) -> i32 {
    let (code, msg) = report(err);
    tracing::error!("{msg}");
    code
}

/// The parent of the directory holding this executable, symlinks resolved, unless
/// SIDECAR_BUILDPACK_DIR overrides it.
fn buildpack_dir(overridden: Option<&String>) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    if let Some(dir) = overridden.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let exe = exe
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", exe.display()))?;
    exe.parent()
        .and_then(|bin| bin.parent())
        .map(PathBuf::from)
        .with_context(|| format!("{} is not inside a buildpack's bin/", exe.display()))
}
