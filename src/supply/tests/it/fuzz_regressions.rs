//! Replays the fuzz seeds and every past finding through the fuzz targets' own checks
//! (fuzz/checks.rs), so the invariants hold in CI even though fuzzing itself does not
//! run there (scripts/fuzz).

#[path = "../../../../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::Path;

/// Runs `check` on every file in fuzz/seeds/<target> and fuzz/regressions/<target>.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(crate::support::REPO).join("fuzz");
    let mut count = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let data = fs::read(e.path()).expect("read input");
            let caught = std::panic::catch_unwind(|| check(&data));
            assert!(caught.is_ok(), "{} breaks an invariant", e.path().display());
            count += 1;
        }
    }
    assert!(count > 0, "no seeds for {target}");
}

#[test]
fn manifest_inputs() {
    replay("manifest", checks::manifest);
}

#[test]
fn launch_yml_inputs() {
    replay("launch_yml", checks::launch_yml);
}

#[test]
fn unpack_inputs() {
    replay("unpack", checks::unpack);
}
