//! The app as `cf push` sees it: its directory, and the first application of its
//! `manifest.yml` (name, memory, env, buildpacks, sidecars, and each process type's
//! memory from `processes:`). Values are checked here, with the rules of the cf CLI and
//! Cloud Controller, so a bad one fails before staging.

use crate::errors::Error;
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Cloud Controller's default app memory, when the manifest sets none.
pub(crate) const DEFAULT_MEMORY_MB: u64 = 1024;

#[derive(Debug, Clone)]
pub(crate) struct App {
    /// Absolute.
    pub dir: PathBuf,
    pub name: String,
    /// The app-level `memory:`, which Cloud Controller gives the web process only.
    pub memory_mb: u64,
    /// The manifest's `env:`, values as strings, in manifest order.
    pub env: Vec<(String, String)>,
    pub buildpacks: Vec<String>,
    /// The manifest's own `sidecars:` (Cloud Controller calls them user-defined).
    pub sidecars: Vec<UserSidecar>,
    /// The manifest's `processes:`: the memory it sets for a process type.
    pub processes: Vec<ProcessMemory>,
}

/// One entry of the manifest's `processes:` (only what sizes the process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessMemory {
    pub kind: String,
    pub memory_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserSidecar {
    pub name: String,
    pub process_types: Vec<String>,
    pub command: String,
    pub memory_mb: Option<u64>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    applications: Vec<RawApp>,
}

#[derive(Deserialize)]
struct RawApp {
    name: Option<String>,
    memory: Option<Value>,
    #[serde(default)]
    buildpacks: Vec<String>,
    buildpack: Option<String>,
    #[serde(default)]
    env: serde_yaml::Mapping,
    #[serde(default)]
    sidecars: Vec<RawSidecar>,
    #[serde(default)]
    processes: Vec<RawProcess>,
}

#[derive(Deserialize)]
struct RawProcess {
    #[serde(rename = "type")]
    kind: String,
    memory: Option<Value>,
}

#[derive(Deserialize)]
struct RawSidecar {
    name: String,
    command: String,
    #[serde(default)]
    process_types: Vec<String>,
    memory: Option<Value>,
}

impl App {
    pub(crate) fn load(dir: &Path) -> Result<App, Error> {
        let bad_dir = |problem: String| Error::AppDir {
            path: dir.to_path_buf(),
            problem,
        };
        let meta = std::fs::metadata(dir).map_err(|e| bad_dir(format!("cannot be used: {e}")))?;
        if !meta.is_dir() {
            return Err(bad_dir("is not a directory".into()));
        }
        let dir = dir
            .canonicalize()
            .map_err(|e| bad_dir(format!("cannot be resolved: {e}")))?;
        let default_name = dir
            .file_name()
            .map_or_else(|| "app".into(), |n| n.to_string_lossy().to_string());
        let path = dir.join("manifest.yml");
        let raw = match crate::files::read_small_text(&path) {
            Ok(text) => Some(parse_manifest(&text, &path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::AppManifest {
                    path,
                    problem: format!("cannot read it: {e}"),
                })
            }
        };
        let Some(raw) = raw else {
            return Ok(App {
                dir,
                name: default_name,
                memory_mb: DEFAULT_MEMORY_MB,
                env: vec![],
                buildpacks: vec![],
                sidecars: vec![],
                processes: vec![],
            });
        };
        let bad = |problem: String| Error::AppManifest {
            path: path.clone(),
            problem,
        };
        let memory_mb = match &raw.memory {
            None => DEFAULT_MEMORY_MB,
            Some(v) => megabytes(v).map_err(|p| bad(format!("applications[0].memory: {p}")))?,
        };
        let mut env = Vec::new();
        for (k, v) in &raw.env {
            let Value::String(key) = k else {
                return Err(bad(format!(
                    "applications[0].env: key {k:?} is not a string"
                )));
            };
            check_env_key(key).map_err(|p| bad(format!("applications[0].env.{key}: {p}")))?;
            let value = scalar(v).ok_or_else(|| {
                bad(format!(
                    "applications[0].env.{key}: must be a string, number or boolean"
                ))
            })?;
            env.push((key.clone(), value));
        }
        let mut sidecars = Vec::new();
        for (i, s) in raw.sidecars.iter().enumerate() {
            let memory_mb = match &s.memory {
                None => None,
                Some(v) => Some(
                    megabytes(v)
                        .map_err(|p| bad(format!("applications[0].sidecars[{i}].memory: {p}")))?,
                ),
            };
            sidecars.push(UserSidecar {
                name: s.name.clone(),
                process_types: s.process_types.clone(),
                command: s.command.clone(),
                memory_mb,
            });
        }
        let mut processes: Vec<ProcessMemory> = Vec::new();
        for (i, p) in raw.processes.iter().enumerate() {
            let key = format!("applications[0].processes[{i}]");
            if p.kind.trim().is_empty() {
                return Err(bad(format!("{key}.type: must name a process type")));
            }
            // Cloud Controller: `Process "web" may only be present once`.
            if processes.iter().any(|q| q.kind == p.kind) {
                return Err(bad(format!(
                    "{key}.type: process {:?} may only be present once",
                    p.kind
                )));
            }
            let memory_mb = match &p.memory {
                None => None,
                Some(v) => Some(megabytes(v).map_err(|e| bad(format!("{key}.memory: {e}")))?),
            };
            processes.push(ProcessMemory {
                kind: p.kind.clone(),
                memory_mb,
            });
        }
        let mut buildpacks = raw.buildpacks.clone();
        if buildpacks.is_empty() {
            buildpacks.extend(raw.buildpack.clone());
        }
        Ok(App {
            dir,
            name: raw.name.clone().unwrap_or(default_name),
            memory_mb,
            env,
            buildpacks,
            sidecars,
            processes,
        })
    }

    /// The memory of process type `kind` and where it comes from, as Cloud Controller
    /// sets it on `cf push` (AppManifestMessage, ProcessModel): a `processes:` entry of
    /// that type wins (for web it replaces the app-level `memory:`); else web gets the
    /// app-level `memory:`; every other type gets Cloud Controller's default
    /// (`default_app_memory`, 1024 MB), whatever the app-level `memory:` says.
    pub(crate) fn process_memory(&self, kind: &str) -> (u64, &'static str) {
        match self.processes.iter().find(|p| p.kind == kind) {
            Some(ProcessMemory {
                memory_mb: Some(mb),
                ..
            }) => (*mb, "processes: in the manifest"),
            Some(_) => (DEFAULT_MEMORY_MB, "Cloud Controller's default"),
            None if kind == "web" => (self.memory_mb, "the app's memory"),
            None => (
                DEFAULT_MEMORY_MB,
                "Cloud Controller's default: the app's memory sizes web only",
            ),
        }
    }

    /// Sets variables after the manifest's `env:` (`--env`, as `cf set-env` would): a
    /// variable the manifest has keeps its place with the new value.
    pub(crate) fn set_env(&mut self, vars: &[(String, String)]) {
        for (k, v) in vars {
            match self.env.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => self.env.push((k.clone(), v.clone())),
            }
        }
    }

    /// The name of the app's final buildpack, which the local stand-in replaces.
    pub(crate) fn final_buildpack(&self) -> String {
        self.buildpacks
            .last()
            .cloned()
            .unwrap_or_else(|| "the app's final buildpack".into())
    }
}

fn parse_manifest(text: &str, path: &Path) -> Result<RawApp, Error> {
    let bad = |problem: String| Error::AppManifest {
        path: path.to_path_buf(),
        problem,
    };
    let m: RawManifest = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let count = m.applications.len();
    let mut apps = m.applications.into_iter();
    let first = apps
        .next()
        .ok_or_else(|| bad("applications: lists no application".into()))?;
    if count > 1 {
        crate::out::warn(format!(
            "{} lists {count} applications; staging the first only",
            path.display()
        ));
    }
    Ok(first)
}

/// Cloud Controller refuses these names in an app's environment.
pub(crate) fn check_env_key(key: &str) -> Result<(), String> {
    if key.starts_with("VCAP_") {
        Err("cannot start with VCAP_ (Cloud Controller refuses it)".into())
    } else if key.starts_with("VMC_") {
        Err("cannot start with VMC_ (Cloud Controller refuses it)".into())
    } else if key == "PORT" {
        Err("cannot set PORT (Cloud Controller refuses it)".into())
    } else {
        Ok(())
    }
}

/// A YAML scalar as the cf CLI sends it: the value's text.
pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Tagged(t) => scalar(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// `256M`, `256MB`, `1G`, `1GB` (any case) in megabytes, as the cf CLI reads `memory:`.
pub(crate) fn megabytes(v: &Value) -> Result<u64, String> {
    let rule = "byte quantity must be a positive integer with a unit of measurement like \
                M, MB, G, or GB";
    let text = match v {
        Value::String(s) => s.trim().to_ascii_uppercase(),
        _ => return Err(format!("{rule}, not {}", scalar(v).unwrap_or_default())),
    };
    let (digits, factor) = [("TB", 1 << 20), ("T", 1 << 20), ("GB", 1024), ("G", 1024)]
        .into_iter()
        .chain([("MB", 1), ("M", 1)])
        .find_map(|(unit, f)| text.strip_suffix(unit).map(|d| (d, f)))
        .ok_or_else(|| format!("{rule}, not {text:?}"))?;
    match digits.parse::<u64>() {
        Ok(n) if n > 0 => n
            .checked_mul(factor)
            .ok_or_else(|| format!("{text:?} is too large")),
        _ => Err(format!("{rule}, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(manifest: &str) -> Result<App, Error> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("manifest.yml"), manifest).expect("write");
        App::load(dir.path())
    }

    #[test]
    fn reads_the_first_application() {
        let app = app_with(
            "---\napplications:\n- name: demo\n  memory: 256M\n  buildpacks: [a_buildpack, ruby_buildpack]\n  \
             env:\n    CONFIG_SERVER_PORT: 8082\n    FLAG: true\n    EMPTY:\n  sidecars:\n  - name: mine\n    \
             process_types: [web]\n    command: ./mine\n    memory: 16M\n",
        )
        .expect("valid manifest");
        assert_eq!(app.name, "demo");
        assert_eq!(app.memory_mb, 256);
        assert_eq!(app.final_buildpack(), "ruby_buildpack");
        assert_eq!(
            app.env,
            vec![
                ("CONFIG_SERVER_PORT".to_string(), "8082".to_string()),
                ("FLAG".to_string(), "true".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
        assert_eq!(
            app.sidecars,
            vec![UserSidecar {
                name: "mine".into(),
                process_types: vec!["web".into()],
                command: "./mine".into(),
                memory_mb: Some(16),
            }]
        );
    }

    #[test]
    fn defaults_without_a_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::load(dir.path()).expect("no manifest is fine");
        assert_eq!(app.memory_mb, DEFAULT_MEMORY_MB);
        assert!(app.env.is_empty() && app.sidecars.is_empty());
    }

    #[test]
    fn each_process_type_gets_its_memory_as_cloud_controller_sets_it() {
        let app = app_with(
            "applications:\n- name: demo\n  memory: 256M\n  processes:\n  - type: worker\n    \
             memory: 128M\n    instances: 2\n  - type: clock\n    command: ./clock\n",
        )
        .expect("valid manifest");
        assert_eq!(app.process_memory("web"), (256, "the app's memory"));
        assert_eq!(
            app.process_memory("worker"),
            (128, "processes: in the manifest")
        );
        assert_eq!(app.process_memory("clock").0, DEFAULT_MEMORY_MB);
        assert_eq!(
            app.process_memory("other"),
            (
                DEFAULT_MEMORY_MB,
                "Cloud Controller's default: the app's memory sizes web only"
            )
        );
        // A `processes:` entry for web replaces the app-level `memory:`.
        let app = app_with(
            "applications:\n- memory: 256M\n  processes:\n  - type: web\n    memory: 2G\n",
        )
        .expect("valid manifest");
        assert_eq!(app.process_memory("web").0, 2048);
        for (manifest, key) in [
            (
                "applications:\n- processes:\n  - type: w\n    memory: 12\n",
                "applications[0].processes[0].memory: byte quantity",
            ),
            (
                "applications:\n- processes:\n  - type: w\n  - type: w\n",
                "applications[0].processes[1].type: process \"w\" may only be present once",
            ),
            (
                "applications:\n- processes:\n  - type: ''\n",
                "applications[0].processes[0].type: must name a process type",
            ),
        ] {
            let err = app_with(manifest).expect_err(manifest).to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn memory_takes_the_cf_cli_units_only() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(megabytes(&v("256M")), Ok(256));
        assert_eq!(megabytes(&v("256mb")), Ok(256));
        assert_eq!(megabytes(&v("2G")), Ok(2048));
        for bad in ["256", "0M", "-1G", "M", "1.5G", "256K"] {
            assert!(megabytes(&v(bad)).is_err(), "{bad}");
        }
        assert!(megabytes(&Value::Number(256.into())).is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (manifest, key) in [
            ("applications:\n- memory: 256\n", "applications[0].memory"),
            (
                "applications:\n- env:\n    PORT: 1\n",
                "applications[0].env.PORT",
            ),
            (
                "applications:\n- env:\n    VCAP_X: 1\n",
                "applications[0].env.VCAP_X",
            ),
            (
                "applications:\n- env:\n    L: [1]\n",
                "applications[0].env.L",
            ),
            ("applications: []\n", "lists no application"),
            ("applications:\n- sidecars:\n  - name: x\n", "command"),
        ] {
            let err = app_with(manifest).expect_err(manifest).to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
