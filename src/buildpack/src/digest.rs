//! `Sha256`: a sha256 digest that can only hold a valid value, and a writer that
//! hashes what passes through it, so an artifact is hashed while it streams to disk.

use sha2::{Digest, Sha256 as Hasher};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A sha256 digest: exactly 32 bytes, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256([u8; 32]);

/// Why a string is not a sha256 digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// The string does not have 64 characters.
    #[error("expected 64 hex digits, found {0} characters")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("{0:?} at position {1} is not a hex digit")]
    NotHex(char, usize),
}

impl FromStr for Sha256 {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.chars().count() != 64 {
            return Err(DigestError::Length(s.chars().count()));
        }
        // The character itself, not the first byte of its UTF-8 (which named `ï` for a
        // byte order mark, a character the file does not hold).
        if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(DigestError::NotHex(c, i));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            out[i] = hex_value(pair[0]) << 4 | hex_value(pair[1]);
        }
        Ok(Sha256(out))
    }
}

/// The value of a hex digit (the caller checked that it is one).
fn hex_value(b: u8) -> u8 {
    char::from(b).to_digit(16).map_or(0, |d| d as u8)
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Wraps a writer, hashing and counting every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
            bytes: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Sha256, u64, W) {
        (
            Sha256(self.hasher.finalize().into()),
            self.bytes,
            self.inner,
        )
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size of the buffer used to stream artifacts: big enough to keep syscalls rare,
/// small enough that memory does not depend on the artifact.
pub const STREAM_BUFFER: usize = 256 * 1024;

/// Buffers in flight between a reader and [`BackgroundHasher`]'s thread: enough that
/// neither waits for the other on a steady stream, few enough that memory stays flat
/// (`HASH_DEPTH` × [`STREAM_BUFFER`]) whatever the artifact's size.
const HASH_DEPTH: usize = 4;

/// Hashes, on a thread of its own, the buffers it is handed, and hands each back to be
/// filled again: the caller reads and writes one buffer while the one before is being
/// hashed, so staging takes about as long as the slower of the transfer and the hash,
/// not their sum (two cores at least; on one it is no slower than hashing inline).
pub struct BackgroundHasher {
    to_hash: Option<std::sync::mpsc::SyncSender<(Vec<u8>, usize)>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Sha256>>,
    allocated: usize,
    bytes: u64,
}

impl Default for BackgroundHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundHasher {
    /// Starts the hashing thread.
    #[must_use]
    pub fn new() -> Self {
        let (to_hash, work) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(HASH_DEPTH);
        let (give_back, free) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut hasher = Hasher::new();
            for (buf, len) in work {
                hasher.update(&buf[..len]);
                // The reader may have finished and gone: then the buffer is dropped.
                let _ = give_back.send(buf);
            }
            Sha256(hasher.finalize().into())
        });
        BackgroundHasher {
            to_hash: Some(to_hash),
            free,
            thread: Some(thread),
            allocated: 0,
            bytes: 0,
        }
    }

    /// A buffer of [`STREAM_BUFFER`] bytes to fill: a new one while fewer than
    /// `HASH_DEPTH` exist, else the next one the hashing thread has finished with.
    pub fn buffer(&mut self) -> Vec<u8> {
        if self.allocated < HASH_DEPTH {
            self.allocated += 1;
            return vec![0u8; STREAM_BUFFER];
        }
        // The thread only stops once `to_hash` is dropped (in `finish`), so a buffer
        // always comes back; a new one is the safe answer should it not.
        self.free
            .recv()
            .unwrap_or_else(|_| vec![0u8; STREAM_BUFFER])
    }

    /// Hands `buf[..len]` to the hashing thread; blocks while `HASH_DEPTH` buffers
    /// wait to be hashed.
    pub fn hash(&mut self, buf: Vec<u8>, len: usize) {
        self.bytes += len as u64;
        if let Some(tx) = &self.to_hash {
            let _ = tx.send((buf, len));
        }
    }

    /// Bytes handed over so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The digest and byte count of everything handed over, once the thread is done.
    ///
    /// # Errors
    ///
    /// The hashing thread died (it cannot, short of running out of memory).
    pub fn finish(mut self) -> io::Result<(Sha256, u64)> {
        drop(self.to_hash.take());
        let digest = self
            .thread
            .take()
            .map(std::thread::JoinHandle::join)
            .and_then(Result::ok)
            .ok_or_else(|| io::Error::other("the hashing thread ended before the last byte"))?;
        Ok((digest, self.bytes))
    }
}

/// Copies `reader` into `writer`, hashing on the way. Returns the digest and byte count.
pub fn copy_hashed<R: Read, W: Write>(reader: &mut R, writer: W) -> io::Result<(Sha256, u64, W)> {
    let mut hw = HashingWriter::new(writer);
    let mut buf = vec![0u8; STREAM_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hw.write_all(&buf[..n])?;
    }
    Ok(hw.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_lowercase() {
        let d: Sha256 = EMPTY.to_uppercase().parse().expect("valid digest");
        assert_eq!(d.to_string(), EMPTY);
    }

    #[test]
    fn rejects_wrong_length() {
        assert_eq!("abc".parse::<Sha256>(), Err(DigestError::Length(3)));
        assert_eq!(
            format!("{EMPTY}0").parse::<Sha256>(),
            Err(DigestError::Length(65))
        );
    }

    #[test]
    fn rejects_non_hex_and_names_position() {
        let bad = format!("{}g", &EMPTY[..63]);
        assert_eq!(bad.parse::<Sha256>(), Err(DigestError::NotHex('g', 63)));
        // The character named is the one written, not the first byte of its UTF-8.
        let multibyte = format!("{}é", &EMPTY[..63]);
        assert_eq!(
            multibyte.parse::<Sha256>(),
            Err(DigestError::NotHex('é', 63))
        );
        let bom = format!("{}\u{feff}{}", &EMPTY[..29], &EMPTY[30..]);
        let err = bom.parse::<Sha256>().expect_err("not hex");
        assert_eq!(err, DigestError::NotHex('\u{feff}', 29));
        assert_eq!(
            err.to_string(),
            "'\\u{feff}' at position 29 is not a hex digit"
        );
    }

    #[test]
    fn hashes_while_copying() {
        let (digest, n, out) =
            copy_hashed(&mut &b""[..], Vec::new()).expect("copy into memory cannot fail");
        assert_eq!((digest.to_string().as_str(), n, out.len()), (EMPTY, 0, 0));
        let (digest, n, out) = copy_hashed(&mut &b"abc"[..], Vec::new()).expect("copy");
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((n, out), (3, b"abc".to_vec()));
    }

    #[test]
    fn the_background_hasher_agrees_with_hashing_inline() {
        // Several times the buffers in flight, with a short last buffer.
        let data: Vec<u8> = (0..(HASH_DEPTH * 3 * STREAM_BUFFER + 1234))
            .map(|i| (i % 251) as u8)
            .collect();
        let (inline, n, _) = copy_hashed(&mut &data[..], io::sink()).expect("inline");
        let mut h = BackgroundHasher::new();
        for chunk in data.chunks(STREAM_BUFFER) {
            let mut buf = h.buffer();
            assert_eq!(buf.len(), STREAM_BUFFER);
            buf[..chunk.len()].copy_from_slice(chunk);
            h.hash(buf, chunk.len());
        }
        assert_eq!(h.bytes(), n);
        assert_eq!(
            h.allocated, HASH_DEPTH,
            "buffers are reused, not allocated per chunk"
        );
        assert_eq!(h.finish().expect("digest"), (inline, n));
        let empty = BackgroundHasher::new().finish().expect("digest of nothing");
        assert_eq!(
            empty.0,
            copy_hashed(&mut &b""[..], io::sink()).expect("inline").0
        );
    }
}
