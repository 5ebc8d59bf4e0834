//! Service bindings from a `SERVICE_BINDING_ROOT` tree (CF's `service-binding-k8s`
//! app feature, the Kubernetes Service Binding spec), alone and next to
//! `VCAP_SERVICES`, with the same rules as `VCAP_SERVICES`.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::{assert_no_secret, Sidecar, SECRET};

/// A binding directory as CF's cloud_controller_ng writes it: each credential
/// as a file (non-strings as JSON), then the binding's attributes, `type` and
/// `provider`.
fn cf_binding(root: &Path, name: &str, label: &str, tags: &[&str], credentials: &[(&str, &str)]) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    for (key, value) in credentials {
        fs::write(dir.join(key), value).expect("write credential");
    }
    let tags = serde_json::to_string(tags).expect("tags");
    for (key, value) in [
        ("name", name),
        ("label", label),
        ("tags", tags.as_str()),
        ("plan", "standard"),
        ("instance_guid", "8f1a-guid"),
        ("instance_name", name),
        ("binding_guid", "0c2b-guid"),
        ("type", label),
        ("provider", label),
    ] {
        fs::write(dir.join(key), value).expect("write attribute");
    }
}

#[test]
fn tagged_binding_from_the_tree_serves_only_its_credentials() {
    let root = tempfile::tempdir().expect("tempdir");
    cf_binding(
        root.path(),
        "db",
        "p.mysql",
        &["mysql"],
        &[("password", "db-pw")],
    );
    cf_binding(
        root.path(),
        "app-config",
        "user-provided",
        &["config-server"],
        &[
            ("api_key", SECRET),
            ("port", "5432"),
            ("nested", r#"{"a":1}"#),
        ],
    );
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    // Files in name order; a nested value as CF wrote it (JSON), every other value
    // as the file's text.
    sidecar.get("/config/").assert_json(
        200,
        &format!(r#"{{"api_key":"{SECRET}","nested":{{"a":1}},"port":"5432"}}"#),
    );
    let stdout = sidecar.wait_stdout(&format!(
        "(config from service instance \"app-config\" tagged config-server in \
         SERVICE_BINDING_ROOT={})",
        root.path().display()
    ));
    assert_no_secret(&stdout);
    assert_eq!(sidecar.stderr(), "");
}

#[test]
fn binding_by_name_and_by_type() {
    let root = tempfile::tempdir().expect("tempdir");
    cf_binding(root.path(), "one", "user-provided", &[], &[("x", "1")]);
    // A plain Kubernetes binding: only `type` and `provider` are metadata.
    let other = root.path().join("typed");
    fs::create_dir(&other).expect("mkdir");
    fs::write(other.join("type"), "config-server\n").expect("write");
    fs::write(other.join("provider"), "acme").expect("write");
    fs::write(other.join("name"), "a credential called name").expect("write");
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("CONFIG_SERVER_SERVICE", "one")
        .start();
    sidecar.get("/config/").assert_json(200, r#"{"x":"1"}"#);
    drop(sidecar);
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"name":"a credential called name"}"#);
    sidecar.wait_stdout("(config from service instance \"typed\" of type config-server in");
}

#[test]
fn kubernetes_projected_layout_with_data_symlinks() {
    let root = tempfile::tempdir().expect("tempdir");
    let binding = root.path().join("cfg");
    let version = binding.join("..2026_11_30_10_00_00.000000001");
    fs::create_dir_all(&version).expect("mkdir");
    fs::write(version.join("type"), "config-server").expect("write");
    fs::write(version.join("password"), SECRET).expect("write");
    symlink(version.file_name().expect("name"), binding.join("..data")).expect("symlink");
    for key in ["type", "password"] {
        symlink(format!("..data/{key}"), binding.join(key)).expect("symlink");
    }
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, &format!(r#"{{"password":"{SECRET}"}}"#));
}

#[test]
fn several_tagged_bindings_in_the_tree_are_an_error() {
    let root = tempfile::tempdir().expect("tempdir");
    cf_binding(
        root.path(),
        "b",
        "user-provided",
        &["config-server"],
        &[("pw", SECRET)],
    );
    cf_binding(root.path(), "a", "config-server", &[], &[("pw", SECRET)]);
    Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "2 bound service instances are tagged config-server or of type config-server \
                 (\"a\", \"b\") in SERVICE_BINDING_ROOT={}: set CONFIG_SERVER_SERVICE to the \
                 name of the one to use",
                root.path().display()
            ),
        );
}

#[test]
fn the_tree_comes_first_and_a_name_is_looked_up_in_every_source() {
    let root = tempfile::tempdir().expect("tempdir");
    cf_binding(
        root.path(),
        "from-tree",
        "user-provided",
        &["config-server"],
        &[("src", "tree")],
    );
    let vcap = r#"{"user-provided":[
        {"name":"from-env","tags":["config-server"],"credentials":{"src":"env"}},
        {"name":"only-env","tags":[],"credentials":{"src":"only-env"}}]}"#;
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("VCAP_SERVICES", vcap)
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"src":"tree"}"#);
    assert_eq!(
        sidecar.wait_stderr("several binding sources"),
        "warning: several binding sources are set (SERVICE_BINDING_ROOT, VCAP_SERVICES): they \
         are searched in that order, and the first one holding a match wins\n"
    );
    drop(sidecar);
    // A name only VCAP_SERVICES holds is found there.
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("VCAP_SERVICES", vcap)
        .env("CONFIG_SERVER_SERVICE", "only-env")
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"src":"only-env"}"#);
    drop(sidecar);
    // A name nobody holds: the error says where it looked and what each source binds.
    Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("VCAP_SERVICES", vcap)
        .env("CONFIG_SERVER_SERVICE", "nowhere")
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_SERVICE=\"nowhere\": no service instance of that name is bound to \
                 the app (looked in SERVICE_BINDING_ROOT={}; bound: \"from-tree\"; and in \
                 VCAP_SERVICES; bound: \"from-env\", \"only-env\")",
                root.path().display()
            ),
        );
}

#[test]
fn an_empty_tree_means_the_demo_document_and_a_missing_one_an_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    assert!(sidecar
        .stderr()
        .contains("serving the built-in demo document"));
    drop(sidecar);
    let missing = root.path().join("nope");
    let exited = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", &missing)
        .run_to_exit();
    assert_eq!(exited.code, Some(3));
    assert!(
        exited.stderr.starts_with(&format!(
            "error: SERVICE_BINDING_ROOT={}: cannot read {}: No such file",
            missing.display(),
            missing.display()
        )),
        "{exited:#?}"
    );
}

#[test]
fn hostile_trees_are_refused() {
    // Over 1 MiB in all, spread over files each under it.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("cfg");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("type"), "config-server").expect("write");
    for i in 0..3 {
        fs::File::create(dir.join(format!("part{i}")))
            .and_then(|f| f.set_len(400 * 1024))
            .expect("file");
    }
    Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "SERVICE_BINDING_ROOT={}: {}: refusing to read it: with the binding's files read \
                 before it, more than 1048576 bytes, over the limit of 1048576 bytes (1 MiB) for \
                 a configuration source",
                root.path().display(),
                dir.join("part2").display()
            ),
        );
    // A FIFO, which would block a reader forever.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("cfg");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("type"), "config-server").expect("write");
    let fifo = dir.join("password");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "SERVICE_BINDING_ROOT={}: {}: not a regular file",
                root.path().display(),
                fifo.display()
            ),
        );
}

#[test]
fn other_bindings_files_are_not_read() {
    // Kubernetes-style bindings of other services commonly hold binary keystores
    // and large CA bundles; config-server serves one binding and reads only it.
    let root = tempfile::tempdir().expect("tempdir");
    cf_binding(
        root.path(),
        "app-config",
        "user-provided",
        &["config-server"],
        &[("pw", SECRET)],
    );
    cf_binding(root.path(), "db", "p.mysql", &["mysql"], &[("user", "u")]);
    let db = root.path().join("db");
    fs::write(db.join("keystore.p12"), b"\x30\x82\xff\xfe\x00").expect("binary");
    fs::File::create(db.join("ca.crt"))
        .and_then(|f| f.set_len(2 * 1024 * 1024))
        .expect("big");
    let made = std::process::Command::new("mkfifo")
        .arg(db.join("pipe"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let odd_name = std::ffi::OsStr::from_bytes(b"\xffkey");
    fs::write(db.join(odd_name), "x").expect("a name that is not UTF-8");
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, &format!(r#"{{"pw":"{SECRET}"}}"#));
    drop(sidecar);
    // Named, the same binding is refused, naming the file.
    let named = |message: String| {
        Sidecar::new()
            .env("SERVICE_BINDING_ROOT", root.path())
            .env("CONFIG_SERVER_SERVICE", "db")
            .run_to_exit()
            .assert_error(3, &message);
    };
    named(format!(
        "SERVICE_BINDING_ROOT={}: {}: the name is not UTF-8",
        root.path().display(),
        db.join(odd_name).display()
    ));
    fs::remove_file(db.join(odd_name)).expect("rm");
    fs::remove_file(db.join("ca.crt")).expect("rm");
    named(format!(
        "SERVICE_BINDING_ROOT={}: {}: not UTF-8 text, and config-server serves text values only",
        root.path().display(),
        db.join("keystore.p12").display()
    ));
}

#[test]
fn vcap_services_credentials_are_parsed_strictly_for_the_binding_served_only() {
    let maps = vec!["{}"; 60_000].join(",");
    let vcap = format!(
        "{{\"user-provided\": [\n  {{\"name\": \"other\", \"credentials\": {{\"x\": [{maps}], \"x\": 1}}}},\n  \
         {{\"name\": \"cfg\", \"tags\": [\"config-server\"],\n   \"credentials\": {{\"pw\": \"{SECRET}\", \"pw\": \"again\"}}}}\n]}}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vcap_services");
    fs::write(&file, &vcap).expect("write");
    Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &file)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "service instance \"cfg\" in VCAP_SERVICES_FILE_PATH={}: its credentials: key \
                 `pw` appears twice in the same mapping (line 4, column 48): keep one of them",
                file.display()
            ),
        );
    // What other bindings hold (60,000 values, a key twice) is none of its business.
    fs::write(&file, vcap.replace(", \"pw\": \"again\"", "")).expect("write");
    let sidecar = Sidecar::new().env("VCAP_SERVICES_FILE_PATH", &file).start();
    sidecar
        .get("/config/")
        .assert_json(200, &format!(r#"{{"pw":"{SECRET}"}}"#));
}
