//! The configuration as the HTTP responses will carry it, rendered once per
//! load so that serving a request is a map lookup and a cheap `Bytes` clone.
//!
//! Each rendering carries a strong `ETag`, a 64-bit hash of its bytes: equal
//! documents give equal tags, across reloads and restarts, so an app can poll
//! with `If-None-Match` and get `304` until the content really changes.
//!
//! Every value inside the document, however deep, is served as the slice of
//! the whole rendering that holds it (the same bytes): rendering records where
//! each value starts and ends, keyed by its container and its key (or index),
//! so that reading `db/password` is two map lookups. A part's tag is the hash
//! of its own bytes, so it follows that value only.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::ops::Range;

use bytes::Bytes;
use http::header::HeaderValue;
use serde_json::{Map, Value};

/// Served when no configuration source is found, byte for byte as the original
/// demo served it.
pub(crate) const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// The length of an entity tag: 16 hex digits in quotes.
const TAG_LEN: usize = 18;

/// One rendered JSON body and its entity tag.
#[derive(Clone)]
pub(crate) struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    /// `body` with its tag.
    pub(crate) fn new(body: Bytes) -> Self {
        let etag = header(Bytes::copy_from_slice(&etag(&body)));
        Self { body, etag }
    }
}

/// `"0123456789abcdef"`: the tag of `body`.
fn etag(body: &[u8]) -> [u8; TAG_LEN] {
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    let mut tag = [b'"'; TAG_LEN];
    let hex = format!("{:016x}", hasher.finish());
    tag[1..TAG_LEN - 1].copy_from_slice(hex.as_bytes());
    tag
}

fn header(tag: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(tag).expect("hex digits in quotes are a valid header value")
}

/// The container id of a value that is not a mapping or a sequence.
const LEAF: u32 = u32::MAX;

/// Pre-rendered JSON: the whole mapping, and where each value is in it.
pub(crate) struct Document {
    whole: Rendered,
    /// By container id (the top-level mapping is 0), each key or decimal index
    /// to the value's place: a lookup borrows the step, allocating nothing.
    parts: Vec<HashMap<Box<str>, Place>>,
}

/// Where a value is rendered in the whole, and its id if it is a container.
#[derive(Clone)]
struct Place {
    body: Range<usize>,
    id: u32,
}

impl PartialEq for Document {
    // The values are parts of the whole.
    fn eq(&self, other: &Self) -> bool {
        self.whole.body == other.whole.body
    }
}

/// Renders values as `serde_json` does (compact), recording each one's place.
struct Renderer {
    body: Vec<u8>,
    parts: Vec<HashMap<Box<str>, Place>>,
}

impl Renderer {
    /// Renders `value`; returns its container id ([`LEAF`] for a scalar).
    fn value(&mut self, value: &Value) -> u32 {
        match value {
            Value::Object(map) => {
                let id = self.container();
                self.body.push(b'{');
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        self.body.push(b',');
                    }
                    write_json(&mut self.body, key);
                    self.body.push(b':');
                    self.child(id, key.as_str().into(), value);
                }
                self.body.push(b'}');
                id
            }
            Value::Array(items) => {
                let id = self.container();
                self.body.push(b'[');
                for (i, value) in items.iter().enumerate() {
                    if i > 0 {
                        self.body.push(b',');
                    }
                    self.child(id, i.to_string().into(), value);
                }
                self.body.push(b']');
                id
            }
            scalar => {
                write_json(&mut self.body, scalar);
                LEAF
            }
        }
    }

    fn container(&mut self) -> u32 {
        self.parts.push(HashMap::new());
        u32::try_from(self.parts.len() - 1).expect("fewer containers than MAX_VALUES")
    }

    fn child(&mut self, parent: u32, key: Box<str>, value: &Value) {
        let start = self.body.len();
        let id = self.value(value);
        let place = Place {
            body: start..self.body.len(),
            id,
        };
        self.parts[parent as usize].insert(key, place);
    }
}

impl Document {
    /// Renders a top-level mapping, keeping its key order: the same bytes as
    /// `serde_json` renders the object, each value's slice among them.
    pub(crate) fn from_map(map: Map<String, Value>) -> Self {
        let mut renderer = Renderer {
            body: Vec::new(),
            parts: Vec::new(),
        };
        renderer.value(&Value::Object(map));
        Self {
            whole: Rendered::new(Bytes::from(renderer.body)),
            parts: renderer.parts,
        }
    }

    /// The built-in demo document.
    pub(crate) fn demo() -> Self {
        let map = serde_json::from_str(DEMO).expect("the built-in demo document is a JSON object");
        Self::from_map(map)
    }

    /// The whole configuration as a JSON object.
    #[cfg(test)]
    pub(crate) fn whole(&self) -> &Rendered {
        &self.whole
    }

    /// The JSON text of the value at `path` (keys of mappings, decimal indexes
    /// of sequences); the whole document for an empty path.
    pub(crate) fn find<S: AsRef<str>>(&self, path: &[S]) -> Option<Bytes> {
        let mut id = 0;
        let mut body = 0..self.whole.body.len();
        for step in path {
            if id == LEAF {
                return None;
            }
            let place = self.parts.get(id as usize)?.get(step.as_ref())?;
            body = place.body.clone();
            id = place.id;
        }
        Some(self.whole.body.slice(body))
    }

    /// The value at `path` with its tag.
    pub(crate) fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<Rendered> {
        if path.is_empty() {
            return Some(self.whole.clone());
        }
        self.find(path).map(Rendered::new)
    }

    /// Several values as one JSON object, each under its name: `{"a":1,"b.c":2}`;
    /// `Err(name)` for the first one missing. A name given twice is answered once.
    pub(crate) fn select<'a, S: AsRef<str>>(
        &self,
        wanted: &'a [(String, Vec<S>)],
    ) -> Result<Rendered, &'a str> {
        let mut body = vec![b'{'];
        let mut seen = std::collections::HashSet::new();
        for (name, path) in wanted {
            if !seen.insert(name.as_str()) {
                continue;
            }
            let value = self.find(path).ok_or(name.as_str())?;
            if body.len() > 1 {
                body.push(b',');
            }
            write_json(&mut body, name);
            body.push(b':');
            body.extend_from_slice(&value);
        }
        body.push(b'}');
        Ok(Rendered::new(Bytes::from(body)))
    }
}

/// Splits a key path as written in a URL (`db/password`, `hosts/0`) into its
/// steps, each percent-decoded, so that `a%2Fb` is one key holding a slash;
/// `None` if an escape is malformed or not UTF-8.
pub(crate) fn split_path(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    raw.split('/').map(percent_decode).collect()
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    serde_json::to_writer(out, value).expect("a JSON value or key always renders");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_renders_to_exactly_the_original_bytes() {
        let demo = Document::demo();
        assert_eq!(demo.whole().body, DEMO.as_bytes());
        let body = |key| demo.get(&[key]).map(|r| r.body);
        assert_eq!(
            body("Scope").as_deref(),
            Some(&b"\"some-service.admin\""[..])
        );
        assert_eq!(
            body("Password").as_deref(),
            Some(&b"\"not-a-real-p4$$w0rd\""[..])
        );
        assert!(demo.get(&["scope"]).is_none());
    }

    #[test]
    fn keeps_key_order_and_nested_values() {
        let map = serde_json::from_str(r#"{"z":1,"a":{"y":[true,null],"b":"s"},"m":2.5}"#)
            .expect("valid JSON object");
        let doc = Document::from_map(map);
        assert_eq!(
            doc.whole().body,
            &br#"{"z":1,"a":{"y":[true,null],"b":"s"},"m":2.5}"#[..]
        );
        let body = |key| doc.get(&[key]).map(|r| r.body);
        assert_eq!(
            body("a").as_deref(),
            Some(&br#"{"y":[true,null],"b":"s"}"#[..])
        );
        assert_eq!(body("m").as_deref(), Some(&b"2.5"[..]));
    }

    #[test]
    fn renders_as_serde_json_does_and_serves_each_value_as_its_slice() {
        let text = r#"{"q\"k":"v\n\u0001","é":{"a":[1,2.5,null]},"":"","\\":[],"n":-0}"#;
        let map: Map<String, Value> = serde_json::from_str(text).expect("object");
        let doc = Document::from_map(map.clone());
        assert_eq!(
            doc.whole().body,
            Value::Object(map.clone()).to_string().as_bytes()
        );
        for (key, value) in &map {
            let part = doc.get(&[key]).expect("every key");
            let json = value.to_string();
            assert_eq!(part.body, json.as_bytes(), "{key}");
            assert_eq!(part.etag.as_bytes(), etag(json.as_bytes()), "{key}");
        }
        let empty = Document::from_map(Map::new());
        assert_eq!(empty.whole().body, &b"{}"[..]);
    }

    #[test]
    fn etags_follow_the_content() {
        let doc = |json: &str| Document::from_map(serde_json::from_str(json).expect("object"));
        let (a, b, c) = (
            doc(r#"{"k":1,"j":2}"#),
            doc(r#"{"k":1,"j":2}"#),
            doc(r#"{"k":1,"j":3}"#),
        );
        assert_eq!(a.whole().etag, b.whole().etag);
        assert_ne!(a.whole().etag, c.whole().etag);
        // A key's tag follows its own value only.
        assert_eq!(a.get(&["k"]).map(|r| r.etag), c.get(&["k"]).map(|r| r.etag));
        assert_ne!(a.get(&["j"]).map(|r| r.etag), c.get(&["j"]).map(|r| r.etag));
        let tag = a.whole().etag.to_str().expect("ascii").to_owned();
        assert!(
            tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'),
            "{tag}"
        );
        assert!(a == b && a != c);
    }

    #[test]
    fn nested_values_are_slices_of_the_whole() {
        let doc = Document::from_map(
            serde_json::from_str(
                r#"{"db":{"user":"u","hosts":["a",{"x":[1]}]},"a/b":2,"":{"":3}}"#,
            )
            .expect("object"),
        );
        let find = |path: &[&str]| {
            doc.find(path)
                .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
        };
        assert_eq!(find(&["db", "user"]).as_deref(), Some(r#""u""#));
        assert_eq!(find(&["db", "hosts", "1", "x", "0"]).as_deref(), Some("1"));
        assert_eq!(
            find(&["db", "hosts", "01"]),
            None,
            "indexes are plain decimals"
        );
        assert_eq!(find(&["db", "hosts", "2"]), None);
        assert_eq!(find(&["db", "user", "x"]), None, "a string has no keys");
        assert_eq!(find(&["a/b"]).as_deref(), Some("2"));
        assert_eq!(find(&["", ""]).as_deref(), Some("3"));
        assert_eq!(
            split_path("db/a%2Fb/%C3%A9").expect("valid"),
            ["db", "a/b", "é"]
        );
        assert!(split_path("a/%zz").is_none());
        let wanted = vec![
            ("db/user".to_owned(), vec!["db", "user"]),
            ("a/b".to_owned(), vec!["a/b"]),
            ("db/user".to_owned(), vec!["db", "user"]),
        ];
        let both = doc.select(&wanted).map(|r| r.body).ok();
        assert_eq!(both.as_deref(), Some(&br#"{"db/user":"u","a/b":2}"#[..]));
        let missing = vec![("nope".to_owned(), vec!["nope"])];
        assert_eq!(doc.select(&missing).err(), Some("nope"));
    }
}
