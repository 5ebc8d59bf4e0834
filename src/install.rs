//! Putting a verified artifact in place: a bare executable is renamed into
//! `<deps>/<idx>/bin/`; a `.tgz` is unpacked into a temp dir beside it first. The
//! unpacker takes only plain files and directories, inside its target, under a cap.

use crate::errors::Error;
use crate::fsutil::prepare_dir;
use crate::manifest::{basename, relative_inside, Dependency, Sidecar};
use crate::verify::Verified;
use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Most bytes an archive may unpack to: a sidecar is one binary, and a gzip bomb
/// must not fill the droplet's disk.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// True when the artifact is a gzipped tarball, by its file name.
pub fn is_tarball(dep: &Dependency) -> bool {
    basename(&dep.uri).is_some_and(|n| n.ends_with(".tgz") || n.ends_with(".tar.gz"))
}

/// Installs `sidecar`'s executable from `verified` as `bin_dir/<file name>`, mode 0755.
/// `work_dir` (same filesystem) holds the unpacked archive until the rename.
pub fn install(
    verified: Verified,
    sidecar: &Sidecar,
    dep: &Dependency,
    bin_dir: &Path,
    work_dir: &Path,
) -> Result<PathBuf, Error> {
    let dest = bin_dir.join(sidecar.installed_name());

    if !is_tarball(dep) {
        prepare_dir(bin_dir)?;
        fs::set_permissions(verified.file.path(), Permissions::from_mode(0o755))
            .map_err(Error::write(verified.file.path()))?;
        clear(&dest)?;
        verified
            .file
            .persist(&dest)
            .map_err(|e| Error::write(&dest)(e.error))?;
        return Ok(dest);
    }

    let unpacked = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(work_dir)
        .map_err(Error::write(work_dir))?;
    let archive = File::open(verified.file.path()).map_err(Error::write(verified.file.path()))?;
    unpack(archive, unpacked.path(), &dep.name)?;
    drop(verified);

    let exe = unpacked.path().join(&sidecar.executable);
    match fs::symlink_metadata(&exe) {
        Ok(m) if m.is_file() => {}
        _ => {
            return Err(Error::Archive {
                dependency: dep.name.clone(),
                entry: sidecar.executable.clone(),
                problem: "is not in the archive as a file (manifest.yml sidecars[].executable)"
                    .into(),
            })
        }
    }
    fs::set_permissions(&exe, Permissions::from_mode(0o755)).map_err(Error::write(&exe))?;
    // Only now: a rejected archive leaves nothing behind, not even bin/.
    prepare_dir(bin_dir)?;
    clear(&dest)?;
    fs::rename(&exe, &dest).map_err(Error::write(&dest))?;
    Ok(dest)
}

/// Removes a directory left at a path a file is about to be renamed onto. A file or
/// symlink there is replaced by the rename itself, which never follows it.
fn clear(dest: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(dest).map_err(Error::write(dest)),
        _ => Ok(()),
    }
}

/// Unpacks a gzipped tar into `target`, which must be empty. Any entry that is not a
/// plain file or directory, or whose path leaves `target`, fails the whole unpack; so
/// does an archive of more than `MAX_ENTRIES` entries or `MAX_UNPACKED_BYTES` bytes.
pub fn unpack(reader: impl Read, target: &Path, dependency: &str) -> Result<(), Error> {
    unpack_capped(reader, target, dependency, MAX_UNPACKED_BYTES)
}

/// `unpack` with the size cap as a parameter, so unit tests can prove the cap with
/// kilobytes instead of writing a gigabyte. Nothing else passes another cap.
fn unpack_capped(
    reader: impl Read,
    target: &Path,
    dependency: &str,
    cap: u64,
) -> Result<(), Error> {
    let bad = |entry: &str, problem: &str| Error::Archive {
        dependency: dependency.to_string(),
        entry: entry.to_string(),
        problem: problem.to_string(),
    };
    // Where a truncated or corrupt archive breaks off: after the last entry read.
    let broken = |last: &str, e: io::Error| {
        if last.is_empty() {
            bad("(archive)", &format!("is not a readable gzipped tar: {e}"))
        } else {
            bad(
                last,
                &format!("is followed by a truncated or corrupt archive: {e}"),
            )
        }
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut total: u64 = 0;
    let mut last = String::new();
    let entries = archive.entries().map_err(|e| broken(&last, e))?;
    for (count, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| broken(&last, e))?;
        if count >= MAX_ENTRIES {
            return Err(bad(
                "(archive)",
                &format!("has more than {MAX_ENTRIES} entries"),
            ));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        last.clone_from(&raw);
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let rel = raw.trim_start_matches("./").trim_end_matches('/');
        if rel.is_empty() && kind.is_dir() {
            continue;
        }
        if !relative_inside(rel) {
            return Err(bad(
                &raw,
                "has an absolute path or '..', which would write outside the target",
            ));
        }
        let path = target.join(rel);
        // An earlier entry made a file where this path needs a directory.
        let blocked = |e: io::Error, at: &Path| {
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory
            ) {
                bad(
                    &raw,
                    "runs through a path that an earlier entry made a file",
                )
            } else {
                Error::write(at)(e)
            }
        };
        if kind.is_dir() {
            fs::create_dir_all(&path).map_err(|e| blocked(e, &path))?;
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            let what = if kind.is_symlink() {
                "is a symbolic link; only plain files and directories are accepted"
            } else if kind.is_hard_link() {
                "is a hard link; only plain files and directories are accepted"
            } else {
                "is a device, FIFO or other special file; only plain files and directories are accepted"
            };
            return Err(bad(&raw, what));
        }
        // The declared size is all tar will read for this entry: a bomb is refused
        // before a byte of it is written.
        let size = entry.size();
        if size > cap - total {
            return Err(bad(
                &raw,
                &format!(
                    "is {size} bytes, which takes the archive past the cap of {cap} unpacked \
                     bytes"
                ),
            ));
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| blocked(e, parent))?;
        }
        // create_new: never write through anything already there.
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => bad(&raw, "appears twice in the archive"),
                _ => blocked(e, &path),
            })?;
        let written = io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::InvalidData
                || e.raw_os_error().is_none()
            {
                bad(&raw, &format!("is truncated or corrupt: {e}"))
            } else {
                Error::write(&path)(e)
            }
        })?;
        if written < size {
            return Err(bad(&raw, "is truncated: the archive ends inside it"));
        }
        total += written;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        fs::set_permissions(&path, Permissions::from_mode(mode | 0o600))
            .map_err(Error::write(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(files: &[(&str, usize)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, size) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, io::repeat(7).take(*size as u64))
                .expect("append");
        }
        b.into_inner().expect("tar").finish().expect("gzip")
    }

    #[test]
    fn the_cap_counts_the_whole_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let two = tgz(&[("a", 600), ("b", 600)]);
        let err = unpack_capped(&two[..], dir.path(), "dep", 1000).expect_err("over the cap");
        assert_eq!(
            err.to_string(),
            "the dep archive is unusable: entry \"b\" is 600 bytes, which takes the archive \
             past the cap of 1000 unpacked bytes"
        );
        assert!(
            !dir.path().join("b").exists(),
            "b is refused before it is written"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_capped(&two[..], dir.path(), "dep", 1200).expect("exactly at the cap");
    }
}
