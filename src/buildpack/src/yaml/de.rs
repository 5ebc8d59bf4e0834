//! serde's derives run over the positioned tree, to say why serde_yaml refused a
//! document: the same types, read as serde_yaml reads YAML, in serde's own words, with
//! the kind of error typed. serde_yaml keeps the key path and the position of its errors
//! only in their text, and none of their kind.
//!
//! It reads what the types ask for and nothing more, as serde_yaml does: an alias is
//! followed only where a value is read, so an alias bomb under an ignored key costs
//! nothing, and one under a read key fails at its first wrong type.

use super::{Kind, Node, Style};
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

/// Nesting deeper than this is refused, as serde_yaml refuses it (an alias inside the
/// node it names would otherwise recurse for ever).
const MAX_DEPTH: usize = 128;

/// Why the value is not what the type takes, in serde's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub message: String,
    pub kind: ErrorKind,
}

/// The errors a manifest points at by a key rather than by the value at its path, and
/// the end of what could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A key the type does not have (`#[serde(deny_unknown_fields)]`).
    UnknownField(String),
    /// A key written twice in the same mapping.
    DuplicateField(String),
    /// The types read on past the document's syntax error (`yaml::parse_prefix`), where
    /// serde_yaml reports that error.
    Unread,
    /// A key that is not one the type reads (`[a]: x` where a name is): the key's line
    /// and column, as the key path ends at the mapping.
    Key {
        line: usize,
        column: usize,
    },
    Other,
}

impl Error {
    fn of(kind: ErrorKind, words: &de::value::Error) -> Self {
        Error {
            message: words.to_string(),
            kind,
        }
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            kind: ErrorKind::Other,
        }
    }

    // serde's own words, and the kind beside them.
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::of(
            ErrorKind::UnknownField(field.to_string()),
            &de::Error::unknown_field(field, expected),
        )
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::of(
            ErrorKind::DuplicateField(field.to_string()),
            &de::Error::duplicate_field(field),
        )
    }
}

/// What the nodes of one document share: the node of each `&anchor`, and how many
/// aliases may still be followed.
pub struct Document<'a> {
    root: &'a Node,
    anchors: HashMap<usize, &'a Node>,
    jumps_left: Cell<usize>,
}

impl<'a> Document<'a> {
    pub fn new(root: &'a Node) -> Self {
        fn walk<'a>(node: &'a Node, anchors: &mut HashMap<usize, &'a Node>) -> usize {
            if let Some(id) = node.anchor {
                anchors.insert(id, node);
            }
            1 + match &node.kind {
                Kind::Sequence { items, .. } => items.iter().map(|n| walk(n, anchors)).sum(),
                Kind::Mapping { entries, .. } => entries
                    .iter()
                    .map(|(k, v)| walk(k, anchors) + walk(v, anchors))
                    .sum(),
                Kind::Scalar { .. } | Kind::Alias { .. } => 0,
            }
        }
        let mut anchors = HashMap::new();
        let nodes = walk(root, &mut anchors);
        Document {
            root,
            anchors,
            // serde_yaml's repetition limit: 100 alias uses per event of the document (a
            // node here).
            jumps_left: Cell::new(nodes.saturating_mul(100)),
        }
    }

    /// The deserializer of the whole document.
    pub fn deserializer(&self) -> Deserializer<'_> {
        Deserializer {
            node: self.root,
            doc: self,
            depth: 0,
        }
    }
}

/// One node, read as serde_yaml reads the text it was parsed from.
#[derive(Clone, Copy)]
pub struct Deserializer<'a> {
    node: &'a Node,
    doc: &'a Document<'a>,
    depth: usize,
}

impl<'a> Deserializer<'a> {
    fn child(self, node: &'a Node) -> Self {
        Deserializer {
            node,
            doc: self.doc,
            depth: self.depth + 1,
        }
    }

    /// The node itself, or the one an alias names.
    fn target(self) -> Result<Self, Error> {
        let Kind::Alias { anchor } = self.node.kind else {
            if self.node.cut && matches!(self.node.kind, Kind::Scalar { .. }) {
                return Err(unread());
            }
            return Ok(self);
        };
        let left = self.doc.jumps_left.get();
        if left == 0 {
            return Err(de::Error::custom("repetition limit exceeded"));
        }
        self.doc.jumps_left.set(left - 1);
        match self.doc.anchors.get(&anchor) {
            Some(node) => self.child(node).target(),
            None => Err(de::Error::custom("unknown anchor")),
        }
    }

    fn deeper(self) -> Result<Self, Error> {
        if self.depth >= MAX_DEPTH {
            Err(de::Error::custom("recursion limit exceeded"))
        } else {
            Ok(self)
        }
    }

    /// The text and tag of a plain scalar (an empty one is null to serde_yaml).
    fn plain(&self) -> Option<(&'a str, Option<&'a str>)> {
        match &self.node.kind {
            Kind::Scalar {
                value,
                style: Style::Plain,
                tag,
            } => Some((value, tag.as_deref())),
            _ => None,
        }
    }

    /// serde_yaml's null where an `Option` is read: an untagged plain `~`, `null` or
    /// nothing, or a plain null tagged `!!null`; another tag makes any value `Some`.
    fn is_none(&self) -> Result<bool, Error> {
        match self.plain() {
            Some((value, None)) => Ok(is_null(value)),
            Some((value, Some(NULL))) if value.is_empty() || !is_null(value) => {
                Err(de::Error::invalid_value(Unexpected::Str(value), &"null"))
            }
            Some((_, Some(tag))) => Ok(tag == NULL),
            None => Ok(false),
        }
    }

    /// An empty plain scalar: serde_yaml reads it as an empty sequence or mapping
    /// (`include_files:` with nothing after it); `~` is not one.
    fn is_empty_plain(&self) -> bool {
        self.plain().is_some_and(|(value, _)| value.is_empty())
    }

    /// serde_yaml's error for a value of the wrong type: the value, as read without a
    /// type, shown to a visitor that takes nothing (serde_yaml's own way).
    fn invalid_type(self, expected: &dyn Expected) -> Error {
        struct Refuse<'e>(&'e dyn Expected);
        enum Never {}
        impl Visitor<'_> for Refuse<'_> {
            type Value = Never;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        match de::Deserializer::deserialize_any(self, Refuse(expected)) {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn visit_items<V: Visitor<'a>>(self, items: &'a [Node], visitor: V) -> Result<V::Value, Error> {
        let de = self.deeper()?;
        visitor.visit_seq(Items {
            rest: items.iter(),
            de,
        })
    }

    fn visit_entries<V: Visitor<'a>>(
        self,
        entries: &'a [(Node, Node)],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let de = self.deeper()?;
        visitor.visit_map(Entries {
            rest: entries.iter(),
            value: None,
            de,
        })
    }

    /// After the last item of a collection: the end, unless a syntax error cut it short.
    fn end<T>(self) -> Result<Option<T>, Error> {
        if self.node.cut {
            Err(unread())
        } else {
            Ok(None)
        }
    }
}

fn unread() -> Error {
    Error {
        message: "the document's syntax error ends it here".into(),
        kind: ErrorKind::Unread,
    }
}

/// The core schema's tags, which serde_yaml reads a scalar by.
const BOOL: &str = "tag:yaml.org,2002:bool";
const INT: &str = "tag:yaml.org,2002:int";
const FLOAT: &str = "tag:yaml.org,2002:float";
const NULL: &str = "tag:yaml.org,2002:null";

/// serde_yaml's `visit_scalar`: a plain scalar, untagged or with a local tag (`!name`),
/// is null, a boolean, a number or text as it reads; one with a core type's tag
/// (`!!int`) must be of that type; any other (quoted, a block, tagged `!!str`) is text.
fn visit_scalar<'a, V: Visitor<'a>>(
    value: &'a str,
    style: Style,
    tag: Option<&str>,
    visitor: V,
) -> Result<V::Value, Error> {
    let wrong = |what: &'static str| Err(de::Error::invalid_value(Unexpected::Str(value), &what));
    match (tag, Plain::of(value)) {
        (Some(BOOL), Plain::Bool(b)) => visitor.visit_bool(b),
        (Some(BOOL), _) => wrong("a boolean"),
        (Some(INT), int @ (Plain::U64(_) | Plain::I64(_) | Plain::U128(_) | Plain::I128(_))) => {
            int.visit(value, visitor)
        }
        (Some(INT), _) => wrong("an integer"),
        (Some(FLOAT), _) => match parse_f64(value) {
            Some(f) => visitor.visit_f64(f),
            None => wrong("a float"),
        },
        (Some(NULL), _) if !value.is_empty() && is_null(value) => visitor.visit_unit(),
        (Some(NULL), _) => wrong("null"),
        (None, plain) if style == Style::Plain => plain.visit(value, visitor),
        (Some(local), plain) if local.starts_with('!') && style == Style::Plain => {
            plain.visit(value, visitor)
        }
        _ => visitor.visit_borrowed_str(value),
    }
}

/// serde_yaml's `parse_f64`: a float, or a whole number read as one, or `.inf`, `.nan`.
fn parse_f64(value: &str) -> Option<f64> {
    let unsigned = match value.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => value,
    };
    match (unsigned, value) {
        (".inf" | ".Inf" | ".INF", _) => Some(f64::INFINITY),
        (_, "-.inf" | "-.Inf" | "-.INF") => Some(f64::NEG_INFINITY),
        (_, ".nan" | ".NaN" | ".NAN") => Some(f64::NAN),
        _ => unsigned.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

/// How serde_yaml reads a plain scalar where no type says (its `visit_untagged_scalar`):
/// null, a boolean, an integer, a float, else text.
enum Plain {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    U128(u128),
    I128(i128),
    F64(f64),
    Text,
}

impl Plain {
    /// Asked of serde_yaml itself, so that the two agree. A plain scalar read on its own
    /// is the same scalar, except for `---` and `...`, which would start or end a
    /// document there, and a byte order mark, which would be the stream's and dropped
    /// (`\u{feff}32` would read as 32); as values they are text.
    fn of(value: &str) -> Plain {
        if value.starts_with("---") || value.starts_with("...") || value.starts_with('\u{feff}') {
            return Plain::Text;
        }
        serde_yaml::from_str(value).unwrap_or(Plain::Text)
    }

    fn visit<'de, V: Visitor<'de>>(self, text: &'de str, visitor: V) -> Result<V::Value, Error> {
        match self {
            Plain::Null => visitor.visit_unit(),
            Plain::Bool(b) => visitor.visit_bool(b),
            Plain::U64(n) => visitor.visit_u64(n),
            Plain::I64(n) => visitor.visit_i64(n),
            Plain::U128(n) => visitor.visit_u128(n),
            Plain::I128(n) => visitor.visit_i128(n),
            Plain::F64(n) => visitor.visit_f64(n),
            Plain::Text => visitor.visit_borrowed_str(text),
        }
    }
}

impl<'de> de::Deserialize<'de> for Plain {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Read;
        impl Visitor<'_> for Read {
            type Value = Plain;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_unit<E>(self) -> Result<Plain, E> {
                Ok(Plain::Null)
            }
            fn visit_none<E>(self) -> Result<Plain, E> {
                Ok(Plain::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Plain, E> {
                Ok(Plain::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Plain, E> {
                Ok(Plain::U64(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Plain, E> {
                Ok(Plain::I64(n))
            }
            fn visit_u128<E>(self, n: u128) -> Result<Plain, E> {
                Ok(Plain::U128(n))
            }
            fn visit_i128<E>(self, n: i128) -> Result<Plain, E> {
                Ok(Plain::I128(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Plain, E> {
                Ok(Plain::F64(n))
            }
            fn visit_str<E>(self, _: &str) -> Result<Plain, E> {
                Ok(Plain::Text)
            }
        }
        d.deserialize_any(Read)
    }
}

/// serde_yaml's nulls (`parse_null`); an empty plain scalar is one too.
fn is_null(plain: &str) -> bool {
    matches!(plain, "" | "~" | "null" | "Null" | "NULL")
}

impl<'a> de::Deserializer<'a> for Deserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match &de.node.kind {
            Kind::Scalar { value, style, tag } => {
                visit_scalar(value, *style, tag.as_deref(), visitor)
            }
            Kind::Sequence { items, .. } => de.visit_items(items, visitor),
            Kind::Mapping { entries, .. } => de.visit_entries(entries, visitor),
            // `target` followed it.
            Kind::Alias { .. } => Err(de::Error::custom("unknown anchor")),
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match de.plain().map(|(value, _)| Plain::of(value)) {
            Some(Plain::Bool(b)) => visitor.visit_bool(b),
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    // serde_yaml's `deserialize_u64`: a plain scalar that is a whole number, else an
    // error naming what the value is (`-32` is an integer of the wrong type).
    fn deserialize_u64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match de.plain().map(|(value, _)| Plain::of(value)) {
            Some(Plain::U64(n)) => visitor.visit_u64(n),
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_u8<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_i64<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        let signed = match de.plain().map(|(value, _)| Plain::of(value)) {
            Some(Plain::I64(n)) => Some(n),
            Some(Plain::U64(n)) => i64::try_from(n).ok(),
            _ => None,
        };
        match signed {
            Some(n) => visitor.visit_i64(n),
            None => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_i8<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    /// Any scalar as it is written: `version: 1.10` is the text "1.10", not a number.
    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match &de.node.kind {
            Kind::Scalar { value, .. } => visitor.visit_borrowed_str(value),
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(
            "serialization and deserialization of bytes in YAML is not implemented",
        ))
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        if de.is_none()? {
            visitor.visit_none()
        } else {
            visitor.visit_some(de)
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        let null = match de.plain() {
            Some((value, None)) => is_null(value),
            Some((value, Some(tag))) => tag == NULL && !value.is_empty() && is_null(value),
            None => false,
        };
        match &de.node.kind {
            _ if null => visitor.visit_unit(),
            Kind::Scalar { value, .. } => {
                Err(de::Error::invalid_value(Unexpected::Str(value), &"null"))
            }
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self.deeper()?)
    }

    /// A sequence, or an empty plain scalar.
    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match &de.node.kind {
            Kind::Sequence { items, .. } => de.visit_items(items, visitor),
            _ if de.is_empty_plain() => de.visit_items(&[], visitor),
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    /// A mapping, or an empty plain scalar, as for a sequence.
    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let de = self.target()?;
        match &de.node.kind {
            Kind::Mapping { entries, .. } => de.visit_entries(entries, visitor),
            _ if de.is_empty_plain() => de.visit_entries(&[], visitor),
            _ => Err(de.invalid_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    /// A scalar names a unit variant; serde_yaml reads other variants from tags, which
    /// the tree does not keep (no manifest type is an enum).
    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let de = self.target()?;
        let unexpected = match &de.node.kind {
            Kind::Scalar { value, .. } => {
                return visitor.visit_enum(value.as_str().into_deserializer())
            }
            Kind::Mapping { .. } => Unexpected::Map,
            _ => Unexpected::Seq,
        };
        Err(de::Error::invalid_type(
            unexpected,
            &"a YAML tag starting with '!'",
        ))
    }

    /// Skipped unread, aliases and all.
    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { <V: Visitor<'a>> i128 u128 f32 f64 }
}

struct Items<'a> {
    rest: std::slice::Iter<'a, Node>,
    de: Deserializer<'a>,
}

impl<'a> de::SeqAccess<'a> for Items<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.rest.next() {
            Some(item) => seed.deserialize(self.de.child(item)).map(Some),
            None => self.de.end(),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.rest.len())
    }
}

struct Entries<'a> {
    rest: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
    de: Deserializer<'a>,
}

impl<'a> de::MapAccess<'a> for Entries<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.rest.next() else {
            return self.de.end();
        };
        self.value = Some(value);
        seed.deserialize(self.de.child(key))
            .map(Some)
            .map_err(|mut e| {
                if e.kind == ErrorKind::Other {
                    e.kind = ErrorKind::Key {
                        line: key.line,
                        column: key.column,
                    };
                }
                e
            })
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value asked for before its key"))?;
        seed.deserialize(self.de.child(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.rest.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Reads `text` both ways: serde_yaml from the text, and this over its tree.
    fn both<T: de::DeserializeOwned>(text: &str) -> (Result<T, String>, Result<T, Error>) {
        let yaml = serde_yaml::from_str(text).map_err(|e| e.to_string());
        let root = super::super::parse(text)
            .expect("yaml")
            .expect("a document");
        let doc = Document::new(&root);
        (yaml, T::deserialize(doc.deserializer()))
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        #[serde(default)]
        text: Vec<String>,
        #[serde(default)]
        number: Option<u32>,
        #[serde(default)]
        maybe: Option<String>,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        ignored: serde::de::IgnoredAny,
    }

    #[test]
    fn reads_what_serde_yaml_reads() {
        for text in [
            // Any scalar is text where text is asked for, as written.
            "text: [1.10, 8080, true, ~, null, '', 0x1F, -0, 2027-04-01, '3', !!str 5, !x y]",
            "number: 32",
            "number: 0x20",
            "number: !!str 32",
            "number: ~",
            "number:",
            "maybe: ~",
            "maybe: ''",
            "maybe: !x ~",
            "maybe: !!null null",
            "list:",
            "list: []",
            "ignored: {a: 1, a: 2}",
            "text: &t [a, b]\nlist: *t",
        ] {
            let (yaml, tree) = both::<Typed>(text);
            assert_eq!(tree.map_err(|e| e.message), yaml, "{text}");
        }
    }

    #[test]
    fn refuses_in_serde_yamls_words_with_the_kind_typed() {
        for text in [
            "number: '32'",
            "number: -32",
            "number: 32M",
            "number: 1.5",
            "number: 70000000000",
            "number: [1]",
            "maybe: !!null x",
            "maybe: [a]",
            "list: ~",
            "list: 3",
            "list: !!str 3",
            "list: !!int x",
            "list: {a: b}",
            "text: [[a]]",
            "text: [{a: b}]",
            // Text that starts with a byte order mark, not the number or null after it.
            "number: \u{feff}32",
            "list: \u{feff}",
        ] {
            let (yaml, tree) = both::<Typed>(text);
            let yaml = yaml.expect_err(text);
            let tree = tree.expect_err(text);
            // serde_yaml's message is serde's, mostly between its key path and position.
            assert!(yaml.contains(&tree.message), "{text}: {yaml} / {tree:?}");
            assert_eq!(tree.kind, ErrorKind::Other, "{text}");
        }
        let (_, tree) = both::<Typed>("number: 1\nother: 2");
        let tree = tree.expect_err("unknown");
        assert_eq!(tree.kind, ErrorKind::UnknownField("other".into()));
        assert!(tree
            .message
            .starts_with("unknown field `other`, expected one of `text`"));
        let (_, tree) = both::<Typed>("number: 1\nnumber: 2");
        assert_eq!(
            tree.expect_err("twice"),
            Error {
                message: "duplicate field `number`".into(),
                kind: ErrorKind::DuplicateField("number".into())
            }
        );
    }

    #[test]
    fn a_syntax_error_ends_what_is_read() {
        let read = |text: &str| {
            let (root, error) = super::super::parse_prefix(text);
            assert!(error.is_some(), "{text}");
            let root = root.expect("a prefix");
            let doc = Document::new(&root);
            Typed::deserialize(doc.deserializer()).expect_err(text)
        };
        // A wrong value before the error is found, as serde_yaml finds it.
        let text = "number: x\nlist: [a\n";
        assert!(serde_yaml::from_str::<Typed>(text)
            .expect_err("wrong")
            .to_string()
            .starts_with("number: invalid type"));
        assert_eq!(read(text).kind, ErrorKind::Other);
        // Past it, nothing is read: serde_yaml reports the error itself there.
        assert_eq!(read("list: [a, b\n").kind, ErrorKind::Unread);
        assert_eq!(read("number: 1\nlist: *nowhere\n").kind, ErrorKind::Unread);
    }

    #[test]
    fn aliases_are_followed_only_where_a_value_is_read() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, this) in ('a'..='h').zip('b'..='i') {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!("{this}: &{this} [{refs}]\n"));
        }
        #[derive(Debug, Deserialize)]
        struct Reads {
            #[serde(default)]
            list: Vec<String>,
        }
        let root = super::super::parse(&bomb).expect("yaml").expect("doc");
        let doc = Document::new(&root);
        let reads = Reads::deserialize(doc.deserializer()).expect("ignored, never expanded");
        assert!(reads.list.is_empty());
        let text = format!("{bomb}list: *i\n");
        let root = super::super::parse(&text).expect("yaml").expect("doc");
        let doc = Document::new(&root);
        let err = Reads::deserialize(doc.deserializer()).expect_err("a list where text is");
        assert_eq!(err.message, "invalid type: sequence, expected a string");
        // An alias inside the node it names.
        let root = super::super::parse("list: &l [a, *l]\n")
            .expect("yaml")
            .expect("doc");
        let doc = Document::new(&root);
        let err = serde_yaml::Value::deserialize(doc.deserializer()).expect_err("endless");
        assert!(err.message.contains("limit exceeded"), "{err}");
    }
}
