//! Hostile artifacts: a corpus of archives, made here (no blobs are committed), each
//! pinned by its own sha256 so only the unpacker stands in the way. Every one must be
//! rejected with exit 4 and an error naming the entry; nothing may be written outside
//! the unpack target, and nothing may be left in the deps dir.

use crate::support::*;
use std::fs;
use std::io::{Read, Write};
use tar::EntryType;

/// A PAX extended-header record: `<len> <key>=<value>\n`, where len counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn exe() -> Entry {
    Entry::file("bin/config-server", &sidecar_bytes("v1"), 0o755)
}

fn special(path: &str, kind: EntryType) -> Entry {
    Entry {
        path: path.into(),
        data: Vec::new(),
        mode: 0o644,
        kind,
        link: None,
    }
}

/// Stages `artifact` from a cached buildpack and checks the rejection: exit 4, the
/// entry named, the deps dir empty, and nothing changed anywhere else.
fn rejected(artifact: Vec<u8>, entry: &str, problem: &str) {
    let bp = Buildpack::new().artifact(artifact).cached().write();
    let dirs = Dirs::new();
    let evil = dirs.deps().join("0-evil");
    fs::create_dir_all(&evil).expect("sibling with the target's prefix");
    fs::create_dir_all(dirs.cache()).expect("cache");
    fs::create_dir_all(dirs.root.path().join("outside")).expect("outside");
    fs::write(dirs.root.path().join("outside/precious"), "keep me").expect("precious");
    let before = (snapshot(dirs.root.path()), snapshot(bp.path()));
    let out = Stage::new(&bp, &dirs).run();
    out.code(4)
        .has(&format!(
            "       **ERROR** the config-server archive is unusable: entry {entry:?} {problem}"
        ))
        .has("Cause: the artifact is damaged, or was built wrongly or maliciously")
        .not_installed();
    // not_installed proved DEPS_DIR is as found; nothing else changed either.
    assert_eq!(
        (snapshot(dirs.root.path()), snapshot(bp.path())),
        before,
        "nothing written outside the target"
    );
}

const OUTSIDE: &str = "written-outside";

#[test]
fn parent_dir_entries() {
    rejected(
        raw_tgz(&[exe(), Entry::file("../escaped", b"x", 0o644)]),
        "../escaped",
        "has an absolute path or '..'",
    );
    rejected(
        raw_tgz(&[Entry::file("bin/../../../escaped", b"x", 0o644), exe()]),
        "bin/../../../escaped",
        "has an absolute path or '..'",
    );
}

#[test]
fn absolute_path_entries() {
    let dirs = Dirs::new();
    let target = dirs.root.path().join(OUTSIDE);
    let abs = target.to_str().expect("utf8").to_string();
    rejected(
        raw_tgz(&[exe(), Entry::file(&abs, b"x", 0o644)]),
        &abs,
        "has an absolute path or '..'",
    );
    assert!(!target.exists());
}

#[test]
fn escapes_hidden_in_long_name_and_pax_headers() {
    // A GNU long-name entry, then a PAX header: each renames the entry after it.
    let mut long = Entry::file("././@LongLink", b"../../long-escape\0", 0o644);
    long.kind = EntryType::GNULongName;
    rejected(
        raw_tgz(&[exe(), long, Entry::file("innocent", b"x", 0o644)]),
        "../../long-escape",
        "has an absolute path or '..'",
    );
    let mut pax = Entry::file(
        "PaxHeaders/innocent",
        &pax_record("path", "../pax-escape"),
        0o644,
    );
    pax.kind = EntryType::XHeader;
    rejected(
        raw_tgz(&[exe(), pax, Entry::file("innocent", b"x", 0o644)]),
        "../pax-escape",
        "has an absolute path or '..'",
    );
}

#[test]
fn symlink_pointing_outside() {
    rejected(
        raw_tgz(&[exe(), Entry::link("bin/escape", EntryType::Symlink, "/etc")]),
        "bin/escape",
        "is a symbolic link; only plain files and directories are accepted",
    );
}

#[test]
fn symlink_to_a_sibling_sharing_the_target_prefix() {
    // deps/0 is where it unpacks (under a temp dir); deps/0-evil shares the prefix.
    rejected(
        raw_tgz(&[
            Entry::link("evil", EntryType::Symlink, "../../0-evil"),
            Entry::file("evil/planted", b"x", 0o644),
            exe(),
        ]),
        "evil",
        "is a symbolic link",
    );
}

#[test]
fn chain_of_symlinks() {
    rejected(
        raw_tgz(&[
            Entry::link("a", EntryType::Symlink, "b"),
            Entry::link("b", EntryType::Symlink, "c"),
            Entry::link("c", EntryType::Symlink, "../../../outside"),
            Entry::file("a/precious", b"overwritten", 0o644),
            exe(),
        ]),
        "a",
        "is a symbolic link",
    );
}

#[test]
fn file_written_through_a_symlink() {
    rejected(
        raw_tgz(&[
            Entry::link("bin", EntryType::Symlink, "../../../outside"),
            exe(),
        ]),
        "bin",
        "is a symbolic link",
    );
}

#[test]
fn hard_links() {
    rejected(
        raw_tgz(&[Entry::link(
            "bin/config-server",
            EntryType::Link,
            "../../../outside/precious",
        )]),
        "bin/config-server",
        "is a hard link; only plain files and directories are accepted",
    );
    rejected(
        raw_tgz(&[
            Entry::file("bin/real", b"x", 0o755),
            Entry::link("bin/config-server", EntryType::Link, "bin/real"),
        ]),
        "bin/config-server",
        "is a hard link",
    );
}

#[test]
fn devices_and_fifos() {
    for (kind, name) in [
        (EntryType::Char, "dev/tty"),
        (EntryType::Block, "dev/sda"),
        (EntryType::Fifo, "bin/pipe"),
    ] {
        rejected(
            raw_tgz(&[exe(), special(name, kind)]),
            name,
            "is a device, FIFO or other special file",
        );
    }
}

#[test]
fn a_file_where_a_directory_must_go() {
    rejected(
        raw_tgz(&[Entry::file("bin", b"x", 0o644), exe()]),
        "bin/config-server",
        "runs through a path that an earlier entry made a file",
    );
    rejected(
        raw_tgz(&[exe(), exe()]),
        "bin/config-server",
        "appears twice in the archive",
    );
}

#[test]
fn truncated_archives() {
    let big: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let whole = raw_tgz(&[Entry::file("bin/config-server", &big, 0o755)]);
    rejected(
        whole[..whole.len() / 2].to_vec(),
        "bin/config-server",
        "is truncated",
    );
    // A tar cut inside the second header, gzipped whole: the gzip is fine, the tar not.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&raw_tgz(&[exe(), Entry::file("bin/more", b"x", 0o644)])[..])
        .read_to_end(&mut tar)
        .expect("gunzip");
    let cut = 512 + 512 + 100;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar[..cut]).expect("gzip");
    rejected(
        gz.finish().expect("gzip"),
        "bin/config-server",
        "is followed by a truncated or corrupt archive",
    );
    rejected(
        b"<html>not an archive</html>".to_vec(),
        "(archive)",
        "is not a readable gzipped tar",
    );
}

/// A gzipped tar whose one entry declares `size` bytes of zeros, made in a blink: the
/// deflate blocks for 1 MiB of zeros, flushed to a byte boundary, decode the same after
/// any run of zeros, so one copy is repeated. The gzip trailer is never reached.
fn zip_bomb(size: u64) -> Vec<u8> {
    bomb(EntryType::Regular, "bin/config-server", size)
}

/// `zip_bomb` for an entry of any type: a GNU long name or a PAX header declaring
/// `size` bytes is read before the entry it describes.
fn bomb(kind: EntryType, path: &str, size: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut h = tar::Header::new_gnu();
    let name = &mut h.as_gnu_mut().expect("gnu header").name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_size(size);
    h.set_mode(0o755);
    h.set_entry_type(kind);
    h.set_cksum();
    let mut c = Compress::new(Compression::best(), false);
    let mut block = |input: &[u8]| {
        let mut out = Vec::with_capacity(64 * 1024);
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate");
        assert_eq!(c.total_in() - before, input.len() as u64, "all input taken");
        out
    };
    let mib = vec![0u8; 1 << 20];
    let mut first = h.as_bytes().to_vec();
    first.extend_from_slice(&mib);
    let head = block(&first);
    let repeat = block(&mib);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend_from_slice(&head);
    for _ in 1..size.div_ceil(1 << 20) {
        gz.extend_from_slice(&repeat);
    }
    gz
}

#[test]
fn decompression_bomb() {
    let size = (1u64 << 30) + (1 << 20);
    let bomb = zip_bomb(size);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    // It really expands past the cap (1 GiB), from a few MiB.
    let mut d = flate2::read::GzDecoder::new(&bomb[..]);
    let expanded = std::io::copy(&mut (&mut d).take(size + 512), &mut std::io::sink())
        .expect("the bomb decodes");
    assert_eq!(expanded, size + 512);
    rejected(
        bomb,
        "bin/config-server",
        &format!(
            "is {size} bytes, which takes the archive past the cap of 1073741824 unpacked bytes"
        ),
    );
}

#[test]
fn too_many_entries() {
    // Entries that create nothing ("./"), so the test is quick: what counts is the count.
    let mut entries = vec![exe()];
    entries.extend((0..10_000).map(|_| special("./", EntryType::Directory)));
    rejected(
        raw_tgz(&entries),
        "(archive)",
        "has more than 10000 entries",
    );
}

#[test]
fn the_executable_missing_or_not_a_file() {
    rejected(
        raw_tgz(&[Entry::file("bin/other", b"x", 0o755)]),
        "bin/config-server",
        "is not in the archive as a file (manifest.yml sidecars[].executable)",
    );
    rejected(
        raw_tgz(&[special("bin/config-server/", EntryType::Directory)]),
        "bin/config-server",
        "is not in the archive as a file",
    );
}

// Extension headers and names (#10 items 5, 6): capped before they are read, refused
// as hostile (exit 4) rather than reported as a full disk, and never echoed whole.

#[test]
fn huge_extension_headers_are_refused_before_they_are_read() {
    let size = 3u64 << 29; // 1.5 GiB
    for (kind, name, what) in [
        (
            EntryType::GNULongName,
            "././@LongLink",
            "GNU long-name header",
        ),
        (
            EntryType::GNULongLink,
            "././@LongLink",
            "GNU long-link header",
        ),
        (EntryType::XHeader, "PaxHeaders/x", "PAX header"),
        (
            EntryType::XGlobalHeader,
            "pax_global_header",
            "PAX global header",
        ),
    ] {
        let started = std::time::Instant::now();
        rejected(
            bomb(kind, name, size),
            name,
            &format!("is a {what} of {size} bytes; at most 8192 are accepted"),
        );
        // Read whole, 1.5 GiB would take many seconds and gigabytes.
        assert!(
            started.elapsed().as_secs() < 10,
            "{what}: {:?}",
            started.elapsed()
        );
    }
    // Just over the cap, with real bytes: the same.
    let mut long = Entry::file("././@LongLink", &vec![b'a'; 8193], 0o644);
    long.kind = EntryType::GNULongName;
    rejected(
        raw_tgz(&[long, exe()]),
        "././@LongLink",
        "is a GNU long-name header of 8193 bytes",
    );
}

/// Stages `artifact` and returns the output of the rejection, which `rejected` checks.
fn rejection(artifact: Vec<u8>) -> String {
    let bp = Buildpack::new().artifact(artifact).cached().write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.code(4).not_installed();
    out.out
}

#[test]
fn over_long_paths_are_hostile_entries_not_a_full_disk() {
    // A 10,000-character PAX path: over the header cap, before it is read.
    let long = format!("bin/{}", "a".repeat(9_996));
    let mut pax = Entry::file("PaxHeaders/x", &pax_record("path", &long), 0o644);
    pax.kind = EntryType::XHeader;
    let out = rejection(raw_tgz(&[pax, Entry::file("x", b"x", 0o644), exe()]));
    assert!(
        out.contains("entry \"PaxHeaders/x\" is a PAX header of 10012 bytes; at most 8192"),
        "{out}"
    );
    assert!(out.len() < 2_000, "{} bytes of output:\n{out}", out.len());
    // A 5,000-character one fits the header but not the path cap; shown cut.
    let long = format!("bin/{}", "a".repeat(4_996));
    let mut pax = Entry::file("PaxHeaders/x", &pax_record("path", &long), 0o644);
    pax.kind = EntryType::XHeader;
    let out = rejection(raw_tgz(&[pax, Entry::file("x", b"x", 0o644), exe()]));
    assert!(
        out.contains(&format!(
            "entry \"bin/{}…{}\" (5000 characters) has a path of 5000 bytes; at most 1024 \
             are accepted\n",
            "a".repeat(116),
            "a".repeat(40)
        )),
        "{out}"
    );
    assert!(out.len() < 2_000, "{} bytes of output:\n{out}", out.len());
    assert!(!out.contains("To fix: free space"), "{out}");

    // 2,100 nested directories, named by GNU long names.
    let nested = "d/".repeat(2_100);
    let mut name = Entry::file("././@LongLink", format!("{nested}\0").as_bytes(), 0o644);
    name.kind = EntryType::GNULongName;
    let out = rejection(raw_tgz(&[
        name,
        special("ignored/", EntryType::Directory),
        exe(),
    ]));
    assert!(
        out.contains("has a path of 4200 bytes; at most 1024 are accepted"),
        "{out}"
    );
    assert!(out.len() < 2_000, "{out}");

    // One name longer than any filesystem takes.
    let mut name = Entry::file(
        "././@LongLink",
        format!("bin/{}\0", "n".repeat(300)).as_bytes(),
        0o644,
    );
    name.kind = EntryType::GNULongName;
    let out = rejection(raw_tgz(&[name, Entry::file("x", b"x", 0o644), exe()]));
    assert!(out.contains("has a name longer than 255 bytes"), "{out}");
}

#[test]
fn names_with_control_characters_are_shown_escaped() {
    let mut name = Entry::file(
        "././@LongLink",
        b"../x\n-----> Installed evil\r\x1b[2J\0",
        0o644,
    );
    name.kind = EntryType::GNULongName;
    let out = rejection(raw_tgz(&[name, Entry::file("x", b"x", 0o644)]));
    assert!(
        out.contains(r#"entry "../x\n-----> Installed evil\r\u{1b}[2J" has an absolute path"#),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("-----> Installed evil")),
        "{out}"
    );
    assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
}

#[test]
fn pax_headers_that_would_make_the_archive_ambiguous() {
    // A PAX size the header disagrees with: tar readers would split the stream apart
    // differently.
    let mut pax = Entry::file("PaxHeaders/x", &pax_record("size", "5"), 0o644);
    pax.kind = EntryType::XHeader;
    rejected(
        raw_tgz(&[pax, exe()]),
        "bin/config-server",
        "has a PAX size that differs from its header's",
    );
    let mut sparse = Entry::file("PaxHeaders/x", &pax_record("GNU.sparse.major", "1"), 0o644);
    sparse.kind = EntryType::XHeader;
    rejected(
        raw_tgz(&[sparse, exe()]),
        "PaxHeaders/x",
        "describes a sparse file, which is not accepted",
    );
    let mut broken = Entry::file("PaxHeaders/x", b"99 path=x\n", 0o644);
    broken.kind = EntryType::XHeader;
    rejected(
        raw_tgz(&[broken, exe()]),
        "PaxHeaders/x",
        "is a PAX header that cannot be read",
    );
    let mut latin1 = Entry::file(
        "PaxHeaders/x",
        &[b"10 path=\xff\n".as_slice()].concat(),
        0o644,
    );
    latin1.kind = EntryType::XHeader;
    rejected(
        raw_tgz(&[latin1, exe()]),
        "\u{fffd}",
        "has a path that is not UTF-8",
    );
}

#[test]
fn a_real_pax_archive_still_unpacks() {
    // What GNU tar --format=posix writes: an mtime and a path record, then the file.
    let records = [
        pax_record("mtime", "0.5"),
        pax_record("path", "bin/config-server"),
    ]
    .concat();
    let mut pax = Entry::file("PaxHeaders/config-server", &records, 0o644);
    pax.kind = EntryType::XHeader;
    let mut file = exe();
    file.path = "bin/short-name".into();
    let bp = Buildpack::new()
        .artifact(raw_tgz(&[pax, file]))
        .cached()
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

// Hardening III (#21 item 1): the entry cap counted entries, not what they make. A few
// dozen deep paths, each under the path cap, made one directory per component (a 16 KB
// archive made 242,000 and filled the disk). Every file and directory counts, the
// parents a path only implies included, before it is made.
#[test]
fn a_directory_bomb_is_refused_before_it_is_made() {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_cksum();
        // A path over 100 bytes gets a GNU long-name entry first.
        tar.append_data(&mut h, path, data).expect("append");
    };
    add("bin/config-server", &sidecar_bytes("v1"));
    // 25 paths of 480 directories each: 12,000 directories from 50 entries.
    let deep = "a/".repeat(480);
    for i in 0..25 {
        add(&format!("d{i:02}/{deep}f"), b"x");
    }
    let archive = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar.into_inner().expect("tar")).expect("gzip");
        gz.finish().expect("gzip")
    };
    assert!(archive.len() < 20_000, "{} bytes", archive.len());
    let bp = Buildpack::new().artifact(archive).cached().write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .run()
        .code(4)
        .has("       **ERROR** the config-server archive is unusable: entry \"d20/a/a/a/")
        .has(
            "takes the archive past the cap of 10000 files and directories, counting the 481 \
             parent directories its path implies",
        )
        .has("Cause: the artifact is damaged, or was built wrongly or maliciously")
        .not_installed();
}

// #21 item 14: `cat a.gz b.gz` and bgzip write valid gzip that GNU tar reads; the
// second member was taken for the end of a truncated archive.
#[test]
fn a_multi_member_gzip_unpacks() {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(
        &raw_tgz(&[
            exe(),
            Entry::file("sbom/config-server.cdx.json", b"{}", 0o644),
        ])[..],
    )
    .read_to_end(&mut tar)
    .expect("gunzip");
    // Cut inside the executable's data, each part its own member.
    let mut archive = Vec::new();
    for part in [&tar[..600], &tar[600..]] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).expect("gzip");
        archive.extend(gz.finish().expect("gzip"));
    }
    let bp = Buildpack::new().artifact(archive).cached().write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("Installed ")
        .has("the CycloneDX SBOM of config-server from its archive");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}
