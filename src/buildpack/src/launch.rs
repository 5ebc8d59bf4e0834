//! `launch.yml`, which declares the sidecar to CF, and `config.yml`, which names the
//! buildpack in the staging metadata. CF parses launch.yml with Go's yaml.v2 and
//! strict types, so it is written with a serializer and read back typed.

use crate::errors::Error;
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchYml {
    pub processes: Vec<Process>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    #[serde(rename = "type")]
    pub kind: String,
    pub command: String,
    pub limits: Limits,
    pub platforms: Platforms,
}

/// `memory` is an integer number of MB: `"32"`, `32M` and `32MB` all fail staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platforms {
    pub cloudfoundry: CloudFoundry,
}

/// Only entries with a non-empty list here become sidecars; a scalar fails staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudFoundry {
    pub sidecar_for: Vec<String>,
}

/// The run-time command for an executable in `bin/` of this buildpack's deps dir.
/// `$DEPS_DIR` is left for bash to expand at run time (the launcher sets it to
/// /home/vcap/deps); the staging path must never be baked in.
pub fn command(deps_idx: &str, executable: &str, args: &[String]) -> String {
    let mut cmd = format!("\"$DEPS_DIR/{deps_idx}/bin/{executable}\"");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    cmd
}

/// `DEPS_IDX` without its leading zeros (`"3"` for `"03"`, `"0"` for `"00"`), where
/// CF's builder looks for launch.yml (`strconv.Itoa` of the index); `None` when that is
/// `DEPS_IDX` itself. Only launch.yml goes there; everything else uses `DEPS_IDX` as given.
pub fn unpadded_idx(deps_idx: &str) -> Option<String> {
    let trimmed = deps_idx.trim_start_matches('0');
    let unpadded = if trimmed.is_empty() { "0" } else { trimmed };
    (unpadded != deps_idx).then(|| unpadded.to_string())
}

/// Single-quotes `s` for bash unless it is plainly safe.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl LaunchYml {
    pub fn render(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Parses with CF's strictness: integer memory, list `sidecar_for`.
    pub fn parse(text: &str) -> Result<LaunchYml, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    /// Writes `path` atomically, reads it back and checks it says what was meant.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        write_atomic(path, &self.render())?;
        let back = std::fs::read_to_string(path).map_err(Error::write(path))?;
        let parsed = LaunchYml::parse(&back).map_err(|problem| Error::LaunchYml {
            path: path.to_path_buf(),
            problem,
        })?;
        let sidecars_ok = parsed
            .processes
            .iter()
            .all(|p| !p.platforms.cloudfoundry.sidecar_for.is_empty() && p.limits.memory > 0);
        if parsed != *self || !sidecars_ok {
            return Err(Error::LaunchYml {
                path: path.to_path_buf(),
                problem: "it does not read back as written".into(),
            });
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct ConfigYml<'a> {
    name: &'a str,
    version: &'a str,
    config: std::collections::BTreeMap<String, String>,
    output_metadata: OutputMetadata<'a>,
}

/// `output_metadata:` of config.yml, which CF's builder copies into the staging result
/// (`lifecycle_metadata.buildpacks[i].output_metadata`, buildpackapplifecycle PR 78).
/// What was installed, never a URL or a setting's value: a URL may carry a token.
/// Bounded: every field is a name, version or digest the manifest check bounds.
#[derive(Debug, Serialize)]
pub struct OutputMetadata<'a> {
    pub sidecars: &'a [Installed],
}

/// One sidecar as installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Installed {
    /// The sidecar (launch.yml `type`).
    pub name: String,
    pub dependency: String,
    pub version: String,
    pub sha256: String,
    /// `buildpack` (a cached buildpack's file), `app_cache` or `network`.
    pub source: &'static str,
    /// The CycloneDX SBOM, relative to the droplet's root (`deps/0/sbom/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

/// `<deps>/<idx>/config.yml`: the buildpack's name and version for the platform, and
/// what it installed.
pub fn write_config_yml(
    path: &Path,
    name: &str,
    version: &str,
    installed: &[Installed],
) -> Result<(), Error> {
    let text = serde_yaml::to_string(&ConfigYml {
        name,
        version,
        config: Default::default(),
        output_metadata: OutputMetadata {
            sidecars: installed,
        },
    })
    .unwrap_or_default();
    write_atomic(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LaunchYml {
        LaunchYml {
            processes: vec![Process {
                kind: "config-server".into(),
                command: command("0", "config-server", &[]),
                limits: Limits { memory: 32 },
                platforms: Platforms {
                    cloudfoundry: CloudFoundry {
                        sidecar_for: vec!["web".into()],
                    },
                },
            }],
        }
    }

    #[test]
    fn renders_the_golden_file() {
        let golden = include_str!("../../../tests/golden/launch.yml");
        assert_eq!(sample().render(), golden);
    }

    #[test]
    fn command_leaves_deps_dir_to_bash() {
        assert_eq!(
            command(
                "07",
                "config-server",
                &["--x".into(), "a b".into(), "it's".into()]
            ),
            r#""$DEPS_DIR/07/bin/config-server" --x 'a b' 'it'\''s'"#
        );
    }

    #[test]
    fn unpadded_index_is_where_cf_reads_launch_yml() {
        assert_eq!(unpadded_idx("0"), None);
        assert_eq!(unpadded_idx("7"), None);
        assert_eq!(unpadded_idx("10"), None);
        assert_eq!(unpadded_idx("00"), Some("0".into()));
        assert_eq!(unpadded_idx("03"), Some("3".into()));
        assert_eq!(unpadded_idx("007"), Some("7".into()));
    }

    #[test]
    fn parse_is_as_strict_as_cf() {
        let good = sample().render();
        assert_eq!(LaunchYml::parse(&good), Ok(sample()));
        for bad in [
            good.replace("memory: 32", "memory: '32'"),
            good.replace("memory: 32", "memory: 32M"),
            good.replace("sidecar_for:\n      - web", "sidecar_for: web"),
        ] {
            assert_ne!(bad, good, "replacement must change the text");
            assert!(LaunchYml::parse(&bad).is_err(), "{bad}");
        }
    }
}
