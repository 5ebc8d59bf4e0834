//! What must hold for any input, whatever a fuzzer throws at the readers of untrusted
//! bytes. Shared by the fuzz targets (fuzz/fuzz_targets/) and by the regression test
//! (src/supply/tests/it/fuzz_regressions.rs), which replays fuzz/seeds/ and fuzz/regressions/.
//! Each function panics when an invariant breaks.

// Each fuzz target uses one of these; the regression test uses all three.
#![allow(dead_code)]

use buildpack::errors::Error;
use buildpack::launch::LaunchYml;
use buildpack::manifest::{relative_inside, valid_identifier, valid_name, Manifest, MEMORY_RANGE};
use buildpack::redact::is_unsafe;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use supply::install;

/// The manifest loader: never panics; what it accepts is what the rest relies on; what
/// it rejects names manifest.yml and a key.
pub(super) fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/bp/manifest.yml");
    match Manifest::parse(text, path) {
        Ok(m) => {
            assert!(valid_name(&m.language));
            for s in &m.sidecars {
                assert!(valid_name(&s.name), "sidecar name {:?}", s.name);
                assert!(relative_inside(&s.executable), "{:?}", s.executable);
                assert!(MEMORY_RANGE.contains(&s.memory_mb));
                let dep = m
                    .pick(&s.dependency, None)
                    .expect("a checked sidecar's dependency can be picked");
                assert_eq!(dep.sha256.to_string().len(), 64);
                let _ = m.pick(&s.dependency, Some("cflinuxfs4"));
            }
            for d in &m.dependencies {
                assert!(valid_identifier(&d.name), "name {:?}", d.name);
                assert!(valid_identifier(&d.version), "version {:?}", d.version);
                if let Some(f) = &d.file {
                    assert!(relative_inside(f), "file {f:?}");
                }
            }
        }
        Err(e @ Error::Manifest { .. }) => {
            let Error::Manifest { path: p, key, .. } = &e else {
                unreachable!()
            };
            assert_eq!(p, path);
            assert!(!key.is_empty());
            shown_safely(&e.to_string());
        }
        Err(other) => panic!("not a manifest error: {other:?}"),
    }
}

/// The launch.yml reader: never panics, and what it reads renders back to the same.
pub(super) fn launch_yml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = LaunchYml::parse(text) {
        let again = LaunchYml::parse(&parsed.render()).expect("a rendered launch.yml parses");
        assert_eq!(again, parsed);
    }
}

/// The unpacker: never panics, never writes outside its target (not even into a
/// sibling whose name shares its prefix), and leaves only plain files with safe modes
/// and directories. The first byte picks the form: even, the rest is a tar to gzip
/// (so mutations hit the tar structure); odd, the rest is the gzip stream itself.
pub(super) fn unpack(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let gz = if form % 2 == 0 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(rest).expect("gzip into memory");
        e.finish().expect("gzip into memory")
    } else {
        rest.to_vec()
    };
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("t");
    let sibling = root.path().join("t-evil");
    fs::create_dir(&target).expect("target");
    fs::create_dir(&sibling).expect("sibling");
    let result = install::unpack(&gz[..], &target, "fuzz");
    if let Err(e) = &result {
        assert!(
            matches!(e, Error::Archive { .. } | Error::Write { .. }),
            "unexpected error {e:?}"
        );
        if matches!(e, Error::Archive { .. }) {
            shown_safely(&e.to_string());
        }
    }
    let mut names: Vec<String> = fs::read_dir(root.path())
        .expect("root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["t", "t-evil"], "nothing beside the target");
    assert_eq!(fs::read_dir(&sibling).expect("sibling").count(), 0);
    let mut stack = vec![target];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("dir") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            assert!(m.is_file(), "{} is not a plain file", p.display());
            assert_eq!(m.nlink(), 1, "{} is hard-linked", p.display());
            assert_eq!(m.permissions().mode() & 0o7022, 0, "{}", p.display());
        }
    }
}

/// A message built from untrusted input: one line, no control characters, short.
fn shown_safely(msg: &str) {
    assert!(
        !msg.chars().any(is_unsafe),
        "raw control character in {msg:?}"
    );
    assert!(
        msg.chars().count() < 1_000,
        "{} characters",
        msg.chars().count()
    );
}
