//! The sidecar's settings, parsed once from the environment that `main` hands
//! over. Nothing here touches the file system: files are read by `source`.
//!
//! An empty variable counts as unset, so a manifest can switch a setting off
//! with `VAR: ""`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// The port used when `CONFIG_SERVER_PORT` is unset.
pub(crate) const DEFAULT_PORT: u16 = 8082;

/// A knob: its variable, default and accepted range (whole numbers).
struct Knob {
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    /// Also accepted besides `min..=max` (0 = off).
    off: bool,
}

/// How long a client may take to send a request's head once it has started it.
const HEADER_TIMEOUT_MS: Knob = Knob {
    name: "CONFIG_SERVER_HEADER_TIMEOUT_MS",
    default: 5_000,
    min: 10,
    max: 600_000,
    off: false,
};
/// How long a connection may stay open with no request on it (and how long a
/// client may leave a response unread).
const IDLE_TIMEOUT_MS: Knob = Knob {
    name: "CONFIG_SERVER_IDLE_TIMEOUT_MS",
    default: 30_000,
    min: 10,
    max: 3_600_000,
    off: false,
};
/// Open connections at most.
const MAX_CONNECTIONS: Knob = Knob {
    name: "CONFIG_SERVER_MAX_CONNECTIONS",
    default: 128,
    min: 1,
    max: 10_000,
    off: false,
};
/// The longest `?wait=` a client may ask for.
const MAX_WAIT_MS: Knob = Knob {
    name: "CONFIG_SERVER_MAX_WAIT_MS",
    default: 60_000,
    min: 1_000,
    max: 3_600_000,
    off: false,
};
/// Connections holding a `?wait=` read at most, besides `MAX_CONNECTIONS`.
const MAX_WAITING: Knob = Knob {
    name: "CONFIG_SERVER_MAX_WAITING",
    default: 1024,
    min: 1,
    max: 10_000,
    off: false,
};
/// How long a file changed in place must hold still before it is read.
const SETTLE_MS: Knob = Knob {
    name: "CONFIG_SERVER_SETTLE_MS",
    default: 1_000,
    min: 50,
    max: 60_000,
    off: false,
};
/// How long a command of `CONFIG_SERVER_RENDER` may run.
const COMMAND_TIMEOUT_MS: Knob = Knob {
    name: "CONFIG_SERVER_COMMAND_TIMEOUT_MS",
    default: 30_000,
    min: 100,
    max: 3_600_000,
    off: false,
};
/// How often the configuration's files are checked for changes; 0 turns it off.
const WATCH_INTERVAL_MS: Knob = Knob {
    name: "CONFIG_SERVER_WATCH_INTERVAL_MS",
    default: 1_000,
    min: 100,
    max: 3_600_000,
    off: true,
};

/// Everything the sidecar needs to know before it reads any file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Loopback port to listen on (`CONFIG_SERVER_PORT`).
    pub port: u16,
    /// Where the configuration comes from.
    pub source: Source,
    /// What clients may cost the sidecar.
    pub limits: Limits,
    /// How often to look for a changed configuration; `None`: only on SIGHUP.
    pub watch_interval: Option<Duration>,
    /// How long a file changed in place must hold still before it is read.
    pub settle: Duration,
    /// The app's directory (`HOME`, else the current one): where files are rendered.
    pub app_dir: PathBuf,
    /// `CONFIG_SERVER_RENDER`, as written (`render` reads it).
    pub render: Option<String>,
    /// How long a command of `CONFIG_SERVER_RENDER` may run.
    pub command_timeout: Duration,
    /// Where the bearer token comes from, if one is set.
    pub token: Option<TokenSource>,
    /// Things worth a `warning:` line at startup.
    pub warnings: Vec<String>,
}

/// Bounds on what clients may hold (`CONFIG_SERVER_*` knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections holding a `?wait=` read, counted apart from `max_connections`.
    pub max_waiting: usize,
    pub max_wait: Duration,
}

/// Where the bearer token is.
#[derive(PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `CONFIG_SERVER_TOKEN`.
    Value(String),
    /// `CONFIG_SERVER_TOKEN_FILE`.
    File(PathBuf),
}

// By hand, so that no debug output can ever print the token.
impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<hidden>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Where the configuration comes from; the first that applies wins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `CONFIG_SERVER_FILE`, made absolute against `HOME` when relative.
    File(PathBuf),
    /// The bound services, from every binding source that is set, in the order
    /// they are searched: the binding named by `CONFIG_SERVER_SERVICE`, or else the
    /// one tagged or typed `config-server`, or else the built-in demo document.
    Services {
        bindings: Vec<BindingsInput>,
        service: Option<String>,
    },
}

/// Where service bindings are.
#[derive(PartialEq, Eq)]
pub(crate) enum BindingsInput {
    /// The directory tree named by `SERVICE_BINDING_ROOT` (Kubernetes service
    /// bindings; CF's `service-binding-k8s` app feature).
    Root(PathBuf),
    /// The file named by `VCAP_SERVICES_FILE_PATH` (CF's `file-based-vcap-services`).
    File(PathBuf),
    /// The text of `VCAP_SERVICES`.
    Env(String),
}

// By hand, so that no debug output can ever print the credentials.
impl fmt::Debug for BindingsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(path) => f.debug_tuple("Root").field(path).finish(),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Env(text) => write!(f, "Env(<{} bytes>)", text.len()),
        }
    }
}

impl Config {
    /// Reads `CONFIG_SERVER_PORT`, `PORT`, `CONFIG_SERVER_FILE`, `HOME`,
    /// `CONFIG_SERVER_SERVICE`, `SERVICE_BINDING_ROOT`, `VCAP_SERVICES_FILE_PATH`,
    /// `VCAP_SERVICES` and the `CONFIG_SERVER_*` knobs.
    pub(crate) fn from_env(env: &HashMap<String, String>) -> Result<Self, Error> {
        let var = |name: &str| env.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let mut warnings = Vec::new();

        let explicit = var("CONFIG_SERVER_PORT");
        let port = if let Some(value) = explicit {
            parse_port(value).ok_or_else(|| Error::InvalidPort {
                value: value.to_owned(),
            })?
        } else {
            warnings.push(format!(
                "CONFIG_SERVER_PORT is not set: using port {DEFAULT_PORT}; set it in the \
                 app's manifest env so that the app and the sidecar agree"
            ));
            DEFAULT_PORT
        };
        // The sidecar sees the app's env, PORT included (cloud-foundry.md section 3).
        if var("PORT").and_then(parse_port) == Some(port) {
            return Err(match explicit {
                Some(_) => Error::PortIsAppPort { port },
                None => Error::DefaultPortIsAppPort { port },
            });
        }

        let service = var("CONFIG_SERVER_SERVICE").map(str::to_owned);
        let source = if let Some(file) = var("CONFIG_SERVER_FILE") {
            if let Some(name) = &service {
                warnings.push(format!(
                    "CONFIG_SERVER_SERVICE={name:?} is ignored: CONFIG_SERVER_FILE is set \
                     and comes first"
                ));
            }
            Source::File(resolve(Path::new(file), var("HOME")))
        } else {
            // CF sets one of them (its two file features are mutually exclusive and
            // replace VCAP_SERVICES); if several are set, the newer mechanisms first.
            let mut bindings = Vec::new();
            let mut names = Vec::new();
            if let Some(root) = var("SERVICE_BINDING_ROOT") {
                bindings.push(BindingsInput::Root(PathBuf::from(root)));
                names.push("SERVICE_BINDING_ROOT");
            }
            if let Some(path) = var("VCAP_SERVICES_FILE_PATH") {
                bindings.push(BindingsInput::File(PathBuf::from(path)));
                names.push("VCAP_SERVICES_FILE_PATH");
            }
            if let Some(text) = var("VCAP_SERVICES") {
                bindings.push(BindingsInput::Env(text.to_owned()));
                names.push("VCAP_SERVICES");
            }
            if names.len() > 1 {
                warnings.push(format!(
                    "several binding sources are set ({}): they are searched in that order, \
                     and the first one holding a match wins",
                    names.join(", ")
                ));
            }
            Source::Services { bindings, service }
        };

        let knob = |knob: &Knob| parse_knob(knob, var(knob.name));
        let ms = |knob: &Knob| knob_ms(knob, var(knob.name));
        let limits = Limits {
            header_timeout: ms(&HEADER_TIMEOUT_MS)?,
            idle_timeout: ms(&IDLE_TIMEOUT_MS)?,
            max_connections: usize::try_from(knob(&MAX_CONNECTIONS)?).unwrap_or(usize::MAX),
            max_waiting: usize::try_from(knob(&MAX_WAITING)?).unwrap_or(usize::MAX),
            max_wait: ms(&MAX_WAIT_MS)?,
        };
        let watch_interval = Some(ms(&WATCH_INTERVAL_MS)?).filter(|d| !d.is_zero());
        let token = match (var("CONFIG_SERVER_TOKEN"), var("CONFIG_SERVER_TOKEN_FILE")) {
            (None, None) => None,
            (Some(token), None) => Some(TokenSource::Value(token.to_owned())),
            (None, Some(file)) => Some(TokenSource::File(resolve(Path::new(file), var("HOME")))),
            (Some(_), Some(_)) => {
                return Err(Error::InvalidToken {
                    setting: "CONFIG_SERVER_TOKEN and CONFIG_SERVER_TOKEN_FILE".to_owned(),
                    problem: "both are set: set one".to_owned(),
                })
            }
        };

        Ok(Self {
            port,
            source,
            limits,
            watch_interval,
            settle: ms(&SETTLE_MS)?,
            app_dir: PathBuf::from(var("HOME").unwrap_or(".")),
            render: var("CONFIG_SERVER_RENDER").map(str::to_owned),
            command_timeout: ms(&COMMAND_TIMEOUT_MS)?,
            token,
            warnings,
        })
    }
}

/// A knob's whole-number value, or its default when unset.
fn parse_knob(knob: &Knob, value: Option<&str>) -> Result<u64, Error> {
    let Some(value) = value else {
        return Ok(knob.default);
    };
    let number = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .filter(|&n| (knob.min..=knob.max).contains(&n) || (knob.off && n == 0));
    number.ok_or_else(|| Error::InvalidSetting {
        name: knob.name,
        value: value.to_owned(),
        accepted: format!(
            "a whole number from {} to {}{}",
            knob.min,
            knob.max,
            if knob.off { ", or 0 for off" } else { "" }
        ),
    })
}

fn knob_ms(knob: &Knob, value: Option<&str>) -> Result<Duration, Error> {
    parse_knob(knob, value).map(Duration::from_millis)
}

/// A decimal port from 1 to 65535; no sign, no spaces.
fn parse_port(value: &str) -> Option<u16> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|&port| port != 0)
}

/// A relative path is relative to the app dir, which is `HOME` on Cloud Foundry
/// (the launcher sets `HOME=/home/vcap/app`); without `HOME`, to the current dir.
fn resolve(file: &Path, home: Option<&str>) -> PathBuf {
    match home {
        Some(home) if file.is_relative() => Path::new(home).join(file),
        _ => file.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_env(&env(pairs))
    }

    #[test]
    fn unset_port_defaults_to_8082_with_a_warning() {
        let config = config(&[]).expect("empty env is valid");
        assert_eq!(config.port, 8082);
        assert_eq!(
            config.warnings,
            [
                "CONFIG_SERVER_PORT is not set: using port 8082; set it in the app's manifest env \
              so that the app and the sidecar agree"
            ]
        );
        assert_eq!(
            config.source,
            Source::Services {
                bindings: Vec::new(),
                service: None
            }
        );
        assert_eq!(
            config.limits,
            Limits {
                header_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(30),
                max_connections: 128,
                max_waiting: 1024,
                max_wait: Duration::from_secs(60),
            }
        );
        assert_eq!(config.watch_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn knobs() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            ("CONFIG_SERVER_HEADER_TIMEOUT_MS", "200"),
            ("CONFIG_SERVER_IDLE_TIMEOUT_MS", "300"),
            ("CONFIG_SERVER_MAX_CONNECTIONS", "4"),
            ("CONFIG_SERVER_WATCH_INTERVAL_MS", "0"),
        ])
        .expect("valid knobs");
        assert_eq!(config.limits.header_timeout, Duration::from_millis(200));
        assert_eq!(config.limits.idle_timeout, Duration::from_millis(300));
        assert_eq!(config.limits.max_connections, 4);
        assert_eq!(config.watch_interval, None);
        for (name, value, accepted) in [
            (
                "CONFIG_SERVER_HEADER_TIMEOUT_MS",
                "5s",
                "a whole number from 10 to 600000",
            ),
            (
                "CONFIG_SERVER_IDLE_TIMEOUT_MS",
                "0",
                "a whole number from 10 to 3600000",
            ),
            (
                "CONFIG_SERVER_MAX_CONNECTIONS",
                "-1",
                "a whole number from 1 to 10000",
            ),
            (
                "CONFIG_SERVER_MAX_CONNECTIONS",
                "99999999999999999999999",
                "a whole number from 1 to 10000",
            ),
            (
                "CONFIG_SERVER_WATCH_INTERVAL_MS",
                "50",
                "a whole number from 100 to 3600000, or 0 for off",
            ),
        ] {
            let err = Config::from_env(&env(&[(name, value)])).expect_err(name);
            assert_eq!(
                err.to_string(),
                format!("{name}={value:?} is not valid: expected {accepted}")
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn empty_port_counts_as_unset() {
        assert_eq!(
            config(&[("CONFIG_SERVER_PORT", "")]).expect("valid").port,
            8082
        );
    }

    #[test]
    fn valid_ports() {
        for (value, port) in [("1", 1), ("8082", 8082), ("65535", 65535), ("08082", 8082)] {
            let config = config(&[("CONFIG_SERVER_PORT", value)]).expect("valid port");
            assert_eq!(config.port, port);
            assert!(config.warnings.is_empty());
        }
    }

    #[test]
    fn invalid_ports() {
        for value in [
            "abc", "0", "70000", "65536", "-1", "+8082", " 8082", "80.5", "0x50",
        ] {
            let err = config(&[("CONFIG_SERVER_PORT", value)]).expect_err(value);
            assert_eq!(
                err.to_string(),
                format!("CONFIG_SERVER_PORT={value:?} is not a port number from 1 to 65535")
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn port_equal_to_app_port_is_refused() {
        let err = config(&[("CONFIG_SERVER_PORT", "8080"), ("PORT", "8080")]).expect_err("clash");
        assert!(matches!(err, Error::PortIsAppPort { port: 8080 }));
        assert_eq!(err.exit_code(), 2);
        // The default port clashes too.
        let err = config(&[("PORT", "8082")]).expect_err("clash");
        assert_eq!(
            err.to_string(),
            "CONFIG_SERVER_PORT is not set, and its default 8082 is the app's own PORT: set \
             CONFIG_SERVER_PORT to another port in the app's manifest env"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn unparsable_app_port_is_not_our_business() {
        let config = config(&[("CONFIG_SERVER_PORT", "8082"), ("PORT", "web")]).expect("valid");
        assert_eq!(config.port, 8082);
    }

    #[test]
    fn relative_file_is_resolved_against_home() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            ("CONFIG_SERVER_FILE", "conf/app.yml"),
            ("HOME", "/home/vcap/app"),
        ])
        .expect("valid");
        assert_eq!(
            config.source,
            Source::File(PathBuf::from("/home/vcap/app/conf/app.yml"))
        );
    }

    #[test]
    fn relative_file_without_home_stays_relative_to_the_current_dir() {
        let config = config(&[("CONFIG_SERVER_FILE", "app.yml")]).expect("valid");
        assert_eq!(config.source, Source::File(PathBuf::from("app.yml")));
    }

    #[test]
    fn absolute_file_ignores_home() {
        let config =
            config(&[("CONFIG_SERVER_FILE", "/etc/app.json"), ("HOME", "/home/x")]).expect("valid");
        assert_eq!(config.source, Source::File(PathBuf::from("/etc/app.json")));
    }

    #[test]
    fn file_wins_over_services_and_says_service_is_ignored() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            ("CONFIG_SERVER_FILE", "/x.yml"),
            ("CONFIG_SERVER_SERVICE", "my-config"),
            ("VCAP_SERVICES", "not even json"),
        ])
        .expect("valid");
        assert_eq!(config.source, Source::File(PathBuf::from("/x.yml")));
        assert_eq!(
            config.warnings,
            ["CONFIG_SERVER_SERVICE=\"my-config\" is ignored: CONFIG_SERVER_FILE is set and comes first"]
        );
    }

    #[test]
    fn binding_sources_in_search_order_with_a_warning() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            ("VCAP_SERVICES", "{}"),
            (
                "VCAP_SERVICES_FILE_PATH",
                "/etc/cf-service-bindings/vcap_services",
            ),
            ("SERVICE_BINDING_ROOT", "/bindings"),
            ("CONFIG_SERVER_SERVICE", "my-config"),
        ])
        .expect("valid");
        assert_eq!(
            config.source,
            Source::Services {
                bindings: vec![
                    BindingsInput::Root(PathBuf::from("/bindings")),
                    BindingsInput::File(PathBuf::from("/etc/cf-service-bindings/vcap_services")),
                    BindingsInput::Env("{}".to_owned()),
                ],
                service: Some("my-config".to_owned()),
            }
        );
        assert_eq!(
            config.warnings,
            [
                "several binding sources are set (SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH, \
              VCAP_SERVICES): they are searched in that order, and the first one holding a \
              match wins"
            ]
        );
    }

    #[test]
    fn vcap_services_text_is_kept_but_never_debug_printed() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            (
                "VCAP_SERVICES",
                r#"{"x":[{"credentials":{"pw":"hunter2"}}]}"#,
            ),
        ])
        .expect("valid");
        let Source::Services { bindings, .. } = &config.source else {
            panic!("expected bindings, got {:?}", config.source);
        };
        assert!(matches!(&bindings[..], [BindingsInput::Env(text)] if text.contains("hunter2")));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
