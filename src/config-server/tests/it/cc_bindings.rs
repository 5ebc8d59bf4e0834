//! CF's file-based service bindings exactly as Cloud Controller writes them
//! (cloud_controller_ng `ServiceBindingFilesBuilder`, cloud-foundry.md section 7):
//! the tree of the `service-binding-k8s` app feature, where `VCAP_SERVICES` is absent,
//! and the file of `file-based-vcap-services`. The tree here is written by
//! [`cc_tree`], which follows CC's rules file for file, from the same bindings that
//! `VCAP_SERVICES` would carry.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{assert_no_secret, Sidecar, SECRET};

/// The attributes of a binding's hash other than `credentials`, in the order CC's
/// presenter puts them (binding first, then its instance).
const ATTRIBUTES: [&str; 11] = [
    "syslog_drain_url",
    "volume_mounts",
    "label",
    "provider",
    "plan",
    "name",
    "tags",
    "instance_guid",
    "instance_name",
    "binding_guid",
    "binding_name",
];

/// CC's `add_file`: nothing for `null` or an empty list or object, a string as it
/// is, anything else as compact JSON. Returns the bytes of path and content.
fn add_file(root: &Path, binding: &str, key: &str, value: &Value) -> usize {
    let content = match value {
        Value::Null => return 0,
        Value::Array(a) if a.is_empty() => return 0,
        Value::Object(o) if o.is_empty() => return 0,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let name_ok = |s: &str, extra: &[u8]| {
        (1..=253).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    };
    assert!(
        name_ok(binding, b"-."),
        "CC refuses the binding name {binding:?}"
    );
    assert!(name_ok(key, b"-._"), "CC refuses the file name {key:?}");
    let dir = root.join(binding);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join(key), &content).expect("write");
    binding.len() + 1 + key.len() + content.len()
}

/// The `SERVICE_BINDING_ROOT` tree CC writes for `vcap` (VCAP_SERVICES' shape):
/// per binding its credentials, then its attributes over them, then `type` and
/// `provider`, both the label; at most 1,000,000 bytes in all.
fn cc_tree(root: &Path, vcap: &Value) {
    let mut total = 0;
    for instances in vcap.as_object().expect("an object of labels").values() {
        for b in instances.as_array().expect("an array of instances") {
            let name = b["name"].as_str().expect("name");
            for (k, v) in b["credentials"].as_object().into_iter().flatten() {
                total += add_file(root, name, k, v);
            }
            for k in ATTRIBUTES {
                total += add_file(root, name, k, &b[k]);
            }
            total += add_file(root, name, "type", &b["label"]);
            total += add_file(root, name, "provider", &b["label"]);
        }
    }
    assert!(total <= 1_000_000, "CC refuses {total} bytes of bindings");
}

/// Two bindings as CC presents them: the app's configuration (a user-provided
/// service tagged config-server) and a database.
fn vcap() -> Value {
    json!({
        "user-provided": [{
            "label": "user-provided", "name": "app-config", "tags": ["config-server"],
            "instance_guid": "6e0c-ig", "instance_name": "app-config",
            "binding_guid": "2b1d-bg", "binding_name": null,
            "credentials": {
                "api_key": SECRET,
                "port": 5432,
                "tls": true,
                "db": {"host": "db.internal", "pool": [1, 2]},
                "hosts": ["a", "b"],
                "empty": [],
                "unset": null,
                "plan": "a credential CC overwrites with the binding's plan"
            },
            "syslog_drain_url": null, "volume_mounts": [], "plan": "standard", "provider": null
        }],
        "p.mysql": [{
            "label": "p.mysql", "name": "db", "tags": ["mysql"], "plan": "small",
            "instance_guid": "1a-ig", "instance_name": "db", "binding_guid": "9f-bg",
            "binding_name": null, "credentials": {"password": "db-pw"},
            "syslog_drain_url": null, "volume_mounts": [], "provider": null
        }]
    })
}

#[test]
fn a_tree_written_by_ccs_rules_is_served_without_vcap_services() {
    let root = tempfile::tempdir().expect("tempdir");
    cc_tree(root.path(), &vcap());
    // What CC wrote, file for file.
    let mut files: Vec<String> = fs::read_dir(root.path().join("app-config"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "api_key",
            "binding_guid",
            "db",
            "hosts",
            "instance_guid",
            "instance_name",
            "label",
            "name",
            "plan",
            "port",
            "provider",
            "tags",
            "tls",
            "type"
        ]
    );

    // As the service-binding-k8s feature runs the sidecar: no VCAP_SERVICES at all.
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .start();
    // Objects and lists as VCAP_SERVICES gives them; other values as CC wrote them
    // (5432 and "5432" are the same file); nulls, empty lists and the credential
    // that CC overwrote with the binding's own `plan` are not there.
    sidecar.get("/config/").assert_json(
        200,
        &format!(
            r#"{{"api_key":"{SECRET}","db":{{"host":"db.internal","pool":[1,2]}},"hosts":["a","b"],"port":"5432","tls":"true"}}"#
        ),
    );
    let stdout = sidecar.wait_stdout(&format!(
        "(config from service instance \"app-config\" tagged config-server in \
         SERVICE_BINDING_ROOT={})",
        root.path().display()
    ));
    assert_no_secret(&stdout);
    assert_eq!(sidecar.stderr(), "");
    drop(sidecar);

    // The same bindings from VCAP_SERVICES: the same shape.
    let sidecar = Sidecar::new()
        .env("VCAP_SERVICES", vcap().to_string())
        .start();
    let from_env = sidecar.get("/config/").json();
    assert_eq!(
        from_env["db"],
        json!({"host": "db.internal", "pool": [1, 2]})
    );
    assert_eq!(from_env["hosts"], json!(["a", "b"]));
    assert_eq!(from_env["port"], json!(5432));

    // By name, the database binding.
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("CONFIG_SERVER_SERVICE", "db")
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"password":"db-pw"}"#);
}

#[test]
fn the_vcap_services_file_as_cc_writes_it_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vcap_services");
    fs::write(&path, vcap().to_string()).expect("write");
    let sidecar = Sidecar::new().env("VCAP_SERVICES_FILE_PATH", &path).start();
    assert_eq!(sidecar.get("/config/").json()["api_key"], SECRET);
}

/// CF leaves CredHub references unresolved in file-based bindings: the sidecar
/// says so instead of serving the reference as the secret.
#[test]
fn a_credhub_reference_is_never_served_as_the_secret() {
    let mut bindings = vcap();
    bindings["user-provided"][0]["credentials"] =
        json!({"credhub-ref": "/c/broker/service/6e0c/credentials"});
    let root = tempfile::tempdir().expect("tempdir");
    cc_tree(root.path(), &bindings);
    let expected = |origin: String| {
        format!(
            "service instance \"app-config\" in {origin}: its credentials are a CredHub \
             reference (credhub-ref) that the platform did not resolve, not the secret itself; \
             Cloud Foundry resolves them in VCAP_SERVICES only, and not in file-based bindings \
             (SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH): turn the app feature off (cf \
             disable-feature-for-app APP service-binding-k8s or file-based-vcap-services) and \
             restart, or bind a service whose credentials are not stored in CredHub"
        )
    };
    Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .run_to_exit()
        .assert_error(
            3,
            &expected(format!("SERVICE_BINDING_ROOT={}", root.path().display())),
        );
    let path = root.path().join("vcap_services");
    fs::write(&path, bindings.to_string()).expect("write");
    Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &path)
        .run_to_exit()
        .assert_error(
            3,
            &expected(format!("VCAP_SERVICES_FILE_PATH={}", path.display())),
        );
    // Nested one level down, too.
    bindings["user-provided"][0]["credentials"] = json!({"db": {"credhub-ref": "/c/broker/db"}});
    Sidecar::new()
        .env("VCAP_SERVICES", bindings.to_string())
        .run_to_exit()
        .assert_error(3, &expected("VCAP_SERVICES".into()));
}
