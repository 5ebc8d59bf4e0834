//! Service bindings, from each of the three ways a Cloud Foundry foundation
//! hands them over, as one list of [`Binding`]s:
//!
//! - `VCAP_SERVICES`: JSON in the environment (the default);
//! - `VCAP_SERVICES_FILE_PATH`: the same JSON in a file (the
//!   `file-based-vcap-services` app feature);
//! - `SERVICE_BINDING_ROOT`: a directory tree, one directory per binding named
//!   after it, one file per entry (the `service-binding-k8s` app feature, after
//!   the Kubernetes Service Binding spec).
//!
//! In the tree, Cloud Controller (cloud_controller_ng ServiceBindingFilesBuilder)
//! writes one directory per binding, named `[a-z0-9\-.]{1,253}` (the binding's
//! name, else the instance's); in it each top-level credential as a file named
//! after its key, a string as it is and anything else as JSON; then the
//! binding's own attributes (`name`, `label`, `tags`, `plan`, `binding_guid`,
//! `instance_guid`, ...) over same-named credentials; then `type` and
//! `provider`, both the service's label. `null`s and empty lists and objects are
//! left out. So a binding directory holding `binding_guid` or `instance_guid` is
//! CF's, and those attribute files are not credentials; in any other tree only
//! `type` and `provider` are metadata. A file holding a JSON object or array is
//! served as that value, as VCAP_SERVICES would give it; every other file as its
//! text (CF writes the number 5432 and the string "5432" alike). Names starting
//! with `.` are skipped: Kubernetes keeps its atomic-swap machinery there
//! (`..data`, `..2024_...`).
//!
//! CF does not resolve CredHub references in these files (buildpackapplifecycle
//! issue 76), nor wherever its launcher did not: credentials holding a
//! `credhub-ref` are refused rather than served as if the reference were the
//! secret.
//!
//! Of a tree, only what choosing a binding takes (`type`, `tags`) is read for
//! every binding; credential files are read for the binding that is served
//! only. Other bindings may well hold what config-server would refuse to serve
//! (a binary keystore, a large CA bundle), and that is none of its business.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{error::Category, Map, Value};

use crate::config::BindingsInput;
use crate::error::{Bindings, Error, Format, Position};
use crate::parse;
use crate::source::{read_capped, Capped, MAX_SOURCE_BYTES};

/// A `SERVICE_BINDING_ROOT` tree may hold at most this many directories and files.
pub(crate) const MAX_TREE_ENTRIES: usize = 4096;

/// The binding attributes Cloud Controller writes as files next to the
/// credentials: ServiceBindingPresenter's keys with the instance's, and `type`
/// and `provider`.
const CF_ATTRIBUTES: &[&str] = &[
    "binding_guid",
    "binding_name",
    "instance_guid",
    "instance_name",
    "label",
    "name",
    "plan",
    "provider",
    "syslog_drain_url",
    "tags",
    "type",
    "volume_mounts",
];

/// The key of an unresolved CredHub reference (`{"credhub-ref": "/c/..."}`).
const CREDHUB_REF: &str = "credhub-ref";

/// One service binding, whatever the source.
pub(crate) struct Binding {
    /// `name` in VCAP_SERVICES; the directory's name in a tree.
    pub name: String,
    /// The `type` file of a tree; `label` in VCAP_SERVICES (CF writes one as the other).
    pub kind: Option<String>,
    pub tags: Vec<String>,
    credentials: Credentials,
}

/// Where a binding's credentials are.
enum Credentials {
    /// The JSON text of VCAP_SERVICES' `credentials`, a range of
    /// [`Listing::text`]; `None` when it has none.
    Json(Option<Range<usize>>),
    /// The files of a tree's binding directory that may hold credentials (the
    /// others are its attributes), and the first whose name is not UTF-8; read
    /// only for the binding served.
    Files {
        dir: PathBuf,
        keys: Vec<String>,
        not_utf8: Option<PathBuf>,
    },
}

/// The bindings of one source.
pub(crate) struct Listing {
    pub origin: Bindings,
    pub bindings: Vec<Binding>,
    /// VCAP_SERVICES' text, for [`Credentials::Json`].
    text: Vec<u8>,
    /// What is left of [`MAX_SOURCE_BYTES`] for reading credential files.
    budget: u64,
}

impl Listing {
    /// The credentials of `binding`, one of this listing's; `None` if it has none.
    /// Parsed as strictly as a configuration file, with positions in the whole
    /// of VCAP_SERVICES.
    pub(crate) fn credentials(
        &self,
        binding: &Binding,
    ) -> Result<Option<Map<String, Value>>, Error> {
        let (dir, keys) = match &binding.credentials {
            Credentials::Json(None) => return Ok(None),
            Credentials::Json(Some(range)) => {
                let json = &self.text[range.clone()];
                return match parse::parse(Format::Json, json) {
                    Ok(Value::Object(map)) => self.resolved(binding, map).map(Some),
                    Ok(_) => Ok(None),
                    Err(mut error) => {
                        error.at = error.at.within(&self.text, range.start);
                        Err(Error::CredentialsInvalid {
                            name: binding.name.clone(),
                            origin: self.origin.clone(),
                            error: Box::new(error),
                        })
                    }
                };
            }
            Credentials::Files {
                not_utf8: Some(path),
                ..
            } => return Err(not_utf8_name(&self.origin, path)),
            Credentials::Files {
                dir,
                keys,
                not_utf8: None,
            } => (dir, keys),
        };
        let mut budget = self.budget;
        let mut files = Map::new();
        for key in keys {
            let path = dir.join(key);
            let meta = fs::metadata(&path).map_err(|source| Error::BindingsUnreadable {
                origin: self.origin.clone(),
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                continue; // Older layouts nest metadata/ and secret/; not ours to read.
            }
            let text = read_text(&self.origin, &path, &mut budget)?;
            files.insert(key.clone(), file_value(text));
        }
        self.resolved(binding, files).map(Some)
    }

    /// `credentials`, unless a value in it is a CredHub reference the platform left
    /// unresolved.
    fn resolved(
        &self,
        binding: &Binding,
        credentials: Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        fn has_ref(map: &Map<String, Value>) -> bool {
            map.iter().any(|(k, v)| {
                k == CREDHUB_REF
                    || match v {
                        Value::Object(inner) => has_ref(inner),
                        Value::Array(items) => items
                            .iter()
                            .any(|i| matches!(i, Value::Object(o) if has_ref(o))),
                        _ => false,
                    }
            })
        }
        if has_ref(&credentials) {
            return Err(Error::CredhubRefUnresolved {
                name: binding.name.clone(),
                origin: self.origin.clone(),
            });
        }
        Ok(credentials)
    }
}

/// A credential file's value: the JSON object or array CF wrote for a nested
/// value, else the text.
fn file_value(text: String) -> Value {
    let nested = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    if nested {
        if let Ok(value @ (Value::Object(_) | Value::Array(_))) =
            parse::parse(Format::Json, text.as_bytes())
        {
            return value;
        }
    }
    Value::String(text)
}

/// Reads one binding source.
pub(crate) fn read(input: &BindingsInput) -> Result<Listing, Error> {
    let (origin, bindings, text, budget) = match input {
        BindingsInput::Env(text) => {
            let (list, text) = from_vcap(&Bindings::Env, text.as_bytes().to_vec())?;
            (Bindings::Env, list, text, 0)
        }
        BindingsInput::File(path) => {
            let origin = Bindings::File(path.clone());
            let text = read_capped(path, MAX_SOURCE_BYTES).map_err(|e| capped(&origin, path, e))?;
            let (list, text) = from_vcap(&origin, text)?;
            (origin, list, text, 0)
        }
        BindingsInput::Root(root) => {
            let origin = Bindings::Root(root.clone());
            let mut budget = MAX_SOURCE_BYTES;
            let list = from_tree(&origin, root, &mut budget)?;
            (origin, list, Vec::new(), budget)
        }
    };
    Ok(Listing {
        origin,
        bindings,
        text,
        budget,
    })
}

/// A tree's file as text, its size taken from `budget`.
fn read_text(origin: &Bindings, path: &Path, budget: &mut u64) -> Result<String, Error> {
    let bytes = read_capped(path, *budget).map_err(|e| capped(origin, path, e))?;
    *budget -= bytes.len() as u64;
    String::from_utf8(bytes).map_err(|_| Error::BindingEntry {
        origin: origin.clone(),
        path: path.to_path_buf(),
        problem: "not UTF-8 text, and config-server serves text values only",
    })
}

fn capped(origin: &Bindings, path: &Path, why: Capped) -> Error {
    match why {
        Capped::Io(source) => Error::BindingsUnreadable {
            origin: origin.clone(),
            path: path.to_path_buf(),
            source,
        },
        Capped::NotRegular => Error::BindingEntry {
            origin: origin.clone(),
            path: path.to_path_buf(),
            problem: "not a regular file",
        },
        // A tree's files share one budget: name the file that went over it.
        Capped::TooBig(_) if matches!(origin, Bindings::Root(_)) => Error::TooBig {
            what: format!("{origin}: {}", path.display()),
            size: format!("with the binding's files read before it, more than {MAX_SOURCE_BYTES}"),
        },
        Capped::TooBig(size) => Error::TooBig {
            what: origin.to_string(),
            size: size.to_string(),
        },
    }
}

/// One entry of a `VCAP_SERVICES` label's array; other fields are ignored.
#[derive(Deserialize)]
struct Instance<'a> {
    name: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Left as text: only the binding served has its credentials parsed.
    #[serde(default, borrow)]
    credentials: Option<&'a RawValue>,
}

/// The bindings in `VCAP_SERVICES`' text, which is returned (without a
/// byte-order mark) for their credentials to point into.
fn from_vcap(origin: &Bindings, mut text: Vec<u8>) -> Result<(Vec<Binding>, Vec<u8>), Error> {
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(Error::TooBig {
            what: origin.to_string(),
            size: text.len().to_string(),
        });
    }
    if text.starts_with(b"\xEF\xBB\xBF") {
        text.drain(..3);
    }
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
    let base = text.as_ptr() as usize;
    let list = services
        .into_values()
        .flatten()
        .map(|i| Binding {
            name: i.name,
            kind: i.label,
            tags: i.tags.unwrap_or_default(),
            credentials: Credentials::Json(i.credentials.map(|raw| {
                // Borrowed from `text`, so within it.
                let start = raw.get().as_ptr() as usize - base;
                start..start + raw.get().len()
            })),
        })
        .collect();
    Ok((list, text))
}

/// The names in `dir` that do not start with `.`, sorted, and the first one
/// that is not UTF-8 (which cannot be served as a key, nor matched as a
/// binding's name), if any. Every entry counts towards the tree's limit,
/// hidden or not.
fn names(
    origin: &Bindings,
    dir: &Path,
    count: &mut usize,
) -> Result<(Vec<String>, Option<PathBuf>), Error> {
    let unreadable = |source| Error::BindingsUnreadable {
        origin: origin.clone(),
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    let mut not_utf8 = None;
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let name = entry.map_err(unreadable)?.file_name();
        *count += 1;
        if *count > MAX_TREE_ENTRIES {
            return Err(Error::BindingEntry {
                origin: origin.clone(),
                path: dir.to_path_buf(),
                problem: "the tree holds more than 4096 entries",
            });
        }
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        match name.to_str() {
            Some(name) => names.push(name.to_owned()),
            None => {
                not_utf8.get_or_insert_with(|| dir.join(&name));
            }
        }
    }
    names.sort();
    Ok((names, not_utf8))
}

fn not_utf8_name(origin: &Bindings, path: &Path) -> Error {
    Error::BindingEntry {
        origin: origin.clone(),
        path: path.to_path_buf(),
        problem: "the name is not UTF-8",
    }
}

fn from_tree(origin: &Bindings, root: &Path, budget: &mut u64) -> Result<Vec<Binding>, Error> {
    let mut count = 0;
    let mut list = Vec::new();
    let (bindings, not_utf8) = names(origin, root, &mut count)?;
    // A binding the sidecar cannot name might be the one it should serve.
    if let Some(path) = not_utf8 {
        return Err(not_utf8_name(origin, &path));
    }
    for name in bindings {
        let dir = root.join(&name);
        // Symlinks are followed: Kubernetes links every entry through `..data`.
        let meta = fs::metadata(&dir).map_err(|source| Error::BindingsUnreadable {
            origin: origin.clone(),
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            continue; // A file at the top is not a binding.
        }
        let (keys, not_utf8) = names(origin, &dir, &mut count)?;
        let mut attribute = |key: &str| -> Result<Option<String>, Error> {
            if !keys.iter().any(|k| k == key) {
                return Ok(None);
            }
            read_text(origin, &dir.join(key), budget).map(Some)
        };
        let kind = attribute("type")?.map(|t| t.trim().to_owned());
        // CF writes tags as a JSON array; elsewhere, one per line.
        let tags = attribute("tags")?
            .map(|t| {
                serde_json::from_str::<Vec<String>>(&t)
                    .unwrap_or_else(|_| t.lines().map(|l| l.trim().to_owned()).collect())
            })
            .unwrap_or_default();
        let from_cf = keys
            .iter()
            .any(|k| k == "binding_guid" || k == "instance_guid");
        let keys = keys
            .into_iter()
            .filter(|key| {
                let metadata = if from_cf {
                    CF_ATTRIBUTES.contains(&key.as_str())
                } else {
                    key == "type" || key == "provider"
                };
                !metadata
            })
            .collect();
        list.push(Binding {
            name,
            kind,
            tags,
            credentials: Credentials::Files {
                dir,
                keys,
                not_utf8,
            },
        });
    }
    Ok(list)
}
