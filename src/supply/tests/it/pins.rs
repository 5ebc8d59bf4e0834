//! The repo's own pins: manifest.yml loads, `.downloadurl` says what the manifest says,
//! and bin/supply.lock names the prebuilt supply of this VERSION.

use buildpack::manifest::Manifest;
use std::fs;
use std::path::Path;

use crate::support::REPO;

#[test]
fn downloadurl_agrees_with_the_manifest() {
    let m = Manifest::load(&Path::new(REPO).join("manifest.yml")).expect("repo manifest loads");
    let dep = m
        .pick("config-server", None)
        .expect("a default config-server");
    let downloadurl =
        fs::read_to_string(Path::new(REPO).join(".downloadurl")).expect(".downloadurl");
    assert_eq!(
        downloadurl.trim(),
        dep.uri_text,
        ".downloadurl is written from manifest.yml by scripts/build_and_upload.sh"
    );
}

#[test]
fn supply_lock_pins_this_version() {
    let version = fs::read_to_string(Path::new(REPO).join("VERSION")).expect("VERSION");
    let lock = fs::read_to_string(Path::new(REPO).join("bin/supply.lock")).expect("lock");
    let url = lock
        .lines()
        .find_map(|l| l.strip_prefix("url="))
        .expect("url=");
    let sha = lock
        .lines()
        .find_map(|l| l.strip_prefix("sha256="))
        .expect("sha256=");
    assert!(
        url.ends_with(&format!("/supply-{}-linux-x86_64", version.trim())),
        "{url}"
    );
    assert!(sha.parse::<buildpack::digest::Sha256>().is_ok(), "{sha}");
}
