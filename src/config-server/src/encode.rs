//! The four file formats of `CONFIG_SERVER_RENDER`, from a value's JSON text.
//!
//! - `json`: the bytes `GET /config/<key>` answers, and a newline.
//! - `yaml`: block style; strings always double-quoted (JSON escapes are YAML
//!   escapes), so that no reader takes `yes`, `0755` or `1e3` for anything but
//!   text; keys plain when they are plain words, double-quoted otherwise.
//! - `env`: `NAME='text'`, one per line. Nesting joins keys with `_`
//!   (`db: {user: x}` gives `db_user`), sequences by index (`hosts_0`); every
//!   name must be a valid variable name. A text without `'`, `\` or control
//!   characters is single-quoted, read literally by every reader; any other is
//!   double-quoted with `\\ \" \$ \` \n \r \t` escapes (dotenv's convention).
//!   `null` is an empty value.
//! - `properties`: Java's `Properties.store` form: nesting joins keys with `.`,
//!   sequences by `[i]` (Spring's `hosts[0]`); `\`, `=`, `:`, `#`, `!` and
//!   spaces escaped (a value's spaces only when leading), `\t \n \r \f`
//!   escaped, anything else outside printable ASCII as `\uXXXX`, so the file
//!   reads the same as ISO-8859-1 (Java 8) and as UTF-8 (Java 9+).
//!
//! In `env` and `properties`, an empty mapping or sequence gives no line, two
//! keys that make the same name are refused, and the value rendered must be a
//! mapping. Refusals name the key path, never a value.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::Value;

use crate::sanitize;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Yaml,
    Env,
    Properties,
}

impl Format {
    pub(crate) const NAMES: &'static str = "json, yaml, env or properties";

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "json" => Self::Json,
            "yaml" => Self::Yaml,
            "env" => Self::Env,
            "properties" => Self::Properties,
            _ => return None,
        })
    }
}

/// The file's bytes for the value whose JSON text is `json`.
pub(crate) fn encode(format: Format, json: &[u8]) -> Result<Vec<u8>, String> {
    if format == Format::Json {
        let mut out = json.to_vec();
        out.push(b'\n');
        return Ok(out);
    }
    let value: Value =
        serde_json::from_slice(json).map_err(|_| "the value is not JSON".to_owned())?;
    let mut out = String::new();
    match format {
        Format::Json => unreachable!("handled above"),
        Format::Yaml => yaml(&value, 0, &mut out),
        Format::Env | Format::Properties => {
            let Value::Object(map) = &value else {
                return Err(format!(
                    "format {} needs a mapping, and the value is {}",
                    if format == Format::Env {
                        "env"
                    } else {
                        "properties"
                    },
                    kind(&value)
                ));
            };
            let mut flat = Vec::new();
            for (key, value) in map {
                flatten(format, key.clone(), value, &mut flat);
            }
            let mut names = HashSet::new();
            for (name, value) in flat {
                if !names.insert(name.clone()) {
                    return Err(format!(
                        "two keys make the same name `{}`",
                        sanitize::cut(&name, 64)
                    ));
                }
                if format == Format::Env {
                    env_line(&name, &value, &mut out)?;
                } else {
                    properties_line(&name, &value, &mut out);
                }
            }
        }
    }
    Ok(out.into_bytes())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// The scalars under `value`, named by their joined paths.
fn flatten(format: Format, name: String, value: &Value, out: &mut Vec<(String, String)>) {
    let (sep, open, close) = match format {
        Format::Env => ("_", "_", ""),
        _ => (".", "[", "]"),
    };
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten(format, format!("{name}{sep}{key}"), value, out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                flatten(format, format!("{name}{open}{i}{close}"), value, out);
            }
        }
        Value::Null => out.push((name, String::new())),
        Value::String(text) => out.push((name, text.clone())),
        scalar => out.push((name, scalar.to_string())),
    }
}

fn env_line(name: &str, text: &str, out: &mut String) -> Result<(), String> {
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "the key path `{}` makes no valid variable name (letters, digits and _, not starting \
             with a digit): use format properties or yaml, or render a key below it",
            sanitize::cut(name, 64)
        ));
    }
    if text.contains('\0') {
        return Err(format!(
            "`{}` holds a NUL character, which no environment variable can",
            sanitize::cut(name, 64)
        ));
    }
    if !text
        .chars()
        .any(|c| c == '\'' || c == '\\' || c.is_control())
    {
        let _ = writeln!(out, "{name}='{text}'");
        return Ok(());
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in text.chars() {
        match c {
            '\\' | '"' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push_str("\"\n");
    Ok(())
}

fn properties_line(name: &str, text: &str, out: &mut String) {
    properties_escape(name, true, out);
    out.push('=');
    properties_escape(text, false, out);
    out.push('\n');
}

/// As `java.util.Properties.store` escapes a key or a value.
fn properties_escape(text: &str, is_key: bool, out: &mut String) {
    for (i, c) in text.chars().enumerate() {
        match c {
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\\' | '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
    }
}

/// Block-style YAML at `indent` spaces; a scalar ends its line.
fn yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                out.push_str(&pad);
                yaml_key(key, out);
                out.push(':');
                yaml_child(value, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for value in items {
                out.push_str(&pad);
                out.push('-');
                yaml_child(value, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            yaml_scalar(scalar, out);
            out.push('\n');
        }
    }
}

fn yaml_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml(value, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml(value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            yaml_scalar(scalar, out);
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value, out: &mut String) {
    match value {
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Words that YAML 1.1 readers (PyYAML, Ruby's Psych) resolve to something
/// other than a string, as keys too.
const YAML_SPECIAL: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn yaml_key(key: &str, out: &mut String) {
    let plain = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !YAML_SPECIAL.contains(&key.to_ascii_lowercase().as_str());
    if plain {
        out.push_str(key);
    } else {
        out.push_str(&Value::from(key).to_string());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn enc(format: Format, json: &str) -> Result<String, String> {
        encode(format, json.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    const AWKWARD: &str = r#"{"plain":"p4ss","quote":"it's","dq":"say \"hi\"","nl":"a\nb\r\nc","eq":"k=v; x: y","dollar":"$HOME `id` \\n","uni":"é€😀","lead":"  x","tab":"a\tb","empty":"","n":-1.5,"t":true,"z":null}"#;

    #[test]
    fn env() {
        assert_eq!(
            enc(Format::Env, AWKWARD).unwrap(),
            "plain='p4ss'\n\
             quote=\"it's\"\n\
             dq='say \"hi\"'\n\
             nl=\"a\\nb\\r\\nc\"\n\
             eq='k=v; x: y'\n\
             dollar=\"\\$HOME \\`id\\` \\\\n\"\n\
             uni='é€😀'\n\
             lead='  x'\n\
             tab=\"a\\tb\"\n\
             empty=''\n\
             n='-1.5'\n\
             t='true'\n\
             z=''\n"
        );
        assert_eq!(
            enc(
                Format::Env,
                r#"{"db":{"user":"u","hosts":["a","b"],"none":{}},"_x1":[]}"#
            )
            .unwrap(),
            "db_user='u'\ndb_hosts_0='a'\ndb_hosts_1='b'\n"
        );
        for (json, message) in [
            (
                r#"{"a.b":1}"#,
                "the key path `a.b` makes no valid variable name",
            ),
            (
                r#"{"1a":1}"#,
                "the key path `1a` makes no valid variable name",
            ),
            (
                r#"{"a":{"b":1},"a_b":2}"#,
                "two keys make the same name `a_b`",
            ),
            (r#"{"a":"x\u0000y"}"#, "`a` holds a NUL character"),
            (
                r#""text""#,
                "format env needs a mapping, and the value is a string",
            ),
        ] {
            let err = enc(Format::Env, json).unwrap_err();
            assert!(err.starts_with(message), "{json}: {err}");
        }
    }

    #[test]
    fn env_single_quotes_read_back_literally_in_bash() {
        let out = enc(Format::Env, r#"{"a":"$HOME `id` \"q\" ;|&<> *","b":"x y"}"#).unwrap();
        let script = format!("{out}printf '%s|%s' \"$a\" \"$b\"");
        let got = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(got.stdout).unwrap(),
            "$HOME `id` \"q\" ;|&<> *|x y"
        );
    }

    #[test]
    fn properties() {
        assert_eq!(
            enc(Format::Properties, AWKWARD).unwrap(),
            "plain=p4ss\n\
             quote=it's\n\
             dq=say \"hi\"\n\
             nl=a\\nb\\r\\nc\n\
             eq=k\\=v; x\\: y\n\
             dollar=$HOME `id` \\\\n\n\
             uni=\\u00E9\\u20AC\\uD83D\\uDE00\n\
             lead=\\  x\n\
             tab=a\\tb\n\
             empty=\n\
             n=-1.5\n\
             t=true\n\
             z=\n"
        );
        assert_eq!(
            enc(
                Format::Properties,
                r#"{"spring":{"datasource":{"url":"jdbc:x"}},"hosts":["a",{"p":1}],"k y#!":"v"}"#
            )
            .unwrap(),
            "spring.datasource.url=jdbc\\:x\nhosts[0]=a\nhosts[1].p=1\nk\\ y\\#\\!=v\n"
        );
        assert!(enc(Format::Properties, r#"{"a":{"b":1},"a.b":2}"#)
            .unwrap_err()
            .starts_with("two keys make the same name `a.b`"));
    }

    #[test]
    fn yaml() {
        assert_eq!(
            enc(Format::Yaml, r#"{"db":{"user":"u","port":5432,"hosts":["a",{"x":null}],"e":{},"l":[]},"yes":"no","a b":"0755","nl":"a\nb","":true}"#).unwrap(),
            "db:\n  user: \"u\"\n  port: 5432\n  hosts:\n    - \"a\"\n    -\n      x: null\n  e: {}\n  l: []\n\"yes\": \"no\"\n\"a b\": \"0755\"\nnl: \"a\\nb\"\n\"\": true\n"
        );
        assert_eq!(enc(Format::Yaml, r#""x""#).unwrap(), "\"x\"\n");
        // What is written reads back as the same value.
        for json in [
            AWKWARD,
            r#"{"a":[[1,[]],{"b":{"c":[{}]}}],"true":"yes","k: v":"- x"}"#,
        ] {
            let text = enc(Format::Yaml, json).unwrap();
            let back = crate::parse::parse(crate::error::Format::Yaml, text.as_bytes()).unwrap();
            assert_eq!(back, serde_json::from_str::<Value>(json).unwrap(), "{text}");
        }
        assert_eq!(enc(Format::Json, r#"{"a":1}"#).unwrap(), "{\"a\":1}\n");
    }
}
