//! Small filesystems mounted for one test (full or read-only deps dirs). Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem mounted for one test, unmounted when dropped. Needs root (tests and
/// CI run as root); a failure to mount fails the test with the reason.
pub(crate) struct Mount {
    path: PathBuf,
}

impl Mount {
    /// A tmpfs at `path` (created) with `options`, e.g. `size=1m` or `ro,size=64k`.
    #[must_use = "the filesystem is unmounted when dropped"]
    pub(crate) fn tmpfs(path: &Path, options: &str) -> Mount {
        fs::create_dir_all(path).expect("mount point");
        mount(&["-t", "tmpfs", "-o", options, "tmpfs", utf8(path)]);
        Mount {
            path: path.to_path_buf(),
        }
    }

    /// Makes the existing directory `path` read-only in place (a read-only bind
    /// mount: root ignores file modes, but not a read-only mount).
    #[must_use = "the filesystem is unmounted when dropped"]
    pub(crate) fn read_only(path: &Path) -> Mount {
        mount(&["--bind", utf8(path), utf8(path)]);
        let m = Mount {
            path: path.to_path_buf(),
        };
        mount(&["-o", "remount,bind,ro", utf8(path)]);
        m
    }
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
    assert!(
        out.status.success(),
        "mount {} failed: {}. These tests need root with CAP_SYS_ADMIN, as in CI; they must \
         not pass without it.",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
