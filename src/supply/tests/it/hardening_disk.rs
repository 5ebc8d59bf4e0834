//! Disk and filesystem faults: a full deps dir, read-only deps and cache dirs, junk
//! left where the buildpack installs or caches, and stagings that share one cache.
//! The mounts need root, as in CI; each test mounts inside its own temp dir and
//! unmounts when it ends.

use crate::support::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

const ART: &str = "/releases/config-server-0.1.0.tgz";

/// A buildpack served over HTTP from a fresh server; the uri carries a secret.
fn served(bp: Buildpack) -> (Buildpack, Server) {
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let uri = server.url(&format!("{ART}?token={SECRET}"));
    (bp.uri(uri).write(), server)
}

/// `n` bytes that do not compress.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn full_deps_dir_while_downloading_is_a_clear_error() {
    let (bp, server) =
        served(Buildpack::new().artifact(tgz(&[("bin/config-server", &noise(2 << 20), 0o755)])));
    let dirs = Dirs::new();
    let _full = Mount::tmpfs(&dirs.deps(), "size=1m");
    let out = Stage::new(&bp, &dirs).run();
    out.code(5)
        .has(&format!(
            "       **ERROR** cannot write {}/.sidecar-buildpack-0-",
            dirs.deps().display()
        ))
        .has("Cause: no space left on the device")
        .lacks("retrying")
        .not_installed()
        .deps_as_found();
    assert_eq!(server.hits(), 1, "a full disk is not retried");
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn full_deps_dir_while_unpacking_is_a_clear_error() {
    // 2 MiB of zeros gzip to a few KiB: the download fits, the unpacked file does not.
    let bp = Buildpack::new()
        .artifact(tgz(&[("bin/config-server", &vec![0u8; 2 << 20], 0o755)]))
        .cached()
        .write();
    let dirs = Dirs::new();
    let _full = Mount::tmpfs(&dirs.deps(), "size=1m");
    let out = Stage::new(&bp, &dirs).run();
    out.code(5)
        .has(&format!(
            "       **ERROR** cannot write {}/.sidecar-buildpack-0-",
            dirs.deps().display()
        ))
        .has(".partial/.unpack-")
        .has("/bin/config-server\n")
        .has("Cause: no space left on the device")
        .not_installed()
        .deps_as_found();
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn read_only_deps_dir_is_a_clear_error() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    let _ro = Mount::tmpfs(&dirs.deps(), "ro,size=64k");
    Stage::new(&bp, &dirs)
        .run()
        .code(5)
        .has(&format!(
            "       **ERROR** cannot write {}\n",
            dirs.deps().display()
        ))
        .has("Cause: the filesystem is read-only")
        .deps_as_found();
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn read_only_cache_dir_warns_and_stages() {
    let (bp, server) = served(Buildpack::new());
    let dirs = Dirs::new();
    let _ro = Mount::tmpfs(&dirs.cache(), "ro,size=64k");
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       **WARNING** could not keep a copy in the app cache ")
        .has("the next staging downloads again\n");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_eq!(server.hits(), 1);
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn read_only_cache_with_a_hit_still_serves_it() {
    let (bp, server) = served(Buildpack::new());
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).run().success();
    // An entry of an old pin that pruning would remove, if it could.
    let old = dirs
        .cache()
        .join("sidecar-buildpack/dependencies")
        .join("0".repeat(64));
    fs::create_dir_all(&old).expect("old entry");
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    let _ro = Mount::read_only(&dirs.cache());
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       Using the copy in the app cache\n");
    assert_eq!(server.hits(), 1);
    assert!(old.is_dir());
}

/// A directory outside the staging dirs, whose contents must never change.
fn outside(dirs: &Dirs) -> std::path::PathBuf {
    let p = dirs.root.path().join("outside");
    fs::create_dir_all(&p).expect("outside");
    fs::write(p.join("precious"), "keep me").expect("precious");
    p
}

#[test]
fn junk_at_the_install_path_is_replaced_without_following_links() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    let out_dir = outside(&dirs);
    let idx = dirs.deps().join("0");
    fs::create_dir_all(idx.join("bin")).expect("bin");
    symlink(out_dir.join("precious"), idx.join("bin/config-server")).expect("link exe");
    symlink(out_dir.join("precious"), idx.join("launch.yml")).expect("link launch");
    symlink(out_dir.join("precious"), idx.join("config.yml")).expect("link config");
    fs::write(idx.join(".config-server-Ab12Cd.partial"), "half a download").expect("partial");
    fs::create_dir_all(idx.join(".unpack-Xy34Zw/bin")).expect("stale unpack");
    fs::write(idx.join(".unpack-Xy34Zw/bin/config-server"), "old").expect("stale");
    let before = snapshot(&out_dir);
    let out = Stage::new(&bp, &dirs).run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    for f in ["bin/config-server", "launch.yml", "config.yml"] {
        let m = fs::symlink_metadata(idx.join(f)).expect("stat");
        assert!(m.is_file(), "{f} must be a regular file now");
    }
    assert_eq!(snapshot(&out_dir), before, "nothing outside changed");
    assert_no_temp_files(&idx);
}

#[test]
fn junk_instead_of_the_install_dirs_is_replaced() {
    let bp = Buildpack::new().cached().write();
    // The deps idx dir is a symlink to a directory outside.
    let dirs = Dirs::new();
    let out_dir = outside(&dirs);
    fs::create_dir_all(dirs.deps()).expect("deps");
    symlink(&out_dir, dirs.deps().join("0")).expect("link idx");
    let before = snapshot(&out_dir);
    Stage::new(&bp, &dirs).run().success();
    assert!(!dirs.deps().join("0").is_symlink());
    assert_eq!(snapshot(&out_dir), before);

    // bin/ is a file, then a symlink to a directory outside.
    let makers: [fn(&Path, &Path); 2] = [
        |bin, _| fs::write(bin, "junk").expect("file"),
        |bin, out| symlink(out, bin).expect("link"),
    ];
    for make in makers {
        let dirs = Dirs::new();
        let out_dir = outside(&dirs);
        fs::create_dir_all(dirs.deps().join("0")).expect("idx");
        make(&dirs.deps().join("0/bin"), &out_dir);
        let before = snapshot(&out_dir);
        let out = Stage::new(&bp, &dirs).run();
        out.success();
        assert_eq!(out.installed(), sidecar_bytes("v1"));
        assert_eq!(snapshot(&out_dir), before);
    }
}

#[test]
fn junk_at_the_cache_path_is_replaced_without_following_links() {
    let (bp, server) = served(Buildpack::new());
    let sha = sha256_hex(&bp.artifact);
    // The cache's own dir is a symlink to a directory outside, holding a file that
    // pruning would delete if it followed the link.
    let dirs = Dirs::new();
    let out_dir = outside(&dirs);
    fs::create_dir_all(dirs.cache()).expect("cache");
    symlink(&out_dir, dirs.cache().join("sidecar-buildpack")).expect("link");
    let before = snapshot(&out_dir);
    Stage::new(&bp, &dirs).run().success();
    assert_eq!(snapshot(&out_dir), before, "nothing outside changed");
    let entry = dirs
        .cache()
        .join("sidecar-buildpack/dependencies")
        .join(&sha)
        .join("config-server-0.1.0.tgz");
    assert!(!dirs.cache().join("sidecar-buildpack").is_symlink());
    assert_eq!(fs::read(&entry).expect("cached"), bp.artifact);

    // The entry is a symlink to a file outside with the right bytes: not used, replaced.
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    fs::write(out_dir.join("artifact.tgz"), &bp.artifact).expect("outside artifact");
    fs::remove_file(&entry).expect("rm entry");
    symlink(out_dir.join("artifact.tgz"), &entry).expect("link entry");
    let before = snapshot(&out_dir);
    let out = Stage::new(&bp, &dirs).run();
    out.success().has("Downloading");
    assert!(fs::symlink_metadata(&entry).expect("entry").is_file());
    assert_eq!(snapshot(&out_dir), before);

    // The entry is a directory; the digest dir holds a stale .partial of a dead staging.
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    fs::remove_file(&entry).expect("rm entry");
    fs::create_dir_all(entry.join("junk")).expect("dir entry");
    let stale = entry.with_file_name(".store-Ab12Cd.partial");
    let fresh = entry.with_file_name(".store-Ef56Gh.partial");
    for p in [&stale, &fresh] {
        fs::write(p, "half").expect("partial");
    }
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(two_hours_ago))
        .expect("age the partial");
    let out = Stage::new(&bp, &dirs).run();
    out.success().has("Kept a copy in the app cache");
    assert_eq!(fs::read(&entry).expect("cached"), bp.artifact);
    assert!(!stale.exists(), "a stale .partial is removed");
    assert!(fresh.exists(), "a live staging's .partial is left alone");
    assert_eq!(server.hits(), 3);
}

#[test]
fn deps_dir_that_is_a_file_is_an_error_not_deleted() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    fs::write(dirs.deps(), "not a dir").expect("file");
    Stage::new(&bp, &dirs).run().code(3).has(&format!(
        "       **ERROR** DEPS_DIR {} is not a directory\n",
        dirs.deps().display()
    ));
    assert_eq!(fs::read_to_string(dirs.deps()).expect("kept"), "not a dir");
}

#[test]
fn concurrent_stagings_share_one_cache() {
    let bp = Buildpack::new();
    // The server holds every answer until all four downloads are in flight at once.
    let server = Server::start(vec![Reply::Gate(4, bp.artifact.clone())]);
    let bp = bp.uri(server.url(&format!("{ART}?token={SECRET}"))).write();
    let cache = tempfile::tempdir().expect("cache");
    let runs: Vec<Dirs> = (0..4).map(|_| Dirs::new()).collect();
    for d in &runs {
        fs::create_dir_all(d.root.path()).expect("root");
        symlink(cache.path(), d.cache()).expect("shared cache");
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|d| s.spawn(|| Stage::new(&bp, d).run()))
            .collect();
        for h in handles {
            let out = h.join().expect("thread");
            out.success();
            assert_eq!(out.installed(), sidecar_bytes("v1"));
            assert!(
                out.elapsed < Duration::from_secs(15),
                "the gate opened late"
            );
        }
    });
    assert_eq!(server.hits(), 4);
    assert_eq!(server.max_in_flight(), 4, "the four stagings overlapped");
    let entry = cache
        .path()
        .join("sidecar-buildpack/dependencies")
        .join(sha256_hex(&bp.artifact))
        .join("config-server-0.1.0.tgz");
    assert_eq!(fs::read(&entry).expect("cache entry"), bp.artifact);
    assert_no_temp_files(cache.path());
    // And the next staging uses it.
    let d = Dirs::new();
    symlink(cache.path(), d.cache()).expect("shared cache");
    Stage::new(&bp, &d)
        .run()
        .success()
        .has("Using the copy in the app cache");
}

// Any failure with the app cache's copy is a miss (#10 item 7).

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn an_app_cache_entry_that_cannot_be_used_is_a_miss() {
    let (bp, server) = served(Buildpack::new());
    let entry = |dirs: &Dirs| {
        dirs.cache()
            .join("sidecar-buildpack/dependencies")
            .join(sha256_hex(&bp.artifact))
            .join("config-server-0.1.0.tgz")
    };
    // 4 GiB, over the download cap: dropped without a byte read. 200 MiB, under the
    // cap but larger than the 64 MiB deps dir: the copy fails for lack of space.
    for (size, why) in [
        (4u64 << 30, "is larger than the download cap of 1024 MB"),
        (200 << 20, "cannot be used (cannot write "),
    ] {
        let dirs = Dirs::new();
        let e = entry(&dirs);
        fs::create_dir_all(e.parent().expect("dir")).expect("cache dir");
        fs::File::create(&e)
            .and_then(|f| f.set_len(size))
            .expect("sparse entry");
        let _small = Mount::tmpfs(&dirs.deps(), "size=64m");
        let out = Stage::new(&bp, &dirs).run();
        out.success()
            .has(&format!(
                "       **WARNING** the app cache's copy of config-server 0.1.0 {why}"
            ))
            .has("; dropping it and downloading again\n")
            .has("Downloading");
        assert_eq!(out.installed(), sidecar_bytes("v1"));
        assert_eq!(fs::read(&e).expect("entry replaced"), bp.artifact);
        assert_no_temp_files(&dirs.deps());
    }
    assert_eq!(server.hits(), 2);
}

// A failed run leaves the deps dir as it found it, whatever step failed (#10 item 9,
// #11 section 1: both launch.yml copies).

/// DEPS_DIR with an earlier install at `idx` (and its unpadded copy), all of which a
/// failed run must leave exactly as they are.
fn earlier_install(dirs: &Dirs, idx: &str, unpadded: &str) {
    let d = dirs.deps().join(idx);
    fs::create_dir_all(d.join("bin")).expect("bin");
    fs::write(d.join("bin/config-server"), "old binary").expect("old exe");
    fs::write(d.join("launch.yml"), "old launch").expect("old launch");
    fs::write(d.join("config.yml"), "old config").expect("old config");
    fs::create_dir_all(dirs.deps().join(unpadded)).expect("unpadded");
    fs::write(dirs.deps().join(unpadded).join("launch.yml"), "old copy").expect("old copy");
    fs::create_dir_all(dirs.deps().join("1")).expect("another buildpack");
    fs::write(dirs.deps().join("1/theirs"), "not ours").expect("theirs");
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn a_failed_run_leaves_the_deps_dir_as_it_found_it() {
    let sha = sha256_hex(b"anything");
    let bad_archive = tgz(&[("bin/other", b"x", 0o755)]);
    let failures: Vec<(&str, Buildpack, i32)> = vec![
        (
            "a checksum mismatch",
            Buildpack::new().sha(&sha).cached().write(),
            4,
        ),
        (
            "an archive without the executable",
            Buildpack::new().artifact(bad_archive).cached().write(),
            4,
        ),
        (
            "a missing cached file",
            {
                let bp = Buildpack::new().cached().write();
                fs::remove_dir_all(bp.path().join("dependencies")).expect("rm");
                bp
            },
            3,
        ),
    ];
    for (what, bp, code) in &failures {
        let dirs = Dirs::new();
        earlier_install(&dirs, "03", "3");
        let out = Stage::new(bp, &dirs).idx("03").run();
        out.code(*code).deps_as_found();
        assert_eq!(
            fs::read_to_string(dirs.deps().join("03/bin/config-server")).expect("kept"),
            "old binary",
            "{what}"
        );
    }

    // The last step fails: the unpadded copy's dir is read-only. Everything committed
    // before it (the binary, config.yml, launch.yml at 03) is put back: over an
    // earlier install, and into a deps dir that held nothing of ours.
    let bp = Buildpack::new().cached().write();
    for earlier in [true, false] {
        let dirs = Dirs::new();
        if earlier {
            earlier_install(&dirs, "03", "3");
        } else {
            fs::create_dir_all(dirs.deps().join("3")).expect("unpadded dir");
        }
        let _ro = Mount::read_only(&dirs.deps().join("3"));
        let out = Stage::new(&bp, &dirs).idx("03").run();
        // (A bind mount is another filesystem to rename(2), even read-write.)
        out.code(5)
            .has(&format!(
                "       **ERROR** cannot write {}\n",
                dirs.deps().join("3/launch.yml").display()
            ))
            .deps_as_found();
        assert_no_temp_files(&dirs.deps());
    }
}

#[test]
fn whatever_is_in_the_way_of_a_file_is_replaced_the_same_way() {
    let bp = Buildpack::new().cached().write();
    for blocked in ["bin/config-server", "launch.yml", "config.yml"] {
        let dirs = Dirs::new();
        let idx = dirs.deps().join("0");
        fs::create_dir_all(idx.join(blocked).join("sub")).expect("a directory in the way");
        fs::write(idx.join(blocked).join("sub/f"), "x").expect("file");
        let out = Stage::new(&bp, &dirs).run();
        out.success();
        assert!(idx.join(blocked).is_file(), "{blocked}");
        assert_eq!(out.installed(), sidecar_bytes("v1"));
        assert_no_temp_files(&dirs.deps());
    }
}

// Bad input is found before the first write (#10 item 10).

#[test]
fn bad_input_changes_nothing_on_disk() {
    let bp = Buildpack::new().cached().write();
    let bad_manifest = Buildpack::new().sha("12345").cached().write();
    for (bp, var, value) in [
        (&bp, "SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "lots"),
        (
            &bp,
            "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
            "web,,x",
        ),
        (&bp, "SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB", "0"),
        (&bp, "SIDECAR_BUILDPACK_MAX_RETRY_AFTER", "-1"),
        (&bp, "MEMORY_LIMIT", "512b"),
        (&bp, "CF_STACK", "windows2019"),
        (&bad_manifest, "BP_DEBUG", "1"),
    ] {
        let dirs = Dirs::new();
        Stage::new(bp, &dirs).env(var, value).run().code(3);
        assert_eq!(listing(dirs.root.path()), ["app"], "{var}={value}");
    }
}

// A staging killed mid-download leaves nothing outside DEPS_DIR, and the next run
// removes what it left there.

#[test]
fn a_killed_staging_leaves_nothing_behind_the_next_run_keeps() {
    let bp = Buildpack::new();
    let a = bp.artifact.clone();
    let server = Server::start(vec![
        Reply::Stall(a.clone(), a.len() / 2, Duration::from_secs(30)),
        Reply::Body(a),
    ]);
    let bp = bp.uri(server.url(&format!("{ART}?token={SECRET}"))).write();
    let dirs = Dirs::new();
    let buildpack = snapshot(bp.path());
    let mut child = std::process::Command::new(SUPPLY)
        .env_clear()
        .env("SIDECAR_BUILDPACK_DIR", bp.path())
        .env("CF_STACK", "cflinuxfs4")
        .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn supply");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let downloading = || {
        walk_names(&dirs.deps())
            .iter()
            .any(|n| n.starts_with(".config-server-") && n.ends_with(".partial"))
    };
    while !downloading() {
        assert!(
            std::time::Instant::now() < deadline,
            "no download in progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // Only DEPS_DIR gained anything, and there only the staging dir.
    assert_eq!(
        listing(dirs.root.path()),
        ["app", "deps"],
        "nothing else was made"
    );
    assert_eq!(snapshot(bp.path()), buildpack, "the buildpack is untouched");
    let left = listing(&dirs.deps());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".sidecar-buildpack-0-") && left[0].ends_with(".partial"));
    let out = Stage::new(&bp, &dirs).run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
}

/// Every file and dir name under `dir`.
fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out
}
