//! The repo's `bin/supply` shell entry point, as CF runs it for a buildpack given by
//! git URL: it fetches the pinned prebuilt supply, verifies it, caches it, execs it.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ENTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bin/supply");

/// A git-URL checkout: the test buildpack plus the real bin/supply and a pin file
/// naming `url` and the digest of `pinned`.
pub(crate) fn checkout(url: &str, pinned: &[u8]) -> Buildpack {
    let bp = Buildpack::new().cached().write();
    let bin = bp.path().join("bin");
    fs::create_dir_all(&bin).expect("bin");
    fs::copy(ENTRY, bin.join("supply")).expect("copy entry");
    fs::write(
        bin.join("supply.lock"),
        format!("# test pin\nurl={url}\nsha256={}\n", sha256_hex(pinned)),
    )
    .expect("pin");
    bp
}

fn run_entry(bp: &Buildpack, dirs: &Dirs) -> Outcome {
    Outcome::of_staging(
        std::process::Command::new(bp.path().join("bin/supply"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CF_STACK", "cflinuxfs4")
            .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()]),
        dirs.deps().join("0"),
    )
}

pub(crate) fn supply_bytes() -> Vec<u8> {
    fs::read(SUPPLY).expect("supply binary")
}

#[test]
fn first_staging_downloads_then_the_cache_serves() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone()), Reply::Status(500)]);
    let url = server.url(&format!("/supply/supply-linux-x86_64?sig={SECRET}"));
    let bp = checkout(&url, &real);
    let dirs = Dirs::new();
    // As CF does: DEPS_DIR exists (a local run's missing one gets a line of its own).
    fs::create_dir(dirs.deps()).expect("deps");
    let out = run_entry(&bp, &dirs);
    out.success()
        .has("-----> Fetching the prebuilt supply for sidecar_buildpack 1.2.3\n")
        .has(&format!(
            "       Downloading {}?***\n",
            server.url("/supply/supply-linux-x86_64")
        ))
        .has("-----> sidecar_buildpack 1.2.3\n-----> Installing config-server 0.1.0\n");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    let cached = dirs.cache().join(format!(
        "sidecar-buildpack/supply-{}/supply",
        sha256_hex(&real)
    ));
    assert_eq!(
        fs::metadata(&cached)
            .expect("cached supply")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // Second staging: the server now fails every request, so only the cache can serve.
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    let out = run_entry(&bp, &dirs);
    out.success().lacks("Fetching the prebuilt supply");
    assert_eq!(server.hits(), 1);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn tampered_binary_is_refused() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(b"#!/bin/sh\necho pwned\n".to_vec())]);
    let bp = checkout(&server.url("/supply"), &real);
    let dirs = Dirs::new();
    let out = run_entry(&bp, &dirs);
    out.code(4)
        .has("       **ERROR** checksum mismatch for the prebuilt supply from ")
        .has(&format!("expected sha256: {}", sha256_hex(&real)))
        .lacks("pwned")
        .not_installed();
    assert_no_temp_files(&dirs.cache());
    let leftovers: Vec<_> = walk(&dirs.cache())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("supply"))
        })
        .filter(|p| p.is_file())
        .collect();
    assert!(leftovers.is_empty(), "nothing kept: {leftovers:?}");
}

#[test]
fn unreachable_release_host_is_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://user:hunter2@127.0.0.1:{}/supply?token={SECRET}",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let bp = checkout(&url, b"anything");
    run_entry(&bp, &Dirs::new())
        .code(4)
        .has("**ERROR** could not download the prebuilt supply from http://***@127.0.0.1:")
        .has("To fix: check the staging proxy settings");
}

#[test]
fn symlinks_in_the_cache_are_replaced_not_followed() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone())]);
    let bp = checkout(&server.url(&format!("/supply?sig={SECRET}")), &real);
    let dirs = Dirs::new();
    // Old pins live beside the current one and are removed: through a symlink, that
    // would remove a directory outside the cache.
    let outside = dirs.root.path().join("outside");
    fs::create_dir_all(outside.join("supply-0000")).expect("outside");
    fs::write(outside.join("supply-0000/precious"), "keep me").expect("precious");
    fs::create_dir_all(dirs.cache()).expect("cache");
    std::os::unix::fs::symlink(&outside, dirs.cache().join("sidecar-buildpack")).expect("link");
    let before = snapshot(&outside);
    run_entry(&bp, &dirs).success();
    assert_eq!(snapshot(&outside), before, "nothing outside changed");
    assert!(!dirs.cache().join("sidecar-buildpack").is_symlink());
    assert!(dirs
        .cache()
        .join(format!(
            "sidecar-buildpack/supply-{}/supply",
            sha256_hex(&real)
        ))
        .is_file());
}

#[test]
fn compiled_supply_next_to_it_is_used() {
    let bp = checkout("http://127.0.0.1:9/never", b"unused");
    let compiled = bp.path().join("bin/supply-linux-x86_64");
    fs::copy(SUPPLY, &compiled).expect("copy compiled");
    let dirs = Dirs::new();
    let out = run_entry(&bp, &dirs);
    out.success().lacks("Fetching");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Runs the entry point with TMPDIR set to an empty dir of its own, which must stay
/// empty: the entry point keeps nothing in /tmp.
fn run_entry_watching_tmp(bp: &Buildpack, dirs: &Dirs) -> Outcome {
    let tmp = dirs.root.path().join("tmpdir");
    fs::create_dir_all(&tmp).expect("tmpdir");
    let out = Outcome::of_staging(
        std::process::Command::new(bp.path().join("bin/supply"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CF_STACK", "cflinuxfs4")
            .env("TMPDIR", &tmp)
            .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()]),
        dirs.deps().join("0"),
    );
    assert_eq!(listing(&tmp), Vec::<String>::new(), "left in TMPDIR");
    out
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn an_unwritable_cache_leaves_no_temp_file_anywhere() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone())]);
    let bp = checkout(&server.url(&format!("/supply?sig={SECRET}")), &real);
    // A read-only CACHE_DIR: nothing can be kept there, and the staging goes on. (A
    // CACHE_DIR that is a file is refused by supply before anything, #22.)
    let dirs = Dirs::new();
    fs::create_dir_all(dirs.cache()).expect("cache");
    let ro = Mount::read_only(&dirs.cache());
    let out = run_entry_watching_tmp(&bp, &dirs);
    out.success()
        .has("**WARNING** the app cache is not writable; the next staging downloads the prebuilt supply again");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
    assert_eq!(listing(&dirs.cache()), Vec::<String>::new());
    drop(ro);

    // A read-only CACHE_DIR, and a supply that then fails: DEPS_DIR as found, no
    // temp file left.
    let dirs = Dirs::new();
    fs::create_dir_all(dirs.cache()).expect("cache");
    let _ro = Mount::read_only(&dirs.cache());
    fs::remove_file(bp.path().join("VERSION")).expect("break the buildpack");
    run_entry_watching_tmp(&bp, &dirs).code(3).not_installed();
    assert_eq!(listing(dirs.root.path()), ["app", "cache", "tmpdir"]);
}

#[test]
fn a_killed_download_in_the_cache_is_swept_later() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone())]);
    let bp = checkout(&server.url("/supply"), &real);
    let dirs = Dirs::new();
    let pin_dir = dirs
        .cache()
        .join(format!("sidecar-buildpack/supply-{}", sha256_hex(&real)));
    fs::create_dir_all(&pin_dir).expect("pin dir");
    let stale = pin_dir.join(".supply-1.partial");
    let fresh = pin_dir.join(".supply-2.partial");
    for p in [&stale, &fresh] {
        fs::write(p, "half a download").expect("partial");
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(two_hours_ago))
        .expect("age");
    run_entry(&bp, &dirs).success();
    assert!(!stale.exists(), "a stale download is removed");
    assert!(fresh.exists(), "a live staging's download is left alone");
}

#[test]
fn the_entry_point_sends_nothing_of_its_url_to_a_redirect_target() {
    let real = supply_bytes();
    let other = Server::start_on(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        vec![Reply::Body(real.clone())],
    );
    let first = Server::start(vec![Reply::Redirect(other.url("/mirror/supply"))]);
    let url = format!(
        "http://bob:hunter2@{}/supply/supply-linux-x86_64?X-Amz-Signature={SECRET}",
        first.addr
    );
    let bp = checkout(&url, &real);
    run_entry(&bp, &Dirs::new()).success();
    assert!(
        first.requests()[0]
            .to_ascii_lowercase()
            .contains("\nauthorization: basic"),
        "{}",
        first.requests()[0]
    );
    let head = other.requests().pop().expect("followed");
    for bad in ["referer", "authorization", SECRET, "hunter2", "/supply/"] {
        assert!(
            !head
                .to_ascii_lowercase()
                .contains(&bad.to_ascii_lowercase()),
            "{bad}:\n{head}"
        );
    }
}

#[test]
fn the_entry_point_hides_user_info_whatever_cuts_it() {
    for url in [
        format!("http://user:pa/{SECRET}@127.0.0.1:1/supply"),
        format!("http://user:pa#{SECRET}@127.0.0.1:1/supply"),
        format!("http://user:pa?{SECRET}@127.0.0.1:1/supply"),
        format!("http://localhost/{SECRET}@127.0.0.1:1/supply?{SECRET}"),
    ] {
        let bp = checkout(&url, b"anything");
        run_entry(&bp, &Dirs::new())
            .code(4)
            .lacks("pa/")
            .lacks("user:")
            .not_installed();
    }
}

#[test]
fn temp_names_of_every_kind_are_recognised() {
    for name in [
        ".supply-123.partial",
        ".sidecar-buildpack-supply-9.partial",
        ".sidecar-buildpack-0-Ab12.partial",
        ".config-server-Xy.partial",
        ".unpack-Q1",
        ".supply.Ab12Cd",
        "tmp.Ab12Cd34Ef",
        "x.err",
    ] {
        assert!(is_temp_name(name), "{name}");
    }
    for name in ["supply", "config-server", "launch.yml", "config.yml", "bin"] {
        assert!(!is_temp_name(name), "{name}");
    }
}

// #21 items 4 and 9, in the shell entry point: it printed VERSION whole (a newline
// added a fake staging log line before supply refused it) and read VERSION and
// bin/supply.lock with cat and sed (a FIFO hung the staging, /dev/zero filled memory).
#[test]
fn the_entry_point_reads_only_small_regular_files_and_prints_one_version() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone())]);
    let bp = checkout(&server.url("/supply"), &real);
    fs::write(
        bp.path().join("VERSION"),
        "1.2.3\n-----> Installed evil 6.6.6\n",
    )
    .expect("v");
    let out = run_entry(&bp, &Dirs::new());
    out.code(3)
        .has("-----> Fetching the prebuilt supply for sidecar_buildpack 1.2.3\n")
        .lacks("\n-----> Installed evil");

    let bp = checkout(&server.url("/supply"), &real);
    fs::remove_file(bp.path().join("VERSION")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", bp.path().join("VERSION")).expect("link");
    run_entry(&bp, &Dirs::new())
        .code(3)
        .has("-----> Fetching the prebuilt supply for sidecar_buildpack\n");

    let bp = checkout(&server.url("/supply"), &real);
    let lock = bp.path().join("bin/supply.lock");
    fs::remove_file(&lock).expect("rm");
    let made = std::process::Command::new("mkfifo")
        .arg(&lock)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    run_entry(&bp, &Dirs::new())
        .code(3)
        .has("supply.lock has no valid sha256= line");
}
