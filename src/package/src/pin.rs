//! `package pin` and `package get`: the only code that writes or reads values of
//! `manifest.yml` for scripts and tests. A pin sets one build of a dependency (version,
//! uri, sha256, stacks) and its `default_versions` entry; it is planned on the typed
//! manifest, applied by span (comments and order stay), and the result must parse to
//! exactly the planned manifest before anyone may write it.

use crate::edit::{Editor, Refused, Value};
use crate::errors::PackError;
use buildpack::digest::Sha256;
use buildpack::errors::Error;
use buildpack::manifest::{
    key_position, parse_uri, valid_name, with_position, DefaultVersion, Dependency, Manifest,
    Sidecar, MAX_MANIFEST_BYTES,
};
use buildpack::yaml::{self, Node};
use std::path::Path;

/// One build of a dependency, as it should be pinned.
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    pub name: String,
    pub version: String,
    pub uri: String,
    pub sha256: Sha256,
    /// Empty: keep the stacks of the build that is replaced.
    pub stacks: Vec<String>,
}

/// The pinned text, and what the person pinning should know.
pub(crate) struct Pinned {
    pub text: String,
    /// `text`, loaded (it was checked to load as exactly this).
    pub manifest: Manifest,
    pub warnings: Vec<String>,
}

fn bad(path: &Path, key: impl Into<String>, problem: impl Into<String>) -> anyhow::Error {
    Error::Manifest {
        path: path.to_path_buf(),
        key: key.into(),
        problem: problem.into(),
        position: None,
    }
    .into()
}

/// Which entry of `dependencies` a pin replaces, or none for a new one.
fn target(m: &Manifest, path: &Path, p: &Pin) -> anyhow::Result<Option<usize>> {
    let default = m.default_version(&p.name);
    let builds: Vec<usize> = (0..m.dependencies.len())
        .filter(|&i| {
            let d = &m.dependencies[i];
            d.name == p.name && default.is_none_or(|v| d.version == v)
        })
        .collect();
    let chosen: Vec<usize> = builds
        .iter()
        .copied()
        .filter(|&i| {
            p.stacks.is_empty()
                || m.dependencies[i]
                    .cf_stacks
                    .iter()
                    .any(|s| p.stacks.contains(s))
        })
        .collect();
    match chosen.as_slice() {
        [] if p.stacks.is_empty() => Err(bad(
            path,
            "dependencies",
            format!(
                "has no {} yet: name the stacks of its build with --stack (for example --stack cflinuxfs4)",
                p.name
            ),
        )),
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        several => Err(bad(
            path,
            "dependencies",
            format!(
                "has {} builds of {} {} ({}): pin one of them at a time, named by --stack",
                several.len(),
                p.name,
                default.unwrap_or_default(),
                several
                    .iter()
                    .map(|&i| format!("for {}", m.dependencies[i].cf_stacks.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

/// Pins `p` in the manifest `text` read from `path`. Nothing is written here.
pub(crate) fn pin(text: &str, path: &Path, p: &Pin) -> anyhow::Result<Pinned> {
    plan_pin(text, path, p).map_err(|e| positioned(e, text))
}

/// The tool's own errors about a key of the file end with its line and column, as
/// the loader's do.
fn positioned(e: anyhow::Error, text: &str) -> anyhow::Error {
    match e.downcast::<Error>() {
        Ok(m @ Error::Manifest { .. }) => with_position(m, text).into(),
        Ok(other) => other.into(),
        Err(e) => e,
    }
}

/// The file as a tree of spans, for the editor. It reads YAML as the loader does, but
/// where the two parsers disagree (libyaml takes a few things saphyr refuses), the
/// tool cannot edit safely and says so.
pub(crate) fn spans(text: &str, path: &Path) -> anyhow::Result<Node> {
    let uneditable = |why: String, position| PackError::Uneditable {
        manifest: path.to_path_buf(),
        key: "(document)".into(),
        why,
        position,
    };
    match yaml::parse(text) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Err(uneditable("is empty".into(), None).into()),
        Err(e) => Err(uneditable(
            format!(
                "is YAML that supply reads but the editor's parser does not ({})",
                e.message
            ),
            Some((e.line, e.column)),
        )
        .into()),
    }
}

/// A refusal of the editor, as the error that names the key and its place.
pub(crate) fn refusal(
    path: &Path,
    text: &str,
    key: &str,
    change: &str,
    r: Refused,
) -> anyhow::Error {
    PackError::Uneditable {
        manifest: path.to_path_buf(),
        key: key.to_string(),
        why: format!("cannot be {change}: it {}", r.0),
        position: key_position(text, key),
    }
    .into()
}

/// Loads the edited text: it must load, and as exactly the planned manifest. A value
/// the manifest refuses is the command line's, not the file's: its position in a text
/// that was never written would mislead.
pub(crate) fn check_result(
    text: &str,
    path: &Path,
    change: &'static str,
    expected: &Manifest,
) -> anyhow::Result<()> {
    // What supply reads: a write is refused when its result would be.
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PackError::WouldBeTooLarge {
            manifest: path.to_path_buf(),
            change,
            bytes: text.len(),
            limit: MAX_MANIFEST_BYTES,
        }
        .into());
    }
    let after = Manifest::parse(text, path).map_err(|e| match e {
        Error::Manifest {
            path, key, problem, ..
        } => PackError::WouldBreak {
            manifest: path,
            change,
            key,
            problem,
        }
        .into(),
        other => anyhow::Error::from(other),
    })?;
    if after != *expected {
        return Err(PackError::Uneditable {
            manifest: path.to_path_buf(),
            key: "(document)".into(),
            why: format!(
                "would change in more places than {change}: an anchor or alias shares one of \
                 the values it sets"
            ),
            position: None,
        }
        .into());
    }
    Ok(())
}

/// The dependency `name` must be in the manifest: a typo gets the names it has.
pub(crate) fn known_dependency(m: &Manifest, path: &Path, name: &str) -> Result<(), PackError> {
    if m.dependencies.iter().any(|d| d.name == name) {
        return Ok(());
    }
    let mut known: Vec<String> = m.dependencies.iter().map(|d| d.name.clone()).collect();
    known.dedup();
    Err(PackError::NoDependency {
        manifest: path.to_path_buf(),
        name: buildpack::redact::shown(name),
        known,
    })
}

fn plan_pin(text: &str, path: &Path, p: &Pin) -> anyhow::Result<Pinned> {
    let before = Manifest::parse(text, path)?;
    check_values(path, p)?;
    let root = spans(text, path)?;
    let index = target(&before, path, p)?;
    let stacks = match index {
        Some(i) if p.stacks.is_empty() => before.dependencies[i].cf_stacks.clone(),
        _ => p.stacks.clone(),
    };
    if stacks.is_empty() {
        return Err(bad(
            path,
            format!("dependencies[{}].cf_stacks", index.unwrap_or_default()),
            format!(
                "is empty: name the stacks of this build of {} with --stack",
                p.name
            ),
        ));
    }

    // The plan, on the typed manifest.
    let mut expected = before.clone();
    let uri = parse_uri(&p.uri).map_err(|e| bad(path, "uri", e))?;
    let build = Dependency {
        name: p.name.clone(),
        version: p.version.clone(),
        uri,
        uri_text: p.uri.clone(),
        sha256: p.sha256,
        cf_stacks: stacks.clone(),
        file: None,
    };
    // Builds of the old default version that this pin does not replace stop being
    // the default: their stacks need a build of the new version too.
    let mut warnings = Vec::new();
    let old_default = before.default_version(&p.name);
    if let Some(old) = old_default.filter(|v| *v != p.version) {
        for (i, other) in before.dependencies.iter().enumerate() {
            if other.is(&p.name, old) && Some(i) != index {
                warnings.push(format!(
                    "{} for {} is no longer the default version: pin a build of {} for \
                     those stacks too (--stack)",
                    other.id(),
                    other.cf_stacks.join(", "),
                    p.version
                ));
            }
        }
    }
    match index {
        Some(i) => expected.dependencies[i] = build,
        None => expected.dependencies.push(build),
    }
    match expected
        .default_versions
        .iter_mut()
        .find(|d| d.name == p.name)
    {
        Some(d) => d.version = p.version.clone(),
        None => expected.default_versions.push(DefaultVersion {
            name: p.name.clone(),
            version: p.version.clone(),
        }),
    }

    // The same change, by span.
    let mut ed = Editor::new(text);
    let refused = |key: String| move |r: Refused| refusal(path, text, &key, "pinned", r);
    let fields = [
        ("version", Value::Scalar(p.version.clone())),
        ("uri", Value::Scalar(p.uri.clone())),
        ("sha256", Value::Scalar(p.sha256.to_string())),
        ("cf_stacks", Value::List(stacks.clone())),
    ];
    if let Some(i) = index.filter(|&i| before.dependencies[i].file.is_some()) {
        return Err(bad(
            path,
            format!("dependencies[{i}].file"),
            "is set, as only a packaged manifest has it: pin the buildpack's source manifest.yml",
        ));
    }
    upsert(&mut ed, &root, "dependencies", index, &p.name, &fields)
        .map_err(|(key, r)| refusal(path, text, &key, "pinned", r))?;
    let dv = before
        .default_versions
        .iter()
        .position(|d| d.name == p.name);
    match dv.and_then(|j| root.at(&yaml::path_steps(&format!("default_versions[{j}].version")))) {
        Some(node) => ed.set_scalar(node, &p.version).map_err(refused(format!(
            "default_versions[{}].version",
            dv.unwrap_or_default()
        )))?,
        None => add_item(
            &mut ed,
            &root,
            "default_versions",
            vec![
                ("name".into(), Value::Scalar(p.name.clone())),
                ("version".into(), Value::Scalar(p.version.clone())),
            ],
        )
        .map_err(refused("default_versions".into()))?,
    }
    let new = ed
        .finish()
        .map_err(|r| refusal(path, text, "(document)", "pinned", r))?;
    check_result(&new, path, "the pin", &expected)?;
    Ok(Pinned {
        text: new,
        manifest: expected,
        warnings,
    })
}

/// Sets `fields` on the entry `index` of the top-level list `list` (adding the keys it
/// lacks), or adds an entry named `name` with them.
fn upsert(
    ed: &mut Editor<'_>,
    root: &Node,
    list: &str,
    index: Option<usize>,
    name: &str,
    fields: &[(&str, Value)],
) -> Result<(), (String, Refused)> {
    let failed = |key: String| move |r: Refused| (key, r);
    let Some(i) = index else {
        let mut item = vec![("name".to_string(), Value::Scalar(name.to_string()))];
        item.extend(fields.iter().map(|(k, v)| (k.to_string(), v.clone())));
        return add_item(ed, root, list, item).map_err(failed(list.to_string()));
    };
    let key = |k: &str| format!("{list}[{i}]{}{k}", if k.is_empty() { "" } else { "." });
    let entry = root
        .at(&yaml::path_steps(&key("")))
        .ok_or_else(|| (key(""), Refused("is not where the parser put it".into())))?;
    for (field, value) in fields {
        match (entry.entries_named(field).first().copied(), value) {
            (Some((_, node)), Value::Scalar(v)) => {
                ed.set_scalar(node, v).map_err(failed(key(field)))?;
            }
            (Some((_, node)), Value::Int(n)) => ed.set_int(node, *n).map_err(failed(key(field)))?,
            (Some((k, node)), Value::List(l)) => {
                ed.set_list(k, node, l).map_err(failed(key(field)))?;
            }
            (None, value) => ed
                .insert_entry(entry, field, value)
                .map_err(failed(key("")))?,
            (Some(_), _) => {
                return Err((key(field), Refused("cannot hold that value".into())));
            }
        }
    }
    Ok(())
}

/// Adds a mapping to the top-level list `key`, or the list itself.
fn add_item(
    ed: &mut Editor<'_>,
    root: &Node,
    key: &str,
    item: Vec<(String, Value)>,
) -> Result<(), Refused> {
    match root.entries_named(key).first().copied() {
        Some((k, seq)) if matches!(seq.kind, yaml::Kind::Sequence { .. }) => {
            ed.append_item(k, seq, &Value::Map(item))
        }
        Some((k, v)) => ed.replace_value(k, v, &Value::Items(vec![item])),
        None => ed.insert_entry(root, key, &Value::Items(vec![item])),
    }
}

/// A sidecar as `package sidecar` declares it.
pub(crate) struct SidecarSpec {
    pub name: String,
    pub dependency: String,
    pub executable: String,
    pub args: Vec<String>,
    pub memory_mb: u32,
    pub process_types: Vec<String>,
}

/// Adds the sidecar `s` to the manifest `text`, or makes the one of that name match
/// it. Like a pin: planned on the types, applied by span, checked by re-parsing.
pub(crate) fn sidecar(text: &str, path: &Path, s: &SidecarSpec) -> anyhow::Result<String> {
    plan_sidecar(text, path, s).map_err(|e| positioned(e, text))
}

fn plan_sidecar(text: &str, path: &Path, s: &SidecarSpec) -> anyhow::Result<String> {
    let before = Manifest::parse(text, path)?;
    known_dependency(&before, path, &s.dependency)?;
    let root = spans(text, path)?;
    let index = before.sidecars.iter().position(|x| x.name == s.name);
    let spec = Sidecar {
        name: s.name.clone(),
        dependency: s.dependency.clone(),
        executable: s.executable.clone(),
        args: s.args.clone(),
        memory_mb: s.memory_mb,
        process_types: s.process_types.clone(),
        // Not set from the command line; an existing entry keeps its own.
        hold_app: index.and_then(|i| before.sidecars[i].hold_app.clone()),
    };
    let mut expected = before.clone();
    match index {
        Some(i) => expected.sidecars[i] = spec,
        None => expected.sidecars.push(spec),
    }
    let fields = [
        ("dependency", Value::Scalar(s.dependency.clone())),
        ("executable", Value::Scalar(s.executable.clone())),
        ("args", Value::List(s.args.clone())),
        ("memory_mb", Value::Int(s.memory_mb.into())),
        ("process_types", Value::List(s.process_types.clone())),
    ];
    let mut ed = Editor::new(text);
    upsert(&mut ed, &root, "sidecars", index, &s.name, &fields)
        .map_err(|(key, r)| refusal(path, text, &key, "set", r))?;
    let new = ed
        .finish()
        .map_err(|r| refusal(path, text, "(document)", "set", r))?;
    check_result(&new, path, "this sidecar", &expected)?;
    Ok(new)
}

/// The values a pin writes must be ones the manifest can hold.
fn check_values(path: &Path, p: &Pin) -> anyhow::Result<()> {
    let printable = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
    if !valid_name(&p.name) {
        return Err(bad(
            path,
            "dependencies",
            format!(
                "cannot hold a dependency named {:?}: use letters, digits, '-' or '_'",
                p.name
            ),
        ));
    }
    if !printable(&p.version) {
        return Err(bad(
            path,
            "dependencies",
            "cannot hold an empty version or one with control characters",
        ));
    }
    if let Some(s) = p.stacks.iter().find(|s| !valid_name(s)) {
        return Err(bad(
            path,
            "dependencies",
            format!("cannot hold the stack {s:?}: a stack is letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

/// `package get KEY`: the value at KEY, one line per list item. KEY is `language`,
/// `stack`, `pre_package`, `include_files`, `default_versions[NAME]`, or
/// `dependencies[NAME].FIELD` and `sidecars[NAME].FIELD`, where NAME may also be an
/// index and a dependency is its default build (for `stack`, if given).
pub(crate) fn get(
    m: &Manifest,
    path: &Path,
    key: &str,
    stack: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let one = |s: &str| Ok(vec![s.to_string()]);
    let wrong = |msg: String| anyhow::Error::from(PackError::Key(msg));
    let (top, rest) = key.split_once('[').unwrap_or((key, ""));
    let (selector, field) = match rest.split_once(']') {
        Some((sel, "")) => (Some(sel), ""),
        Some((sel, f)) => match f.strip_prefix('.') {
            Some(f) => (Some(sel), f),
            None => return Err(wrong(format!("{key:?} needs a '.' after its ']'"))),
        },
        None if rest.is_empty() => (None, ""),
        None => return Err(wrong(format!("{key:?} has a '[' without its ']'"))),
    };
    let pick = |len: usize, by_name: &dyn Fn(&str) -> Option<usize>, sel: &str| {
        sel.parse::<usize>()
            .ok()
            .filter(|&i| i < len)
            .or_else(|| by_name(sel))
            .ok_or_else(|| wrong(format!("{top} has no entry {sel:?}")))
    };
    match (top, selector, field) {
        ("language", None, _) => one(&m.language),
        ("stack", None, _) => one(m.stack.as_deref().unwrap_or_default()),
        ("pre_package", None, _) => one(m.pre_package.as_deref().unwrap_or_default()),
        ("include_files", None, _) => Ok(m.include_files.clone()),
        ("default_versions", Some(sel), "" | "version") => {
            let i = pick(
                m.default_versions.len(),
                &|n| m.default_versions.iter().position(|d| d.name == n),
                sel,
            )?;
            one(&m.default_versions[i].version)
        }
        ("dependencies", Some(sel), field) => {
            let dep = if let Ok(i) = sel.parse::<usize>() { m
            .dependencies
            .get(i)
            .ok_or_else(|| wrong(format!("dependencies has no entry {i}")))? } else {
                known_dependency(m, path, sel)?;
                m.pick(sel, stack)?
            };
            match field {
                "name" => one(&dep.name),
                "version" => one(&dep.version),
                "uri" => one(&dep.uri_text),
                "sha256" => one(&dep.sha256.to_string()),
                "cf_stacks" => Ok(dep.cf_stacks.clone()),
                "file" => one(dep.file.as_deref().unwrap_or_default()),
                _ => Err(wrong(format!(
                    "a dependency has name, version, uri, sha256, cf_stacks and file, not {field:?}"
                ))),
            }
        }
        ("sidecars", Some(sel), field) => {
            let i = pick(
                m.sidecars.len(),
                &|n| m.sidecars.iter().position(|s| s.name == n),
                sel,
            )?;
            let s = &m.sidecars[i];
            match field {
                "name" => one(&s.name),
                "dependency" => one(&s.dependency),
                "executable" => one(&s.executable),
                "args" => Ok(s.args.clone()),
                "memory_mb" => one(&s.memory_mb.to_string()),
                "process_types" => Ok(s.process_types.clone()),
                _ => Err(wrong(format!(
                    "a sidecar has name, dependency, executable, args, memory_mb and process_types, not {field:?}"
                ))),
            }
        }
        _ => Err(wrong(format!(
            "{key:?} is not a key this tool reads: use language, stack, pre_package, include_files, \
             default_versions[NAME], dependencies[NAME].FIELD or sidecars[NAME].FIELD"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const NEW: &str = "abcdef0000000000000000000000000000000000000000000000000000000001";

    fn manifest() -> String {
        format!(
            "---\n# keep me\nlanguage: sidecar\n\ndefault_versions:\n- name: config-server\n  version: 0.1.0 # dv\n\
             dependencies:\n- name: config-server\n  version: 0.1.0\n  uri: https://h/cs-0.1.0.tgz  # where\n  \
             sha256: {SHA}\n  cf_stacks:\n  - cflinuxfs3\n  - cflinuxfs4\n\n# sidecars below\nsidecars:\n\
             - name: config-server\n  dependency: config-server\n  executable: bin/config-server\n  memory_mb: 32\n"
        )
    }

    fn p(name: &str, version: &str, stacks: &[&str]) -> Pin {
        Pin {
            name: name.into(),
            version: version.into(),
            uri: format!("https://h/{name}-{version}.tgz"),
            sha256: NEW.parse().expect("sha"),
            stacks: stacks
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    fn run(text: &str, pin: &Pin) -> Result<String, String> {
        super::pin(text, Path::new("/bp/manifest.yml"), pin)
            .map(|p| p.text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pins_in_place_keeping_comments_and_stacks() {
        let out = run(&manifest(), &p("config-server", "0.2.0", &[])).expect("pin");
        let want = manifest()
            .replace("version: 0.1.0", "version: 0.2.0")
            .replace(
                "https://h/cs-0.1.0.tgz",
                "https://h/config-server-0.2.0.tgz",
            )
            .replace(SHA, NEW);
        assert_eq!(out, want);
        let again = run(&out, &p("config-server", "0.2.0", &[])).expect("again");
        assert_eq!(again, out, "pinning the same build changes nothing");
    }

    #[test]
    fn stacks_are_an_argument() {
        let out = run(
            &manifest(),
            &p("config-server", "0.1.0", &["cflinuxfs4", "cflinuxfs5"]),
        )
        .expect("pin");
        assert!(
            out.contains("  cf_stacks:\n  - cflinuxfs4\n  - cflinuxfs5\n\n# sidecars"),
            "{out}"
        );
    }

    #[test]
    fn a_new_dependency_gets_an_entry_and_a_default_version() {
        let err = run(&manifest(), &p("my-agent", "1.0.0", &[])).expect_err("no stacks");
        assert!(
            err.contains("has no my-agent yet: name the stacks"),
            "{err}"
        );
        let out = run(&manifest(), &p("my-agent", "1.0.0", &["cflinuxfs4"])).expect("pin");
        assert!(
            out.contains(
                "  version: 0.1.0 # dv\n- name: my-agent\n  version: 1.0.0\ndependencies:"
            ),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "  - cflinuxfs4\n- name: my-agent\n  version: 1.0.0\n  uri: https://h/my-agent-1.0.0.tgz\n  sha256: {NEW}\n  cf_stacks: [cflinuxfs4]\n\n# sidecars"
            )),
            "{out}"
        );
        let m = Manifest::parse(&out, Path::new("m")).expect("loads");
        assert_eq!(
            get(&m, Path::new("m"), "dependencies[my-agent].uri", None).expect("uri"),
            ["https://h/my-agent-1.0.0.tgz"]
        );
        assert_eq!(
            get(&m, Path::new("m"), "default_versions[my-agent]", None).expect("dv"),
            ["1.0.0"]
        );
    }

    #[test]
    fn one_build_per_stack_is_pinned_by_stack() {
        let two = manifest().replace(
            "  - cflinuxfs3\n  - cflinuxfs4\n",
            &format!("  - cflinuxfs3\n- name: config-server\n  version: 0.1.0\n  uri: https://h/fs4.tgz\n  sha256: {SHA}\n  cf_stacks: [cflinuxfs4]\n"),
        );
        let err = run(&two, &p("config-server", "0.1.0", &[])).expect_err("ambiguous");
        assert!(
            err.contains("has 2 builds of config-server 0.1.0 (for cflinuxfs3; for cflinuxfs4)"),
            "{err}"
        );
        let out = run(&two, &p("config-server", "0.1.0", &["cflinuxfs4"])).expect("fs4");
        assert!(
            out.contains(&format!(
                "  uri: https://h/cs-0.1.0.tgz  # where\n  sha256: {SHA}"
            )),
            "{out}"
        );
        assert!(out.contains(&format!("  uri: https://h/config-server-0.1.0.tgz\n  sha256: {NEW}\n  cf_stacks: [cflinuxfs4]")), "{out}");
    }

    #[test]
    fn refuses_bad_values_and_unsafe_edits_writing_nothing() {
        let mut bad_uri = p("config-server", "0.2.0", &[]);
        bad_uri.uri = "ftp://h/x.tgz".into();
        let err = run(&manifest(), &bad_uri).expect_err("ftp");
        assert!(
            err.contains("`uri` scheme \"ftp\" is not supported"),
            "{err}"
        );
        let err =
            run(&manifest(), &p("config-server", "0.2.0\n-----> fake", &[])).expect_err("newline");
        assert!(err.contains("control characters"), "{err}");
        let err = run(&manifest(), &p("config-server", "0.2.0", &["a b"])).expect_err("stack");
        assert!(err.contains("cannot hold the stack \"a b\""), "{err}");
        // An anchor shared with another key: editing it would change that key too.
        let anchored = manifest()
            .replace("  version: 0.1.0 # dv", "  version: &v 0.1.0 # dv")
            .replace(
                "- name: config-server\n  version: 0.1.0\n  uri",
                "- name: config-server\n  version: *v\n  uri",
            );
        let err = run(&anchored, &p("config-server", "0.2.0", &[])).expect_err("anchor");
        assert!(
            err.ends_with(
                "`dependencies[0].version` cannot be pinned: it is an alias (*name) of another \
                 value at line 10 column 12"
            ),
            "{err}"
        );
        let err = run("language: \"x", &p("config-server", "0.2.0", &[])).expect_err("yaml");
        assert!(err.starts_with("/bp/manifest.yml: `(document)`"), "{err}");
    }

    #[test]
    fn sidecars_are_added_and_changed_in_place() {
        let text = run(&manifest(), &p("my-agent", "1.0.0", &["cflinuxfs4"])).expect("pin");
        let spec = |memory_mb, process_types: &[&str]| SidecarSpec {
            name: "my-agent".into(),
            dependency: "my-agent".into(),
            executable: "bin/my-agent".into(),
            args: vec!["--port".into(), "9000".into()],
            memory_mb,
            process_types: process_types
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        };
        let path = Path::new("/bp/manifest.yml");
        let added = sidecar(&text, path, &spec(16, &["web"])).expect("add");
        assert!(
            added.ends_with("  memory_mb: 32\n- name: my-agent\n  dependency: my-agent\n  executable: bin/my-agent\n  args: [\"--port\", \"9000\"]\n  memory_mb: 16\n  process_types: [web]\n"),
            "{added}"
        );
        let changed = sidecar(&added, path, &spec(24, &["web", "worker"])).expect("change");
        assert_eq!(
            changed,
            added
                .replace("memory_mb: 16", "memory_mb: 24")
                .replace("[web]\n", "[web, worker]\n")
        );
        let mut unknown = spec(16, &["web"]);
        unknown.dependency = "nope".into();
        let err = sidecar(&added, path, &unknown)
            .expect_err("unknown dependency")
            .to_string();
        assert!(
            err.ends_with("dependencies has no \"nope\" (it has config-server, my-agent)"),
            "{err}"
        );
    }

    /// A manifest must list a sidecar, so `pin` never meets an empty `dependencies`;
    /// the editing below it still must not lose the section's key or comment.
    #[test]
    fn an_empty_section_gets_its_first_item_below_its_key() {
        let item = || {
            vec![
                ("name".to_string(), Value::Scalar("new".into())),
                ("cf_stacks".to_string(), Value::List(vec!["s1".into()])),
            ]
        };
        for (section, written) in [
            ("dependencies: # none yet\n", "dependencies: # none yet\n"),
            (
                "dependencies: [] # none yet\n",
                "dependencies: # none yet\n",
            ),
            ("dependencies: !!seq []\n", "dependencies:\n"),
            ("", "dependencies:\n"),
        ] {
            let text = format!("language: sidecar\n{section}");
            let root = spans(&text, Path::new("m")).expect("spans");
            let mut ed = Editor::new(&text);
            add_item(&mut ed, &root, "dependencies", item()).expect(section);
            assert_eq!(
                ed.finish().expect("finish"),
                format!("language: sidecar\n{written}- name: new\n  cf_stacks: [s1]\n"),
                "{section}"
            );
        }
    }

    #[test]
    fn get_reads_typed_values() {
        let m = Manifest::parse(&manifest(), Path::new("m")).expect("loads");
        assert_eq!(
            get(&m, Path::new("m"), "language", None).expect("l"),
            ["sidecar"]
        );
        assert_eq!(
            get(
                &m,
                Path::new("m"),
                "dependencies[config-server].sha256",
                None
            )
            .expect("s"),
            [SHA]
        );
        assert_eq!(
            get(&m, Path::new("m"), "dependencies[0].cf_stacks", None).expect("c"),
            ["cflinuxfs3", "cflinuxfs4"]
        );
        assert_eq!(
            get(
                &m,
                Path::new("m"),
                "sidecars[config-server].memory_mb",
                None
            )
            .expect("m"),
            ["32"]
        );
        assert!(get(
            &m,
            Path::new("m"),
            "dependencies[config-server].sha256",
            Some("windows")
        )
        .is_err());
        assert!(get(&m, Path::new("m"), "dependencies[nope].uri", None).is_err());
        assert!(get(&m, Path::new("m"), "colour", None).is_err());
    }
}
