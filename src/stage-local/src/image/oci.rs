//! The few OCI image-spec documents an image needs (image-spec v1.1: descriptor,
//! manifest, index, the `oci-layout` file) and `docker save`'s `manifest.json`, typed
//! with serde. The image config is kept as JSON (`serde_json::Value`), so that what a
//! base's config holds beyond what stage-local sets passes through unchanged.
//!
//! Not the `oci-spec` crate: it builds every type with `derive_builder` and `getset`
//! and validates with `regex` and `strum`, about fifteen crates (three of them proc
//! macros) to compile for the five structs used here.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker's media types, found in `docker save` output and in images pulled from
/// Docker Hub; each has an OCI twin with the same bytes.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The annotation that names an image in an OCI layout (what `podman load` tags it as).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The content of the `oci-layout` file.
pub(crate) const LAYOUT_FILE: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// A pointer to a blob: its media type, `sha256:<hex>` digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// One image of `docker save`'s `manifest.json` (a list of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerImage {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// What a descriptor's media type says the blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Manifest,
    Index,
    Other,
}

pub(crate) fn kind(media_type: &str) -> Kind {
    match media_type {
        MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        INDEX | DOCKER_LIST => Kind::Index,
        _ => Kind::Other,
    }
}

/// A layer's media type as OCI names it, or `None` for what is no layer this writer
/// knows (an encrypted or foreign layer).
pub(crate) fn oci_layer_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        LAYER_TAR | DOCKER_LAYER_TAR => Some(LAYER_TAR),
        LAYER_GZIP | DOCKER_LAYER_GZIP => Some(LAYER_GZIP),
        LAYER_ZSTD => Some(LAYER_ZSTD),
        _ => None,
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes).as_slice())
}

/// `sha256:<hex>` of a finished hash.
pub(crate) fn hex_digest(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The hex part of a `sha256:` digest, if it is one (64 lowercase hex digits).
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// The architecture OCI names the machine's by (Go's GOARCH).
pub(crate) fn this_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_for_shape() {
        let d = digest_of(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha256_hex(&d).is_some());
        for bad in ["sha256:../../etc", "sha512:00", "sha256:E3B0", ""] {
            assert_eq!(sha256_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn docker_media_types_have_oci_twins() {
        assert_eq!(oci_layer_type(DOCKER_LAYER_GZIP), Some(LAYER_GZIP));
        assert_eq!(oci_layer_type("application/x-foreign"), None);
        assert_eq!(kind(DOCKER_LIST), Kind::Index);
    }
}
