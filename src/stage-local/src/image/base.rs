//! `--base`: the stack's root filesystem as an image, read from an OCI image archive
//! (`skopeo copy ... oci-archive:FILE`, `podman save --format oci-archive`), an OCI
//! layout directory, or a `docker save` tar. Only its config and the list of its layers
//! are read here; the layers are copied into the new image later, unchanged and checked
//! against their digests as they are copied.

use super::oci::{self, DockerImage, Index, Kind, Manifest};
use crate::errors::Error;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Manifests, indexes and configs are small; a bigger one is no image's.
const MAX_JSON: u64 = 8 << 20;

/// A base image, read and checked.
#[derive(Debug)]
pub(crate) struct Base {
    /// Its config, as the base has it.
    pub config: Value,
    pub layers: Vec<Layer>,
}

/// One layer of the base: its descriptor (with an OCI media type) and where its bytes are.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub descriptor: oci::Descriptor,
    pub blob: Blob,
}

/// Where a blob's bytes are: a file, or a stretch of an archive.
#[derive(Debug, Clone)]
pub(crate) enum Blob {
    File(PathBuf),
    InArchive {
        archive: PathBuf,
        offset: u64,
        size: u64,
    },
}

impl Blob {
    pub(crate) fn open(&self) -> io::Result<Box<dyn Read>> {
        match self {
            Blob::File(path) => Ok(Box::new(File::open(path)?)),
            Blob::InArchive {
                archive,
                offset,
                size,
            } => {
                let mut f = File::open(archive)?;
                f.seek(SeekFrom::Start(*offset))?;
                Ok(Box::new(f.take(*size)))
            }
        }
    }
}

/// The files of an image: a directory, or the regular files of a tar.
enum Store {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        files: HashMap<String, (u64, u64)>,
    },
}

impl Store {
    fn open(path: &Path) -> Result<Store, Error> {
        let bad = |problem: String| Error::Base {
            path: path.to_path_buf(),
            problem,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        if meta.is_dir() {
            return Ok(Store::Dir(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let mut archive = tar::Archive::new(file);
        let not_tar = |e: io::Error| bad(format!("is not an image: not a tar archive ({e})"));
        let mut files = HashMap::new();
        for entry in archive.entries_with_seek().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            if entry.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&entry.path_bytes()).to_string();
                let name = name.trim_start_matches("./").to_string();
                files.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Store::Archive {
            path: path.to_path_buf(),
            files,
        })
    }

    fn blob(&self, name: &str) -> Option<Blob> {
        match self {
            Store::Dir(root) => {
                let p = root.join(name);
                p.is_file().then_some(Blob::File(p))
            }
            Store::Archive { path, files } => {
                files.get(name).map(|(offset, size)| Blob::InArchive {
                    archive: path.clone(),
                    offset: *offset,
                    size: *size,
                })
            }
        }
    }
}

/// Reads the base at `path`: the image for this machine's architecture.
pub(crate) fn open(path: &Path) -> Result<Base, Error> {
    let bad = |problem: String| Error::Base {
        path: path.to_path_buf(),
        problem,
    };
    let store = Store::open(path)?;
    let want = oci::this_architecture();
    if let Some(index) = store.blob("index.json") {
        let index: Index = json(&index, "index.json").map_err(bad)?;
        let mut seen = Vec::new();
        let found = pick(&store, &index, want, &mut seen).map_err(bad)?;
        return match found {
            Some(base) => Ok(base),
            None if seen.is_empty() => Err(bad(
                "is not an image: its index.json lists no image manifest".into(),
            )),
            None => Err(Error::BaseArchitecture {
                path: path.to_path_buf(),
                found: seen,
                want: want.to_string(),
            }),
        };
    }
    if let Some(list) = store.blob("manifest.json") {
        let images: Vec<DockerImage> = json(&list, "manifest.json").map_err(bad)?;
        let image = images
            .first()
            .ok_or_else(|| bad("is not an image: its manifest.json lists none".into()))?;
        return docker(&store, image, want).map_err(|e| match e {
            Picked::Problem(p) => bad(p),
            Picked::Architecture(found) => Error::BaseArchitecture {
                path: path.to_path_buf(),
                found: vec![found],
                want: want.to_string(),
            },
        });
    }
    Err(bad(
        "is not an image: it has neither an index.json (an OCI layout or archive) nor a \
         manifest.json (a `docker save` tar)"
            .into(),
    ))
}

/// Why an image was not taken.
enum Picked {
    Problem(String),
    /// `os/architecture` of an image of another platform.
    Architecture(String),
}

/// The first image of `index` (or of the indexes it points to) for `want`; `seen`
/// collects the platforms of the others.
fn pick(
    store: &Store,
    index: &Index,
    want: &str,
    seen: &mut Vec<String>,
) -> Result<Option<Base>, String> {
    for d in &index.manifests {
        let blob = blob_of(store, &d.digest)?;
        match oci::kind(&d.media_type) {
            Kind::Index => {
                let nested: Index = json(&blob, &d.digest)?;
                if let Some(base) = pick(store, &nested, want, seen)? {
                    return Ok(Some(base));
                }
            }
            Kind::Manifest => {
                let m: Manifest = json(&blob, &d.digest)?;
                match oci_image(store, &m, want) {
                    Ok(base) => return Ok(Some(base)),
                    Err(Picked::Architecture(found)) => seen.push(found),
                    Err(Picked::Problem(p)) => return Err(p),
                }
            }
            Kind::Other => {}
        }
    }
    Ok(None)
}

fn oci_image(store: &Store, m: &Manifest, want: &str) -> Result<Base, Picked> {
    let config: Value = json(
        &blob_of(store, &m.config.digest).map_err(Picked::Problem)?,
        &m.config.digest,
    )
    .map_err(Picked::Problem)?;
    check_config(&config, want, m.layers.len())?;
    let mut layers = Vec::new();
    for d in &m.layers {
        let media_type = oci::oci_layer_type(&d.media_type).ok_or_else(|| {
            Picked::Problem(format!(
                "has a layer of media type {:?}, which no container runtime unpacks as is",
                d.media_type
            ))
        })?;
        layers.push(Layer {
            descriptor: oci::Descriptor {
                media_type: media_type.to_string(),
                digest: d.digest.clone(),
                size: d.size,
                platform: None,
                annotations: Default::default(),
            },
            blob: blob_of(store, &d.digest).map_err(Picked::Problem)?,
        });
    }
    Ok(Base { config, layers })
}

/// A `docker save` image: its layers are tar files (gzipped ones too, from newer
/// Dockers), hashed here, as `manifest.json` gives no digests.
fn docker(store: &Store, image: &DockerImage, want: &str) -> Result<Base, Picked> {
    let problem = Picked::Problem;
    let file = |name: &str| {
        store
            .blob(name)
            .ok_or_else(|| problem(format!("names {name}, which it does not hold")))
    };
    let config: Value = json(&file(&image.config)?, &image.config).map_err(problem)?;
    check_config(&config, want, image.layers.len())?;
    let mut layers = Vec::new();
    for name in &image.layers {
        let blob = file(name)?;
        let (digest, size, gzip) = hash(&blob).map_err(|e| problem(format!("{name}: {e}")))?;
        layers.push(Layer {
            descriptor: oci::Descriptor {
                media_type: if gzip {
                    oci::LAYER_GZIP
                } else {
                    oci::LAYER_TAR
                }
                .to_string(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            },
            blob,
        });
    }
    Ok(Base { config, layers })
}

/// The config is an image config for `want` on Linux, with one diff_id per layer.
fn check_config(config: &Value, want: &str, layers: usize) -> Result<(), Picked> {
    let field = |k: &str| config.get(k).and_then(Value::as_str).unwrap_or("");
    let (arch, os) = (field("architecture"), field("os"));
    if arch.is_empty() || os.is_empty() {
        return Err(Picked::Problem(
            "is not an image: its config has no architecture or os".into(),
        ));
    }
    if arch != want || os != "linux" {
        return Err(Picked::Architecture(format!("{os}/{arch}")));
    }
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if diff_ids != layers {
        return Err(Picked::Problem(format!(
            "is a broken image: {layers} layer(s) but {diff_ids} diff_id(s) in its config"
        )));
    }
    Ok(())
}

/// The blob of `digest`, which must be a well-formed sha256 digest.
fn blob_of(store: &Store, digest: &str) -> Result<Blob, String> {
    let hex = oci::sha256_hex(digest).ok_or_else(|| format!("names a blob {digest:?}"))?;
    store
        .blob(&format!("blobs/sha256/{hex}"))
        .ok_or_else(|| format!("is missing the blob {digest}"))
}

/// A small JSON document of the image.
fn json<T: serde::de::DeserializeOwned>(blob: &Blob, what: &str) -> Result<T, String> {
    let mut bytes = Vec::new();
    blob.open()
        .and_then(|r| r.take(MAX_JSON).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("is not an image: {what}: {e}"))
}

/// `sha256:<hex>` and size of a blob, and whether it is gzipped.
fn hash(blob: &Blob) -> io::Result<(String, u64, bool)> {
    let mut r = blob.open()?;
    let mut h = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let (mut size, mut head) = (0u64, Vec::new());
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 2 {
            head.extend_from_slice(&buf[..n.min(2)]);
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        oci::hex_digest(h.finalize().as_slice()),
        size,
        head.starts_with(&[0x1f, 0x8b]),
    ))
}
