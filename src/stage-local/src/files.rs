//! Reading the files stage-local is given or finds (the app's manifest.yml and
//! Procfile, `--vcap-services`, what buildpacks write in the deps dir, a buildpack zip)
//! as `supply` reads its own: only a regular file, opened without blocking, and no more
//! than a cap. A FIFO there hung the run beyond Ctrl-C and SIGTERM (a blocked read never
//! sees the signal's flag), and a link to /dev/zero read until memory ran out.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most read of one small file: far above a real manifest, Procfile,
/// VCAP_SERVICES or launch.yml (Cloud Controller caps an app's environment and a
/// buildpack's manifest.yml near this), far below a memory problem.
pub(crate) const MAX_SMALL_FILE: u64 = 1 << 20;

/// Opens `path` for reading only if it is a regular file, without blocking (a FIFO
/// with no writer would block the open); the type is checked on the open file, so
/// nothing can be swapped in between. A missing file stays `NotFound`.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}; only a regular file is read"),
    ))
}

/// Reads a small regular file whole: at most `MAX_SMALL_FILE` bytes.
pub(crate) fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?
        .take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("it is larger than {MAX_SMALL_FILE} bytes"),
        ));
    }
    Ok(bytes)
}

/// `read_small`, as UTF-8 text.
pub(crate) fn read_small_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_small(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("f");
        std::fs::write(&file, "ok").expect("write");
        assert_eq!(read_small_text(&file).expect("read"), "ok");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_SMALL_FILE as usize + 1]).expect("write");
        assert_eq!(
            read_small(&big).expect_err("too big").kind(),
            io::ErrorKind::FileTooLarge
        );
        let missing = read_small(&dir.path().join("none")).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (dir.path(), "a directory"),
        ] {
            let e = read_small(path).expect_err("refused");
            assert!(e.to_string().contains(what), "{e}");
        }
    }
}
