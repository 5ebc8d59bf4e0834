//! Reading trees back: digests, snapshots, listings, and leftover temp files.

use buildpack::digest::copy_hashed;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let (d, _, _) = copy_hashed(&mut &bytes[..], std::io::sink()).expect("hash");
    d.to_string()
}

/// Every path under `dir` (relative) with what it is: a file's sha256 and mode, a
/// symlink's target, or `dir`. Compared before and after a run to prove nothing was
/// written outside where it belongs.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("under dir").to_path_buf();
            let m = fs::symlink_metadata(&p).expect("stat");
            let what = if m.is_symlink() {
                format!("link -> {}", fs::read_link(&p).expect("readlink").display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                let data = fs::read(&p).expect("read");
                format!(
                    "file {:o} {}",
                    m.permissions().mode() & 0o7777,
                    sha256_hex(&data)
                )
            } else if m.file_type().is_fifo() {
                "fifo".to_string()
            } else {
                "special".to_string()
            };
            out.insert(rel, what);
        }
    }
    out
}

/// The names of the entries directly in `dir`, sorted. Fails if `dir` cannot be read:
/// an empty listing of a directory that is not there would prove nothing.
#[track_caller]
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}
/// True for the names our temp files have: supply's (`.partial` files, `.unpack-`
/// dirs, the `.sidecar-buildpack-<idx>-….partial` staging dir) and the shell entry
/// point's (`.sidecar-buildpack-supply-….partial`, `.supply-….partial`), and, so that
/// older or careless ones are caught too, mktemp's `tmp.XXXXXXXXXX`, `.supply.XXXXXX`
/// and `.err` files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.ends_with(".partial")
        || name.ends_with(".err")
        || name.starts_with(".unpack-")
        || name.starts_with(".sidecar-buildpack-")
        || name.starts_with(".supply.")
        || name.starts_with("tmp.")
}

/// Fails if any file under `dir` is a leftover temp file, or if `dir` does not exist
/// (an absence of temp files in no directory at all proves nothing).
#[track_caller]
pub(crate) fn assert_no_temp_files(dir: &Path) {
    assert!(
        fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()),
        "{} is not a directory: nothing to check",
        dir.display()
    );
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(
                !is_temp_name(&name),
                "leftover temp file {}",
                e.path().display()
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}
