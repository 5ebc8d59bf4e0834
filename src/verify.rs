//! Streaming verification: bytes are hashed while they are copied into a temp file in
//! the destination directory, and the caller only ever gets a file whose sha256 matched
//! the pin (rustup's `download` does the same). Used for every source: the cached
//! buildpack, the app cache and the network.

use crate::digest::{HashingWriter, STREAM_BUFFER};
use crate::errors::Error;
use crate::manifest::Dependency;
use crate::redact::{describe, Redacted};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;
use url::Url;

/// Where a verified artifact came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `file:` entry of a cached buildpack: no network.
    CachedBuildpack(PathBuf),
    /// A copy kept in `CACHE_DIR` by an earlier staging.
    AppCache(PathBuf),
    /// Downloaded (`https://`, `http://` or `file://`).
    Network(Url),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CachedBuildpack(p) => write!(f, "the cached buildpack ({})", p.display()),
            Origin::AppCache(p) => write!(f, "the app cache ({})", p.display()),
            Origin::Network(u) => write!(f, "{}", Redacted::url(u)),
        }
    }
}

/// An artifact whose sha256 matched, in a temp file that is deleted unless kept.
pub struct Verified {
    pub file: NamedTempFile,
    pub origin: Origin,
    pub bytes: u64,
}

/// Why streaming an artifact into place failed.
pub(crate) enum StreamError {
    /// Reading the source failed (for a download: worth another attempt).
    Read(String),
    /// Writing failed, or the digest did not match.
    Fatal(Box<Error>),
}

/// Streams `src` into a temp file in `dest_dir`, hashing as it goes, and keeps it only
/// if the digest matches. No fsync: every reader verifies the digest again, so a file
/// torn by a crash is caught where it is used.
pub(crate) fn stream_verified(
    src: &mut dyn Read,
    dep: &Dependency,
    dest_dir: &Path,
    origin: Origin,
) -> Result<Verified, StreamError> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", dep.name))
        .suffix(".partial")
        .tempfile_in(dest_dir)
        .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e))))?;
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(STREAM_BUFFER, tmp));
    let mut buf = vec![0u8; STREAM_BUFFER];
    let mut head = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = match &origin {
                    Origin::Network(u) => describe(&e, u),
                    _ => e.to_string(),
                };
                return Err(StreamError::Read(format!(
                    "{reason} after {} bytes",
                    out.bytes()
                )));
            }
        };
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        out.write_all(&buf[..n])
            .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e))))?;
    }
    let (actual, bytes, writer) = out.finish();
    let file = writer
        .into_inner()
        .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e.into_error()))))?;
    if actual != dep.sha256 {
        let shown = match &origin {
            Origin::Network(u) => Redacted::url(u),
            other => Redacted::str(&other.to_string()),
        };
        return Err(StreamError::Fatal(Box::new(Error::Checksum {
            dependency: format!("{} {}", dep.name, dep.version),
            origin: shown,
            expected: dep.sha256,
            actual,
            bytes,
            error_page: looks_like_markup(&head),
        })));
    }
    Ok(Verified {
        file,
        origin,
        bytes,
    })
}

/// An HTML or XML body (an error page, a login form, an S3 `<Error>`).
fn looks_like_markup(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    ["<!doctype", "<html", "<?xml", "<error", "<head", "<body"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// Copies a local file into a temp file in `dest_dir` if its digest matches `dep`.
/// The packager uses it for local builds and mirrors.
pub fn copy_verified(path: &Path, dep: &Dependency, dest_dir: &Path) -> Result<Verified, Error> {
    let mut src = File::open(path).map_err(|e| Error::BuildpackFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    stream_verified(
        &mut src,
        dep,
        dest_dir,
        Origin::CachedBuildpack(path.to_path_buf()),
    )
    .map_err(|e| match e {
        StreamError::Fatal(e) => *e,
        StreamError::Read(reason) => Error::BuildpackFile {
            path: path.to_path_buf(),
            reason,
        },
    })
}
