//! The command line and the few variables of the caller's environment that matter,
//! turned once into `Settings` that every step reads. Nothing else reads `std::env`.

use crate::errors::Error;
use clap::Parser;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Stages an app with Cloud Foundry buildpacks the way CF's builder does, then runs the
/// droplet's web process (or the --process types) and its sidecars the way CF's
/// launcher does.
///
/// Every --buildpack runs as a supply buildpack, in order; a small local stand-in takes
/// the place of the app's final buildpack. With --image, the droplet also becomes an OCI
/// image that runs the app and its sidecars anywhere. Exit codes: 0 ok, 1 internal, 2
/// usage, 3 bad input, 4 launch.yml rejected, 5 refused by Cloud Controller's checks, 6
/// port in use, 7 no answer, 8 a process exited, 9 no network namespace for --network
/// own, 10 unusable image base, 130 interrupted, 223 final buildpack (stand-in) failed,
/// 225 a supply buildpack failed. See docs/stage-local.md.
#[derive(Parser, Debug)]
#[command(name = "stage-local", version, about, long_about)]
pub(crate) struct Cli {
    /// A supply buildpack: a zip (as `cf create-buildpack` takes) or a directory.
    /// Repeat for several, in the order CF should run them. scripts/stage-local sets the
    /// default to a development buildpack of its checkout
    #[arg(
        long = "buildpack",
        value_name = "ZIP_OR_DIR",
        env = "STAGE_LOCAL_BUILDPACK"
    )]
    pub buildpacks: Vec<PathBuf>,
    /// Once the app has answered the --get paths, print the summary, stop the app and
    /// its sidecars, and exit (for scripts and CI); without it, the app runs until Ctrl-C
    #[arg(long)]
    pub stop_after_answers: bool,
    /// The old name of --stop-after-answers (deprecated: it never stopped another run)
    #[arg(long, hide = true)]
    pub stop: bool,
    /// Stage only: write the droplet and result.json, start nothing
    #[arg(long, conflicts_with_all = ["stop", "stop_after_answers"])]
    pub stage_only: bool,
    /// Also write the droplet as a .tgz laid out as CF's builder writes it (./app/...,
    /// ./deps/..., ./staging_info.yml), e.g. for `cf push --droplet FILE`
    #[arg(long, value_name = "FILE")]
    pub droplet: Option<PathBuf>,
    /// Also write the droplet as an OCI image archive (an OCI layout in a tar, with
    /// `docker save`'s manifest.json) that `podman load`, `docker load` and skopeo's
    /// `oci-archive:FILE` read; it runs the web process and its sidecars
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Also write the same image as an OCI layout directory (one already there is
    /// replaced)
    #[arg(long, value_name = "DIR")]
    pub image_layout: Option<PathBuf>,
    /// The image's base, the stack's root filesystem: an OCI image archive, an OCI
    /// layout directory or a `docker save` tar [default: a stand-in built from Debian's
    /// packages with mmdebstrap, cached in the work dir]
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<PathBuf>,
    /// Also write a Deployment, a Service and a Secret (VCAP_SERVICES) for the image,
    /// for `kubectl apply` or `podman kube play`; needs --image or --image-layout
    #[arg(long, value_name = "FILE")]
    pub kube: Option<PathBuf>,
    /// The static cf-entrypoint binary to put into the image. scripts/stage-local sets
    /// it [default: cf-entrypoint next to stage-local]
    #[arg(long, value_name = "FILE", env = "STAGE_LOCAL_ENTRYPOINT")]
    pub entrypoint: Option<PathBuf>,
    /// Set an environment variable of the app, after its manifest's `env:` (as `cf
    /// set-env` would); repeat for several
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The PORT of the web process and its sidecars [default: a free loopback port]
    // 0 would have the app bind any port while stage-local waits on port 0.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// A process type to start, one instance with its sidecars (as `cf scale TYPE -i 1`);
    /// repeat for several. Only web gets a route (the URL, --get); every type gets its
    /// own PORT [default: web]
    #[arg(long = "process", value_name = "TYPE", value_parser = parse_process_type)]
    pub processes: Vec<String>,
    /// How many instances of each process type to start, as `cf scale TYPE -i N`: each
    /// with its own CF_INSTANCE_INDEX, INSTANCE_GUID and port (and loopback, with
    /// --network own)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub instances: u32,
    /// Where each instance's network is: `own` (a network namespace of its own, as a
    /// Diego container has: PORT=8080 and the sidecars' ports inside, only PORT
    /// forwarded from a loopback port here; needs root or unprivileged user namespaces),
    /// `host` (this machine's loopback, shared: every port must be free), or `auto`
    /// (own where the machine allows it, else host, saying why)
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub network: NetworkMode,
    /// How long to wait for the app to answer on PORT
    // 0 could only ever end in "did not answer".
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = parse_wait)]
    pub wait: u64,
    /// How long processes get between SIGTERM and SIGKILL (CF gives 10 s)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub grace_period: u64,
    /// A path to GET once the app answers; repeat for several [default: / and /config]
    #[arg(long = "get", value_name = "PATH")]
    pub gets: Vec<String>,
    /// A JSON file given to staging and to the app as VCAP_SERVICES [default: {}]
    #[arg(long, value_name = "FILE")]
    pub vcap_services: Option<PathBuf>,
    /// Run the app as CF's `service-binding-k8s` app feature does: SERVICE_BINDING_ROOT
    /// names this directory of bindings (one directory per binding, one file per
    /// credential, as Cloud Controller writes them) and VCAP_SERVICES is absent, for
    /// staging, the app and its sidecars
    #[arg(long, value_name = "DIR", conflicts_with = "vcap_services")]
    pub bindings_dir: Option<PathBuf>,
    /// CF_STACK during staging
    #[arg(long, default_value = "cflinuxfs4")]
    pub stack: String,
    /// Where droplets, app caches and unpacked buildpacks go
    /// [default: $XDG_CACHE_HOME/stage-local, or ~/.cache/stage-local]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The app's directory (what `cf push -p` would upload). scripts/stage-local sets
    /// the default to its checkout's fixtures/rubyapp
    #[arg(env = "STAGE_LOCAL_APP")]
    pub app_dir: PathBuf,
}

/// `--network`: where each instance's network is.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkMode {
    /// Own where the machine allows it, else host.
    Auto,
    /// A network namespace of its own for each instance; refused where there is none.
    Own,
    /// This machine's loopback, shared by every instance.
    Host,
}

/// Everything a run needs, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub app_dir: PathBuf,
    pub buildpacks: Vec<PathBuf>,
    /// Stop once the app has answered (`--stop-after-answers`, or the old `--stop`).
    pub stop_after_answers: bool,
    pub stage_only: bool,
    /// `--droplet`: where to write the droplet as a .tgz, absolute.
    pub droplet_tgz: Option<PathBuf>,
    /// `--env`: set after the app manifest's `env:`.
    pub env: Vec<(String, String)>,
    pub port: Option<u16>,
    /// `--process`: the process types to start, in order, each once; `web` by default.
    pub processes: Vec<String>,
    /// `--instances`: how many instances of each process type.
    pub instances: u32,
    pub network: NetworkMode,
    /// stage-local's own executable (it is the network helper of an instance), if found.
    pub exe: Option<PathBuf>,
    pub wait: Duration,
    pub grace: Duration,
    pub gets: Vec<String>,
    /// The JSON text of VCAP_SERVICES, already checked to be an object.
    pub vcap_services: String,
    /// `--bindings-dir`, absolute: SERVICE_BINDING_ROOT instead of VCAP_SERVICES.
    pub bindings_dir: Option<PathBuf>,
    pub stack: String,
    pub work_dir: PathBuf,
    /// The caller's PATH, given to every process (CF's is the stack's own).
    pub path: String,
    /// `http_proxy`, `https_proxy`, `no_proxy` in either case, as the caller has them:
    /// CF operators put these in the staging environment variable group.
    pub proxies: Vec<(String, String)>,
    /// Set by SIGINT, SIGTERM or SIGHUP.
    pub interrupted: Arc<AtomicBool>,
    /// `--image`, `--image-layout` and what goes with them.
    pub image: Option<ImageSettings>,
}

/// What an image is written from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageSettings {
    /// `--image` and `--image-layout`, absolute.
    pub targets: Vec<crate::image::Target>,
    pub kube: Option<PathBuf>,
    pub base: Option<PathBuf>,
    /// The static entrypoint binary, checked.
    pub entrypoint: PathBuf,
}

const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
];

impl Settings {
    pub(crate) fn resolve(
        cli: Cli,
        env: &HashMap<String, String>,
        interrupted: Arc<AtomicBool>,
    ) -> Result<Settings, Error> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let image = image_settings(&cli)?;
        let work_dir = match cli.work_dir {
            Some(dir) => dir,
            None => var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or(Error::NoWorkDir)?
                .join("stage-local"),
        };
        // Buildpacks run with another working directory: every path they get is absolute.
        let work_dir = std::path::absolute(&work_dir).unwrap_or(work_dir);
        let vcap_services = match &cli.vcap_services {
            Some(path) => read_vcap_services(path)?,
            None => "{}".to_string(),
        };
        let bindings_dir = cli.bindings_dir.as_deref().map(bindings_dir).transpose()?;
        let processes = process_types(cli.processes)?;
        let web = processes.iter().any(|p| p == "web");
        if !web {
            let needs_web = [
                ("--get", !cli.gets.is_empty()),
                ("--port", cli.port.is_some()),
                ("--stop-after-answers", cli.stop_after_answers || cli.stop),
            ];
            if let Some((flag, _)) = needs_web.iter().find(|(_, given)| *given) {
                return Err(Error::Usage {
                    problem: format!(
                        "{flag} needs the web process, and --process does not start it"
                    ),
                    fix: format!(
                        "add --process web, or leave {flag} out: without web the processes \
                         run until Ctrl-C"
                    ),
                });
            }
        }
        let gets = if !web {
            vec![]
        } else if cli.gets.is_empty() {
            vec!["/".to_string(), "/config".to_string()]
        } else {
            cli.gets
                .into_iter()
                .map(|p| {
                    if p.starts_with('/') {
                        p
                    } else {
                        format!("/{p}")
                    }
                })
                .collect()
        };
        if cli.stop {
            crate::out::warn(
                "--stop is deprecated and will go: it never stopped another run, it stops \
                 this one once the app has answered; use --stop-after-answers",
            );
        }
        let droplet_tgz = cli.droplet.as_deref().map(droplet_target).transpose()?;
        Ok(Settings {
            app_dir: cli.app_dir,
            buildpacks: cli.buildpacks,
            stop_after_answers: cli.stop_after_answers || cli.stop,
            stage_only: cli.stage_only,
            droplet_tgz,
            env: cli.env,
            port: cli.port,
            processes,
            instances: cli.instances,
            network: cli.network,
            exe: std::env::current_exe().ok(),
            wait: Duration::from_secs(cli.wait),
            grace: Duration::from_secs(cli.grace_period),
            gets,
            vcap_services,
            bindings_dir,
            stack: cli.stack,
            work_dir,
            path: var("PATH")
                .cloned()
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_string()),
            proxies: PROXY_VARS
                .iter()
                .filter_map(|k| var(k).map(|v| (k.to_string(), v.clone())))
                .collect(),
            interrupted,
            image,
        })
    }
}

/// `--image`, `--image-layout`, `--kube`, `--base` and `--entrypoint`, checked before
/// anything runs.
fn image_settings(cli: &Cli) -> Result<Option<ImageSettings>, Error> {
    use crate::image::Target;
    let mut targets = Vec::new();
    if let Some(f) = &cli.image {
        targets.push(Target::Archive(output_target("--image", f)?));
    }
    if let Some(d) = &cli.image_layout {
        let abs = output_target("--image-layout", d)?;
        let foreign = abs.is_dir()
            && !abs.join("oci-layout").is_file()
            && std::fs::read_dir(&abs).map_or(true, |mut e| e.next().is_some());
        if foreign {
            return Err(Error::OutputPath {
                flag: "--image-layout",
                path: d.clone(),
                problem: "is a directory that holds something other than an OCI layout; \
                          stage-local replaces only a layout"
                    .into(),
            });
        }
        targets.push(Target::Layout(abs));
    }
    if targets.is_empty() {
        if let Some((flag, _)) = [
            ("--kube", cli.kube.is_some()),
            ("--base", cli.base.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        {
            return Err(Error::Usage {
                problem: format!("{flag} needs --image or --image-layout"),
                fix: "add --image FILE (or --image-layout DIR)".into(),
            });
        }
        return Ok(None);
    }
    if let Some(k) = &cli.kube {
        if k.is_dir() {
            return Err(Error::OutputPath {
                flag: "--kube",
                path: k.clone(),
                problem: "is a directory; name the YAML file to write".into(),
            });
        }
    }
    let kube = cli
        .kube
        .as_deref()
        .map(|k| output_target("--kube", k))
        .transpose()?;
    let entrypoint = match &cli.entrypoint {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("cf-entrypoint")))
            .unwrap_or_else(|| PathBuf::from("cf-entrypoint")),
    };
    check_static_binary(&entrypoint)?;
    Ok(Some(ImageSettings {
        targets,
        kube,
        base: cli.base.clone(),
        entrypoint,
    }))
}

/// A file to write, checked as `--droplet`'s is: in an existing directory, not one.
fn output_target(flag: &'static str, path: &std::path::Path) -> Result<PathBuf, Error> {
    let bad = |problem: &str| Error::OutputPath {
        flag,
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let abs = std::path::absolute(path).map_err(|_| bad("cannot be resolved"))?;
    if flag != "--image-layout" && abs.is_dir() {
        return Err(bad("is a directory; name the file to write"));
    }
    match abs.parent() {
        Some(dir) if dir.is_dir() => Ok(abs),
        _ => Err(bad("is in a directory that does not exist")),
    }
}

/// The entrypoint must run on any base: an ELF executable for this machine with no
/// program interpreter (statically linked).
fn check_static_binary(path: &std::path::Path) -> Result<(), Error> {
    let bad = |problem: String| Error::Entrypoint {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    static_elf(&bytes).map_err(bad)
}

/// Checks an ELF64 little-endian executable of this machine's architecture with no
/// `PT_INTERP` program header.
fn static_elf(b: &[u8]) -> Result<(), String> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8).map(|s| {
            let mut a = [0; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
    };
    if !b.starts_with(b"\x7fELF") || b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("is not a 64-bit little-endian ELF binary".into());
    }
    let machine = match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        _ => 0,
    };
    if u16_at(18) != Some(machine) {
        return Err(format!(
            "is not built for this machine's architecture ({})",
            std::env::consts::ARCH
        ));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return Err("is a truncated ELF binary".into());
    };
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX) + i * usize::from(phentsize);
        match u32_at(at) {
            // PT_INTERP: the path of the dynamic loader it needs.
            Some(3) => {
                return Err(
                    "is dynamically linked: it needs the base's dynamic loader and libc".into(),
                )
            }
            Some(_) => {}
            None => return Err("is a truncated ELF binary".into()),
        }
    }
    Ok(())
}

/// `--env NAME=VALUE`, with Cloud Controller's rules for names.
fn parse_env(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("{arg:?} has no NAME before `=`"));
    }
    crate::app::check_env_key(name).map_err(|problem| format!("{name}: {problem}"))?;
    Ok((name.to_string(), value.to_string()))
}

/// A process type as CF's builder takes it from a Procfile: any non-empty key.
fn parse_process_type(arg: &str) -> Result<String, String> {
    if arg.trim().is_empty() {
        return Err("a process type cannot be empty".into());
    }
    Ok(arg.to_string())
}

/// `--process` as given, `web` when none is; a type given twice is refused, as it would
/// ask for one instance twice.
fn process_types(given: Vec<String>) -> Result<Vec<String>, Error> {
    if given.is_empty() {
        return Ok(vec!["web".to_string()]);
    }
    for (i, t) in given.iter().enumerate() {
        if given[..i].contains(t) {
            return Err(Error::Usage {
                problem: format!("--process {t} is given twice"),
                fix: "give each process type once: stage-local starts one instance of each".into(),
            });
        }
    }
    Ok(given)
}

/// `--droplet FILE` checked before anything runs: its directory must exist, and it must
/// not be a directory itself.
fn droplet_target(path: &std::path::Path) -> Result<PathBuf, Error> {
    let bad = |problem: &str| Error::DropletPath {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let abs = std::path::absolute(path).map_err(|_| bad("cannot be resolved"))?;
    if abs.is_dir() {
        return Err(bad("is a directory; name the .tgz file to write"));
    }
    match abs.parent() {
        Some(dir) if dir.is_dir() => Ok(abs),
        _ => Err(bad("is in a directory that does not exist")),
    }
}

fn parse_wait(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("the app needs at least 1 second to answer".into()),
        Ok(secs) => Ok(secs),
        Err(e) => Err(format!("{e}; give a whole number of seconds")),
    }
}

/// `--bindings-dir`: an existing directory, absolute (processes run elsewhere).
fn bindings_dir(path: &std::path::Path) -> Result<PathBuf, Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(std::path::absolute(path).unwrap_or(path.to_path_buf())),
        Ok(_) => Err(Error::BindingsDir {
            path: path.to_path_buf(),
            problem: "is not a directory".into(),
        }),
        Err(e) => Err(Error::BindingsDir {
            path: path.to_path_buf(),
            problem: format!("cannot be used: {e}"),
        }),
    }
}

fn read_vcap_services(path: &std::path::Path) -> Result<String, Error> {
    let bad = |problem: String| Error::VcapServices {
        path: path.to_path_buf(),
        problem,
    };
    let text =
        crate::files::read_small_text(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.trim().to_string()),
        Ok(other) => Err(bad(format!(
            "holds a JSON {}, not an object",
            match other {
                serde_json::Value::Array(_) => "array",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "boolean",
                _ => "null",
            }
        ))),
        Err(e) => Err(bad(format!("is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, Error> {
        let cli = Cli::try_parse_from(std::iter::once("stage-local").chain(args.iter().copied()))
            .expect("valid command line");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(cli, &env, Arc::default())
    }

    #[test]
    fn work_dir_follows_xdg_then_home() {
        let s = resolve(&["app"], &[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]).expect("ok");
        assert_eq!(s.work_dir, PathBuf::from("/x/stage-local"));
        let s = resolve(&["app"], &[("HOME", "/h")]).expect("ok");
        assert_eq!(s.work_dir, PathBuf::from("/h/.cache/stage-local"));
        assert!(matches!(resolve(&["app"], &[]), Err(Error::NoWorkDir)));
        let s = resolve(&["--work-dir", "/w", "app"], &[]).expect("ok");
        assert_eq!(s.work_dir, PathBuf::from("/w"));
        let s = resolve(&["--work-dir", "w", "app"], &[]).expect("ok");
        assert!(s.work_dir.is_absolute() && s.work_dir.ends_with("w"));
    }

    #[test]
    fn proxies_pass_in_either_case_and_gets_default() {
        let s = resolve(
            &["app"],
            &[
                ("HOME", "/h"),
                ("HTTPS_PROXY", "http://p:3128"),
                ("no_proxy", "x"),
            ],
        )
        .expect("ok");
        assert_eq!(
            s.proxies,
            vec![
                ("HTTPS_PROXY".to_string(), "http://p:3128".to_string()),
                ("no_proxy".to_string(), "x".to_string())
            ]
        );
        assert_eq!(s.gets, vec!["/", "/config"]);
        assert_eq!(s.vcap_services, "{}");
        let s = resolve(&["--get", "health", "app"], &[("HOME", "/h")]).expect("ok");
        assert_eq!(s.gets, vec!["/health"]);
    }

    #[test]
    fn vcap_services_must_be_a_json_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vs.json");
        for (text, ok) in [("{\"a\": []}\n", true), ("[]", false), ("nope", false)] {
            std::fs::write(&file, text).expect("write");
            let arg = file.to_str().expect("utf8");
            let r = resolve(&["--vcap-services", arg, "app"], &[("HOME", "/h")]);
            assert_eq!(r.is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn the_old_stop_flag_still_stops_after_the_answers() {
        for flag in ["--stop", "--stop-after-answers"] {
            let s = resolve(&[flag, "app"], &[("HOME", "/h")]).expect("ok");
            assert!(s.stop_after_answers, "{flag}");
        }
        assert!(
            !resolve(&["app"], &[("HOME", "/h")])
                .expect("ok")
                .stop_after_answers
        );
        let both = Cli::try_parse_from(["stage-local", "--stop", "--stage-only", "app"]);
        assert!(both.is_err(), "--stage-only starts nothing to stop");
    }

    #[test]
    fn env_flags_follow_cloud_controllers_rules() {
        let parse = |arg: &str| Cli::try_parse_from(["stage-local", "--env", arg, "app"]);
        let cli = parse("CONFIG_SERVER_PORT=18082").expect("valid");
        assert_eq!(cli.env, vec![("CONFIG_SERVER_PORT".into(), "18082".into())]);
        assert_eq!(parse("EMPTY=").expect("valid").env[0].1, "");
        assert_eq!(parse("A=b=c").expect("valid").env[0].1, "b=c");
        for bad in ["NOVALUE", "=x", "PORT=1", "VCAP_SERVICES={}"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn process_types_default_to_web_and_others_need_no_route() {
        let h = [("HOME", "/h")];
        let s = resolve(&["app"], &h).expect("ok");
        assert_eq!((s.processes, s.gets.len()), (vec!["web".to_string()], 2));
        let s = resolve(&["--process", "worker", "--process", "web", "app"], &h).expect("ok");
        assert_eq!(s.processes, vec!["worker", "web"]);
        let s = resolve(&["--process", "worker", "app"], &h).expect("ok");
        assert_eq!((s.processes, s.gets), (vec!["worker".to_string()], vec![]));
        for args in [
            &["--process", "worker", "--get", "/", "app"][..],
            &["--process", "worker", "--port", "8080", "app"],
            &["--process", "worker", "--stop-after-answers", "app"],
            &["--process", "worker", "--process", "worker", "app"],
        ] {
            let err = resolve(args, &h).expect_err("refused");
            assert!(matches!(err, Error::Usage { .. }), "{args:?}: {err}");
            assert_eq!(err.exit_code(), crate::errors::exit::USAGE);
        }
        assert!(Cli::try_parse_from(["stage-local", "--process", " ", "app"]).is_err());
    }

    #[test]
    fn the_entrypoint_must_be_a_static_elf_of_this_machine() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18] = 62;
        h[54] = 56;
        assert_eq!(static_elf(&h), Ok(()), "no program headers: static");
        // One PT_INTERP program header right after the ELF header.
        let mut dynamic = h.clone();
        dynamic[32] = 64; // e_phoff
        dynamic[56] = 1; // e_phnum
        dynamic.extend_from_slice(&[3, 0, 0, 0]);
        dynamic.resize(64 + 56, 0);
        assert!(static_elf(&dynamic).is_err_and(|e| e.contains("dynamically linked")));
        let mut arm = h.clone();
        arm[18] = 183;
        assert!(static_elf(&arm).is_err_and(|e| e.contains("architecture")));
        assert!(static_elf(b"#!/bin/sh\n").is_err_and(|e| e.contains("not a 64-bit")));
        let mut truncated = h;
        truncated[32] = 64; // program headers past the end of the file
        truncated[56] = 1;
        assert!(static_elf(&truncated).is_err_and(|e| e.contains("truncated")));
    }

    #[test]
    fn the_droplet_tgz_goes_to_an_existing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("d.tgz");
        let s = resolve(
            &["--droplet", ok.to_str().expect("utf8"), "app"],
            &[("HOME", "/h")],
        )
        .expect("ok");
        assert_eq!(s.droplet_tgz, Some(ok));
        for bad in [dir.path().to_path_buf(), dir.path().join("no/d.tgz")] {
            let r = resolve(
                &["--droplet", bad.to_str().expect("utf8"), "app"],
                &[("HOME", "/h")],
            );
            assert!(
                matches!(r, Err(Error::DropletPath { .. })),
                "{}",
                bad.display()
            );
        }
    }
}
