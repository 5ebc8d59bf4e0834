//! The guide cites only what a reader of the repository can open.

use std::path::Path;

/// Every backquoted `.md` or `.rs` path with a `/` in docs/stage-local.md exists in the
/// repository (it once cited a file that lives outside it).
#[test]
fn the_guide_cites_only_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let guide = std::fs::read_to_string(root.join("docs/stage-local.md")).expect("the guide");
    let cited: Vec<&str> = guide
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.contains('/') && !t.contains(char::is_whitespace))
        .filter(|t| t.ends_with(".md") || t.ends_with(".rs"))
        .collect();
    assert!(
        !cited.is_empty(),
        "the guide cites src/stage-local/src/errors.rs"
    );
    let missing: Vec<&&str> = cited.iter().filter(|t| !root.join(t).is_file()).collect();
    assert!(
        missing.is_empty(),
        "cited but not in the repository: {missing:?}"
    );
}
