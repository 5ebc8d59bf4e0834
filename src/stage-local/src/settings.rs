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
/// the place of the app's final buildpack. Exit codes: 0 ok, 1 internal, 2 usage, 3 bad
/// input, 4 launch.yml rejected, 5 refused by Cloud Controller's checks, 6 port in use,
/// 7 no answer, 8 a process exited, 130 interrupted, 223 final buildpack (stand-in)
/// failed, 225 a supply buildpack failed. See docs/stage-local.md.
#[derive(Parser, Debug)]
#[command(name = "stage-local", version, about, long_about)]
pub struct Cli {
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
    /// Set an environment variable of the app, after its manifest's `env:` (as `cf
    /// set-env` would); repeat for several
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The PORT of the web process and its sidecars [default: a free loopback port]
    #[arg(long)]
    pub port: Option<u16>,
    /// A process type to start, one instance with its sidecars (as `cf scale TYPE -i 1`);
    /// repeat for several. Only web gets a route (the URL, --get); every type gets its
    /// own PORT [default: web]
    #[arg(long = "process", value_name = "TYPE", value_parser = parse_process_type)]
    pub processes: Vec<String>,
    /// How long to wait for the app to answer on PORT
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
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

/// Everything a run needs, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
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
    pub fn resolve(
        cli: Cli,
        env: &HashMap<String, String>,
        interrupted: Arc<AtomicBool>,
    ) -> Result<Settings, Error> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
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
        })
    }
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
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
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
