//! The supply run, step by step as it reads in the staging log: load the manifest,
//! pick each sidecar's dependency, fetch and verify it, install it, declare the
//! sidecars in launch.yml, and write config.yml.
//!
//! It decides before it acts: the manifest, every setting, the stack, `MEMORY_LIMIT`
//! and the directories are all read and checked before the first write, so bad input
//! changes nothing on disk. Then everything is made in a staging dir and committed with
//! renames at the end (`staging`), so a failure at any later step leaves the deps dir
//! as it was too.

use crate::cache::AppCache;
use crate::fetch::obtain;
use crate::install::install;
use crate::staging::Staging;
use buildpack::errors::Error;
use buildpack::launch::{self, CloudFoundry, LaunchYml, Limits, Platforms, Process};
use buildpack::manifest::{
    buildpack_name, manifest_path, read_version, Dependency, Manifest, Sidecar,
};
use buildpack::settings::{sidecar_var_base, Env, Network, SidecarSettings};
use buildpack::transport::Fetcher;
use buildpack::verify::{self, Origin};
use buildpack::{detail, step};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
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
    /// The clock the end-of-life warnings are judged by (`main` reads the real one).
    pub now: SystemTime,
}

/// What the run will do, decided before it writes anything.
struct Plan {
    manifest: Manifest,
    version: String,
    net: Network,
    memory_limit: Option<u64>,
    sidecars: Vec<(Sidecar, Dependency, SidecarSettings)>,
    /// End-of-life warnings by the `<name> <version>` of the dependency they are about.
    eol: HashMap<String, Vec<String>>,
}

pub fn run(ctx: &Context) -> Result<(), Error> {
    let plan = decide(ctx)?;
    act(ctx, &plan)
}

/// Reads and checks every input. Writes nothing.
fn decide(ctx: &Context) -> Result<Plan, Error> {
    let manifest = Manifest::load(&manifest_path(&ctx.buildpack_dir))?;
    let version = read_version(&ctx.buildpack_dir)?;
    step!("{} {}", buildpack_name(&manifest), version);
    for dep in &manifest.dependencies {
        buildpack::redact::remember_url(&dep.uri);
    }

    let env = Env(&ctx.env);
    let net = env.network()?;
    let memory_limit = env.memory_limit()?;
    check_dirs(ctx)?;
    let stack = env.get("CF_STACK");
    if stack.is_none() {
        warn!("CF_STACK is not set (a local run?); taking the first build of each dependency");
    }
    let mut sidecars = Vec::new();
    let mut eol = HashMap::new();
    for sidecar in &manifest.sidecars {
        let settings = env.sidecar(sidecar)?;
        let dep = manifest.pick(&sidecar.dependency, stack)?.clone();
        let warnings = manifest
            .dependency_deprecation_dates
            .iter()
            .filter(|e| e.covers(&dep))
            .filter_map(|e| e.warning(ctx.now))
            .collect();
        eol.insert(format!("{} {}", dep.name, dep.version), warnings);
        sidecars.push((sidecar.clone(), dep, settings));
    }
    Ok(Plan {
        manifest,
        version,
        net,
        memory_limit,
        sidecars,
        eol,
    })
}

/// Makes everything in the staging dir, then commits it; on any failure, undoes what
/// was committed.
fn act(ctx: &Context, plan: &Plan) -> Result<(), Error> {
    let deps_dir_existed = ctx.deps_dir.is_dir();
    let mut staging = Staging::begin(&ctx.deps_dir, &ctx.deps_idx)?;
    if !deps_dir_existed {
        detail!(
            "Created DEPS_DIR {} (Cloud Foundry makes it before staging; a local run may leave it to supply)",
            ctx.deps_dir.display()
        );
    }
    let idx_dir = ctx.deps_dir.join(&ctx.deps_idx);
    let cache = AppCache::new(&ctx.cache_dir);
    match stage_and_commit(ctx, plan, &cache, &mut staging) {
        Ok(report) => {
            // Only now, with the deps dir committed: a failed run stores nothing in
            // the app cache. Before `finish`, which removes the staging dir.
            for (dep, copy) in &report.to_cache {
                cache.store(dep, copy);
            }
            staging.finish(&idx_dir);
            report.print(plan.memory_limit);
            let keep: Vec<_> = plan.sidecars.iter().map(|(_, d, _)| d.sha256).collect();
            cache.prune(&keep);
            Ok(())
        }
        Err(e) => {
            staging.rollback();
            Err(e)
        }
    }
}

/// What the commit did, told after it succeeded.
struct Report {
    /// Downloaded artifacts, linked in the staging dir, for the app cache.
    to_cache: Vec<(Dependency, PathBuf)>,
    /// Each executable, with its SBOM when its archive carried one.
    installed: Vec<(PathBuf, Option<PathBuf>)>,
    not_declared: Vec<String>,
    launch: Option<(LaunchYml, Vec<PathBuf>)>,
}

impl Report {
    fn print(&self, memory_limit: Option<u64>) {
        for (exe, sbom) in &self.installed {
            detail!("Installed {}", exe.display());
            if let Some(sbom) = sbom {
                detail!(
                    "Installed {}, the CycloneDX SBOM of {} from its archive",
                    sbom.display(),
                    exe.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        for line in &self.not_declared {
            detail!("{line}");
        }
        let Some((yml, paths)) = &self.launch else {
            return;
        };
        step!("Declaring sidecars");
        check_memory(&yml.processes, memory_limit);
        for p in &yml.processes {
            detail!(
                "{} for process types [{}], {} MB, command: {}",
                p.kind,
                p.platforms.cloudfoundry.sidecar_for.join(", "),
                p.limits.memory,
                p.command
            );
        }
        detail!("Wrote {}", paths[0].display());
        if let Some(copy) = paths.get(1) {
            detail!(
                "Wrote a copy at {}: Cloud Foundry reads launch.yml at the index without \
                 its leading zeros once an app has 10 or more buildpacks",
                copy.display()
            );
        }
        debug!("launch.yml:\n{}", yml.render());
    }
}

fn stage_and_commit(
    ctx: &Context,
    plan: &Plan,
    cache: &AppCache,
    staging: &mut Staging,
) -> Result<Report, Error> {
    let fetcher = Fetcher::new(&plan.net);
    let limits = verify::Limits::of(&plan.net);
    let work = staging.path().to_path_buf();
    let mut processes = Vec::new();
    let mut not_declared = Vec::new();
    // bin/<name> -> its staged file and SBOM; one binary may serve two sidecars.
    let mut exes: Vec<(String, PathBuf, Option<PathBuf>)> = Vec::new();
    let mut to_cache = Vec::new();
    let mut warned = std::collections::HashSet::new();
    for (sidecar, dep, settings) in &plan.sidecars {
        let name = sidecar.installed_name().to_string();
        if !exes.iter().any(|(n, _, _)| *n == name) {
            let id = format!("{} {}", dep.name, dep.version);
            step!("Installing {id}");
            let verified = obtain(&fetcher, limits, dep, &ctx.buildpack_dir, cache, &work)?;
            if matches!(verified.origin, Origin::Network(_)) {
                let copy = work.join(format!("cache-{}", to_cache.len()));
                match fs::hard_link(verified.file.path(), &copy)
                    .or_else(|_| fs::copy(verified.file.path(), &copy).map(drop))
                {
                    Ok(()) => to_cache.push((dep.clone(), copy)),
                    Err(e) => warn!(
                        "could not keep a copy for the app cache: {e}; the next staging \
                         downloads again"
                    ),
                }
            }
            // Where libbuildpack warns (after the fetch), once per dependency even when
            // two of its executables are installed.
            if warned.insert(id.clone()) {
                for w in plan.eol.get(&id).into_iter().flatten() {
                    warn!("{w}");
                }
            }
            let staged = work.join(format!("new-bin-{}", exes.len()));
            let sbom = work.join(format!("new-sbom-{}", exes.len()));
            let has_sbom = install(verified, sidecar, dep, &staged, &sbom, &work)?;
            exes.push((name.clone(), staged, has_sbom.then_some(sbom)));
        }
        let command = launch::command(&ctx.deps_idx, &name, &sidecar.args);
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
            not_declared.push(format!(
                "Not declaring the {} sidecar ({}DECLARE=false): declare it in the app \
                 manifest's sidecars: with command: {command}",
                sidecar.name,
                sidecar_var_base(&sidecar.name)
            ));
        }
    }

    // CF's builder reads launch.yml at the unpadded index (deps/3 for DEPS_IDX "03",
    // buildpackrunner/runner.go): with 10+ buildpacks a copy must sit there too.
    let idx_dir = ctx.deps_dir.join(&ctx.deps_idx);
    let mut launch_paths = vec![idx_dir.join("launch.yml")];
    let unpadded = launch::unpadded_idx(&ctx.deps_idx).map(|u| ctx.deps_dir.join(u));
    if let Some(dir) = &unpadded {
        launch_paths.push(dir.join("launch.yml"));
    }
    let launch = if processes.is_empty() {
        None
    } else {
        let yml = LaunchYml { processes };
        yml.write(&work.join("new-launch.yml"))?;
        Some(yml)
    };
    launch::write_config_yml(
        &work.join("new-config.yml"),
        &plan.manifest.language,
        &plan.version,
    )?;

    // The commit: renames only.
    let bin_dir = idx_dir.join("bin");
    staging.ensure_dir(&idx_dir)?;
    staging.ensure_dir(&bin_dir)?;
    let sbom_dir = idx_dir.join("sbom");
    let mut installed = Vec::new();
    for (name, staged, sbom) in &exes {
        let dest = bin_dir.join(name);
        staging.place(staged, &dest)?;
        let sbom_dest = sbom_dir.join(format!("{name}.cdx.json"));
        let sbom_placed = match sbom {
            Some(staged_sbom) => {
                staging.ensure_dir(&sbom_dir)?;
                staging.place(staged_sbom, &sbom_dest)?;
                Some(sbom_dest)
            }
            None => {
                // One left by an earlier run would describe another build. Never
                // through a symlink: only inside a real sbom/ directory.
                if fs::symlink_metadata(&sbom_dir).is_ok_and(|m| m.is_dir()) {
                    staging.remove(&sbom_dest)?;
                }
                None
            }
        };
        installed.push((dest, sbom_placed));
    }
    staging.place(&work.join("new-config.yml"), &idx_dir.join("config.yml"))?;
    match &launch {
        Some(_) => {
            let staged = work.join("new-launch.yml");
            if let Some(dir) = &unpadded {
                staging.ensure_dir(dir)?;
                let copy = work.join("new-launch-copy.yml");
                fs::copy(&staged, &copy).map_err(Error::write(&copy))?;
                staging.place(&copy, &launch_paths[1])?;
            }
            staging.place(&staged, &launch_paths[0])?;
        }
        None => {
            for path in &launch_paths {
                staging.remove(path)?;
            }
        }
    }
    Ok(Report {
        to_cache,
        installed,
        not_declared,
        launch: launch.map(|yml| (yml, launch_paths)),
    })
}

/// Checks the directories CF passed, without creating any.
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
        // Quoted, so an empty or blank value shows as what it is.
        return Err(Error::Directory {
            name: "DEPS_IDX",
            path: buildpack::redact::quoted_value(&ctx.deps_idx).into(),
            problem: "is not a buildpack index: 1 to 8 digits, such as 0 or 03".into(),
        });
    }
    // Other buildpacks' dirs live in DEPS_DIR: never replace it. CF creates it before
    // staging; a local run's missing one is made, but only as the last directory of a
    // path whose parent exists (a typo never grows a tree, as root, anywhere).
    match fs::symlink_metadata(&ctx.deps_dir) {
        Ok(_) if !ctx.deps_dir.is_dir() => {
            return Err(Error::Directory {
                name: "DEPS_DIR",
                path: ctx.deps_dir.clone(),
                problem: "is not a directory".into(),
            })
        }
        Ok(_) => {}
        Err(_) => {
            let parent = ctx
                .deps_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(Error::Directory {
                    name: "DEPS_DIR",
                    path: ctx.deps_dir.clone(),
                    problem: format!(
                        "does not exist, and neither does its parent {}",
                        parent.display()
                    ),
                });
            }
        }
    }
    // The app cache is created when something is stored; a file in its place would
    // fail only then, after the download.
    if fs::symlink_metadata(&ctx.cache_dir).is_ok() && !ctx.cache_dir.is_dir() {
        return Err(Error::Directory {
            name: "CACHE_DIR",
            path: ctx.cache_dir.clone(),
            problem: "is not a directory".into(),
        });
    }
    Ok(())
}

/// CF carves sidecar memory out of the process's and refuses a droplet whose sidecars
/// take all of it. Staging only sees the staging task's MEMORY_LIMIT, which is the
/// app's memory but at least 1024 MB (Cloud Controller's minimum_staging_memory_mb),
/// so this catches only the sure failures.
fn check_memory(processes: &[Process], memory_limit: Option<u64>) {
    let Some(limit) = memory_limit else {
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
