//! The environment CF gives staging and running processes, built in Cloud Controller's
//! order, later entries winning: for staging (StagingEnvironmentBuilder) the staging
//! env group, the app's env, CF_STACK, VCAP_APPLICATION and MEMORY_LIMIT, VCAP_SERVICES;
//! at run time (Diego::Environment) the instance's ports, the app's env,
//! VCAP_APPLICATION and MEMORY_LIMIT, VCAP_SERVICES, then what the launcher sets (HOME,
//! TMPDIR, DEPS_DIR). Nothing of the caller's environment leaks in beyond PATH and the
//! proxies.

use crate::app::App;
use crate::settings::Settings;
use cf_entrypoint::launcher;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Cloud Controller stages with at least this much memory (minimum_staging_memory_mb),
/// and MEMORY_LIMIT during staging says so: not the app's memory.
pub(crate) const MIN_STAGING_MEMORY_MB: u64 = 1024;
/// Staging disk (minimum_staging_disk_mb) and the default app disk quota, in MB.
const STAGING_DISK_MB: u64 = 4096;
const APP_DISK_MB: u64 = 1024;
/// Cloud Controller's default instance_file_descriptor_limit.
const FDS: u64 = 16384;
/// A domain that never resolves: the app has no route and no API here.
const CF_API: &str = "https://api.stage-local.invalid";

/// Variables in insertion order, a later `set` of the same name replacing the value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Vars(Vec<(String, String)>);

impl Vars {
    pub(crate) fn set(&mut self, k: &str, v: impl Into<String>) {
        let v = v.into();
        match self.0.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k.to_string(), v)),
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The ids of the app and of one instance of one of its process types: UUID-shaped,
/// derived from the app's name so that reruns are comparable (CF's are random).
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub instance: String,
    pub app: String,
    pub space: String,
    pub org: String,
    pub process: String,
}

impl Ids {
    /// The ids of the web process's instance.
    pub(crate) fn of(app_name: &str) -> Ids {
        Ids::of_process(app_name, "web")
    }

    /// The ids of instance `index` of process type `kind`: instance 0's are
    /// [`Ids::of_process`]'s, every other instance has its own instance guid.
    pub(crate) fn of_instance(app_name: &str, kind: &str, index: u32) -> Ids {
        let mut ids = Ids::of_process(app_name, kind);
        if index > 0 {
            let index = index.to_string();
            ids.instance = uuid(&[
                app_name.as_bytes(),
                b"instance",
                kind.as_bytes(),
                index.as_bytes(),
            ]);
        }
        ids
    }

    /// The ids of an instance of process type `kind`. Cloud Controller gives the web
    /// process the app's own guid (ProcessCreate) and every other type a guid of its
    /// own; each instance (its own container) has its own instance guid.
    pub(crate) fn of_process(app_name: &str, kind: &str) -> Ids {
        let id = |what: &str| uuid(&[app_name.as_bytes(), what.as_bytes()]);
        let of_kind = |what: &str| uuid(&[app_name.as_bytes(), what.as_bytes(), kind.as_bytes()]);
        let web = kind == "web";
        Ids {
            instance: if web {
                id("instance")
            } else {
                of_kind("instance")
            },
            app: id("app"),
            space: id("space"),
            org: id("org"),
            process: if web { id("app") } else { of_kind("process") },
        }
    }
}

/// The instance's address: its IP as Diego gives it (CF_INSTANCE_IP), here loopback.
pub(crate) const INSTANCE_IP: &str = "127.0.0.1";

/// What a process is given, beyond the app.
pub(crate) struct Instance<'a> {
    pub droplet: &'a Path,
    /// PORT, where the process listens.
    pub port: u16,
    /// Where PORT is reached from this machine: PORT itself, or the loopback port
    /// forwarded into the instance's own network (CF_INSTANCE_PORT, the host port).
    pub host_port: u16,
    /// INSTANCE_INDEX and CF_INSTANCE_INDEX.
    pub index: u32,
    /// The process's own MEMORY_LIMIT in MB.
    pub memory_mb: u64,
    pub process_type: &'a str,
    /// The ids of the instance the process belongs to.
    pub ids: &'a Ids,
    /// Variables of the app's env that this instance gets another value of: the ports
    /// of sidecars that another instance on this machine already listens on.
    pub overrides: &'a [(String, String)],
    /// CF_INSTANCE_CERT and CF_INSTANCE_KEY: the instance identity files.
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// The environment of every `bin/supply` and of the final buildpack's stand-in.
pub(crate) fn staging(s: &Settings, app: &App, home: &Path) -> Vars {
    let memory = app.process_memory("web").0.max(MIN_STAGING_MEMORY_MB);
    let mut v = Vars::default();
    v.set("PATH", &s.path);
    // The staging container's own user environment.
    v.set("HOME", home.display().to_string());
    v.set("LANG", "en_US.UTF-8");
    for (k, val) in &s.proxies {
        v.set(k, val);
    }
    for (k, val) in &app.env {
        v.set(k, val);
    }
    v.set("CF_STACK", &s.stack);
    v.set(
        "VCAP_APPLICATION",
        vcap_application(
            app,
            &Ids::of(&app.name),
            memory,
            STAGING_DISK_MB,
            None,
            &fresh_version(app),
        ),
    );
    v.set("MEMORY_LIMIT", format!("{memory}m"));
    bindings(&mut v, s);
    v
}

/// The service bindings: VCAP_SERVICES, or with `--bindings-dir` only
/// SERVICE_BINDING_ROOT, as CF's `service-binding-k8s` app feature sets them.
fn bindings(v: &mut Vars, s: &Settings) {
    match &s.bindings_dir {
        Some(dir) => v.set("SERVICE_BINDING_ROOT", dir.display().to_string()),
        None => v.set("VCAP_SERVICES", &s.vcap_services),
    }
}

/// The environment of a process or one of its sidecars (all of an instance get the
/// same, but for MEMORY_LIMIT), before the launcher's `.profile.d` scripts.
pub(crate) fn running(s: &Settings, app: &App, i: &Instance<'_>) -> Vars {
    let mut v = Vars::default();
    let ids = i.ids;
    v.set("PATH", &s.path);
    v.set("LANG", "en_US.UTF-8");
    // What Diego gives every process of an instance (sidecars too). Inside a container
    // the internal and external ports differ (8080 and a host port); on the machine's
    // shared loopback they are one.
    let port = i.port.to_string();
    let host_port = i.host_port.to_string();
    let index = i.index.to_string();
    v.set("PORT", &port);
    v.set("VCAP_APP_PORT", &port);
    v.set("VCAP_APP_HOST", "0.0.0.0");
    v.set("INSTANCE_INDEX", &index);
    v.set("INSTANCE_GUID", &ids.instance);
    v.set("CF_INSTANCE_INDEX", &index);
    v.set("CF_INSTANCE_GUID", &ids.instance);
    v.set("CF_INSTANCE_IP", INSTANCE_IP);
    v.set("CF_INSTANCE_INTERNAL_IP", INSTANCE_IP);
    v.set("CF_INSTANCE_PORT", &host_port);
    v.set("CF_INSTANCE_ADDR", format!("{INSTANCE_IP}:{host_port}"));
    v.set(
        "CF_INSTANCE_PORTS",
        json!([{"external": i.host_port, "internal": i.port}]).to_string(),
    );
    v.set("CF_INSTANCE_CERT", i.cert.display().to_string());
    v.set("CF_INSTANCE_KEY", i.key.display().to_string());
    for (k, val) in app.env.iter().chain(i.overrides) {
        v.set(k, val);
    }
    let vcap = vcap_application(
        app,
        ids,
        i.memory_mb,
        APP_DISK_MB,
        Some(i.process_type),
        &fresh_version(app),
    );
    v.set(
        "VCAP_APPLICATION",
        launcher::vcap_application(
            &vcap,
            &ids.instance,
            &i.port.to_string(),
            &i.index.to_string(),
        ),
    );
    v.set("MEMORY_LIMIT", format!("{}m", i.memory_mb));
    bindings(&mut v, s);
    // The launcher's own (buildpackapplifecycle env.CalcEnv), on the droplet's paths.
    for (k, val) in launcher::launcher_env(i.droplet) {
        v.set(k, val);
    }
    v
}

/// The environment an image gives its web process and sidecars, as image config: what
/// Diego gives an instance that is known before the container exists (its port is the
/// container's, 8080; the instance is the first), the app's env, VCAP_APPLICATION as
/// Cloud Controller writes it, MEMORY_LIMIT and VCAP_SERVICES. What depends on the
/// container (CF_INSTANCE_IP, CF_INSTANCE_ADDR, the identity certificate) is left out;
/// what the launcher adds (HOME, TMPDIR, DEPS_DIR, its VCAP_APPLICATION rewrite) is the
/// entrypoint's, at run time. Same app, same values: the image's digest depends on them.
pub(crate) fn image(s: &Settings, app: &App, port: u16, memory_mb: u64) -> Vars {
    let ids = Ids::of(&app.name);
    let mut v = Vars::default();
    v.set("LANG", "en_US.UTF-8");
    let p = port.to_string();
    v.set("PORT", &p);
    v.set("VCAP_APP_PORT", &p);
    v.set("VCAP_APP_HOST", "0.0.0.0");
    v.set("INSTANCE_INDEX", "0");
    v.set("INSTANCE_GUID", &ids.instance);
    v.set("CF_INSTANCE_INDEX", "0");
    v.set("CF_INSTANCE_GUID", &ids.instance);
    v.set("CF_INSTANCE_PORT", &p);
    v.set(
        "CF_INSTANCE_PORTS",
        json!([{"external": port, "internal": port}]).to_string(),
    );
    for (k, val) in &app.env {
        v.set(k, val);
    }
    // The image is the droplet's: its version is one per app, not one per run.
    let version = uuid(&[app.name.as_bytes(), b"image"]);
    v.set(
        "VCAP_APPLICATION",
        vcap_application(app, &ids, memory_mb, APP_DISK_MB, Some("web"), &version),
    );
    v.set("MEMORY_LIMIT", format!("{memory_mb}m"));
    v.set("VCAP_SERVICES", &s.vcap_services);
    v
}

/// A new app version id, as Cloud Controller makes one for every droplet.
fn fresh_version(app: &App) -> String {
    uuid(&[app.name.as_bytes(), &nanos().to_le_bytes()])
}

/// VCAP_APPLICATION as Cloud Controller's VarsBuilder writes it. Staging has `users`;
/// run time has the process's id and type, and no `users`.
fn vcap_application(
    app: &App,
    ids: &Ids,
    mem: u64,
    disk: u64,
    process_type: Option<&str>,
    version: &str,
) -> String {
    let mut v = json!({
        "cf_api": CF_API,
        "limits": {"fds": FDS, "mem": mem, "disk": disk},
        "application_name": app.name,
        "application_uris": [],
        "name": app.name,
        "space_name": "stage-local",
        "space_id": ids.space,
        "organization_id": ids.org,
        "organization_name": "stage-local",
        "uris": [],
        "application_id": ids.app,
        "version": version,
        "application_version": version,
    });
    if let Some(obj) = v.as_object_mut() {
        match process_type {
            Some(t) => {
                obj.insert("process_id".into(), json!(ids.process));
                obj.insert("process_type".into(), json!(t));
            }
            None => {
                obj.insert("users".into(), serde_json::Value::Null);
            }
        }
    }
    v.to_string()
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// A UUID-shaped id derived from `parts`: stable for the same app, unlike CF's random
/// ones, so that reruns are comparable.
fn uuid(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-5{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Runs a process with exactly `vars`, nothing inherited.
pub(crate) fn apply(cmd: &mut std::process::Command, vars: &Vars) {
    cmd.env_clear();
    for (k, v) in vars.iter() {
        cmd.env(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::DEFAULT_MEMORY_MB;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            app_dir: "/app".into(),
            buildpacks: vec![],
            stop_after_answers: true,
            stage_only: false,
            droplet_tgz: None,
            bindings_dir: None,
            env: vec![],
            port: None,
            processes: vec!["web".into()],
            instances: 1,
            network: crate::settings::NetworkMode::Host,
            exe: None,
            wait: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            gets: vec![],
            vcap_services: "{\"x\":[]}".into(),
            stack: "cflinuxfs4".into(),
            work_dir: "/w".into(),
            path: "/usr/bin:/bin".into(),
            proxies: vec![("https_proxy".into(), "http://proxy:3128".into())],
            interrupted: Arc::default(),
            image: None,
        }
    }

    fn app(memory_mb: u64) -> App {
        App {
            dir: "/app".into(),
            name: "demo".into(),
            memory_mb,
            env: vec![("CONFIG_SERVER_PORT".into(), "8082".into())],
            buildpacks: vec![],
            sidecars: vec![],
            processes: vec![],
        }
    }

    fn names(vars: &Vars) -> BTreeMap<&str, &str> {
        vars.iter().collect()
    }

    fn vcap(v: &Vars) -> serde_json::Value {
        serde_json::from_str(v.get("VCAP_APPLICATION").expect("set")).expect("json")
    }

    /// `--bindings-dir`: SERVICE_BINDING_ROOT and no VCAP_SERVICES, at staging and at
    /// run time, as CF's service-binding-k8s app feature does.
    #[test]
    fn a_bindings_dir_replaces_vcap_services() {
        let mut s = settings();
        s.bindings_dir = Some("/b/bindings".into());
        let v = staging(&s, &app(256), Path::new("/home"));
        assert_eq!(v.get("SERVICE_BINDING_ROOT"), Some("/b/bindings"));
        assert_eq!(v.get("VCAP_SERVICES"), None);
        let ids = Ids::of("demo");
        let i = Instance {
            process_type: "web",
            port: 8080,
            host_port: 8080,
            index: 0,
            memory_mb: 256,
            droplet: Path::new("/d"),
            ids: &ids,
            overrides: &[],
            cert: Path::new("/c"),
            key: Path::new("/k"),
        };
        let v = running(&s, &app(256), &i);
        assert_eq!(v.get("SERVICE_BINDING_ROOT"), Some("/b/bindings"));
        assert_eq!(v.get("VCAP_SERVICES"), None);
    }

    #[test]
    fn staging_gets_what_cloud_controller_gives() {
        let v = staging(&settings(), &app(256), Path::new("/home"));
        let names: Vec<_> = names(&v).into_keys().collect();
        assert_eq!(
            names,
            vec![
                "CF_STACK",
                "CONFIG_SERVER_PORT",
                "HOME",
                "LANG",
                "MEMORY_LIMIT",
                "PATH",
                "VCAP_APPLICATION",
                "VCAP_SERVICES",
                "https_proxy"
            ]
        );
        assert_eq!(
            v.get("MEMORY_LIMIT"),
            Some("1024m"),
            "staging uses at least 1 GB"
        );
        assert_eq!(v.get("VCAP_SERVICES"), Some("{\"x\":[]}"));
        let va = vcap(&v);
        assert_eq!(va["application_name"], "demo");
        assert_eq!(va["limits"]["mem"], 1024);
        assert!(va["users"].is_null() && va.get("process_type").is_none());
        let big = staging(&settings(), &app(2048), Path::new("/home"));
        assert_eq!(big.get("MEMORY_LIMIT"), Some("2048m"));
        assert_eq!(DEFAULT_MEMORY_MB, 1024);
    }

    #[test]
    fn running_processes_get_the_launchers_and_diegos_environment() {
        let droplet = Path::new("/d");
        let ids = Ids::of("demo");
        let i = Instance {
            droplet,
            port: 4321,
            host_port: 4321,
            index: 0,
            memory_mb: 224,
            process_type: "web",
            ids: &ids,
            overrides: &[],
            cert: Path::new("/c/instance.crt"),
            key: Path::new("/c/instance.key"),
        };
        let v = running(&settings(), &app(256), &i);
        let guid = Ids::of("demo").instance;
        for (k, want) in [
            ("MEMORY_LIMIT", "224m"),
            ("PORT", "4321"),
            ("HOME", "/d/app"),
            ("TMPDIR", "/d/tmp"),
            ("DEPS_DIR", "/d/deps"),
            ("INSTANCE_INDEX", "0"),
            ("CF_INSTANCE_INDEX", "0"),
            ("INSTANCE_GUID", &guid),
            ("CF_INSTANCE_GUID", &guid),
            ("CF_INSTANCE_IP", "127.0.0.1"),
            ("CF_INSTANCE_INTERNAL_IP", "127.0.0.1"),
            ("CF_INSTANCE_PORT", "4321"),
            ("CF_INSTANCE_ADDR", "127.0.0.1:4321"),
            (
                "CF_INSTANCE_PORTS",
                r#"[{"external":4321,"internal":4321}]"#,
            ),
            ("CF_INSTANCE_CERT", "/c/instance.crt"),
            ("CF_INSTANCE_KEY", "/c/instance.key"),
            ("VCAP_APP_PORT", "4321"),
            ("VCAP_APP_HOST", "0.0.0.0"),
        ] {
            assert_eq!(v.get(k), Some(want), "{k}");
        }
        assert_eq!(
            v.get("https_proxy"),
            None,
            "proxies are a staging group setting"
        );
        let text = v.get("VCAP_APPLICATION").expect("set");
        let va = vcap(&v);
        assert_eq!(va["limits"]["mem"], 224);
        assert_eq!(va["process_type"], "web");
        assert!(va.get("users").is_none());
        // What the launcher adds, typed as it types them.
        assert_eq!(va["host"], "0.0.0.0");
        assert_eq!(va["instance_id"], guid.as_str());
        assert_eq!(va["port"], 4321);
        assert_eq!(va["instance_index"], 0);
        // Go re-encodes the map with its keys sorted, nested ones too.
        assert!(text.starts_with(r#"{"application_id":"#), "{text}");
        assert!(
            text.contains(r#""limits":{"disk":1024,"fds":16384,"mem":224}"#),
            "{text}"
        );
    }

    /// Another process type's instance: its own PORT, ids and memory, and the sidecar
    /// ports it was moved to in place of the app's.
    #[test]
    fn another_process_types_instance_has_its_own_ids_and_overrides() {
        let web = Ids::of("demo");
        let ids = Ids::of_instance("demo", "worker", 2);
        assert_eq!(
            Ids::of_instance("demo", "worker", 0).instance,
            Ids::of_process("demo", "worker").instance
        );
        assert_ne!(ids.instance, Ids::of_process("demo", "worker").instance);
        assert_eq!(
            ids.process,
            Ids::of_process("demo", "worker").process,
            "one process, several instances"
        );
        assert_eq!(
            (ids.app.as_str(), ids.space.as_str()),
            (web.app.as_str(), web.space.as_str())
        );
        assert_ne!(ids.instance, web.instance);
        assert_ne!(ids.process, web.process);
        assert_eq!(web.process, web.app, "the web process has the app's guid");
        let overrides = [("CONFIG_SERVER_PORT".to_string(), "9999".to_string())];
        let i = Instance {
            droplet: Path::new("/d"),
            port: 8080,
            host_port: 5555,
            index: 2,
            memory_mb: 1024,
            process_type: "worker",
            ids: &ids,
            overrides: &overrides,
            cert: Path::new("/c/worker/instance.crt"),
            key: Path::new("/c/worker/instance.key"),
        };
        let v = running(&settings(), &app(256), &i);
        for (k, want) in [
            ("PORT", "8080"),
            ("VCAP_APP_PORT", "8080"),
            ("CF_INSTANCE_PORT", "5555"),
            ("CF_INSTANCE_ADDR", "127.0.0.1:5555"),
            (
                "CF_INSTANCE_PORTS",
                r#"[{"external":5555,"internal":8080}]"#,
            ),
            ("INSTANCE_INDEX", "2"),
            ("CF_INSTANCE_INDEX", "2"),
            ("MEMORY_LIMIT", "1024m"),
            ("CONFIG_SERVER_PORT", "9999"),
            ("INSTANCE_GUID", ids.instance.as_str()),
            ("CF_INSTANCE_CERT", "/c/worker/instance.crt"),
        ] {
            assert_eq!(v.get(k), Some(want), "{k}");
        }
        let va = vcap(&v);
        assert_eq!(va["process_type"], "worker");
        assert_eq!(va["process_id"], ids.process.as_str());
        assert_eq!(va["instance_id"], ids.instance.as_str());
        assert_eq!(
            (va["port"].clone(), va["instance_index"].clone()),
            (json!(8080), json!(2))
        );
        assert_eq!(va["application_uris"], serde_json::json!([]));
        // The override keeps the variable's place among the app's env.
        let names: Vec<&str> = v.iter().map(|(k, _)| k).collect();
        let at = |k: &str| names.iter().position(|n| *n == k).expect(k);
        assert!(at("CF_INSTANCE_KEY") < at("CONFIG_SERVER_PORT"));
        assert!(at("CONFIG_SERVER_PORT") < at("VCAP_APPLICATION"));
    }

    #[test]
    fn later_settings_win() {
        let mut v = Vars::default();
        v.set("A", "1");
        v.set("B", "2");
        v.set("A", "3");
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![("A", "3"), ("B", "2")]);
    }
}
