//! `supply` end to end: sources, verification, install, launch.yml, settings, errors.

use crate::support::*;
use std::fs;

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn golden(idx: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/launch.yml");
    fs::read_to_string(path)
        .expect("golden launch.yml")
        .replace("$DEPS_DIR/0/", &format!("$DEPS_DIR/{idx}/"))
}

/// A buildpack served by a fresh server that answers with its artifact.
fn served(replies: impl FnOnce(&[u8]) -> Vec<Reply>) -> (Buildpack, Server) {
    let bp = Buildpack::new();
    let server = Server::start(replies(&bp.artifact));
    let uri = server.url(&format!("/releases/config-server-0.1.0.tgz?token={SECRET}"));
    (bp.uri(uri).write(), server)
}

#[test]
fn downloads_verifies_installs_and_declares() {
    let (bp, server) = served(|a| vec![Reply::Body(a.to_vec())]);
    let dirs = Dirs::new();
    // As CF does: DEPS_DIR exists (a local run's missing one gets a line of its own).
    fs::create_dir(dirs.deps()).expect("deps");
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("-----> sidecar_buildpack 1.2.3\n-----> Installing config-server 0.1.0\n")
        .has(&format!(
            "       Downloading {}\n",
            server.url("/releases/config-server-0.1.0.tgz?***")
        ))
        .has(&format!(
            "       Verified sha256 {} ({} bytes) from",
            sha256_hex(&bp.artifact),
            bp.artifact.len()
        ))
        .has("-----> Declaring sidecars\n       config-server for process types [web], 32 MB, command: \"$DEPS_DIR/0/bin/config-server\"\n");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    let launch = out.launch_yml();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/launch.yml");
        fs::write(path, &launch).expect("update golden");
    }
    assert_eq!(launch, golden("0"));
    assert_eq!(
        fs::read_to_string(out.deps_idx.join("config.yml")).expect("config.yml"),
        format!(
            "name: sidecar\nversion: 1.2.3\nconfig: {{}}\noutput_metadata:\n  sidecars:\n  \
             - name: config-server\n    dependency: config-server\n    version: 0.1.0\n    \
             sha256: {}\n    source: network\n",
            sha256_hex(&bp.artifact)
        )
    );
    for f in ["launch.yml", "config.yml"] {
        assert_eq!(mode(&out.deps_idx.join(f)), 0o644, "{f}");
    }
    assert_no_temp_files(&dirs.deps());
    assert_no_temp_files(&dirs.cache());
    assert_eq!(server.hits(), 1);
    // The staging path never leaks into what runs later.
    assert!(!launch.contains(dirs.deps().to_str().expect("utf8")));
}

#[test]
fn cached_buildpack_file_needs_no_network() {
    // The uri's port is closed: any network attempt would fail the staging.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let bp = Buildpack::new()
        .uri(format!("http://127.0.0.1:{port}/config-server-0.1.0.tgz"))
        .cached()
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       Using the copy in the cached buildpack: dependencies/0123abcd/config-server-0.1.0.tgz\n")
        .lacks("Downloading");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_eq!(out.launch_yml(), golden("0"));
}

#[test]
fn app_cache_hit_makes_no_request() {
    let (bp, server) = served(|a| vec![Reply::Body(a.to_vec()), Reply::Status(500)]);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .run()
        .success()
        .has("Kept a copy in the app cache");
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       Using the copy in the app cache\n")
        .lacks("Downloading");
    assert_eq!(
        server.hits(),
        1,
        "the second staging must not touch the network"
    );
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn corrupt_app_cache_entry_is_dropped_and_fetched_again() {
    let (bp, server) = served(|a| vec![Reply::Body(a.to_vec())]);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).run().success();
    let entry = dirs
        .cache()
        .join("sidecar-buildpack/dependencies")
        .join(sha256_hex(&bp.artifact))
        .join("config-server-0.1.0.tgz");
    fs::write(&entry, b"garbage").expect("corrupt the cache");
    fs::remove_dir_all(dirs.deps()).expect("fresh deps");
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       **WARNING** the app cache's copy of config-server 0.1.0 is corrupt; dropping it and downloading again\n")
        .has("Downloading");
    assert_eq!(server.hits(), 2);
    assert_eq!(fs::read(&entry).expect("cache repaired"), bp.artifact);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn checksum_mismatch_installs_nothing() {
    let bp = Buildpack::new();
    let server = Server::start(vec![Reply::Body(bp.artifact.clone())]);
    let wrong = sha256_hex(b"something else");
    let bp = bp
        .uri(server.url(&format!(
            "/config-server-0.1.0.tgz?X-Amz-Signature={SECRET}"
        )))
        .sha(&wrong)
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.code(4)
        .has(&format!(
            "       **ERROR** checksum mismatch for config-server 0.1.0 from {}\n",
            server.url("/config-server-0.1.0.tgz?***")
        ))
        .has(&format!("         expected sha256: {wrong}\n"))
        .has(&format!(
            "         actual sha256:   {}\n",
            sha256_hex(&bp.artifact)
        ))
        .has(&format!(
            "         bytes received:  {}\n",
            bp.artifact.len()
        ))
        .has("corrupted on the way");
    out.not_installed();
    assert_eq!(server.hits(), 1, "a checksum mismatch is not retried");
    assert!(!dirs
        .cache()
        .join("sidecar-buildpack/dependencies")
        .join(&wrong)
        .exists());
}

#[test]
fn html_error_page_gets_a_hint() {
    let bp = Buildpack::new();
    let page = b"<!DOCTYPE html><html><body>Access denied</body></html>".to_vec();
    let server = Server::start(vec![Reply::Body(page)]);
    let bp = bp.uri(server.url("/config-server-0.1.0.tgz")).write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.code(4).has("sent an HTML or XML page");
}

#[test]
fn not_found_is_not_retried() {
    let (bp, server) = served(|_| vec![Reply::Status(404)]);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.code(4)
        .has(&format!(
            "       **ERROR** downloading config-server from {} failed with HTTP 404\n",
            server.url("/releases/config-server-0.1.0.tgz?***")
        ))
        .has("the file is not at that URL")
        .lacks("retrying")
        .not_installed();
    assert_eq!(server.hits(), 1);
}

#[test]
fn unavailable_gives_up_after_the_attempts() {
    let (bp, server) = served(|_| vec![Reply::Status(503)]);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "3")
        .run();
    out.code(4)
        .has("       **WARNING** attempt 1 of 3 failed (HTTP 503); retrying in 0.1s\n")
        .has("       **WARNING** attempt 2 of 3 failed (HTTP 503); retrying in 0.1s\n")
        .has("failed with HTTP 503\n")
        .has("         attempts: 3\n")
        .not_installed();
    assert_eq!(server.hits(), 3);
    // Bounded: 3 attempts and 50 + 100 ms of waiting, far from any stall timeout.
    assert!(
        out.elapsed < std::time::Duration::from_secs(5),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn unavailable_then_ok_succeeds() {
    let (bp, server) = served(|a| vec![Reply::Status(503), Reply::Body(a.to_vec())]);
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("       **WARNING** attempt 1 of 4 failed (HTTP 503); retrying in 0.1s\n");
    assert_eq!(server.hits(), 2);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
}

#[test]
fn truncated_body_is_retried() {
    let (bp, server) = served(|a| {
        vec![
            Reply::Truncated(a.to_vec(), a.len() / 2),
            Reply::Body(a.to_vec()),
        ]
    });
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success().has("**WARNING** attempt 1 of 4 failed (");
    assert_eq!(server.hits(), 2);
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
}

#[test]
fn bare_executable_artifact() {
    let bp = Buildpack::new()
        .artifact(sidecar_bytes("bare"))
        .uri("https://releases.invalid/config-server-linux")
        .cached()
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("bare"));
}

#[test]
fn env_overrides_tune_the_declaration() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "64")
        .env(
            "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
            "web,worker",
        )
        .run();
    out.success()
        .has("config-server for process types [web, worker], 64 MB");
    assert_eq!(
        out.launch_yml(),
        golden("0")
            .replace("memory: 32", "memory: 64")
            .replace("      - web\n", "      - web\n      - worker\n")
    );
}

#[test]
fn declare_false_installs_but_does_not_declare() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE", "false")
        .run();
    out.success().has(
        "Not declaring the config-server sidecar (SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE=false)",
    );
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert!(!out.deps_idx.join("launch.yml").exists());
}

/// DEPS_IDX is used as given, except that CF's builder reads launch.yml at the
/// unpadded index once an app has 10+ buildpacks (cloud-foundry.md section 2).
#[test]
fn padded_deps_idx_also_writes_launch_yml_where_cf_reads_it() {
    for (idx, unpadded) in [
        ("03", Some("3")),
        ("00", Some("0")),
        ("10", None),
        ("7", None),
    ] {
        let bp = Buildpack::new().cached().write();
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).idx(idx).run();
        out.success();
        assert_eq!(out.launch_yml(), golden(idx), "DEPS_IDX {idx}");
        assert!(dirs.deps().join(idx).join("bin/config-server").is_file());
        let mut want = vec![idx.to_string()];
        match unpadded {
            Some(u) => {
                out.has(&format!(
                    "Wrote a copy at {}: Cloud Foundry reads launch.yml at the index without \
                     its leading zeros",
                    dirs.deps().join(u).join("launch.yml").display()
                ));
                assert_eq!(
                    fs::read_to_string(dirs.deps().join(u).join("launch.yml")).expect("copy"),
                    golden(idx),
                    "the copy names $DEPS_DIR/{idx}, not {u}"
                );
                assert_eq!(listing(&dirs.deps().join(u)), vec!["launch.yml"]);
                assert_eq!(mode(&dirs.deps().join(u).join("launch.yml")), 0o644);
                want.push(u.to_string());
            }
            None => {
                out.lacks("Wrote a copy");
            }
        }
        want.sort();
        assert_eq!(listing(&dirs.deps()), want, "DEPS_IDX {idx}");
    }
}

#[test]
fn undeclared_sidecar_removes_both_launch_yml_copies() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).idx("03").run().success();
    assert!(dirs.deps().join("3/launch.yml").is_file());
    Stage::new(&bp, &dirs)
        .idx("03")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE", "false")
        .run()
        .success();
    assert!(!dirs.deps().join("03/launch.yml").exists());
    assert!(!dirs.deps().join("3/launch.yml").exists());
}

#[test]
fn missing_stack_warns_and_takes_any() {
    let bp = Buildpack::new().cached().write();
    Stage::new(&bp, &Dirs::new())
        .no_env("CF_STACK")
        .run()
        .success()
        .has("**WARNING** CF_STACK is not set");
}

#[test]
fn build_dir_must_exist() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    fs::remove_dir(dirs.build()).expect("remove app dir");
    Stage::new(&bp, &dirs)
        .run()
        .code(3)
        .has("**ERROR** BUILD_DIR")
        .has("cannot be used");
    fs::write(dirs.build(), "a file").expect("file");
    Stage::new(&bp, &dirs)
        .run()
        .code(3)
        .has("is not a directory");
}

#[test]
fn missing_dirs_are_created() {
    let (bp, _server) = served(|a| vec![Reply::Body(a.to_vec())]);
    let dirs = Dirs::new();
    assert!(!dirs.cache().exists() && !dirs.deps().exists());
    let out = Stage::new(&bp, &dirs).run();
    out.success().has("Kept a copy in the app cache");
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert!(dirs.cache().is_dir());
    // A cached buildpack never uses the app cache, so it is left as CF made it.
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).run().success();
    assert!(dirs.deps().join("0/bin/config-server").is_file());
    assert!(!dirs.cache().exists());
}

#[test]
fn bad_manifest_names_file_and_key() {
    let bp = Buildpack::new().sha("12345").cached().write();
    Stage::new(&bp, &Dirs::new()).run().code(3).has(&format!(
        "**ERROR** {}: `dependencies[0].sha256` expected 64 hex digits, found 5 characters",
        bp.manifest().display()
    ));
    fs::remove_file(bp.manifest()).expect("rm");
    Stage::new(&bp, &Dirs::new()).run().code(3).has(&format!(
        "**ERROR** cannot read the buildpack file {}",
        bp.manifest().display()
    ));
}

#[test]
fn command_line_contract() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(SUPPLY)
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = run(&["--version"]);
    let version =
        std::fs::read_to_string(std::path::Path::new(REPO).join("VERSION")).expect("VERSION");
    assert_eq!((code, out), (0, format!("supply {}\n", version.trim())));
    let (code, out) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Usage: supply <BUILD_DIR> <CACHE_DIR> <DEPS_DIR> <DEPS_IDX>"),
        "{out}"
    );
    let (code, out) = run(&["a", "b", "c"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DEPS_IDX"), "{out}");
    let (code, _) = run(&["a", "b", "c", "d", "e"]);
    assert_eq!(code, 2);
}

#[test]
fn args_are_quoted_in_the_command() {
    let bp = Buildpack::new()
        .cached()
        .sidecar_extra("  args: [--listen, \"a b\"]\n")
        .write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success();
    assert!(
        out.launch_yml()
            .contains(r#"command: '"$DEPS_DIR/0/bin/config-server" --listen ''a b'''"#),
        "{}",
        out.launch_yml()
    );
}

#[test]
fn sidecars_larger_than_the_app_get_a_warning() {
    let bp = Buildpack::new().cached().write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("MEMORY_LIMIT", "1024m")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "2048")
        .run()
        .success()
        .has("**WARNING** the sidecars of web take 2048 MB, and the app has at most 1024 MB (MEMORY_LIMIT at staging)");
    // At the limit it warns, just under it not: the limit was read, not ignored.
    for (mb, warns) in [("1024", true), ("1023", false)] {
        let out = Stage::new(&bp, &Dirs::new())
            .env("MEMORY_LIMIT", "1G")
            .env("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", mb)
            .run();
        out.success();
        assert_eq!(
            out.out.contains("**WARNING** the sidecars of web"),
            warns,
            "{}",
            out.out
        );
    }
}

/// libbuildpack turns debug lines on for a non-empty BP_DEBUG only.
#[test]
fn an_empty_bp_debug_adds_no_debug_lines() {
    let bp = Buildpack::new().cached().write();
    Stage::new(&bp, &Dirs::new())
        .env("BP_DEBUG", "")
        .run()
        .success()
        .lacks("DEBUG:");
    Stage::new(&bp, &Dirs::new())
        .env("BP_DEBUG", "1")
        .run()
        .success()
        .has("DEBUG:");
}
