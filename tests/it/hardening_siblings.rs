//! Siblings of the Hardening II cases (#10), found by attacking the real binaries
//! again: each test names the promise it holds the code to.

use crate::support::*;
use std::fs;

// Nothing half-written, whatever form the dirs are given in.

#[test]
fn relative_dirs_are_rolled_back_like_absolute_ones() {
    let sha = sha256_hex(b"anything");
    let bad = Buildpack::new().sha(&sha).cached().write();
    let dirs = Dirs::new();
    // DEPS_DIR does not exist yet: the failed run creates it, and must remove it.
    Stage::new(&bad, &dirs)
        .relative()
        .run()
        .code(4)
        .lacks("could not undo")
        .not_installed();
    assert_eq!(listing(dirs.root.path()), ["app"]);

    let good = Buildpack::new().cached().write();
    let out = Stage::new(&good, &dirs).relative().run();
    out.success();
    assert_eq!(out.installed(), sidecar_bytes("v1"));
    assert_no_temp_files(&dirs.deps());
}
