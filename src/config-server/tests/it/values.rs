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
fn aliases_that_repeat_a_long_string_are_refused_by_the_bytes_they_expand_to() {
    // #21: 999 aliases are under the count of values, but of a 100 KB string they
    // made a 100 MB document and hundreds of MB of memory. The 42nd crosses 4 MiB.
    let mut text = format!("s: &s {}\n", "x".repeat(100_000));
    for i in 0..999 {
        text.push_str(&format!("k{i}: *s\n"));
    }
    refused(
        "c.yml",
        &text,
        "expands to more than 4194304 bytes of JSON (4 MiB, aliases counted as what they \
         repeat); the value at line 42, column 6 goes over the limit",
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

/// The sidecar's memory on Cloud Foundry (launch.yml's 32 MB) as a ceiling on its
/// address space: going over it makes an allocation fail and the process abort,
/// as the container's limit would kill it. Idle, it maps about 5 MiB.
const MEMORY_KIB: u32 = 32 * 1024;

/// The most values (scalars, lists and mappings) a document may hold.
const MAX_VALUES: usize = 50_000;

#[test]
fn the_largest_documents_accepted_fit_in_the_sidecars_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Top-level keys, each rendered on its own for GET /config/<key>: about 1 MiB.
    let keys: String = (0..MAX_VALUES - 1)
        .map(|i| format!("key-{i:06}: {i}\n"))
        .collect();
    // Anchors that no alias uses, nested deep around a long list: each used to be
    // copied whole, for an alias that might come.
    let anchors: String = (0..95)
        .map(|i| format!("{}b: &a{i}\n", " ".repeat(2 * i)))
        .collect();
    let list = vec!["0"; MAX_VALUES - 100].join(",");
    let nested = format!("{anchors}{}b: [{list}]\n", " ".repeat(2 * 95));
    // The same shapes in JSON and as a binding's credentials.
    let json = format!(
        "{{{}}}",
        (0..MAX_VALUES - 1)
            .map(|i| format!("\"key-{i:06}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    // JSON in a file not named .json is read as YAML, whose reader would hold a
    // flow collection whole, token by token, before handing over its first value.
    for (name, text) in [
        ("keys.yml", &keys),
        ("anchors.yml", &nested),
        ("keys.json", &json),
        ("json.yml", &json),
    ] {
        assert!(text.len() <= 1024 * 1024, "{name}: {} bytes", text.len());
        let path = write(dir.path(), name, text.as_bytes());
        let sidecar = Sidecar::wrap_in_shell(&format!("ulimit -v {MEMORY_KIB};"))
            .env("CONFIG_SERVER_FILE", &path)
            .start();
        let whole = sidecar.get("/config/");
        assert_eq!(whole.status, 200, "{name}");
    }
    let vcap = format!(
        "{{\"user-provided\":[{{\"name\":\"c\",\"tags\":[\"config-server\"],\"credentials\":{json}}}]}}"
    );
    let sidecar = Sidecar::wrap_in_shell(&format!("ulimit -v {MEMORY_KIB};"))
        .env(
            "VCAP_SERVICES_FILE_PATH",
            write(dir.path(), "vcap", vcap.as_bytes()),
        )
        .start();
    assert_eq!(sidecar.get("/config/key-000007").body, "7");
}

#[test]
fn a_document_of_too_many_values_is_refused() {
    // 1 MiB of empty mappings: quick to write, costly to hold.
    let maps = vec!["{}"; 300_000].join(",");
    refused(
        "c.yml",
        &format!("a: 1\nb: [{maps}]\n"),
        &format!(
            "holds more than {MAX_VALUES} values (scalars, lists and mappings, aliases counted \
             as what they repeat); the one at line 2, column 149996 goes over the limit"
        ),
    );
    refused(
        "c.json",
        &format!("{{\"a\": 1,\n\"b\": [{maps}]}}"),
        &format!(
            "holds more than {MAX_VALUES} values (scalars, lists and mappings, aliases counted \
             as what they repeat); the one at line 2, column 149999 goes over the limit"
        ),
    );
}

#[test]
fn a_yaml_flow_collection_too_large_to_read_in_bounded_memory_is_refused() {
    // A flow list inside a flow list: the reader cannot tell whether the inner one
    // is a mapping key until it closes, and holds every token of it until then.
    let zeros = vec!["0"; 20_000].join(",");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "c.yml",
        format!("a: 1\nb: [[{zeros}]]\n").as_bytes(),
    );
    let exited = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .run_to_exit();
    assert_eq!(exited.code, Some(3), "{exited:#?}");
    // Where the reader stopped handing over values depends on its lookahead.
    let (before, after) = exited
        .stderr
        .split_once(" holds more than 8192 commas and brackets")
        .unwrap_or_else(|| panic!("{exited:#?}"));
    assert!(
        before.starts_with(&format!(
            "error: CONFIG_SERVER_FILE={}: the YAML after line 2, column ",
            path.display()
        )),
        "{exited:#?}"
    );
    assert_eq!(
        after,
        " before its next value is complete, all of which the YAML reader would keep in memory \
         (a flow collection `[...]` or `{...}` that opens a line or sits in another one is read \
         whole, and so is a string); write a collection this large in block style (`- item` \
         lines), or the file as JSON\n"
    );
    // The same list on its own is fine: read as it goes.
    let path = write(dir.path(), "c.yml", format!("b: [{zeros}]\n").as_bytes());
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    assert_eq!(sidecar.get("/config/b").body, format!("[{zeros}]"));
}

#[test]
fn yaml_merge_keys_merge() {
    // The way YAML configurations share defaults: what every YAML library the
    // app might use does, not a key named `<<`.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "c.yml",
        b"defaults: &defaults\n  host: db\n  pool: 5\nprod:\n  <<: *defaults\n  pool: 20\n",
    );
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    sidecar
        .get("/config/prod")
        .assert_json(200, r#"{"host":"db","pool":20}"#);
    refused(
        "c.yml",
        "prod:\n  <<: [a, b]\n",
        "`prod.<<` merges what is not a mapping (line 2, column 12): the merge key `<<` takes \
         a mapping or a list of mappings; quote it ('<<') if it is meant as a plain key",
    );
}
