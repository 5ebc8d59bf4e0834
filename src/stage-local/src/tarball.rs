//! `--droplet FILE`: the droplet as CF's builder hands it to Cloud Controller. The
//! builder runs `tar -czf <droplet> -C <contents> .`, so every entry is named from `./`
//! (`./`, `./app/...`, `./deps/0/...`, `./staging_info.yml`), with the files' modes,
//! owners and times. Entries are written in name order, so two droplets of the same
//! app diff cleanly. The archive is written next to FILE and renamed into place once
//! complete: FILE is never half-written. It is created 0666 less the umask (0644 with the
//! usual 022), as `tar` creates it.

use anyhow::Context as _;
use flate2::write::GzEncoder;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use tar::{EntryType, Header, HeaderMode};

/// Writes `droplet` (a directory) to `target` as a gzipped tar.
pub(crate) fn write(droplet: &Path, target: &Path) -> anyhow::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    // 0666 less the umask, as `tar -czf` (CF's builder) and any build output are
    // created: not tempfile's private 0600.
    let tmp = tempfile::Builder::new()
        .prefix(".droplet")
        .suffix(".partial")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let gz = GzEncoder::new(io::BufWriter::new(tmp), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    add(&mut tar, droplet, b".")
        .with_context(|| format!("cannot archive {}", droplet.display()))?;
    let tmp = tar
        .into_inner()
        .and_then(flate2::write::GzEncoder::finish)
        .and_then(|buf| {
            buf.into_inner()
                .map_err(std::io::IntoInnerError::into_error)
        })
        .with_context(|| format!("cannot write the droplet into {}", dir.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(())
}

/// Adds `path` as `name` (`.`-rooted), then, for a directory, its entries by name.
fn add<W: Write>(tar: &mut tar::Builder<W>, path: &Path, name: &[u8]) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(&meta, HeaderMode::Complete);
    let kind = meta.file_type();
    if kind.is_dir() {
        let mut dir_name = name.to_vec();
        dir_name.push(b'/');
        append(tar, &mut header, &dir_name, None, io::empty())?;
        let mut children: Vec<_> = fs::read_dir(path)?.collect::<io::Result<_>>()?;
        children.sort_by_key(std::fs::DirEntry::file_name);
        for child in children {
            let mut child_name = name.to_vec();
            child_name.push(b'/');
            child_name.extend_from_slice(child.file_name().as_bytes());
            add(tar, &child.path(), &child_name)?;
        }
        Ok(())
    } else if kind.is_symlink() {
        let target = fs::read_link(path)?;
        header.set_size(0);
        append(
            tar,
            &mut header,
            name,
            Some(target.as_os_str().as_bytes()),
            io::empty(),
        )
    } else if kind.is_file() {
        append(tar, &mut header, name, None, fs::File::open(path)?)
    } else {
        // Sockets, fifos and devices have no place in a droplet; tar would archive them,
        // but nothing a buildpack leaves there should be one.
        Ok(())
    }
}

/// Appends one entry named `name` exactly (the tar crate would drop the leading `./`),
/// with GNU long-name and long-link entries for what does not fit the header.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl io::Read,
) -> io::Result<()> {
    let gnu = header
        .as_gnu_mut()
        .ok_or_else(|| io::Error::other("not a GNU header"))?;
    if name.len() > gnu.name.len() {
        long(tar, EntryType::GNULongName, name)?;
    }
    fill(&mut gnu.name, name);
    if let Some(link) = link {
        if link.len() > gnu.linkname.len() {
            long(tar, EntryType::GNULongLink, link)?;
        }
        fill(&mut gnu.linkname, link);
    }
    header.set_cksum();
    tar.append(header, data)
}

/// A GNU `././@LongLink` entry carrying a name that does not fit in 100 bytes.
fn long<W: Write>(tar: &mut tar::Builder<W>, kind: EntryType, value: &[u8]) -> io::Result<()> {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let mut data = value.to_vec();
    data.push(0);
    h.set_size(data.len() as u64);
    if let Some(gnu) = h.as_gnu_mut() {
        fill(&mut gnu.name, b"././@LongLink");
    }
    h.set_cksum();
    tar.append(&h, data.as_slice())
}

/// Copies as much of `value` as fits, NUL-padded.
fn fill(slot: &mut [u8], value: &[u8]) {
    let n = value.len().min(slot.len());
    slot.fill(0);
    slot[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::unix::fs::{symlink, PermissionsExt as _};

    #[test]
    fn entries_are_dot_rooted_in_name_order_with_modes_and_long_names() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = root.path().join("droplet");
        let long_dir = "d".repeat(120);
        for dir in ["app", "deps/0/bin", &format!("app/{long_dir}")] {
            fs::create_dir_all(d.join(dir)).expect("mkdir");
        }
        fs::write(d.join("staging_info.yml"), "{}\n").expect("write");
        fs::write(d.join("deps/0/bin/tool"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(d.join("deps/0/bin/tool"), fs::Permissions::from_mode(0o750))
            .expect("chmod");
        fs::write(d.join("app").join(&long_dir).join("f"), "x").expect("write");
        symlink("../deps/0/bin/tool", d.join("app/tool")).expect("symlink");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).expect("chmod");
        let tgz = root.path().join("droplet.tgz");
        write(&d, &tgz).expect("written");

        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            fs::File::open(&tgz).expect("open"),
        ));
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut e = entry.expect("entry");
            let name = String::from_utf8_lossy(&e.path_bytes()).to_string();
            let mode = e.header().mode().expect("mode");
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).to_string());
            let mut body = String::new();
            e.read_to_string(&mut body).expect("read");
            seen.push((name, mode & 0o7777, link, body));
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        let long_file = format!("./app/{long_dir}/f");
        assert_eq!(
            names,
            vec![
                "./",
                "./app/",
                &format!("./app/{long_dir}/"),
                &long_file,
                "./app/tool",
                "./deps/",
                "./deps/0/",
                "./deps/0/bin/",
                "./deps/0/bin/tool",
                "./staging_info.yml",
            ]
        );
        assert_eq!(seen[0].1, 0o700, "the droplet's root");
        assert_eq!(seen[8].1, 0o750);
        assert_eq!(seen[8].3, "#!/bin/sh\n");
        assert_eq!(seen[3].3, "x");
        assert_eq!(seen[4].2.as_deref(), Some("../deps/0/bin/tool"));
        let leftovers: Vec<_> = fs::read_dir(root.path())
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
