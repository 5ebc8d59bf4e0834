//! The `version_line` of a `dependency_deprecation_dates` entry: a semver range in the
//! syntax and with the meaning libbuildpack gives it through the Go library
//! Masterminds/semver v1.5.0 (its go.mod pins that version; v3 reads some ranges
//! differently), so that a manifest written for CF's own buildpacks means the same here.
//!
//! - `||` separates alternatives; within one, `,` separates comparators that must all
//!   hold: `>= 0.1.0, < 0.2.0 || 1.x`.
//! - A comparator is `[OP]VERSION` or a hyphen range `A - B` (`>= A, <= B`). OP is one of
//!   `=` (the default), `!=`, `>`, `>=` (`=>`), `<`, `<=` (`=<`), `~` (`~>`), `^`.
//! - VERSION is `[v]MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]`. MINOR and PATCH may be
//!   `x`, `X` or `*`: `0.1.x` is the 0.1 line, `0.x` (and `0`, a missing minor) the 0
//!   line, `*` every version. A missing patch is 0, not a wildcard: `0.1` is 0.1.0.
//! - `~1.2.3` is `>= 1.2.3, < 1.3.0`; `^1.2.3` is `>= 1.2.3, < 2.0.0`, and so is
//!   `^0.2.3` `>= 0.2.3, < 1.0.0` (v1.5.0 keeps the major only).
//! - v1.5.0's own quirks are kept: `>` ignores wildcards (`> 1.2.x` holds for 1.2.1), a
//!   wildcard `<` or `<=` compares the major, then the minor unless it is the wildcard
//!   (`< 1.x` holds for 1.9.0).
//! - A version with a prerelease (`0.2.0-rc.1`) is only matched by a comparator that
//!   names a prerelease itself (except a `!=` without wildcards, as in v1.5.0).
//!
//! Anything else (an empty range, a space instead of `,`, a number after a wildcard) is
//! refused when the manifest is loaded.

use std::cmp::Ordering;

/// A parsed `version_line`: alternatives of comparators that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    alternatives: Vec<Vec<Comparator>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

/// Longest first, so `>=` is not read as `>` followed by `=1.0`.
const OPS: [(&str, Op); 11] = [
    (">=", Op::Ge),
    ("=>", Op::Ge),
    ("<=", Op::Le),
    ("=<", Op::Le),
    ("!=", Op::Ne),
    ("~>", Op::Tilde),
    (">", Op::Gt),
    ("<", Op::Lt),
    ("=", Op::Eq),
    ("~", Op::Tilde),
    ("^", Op::Caret),
];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    pattern: Pattern,
}

/// A version with wildcards: `None` parts are `x` (or missing), and only trailing
/// parts can be.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<String>,
    /// An `x`, `X` or `*` was written (a missing part is not one).
    wildcard: bool,
}

/// A version as Masterminds/semver reads one: missing minor or patch are 0, a leading
/// `v` is allowed, build metadata is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    triple: (u64, u64, u64),
    pre: Vec<String>,
}

impl Version {
    /// The version, if `s` is one (else libbuildpack compares the line as text).
    pub fn parse(s: &str) -> Option<Version> {
        let p = Pattern::parse(s).ok()?;
        match (p.major, p.minor, p.patch) {
            (Some(major), minor, patch) if !p.wildcard => Some(Version {
                triple: (major, minor.unwrap_or(0), patch.unwrap_or(0)),
                pre: p.pre,
            }),
            _ => None,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple
            .cmp(&other.triple)
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver precedence of prereleases: none is above any; identifiers compare in order,
/// numbers numerically and below words; a shorter list that is a prefix is below.
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn is_wildcard(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

/// Dot-separated identifiers of letters, digits and `-`, none empty.
fn identifiers(s: &str, what: &str) -> Result<Vec<String>, String> {
    s.split('.')
        .map(|id| {
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                Ok(id.to_string())
            } else {
                Err(format!(
                    "{what} {s:?} must be dot-separated letters, digits and '-'"
                ))
            }
        })
        .collect()
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        let body = s.strip_prefix('v').unwrap_or(s);
        let (body, _build) = match body.split_once('+') {
            Some((b, build)) => (b, Some(identifiers(build, "build metadata")?)),
            None => (body, None),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, pre)) => (c, identifiers(pre, "prerelease")?),
            None => (body, Vec::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 {
            return Err(format!("{s:?} has more than three numbers"));
        }
        let mut nums = [None; 3];
        let mut wild = false;
        for (i, part) in parts.iter().enumerate() {
            if is_wildcard(part) {
                wild = true;
            } else if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                if wild {
                    return Err(format!("{s:?} has a number after a wildcard"));
                }
                nums[i] = Some(
                    part.parse::<u64>()
                        .map_err(|_| format!("{part:?} in {s:?} is too large"))?,
                );
            } else {
                return Err(format!(
                    "{s:?} is not a version such as 1.2.3, 1.2.x or 1.x"
                ));
            }
        }
        Ok(Pattern {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
            wildcard: wild,
        })
    }

    /// The lowest version the pattern covers.
    fn low(&self) -> Version {
        Version {
            triple: (
                self.major.unwrap_or(0),
                self.minor.unwrap_or(0),
                self.patch.unwrap_or(0),
            ),
            pre: self.pre.clone(),
        }
    }

    /// Masterminds/semver v1's "dirty" flags: `(dirty, minor_dirty, patch_dirty)`. A
    /// wildcard or missing major or minor is dirty, and so is a wildcard patch; a
    /// missing patch is not (`1.2` is `1.2.0`, as libbuildpack reads it).
    fn dirt(&self) -> (bool, bool, bool) {
        let minor_dirty = self.major.is_some() && self.minor.is_none();
        let patch_dirty = self.minor.is_some() && self.patch.is_none() && self.wildcard;
        (
            self.major.is_none() || minor_dirty || patch_dirty,
            minor_dirty,
            patch_dirty,
        )
    }
}

impl Comparator {
    fn parse(s: &str) -> Result<Comparator, String> {
        let (op, rest) = OPS
            .iter()
            .find_map(|(text, op)| s.strip_prefix(text).map(|rest| (*op, rest)))
            .unwrap_or((Op::Eq, s));
        let rest = rest.trim_start();
        let mut words = rest.split_whitespace();
        let pattern = Pattern::parse(words.next().unwrap_or_default())?;
        if words.next().is_some() {
            return Err(format!(
                "{s:?} holds a space; separate comparators with ',' (>= 0.1.0, < 0.2.0)"
            ));
        }
        Ok(Comparator { op, pattern })
    }

    /// As Masterminds/semver v1.5.0 (libbuildpack's) checks it, quirks included: a
    /// wildcard `<` or `<=` compares only the major and minor (`< 1.x` holds for 1.9.0),
    /// `>` ignores wildcards (`> 1.2.x` holds for 1.2.1), and `^` keeps only the major
    /// (`^0.2.3` holds for 0.9.0).
    fn matches(&self, v: &Version) -> bool {
        let p = &self.pattern;
        let con = p.low();
        let (dirty, minor_dirty, patch_dirty) = p.dirt();
        // A prerelease only satisfies a comparator that names one; v1.5.0 forgets
        // this check for a `!=` without wildcards only.
        if !v.pre.is_empty() && p.pre.is_empty() && (self.op != Op::Ne || dirty) {
            return false;
        }
        let ((v_major, v_minor, _), (c_major, c_minor, _)) = (v.triple, con.triple);
        let tilde = || {
            if *v < con {
                return false;
            }
            if con.triple == (0, 0, 0) && !minor_dirty && !patch_dirty {
                return true;
            }
            v_major == c_major && (v_minor == c_minor || minor_dirty)
        };
        let not_above = || !(v_major > c_major || (v_minor > c_minor && !minor_dirty));
        match self.op {
            Op::Eq if dirty => tilde(),
            Op::Eq => *v == con,
            Op::Ne if dirty => v_major != c_major || (v_minor != c_minor && !minor_dirty),
            Op::Ne => *v != con,
            Op::Gt => *v > con,
            Op::Ge => *v >= con,
            Op::Lt if dirty => not_above(),
            Op::Lt => *v < con,
            Op::Le if dirty => not_above(),
            Op::Le => *v <= con,
            Op::Tilde => tilde(),
            Op::Caret => *v >= con && v_major == c_major,
        }
    }
}

/// A hyphen range, `A - B`: a `-` with white space on both sides.
fn split_hyphen_range(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    (1..bytes.len().saturating_sub(1))
        .find(|&i| {
            bytes[i] == b'-'
                && bytes[i - 1].is_ascii_whitespace()
                && bytes[i + 1].is_ascii_whitespace()
        })
        .map(|i| (s[..i].trim(), s[i + 1..].trim()))
}

impl VersionLine {
    /// Parses a range; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<VersionLine, String> {
        let mut alternatives = Vec::new();
        for alternative in s.split("||") {
            let mut all = Vec::new();
            for piece in alternative.split(',') {
                let piece = piece.trim();
                if piece.is_empty() {
                    return Err(format!(
                        "{s:?} has an empty comparator (around a ',' or '||')"
                    ));
                }
                match split_hyphen_range(piece) {
                    Some((a, b)) => {
                        all.push(Comparator {
                            op: Op::Ge,
                            pattern: Pattern::parse(a)?,
                        });
                        all.push(Comparator {
                            op: Op::Le,
                            pattern: Pattern::parse(b)?,
                        });
                    }
                    None => all.push(Comparator::parse(piece)?),
                }
            }
            alternatives.push(all);
        }
        Ok(VersionLine { alternatives })
    }

    /// True when `version` is in the range.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| c.matches(version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, version: &str) -> bool {
        let range = VersionLine::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let v = Version::parse(version).unwrap_or_else(|| panic!("version {version}"));
        range.matches(&v)
    }

    #[test]
    fn the_forms_cf_buildpacks_use() {
        for (line, version, want) in [
            ("0.1.x", "0.1.0", true),
            ("0.1.x", "0.1.9", true),
            ("0.1.x", "0.2.0", false),
            ("0.1.x", "0.0.9", false),
            ("0.1.X", "0.1.7", true),
            ("0.1.*", "0.1.7", true),
            // libbuildpack (Masterminds/semver v1.5.0) reads a missing patch as 0, not
            // as a wildcard: `0.1` is exactly 0.1.0. A missing minor is a wildcard.
            ("0.1", "0.1.0", true),
            ("0.1", "0.1.7", false),
            ("18.x.x", "18.20.1", true),
            ("18.x", "19.0.0", false),
            ("2", "2.9.9", true),
            ("2", "3.0.0", false),
            ("*", "4.5.6", true),
            ("x", "0.0.1", true),
            ("0.1.0", "0.1.0", true),
            ("0.1.0", "0.1.1", false),
            ("=0.1.0", "0.1.0+build.5", true),
            ("v0.1.x", "v0.1.3", true),
        ] {
            assert_eq!(check(line, version), want, "{line} vs {version}");
        }
    }

    #[test]
    fn comparators_and_ranges() {
        for (line, version, want) in [
            (">= 0.1.0, < 0.2.0", "0.1.5", true),
            (">= 0.1.0, < 0.2.0", "0.2.0", false),
            (">=0.1.0,<0.2.0", "0.0.9", false),
            ("=> 1.0", "1.0.0", true),
            ("=< 1.2", "1.2.0", true),
            ("=< 1.2", "1.2.9", false),
            ("<= 1.2", "1.3.0", false),
            ("<= 1.2.3", "1.2.3", true),
            ("< 1.x", "0.9.0", true),
            // v1.5.0's wildcard `<` and `<=` compare the major, then the minor
            // unless it is the wildcard: `< 1.x` holds for 1.9.0, `< 1.2.x` fails 0.9.0.
            ("< 1.x", "1.9.0", true),
            ("< 1.x", "2.0.0", false),
            ("< 1.2.x", "1.2.9", true),
            ("< 1.2.x", "0.9.0", false),
            ("> 1.2.3", "1.2.4", true),
            // `>` compares with the pattern's lowest version, wildcards or not.
            ("> 1.2", "1.2.9", true),
            ("> 1.2", "1.2.0", false),
            ("> 1.2.x", "1.2.1", true),
            ("> *", "9.9.9", true),
            ("!= 1.2.x", "1.2.5", false),
            ("!= 1.2.x", "1.3.0", true),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1.2.3", "1.2.2", false),
            ("~>1.2", "1.2.0", true),
            ("~1", "1.9.0", true),
            ("~1", "2.0.0", false),
            ("^1.2.3", "1.9.0", true),
            ("^1.2.3", "2.0.0", false),
            ("^0.2.3", "0.2.9", true),
            // v1.5.0's caret keeps the major only, for 0.y.z too (v3 changed that).
            ("^0.2.3", "0.3.0", true),
            ("^0.2.3", "0.2.2", false),
            ("^0.2.3", "1.0.0", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", true),
            ("^0.x", "0.9.0", true),
            ("^0.0", "0.0.9", true),
            ("^0.0", "0.1.0", true),
            ("0.1.0 - 0.1.4", "0.1.4", true),
            ("0.1.0 - 0.1.4", "0.1.5", false),
            ("1.2 - 1.4", "1.4.0", true),
            ("1.2 - 1.4", "1.4.9", false),
            ("1.2.x - 1.4.x", "1.4.9", true),
            ("1.2.x - 1.4.x", "1.5.0", false),
            ("0.1.x || 0.3.x", "0.3.1", true),
            ("0.1.x || 0.3.x", "0.2.1", false),
            ("  0.1.x  ", "0.1.1", true),
        ] {
            assert_eq!(check(line, version), want, "{line} vs {version}");
        }
    }

    #[test]
    fn prereleases_need_a_prerelease_comparator() {
        for (line, version, want) in [
            ("0.2.x", "0.2.0-rc.1", false),
            ("*", "1.0.0-alpha", false),
            (">= 0.1.0", "0.2.0-rc.1", false),
            (">= 0.2.0-rc.1", "0.2.0-rc.2", true),
            (">= 0.2.0-rc.2", "0.2.0-rc.10", true),
            (">= 0.2.0-rc.2", "0.2.0-rc.1", false),
            ("0.2.0-rc.1", "0.2.0-rc.1", true),
            ("~1.2.3-beta.2", "1.2.4-beta.2", true),
            ("< 1.0.0-beta", "1.0.0-alpha.1", true),
            ("< 1.0.0-1", "1.0.0-alpha", false),
            // v1.5.0 skips the prerelease rule for a `!=` without wildcards.
            ("!= 1.2.3", "2.0.0-rc.1", true),
            ("!= 1.2.x", "2.0.0-rc.1", false),
        ] {
            assert_eq!(check(line, version), want, "{line} vs {version}");
        }
    }

    #[test]
    fn malformed_ranges_say_what_is_wrong() {
        for (line, why) in [
            ("", "empty comparator"),
            ("   ", "empty comparator"),
            ("0.1.x,", "empty comparator"),
            ("|| 1.x", "empty comparator"),
            ("0.1.0 0.2.0", "separate comparators with ','"),
            (">= 0.1.0 < 0.2.0", "separate comparators with ','"),
            ("latest", "not a version"),
            ("0.1.y", "not a version"),
            ("1.xx", "not a version"),
            ("x.1", "number after a wildcard"),
            ("1.x.3", "number after a wildcard"),
            ("1.2.3.4", "more than three numbers"),
            ("1.2.3-", "prerelease"),
            ("1.2.3-rc..1", "prerelease"),
            ("1.2.3+", "build metadata"),
            ("99999999999999999999.0.0", "too large"),
            ("== 1.2.3", "not a version"),
            (">=", "not a version"),
        ] {
            let err = VersionLine::parse(line).expect_err(line);
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn versions_as_masterminds_reads_them() {
        assert_eq!(Version::parse("1").map(|v| v.triple), Some((1, 0, 0)));
        assert_eq!(Version::parse("v1.2").map(|v| v.triple), Some((1, 2, 0)));
        assert!(Version::parse("1.0.0-x").is_some());
        for not in ["1.2.3_4", "1.x", "r123", "", "1.2.3~rc"] {
            assert_eq!(Version::parse(not), None, "{not}");
        }
    }
}
