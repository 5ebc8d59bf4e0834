//! Each kind of bad input fails with its documented exit code and a message that names
//! the file or setting (exit codes: src/stage-local/src/errors.rs).

use crate::support::*;
use stage_local::errors::exit::{CLOUD_CONTROLLER, FINAL_FAILED, INPUT, LAUNCH_YML, SUPPLY_FAILED};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

fn app() -> Sandbox {
    let sb = Sandbox::new();
    sb.file("Procfile", "web: sleep 1\n");
    sb
}

#[test]
fn a_supply_buildpack_without_bin_supply() {
    let sb = app();
    let bp = sb.buildpack("nosupply", "true");
    fs::remove_file(bp.join("bin/supply")).expect("rm");
    sb.stage()
        .buildpack(&bp)
        .run()
        .code(SUPPLY_FAILED)
        .has(&format!(
            "Failed to run all supply scripts: {} does not exist",
            bp.join("bin/supply").display()
        ))
        .has("does not support multi-buildpack apps");
    fs::remove_dir(bp.join("bin")).expect("rm bin");
    sb.stage()
        .buildpack(&bp)
        .run()
        .code(SUPPLY_FAILED)
        .has("malformed buildpack does not contain a /bin dir");
}

#[test]
fn a_bin_supply_that_is_not_executable() {
    let sb = app();
    let bp = sb.buildpack("plain", "true");
    let supply = bp.join("bin/supply");
    fs::set_permissions(&supply, fs::Permissions::from_mode(0o644)).expect("chmod");
    sb.stage()
        .buildpack(&bp)
        .run()
        .code(SUPPLY_FAILED)
        .has(&format!(
            "{} is not executable (mode 644)",
            supply.display()
        ))
        .has("permission denied and exit 225");
}

#[test]
fn a_failing_supply_fails_staging_and_keeps_the_staging_area() {
    let sb = app();
    let ok = sb.buildpack("ok", "echo first ran");
    let bad = sb.buildpack("bad", "echo '       **ERROR** no luck'; exit 14");
    sb.stage()
        .buildpack(&ok)
        .buildpack(&bad)
        .run()
        .code(SUPPLY_FAILED)
        .has("first ran")
        .has("**ERROR** no luck")
        .has(&format!(
            "Failed to run all supply scripts: {} exited with exit status 14",
            bad.join("bin/supply").display()
        ))
        .has("the staging area is kept for inspection: DEPS_DIR ");
}

#[test]
fn zips_that_cf_could_not_use() {
    let sb = app();
    let no_modes = sb.root.path().join("windows.zip");
    let mut w = zip::ZipWriter::new(fs::File::create(&no_modes).expect("zip"));
    let dos = zip::write::SimpleFileOptions::default().system(zip::System::Dos);
    w.start_file("bin/supply", dos).expect("entry");
    w.write_all(b"#!/bin/sh\n").expect("write");
    w.finish().expect("finish");
    sb.stage()
        .buildpack(&no_modes)
        .run()
        .code(SUPPLY_FAILED)
        .has(&format!(
            "bin/supply in {} has no Unix file mode",
            no_modes.display()
        ))
        .has("CF unpacks such entries as 0666");

    let evil = sb.root.path().join("evil.zip");
    let mut w = zip::ZipWriter::new(fs::File::create(&evil).expect("zip"));
    let unix = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    w.start_file("../escaped", unix).expect("entry");
    w.finish().expect("finish");
    sb.stage()
        .buildpack(&evil)
        .run()
        .code(INPUT)
        .has("entry \"../escaped\" is absolute or has `..` in its path");
    assert!(!sb.area("app").join("buildpacks/escaped").exists());

    let text = sb.root.path().join("notes.zip");
    fs::write(&text, "not a zip").expect("write");
    sb.stage()
        .buildpack(&text)
        .run()
        .code(INPUT)
        .has("is neither a directory nor a zip");
}

#[test]
fn launch_yml_files_cf_would_reject() {
    for (memory, sidecar_for, want) in [
        ("32M", "[web]", "processes[0].limits.memory: cannot unmarshal !!str `32M` into int"),
        ("\"32\"", "[web]", "processes[0].limits.memory: cannot unmarshal !!str `32` into int"),
        ("32MB", "[web]", "cannot unmarshal !!str `32MB` into int"),
        ("32", "web", "processes[0].platforms.cloudfoundry.sidecar_for: cannot unmarshal !!str `web` into []string"),
    ] {
        let sb = app();
        let bp = sb.buildpack(
            "strict",
            &format!(
                "printf 'processes:\\n- type: s\\n  command: x\\n  limits:\\n    memory: {memory}\\n  platforms:\\n    cloudfoundry:\\n      sidecar_for: {sidecar_for}\\n' > \"$deps/$idx/launch.yml\""
            ),
        );
        let o = sb.stage().buildpack(&bp).run();
        o.code(LAUNCH_YML)
            .has("/deps/0/launch.yml would fail staging on Cloud Foundry\n")
            .has(want)
            .has("fails staging with exit 1");
    }
}

/// A buildpack whose bin/supply copies `file` (bytes) to `<DEPS_DIR>/<DEPS_IDX>/launch.yml`.
fn writing_launch_yml(sb: &Sandbox, bytes: &[u8]) -> std::path::PathBuf {
    let file = sb.root.path().join("launch.in");
    fs::write(&file, bytes).expect("write");
    sb.buildpack(
        "odd",
        &format!(
            "cp {} \"$deps/$idx/launch.yml\"\nprintf 'name: odd\\n' > \"$deps/$idx/config.yml\"",
            file.display()
        ),
    )
}

/// CF's builder reads launch.yml and the Procfile with Go's yaml.v2, which decodes the
/// first document only, skips a UTF-8 byte-order mark, reads UTF-16 after its mark,
/// takes the last of duplicate keys and applies `<<` merge keys.
#[test]
fn launch_yml_and_procfile_are_read_as_yaml_v2_reads_them() {
    let sb = Sandbox::new();
    let procfile: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "web: sleep 1\nworker: sleep 2\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    fs::write(sb.app().join("Procfile"), procfile).expect("write");
    let yml = "\u{feff}base: &side\n  command: from-the-merge\n  platforms: {cloudfoundry: {sidecar_for: [web]}}\n\
               processes:\n- <<: *side\n  type: first\n  type: side\n  limits: {memory: 16}\n\
               ---\nprocesses:\n- type: never\n  command: the second document\n";
    let bp = writing_launch_yml(&sb, yml.as_bytes());
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .success()
        .has("    side for [web], 16 MB: from-the-merge   (from buildpack 0: odd in odd)\n")
        .has("    worker: sleep 2   (from the Procfile)\n")
        .lacks("never");
}

/// yaml.v2 fails on a file that is not valid UTF-8, and CF's builder fails staging on a
/// launch.yml or Procfile that is there but cannot be read; neither is skipped.
#[test]
fn launch_yml_and_procfile_that_cf_cannot_read() {
    for (script, want) in [
        (
            "printf 'processes:\\n- type: w\\n  command: caf\\xe9\\n' > \"$deps/$idx/launch.yml\"",
            "yaml: invalid UTF-8 at byte 35",
        ),
        ("mkdir \"$deps/$idx/launch.yml\"", "cannot read it: "),
    ] {
        let sb = app();
        let bp = sb.buildpack("unreadable", script);
        sb.stage()
            .buildpack(&bp)
            .arg("--stage-only")
            .run()
            .code(LAUNCH_YML)
            .has("/deps/0/launch.yml would fail staging on Cloud Foundry\n")
            .has(want);
    }

    let sb = Sandbox::new();
    fs::write(sb.app().join("Procfile"), b"web: caf\xe9\n").expect("write");
    sb.stage()
        .arg("--stage-only")
        .run()
        .code(INPUT)
        .has("Procfile: Failed to read command from Procfile: invalid YAML (yaml: invalid UTF-8 at byte 8)");

    let sb = Sandbox::new();
    fs::create_dir(sb.app().join("Procfile")).expect("mkdir");
    sb.stage()
        .arg("--stage-only")
        .run()
        .code(INPUT)
        .has("Procfile: Failed to read command from Procfile: ");
}

#[test]
fn staging_results_cloud_controller_would_refuse() {
    let cases = [
        ("64M", "sidecars:\n  - name: side\n    process_types: [web]\n    command: x\n", "32",
         CLOUD_CONTROLLER, "sidecar \"side\" from buildpack 0: side 1.2.3 in side-buildpack conflicts with an existing user-defined sidecar"),
        ("32M", "", "32", CLOUD_CONTROLLER, "the sidecars of the \"web\" process take 32 MB of its 32 MB (the app's memory): the memory allocation defined is too large to run with the dependent \"web\" process"),
        ("64M", "", "0", CLOUD_CONTROLLER, "declares limits.memory: 0"),
        ("64M", "", "-8", CLOUD_CONTROLLER, "declares limits.memory: -8"),
    ];
    for (memory, extra, sidecar_memory, code, want) in cases {
        let sb = app();
        sb.file(
            "manifest.yml",
            &format!("applications:\n- name: app\n  memory: {memory}\n  {extra}"),
        );
        let bp = sb.sidecar_buildpack("side", sidecar_memory, "exec sleep 600");
        sb.stage().buildpack(&bp).run().code(code).has(want);
    }
}

#[test]
fn app_files_and_settings_that_cannot_be_used() {
    let sb = app();
    sb.file(
        "manifest.yml",
        "applications:\n- name: app\n  memory: 256\n",
    );
    sb.stage().run().code(INPUT).has("manifest.yml: applications[0].memory: byte quantity must be a positive integer with a unit of measurement like M, MB, G, or GB");

    let sb = app();
    sb.file("Procfile", "web:\n  - not a command\n");
    sb.stage()
        .run()
        .code(INPUT)
        .has("Procfile: Failed to read command from Procfile: invalid YAML");

    let sb = app();
    let vs = sb.root.path().join("vcap.json");
    fs::write(&vs, "[]").expect("write");
    sb.stage()
        .arg("--vcap-services")
        .arg(&vs)
        .run()
        .code(INPUT)
        .has(&format!(
            "--vcap-services {}: holds a JSON array, not an object",
            vs.display()
        ));

    let sb = Sandbox::new();
    sb.stage()
        .run()
        .code(INPUT)
        .has("the staged app has no web process type");

    let sb = app();
    let missing = sb.root.path().join("nowhere");
    let o = sb.stage().buildpack(&missing).run();
    o.code(INPUT).has(&format!(
        "--buildpack {}: cannot be used",
        missing.display()
    ));
}

#[test]
fn a_second_run_on_the_same_app_is_refused() {
    let sb = app();
    let area = sb.area("app");
    fs::create_dir_all(&area).expect("mkdir");
    let lock = fs::File::create(area.join(".lock")).expect("lock file");
    lock.try_lock().expect("take the lock");
    sb.stage().run().code(INPUT).has(&format!(
        "another stage-local run is using {}",
        area.display()
    ));
}

#[test]
#[ignore = "needs Ruby and Bundler (scripts/install-ruby)"]
fn the_final_stand_in_needs_the_apps_gems_installed() {
    let sb = app();
    sb.file(
        "Gemfile",
        "source 'https://rubygems.org'\ngem 'no-such-gem-for-stage-local'\n",
    );
    sb.stage()
        .run()
        .code(FINAL_FAILED)
        .has("-----> local stand-in for the app's final buildpack (not the real buildpack): using system Ruby ")
        .has("bundle check says the app's gems are not installed on this machine");
}

#[test]
fn a_droplet_tgz_that_cannot_be_written_stops_the_run_before_anything_changes() {
    let sb = app();
    let nowhere = sb.root.path().join("no/such/dir/droplet.tgz");
    sb.stage()
        .arg("--droplet")
        .arg(&nowhere)
        .run()
        .code(INPUT)
        .has(&format!(
            "--droplet {}: is in a directory that does not exist",
            nowhere.display()
        ));
    assert!(!sb.work().exists(), "nothing staged");
    sb.stage()
        .arg("--droplet")
        .arg(sb.root.path())
        .run()
        .code(INPUT)
        .has("is a directory; name the .tgz file to write");
}

fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

// #21 item 4: stage-local read the app's and the buildpacks' files with no type or size
// check: a Procfile linked to /dev/zero read until memory ran out, and a FIFO as
// manifest.yml or --vcap-services hung it beyond Ctrl-C and SIGTERM. Each is refused at
// once, naming the file and what it is.
#[test]
fn files_that_are_no_small_regular_file_are_refused_at_once() {
    let sb = app();
    let bp = sb.buildpack("ok", "true");
    fs::remove_file(sb.app().join("Procfile")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", sb.app().join("Procfile")).expect("link");
    sb.stage()
        .buildpack(&bp)
        .run()
        .code(INPUT)
        // Read in the staging area's copy of the app, as CF's builder reads BUILD_DIR.
        .has(
            "app/Procfile: Failed to read command from Procfile: it is a device; only a \
              regular file is read",
        );
    fs::remove_file(sb.app().join("Procfile")).expect("rm");
    sb.file("Procfile", "web: sleep 1\n");

    mkfifo(&sb.app().join("manifest.yml"));
    sb.stage()
        .buildpack(&bp)
        .run()
        .code(INPUT)
        .has(&format!("{}", sb.app().join("manifest.yml").display()))
        .has("it is a FIFO; only a regular file is read");
    fs::remove_file(sb.app().join("manifest.yml")).expect("rm");

    let services = sb.root.path().join("services.json");
    mkfifo(&services);
    sb.stage()
        .buildpack(&bp)
        .arg("--vcap-services")
        .arg(&services)
        .run()
        .code(INPUT)
        .has(&format!("{}", services.display()))
        .has("it is a FIFO");
    fs::remove_file(&services).expect("rm");
    fs::write(&services, format!("{{\"x\": \"{}\"}}", "a".repeat(1 << 20))).expect("big");
    sb.stage()
        .buildpack(&bp)
        .arg("--vcap-services")
        .arg(&services)
        .run()
        .code(INPUT)
        .has("it is larger than 1048576 bytes");

    let zip = sb.root.path().join("buildpack.zip");
    mkfifo(&zip);
    sb.stage()
        .buildpack(&zip)
        .run()
        .code(INPUT)
        .has("it is a FIFO");

    // What a buildpack leaves in the deps dir is read the same way.
    let fifo_writer = sb.buildpack("fifo", "mkdir -p \"$3/$4\" && mkfifo \"$3/$4/launch.yml\"");
    sb.stage()
        .buildpack(&fifo_writer)
        .run()
        .code(LAUNCH_YML)
        .has("launch.yml")
        .has("it is a FIFO");
}

// #21 item 13: `--port 0` waited for an answer on port 0 and exited 7 (no answer);
// `--wait 0` could only end the same way. Both are usage errors now, before staging.
#[test]
fn a_port_or_a_wait_of_zero_is_a_usage_error() {
    let sb = app();
    for (flag, says) in [
        (
            "--port",
            "invalid value '0' for '--port <PORT>': 0 is not in 1..=65535",
        ),
        (
            "--wait",
            "invalid value '0' for '--wait <SECONDS>': the app needs at least 1 second to answer",
        ),
    ] {
        sb.stage()
            .arg(flag)
            .arg("0")
            .run()
            .code(2)
            .has(says)
            .lacks("staging app");
    }
}
