//! The repo's `bin/supply` shell entry point, as CF runs it for a buildpack given by
//! git URL: it fetches the pinned prebuilt supply, verifies it, caches it, execs it.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ENTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bin/supply");

/// A git-URL checkout: the test buildpack plus the real bin/supply and a pin file
/// naming `url` and the digest of `pinned`.
fn checkout(url: &str, pinned: &[u8]) -> Buildpack {
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

fn supply_bytes() -> Vec<u8> {
    fs::read(SUPPLY).expect("supply binary")
}

#[test]
fn first_staging_downloads_then_the_cache_serves() {
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone()), Reply::Status(500)]);
    let url = server.url(&format!("/supply/supply-linux-x86_64?sig={SECRET}"));
    let bp = checkout(&url, &real);
    let dirs = Dirs::new();
    let out = run_entry(&bp, &dirs);
    out.success()
        .has("-----> Fetching the prebuilt supply for sidecar_buildpack 1.2.3\n")
        .has(&format!(
            "       Downloading {}\n",
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
