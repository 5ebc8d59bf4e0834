//! Streaming verification: bytes are hashed while they are copied into a temp file in
//! the destination directory, and the caller only ever gets a file whose sha256 matched
//! the pin (rustup's `download` does the same). Used for every source: the cached
//! buildpack, the app cache and the network.

use crate::digest::{BackgroundHasher, STREAM_BUFFER};
use crate::errors::Error;
use crate::manifest::Dependency;
use crate::redact::{describe, Redacted};
use crate::settings::{Network, DEFAULT_MAX_DOWNLOAD_MB};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tempfile::NamedTempFile;
use url::Url;

/// Where a verified artifact came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `file:` entry of a cached buildpack: no network.
    CachedBuildpack(PathBuf),
    /// A copy kept in `CACHE_DIR` by an earlier staging.
    AppCache(PathBuf),
    /// Downloaded (`https://`, `http://` or `file://`).
    Network(Url),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CachedBuildpack(p) => write!(f, "the cached buildpack ({})", p.display()),
            Origin::AppCache(p) => write!(f, "the app cache ({})", p.display()),
            Origin::Network(u) => write!(f, "{}", Redacted::url(u)),
        }
    }
}

/// An artifact whose sha256 matched, in a temp file that is deleted unless kept.
pub struct Verified {
    pub file: NamedTempFile,
    pub origin: Origin,
    pub bytes: u64,
}

/// How much of an artifact may be read, and how long one read may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of one artifact (`SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB`).
    pub max_bytes: u64,
    /// A read that blocks this long fails (`SIDECAR_BUILDPACK_STALL_TIMEOUT`).
    pub stall: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_DOWNLOAD_MB << 20,
            stall: Duration::from_secs(30),
        }
    }
}

impl Limits {
    pub fn of(net: &Network) -> Self {
        Limits {
            max_bytes: net.max_download,
            stall: net.stall_timeout,
        }
    }
}

/// Why streaming an artifact into place failed.
pub enum StreamError {
    /// Reading the source failed (for a download: worth another attempt).
    Read(String),
    /// The source has more bytes than `Limits::max_bytes`.
    TooLarge,
    /// Writing failed, or the digest did not match.
    Fatal(Box<Error>),
}

/// Streams `src` into a temp file in `dest_dir`, hashing as it goes, and keeps it only
/// if the digest matches. Stops at `max_bytes`: an endless or hostile source cannot
/// fill the disk. The hash runs on a second thread ([`BackgroundHasher`]) while the
/// next buffer is read and written, with a fixed number of buffers in flight. No
/// fsync: every reader verifies the digest again, so a file torn by a crash is caught
/// where it is used.
pub fn stream_verified(
    src: &mut dyn Read,
    dep: &Dependency,
    dest_dir: &Path,
    origin: Origin,
    max_bytes: u64,
) -> Result<Verified, StreamError> {
    let write_failed = |e: io::Error| StreamError::Fatal(Box::new(Error::write(dest_dir)(e)));
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}-", dep.name))
        .suffix(".partial")
        .tempfile_in(dest_dir)
        .map_err(write_failed)?;
    let mut hasher = BackgroundHasher::new();
    let mut head = Vec::new();
    loop {
        let mut buf = hasher.buffer();
        let n = fill(src, &mut buf).map_err(|e| {
            let reason = match &origin {
                Origin::Network(u) => describe(&e, u),
                _ => e.to_string(),
            };
            StreamError::Read(format!("{reason} after {} bytes", hasher.bytes()))
        })?;
        if n == 0 {
            break;
        }
        if hasher.bytes() + n as u64 > max_bytes {
            return Err(StreamError::TooLarge);
        }
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        file.write_all(&buf[..n]).map_err(write_failed)?;
        hasher.hash(buf, n);
    }
    let (actual, bytes) = hasher.finish().map_err(write_failed)?;
    if actual != dep.sha256 {
        let shown = match &origin {
            Origin::Network(u) => Redacted::url(u),
            other => Redacted::str(&other.to_string()),
        };
        return Err(StreamError::Fatal(Box::new(Error::Checksum {
            dependency: dep.id(),
            origin: shown,
            expected: dep.sha256,
            actual,
            bytes,
            error_page: looks_like_markup(&head),
        })));
    }
    Ok(Verified {
        file,
        origin,
        bytes,
    })
}

/// Reads into `buf` until it is full or the source ends: one large write and one hand-
/// over per buffer, whatever size of chunks the source gives. Returns the bytes read
/// (0 at the end).
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An HTML or XML body (an error page, a login form, an S3 `<Error>`).
fn looks_like_markup(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    ["<!doctype", "<html", "<?xml", "<error", "<head", "<body"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// Why a local file could not be used.
pub enum LocalError {
    /// It cannot be opened, or is not a regular file (a FIFO would block for ever, a
    /// device such as /dev/zero never ends).
    Unusable(String),
    /// It is larger than `Limits::max_bytes`.
    TooLarge,
    /// Reading it failed or stalled.
    Read(String),
    /// Writing the copy failed, or the digest did not match.
    Fatal(Box<Error>),
}

/// Copies the local file `path` into a temp file in `dest_dir` if its digest matches
/// `dep`: only a regular file, refused from its size if over the cap, read on a thread
/// so that a hung mount ends after the stall timeout.
pub fn copy_local(
    path: &Path,
    dep: &Dependency,
    dest_dir: &Path,
    origin: Origin,
    limits: Limits,
) -> Result<Verified, LocalError> {
    let file = open_regular(path).map_err(|e| LocalError::Unusable(e.to_string()))?;
    let size = file
        .metadata()
        .map_err(|e| LocalError::Unusable(e.to_string()))?
        .len();
    if size > limits.max_bytes {
        return Err(LocalError::TooLarge);
    }
    let mut src = StallGuard::new(file, limits.stall);
    stream_verified(&mut src, dep, dest_dir, origin, limits.max_bytes).map_err(|e| match e {
        StreamError::Read(r) => LocalError::Read(r),
        StreamError::TooLarge => LocalError::TooLarge,
        StreamError::Fatal(e) => LocalError::Fatal(e),
    })
}

/// Opens `path` for reading only if it is a regular file. The open itself never
/// blocks (O_NONBLOCK: a FIFO with no writer would), and the check is made on the
/// open file, so nothing can be swapped in between.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}; only a regular file can be an artifact"),
    ))
}

/// Reads a source on its own thread and hands over what it read, so a read that
/// blocks (a hung network mount) fails after `stall` instead of hanging the staging.
/// The thread is left behind then; the process exits soon after.
pub struct StallGuard {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    stall: Duration,
    done: bool,
}

impl StallGuard {
    pub fn new(mut src: impl Read + Send + 'static, stall: Duration) -> Self {
        let (tx, rx) = mpsc::sync_channel(2);
        thread::spawn(move || loop {
            let mut buf = vec![0u8; STREAM_BUFFER];
            let sent = match src.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    tx.send(Ok(buf)).is_ok() && n > 0
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    false
                }
            };
            if !sent {
                break;
            }
        });
        StallGuard {
            rx,
            chunk: Vec::new(),
            pos: 0,
            stall,
            done: false,
        }
    }
}

impl Read for StallGuard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv_timeout(self.stall) {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no byte for {} s (SIDECAR_BUILDPACK_STALL_TIMEOUT)",
                            self.stall.as_secs()
                        ),
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the reading thread ended"))
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Copies a local file into a temp file in `dest_dir` if its digest matches `dep`,
/// with the default limits. The packager uses it for local builds and mirrors.
pub fn copy_verified(path: &Path, dep: &Dependency, dest_dir: &Path) -> Result<Verified, Error> {
    let origin = Origin::CachedBuildpack(path.to_path_buf());
    copy_local(path, dep, dest_dir, origin, Limits::default()).map_err(|e| match e {
        LocalError::Fatal(e) => *e,
        LocalError::TooLarge => Error::TooLarge {
            dependency: dep.id(),
            origin: Redacted::str(&path.display().to_string()),
            limit: Limits::default().max_bytes,
        },
        LocalError::Unusable(reason) | LocalError::Read(reason) => Error::BuildpackFile {
            path: path.to_path_buf(),
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_blocks_ends_after_the_stall_timeout() {
        let (reader, writer) = io::pipe().expect("pipe");
        let mut guard = StallGuard::new(reader, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = guard.read(&mut [0u8; 16]).expect_err("stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(writer);
    }

    #[test]
    fn the_guard_passes_every_byte_through() {
        let data: Vec<u8> = (0..3 * STREAM_BUFFER + 17).map(|i| i as u8).collect();
        let mut guard = StallGuard::new(io::Cursor::new(data.clone()), Duration::from_secs(5));
        let mut out = Vec::new();
        guard.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(open_regular(dir.path()).is_err());
        let err = open_regular(Path::new("/dev/zero")).expect_err("device");
        assert!(err.to_string().contains("a device"), "{err}");
        let f = dir.path().join("f");
        std::fs::write(&f, "x").expect("write");
        assert!(open_regular(&f).is_ok());
    }
}
