//! Configuration errors: exit code 3, one `error:` line naming the variable,
//! no secret in the output, and nothing served instead.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;

use crate::support::{Sidecar, SECRET};

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.yml");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: cannot read it: No such file or directory (os error 2)",
                path.display()
            ),
        );
}

#[test]
fn invalid_json_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    fs::write(&path, format!("{{\n  \"password\": {SECRET}\n}}\n")).expect("write");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: not valid JSON (line 2, column 15)",
                path.display()
            ),
        );
}

#[test]
fn invalid_yaml_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yml");
    fs::write(&path, format!("password: \"{SECRET}\n")).expect("write");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: not valid YAML (line 1, column 11)",
                path.display()
            ),
        );
}

#[test]
fn file_top_level_not_a_mapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yml");
    fs::write(&path, format!("- {SECRET}\n")).expect("write");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: the top level must be a mapping of keys to values",
                path.display()
            ),
        );
}

#[test]
fn world_writable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yml");
    fs::write(&path, format!("password: {SECRET}\n")).expect("write");
    fs::set_permissions(&path, Permissions::from_mode(0o666)).expect("chmod");
    let real = fs::canonicalize(&path).expect("canonicalize");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: refusing to read it: {} is world-writable (mode 0666); \
                 run `chmod o-w {}`",
                path.display(),
                real.display(),
                real.display()
            ),
        );
}

#[test]
fn symlink_into_world_writable_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = dir.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    let target = open.join("config.yml");
    fs::write(&target, format!("password: {SECRET}\n")).expect("write");
    fs::set_permissions(&open, Permissions::from_mode(0o777)).expect("chmod");
    let link = dir.path().join("config.yml");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    refused_for_directory(&link, &open);
}

/// `CONFIG_SERVER_FILE` refused with the world-writable directory `open`.
fn refused_for_directory(file: &std::path::Path, open: &std::path::Path) {
    let real = fs::canonicalize(open).expect("canonicalize");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", file)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: refusing to read it: directory {} is world-writable \
                 without the sticky bit (mode 0777), so anyone can replace the file; run \
                 `chmod o-w {}` or move the file",
                file.display(),
                real.display(),
                real.display()
            ),
        );
}

#[test]
fn a_world_writable_directory_anywhere_on_the_way_to_the_file() {
    // Anyone can rename what a world-writable directory holds: a directory on
    // the path, or a symlink half way along a chain of them, as much as the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let open = dir.path().join("open");
    fs::create_dir_all(open.join("safe")).expect("mkdir");
    let file = open.join("safe/config.yml");
    fs::write(&file, format!("password: {SECRET}\n")).expect("write");
    fs::set_permissions(&open, Permissions::from_mode(0o777)).expect("chmod");
    refused_for_directory(&file, &open);

    let dir = tempfile::tempdir().expect("tempdir");
    let (open, safe) = (dir.path().join("open"), dir.path().join("safe"));
    fs::create_dir(&open).expect("mkdir");
    fs::create_dir(&safe).expect("mkdir");
    let file = safe.join("real.yml");
    fs::write(&file, format!("password: {SECRET}\n")).expect("write");
    // config.yml -> open/hop -> safe/real.yml
    std::os::unix::fs::symlink(&file, open.join("hop")).expect("symlink");
    let link = safe.join("config.yml");
    std::os::unix::fs::symlink(open.join("hop"), &link).expect("symlink");
    fs::set_permissions(&open, Permissions::from_mode(0o777)).expect("chmod");
    refused_for_directory(&link, &open);
}

#[test]
fn named_service_not_bound() {
    let vcap = format!(
        r#"{{"user-provided":[{{"name":"db","tags":["config-server"],"credentials":{{"pw":"{SECRET}"}}}}]}}"#
    );
    Sidecar::new()
        .env("VCAP_SERVICES", vcap)
        .env("CONFIG_SERVER_SERVICE", "app-config")
        .run_to_exit()
        .assert_error(
            3,
            "CONFIG_SERVER_SERVICE=\"app-config\": no service instance of that name is bound to \
             the app (looked in VCAP_SERVICES; bound: \"db\")",
        );
}

#[test]
fn named_service_without_vcap_services() {
    Sidecar::new()
        .env("CONFIG_SERVER_SERVICE", "app-config")
        .run_to_exit()
        .assert_error(
            3,
            "CONFIG_SERVER_SERVICE=\"app-config\": no service instance of that name is bound to \
             the app (looked in SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH and VCAP_SERVICES, \
             none of which is set)",
        );
}

#[test]
fn unparsable_vcap_services() {
    Sidecar::new()
        .env(
            "VCAP_SERVICES",
            format!(r#"{{"x":[{{"credentials":{{"pw":{SECRET}"#),
        )
        .run_to_exit()
        .assert_error(3, "VCAP_SERVICES: not valid JSON (line 1, column 28)");
}

#[test]
fn vcap_services_of_the_wrong_shape() {
    Sidecar::new()
        .env(
            "VCAP_SERVICES",
            format!(r#"{{"x":{{"password":"{SECRET}"}}}}"#),
        )
        .run_to_exit()
        .assert_error(
            3,
            "VCAP_SERVICES: not shaped like VCAP_SERVICES (an object of arrays of service \
             instances, each with a name) (line 1, column 5)",
        );
}

#[test]
fn missing_vcap_services_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vcap_services");
    Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "VCAP_SERVICES_FILE_PATH={}: cannot read it: No such file or directory (os error 2)",
                path.display()
            ),
        );
}

#[test]
fn several_tagged_services() {
    let vcap = format!(
        r#"{{"b":[{{"name":"two","tags":["config-server"],"credentials":{{"pw":"{SECRET}"}}}}],
             "a":[{{"name":"one","tags":["config-server"],"credentials":{{"pw":"{SECRET}"}}}}]}}"#
    );
    Sidecar::new()
        .env("VCAP_SERVICES", vcap)
        .run_to_exit()
        .assert_error(
            3,
            "2 bound service instances are tagged config-server or of type config-server \
             (\"one\", \"two\") in VCAP_SERVICES: set CONFIG_SERVER_SERVICE to the name of the \
             one to use",
        );
}
