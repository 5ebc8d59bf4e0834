//! The supply run, step by step as it reads in the staging log: load the manifest,
//! pick each sidecar's dependency, fetch and verify it, install it, declare the
//! sidecars in launch.yml, and write config.yml.

use crate::cache::AppCache;
use crate::errors::Error;
use crate::fetch::obtain;
use crate::fsutil::prepare_dir;
use crate::install::install;
use crate::launch::{self, CloudFoundry, LaunchYml, Limits, Platforms, Process};
use crate::manifest::{buildpack_name, manifest_path, read_version, Manifest};
use crate::settings::{sidecar_var_base, Env};
use crate::transport::Fetcher;
use crate::{detail, step};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// Everything one run needs, built once by `main`.
#[derive(Debug, Clone)]
pub struct Context {
    pub build_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub deps_dir: PathBuf,
    /// Opaque: `"0"`, or zero-padded (`"03"`) once an app has 10+ buildpacks.
    pub deps_idx: String,
    pub buildpack_dir: PathBuf,
    /// The staging environment (CF_STACK, proxies, the app's env vars).
    pub env: HashMap<String, String>,
}

pub fn run(ctx: &Context) -> Result<(), Error> {
    let manifest = Manifest::load(&manifest_path(&ctx.buildpack_dir))?;
    let version = read_version(&ctx.buildpack_dir)?;
    step!("{} {}", buildpack_name(&manifest), version);

    let env = Env(&ctx.env);
    let net = env.network()?;
    check_dirs(ctx)?;
    let idx_dir = ctx.deps_dir.join(&ctx.deps_idx);
    prepare_dir(&idx_dir)?;
    remove_leftovers(&idx_dir);
    let cache = AppCache::new(&ctx.cache_dir);
    let stack = env.get("CF_STACK");
    if stack.is_none() {
        warn!("CF_STACK is not set (a local run?); taking the first build of each dependency");
    }

    let fetcher = Fetcher::new(&net);
    let mut processes = Vec::new();
    let mut keep = Vec::new();
    for sidecar in &manifest.sidecars {
        let settings = env.sidecar(sidecar)?;
        let dep = manifest.pick(&sidecar.dependency, stack)?;
        step!("Installing {} {}", dep.name, dep.version);
        let verified = obtain(&fetcher, dep, &ctx.buildpack_dir, &cache, &idx_dir)?;
        keep.push(dep.sha256);
        let exe = install(verified, sidecar, dep, &idx_dir.join("bin"), &idx_dir)?;
        let exe_name = exe
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        detail!("Installed {}", exe.display());
        let command = launch::command(&ctx.deps_idx, &exe_name, &sidecar.args);
        if settings.declare {
            processes.push(Process {
                kind: sidecar.name.clone(),
                command,
                limits: Limits {
                    memory: settings.memory_mb,
                },
                platforms: Platforms {
                    cloudfoundry: CloudFoundry {
                        sidecar_for: settings.process_types.clone(),
                    },
                },
            });
        } else {
            detail!(
                "Not declaring the {} sidecar ({}DECLARE=false): declare it in the app \
                 manifest's sidecars: with command: {command}",
                sidecar.name,
                sidecar_var_base(&sidecar.name)
            );
        }
    }

    // CF's builder reads launch.yml at the unpadded index (deps/3 for DEPS_IDX "03",
    // buildpackrunner/runner.go): with 10+ buildpacks a copy must sit there too.
    let mut launch_paths = vec![idx_dir.join("launch.yml")];
    if let Some(unpadded) = launch::unpadded_idx(&ctx.deps_idx) {
        launch_paths.push(ctx.deps_dir.join(unpadded).join("launch.yml"));
    }
    if processes.is_empty() {
        for path in &launch_paths {
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::write(path)(e))
                }
                _ => {}
            }
        }
    } else {
        step!("Declaring sidecars");
        check_memory(&processes, env.get("MEMORY_LIMIT"));
        let yml = LaunchYml { processes };
        for (i, path) in launch_paths.iter().enumerate() {
            if i > 0 {
                prepare_dir(path.parent().unwrap_or(&ctx.deps_dir))?;
            }
            yml.write(path)?;
        }
        for p in &yml.processes {
            detail!(
                "{} for process types [{}], {} MB, command: {}",
                p.kind,
                p.platforms.cloudfoundry.sidecar_for.join(", "),
                p.limits.memory,
                p.command
            );
        }
        detail!("Wrote {}", launch_paths[0].display());
        if let Some(copy) = launch_paths.get(1) {
            detail!(
                "Wrote a copy at {}: Cloud Foundry reads launch.yml at the index without \
                 its leading zeros once an app has 10 or more buildpacks",
                copy.display()
            );
        }
        debug!("launch.yml:\n{}", yml.render());
    }
    launch::write_config_yml(&idx_dir.join("config.yml"), &manifest.language, &version)?;
    cache.prune(&keep);
    Ok(())
}

fn check_dirs(ctx: &Context) -> Result<(), Error> {
    match fs::metadata(&ctx.build_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Directory {
                name: "BUILD_DIR",
                path: ctx.build_dir.clone(),
                problem: "is not a directory".into(),
            })
        }
        Err(e) => {
            return Err(Error::Directory {
                name: "BUILD_DIR",
                path: ctx.build_dir.clone(),
                problem: format!("cannot be used: {e}"),
            })
        }
    }
    let idx_ok = !ctx.deps_idx.is_empty()
        && ctx.deps_idx.len() <= 8
        && ctx.deps_idx.bytes().all(|b| b.is_ascii_digit());
    if !idx_ok {
        return Err(Error::Directory {
            name: "DEPS_IDX",
            path: ctx.deps_idx.clone().into(),
            problem: "must be the buildpack's index, such as 0 or 03".into(),
        });
    }
    if let Err(e) = fs::create_dir_all(&ctx.cache_dir) {
        warn!(
            "cannot create CACHE_DIR {}: {e}; continuing without the app cache",
            ctx.cache_dir.display()
        );
    }
    // Other buildpacks' dirs live in DEPS_DIR: never replace it, only create it.
    if fs::symlink_metadata(&ctx.deps_dir).is_ok_and(|_| !ctx.deps_dir.is_dir()) {
        return Err(Error::Directory {
            name: "DEPS_DIR",
            path: ctx.deps_dir.clone(),
            problem: "is not a directory".into(),
        });
    }
    fs::create_dir_all(&ctx.deps_dir).map_err(Error::write(&ctx.deps_dir))
}

/// Removes the temp files a staging killed half-way left in this buildpack's deps dir
/// (`.partial` files, `.unpack-` dirs), so none ends up in the droplet. Only one staging
/// uses a deps dir at a time.
fn remove_leftovers(idx_dir: &Path) {
    for e in fs::read_dir(idx_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let p = e.path();
        let removed = if name.starts_with(".unpack-") && !p.is_symlink() && p.is_dir() {
            fs::remove_dir_all(&p)
        } else if name.starts_with('.')
            && (name.ends_with(".partial") || name.starts_with(".unpack-"))
        {
            fs::remove_file(&p)
        } else {
            continue;
        };
        match removed {
            Ok(()) => debug!("removed {}, left by an earlier staging", p.display()),
            Err(e) => warn!(
                "could not remove {}, left by an earlier staging: {e}",
                p.display()
            ),
        }
    }
}

/// CF carves sidecar memory out of the process's and refuses a droplet whose sidecars
/// take all of it. Staging only sees the staging task's MEMORY_LIMIT, which is the
/// app's memory but at least 1024 MB (Cloud Controller's minimum_staging_memory_mb),
/// so this catches only the sure failures.
fn check_memory(processes: &[Process], memory_limit: Option<&str>) {
    let Some(limit) = memory_limit.and_then(parse_memory_mb) else {
        return;
    };
    let mut per_type: std::collections::BTreeMap<&str, u64> = Default::default();
    for p in processes {
        for t in &p.platforms.cloudfoundry.sidecar_for {
            *per_type.entry(t.as_str()).or_default() += u64::from(p.limits.memory);
        }
    }
    for (process_type, total) in per_type {
        if total >= limit {
            warn!(
                "the sidecars of {process_type} take {total} MB, and the app has at most \
                 {limit} MB (MEMORY_LIMIT at staging): Cloud Controller will refuse the \
                 droplet; give the app more memory or the sidecars less"
            );
        }
    }
}

/// `1024m`, `1G`, `512M` as CF sets MEMORY_LIMIT, in MB.
pub fn parse_memory_mb(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.strip_suffix(['m', 'g']) {
        Some(n) if s.ends_with('g') => (n, 1024),
        Some(n) => (n, 1),
        None => (s.as_str(), 1),
    };
    num.trim_end_matches('b')
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_memory_limits() {
        use super::parse_memory_mb as p;
        assert_eq!(p("1024m"), Some(1024));
        assert_eq!(p("2G"), Some(2048));
        assert_eq!(p("256"), Some(256));
        assert_eq!(p("lots"), None);
    }
}
