//! Getting an artifact and proving it is the one `manifest.yml` pins. Sources are
//! tried in order: the cached buildpack's `file:`, the app cache, the network.

use crate::cache::AppCache;
use buildpack::detail;
use buildpack::download::download;
use buildpack::errors::Error;
use buildpack::manifest::Dependency;
use buildpack::redact::Redacted;
use buildpack::transport::Fetcher;
use buildpack::verify::{copy_local, Limits, LocalError, Origin, Verified};
use std::fs;
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

/// Tries the sources in order and returns the first verified artifact, in a temp file
/// in `dest_dir`. One from the network has `Origin::Network`: the caller keeps it in
/// the app cache once the run succeeds.
pub fn obtain(
    fetcher: &Fetcher<'_>,
    limits: Limits,
    dep: &Dependency,
    buildpack_dir: &Path,
    cache: &AppCache,
    dest_dir: &Path,
) -> Result<Verified, Error> {
    if let Some(file) = dep.file.as_deref().filter(|f| !f.is_empty()) {
        let path = buildpack_dir.join(file);
        detail!("Using the copy in the cached buildpack: {file}");
        let origin = Origin::CachedBuildpack(path.clone());
        let bad = |reason: String| Error::BuildpackFile {
            path: path.clone(),
            reason: format!("{reason} (manifest.yml's file: entry for {})", dep.name),
        };
        let verified = copy_local(&path, dep, dest_dir, origin, limits).map_err(|e| match e {
            LocalError::Fatal(e) => *e,
            LocalError::TooLarge => Error::TooLarge {
                dependency: dep.id(),
                origin: Redacted::str(&format!("the cached buildpack ({file})")),
                limit: limits.max_bytes,
            },
            LocalError::Unusable(reason) | LocalError::Read(reason) => bad(reason),
        })?;
        report_verified(dep, &verified);
        return Ok(verified);
    }

    if let Some(entry) = cache.hit(dep) {
        let origin = Origin::AppCache(entry.clone());
        // Whatever goes wrong with the app cache's copy (corrupt, over the cap, no room
        // to copy it, unreadable) is a miss: drop it and download. It never fails the
        // staging; a real lack of space then fails the download, naming it.
        match copy_local(&entry, dep, dest_dir, origin, limits) {
            Ok(v) => {
                detail!("Using the copy in the app cache");
                report_verified(dep, &v);
                return Ok(v);
            }
            Err(e) => {
                let why = match e {
                    LocalError::Fatal(e) => match *e {
                        Error::Checksum { .. } => "is corrupt".to_string(),
                        other => format!("cannot be used ({other})"),
                    },
                    LocalError::TooLarge => format!(
                        "is larger than the download cap of {} MB",
                        limits.max_bytes >> 20
                    ),
                    LocalError::Unusable(r) | LocalError::Read(r) => {
                        format!("cannot be read ({r})")
                    }
                };
                warn!(
                    "the app cache's copy of {} {why}; dropping it and downloading again",
                    dep.id()
                );
                if let Err(e) = fs::remove_file(&entry) {
                    warn!("could not remove {}: {e}", entry.display());
                }
            }
        }
    }

    let verified = download(fetcher, dep, dest_dir)?;
    report_verified(dep, &verified);
    // Kept in the app cache by the caller, once the run has committed: a failed run
    // changes nothing there either.
    Ok(verified)
}
