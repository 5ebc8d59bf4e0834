//! Turns configuration text (JSON or YAML) into a JSON value, strictly.
//!
//! A config file holds secrets, and a value silently different from what its
//! author wrote is worse than a refusal. So, beyond plain syntax, this refuses:
//! a key written twice in one mapping (parsers keep the last one silently);
//! numbers JSON cannot carry (`.nan`, `.inf`, `1e999`); nesting deeper than
//! [`MAX_DEPTH`]; more than [`MAX_VALUES`] values; YAML aliases that repeat
//! more than [`MAX_ALIAS_VALUES`] values in all (a small file must not expand
//! into a huge document); YAML
//! tags other than the core schema's; and more than one YAML document. Every
//! refusal names the key path and a line and column, never a value.
//!
//! YAML scalars resolve by the YAML 1.2 core schema, as serde_yaml did before:
//! `~`, `null` and empty are null; `true`/`false` (three casings) are booleans;
//! decimal, `0x`, `0o` and `0b` integers; decimal floats; digits with a leading
//! zero (`0755`) and everything else are strings. Quoted and block scalars are
//! always strings.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;

use saphyr_parser::{Event, Marker, ScalarStyle, Tag};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{Format, Position};
use crate::sanitize;

/// Mappings and sequences may nest this deep, no deeper.
pub(crate) const MAX_DEPTH: usize = 100;
/// YAML aliases may repeat at most this many values in all (a value is a
/// scalar, a sequence or a mapping, counted with everything inside it).
pub(crate) const MAX_ALIAS_VALUES: usize = 1000;
use yaml_guard::Events;
/// The YAML scanner may read at most this many flow indicators (`,[]{}`) ahead of
/// the last event (the guard shared with the manifest's reader, yaml-guard).
pub(crate) use yaml_guard::MAX_FLOW_AHEAD;
/// A document may hold at most this many values, aliases counted as what they
/// repeat. Held in memory, a value takes about a hundred bytes whatever its
/// text, so a 1 MiB source of `{},{},...` would otherwise need some 30 MB at
/// once: about all the sidecar has on Cloud Foundry.
pub(crate) const MAX_VALUES: usize = 50_000;
/// A document's JSON form (what `GET /config` answers) may be at most this
/// many bytes. [`MAX_VALUES`] counts values whatever their size, so a 100 KB
/// string repeated by 999 aliases passed it and expanded into 100 MB; the
/// 1 MiB source cap keeps a document without aliases well under this.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Why a text was refused, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub format: Format,
    pub problem: Problem,
    pub at: Position,
}

/// What is wrong with a text; never holds any of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not valid JSON or YAML at all.
    Syntax,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// A key written twice in one mapping; holds the key's path.
    DuplicateKey(String),
    /// `.nan`, `.inf` or a number too large for a double; holds the key's path.
    NotFinite(String),
    /// Deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Aliases repeat more than [`MAX_ALIAS_VALUES`] values.
    AliasLimit,
    /// More than [`MAX_VALUES`] values in all.
    TooManyValues,
    /// A mapping or a sequence used as a mapping key.
    KeyNotScalar,
    /// A tag outside the YAML core schema, or a value its tag does not fit.
    Tag { tag: String, path: String },
    /// A second YAML document in the same file.
    SeveralDocuments,
    /// A merge key (`<<`) whose value is not a mapping or a list of them;
    /// holds the key's path.
    MergeNotMapping(String),
    /// More than [`MAX_FLOW_AHEAD`] flow indicators read ahead of the next event.
    FlowTooLong,
    /// A JSON form over [`MAX_DOCUMENT_BYTES`].
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (format, at) = (self.format, self.at);
        match &self.problem {
            Problem::Syntax => write!(f, "not valid {format} ({at})"),
            Problem::NotUtf8 => write!(f, "not UTF-8 text ({at})"),
            Problem::DuplicateKey(path) => write!(
                f,
                "key `{path}` appears twice in the same mapping ({at}): keep one of them"
            ),
            Problem::NotFinite(path) => write!(
                f,
                "`{path}` is not a finite number ({at}): .nan, .inf and numbers beyond \
                 ±1.8e308 have no JSON form; quote the value if it is meant as text"
            ),
            Problem::TooDeep => write!(f, "nested more than {MAX_DEPTH} levels deep ({at})"),
            Problem::AliasLimit => write!(
                f,
                "aliases repeat more than {MAX_ALIAS_VALUES} values in all; the alias at \
                 {at} goes over the limit: write the values out, or use fewer aliases"
            ),
            Problem::TooManyValues => write!(
                f,
                "holds more than {MAX_VALUES} values (scalars, lists and mappings, aliases \
                 counted as what they repeat); the one at {at} goes over the limit"
            ),
            Problem::KeyNotScalar => write!(
                f,
                "a mapping key must be a plain value, not a mapping or a sequence ({at})"
            ),
            Problem::Tag { tag, path } => write!(
                f,
                "`{path}` has the tag {tag}, which config-server does not support or the \
                 value does not fit ({at}); only the core schema's !!str, !!int, !!float, \
                 !!bool, !!null, !!map and !!seq are"
            ),
            Problem::SeveralDocuments => write!(
                f,
                "holds more than one YAML document; the second starts at {at}"
            ),
            Problem::MergeNotMapping(path) => write!(
                f,
                "`{path}` merges what is not a mapping ({at}): the merge key `<<` takes a \
                 mapping or a list of mappings; quote it ('<<') if it is meant as a plain key"
            ),
            Problem::TooLarge => match at.0 {
                Some(_) => write!(
                    f,
                    "expands to more than {MAX_DOCUMENT_BYTES} bytes of JSON (4 MiB, aliases \
                     counted as what they repeat); the value at {at} goes over the limit"
                ),
                None => write!(
                    f,
                    "expands to more than {MAX_DOCUMENT_BYTES} bytes of JSON (4 MiB, aliases \
                     counted as what they repeat)"
                ),
            },
            Problem::FlowTooLong => write!(
                f,
                "the YAML after {at} holds more than {MAX_FLOW_AHEAD} commas and brackets \
                 before its next value is complete, all of which the YAML reader would keep in \
                 memory (a flow collection `[...]` or `{{...}}` that opens a line or sits in \
                 another one is read whole, and so is a string); write a collection this large \
                 in block style (`- item` lines), or the file as JSON"
            ),
        }
    }
}

/// Parses `text` in `format`; a leading UTF-8 byte-order mark is skipped.
///
/// YAML that is JSON (YAML 1.2 is a superset of it) is parsed as JSON, to the
/// same value: the YAML scanner holds a whole flow collection in memory, at
/// some 400 bytes a token, before it hands over its first value.
///
/// The value's JSON form is then measured, exactly, against
/// [`MAX_DOCUMENT_BYTES`] (the YAML reader already stops an alias that
/// would go far over it).
pub(crate) fn parse(format: Format, text: &[u8]) -> Result<Value, ParseError> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let value = match format {
        Format::Json => parse_json(text),
        Format::Yaml => match parse_json(text) {
            Err(ParseError {
                problem: Problem::Syntax,
                ..
            }) => parse_yaml(text),
            json => json,
        },
    }?;
    let mut counter = Counter(0);
    if serde_json::to_writer(&mut counter, &value).is_err() {
        return Err(ParseError {
            format,
            problem: Problem::TooLarge,
            at: Position(None),
        });
    }
    Ok(value)
}

/// Counts bytes written, failing past [`MAX_DOCUMENT_BYTES`].
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > MAX_DOCUMENT_BYTES {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// About how many bytes `value` takes as JSON: its text, its keys and their
/// quotes, without escapes (the exact count comes after the parse).
fn json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_size(v))
                .sum::<usize>()
        }
    }
}

// ---- key paths ------------------------------------------------------------------------

/// One step of the path to a value: a mapping key or a sequence index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[2].c`, keys cut and escaped so that a hostile key cannot flood a log line.
fn render_path(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&sanitize::cut(key, 64));
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

// ---- JSON -----------------------------------------------------------------------------

/// serde_json does the syntax; a visitor builds the value, refusing duplicate keys
/// and deep nesting, and keeps the path so that a failure can name its key.
fn parse_json(text: &[u8]) -> Result<Value, ParseError> {
    let ctx = JsonContext::default();
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let result = JsonSeed(&ctx)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|err| {
        let at = Position(Some((err.line(), err.column())));
        let problem = ctx.problem.take().unwrap_or_else(|| {
            // serde_json's one error about a number's value rather than the syntax:
            // a literal beyond f64's range, such as 1e999.
            if err.to_string().starts_with("number out of range") {
                Problem::NotFinite(render_path(&ctx.path.borrow()))
            } else {
                Problem::Syntax
            }
        });
        ParseError {
            format: Format::Json,
            problem,
            at,
        }
    })
}

#[derive(Default)]
struct JsonContext {
    path: RefCell<Vec<Step>>,
    /// Set by the visitor before it fails; the serde error then only carries the position.
    problem: Cell<Option<Problem>>,
    values: Cell<usize>,
}

impl JsonContext {
    fn fail<E: de::Error>(&self, problem: Problem) -> E {
        self.problem.set(Some(problem));
        E::custom("refused")
    }

    /// Counts one more value against [`MAX_VALUES`].
    fn count<E: de::Error>(&self) -> Result<(), E> {
        self.values.set(self.values.get() + 1);
        if self.values.get() > MAX_VALUES {
            return Err(self.fail(Problem::TooManyValues));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct JsonSeed<'a>(&'a JsonContext);

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.count()?;
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            self.0
                .fail(Problem::NotFinite(render_path(&self.0.path.borrow())))
        })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.count()?;
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.count()?;
        if self.0.path.borrow().len() >= MAX_DEPTH {
            return Err(self.0.fail(Problem::TooDeep));
        }
        let mut items = Vec::new();
        loop {
            self.0.path.borrow_mut().push(Step::Index(items.len()));
            let Some(item) = seq.next_element_seed(self)? else {
                self.0.path.borrow_mut().pop();
                break;
            };
            self.0.path.borrow_mut().pop();
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        self.0.count()?;
        if self.0.path.borrow().len() >= MAX_DEPTH {
            return Err(self.0.fail(Problem::TooDeep));
        }
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            self.0.path.borrow_mut().push(Step::Key(key.clone()));
            if map.contains_key(&key) {
                return Err(self
                    .0
                    .fail(Problem::DuplicateKey(render_path(&self.0.path.borrow()))));
            }
            let value = access.next_value_seed(self)?;
            self.0.path.borrow_mut().pop();
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

// ---- YAML -----------------------------------------------------------------------------

fn parse_yaml(text: &[u8]) -> Result<Value, ParseError> {
    let fail = |problem, at| ParseError {
        format: Format::Yaml,
        problem,
        at,
    };
    let text = std::str::from_utf8(text).map_err(|e| {
        let before = &text[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        fail(Problem::NotUtf8, Position(Some((line, column))))
    })?;
    let mut builder = YamlBuilder {
        referenced: referenced_anchors(text),
        ..YamlBuilder::default()
    };
    let mut events = Events::new(text);
    while let Some(event) = events.next() {
        let (event, span) = event.map_err(|e| {
            let problem = if events.cut() {
                Problem::FlowTooLong
            } else if e.info() == "recursion limit exceeded" {
                // The scanner's own guard against runaway flow nesting.
                Problem::TooDeep
            } else {
                Problem::Syntax
            };
            let marker = if events.cut() {
                &events.last_end()
            } else {
                e.marker()
            };
            fail(problem, at(marker))
        })?;
        builder
            .event(event)
            .map_err(|problem| fail(problem, at(&span.start)))?;
    }
    if events.cut() {
        return Err(fail(Problem::FlowTooLong, at(&events.last_end())));
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// The anchors that aliases refer to, from a first pass over the events.
///
/// Only those are kept while building, and only while what they hold could be
/// repeated within [`MAX_ALIAS_VALUES`]: keeping every anchored value on the
/// chance that an alias comes let 90 nested anchors, and no alias at all, make
/// a 1 MiB file take gigabytes. Each alias repeats at least one value, so past
/// the first `MAX_ALIAS_VALUES + 1` aliases the document is refused anyway,
/// and later ones need not be looked at.
fn referenced_anchors(text: &str) -> HashSet<usize> {
    Events::new(text)
        .map_while(Result::ok)
        .filter_map(|(event, _)| match event {
            Event::Alias(id) => Some(id),
            _ => None,
        })
        .take(MAX_ALIAS_VALUES + 1)
        .collect()
}

fn at(marker: &Marker) -> Position {
    Position(Some((marker.line(), marker.col() + 1)))
}

/// A mapping or sequence being built.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        values: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        /// Whether the merge key `<<` was read: 0 no, 1 it is the pending key,
        /// 2 its value was merged.
        merge: u8,
        /// Keys that came from a merge and were not written in the mapping itself.
        merged: HashSet<String>,
        anchor: usize,
        values: usize,
    },
}

/// YAML's merge key (yaml.org/type/merge.html): `<<: *defaults` puts the keys
/// of the mapping (or of each mapping in a list of them) into the mapping
/// that holds it, except those the mapping writes itself.
const MERGE_KEY: &str = "<<";

/// What an anchor that an alias refers to stands for.
#[derive(Clone)]
enum Anchored {
    /// Its value, how many values that holds, and a scalar's text (an alias
    /// to it may be a mapping key).
    Kept {
        value: Value,
        values: usize,
        text: Option<String>,
    },
    /// More than the aliases may repeat: any alias to it goes over the limit.
    TooBig,
}

#[derive(Default)]
struct YamlBuilder {
    stack: Vec<Frame>,
    /// Anchor ids that aliases refer to ([`referenced_anchors`]).
    referenced: HashSet<usize>,
    /// Those anchors, once their values are complete.
    anchors: HashMap<usize, Anchored>,
    /// Values held by `anchors`.
    kept: usize,
    /// Values repeated by aliases so far.
    aliased: usize,
    /// Values in the document so far.
    values: usize,
    /// About how many bytes of JSON the document holds so far ([`json_size`]).
    bytes: usize,
    documents: usize,
    root: Option<Value>,
}

impl YamlBuilder {
    fn event(&mut self, event: Event<'_>) -> Result<(), Problem> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::SeveralDocuments);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.grow(text.len() + 4)?;
                if self.awaits_key() {
                    // A key: its text as written, whatever it would resolve to.
                    let key = text.into_owned();
                    self.remember(anchor, &Value::String(key.clone()), 1, Some(&key));
                    let merge = key == MERGE_KEY && style == ScalarStyle::Plain && tag.is_none();
                    return if merge {
                        self.set_merge_key()
                    } else {
                        self.set_key(key)
                    };
                }
                self.count(1)?;
                let written = (anchor != 0).then(|| text.to_string());
                let value = self.scalar(text, style, tag.as_deref())?;
                self.remember(anchor, &value, 1, written.as_deref());
                self.add(value, 1)?;
            }
            Event::Alias(id) => {
                let Some(Anchored::Kept {
                    value,
                    values,
                    text,
                }) = self.anchors.get(&id).cloned()
                else {
                    return Err(match self.anchors.get(&id) {
                        Some(Anchored::TooBig) => Problem::AliasLimit,
                        _ => Problem::Syntax,
                    });
                };
                self.aliased += values;
                if self.aliased > MAX_ALIAS_VALUES {
                    return Err(Problem::AliasLimit);
                }
                if self.awaits_key() {
                    let key = text.ok_or(Problem::KeyNotScalar)?;
                    self.grow(key.len() + 4)?;
                    return self.set_key(key);
                }
                self.grow(json_size(&value))?;
                self.count(values)?;
                self.add(value, values)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.count(1)?;
                self.open(tag.as_deref(), "seq")?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    values: 1,
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.count(1)?;
                self.open(tag.as_deref(), "map")?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    merge: 0,
                    merged: HashSet::new(),
                    anchor,
                    values: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, values, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        anchor,
                        values,
                    }) => (Value::Array(items), values, anchor),
                    Some(Frame::Map {
                        map,
                        anchor,
                        values,
                        ..
                    }) => (Value::Object(map), values, anchor),
                    None => return Err(Problem::Syntax),
                };
                self.remember(anchor, &value, values, None);
                self.add(value, values)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// Checks that a mapping or sequence may start here.
    fn open(&self, tag: Option<&Tag>, kind: &str) -> Result<(), Problem> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(Problem::KeyNotScalar);
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Problem::TooDeep);
        }
        match tag {
            Some(tag) if core_suffix(tag) != Some(kind) => Err(self.tag_problem(tag)),
            _ => Ok(()),
        }
    }

    /// Whether the next node is a mapping's key.
    fn awaits_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Sets the key of the mapping being read; it must be new in its mapping,
    /// though it may replace a key that a merge brought in.
    fn set_key(&mut self, text: String) -> Result<(), Problem> {
        if let Some(Frame::Map {
            map, key, merged, ..
        }) = self.stack.last_mut()
        {
            let duplicate = map.contains_key(&text) && !merged.remove(&text);
            *key = Some(text);
            if duplicate {
                return Err(Problem::DuplicateKey(self.path()));
            }
        }
        Ok(())
    }

    /// The key of the mapping being read is the merge key; once per mapping.
    fn set_merge_key(&mut self) -> Result<(), Problem> {
        if let Some(Frame::Map { key, merge, .. }) = self.stack.last_mut() {
            *key = Some(MERGE_KEY.to_owned());
            if *merge != 0 {
                return Err(Problem::DuplicateKey(self.path()));
            }
            *merge = 1;
        }
        Ok(())
    }

    /// Counts `values` more values in the document against [`MAX_VALUES`].
    fn count(&mut self, values: usize) -> Result<(), Problem> {
        self.values += values;
        if self.values > MAX_VALUES {
            return Err(Problem::TooManyValues);
        }
        Ok(())
    }

    /// Counts about `bytes` more bytes of JSON against [`MAX_DOCUMENT_BYTES`]:
    /// an alias repeating a long string grows the document by the string.
    fn grow(&mut self, bytes: usize) -> Result<(), Problem> {
        self.bytes += bytes;
        if self.bytes > MAX_DOCUMENT_BYTES {
            return Err(Problem::TooLarge);
        }
        Ok(())
    }

    /// Keeps a copy of a complete value under its anchor, if an alias uses it
    /// and it fits in what aliases may repeat.
    fn remember(&mut self, anchor: usize, value: &Value, values: usize, text: Option<&str>) {
        if anchor == 0 || !self.referenced.contains(&anchor) {
            return;
        }
        // Every kept anchor is repeated at least once, so keeping more than the
        // aliases may repeat can only end in the alias limit.
        let anchored = if self.kept + values > MAX_ALIAS_VALUES {
            Anchored::TooBig
        } else {
            self.kept += values;
            Anchored::Kept {
                value: value.clone(),
                values,
                text: text.map(str::to_owned),
            }
        };
        self.anchors.insert(anchor, anchored);
    }

    /// Puts a finished value (holding `values` values) into its parent, or makes
    /// it the document.
    fn add(&mut self, value: Value, values: usize) -> Result<(), Problem> {
        if let Some(Frame::Map { merge: 1, .. }) = self.stack.last() {
            return self.merge(value, values);
        }
        match self.stack.last_mut() {
            Some(Frame::Seq {
                items, values: n, ..
            }) => {
                items.push(value);
                *n += values;
            }
            Some(Frame::Map {
                map,
                key,
                values: n,
                ..
            }) => {
                let key = key.take().ok_or(Problem::Syntax)?;
                map.insert(key, value);
                *n += values;
            }
            None => self.root = Some(value),
        }
        Ok(())
    }

    /// Merges the value of a merge key, a mapping or a list of them (earlier
    /// ones first), into the mapping being read: the keys it does not hold yet.
    fn merge(&mut self, value: Value, values: usize) -> Result<(), Problem> {
        let not_mapping = || Problem::MergeNotMapping(self.path());
        let sources = match value {
            Value::Object(source) => vec![source],
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Object(source) => Some(source),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(not_mapping)?,
            _ => return Err(not_mapping()),
        };
        if let Some(Frame::Map {
            map,
            key,
            merge,
            merged,
            values: n,
            ..
        }) = self.stack.last_mut()
        {
            *key = None;
            *merge = 2;
            *n += values;
            for (k, v) in sources.into_iter().flatten() {
                if !map.contains_key(&k) {
                    merged.insert(k.clone());
                    map.insert(k, v);
                }
            }
        }
        Ok(())
    }

    /// The path to the value being read, for messages.
    fn path(&self) -> String {
        let steps: Vec<Step> = self
            .stack
            .iter()
            .filter_map(|frame| match frame {
                Frame::Seq { items, .. } => Some(Step::Index(items.len())),
                Frame::Map { key, .. } => key.clone().map(Step::Key),
            })
            .collect();
        render_path(&steps)
    }

    fn tag_problem(&self, tag: &Tag) -> Problem {
        // As written: saphyr shows `!!binary` as `tag:yaml.org,2002:!binary`.
        let shown = match core_suffix(tag) {
            Some(suffix) => format!("!!{suffix}"),
            None => tag.to_string(),
        };
        Problem::Tag {
            tag: sanitize::cut(&shown, 64),
            path: self.path(),
        }
    }

    /// Resolves a scalar by its tag, or by the core schema when it is plain.
    fn scalar(
        &self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        tag: Option<&Tag>,
    ) -> Result<Value, Problem> {
        let not_finite = || Problem::NotFinite(self.path());
        let Some(tag) = tag else {
            return match style {
                ScalarStyle::Plain => resolve_plain(&text).ok_or_else(not_finite),
                _ => Ok(Value::String(text.into_owned())),
            };
        };
        let resolved = match core_suffix(tag) {
            // `!` alone is the non-specific tag: a string.
            _ if tag.handle.is_empty() && tag.suffix == "!" => {
                Some(Value::String(text.into_owned()))
            }
            Some("str") => Some(Value::String(text.into_owned())),
            Some("null") => is_null(&text).then_some(Value::Null),
            Some("bool") => parse_bool(&text).map(Value::Bool),
            Some("int") => parse_int(&text),
            Some("float") => match parse_int(&text) {
                Some(int) => Some(int),
                None if is_non_finite(&text) => return Err(not_finite()),
                None => match float(&text) {
                    Some(f) => Some(
                        Number::from_f64(f)
                            .map(Value::Number)
                            .ok_or_else(not_finite)?,
                    ),
                    None => None,
                },
            },
            _ => None,
        };
        resolved.ok_or_else(|| self.tag_problem(tag))
    }
}

/// `str`, `int`, ... for a tag of the YAML core schema (`!!str` or its long form).
fn core_suffix(tag: &Tag) -> Option<&str> {
    (tag.is_yaml_core_schema() || tag.handle == "!!").then_some(tag.suffix.as_str())
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A plain scalar's value; `None` when it is a number JSON cannot carry.
fn resolve_plain(text: &str) -> Option<Value> {
    if is_null(text) {
        return Some(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Some(Value::Bool(b));
    }
    if let Some(int) = parse_int(text) {
        return Some(int);
    }
    if is_non_finite(text) {
        return None;
    }
    if let Some(f) = float(text) {
        // None when beyond f64's range (1e999).
        return Number::from_f64(f).map(Value::Number);
    }
    Some(Value::String(text.to_owned()))
}

/// `.inf`, `-.Inf`, `.NAN` and the like.
fn is_non_finite(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN")
}

/// Leading zeros followed by digits (`0755`) are a string in YAML 1.2.
fn digits_with_leading_zero(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.len() > 1 && unsigned.starts_with('0') && unsigned.bytes().all(|b| b.is_ascii_digit())
}

/// Decimal (with an optional sign), `0x`, `0o` and `0b` integers that fit 64 bits.
fn parse_int(text: &str) -> Option<Value> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(d) = unsigned.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = unsigned.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = unsigned.strip_prefix("0b") {
        (2, d)
    } else {
        if digits_with_leading_zero(text) {
            return None;
        }
        (10, unsigned)
    };
    // from_str_radix would accept a second sign.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Value::from(magnitude));
    }
    0i64.checked_sub_unsigned(magnitude).map(Value::from)
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, YAML 1.2's float syntax.
fn looks_like_float(text: &str) -> bool {
    let s = text.strip_prefix(['+', '-']).unwrap_or(text).as_bytes();
    let digits = |s: &[u8], i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut i = 0;
    let whole = digits(s, &mut i);
    let mut fraction = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        fraction = digits(s, &mut i);
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(s, &mut i) == 0 {
            return false;
        }
    }
    i == s.len()
}

/// The value of a float in YAML's float syntax; infinite when out of range.
fn float(text: &str) -> Option<f64> {
    if !looks_like_float(text) || digits_with_leading_zero(text) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<String, String> {
        parse(Format::Yaml, text.as_bytes())
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    fn json(text: &str) -> Result<String, String> {
        parse(Format::Json, text.as_bytes())
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_core_schema() {
        let text = "a: ~\nb: null\nc:\nd: true\ne: FALSE\nf: 42\ng: -7\nh: 0x1F\ni: 0o17\nj: 0b101\n\
                    k: 1.5\nl: 1e3\nm: 0755\nn: yes\no: '42'\np: \"true\"\nq: inf\nr: 99999999999999999999\n\
                    s: .5\nt: +12\nu: 1_000\nv: 12:30\n";
        assert_eq!(
            yaml(text).unwrap(),
            r#"{"a":null,"b":null,"c":null,"d":true,"e":false,"f":42,"g":-7,"h":31,"i":15,"j":5,"k":1.5,"l":1000.0,"m":"0755","n":"yes","o":"42","p":"true","q":"inf","r":1e+20,"s":0.5,"t":12,"u":"1_000","v":"12:30"}"#
        );
    }

    #[test]
    fn yaml_keeps_order_and_nesting() {
        assert_eq!(
            yaml("z: 1\na:\n  - {y: [true, ~], b: s}\n  - |\n    text\n").unwrap(),
            r#"{"z":1,"a":[{"y":[true,null],"b":"s"},"text\n"]}"#
        );
    }

    #[test]
    fn yaml_duplicate_keys_are_refused_with_path_and_position() {
        assert_eq!(
            yaml("a: 1\ndb:\n  user: x\n  user: y\n").unwrap_err(),
            "key `db.user` appears twice in the same mapping (line 4, column 3): keep one of them"
        );
        // The key's text decides, whatever it resolves to.
        assert!(yaml("1: a\n'1': b\n")
            .unwrap_err()
            .contains("key `1` appears twice"));
        // Same key in different mappings is fine.
        assert_eq!(
            yaml("a: {k: 1}\nb: {k: 2}\n").unwrap(),
            r#"{"a":{"k":1},"b":{"k":2}}"#
        );
    }

    #[test]
    fn yaml_non_finite_numbers_are_refused_by_key() {
        for (text, path) in [
            ("n: .nan\n", "n"),
            ("limits:\n  rps: -.Inf\n", "limits.rps"),
            ("big: 1e999\n", "big"),
            ("list: [1, 2, 1.5E+400]\n", "list[2]"),
            ("f: !!float .inf\n", "f"),
        ] {
            let message = yaml(text).unwrap_err();
            assert!(
                message.starts_with(&format!("`{path}` is not a finite number (line ")),
                "{text}: {message}"
            );
        }
        // Quoted, they are text.
        assert_eq!(
            yaml("a: '1e999'\nb: \".nan\"\n").unwrap(),
            r#"{"a":"1e999","b":".nan"}"#
        );
    }

    #[test]
    fn yaml_alias_expansion_is_capped() {
        assert_eq!(
            yaml("base: &b {x: 1, y: 2}\none: *b\ntwo: *b\n").unwrap(),
            r#"{"base":{"x":1,"y":2},"one":{"x":1,"y":2},"two":{"x":1,"y":2}}"#
        );
        // 10 x 10 x 10 x 10 = 10,000 values from a few lines.
        let mut text = String::from("a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n");
        for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c")] {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let message = yaml(&text).unwrap_err();
        assert!(
            message.starts_with(&format!(
                "aliases repeat more than {MAX_ALIAS_VALUES} values in all; the alias at line 3, column "
            )),
            "{message}"
        );
    }

    #[test]
    fn yaml_anchors_on_keys_and_aliases_as_keys() {
        assert_eq!(
            yaml("&k name: 1\nother: *k\n").unwrap(),
            r#"{"name":1,"other":"name"}"#
        );
        // An alias to a scalar is a key as the scalar was written.
        assert_eq!(
            yaml("n: &n 5\nm: {*n : x}\n").unwrap(),
            r#"{"n":5,"m":{"5":"x"}}"#
        );
        assert!(yaml("s: &s [1]\nm: {*s : x}\n")
            .unwrap_err()
            .starts_with("a mapping key must be a plain value"));
        assert!(yaml("k: &k name\n*k : 1\nname: 2\n")
            .unwrap_err()
            .starts_with("key `name` appears twice"));
    }

    #[test]
    fn yaml_anchors_no_alias_uses_are_not_kept() {
        // Kept, each of these would copy everything inside it.
        let nested: String = (0..90)
            .map(|i| format!("{}k: &a{i}\n", " ".repeat(2 * i)))
            .collect();
        let text = format!(
            "{nested}{}k: [{}]\n",
            " ".repeat(180),
            vec!["0"; 5000].join(",")
        );
        assert!(yaml(&text).is_ok());
        // An alias to an anchor bigger than the aliases may repeat goes over the limit.
        let big = format!("a: &a [{}]\nb: *a\n", vec!["0"; MAX_ALIAS_VALUES].join(","));
        assert!(yaml(&big)
            .unwrap_err()
            .starts_with("aliases repeat more than 1000 values in all; the alias at line 2"));
    }

    #[test]
    fn values_are_counted_aliases_as_what_they_repeat() {
        let list = |n: usize| vec!["0"; n].join(",");
        // The mapping, the list and its items.
        assert!(yaml(&format!("a: [{}]\n", list(MAX_VALUES - 2))).is_ok());
        assert!(yaml(&format!("a: [{}]\n", list(MAX_VALUES - 1)))
            .unwrap_err()
            .starts_with(&format!("holds more than {MAX_VALUES} values")));
        assert!(json(&format!("{{\"a\": [{}]}}", list(MAX_VALUES - 1)))
            .unwrap_err()
            .starts_with(&format!("holds more than {MAX_VALUES} values")));
        let aliased = format!(
            "a: &a [{}]\nb: [{}]\nc: *a\n",
            list(900),
            list(MAX_VALUES - 900 - 4)
        );
        assert!(yaml(&aliased)
            .unwrap_err()
            .starts_with(&format!("holds more than {MAX_VALUES} values")));
    }

    #[test]
    fn yaml_that_is_json_is_read_as_json_to_the_same_value() {
        let text = r#"{"a": [1, 2.5, -3, 1e3, "x\u00e9"], "b": {"c": null, "d": true}}"#;
        let as_json = json(text).unwrap();
        assert_eq!(yaml(text).unwrap(), as_json);
        assert_eq!(
            parse_yaml(text.as_bytes()).unwrap().to_string(),
            as_json,
            "the YAML reader agrees"
        );
        // JSON's refusals still apply, YAML's too when it is not JSON.
        assert!(yaml(r#"{"a": 1, "a": 2}"#)
            .unwrap_err()
            .starts_with("key `a` appears twice"));
        assert!(yaml("{a: 1, a: 2}")
            .unwrap_err()
            .starts_with("key `a` appears twice"));
    }

    #[test]
    fn yaml_merge_keys() {
        let base = "base: &b {user: u, pw: p}\n";
        // The mapping's own keys win, wherever they are written; merged keys
        // come where the merge key is.
        assert_eq!(
            yaml(&format!("{base}prod:\n  <<: *b\n  pw: q\n")).unwrap(),
            r#"{"base":{"user":"u","pw":"p"},"prod":{"user":"u","pw":"q"}}"#
        );
        assert_eq!(
            yaml(&format!("{base}prod: {{pw: q, <<: *b}}\n")).unwrap(),
            r#"{"base":{"user":"u","pw":"p"},"prod":{"pw":"q","user":"u"}}"#
        );
        // A list of mappings: the earlier ones win.
        assert_eq!(
            yaml("a: &a {x: 1, z: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b]}\n").unwrap(),
            r#"{"a":{"x":1,"z":1},"b":{"y":2,"z":2},"c":{"x":1,"z":1,"y":2}}"#
        );
        // Quoted or tagged, `<<` is a plain key.
        assert_eq!(
            yaml("c: {'<<': {x: 1}}\nd: {!!str <<: 1}\n").unwrap(),
            r#"{"c":{"<<":{"x":1}},"d":{"<<":1}}"#
        );
        // A key the mapping writes twice is still a duplicate, merged or not.
        assert_eq!(
            yaml(&format!("{base}c:\n  <<: *b\n  pw: 1\n  pw: 2\n")).unwrap_err(),
            "key `c.pw` appears twice in the same mapping (line 5, column 3): keep one of them"
        );
        assert!(yaml(&format!("{base}c:\n  <<: *b\n  <<: *b\n"))
            .unwrap_err()
            .starts_with("key `c.<<` appears twice"));
        assert_eq!(
            yaml("c:\n  <<: 5\n").unwrap_err(),
            "`c.<<` merges what is not a mapping (line 2, column 7): the merge key `<<` takes \
             a mapping or a list of mappings; quote it ('<<') if it is meant as a plain key"
        );
        assert!(yaml("c: {<<: [{a: 1}, [2]]}\n")
            .unwrap_err()
            .starts_with("`c.<<` merges what is not a mapping"));
    }

    #[test]
    fn yaml_depth_is_capped() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(yaml(&deep).is_ok());
        let deeper = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(
            yaml(&deeper).unwrap_err(),
            format!(
                "nested more than {MAX_DEPTH} levels deep (line 1, column {})",
                MAX_DEPTH + 1
            )
        );
        // Far deeper than any stack would survive, refused all the same.
        let abyss = "[".repeat(1_000_000);
        assert!(yaml(&abyss).unwrap_err().starts_with("nested more than"));
        let block = (0..1000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>();
        assert!(yaml(&block).unwrap_err().starts_with("nested more than"));
    }

    #[test]
    fn yaml_other_refusals() {
        assert_eq!(
            yaml("a: 1\n---\nb: 2\n").unwrap_err(),
            "holds more than one YAML document; the second starts at line 2, column 1"
        );
        assert!(yaml("? [a, b]\n: 1\n")
            .unwrap_err()
            .starts_with("a mapping key must be a plain value"));
        assert!(yaml("a: !secret x\n")
            .unwrap_err()
            .starts_with("`a` has the tag !secret"));
        assert!(yaml("a: !!int x\n")
            .unwrap_err()
            .starts_with("`a` has the tag !!int, "));
        assert!(yaml("a: !!binary aGk=\n")
            .unwrap_err()
            .starts_with("`a` has the tag !!binary, "));
        assert_eq!(
            yaml("a: !!str 12\nb: !!int '12'\nc: ! 5\n").unwrap(),
            r#"{"a":"12","b":12,"c":"5"}"#
        );
        let bad = parse(Format::Yaml, b"a: \xff\n").unwrap_err();
        assert_eq!(bad.to_string(), "not UTF-8 text (line 1, column 4)");
        let bad = [b'a', b':', b'\n', 0xC3];
        assert_eq!(
            parse(Format::Yaml, &bad).unwrap_err().to_string(),
            "not UTF-8 text (line 2, column 1)"
        );
        assert!(yaml("a: [1\n")
            .unwrap_err()
            .starts_with("not valid YAML (line "));
        assert!(yaml("a: *nowhere\n")
            .unwrap_err()
            .starts_with("not valid YAML (line "));
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        assert_eq!(json("\u{feff}{\"a\": 1}").unwrap(), r#"{"a":1}"#);
        assert_eq!(yaml("\u{feff}a: 1\n").unwrap(), r#"{"a":1}"#);
    }

    #[test]
    fn json_refusals() {
        assert_eq!(
            json("{\"a\": {\"b\": 1, \"b\": 2}}").unwrap_err(),
            "key `a.b` appears twice in the same mapping (line 1, column 18): keep one of them"
        );
        let message = json("{\"x\": [1, {\"big\": 1e999}]}").unwrap_err();
        assert!(
            message.starts_with("`x[1].big` is not a finite number (line 1, column "),
            "{message}"
        );
        assert_eq!(
            json("{\"a\": 1} x").unwrap_err(),
            "not valid JSON (line 1, column 10)"
        );
        let deeper = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(json(&deeper)
            .unwrap_err()
            .starts_with("nested more than 100 levels deep (line 1, column"));
        // A key path never quotes more than 64 characters of a key, nor a control character.
        let long = format!(
            "{{\"{}\\u0007\": 1, \"{}\\u0007\": 2}}",
            "k".repeat(500),
            "k".repeat(500)
        );
        let message = json(&long).unwrap_err();
        assert!(
            message.len() < 200 && !message.contains('\u{7}'),
            "{message}"
        );
    }
}
