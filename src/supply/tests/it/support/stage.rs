//! One run of the real `supply` binary, and assertions on its outcome.

use super::buildpack::{Buildpack, Dirs};
use super::files::snapshot;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const SUPPLY: &str = env!("CARGO_BIN_EXE_supply");
/// The repository's root: manifest.yml, bin/, fuzz/ and the golden files live there.
pub(crate) const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The packager's binary. Cargo builds (and names in `CARGO_BIN_EXE_*`) only this
/// crate's own binaries for its tests, so the packager is built here, once per test
/// run, by the same dev build every script uses (`cargo build --workspace --bins`,
/// scripts/lib.sh): a stale `target/debug/package` is never what a test runs.
pub(crate) fn package_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = Path::new(SUPPLY).with_file_name("package");
            let profile_dir = bin.parent().expect("supply's directory");
            let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cmd.args([
                "build",
                "--quiet",
                "--locked",
                "--workspace",
                "--bins",
                "--manifest-path",
            ])
            .arg(Path::new(REPO).join("Cargo.toml"));
            match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => {}
                Some("release") => {
                    cmd.arg("--release");
                }
                Some(other) => {
                    cmd.args(["--profile", other]);
                }
                None => panic!("cannot tell the profile of {SUPPLY}"),
            }
            // target/debug/supply, or target/<triple>/debug/supply with --target.
            let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
            if let Some(dir) = target_dir {
                cmd.arg("--target-dir").arg(dir);
            }
            let status = cmd.status().expect("run cargo build for the packager");
            assert!(
                status.success(),
                "cargo build --workspace --bins failed: {status}"
            );
            assert!(bin.is_file(), "{} was not built", bin.display());
            bin
        })
        .clone()
}
/// A secret that tests put in URLs; it must never appear in any output.
pub(crate) const SECRET: &str = "s3cr3t-T0KEN";

/// One run of the real `supply` binary.
pub(crate) struct Stage<'a> {
    bp: &'a Buildpack,
    dirs: &'a Dirs,
    idx: String,
    env: HashMap<String, String>,
    wrapper: Vec<String>,
    relative: bool,
}

pub(crate) struct Outcome {
    pub code: i32,
    pub out: String,
    pub deps_idx: PathBuf,
    pub elapsed: Duration,
    /// DEPS_DIR before the run (see [`Outcome::deps_as_found`]).
    deps_before: Option<Snapshot>,
}

/// A directory's tree, or that it did not exist.
type Snapshot = (bool, BTreeMap<PathBuf, String>);

fn snapshot_of(dir: &std::path::Path) -> Snapshot {
    (fs::symlink_metadata(dir).is_ok(), snapshot(dir))
}

impl<'a> Stage<'a> {
    #[must_use]
    pub(crate) fn new(bp: &'a Buildpack, dirs: &'a Dirs) -> Self {
        let mut env = HashMap::new();
        env.insert("CF_STACK".into(), "cflinuxfs4".into());
        // Keep retries quick in tests; the defaults are documented in the README.
        env.insert("SIDECAR_BUILDPACK_RETRY_DELAY_MS".into(), "50".into());
        Stage {
            bp,
            dirs,
            idx: "0".into(),
            env,
            wrapper: Vec::new(),
            relative: false,
        }
    }

    /// Passes the four dirs as paths relative to the working directory (the dirs'
    /// root), as a local run may.
    #[must_use]
    pub(crate) fn relative(mut self) -> Self {
        self.relative = true;
        self
    }

    /// Runs supply under another command, e.g. `unshare -n --` (no network at all).
    #[must_use]
    pub(crate) fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        self
    }

    #[must_use]
    pub(crate) fn idx(mut self, idx: &str) -> Self {
        self.idx = idx.into();
        self
    }

    #[must_use]
    pub(crate) fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    #[must_use]
    pub(crate) fn no_env(mut self, k: &str) -> Self {
        self.env.remove(k);
        self
    }

    #[must_use = "check the outcome"]
    pub(crate) fn run(self) -> Outcome {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(SUPPLY);
                c
            }
            None => Command::new(SUPPLY),
        };
        let root = self.dirs.root.path();
        let dirs = [self.dirs.build(), self.dirs.cache(), self.dirs.deps()].map(|d| {
            if self.relative {
                d.strip_prefix(root).expect("under the root").to_path_buf()
            } else {
                d
            }
        });
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SIDECAR_BUILDPACK_DIR", self.bp.path())
            .envs(&self.env)
            .args(dirs)
            .arg(&self.idx)
            .current_dir(if self.relative { root } else { Path::new("/") });
        Outcome::of_staging(&mut cmd, self.dirs.deps().join(&self.idx))
    }
}

impl Outcome {
    /// Runs `cmd` to the end and checks that its output leaks no secret.
    /// Runs `cmd`, recording DEPS_DIR (the parent of `deps_idx`) before it.
    #[track_caller]
    pub(crate) fn of_staging(cmd: &mut Command, deps_idx: PathBuf) -> Outcome {
        let before = snapshot_of(deps_idx.parent().expect("DEPS_DIR"));
        let mut out = Outcome::of(cmd, deps_idx);
        out.deps_before = Some(before);
        out
    }

    #[track_caller]
    pub(crate) fn of(cmd: &mut Command, deps_idx: PathBuf) -> Outcome {
        let started = Instant::now();
        let out = cmd.output().expect("run the command");
        let elapsed = started.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_secret(&text);
        Outcome {
            code: out.status.code().unwrap_or(-1),
            out: text,
            deps_idx,
            elapsed,
            deps_before: None,
        }
    }

    /// Fails unless DEPS_DIR is exactly as it was before the run: every path, file
    /// contents and mode, symlink target, and whether DEPS_DIR existed at all.
    #[track_caller]
    pub(crate) fn deps_as_found(&self) -> &Self {
        let before = self
            .deps_before
            .as_ref()
            .expect("deps_as_found needs a run made by Stage::run");
        let deps = self.deps_idx.parent().expect("DEPS_DIR");
        assert_eq!(
            &snapshot_of(deps),
            before,
            "DEPS_DIR changed; output:\n{}",
            self.out
        );
        self
    }

    #[track_caller]
    pub(crate) fn code(&self, want: i32) -> &Self {
        assert_eq!(self.code, want, "exit code; output:\n{}", self.out);
        self
    }

    #[track_caller]
    pub(crate) fn success(&self) -> &Self {
        self.code(0)
    }

    #[track_caller]
    pub(crate) fn has(&self, text: &str) -> &Self {
        assert!(
            self.out.contains(text),
            "output lacks {text:?}; output:\n{}",
            self.out
        );
        self
    }

    #[track_caller]
    pub(crate) fn lacks(&self, text: &str) -> &Self {
        assert!(
            !self.out.contains(text),
            "output has {text:?}; output:\n{}",
            self.out
        );
        self
    }

    #[track_caller]
    pub(crate) fn launch_yml(&self) -> String {
        fs::read_to_string(self.deps_idx.join("launch.yml")).expect("launch.yml")
    }

    /// The installed executable's contents, after checking it is mode 0755.
    #[track_caller]
    pub(crate) fn installed(&self) -> Vec<u8> {
        let p = self.deps_idx.join("bin/config-server");
        let mode = fs::metadata(&p).expect("installed").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "mode of {}", p.display());
        fs::read(p).expect("read")
    }

    /// No executable and no launch.yml, at the index or at its unpadded copy; and,
    /// for a run that recorded it, DEPS_DIR exactly as the run found it.
    #[track_caller]
    pub(crate) fn not_installed(&self) -> &Self {
        if self.deps_before.is_some() {
            self.deps_as_found();
        }
        assert!(
            fs::symlink_metadata(self.deps_idx.join("bin/config-server")).is_err(),
            "bin/config-server must not exist; output:\n{}",
            self.out
        );
        let idx = self.deps_idx.file_name().expect("idx").to_string_lossy();
        let unpadded = idx.trim_start_matches('0');
        let unpadded = if unpadded.is_empty() { "0" } else { unpadded };
        let deps = self.deps_idx.parent().expect("DEPS_DIR");
        for dir in [idx.as_ref(), unpadded] {
            assert!(
                fs::symlink_metadata(deps.join(dir).join("launch.yml")).is_err(),
                "no launch.yml in {dir}; output:\n{}",
                self.out
            );
        }
        self
    }
}

/// Fails if `text` holds a secret the tests planted.
#[track_caller]
pub(crate) fn assert_no_secret(text: &str) {
    for needle in [SECRET, "hunter2"] {
        assert!(!text.contains(needle), "secret {needle:?} leaked:\n{text}");
    }
}
