//! Config values that are not what they seem, through the real binary: each
//! is refused at startup (exit 3) with the key and where, never the value.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{Sidecar, SECRET};

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write config file");
    path
}

fn refused(name: &str, text: &str, message: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), name, text.as_bytes());
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!("CONFIG_SERVER_FILE={}: {message}", path.display()),
        );
}

#[test]
fn duplicate_keys_are_refused_by_name_and_line() {
    refused(
        "c.yml",
        &format!("user: app\npassword: {SECRET}\npassword: other\n"),
        "key `password` appears twice in the same mapping (line 3, column 1): keep one of them",
    );
    refused(
        "c.json",
        &format!("{{\"db\": {{\"pw\": \"{SECRET}\",\n \"pw\": \"x\"}}}}"),
        "key `db.pw` appears twice in the same mapping (line 2, column 5): keep one of them",
    );
}

#[test]
fn json_with_a_byte_order_mark_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "c.json",
        "\u{feff}{\"token\": \"t\"}".as_bytes(),
    );
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    sidecar.get("/config/").assert_json(200, r#"{"token":"t"}"#);
}

#[test]
fn non_finite_numbers_are_refused_by_key() {
    let tail = "is not a finite number (line 2, column 8): .nan, .inf and numbers beyond ±1.8e308 \
                have no JSON form; quote the value if it is meant as text";
    refused("c.yml", "a: 1\nratio: .nan\n", &format!("`ratio` {tail}"));
    refused("c.yml", "a: 1\nlimit: 1e999\n", &format!("`limit` {tail}"));
    refused(
        "c.json",
        "{\"a\": 1,\n \"b\": [1e999]}",
        "`b[0]` is not a finite number (line 2, column 12): .nan, .inf and numbers beyond \
         ±1.8e308 have no JSON form; quote the value if it is meant as text",
    );
}

#[test]
fn alias_expansion_is_refused_with_the_limit_and_the_place() {
    // Each line repeats the one above ten times: 10,000 values from 5 lines.
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c")] {
        text.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    refused(
        "c.yml",
        &text,
        "aliases repeat more than 1000 values in all; the alias at line 3, column 40 goes over \
         the limit: write the values out, or use fewer aliases",
    );
}

#[test]
fn a_source_over_1_mib_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yml");
    // Sparse: 100 MB that take no disk and would take 100 MB to read.
    let file = fs::File::create(&path).expect("create");
    file.set_len(100 * 1024 * 1024).expect("set_len");
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "CONFIG_SERVER_FILE={}: refusing to read it: 104857600 bytes, over the limit of \
                 1048576 bytes (1 MiB) for a configuration source",
                path.display()
            ),
        );
    let vcap = dir.path().join("vcap_services");
    fs::File::create(&vcap)
        .expect("create")
        .set_len(1024 * 1024 + 1)
        .expect("set_len");
    Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &vcap)
        .run_to_exit()
        .assert_error(
            3,
            &format!(
                "VCAP_SERVICES_FILE_PATH={}: refusing to read it: 1048577 bytes, over the limit \
                 of 1048576 bytes (1 MiB) for a configuration source",
                vcap.display()
            ),
        );
}

#[test]
fn a_source_of_exactly_1_mib_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let value = "v".repeat(1024 * 1024 - 11);
    let path = write(
        dir.path(),
        "c.json",
        format!("{{\"big\": \"{value}\"}}").as_bytes(),
    );
    assert_eq!(fs::metadata(&path).expect("stat").len(), 1024 * 1024);
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    assert_eq!(sidecar.get("/config/big").body.len(), value.len() + 2);
}
