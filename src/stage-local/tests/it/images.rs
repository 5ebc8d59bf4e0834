//! `--image`, `--image-layout`, `--kube` and `--base` without a container runtime: the
//! image's layout, config and layers are read back from the files; bases that cannot
//! be used are refused before anything is staged, and no partial file is left. The
//! bases are tiny images made here; the entrypoint is a stand-in ELF header (it is
//! never run: tests/it/podman.rs runs the real one).

use crate::support::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use stage_local::errors::exit::BASE;
use stage_local::errors::exit::{INPUT, LAUNCH_YML, USAGE};

fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The first 64 bytes of a static x86-64 executable: an ELF header with no program
/// headers, so no interpreter.
fn fake_entrypoint(sb: &Sandbox) -> PathBuf {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little-endian
    h[6] = 1;
    h[16] = 2; // ET_EXEC
    h[18] = 62; // x86-64
    h[52] = 64; // e_ehsize
    h[54] = 56; // e_phentsize, e_phnum stays 0
    let path = sb.root.path().join("cf-entrypoint");
    fs::write(&path, h).expect("write");
    path
}

/// A tar holding `etc/base-marker`.
fn base_layer_tar() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "etc/base-marker", &b"base\n"[..])
        .expect("append");
    tar.into_inner().expect("tar")
}

fn base_config(arch: &str, diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/base/bin:/usr/bin:/bin", "BASE_ONLY=1"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "the test's base"}],
    }))
    .expect("json")
}

/// An OCI layout directory of one gzipped layer for `arch`; returns it and the layer's
/// bytes.
fn oci_base(sb: &Sandbox, arch: &str) -> (PathBuf, Vec<u8>) {
    let dir = sb.root.path().join(format!("base-{arch}"));
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("mkdir");
    let tar = base_layer_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = base_config(arch, &sha256(&tar));
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).expect("blob");
        d
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&layer), "size": layer.len()}],
    }))
    .expect("json");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len()}],
    });
    fs::write(dir.join("index.json"), index.to_string()).expect("index");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    (dir, layer)
}

/// A `docker save` tar of one uncompressed layer; returns it and the layer's bytes.
fn docker_base(sb: &Sandbox) -> (PathBuf, Vec<u8>) {
    let layer = base_layer_tar();
    let config = base_config("amd64", &sha256(&layer));
    let manifest = serde_json::json!([{
        "Config": "c0ffee.json",
        "RepoTags": ["example/base:1"],
        "Layers": ["abc/layer.tar"],
    }]);
    let path = sb.root.path().join("docker-base.tar");
    let mut tar = tar::Builder::new(fs::File::create(&path).expect("create"));
    for (name, bytes) in [
        ("manifest.json", manifest.to_string().into_bytes()),
        ("c0ffee.json", config),
        ("abc/layer.tar", layer.clone()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes.as_slice())
            .expect("append");
    }
    tar.finish().expect("finish");
    (path, layer)
}

/// The web app with a sidecar of 32 MB (256 MB in all).
fn app() -> (Sandbox, PathBuf) {
    let sb = Sandbox::web_app();
    let bp = sb.sidecar_buildpack("sidekick", "32", "exec sleep 600");
    (sb, bp)
}

/// The files of an image archive, in order, with their bytes.
fn entries(archive: &Path) -> Vec<(String, Vec<u8>, u64, u64)> {
    let mut a = tar::Archive::new(fs::File::open(archive).expect("open"));
    a.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = String::from_utf8_lossy(&e.path_bytes()).to_string();
            let (mtime, uid) = (
                e.header().mtime().expect("mtime"),
                e.header().uid().expect("uid"),
            );
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).expect("read");
            (name, bytes, mtime, uid)
        })
        .collect()
}

fn json_of(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("no {name}"))).expect("json")
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    files
        .get(&format!("blobs/sha256/{}", &digest[7..]))
        .unwrap_or_else(|| panic!("no blob {digest}"))
}

/// The droplet layer's entries: name to (mode, uid, gid, bytes).
fn layer_entries(gz: &[u8]) -> BTreeMap<String, (u32, u64, u64, Vec<u8>)> {
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    a.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).expect("read");
            (
                String::from_utf8_lossy(&e.path_bytes()).to_string(),
                (
                    h.mode().expect("mode"),
                    h.uid().expect("uid"),
                    h.gid().expect("gid"),
                    bytes,
                ),
            )
        })
        .collect()
}

fn no_partial_files(dir: &Path) {
    let left: Vec<String> = fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".image") || n.starts_with(".kube") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_image_lays_the_droplet_out_as_a_diego_cell_and_starts_cf_entrypoint() {
    let (sb, bp) = app();
    let (base, base_layer) = oci_base(&sb, "amd64");
    let entrypoint = fake_entrypoint(&sb);
    let out = sb.root.path().join("out");
    fs::create_dir_all(&out).expect("mkdir");
    let image = |name: &str| {
        sb.stage()
            .buildpack(&bp)
            .arg("--stage-only")
            .arg("--base")
            .arg(&base)
            .arg("--entrypoint")
            .arg(&entrypoint)
            .arg("--image")
            .arg(out.join(name))
            .arg("--image-layout")
            .arg(out.join(format!("{name}.d")))
            .arg("--kube")
            .arg(out.join(format!("{name}.yml")))
            .run()
    };
    let first = image("one.tar");
    first
        .success()
        .has("the image's base: ")
        .lacks("stand-in for the stack");
    let listed = entries(&out.join("one.tar"));
    for (name, _, mtime, uid) in &listed {
        assert_eq!((*mtime, *uid), (0, 0), "{name}");
    }
    let names: Vec<&str> = listed.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(
        &names[names.len() - 3..],
        ["index.json", "manifest.json", "oci-layout"]
    );
    let files: BTreeMap<String, Vec<u8>> = listed.into_iter().map(|(n, b, ..)| (n, b)).collect();

    let index = json_of(&files, "index.json");
    let m = &index["manifests"][0];
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "localhost/demo:latest"
    );
    let digest = m["digest"].as_str().expect("digest");
    first.has(&format!(
        "wrote localhost/demo:latest ({digest}) as an image archive at {}",
        out.join("one.tar").display()
    ));
    let manifest: Value = serde_json::from_slice(blob(&files, digest)).expect("manifest");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        3,
        "the base's layer, the lifecycle's, then the droplet's"
    );
    assert_eq!(
        blob(&files, layers[0]["digest"].as_str().expect("digest")),
        base_layer,
        "the base's layer is reused unchanged"
    );
    let docker = json_of(&files, "manifest.json");
    assert_eq!(docker[0]["RepoTags"][0], "localhost/demo:latest");
    assert_eq!(
        docker[0]["Layers"][2],
        format!(
            "blobs/sha256/{}",
            &layers[2]["digest"].as_str().expect("d")[7..]
        )
    );

    let config: Value = serde_json::from_slice(blob(
        &files,
        manifest["config"]["digest"].as_str().expect("digest"),
    ))
    .expect("config");
    let c = &config["config"];
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/lifecycle/cf-entrypoint"])
    );
    assert_eq!(c["Cmd"], serde_json::json!(["web"]));
    assert_eq!(c["User"], "2000:2000");
    assert_eq!(c["WorkingDir"], "/home/vcap/app");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(config["history"].as_array().map(Vec::len), Some(3));
    let env: BTreeMap<&str, &str> = c["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str()?.split_once('='))
        .collect();
    for (k, want) in [
        ("PATH", "/base/bin:/usr/bin:/bin"),
        ("BASE_ONLY", "1"),
        ("PORT", "8080"),
        ("MEMORY_LIMIT", "224m"),
        ("VCAP_SERVICES", "{}"),
        ("INSTANCE_INDEX", "0"),
        ("CF_INSTANCE_PORT", "8080"),
    ] {
        assert_eq!(env.get(k), Some(&want), "{k}");
    }
    let vcap: Value = serde_json::from_str(env["VCAP_APPLICATION"]).expect("json");
    assert_eq!(
        (vcap["name"].as_str(), vcap["limits"]["mem"].as_u64()),
        (Some("demo"), Some(224))
    );
    for unknown_ahead in ["CF_INSTANCE_IP", "CF_INSTANCE_CERT", "HOME", "DEPS_DIR"] {
        assert!(!env.contains_key(unknown_ahead), "{unknown_ahead}");
    }

    let lifecycle = layer_entries(blob(&files, layers[1]["digest"].as_str().expect("d")));
    assert_eq!(
        lifecycle.keys().collect::<Vec<_>>(),
        ["lifecycle/", "lifecycle/cf-entrypoint"],
        "the lifecycle layer is the same for every app"
    );
    let ep = &lifecycle["lifecycle/cf-entrypoint"];
    assert_eq!(
        (ep.0, ep.1, &ep.3),
        (0o755, 0, &fs::read(&entrypoint).expect("read"))
    );
    let layer = layer_entries(blob(&files, layers[2]["digest"].as_str().expect("d")));
    let server = &layer["home/vcap/app/server.py"];
    assert_eq!((server.0 & 0o777, server.1, server.2), (0o644, 2000, 2000));
    assert_eq!(layer["home/vcap/"].0 & 0o777, 0o700, "the droplet's root");
    assert!(layer.contains_key("home/vcap/deps/0/bin/sidekick"));
    assert!(layer.contains_key("home/vcap/staging_info.yml"));
    assert!(!layer.contains_key("lifecycle/cf-entrypoint"));
    let plan: Value = serde_json::from_slice(&layer["lifecycle/processes.json"].3).expect("plan");
    assert_eq!(
        plan,
        serde_json::json!({"processes": {"web": {
            "command": "exec python3 server.py",
            "memory_mb": 224,
            "sidecars": [{"name": "sidekick", "command": "\"$DEPS_DIR/0/bin/sidekick\"", "memory_mb": 32}],
        }}})
    );

    // The layout holds the same image; the YAML names it.
    let layout_index = fs::read(out.join("one.tar.d/index.json")).expect("layout");
    assert_eq!(&layout_index, &files["index.json"]);
    assert!(out
        .join("one.tar.d")
        .join(format!("blobs/sha256/{}", &digest[7..]))
        .is_file());
    let yaml = fs::read_to_string(out.join("one.tar.yml")).expect("yaml");
    assert!(yaml.contains("image: localhost/demo:latest"), "{yaml}");

    // Same inputs, same bytes.
    image("two.tar").success().has(&format!("({digest})"));
    assert_eq!(
        fs::read(out.join("one.tar")).expect("one"),
        fs::read(out.join("two.tar")).expect("two")
    );
    no_partial_files(&out);
}

#[test]
fn a_docker_save_base_keeps_its_uncompressed_layer() {
    let (sb, bp) = app();
    let (base, layer) = docker_base(&sb);
    let file = sb.root.path().join("image.tar");
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .args_for_image(&base, &fake_entrypoint(&sb), &file)
        .run()
        .success();
    let files: BTreeMap<String, Vec<u8>> = entries(&file)
        .into_iter()
        .map(|(n, b, ..)| (n, b))
        .collect();
    let index = json_of(&files, "index.json");
    let manifest: Value = serde_json::from_slice(blob(
        &files,
        index["manifests"][0]["digest"].as_str().expect("d"),
    ))
    .expect("manifest");
    let first = &manifest["layers"][0];
    assert_eq!(first["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(first["digest"], sha256(&layer));
    assert_eq!(blob(&files, &sha256(&layer)), layer);
}

trait ImageArgs {
    fn args_for_image(self, base: &Path, entrypoint: &Path, file: &Path) -> Run;
}

impl ImageArgs for Run {
    fn args_for_image(self, base: &Path, entrypoint: &Path, file: &Path) -> Run {
        self.arg("--base")
            .arg(base)
            .arg("--entrypoint")
            .arg(entrypoint)
            .arg("--image")
            .arg(file)
    }
}

#[test]
fn a_base_that_is_no_image_or_of_another_architecture_changes_nothing() {
    let (sb, bp) = app();
    let entrypoint = fake_entrypoint(&sb);
    let out = sb.root.path().join("out");
    fs::create_dir_all(&out).expect("mkdir");
    let file = out.join("image.tar");
    let text = sb.root.path().join("notes.txt");
    fs::write(&text, "not an image\n").expect("write");
    let empty_dir = sb.root.path().join("empty");
    fs::create_dir_all(&empty_dir).expect("mkdir");
    let (arm, _) = oci_base(&sb, "arm64");
    for (base, says) in [
        (text.clone(), "is not an image: not a tar archive"),
        (
            empty_dir.clone(),
            "is not an image: it has neither an index.json",
        ),
        (sb.root.path().join("missing"), "cannot be read"),
        (
            arm,
            "holds an image for linux/arm64 only, not for linux/amd64",
        ),
    ] {
        sb.stage()
            .buildpack(&bp)
            .arg("--stage-only")
            .args_for_image(&base, &entrypoint, &file)
            .run()
            .code(BASE)
            .has(&format!(
                "stage-local: error: --base {}: {says}",
                base.display()
            ))
            .has("to fix: ")
            .lacks("staging demo");
        assert!(!file.exists(), "{}", base.display());
        no_partial_files(&out);
    }
}

#[test]
fn no_web_process_or_a_sidecar_for_a_missing_type_leaves_no_image() {
    let sb = Sandbox::new();
    sb.file("Procfile", "worker: sleep 1\n");
    let (base, _) = oci_base(&sb, "amd64");
    let entrypoint = fake_entrypoint(&sb);
    let file = sb.root.path().join("image.tar");
    sb.stage()
        .arg("--stage-only")
        .args_for_image(&base, &entrypoint, &file)
        .run()
        .code(INPUT)
        .has("the staged app has no web process type: nothing to start");
    assert!(!file.exists());

    let sb = Sandbox::web_app();
    let bp = sb.buildpack(
        "typo",
        r#"cat > "$deps/$idx/launch.yml" <<'YML'
processes:
- type: helper
  command: sleep 600
  limits: {memory: 16}
  platforms: {cloudfoundry: {sidecar_for: [web, wroker]}}
YML"#,
    );
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .args_for_image(&base, &entrypoint, &file)
        .run()
        .code(LAUNCH_YML)
        .has("sidecar \"helper\" from buildpack 0: ")
        .has("runs beside the process type \"wroker\", which the droplet does not have (it has: web)");
    assert!(!file.exists());
    no_partial_files(sb.root.path());
}

#[test]
fn an_entrypoint_that_is_not_static_or_flags_without_an_image_are_refused() {
    let (sb, bp) = app();
    let (base, _) = oci_base(&sb, "amd64");
    let file = sb.root.path().join("image.tar");
    let dynamic = PathBuf::from("/bin/bash");
    sb.stage()
        .buildpack(&bp)
        .args_for_image(&base, &dynamic, &file)
        .run()
        .code(INPUT)
        .has("--entrypoint /bin/bash: is dynamically linked");
    let script = sb.root.path().join("script");
    fs::write(&script, "#!/bin/sh\n").expect("write");
    sb.stage()
        .buildpack(&bp)
        .args_for_image(&base, &script, &file)
        .run()
        .code(INPUT)
        .has("is not a 64-bit little-endian ELF binary");
    for flag in ["--kube", "--base"] {
        sb.stage()
            .buildpack(&bp)
            .arg(flag)
            .arg(sb.root.path().join("x"))
            .run()
            .code(USAGE)
            .has(&format!("{flag} needs --image or --image-layout"));
    }
    sb.stage()
        .buildpack(&bp)
        .args_for_image(
            &base,
            &fake_entrypoint(&sb),
            &sb.root.path().join("no/such/dir/i.tar"),
        )
        .run()
        .code(INPUT)
        .has("is in a directory that does not exist");
    assert!(!file.exists());
}

#[test]
fn without_mmdebstrap_the_stand_in_base_fails_with_10_before_staging() {
    let (sb, bp) = app();
    let file = sb.root.path().join("image.tar");
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .arg("--entrypoint")
        .arg(fake_entrypoint(&sb))
        .arg("--image")
        .arg(&file)
        .env("PATH", "/nonexistent")
        .run()
        .code(BASE)
        .has("building a stand-in base for the stack with mmdebstrap (Debian ")
        .has("stage-local: error: cannot build the stand-in base (bash ca-certificates): cannot run mmdebstrap")
        .has("to fix: install mmdebstrap")
        .lacks("staging demo");
    assert!(!file.exists());
}
