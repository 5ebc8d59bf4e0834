//! Making the executable from a verified artifact, in the run's staging dir (the
//! commit puts it in `<deps>/<idx>/bin/`): a bare executable is taken as it is; a `.tgz`
//! is unpacked into a temp dir beside it first, and only two of its files are kept: the
//! executable, and its CycloneDX SBOM if the archive carries one (`sbom_entry`), which
//! the commit puts in `<deps>/<idx>/sbom/`. Both come from the verified archive. The
//! unpacker takes only plain files and directories, inside its target, under caps on
//! every byte it reads: file data, extension headers, paths, entries and the
//! decompressed stream itself.

use buildpack::errors::Error;
use buildpack::manifest::{basename, relative_inside, Dependency, Sidecar};
use buildpack::redact::quoted;
use buildpack::verify::Verified;
use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Most bytes an archive may unpack to: a sidecar is one binary, and a gzip bomb
/// must not fill the droplet's disk.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Most entries an archive may hold (extension headers count).
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes of one extension header: a GNU long name or long link, or a PAX record
/// set. tar reads these whole before the entry they describe, so they are capped
/// before a byte is read; a real name needs far less.
pub const MAX_HEADER_BYTES: u64 = 8 << 10;
/// Most bytes of an entry's path.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most bytes of one component of a path (the filesystem's own limit).
pub const MAX_NAME_BYTES: usize = 255;
/// What tar's own framing (headers, padding) may add to the unpacked bytes in the
/// decompressed stream.
const FRAMING_BYTES: u64 = 64 << 20;

/// True when the artifact is a gzipped tarball, by its file name.
pub fn is_tarball(dep: &Dependency) -> bool {
    basename(&dep.uri).is_some_and(|n| n.ends_with(".tgz") || n.ends_with(".tar.gz"))
}

/// Where an archive carries the SBOM of its executable `.../<name>`:
/// `sbom/<name>.cdx.json`, the way `scripts/build-portable` packs config-server's.
pub fn sbom_entry(sidecar: &Sidecar) -> String {
    format!("sbom/{}.cdx.json", sidecar.installed_name())
}

/// Makes `sidecar`'s executable from `verified` as `dest` (in the staging dir), mode
/// 0755, and its SBOM as `sbom_dest`, mode 0644, when the archive has one. True when
/// it had. `work_dir` (same filesystem) holds the unpacked archive until the renames.
pub fn install(
    verified: Verified,
    sidecar: &Sidecar,
    dep: &Dependency,
    dest: &Path,
    sbom_dest: &Path,
    work_dir: &Path,
) -> Result<bool, Error> {
    if !is_tarball(dep) {
        fs::set_permissions(verified.file.path(), Permissions::from_mode(0o755))
            .map_err(Error::write(verified.file.path()))?;
        verified
            .file
            .persist(dest)
            .map_err(|e| Error::write(dest)(e.error))?;
        return Ok(false);
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
                entry: quoted(&sidecar.executable),
                problem: "is not in the archive as a file (manifest.yml sidecars[].executable)"
                    .into(),
            })
        }
    }
    fs::set_permissions(&exe, Permissions::from_mode(0o755)).map_err(Error::write(&exe))?;
    fs::rename(&exe, dest).map_err(Error::write(dest))?;
    // Optional: a third party's sidecar may come without one.
    let entry = sbom_entry(sidecar);
    let sbom = unpacked.path().join(&entry);
    match fs::symlink_metadata(&sbom) {
        Ok(m) if m.is_file() => {}
        // Something else there (unpack makes only files and directories) is a broken
        // SBOM, not a missing one: say so, since scanners will not find it.
        Ok(_) => {
            tracing::warn!(
                "the {} archive has {} as a directory, not a file: no SBOM is installed for \
                 {}; ask its publisher for a build with the SBOM as a file",
                dep.name,
                quoted(&entry),
                sidecar.installed_name()
            );
            return Ok(false);
        }
        Err(_) => return Ok(false),
    }
    fs::set_permissions(&sbom, Permissions::from_mode(0o644)).map_err(Error::write(&sbom))?;
    fs::rename(&sbom, sbom_dest).map_err(Error::write(sbom_dest))?;
    Ok(true)
}

/// Unpacks a gzipped tar into `target`, which must be empty. Any entry that is not a
/// plain file or directory, or whose path leaves `target`, fails the whole unpack; so
/// does an archive over any cap (`MAX_ENTRIES`, `MAX_UNPACKED_BYTES`,
/// `MAX_HEADER_BYTES`, `MAX_PATH_BYTES`, `MAX_NAME_BYTES`).
pub fn unpack(reader: impl Read, target: &Path, dependency: &str) -> Result<(), Error> {
    unpack_capped(reader, target, dependency, MAX_UNPACKED_BYTES)
}

/// Reads at most `left` bytes, then fails with `FileTooLarge` if there are more.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(io::Error::new(io::ErrorKind::FileTooLarge, "over the cap")),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// What extension headers said about the entry that follows them.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

/// `unpack` with the size cap as a parameter, so unit tests can prove the cap with
/// kilobytes instead of writing a gigabyte. Nothing else passes another cap.
fn unpack_capped(
    reader: impl Read,
    target: &Path,
    dependency: &str,
    cap: u64,
) -> Result<(), Error> {
    // `entry` is the entry's name as shown: already quoted and cut.
    let bad = |entry: &str, problem: &str| Error::Archive {
        dependency: dependency.to_string(),
        entry: entry.to_string(),
        problem: problem.to_string(),
    };
    let stream_cap = cap + FRAMING_BYTES;
    let whole = quoted("(archive)");
    // Where a truncated or corrupt archive breaks off: after the last entry read.
    let broken = |last: &str, e: io::Error| {
        if e.kind() == io::ErrorKind::FileTooLarge {
            bad(
                &whole,
                &format!("decompresses to more than {stream_cap} bytes"),
            )
        } else if last.is_empty() {
            bad(&whole, &format!("is not a readable gzipped tar: {e}"))
        } else {
            bad(
                last,
                &format!("is followed by a truncated or corrupt archive: {e}"),
            )
        }
    };
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(Capped {
        inner: gz,
        left: stream_cap,
    });
    let mut total: u64 = 0;
    let mut last = String::new();
    let mut pending = Pending::default();
    // Raw: extension headers come to this loop, to be capped, instead of being read
    // whole into memory by tar.
    let entries = archive.entries().map_err(|e| broken(&last, e))?.raw(true);
    for (count, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| broken(&last, e))?;
        if count >= MAX_ENTRIES {
            return Err(bad(&whole, &format!("has more than {MAX_ENTRIES} entries")));
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        let header_name = quoted(&String::from_utf8_lossy(&entry.header().path_bytes()));
        if let Some(what) = extension(kind) {
            if size > MAX_HEADER_BYTES || size > cap - total {
                return Err(bad(
                    &header_name,
                    &format!(
                        "is a {what} of {size} bytes; at most {MAX_HEADER_BYTES} are accepted"
                    ),
                ));
            }
            let mut data = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(size)
                .read_to_end(&mut data)
                .map_err(|e| broken(&header_name, e))?;
            if (data.len() as u64) < size {
                return Err(bad(
                    &header_name,
                    "is truncated: the archive ends inside it",
                ));
            }
            total += size;
            if kind.is_gnu_longname() {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                data.truncate(end);
                pending.long_name = Some(data);
            } else if kind.is_pax_local_extensions() {
                read_pax(&data, &mut pending).map_err(|p| bad(&header_name, &p))?;
            }
            continue;
        }

        // The entry's path: a PAX path, else a GNU long name, else the header's own.
        let raw_path = match pending.pax_path.take().or(pending.long_name.take()) {
            Some(p) => p,
            None => entry.header().path_bytes().into_owned(),
        };
        let pax_size = pending.pax_size.take();
        let raw = match String::from_utf8(raw_path) {
            Ok(raw) => raw,
            Err(e) => {
                let lossy = quoted(&String::from_utf8_lossy(e.as_bytes()));
                return Err(bad(&lossy, "has a path that is not UTF-8"));
            }
        };
        let shown = quoted(&raw);
        last.clone_from(&shown);
        if pax_size.is_some_and(|p| p != size) {
            return Err(bad(
                &shown,
                "has a PAX size that differs from its header's; the archive is ambiguous",
            ));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad(
                &shown,
                &format!(
                    "has a path of {} bytes; at most {MAX_PATH_BYTES} are accepted",
                    raw.len()
                ),
            ));
        }
        if raw.split('/').any(|c| c.len() > MAX_NAME_BYTES) {
            return Err(bad(
                &shown,
                &format!("has a name longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        let rel = raw.trim_start_matches("./").trim_end_matches('/');
        if rel.is_empty() && kind.is_dir() {
            continue;
        }
        if !relative_inside(rel) {
            return Err(bad(
                &shown,
                "has an absolute path or '..', which would write outside the target",
            ));
        }
        let path = target.join(rel);
        // An earlier entry made a file where this path needs a directory.
        let blocked = |e: io::Error, at: &Path| match e.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => bad(
                &shown,
                "runs through a path that an earlier entry made a file",
            ),
            io::ErrorKind::InvalidFilename => bad(&shown, "has a path too long for the filesystem"),
            _ => Error::write(at)(e),
        };
        // The declared size is all tar will read for this entry: a bomb is refused
        // before a byte of it is written. A directory's data counts too: tar reads it.
        if size > cap - total {
            return Err(bad(
                &shown,
                &format!(
                    "is {size} bytes, which takes the archive past the cap of {cap} unpacked \
                     bytes"
                ),
            ));
        }
        if kind.is_dir() {
            fs::create_dir_all(&path).map_err(|e| blocked(e, &path))?;
            total += size;
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
            return Err(bad(&shown, what));
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
                io::ErrorKind::AlreadyExists => bad(&shown, "appears twice in the archive"),
                _ => blocked(e, &path),
            })?;
        let written = io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                broken(&shown, e)
            } else if e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::InvalidData
                || e.raw_os_error().is_none()
            {
                bad(&shown, &format!("is truncated or corrupt: {e}"))
            } else {
                Error::write(&path)(e)
            }
        })?;
        if written < size {
            return Err(bad(&shown, "is truncated: the archive ends inside it"));
        }
        total += written;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        fs::set_permissions(&path, Permissions::from_mode(mode | 0o600))
            .map_err(Error::write(&path))?;
    }
    Ok(())
}

/// What an extension header is, if `kind` is one.
fn extension(kind: tar::EntryType) -> Option<&'static str> {
    if kind.is_gnu_longname() {
        Some("GNU long-name header")
    } else if kind.is_gnu_longlink() {
        Some("GNU long-link header")
    } else if kind.is_pax_local_extensions() {
        Some("PAX header")
    } else if kind.is_pax_global_extensions() {
        Some("PAX global header")
    } else {
        None
    }
}

/// Reads PAX records (`<length> <key>=<value>\n`, the length counting the whole record)
/// into `pending`. Sparse files are refused: their data is not the file.
fn read_pax(mut data: &[u8], pending: &mut Pending) -> Result<(), String> {
    let unreadable = || "is a PAX header that cannot be read".to_string();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(unreadable)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > space + 1 && *l <= data.len())
            .ok_or_else(unreadable)?;
        let record = &data[space + 1..len];
        let record = record.strip_suffix(b"\n").ok_or_else(unreadable)?;
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(unreadable)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => pending.pax_path = Some(value.to_vec()),
            b"size" => {
                pending.pax_size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(unreadable)?,
                )
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err("describes a sparse file, which is not accepted".into())
            }
            _ => {}
        }
        data = &data[len..];
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
    fn the_decompressed_stream_is_capped_too() {
        let mut capped = Capped {
            inner: io::repeat(0),
            left: 1000,
        };
        let mut out = Vec::new();
        let err = capped.read_to_end(&mut out).expect_err("over the cap");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(out.len(), 1000);
        let mut exact = Capped {
            inner: &[7u8; 1000][..],
            left: 1000,
        };
        assert_eq!(
            exact.read_to_end(&mut Vec::new()).expect("at the cap"),
            1000
        );
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
