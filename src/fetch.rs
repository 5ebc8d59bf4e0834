//! Getting an artifact and proving it is the one `manifest.yml` pins. Sources are
//! tried in order: the cached buildpack's `file:`, the app cache, the network.

use crate::cache::AppCache;
use crate::detail;
use crate::errors::Error;
use crate::manifest::Dependency;
use crate::transport::Fetcher;
use crate::verify::{copy_verified, stream_verified, Origin, StreamError, Verified};
use std::fs::{self, File};
use std::path::Path;
use tracing::warn;

fn report_verified(dep: &Dependency, v: &Verified) {
    detail!(
        "Verified sha256 {} ({} bytes) from {}",
        dep.sha256,
        v.bytes,
        v.origin
    );
}

/// Tries the sources in order and returns the first verified artifact.
pub fn obtain(
    fetcher: &Fetcher<'_>,
    dep: &Dependency,
    buildpack_dir: &Path,
    cache: &AppCache,
    dest_dir: &Path,
) -> Result<Verified, Error> {
    if let Some(file) = dep.file.as_deref().filter(|f| !f.is_empty()) {
        let path = buildpack_dir.join(file);
        detail!("Using the copy in the cached buildpack: {file}");
        let verified = copy_verified(&path, dep, dest_dir).map_err(|e| match e {
            Error::BuildpackFile { path, reason } => Error::BuildpackFile {
                path,
                reason: format!("{reason} (manifest.yml's file: entry for {})", dep.name),
            },
            other => other,
        })?;
        report_verified(dep, &verified);
        return Ok(verified);
    }

    let hit = cache
        .hit(dep)
        .and_then(|entry| File::open(&entry).ok().map(|f| (entry, f)));
    if let Some((entry, mut src)) = hit {
        match stream_verified(&mut src, dep, dest_dir, Origin::AppCache(entry.clone())) {
            Ok(v) => {
                detail!("Using the copy in the app cache");
                report_verified(dep, &v);
                return Ok(v);
            }
            Err(StreamError::Fatal(e)) if matches!(*e, Error::Write { .. }) => return Err(*e),
            Err(_) => {
                warn!(
                    "the app cache's copy of {} {} is corrupt; dropping it and downloading again",
                    dep.name, dep.version
                );
                if let Err(e) = fs::remove_file(&entry) {
                    warn!("could not remove {}: {e}", entry.display());
                }
            }
        }
    }

    let verified = fetcher.download(dep, dest_dir)?;
    report_verified(dep, &verified);
    cache.store(dep, verified.file.path());
    Ok(verified)
}
