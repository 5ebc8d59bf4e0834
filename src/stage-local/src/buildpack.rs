//! A `--buildpack`: a directory used in place, or a zip unpacked the way CF unpacks an
//! uploaded buildpack, keeping each entry's Unix mode. An entry without one is written
//! 0666 as CF writes it, so a zip that would fail on CF fails here too, with the reason.
//! Entries that would land outside the directory (`..`, absolute paths, symlinks that
//! lead out, or paths through a symlink) are refused.

use crate::errors::{Error, SupplyProblem};
use crate::files::open_regular;
use crate::out;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The mode CF gives zip entries that carry no Unix mode.
const MODE_WITHOUT_UNIX_MODE: u32 = 0o666;

#[derive(Debug, Clone)]
pub(crate) struct Buildpack {
    /// As given on the command line.
    pub source: PathBuf,
    /// The directory holding `bin/`.
    pub root: PathBuf,
    /// Identifies the buildpack in result.json; its hash names the app cache.
    pub key: String,
    /// 16 hex digits of the key's sha256: the name of its CACHE_DIR.
    pub cache_id: String,
    /// Set for a zip whose `bin/supply` entry has no Unix mode.
    supply_without_mode: bool,
}

impl Buildpack {
    /// Resolves `source`; zips are unpacked under `unpack_root/<cache_id>`.
    pub(crate) fn resolve(source: &Path, unpack_root: &Path) -> Result<Buildpack, Error> {
        let bad = |problem: String| Error::Buildpack {
            path: source.to_path_buf(),
            problem,
        };
        let meta = fs::metadata(source).map_err(|e| bad(format!("cannot be used: {e}")))?;
        let abs = source
            .canonicalize()
            .map_err(|e| bad(format!("cannot be resolved: {e}")))?;
        if meta.is_dir() {
            // Like a git-URL buildpack on CF: the key is where it lives, so its app
            // cache survives edits to it.
            let key = abs.display().to_string();
            return Ok(Buildpack {
                source: source.to_path_buf(),
                root: find_root(&abs),
                cache_id: cache_id(&key),
                key,
                supply_without_mode: false,
            });
        }
        // Like `cf update-buildpack`: new bits, new key, a fresh app cache.
        let digest = sha256_file(&abs).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let key = format!("{}#sha256={digest}", abs.display());
        let id = cache_id(&key);
        let dest = unpack_root.join(&id);
        let supply_without_mode = unzip(&abs, &dest)?;
        Ok(Buildpack {
            source: source.to_path_buf(),
            root: find_root(&dest),
            key,
            cache_id: id,
            supply_without_mode,
        })
    }

    /// A short name for messages: the zip's or directory's file name.
    pub(crate) fn display_name(&self) -> String {
        self.source.file_name().map_or_else(
            || self.source.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        )
    }

    pub(crate) fn supply(&self) -> PathBuf {
        self.root.join("bin").join("supply")
    }

    /// Checks that `bin/supply` can run, as CF finds out before running any supply.
    pub(crate) fn check_supply(&self) -> Result<(), Error> {
        let path = self.supply();
        let fail = |problem| Error::SupplyScript {
            path: path.clone(),
            problem,
        };
        if !self.root.join("bin").is_dir() {
            return Err(fail(SupplyProblem::NoBinDir));
        }
        if self.supply_without_mode {
            return Err(fail(SupplyProblem::NoUnixMode {
                zip: self.source.clone(),
            }));
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(m) => Err(fail(SupplyProblem::NotExecutable {
                mode: m.permissions().mode() & 0o7777,
            })),
            Err(_) => Err(fail(SupplyProblem::Missing)),
        }
    }
}

/// CF looks for `bin/` at the top, or inside a single top-level directory (a GitHub
/// release zip, say).
fn find_root(dir: &Path) -> PathBuf {
    if dir.join("bin").is_dir() {
        return dir.to_path_buf();
    }
    let entries: Vec<_> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only] if only.join("bin").is_dir() => only.clone(),
        _ => dir.to_path_buf(),
    }
}

pub(crate) fn cache_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut open_regular(path)?, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Unpacks `zip_path` into a fresh `dest`. Returns whether `bin/supply` (at the top or
/// under a single top-level directory) lacked a Unix mode.
fn unzip(zip_path: &Path, dest: &Path) -> Result<bool, Error> {
    let bad = |problem: String| Error::Buildpack {
        path: zip_path.to_path_buf(),
        problem,
    };
    let file = open_regular(zip_path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| bad(format!("is neither a directory nor a zip: {e}")))?;
    match fs::remove_dir_all(dest) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(bad(format!("cannot clear {}: {e}", dest.display())))
        }
        _ => {}
    }
    fs::create_dir_all(dest).map_err(|e| bad(format!("cannot create {}: {e}", dest.display())))?;
    let mut without_mode = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i} cannot be read: {e}")))?;
        let name = entry.name().map_or_else(
            |_| String::from_utf8_lossy(entry.name_raw()).to_string(),
            |n| n.to_string(),
        );
        let unsafe_entry = |problem: &str| Error::UnsafeZipEntry {
            zip: zip_path.to_path_buf(),
            entry: name.clone(),
            problem: problem.to_string(),
        };
        // zip's enclosed_name quietly drops a leading `/` and folds `a/../b`; such a zip
        // is broken or hostile, so refuse it outright.
        let raw_parts: Vec<&str> = name.split(['/', '\\']).collect();
        let rel = entry
            .enclosed_name()
            .filter(|_| !name.starts_with(['/', '\\']) && !raw_parts.contains(&".."))
            .ok_or_else(|| unsafe_entry("is absolute or has `..` in its path"))?;
        let target = dest.join(&rel);
        real_parent_dirs(dest, &rel).map_err(|_| unsafe_entry("goes through a symlink"))?;
        let write_err = |e: io::Error| bad(format!("cannot write {}: {e}", target.display()));
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(write_err)?;
            continue;
        }
        let mode = unix_mode(&entry);
        if entry.is_symlink() {
            let mut link = String::new();
            io::Read::read_to_string(&mut entry, &mut link).map_err(write_err)?;
            if !link_stays_inside(&rel, Path::new(&link)) {
                return Err(unsafe_entry(
                    "is a symlink that leads outside the buildpack",
                ));
            }
            symlink(&link, &target).map_err(write_err)?;
            continue;
        }
        if mode.is_none() {
            without_mode.push(name.clone());
        }
        let mut out = File::create(&target).map_err(write_err)?;
        io::copy(&mut entry, &mut out).map_err(write_err)?;
        let mode = mode.unwrap_or(MODE_WITHOUT_UNIX_MODE);
        fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(write_err)?;
    }
    if !without_mode.is_empty() {
        let shown: Vec<_> = without_mode.iter().take(5).cloned().collect();
        out::warn(format!(
            "{} has {} entries without a Unix mode ({}{}): CF unpacks them as 0666, so none \
             of them can run",
            zip_path.display(),
            without_mode.len(),
            shown.join(", "),
            if without_mode.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    let supply_without_mode = without_mode.iter().any(|n| {
        let parts: Vec<&str> = n.split('/').collect();
        parts.ends_with(&["bin", "supply"]) && parts.len() <= 3
    });
    Ok(supply_without_mode)
}

/// The entry's Unix mode, or `None` when the zip was not made on Unix or stored none
/// (CF then unpacks it 0666). The zip crate makes one up for DOS entries; CF does not.
fn unix_mode(entry: &zip::read::ZipFile<'_, File>) -> Option<u32> {
    let stored = entry.external_attributes() >> 16;
    (entry.system() == zip::System::Unix && stored & 0o777 != 0).then_some(stored & 0o7777)
}

/// Creates the parent directories of `rel` under `root`, refusing to pass through a
/// symlink (which could lead anywhere).
fn real_parent_dirs(root: &Path, rel: &Path) -> io::Result<()> {
    let mut at = root.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in parents {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io::Error::other("not a real directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// True if a symlink at `rel` pointing to `link` stays inside the root, read lexically.
fn link_stays_inside(rel: &Path, link: &Path) -> bool {
    if link.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in link.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let opts = match mode {
                Some(m) => SimpleFileOptions::default().unix_permissions(*m),
                None => SimpleFileOptions::default().system(zip::System::Dos),
            };
            w.start_file(*name, opts).expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    fn resolve(bytes: Vec<u8>) -> (tempfile::TempDir, Result<Buildpack, Error>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let zip = dir.path().join("bp.zip");
        fs::write(&zip, bytes).expect("write zip");
        let r = Buildpack::resolve(&zip, &dir.path().join("unpacked"));
        (dir, r)
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn keeps_unix_modes_and_finds_bin_under_one_top_dir() {
        let (_d, bp) = resolve(zip_of(&[
            ("bp-1.0/bin/supply", b"#!/bin/sh\n", Some(0o755)),
            ("bp-1.0/VERSION", b"1.0\n", Some(0o640)),
        ]));
        let bp = bp.expect("resolves");
        assert!(bp.root.ends_with("bp-1.0"));
        assert_eq!(mode(&bp.supply()), 0o755);
        assert_eq!(mode(&bp.root.join("VERSION")), 0o640);
        assert_eq!(bp.cache_id.len(), 16);
        bp.check_supply().expect("runnable");
    }

    #[test]
    fn entries_without_unix_mode_unpack_0666_and_fail_the_supply_check() {
        let (_d, bp) = resolve(zip_of(&[("bin/supply", b"#!/bin/sh\n", None)]));
        let bp = bp.expect("resolves");
        assert_eq!(mode(&bp.supply()), 0o666);
        assert!(matches!(
            bp.check_supply(),
            Err(Error::SupplyScript {
                problem: SupplyProblem::NoUnixMode { .. },
                ..
            })
        ));
    }

    #[test]
    fn refuses_entries_that_leave_the_directory() {
        for name in ["../evil", "/etc/evil", "a/../../evil"] {
            let (_d, r) = resolve(zip_of(&[(name, b"x", Some(0o644))]));
            assert!(matches!(r, Err(Error::UnsafeZipEntry { .. })), "{name}");
        }
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc")));
    }

    #[test]
    fn directory_keys_are_stable_and_zip_keys_follow_the_bits() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("bin")).expect("bin");
        let a = Buildpack::resolve(dir.path(), &dir.path().join("u")).expect("dir");
        let b = Buildpack::resolve(dir.path(), &dir.path().join("u")).expect("dir");
        assert_eq!(a.cache_id, b.cache_id);
        let zip = dir.path().join("bp.zip");
        let mut ids = Vec::new();
        for bits in [&b"1"[..], b"2"] {
            fs::write(&zip, zip_of(&[("bin/supply", bits, Some(0o755))])).expect("write");
            let bp = Buildpack::resolve(&zip, &dir.path().join("u")).expect("zip");
            assert!(bp.key.contains("#sha256="));
            ids.push(bp.cache_id);
        }
        assert_ne!(ids[0], ids[1], "new bits, new app cache");
        fs::write(&zip, "not a zip").expect("write");
        assert!(matches!(
            Buildpack::resolve(&zip, dir.path()),
            Err(Error::Buildpack { .. })
        ));
    }
}
