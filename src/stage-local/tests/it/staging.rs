//! Staging as CF's builder does it: the arguments and environment of bin/supply, the
//! droplet's layout, DEPS_IDX padding, merge order, result.json, the app cache, zips.

use crate::support::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn supply_gets_cfs_arguments_and_environment_and_the_droplet_cfs_layout() {
    let sb = Sandbox::new();
    sb.file(
        "manifest.yml",
        "applications:\n- name: demo\n  memory: 256M\n  env:\n    GREETING: hi\n    PORT_NUMBER: 8082\n",
    )
    .file("Procfile", "web: sleep 1\n")
    .file(".git/HEAD", "ref\n")
    .file("lib/data.txt", "data\n");
    let bp = sb.buildpack(
        "probe",
        r#"printf '%s\n' "$@" > "$deps/$idx/args"; env > "$deps/$idx/env"; pwd > "$deps/$idx/pwd"
echo "-----> probe ran""#,
    );
    let o = sb
        .stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .env("HTTPS_PROXY", "http://proxy.invalid:3128")
        .env("no_proxy", "localhost")
        .env("CALLERS_SECRET", "must-not-leak")
        .run();
    o.success()
        .has("-----> probe ran\n")
        .has("-----> local stand-in for the app's final buildpack (not the real buildpack)");
    let area = sb.area("demo");
    let droplet = area.join("droplet");

    let args = lines(&droplet.join("deps/0/args"));
    assert_eq!(args.len(), 4, "{args:?}");
    assert_eq!(PathBuf::from(&args[0]), area.join("app"));
    let cache = PathBuf::from(&args[1]);
    assert_eq!(cache.parent(), Some(area.join("cache").as_path()));
    let id = cache
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let deps = PathBuf::from(&args[2]);
    assert!(deps.ends_with("deps"), "{}", deps.display());
    let contents = deps.parent().expect("contents").file_name().expect("name");
    assert!(contents.to_string_lossy().starts_with("contents"));
    assert!(
        !deps.exists(),
        "the staging path is gone once the droplet is made"
    );
    assert_eq!(args[3], "0");

    let env: BTreeMap<String, String> = lines(&droplet.join("deps/0/env"))
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !["PWD", "SHLVL", "_", "OLDPWD"].contains(&k.as_str()))
        .collect();
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "CF_STACK",
            "GREETING",
            "HOME",
            "HTTPS_PROXY",
            "LANG",
            "MEMORY_LIMIT",
            "PATH",
            "PORT_NUMBER",
            "VCAP_APPLICATION",
            "VCAP_SERVICES",
            "no_proxy"
        ]
    );
    assert_eq!(env["CF_STACK"], "cflinuxfs4");
    assert_eq!(env["MEMORY_LIMIT"], "1024m", "CF stages with at least 1 GB");
    assert_eq!(env["VCAP_SERVICES"], "{}");
    assert_eq!(env["PORT_NUMBER"], "8082");
    let vcap: serde_json::Value = serde_json::from_str(&env["VCAP_APPLICATION"]).expect("json");
    assert_eq!(vcap["application_name"], "demo");
    assert_eq!(vcap["limits"]["mem"], 1024);
    let pwd = lines(&droplet.join("deps/0/pwd")).remove(0);
    assert!(
        !pwd.starts_with(&args[0]) && !pwd.starts_with(&args[2]),
        "{pwd}"
    );

    for present in [
        "app/Procfile",
        "app/lib/data.txt",
        "deps/1/config.yml",
        "profile.d/000_multi-supply.sh",
        "tmp",
        "logs",
    ] {
        assert!(droplet.join(present).exists(), "{present}");
    }
    for absent in ["app/manifest.yml", "app/.git"] {
        assert!(!droplet.join(absent).exists(), "{absent}");
    }
    // The final buildpack's config.yml has `config: {}`, so staging_info.yml has it too.
    assert_eq!(
        fs::read_to_string(droplet.join("staging_info.yml")).expect("staging_info"),
        "{\"detected_buildpack\":\"the app's final buildpack (local stand-in)\",\"start_command\":\"sleep 1\",\"config\":{}}\n"
    );
    assert_eq!(
        mode(&droplet),
        0o700,
        "the droplet's root, as CF's builder makes it"
    );
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).expect("stat").permissions()) & 0o7777
}

/// A buildpack whose launch.yml is `yml` and whose config.yml names it `name`, with
/// `config` (YAML) added.
fn declaring(sb: &Sandbox, name: &str, yml: &str, config: &str) -> PathBuf {
    sb.buildpack(
        name,
        &format!(
            "cat > \"$deps/$idx/launch.yml\" <<'YML'\n{yml}YML\nprintf 'name: {name}\\nversion: \"1.0\"\\n{config}' > \"$deps/$idx/config.yml\""
        ),
    )
}

#[test]
fn merges_in_cfs_order_and_writes_cfs_result_json() {
    let sb = Sandbox::new();
    sb.file(
        "manifest.yml",
        "applications:\n- name: demo\n  memory: 256M\n  buildpacks: [bp0, bp1, ruby_buildpack]\n",
    )
    .file("Procfile", "web: procfile-web\n");
    let bp0 = declaring(
        &sb,
        "bp0",
        "processes:\n- type: web\n  command: bp0-web\n- type: worker\n  command: bp0-worker\n\
         - type: helper\n  command: bp0-helper\n  limits: {memory: 16}\n  platforms: {cloudfoundry: {sidecar_for: [web]}}\n",
        "config:\\n  zeta: [1, two]\\n  alpha: {url: \"http://x/?a=1&b=<2>\"}\\n",
    );
    let bp1 = declaring(
        &sb,
        "bp1",
        "processes:\n- type: web\n  command: bp1-web\n- type: helper\n  command: bp1-helper\n  limits: {memory: 24}\n  \
         platforms: {cloudfoundry: {sidecar_for: [web]}}\n- type: plain\n  command: bp1-plain\n  limits: {memory: 8}\n",
        "config:\\n",
    );
    let o = sb
        .stage()
        .buildpack(&bp0)
        .buildpack(&bp1)
        .arg("--stage-only")
        .run();
    o.success()
        .has("    web: procfile-web   (from the Procfile)\n")
        .has("    worker: bp0-worker   (from buildpack 0: bp0 1.0 in bp0)\n")
        .has("    helper for [web], 24 MB: bp1-helper   (from buildpack 1: bp1 1.0 in bp1)\n")
        .has(concat!(
            "  memory:\n",
            "    plain: 1024 MB (Cloud Controller's default: the app's memory sizes web only): MEMORY_LIMIT=1024m\n",
            "    web: 256 MB (the app's memory), less 24 MB for its sidecars: MEMORY_LIMIT=232m\n",
            "    worker: 1024 MB (Cloud Controller's default: the app's memory sizes web only): MEMORY_LIMIT=1024m\n"
        ));
    let key = |p: &Path| {
        fs::canonicalize(p)
            .expect("canonical")
            .display()
            .to_string()
    };
    let want = format!(
        concat!(
            r#"{{"lifecycle_metadata":{{"buildpack_key":"ruby_buildpack","detected_buildpack":"ruby_buildpack (local stand-in)","#,
            r#""buildpacks":[{{"key":"{k0}","name":"bp0","version":"1.0","#,
            r#""config":{{"alpha":{{"url":"http://x/?a=1\u0026b=\u003c2\u003e"}},"zeta":[1,"two"]}}}},"#,
            r#"{{"key":"{k1}","name":"bp1","version":"1.0"}},"#,
            r#"{{"key":"ruby_buildpack","name":"ruby_buildpack (local stand-in)","config":{{}}}}]}},"#,
            r#""process_types":{{"plain":"bp1-plain","web":"procfile-web","worker":"bp0-worker"}},"#,
            r#""processes":[{{"type":"web","command":"procfile-web"}},{{"type":"worker","command":"bp0-worker"}},{{"type":"plain","command":"bp1-plain"}}],"#,
            r#""sidecars":[{{"name":"helper","process_types":["web"],"command":"bp1-helper","memory":24}}],"#,
            r#""execution_metadata":"","lifecycle_type":"buildpack"}}"#,
            "\n"
        ),
        k0 = key(&bp0),
        k1 = key(&bp1)
    );
    let got = fs::read_to_string(sb.area("demo").join("result.json")).expect("result.json");
    assert_eq!(got, want);
}

fn idx_dirs(droplet: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(droplet.join("deps"))
        .expect("deps")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn deps_idx_is_zero_padded_once_there_are_ten_buildpacks() {
    for supplies in [8usize, 9, 10] {
        let sb = Sandbox::new();
        sb.file("Procfile", "web: sleep 1\n");
        let mut run = sb.stage().arg("--stage-only");
        for i in 0..supplies {
            let bp = sb.buildpack(&format!("bp{i}"), "echo \"$idx\" > \"$deps/$idx/seen\"");
            run = run.buildpack(bp);
        }
        run.run().success();
        let total = supplies + 1;
        let want: Vec<String> = (0..total)
            .map(|i| {
                if total >= 10 {
                    format!("{i:02}")
                } else {
                    i.to_string()
                }
            })
            .collect();
        let droplet = sb.area("app").join("droplet");
        assert_eq!(idx_dirs(&droplet), want, "{supplies} supply buildpacks");
        for idx in &want[..supplies] {
            assert_eq!(
                lines(&droplet.join("deps").join(idx).join("seen")),
                vec![idx.clone()]
            );
        }
    }
}

/// Stages with `supplies` supply buildpacks, the sidecar buildpack `side` at `at`, the
/// others doing nothing; returns the run's output and result.json.
fn stage_with_side_at(
    sb: &Sandbox,
    supplies: usize,
    at: usize,
    side: &Path,
    extra: &[&str],
) -> (Outcome, serde_json::Value) {
    let mut run = sb.stage();
    for a in extra {
        run = run.arg(a);
    }
    for i in 0..supplies {
        run = if i == at {
            run.buildpack(side)
        } else {
            run.buildpack(sb.buildpack(&format!("filler{i}"), "true"))
        };
    }
    let o = run.run();
    let result = fs::read_to_string(sb.area("demo").join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    (o, result)
}

/// CF's builder reads launch.yml at `deps/<index without leading zeros>`: with 10 or
/// more buildpacks, a launch.yml written only at the padded DEPS_IDX is lost, with a
/// warning; written at both, its sidecar is kept and its command names the padded dir.
#[test]
fn with_ten_or_more_buildpacks_launch_yml_is_read_at_the_unpadded_index() {
    // (supply buildpacks, index of the sidecar buildpack, its DEPS_IDX)
    for (supplies, at, idx) in [(10, 3, "03"), (9, 0, "00"), (11, 10, "10")] {
        let unpadded = at.to_string();
        for unpadded_too in [false, true] {
            let case = format!(
                "DEPS_IDX {idx} of {}, unpadded copy: {unpadded_too}",
                supplies + 1
            );
            let sb = Sandbox::web_app();
            let side = sb.sidecar_buildpack_writing("side", "16", "exec sleep 600", unpadded_too);
            let (o, result) = stage_with_side_at(&sb, supplies, at, &side, &["--stage-only"]);
            o.success();
            let kept = unpadded_too || idx == unpadded;
            let warning = format!(
                "warning: buildpack {at}: side 1.2.3 in side-buildpack wrote launch.yml only at deps/{idx}/launch.yml, but CF's builder reads deps/{unpadded}/launch.yml"
            );
            if kept {
                let sidecars = &result["sidecars"];
                assert_eq!(
                    sidecars.as_array().map(Vec::len),
                    Some(1),
                    "{case}: {result}"
                );
                assert_eq!(
                    sidecars[0]["command"],
                    format!("\"$DEPS_DIR/{idx}/bin/side\""),
                    "{case}"
                );
                o.lacks("wrote launch.yml only at");
            } else {
                assert!(result.get("sidecars").is_none(), "{case}: {result}");
                o.has(&warning)
                    .has("the staging succeeds without sidecar \"side\", and stage-local drops it too")
                    .has("  sidecars:\n    (none)\n");
            }
        }
    }
}

#[test]
fn a_sidecar_at_deps_idx_03_runs_from_its_padded_dir() {
    let sb = Sandbox::web_app();
    let side = sb.sidecar_buildpack_writing("side", "16", "exec sleep 600", true);
    let (o, _) = stage_with_side_at(&sb, 10, 3, &side, &["--stop-after-answers"]);
    o.success();
    let pid = o.started_pid("APP/PROC/WEB/SIDECAR/SIDE/0");
    let droplet = fs::canonicalize(sb.area("demo").join("droplet")).expect("droplet");
    o.has(&format!(
        "[APP/PROC/WEB/SIDECAR/SIDE/0] pid {pid} runs /usr/bin/sleep (sleep 600)"
    ))
    .has("with MEMORY_LIMIT=16m: \"$DEPS_DIR/03/bin/side\"\n");
    assert!(droplet.join("deps/03/bin/side").is_file());
    assert!(gone(pid));
}

#[test]
fn each_supply_buildpack_keeps_its_cache_dir_between_runs() {
    let sb = Sandbox::new();
    sb.file("Procfile", "web: sleep 1\n");
    let body = r#"if [ -f "$cache/marker" ]; then echo "cache hit in $cache"; else echo "cache miss in $cache"; touch "$cache/marker"; fi"#;
    let bp = sb.buildpack("cached", body);
    let first = sb.stage().buildpack(&bp).arg("--stage-only").run();
    first.success().has("cache miss in ");
    let second = sb.stage().buildpack(&bp).arg("--stage-only").run();
    second.success().has("cache hit in ");
    let dir_of = |o: &Outcome| {
        let l = o
            .out
            .lines()
            .find(|l| l.starts_with("cache "))
            .expect("cache line");
        l.split(" in ").nth(1).expect("dir").to_string()
    };
    assert_eq!(dir_of(&first), dir_of(&second));
    // CF drops the caches of buildpacks the app no longer uses.
    let other = sb.buildpack("other", "true");
    sb.stage()
        .buildpack(&other)
        .arg("--stage-only")
        .run()
        .success();
    assert!(!Path::new(&dir_of(&first)).exists());
}

fn zip_buildpack(path: &Path, entries: &[(&str, &str, Option<u32>)]) {
    let mut w = zip::ZipWriter::new(fs::File::create(path).expect("create zip"));
    for (name, text, mode) in entries {
        let opts = match mode {
            Some(m) => zip::write::SimpleFileOptions::default().unix_permissions(*m),
            None => zip::write::SimpleFileOptions::default().system(zip::System::Dos),
        };
        w.start_file(*name, opts).expect("entry");
        w.write_all(text.as_bytes()).expect("write");
    }
    w.finish().expect("finish");
}

#[test]
fn zip_buildpacks_keep_their_unix_modes() {
    let sb = Sandbox::new();
    sb.file("Procfile", "web: sleep 1\n");
    let zip = sb.root.path().join("modes.zip");
    zip_buildpack(
        &zip,
        &[
            (
                "bin/supply",
                "#!/usr/bin/env bash\nbp=$(dirname \"$0\")/..\nstat -c %a \"$bp/data\" \"$bp/bin/tool\" > \"$3/$4/modes\"\n",
                Some(0o755),
            ),
            ("data", "x", Some(0o640)),
            ("bin/tool", "#!/bin/sh\n", Some(0o750)),
        ],
    );
    sb.stage()
        .buildpack(&zip)
        .arg("--stage-only")
        .run()
        .success();
    let modes = lines(&sb.area("app").join("droplet/deps/0/modes"));
    assert_eq!(modes, vec!["640", "750"]);
}

#[test]
fn a_supply_that_leaves_processes_behind_gets_them_stopped() {
    let sb = Sandbox::new();
    sb.file("Procfile", "web: sleep 1\n");
    let bp = sb.buildpack("leaky", r#"sleep 600 & echo $! > "$deps/$idx/bg.pid""#);
    let o = sb.stage().buildpack(&bp).arg("--stage-only").run();
    o.success().has("exited but left processes running");
    let bg = pid_in(&sb.area("app").join("droplet/deps/0/bg.pid"));
    assert!(gone(bg), "pid {bg} still runs");
}

/// Every path under `dir`, as `./`-rooted names (directories end in `/`), sorted.
fn walk(dir: &Path) -> Vec<String> {
    fn go(dir: &Path, name: &str, out: &mut Vec<String>) {
        out.push(format!("{name}/"));
        for e in fs::read_dir(dir).expect("read_dir").flatten() {
            let child = format!("{name}/{}", e.file_name().to_string_lossy());
            if e.file_type().expect("type").is_dir() {
                go(&e.path(), &child, out);
            } else {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, ".", &mut out);
    out.sort();
    out
}

#[test]
fn droplet_tgz_is_laid_out_as_cfs_builder_writes_it() {
    let sb = Sandbox::web_app();
    let side = sb.sidecar_buildpack("side", "16", "exec sleep 600");
    let tgz = sb.root.path().join("droplet.tgz");
    sb.stage()
        .buildpack(&side)
        .arg("--stage-only")
        .arg("--droplet")
        .arg(&tgz)
        .run()
        .success()
        .has(&format!(" (and {}), result ", tgz.display()));
    let droplet = sb.area("demo").join("droplet");
    // Build output, created as `tar` creates it (0644 with the usual umask), not 0600.
    assert_eq!(
        fs::metadata(&tgz).expect("stat").permissions().mode() & 0o777,
        0o666 & !umask()
    );

    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        fs::File::open(&tgz).expect("open the tgz"),
    ));
    let mut entries = BTreeMap::new();
    for entry in archive.entries().expect("a tar") {
        let mut e = entry.expect("an entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).to_string();
        let mode = e.header().mode().expect("mode") & 0o7777;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).expect("read");
        entries.insert(name, (mode, body));
    }
    let names: Vec<String> = entries.keys().cloned().collect();
    assert_eq!(
        names,
        walk(&droplet),
        "the tgz holds the droplet, ./-rooted"
    );
    for want in [
        "./",
        "./app/server.py",
        "./deps/0/bin/side",
        "./deps/0/launch.yml",
        "./deps/1/config.yml",
        "./profile.d/000_multi-supply.sh",
        "./tmp/",
        "./logs/",
        "./staging_info.yml",
    ] {
        assert!(entries.contains_key(want), "{want} in {names:?}");
    }
    assert_eq!(entries["./"].0, 0o700, "the droplet's root");
    assert_eq!(entries["./deps/0/bin/side"].0, 0o755);
    assert_eq!(
        entries["./staging_info.yml"].1,
        fs::read(droplet.join("staging_info.yml")).expect("staging_info")
    );
    // GNU tar, which CF's builder uses, reads it the same way.
    let listed = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&tgz)
        .output()
        .expect("run tar");
    assert!(listed.status.success());
    let mut by_tar: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    by_tar.sort();
    assert_eq!(by_tar, names);
}

/// `cf push -s cflinuxfs5`: Cloud Controller stages on that stack, and every supply
/// buildpack sees it as CF_STACK (#14).
#[test]
fn stack_is_passed_to_every_supply_buildpack_as_cf_stack() {
    let sb = Sandbox::new();
    sb.file("manifest.yml", "applications:\n- name: demo\n")
        .file("Procfile", "web: sleep 1\n");
    let probe = |name: &str| {
        sb.buildpack(
            name,
            r#"printf '%s\n' "$CF_STACK" > "$deps/$idx/stack"; echo "-----> on $CF_STACK""#,
        )
    };
    let (first, second) = (probe("first"), probe("second"));
    for (flags, want) in [
        (vec!["--stack", "cflinuxfs5"], "cflinuxfs5"),
        (vec!["--stack=cflinuxfs3"], "cflinuxfs3"),
        (vec![], "cflinuxfs4"),
    ] {
        let mut run = sb
            .stage()
            .buildpack(&first)
            .buildpack(&second)
            .arg("--stage-only");
        for f in &flags {
            run = run.arg(f);
        }
        run.run().success().has(&format!("-----> on {want}\n"));
        let droplet = sb.area("demo").join("droplet");
        for idx in ["0", "1"] {
            assert_eq!(
                lines(&droplet.join(format!("deps/{idx}/stack"))),
                [want],
                "{flags:?}"
            );
        }
    }
}
