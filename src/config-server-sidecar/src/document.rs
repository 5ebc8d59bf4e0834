//! The configuration as the HTTP responses will carry it, rendered once per
//! load so that serving a request is a map lookup and a cheap `Bytes` clone.
//!
//! Each rendering carries a strong `ETag`, a 64-bit hash of its bytes: equal
//! documents give equal tags, across reloads and restarts, so an app can poll
//! with `If-None-Match` and get `304` until the content really changes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};

use bytes::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Map, Value};

/// Served when no configuration source is found, byte for byte as the original
/// demo served it.
pub const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// One rendered JSON body and its entity tag.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    fn new(json: String) -> Self {
        let mut hasher = DefaultHasher::new();
        hasher.write(json.as_bytes());
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("hex digits in quotes are a valid header value");
        Self {
            body: Bytes::from(json),
            etag,
        }
    }
}

/// Pre-rendered JSON: the whole mapping, and each top-level value on its own.
pub struct Document {
    whole: Rendered,
    values: HashMap<String, Rendered>,
}

impl PartialEq for Document {
    // The values are renderings of parts of the whole.
    fn eq(&self, other: &Self) -> bool {
        self.whole.body == other.whole.body
    }
}

impl Document {
    /// Renders a top-level mapping, keeping its key order.
    pub fn from_map(map: Map<String, Value>) -> Self {
        let values = map
            .iter()
            .map(|(key, value)| (key.clone(), Rendered::new(value.to_string())))
            .collect();
        let whole = Rendered::new(Value::Object(map).to_string());
        Self { whole, values }
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
    pub fn get(&self, key: &str) -> Option<&Rendered> {
        self.values.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_renders_to_exactly_the_original_bytes() {
        let demo = Document::demo();
        assert_eq!(demo.whole().body, DEMO.as_bytes());
        let body = |key| demo.get(key).map(|r| r.body.clone());
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
        let body = |key| doc.get(key).map(|r| r.body.clone());
        assert_eq!(
            body("a").as_deref(),
            Some(&br#"{"y":[true,null],"b":"s"}"#[..])
        );
        assert_eq!(body("m").as_deref(), Some(&b"2.5"[..]));
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
        assert_eq!(a.get("k").map(|r| &r.etag), c.get("k").map(|r| &r.etag));
        assert_ne!(a.get("j").map(|r| &r.etag), c.get("j").map(|r| &r.etag));
        let tag = a.whole().etag.to_str().expect("ascii").to_owned();
        assert!(
            tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'),
            "{tag}"
        );
        assert!(a == b && a != c);
    }
}
