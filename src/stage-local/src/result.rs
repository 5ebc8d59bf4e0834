//! From what the buildpacks declared to what Cloud Controller gets: the merge of
//! launch.yml entries and the Procfile (buildpackapplifecycle MergeProcesses and
//! ConvertToResult), `result.json` in the builder's shape, and the checks Cloud
//! Controller makes before it assigns the droplet.

use crate::app::App;
use crate::errors::Error;
use crate::launch_yml::Declared;
use crate::out;
use serde::Serialize;
use std::collections::BTreeMap;

/// A declaration and where it came from, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub declared: Declared,
    pub origin: String,
}

/// Adds `new` to `list` as CF's MergeProcesses does: an entry replaces every entry of the
/// same type already there, or is appended. Entries appended by this same call are not
/// replaced by later ones of the batch: CF compares against the list as it was.
pub(crate) fn merge(list: &mut Vec<Entry>, new: Vec<Entry>) {
    let before = list.len();
    for e in new {
        let mut replaced = false;
        for slot in list.iter_mut().take(before) {
            if slot.declared.kind == e.declared.kind {
                *slot = e.clone();
                replaced = true;
            }
        }
        if !replaced {
            list.push(e);
        }
    }
}

/// A sidecar of the staged app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sidecar {
    pub name: String,
    pub process_types: Vec<String>,
    pub command: String,
    /// MB; `None` when unset (CF: 0, "take what the process has").
    pub memory: Option<i64>,
    pub origin: String,
}

/// What staging produced, as Cloud Controller would see it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Type to (command, origin); a later declaration of a type wins.
    pub process_types: BTreeMap<String, (String, String)>,
    /// Entries without `sidecar_for`, in merge order (result.json's `processes`).
    pub processes: Vec<Entry>,
    /// The buildpacks' sidecars, then the app manifest's own.
    pub sidecars: Vec<Sidecar>,
}

/// CF's ConvertToResult, plus the app manifest's sidecars.
pub(crate) fn convert(merged: &[Entry], app: &App) -> Outcome {
    let mut process_types = BTreeMap::new();
    let mut processes = Vec::new();
    let mut sidecars = Vec::new();
    for e in merged {
        let d = &e.declared;
        if d.sidecar_for.is_empty() {
            process_types.insert(d.kind.clone(), (d.command.clone(), e.origin.clone()));
            processes.push(e.clone());
        } else {
            sidecars.push(Sidecar {
                name: d.kind.clone(),
                process_types: d.sidecar_for.clone(),
                command: d.command.clone(),
                memory: d.memory,
                origin: e.origin.clone(),
            });
        }
    }
    sidecars.extend(app.sidecars.iter().map(|s| Sidecar {
        name: s.name.clone(),
        process_types: s.process_types.clone(),
        command: s.command.clone(),
        memory: s.memory_mb.map(|m| m as i64),
        origin: "the app's manifest.yml".into(),
    }));
    Outcome {
        process_types,
        processes,
        sidecars,
    }
}

impl Outcome {
    /// The sidecars that run beside `process_type`.
    pub(crate) fn sidecars_for(&self, process_type: &str) -> Vec<&Sidecar> {
        self.sidecars
            .iter()
            .filter(|s| s.process_types.iter().any(|t| t == process_type))
            .collect()
    }

    /// MB the sidecars of `process_type` carve out of that process's memory.
    pub(crate) fn sidecar_memory(&self, process_type: &str) -> i64 {
        self.sidecars_for(process_type)
            .iter()
            .map(|s| s.memory.unwrap_or(0))
            .sum()
    }

    /// Cloud Controller's checks on assigning the droplet, plus the one it lacks
    /// (a memory of 0 or less).
    pub(crate) fn check(&self, app: &App) -> Result<(), Error> {
        for s in self.buildpack_sidecars(app) {
            if app.sidecars.iter().any(|u| u.name == s.name) {
                return Err(Error::SidecarClash {
                    name: s.name.clone(),
                    origin: s.origin.clone(),
                });
            }
            match s.memory {
                Some(m) if m <= 0 => {
                    return Err(Error::SidecarMemoryInvalid {
                        name: s.name.clone(),
                        origin: s.origin.clone(),
                        memory: m,
                    })
                }
                None => out::warn(format!(
                    "sidecar {:?} from {} declares no limits.memory: CF carves nothing out \
                     for it and gives it all of its process's memory as its MEMORY_LIMIT",
                    s.name, s.origin
                )),
                Some(_) => {}
            }
        }
        let mut types: Vec<&str> = self
            .sidecars
            .iter()
            .flat_map(|s| s.process_types.iter().map(String::as_str))
            .collect();
        types.sort_unstable();
        types.dedup();
        // Cloud Controller checks each process of the app against its own memory
        // (SidecarMemoryLessThanProcessMemoryPolicy); a type the app lacks has no process.
        for t in types {
            if !self.process_types.contains_key(t) {
                out::warn(format!(
                    "a sidecar is declared for the process type {t:?}, which the app does \
                     not have: CF never starts it"
                ));
                continue;
            }
            let total = self.sidecar_memory(t);
            let (process_mb, source_of) = app.process_memory(t);
            if total >= process_mb as i64 {
                return Err(Error::SidecarMemoryTooLarge {
                    process_type: t.to_string(),
                    total,
                    process_mb,
                    source_of: source_of.to_string(),
                    sidecars: self
                        .sidecars_for(t)
                        .iter()
                        .map(|s| format!("{}: {} MB ({})", s.name, s.memory.unwrap_or(0), s.origin))
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// The staging result as a user wants to read it.
    pub(crate) fn summary(&self, app: &App) -> String {
        let mut text = String::from("  process types:\n");
        if self.process_types.is_empty() {
            text.push_str("    (none)\n");
        }
        for (kind, (command, origin)) in &self.process_types {
            text.push_str(&format!("    {kind}: {command}   (from {origin})\n"));
        }
        text.push_str("  sidecars:\n");
        if self.sidecars.is_empty() {
            text.push_str("    (none)\n");
        }
        for s in &self.sidecars {
            let memory = match s.memory {
                Some(m) => format!("{m} MB"),
                None => "no memory set".into(),
            };
            text.push_str(&format!(
                "    {} for [{}], {memory}: {}   (from {})\n",
                s.name,
                s.process_types.join(", "),
                s.command,
                s.origin
            ));
        }
        if !self.process_types.is_empty() {
            text.push_str("  memory:\n");
        }
        for kind in self.process_types.keys() {
            let (mb, source_of) = app.process_memory(kind);
            let taken = self.sidecar_memory(kind);
            let less = match taken {
                0 => String::new(),
                t => format!(", less {t} MB for its sidecars"),
            };
            text.push_str(&format!(
                "    {kind}: {mb} MB ({source_of}){less}: MEMORY_LIMIT={}m\n",
                mb as i64 - taken
            ));
        }
        text
    }

    /// The leading entries of `sidecars`: those that came from buildpacks.
    fn buildpack_sidecars<'a>(&'a self, app: &App) -> &'a [Sidecar] {
        &self.sidecars[..self.sidecars.len() - app.sidecars.len()]
    }

    /// `result.json` as CF's builder writes it (buildpackapplifecycle StagingResult),
    /// `buildpacks` in order with the final one last. The app manifest's sidecars are
    /// Cloud Controller's business, not the builder's, so they are left out.
    pub(crate) fn result_json(&self, app: &App, buildpacks: &[BuildpackMetadata]) -> String {
        let last = buildpacks.last();
        let processes: Vec<ProcessJson<'_>> = self
            .processes
            .iter()
            .map(|e| ProcessJson {
                kind: &e.declared.kind,
                command: &e.declared.command,
            })
            .collect();
        let sidecars: Vec<SidecarJson<'_>> = self
            .buildpack_sidecars(app)
            .iter()
            .map(|s| SidecarJson {
                name: &s.name,
                process_types: &s.process_types,
                command: &s.command,
                memory: s.memory.unwrap_or(0),
            })
            .collect();
        let json = ResultJson {
            lifecycle_metadata: LifecycleMetadata {
                buildpack_key: last.map(|b| b.key.as_str()).unwrap_or_default(),
                detected_buildpack: last.map(|b| b.name.as_str()).unwrap_or_default(),
                buildpacks,
            },
            process_types: self
                .process_types
                .iter()
                .map(|(k, (cmd, _))| (k.as_str(), cmd.as_str()))
                .collect(),
            // A Go nil slice: `null`, not `[]`.
            processes: (!processes.is_empty()).then_some(processes),
            // The builder leaves `sidecars` out when there are none (omitempty).
            sidecars,
            execution_metadata: "",
            lifecycle_type: "buildpack",
        };
        go_json(&json)
    }
}

/// A buildpack as result.json names it; `name`, `version` and `config` come from the
/// buildpack's `<DEPS_DIR>/<idx>/config.yml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BuildpackMetadata {
    pub key: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The `config:` map of config.yml, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The `output_metadata:` map of config.yml, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_metadata: Option<serde_json::Value>,
}

/// `staging_info.yml` as the builder writes it: JSON (which YAML readers accept) with
/// the final buildpack's name, the web command, and the final buildpack's `config`.
pub(crate) fn staging_info(outcome: &Outcome, buildpacks: &[BuildpackMetadata]) -> String {
    #[derive(Serialize)]
    struct StagingInfo<'a> {
        detected_buildpack: &'a str,
        start_command: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        config: Option<&'a serde_json::Value>,
    }
    let last = buildpacks.last();
    go_json(&StagingInfo {
        detected_buildpack: last.map(|b| b.name.as_str()).unwrap_or_default(),
        start_command: outcome
            .process_types
            .get("web")
            .map(|(c, _)| c.as_str())
            .unwrap_or_default(),
        config: last.and_then(|b| b.config.as_ref()),
    })
}

/// JSON as Go's `json.Encoder` writes it: [`cf_entrypoint::launcher::go_marshal`]'s, and a final newline.
fn go_json(value: &impl Serialize) -> String {
    let mut out = cf_entrypoint::launcher::go_marshal(value);
    out.push('\n');
    out
}

#[derive(Serialize)]
struct ResultJson<'a> {
    lifecycle_metadata: LifecycleMetadata<'a>,
    process_types: BTreeMap<&'a str, &'a str>,
    processes: Option<Vec<ProcessJson<'a>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sidecars: Vec<SidecarJson<'a>>,
    execution_metadata: &'static str,
    lifecycle_type: &'static str,
}

#[derive(Serialize)]
struct LifecycleMetadata<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    buildpack_key: &'a str,
    detected_buildpack: &'a str,
    buildpacks: &'a [BuildpackMetadata],
}

#[derive(Serialize)]
struct ProcessJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    command: &'a str,
}

#[derive(Serialize)]
struct SidecarJson<'a> {
    name: &'a str,
    process_types: &'a [String],
    command: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    memory: i64,
}

fn is_zero(m: &i64) -> bool {
    *m == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::UserSidecar;

    fn entry(
        kind: &str,
        command: &str,
        sidecar_for: &[&str],
        memory: Option<i64>,
        origin: &str,
    ) -> Entry {
        Entry {
            declared: Declared {
                kind: kind.into(),
                command: command.into(),
                memory,
                sidecar_for: sidecar_for
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect(),
            },
            origin: origin.into(),
        }
    }

    fn app(memory_mb: u64, sidecars: Vec<UserSidecar>) -> App {
        App {
            dir: "/app".into(),
            name: "demo".into(),
            memory_mb,
            env: vec![],
            buildpacks: vec![],
            sidecars,
            processes: vec![],
        }
    }

    #[test]
    fn later_declarations_replace_earlier_ones_in_place() {
        let mut list = Vec::new();
        merge(
            &mut list,
            vec![
                entry("web", "a", &[], None, "bp0"),
                entry("side", "s0", &["web"], Some(8), "bp0"),
            ],
        );
        merge(
            &mut list,
            vec![
                entry("side", "s1", &["web"], Some(16), "bp1"),
                entry("worker", "w", &[], None, "bp1"),
            ],
        );
        merge(
            &mut list,
            vec![entry("web", "procfile", &[], None, "Procfile")],
        );
        let got: Vec<_> = list
            .iter()
            .map(|e| (e.declared.kind.as_str(), e.origin.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("web", "Procfile"), ("side", "bp1"), ("worker", "bp1")]
        );
        // Within one batch, CF compares only against what was there before.
        let mut list = Vec::new();
        merge(
            &mut list,
            vec![
                entry("web", "1", &[], None, "x"),
                entry("web", "2", &[], None, "x"),
            ],
        );
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn writes_the_builders_result_json() {
        let merged = vec![
            entry("web", "bundle exec rackup", &[], None, "Procfile"),
            entry(
                "config-server",
                "\"$DEPS_DIR/0/bin/config-server\"",
                &["web"],
                Some(32),
                "bp0",
            ),
        ];
        let a = app(256, vec![]);
        let out = convert(&merged, &a);
        let metas = vec![
            BuildpackMetadata {
                key: "/bp.zip#sha256=ab".into(),
                name: "sidecar".into(),
                version: Some("0.1.0".into()),
                config: Some(serde_json::json!({})),
                output_metadata: Some(serde_json::json!({"sidecars": [{"version": "0.2.0"}]})),
            },
            BuildpackMetadata {
                key: "ruby_buildpack".into(),
                name: "ruby & <stand-in>".into(),
                version: None,
                config: Some(serde_json::json!({"a": [1]})),
                output_metadata: None,
            },
        ];
        assert_eq!(
            out.result_json(&a, &metas),
            concat!(
                r#"{"lifecycle_metadata":{"buildpack_key":"ruby_buildpack","detected_buildpack":"ruby \u0026 \u003cstand-in\u003e","#,
                r#""buildpacks":[{"key":"/bp.zip#sha256=ab","name":"sidecar","version":"0.1.0","config":{},"output_metadata":{"sidecars":[{"version":"0.2.0"}]}},"#,
                r#"{"key":"ruby_buildpack","name":"ruby \u0026 \u003cstand-in\u003e","config":{"a":[1]}}]},"#,
                r#""process_types":{"web":"bundle exec rackup"},"processes":[{"type":"web","command":"bundle exec rackup"}],"#,
                r#""sidecars":[{"name":"config-server","process_types":["web"],"command":"\"$DEPS_DIR/0/bin/config-server\"","memory":32}],"#,
                r#""execution_metadata":"","lifecycle_type":"buildpack"}"#,
                "\n"
            )
        );
        assert_eq!(
            staging_info(&out, &metas),
            "{\"detected_buildpack\":\"ruby \\u0026 \\u003cstand-in\\u003e\",\"start_command\":\"bundle exec rackup\",\"config\":{\"a\":[1]}}\n"
        );
        // No sidecars: the key is left out; no processes: Go's nil slice.
        let empty = convert(&[], &a).result_json(&a, &[]);
        assert!(
            empty.contains(r#""process_types":{},"processes":null,"execution_metadata""#),
            "{empty}"
        );
        assert!(!empty.contains("sidecars"), "{empty}");
    }

    #[test]
    fn cloud_controller_checks() {
        let bp = |memory| {
            vec![
                entry("cs", "x", &["web"], memory, "bp0"),
                entry("web", "w", &[], None, "Procfile"),
            ]
        };
        let mine = |name: &str| UserSidecar {
            name: name.into(),
            process_types: vec!["web".into()],
            command: "y".into(),
            memory_mb: Some(16),
        };
        let ok = app(256, vec![mine("other")]);
        assert!(convert(&bp(Some(32)), &ok).check(&ok).is_ok());
        assert_eq!(convert(&bp(Some(32)), &ok).sidecar_memory("web"), 48);
        let clash = app(256, vec![mine("cs")]);
        assert!(matches!(
            convert(&bp(Some(32)), &clash).check(&clash),
            Err(Error::SidecarClash { .. })
        ));
        for m in [0, -5] {
            assert!(matches!(
                convert(&bp(Some(m)), &ok).check(&ok),
                Err(Error::SidecarMemoryInvalid { .. })
            ));
        }
        let small = app(48, vec![mine("other")]);
        assert!(matches!(
            convert(&bp(Some(32)), &small).check(&small),
            Err(Error::SidecarMemoryTooLarge {
                total: 48,
                process_mb: 48,
                ..
            })
        ));
        let fits = app(49, vec![mine("other")]);
        assert!(convert(&bp(Some(32)), &fits).check(&fits).is_ok());
        assert!(
            convert(&bp(None), &ok).check(&ok).is_ok(),
            "unset memory only warns"
        );
    }

    /// Each process type is checked against its own memory: the app's `memory:` is
    /// web's, others have 1024 MB unless `processes:` sizes them; a type the app does
    /// not have is not checked (Cloud Controller has no process to check).
    #[test]
    fn the_memory_rule_holds_per_process_type() {
        let merged = |worker_sidecar: i64| {
            vec![
                entry("web", "w", &[], None, "Procfile"),
                entry("worker", "k", &[], None, "Procfile"),
                entry("both", "b", &["web", "worker"], Some(32), "bp0"),
                entry("solo", "s", &["worker"], Some(worker_sidecar), "bp0"),
                entry("ghost", "g", &["clock"], Some(4096), "bp0"),
            ]
        };
        let mut a = app(64, vec![]);
        let out = convert(&merged(960), &a);
        assert_eq!(
            (out.sidecar_memory("web"), out.sidecar_memory("worker")),
            (32, 992)
        );
        assert!(out.check(&a).is_ok(), "web 32 < 64, worker 992 < 1024");
        match convert(&merged(992), &a).check(&a) {
            Err(Error::SidecarMemoryTooLarge {
                process_type,
                total: 1024,
                process_mb: 1024,
                ..
            }) => assert_eq!(process_type, "worker"),
            other => panic!("expected worker's memory refused, got {other:?}"),
        }
        a.processes = vec![crate::app::ProcessMemory {
            kind: "worker".into(),
            memory_mb: Some(2048),
        }];
        assert!(convert(&merged(992), &a).check(&a).is_ok());
        let a = app(32, vec![]);
        assert!(matches!(
            convert(&merged(8), &a).check(&a),
            Err(Error::SidecarMemoryTooLarge { ref process_type, total: 32, process_mb: 32, .. })
                if process_type == "web"
        ));
        let summary = convert(&merged(8), &app(256, vec![])).summary(&app(256, vec![]));
        assert!(
            summary.contains(
                "  memory:\n    web: 256 MB (the app's memory), less 32 MB for its sidecars: \
                 MEMORY_LIMIT=224m\n    worker: 1024 MB (Cloud Controller's default: the app's \
                 memory sizes web only), less 40 MB for its sidecars: MEMORY_LIMIT=984m\n"
            ),
            "{summary}"
        );
    }
}
