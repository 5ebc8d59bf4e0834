//! `SIDECAR_BUILDPACK_<SIDECAR>_VERSION`: an app holds its sidecar at a version the
//! buildpack's manifest carries, so that an operator's buildpack upgrade does not
//! change the sidecar under it. The value is an exact version (`0.2.1`) or a range in
//! `version_line`'s syntax (`0.2.x`, `~0.2`, `>= 0.2.0, < 0.3.0`), resolved as
//! libbuildpack's `FindMatchingVersion` does: the highest version the range holds, among
//! the builds for the app's stack. Unset, `default_versions` decides.

use crate::errors::Error;
use crate::manifest::{Dependency, Manifest};
use crate::version_line::{Version, VersionLine};

/// A parsed pin, with the variable it came from for the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPin {
    /// `SIDECAR_BUILDPACK_CONFIG_SERVER_VERSION`.
    pub var: String,
    /// As written, trimmed.
    pub raw: String,
    line: VersionLine,
}

impl VersionPin {
    /// The pin `raw` set in `var`; the error says what is wrong with it as a range.
    pub fn parse(var: &str, raw: &str) -> Result<VersionPin, String> {
        let raw = raw.trim();
        Ok(VersionPin {
            var: var.to_string(),
            raw: raw.to_string(),
            line: VersionLine::parse(raw)?,
        })
    }

    /// True when `version` is pinned: in the range, or written exactly as the pin (a
    /// version that is not semver can only be pinned by its text).
    fn holds(&self, version: &str) -> bool {
        version == self.raw || Version::parse(version).is_some_and(|v| self.line.matches(&v))
    }
}

/// The build of dependency `name` for `stack`: the default version's, or with a pin
/// the highest version the pin holds. With no stack (a local run) any build counts.
pub fn choose<'m>(
    manifest: &'m Manifest,
    name: &str,
    stack: Option<&str>,
    pin: Option<&VersionPin>,
) -> Result<&'m Dependency, Error> {
    let Some(pin) = pin else {
        return manifest.pick(name, stack);
    };
    // A buildpack bound to another stack refuses the app whatever the pin says.
    if let (Some(stack), Some(bound)) = (stack, manifest.stack.as_deref()) {
        if stack != bound {
            return manifest.pick(name, Some(stack));
        }
    }
    let builds: Vec<&Dependency> = manifest
        .dependencies
        .iter()
        .filter(|d| d.name == name)
        .filter(|d| stack.is_none_or(|s| d.cf_stacks.iter().any(|c| c == s)))
        .collect();
    let best = builds
        .iter()
        .filter(|d| pin.holds(&d.version))
        .max_by(|a, b| {
            // Semver order; a version pinned by its text alone sorts below the others.
            Version::parse(&a.version).cmp(&Version::parse(&b.version))
        });
    if let Some(d) = best {
        Ok(d)
    } else {
        let mut available: Vec<&str> = builds.iter().map(|d| d.version.as_str()).collect();
        available.sort_by(|a, b| Version::parse(a).cmp(&Version::parse(b)).then(a.cmp(b)));
        available.dedup();
        Err(Error::NoPinnedVersion {
            var: pin.var.clone(),
            value: crate::redact::quoted_value(&pin.raw),
            dependency: name.to_string(),
            stack: stack.map(crate::redact::quoted_value),
            available: available.into_iter().map(str::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        let dep = |v: &str, stacks: &str| {
            format!(
                "- name: config-server\n  version: {v}\n  uri: https://example.com/cs-{v}.tgz\n  \
                 sha256: {}\n  cf_stacks: [{stacks}]\n",
                "a".repeat(64)
            )
        };
        let text = format!(
            "language: sidecar\ndefault_versions:\n- name: config-server\n  version: 0.2.0\n\
             sidecars:\n- name: config-server\n  dependency: config-server\n  \
             executable: bin/config-server\n  memory_mb: 32\ndependencies:\n{}{}{}{}{}",
            dep("0.1.0", "cflinuxfs4"),
            dep("0.2.0", "cflinuxfs4"),
            dep("0.2.3", "cflinuxfs4"),
            dep("0.2.10", "cflinuxfs3"),
            dep("0.3.0-rc.1", "cflinuxfs4"),
        );
        Manifest::parse(&text, Path::new("manifest.yml")).expect("manifest")
    }

    fn pick(pin: Option<&str>, stack: Option<&str>) -> Result<String, Error> {
        let m = manifest();
        let pin = pin.map(|p| VersionPin::parse("V", p).expect("pin"));
        choose(&m, "config-server", stack, pin.as_ref()).map(|d| d.version.clone())
    }

    #[test]
    fn a_range_takes_the_highest_version_for_the_stack() {
        let fs4 = Some("cflinuxfs4");
        assert_eq!(pick(None, fs4).expect("default"), "0.2.0");
        assert_eq!(pick(Some("0.2.x"), fs4).expect("0.2.x"), "0.2.3");
        assert_eq!(pick(Some("~0.2"), fs4).expect("~0.2"), "0.2.3");
        assert_eq!(pick(Some("0.1.0"), fs4).expect("exact"), "0.1.0");
        assert_eq!(pick(Some(" 0.1.0 "), fs4).expect("trimmed"), "0.1.0");
        assert_eq!(pick(Some("*"), fs4).expect("any"), "0.2.3");
        assert_eq!(pick(Some("0.3.0-rc.1"), fs4).expect("pre"), "0.3.0-rc.1");
        // 0.2.10 is built for cflinuxfs3 only.
        assert_eq!(
            pick(Some("0.2.x"), Some("cflinuxfs3")).expect("fs3"),
            "0.2.10"
        );
        assert_eq!(pick(Some("0.2.x"), None).expect("no stack"), "0.2.10");
    }

    #[test]
    fn no_match_lists_the_versions_for_the_stack() {
        match pick(Some("0.9.x"), Some("cflinuxfs4")) {
            Err(Error::NoPinnedVersion {
                var,
                value,
                available,
                stack,
                ..
            }) => {
                assert_eq!(var, "V");
                assert_eq!(value, "\"0.9.x\"");
                assert_eq!(stack.as_deref(), Some("\"cflinuxfs4\""));
                assert_eq!(available, ["0.1.0", "0.2.0", "0.2.3", "0.3.0-rc.1"]);
            }
            other => panic!("expected NoPinnedVersion, got {other:?}"),
        }
        // On cflinuxfs4 there is no 0.2.10.
        assert!(pick(Some("0.2.10"), Some("cflinuxfs4")).is_err());
    }

    #[test]
    fn a_bad_range_is_refused() {
        for bad in ["", "0.2 x", "0.x.1", ">>1"] {
            assert!(VersionPin::parse("V", bad).is_err(), "{bad:?}");
        }
    }
}
