//! The sidecar's settings, parsed once from the environment that `main` hands
//! over. Nothing here touches the file system: files are read by `source`.
//!
//! An empty variable counts as unset, so a manifest can switch a setting off
//! with `VAR: ""`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The port used when `CONFIG_SERVER_PORT` is unset.
pub const DEFAULT_PORT: u16 = 8082;

/// Everything the sidecar needs to know before it reads any file.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    /// Loopback port to listen on (`CONFIG_SERVER_PORT`).
    pub port: u16,
    /// Where the configuration comes from.
    pub source: Source,
    /// Things worth a `warning:` line at startup.
    pub warnings: Vec<String>,
}

/// Where the configuration comes from; the first that applies wins.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// `CONFIG_SERVER_FILE`, made absolute against `HOME` when relative.
    File(PathBuf),
    /// The bound services: `credentials` of the instance named by
    /// `CONFIG_SERVER_SERVICE`, or else of the one tagged `config-server`,
    /// or else the built-in demo document.
    Services {
        bindings: Option<BindingsInput>,
        service: Option<String>,
    },
}

/// Where the service bindings JSON is.
#[derive(PartialEq, Eq)]
pub enum BindingsInput {
    /// The text of `VCAP_SERVICES`.
    Env(String),
    /// The file named by `VCAP_SERVICES_FILE_PATH` (file-based service bindings).
    File(PathBuf),
}

// By hand, so that no debug output can ever print the credentials.
impl fmt::Debug for BindingsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(text) => write!(f, "Env(<{} bytes>)", text.len()),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Config {
    /// Reads `CONFIG_SERVER_PORT`, `PORT`, `CONFIG_SERVER_FILE`, `HOME`,
    /// `CONFIG_SERVER_SERVICE`, `VCAP_SERVICES_FILE_PATH` and `VCAP_SERVICES`.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Self, Error> {
        let var = |name: &str| env.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let mut warnings = Vec::new();

        let explicit = var("CONFIG_SERVER_PORT");
        let port = match explicit {
            Some(value) => parse_port(value).ok_or_else(|| Error::InvalidPort {
                value: value.to_owned(),
            })?,
            None => {
                warnings.push(format!(
                    "CONFIG_SERVER_PORT is not set: using port {DEFAULT_PORT}; set it in the \
                     app's manifest env so that the app and the sidecar agree"
                ));
                DEFAULT_PORT
            }
        };
        // The sidecar sees the app's env, PORT included (cloud-foundry.md section 3).
        if var("PORT").and_then(parse_port) == Some(port) {
            return Err(match explicit {
                Some(_) => Error::PortIsAppPort { port },
                None => Error::DefaultPortIsAppPort { port },
            });
        }

        let service = var("CONFIG_SERVER_SERVICE").map(str::to_owned);
        let source = match var("CONFIG_SERVER_FILE") {
            Some(file) => {
                if let Some(name) = &service {
                    warnings.push(format!(
                        "CONFIG_SERVER_SERVICE={name:?} is ignored: CONFIG_SERVER_FILE is set \
                         and comes first"
                    ));
                }
                Source::File(resolve(Path::new(file), var("HOME")))
            }
            None => {
                // CF sets one or the other; the file exists because VCAP_SERVICES is
                // size-limited, so it wins if both are somehow set.
                let bindings = match var("VCAP_SERVICES_FILE_PATH") {
                    Some(path) => Some(BindingsInput::File(PathBuf::from(path))),
                    None => var("VCAP_SERVICES").map(|text| BindingsInput::Env(text.to_owned())),
                };
                Source::Services { bindings, service }
            }
        };

        Ok(Self {
            port,
            source,
            warnings,
        })
    }
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
                bindings: None,
                service: None
            }
        );
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
    fn bindings_file_wins_over_vcap_services() {
        let config = config(&[
            ("CONFIG_SERVER_PORT", "9000"),
            ("VCAP_SERVICES", "{}"),
            (
                "VCAP_SERVICES_FILE_PATH",
                "/etc/cf-service-bindings/vcap_services",
            ),
            ("CONFIG_SERVER_SERVICE", "my-config"),
        ])
        .expect("valid");
        assert_eq!(
            config.source,
            Source::Services {
                bindings: Some(BindingsInput::File(PathBuf::from(
                    "/etc/cf-service-bindings/vcap_services"
                ))),
                service: Some("my-config".to_owned()),
            }
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
        let Source::Services {
            bindings: Some(bindings),
            ..
        } = &config.source
        else {
            panic!("expected bindings, got {:?}", config.source);
        };
        assert!(matches!(bindings, BindingsInput::Env(text) if text.contains("hunter2")));
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
