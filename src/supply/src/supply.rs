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
use crate::hold;
use crate::install::install;
use crate::staging::Staging;
use buildpack::errors::Error;
use buildpack::launch::{self, CloudFoundry, LaunchYml, Limits, Platforms, Process};
use buildpack::manifest::{
    buildpack_name, manifest_path, read_version, Dependency, Manifest, Sidecar,
};
use buildpack::settings::{sidecar_var_base, Env, Network, SidecarSettings};
use buildpack::transport::Fetcher;
use buildpack::verify::{self, Origin, Verified};
use buildpack::version_line::{Version, VersionLine};
use buildpack::{detail, step, version_pin};
use std::collections::{HashMap, HashSet};
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
    sidecars: Vec<Planned>,
}

/// One sidecar, with the build of its dependency picked for the stack.
struct Planned {
    sidecar: Sidecar,
    dep: Dependency,
    settings: SidecarSettings,
    /// The end-of-life warnings about `dep`.
    eol: Vec<String>,
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
    for sidecar in &manifest.sidecars {
        let settings = env.sidecar(sidecar)?;
        let dep = version_pin::choose(
            &manifest,
            &sidecar.dependency,
            stack,
            settings.version.as_ref(),
        )?
        .clone();
        check_hold(sidecar, &dep, &settings, &env)?;
        let eol = manifest
            .dependency_deprecation_dates
            .iter()
            .filter(|e| e.covers(&dep))
            .filter_map(|e| e.warning(ctx.now))
            .collect();
        sidecars.push(Planned {
            sidecar: sidecar.clone(),
            dep,
            settings,
            eol,
        });
    }
    Ok(Plan {
        manifest,
        version,
        net,
        memory_limit,
        sidecars,
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
    let cache = AppCache::new(&ctx.cache_dir);
    let layout = Layout::of(ctx);
    let done = stage(ctx, plan, &cache, staging.path())
        .and_then(|staged| commit(&layout, &mut staging, staged));
    match done {
        Ok(report) => {
            // Only now, with the deps dir committed: a failed run stores nothing in
            // the app cache. Before `finish`, which removes the staging dir.
            for kept in &report.to_cache {
                cache.store(&kept.dep, &kept.copy);
            }
            staging.finish(&layout.idx_dir);
            report.print(plan.memory_limit);
            let keep: Vec<_> = plan.sidecars.iter().map(|p| p.dep.sha256).collect();
            cache.prune(&keep);
            Ok(())
        }
        Err(e) => {
            staging.rollback();
            Err(e)
        }
    }
}

/// Where the run's files go in the deps dir.
struct Layout {
    idx_dir: PathBuf,
    bin_dir: PathBuf,
    sbom_dir: PathBuf,
    config_yml: PathBuf,
    launch_yml: PathBuf,
    /// CF's builder reads launch.yml at the unpadded index (deps/3 for DEPS_IDX "03",
    /// buildpackrunner/runner.go): with 10+ buildpacks a copy must sit there too.
    unpadded: Option<Unpadded>,
    /// `BUILD_DIR/.profile.d`, which CF's launcher sources in every process: where the
    /// scripts that hold the app for its sidecars go.
    profile_d: PathBuf,
}

/// The unpadded index's dir, and the copy of launch.yml in it.
struct Unpadded {
    dir: PathBuf,
    launch_yml: PathBuf,
}

impl Layout {
    fn of(ctx: &Context) -> Layout {
        let idx_dir = ctx.deps_dir.join(&ctx.deps_idx);
        let unpadded = launch::unpadded_idx(&ctx.deps_idx).map(|u| {
            let dir = ctx.deps_dir.join(u);
            Unpadded {
                launch_yml: dir.join("launch.yml"),
                dir,
            }
        });
        Layout {
            bin_dir: idx_dir.join("bin"),
            sbom_dir: idx_dir.join("sbom"),
            config_yml: idx_dir.join("config.yml"),
            launch_yml: idx_dir.join("launch.yml"),
            idx_dir,
            unpadded,
            profile_d: ctx.build_dir.join(".profile.d"),
        }
    }

    fn sbom(&self, name: &str) -> PathBuf {
        self.sbom_dir.join(format!("{name}.cdx.json"))
    }
}

/// An executable made in the staging dir, for `bin/<name>`.
struct StagedExe {
    name: String,
    file: PathBuf,
    /// Its SBOM, when its archive carried one.
    sbom: Option<PathBuf>,
    /// Where its artifact came from, as `output_metadata` says it.
    source: &'static str,
}

/// A downloaded artifact, linked in the staging dir, for the app cache.
struct CacheCopy {
    dep: Dependency,
    copy: PathBuf,
}

/// Everything the run made in the staging dir, ready to commit.
struct Staged {
    exes: Vec<StagedExe>,
    /// The sidecars to declare, when any is: written as `launch_yml`.
    launch: Option<LaunchYml>,
    launch_yml: PathBuf,
    config_yml: PathBuf,
    to_cache: Vec<CacheCopy>,
    not_declared: Vec<String>,
    /// The `.profile.d` scripts that hold the app for its sidecars: (file name, text).
    holds: Vec<(String, String)>,
}

/// Fetches, verifies and installs each dependency, and writes launch.yml and
/// config.yml, all in the staging dir `work`. Changes nothing in the deps dir.
fn stage(ctx: &Context, plan: &Plan, cache: &AppCache, work: &Path) -> Result<Staged, Error> {
    let fetcher = Fetcher::new(&plan.net);
    let limits = verify::Limits::of(&plan.net);
    let mut staged = Staged {
        exes: Vec::new(),
        launch: None,
        launch_yml: work.join("new-launch.yml"),
        config_yml: work.join("new-config.yml"),
        to_cache: Vec::new(),
        not_declared: Vec::new(),
        holds: hold_scripts(ctx, plan),
    };
    let mut processes = Vec::new();
    let mut warned = HashSet::new();
    for planned in &plan.sidecars {
        let Planned {
            sidecar,
            dep,
            settings,
            eol,
        } = planned;
        let name = sidecar.installed_name();
        // One binary may serve two sidecars: installed once.
        if !staged.exes.iter().any(|e| e.name == name) {
            step!("Installing {}", dep.id());
            if let Some(pin) = &settings.version {
                detail!(
                    "{}: the highest version {}={} allows",
                    dep.id(),
                    pin.var,
                    buildpack::redact::quoted_value(&pin.raw)
                );
            }
            let verified = obtain(&fetcher, limits, dep, &ctx.buildpack_dir, cache, work)?;
            let source = match verified.origin {
                Origin::CachedBuildpack(_) => "buildpack",
                Origin::AppCache(_) => "app_cache",
                Origin::Network(_) => "network",
            };
            if matches!(verified.origin, Origin::Network(_)) {
                keep_for_cache(&verified, dep, work, &mut staged.to_cache);
            }
            // Where libbuildpack warns (after the fetch), once per dependency even when
            // two of its executables are installed.
            if warned.insert(dep.id()) {
                for w in eol {
                    warn!("{w}");
                }
            }
            let n = staged.exes.len();
            let file = work.join(format!("new-bin-{n}"));
            let sbom = work.join(format!("new-sbom-{n}"));
            let has_sbom = install(verified, sidecar, dep, &file, &sbom, work)?;
            staged.exes.push(StagedExe {
                name: name.to_string(),
                file,
                sbom: has_sbom.then_some(sbom),
                source,
            });
        }
        let command = launch::command(&ctx.deps_idx, name, &sidecar.args);
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
            staged.not_declared.push(format!(
                "Not declaring the {} sidecar ({}DECLARE=false): declare it in the app \
                 manifest's sidecars: with command: {command}",
                sidecar.name,
                sidecar_var_base(&sidecar.name)
            ));
        }
    }
    if !processes.is_empty() {
        let yml = LaunchYml { processes };
        yml.write(&staged.launch_yml)?;
        staged.launch = Some(yml);
    }
    let installed: Vec<launch::Installed> = plan
        .sidecars
        .iter()
        .filter_map(|Planned { sidecar, dep, .. }| {
            let exe = staged
                .exes
                .iter()
                .find(|e| e.name == sidecar.installed_name())?;
            Some(launch::Installed {
                name: sidecar.name.clone(),
                dependency: dep.name.clone(),
                version: dep.version.clone(),
                sha256: dep.sha256.to_string(),
                source: exe.source,
                sbom: exe
                    .sbom
                    .as_ref()
                    .map(|_| format!("deps/{}/sbom/{}.cdx.json", ctx.deps_idx, exe.name)),
            })
        })
        .collect();
    launch::write_config_yml(
        &staged.config_yml,
        &plan.manifest.language,
        &plan.version,
        &installed,
    )?;
    Ok(staged)
}

/// Links a downloaded artifact in the staging dir, for the app cache once the run
/// has committed. Best effort: without it the next staging downloads again.
fn keep_for_cache(verified: &Verified, dep: &Dependency, work: &Path, to: &mut Vec<CacheCopy>) {
    let copy = work.join(format!("cache-{}", to.len()));
    match fs::hard_link(verified.file.path(), &copy)
        .or_else(|_| fs::copy(verified.file.path(), &copy).map(drop))
    {
        Ok(()) => to.push(CacheCopy {
            dep: dep.clone(),
            copy,
        }),
        Err(e) => {
            warn!("could not keep a copy for the app cache: {e}; the next staging downloads again");
        }
    }
}

/// An executable in place, with its SBOM when it has one.
struct Installed {
    exe: PathBuf,
    sbom: Option<PathBuf>,
}

/// The launch.yml files written, with what they declare.
struct Declared {
    yml: LaunchYml,
    path: PathBuf,
    /// The copy at the unpadded index.
    copy: Option<PathBuf>,
}

/// What the commit did, told after it succeeded.
struct Report {
    to_cache: Vec<CacheCopy>,
    installed: Vec<Installed>,
    not_declared: Vec<String>,
    /// The `.profile.d` scripts written, by file name.
    holds: Vec<String>,
    declared: Option<Declared>,
}

/// Puts what `stage` made in place, by renames only, in an order where every prefix
/// is a deps dir CF can run and that tells no lie, so that a run killed at any point
/// of it leaves one (#21): each file is replaced by one rename, never removed first;
/// an executable's old SBOM goes before the executable and its new one comes after,
/// so no SBOM ever describes another build; launch.yml comes last, once everything it
/// declares is there (the executables an older launch.yml declares are still there too:
/// none is removed).
fn commit(layout: &Layout, staging: &mut Staging, staged: Staged) -> Result<Report, Error> {
    staging.ensure_dir(&layout.idx_dir)?;
    staging.ensure_dir(&layout.bin_dir)?;
    let mut installed = Vec::new();
    for exe in &staged.exes {
        let sbom_dest = layout.sbom(&exe.name);
        // Never through a symlink: only inside a real sbom/ directory.
        if staging.is_real_dir(&layout.sbom_dir)? {
            staging.remove(&sbom_dest)?;
        }
        let dest = layout.bin_dir.join(&exe.name);
        staging.place(&exe.file, &dest)?;
        let sbom = match &exe.sbom {
            Some(staged_sbom) => {
                staging.ensure_dir(&layout.sbom_dir)?;
                staging.place(staged_sbom, &sbom_dest)?;
                Some(sbom_dest)
            }
            None => None,
        };
        installed.push(Installed { exe: dest, sbom });
    }
    staging.place(&staged.config_yml, &layout.config_yml)?;
    if !staged.holds.is_empty() {
        staging.ensure_dir(&layout.profile_d)?;
    }
    for (file_name, text) in &staged.holds {
        // Staged beside its destination (BUILD_DIR may be on another file system than
        // DEPS_DIR), under a dot name that the launcher's `.profile.d/*` skips.
        let new = layout.profile_d.join(format!(".{file_name}.new"));
        buildpack::fsutil::write_atomic(&new, text)?;
        staging.place(&new, &layout.profile_d.join(file_name))?;
    }
    let declared = if let Some(yml) = staged.launch {
        let copy = match &layout.unpadded {
            Some(unpadded) => {
                staging.ensure_dir(&unpadded.dir)?;
                let copy = staged.launch_yml.with_extension("copy");
                fs::copy(&staged.launch_yml, &copy).map_err(Error::write(&copy))?;
                staging.place(&copy, &unpadded.launch_yml)?;
                Some(unpadded.launch_yml.clone())
            }
            None => None,
        };
        staging.place(&staged.launch_yml, &layout.launch_yml)?;
        Some(Declared {
            yml,
            path: layout.launch_yml.clone(),
            copy,
        })
    } else {
        if let Some(unpadded) = &layout.unpadded {
            staging.remove(&unpadded.launch_yml)?;
        }
        staging.remove(&layout.launch_yml)?;
        None
    };
    Ok(Report {
        to_cache: staged.to_cache,
        installed,
        not_declared: staged.not_declared,
        holds: staged.holds.into_iter().map(|(name, _)| name).collect(),
        declared,
    })
}

impl Report {
    fn print(&self, memory_limit: Option<u64>) {
        for Installed { exe, sbom } in &self.installed {
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
        for name in &self.holds {
            detail!("Wrote .profile.d/{name}: the app's processes wait for their sidecar at start");
        }
        let Some(Declared { yml, path, copy }) = &self.declared else {
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
        detail!("Wrote {}", path.display());
        if let Some(copy) = copy {
            detail!(
                "Wrote a copy at {}: Cloud Foundry reads launch.yml at the index without \
                 its leading zeros once an app has 10 or more buildpacks",
                copy.display()
            );
        }
        debug!("launch.yml:\n{}", yml.render());
    }
}

/// The `.profile.d` scripts of the sidecars whose hold is on: (file name, text).
fn hold_scripts(ctx: &Context, plan: &Plan) -> Vec<(String, String)> {
    let commands: Vec<String> = plan
        .sidecars
        .iter()
        .map(|p| launch::command(&ctx.deps_idx, p.sidecar.installed_name(), &p.sidecar.args))
        .collect();
    plan.sidecars
        .iter()
        .filter_map(
            |Planned {
                 sidecar, settings, ..
             }| {
                let timeout = settings.hold_app?;
                let wait = sidecar.hold_app.as_ref()?;
                Some((
                    hold::file_name(&sidecar.name),
                    hold::script(
                        &sidecar.name,
                        &ctx.deps_idx,
                        sidecar.installed_name(),
                        &wait.args,
                        timeout,
                        &settings.process_types,
                        &commands,
                    ),
                ))
            },
        )
        .collect()
}

/// A hold needs a sidecar whose executable can wait for it, in the version chosen.
fn check_hold(
    sidecar: &Sidecar,
    dep: &Dependency,
    settings: &SidecarSettings,
    env: &Env,
) -> Result<(), Error> {
    if settings.hold_app.is_none() {
        return Ok(());
    }
    let can = sidecar.hold_app.as_ref().is_some_and(|h| {
        let versions = VersionLine::parse(&h.versions);
        Version::parse(&dep.version).is_some_and(|v| versions.is_ok_and(|line| line.matches(&v)))
    });
    if can {
        return Ok(());
    }
    let var = format!("{}HOLD_APP", sidecar_var_base(&sidecar.name));
    let why = match &sidecar.hold_app {
        None => format!("the {} sidecar has no way to wait for it", sidecar.name),
        Some(h) => format!(
            "{} {} cannot wait for itself; versions {} can",
            dep.name, dep.version, h.versions
        ),
    };
    Err(Error::Setting {
        value: buildpack::redact::quoted_value(env.get(&var).unwrap_or_default()),
        name: var,
        accepted: format!("false, or unset it: {why}"),
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
    // path whose parent exists (a typo never grows a tree, as root, anywhere). A symlink
    // to a directory is CF's or the operator's choice, and followed.
    let problem = match fs::symlink_metadata(&ctx.deps_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = ctx
                .deps_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (!parent.is_dir()).then(|| {
                format!(
                    "does not exist, and neither does its parent {}",
                    parent.display()
                )
            })
        }
        Err(e) => Some(format!("cannot be used: {e}")),
        Ok(_) => match fs::metadata(&ctx.deps_dir) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("is not a directory".into()),
            Err(e) => Some(format!("cannot be used: {e}")),
        },
    };
    if let Some(problem) = problem {
        return Err(Error::Directory {
            name: "DEPS_DIR",
            path: ctx.deps_dir.clone(),
            problem,
        });
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
