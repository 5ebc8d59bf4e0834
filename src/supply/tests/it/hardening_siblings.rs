//! Siblings of the Hardening II cases (#10), found by attacking the real binaries
//! again: each test names the promise it holds the code to.

use crate::support::*;
use std::fs;

// Nothing half-written, whatever form the dirs are given in.

#[test]
fn relative_dirs_are_rolled_back_like_absolute_ones() {
    let sha = sha256_hex(b"anything");
    let bad = Buildpack::new().sha(&sha).cached().write();
    let dirs = Dirs::new();
    // DEPS_DIR does not exist yet: the failed run creates it, and must remove it.
    Stage::new(&bad, &dirs)
        .relative()
        .run()
        .code(4)
        .lacks("could not undo")
        .not_installed();
    assert_eq!(listing(dirs.root.path()), ["app"]);

    let good = Buildpack::new().cached().write();
    let out = Stage::new(&good, &dirs).relative().run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
}

// No secret in any output: a credential pasted into a value that is not meant to hold
// one is hidden by the same `@` rule as every URL.

#[test]
fn a_credential_in_any_setting_is_never_printed() {
    // Not the manifest's secrets: those are scrubbed from every line by value.
    let pasted = "pasted-T0KEN-9";
    let bp = Buildpack::new().cached().write();
    for value in [
        format!("https://bob:{pasted}@mirror.example/x?sig=1"),
        format!("bob:{pasted}@mirror.example"),
        format!("https://mirror.example/x?token={pasted}"),
    ] {
        for var in [
            "SIDECAR_BUILDPACK_CONNECT_TIMEOUT",
            "SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB",
            "SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES",
            "SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE",
            "MEMORY_LIMIT",
        ] {
            Stage::new(&bp, &Dirs::new())
                .env(var, &value)
                .run()
                .code(3)
                .has(&format!("       **ERROR** {var} is set to \""))
                .lacks(pasted);
        }
        Stage::new(&bp, &Dirs::new())
            .env("CF_STACK", &value)
            .run()
            .code(3)
            .has("does not support the stack \"")
            .lacks(pasted);
        Stage::new(&bp, &Dirs::new())
            .idx(&value)
            .run()
            .code(3)
            .has("       **ERROR** DEPS_IDX ")
            .lacks(pasted);
    }
}

// Clear words: a bad setting's error says who sets it, so the fix goes where it can be
// made.

#[test]
fn a_bad_setting_says_who_sets_it() {
    let bp = Buildpack::new().cached().write();
    Stage::new(&bp, &Dirs::new())
        .env("MEMORY_LIMIT", "512k")
        .run()
        .code(3)
        .has(
            "       Cause: Cloud Foundry sets MEMORY_LIMIT itself; this value was set by hand or \
             by a local tool\n       To fix: unset MEMORY_LIMIT, or set it to a whole number of \
             megabytes or gigabytes, as Cloud Foundry sets it: 1024m, 512M, 1G or 2GB\n",
        );
    for (var, value) in [
        ("SIDECAR_BUILDPACK_STALL_TIMEOUT", "0"),
        ("SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB", "lots"),
    ] {
        Stage::new(&bp, &Dirs::new())
            .env(var, value)
            .run()
            .code(3)
            .has(&format!(
                "       Cause: {var} comes from the staging environment variable group (set by \
                 the platform operator) or from the app's env\n"
            ))
            .has("cf set-staging-environment-variable-group for all apps");
    }
    let served = Buildpack::new().uri("http://127.0.0.1:9/x.tgz").write();
    Stage::new(&served, &Dirs::new())
        .env("https_proxy", "ftp://proxy.example:21")
        .env("http_proxy", "http://proxy.example:3128/path")
        .run()
        .code(3)
        .has("       Cause: http_proxy comes from the staging environment variable group");
    Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE", "maybe")
        .run()
        .code(3)
        .has(
            "       Cause: SIDECAR_BUILDPACK_CONFIG_SERVER_DECLARE is an app env var that tunes \
             this buildpack at staging\n",
        );
}

// Clear words for network faults (#10 item 12): a host that answers, but not in TLS,
// was reached; and it answers the same way every time.

#[test]
fn a_host_that_does_not_speak_tls_was_reached_and_is_not_retried() {
    let bp = Buildpack::new();
    for (what, bytes) in [
        (
            "plain HTTP on an https:// uri",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        // A TLS record: a fatal handshake_failure alert, as from a server that shares
        // no protocol version or cipher with the client.
        (
            "a TLS alert",
            vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
        ),
    ] {
        let server = Server::start(vec![Reply::Raw(bytes)]);
        let uri = format!(
            "https://{}/config-server-0.1.0.tgz?token={SECRET}",
            server.addr
        );
        let bp = Buildpack::new()
            .artifact(bp.artifact.clone())
            .uri(uri)
            .write();
        Stage::new(&bp, &Dirs::new())
            .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "3")
            .run()
            .code(4)
            .has("       Cause: the host was reached, but its answer is not usable HTTP or TLS")
            .has("         attempts: 1\n")
            .lacks("could not be reached")
            .not_installed();
        assert_eq!(server.hits(), 1, "{what}: not retried");
    }
}

// The git-URL entry point (bin/supply, sh): the app cache's copy of the prebuilt
// supply may be anything, and its messages hide credentials whatever curl prints.

/// Runs the git-URL entry point with `env` added to what CF gives it.
fn run_entry_with(bp: &Buildpack, dirs: &Dirs, env: &[(&str, &str)]) -> Outcome {
    Outcome::of_staging(
        std::process::Command::new(bp.path().join("bin/supply"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CF_STACK", "cflinuxfs4")
            .envs(env.iter().copied())
            .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()]),
        dirs.deps().join("0"),
    )
}

#[test]
fn whatever_sits_at_the_cached_supply_is_replaced_never_followed() {
    use crate::git_entry::{checkout, supply_bytes};
    let real = supply_bytes();
    let server = Server::start(vec![Reply::Body(real.clone())]);
    let bp = checkout(&server.url("/supply"), &real);
    for junk in [
        "a directory",
        "a symlink to a directory",
        "a copy without +x",
    ] {
        let dirs = Dirs::new();
        let outside = dirs.root.path().join("outside");
        fs::create_dir_all(&outside).expect("outside");
        let pin_dir = dirs
            .cache()
            .join(format!("sidecar-buildpack/supply-{}", sha256_hex(&real)));
        fs::create_dir_all(&pin_dir).expect("pin dir");
        let cached = pin_dir.join("supply");
        match junk {
            "a directory" => fs::create_dir_all(cached.join("inner")).expect("dir"),
            "a symlink to a directory" => {
                std::os::unix::fs::symlink(&outside, &cached).expect("link");
            }
            _ => fs::write(&cached, &real).expect("copy"),
        }
        let out = run_entry_with(&bp, &dirs, &[]);
        out.success();
        assert_eq!(out.installed(), sidecar_bytes("v1"), "{junk}");
        assert_eq!(
            listing(&outside),
            Vec::<String>::new(),
            "{junk}: written outside"
        );
        let m = fs::symlink_metadata(&cached).expect("kept");
        assert!(m.is_file(), "{junk}: the cache holds a file again");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
            0o755,
            "{junk}"
        );
        assert_eq!(listing(&pin_dir), ["supply"], "{junk}: no partial left");
    }
}

#[test]
fn the_entry_point_hides_a_proxy_password_and_says_what_curl_said() {
    use crate::git_entry::checkout;
    let bp = checkout("http://127.0.0.2:9/supply", b"anything");
    // A space in the password: curl quotes the whole setting in its message.
    run_entry_with(
        &bp,
        &Dirs::new(),
        &[("http_proxy", "http://u:pass hunter2@127.0.0.1:1")],
    )
    .code(4)
    .has("Cause: curl: (5) ")
    .lacks("pass")
    .not_installed();
    // A bad URL: curl prints the URL and a caret under it after its own line.
    let bp = checkout(&format!("http://[::1:1/supply?sig={SECRET}"), b"anything");
    run_entry_with(&bp, &Dirs::new(), &[])
        .code(4)
        .has("       Cause: curl: (3) ")
        .not_installed();
}

// Manifest strings that become paths (#10 item 3): the uri's file name, decoded, names
// the app cache's copy and is printed.

#[test]
fn a_uri_file_name_that_decodes_to_control_characters_or_too_long_is_refused() {
    for name in [
        "evil%0A-----%3E%20Fake.tgz".to_string(),
        "evil%E2%80%AEzgt.tgz".to_string(),
        "evil%1B%5B2J.tgz".to_string(),
        format!("{}.tgz", "a".repeat(300)),
    ] {
        let bp = Buildpack::new()
            .uri(format!("https://releases.example/config-server/{name}"))
            .write();
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .run()
            .code(3)
            .has("`dependencies[0].uri` must end in a file name")
            .lacks("-----> Fake");
        assert_eq!(listing(dirs.root.path()), ["app"], "{name}");
    }
}

// Clear words for a proxy that wants credentials: it answered, so it was reached; it is
// named; and the fix says where the credentials go.

#[test]
#[ignore = "needs tinyproxy, a real proxy (apt-get install tinyproxy)"]
fn a_proxy_that_wants_credentials_says_so() {
    let proxy = Tinyproxy::with_auth("proxyuser", "hunter2");
    let bp = Buildpack::new();
    let server = Server::start_on(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        vec![Reply::Body(bp.artifact.clone())],
    );
    let http = Buildpack::new()
        .artifact(bp.artifact.clone())
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    // The CONNECT is refused before any TLS: the target need not speak it.
    let https = Buildpack::new()
        .uri(format!(
            "https://127.0.0.2:9/config-server-0.1.0.tgz?token={SECRET}"
        ))
        .write();
    for (bp, var) in [(&http, "http_proxy"), (&https, "https_proxy")] {
        Stage::new(bp, &Dirs::new())
            .env(var, &proxy.url())
            .env("SIDECAR_BUILDPACK_DOWNLOAD_ATTEMPTS", "3")
            .run()
            .code(4)
            .has(
                "       Cause: the proxy asks for credentials, and the proxy setting has none \
                 or wrong ones\n       To fix: put the proxy's user and password in \
                 https_proxy / http_proxy",
            )
            .has("         attempts: 1\n")
            .has(&format!(
                "       The request went through the proxy {}/ ({var})\n       **ERROR** \
                 downloading config-server from ",
                proxy.url()
            ))
            .has("failed with HTTP 407\n")
            .not_installed();
    }
    assert_eq!(server.hits(), 0);
    // With them, the download goes through, and the credentials stay with the proxy.
    Stage::new(&http, &Dirs::new())
        .env(
            "http_proxy",
            &format!("http://proxyuser:hunter2@127.0.0.1:{}", proxy.port),
        )
        .run()
        .success();
    let head = server.requests().pop().expect("forwarded");
    assert!(
        !head.to_ascii_lowercase().contains("proxy-authorization"),
        "{head}"
    );
}

#[test]
fn the_entry_point_refuses_an_empty_argument_before_writing() {
    use crate::git_entry::checkout;
    let server = Server::start(vec![Reply::Status(500)]);
    let bp = checkout(&server.url("/supply"), b"anything");
    let dirs = Dirs::new();
    for args in [
        ["app", "", "deps", "0"],
        ["app", "cache", "", "0"],
        ["app", "cache", "deps", ""],
    ] {
        let out = Outcome::of(
            std::process::Command::new(bp.path().join("bin/supply"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .args(args)
                .current_dir(dirs.root.path()),
            dirs.deps().join("0"),
        );
        out.code(2).has("none may be empty");
    }
    assert_eq!(server.hits(), 0, "nothing was downloaded");
    assert_eq!(listing(dirs.root.path()), ["app"]);
    assert!(!std::path::Path::new("/sidecar-buildpack").exists());
}

// A failed run leaves the app cache as it found it too: what it downloaded is kept
// only once the deps dir holds the result (on CF a failed staging's cache is not
// uploaded either).

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn a_failed_run_keeps_nothing_in_the_app_cache() {
    let no_exe = tgz(&[("bin/other", b"x", 0o755)]);
    let server = Server::start(vec![Reply::Body(no_exe.clone())]);
    let bp = Buildpack::new()
        .artifact(no_exe)
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .run()
        .code(4)
        .lacks("Kept a copy")
        .not_installed();
    assert_eq!(listing(dirs.root.path()), ["app"], "no CACHE_DIR made");

    // The last step fails (the unpadded copy's dir is read-only): the cache that
    // existed is left exactly as it was.
    let good = Buildpack::new();
    let server = Server::start(vec![Reply::Body(good.artifact.clone())]);
    let good = good
        .uri(server.url(&format!("/config-server-0.1.0.tgz?token={SECRET}")))
        .write();
    let dirs = Dirs::new();
    fs::create_dir_all(dirs.cache().join("other-buildpack-stuff")).expect("cache");
    fs::create_dir_all(dirs.deps().join("3")).expect("unpadded dir");
    let cache_before = snapshot(&dirs.cache());
    let _ro = Mount::read_only(&dirs.deps().join("3"));
    Stage::new(&good, &dirs)
        .idx("03")
        .run()
        .code(5)
        .lacks("Kept a copy")
        .deps_as_found();
    assert_eq!(snapshot(&dirs.cache()), cache_before);
    assert_eq!(server.hits(), 1);

    // And a run that succeeds keeps it.
    let dirs = Dirs::new();
    let out = Stage::new(&good, &dirs).run();
    out.success()
        .has("       Kept a copy in the app cache for the next staging\n       Installed ");
    let entry = dirs.cache().join(format!(
        "sidecar-buildpack/dependencies/{}/config-server-0.1.0.tgz",
        sha256_hex(&good.artifact)
    ));
    assert!(entry.is_file(), "{}", entry.display());
}

// A manifest that declares no sidecar would make a staging succeed and the app run
// without one: bad input, said so.

#[test]
fn a_manifest_without_sidecars_is_refused() {
    let bp = Buildpack::new().cached().write();
    let text = fs::read_to_string(bp.manifest()).expect("manifest");
    let cut = text.find("sidecars:").expect("a sidecars section");
    for rest in ["", "sidecars: []\n", "sidecars:\n"] {
        fs::write(bp.manifest(), format!("{}{rest}", &text[..cut])).expect("write");
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .run()
            .code(3)
            .has(&format!(
                "       **ERROR** {}: `sidecars` must list at least one sidecar",
                bp.manifest().display()
            ))
            .not_installed();
        assert_eq!(listing(dirs.root.path()), ["app"], "{rest:?}");
    }
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn the_entry_point_cuts_a_body_without_a_length_at_its_cap() {
    use crate::git_entry::checkout;
    let server = Server::start(vec![Reply::Endless]);
    let bp = checkout(&server.url(&format!("/supply?sig={SECRET}")), b"anything");
    let dirs = Dirs::new();
    // On a small filesystem, so that a download without a cap stops anyway.
    let _cache = Mount::tmpfs(&dirs.cache(), "size=150m");
    run_entry_with(&bp, &dirs, &[])
        .code(4)
        .has("**ERROR** the prebuilt supply from http://127.0.0.1:")
        .has("is larger than 100 MB\n       Cause: the url answers with far more than supply")
        .lacks("File size limit exceeded")
        .not_installed();
    assert_no_temp_files(&dirs.cache());
    assert_eq!(listing(&dirs.cache()), ["sidecar-buildpack"]);
}

// A process type named twice would list the sidecar twice in launch.yml and count its
// memory twice: the warning then said Cloud Controller would refuse a droplet it takes.

#[test]
fn a_process_type_named_twice_is_refused() {
    let bp = Buildpack::new().cached().write();
    Stage::new(&bp, &Dirs::new())
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES", "web, worker,web")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "600")
        .env("MEMORY_LIMIT", "1024m")
        .run()
        .code(3)
        .has("To fix: set SIDECAR_BUILDPACK_CONFIG_SERVER_PROCESS_TYPES to a comma-separated list of process types, each once")
        .lacks("Cloud Controller will refuse")
        .not_installed();
    let twice = Buildpack::new()
        .cached()
        .sidecar_extra("  process_types: [web, web]\n")
        .write();
    Stage::new(&twice, &Dirs::new())
        .run()
        .code(3)
        .has("`sidecars[0].process_types` must be a non-empty list of distinct process types")
        .not_installed();
}

// A manifest saved with a byte order mark is valid YAML, and CF's own tools read it.

#[test]
fn a_manifest_with_a_byte_order_mark_is_read() {
    let bp = Buildpack::new().cached().write();
    let text = fs::read_to_string(bp.manifest()).expect("manifest");
    fs::write(bp.path().join("VERSION"), "\u{feff}1.2.3\r\n").expect("VERSION");
    for text in [text.clone(), text.replacen("---\n", "", 1)] {
        fs::write(bp.manifest(), format!("\u{feff}{text}")).expect("write");
        let dirs = Dirs::new();
        let out = Stage::new(&bp, &dirs).run();
        out.success().has("-----> sidecar_buildpack 1.2.3\n");
        assert_eq!(out.installed(), sidecar_bytes("v1"));
        let config = fs::read_to_string(out.deps_idx.join("config.yml")).expect("config");
        assert!(config.contains("version: 1.2.3\n"), "{config}");
    }
}

// A nesting bomb, sibling of the alias bomb: serde_yaml's parser takes time quadratic
// in the depth of flow collections (300,000 `[`, 600 KB: many minutes), even under a
// key it ignores. Deeper than 128 levels is refused before it parses.

#[test]
fn a_manifest_nested_too_deep_is_refused_before_it_is_parsed() {
    let bp = Buildpack::new().cached().write();
    let text = fs::read_to_string(bp.manifest()).expect("manifest");
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        // Deep enough that the old parse took seconds, not so deep that it hangs.
        let n = 20_000;
        let deep = format!("{text}deep: {}{}\n", open.repeat(n), close.repeat(n));
        fs::write(bp.manifest(), deep).expect("write");
        let dirs = Dirs::new();
        Stage::new(&bp, &dirs)
            .run()
            .code(3)
            .has(&format!(
                "       **ERROR** {}: `(document)` nested deeper than 128 levels at line ",
                bp.manifest().display()
            ))
            .not_installed();
        assert_eq!(listing(dirs.root.path()), ["app"]);
    }
    // Real nesting, far below the cap, still loads.
    let ok = format!("{text}deep: {}{}\n", "[".repeat(100), "]".repeat(100));
    fs::write(bp.manifest(), ok).expect("write");
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs).run().success();
}
