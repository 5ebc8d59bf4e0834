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
//! In the tree, CF writes each credential as a file, then the binding's own
//! attributes (`name`, `label`, `tags`, `instance-guid`, ...) over it, then
//! `type` and `provider` (cloud_controller_ng ServiceBindingFilesBuilder). So a
//! binding directory holding `binding-guid` or `instance-guid` is CF's, and
//! those attribute files are not credentials; in any other tree only `type` and
//! `provider` are metadata. Names starting with `.` are skipped: Kubernetes
//! keeps its atomic-swap machinery there (`..data`, `..2024_...`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{error::Category, Map, Value};

use crate::config::BindingsInput;
use crate::error::{Bindings, Error, Position};
use crate::source::{read_capped, Capped, MAX_SOURCE_BYTES};

/// A `SERVICE_BINDING_ROOT` tree may hold at most this many directories and files.
pub const MAX_TREE_ENTRIES: usize = 4096;

/// The binding attributes CF writes as files next to the credentials.
const CF_ATTRIBUTES: &[&str] = &[
    "binding-guid",
    "binding-name",
    "instance-guid",
    "instance-name",
    "label",
    "name",
    "plan",
    "provider",
    "syslog-drain-url",
    "tags",
    "type",
    "volume-mounts",
];

/// One service binding, whatever the source.
pub struct Binding {
    /// `name` in VCAP_SERVICES; the directory's name in a tree.
    pub name: String,
    /// The `type` file of a tree; `label` in VCAP_SERVICES (CF writes one as the other).
    pub kind: Option<String>,
    pub tags: Vec<String>,
    /// `None` when VCAP_SERVICES has no `credentials` object for it.
    pub credentials: Option<Map<String, Value>>,
}

/// Reads one binding source.
pub fn read(input: &BindingsInput) -> Result<(Bindings, Vec<Binding>), Error> {
    match input {
        BindingsInput::Env(text) => {
            Ok((Bindings::Env, from_vcap(&Bindings::Env, text.as_bytes())?))
        }
        BindingsInput::File(path) => {
            let origin = Bindings::File(path.clone());
            let text = read_capped(path, MAX_SOURCE_BYTES).map_err(|e| capped(&origin, path, e))?;
            let list = from_vcap(&origin, &text)?;
            Ok((origin, list))
        }
        BindingsInput::Root(root) => {
            let origin = Bindings::Root(root.clone());
            let list = from_tree(&origin, root)?;
            Ok((origin, list))
        }
    }
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
        Capped::TooBig(size) => Error::TooBig {
            what: origin.to_string(),
            size: match origin {
                Bindings::Root(_) => format!("more than {MAX_SOURCE_BYTES}"),
                _ => size.to_string(),
            },
        },
    }
}

/// One entry of a `VCAP_SERVICES` label's array; other fields are ignored.
#[derive(Deserialize)]
struct Instance {
    name: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    credentials: Option<Value>,
}

fn from_vcap(origin: &Bindings, text: &[u8]) -> Result<Vec<Binding>, Error> {
    if text.len() as u64 > MAX_SOURCE_BYTES {
        return Err(Error::TooBig {
            what: origin.to_string(),
            size: text.len().to_string(),
        });
    }
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    // Labels in sorted order, then each label's array order: a stable order to
    // list names in messages.
    let services: BTreeMap<String, Vec<Instance>> =
        serde_json::from_slice(text).map_err(|e| Error::BindingsInvalid {
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
    Ok(services
        .into_values()
        .flatten()
        .map(|i| Binding {
            name: i.name,
            kind: i.label,
            tags: i.tags.unwrap_or_default(),
            credentials: match i.credentials {
                Some(Value::Object(map)) => Some(map),
                _ => None,
            },
        })
        .collect())
}

/// The names in `dir` that do not start with `.`, sorted. Every entry counts
/// towards the tree's limit, hidden or not.
fn names(origin: &Bindings, dir: &Path, count: &mut usize) -> Result<Vec<String>, Error> {
    let unreadable = |source| Error::BindingsUnreadable {
        origin: origin.clone(),
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
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
        let Some(name) = name.to_str() else {
            return Err(Error::BindingEntry {
                origin: origin.clone(),
                path: dir.join(name),
                problem: "the name is not UTF-8",
            });
        };
        names.push(name.to_owned());
    }
    names.sort();
    Ok(names)
}

fn from_tree(origin: &Bindings, root: &Path) -> Result<Vec<Binding>, Error> {
    let mut budget = MAX_SOURCE_BYTES;
    let mut count = 0;
    let mut list = Vec::new();
    for name in names(origin, root, &mut count)? {
        let dir = root.join(&name);
        let unreadable = |path: PathBuf| {
            move |source| Error::BindingsUnreadable {
                origin: origin.clone(),
                path,
                source,
            }
        };
        // Symlinks are followed: Kubernetes links every entry through `..data`.
        if !fs::metadata(&dir)
            .map_err(unreadable(dir.clone()))?
            .is_dir()
        {
            continue; // A file at the top is not a binding.
        }
        let mut files = Map::new();
        for key in names(origin, &dir, &mut count)? {
            let path = dir.join(&key);
            if fs::metadata(&path)
                .map_err(unreadable(path.clone()))?
                .is_dir()
            {
                continue; // Older layouts nest metadata/ and secret/; not ours to read.
            }
            let bytes = read_capped(&path, budget).map_err(|e| capped(origin, &path, e))?;
            budget -= bytes.len() as u64;
            let text = String::from_utf8(bytes).map_err(|_| Error::BindingEntry {
                origin: origin.clone(),
                path: path.clone(),
                problem: "not UTF-8 text, and config-server serves text values only",
            })?;
            files.insert(key, Value::String(text));
        }
        list.push(binding(name, files));
    }
    Ok(list)
}

/// Splits a tree binding's files into metadata and credentials.
fn binding(name: String, mut files: Map<String, Value>) -> Binding {
    let text = |files: &Map<String, Value>, key: &str| {
        files.get(key).and_then(Value::as_str).map(str::to_owned)
    };
    let kind = text(&files, "type").map(|t| t.trim().to_owned());
    // CF writes tags as a JSON array; elsewhere, one per line.
    let tags = text(&files, "tags")
        .map(|t| {
            serde_json::from_str::<Vec<String>>(&t)
                .unwrap_or_else(|_| t.lines().map(|l| l.trim().to_owned()).collect())
        })
        .unwrap_or_default();
    let from_cf = files.contains_key("binding-guid") || files.contains_key("instance-guid");
    files.retain(|key, _| {
        let metadata = if from_cf {
            CF_ATTRIBUTES.contains(&key.as_str())
        } else {
            key == "type" || key == "provider"
        };
        !metadata
    });
    Binding {
        name,
        kind,
        tags,
        credentials: Some(files),
    }
}
