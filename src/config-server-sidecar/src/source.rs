//! Loads the configuration from the source the settings point at, once, at
//! startup. Any failure is fatal: serving something other than what the user
//! asked for (say, the demo document instead of a broken file) would be worse
//! than a crash the logs explain.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, Metadata};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{error::Category, Value};

use crate::config::{BindingsInput, Source};
use crate::document::Document;
use crate::error::{Bindings, Error, Format, Position, Unsafe};

/// The tag that marks the service instance holding the configuration.
pub const TAG: &str = "config-server";

/// Where the served configuration came from, as the startup line tells it.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Service {
        name: String,
        by_tag: bool,
        bindings: Bindings,
    },
    Demo,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "CONFIG_SERVER_FILE={}", path.display()),
            Self::Service {
                name,
                by_tag: false,
                bindings,
            } => write!(
                f,
                "service instance {name:?} named by CONFIG_SERVER_SERVICE in {bindings}"
            ),
            Self::Service {
                name,
                by_tag: true,
                bindings,
            } => write!(f, "service instance {name:?} tagged {TAG} in {bindings}"),
            Self::Demo => f.write_str("the built-in demo document"),
        }
    }
}

/// Reads and renders the configuration.
pub fn load(source: &Source) -> Result<(Document, Origin), Error> {
    match source {
        Source::File(path) => Ok((load_file(path)?, Origin::File(path.clone()))),
        Source::Services { bindings, service } => {
            load_services(bindings.as_ref(), service.as_deref())
        }
    }
}

fn load_file(path: &Path) -> Result<Document, Error> {
    let unreadable = |source| Error::FileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    // stat before open: opening a FIFO for reading would block forever.
    let meta = fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Error::FileNotRegular {
            path: path.to_path_buf(),
        });
    }
    check_file_safety(path, &meta).map_err(|problem| Error::FileUnsafe {
        path: path.to_path_buf(),
        problem,
    })?;
    let text = fs::read(path).map_err(unreadable)?;

    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    // YAML is (nearly) a superset of JSON, so anything not named .json is read as YAML.
    let (format, parsed) = if is_json {
        let parsed = serde_json::from_slice::<Value>(&text).map_err(|e| Position::of_json(&e));
        (Format::Json, parsed)
    } else {
        let parsed = serde_yaml::from_slice::<Value>(&text).map_err(|e| Position::of_yaml(&e));
        (Format::Yaml, parsed)
    };
    // The parse error itself is dropped: its text can quote the file's content.
    match parsed {
        Ok(Value::Object(map)) => Ok(Document::from_map(map)),
        Ok(_) => Err(Error::FileNotMapping {
            path: path.to_path_buf(),
        }),
        Err(at) => Err(Error::FileSyntax {
            path: path.to_path_buf(),
            format,
            at,
        }),
    }
}

/// The configuration file must not be changeable by users other than its
/// owner: refuse a world-writable file, and a file whose directory is
/// world-writable without the sticky bit (anyone could replace it). For a
/// symlink, both the directory holding the link and the directory holding the
/// file it resolves to are checked. `meta` is the resolved file's metadata.
fn check_file_safety(path: &Path, meta: &Metadata) -> Result<(), Unsafe> {
    let mode = meta.permissions().mode() & 0o7777;
    // canonicalize cannot fail for a path that was just stat'ed, except in a race;
    // then fall back to the path as given.
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if mode & 0o002 != 0 {
        return Err(Unsafe::WorldWritableFile { path: target, mode });
    }
    let link_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dirs = [target.parent(), Some(link_dir)];
    for dir in dirs.into_iter().flatten() {
        let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let Ok(dir_meta) = fs::metadata(&dir) else {
            continue;
        };
        let mode = dir_meta.mode() & 0o7777;
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(Unsafe::WorldWritableDir { path: dir, mode });
        }
    }
    Ok(())
}

/// One entry of a `VCAP_SERVICES` label's array; other fields are ignored.
#[derive(Deserialize)]
struct Instance {
    name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    credentials: Option<Value>,
}

fn load_services(
    bindings: Option<&BindingsInput>,
    service: Option<&str>,
) -> Result<(Document, Origin), Error> {
    let Some(input) = bindings else {
        return match service {
            Some(name) => Err(Error::ServiceNotBound {
                name: name.to_owned(),
                origin: Bindings::Env,
                bound: "none, VCAP_SERVICES and VCAP_SERVICES_FILE_PATH are unset".to_owned(),
            }),
            None => Ok((Document::demo(), Origin::Demo)),
        };
    };

    let (origin, text) = match input {
        BindingsInput::Env(text) => (Bindings::Env, text.as_bytes().to_vec()),
        BindingsInput::File(path) => {
            let text = fs::read(path).map_err(|source| Error::BindingsUnreadable {
                path: path.clone(),
                source,
            })?;
            (Bindings::File(path.clone()), text)
        }
    };
    // Labels in sorted order, then each label's array order: a stable order to
    // list names in messages.
    let services: BTreeMap<String, Vec<Instance>> =
        serde_json::from_slice(&text).map_err(|e| Error::BindingsInvalid {
            origin: origin.clone(),
            problem: match e.classify() {
                Category::Data => {
                    "not shaped like VCAP_SERVICES (an object of arrays of service \
                     instances, each with a name)"
                }
                Category::Io | Category::Syntax | Category::Eof => "not valid JSON",
            },
            at: Position::of_json(&e),
        })?;
    let instances = services.into_values().flatten();

    let (instance, by_tag) = match service {
        Some(name) => {
            let mut names = Vec::new();
            let mut found = None;
            for instance in instances {
                if found.is_none() && instance.name == name {
                    found = Some(instance);
                } else {
                    names.push(instance.name);
                }
            }
            let Some(instance) = found else {
                return Err(Error::ServiceNotBound {
                    name: name.to_owned(),
                    origin,
                    bound: list_or_none(&names),
                });
            };
            (instance, false)
        }
        None => {
            let mut tagged: Vec<Instance> = instances
                .filter(|i| i.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == TAG)))
                .collect();
            match tagged.len() {
                0 => return Ok((Document::demo(), Origin::Demo)),
                1 => (tagged.remove(0), true),
                count => {
                    let names: Vec<String> = tagged.into_iter().map(|i| i.name).collect();
                    return Err(Error::AmbiguousTag {
                        count,
                        names: list_or_none(&names),
                        origin,
                    });
                }
            }
        }
    };

    let Some(Value::Object(credentials)) = instance.credentials else {
        return Err(Error::NoCredentials {
            name: instance.name,
            origin,
        });
    };
    let origin = Origin::Service {
        name: instance.name,
        by_tag,
        bindings: origin,
    };
    Ok((Document::from_map(credentials), origin))
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs::Permissions;

    use super::*;
    use crate::document::DEMO;
    use crate::error::report;

    const SECRET: &str = "s3cr3t-value";

    fn services(json: &str, service: Option<&str>) -> Result<(Document, Origin), Error> {
        load(&Source::Services {
            bindings: Some(BindingsInput::Env(json.to_owned())),
            service: service.map(str::to_owned),
        })
    }

    fn vcap() -> String {
        format!(
            r#"{{
              "p-mysql": [{{"name": "db", "tags": ["mysql"], "credentials": {{"pw": "{SECRET}"}}}}],
              "user-provided": [
                {{"name": "app-config", "tags": ["config-server"], "credentials": {{"Scope": "a", "Password": "{SECRET}"}}}},
                {{"name": "other", "tags": null, "credentials": {{"x": 1}}}}
              ]
            }}"#
        )
    }

    #[test]
    fn service_by_name() {
        let (doc, origin) = services(&vcap(), Some("other")).unwrap();
        assert_eq!(doc.whole(), &br#"{"x":1}"#[..]);
        assert_eq!(
            origin.to_string(),
            "service instance \"other\" named by CONFIG_SERVER_SERVICE in VCAP_SERVICES"
        );
    }

    #[test]
    fn service_by_tag() {
        let (doc, origin) = services(&vcap(), None).unwrap();
        let expected = format!(r#"{{"Scope":"a","Password":"{SECRET}"}}"#);
        assert_eq!(doc.whole(), expected.as_bytes());
        assert_eq!(
            origin.to_string(),
            "service instance \"app-config\" tagged config-server in VCAP_SERVICES"
        );
    }

    #[test]
    fn no_tagged_service_means_demo() {
        let (doc, origin) =
            services(r#"{"x":[{"name":"a","tags":[],"credentials":{}}]}"#, None).unwrap();
        assert_eq!(doc.whole(), DEMO.as_bytes());
        assert_eq!(origin, Origin::Demo);
        let (_, origin) = services("{}", None).unwrap();
        assert_eq!(origin, Origin::Demo);
        let (_, origin) = load(&Source::Services {
            bindings: None,
            service: None,
        })
        .unwrap();
        assert_eq!(origin, Origin::Demo);
    }

    #[test]
    fn named_service_not_bound_lists_bound_names_only() {
        let err = services(&vcap(), Some("missing")).err().unwrap();
        assert_eq!(
            report(&err),
            "CONFIG_SERVER_SERVICE=\"missing\": no service instance of that name is bound to \
             the app (looked in VCAP_SERVICES; bound: \"db\", \"app-config\", \"other\")"
        );
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn named_service_without_any_bindings() {
        let err = load(&Source::Services {
            bindings: None,
            service: Some("cfg".to_owned()),
        })
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "CONFIG_SERVER_SERVICE=\"cfg\": no service instance of that name is bound to the app \
             (looked in VCAP_SERVICES; bound: none, VCAP_SERVICES and VCAP_SERVICES_FILE_PATH \
             are unset)"
        );
    }

    #[test]
    fn several_tagged_services_are_an_error() {
        let json = r#"{"b":[{"name":"two","tags":["config-server"],"credentials":{}}],
                       "a":[{"name":"one","tags":["config-server"],"credentials":{}}]}"#;
        let err = services(json, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "2 bound service instances are tagged config-server (\"one\", \"two\") in \
             VCAP_SERVICES: set CONFIG_SERVER_SERVICE to the name of the one to use"
        );
        // Naming one settles it.
        let (doc, _) = services(json, Some("two")).unwrap();
        assert_eq!(doc.whole(), &b"{}"[..]);
    }

    #[test]
    fn credentials_must_be_an_object() {
        for instance in [
            r#"{"name":"c","tags":["config-server"]}"#,
            r#"{"name":"c","tags":["config-server"],"credentials":"s3cr3t-value"}"#,
        ] {
            let err = services(&format!(r#"{{"x":[{instance}]}}"#), None)
                .err()
                .unwrap();
            assert_eq!(
                err.to_string(),
                "service instance \"c\" in VCAP_SERVICES: its credentials are missing or not a \
                 JSON object"
            );
        }
    }

    #[test]
    fn invalid_vcap_services_never_quotes_content() {
        for (json, expected) in [
            (
                format!(r#"{{"x": [{{"name": "{SECRET}", "#),
                "VCAP_SERVICES: not valid JSON (line 1, column 32)",
            ),
            (
                format!(r#"{{"x": "{SECRET}"}}"#),
                "VCAP_SERVICES: not shaped like VCAP_SERVICES (an object of arrays of service \
                 instances, each with a name) (line 1, column 20)",
            ),
        ] {
            let err = services(&json, None).err().unwrap();
            assert_eq!(report(&err), expected);
            assert_eq!(err.exit_code(), 3);
        }
    }

    #[test]
    fn bindings_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vcap_services");
        fs::write(&path, vcap()).unwrap();
        let (_, origin) = load(&Source::Services {
            bindings: Some(BindingsInput::File(path.clone())),
            service: Some("db".to_owned()),
        })
        .unwrap();
        assert_eq!(
            origin.to_string(),
            format!(
                "service instance \"db\" named by CONFIG_SERVER_SERVICE in \
                 VCAP_SERVICES_FILE_PATH={}",
                path.display()
            )
        );

        let missing = dir.path().join("nope");
        let err = load(&Source::Services {
            bindings: Some(BindingsInput::File(missing.clone())),
            service: None,
        })
        .err()
        .unwrap();
        assert!(
            report(&err).starts_with(&format!(
                "VCAP_SERVICES_FILE_PATH={}: cannot read it: ",
                missing.display()
            )),
            "{}",
            report(&err)
        );
    }

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn load_file_err(path: &Path) -> String {
        report(&load(&Source::File(path.to_path_buf())).err().unwrap())
    }

    #[test]
    fn json_and_yaml_files() {
        let dir = tempfile::tempdir().unwrap();
        let json = file(dir.path(), "c.JSON", r#"{"b": [1, 2], "a": "x"}"#);
        let (doc, origin) = load(&Source::File(json.clone())).unwrap();
        assert_eq!(doc.whole(), &br#"{"b":[1,2],"a":"x"}"#[..]);
        assert_eq!(origin, Origin::File(json));

        let yaml = file(dir.path(), "c.yml", "b:\n- 1\n- 2\na: x\nn: ~\n");
        let (doc, _) = load(&Source::File(yaml)).unwrap();
        assert_eq!(doc.whole(), &br#"{"b":[1,2],"a":"x","n":null}"#[..]);
    }

    #[test]
    fn file_errors_give_position_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let json = file(dir.path(), "c.json", &format!("{{\n  \"pw\": {SECRET}\n}}"));
        assert_eq!(
            load_file_err(&json),
            format!(
                "CONFIG_SERVER_FILE={}: not valid JSON (line 2, column 9)",
                json.display()
            )
        );
        let yaml = file(dir.path(), "c.yaml", &format!("pw: {SECRET}\n  bad: [\n"));
        let message = load_file_err(&yaml);
        assert!(
            message.starts_with(&format!(
                "CONFIG_SERVER_FILE={}: not valid YAML (line ",
                yaml.display()
            )),
            "{message}"
        );
        assert!(!message.contains(SECRET), "{message}");

        for text in [
            format!("- {SECRET}\n"),
            String::new(),
            format!("\"{SECRET}\""),
        ] {
            let path = file(dir.path(), "list.yml", &text);
            assert_eq!(
                load_file_err(&path),
                format!(
                    "CONFIG_SERVER_FILE={}: the top level must be a mapping of keys to values",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.yml");
        assert_eq!(
            load_file_err(&missing),
            format!(
                "CONFIG_SERVER_FILE={}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            )
        );
        assert_eq!(
            load_file_err(dir.path()),
            format!(
                "CONFIG_SERVER_FILE={}: not a regular file",
                dir.path().display()
            )
        );
    }

    #[test]
    fn world_writable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path(), "c.yml", "a: 1\n");
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let real = fs::canonicalize(&path).unwrap();
        assert_eq!(
            load_file_err(&path),
            format!(
                "CONFIG_SERVER_FILE={}: refusing to read it: {} is world-writable (mode 0666); \
                 run `chmod o-w {}`",
                path.display(),
                real.display(),
                real.display()
            )
        );
    }

    #[test]
    fn symlink_to_world_writable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = file(dir.path(), "real.yml", "a: 1\n");
        fs::set_permissions(&target, Permissions::from_mode(0o646)).unwrap();
        let link = dir.path().join("link.yml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let message = load_file_err(&link);
        assert!(
            message.contains(&format!(
                "{} is world-writable (mode 0646)",
                fs::canonicalize(&target).unwrap().display()
            )),
            "{message}"
        );
    }

    #[test]
    fn symlink_into_world_writable_dir_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        let target = file(&open_dir, "real.yml", "a: 1\n");
        let link = file(dir.path(), "placeholder", "");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();

        fs::set_permissions(&open_dir, Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            load_file_err(&link),
            format!(
                "CONFIG_SERVER_FILE={}: refusing to read it: directory {} is world-writable \
                 without the sticky bit (mode 0777), so anyone can replace the file; run \
                 `chmod o-w {}` or move the file",
                link.display(),
                fs::canonicalize(&open_dir).unwrap().display(),
                fs::canonicalize(&open_dir).unwrap().display(),
            )
        );
        // Same directory with the sticky bit, like /tmp: only the owner can replace the file.
        fs::set_permissions(&open_dir, Permissions::from_mode(0o1777)).unwrap();
        let (doc, _) = load(&Source::File(link.clone())).unwrap();
        assert_eq!(doc.whole(), &br#"{"a":1}"#[..]);
        // A file directly in a non-sticky world-writable directory is refused too.
        fs::set_permissions(&open_dir, Permissions::from_mode(0o777)).unwrap();
        assert!(load_file_err(&target).contains("without the sticky bit"));
    }

    #[test]
    fn symlink_placed_in_world_writable_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = file(dir.path(), "real.yml", "a: 1\n");
        let open_dir = dir.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        let link = open_dir.join("link.yml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        fs::set_permissions(&open_dir, Permissions::from_mode(0o757)).unwrap();
        assert!(load_file_err(&link).contains(&format!(
            "directory {} is world-writable without the sticky bit (mode 0757)",
            fs::canonicalize(&open_dir).unwrap().display()
        )));
    }
}
