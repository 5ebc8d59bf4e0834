//! The configuration as the HTTP responses will carry it, rendered once at
//! startup so that serving a request is a map lookup and a cheap `Bytes` clone.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};

/// Served when no configuration source is found, byte for byte as the original
/// demo served it.
pub const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// Pre-rendered JSON: the whole mapping, and each top-level value on its own.
pub struct Document {
    whole: Bytes,
    values: HashMap<String, Bytes>,
}

impl Document {
    /// Renders a top-level mapping, keeping its key order.
    pub fn from_map(map: Map<String, Value>) -> Self {
        let values = map
            .iter()
            .map(|(key, value)| (key.clone(), Bytes::from(value.to_string())))
            .collect();
        let whole = Bytes::from(Value::Object(map).to_string());
        Self { whole, values }
    }

    /// The built-in demo document.
    pub fn demo() -> Self {
        let map = serde_json::from_str(DEMO).expect("the built-in demo document is a JSON object");
        Self::from_map(map)
    }

    /// The whole configuration as a JSON object.
    pub fn whole(&self) -> Bytes {
        self.whole.clone()
    }

    /// One top-level value as JSON.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.values.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_renders_to_exactly_the_original_bytes() {
        let demo = Document::demo();
        assert_eq!(demo.whole(), DEMO.as_bytes());
        assert_eq!(
            demo.get("Scope").as_deref(),
            Some(&b"\"some-service.admin\""[..])
        );
        assert_eq!(
            demo.get("Password").as_deref(),
            Some(&b"\"not-a-real-p4$$w0rd\""[..])
        );
        assert_eq!(demo.get("scope"), None);
    }

    #[test]
    fn keeps_key_order_and_nested_values() {
        let map = serde_json::from_str(r#"{"z":1,"a":{"y":[true,null],"b":"s"},"m":2.5}"#)
            .expect("valid JSON object");
        let doc = Document::from_map(map);
        assert_eq!(
            doc.whole(),
            &br#"{"z":1,"a":{"y":[true,null],"b":"s"},"m":2.5}"#[..]
        );
        assert_eq!(
            doc.get("a").as_deref(),
            Some(&br#"{"y":[true,null],"b":"s"}"#[..])
        );
        assert_eq!(doc.get("m").as_deref(), Some(&b"2.5"[..]));
    }
}
