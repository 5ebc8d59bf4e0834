//! Reads `<DEPS_DIR>/<idx>/launch.yml` and the app's `Procfile` the way CF's builder
//! does: Go's yaml.v2 into typed structs (buildpackapplifecycle resources.LaunchData).
//! yaml.v2 ignores unknown keys and reads `null` as the zero value, turns any scalar
//! into a string where a string is expected, truncates a float into an integer, and
//! refuses anything else of the wrong type: `memory: "32"`, `memory: 32M` and
//! `sidecar_for: web` fail staging. Every type error is collected, with its key path.
//! The file itself is read as yaml.v2 reads one (see [`document`]).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};
use std::fmt;

/// One `processes:` entry of a launch.yml, or one line of a Procfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Declared {
    pub kind: String,
    pub command: String,
    /// `limits.memory` in MB; `None` when absent (Go reads that as 0, "unset").
    pub memory: Option<i64>,
    /// Non-empty: a sidecar of these process types. Empty: an ordinary process type.
    pub sidecar_for: Vec<String>,
}

/// Parses a launch.yml; the error lists every problem CF's builder would stop on.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Declared>, Vec<String>> {
    let doc = document(bytes).map_err(|e| vec![e])?;
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
pub(crate) fn parse_procfile(bytes: &[u8]) -> Result<Vec<Declared>, String> {
    // CF's builder drops yaml's message and says only "invalid YAML".
    let invalid = |detail: String| format!("invalid YAML ({detail})");
    let doc = document(bytes).map_err(invalid)?;
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

/// A YAML file as Go's yaml.v2 `Unmarshal` reads it: UTF-8, or UTF-16 after its
/// byte-order mark (a UTF-8 one is skipped), and anything else fails ("invalid leading
/// UTF-8 octet"); the first document only, whatever follows it; duplicate keys allowed,
/// the last one winning; `<<` merge keys applied in place. An empty file is `null`.
pub(crate) fn document(bytes: &[u8]) -> Result<Value, String> {
    let text = decode(bytes)?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let first = serde_yaml::Deserializer::from_str(&text).next();
    match first {
        None => Ok(Value::Null),
        Some(first) => GoValue::deserialize(first)
            .map(|v| v.0)
            .map_err(|e| format!("yaml: {e}")),
    }
}

/// The text of a file as yaml.v2's reader decodes it.
fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf8 = |b: &[u8], skipped: usize| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|e| format!("yaml: invalid UTF-8 at byte {}", e.valid_up_to() + skipped))
    };
    let utf16 = |b: &[u8], unit: fn([u8; 2]) -> u16| {
        if !b.len().is_multiple_of(2) {
            return Err("yaml: incomplete UTF-16 character".to_string());
        }
        let units: Vec<u16> = b.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        String::from_utf16(&units).map_err(|_| "yaml: invalid UTF-16 surrogate pair".to_string())
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest, 3),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes, 0),
    }
}

/// A YAML value read with yaml.v2's leniencies: a key given twice keeps its last value
/// (serde_yaml's own `Value` refuses it), and a `<<` key merges its map, or its list of
/// maps (the earlier ones winning), into the map being read, at that point.
struct GoValue(Value);

impl<'de> Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoVisitor)
    }
}

struct GoVisitor;

impl<'de> Visitor<'de> for GoVisitor {
    type Value = GoValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<GoValue, E> {
        Ok(GoValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<GoValue, E> {
        Ok(GoValue(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<GoValue, E> {
        Ok(GoValue(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<GoValue, E> {
        Ok(GoValue(Value::Number(v.into())))
    }

    fn visit_str<E>(self, v: &str) -> Result<GoValue, E> {
        Ok(GoValue(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<GoValue, E> {
        Ok(GoValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<GoValue, E> {
        Ok(GoValue(Value::Null))
    }

    fn visit_none<E>(self) -> Result<GoValue, E> {
        Ok(GoValue(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<GoValue, D::Error> {
        GoValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoValue, A::Error> {
        let mut items = Vec::new();
        while let Some(GoValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(GoValue(Value::Sequence(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoValue, A::Error> {
        let mut m = Mapping::new();
        while let Some(GoValue(k)) = map.next_key()? {
            let GoValue(v) = map.next_value()?;
            if k.as_str() != Some("<<") {
                m.insert(k, v);
                continue;
            }
            let merged = match v {
                Value::Mapping(one) => vec![one],
                Value::Sequence(items) => items
                    .into_iter()
                    .rev()
                    .map(|i| match i {
                        Value::Mapping(one) => Ok(one),
                        _ => Err(de::Error::custom(MERGE)),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(de::Error::custom(MERGE)),
            };
            for (mk, mv) in merged.into_iter().flatten() {
                m.insert(mk, mv);
            }
        }
        Ok(GoValue(Value::Mapping(m)))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<GoValue, A::Error> {
        // serde_yaml hands a value with a tag of its own (`!thing`) over as an enum.
        let (tag, contents) = data.variant::<String>()?;
        let GoValue(value) = de::VariantAccess::newtype_variant(contents)?;
        Ok(GoValue(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        }))))
    }
}

/// yaml.v2's words for a `<<` that is not a map or a list of maps.
const MERGE: &str = "map merge requires map or sequence of maps as the value";

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
        assert_eq!(parse(GOOD.as_bytes()), Ok(vec![sidecar(Some(32))]));
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
            let errs = parse(text.as_bytes()).expect_err(to);
            assert!(errs.iter().any(|e| e.contains(want)), "{to}: {errs:?}");
        }
        let errs = parse(b"processes: {}\n").expect_err("map for a list");
        assert_eq!(
            errs,
            vec!["processes: cannot unmarshal !!map into []resources.Process"]
        );
        assert!(parse(b"- a\n").is_err());
        assert!(parse(b"processes: [\n").expect_err("syntax")[0].starts_with("yaml: "));
    }

    #[test]
    fn is_as_lenient_as_yaml_v2() {
        // Unknown keys, nulls, scalars where strings go, floats where integers go.
        let text =
            GOOD.replace("memory: 32", "memory: 32.9\n    cpu: 2") + "  extra: yes\nother: 1\n";
        assert_eq!(parse(text.as_bytes()), Ok(vec![sidecar(Some(32))]));
        assert_eq!(parse(b""), Ok(vec![]));
        assert_eq!(parse(b"processes:\n"), Ok(vec![]));
        let plain = parse(b"processes:\n- type: worker\n  command: 42\n").expect("valid");
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
        assert_eq!(parse(no_memory.as_bytes()), Ok(vec![sidecar(None)]));
    }

    /// The file as yaml.v2 reads it: encodings, the first document, duplicate and merge
    /// keys.
    #[test]
    fn documents_are_read_as_yaml_v2_reads_them() {
        let doc = |bytes: &[u8]| document(bytes);
        let map = |text: &str| serde_yaml::from_str::<Value>(text).expect("yaml");
        assert_eq!(doc(b"\xEF\xBB\xBFa: 1\n"), Ok(map("a: 1")));
        let utf16 = |le: bool| -> Vec<u8> {
            let units = "a: \u{e9}\n".encode_utf16();
            let mut out = if le {
                vec![0xFF, 0xFE]
            } else {
                vec![0xFE, 0xFF]
            };
            for u in units {
                out.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            out
        };
        assert_eq!(doc(&utf16(true)), Ok(map("a: \u{e9}")));
        assert_eq!(doc(&utf16(false)), Ok(map("a: \u{e9}")));
        assert_eq!(
            doc(&utf16(true)[..5]),
            Err("yaml: incomplete UTF-16 character".into())
        );
        assert_eq!(
            doc(b"a: \xff\n"),
            Err("yaml: invalid UTF-8 at byte 3".into())
        );
        assert_eq!(
            doc(b"\xEF\xBB\xBFa: \xff\n"),
            Err("yaml: invalid UTF-8 at byte 6".into())
        );
        // The first document only, even when a later one is broken.
        assert_eq!(doc(b"a: 1\n---\nb: [\n"), Ok(map("a: 1")));
        assert_eq!(doc(b"# only a comment\n"), Ok(Value::Null));
        assert_eq!(doc(b"---\n...\n"), Ok(Value::Null));
        // The last of duplicate keys, in the place of the first.
        assert_eq!(doc(b"a: 1\nb: 2\na: 3\n"), Ok(map("a: 3\nb: 2")));
        // `<<` merges at its place: later keys win over it, it wins over earlier ones,
        // and in a list of maps the earlier maps win.
        assert_eq!(
            doc(b"x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nm: {a: 0, <<: [*x, *y], c: 3}\n")
                .map(|v| v["m"].clone()),
            Ok(map("{a: 1, b: 1, c: 3}"))
        );
        let err = doc(b"m: {<<: 1}\n").expect_err("a merge of a scalar");
        assert!(err.contains(MERGE), "{err}");
        let tagged = doc(b"a: !thing 1\n").expect("custom tags are kept");
        assert!(
            matches!(&tagged["a"], Value::Tagged(t) if t.tag == "thing"),
            "{tagged:?}"
        );
    }

    #[test]
    fn procfile_is_a_map_in_file_order() {
        let p =
            parse_procfile(b"web: bundle exec rackup -p $PORT\nworker: ./work 1\n").expect("valid");
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
        assert!(parse_procfile(b"web:\n  - a\n")
            .expect_err("list")
            .starts_with("invalid YAML"));
        assert!(parse_procfile(b"just a line\n").is_err());
    }
}
