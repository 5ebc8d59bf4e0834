//! A buildpack directory with a manifest and the artifact it pins, and the four
//! staging dirs.

use super::archives::{sidecar_bytes, tgz};
use super::files::sha256_hex;
use super::stage::SECRET;
use std::fs;
use std::path::{Path, PathBuf};

/// A buildpack directory: manifest.yml, VERSION, and the artifact it pins.
pub(crate) struct Buildpack {
    pub dir: tempfile::TempDir,
    pub artifact: Vec<u8>,
    pub uri: String,
    pub file: Option<String>,
    pub extra: String,
    pub top_level: String,
    pub stacks: Vec<String>,
    pub sha: Option<String>,
}

impl Buildpack {
    /// A buildpack whose config-server artifact is a tgz with `bin/config-server`.
    #[must_use]
    pub(crate) fn new() -> Self {
        Buildpack {
            dir: tempfile::tempdir().expect("tempdir"),
            artifact: tgz(&[("bin/config-server", &sidecar_bytes("v1"), 0o755)]),
            // Secrets in the user-info and the query: no output may ever show them.
            uri: format!(
                "https://bob:hunter2@releases.invalid/config-server/config-server-0.1.0.tgz\
                 ?X-Amz-Signature={SECRET}"
            ),
            file: None,
            extra: String::new(),
            top_level: String::new(),
            stacks: vec!["cflinuxfs3".into(), "cflinuxfs4".into()],
            sha: None,
        }
    }

    #[must_use]
    pub(crate) fn artifact(mut self, bytes: Vec<u8>) -> Self {
        self.artifact = bytes;
        self
    }

    #[must_use]
    pub(crate) fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Pins a digest other than the artifact's.
    #[must_use]
    pub(crate) fn sha(mut self, sha: &str) -> Self {
        self.sha = Some(sha.into());
        self
    }

    /// Makes it a cached buildpack: the artifact sits at `file:` inside it.
    #[must_use]
    pub(crate) fn cached(mut self) -> Self {
        self.file = Some("dependencies/0123abcd/config-server-0.1.0.tgz".into());
        self
    }

    /// Extra keys appended to the sidecar entry (e.g. `  args: [--x]`).
    #[must_use]
    pub(crate) fn sidecar_extra(mut self, yaml: &str) -> Self {
        self.extra = yaml.into();
        self
    }

    /// Extra top-level keys appended to the manifest (e.g. `include_files:` lines).
    #[must_use]
    pub(crate) fn top_level(mut self, yaml: &str) -> Self {
        self.top_level = yaml.into();
        self
    }

    #[must_use]
    pub(crate) fn write(self) -> Self {
        let sha = self
            .sha
            .clone()
            .unwrap_or_else(|| sha256_hex(&self.artifact));
        let file = self
            .file
            .as_ref()
            .map(|f| format!("  file: {f}\n"))
            .unwrap_or_default();
        let stacks: String = self.stacks.iter().map(|s| format!("  - {s}\n")).collect();
        let manifest = format!(
            "---\nlanguage: sidecar\ndefault_versions:\n- name: config-server\n  version: 0.1.0\n\
             dependencies:\n- name: config-server\n  version: 0.1.0\n  uri: {uri}\n  sha256: {sha}\n\
             {file}  cf_stacks:\n{stacks}sidecars:\n- name: config-server\n  dependency: config-server\n\
             \x20 executable: bin/config-server\n  memory_mb: 32\n{extra}{top}",
            uri = self.uri,
            extra = self.extra,
            top = self.top_level,
        );
        fs::write(self.dir.path().join("manifest.yml"), manifest).expect("manifest");
        fs::write(self.dir.path().join("VERSION"), "1.2.3\n").expect("VERSION");
        if let Some(f) = &self.file {
            let p = self.dir.path().join(f);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, &self.artifact).expect("artifact");
        }
        self
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn manifest(&self) -> PathBuf {
        self.dir.path().join("manifest.yml")
    }
}

/// The four staging dirs, fresh per test unless shared on purpose.
pub(crate) struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    #[must_use]
    pub(crate) fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir(root.path().join("app")).expect("app");
        Dirs { root }
    }
    pub(crate) fn build(&self) -> PathBuf {
        self.root.path().join("app")
    }
    pub(crate) fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }
    pub(crate) fn deps(&self) -> PathBuf {
        self.root.path().join("deps")
    }
}
