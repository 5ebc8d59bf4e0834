//! Loads the configuration from the source the settings point at: at startup,
//! where any failure stops the sidecar (serving something other than what the
//! user asked for, say the demo document instead of a broken file, would be
//! worse than a crash the logs explain), and on every reload, where a failure
//! keeps the last good document (`reload`).
//!
//! Every source is size-checked before it is read whole, and parsed strictly
//! (`parse`); a source that is fine but says nothing (no file, no binding)
//! gives the built-in demo document.

use std::fmt;
use std::fs::{self, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::bindings::{self, Binding, Listing};
use crate::config::{BindingsInput, Source};
use crate::document::Document;
use crate::error::{Bindings, Error, Format, Unsafe};
use crate::parse;
use crate::sanitize;
use crate::watch;

/// The tag (or binding type) that marks the service binding holding the configuration.
pub(crate) const TAG: &str = "config-server";

/// The most a configuration source may hold: the file, the bindings file, or all
/// the files of a `SERVICE_BINDING_ROOT` tree together. CF caps file-based
/// bindings at 1 MB (cloud_controller_ng ServiceBindingFilesBuilder); a source
/// this size already parses into several times as much memory, and the sidecar
/// runs in 32 MB.
pub(crate) const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// Where the served configuration came from, as the startup line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    File(PathBuf),
    Service {
        name: String,
        matched: Match,
        bindings: Bindings,
    },
    Demo,
}

/// How a service binding was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Its name is `CONFIG_SERVER_SERVICE`.
    Name,
    /// Its tags hold `config-server`.
    Tag,
    /// Its type (VCAP_SERVICES: label) is `config-server`.
    Type,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "CONFIG_SERVER_FILE={}", path.display()),
            Self::Service {
                name,
                matched,
                bindings,
            } => {
                let how = match matched {
                    Match::Name => "named by CONFIG_SERVER_SERVICE".to_owned(),
                    Match::Tag => format!("tagged {TAG}"),
                    Match::Type => format!("of type {TAG}"),
                };
                write!(f, "service instance {} {how} in {bindings}", quote(name))
            }
            Self::Demo => f.write_str("the built-in demo document"),
        }
    }
}

/// A configuration, read and checked, ready to be served.
pub(crate) struct Loaded {
    pub document: Document,
    pub origin: Origin,
}

/// How many times a load is tried while its files keep changing under it.
const LOAD_TRIES: usize = 5;

/// Reads, checks and renders the configuration.
///
/// A source of several files (a binding tree) can change half way through
/// its reading, say a Kubernetes `..data` swap between the user file and
/// the password file: the files' state is taken before and after, and a
/// load that saw them change is thrown away and tried again, so that what
/// is served is one version or the other, never a mix.
pub(crate) fn load(source: &Source) -> Result<Loaded, Error> {
    let targets = watch::targets(source);
    for _ in 0..LOAD_TRIES {
        let before = watch::fingerprint(&targets);
        let loaded = load_once(source);
        if watch::fingerprint(&targets).all == before.all {
            return loaded;
        }
    }
    Err(Error::KeptChanging {
        what: what_changes(source),
        tries: LOAD_TRIES,
    })
}

/// The variables naming the files behind `source`, for a message.
fn what_changes(source: &Source) -> String {
    match source {
        Source::File(path) => format!("CONFIG_SERVER_FILE={}", path.display()),
        Source::Services { bindings, .. } => {
            let files: Vec<String> = bindings
                .iter()
                .filter_map(|input| match input {
                    BindingsInput::Root(root) => Some(Bindings::Root(root.clone()).to_string()),
                    BindingsInput::File(path) => Some(Bindings::File(path.clone()).to_string()),
                    BindingsInput::Env(_) => None,
                })
                .collect();
            files.join(" or ")
        }
    }
}

fn load_once(source: &Source) -> Result<Loaded, Error> {
    match source {
        Source::File(path) => Ok(Loaded {
            document: load_file(path)?,
            origin: Origin::File(path.clone()),
        }),
        Source::Services { bindings, service } => load_services(bindings, service.as_deref()),
    }
}

/// Why [`read_capped`] gave up.
pub(crate) enum Capped {
    Io(io::Error),
    NotRegular,
    /// The size found, or the most read before giving up.
    TooBig(u64),
}

/// Reads a regular file of at most `budget` bytes, refusing a larger one before
/// reading it whole (and one that grows past `budget` while it is read).
pub(crate) fn read_capped(path: &Path, budget: u64) -> Result<Vec<u8>, Capped> {
    let meta = fs::metadata(path).map_err(Capped::Io)?;
    read_regular(path, &meta, budget)
}

/// Reads `path`, which `meta` (a stat of it) says is a regular file.
///
/// The path may be swapped between the stat and the open, so the stat only
/// spares opening a device; what counts is what was opened. It is opened
/// without blocking (opening a FIFO for reading would wait for a writer, and
/// the sidecar with it, forever) and checked again through its descriptor.
fn read_regular(path: &Path, meta: &Metadata, budget: u64) -> Result<Vec<u8>, Capped> {
    if !meta.is_file() {
        return Err(Capped::NotRegular);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Capped::Io)?;
    let meta = file.metadata().map_err(Capped::Io)?;
    if !meta.is_file() {
        return Err(Capped::NotRegular);
    }
    if meta.len() > budget {
        return Err(Capped::TooBig(meta.len()));
    }
    let mut text = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(budget + 1)
        .read_to_end(&mut text)
        .map_err(Capped::Io)?;
    match text.len() as u64 {
        read if read > budget => Err(Capped::TooBig(read)),
        _ => Ok(text),
    }
}

fn load_file(path: &Path) -> Result<Document, Error> {
    let unreadable = |source| Error::FileUnreadable {
        path: path.to_path_buf(),
        source,
    };
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
    let text = read_regular(path, &meta, MAX_SOURCE_BYTES).map_err(|e| match e {
        Capped::Io(source) => unreadable(source),
        Capped::NotRegular => Error::FileNotRegular {
            path: path.to_path_buf(),
        },
        Capped::TooBig(size) => Error::TooBig {
            what: format!("CONFIG_SERVER_FILE={}", path.display()),
            size: size.to_string(),
        },
    })?;

    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    // YAML is (nearly) a superset of JSON, so anything not named .json is read as YAML.
    let format = if is_json { Format::Json } else { Format::Yaml };
    match parse::parse(format, &text) {
        Ok(Value::Object(map)) => Ok(Document::from_map(map)),
        Ok(_) => Err(Error::FileNotMapping {
            path: path.to_path_buf(),
        }),
        Err(error) => Err(Error::FileParse {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// The configuration file must not be changeable by users other than its
/// owner: refuse a world-writable file, and a file that any directory on the
/// way to it is world-writable without the sticky bit (anyone could rename
/// what such a directory holds: the file, a directory above it, or a symlink
/// it goes through). The path is walked as the kernel resolves it, one
/// component and one symlink at a time. `meta` is the resolved file's metadata.
fn check_file_safety(path: &Path, meta: &Metadata) -> Result<(), Unsafe> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        // canonicalize cannot fail for a path that was just stat'ed, except in a
        // race; then fall back to the path as given.
        let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Err(Unsafe::WorldWritableFile { path: target, mode });
    }
    let start = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().unwrap_or_default()
    };
    // The components still to walk, the next one last.
    let mut pending = parts(path);
    let mut dir = start;
    // What the kernel allows (MAXSYMLINKS); past it the read fails anyway.
    let mut links = 40;
    while let Some(part) = pending.pop() {
        let name = match part {
            Part::Root => {
                dir = PathBuf::from("/");
                continue;
            }
            Part::Parent => {
                dir.pop();
                continue;
            }
            Part::Name(name) => name,
        };
        check_dir(&dir)?;
        let next = dir.join(name);
        let is_link = fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            dir = next;
            continue;
        }
        links -= 1;
        let Ok(target) = fs::read_link(&next) else {
            break; // Replaced in a race: the read that follows tells.
        };
        if links == 0 {
            break;
        }
        pending.extend(parts(&target));
    }
    Ok(())
}

/// A path's components to walk, last first (a stack).
enum Part {
    Root,
    Parent,
    Name(std::ffi::OsString),
}

fn parts(path: &Path) -> Vec<Part> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::RootDir => Some(Part::Root),
            Component::ParentDir => Some(Part::Parent),
            Component::Normal(name) => Some(Part::Name(name.to_owned())),
            Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// A directory on the way to the file must not let anyone rename what it holds.
fn check_dir(dir: &Path) -> Result<(), Unsafe> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(()); // Gone in a race: the read that follows tells.
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        let path = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        return Err(Unsafe::WorldWritableDir { path, mode });
    }
    Ok(())
}

fn load_services(inputs: &[BindingsInput], service: Option<&str>) -> Result<Loaded, Error> {
    // Every source that is set is read, so that a broken one is always reported.
    let sources = inputs
        .iter()
        .map(bindings::read)
        .collect::<Result<Vec<_>, Error>>()?;

    let found = match service {
        Some(name) => {
            let found = sources.iter().find_map(|listing| {
                let binding = listing.bindings.iter().find(|b| b.name == name)?;
                Some((listing, binding, Match::Name))
            });
            let Some(found) = found else {
                return Err(Error::ServiceNotBound {
                    name: name.to_owned(),
                    looked: looked_in(&sources),
                });
            };
            Some(found)
        }
        None => by_tag_or_type(&sources)?,
    };
    let Some((listing, binding, matched)) = found else {
        return Ok(Loaded {
            document: Document::demo(),
            origin: Origin::Demo,
        });
    };
    let Some(credentials) = listing.credentials(binding)? else {
        return Err(Error::NoCredentials {
            name: binding.name.clone(),
            origin: listing.origin.clone(),
        });
    };
    Ok(Loaded {
        document: Document::from_map(credentials),
        origin: Origin::Service {
            name: binding.name.clone(),
            matched,
            bindings: listing.origin.clone(),
        },
    })
}

/// The one binding tagged or typed `config-server` in the first source that has
/// any; several in that source are an error: which secrets did the app mean?
fn by_tag_or_type(sources: &[Listing]) -> Result<Option<(&Listing, &Binding, Match)>, Error> {
    for listing in sources {
        let matches: Vec<(&Binding, Match)> = listing
            .bindings
            .iter()
            .filter_map(|b| {
                if b.tags.iter().any(|t| t == TAG) {
                    Some((b, Match::Tag))
                } else if b.kind.as_deref() == Some(TAG) {
                    Some((b, Match::Type))
                } else {
                    None
                }
            })
            .collect();
        match matches[..] {
            [] => {}
            [(binding, matched)] => return Ok(Some((listing, binding, matched))),
            _ => {
                let names: Vec<&str> = matches.iter().map(|(b, _)| b.name.as_str()).collect();
                return Err(Error::AmbiguousTag {
                    count: matches.len(),
                    names: list_or_none(&names),
                    origin: listing.origin.clone(),
                });
            }
        }
    }
    Ok(None)
}

/// "VCAP_SERVICES; bound: \"a\", \"b\"", one such part per source.
fn looked_in(sources: &[Listing]) -> String {
    if sources.is_empty() {
        return "SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH and VCAP_SERVICES, none of \
                which is set"
            .to_owned();
    }
    let parts: Vec<String> = sources
        .iter()
        .map(|listing| {
            let names: Vec<&str> = listing.bindings.iter().map(|b| b.name.as_str()).collect();
            format!("{}; bound: {}", listing.origin, list_or_none(&names))
        })
        .collect();
    parts.join("; and in ")
}

/// A name as messages show it: quoted, escaped and cut.
fn quote(name: &str) -> String {
    format!("\"{}\"", sanitize::cut(name, 64).replace('"', "\\\""))
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
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

    fn services(json: &str, service: Option<&str>) -> Result<Loaded, Error> {
        load(&Source::Services {
            bindings: vec![BindingsInput::Env(json.to_owned())],
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
        let Loaded {
            document: doc,
            origin,
        } = services(&vcap(), Some("other")).unwrap();
        assert_eq!(doc.whole().body, &br#"{"x":1}"#[..]);
        assert_eq!(
            origin.to_string(),
            "service instance \"other\" named by CONFIG_SERVER_SERVICE in VCAP_SERVICES"
        );
    }

    #[test]
    fn service_by_tag() {
        let Loaded {
            document: doc,
            origin,
        } = services(&vcap(), None).unwrap();
        let expected = format!(r#"{{"Scope":"a","Password":"{SECRET}"}}"#);
        assert_eq!(doc.whole().body, expected.as_bytes());
        assert_eq!(
            origin.to_string(),
            "service instance \"app-config\" tagged config-server in VCAP_SERVICES"
        );
    }

    #[test]
    fn no_tagged_service_means_demo() {
        let Loaded {
            document: doc,
            origin,
        } = services(r#"{"x":[{"name":"a","tags":[],"credentials":{}}]}"#, None).unwrap();
        assert_eq!(doc.whole().body, DEMO.as_bytes());
        assert_eq!(origin, Origin::Demo);
        let Loaded { origin, .. } = services("{}", None).unwrap();
        assert_eq!(origin, Origin::Demo);
        let Loaded { origin, .. } = load(&Source::Services {
            bindings: Vec::new(),
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
            bindings: Vec::new(),
            service: Some("cfg".to_owned()),
        })
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "CONFIG_SERVER_SERVICE=\"cfg\": no service instance of that name is bound to the app \
             (looked in SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH and VCAP_SERVICES, none of \
             which is set)"
        );
    }

    #[test]
    fn several_tagged_services_are_an_error() {
        let json = r#"{"b":[{"name":"two","tags":["config-server"],"credentials":{}}],
                       "a":[{"name":"one","tags":["config-server"],"credentials":{}}]}"#;
        let err = services(json, None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "2 bound service instances are tagged config-server or of type config-server \
             (\"one\", \"two\") in VCAP_SERVICES: set CONFIG_SERVER_SERVICE to the name of the \
             one to use"
        );
        // Naming one settles it.
        let Loaded { document: doc, .. } = services(json, Some("two")).unwrap();
        assert_eq!(doc.whole().body, &b"{}"[..]);
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
        let Loaded { origin, .. } = load(&Source::Services {
            bindings: vec![BindingsInput::File(path.clone())],
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
            bindings: vec![BindingsInput::File(missing.clone())],
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
        let Loaded {
            document: doc,
            origin,
        } = load(&Source::File(json.clone())).unwrap();
        assert_eq!(doc.whole().body, &br#"{"b":[1,2],"a":"x"}"#[..]);
        assert_eq!(origin, Origin::File(json));

        let yaml = file(dir.path(), "c.yml", "b:\n- 1\n- 2\na: x\nn: ~\n");
        let Loaded { document: doc, .. } = load(&Source::File(yaml)).unwrap();
        assert_eq!(doc.whole().body, &br#"{"b":[1,2],"a":"x","n":null}"#[..]);
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
        let Loaded { document: doc, .. } = load(&Source::File(link.clone())).unwrap();
        assert_eq!(doc.whole().body, &br#"{"a":1}"#[..]);
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
