//! Hostile or broken configuration: every bad manifest.yml, command line, directory
//! and env setting fails with exit 3 (2 for usage) and a message that names the file
//! and key, or the variable. Cases already in supply.rs are not repeated here:
//! bad_manifest_names_file_and_key (missing manifest, sha256 length),
//! command_line_contract, build_dir_must_exist, unsupported_stack_names_the_supported_ones.

use crate::support::*;
use std::fs;

/// A cached buildpack (no network) whose manifest.yml is edited by `edit`.
fn manifest_edited(edit: impl FnOnce(String) -> String) -> Buildpack {
    let bp = Buildpack::new().cached().write();
    let text = fs::read_to_string(bp.manifest()).expect("manifest");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the manifest");
    fs::write(bp.manifest(), edited).expect("write manifest");
    bp
}

/// Runs it and checks: exit 3, the `**ERROR**` line starts with the file and key.
fn fails_naming(bp: &Buildpack, key: &str, problem: &str) {
    let dirs = Dirs::new();
    Stage::new(bp, &dirs)
        .run()
        .code(3)
        .has(&format!(
            "       **ERROR** {}: `{key}` {problem}",
            bp.manifest().display()
        ))
        .has("To fix: fix that key in manifest.yml and package the buildpack again")
        .not_installed();
}

#[test]
fn manifest_that_is_not_yaml() {
    let bp = manifest_edited(|m| m.replace("language: sidecar", "language: \"sidecar"));
    fails_naming(&bp, "(document)", "found unexpected end of stream");
    let bp = manifest_edited(|_| String::new());
    fails_naming(&bp, "(document)", "missing field `language`");
    let bp = manifest_edited(|m| format!("{m}language: again\n"));
    fails_naming(&bp, "(document)", "duplicate field `language`");
}

#[test]
fn manifest_values_of_the_wrong_type() {
    for (from, to, key, problem) in [
        (
            "memory_mb: 32",
            "memory_mb: 32M",
            "sidecars[0].memory_mb",
            "invalid type: string \"32M\", expected u32",
        ),
        (
            "memory_mb: 32",
            "memory_mb: -32",
            "sidecars[0].memory_mb",
            "invalid type: integer `-32`, expected u32",
        ),
        (
            "memory_mb: 32",
            "memory_mb: 0",
            "sidecars[0].memory_mb",
            "must be a whole number of MB from 1 to 65536",
        ),
        (
            "memory_mb: 32",
            "memory_mb: 32\n  process_types: web",
            "sidecars[0].process_types",
            "invalid type: string \"web\", expected a sequence",
        ),
        (
            "memory_mb: 32",
            "memory_mb: 32\n  extra_key: 1",
            "sidecars[0]",
            "unknown field `extra_key`",
        ),
        (
            "  cf_stacks:\n  - cflinuxfs3\n  - cflinuxfs4\n",
            "  cf_stacks: cflinuxfs4\n",
            "dependencies[0].cf_stacks",
            "invalid type: string \"cflinuxfs4\", expected a sequence",
        ),
        (
            "language: sidecar",
            "language: [sidecar]",
            "language",
            "invalid type: sequence, expected a string",
        ),
        (
            "language: sidecar",
            "language: side car",
            "language",
            "must be letters, digits, '-' or '_'",
        ),
    ] {
        let bp = manifest_edited(|m| m.replace(from, to));
        fails_naming(&bp, key, problem);
    }
}

#[test]
fn manifest_sha256_that_is_not_hex() {
    let bp = Buildpack::new()
        .sha(&format!("{}g", "a".repeat(63)))
        .cached()
        .write();
    fails_naming(
        &bp,
        "dependencies[0].sha256",
        "'g' at position 63 is not a hex digit",
    );
    let bp = Buildpack::new().sha(&"a".repeat(65)).cached().write();
    fails_naming(
        &bp,
        "dependencies[0].sha256",
        "expected 64 hex digits, found 65 characters",
    );
}

#[test]
fn manifest_uri_and_file_that_are_unusable() {
    let bp = manifest_edited(|m| m.replace("uri: https://", "uri: ftp://"));
    fails_naming(
        &bp,
        "dependencies[0].uri",
        "scheme \"ftp\" is not supported",
    );
    let bp = manifest_edited(|m| m.replace("uri: https://", "uri: not a url "));
    fails_naming(&bp, "dependencies[0].uri", "not a URL");
    let bp = manifest_edited(|m| m.replace("file: dependencies/", "file: ../../etc/"));
    fails_naming(
        &bp,
        "dependencies[0].file",
        "must be a relative path inside the buildpack",
    );
    let bp = manifest_edited(|m| m.replace("executable: bin/", "executable: ../"));
    fails_naming(
        &bp,
        "sidecars[0].executable",
        "must be a relative path without '..'",
    );
}

#[test]
fn manifest_cross_references_that_do_not_match() {
    let bp = manifest_edited(|m| m.replacen("  version: 0.1.0", "  version: 9.9.9", 1));
    fails_naming(
        &bp,
        "default_versions[0]",
        "names config-server 9.9.9, but no entry in dependencies has that name and version",
    );
    let bp = manifest_edited(|m| m.replace("dependency: config-server", "dependency: nope"));
    fails_naming(
        &bp,
        "sidecars[0].dependency",
        "names \"nope\", which is not in dependencies",
    );
}

#[test]
fn cached_file_that_is_missing_names_it() {
    let bp = Buildpack::new().cached().write();
    fs::remove_dir_all(bp.path().join("dependencies")).expect("rm");
    Stage::new(&bp, &Dirs::new())
        .run()
        .code(3)
        .has(&format!(
            "       **ERROR** cannot read the buildpack file {}\n",
            bp.path()
                .join("dependencies/0123abcd/config-server-0.1.0.tgz")
                .display()
        ))
        .has("(manifest.yml's file: entry for config-server)");
}

#[test]
fn buildpack_dir_or_version_missing() {
    let bp = Buildpack::new().cached().write();
    fs::remove_file(bp.path().join("VERSION")).expect("rm");
    Stage::new(&bp, &Dirs::new()).run().code(3).has(&format!(
        "       **ERROR** cannot read the buildpack file {}\n",
        bp.path().join("VERSION").display()
    ));
    let bp = Buildpack::new().cached().write();
    let gone = bp.path().join("nowhere");
    Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_DIR", gone.to_str().expect("utf8"))
        .run()
        .code(3)
        .has(&format!(
            "       **ERROR** cannot read the buildpack file {}\n",
            gone.join("manifest.yml").display()
        ))
        .has("set SIDECAR_BUILDPACK_DIR to a directory that holds manifest.yml");
}

// #21 item 9: VERSION was never checked: a newline added a fake line to the staging
// log and a two-line `version:` to config.yml. It is read as the manifest's strings are.
#[test]
fn a_version_that_is_not_one_version_is_refused_before_anything_is_written() {
    for (version, shown) in [
        (
            "0.1.0\n-----> Installed evil 6.6.6\n",
            "\"0.1.0\\n-----> Installed evil 6.6.6\"",
        ),
        ("0.1.0/../../OUTSIDE", "\"0.1.0/../../OUTSIDE\""),
        ("1.2 3", "\"1.2 3\""),
        ("\n", "\"\""),
    ] {
        let bp = Buildpack::new().cached().write();
        fs::write(bp.path().join("VERSION"), version).expect("VERSION");
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).run();
        out.code(3)
            .has(&format!(
                "       **ERROR** {} holds {shown}, which is not a version\n",
                bp.path().join("VERSION").display()
            ))
            .has("To fix: write one version in VERSION, such as 1.2.3")
            .lacks("\n-----> Installed evil");
        assert_eq!(
            listing(dirs.root.path()),
            ["app"],
            "{version:?}: nothing created"
        );
    }
    // What CF's and our release scripts write passes, as does a byte order mark.
    for version in ["1.2.3\n", "0.1.0-rc.1+build.5", "\u{feff}2.0.0\r\n"] {
        let bp = Buildpack::new().cached().write();
        fs::write(bp.path().join("VERSION"), version).expect("VERSION");
        Stage::new(&bp, &Dirs::new()).run().success();
    }
}

#[test]
fn deps_idx_that_is_not_an_index() {
    let bp = Buildpack::new().cached().write();
    for idx in ["../1", "abc", "123456789", " 0", ""] {
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .idx(idx)
            .run()
            .code(3)
            // Quoted, so an empty or blank value shows as one.
            .has(&format!(
                "       **ERROR** DEPS_IDX \"{idx}\" is not a buildpack index: 1 to 8 digits, such as 0 or 03\n"
            ))
            .has("To fix: pass the index as digits, such as 0\n");
        assert_eq!(listing(dirs.root.path()), ["app"], "{idx}: nothing created");
    }
}

/// CF makes DEPS_DIR before staging. A local run's missing one is made, and said so,
/// but only in an existing directory: a typo never grows a tree (as root, anywhere).
#[test]
fn a_missing_deps_dir_is_made_only_in_an_existing_directory() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    let deep = dirs.root.path().join("nonexistent/deps");
    let o = Outcome::of(
        std::process::Command::new(SUPPLY)
            .env_clear()
            .env("SIDECAR_BUILDPACK_DIR", bp.path())
            .env("CF_STACK", "cflinuxfs4")
            .arg(dirs.build())
            .arg(dirs.cache())
            .arg(&deep)
            .arg("0"),
        deep.join("0"),
    );
    o.code(3).has(&format!(
        "       **ERROR** DEPS_DIR {} does not exist, and neither does its parent {}\n",
        deep.display(),
        deep.parent().expect("parent").display()
    ));
    assert_eq!(listing(dirs.root.path()), ["app"], "nothing created");

    Stage::new(&bp, &dirs).run().code(0).has(&format!(
        "       Created DEPS_DIR {} (Cloud Foundry makes it before staging; a local run may leave it to supply)\n",
        dirs.deps().display()
    ));
    // CF's case: it exists, and nothing is said about it.
    let again = Stage::new(&bp, &dirs).run();
    again.code(0);
    assert!(!again.out.contains("Created DEPS_DIR"), "{}", again.out);
}

/// A file where the app cache goes fails before anything is written, naming
/// CACHE_DIR, instead of "File exists" after the download.
#[test]
fn a_cache_dir_that_is_a_file_is_refused_first() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    fs::write(dirs.cache(), "not a dir").expect("file");
    Stage::new(&bp, &dirs)
        .run()
        .code(3)
        .has(&format!(
            "       **ERROR** CACHE_DIR {} is not a directory\n",
            dirs.cache().display()
        ))
        .has("a directory or a path that does not exist yet as CACHE_DIR");
    assert_eq!(
        listing(dirs.root.path()),
        ["app", "cache"],
        "nothing created"
    );
    assert_eq!(fs::read_to_string(dirs.cache()).expect("kept"), "not a dir");
}

/// Every numeric knob, given garbage, a negative, zero (where zero is not allowed),
/// one past its maximum, and a number too big for any integer.
#[test]
fn every_env_knob_rejects_garbage() {
    let bp = Buildpack::new().cached().write();
    let knobs = [
        (
            "SIDECAR_BUILDPACK_CONNECT_TIMEOUT",
            "a whole number of seconds from 1 to 300",
            "301",
            true,
        ),
        (
            "SIDECAR_BUILDPACK_STALL_TIMEOUT",
            "a whole number of seconds from 1 to 3600",
            "3601",
            true,
        ),
        (
            "SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS",
            "a whole number of attempts from 1 to 10",
            "11",
            true,
        ),
        (
            "SIDECAR_BUILDPACK_RETRY_DELAY_MS",
            "a whole number of milliseconds from 0 to 60000",
            "60001",
            false,
        ),
        (
            "SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB",
            "a whole number of MB from 1 to 65536",
            "65537",
            true,
        ),
    ];
    for (var, accepted, over, zero_is_bad) in knobs {
        let mut values = vec!["garbage", "-1", "1.5", "32M", over, "99999999999999999999"];
        if zero_is_bad {
            values.push("0");
        }
        for value in values {
            let dirs = Dirs::new();
            Stage::new(&bp, &dirs)
                .env(var, value)
                .run()
                .code(3)
                .has(&format!(
                    "       **ERROR** {var} is set to {value:?}, which is not valid\n"
                ))
                .has(&format!("To fix: set {var} to {accepted}"))
                .not_installed();
        }
    }
    for (var, value, accepted) in [
        (
            "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
            "web;rm -rf /",
            "a comma-separated list of process types",
        ),
        (
            "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
            "web,,worker",
            "a comma-separated",
        ),
        (
            "SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE",
            "maybe",
            "true or false",
        ),
        (
            "SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE",
            "0",
            "true or false",
        ),
    ] {
        Stage::new(&bp, &Dirs::new())
            .env(var, value)
            .run()
            .code(3)
            .has(&format!(
                "       **ERROR** {var} is set to {value:?}, which is not valid\n"
            ))
            .has(accepted);
    }
    // A huge pasted value is cut, never echoed whole; its start and end are shown.
    let huge = format!("{}8", "9".repeat(10_000));
    Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_STALL_TIMEOUT", &huge)
        .run()
        .code(3)
        .has(&format!(
            "is set to \"{}…{}8\" (10001 characters), which is not valid\n",
            "9".repeat(120),
            "9".repeat(39)
        ))
        .lacks(&"9".repeat(121));
}

#[test]
fn zero_retry_delay_and_the_bounds_are_accepted() {
    let bp = Buildpack::new().cached().write();
    for (var, value) in [
        ("SIDECAR_BUILDPACK_RETRY_DELAY_MS", "0"),
        ("SIDECAR_BUILDPACK_CONNECT_TIMEOUT", " 300 "),
        ("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "1"),
        ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "65536"),
    ] {
        Stage::new(&bp, &Dirs::new())
            .env(var, value)
            .run()
            .success();
    }
}

#[test]
fn proxy_that_is_not_a_url_names_the_variable() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = bp
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    for var in ["http_proxy", "HTTP_PROXY"] {
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .env(var, "http://user:hunter2@[::1")
            .run()
            .code(3)
            .has(&format!("       **ERROR** {var} is set to \""))
            .has("To fix: set ")
            .has("a proxy URL such as http://proxy.example:3128")
            .not_installed();
    }
    assert_eq!(server.hits(), 0);
}

#[test]
fn unusable_certificate_in_cf_system_cert_path_is_skipped_with_a_warning() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let bp = bp
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    let dirs = Dirs::new();
    let certs = dirs.root.path().join("certs");
    fs::create_dir_all(&certs).expect("certs");
    fs::write(
        certs.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .expect("broken cert");
    let out = Stage::new(&bp, &dirs)
        .env("CF_SYSTEM_CERT_PATH", certs.to_str().expect("utf8"))
        .run();
    out.success().has(&format!(
        "       **WARNING** not trusting a certificate in {}: ",
        certs.join("broken.pem").display()
    ));
    // A CF_SYSTEM_CERT_PATH that is a file, or missing, adds nothing and breaks nothing.
    for path in [certs.join("broken.pem"), dirs.root.path().join("absent")] {
        Stage::new(&bp, &Dirs::new())
            .env("CF_SYSTEM_CERT_PATH", path.to_str().expect("utf8"))
            .run()
            .success();
    }
}

// Manifest strings that become paths or log lines (#10 item 3).

#[test]
fn manifest_names_cannot_leave_the_deps_dir_or_fake_log_lines() {
    // Each rename is made everywhere the name is used, so without the check the
    // manifest would load and stage.
    let rename = |name: &str| {
        let name = name.to_string();
        move |m: String| {
            m.replace(
                "- name: config-server\n  version",
                &format!("- name: {name}\n  version"),
            )
            .replace("dependency: config-server", &format!("dependency: {name}"))
        }
    };
    let reversion = |version: &str| {
        let version = version.to_string();
        move |m: String| m.replace("version: 0.1.0", &format!("version: {version}"))
    };
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(rename("/../../../escape-dep")),
            "dependencies[0].name",
        ),
        (Box::new(rename("../escape-dep")), "dependencies[0].name"),
        (
            Box::new(rename("\"config-server\\n-----> Fake step\"")),
            "dependencies[0].name",
        ),
        (
            Box::new(reversion("\"0.1.0\\r-----> Fake step\"")),
            "dependencies[0].version",
        ),
        (
            Box::new(|m: String| {
                m.replace("args: [\"ok\"]", "args: [\"ok\", \"x\\n-----> Fake step\"]")
            }),
            "sidecars[0].args[1]",
        ),
        (
            Box::new(|m: String| m.replace("  - cflinuxfs4\n", "  - \"cflinuxfs4\\u001b[2J\"\n")),
            "dependencies[0].cf_stacks[1]",
        ),
    ];
    for (edit, key) in cases {
        let bp = Buildpack::new()
            .cached()
            .sidecar_extra("  args: [\"ok\"]\n")
            .write();
        let text = fs::read_to_string(bp.manifest()).expect("manifest");
        let edited = edit(text.clone());
        assert_ne!(edited, text, "{key}");
        fs::write(bp.manifest(), edited).expect("write");
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).run();
        out.code(3)
            .has(&format!("{}: `{key}` must", bp.manifest().display()))
            .not_installed();
        assert_eq!(listing(dirs.root.path()), ["app"], "{key}: nothing written");
        for line in out.out.lines() {
            assert!(
                !line.trim_start().starts_with("-----> Fake"),
                "a fake step line:\n{}",
                out.out
            );
        }
        assert!(
            !out.out.contains('\r') && !out.out.contains('\u{1b}'),
            "{:?}",
            out.out
        );
    }
}

// MEMORY_LIMIT in the forms CF writes; anything else refused (#10 item 11).

#[test]
fn memory_limit_forms() {
    let bp = Buildpack::new().cached().write();
    for limit in ["1024m", "1024M", "1G", "1GB", "1024MB", "1024"] {
        Stage::new(&bp, &Dirs::new())
            .env("MEMORY_LIMIT", limit)
            .env("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "2048")
            .run()
            .success()
            .has("**WARNING** the sidecars of web take 2048 MB, and the app has at most 1024 MB");
    }
    for limit in ["512b", "512k", "1.5G", "lots", "-1m", "0m"] {
        Stage::new(&bp, &Dirs::new())
            .env("MEMORY_LIMIT", limit)
            .run()
            .code(3)
            .has(&format!(
                "       **ERROR** MEMORY_LIMIT is set to {limit:?}, which is not valid\n"
            ))
            .has(
                "To fix: unset MEMORY_LIMIT, or set it to a whole number of megabytes or gigabytes",
            )
            .not_installed();
    }
}

// The buildpack's and the operator's own files are read as carefully as artifacts:
// only regular files, capped, never blocking.

fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(made.success());
}

#[test]
fn manifest_and_version_that_are_not_small_regular_files() {
    for (file, make, says) in [
        ("manifest.yml", "fifo", "is a FIFO"),
        ("manifest.yml", "zero", "is a device"),
        ("manifest.yml", "big", "is larger than 1048576 bytes"),
        ("VERSION", "fifo", "is a FIFO"),
        ("VERSION", "zero", "is a device"),
    ] {
        let bp = Buildpack::new().cached().write();
        let path = bp.path().join(file);
        fs::remove_file(&path).expect("rm");
        match make {
            "fifo" => mkfifo(&path),
            "zero" => std::os::unix::fs::symlink("/dev/zero", &path).expect("link"),
            _ => fs::write(
                &path,
                format!("language: sidecar\n#{}\n", "x".repeat(2 << 20)),
            )
            .expect("big"),
        }
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).run();
        out.code(3)
            .has(&format!(
                "       **ERROR** cannot read the buildpack file {}\n",
                path.display()
            ))
            .has(says)
            .not_installed();
        assert!(
            out.elapsed < std::time::Duration::from_secs(10),
            "{file} {make}"
        );
        assert_eq!(listing(dirs.root.path()), ["app"]);
    }
}

#[test]
fn a_yaml_alias_bomb_names_the_manifest() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = (b'a' + i - 1) as char;
        let this = (b'a' + i) as char;
        bomb.push_str(&format!(
            "{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    // In a key supply reads, so the aliases are expanded.
    let bp = manifest_edited(|m| format!("{m}{bomb}include_files: *l\n"));
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    // Refused at its first wrong type, before anything is expanded, naming the file.
    out.code(3)
        .has(&format!(
            "       **ERROR** {}: `include_files[0]` invalid type",
            bp.manifest().display()
        ))
        .not_installed();
    assert!(out.elapsed < std::time::Duration::from_secs(10));
}

#[test]
fn fifos_and_devices_in_cf_system_cert_path_are_skipped() {
    let bp = Buildpack::new();
    let ca = TestCa::new();
    let dirs = Dirs::new();
    let certs = dirs.root.path().join("certs");
    ca.install(&certs);
    mkfifo(&certs.join("a-fifo.pem"));
    std::os::unix::fs::symlink("/dev/zero", certs.join("b-zero.pem")).expect("link");
    let server = Server::start_tls(
        ca.server(&["127.0.0.1"], false),
        vec![Reply::Body(bp.artifact.clone())],
    );
    let bp = bp
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    let out = Stage::new(&bp, &dirs)
        .env("CF_SYSTEM_CERT_PATH", certs.to_str().expect("utf8"))
        .env("BP_DEBUG", "1")
        .run();
    out.success()
        .has("a-fifo.pem: is a FIFO")
        .has("b-zero.pem: is a device")
        .has("DEBUG: trusting 1 certificate(s) from ");
    assert!(out.elapsed < std::time::Duration::from_secs(10));
}

/// Runs what follows (`sh -c SCRIPT PROGRAM ARGS...`) with its address space limited to
/// 64 MiB: what a reader keeps in memory, not only whether it ends, is then part of the
/// outcome.
const IN_64_MIB: [&str; 3] = ["sh", "-c", "ulimit -v 65536 && exec \"$0\" \"$@\""];

// #21 item 3: a 1 MiB manifest with a flow collection inside another (`x: [[a,a,...]]`,
// under a key nobody reads) took 185 MB in supply and package: the YAML scanner keeps
// every token of it until it closes. The same in block style took serde_yaml's event
// list. Both are refused at once, within 64 MiB of address space, naming the file.
#[test]
fn a_manifest_that_would_take_memory_is_refused_within_64_mib() {
    let cap = buildpack::manifest::MAX_MANIFEST_BYTES as usize;
    let flow = "holds more than 8192 commas and brackets before its next value is complete";
    let values = "holds more than 50000 values (scalars, lists and mappings)";
    // What, and the manifest's tail: an opening, an item repeated to fill 1 MiB, a close.
    let cases = [
        ("a flow list in a flow list", "x: [[", "a,", "a]]\n", flow),
        (
            "a flow mapping in a flow list",
            "x: [{",
            "a: b,",
            "a: b}]\n",
            flow,
        ),
        ("a block list", "x:\n", "- a\n", "", values),
        (
            "closed flow lists in a block list",
            "x:\n",
            "- [a]\n",
            "",
            values,
        ),
    ];
    for (what, open, item, close, says) in cases {
        let bp = manifest_edited(|m| {
            let n = (cap - m.len() - open.len() - close.len()) / item.len();
            format!("{m}{open}{}{close}", item.repeat(n))
        });
        assert!(fs::metadata(bp.manifest()).expect("stat").len() <= cap as u64);
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .wrapped(&IN_64_MIB)
            .run()
            .code(3)
            .has(&format!(
                "       **ERROR** {}: `(document)` {says}",
                bp.manifest().display()
            ))
            .not_installed();
        // The packager reads it with the same caps: `get`, and `pin`'s editor.
        let m = bp.manifest();
        let m = m.to_str().expect("utf-8");
        let package = package_bin();
        for args in [
            vec!["get", "language", "--manifest", m],
            vec![
                "pin",
                "config-server",
                "--version",
                "9.9.9",
                "--uri",
                "https://h/c.tgz",
                "--sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "--manifest",
                m,
            ],
        ] {
            let o = std::process::Command::new(IN_64_MIB[0])
                .args(&IN_64_MIB[1..])
                .arg(&package)
                .args(&args)
                .output()
                .expect("package");
            let text = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(3),
                "{what}, package {}: {text}",
                args[0]
            );
            assert!(text.contains(says), "{what}, package {}: {text}", args[0]);
        }
    }
}
