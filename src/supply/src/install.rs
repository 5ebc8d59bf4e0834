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
use std::collections::HashMap;
use std::fs::{self, File, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Most bytes an archive may unpack to: a sidecar is one binary, and a gzip bomb
/// must not fill the droplet's disk.
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;
/// Most entries an archive may hold (extension headers count).
pub const MAX_ENTRIES: usize = 10_000;
/// Most files and directories an archive may create, the parents that its paths only
/// imply included: a 16 KB archive of 2,001 deep paths made 242,000 directories. Each
/// costs an inode and, for a directory, a block of at least 4 KiB, so this bounds
/// what the unpack spends on metadata to some 40 MiB and 10,000 inodes.
pub const MAX_INODES: usize = 10_000;
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
    if found(&exe)? != Found::File {
        return Err(Error::Archive {
            dependency: dep.name.clone(),
            entry: quoted(&sidecar.executable),
            problem: "is not in the archive as a file (manifest.yml sidecars[].executable)".into(),
        });
    }
    fs::set_permissions(&exe, Permissions::from_mode(0o755)).map_err(Error::write(&exe))?;
    fs::rename(&exe, dest).map_err(Error::write(dest))?;
    // Optional: a third party's sidecar may come without one.
    let entry = sbom_entry(sidecar);
    let sbom = unpacked.path().join(&entry);
    match found(&sbom)? {
        Found::File => {}
        // Something else there (unpack makes only files and directories) is a broken
        // SBOM, not a missing one: say so, since scanners will not find it.
        Found::Other => {
            tracing::warn!(
                "the {} archive has {} as a directory, not a file: no SBOM is installed for \
                 {}; ask its publisher for a build with the SBOM as a file",
                dep.name,
                quoted(&entry),
                sidecar.installed_name()
            );
            return Ok(false);
        }
        Found::Absent => return Ok(false),
    }
    fs::set_permissions(&sbom, Permissions::from_mode(0o644)).map_err(Error::write(&sbom))?;
    fs::rename(&sbom, sbom_dest).map_err(Error::write(sbom_dest))?;
    Ok(true)
}

/// What the unpack left at a path.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    File,
    /// A directory: unpack makes only files and directories.
    Other,
    Absent,
}

/// What is at `path`. Only a real absence is `Absent`: a failing `statx` (an I/O
/// error, a full kernel table) is an error, never taken for a missing SBOM, which would
/// install none and remove the earlier one.
fn found(path: &Path) -> Result<Found, Error> {
    classify(fs::symlink_metadata(path)).map_err(Error::write(path))
}

fn classify(stat: io::Result<fs::Metadata>) -> io::Result<Found> {
    match stat {
        Ok(m) if m.is_file() => Ok(Found::File),
        Ok(_) => Ok(Found::Other),
        // A file where a parent directory would be: the path is not there either.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Found::Absent)
        }
        Err(e) => Err(e),
    }
}

/// Unpacks a gzipped tar into `target`, which must be empty. Any entry that is not a
/// plain file or directory, or whose path leaves `target`, fails the whole unpack; so
/// does an archive over any cap (`MAX_ENTRIES`, `MAX_INODES`, `MAX_UNPACKED_BYTES`,
/// `MAX_HEADER_BYTES`, `MAX_PATH_BYTES`, `MAX_NAME_BYTES`). Every member of a
/// multi-member gzip (`cat a.gz b.gz`, bgzip) is read, as GNU tar does.
pub fn unpack(reader: impl Read, target: &Path, dependency: &str) -> Result<(), Error> {
    let caps = Caps {
        bytes: MAX_UNPACKED_BYTES,
        inodes: MAX_INODES,
    };
    Unpacker::new(target, dependency, caps).run(reader)
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

/// The caps of one unpack: parameters only so that unit tests can prove them with
/// kilobytes and a handful of inodes. Nothing else passes other caps.
#[derive(Clone, Copy)]
struct Caps {
    /// File data and extension headers, in bytes.
    bytes: u64,
    /// Files and directories created, parents that an entry only implies included.
    inodes: usize,
}

/// What extension headers said about the entry that follows them.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

/// An entry's path, checked: inside the target, within the path caps.
struct EntryPath {
    /// Relative to the target, without `./` or a trailing `/`; empty for the target.
    rel: String,
    /// As shown in messages: quoted and cut.
    shown: String,
}

/// The directories an entry's path needs that are not made yet: the deepest one made
/// (its index in `Unpacker::dirs` and its path), and the names below it.
struct Missing<'r> {
    parent: usize,
    at: PathBuf,
    names: Vec<&'r str>,
}

/// One unpack: its caps, what it has spent of them, and the directories it made.
struct Unpacker<'a> {
    target: &'a Path,
    dependency: &'a str,
    caps: Caps,
    /// Bytes of file data and extension headers read so far.
    bytes: u64,
    /// Files and directories created so far.
    inodes: usize,
    /// The directories made, as (parent's index, name) -> index; the target is 0.
    /// Known here, not asked of the filesystem, so that counting what an entry would
    /// create costs no system call; bounded by `caps.inodes` names of at most
    /// `MAX_NAME_BYTES`.
    dirs: HashMap<(usize, String), usize>,
    pending: Pending,
    /// The last entry read, as shown: where a truncated archive breaks off.
    last: String,
}

impl<'a> Unpacker<'a> {
    fn new(target: &'a Path, dependency: &'a str, caps: Caps) -> Self {
        Unpacker {
            target,
            dependency,
            caps,
            bytes: 0,
            inodes: 0,
            dirs: HashMap::new(),
            pending: Pending::default(),
            last: String::new(),
        }
    }

    /// The refusal of a hostile archive; `entry` is already quoted and cut.
    fn bad(&self, entry: &str, problem: &str) -> Error {
        Error::Archive {
            dependency: self.dependency.to_string(),
            entry: entry.to_string(),
            problem: problem.to_string(),
        }
    }

    fn stream_cap(&self) -> u64 {
        self.caps.bytes + FRAMING_BYTES
    }

    /// Where a truncated or corrupt archive breaks off: after the entry `last`.
    fn broken(&self, last: &str, e: &io::Error) -> Error {
        if e.kind() == io::ErrorKind::FileTooLarge {
            let cap = self.stream_cap();
            self.bad(&whole(), &format!("decompresses to more than {cap} bytes"))
        } else if last.is_empty() {
            self.bad(&whole(), &format!("is not a readable gzipped tar: {e}"))
        } else {
            self.bad(
                last,
                &format!("is followed by a truncated or corrupt archive: {e}"),
            )
        }
    }

    fn run(mut self, reader: impl Read) -> Result<(), Error> {
        let gz = flate2::read::MultiGzDecoder::new(reader);
        let mut archive = tar::Archive::new(Capped {
            inner: gz,
            left: self.stream_cap(),
        });
        // Raw: extension headers come to this loop, to be capped, instead of being
        // read whole into memory by tar.
        let entries = archive
            .entries()
            .map_err(|e| self.broken("", &e))?
            .raw(true);
        for (count, entry) in entries.enumerate() {
            let entry = entry.map_err(|e| self.broken(&self.last, &e))?;
            if count >= MAX_ENTRIES {
                return Err(self.bad(&whole(), &format!("has more than {MAX_ENTRIES} entries")));
            }
            let kind = entry.header().entry_type();
            if let Some(what) = extension(kind) {
                self.extension_header(entry, kind, what)?;
                continue;
            }
            let path = self.entry_path(&entry)?;
            self.last.clone_from(&path.shown);
            self.member(entry, kind, &path)?;
        }
        Ok(())
    }

    /// Reads a GNU long name or long link, or a PAX header, into `pending`, capped
    /// from its declared size before a byte of it is read.
    fn extension_header<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        kind: tar::EntryType,
        what: &str,
    ) -> Result<(), Error> {
        let size = entry.size();
        let shown = quoted(&String::from_utf8_lossy(&entry.header().path_bytes()));
        if size > MAX_HEADER_BYTES || size > self.caps.bytes - self.bytes {
            return Err(self.bad(
                &shown,
                &format!("is a {what} of {size} bytes; at most {MAX_HEADER_BYTES} are accepted"),
            ));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| self.broken(&shown, &e))?;
        if (data.len() as u64) < size {
            return Err(self.bad(&shown, "is truncated: the archive ends inside it"));
        }
        self.bytes += size;
        if kind.is_gnu_longname() {
            let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
            data.truncate(end);
            self.pending.long_name = Some(data);
        } else if kind.is_pax_local_extensions() {
            read_pax(&data, &mut self.pending).map_err(|p| self.bad(&shown, &p))?;
        }
        Ok(())
    }

    /// The entry's path (a PAX path, else a GNU long name, else the header's own),
    /// checked against the path caps and for leaving the target.
    fn entry_path<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<EntryPath, Error> {
        let raw_path = match self
            .pending
            .pax_path
            .take()
            .or(self.pending.long_name.take())
        {
            Some(p) => p,
            None => entry.header().path_bytes().into_owned(),
        };
        let pax_size = self.pending.pax_size.take();
        let raw = String::from_utf8(raw_path).map_err(|e| {
            let lossy = quoted(&String::from_utf8_lossy(e.as_bytes()));
            self.bad(&lossy, "has a path that is not UTF-8")
        })?;
        let shown = quoted(&raw);
        if pax_size.is_some_and(|p| p != entry.size()) {
            return Err(self.bad(
                &shown,
                "has a PAX size that differs from its header's; the archive is ambiguous",
            ));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(self.bad(
                &shown,
                &format!(
                    "has a path of {} bytes; at most {MAX_PATH_BYTES} are accepted",
                    raw.len()
                ),
            ));
        }
        if raw.split('/').any(|c| c.len() > MAX_NAME_BYTES) {
            return Err(self.bad(
                &shown,
                &format!("has a name longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        let rel = raw.trim_start_matches("./").trim_end_matches('/');
        if !rel.is_empty() && !relative_inside(rel) {
            return Err(self.bad(
                &shown,
                "has an absolute path or '..', which would write outside the target",
            ));
        }
        Ok(EntryPath {
            rel: rel.to_string(),
            shown,
        })
    }

    /// Makes one plain file or directory; anything else fails the unpack.
    fn member<R: Read>(
        &mut self,
        entry: tar::Entry<'_, R>,
        kind: tar::EntryType,
        path: &EntryPath,
    ) -> Result<(), Error> {
        if path.rel.is_empty() {
            if kind.is_dir() {
                return Ok(());
            }
            return Err(self.bad(
                &path.shown,
                "has an absolute path or '..', which would write outside the target",
            ));
        }
        // The declared size is all tar will read for this entry: a bomb is refused
        // before a byte of it is written. A directory's data counts too: tar reads it.
        let size = entry.size();
        if size > self.caps.bytes - self.bytes {
            return Err(self.bad(
                &path.shown,
                &format!(
                    "is {size} bytes, which takes the archive past the cap of {} unpacked \
                     bytes",
                    self.caps.bytes
                ),
            ));
        }
        if kind.is_dir() {
            let missing = self.missing(&path.rel);
            let new = missing.names.len();
            self.charge_inodes(path, new, new.saturating_sub(1))?;
            self.make_dirs(path, missing)?;
            self.bytes += size;
            return Ok(());
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            let what = if kind.is_symlink() {
                "is a symbolic link; only plain files and directories are accepted"
            } else if kind.is_hard_link() {
                "is a hard link; only plain files and directories are accepted"
            } else {
                "is a device, FIFO or other special file; only plain files and directories \
                 are accepted"
            };
            return Err(self.bad(&path.shown, what));
        }
        let parent = path.rel.rsplit_once('/').map_or("", |(parent, _)| parent);
        let missing = self.missing(parent);
        let implied = missing.names.len();
        self.charge_inodes(path, implied + 1, implied)?;
        self.make_dirs(path, missing)?;
        self.write_file(entry, path)
    }

    /// Counts `new` more files and directories against the inode cap.
    fn charge_inodes(&mut self, path: &EntryPath, new: usize, implied: usize) -> Result<(), Error> {
        if new > self.caps.inodes - self.inodes {
            let cap = self.caps.inodes;
            let problem = if implied > 0 {
                format!(
                    "takes the archive past the cap of {cap} files and directories, counting \
                     the {implied} parent directories its path implies"
                )
            } else {
                format!("takes the archive past the cap of {cap} files and directories")
            };
            return Err(self.bad(&path.shown, &problem));
        }
        self.inodes += new;
        Ok(())
    }

    /// The directories of `rel` (relative to the target) that are not made yet.
    fn missing<'r>(&self, rel: &'r str) -> Missing<'r> {
        let mut missing = Missing {
            parent: 0,
            at: self.target.to_path_buf(),
            names: Vec::new(),
        };
        if rel.is_empty() {
            return missing;
        }
        let mut names = rel.split('/');
        for name in names.by_ref() {
            if let Some(&index) = self.dirs.get(&(missing.parent, name.to_string())) {
                missing.parent = index;
                missing.at.push(name);
            } else {
                missing.names.push(name);
                break;
            }
        }
        missing.names.extend(names);
        missing
    }

    /// Makes the `missing` directories, one at a time, each inside the one before;
    /// they have been counted against the inode cap.
    fn make_dirs(&mut self, path: &EntryPath, missing: Missing<'_>) -> Result<(), Error> {
        let Missing {
            mut parent,
            mut at,
            names,
        } = missing;
        for name in names {
            at.push(name);
            fs::create_dir(&at).map_err(|e| self.blocked(path, &e, &at))?;
            let index = self.dirs.len() + 1;
            self.dirs.insert((parent, name.to_string()), index);
            parent = index;
        }
        Ok(())
    }

    /// The error for a path that could not be made: an earlier entry made a file where
    /// this one needs a directory, or the filesystem refused.
    fn blocked(&self, path: &EntryPath, e: &io::Error, at: &Path) -> Error {
        match e.kind() {
            io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => self.bad(
                &path.shown,
                "runs through a path that an earlier entry made a file",
            ),
            io::ErrorKind::InvalidFilename => {
                self.bad(&path.shown, "has a path too long for the filesystem")
            }
            _ => Error::write(at)(clone_error(e)),
        }
    }

    /// Writes a plain file's data, never through anything already there, with its
    /// mode less setuid, setgid, sticky and group or world write.
    fn write_file<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        path: &EntryPath,
    ) -> Result<(), Error> {
        let size = entry.size();
        let at = self.target.join(&path.rel);
        // create_new: never write through anything already there.
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(&at)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    self.bad(&path.shown, "appears twice in the archive")
                }
                _ => self.blocked(path, &e, &at),
            })?;
        let written = io::copy(&mut (&mut entry).take(size), &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                self.broken(&path.shown, &e)
            } else if e.kind() == io::ErrorKind::UnexpectedEof
                || e.kind() == io::ErrorKind::InvalidData
                || e.raw_os_error().is_none()
            {
                self.bad(&path.shown, &format!("is truncated or corrupt: {e}"))
            } else {
                Error::write(&at)(e)
            }
        })?;
        if written < size {
            return Err(self.bad(&path.shown, "is truncated: the archive ends inside it"));
        }
        self.bytes += written;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        fs::set_permissions(&at, Permissions::from_mode(mode | 0o600)).map_err(Error::write(&at))
    }
}

/// The whole archive, as an entry's name in messages.
fn whole() -> String {
    quoted("(archive)")
}

/// An `io::Error` for `Error::write`, which takes it by value, from one borrowed.
fn clone_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
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
                );
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
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
            }
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

    fn unpack_capped(
        reader: impl Read,
        target: &Path,
        bytes: u64,
        inodes: usize,
    ) -> Result<(), Error> {
        Unpacker::new(target, "dep", Caps { bytes, inodes }).run(reader)
    }

    /// Every directory and file under `dir`.
    fn inodes_under(dir: &Path) -> usize {
        let mut count = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read") {
                let p = e.expect("entry").path();
                count += 1;
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        count
    }

    #[test]
    fn the_cap_counts_the_whole_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let two = tgz(&[("a", 600), ("b", 600)]);
        let err = unpack_capped(&two[..], dir.path(), 1000, 100).expect_err("over the cap");
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
        unpack_capped(&two[..], dir.path(), 1200, 100).expect("exactly at the cap");
    }

    #[test]
    fn implied_parent_directories_count_against_the_inode_cap() {
        // 3 entries, 10 components each: 28 directories and 3 files, 2 of them only
        // implied by paths. The cap is met exactly, then passed by one.
        let deep = |top: &str| format!("{top}/a/b/c/d/e/f/g/h/file");
        let (x, y, z) = (deep("x"), deep("y"), deep("z"));
        let three = tgz(&[(&x, 1), (&y, 1), (&z, 1)]);
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_capped(&three[..], dir.path(), 1000, 30).expect("exactly at the cap");
        assert_eq!(inodes_under(dir.path()), 30);

        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack_capped(&three[..], dir.path(), 1000, 29).expect_err("over the cap");
        assert_eq!(
            err.to_string(),
            "the dep archive is unusable: entry \"z/a/b/c/d/e/f/g/h/file\" takes the archive \
             past the cap of 29 files and directories, counting the 9 parent directories \
             its path implies"
        );
        assert_eq!(inodes_under(dir.path()), 20, "z's parents are never made");

        // A directory entry that only re-declares a made one creates nothing.
        let again = tgz(&[(&x, 1), ("x/a/b/", 0), ("x/a/", 0)]);
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_capped(&again[..], dir.path(), 1000, 10).expect("nothing new");
    }

    #[test]
    fn only_a_real_absence_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("file"), "x").expect("file");
        assert_eq!(found(&dir.path().join("file")).expect("file"), Found::File);
        assert_eq!(found(dir.path()).expect("dir"), Found::Other);
        assert_eq!(
            found(&dir.path().join("none")).expect("none"),
            Found::Absent
        );
        assert_eq!(
            found(&dir.path().join("file/under")).expect("under a file"),
            Found::Absent
        );
        // What a failing statx gives: an error, not "no SBOM".
        for code in [
            5,  /* EIO */
            12, /* ENOMEM */
            75, /* EOVERFLOW */
        ] {
            let err = classify(Err(io::Error::from_raw_os_error(code))).expect_err("not absent");
            assert_eq!(err.raw_os_error(), Some(code));
        }
    }

    #[test]
    fn every_member_of_a_multi_member_gzip_is_read() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, size) in [("a", 3000usize), ("b", 5000)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, io::repeat(7).take(size as u64))
                .expect("append");
        }
        let tar = tar.into_inner().expect("tar");
        // `cat a.gz b.gz`: the second member starts inside b's data.
        let mut gz = Vec::new();
        for part in [&tar[..4000], &tar[4000..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, part).expect("gzip");
            gz.extend(e.finish().expect("gzip"));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        unpack(&gz[..], dir.path(), "dep").expect("both members read");
        assert_eq!(fs::read(dir.path().join("b")).expect("b").len(), 5000);
        // The caps hold across members.
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack_capped(&gz[..], dir.path(), 7000, 100).expect_err("over the cap");
        assert!(err.to_string().contains("past the cap of 7000"), "{err}");
    }
}
