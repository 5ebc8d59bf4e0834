//! The configuration as the HTTP responses will carry it, rendered once per
//! load so that serving a request is a map lookup and a cheap `Bytes` clone.
//!
//! Each rendering carries a strong `ETag`, a 64-bit hash of its bytes: equal
//! documents give equal tags, across reloads and restarts, so an app can poll
//! with `If-None-Match` and get `304` until the content really changes.
//!
//! A top-level value is served as the slice of the whole rendering that holds
//! it (the same bytes), and the values' tags share one buffer: a document of
//! many small values costs little more than its text.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::ops::Range;

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Map, Value};

/// Served when no configuration source is found, byte for byte as the original
/// demo served it.
pub const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// The length of an entity tag: 16 hex digits in quotes.
const TAG_LEN: usize = 18;

/// One rendered JSON body and its entity tag.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
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

/// Pre-rendered JSON: the whole mapping, and where each top-level value is in it.
pub struct Document {
    whole: Rendered,
    values: HashMap<String, Part>,
    /// The values' tags, [`TAG_LEN`] bytes each, in the order of the keys.
    etags: Bytes,
}

/// Where a top-level value is rendered in the whole, and which tag is its.
struct Part {
    body: Range<usize>,
    tag: usize,
}

impl PartialEq for Document {
    // The values are parts of the whole.
    fn eq(&self, other: &Self) -> bool {
        self.whole.body == other.whole.body
    }
}

impl Document {
    /// Renders a top-level mapping, keeping its key order: the same bytes as
    /// `serde_json` renders the object, each value's slice among them.
    pub fn from_map(map: Map<String, Value>) -> Self {
        let mut body = Vec::new();
        let mut values = HashMap::with_capacity(map.len());
        let mut etags = Vec::with_capacity(map.len() * TAG_LEN);
        body.push(b'{');
        for (i, (key, value)) in map.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            write_json(&mut body, &key);
            body.push(b':');
            let start = body.len();
            write_json(&mut body, &value);
            etags.extend_from_slice(&etag(&body[start..]));
            let part = Part {
                body: start..body.len(),
                tag: i,
            };
            values.insert(key, part);
        }
        body.push(b'}');
        let tag = etag(&body);
        Self {
            whole: Rendered {
                body: Bytes::from(body),
                etag: header(Bytes::copy_from_slice(&tag)),
            },
            values,
            etags: Bytes::from(etags),
        }
    }

    /// The built-in demo document.
    pub fn demo() -> Self {
        let map = serde_json::from_str(DEMO).expect("the built-in demo document is a JSON object");
        Self::from_map(map)
    }

    /// The whole configuration as a JSON object.
    pub fn whole(&self) -> &Rendered {
        &self.whole
    }

    /// One top-level value as JSON.
    pub fn get(&self, key: &str) -> Option<Rendered> {
        let part = self.values.get(key)?;
        let tag = part.tag * TAG_LEN;
        Some(Rendered {
            body: self.whole.body.slice(part.body.clone()),
            etag: header(self.etags.slice(tag..tag + TAG_LEN)),
        })
    }
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
        let body = |key| demo.get(key).map(|r| r.body);
        assert_eq!(
            body("Scope").as_deref(),
            Some(&b"\"some-service.admin\""[..])
        );
        assert_eq!(
            body("Password").as_deref(),
            Some(&b"\"not-a-real-p4$$w0rd\""[..])
        );
        assert!(demo.get("scope").is_none());
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
        let body = |key| doc.get(key).map(|r| r.body);
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
            let part = doc.get(key).expect("every key");
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
        assert_eq!(a.get("k").map(|r| r.etag), c.get("k").map(|r| r.etag));
        assert_ne!(a.get("j").map(|r| r.etag), c.get("j").map(|r| r.etag));
        let tag = a.whole().etag.to_str().expect("ascii").to_owned();
        assert!(
            tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'),
            "{tag}"
        );
        assert!(a == b && a != c);
    }
}
