//! Each configuration source, and the startup line naming it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{assert_no_secret, Sidecar, DEMO, SECRET};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write config file");
    path
}

fn vcap_services() -> String {
    format!(
        r#"{{
          "p.mysql": [{{"name": "db", "tags": ["mysql"], "credentials": {{"password": "{SECRET}"}}}}],
          "user-provided": [
            {{"name": "app-config", "tags": ["config-server"], "credentials": {{"api_key": "{SECRET}", "mode": "live"}}}},
            {{"name": "other-config", "tags": [], "credentials": {{"mode": "other"}}}}
          ]
        }}"#
    )
}

#[test]
fn file_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "config.json",
        &format!(r#"{{"token": "{SECRET}", "n": [1, 2]}}"#),
    );
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    sidecar
        .get("/config/")
        .assert_json(200, &format!(r#"{{"token":"{SECRET}","n":[1,2]}}"#));
    sidecar.get("/config/n").assert_json(200, "[1,2]");
    let stdout = sidecar.wait_stdout("listening");
    assert_eq!(
        stdout.lines().next(),
        Some(format!(
            "listening 127.0.0.1:{}... (config from CONFIG_SERVER_FILE={})",
            sidecar.port,
            path.display()
        ))
        .as_deref()
    );
    assert_eq!(sidecar.stderr(), "");
}

#[test]
fn file_yaml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "config.yml",
        &format!("# comment\nuser: app\npassword: {SECRET}\nlimits:\n  rps: 10\n"),
    );
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    sidecar.get("/config/").assert_json(
        200,
        &format!(r#"{{"user":"app","password":"{SECRET}","limits":{{"rps":10}}}}"#),
    );
    sidecar
        .get("/config/limits")
        .assert_json(200, r#"{"rps":10}"#);
}

#[test]
fn relative_file_is_found_in_home() {
    let home = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    for (dir, text) in [(&home, "where: home\n"), (&elsewhere, "where: cwd\n")] {
        fs::create_dir(dir.path().join("conf")).expect("mkdir");
        write(dir.path(), "conf/app.yaml", text);
    }
    let sidecar = Sidecar::new()
        .env("HOME", home.path())
        .env("CONFIG_SERVER_FILE", "conf/app.yaml")
        .current_dir(elsewhere.path())
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"where":"home"}"#);
    sidecar.wait_stdout(&format!(
        "(config from CONFIG_SERVER_FILE={}/conf/app.yaml)",
        home.path().display()
    ));
}

#[test]
fn relative_file_without_home_is_found_in_current_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "app.json", r#"{"where":"cwd"}"#);
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", "app.json")
        .current_dir(dir.path())
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"where":"cwd"}"#);
}

#[test]
fn vcap_services_by_name() {
    let sidecar = Sidecar::new()
        .env("VCAP_SERVICES", vcap_services())
        .env("CONFIG_SERVER_SERVICE", "other-config")
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"mode":"other"}"#);
    sidecar.wait_stdout(
        "(config from service instance \"other-config\" named by CONFIG_SERVER_SERVICE in VCAP_SERVICES)",
    );
}

#[test]
fn vcap_services_by_tag() {
    let sidecar = Sidecar::new().env("VCAP_SERVICES", vcap_services()).start();
    sidecar
        .get("/config/")
        .assert_json(200, &format!(r#"{{"api_key":"{SECRET}","mode":"live"}}"#));
    let stdout = sidecar.wait_stdout(
        "(config from service instance \"app-config\" tagged config-server in VCAP_SERVICES)",
    );
    assert_no_secret(&stdout);
    assert_eq!(sidecar.stderr(), "");
}

#[test]
fn vcap_services_file_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "vcap_services", &vcap_services());
    let sidecar = Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &path)
        .env("CONFIG_SERVER_SERVICE", "app-config")
        .start();
    sidecar.get("/config/mode").assert_json(200, r#""live""#);
    sidecar.wait_stdout(&format!(
        "(config from service instance \"app-config\" named by CONFIG_SERVER_SERVICE in \
         VCAP_SERVICES_FILE_PATH={})",
        path.display()
    ));
}

#[test]
fn file_comes_before_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "c.yml", "from: file\n");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("VCAP_SERVICES", vcap_services())
        .env("CONFIG_SERVER_SERVICE", "app-config")
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"from":"file"}"#);
    assert_eq!(
        sidecar.wait_stderr("is ignored"),
        "warning: CONFIG_SERVER_SERVICE=\"app-config\" is ignored: CONFIG_SERVER_FILE is set and \
         comes first\n"
    );
}

#[test]
fn demo_document_with_a_warning() {
    // CF always sets VCAP_SERVICES, often to {}.
    let sidecar = Sidecar::new().env("VCAP_SERVICES", "{}").start();
    sidecar.get("/config/").assert_json(200, DEMO);
    let stdout = sidecar.wait_stdout("listening");
    assert_eq!(
        stdout.lines().next(),
        Some(format!(
            "listening 127.0.0.1:{}... (config from the built-in demo document)",
            sidecar.port
        ))
        .as_deref()
    );
    assert_eq!(
        sidecar.wait_stderr("no configuration found"),
        "warning: no configuration found (CONFIG_SERVER_FILE is unset, and no bound service \
         instance is named by CONFIG_SERVER_SERVICE or tagged config-server): serving the \
         built-in demo document\n"
    );
}
