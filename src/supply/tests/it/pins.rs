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

/// The release location is one setting: every pinned uri (each build in manifest.yml,
/// the git-URL route's supply in bin/supply.lock, .downloadurl) is under the bucket
/// release.conf names, where scripts/build_and_upload.sh publishes.
#[test]
fn every_pin_is_under_the_release_location() {
    let conf = fs::read_to_string(Path::new(REPO).join("release.conf")).expect("release.conf");
    let bucket = conf
        .lines()
        .find_map(|l| l.strip_prefix("bucket="))
        .expect("bucket= in release.conf");
    let base = format!("https://{bucket}.s3.amazonaws.com/");
    let m = Manifest::load(&Path::new(REPO).join("manifest.yml")).expect("repo manifest loads");
    let lock = fs::read_to_string(Path::new(REPO).join("bin/supply.lock")).expect("lock");
    let downloadurl =
        fs::read_to_string(Path::new(REPO).join(".downloadurl")).expect(".downloadurl");
    let mut uris: Vec<String> = m.dependencies.iter().map(|d| d.uri_text.clone()).collect();
    uris.extend(
        lock.lines()
            .find_map(|l| l.strip_prefix("url="))
            .map(str::to_string),
    );
    uris.push(downloadurl.trim().to_string());
    assert_eq!(
        uris.len(),
        m.dependencies.len() + 2,
        "bin/supply.lock has a url="
    );
    for uri in uris {
        assert!(
            uri.starts_with(&base),
            "{uri} is not under {base} (release.conf): re-pin with scripts/build_and_upload.sh"
        );
    }
}

#[test]
fn the_tools_say_the_version_the_buildpack_has() {
    // `supply --version`, `package --version` and the download's User-Agent are the
    // crates' versions: they follow VERSION, as the zips and the staging log do.
    let version = fs::read_to_string(Path::new(REPO).join("VERSION")).expect("VERSION");
    assert_eq!(
        env!("CARGO_PKG_VERSION"),
        version.trim(),
        "supply's Cargo.toml"
    );
    for krate in ["buildpack", "package"] {
        let toml = fs::read_to_string(Path::new(REPO).join(format!("src/{krate}/Cargo.toml")))
            .expect("Cargo.toml");
        assert!(
            toml.contains(&format!("\nversion = \"{}\"\n", version.trim())),
            "src/{krate}/Cargo.toml's version is not VERSION's"
        );
    }
}
