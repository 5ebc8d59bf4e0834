//! Reads `<DEPS_DIR>/<idx>/launch.yml` and the app's `Procfile` the way CF's builder
//! does: Go's yaml.v2 into typed structs (buildpackapplifecycle resources.LaunchData).
//! yaml.v2 ignores unknown keys and reads `null` as the zero value, turns any scalar
//! into a string where a string is expected, truncates a float into an integer, and
//! refuses anything else of the wrong type: `memory: "32"`, `memory: 32M` and
//! `sidecar_for: web` fail staging. Every type error is collected, with its key path.

use serde_yaml::{Mapping, Value};

/// One `processes:` entry of a launch.yml, or one line of a Procfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub kind: String,
    pub command: String,
    /// `limits.memory` in MB; `None` when absent (Go reads that as 0, "unset").
    pub memory: Option<i64>,
    /// Non-empty: a sidecar of these process types. Empty: an ordinary process type.
    pub sidecar_for: Vec<String>,
}

/// Parses a launch.yml; the error lists every problem CF's builder would stop on.
pub fn parse(text: &str) -> Result<Vec<Declared>, Vec<String>> {
    let doc = document(text)?;
    let mut errs = Vec::new();
    let mut out = Vec::new();
    if let Some(top) = mapping(&doc, "(document)", "resources.LaunchData", &mut errs) {
        let processes = get(top, "processes");
        if let Some(items) = sequence(processes, "processes", "[]resources.Process", &mut errs) {
            for (i, item) in items.iter().enumerate() {
                let at = format!("processes[{i}]");
                let Some(p) = mapping(item, &at, "resources.Process", &mut errs) else {
                    continue;
                };
                let limits = mapping(
                    get(p, "limits"),
                    &format!("{at}.limits"),
                    "struct",
                    &mut errs,
                );
                let platforms = mapping(
                    get(p, "platforms"),
                    &format!("{at}.platforms"),
                    "struct",
                    &mut errs,
                );
                let cf = platforms.and_then(|m| {
                    mapping(
                        get(m, "cloudfoundry"),
                        &format!("{at}.platforms.cloudfoundry"),
                        "struct",
                        &mut errs,
                    )
                });
                out.push(Declared {
                    kind: string(get(p, "type"), &format!("{at}.type"), &mut errs),
                    command: string(get(p, "command"), &format!("{at}.command"), &mut errs),
                    memory: limits.and_then(|m| {
                        integer(get(m, "memory"), &format!("{at}.limits.memory"), &mut errs)
                    }),
                    sidecar_for: cf
                        .map(|m| {
                            string_list(
                                get(m, "sidecar_for"),
                                &format!("{at}.platforms.cloudfoundry.sidecar_for"),
                                &mut errs,
                            )
                        })
                        .unwrap_or_default(),
                });
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// Parses a Procfile (yaml.v2 into `map[string]string`), in file order.
pub fn parse_procfile(text: &str) -> Result<Vec<Declared>, String> {
    // CF's builder drops yaml's message and says only "invalid YAML".
    let invalid = |detail: String| format!("invalid YAML ({detail})");
    let doc = document(text).map_err(|e| invalid(e.join("; ")))?;
    let mut errs = Vec::new();
    let mut out = Vec::new();
    if let Some(m) = mapping(&doc, "(document)", "map[string]string", &mut errs) {
        for (k, v) in m {
            let kind = string(k, "(key)", &mut errs);
            let command = string(v, &kind, &mut errs);
            out.push(Declared {
                kind,
                command,
                memory: None,
                sidecar_for: vec![],
            });
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(invalid(errs.join("; ")))
    }
}

fn document(text: &str) -> Result<Value, Vec<String>> {
    // An empty file is an empty document to yaml.v2, not an error.
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_yaml::from_str(text).map_err(|e| vec![format!("yaml: {e}")])
}

static NULL: Value = Value::Null;

fn get<'a>(m: &'a Mapping, key: &str) -> &'a Value {
    m.get(key).unwrap_or(&NULL)
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

/// yaml's name for what a value is, with the value itself for scalars, as yaml.v2 says it.
fn describe(v: &Value) -> String {
    match untag(v) {
        Value::Null => "!!null".into(),
        Value::Bool(b) => format!("!!bool `{b}`"),
        Value::Number(n) if n.is_f64() => format!("!!float `{n}`"),
        Value::Number(n) => format!("!!int `{n}`"),
        Value::String(s) => format!("!!str `{s}`"),
        Value::Sequence(_) => "!!seq".into(),
        Value::Mapping(_) => "!!map".into(),
        Value::Tagged(_) => "!!tagged".into(),
    }
}

fn mismatch(errs: &mut Vec<String>, at: &str, v: &Value, into: &str) {
    errs.push(format!(
        "{at}: cannot unmarshal {} into {into}",
        describe(v)
    ));
}

fn mapping<'a>(v: &'a Value, at: &str, into: &str, errs: &mut Vec<String>) -> Option<&'a Mapping> {
    match untag(v) {
        Value::Mapping(m) => Some(m),
        Value::Null => None,
        other => {
            mismatch(errs, at, other, into);
            None
        }
    }
}

fn sequence<'a>(v: &'a Value, at: &str, into: &str, errs: &mut Vec<String>) -> Option<&'a [Value]> {
    match untag(v) {
        Value::Sequence(s) => Some(s),
        Value::Null => None,
        other => {
            mismatch(errs, at, other, into);
            None
        }
    }
}

fn string(v: &Value, at: &str, errs: &mut Vec<String>) -> String {
    match untag(v) {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => {
            mismatch(errs, at, other, "string");
            String::new()
        }
    }
}

fn integer(v: &Value, at: &str, errs: &mut Vec<String>) -> Option<i64> {
    match untag(v) {
        Value::Null => None,
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite() && f.abs() < 9.2e18) {
                // yaml.v2 truncates a float into an integer field.
                Some(f.trunc() as i64)
            } else {
                mismatch(errs, at, v, "int");
                None
            }
        }
        other => {
            mismatch(errs, at, other, "int");
            None
        }
    }
}

fn string_list(v: &Value, at: &str, errs: &mut Vec<String>) -> Vec<String> {
    sequence(v, at, "[]string", errs)
        .map(|items| {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| string(item, &format!("{at}[{i}]"), errs))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sidecar buildpack's supply writes.
    const GOOD: &str = include_str!("../../../tests/golden/launch.yml");

    fn sidecar(memory: Option<i64>) -> Declared {
        Declared {
            kind: "config-server".into(),
            command: "\"$DEPS_DIR/0/bin/config-server\"".into(),
            memory,
            sidecar_for: vec!["web".into()],
        }
    }

    #[test]
    fn reads_what_the_sidecar_buildpack_writes() {
        assert_eq!(parse(GOOD), Ok(vec![sidecar(Some(32))]));
    }

    #[test]
    fn rejects_what_cf_rejects_naming_the_key() {
        for (from, to, want) in [
            ("memory: 32", "memory: \"32\"", "processes[0].limits.memory: cannot unmarshal !!str `32` into int"),
            ("memory: 32", "memory: 32M", "processes[0].limits.memory: cannot unmarshal !!str `32M` into int"),
            ("memory: 32", "memory: 32MB", "cannot unmarshal !!str `32MB` into int"),
            ("memory: 32", "memory: [32]", "processes[0].limits.memory: cannot unmarshal !!seq into int"),
            (
                "sidecar_for:\n      - web",
                "sidecar_for: web",
                "processes[0].platforms.cloudfoundry.sidecar_for: cannot unmarshal !!str `web` into []string",
            ),
            ("type: config-server", "type: [a]", "processes[0].type: cannot unmarshal !!seq into string"),
            ("limits:\n    memory: 32", "limits: 32", "processes[0].limits: cannot unmarshal !!int `32` into struct"),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{to}");
            let errs = parse(&text).expect_err(to);
            assert!(errs.iter().any(|e| e.contains(want)), "{to}: {errs:?}");
        }
        let errs = parse("processes: {}\n").expect_err("map for a list");
        assert_eq!(
            errs,
            vec!["processes: cannot unmarshal !!map into []resources.Process"]
        );
        assert!(parse("- a\n").is_err());
        assert!(parse("processes: [\n").expect_err("syntax")[0].starts_with("yaml: "));
    }

    #[test]
    fn is_as_lenient_as_yaml_v2() {
        // Unknown keys, nulls, scalars where strings go, floats where integers go.
        let text =
            GOOD.replace("memory: 32", "memory: 32.9\n    cpu: 2") + "  extra: yes\nother: 1\n";
        assert_eq!(parse(&text), Ok(vec![sidecar(Some(32))]));
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("processes:\n"), Ok(vec![]));
        let plain = parse("processes:\n- type: worker\n  command: 42\n").expect("valid");
        assert_eq!(
            plain,
            vec![Declared {
                kind: "worker".into(),
                command: "42".into(),
                memory: None,
                sidecar_for: vec![]
            }]
        );
        let no_memory = GOOD.replace("  limits:\n    memory: 32\n", "");
        assert_eq!(parse(&no_memory), Ok(vec![sidecar(None)]));
    }

    #[test]
    fn procfile_is_a_map_in_file_order() {
        let p =
            parse_procfile("web: bundle exec rackup -p $PORT\nworker: ./work 1\n").expect("valid");
        let kinds: Vec<_> = p
            .iter()
            .map(|d| (d.kind.as_str(), d.command.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("web", "bundle exec rackup -p $PORT"),
                ("worker", "./work 1")
            ]
        );
        assert!(parse_procfile("web:\n  - a\n")
            .expect_err("list")
            .starts_with("invalid YAML"));
        assert!(parse_procfile("just a line\n").is_err());
    }
}
