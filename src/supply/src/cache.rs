//! The app cache: the copy of each artifact an earlier staging kept in `CACHE_DIR`.
//! A hit is only a candidate: it is verified like any other source.

use buildpack::detail;
use buildpack::digest::Sha256;
use buildpack::fsutil::real_dirs;
use buildpack::manifest::{basename, Dependency};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, warn};

/// The copy of one artifact an earlier staging left in `CACHE_DIR`, at
/// `sidecar-buildpack/dependencies/<sha256>/<file name>`. Every directory on that way is
/// checked to be a real one: a symlink planted there could make the cache read, write
/// or prune somewhere else.
pub struct AppCache {
    cache_dir: PathBuf,
}

const CACHE_DIRS: [&str; 2] = ["sidecar-buildpack", "dependencies"];
/// A `.partial` left in the cache this long ago belongs to no live staging: a store
/// takes a hard link or one copy.
const STALE_AFTER: Duration = Duration::from_secs(3600);

impl AppCache {
    pub fn new(cache_dir: &Path) -> Self {
        AppCache {
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// Entries are keyed by digest, so a new pin never reads an old file.
    pub fn entry(&self, dep: &Dependency) -> PathBuf {
        let mut p = self.cache_dir.clone();
        p.extend(CACHE_DIRS);
        p.push(dep.sha256.to_string());
        p.push(entry_name(dep));
        p
    }

    /// The entry, if it is a regular file reached through real directories only.
    pub(crate) fn hit(&self, dep: &Dependency) -> Option<PathBuf> {
        let sha = dep.sha256.to_string();
        let dir = real_dirs(
            &self.cache_dir,
            &[CACHE_DIRS[0], CACHE_DIRS[1], &sha],
            false,
        )
        .ok()?;
        let entry = dir.join(entry_name(dep));
        fs::symlink_metadata(&entry)
            .is_ok_and(|m| m.is_file())
            .then_some(entry)
    }

    /// Keeps a verified artifact for the next staging. Best effort: failures warn.
    pub fn store(&self, dep: &Dependency, verified: &Path) {
        let entry = self.entry(dep);
        let result = (|| -> io::Result<()> {
            // CF may pass a CACHE_DIR that does not exist yet; made only when used.
            fs::create_dir_all(&self.cache_dir)?;
            let sha = dep.sha256.to_string();
            let dir = real_dirs(&self.cache_dir, &[CACHE_DIRS[0], CACHE_DIRS[1], &sha], true)?;
            sweep_stale(&dir);
            let tmp = tempfile::Builder::new()
                .prefix(".store-")
                .suffix(".partial")
                .tempfile_in(&dir)?;
            let tmp_path = tmp.into_temp_path();
            fs::remove_file(&tmp_path)?;
            // A hard link costs nothing; other filesystems get a copy.
            if fs::hard_link(verified, &tmp_path).is_err() {
                fs::copy(verified, &tmp_path)?;
            }
            // A directory where the file belongs would stop the rename.
            if fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&entry)?;
            }
            // Rename is atomic, and replaces a file or symlink there without following
            // it: a concurrent staging sees the old file or the new one.
            tmp_path.persist(&entry).map_err(|e| e.error)?;
            Ok(())
        })();
        match result {
            Ok(()) => detail!("Kept a copy in the app cache for the next staging"),
            Err(e) => warn!(
                "could not keep a copy in the app cache {}: {e}; the next staging downloads again",
                entry.display()
            ),
        }
    }

    /// Removes entries of other digests, so the cache holds only what is in use.
    pub fn prune(&self, keep: &[Sha256]) {
        let Ok(root) = real_dirs(&self.cache_dir, &CACHE_DIRS, false) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !keep.iter().any(|k| k.to_string() == name) {
                let p = e.path();
                let res = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if res.is_ok() {
                    debug!("pruned {} from the app cache", p.display());
                }
            }
        }
    }
}

fn entry_name(dep: &Dependency) -> String {
    basename(&dep.uri).unwrap_or_else(|| dep.name.clone())
}

/// Removes our temp files (`.partial`) older than `STALE_AFTER` from `dir`: what a
/// staging killed half-way left behind.
fn sweep_stale(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if name.starts_with('.')
            && name.ends_with(".partial")
            && stale
            && fs::remove_file(e.path()).is_ok()
        {
            debug!("removed the stale {}", e.path().display());
        }
    }
}
