//! Filesystem helpers shared by the steps: directories that are never reached through
//! a symlink, and files written through a temp file renamed into place.

use crate::errors::Error;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `base/a/b/...` as real directories, never through a symlink. With `create`, a
/// missing one is made and a file or symlink in the way is replaced; without, either
/// is an error. `base` itself is taken as given (CF's choice of path).
pub fn real_dirs(base: &Path, names: &[&str], create: bool) -> io::Result<PathBuf> {
    let mut path = base.to_path_buf();
    for name in names {
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) if create => fs::remove_file(&path)?,
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ))
            }
            Err(e) => return Err(e),
        }
        match fs::create_dir(&path) {
            // Another staging sharing the cache made it first.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
            other => other?,
        }
    }
    Ok(path)
}

/// Removes whatever is at `path` if it is not a real directory (a file, a symlink),
/// so that creating the directory never follows a link out of place.
pub fn replace_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `dir` a real directory, replacing a file or symlink found there.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    replace_non_dir(dir).map_err(Error::write(dir))?;
    fs::create_dir_all(dir).map_err(Error::write(dir))
}

/// Writes through a temp file in the same directory and renames it into place.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".write-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(Error::write(path))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(Error::write(path))?;
    // A temp file is 0600; what CF and other buildpacks read is 0644, as libbuildpack
    // writes it.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(Error::write(path))?;
    tmp.persist(path).map_err(|e| Error::write(path)(e.error))?;
    Ok(())
}

/// Reads a small text file of the buildpack or the operator (manifest.yml, VERSION, a
/// CA certificate): only a regular file, opened without blocking (a FIFO would hang the
/// staging), and at most `max` bytes (a link to /dev/zero would fill memory).
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    let file = crate::verify::open_regular(path)?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("is larger than {max} bytes"),
        ));
    }
    Ok(text)
}
