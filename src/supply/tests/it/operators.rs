//! What operators ask of a buildpack in front of every app (#14): the next stack, the
//! end-of-life warnings they plan upgrades by, and the SBOM of what is injected. All
//! through the real `supply` binary; the clock is moved with libfaketime, so the binary
//! reads the real clock exactly as it does on CF (no test-only setting in it).

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

// --- stacks -----------------------------------------------------------------------

#[test]
fn cflinuxfs5_stages_where_a_build_lists_it() {
    let mut bp = Buildpack::new().cached();
    bp.stacks = vec![
        "cflinuxfs3".into(),
        "cflinuxfs4".into(),
        "cflinuxfs5".into(),
    ];
    let bp = bp.write();
    let dirs = Dirs::new();
    let o = Stage::new(&bp, &dirs).env("CF_STACK", "cflinuxfs5").run();
    o.success().has("-----> Installing config-server 0.1.0");
    assert_eq!(o.installed(), sidecar_bytes("v1"));
}

#[test]
fn an_unsupported_stack_lists_the_buildpacks_stacks_and_asks_for_a_release_that_has_it() {
    let bp = Buildpack::new().cached().write();
    for stack in ["cflinuxfs5", "windows2019"] {
        Stage::new(&bp, &Dirs::new())
            .env("CF_STACK", stack)
            .run()
            .code(3)
            .has(&format!(
                "**ERROR** config-server 0.1.0 does not support the stack {stack:?}\n       \
                 Cause: this release of sidecar_buildpack has no build for the app's stack\n       \
                 To fix: use a release of sidecar_buildpack that supports the stack {stack:?} \
                 (the platform team installs it with cf update-buildpack), or push the app on a \
                 stack this release supports (cf push -s cflinuxfs4)\n         \
                 stacks this release supports: cflinuxfs3, cflinuxfs4\n"
            ))
            .not_installed();
    }
}

/// `package zip --stack cflinuxfs4` of a manifest whose one build lists every stack (as
/// the repo's own does) writes `stack: cflinuxfs4`: that zip is for cflinuxfs4 only, as
/// libbuildpack's CheckStackSupport holds, and says so.
#[test]
fn a_zip_packaged_for_one_stack_refuses_the_others_and_lists_only_its_own() {
    let mut bp = Buildpack::new().cached().top_level("stack: cflinuxfs4\n");
    bp.stacks = vec![
        "cflinuxfs3".into(),
        "cflinuxfs4".into(),
        "cflinuxfs5".into(),
    ];
    let bp = bp.write();
    Stage::new(&bp, &Dirs::new())
        .env("CF_STACK", "cflinuxfs4")
        .run()
        .success();
    for stack in ["cflinuxfs5", "cflinuxfs3"] {
        Stage::new(&bp, &Dirs::new())
            .env("CF_STACK", stack)
            .run()
            .code(3)
            .has(&format!(
                "does not support the stack {stack:?}\n       \
                 Cause: this release of sidecar_buildpack has no build for the app's stack"
            ))
            .has("(cf push -s cflinuxfs4)\n         stacks this release supports: cflinuxfs4\n")
            .not_installed();
    }
}

#[test]
fn the_repos_own_manifest_has_a_cflinuxfs5_build_of_every_sidecar() {
    let m = buildpack::manifest::Manifest::load(
        &std::path::Path::new(crate::support::REPO).join("manifest.yml"),
    )
    .expect("repo manifest");
    assert_eq!(m.stacks(), ["cflinuxfs3", "cflinuxfs4", "cflinuxfs5"]);
}

// --- end-of-life warnings ----------------------------------------------------------

const LINK: &str = "https://example.com/config-server/end-of-life";

/// A buildpack whose manifest says config-server 0.1.x reaches its end of life on
/// 2027-04-01.
fn deprecated(entries: &str) -> Buildpack {
    Buildpack::new()
        .cached()
        .top_level(&format!("dependency_deprecation_dates:\n{entries}"))
        .write()
}

fn entry(line: &str, date: &str) -> String {
    format!("- name: config-server\n  version_line: {line}\n  date: {date}\n  link: {LINK}\n")
}

/// `supply` with the clock at `when` (UTC), through libfaketime.
fn staged_at(bp: &Buildpack, dirs: &Dirs, when: &str) -> Outcome {
    Stage::new(bp, dirs)
        .env("TZ", "UTC")
        .wrapped(&["faketime", "-f", &format!("@{when}")])
        .run()
}

#[test]
#[ignore = "needs faketime (libfaketime)"]
fn end_of_life_far_away_says_nothing() {
    let bp = deprecated(&entry("0.1.x", "2027-04-01"));
    for when in ["2027-03-01 23:59:59", "2026-06-01 12:00:00"] {
        staged_at(&bp, &Dirs::new(), when)
            .success()
            .lacks("WARNING")
            .lacks("end of life");
    }
}

#[test]
#[ignore = "needs faketime (libfaketime)"]
fn end_of_life_near_warns_once_and_stages() {
    let bp = deprecated(&entry("0.1.x", "2027-04-01"));
    let dirs = Dirs::new();
    let o = staged_at(&bp, &dirs, "2027-03-15 12:00:00");
    o.success();
    // Under its install step, after the artifact is verified, before it is installed.
    let lines: Vec<&str> = o.out.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}:\n{}", o.out))
    };
    let warning = at("       **WARNING** ");
    assert_eq!(
        lines[warning],
        format!(
            "       **WARNING** config-server 0.1.x is deprecated: its end of life is \
             2027-04-01, in 17 days, and buildpacks released after that date will not include \
             it; see {LINK}"
        )
    );
    assert!(at("-----> Installing config-server 0.1.0") < at("       Verified sha256"));
    assert!(at("       Verified sha256") < warning);
    assert!(warning < at("       Installed "));
    assert_eq!(o.out.matches("WARNING").count(), 1, "{}", o.out);
    assert_eq!(o.installed(), sidecar_bytes("v1"));
    assert!(o.launch_yml().contains("type: config-server"));
}

#[test]
#[ignore = "needs faketime (libfaketime)"]
fn end_of_life_past_warns_and_stages() {
    let bp = deprecated(&entry("'>= 0.1.0, < 0.2.0'", "2027-04-01"));
    staged_at(&bp, &Dirs::new(), "2027-05-01 00:00:00")
        .success()
        .has(&format!(
        "       **WARNING** config-server >= 0.1.0, < 0.2.0 is deprecated: its end of life was \
         2027-04-01, 30 days ago, and buildpacks released after that date do not include it; \
         see {LINK}\n"
    ));
}

#[test]
#[ignore = "needs faketime (libfaketime)"]
fn only_entries_for_the_installed_version_warn() {
    let bp = deprecated(&format!(
        "{}{}{}",
        entry("0.2.x", "2020-01-01"),
        entry("0.0.x || 1.x", "2020-01-01"),
        "- name: other-agent\n  version_line: 0.1.x\n  date: 2020-01-01\n"
    ));
    staged_at(&bp, &Dirs::new(), "2027-03-15 12:00:00")
        .success()
        .lacks("WARNING");
}

#[test]
#[ignore = "needs faketime (libfaketime)"]
fn a_malformed_entry_fails_at_load_naming_the_key() {
    let bp = deprecated(&entry("0.1.x", "01/04/2027"));
    staged_at(&bp, &Dirs::new(), "2027-03-15 12:00:00")
        .code(3)
        .has("`dependency_deprecation_dates[0].date` must be a date written as YYYY-MM-DD, such as 2027-04-01 at line ")
        .not_installed();
}

// --- SBOM ---------------------------------------------------------------------------

const SBOM: &[u8] = br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1}"#;

/// A cached buildpack whose config-server archive holds `entries`.
fn with_archive(entries: &[(&str, &[u8], u32)]) -> Buildpack {
    Buildpack::new().cached().artifact(tgz(entries)).write()
}

#[test]
fn the_sbom_in_the_archive_is_installed_beside_the_sidecar() {
    let bp = with_archive(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        ("sbom/config-server.cdx.json", SBOM, 0o755),
        ("sbom/other.cdx.json", b"{}", 0o644),
        ("README", b"not installed", 0o644),
        ("bin/helper", b"not installed", 0o755),
    ]);
    let dirs = Dirs::new();
    let o = Stage::new(&bp, &dirs).run();
    let deps = dirs.deps().join("0");
    o.success().has(&format!(
        "       Installed {}\n       Installed {}, the CycloneDX SBOM of config-server from its archive\n",
        deps.join("bin/config-server").display(),
        deps.join("sbom/config-server.cdx.json").display()
    ));
    let sbom = deps.join("sbom/config-server.cdx.json");
    assert_eq!(fs::read(&sbom).expect("sbom"), SBOM);
    assert_eq!(
        fs::metadata(&sbom).expect("stat").permissions().mode() & 0o777,
        0o644
    );
    // The executable and its SBOM, nothing else of the archive.
    let mut tree: Vec<String> = snapshot(&deps)
        .into_keys()
        .map(|p| p.display().to_string())
        .collect();
    tree.sort();
    assert_eq!(
        tree,
        [
            "bin",
            "bin/config-server",
            "config.yml",
            "launch.yml",
            "sbom",
            "sbom/config-server.cdx.json"
        ]
    );
}

#[test]
fn an_archive_without_an_sbom_installs_without_a_warning_and_drops_a_stale_one() {
    let dirs = Dirs::new();
    let with = with_archive(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        ("sbom/config-server.cdx.json", SBOM, 0o644),
    ]);
    Stage::new(&with, &dirs).run().success();
    let sbom = dirs.deps().join("0/sbom/config-server.cdx.json");
    assert!(sbom.is_file());
    // The next build of the sidecar comes without one: the old SBOM would describe
    // another binary, so it goes.
    let without = with_archive(&[("bin/config-server", &sidecar_bytes("v2"), 0o755)]);
    Stage::new(&without, &dirs)
        .run()
        .success()
        .lacks("WARNING")
        .lacks("SBOM");
    assert!(!sbom.exists());
    // A bare executable has none either.
    let bare = Buildpack::new()
        .cached()
        .artifact(sidecar_bytes("bare"))
        .uri("https://releases.invalid/config-server")
        .write();
    let o = Stage::new(&bare, &Dirs::new()).run();
    o.success().lacks("WARNING").lacks("SBOM");
}

/// A directory where the SBOM belongs is a broken SBOM, not a missing one: the sidecar
/// installs, and the log says why scanners will find no SBOM.
#[test]
fn a_directory_at_the_sbom_path_installs_the_sidecar_and_says_so() {
    let bp = with_archive(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        ("sbom/config-server.cdx.json/bom.json", SBOM, 0o644),
    ]);
    let dirs = Dirs::new();
    let o = Stage::new(&bp, &dirs).run();
    o.success()
        .has(
            "       **WARNING** the config-server archive has \"sbom/config-server.cdx.json\" as \
             a directory, not a file: no SBOM is installed for config-server; ask its \
             publisher for a build with the SBOM as a file\n",
        )
        .lacks("CycloneDX SBOM of");
    assert_eq!(o.installed(), sidecar_bytes("v1"));
    assert!(!dirs.deps().join("0/sbom").exists());
}

#[test]
fn a_failed_staging_leaves_no_sbom_and_restores_the_old_one() {
    let dirs = Dirs::new();
    let old = with_archive(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        ("sbom/config-server.cdx.json", b"old", 0o644),
    ]);
    Stage::new(&old, &dirs).run().success();
    // A second sidecar whose archive lacks its executable fails the run after the
    // first one's SBOM was staged.
    let broken = Buildpack::new()
        .cached()
        .artifact(tgz(&[
            ("bin/config-server", &sidecar_bytes("v2"), 0o755),
            ("sbom/config-server.cdx.json", b"new", 0o644),
        ]))
        .sidecar_extra("- name: missing\n  dependency: config-server\n  executable: bin/missing\n  memory_mb: 8\n")
        .write();
    Stage::new(&broken, &dirs)
        .run()
        .code(4)
        .has("bin/missing")
        .deps_as_found();
    assert_eq!(
        fs::read(dirs.deps().join("0/sbom/config-server.cdx.json")).expect("old sbom"),
        b"old"
    );
}

#[test]
fn an_sbom_dir_that_is_a_symlink_is_replaced_not_written_through() {
    let dirs = Dirs::new();
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    fs::create_dir_all(dirs.deps().join("0")).expect("idx");
    std::os::unix::fs::symlink(elsewhere.path(), dirs.deps().join("0/sbom")).expect("link");
    let bp = with_archive(&[
        ("bin/config-server", &sidecar_bytes("v1"), 0o755),
        ("sbom/config-server.cdx.json", SBOM, 0o644),
    ]);
    Stage::new(&bp, &dirs).run().success();
    assert!(fs::symlink_metadata(dirs.deps().join("0/sbom"))
        .expect("sbom")
        .is_dir());
    assert_eq!(
        fs::read_dir(elsewhere.path()).expect("elsewhere").count(),
        0
    );
    // And without an SBOM, a symlinked sbom/ is not followed either.
    let dirs = Dirs::new();
    fs::create_dir_all(dirs.deps().join("0")).expect("idx");
    fs::write(elsewhere.path().join("config-server.cdx.json"), "theirs").expect("theirs");
    std::os::unix::fs::symlink(elsewhere.path(), dirs.deps().join("0/sbom")).expect("link");
    let bare = with_archive(&[("bin/config-server", &sidecar_bytes("v1"), 0o755)]);
    Stage::new(&bare, &dirs).run().success();
    assert_eq!(
        fs::read_to_string(elsewhere.path().join("config-server.cdx.json")).expect("theirs"),
        "theirs"
    );
}

// --- packaging ----------------------------------------------------------------------

/// The packager copies the section as it is: CF's tools and operators read it there.
#[test]
fn the_packager_copies_the_deprecation_dates_unchanged() {
    use crate::packaging::Source;
    let section = "\n# When each line of config-server goes out of support.\n\
                   dependency_deprecation_dates:\n\
                   - name: config-server   # the sidecar\n  version_line: \"0.1.x\"\n  \
                   date: 2027-04-01\n  link: https://example.com/eol\n  match: kept as written\n\
                   - version_line: '>= 0.2.0, < 0.3.0'\n  name: config-server\n  date: \"2028-01-31\"\n";
    let src = Source::new();
    let mut text = fs::read_to_string(src.manifest()).expect("manifest");
    text.push_str(section);
    fs::write(src.manifest(), &text).expect("manifest");
    let source = buildpack::manifest::Manifest::parse(&text, &src.manifest()).expect("loads");
    for flags in [&[][..], &["--cached", "--stack", "cflinuxfs5"][..]] {
        let out = tempfile::tempdir().expect("out");
        let (code, log) = src.package(out.path(), flags);
        assert_eq!(code, 0, "{log}");
        let zip = fs::read_dir(out.path())
            .expect("out")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "zip"))
            .expect("a zip");
        let mut z = zip::ZipArchive::new(fs::File::open(zip).expect("zip")).expect("zip");
        let mut packaged = String::new();
        std::io::Read::read_to_string(
            &mut z.by_name("manifest.yml").expect("manifest"),
            &mut packaged,
        )
        .expect("read");
        // Byte for byte, and nothing in it: the only text after it is the `stack:`
        // that a zip for one stack adds at the end of the manifest.
        let stack = flags
            .iter()
            .position(|f| *f == "--stack")
            .map(|i| format!("stack: {}\n", flags[i + 1]))
            .unwrap_or_default();
        assert!(
            packaged.ends_with(&format!("{section}{stack}")),
            "{flags:?}:\n{packaged}"
        );
        assert_eq!(
            packaged.matches("dependency_deprecation_dates:").count(),
            1,
            "{packaged}"
        );
        let loaded =
            buildpack::manifest::Manifest::parse(&packaged, &src.manifest()).expect("loads");
        assert_eq!(
            loaded.dependency_deprecation_dates,
            source.dependency_deprecation_dates
        );
    }
}
