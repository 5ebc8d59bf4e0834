//! Archives for tests: well-formed ones, and hostile ones written entry by entry.

/// A gzipped tar holding regular files (path, contents, mode).
pub(crate) fn tgz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let raw: Vec<Entry> = entries
        .iter()
        .map(|(p, d, m)| Entry::file(p, d, *m))
        .collect();
    raw_tgz(&raw)
}

/// One tar entry, written as given: paths are not checked, so hostile archives can
/// be built (`../`, absolute paths, links, devices).
pub(crate) struct Entry {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
    pub kind: tar::EntryType,
    pub link: Option<String>,
}

impl Entry {
    pub(crate) fn file(path: &str, data: &[u8], mode: u32) -> Entry {
        Entry {
            path: path.into(),
            data: data.to_vec(),
            mode,
            kind: tar::EntryType::Regular,
            link: None,
        }
    }

    pub(crate) fn link(path: &str, kind: tar::EntryType, target: &str) -> Entry {
        Entry {
            path: path.into(),
            data: Vec::new(),
            mode: 0o777,
            kind,
            link: Some(target.into()),
        }
    }
}

pub(crate) fn raw_tgz(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        if let Some(l) = &e.link {
            let ln = &mut h.as_gnu_mut().expect("gnu header").linkname;
            ln[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_entry_type(e.kind);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &e.data[..]).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gzip")
}

/// A fake sidecar binary: a shell script, so the tests can tell it from others.
pub(crate) fn sidecar_bytes(tag: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho config-server {tag}\n").into_bytes()
}
