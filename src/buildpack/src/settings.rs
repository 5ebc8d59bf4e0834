//! The settings an app or operator gives through env vars at staging, parsed once.
//! Each has a documented name and accepted form; a bad value fails with both.

use crate::errors::{Error, Scope};
use crate::manifest::{valid_name, Sidecar, MEMORY_RANGE};
use crate::version_pin::VersionPin;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Prefix of every env var this buildpack reads for itself.
pub const PREFIX: &str = "SIDECAR_BUILDPACK_";
/// Overrides the buildpack's own directory (tests, local debugging).
pub const DIR_VAR: &str = "SIDECAR_BUILDPACK_DIR";
/// CF's default location of operator-trusted CA certificates.
pub const DEFAULT_CERT_PATH: &str = "/etc/cf-system-certificates";

/// How downloads behave.
#[derive(Debug, Clone)]
pub struct Network {
    pub http_proxy: Option<Named>,
    pub https_proxy: Option<Named>,
    pub no_proxy: Option<Named>,
    pub cert_path: PathBuf,
    pub connect_timeout: Duration,
    /// No byte for this long ends the attempt. There is no overall deadline.
    pub stall_timeout: Duration,
    pub attempts: u32,
    /// First retry waits this long; each further retry doubles it, up to 30 s.
    pub retry_delay: Duration,
    /// Longest wait a server's `Retry-After` (on 429 and 503) is honoured for.
    pub max_retry_after: Duration,
    /// Most bytes one artifact may have, from any source.
    pub max_download: u64,
}

/// Default of `SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB`: far above any sidecar, far below a
/// staging container's disk.
pub const DEFAULT_MAX_DOWNLOAD_MB: u64 = 1024;
/// How long `<NAME>_HOLD_APP=true` holds the app for its sidecar, in seconds: far
/// above a healthy sidecar's start, well below the 60 s Diego gives a process to pass
/// its default health check.
pub const DEFAULT_HOLD_SECS: u64 = 30;
/// The longest hold: Diego's longest start timeout (`health-check-timeout`, 180 s).
pub const MAX_HOLD_SECS: u64 = 180;
/// Default of `SIDECAR_BUILDPACK_MAX_RETRY_AFTER` (seconds).
pub const DEFAULT_MAX_RETRY_AFTER: u64 = 60;

/// A value with the name of the variable it came from (`https_proxy` or
/// `HTTPS_PROXY`), so an error names the one the user set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub var: String,
    pub value: String,
}

/// What an app may change about one sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSettings {
    pub memory_mb: u32,
    pub process_types: Vec<String>,
    /// `false`: install the binary but leave it out of launch.yml.
    pub declare: bool,
    /// `<NAME>_VERSION`: the versions the app holds the sidecar at.
    pub version: Option<VersionPin>,
    /// `<NAME>_HOLD_APP`: how long the app's processes wait for the sidecar at start.
    pub hold_app: Option<Duration>,
}

/// The environment as strings. A value that is not UTF-8 is kept lossily rather than
/// panicking or vanishing: a setting that names it then fails with its name.
pub fn lossy_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> HashMap<String, String> {
    vars.map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })
    .collect()
}

/// Reads env vars from a map, so only `main` touches the process environment.
pub struct Env<'a>(pub &'a HashMap<String, String>);

impl Env<'_> {
    /// The value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Lower-case first, as curl does; either case works.
    fn either_case(&self, lower: &str) -> Option<Named> {
        [lower.to_string(), lower.to_uppercase()]
            .into_iter()
            .find_map(|var| {
                self.get(&var).map(|v| Named {
                    value: v.to_string(),
                    var,
                })
            })
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, Error> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.trim().parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(setting(
                name,
                raw,
                &format!(
                    "a whole number of {unit} from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    pub fn network(&self) -> Result<Network, Error> {
        let secs = |name: &str, default: u64, max: u64| {
            self.number(&format!("{PREFIX}{name}"), default, 1..=max, "seconds")
                .map(Duration::from_secs)
        };
        Ok(Network {
            http_proxy: self.either_case("http_proxy"),
            https_proxy: self.either_case("https_proxy"),
            no_proxy: self.either_case("no_proxy"),
            cert_path: self
                .get("CF_SYSTEM_CERT_PATH")
                .unwrap_or(DEFAULT_CERT_PATH)
                .into(),
            connect_timeout: secs("CONNECT_TIMEOUT", 10, 300)?,
            stall_timeout: secs("STALL_TIMEOUT", 30, 3600)?,
            attempts: self.number(&format!("{PREFIX}DOWNLOAD_ATTEMPTS"), 4, 1..=10, "attempts")?,
            retry_delay: Duration::from_millis(self.number(
                &format!("{PREFIX}RETRY_DELAY_MS"),
                1000,
                0..=60_000,
                "milliseconds",
            )?),
            max_retry_after: Duration::from_secs(self.number(
                &format!("{PREFIX}MAX_RETRY_AFTER"),
                DEFAULT_MAX_RETRY_AFTER,
                0..=3600,
                "seconds",
            )?),
            max_download: self.number(
                &format!("{PREFIX}MAX_DOWNLOAD_MB"),
                DEFAULT_MAX_DOWNLOAD_MB,
                1..=1_048_576,
                "MB",
            )? << 20,
        })
    }

    /// The staging task's memory in MB, from `MEMORY_LIMIT` as CF sets it (`1024m`);
    /// `512M`, `1G`, `2GB` and a bare number of MB are read too. `None` when unset.
    pub fn memory_limit(&self) -> Result<Option<u64>, Error> {
        let Some(raw) = self.get("MEMORY_LIMIT") else {
            return Ok(None);
        };
        parse_memory_mb(raw).map(Some).ok_or_else(|| {
            setting(
                "MEMORY_LIMIT",
                raw,
                "a whole number of megabytes or gigabytes, as Cloud Foundry sets it: 1024m, \
                 512M, 1G or 2GB",
            )
        })
    }

    /// The settings of `sidecar`: the manifest's values unless the app overrides them.
    pub fn sidecar(&self, sidecar: &Sidecar) -> Result<SidecarSettings, Error> {
        let base = sidecar_var_base(&sidecar.name);
        let memory_mb = self.number(
            &format!("{base}MEMORY_MB"),
            sidecar.memory_mb,
            MEMORY_RANGE,
            "MB",
        )?;
        let pt_name = format!("{base}PROCESS_TYPES");
        let process_types = match self.get(&pt_name) {
            None => sidecar.process_types.clone(),
            Some(raw) => {
                let list: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).collect();
                if list.len() > 16 || !list.iter().all(|p| valid_name(p)) || has_duplicates(&list) {
                    return Err(setting(
                        &pt_name,
                        raw,
                        "a comma-separated list of process types, each once, such as web or \
                         web,worker",
                    ));
                }
                list
            }
        };
        let decl_name = format!("{base}DECLARE");
        let declare = match self
            .get(&decl_name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(setting(
                    &decl_name,
                    self.get(&decl_name).unwrap_or_default(),
                    "true or false",
                ))
            }
        };
        let version_name = format!("{base}VERSION");
        let version = match self.get(&version_name) {
            None => None,
            Some(raw) => Some(VersionPin::parse(&version_name, raw).map_err(|_| {
                setting(
                    &version_name,
                    raw,
                    "a version this buildpack carries (such as 0.2.1) or a range of them (such \
                     as 0.2.x, ~0.2 or >= 0.2.0, < 0.3.0)",
                )
            })?),
        };
        let hold_name = format!("{base}HOLD_APP");
        let hold_app = match self
            .get(&hold_name)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("false") => None,
            Some("true") => Some(Duration::from_secs(DEFAULT_HOLD_SECS)),
            Some(raw) => match raw.parse::<u64>() {
                Ok(secs) if (1..=MAX_HOLD_SECS).contains(&secs) => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(setting(
                        &hold_name,
                        self.get(&hold_name).unwrap_or_default(),
                        &format!(
                            "true (wait up to {DEFAULT_HOLD_SECS} seconds), false, or the most \
                             seconds to wait, from 1 to {MAX_HOLD_SECS}"
                        ),
                    ))
                }
            },
        };
        Ok(SidecarSettings {
            memory_mb,
            process_types,
            declare,
            version,
            hold_app,
        })
    }
}

/// The download knobs (after `PREFIX`): the same for every app of a foundation, so
/// usually set in the staging environment variable group.
const OPERATOR_KNOBS: [&str; 6] = [
    "CONNECT_TIMEOUT",
    "STALL_TIMEOUT",
    "DOWNLOAD_ATTEMPTS",
    "RETRY_DELAY_MS",
    "MAX_RETRY_AFTER",
    "MAX_DOWNLOAD_MB",
];

/// Who sets the variable `name`, so that an error about it says where to fix it.
pub fn scope_of(name: &str) -> Scope {
    let lower = name.to_ascii_lowercase();
    if name == "MEMORY_LIMIT" {
        Scope::Platform
    } else if [
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "cf_system_cert_path",
    ]
    .contains(&lower.as_str())
        || name
            .strip_prefix(PREFIX)
            .is_some_and(|k| OPERATOR_KNOBS.contains(&k))
    {
        Scope::Operator
    } else {
        Scope::App
    }
}

/// True if a name appears twice: `web,web` would count the sidecar's memory twice
/// against the process and list it twice in launch.yml. In one pass: a manifest's
/// `process_types` may hold tens of thousands of names (MAX_VALUES), and comparing
/// each with every earlier one took seconds to load a 400 KB manifest.
pub fn has_duplicates<T: Eq + std::hash::Hash>(list: &[T]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    !list.iter().all(|p| seen.insert(p))
}

/// `SIDECAR_BUILDPACK_CONFIG_SERVER_` for the sidecar `config-server`.
pub fn sidecar_var_base(name: &str) -> String {
    format!("{PREFIX}{}_", name.to_ascii_uppercase().replace('-', "_"))
}

fn setting(name: &str, raw: &str, accepted: &str) -> Error {
    Error::Setting {
        name: name.to_string(),
        // Enough of the value to recognise it, never a whole pasted blob.
        value: crate::redact::quoted_value(raw),
        accepted: accepted.to_string(),
    }
}

/// `1024m`, `512M`, `1G`, `2GB`, `512MB` or `256` (MB), in MB; 1 MB to 16 TB. Bytes
/// (`512b`), kilobytes and fractions are refused: CF never writes them, and reading
/// `512b` as 512 MB would be a guess.
pub fn parse_memory_mb(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let mult = match unit {
        "" | "m" | "mb" => 1,
        "g" | "gb" => 1024,
        _ => return None,
    };
    num.parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .filter(|mb| (1..=1 << 24).contains(mb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar() -> Sidecar {
        Sidecar {
            name: "config-server".into(),
            dependency: "config-server".into(),
            executable: "bin/config-server".into(),
            args: vec![],
            memory_mb: 32,
            process_types: vec!["web".into()],
            hold_app: None,
        }
    }

    #[test]
    fn duplicates_are_found_in_one_pass() {
        assert!(has_duplicates(&["web", "worker", "web"]));
        assert!(!has_duplicates(&["web", "worker"]));
        assert!(!has_duplicates::<&str>(&[]));
        // The work, counted: a name is compared with another only when their hashes
        // meet, not with every earlier one (which made 8 million comparisons here).
        struct Counted<'c>(u32, &'c std::cell::Cell<usize>);
        impl PartialEq for Counted<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.1.set(self.1.get() + 1);
                self.0 == other.0
            }
        }
        impl Eq for Counted<'_> {}
        impl std::hash::Hash for Counted<'_> {
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                self.0.hash(h);
            }
        }
        let compared = std::cell::Cell::new(0);
        let names: Vec<Counted<'_>> = (0..4_000).map(|i| Counted(i, &compared)).collect();
        assert!(!has_duplicates(&names));
        assert!(compared.get() < 4_000, "{} comparisons", compared.get());
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_come_from_the_manifest() {
        let m = env(&[]);
        let s = Env(&m).sidecar(&sidecar()).expect("defaults");
        assert_eq!(
            s,
            SidecarSettings {
                memory_mb: 32,
                process_types: vec!["web".into()],
                declare: true,
                version: None,
                hold_app: None,
            }
        );
    }

    #[test]
    fn overrides_are_parsed() {
        let m = env(&[
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", " 64 "),
            (
                "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
                "web, worker",
            ),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE", "FALSE"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", " ~0.2 "),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "45"),
        ]);
        let s = Env(&m).sidecar(&sidecar()).expect("overrides");
        assert_eq!(s.memory_mb, 64);
        assert_eq!(s.process_types, vec!["web", "worker"]);
        assert!(!s.declare);
        assert_eq!(s.version.map(|v| v.raw).as_deref(), Some("~0.2"));
        assert_eq!(s.hold_app, Some(Duration::from_secs(45)));
        for (raw, hold) in [("TRUE", Some(30)), ("false", None)] {
            let m = env(&[("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", raw)]);
            let s = Env(&m).sidecar(&sidecar()).expect(raw);
            assert_eq!(s.hold_app, hold.map(Duration::from_secs), "{raw}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "0"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "-5"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "32M"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "99999999999"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES", "web,,x"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES", "we b"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE", "nah"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2 x"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "latest"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "0"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "181"),
            ("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "yes"),
        ] {
            let m = env(&[(var, val)]);
            let err = Env(&m).sidecar(&sidecar()).expect_err(val);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn proxies_in_either_case() {
        let m = env(&[("HTTPS_PROXY", "http://p:3128"), ("no_proxy", "a,b")]);
        let n = Env(&m).network().expect("network");
        let named = |var: &str, value: &str| {
            Some(Named {
                var: var.into(),
                value: value.into(),
            })
        };
        assert_eq!(n.https_proxy, named("HTTPS_PROXY", "http://p:3128"));
        assert_eq!(n.no_proxy, named("no_proxy", "a,b"));
        assert_eq!(n.http_proxy, None);
        let m = env(&[("SIDECAR_BUILDPACK_STALL_TIMEOUT", "0")]);
        assert!(Env(&m).network().is_err());
    }

    #[test]
    fn memory_limits_in_the_forms_cf_writes() {
        for (raw, mb) in [
            ("1024m", 1024),
            ("512M", 512),
            ("512MB", 512),
            ("1G", 1024),
            ("1GB", 1024),
            ("2g", 2048),
            (" 256 ", 256),
        ] {
            assert_eq!(parse_memory_mb(raw), Some(mb), "{raw}");
        }
        for raw in [
            "512b",
            "512k",
            "512KB",
            "1.5G",
            "-1m",
            "0m",
            "m",
            "lots",
            "1 G",
            "1Gi",
            "99999999999g",
        ] {
            assert_eq!(parse_memory_mb(raw), None, "{raw}");
            let m = env(&[("MEMORY_LIMIT", raw)]);
            let err = Env(&m).memory_limit().expect_err(raw).to_string();
            assert!(err.starts_with("MEMORY_LIMIT is set to \""), "{err}");
        }
        assert_eq!(Env(&env(&[])).memory_limit().expect("unset"), None);
    }
}
