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
/// droplet's web process and its sidecars the way CF's launcher does.
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
    /// Repeat for several, in the order CF should run them
    #[arg(long = "buildpack", value_name = "ZIP_OR_DIR")]
    pub buildpacks: Vec<PathBuf>,
    /// Stop everything right after printing the app's answers
    #[arg(long)]
    pub stop: bool,
    /// Stage only: write the droplet and result.json, start nothing
    #[arg(long, conflicts_with = "stop")]
    pub stage_only: bool,
    /// The PORT of the app and its sidecars [default: a free loopback port]
    #[arg(long)]
    pub port: Option<u16>,
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
    /// CF_STACK during staging
    #[arg(long, default_value = "cflinuxfs4")]
    pub stack: String,
    /// Where droplets, app caches and unpacked buildpacks go
    /// [default: $XDG_CACHE_HOME/stage-local, or ~/.cache/stage-local]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// The app's directory (what `cf push -p` would upload)
    pub app_dir: PathBuf,
}

/// Everything a run needs, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_dir: PathBuf,
    pub buildpacks: Vec<PathBuf>,
    pub stop: bool,
    pub stage_only: bool,
    pub port: Option<u16>,
    pub wait: Duration,
    pub grace: Duration,
    pub gets: Vec<String>,
    /// The JSON text of VCAP_SERVICES, already checked to be an object.
    pub vcap_services: String,
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
        let gets = if cli.gets.is_empty() {
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
        Ok(Settings {
            app_dir: cli.app_dir,
            buildpacks: cli.buildpacks,
            stop: cli.stop,
            stage_only: cli.stage_only,
            port: cli.port,
            wait: Duration::from_secs(cli.wait),
            grace: Duration::from_secs(cli.grace_period),
            gets,
            vcap_services,
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
}
