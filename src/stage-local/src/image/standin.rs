//! Without `--base`: a stand-in for the stack, built from Debian's packages with
//! mmdebstrap (glibc, bash, CA certificates, and what the app's buildpacks need at run
//! time: Ruby and the app's gems as Debian packages them, for a Gemfile app), with the
//! `vcap` user (2000:2000) that cflinuxfs4 has. It is built once per package list and
//! kept as an OCI layout under the work dir (`bases/standin-<hash>/`); later images
//! reuse it.

use super::base::{self, Base};
use super::{layer, oci, Assembled, Source};
use crate::errors::Error;
use crate::out;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Always there, as on every stack: the launcher runs everything through bash.
const ALWAYS: [&str; 2] = ["bash", "ca-certificates"];
/// Debian's name of a gem's package is `ruby-<gem>`, `_` made `-`.
const RUBY: [&str; 2] = ["ruby", "ruby-bundler"];
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The same Debian release as this machine, so binaries built here (the sidecar's) run.
const DEFAULT_SUITE: &str = "bookworm";

/// What to build: Debian's release and the packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipe {
    pub suite: String,
    pub packages: Vec<String>,
}

impl Recipe {
    /// The stand-in for `app_dir`: Ruby and one package per gem of the Gemfile.lock's
    /// DEPENDENCIES when the app has a Gemfile.
    pub(crate) fn for_app(app_dir: &Path) -> Recipe {
        let mut packages: Vec<String> = ALWAYS
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        if app_dir.join("Gemfile").is_file() {
            packages.extend(RUBY.iter().map(std::string::ToString::to_string));
            let lock = fs::read_to_string(app_dir.join("Gemfile.lock")).unwrap_or_default();
            packages.extend(
                gems(&lock)
                    .into_iter()
                    .map(|g| format!("ruby-{}", g.replace('_', "-"))),
            );
        }
        packages.sort();
        packages.dedup();
        let suite = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_SUITE.to_string());
        Recipe { suite, packages }
    }

    /// The cache key: a hash of everything that shapes the base.
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{}\n{}\n{}\n",
            self.suite,
            self.packages.join(","),
            hooks().join("\n")
        ));
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The gem names under `DEPENDENCIES` of a Gemfile.lock.
fn gems(lock: &str) -> Vec<String> {
    lock.lines()
        .skip_while(|l| l.trim_end() != "DEPENDENCIES")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|g| g.trim_end_matches('!').to_string())
        .collect()
}

/// mmdebstrap's hooks: the vcap user and group, as on cflinuxfs4.
fn hooks() -> [&'static str; 1] {
    [
        r#"echo "vcap:x:2000:2000::/home/vcap:/bin/bash" >> "$1/etc/passwd"; echo "vcap:x:2000:" >> "$1/etc/group""#,
    ]
}

/// The stand-in base for `recipe`, built now unless `bases_dir` has it; the path of its
/// layout and whether it was built now.
pub(crate) fn ensure(recipe: &Recipe, bases_dir: &Path) -> Result<(Base, PathBuf), Error> {
    let dir = bases_dir.join(format!("standin-{}", recipe.key()));
    let failed = |problem: String| Error::StandInBase {
        packages: recipe.packages.clone(),
        problem,
    };
    if dir.join("index.json").is_file() {
        out::say(format!(
            "using the cached stand-in base {} (Debian {}: {})",
            dir.display(),
            recipe.suite,
            recipe.packages.join(" ")
        ));
    } else {
        out::say(format!(
            "building a stand-in base for the stack with mmdebstrap (Debian {}: {}); it is \
             kept in {} for later images",
            recipe.suite,
            recipe.packages.join(" "),
            dir.display()
        ));
        fs::create_dir_all(bases_dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", bases_dir.display())))?;
        build(recipe, bases_dir, &dir).map_err(|e| failed(format!("{e:#}")))?;
    }
    let base = base::open(&dir)?;
    Ok((base, dir))
}

fn build(recipe: &Recipe, bases_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".standin")
        .tempdir_in(bases_dir)?;
    let tar = scratch.path().join("rootfs.tar");
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=essential")
        .arg(format!("--include={}", recipe.packages.join(",")))
        // Docs, man pages and translations are of no use to an app; copyrights stay.
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        ]);
    for hook in hooks() {
        cmd.arg(format!("--customize-hook={hook}"));
    }
    cmd.arg(&recipe.suite).arg(&tar);
    let output = cmd.output().map_err(|e| {
        anyhow::anyhow!("cannot run mmdebstrap ({e}); install it (apt-get install mmdebstrap)")
    })?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(8).collect();
        anyhow::bail!(
            "mmdebstrap failed ({}):\n    {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        );
    }
    let layer = layer::from_tar(&tar, scratch.path())?;
    let config = json!({
        "architecture": oci::this_architecture(),
        "os": "linux",
        "config": {"Env": [PATH]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!(
                "mmdebstrap --variant=essential --include={} {}",
                recipe.packages.join(","),
                recipe.suite
            ),
            "comment": "stage-local's stand-in for the stack",
        }],
    });
    let blob = base::Blob::File(layer.file.path().to_path_buf());
    let image = Assembled::new(
        "localhost/stage-local-standin:latest",
        config,
        vec![(layer.descriptor.clone(), Source::Blob(blob))],
    );
    image.write_layout(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gemfile_app_gets_ruby_and_its_gems_as_debian_packages() {
        let lock = "GEM\n  specs:\n    rack (2.2.22)\n\nDEPENDENCIES\n  json\n  rack (~> 2.2)\n  ruby2_keywords!\n\nBUNDLED WITH\n   2.3.27\n";
        assert_eq!(gems(lock), ["json", "rack", "ruby2_keywords"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = Recipe::for_app(dir.path());
        assert_eq!(plain.packages, ["bash", "ca-certificates"]);
        fs::write(dir.path().join("Gemfile"), "").expect("write");
        fs::write(dir.path().join("Gemfile.lock"), lock).expect("write");
        let ruby = Recipe::for_app(dir.path());
        assert_eq!(
            ruby.packages,
            [
                "bash",
                "ca-certificates",
                "ruby",
                "ruby-bundler",
                "ruby-json",
                "ruby-rack",
                "ruby-ruby2-keywords"
            ]
        );
        assert_ne!(plain.key(), ruby.key(), "the package list is the cache key");
    }
}
