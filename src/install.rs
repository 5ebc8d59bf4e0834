//! Putting a verified artifact in place: a bare executable is renamed into
//! `<deps>/<idx>/bin/`; a `.tgz` is unpacked into a temp dir beside it first. The
//! unpacker takes only plain files and directories, inside its target, under a cap.

use crate::errors::Error;
use crate::fetch::{replace_non_dir, Verified};
use crate::manifest::{basename, relative_inside, Dependency, Sidecar};
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
    let name = sidecar
        .executable
        .rsplit('/')
        .next()
        .unwrap_or(&sidecar.executable);
    let dest = bin_dir.join(name);
    prepare_dir(bin_dir)?;

    if !is_tarball(dep) {
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
    clear(&dest)?;
    fs::rename(&exe, &dest).map_err(Error::write(&dest))?;
    Ok(dest)
}

/// Makes `dir` a real directory, replacing a file or symlink found there.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    replace_non_dir(dir).map_err(Error::write(dir))?;
    fs::create_dir_all(dir).map_err(Error::write(dir))
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
/// plain file or directory, or whose path leaves `target`, fails the whole unpack.
pub fn unpack(reader: impl Read, target: &Path, dependency: &str) -> Result<(), Error> {
    let bad = |entry: &str, problem: &str| Error::Archive {
        dependency: dependency.to_string(),
        entry: entry.to_string(),
        problem: problem.to_string(),
    };
    let corrupt = |e: io::Error| bad("(archive)", &format!("cannot be read: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut total: u64 = 0;
    for (count, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        let mut entry = entry.map_err(corrupt)?;
        if count >= MAX_ENTRIES {
            return Err(bad(
                "(archive)",
                &format!("has more than {MAX_ENTRIES} entries"),
            ));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).to_string();
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
        if kind.is_dir() {
            fs::create_dir_all(&path).map_err(Error::write(&path))?;
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
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::write(parent))?;
        }
        // create_new: never write through anything already there.
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    bad(&raw, "appears twice in the archive")
                } else {
                    Error::write(&path)(e)
                }
            })?;
        let budget = MAX_UNPACKED_BYTES - total;
        let written = io::copy(&mut (&mut entry).take(budget + 1), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::InvalidData
                || e.raw_os_error().is_none()
            {
                corrupt(e)
            } else {
                Error::write(&path)(e)
            }
        })?;
        total += written;
        if total > MAX_UNPACKED_BYTES {
            return Err(bad(
                &raw,
                &format!("takes the archive past the cap of {MAX_UNPACKED_BYTES} unpacked bytes"),
            ));
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        fs::set_permissions(&path, Permissions::from_mode(mode | 0o600))
            .map_err(Error::write(&path))?;
    }
    Ok(())
}
