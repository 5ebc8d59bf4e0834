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
    // Slow enough that all four downloads overlap.
    let a = bp.artifact.clone();
    let chunk = a.len().div_ceil(4);
    let server = Server::start(vec![Reply::Slow(a, chunk, Duration::from_millis(100))]);
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
        }
    });
    assert_eq!(server.hits(), 4);
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
