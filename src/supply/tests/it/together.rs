//! Issue #23 in supply: an app pins its sidecar's version
//! (`SIDECAR_BUILDPACK_<SIDECAR>_VERSION`), holds its start for the sidecar
//! (`..._HOLD_APP`, a `.profile.d` script), and config.yml says what was installed
//! (`output_metadata`).

use crate::support::*;
use std::fs;
use std::process::Command;

/// A cached buildpack carrying config-server 0.1.0 (the default), 0.2.0 and 0.2.3 for
/// cflinuxfs4, and 0.2.9 for cflinuxfs3 only; each artifact's executable is
/// `sidecar_bytes(<version>)`. 0.2.x reached its end of life in 2020. `extra` is
/// appended to the sidecar entry.
fn versions_buildpack(extra: &str) -> Buildpack {
    let bp = Buildpack::new().write();
    let mut deps = String::new();
    for (version, stack) in [
        ("0.1.0", "cflinuxfs4"),
        ("0.2.0", "cflinuxfs4"),
        ("0.2.3", "cflinuxfs4"),
        ("0.2.9", "cflinuxfs3"),
    ] {
        let artifact = tgz(&[("bin/config-server", &sidecar_bytes(version), 0o755)]);
        let file = format!("dependencies/{version}/config-server-{version}.tgz");
        let path = bp.path().join(&file);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, &artifact).expect("artifact");
        deps.push_str(&format!(
            "- name: config-server\n  version: {version}\n  \
             uri: https://releases.invalid/config-server-{version}.tgz\n  \
             sha256: {}\n  file: {file}\n  cf_stacks: [{stack}]\n",
            sha256_hex(&artifact)
        ));
    }
    let manifest = format!(
        "---\nlanguage: sidecar\ndefault_versions:\n- name: config-server\n  version: 0.1.0\n\
         dependencies:\n{deps}\
         dependency_deprecation_dates:\n- name: config-server\n  version_line: 0.2.x\n  \
         date: 2020-01-01\n  link: https://example.com/eol\n\
         sidecars:\n- name: config-server\n  dependency: config-server\n  \
         executable: bin/config-server\n  memory_mb: 32\n  process_types: [web, worker]\n{extra}"
    );
    fs::write(bp.manifest(), manifest).expect("manifest");
    bp
}

const HOLD: &str = "  hold_app:\n    args: [wait]\n    versions: '>= 0.2.0'\n";

fn config_yml(out: &Outcome) -> serde_yaml::Value {
    let text = fs::read_to_string(out.deps_idx.join("config.yml")).expect("config.yml");
    serde_yaml::from_str(&text).expect("config.yml is YAML")
}

#[test]
fn a_pinned_range_stages_its_highest_version_for_the_stack() {
    let bp = versions_buildpack("");
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.x")
        .run();
    out.success()
        .has("-----> Installing config-server 0.2.3\n")
        .has(
            "       config-server 0.2.3: the highest version \
             SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION=\"0.2.x\" allows\n",
        )
        // The end-of-life warning is about the version chosen, not the default.
        .has("**WARNING** config-server 0.2.x");
    assert_eq!(out.installed(), sidecar_bytes("0.2.3"));
    let meta = &config_yml(&out)["output_metadata"]["sidecars"][0];
    assert_eq!(meta["version"], "0.2.3");
    assert_eq!(meta["source"], "buildpack");

    // ~0.2 and an exact version, on another stack: that stack's builds only.
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("CF_STACK", "cflinuxfs3")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "~0.2")
        .run();
    out.success().has("-----> Installing config-server 0.2.9\n");
    assert_eq!(out.installed(), sidecar_bytes("0.2.9"));
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.0")
        .run();
    out.success().has("-----> Installing config-server 0.2.0\n");
    assert_eq!(out.installed(), sidecar_bytes("0.2.0"));

    // Unset: default_versions, and no end-of-life warning for 0.1.0.
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success()
        .has("-----> Installing config-server 0.1.0\n")
        .lacks("WARNING");
    assert_eq!(out.installed(), sidecar_bytes("0.1.0"));
}

#[test]
fn a_range_without_a_match_fails_listing_the_versions_for_the_stack() {
    let bp = versions_buildpack("");
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.9")
        .run();
    out.code(3)
        .has(
            "**ERROR** SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION is set to \"0.2.9\", and no \
             config-server version this buildpack carries for the stack \"cflinuxfs4\" matches it",
        )
        .has("versions available: 0.1.0, 0.2.0, 0.2.3\n")
        .deps_as_found()
        .not_installed();
    let out = Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "newest")
        .run();
    out.code(3)
        .has("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION is set to \"newest\", which is not valid")
        .not_installed();
}

#[test]
fn config_yml_says_what_was_installed_and_from_where() {
    let (bp, dirs) = (Buildpack::new().cached().write(), Dirs::new());
    let out = Stage::new(&bp, &dirs).idx("03").run();
    out.success();
    let config = config_yml(&out);
    let want: serde_yaml::Value = serde_yaml::from_str(&format!(
        "name: sidecar\nversion: 1.2.3\nconfig: {{}}\noutput_metadata:\n  sidecars:\n  \
         - name: config-server\n    dependency: config-server\n    version: 0.1.0\n    \
         sha256: {}\n    source: buildpack\n",
        sha256_hex(&bp.artifact)
    ))
    .expect("expected");
    assert_eq!(config, want);
    // No URL: a presigned one carries its token in the query.
    let text = fs::read_to_string(out.deps_idx.join("config.yml")).expect("config.yml");
    assert!(!text.contains("releases.invalid"), "{text}");
}

/// An archive with an SBOM reports its path in the droplet.
#[test]
fn output_metadata_names_the_sbom() {
    let artifact = tgz(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        (
            "sbom/config-server.cdx.json",
            br#"{"bomFormat":"CycloneDX"}"#,
            0o644,
        ),
    ]);
    let bp = Buildpack::new().artifact(artifact).cached().write();
    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs).run();
    out.success().has("the CycloneDX SBOM of config-server");
    let meta = &config_yml(&out)["output_metadata"]["sidecars"][0];
    assert_eq!(meta["sbom"], "deps/0/sbom/config-server.cdx.json");
}

#[test]
fn hold_off_installs_nothing_and_hold_on_installs_the_script() {
    let bp = versions_buildpack(HOLD);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.0")
        .run()
        .success()
        .lacks(".profile.d");
    assert!(!dirs.build().join(".profile.d").exists());

    let dirs = Dirs::new();
    let out = Stage::new(&bp, &dirs)
        .idx("07")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.0")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "true")
        .run();
    out.success().has(
        "       Wrote .profile.d/sidecar_buildpack_hold_config-server.sh: the app's processes \
         wait for their sidecar at start\n",
    );
    let script = dirs
        .build()
        .join(".profile.d/sidecar_buildpack_hold_config-server.sh");
    let text = fs::read_to_string(&script).expect("the hold script");
    assert!(
        text.ends_with(
            "case \"${2-}\" in\n  '\"$DEPS_DIR/07/bin/config-server\"') ;;\n  *) \
             \"${DEPS_DIR:-/home/vcap/deps}/07/bin/config-server\" wait --timeout 30s \
             --only-for web,worker || true ;;\nesac\n"
        ),
        "{text}"
    );
    let names: Vec<_> = fs::read_dir(dirs.build().join(".profile.d"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left: {names:?}");
}

#[test]
fn a_hold_the_sidecar_cannot_do_fails_before_anything_changes() {
    // The default 0.1.0 predates the wait (versions >= 0.2.0).
    let bp = versions_buildpack(HOLD);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "true")
        .run()
        .code(3)
        .has("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP is set to \"true\", which is not valid")
        .has("config-server 0.1.0 cannot wait for itself; versions >= 0.2.0 can")
        .not_installed();
    assert!(!dirs.build().join(".profile.d").exists());
    // A manifest entry without hold_app.
    let bp = versions_buildpack("");
    Stage::new(&bp, &dirs)
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "10")
        .run()
        .code(3)
        .has("the config-server sidecar has no way to wait for it");
}

/// Sources the hold script the way CF's launcher does (`$1` the app dir, `$2` the
/// start command), under `set -euo pipefail` as the Java buildpack's launcher runs,
/// with a stand-in executable that records its arguments and exits with `code`.
fn source_hold(dirs: &Dirs, start_command: &str, code: i32) -> (std::process::Output, String) {
    let deps = dirs.deps();
    let record = deps.join("waited");
    let _ = fs::remove_file(&record);
    fs::write(
        deps.join("07/bin/config-server"),
        format!(
            "#!/bin/sh\necho \"$*\" > '{}'\nexit {code}\n",
            record.display()
        ),
    )
    .expect("stand-in");
    let script = dirs
        .build()
        .join(".profile.d/sidecar_buildpack_hold_config-server.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; source '{}'; echo sourced",
            script.display()
        ))
        .arg("launcher")
        .arg(dirs.build())
        .arg(start_command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("DEPS_DIR", &deps)
        .output()
        .expect("bash");
    (out, fs::read_to_string(&record).unwrap_or_default())
}

#[test]
fn the_hold_script_waits_only_outside_the_sidecar_and_never_fails_the_start() {
    let bp = versions_buildpack(HOLD);
    let dirs = Dirs::new();
    Stage::new(&bp, &dirs)
        .idx("07")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION", "0.2.0")
        .env("SIDECAR_BUILDPACK_CONFIG_SERVER_HOLD_APP", "5")
        .run()
        .success();
    let sidecar = "\"$DEPS_DIR/07/bin/config-server\"";

    let (out, waited) = source_hold(&dirs, "bundle exec rackup -p $PORT", 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sourced\n");
    assert_eq!(waited, "wait --timeout 5s --only-for web,worker\n");

    // The sidecar itself never waits.
    let (out, waited) = source_hold(&dirs, sidecar, 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sourced\n");
    assert_eq!(waited, "");

    // A wait that times out still lets the process start, under set -e.
    let (out, waited) = source_hold(&dirs, "java -jar app.jar", 1);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sourced\n", "{out:?}");
    assert_eq!(waited, "wait --timeout 5s --only-for web,worker\n");

    // No $2 at all (sourced by hand): set -u must not trip.
    let script = dirs
        .build()
        .join(".profile.d/sidecar_buildpack_hold_config-server.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -eu; source '{}'; echo sourced",
            script.display()
        ))
        .env("DEPS_DIR", dirs.deps())
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sourced\n", "{out:?}");
}
