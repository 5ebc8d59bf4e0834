//! Staging, in the order CF's builder does it with `-skipDetect=true`: lay out the
//! staging area, check every supply buildpack can run, run each `bin/supply BUILD_DIR
//! CACHE_DIR DEPS_DIR DEPS_IDX` with a cleared environment, run the final buildpack
//! (here its local stand-in), merge launch.yml files and the Procfile, then turn the
//! staging area into the droplet. The droplet ends at a different path than DEPS_DIR
//! had during staging, as on CF: a staging path baked into anything breaks at run time.
//!
//! Work dir layout, per app (`<work>/<app>/`):
//!
//! ```text
//!   .lock               held while a run uses the app's dirs
//!   buildpacks/<id>/    unpacked zips, fresh each run
//!   cache/<id>/         each supply buildpack's CACHE_DIR, kept between runs
//!   app/                BUILD_DIR, a fresh copy of the app
//!   home/               HOME during staging, fresh each run
//!   contents<random>/   the staging area: deps/ (DEPS_DIR), profile.d/; kept on failure
//!   droplet/            the last good droplet: app/ deps/ profile.d/ tmp/ logs/ staging_info.yml
//!   result.json         the last staging's result: none when a supply buildpack failed,
//!                       the buildpacks' metadata only when the final one did (as CF's builder)
//! ```

use crate::app::App;
use crate::buildpack::Buildpack;
use crate::env::{self, Vars};
use crate::errors::Error;
use crate::files::read_small;
use crate::final_standin::{self, Finalize};
use crate::launch_yml::{self, Declared};
use crate::out;
use crate::result::{convert, merge, BuildpackMetadata, Entry, Outcome};
use crate::settings::Settings;
use anyhow::Context as _;
use cf_entrypoint::process::{describe, Supervisor};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the cf CLI never uploads (its default ignore list; `.cfignore` is not read).
const IGNORED: [&str; 7] = [
    ".cfignore",
    ".gitignore",
    ".git",
    ".hg",
    ".svn",
    "_darcs",
    ".DS_Store",
];

/// A staged app: its droplet and what Cloud Controller would get.
#[derive(Debug)]
pub(crate) struct Staged {
    pub droplet: PathBuf,
    pub result_json: PathBuf,
    pub outcome: Outcome,
}

/// DEPS_IDX of buildpack `i` among `total` (the final one included): zero-padded to the
/// digits of `total` (buildpackapplifecycle LifecycleBuilderConfig.DepsIndex).
pub(crate) fn deps_idx(i: usize, total: usize) -> String {
    let width = total.max(1).to_string().len();
    format!("{i:0width$}")
}

/// The app's dirs under the work dir, locked for the whole run: staging, and then as
/// long as the app runs, so that no other run replaces the droplet under it.
pub(crate) struct Area {
    pub root: PathBuf,
    _lock: File,
}

impl Area {
    pub(crate) fn open(work_dir: &Path, app: &App) -> anyhow::Result<Area> {
        let root = work_dir.join(dir_name(&app.name));
        fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        let lock_path = root.join(".lock");
        // Not truncated before it is ours: it names the pid of the run that holds it.
        let mut lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            let holder = fs::read_to_string(&lock_path)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            return Err(Error::Locked { path: root, holder }.into());
        }
        // The lock dies with the run that held it, but a run killed with SIGKILL leaves
        // its processes running from the droplet (or its bin/supply in the staging area).
        let pids = leftovers(&root);
        if !pids.is_empty() {
            return Err(Error::Leftovers {
                app: app.name.clone(),
                path: root,
                pids,
            }
            .into());
        }
        lock.set_len(0)
            .and_then(|()| lock.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .with_context(|| format!("cannot write {}", lock_path.display()))?;
        Ok(Area { root, _lock: lock })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Removes what a previous run left that this one rebuilds, and the previous
    /// staging's result: a staging whose supply fails has none.
    fn clear(&self) -> anyhow::Result<()> {
        for entry in fs::read_dir(&self.root)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name == "result.json" {
                fs::remove_file(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
            if ["app", "home", "buildpacks"].contains(&name.as_str())
                || name.starts_with("contents")
            {
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
        Ok(())
    }
}

/// Live processes that a run of the app under `root` started: every process it
/// launches has `DEPS_DIR=<root>/droplet/deps`, every `bin/supply` has
/// `HOME=<root>/home`, and nothing else sets either. Read from `/proc/<pid>/environ`
/// (the environment each was started with); processes we may not read are skipped.
fn leftovers(root: &Path) -> Vec<(i32, String)> {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let marks = [
        ("DEPS_DIR", canon(&root.join("droplet/deps"))),
        ("HOME", canon(&root.join("home"))),
    ];
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    let mut found: Vec<(i32, String)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
                return false;
            };
            environ.split(|b| *b == 0).any(|kv| {
                marks.iter().any(|(name, dir)| {
                    kv.strip_prefix(name.as_bytes())
                        .and_then(|rest| rest.strip_prefix(b"="))
                        .is_some_and(|v| canon(Path::new(std::ffi::OsStr::from_bytes(v))) == *dir)
                })
            })
        })
        .filter_map(|pid| {
            let pid = i32::try_from(pid).ok()?;
            let (_, argv) = cf_entrypoint::process::running_as(pid)?;
            Some((pid, argv))
        })
        .collect();
    found.sort();
    found
}

/// An app name as a directory name.
fn dir_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "app".into()
    } else {
        clean
    }
}

/// Stages `app` in `area`, which the caller holds locked for the whole run.
pub(crate) fn stage(s: &Settings, app: &App, area: &Area) -> anyhow::Result<Staged> {
    area.clear()?;
    let final_name = app.final_buildpack();
    out::say(format!(
        "staging {} from {} with {} supply buildpack(s), then a local stand-in for {final_name}",
        app.name,
        app.dir.display(),
        s.buildpacks.len()
    ));
    let buildpacks = resolve_buildpacks(s, area)?;
    // CF's builder checks every supply buildpack before it runs any.
    for bp in &buildpacks {
        bp.check_supply()?;
    }
    let layout = Layout::prepare(area, app, &buildpacks)?;
    let vars = env::staging(s, app, &area.path("home"));
    let staged = (|| -> anyhow::Result<Staged> {
        run_supplies(s, &layout, &buildpacks, &vars)?;
        let finalized = final_standin::run(&Finalize {
            name: &final_name,
            build_dir: &layout.build_dir,
            deps_dir: &layout.deps_dir,
            idx: &layout.final_idx(),
            profile_dir: &layout.contents.join("profile.d"),
            env: &vars,
        });
        let mut metas: Vec<BuildpackMetadata> = buildpacks
            .iter()
            .enumerate()
            .map(|(i, bp)| metadata(bp.key.clone(), &layout.idx_dir(i)))
            .collect();
        let defaults = match finalized {
            Ok(defaults) => defaults,
            Err(e) => {
                // CF's builder writes the result when a phase after supply fails too
                // (buildpackapplifecycle PR 78): what the supply buildpacks reported.
                let result_json = area.path("result.json");
                fs::write(&result_json, convert(&[], app).result_json(app, &metas))
                    .with_context(|| format!("cannot write {}", result_json.display()))?;
                out::say(format!(
                    "wrote {} with the supply buildpacks' metadata, as CF's builder does when \
                     the final buildpack fails",
                    result_json.display()
                ));
                return Err(e.into());
            }
        };
        metas.push(metadata(
            final_name.clone(),
            &layout.idx_dir(layout.total - 1),
        ));
        let merged = merge_declarations(
            &layout,
            &origins(&buildpacks, &metas),
            &final_name,
            defaults,
        )?;
        let outcome = convert(&merged, app);
        let result_json = area.path("result.json");
        fs::write(&result_json, outcome.result_json(app, &metas))
            .with_context(|| format!("cannot write {}", result_json.display()))?;
        let droplet = make_droplet(area, &layout, &outcome, &metas)?;
        if let Some(tgz) = &s.droplet_tgz {
            crate::tarball::write(&droplet, tgz)?;
        }
        Ok(Staged {
            droplet,
            result_json,
            outcome,
        })
    })();
    if staged.is_err() && layout.contents.exists() {
        out::say(format!(
            "the staging area is kept for inspection: DEPS_DIR {}, BUILD_DIR {}",
            layout.deps_dir.display(),
            layout.build_dir.display()
        ));
    }
    staged
}

fn resolve_buildpacks(s: &Settings, area: &Area) -> anyhow::Result<Vec<Buildpack>> {
    let mut buildpacks = Vec::new();
    for (i, path) in s.buildpacks.iter().enumerate() {
        let bp = Buildpack::resolve(path, &area.path("buildpacks"))?;
        out::say(format!(
            "buildpack {i}: {} (bin/ in {})",
            path.display(),
            bp.root.display()
        ));
        buildpacks.push(bp);
    }
    Ok(buildpacks)
}

/// The staging area of one run.
struct Layout {
    /// Number of buildpacks, the final one included.
    total: usize,
    /// `contents<random>`: becomes the droplet.
    contents: PathBuf,
    /// `<contents>/deps`.
    deps_dir: PathBuf,
    build_dir: PathBuf,
    /// Each supply buildpack's CACHE_DIR, by index.
    caches: Vec<PathBuf>,
}

impl Layout {
    /// Makes the staging area: each supply buildpack's CACHE_DIR (dropping those of
    /// buildpacks no longer used, as CF's cleanCacheDir does), a random
    /// `contents<random>/deps` with `deps/<idx>` for every buildpack, `profile.d/`,
    /// BUILD_DIR as a fresh copy of the app, and an empty HOME.
    fn prepare(area: &Area, app: &App, buildpacks: &[Buildpack]) -> anyhow::Result<Layout> {
        let total = buildpacks.len() + 1;
        let cache_root = area.path("cache");
        fs::create_dir_all(&cache_root)?;
        let keep: Vec<&str> = buildpacks.iter().map(|b| b.cache_id.as_str()).collect();
        for entry in fs::read_dir(&cache_root)?.flatten() {
            if !keep.contains(&entry.file_name().to_string_lossy().as_ref()) {
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
        let mut caches = Vec::new();
        for bp in buildpacks {
            let dir = cache_root.join(&bp.cache_id);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            caches.push(dir);
        }
        let contents = tempfile::Builder::new()
            .prefix("contents")
            .tempdir_in(&area.root)
            .context("cannot create the staging area")?
            .keep();
        let layout = Layout {
            total,
            deps_dir: contents.join("deps"),
            contents,
            build_dir: area.path("app"),
            caches,
        };
        for i in 0..total {
            fs::create_dir_all(layout.idx_dir(i))?;
        }
        fs::create_dir_all(layout.contents.join("profile.d"))?;
        fs::create_dir_all(area.path("home"))?;
        copy_app(&app.dir, &layout.build_dir).context("cannot copy the app into BUILD_DIR")?;
        Ok(layout)
    }

    fn idx(&self, i: usize) -> String {
        deps_idx(i, self.total)
    }

    fn final_idx(&self) -> String {
        self.idx(self.total - 1)
    }

    fn idx_dir(&self, i: usize) -> PathBuf {
        self.deps_dir.join(self.idx(i))
    }
}

fn run_supplies(
    s: &Settings,
    layout: &Layout,
    buildpacks: &[Buildpack],
    vars: &Vars,
) -> anyhow::Result<()> {
    let mut sup = Supervisor::new(s.grace);
    for (i, bp) in buildpacks.iter().enumerate() {
        let supply = bp.supply();
        let args = [
            layout.build_dir.clone(),
            layout.caches[i].clone(),
            layout.deps_dir.clone(),
            PathBuf::from(layout.idx(i)),
        ];
        let shown: Vec<String> = args.iter().map(|a| a.display().to_string()).collect();
        out::say(format!("running {} {}", supply.display(), shown.join(" ")));
        let mut cmd = Command::new(&supply);
        // CF leaves the working directory undefined; this is neither dir it passes.
        cmd.args(&args).current_dir(&layout.contents);
        env::apply(&mut cmd, vars);
        sup.spawn(&mut cmd, &format!("bin/supply of buildpack {i}"), None)
            .with_context(|| format!("cannot start {}", supply.display()))?;
        let Some(status) = sup.wait(i, &s.interrupted) else {
            return Err(Error::Interrupted {
                during: format!("{} was running", supply.display()),
            }
            .into());
        };
        if sup.has_leftovers(i) {
            out::warn(format!(
                "{} exited but left processes running; CF destroys the staging container, so \
                 they never outlive staging there: stopping them",
                supply.display()
            ));
            sup.stop_all();
        }
        if status.exit_status() != Some(0) {
            return Err(Error::SupplyFailed {
                path: supply,
                status: describe(status),
            }
            .into());
        }
    }
    Ok(())
}

/// How the summary names each supply buildpack: index, name and version from its
/// config.yml, and the file or directory it came from.
fn origins(buildpacks: &[Buildpack], metas: &[BuildpackMetadata]) -> Vec<String> {
    buildpacks
        .iter()
        .zip(metas)
        .enumerate()
        .map(|(i, (bp, m))| {
            let version = m.version.as_deref().map(|v| format!(" {v}"));
            let name = format!("{}{}", m.name, version.unwrap_or_default());
            format!("buildpack {i}: {} in {}", name.trim(), bp.display_name())
        })
        .collect()
}

/// Reads every launch.yml and merges them, then the final buildpack's defaults (CF uses
/// its launch.yml if it wrote one, else its `bin/release`), then the Procfile.
fn merge_declarations(
    layout: &Layout,
    origins: &[String],
    final_name: &str,
    defaults: Vec<Declared>,
) -> Result<Vec<Entry>, Error> {
    let mut merged = Vec::new();
    for (i, origin) in origins.iter().enumerate() {
        if let Some(declared) = read_launch_yml(layout, i, origin)? {
            merge(&mut merged, declared);
        }
    }
    let final_origin = format!("the stand-in for {final_name}");
    let finals = match read_launch_yml(layout, layout.total - 1, &final_origin)? {
        Some(declared) => declared,
        None => entries(defaults, &final_origin),
    };
    merge(&mut merged, finals);
    // CF's readProcfile: only a missing Procfile is no Procfile; one it cannot read
    // fails staging ("Failed to read command from Procfile").
    let procfile = layout.build_dir.join("Procfile");
    let bytes = match read_small(&procfile) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::Procfile {
                path: procfile,
                problem: e.to_string(),
            })
        }
    };
    if let Some(bytes) = bytes {
        let declared = launch_yml::parse_procfile(&bytes).map_err(|problem| Error::Procfile {
            path: procfile.clone(),
            problem,
        })?;
        merge(&mut merged, entries(declared, "the Procfile"));
    }
    Ok(merged)
}

fn entries(declared: Vec<Declared>, origin: &str) -> Vec<Entry> {
    declared
        .into_iter()
        .map(|declared| Entry {
            declared,
            origin: origin.to_string(),
        })
        .collect()
}

/// Reads buildpack `i`'s launch.yml where CF's builder looks for it: at the index
/// without leading zeros (buildpackapplifecycle's MergeLaunchYML joins
/// `strconv.Itoa(index)`), not at DEPS_IDX. With 10 or more buildpacks, a launch.yml
/// written only at the padded `deps/03/` is skipped there, so it is skipped here too,
/// with a warning that names what is lost. As CF's launchYMLExists, whatever `stat`
/// finds there counts: one that cannot be read (a directory) fails staging.
fn read_launch_yml(layout: &Layout, i: usize, origin: &str) -> Result<Option<Vec<Entry>>, Error> {
    let unpadded = layout.deps_dir.join(i.to_string()).join("launch.yml");
    if unpadded.exists() {
        let fail = |problems| Error::LaunchYml {
            path: unpadded.clone(),
            problems,
        };
        let bytes =
            read_small(&unpadded).map_err(|e| fail(vec![format!("cannot read it: {e}")]))?;
        let declared = launch_yml::parse(&bytes).map_err(fail)?;
        return Ok(Some(entries(declared, origin)));
    }
    let padded = layout.idx_dir(i).join("launch.yml");
    if padded != unpadded && padded.exists() {
        warn_skipped_launch_yml(layout, i, origin, &padded);
    }
    Ok(None)
}

/// Says what a launch.yml at the padded DEPS_IDX would have declared, and that CF's
/// builder never reads it.
fn warn_skipped_launch_yml(layout: &Layout, i: usize, origin: &str, padded: &Path) {
    let lost = match read_small(padded).map(|t| launch_yml::parse(&t)) {
        Ok(Ok(declared)) if !declared.is_empty() => declared
            .iter()
            .map(|d| {
                if d.sidecar_for.is_empty() {
                    format!("process type {:?}", d.kind)
                } else {
                    format!("sidecar {:?}", d.kind)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Ok(Ok(_)) => "its launch.yml (which declares no process)".to_string(),
        _ => "whatever it declares (CF does not even parse it)".to_string(),
    };
    out::warn(format!(
        "{origin} wrote launch.yml only at deps/{idx}/launch.yml, but CF's builder reads \
         deps/{i}/launch.yml (the index without leading zeros) once an app has 10 or more \
         buildpacks: on Cloud Foundry the staging succeeds without {lost}, and stage-local \
         drops it too; the buildpack must write the same launch.yml at deps/{i}/launch.yml \
         as well (found: {})",
        padded.display(),
        idx = layout.idx(i),
    ));
}

/// result.json's name, version and config of a buildpack, from its `config.yml` read
/// at the padded DEPS_IDX (CF reads it there; it ignores a missing or broken one).
fn metadata(key: String, idx_dir: &Path) -> BuildpackMetadata {
    let path = idx_dir.join("config.yml");
    let doc = read_small(&path)
        .ok()
        .and_then(|bytes| launch_yml::document(&bytes).ok());
    let Some(serde_yaml::Value::Mapping(c)) = doc else {
        out::warn(format!(
            "{} is missing or unreadable: CF shows this buildpack without a name or version",
            path.display()
        ));
        return BuildpackMetadata {
            key,
            name: String::new(),
            version: None,
            config: None,
            output_metadata: None,
        };
    };
    let text = |k: &str| {
        c.get(k)
            .and_then(crate::app::scalar)
            .filter(|s| !s.is_empty())
    };
    let map = match c.get("config") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(v @ serde_yaml::Value::Mapping(_)) => Some(yaml_to_json(v)),
        Some(_) => {
            out::warn(format!(
                "{}: `config:` is not a map, so it is left out of result.json",
                path.display()
            ));
            None
        }
    };
    // Any map, copied as it is (buildpackapplifecycle PR 78).
    let output_metadata = match c.get("output_metadata") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(v @ serde_yaml::Value::Mapping(_)) => Some(yaml_to_json(v)),
        Some(_) => {
            out::warn(format!(
                "{}: `output_metadata:` is not a map, so it is left out of result.json",
                path.display()
            ));
            None
        }
    };
    BuildpackMetadata {
        key,
        name: text("name").unwrap_or_default(),
        version: text("version"),
        config: map,
        output_metadata,
    }
}

/// A YAML value as JSON, map keys sorted as Go's encoder sorts them, and a whole float
/// written as Go writes a float64 (`1.0` and `1e3` as `1` and `1000`).
fn yaml_to_json(v: &serde_yaml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => J::from(f as i64),
            _ => serde_json::to_value(n).unwrap_or(J::Null),
        },
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(items) => J::Array(items.iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let sorted: std::collections::BTreeMap<String, J> = m
                .iter()
                .map(|(k, v)| {
                    let key = crate::app::scalar(k).unwrap_or_else(|| format!("{k:?}"));
                    (key, yaml_to_json(v))
                })
                .collect();
            J::Object(sorted.into_iter().collect())
        }
        Y::Tagged(t) => yaml_to_json(&t.value),
    }
}

/// The droplet: the staging area with app/, tmp/, logs/ and staging_info.yml, moved to
/// `<area>/droplet` (replacing the previous one).
fn make_droplet(
    area: &Area,
    layout: &Layout,
    outcome: &Outcome,
    metas: &[BuildpackMetadata],
) -> anyhow::Result<PathBuf> {
    let contents = &layout.contents;
    for d in ["tmp", "logs"] {
        fs::create_dir_all(contents.join(d))?;
    }
    fs::rename(&layout.build_dir, contents.join("app"))
        .context("cannot move BUILD_DIR into the droplet")?;
    fs::write(
        contents.join("staging_info.yml"),
        crate::result::staging_info(outcome, metas),
    )?;
    let droplet = area.path("droplet");
    if droplet.exists() {
        fs::remove_dir_all(&droplet)
            .with_context(|| format!("cannot remove {}", droplet.display()))?;
    }
    fs::rename(contents, &droplet)
        .with_context(|| format!("cannot create {}", droplet.display()))?;
    // The real droplet's root is the builder's `contents` temp dir: mode 0700.
    fs::set_permissions(
        &droplet,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("cannot set the mode of {}", droplet.display()))?;
    Ok(droplet)
}

/// Copies the app as `cf push` uploads it: everything but the cf CLI's ignore list and
/// the top-level manifest.yml; modes and symlinks kept.
fn copy_app(from: &Path, to: &Path) -> std::io::Result<()> {
    fn walk(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            if IGNORED.contains(&name_str.as_ref()) || (top && name_str == "manifest.yml") {
                continue;
            }
            let (src, dst) = (entry.path(), to.join(&name));
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                symlink(fs::read_link(&src)?, &dst)?;
            } else if kind.is_dir() {
                walk(&src, &dst, false)?;
            } else if kind.is_file() {
                fs::copy(&src, &dst)?;
            }
        }
        // Last, so a read-only directory can still be filled.
        fs::set_permissions(to, fs::metadata(from)?.permissions())
    }
    walk(from, to, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_idx_pads_once_there_are_ten_buildpacks() {
        assert_eq!(deps_idx(0, 1), "0");
        assert_eq!(deps_idx(8, 9), "8");
        assert_eq!(deps_idx(0, 10), "00");
        assert_eq!(deps_idx(9, 10), "09");
        assert_eq!(deps_idx(10, 11), "10");
        assert_eq!(deps_idx(7, 100), "007");
    }

    #[test]
    fn config_values_become_json_as_go_writes_them() {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str("z: 1.0\na: 1e3\nm: [1.5, 7, -2.0, true, null, x]\n")
                .expect("yaml");
        assert_eq!(
            yaml_to_json(&yaml).to_string(),
            r#"{"a":1000,"m":[1.5,7,-2,true,null,"x"],"z":1}"#
        );
    }

    #[test]
    fn app_names_become_safe_dir_names() {
        assert_eq!(
            dir_name("app-using-config-server"),
            "app-using-config-server"
        );
        assert_eq!(dir_name("my app/v2"), "my_app_v2");
        assert_eq!(dir_name(".."), "app");
    }

    #[test]
    fn copies_the_app_like_cf_push() {
        let root = tempfile::tempdir().expect("tempdir");
        let (from, to) = (root.path().join("from"), root.path().join("to"));
        fs::create_dir_all(from.join(".git")).expect("mkdir");
        fs::create_dir_all(from.join("lib")).expect("mkdir");
        fs::write(from.join("manifest.yml"), "x").expect("write");
        fs::write(from.join("lib/manifest.yml"), "kept").expect("write");
        fs::write(from.join("run.sh"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(
            from.join("run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .expect("chmod");
        symlink("run.sh", from.join("link")).expect("symlink");
        copy_app(&from, &to).expect("copy");
        assert!(!to.join("manifest.yml").exists() && !to.join(".git").exists());
        assert!(to.join("lib/manifest.yml").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(to.join("run.sh")).expect("stat").permissions(),
        );
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            fs::read_link(to.join("link")).expect("link"),
            PathBuf::from("run.sh")
        );
    }
}
