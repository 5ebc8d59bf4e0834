//! The buildpack's `manifest.yml`: libbuildpack's schema plus our `sidecars:` section.
//! Parsed into types at load time, so a bad value fails there, naming the file and key.

use crate::deprecation::{Date, Deprecation, Line};
use crate::digest::Sha256;
use crate::errors::Error;
use crate::fsutil::read_text;
use crate::yaml::de::ErrorKind;
use crate::yaml::{Kind, Node, Step, Style};
use serde::Deserialize;
use serde_path_to_error::Segment;
use std::path::{Path, PathBuf};
use url::Url;

/// Largest manifest.yml read: Cloud Controller refuses a buildpack whose manifest.yml is
/// over 1 MB, so a larger one is not a real buildpack's.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Memory a sidecar may be given, in MB. CF carves it out of the app's memory, so
/// anything near the upper bound cannot be assigned anyway.
pub const MEMORY_RANGE: std::ops::RangeInclusive<u32> = 1..=65_536;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Manifest {
    pub language: String,
    #[serde(default)]
    pub default_versions: Vec<DefaultVersion>,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    #[serde(default)]
    pub include_files: Vec<String>,
    #[serde(default)]
    pub pre_package: Option<String>,
    /// Set by the packager with `--stack`: the buildpack is bound to that stack.
    #[serde(default)]
    pub stack: Option<String>,
    /// Our own section: which dependency becomes which sidecar.
    #[serde(default)]
    pub sidecars: Vec<Sidecar>,
    /// libbuildpack's end-of-life dates: a warning at staging when one is near.
    #[serde(default, deserialize_with = "de_deprecations")]
    pub dependency_deprecation_dates: Vec<Deprecation>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DefaultVersion {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawDependency")]
pub struct Dependency {
    pub name: String,
    pub version: String,
    pub uri: Url,
    /// The uri exactly as written: cached buildpacks key files by its md5.
    pub uri_text: String,
    pub sha256: Sha256,
    pub cf_stacks: Vec<String>,
    /// Set in cached buildpacks: the artifact's path inside the buildpack.
    pub file: Option<String>,
}

impl Dependency {
    /// Its identity, as messages name it and as one dependency is told from another:
    /// `<name> <version>` (several builds of it, one per stack, share it).
    pub fn id(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    /// True when `self` is a build of `name` at `version`.
    pub fn is(&self, name: &str, version: &str) -> bool {
        self.name == name && self.version == version
    }
}

/// A dependency as written. Its `uri` and `sha256` are typed as each is read, so that
/// an error is raised at its own key (`dependencies[1].uri`), not at the list.
#[derive(Deserialize)]
struct RawDependency {
    name: String,
    version: String,
    /// The URL, and the text it was read from.
    #[serde(deserialize_with = "de_uri")]
    uri: (Url, String),
    #[serde(deserialize_with = "de_sha256")]
    sha256: Sha256,
    #[serde(default)]
    cf_stacks: Vec<String>,
    #[serde(default)]
    file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The launch.yml `type`, and the name CF shows in logs.
    pub name: String,
    /// The `dependencies` entry that carries it.
    pub dependency: String,
    /// The executable: inside the archive, or the installed name of a bare binary.
    pub executable: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub memory_mb: u32,
    #[serde(default = "default_process_types")]
    pub process_types: Vec<String>,
    /// How `SIDECAR_BUILDPACK_<NAME>_HOLD_APP` waits for this sidecar; without it the
    /// sidecar cannot hold the app.
    #[serde(default)]
    pub hold_app: Option<HoldApp>,
}

/// The executable's readiness wait: run with `args` and `--timeout <seconds>`, it exits
/// 0 once the sidecar is ready, non-zero saying why at the timeout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldApp {
    pub args: Vec<String>,
    /// The dependency's versions that have it, a `version_line` range (`>= 0.3.0`): an
    /// app may pin an older one.
    #[serde(default = "every_version")]
    pub versions: String,
}

fn every_version() -> String {
    "*".into()
}

impl Sidecar {
    /// The executable's file name: what it is installed as in `<deps>/<idx>/bin/`.
    pub fn installed_name(&self) -> &str {
        self.executable
            .rsplit('/')
            .next()
            .unwrap_or(&self.executable)
    }
}

fn default_process_types() -> Vec<String> {
    vec!["web".to_string()]
}

impl From<RawDependency> for Dependency {
    fn from(r: RawDependency) -> Self {
        let (uri, uri_text) = r.uri;
        Dependency {
            name: r.name,
            version: r.version,
            uri,
            uri_text,
            sha256: r.sha256,
            cf_stacks: r.cf_stacks,
            file: r.file,
        }
    }
}

/// Reads a string and types it with `parse`; its error is the key's problem.
fn typed<'de, D, T, E>(d: D, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: std::fmt::Display,
{
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

fn de_uri<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(Url, String), D::Error> {
    let text = String::deserialize(d)?;
    let url = parse_uri(&text).map_err(serde::de::Error::custom)?;
    Ok((url, text))
}

fn de_sha256<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Sha256, D::Error> {
    typed(d, str::parse)
}

fn de_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
    typed(d, Date::parse)
}

/// A `dependency_deprecation_dates` entry as written; its `date` is typed as it is
/// read, so that an error is raised at that key.
/// libbuildpack's four keys, and `match:`, which older CF buildpack manifests carry
/// (compile-extensions read it) and which is ignored. Any other key is refused: a
/// misspelt `link:` or `version-line:` would otherwise drop what operators plan by.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeprecation {
    name: String,
    version_line: String,
    #[serde(deserialize_with = "de_date")]
    date: Date,
    #[serde(default)]
    link: Option<String>,
    #[serde(default, rename = "match")]
    _match: Option<serde::de::IgnoredAny>,
}

/// The entries, typed as each is read (an empty `dependency_deprecation_dates:` is none).
fn de_deprecations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Deprecation>, D::Error> {
    let raw = Option::<Vec<RawDeprecation>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|r| Deprecation {
            line: Line::parse(&r.version_line),
            name: r.name,
            version_line: r.version_line,
            date: r.date,
            // libbuildpack prints no link for an empty one.
            link: r.link.filter(|l| !l.is_empty()),
        })
        .collect())
}

const IDENTIFIER_RULE: &str = "must be 1-64 letters, digits, '.', '-', '_', '+' or '~', starting \
                               with a letter or digit (it is used in file names and log lines)";
const STACK_RULE: &str = "must be a stack name such as cflinuxfs4 (letters, digits, '-' or '_')";
const TEXT_RULE: &str = "must not hold control characters or be longer than 4096 characters \
                         (it is printed in the staging log)";

/// A dependency uri: `https://`, `http://` or `file://`.
pub fn parse_uri(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" | "http" | "file" => Ok(url),
        other => Err(format!(
            "scheme {other:?} is not supported; use https://, http:// or file://"
        )),
    }
}

/// A name CF accepts as a process type, and that is safe in a path and a shell command.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A dependency name or version: it goes into file names (temp files, the app cache)
/// and log lines, so it is a path-safe identifier: 1-64 letters, digits, `.`, `-`,
/// `_`, `+` or `~`, starting with a letter or digit (no `.`, `..`, `/`, control
/// character or space).
pub fn valid_identifier(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b))
}

/// Longest manifest string that is printed or used as a path (a uri, a `file:`, an
/// argument); a real one is far shorter.
pub const MAX_TEXT: usize = 4096;

/// Text that may be printed as it is: no control or invisible reordering characters
/// (a newline would fake a staging log line), and not absurdly long.
fn printable(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(crate::redact::is_unsafe)
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = read_text(path, MAX_MANIFEST_BYTES).map_err(|e| Error::BuildpackFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as the manifest found at `path` (used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, Error> {
        // A byte order mark (Windows editors write one) is allowed by YAML and read by
        // CF's own tools; serde_yaml takes it for content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Err(e) = crate::yaml::check_cost(text) {
            return Err(Error::Manifest {
                path: path.to_path_buf(),
                key: "(document)".into(),
                problem: e.message,
                position: Some((e.line, e.column)),
            });
        }
        let manifest: Manifest =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| refused(path, text, &e))?;
        manifest.check(path).map_err(|e| with_position(e, text))?;
        Ok(manifest)
    }

    /// Checks what the types cannot: names, paths and printable text, and that the
    /// sections agree with each other. The first problem, in the order of the file's
    /// sections, is the error.
    fn check(&self, path: &Path) -> Result<(), Error> {
        let check = Check {
            manifest: self,
            path,
        };
        check.top_level()?;
        for (i, d) in self.dependencies.iter().enumerate() {
            check.dependency(i, d)?;
        }
        for (i, dv) in self.default_versions.iter().enumerate() {
            check.default_version(i, dv)?;
        }
        check.sidecars()?;
        for (i, e) in self.dependency_deprecation_dates.iter().enumerate() {
            check.deprecation(i, e)?;
        }
        check.sidecar_names_differ()
    }

    /// The first pair of sidecars `(later, earlier)` whose names differ only in case or
    /// in `-` against `_`: they would share the env-var prefix of their settings
    /// (`SIDECAR_BUILDPACK_<NAME>_`), and `config-server`/`CONFIG-SERVER` the log
    /// source CF upper-cases (`[APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0]`).
    fn sidecar_name_clash(&self) -> Option<(usize, usize)> {
        let keys: Vec<String> = self
            .sidecars
            .iter()
            .map(|s| crate::settings::sidecar_var_base(&s.name))
            .collect();
        (1..keys.len()).find_map(|i| (0..i).find(|&j| keys[j] == keys[i]).map(|j| (i, j)))
    }

    /// The version `default_versions` gives for the dependency `name`.
    pub fn default_version(&self, name: &str) -> Option<&str> {
        self.default_versions
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.version.as_str())
    }

    /// The default version of `name` for `stack`. With no stack (a local run) any
    /// build of the default version is taken.
    pub fn pick(&self, name: &str, stack: Option<&str>) -> Result<&Dependency, Error> {
        let version = self.default_version(name).unwrap_or_default();
        let builds: Vec<&Dependency> = self
            .dependencies
            .iter()
            .filter(|d| d.is(name, version))
            .collect();
        let chosen = match stack {
            None => builds.first().copied(),
            // A zip packaged with --stack is for that stack only, whatever else its
            // builds list (libbuildpack's CheckStackSupport refuses any other too).
            Some(stack) if self.stack.as_deref().is_some_and(|bound| bound != stack) => None,
            Some(stack) => builds
                .iter()
                .find(|d| d.cf_stacks.iter().any(|s| s == stack))
                .copied(),
        };
        chosen.ok_or_else(|| Error::UnsupportedStack {
            buildpack: buildpack_name(self),
            dependency: name.to_string(),
            version: version.to_string(),
            stack: crate::redact::quoted_value(stack.unwrap_or_default()),
            supported: self.stacks(),
        })
    }

    /// The stacks this buildpack stages on: those for which every sidecar's
    /// dependency has a build of its default version (all of the builds' stacks when
    /// there is no sidecar), sorted; of those, only its `stack:` when it is bound to one.
    pub fn stacks(&self) -> Vec<String> {
        let mut stacks = self.stacks_of_builds();
        if let Some(bound) = &self.stack {
            stacks.retain(|s| s == bound);
        }
        stacks
    }

    fn stacks_of_builds(&self) -> Vec<String> {
        let builds_of = |name: &str| {
            let version = self.default_version(name);
            self.dependencies
                .iter()
                .filter(move |d| d.name == name && Some(d.version.as_str()) == version)
                .flat_map(|d| d.cf_stacks.iter().cloned())
                .collect::<std::collections::BTreeSet<String>>()
        };
        let mut sidecars = self.sidecars.iter();
        let Some(first) = sidecars.next() else {
            let all: std::collections::BTreeSet<String> = self
                .dependencies
                .iter()
                .flat_map(|d| d.cf_stacks.iter().cloned())
                .collect();
            return all.into_iter().collect();
        };
        let mut stacks = builds_of(&first.dependency);
        for s in sidecars {
            let theirs = builds_of(&s.dependency);
            stacks.retain(|stack| theirs.contains(stack));
        }
        stacks.into_iter().collect()
    }
}

/// Words that quote a value of the manifest (a version line's parser's): as any
/// untrusted text is shown, cut and escaped, and with a URL pasted into the value
/// redacted, as serde's words are.
fn echoed(why: &str) -> String {
    crate::redact::shown(&crate::redact::scrub_urls(why))
}

/// `Manifest::check`'s steps, one per section; each names the key it refuses.
struct Check<'m> {
    manifest: &'m Manifest,
    path: &'m Path,
}

impl Check<'_> {
    fn bad(&self, key: String, problem: impl Into<String>) -> Error {
        Error::Manifest {
            path: self.path.to_path_buf(),
            key,
            problem: problem.into(),
            position: None,
        }
    }

    /// A dependency name or version, used in file names and log lines.
    fn identifier(&self, key: String, value: &str) -> Result<(), Error> {
        if valid_identifier(value) {
            Ok(())
        } else {
            Err(self.bad(key, IDENTIFIER_RULE))
        }
    }

    /// `language` and `stack`.
    fn top_level(&self) -> Result<(), Error> {
        if !valid_name(&self.manifest.language) {
            return Err(self.bad(
                "language".into(),
                "must be letters, digits, '-' or '_' (it names the buildpack)",
            ));
        }
        if let Some(stack) = &self.manifest.stack {
            if !valid_name(stack) {
                return Err(self.bad("stack".into(), STACK_RULE));
            }
        }
        Ok(())
    }

    /// `dependencies[i]`: its identity, uri, stacks and `file:`.
    fn dependency(&self, i: usize, d: &Dependency) -> Result<(), Error> {
        self.identifier(format!("dependencies[{i}].name"), &d.name)?;
        self.identifier(format!("dependencies[{i}].version"), &d.version)?;
        if !printable(&d.uri_text) {
            return Err(self.bad(format!("dependencies[{i}].uri"), TEXT_RULE));
        }
        for (j, stack) in d.cf_stacks.iter().enumerate() {
            if !valid_name(stack) {
                return Err(self.bad(format!("dependencies[{i}].cf_stacks[{j}]"), STACK_RULE));
            }
        }
        if basename(&d.uri).is_none() {
            return Err(self.bad(
                format!("dependencies[{i}].uri"),
                "must end in a file name (at most 255 bytes, no control characters, decoded)",
            ));
        }
        if let Some(f) = &d.file {
            if !relative_inside(f) || !printable(f) {
                return Err(self.bad(
                    format!("dependencies[{i}].file"),
                    "must be a relative path inside the buildpack",
                ));
            }
        }
        Ok(())
    }

    /// `default_versions[i]`: it names a dependency that is there.
    fn default_version(&self, i: usize, dv: &DefaultVersion) -> Result<(), Error> {
        self.identifier(format!("default_versions[{i}].name"), &dv.name)?;
        self.identifier(format!("default_versions[{i}].version"), &dv.version)?;
        if !self
            .manifest
            .dependencies
            .iter()
            .any(|d| d.is(&dv.name, &dv.version))
        {
            return Err(self.bad(
                format!("default_versions[{i}]"),
                format!(
                    "names {} {}, but no entry in dependencies has that name and version",
                    dv.name, dv.version
                ),
            ));
        }
        Ok(())
    }

    /// `sidecars`: at least one, each valid. Without one, a staging would succeed and
    /// the app run without its sidecar.
    fn sidecars(&self) -> Result<(), Error> {
        if self.manifest.sidecars.is_empty() {
            return Err(self.bad(
                "sidecars".into(),
                "must list at least one sidecar: installing them is all this buildpack does",
            ));
        }
        for (i, s) in self.manifest.sidecars.iter().enumerate() {
            self.sidecar(i, s)?;
        }
        Ok(())
    }

    /// `sidecars[i]`: its name, dependency, executable, memory, args and process types.
    fn sidecar(&self, i: usize, s: &Sidecar) -> Result<(), Error> {
        let m = self.manifest;
        let key = |k: &str| format!("sidecars[{i}].{k}");
        let earlier = &m.sidecars[..i];
        if !valid_name(&s.name) {
            return Err(self.bad(key("name"), "must be 1-64 letters, digits, '-' or '_'"));
        }
        if earlier.iter().any(|o| o.name == s.name) {
            return Err(self.bad(key("name"), format!("{:?} is declared twice", s.name)));
        }
        self.identifier(key("dependency"), &s.dependency)?;
        if !m.dependencies.iter().any(|d| d.name == s.dependency) {
            return Err(self.bad(
                key("dependency"),
                format!("names {:?}, which is not in dependencies", s.dependency),
            ));
        }
        if !m.default_versions.iter().any(|d| d.name == s.dependency) {
            return Err(self.bad(
                key("dependency"),
                format!(
                    "names {:?}, which has no default_versions entry",
                    s.dependency
                ),
            ));
        }
        if !relative_inside(&s.executable) || !printable(&s.executable) {
            return Err(self.bad(key("executable"), "must be a relative path without '..'"));
        }
        // The file name goes into a bash command and into bin/ of the deps dir.
        let installed = s.installed_name();
        if !installed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            || installed.starts_with('.')
        {
            return Err(self.bad(
                key("executable"),
                "must end in a file name of letters, digits, '.', '-' or '_'",
            ));
        }
        if let Some(other) = earlier.iter().find(|o| {
            o.installed_name() == installed
                && (o.dependency != s.dependency || o.executable != s.executable)
        }) {
            return Err(self.bad(
                key("executable"),
                format!(
                    "installs as bin/{installed}, as sidecar {:?} does with another file",
                    other.name
                ),
            ));
        }
        if !MEMORY_RANGE.contains(&s.memory_mb) {
            return Err(self.bad(
                key("memory_mb"),
                format!(
                    "must be a whole number of MB from {} to {}",
                    MEMORY_RANGE.start(),
                    MEMORY_RANGE.end()
                ),
            ));
        }
        if let Some(j) = s.args.iter().position(|a| !printable(a)) {
            return Err(self.bad(format!("sidecars[{i}].args[{j}]"), TEXT_RULE));
        }
        if let Some(hold) = &s.hold_app {
            if hold.args.is_empty() || !hold.args.iter().all(|a| printable(a)) {
                return Err(self.bad(
                    key("hold_app.args"),
                    "must be a non-empty list of the arguments that make the executable \
                     wait for the sidecar, such as [wait]",
                ));
            }
            if let Err(why) = crate::version_line::VersionLine::parse(&hold.versions) {
                return Err(self.bad(key("hold_app.versions"), echoed(&why)));
            }
        }
        if s.process_types.is_empty()
            || !s.process_types.iter().all(|p| valid_name(p))
            || crate::settings::has_duplicates(&s.process_types)
        {
            return Err(self.bad(
                key("process_types"),
                "must be a non-empty list of distinct process types such as [web]",
            ));
        }
        Ok(())
    }

    /// `dependency_deprecation_dates[i]`: printed as written in the warning, so one
    /// line of a sane length, a version line that can match, a web link.
    fn deprecation(&self, i: usize, e: &Deprecation) -> Result<(), Error> {
        let key = |k: &str| format!("dependency_deprecation_dates[{i}].{k}");
        self.identifier(key("name"), &e.name)?;
        if !printable(&e.version_line) {
            return Err(self.bad(key("version_line"), TEXT_RULE));
        }
        if let Line::Text { why } = &e.line {
            // libbuildpack compares a version that is not semver as text; a line
            // that is neither a range nor such a version would never match.
            let exact = self.manifest.dependencies.iter().any(|d| {
                d.is(&e.name, &e.version_line)
                    && crate::version_line::Version::parse(&d.version).is_none()
            });
            if !exact {
                return Err(self.bad(
                    key("version_line"),
                    format!(
                        "must be a semver range such as 0.1.x, ~0.1.2 or >= 0.1.0, < 0.2.0: {}",
                        echoed(why)
                    ),
                ));
            }
        }
        if let Some(link) = &e.link {
            let web = Url::parse(link)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host());
            if !web || !printable(link) {
                return Err(self.bad(
                    key("link"),
                    format!("must be an https:// or http:// URL; {TEXT_RULE}"),
                ));
            }
        }
        Ok(())
    }

    /// No two sidecars whose names would share their settings' env-var prefix.
    fn sidecar_names_differ(&self) -> Result<(), Error> {
        let Some((i, j)) = self.manifest.sidecar_name_clash() else {
            return Ok(());
        };
        let sidecars = &self.manifest.sidecars;
        let (a, b) = (&sidecars[j].name, &sidecars[i].name);
        Err(self.bad(
            format!("sidecars[{i}].name"),
            format!(
                "{b:?} clashes with {a:?} (sidecars[{j}]): both would read the app's settings \
                 from {}*; give each sidecar a name that differs by more than case or '-' and \
                 '_'",
                crate::settings::sidecar_var_base(b)
            ),
        ))
    }
}

/// The last path segment of a URL, if it names a file.
pub fn basename(url: &Url) -> Option<String> {
    let seg = url.path_segments()?.next_back()?;
    let seg = percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()?
        .into_owned();
    valid_file_name(&seg).then_some(seg)
}

/// A name the app cache can store a file under and the log can print: decoded from
/// the uri, so `%0A` or `%E2%80%AE` must be refused here, not only in the raw uri.
fn valid_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.chars().any(crate::redact::is_unsafe)
}

/// True for a relative path with no `..`, `.` or empty component.
pub fn relative_inside(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// Why serde_yaml refused `text`, from typed sources: the key path from
/// serde_path_to_error; serde's words and the kind of error from the same types read
/// over our own tree (`yaml::de`), since serde_yaml keeps them only in the text of its
/// message, between its own key path and position; the position from our tree.
fn refused(path: &Path, text: &str, e: &serde_path_to_error::Error<serde_yaml::Error>) -> Error {
    // serde_yaml's message whole, under `(document)`: libyaml's positions are in it.
    let whole = || Error::Manifest {
        path: path.to_path_buf(),
        key: "(document)".into(),
        problem: crate::redact::shown(&crate::redact::scrub_urls(&e.inner().to_string())),
        position: None,
    };
    // The text itself is refused (its syntax, a second document, an unknown anchor):
    // serde_yaml reads the types as far as the text goes, and reports that error when
    // they are right that far, at the error's own place.
    let place = |e: &serde_yaml::Error| e.location().map(|l| (l.line(), l.column()));
    if let Err(text_error) = serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
        if place(&text_error) == place(e.inner()) {
            return whole();
        }
    }
    // A wrong value: read the types again over our own tree, as far as our parser reads
    // the text (libyaml reads a few things it does not). Not where the two may read a
    // text apart (an anchor's name, a YAML 1.1 line break): the replay would read other
    // values, and refuse in other words.
    if crate::yaml::may_read_apart(text) {
        return whole();
    }
    let (root, syntax_error) = crate::yaml::parse_prefix(text);
    if root.is_none() && syntax_error.is_some()
        || root.as_ref().is_some_and(|r| r.flow_reads_apart(text))
    {
        return whole();
    }
    // serde_yaml reads an empty document as an empty mapping.
    let empty = Node {
        start: 0,
        end: 0,
        line: 1,
        column: 1,
        anchor: None,
        cut: false,
        kind: Kind::Scalar {
            value: String::new(),
            style: Style::Plain,
            tag: None,
        },
    };
    let doc = crate::yaml::de::Document::new(root.as_ref().unwrap_or(&empty));
    let (mut steps, error) =
        match serde_path_to_error::deserialize::<_, Manifest>(doc.deserializer()) {
            // The same error at the same key: the replay read the text as serde_yaml did.
            Err(replayed)
                if steps_of(replayed.path()) == steps_of(e.path())
                    && replayed.inner().kind != ErrorKind::Unread =>
            {
                (steps_of(replayed.path()), replayed.into_inner())
            }
            _ => return whole(),
        };
    // The error is the mapping's, and points at the key: the first of an unknown name
    // (its path ends at it), the second of a duplicate.
    let key = match &error.kind {
        ErrorKind::UnknownField(name) => {
            if steps.last() == Some(&Step::Key(name.clone())) {
                steps.pop();
            }
            Some((name, 0))
        }
        ErrorKind::DuplicateField(name) => Some((name, 1)),
        ErrorKind::Key { .. } | ErrorKind::Unread | ErrorKind::Other => None,
    };
    // An empty document has no place to name.
    let position = root.as_ref().and_then(|root| {
        if let ErrorKind::Key { line, column } = error.kind {
            return Some((line, column));
        }
        let node = root.nearest(&steps);
        let found = match key {
            Some((name, nth)) => node.entries_named(name).get(nth).map(|(k, _)| k),
            None => Some(node),
        };
        // serde_yaml's own where our tree has no such key (in a mapping an alias names).
        found
            .map(|n| (n.line, n.column))
            .or_else(|| place(e.inner()))
    });
    Error::Manifest {
        path: path.to_path_buf(),
        key: crate::redact::shown(&key_of(&steps)),
        // serde quotes values in its messages; a hostile one is still cut here, and a
        // URL pasted into the wrong key is redacted.
        problem: crate::redact::shown(&crate::redact::scrub_urls(&error.message)),
        position,
    }
}

/// A typed key path as the tree's steps, up to one that is not a key or an index (a
/// key that is not text; no manifest type is an enum).
fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .map_while(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// `dependencies[0].sha256`, or `(document)` for the document itself.
fn key_of(steps: &[Step]) -> String {
    let mut key = String::new();
    for step in steps {
        match step {
            Step::Key(k) if key.is_empty() => key.push_str(k),
            Step::Key(k) => key.push_str(&format!(".{k}")),
            Step::Index(i) => key.push_str(&format!("[{i}]")),
        }
    }
    if key.is_empty() {
        "(document)".into()
    } else {
        key
    }
}

/// The line and column of the value at `key` (`dependencies[0].sha256`) in `text`, or
/// of the deepest part of that path that is there.
pub fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let document = key == "(document)";
    match crate::yaml::parse(text) {
        Ok(root) if !document => root.map(|root| {
            let node = root.nearest(&crate::yaml::path_steps(key));
            (node.line, node.column)
        }),
        Ok(_) => None,
        Err(e) => document.then_some((e.line, e.column)),
    }
}

/// Gives a manifest error that has no position the line and column of the value its
/// key names in `text`: the checks' errors, and the packager's own about a key.
pub fn with_position(err: Error, text: &str) -> Error {
    match err {
        Error::Manifest {
            path,
            key,
            problem,
            position: None,
        } => Error::Manifest {
            position: key_position(text, &key),
            path,
            key,
            problem,
        },
        other => other,
    }
}

/// Where a manifest's path is reported from.
pub fn manifest_path(buildpack_dir: &Path) -> PathBuf {
    buildpack_dir.join("manifest.yml")
}

/// The buildpack's name as CF users know it: `<language>_buildpack`.
pub fn buildpack_name(manifest: &Manifest) -> String {
    format!("{}_buildpack", manifest.language)
}

/// Reads the buildpack's `VERSION`.
pub fn read_version(buildpack_dir: &Path) -> Result<String, Error> {
    let path = buildpack_dir.join("VERSION");
    let v = read_text(&path, 1024).map_err(|e| Error::BuildpackFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    // A byte order mark too, as in manifest.yml.
    let v = v.trim_start_matches('\u{feff}').trim();
    // It names the zip (a '/' wrote it outside --output) and is printed in the staging
    // log and config.yml (a newline faked a line in both): checked where it is read, as
    // the manifest's strings are.
    if !valid_identifier(v) {
        return Err(Error::Version {
            path,
            value: crate::redact::quoted(v),
        });
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn good() -> String {
        format!(
            r"---
language: sidecar
default_versions:
- name: config-server
  version: 0.1.0
dependencies:
- name: config-server
  version: 0.1.0
  uri: https://releases.example/config-server-0.1.0.tgz
  sha256: {SHA}
  cf_stacks: [cflinuxfs3]
- name: config-server
  version: 0.1.0
  uri: https://releases.example/config-server-0.1.0-fs4.tgz
  sha256: {SHA}
  cf_stacks: [cflinuxfs4]
sidecars:
- name: config-server
  dependency: config-server
  executable: bin/config-server
  memory_mb: 32
"
        )
    }

    fn load(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("/bp/manifest.yml")).map_err(|e| e.to_string())
    }

    #[test]
    fn loads_and_defaults_process_types() {
        let m = load(&good()).expect("good manifest");
        assert_eq!(m.sidecars[0].process_types, vec!["web"]);
        assert_eq!(m.dependencies[0].sha256.to_string(), SHA);
    }

    #[test]
    fn bad_sha_names_the_key() {
        let text = good().replacen(SHA, "abc", 1);
        let err = load(&text).expect_err("bad sha");
        assert!(
            err.starts_with("/bp/manifest.yml: `dependencies[0].sha256`"),
            "{err}"
        );
        assert!(err.contains("64 hex digits"), "{err}");
    }

    /// Splits a trailing ` at line L column C` off a message.
    fn split_location(problem: &str) -> (&str, Option<(usize, usize)>) {
        let parsed = problem.rsplit_once(" at line ").and_then(|(head, tail)| {
            let (line, column) = tail.split_once(" column ")?;
            Some((head, (line.parse().ok()?, column.parse().ok()?)))
        });
        match parsed {
            Some((head, at)) => (head, Some(at)),
            None => (problem, None),
        }
    }

    /// The `at line L column C` a message ends with.
    fn position(err: &str) -> (usize, usize) {
        let (_, at) = split_location(err);
        at.unwrap_or_else(|| panic!("no position in {err}"))
    }

    #[test]
    fn errors_point_at_the_real_line_and_column() {
        // Line 10 holds the first sha256 value, from column 11.
        let err = load(&good().replacen(SHA, "abc", 1)).expect_err("bad sha");
        assert_eq!(position(&err), (10, 11), "{err}");
        let err = load(&good().replace(
            "https://releases.example/config-server-0.1.0-fs4",
            "ftp://x/y",
        ))
        .expect_err("bad uri");
        assert!(err.contains("`dependencies[1].uri`"), "{err}");
        assert_eq!(position(&err), (14, 8), "{err}");
        let err = load(&good().replace("memory_mb: 32", "memory_mb: 32\n  colour: red"))
            .expect_err("unknown key");
        assert_eq!(position(&err), (22, 3), "{err}");
        let err = load(&good().replace("memory_mb: 32", "memory_mb: 0")).expect_err("zero");
        assert_eq!(position(&err), (21, 14), "{err}");
        let err = load(&format!("{}language: again\n", good())).expect_err("duplicate");
        assert_eq!(position(&err), (22, 1), "{err}");
        let err = load(&good().replacen("version: 0.1.0", "version: 9.9.9", 1))
            .expect_err("no such version");
        assert_eq!(position(&err), (4, 3), "{err}");
        let err = load(&good().replace("  executable: bin/config-server\n", ""))
            .expect_err("missing key");
        assert!(err.contains("missing field `executable`"), "{err}");
        assert_eq!(position(&err), (18, 3), "{err}");
        let err = load(&good().replace("language: sidecar", "language: \"sidecar"))
            .expect_err("not YAML");
        assert!(err.contains("`(document)`"), "{err}");
        assert!(err.ends_with("quoted scalar at line 2 column 11"), "{err}");
        // One position per place, even where serde_yaml had its own.
        let err = load(&good().replacen(SHA, "abc", 1)).expect_err("bad sha");
        assert_eq!(err.matches(" at line ").count(), 1, "{err}");
    }

    /// `good()` with a second sidecar whose entry ends with `tail`.
    fn with_second_sidecar(tail: &str) -> String {
        format!(
            "{}- name: other\n  dependency: config-server\n  executable: bin/config-server\n  \
             memory_mb: 8\n{tail}",
            good()
        )
    }

    /// The key an error names, its words, and the line and column it ends with.
    fn parts(err: &str) -> (&str, &str, (usize, usize)) {
        let rest = err.strip_prefix("/bp/manifest.yml: `").expect("the file");
        let (key, rest) = rest.split_once("` ").expect("a key");
        let (problem, at) = split_location(rest);
        (
            key,
            problem,
            at.unwrap_or_else(|| panic!("no position in {err}")),
        )
    }

    #[test]
    fn errors_name_the_typed_key_and_its_place() {
        // A duplicate, nested: the mapping's key, at the second of the two.
        let text = with_second_sidecar("  hold_app:\n    args: [wait]\n    args: [again]\n");
        let err = load(&text).expect_err("duplicate");
        let second = (where_is(&text, "    args: [again]").0, 5);
        assert_eq!(
            parts(&err),
            ("sidecars[1].hold_app", "duplicate field `args`", second)
        );
        let text = good().replacen(
            "  version: 0.1.0\n  uri: https://releases.example/config-server-0.1.0-fs4",
            "  version: 0.1.0\n  version: 0.1.1\n  uri: https://releases.example/config-server-0.1.0-fs4",
            1,
        );
        let err = load(&text).expect_err("duplicate");
        let second = (where_is(&text, "  version: 0.1.1").0, 3);
        assert_eq!(
            parts(&err),
            ("dependencies[1]", "duplicate field `version`", second)
        );
        // An unknown key, nested: the mapping's key, at the unknown one.
        let text = with_second_sidecar("  hold_app:\n    args: [wait]\n    colour: red\n");
        let err = load(&text).expect_err("unknown");
        let (key, problem, at) = parts(&err);
        assert_eq!(
            (key, at),
            ("sidecars[1].hold_app", (where_is(&text, "colour").0, 5))
        );
        assert!(
            problem == "unknown field `colour`, expected `args` or `versions`",
            "{err}"
        );
        // A bad value in the second entry: its own key, at its value.
        let text = good().replacen(
            &format!("{SHA}\n  cf_stacks: [cflinuxfs4]"),
            "abc\n  cf_stacks: [cflinuxfs4]",
            1,
        );
        assert_ne!(text, good());
        let err = load(&text).expect_err("bad sha");
        let (key, problem, at) = parts(&err);
        assert_eq!((key, at), ("dependencies[1].sha256", (15, 11)), "{err}");
        assert!(problem.contains("64 hex digits"), "{err}");
        let text = format!(
            "{}dependency_deprecation_dates:\n- name: config-server\n  version_line: 0.1.x\n  \
             date: 2027-04-01\n- name: config-server\n  version_line: 0.2.x\n  date: 2027-13-01\n",
            good()
        );
        let err = load(&text).expect_err("bad date");
        let (key, problem, at) = parts(&err);
        let (line, column) = where_is(&text, "2027-13-01");
        assert_eq!(
            (key, at),
            ("dependency_deprecation_dates[1].date", (line, column)),
            "{err}"
        );
        assert!(problem.contains("is not a day of the calendar"), "{err}");
    }

    #[test]
    fn a_scalar_is_text_where_text_is_read() {
        // As serde_yaml reads it: a number where a string is asked for is its text.
        let text = good()
            .replace(
                "memory_mb: 32",
                "memory_mb: 32\n  args: [--port, 8080, true]",
            )
            .replace("version: 0.1.0", "version: 1.10");
        let m = load(&text).expect("loads");
        assert_eq!(m.sidecars[0].args, ["--port", "8080", "true"]);
        assert_eq!(m.dependencies[0].version, "1.10");
        // And a wrong value found after one of them is explained in serde's words.
        let err = load(&text.replace("memory_mb: 32", "memory_mb: 1.10")).expect_err("float");
        assert_eq!(
            parts(&err),
            (
                "sidecars[0].memory_mb",
                "invalid type: floating point `1.1`, expected u32",
                (21, 14)
            )
        );
    }

    #[test]
    fn a_wrong_value_before_a_syntax_error_is_named_as_serde_yaml_finds_it() {
        // serde_yaml reads the types as far as the text is YAML: a wrong value before
        // the error is the error, with its key and place.
        let broken = format!("{}include_files: [a\n", good());
        let err = load(&broken.replace("memory_mb: 32", "memory_mb: 32M")).expect_err("both");
        let (key, problem, at) = parts(&err);
        assert_eq!((key, at), ("sidecars[0].memory_mb", (21, 14)), "{err}");
        assert!(problem.starts_with("invalid type: string \"32M\""), "{err}");
        // With none, the syntax error, whole, as libyaml words and places it.
        let err = load(&broken).expect_err("syntax");
        assert!(err.starts_with("/bp/manifest.yml: `(document)` "), "{err}");
        assert!(err.contains(" at line 22 column "), "{err}");
        // An alias bomb under a key the buildpack ignores is never expanded.
        let mut bomb = String::from("bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*b{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("bomb{i}: &b{i} [{refs}]\n"));
        }
        let text = format!("{}{bomb}", good().replace("memory_mb: 32", "memory_mb: x"));
        let err = load(&text).expect_err("wrong");
        assert_eq!(parts(&err).0, "sidecars[0].memory_mb", "{err}");
    }

    #[test]
    fn values_the_two_parsers_read_alike_are_named_as_serde_yaml_finds_them() {
        // A byte order mark inside a value is text to libyaml; the replay reads it so.
        let sha = format!("{}\u{feff}{}", &SHA[..29], &SHA[30..]);
        let err = load(&good().replacen(SHA, &sha, 1)).expect_err("not hex");
        assert_eq!(
            parts(&err),
            (
                "dependencies[0].sha256",
                "'\\u{feff}' at position 29 is not a hex digit",
                (10, 11)
            )
        );
        let err =
            load(&good().replace("memory_mb: 32", "memory_mb: 3\u{feff}2")).expect_err("text");
        assert_eq!(
            parts(&err),
            (
                "sidecars[0].memory_mb",
                "invalid type: string \"3\\u{feff}2\", expected u32",
                (21, 14)
            )
        );
        // An anchor's name that they read apart: serde_yaml's own words, whole, not the
        // replay's of other values.
        let text = good().replacen(
            "- name: config-server\n  version: 0.1.0\n  uri: https://releases.example/config-server-0.1.0-fs4",
            "- &name: config-server\n  version: 0.1.0\n  uri: https://releases.example/config-server-0.1.0-fs4",
            1,
        );
        assert_ne!(text, good());
        let err = load(&text).expect_err("no name");
        assert!(
            err.starts_with("/bp/manifest.yml: `(document)` dependencies[1]: missing field `name`"),
            "{err}"
        );
        // A line break to libyaml, text to saphyr: the value is cut there to serde_yaml.
        let sha = format!("{}\u{2028} {}", &SHA[..10], &SHA[10..]);
        let err = load(&good().replacen(SHA, &sha, 1)).expect_err("two lines");
        assert!(
            err.starts_with(
                "/bp/manifest.yml: `(document)` dependencies[0]: expected 64 hex digits, found \
                 10 characters"
            ),
            "{err}"
        );
        // `?` starts a key in a flow collection to libyaml, a value to saphyr.
        let text = format!(
            "{}sidecars: [?{{name: x}}]\n",
            good().split("sidecars:").next().unwrap_or_default()
        );
        let err = load(&text).expect_err("explicit key");
        assert!(
            err.starts_with("/bp/manifest.yml: `(document)` sidecars[0]: invalid type: map"),
            "{err}"
        );
        // A key whose `:` is on the next line, in a flow mapping: libyaml reads the key
        // with no value (an empty sha256), saphyr with the value after the `:`.
        let text = good().replacen(
            &format!(
                "- name: config-server\n  version: 0.1.0\n  uri: https://releases.example/\
                 config-server-0.1.0.tgz\n  sha256: {SHA}\n"
            ),
            "- {name: config-server, version: 0.1.0, uri: 'https://h/c.tgz', sha256\n    : abc}\n",
            1,
        );
        let err = load(&text).expect_err("no sha256");
        assert!(
            err.starts_with(
                "/bp/manifest.yml: `(document)` dependencies[0]: expected 64 hex digits, found 0"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_block_scalar_is_placed_at_its_indicator() {
        // As serde_yaml places it; an empty one was placed at the key after it.
        for value in ["|\n    32", "|", ">-  # none"] {
            let text = good().replace("memory_mb: 32", &format!("memory_mb: {value}"));
            let err = load(&text).expect_err(value);
            let (key, problem, at) = parts(&err);
            assert_eq!((key, at), ("sidecars[0].memory_mb", (21, 14)), "{err}");
            assert!(problem.starts_with("invalid type: string"), "{err}");
        }
    }

    #[test]
    fn a_key_that_is_no_name_is_placed_at_itself() {
        // The key path ends at the mapping; the place is the key's, not the mapping's.
        for (key, at) in [("[a]", (22, 3)), ("{a: b}", (22, 3))] {
            let text = good().replace("memory_mb: 32", &format!("memory_mb: 32\n  {key}: x"));
            let err = load(&text).expect_err(key);
            let (path, problem, place) = parts(&err);
            assert_eq!((path, place), ("sidecars[0]", at), "{err}");
            assert!(problem.ends_with("expected field identifier"), "{err}");
        }
    }

    /// Mutated manifests, a few thousand, for at most about two seconds: no panic; every
    /// error is the manifest's, shown safely, with one position at most and none hidden
    /// in its words; no credential of a URL pasted in; and where the error names a key,
    /// it is serde_yaml's key, in serde_yaml's words (where nothing was escaped or cut).
    #[test]
    fn mutated_manifests_are_refused_safely_in_serde_yamls_terms() {
        const PIECES: &[&str] = &[
            ":", "-", " ", "\t", "[", "]", "{", "}", ",", "#", "'", "\"", "&a ", "*a", "&a:",
            "!!str ", "!!int ", "!foo ", ">-\n", "?", "~", "\n", "\r\n", "\n  ", "\n- ", "---\n",
            "...\n", "<<: *a\n", "x", "1", "-1", "0x10", "1.5", "null", "é", "\u{feff}",
            "\u{202e}", "\\n", "\u{2028}", "\u{85}",
        ];
        // Longer: a value, a line, a URL with credentials.
        const LONG: &[&str] = &[
            "|\n    x\n",
            "\u{1b}[31m",
            "[a]: b\n  ",
            "colour: red\n  ",
            "https://u:pw-secret@h/x?sig=tok-secret",
        ];
        let base = format!(
            "{}  hold_app: {{args: [wait]}}\ninclude_files: [a, b]\n\
             dependency_deprecation_dates:\n- name: config-server\n  version_line: 0.1.x\n  \
             date: 2027-04-01\n",
            good()
        );
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut below = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pieces = [PIECES, LONG].concat();
        let started = std::time::Instant::now();
        for _ in 0..5_000 {
            if started.elapsed() > std::time::Duration::from_secs(2) {
                break;
            }
            let mut text = base.clone();
            for _ in 0..=below(3) {
                let mut at = below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + below(5)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                let piece = if below(3) == 0 {
                    ""
                } else {
                    pieces[below(pieces.len())]
                };
                text.replace_range(at..end, piece);
            }
            let Err(e) = Manifest::parse(&text, Path::new("/bp/manifest.yml")) else {
                continue;
            };
            let message = e.to_string();
            let Error::Manifest {
                key,
                problem,
                position,
                ..
            } = &e
            else {
                panic!("not a manifest error: {message}\n{text:?}");
            };
            let at_lines = message.matches(" at line ").count();
            assert!(position.is_none() || at_lines == 1, "{message}\n{text:?}");
            assert!(
                !message.chars().any(crate::redact::is_unsafe),
                "{message:?}"
            );
            // Where the mutations left a credential whole.
            for (written, secret) in [
                ("u:pw-secret@", "pw-secret"),
                ("?sig=tok-secret", "tok-secret"),
            ] {
                assert!(
                    !text.contains(written) || !message.contains(secret),
                    "{message}\n{text:?}"
                );
            }
            if key == "(document)" {
                continue;
            }
            let theirs = serde_path_to_error::deserialize::<_, Manifest>(
                serde_yaml::Deserializer::from_str(&text),
            );
            let Err(theirs) = theirs else {
                continue; // refused by a check, not by serde_yaml
            };
            assert!(position.is_some(), "{message}\n{text:?}");
            let words = theirs.inner().to_string();
            assert!(
                theirs.path().to_string().starts_with(key.as_str()),
                "{words} / {message}"
            );
            let untouched = !problem.contains(['\\', '…', '*']);
            assert!(
                !untouched || words.contains(problem.as_str()),
                "{words} / {message}\n{text:?}"
            );
        }
    }

    #[test]
    fn a_version_line_quoted_in_a_message_is_redacted_and_cut() {
        let url = "https://u:pw-secret@h/x?sig=tok-secret";
        let hold = |versions: &str| {
            good().replace(
                "memory_mb: 32",
                &format!("memory_mb: 32\n  hold_app: {{args: [wait], versions: '{versions}'}}"),
            )
        };
        let deprecated = |line: &str| {
            format!(
                "{}dependency_deprecation_dates:\n- name: config-server\n  version_line: \
                 '{line}'\n  date: 2027-04-01\n",
                good()
            )
        };
        for (text, key) in [
            (
                hold(&format!("0.1.x-{url}")),
                "sidecars[0].hold_app.versions",
            ),
            (
                deprecated(&format!("0.1.x-{url}")),
                "dependency_deprecation_dates[0].version_line",
            ),
        ] {
            let err = load(&text).expect_err(key);
            assert_eq!(parts(&err).0, key, "{err}");
            assert!(!err.contains("secret"), "{err}");
            assert!(err.contains("https://***@h/x?***"), "{err}");
        }
        let long = format!("0.1.x-{}a!", "a.".repeat(1000));
        for text in [hold(&long), deprecated(&long)] {
            let err = load(&text).expect_err("long");
            assert!(err.len() < 600, "{} characters: {err:.300}", err.len());
        }
    }

    #[test]
    fn a_position_is_added_only_where_there_is_none() {
        let error = |position| Error::Manifest {
            path: "/bp/manifest.yml".into(),
            key: "sidecars[0].memory_mb".into(),
            problem: "bad".into(),
            position,
        };
        let placed = |e: Error| match e {
            Error::Manifest { position, .. } => position,
            other => panic!("{other:?}"),
        };
        assert_eq!(placed(with_position(error(None), &good())), Some((21, 14)));
        assert_eq!(
            placed(with_position(error(Some((1, 1))), &good())),
            Some((1, 1))
        );
        assert_eq!(key_position(&good(), "(document)"), None);
        assert_eq!(key_position("a: [", "(document)"), Some((2, 1)));
    }

    #[test]
    fn unknown_default_version_fails() {
        let err = load(&good().replacen("version: 0.1.0", "version: 9.9.9", 1)).expect_err("bad");
        assert!(err.contains("`default_versions[0]`"), "{err}");
        assert!(err.contains("config-server 9.9.9"), "{err}");
    }

    #[test]
    fn sidecar_naming_missing_dependency_fails() {
        let err = load(&good().replace("dependency: config-server", "dependency: nope"))
            .expect_err("bad");
        assert!(err.contains("`sidecars[0].dependency`"), "{err}");
    }

    #[test]
    fn invalid_yaml_and_wrong_types_fail() {
        assert!(load("language: [").is_err());
        let err = load(&good().replace("memory_mb: 32", "memory_mb: 32M")).expect_err("bad");
        assert!(err.contains("sidecars[0].memory_mb"), "{err}");
        let err = load(&good().replace("memory_mb: 32", "memory_mb: 0")).expect_err("bad");
        assert!(err.contains("whole number of MB"), "{err}");
        let err = load(&good().replace("https://releases", "ftp://releases")).expect_err("bad");
        assert!(
            err.contains("dependencies[0].uri") && err.contains("ftp"),
            "{err}"
        );
    }

    #[test]
    fn executable_names_are_safe_and_distinct() {
        let err = load(&good().replace("bin/config-server", "bin/$(reboot)")).expect_err("bad");
        assert!(
            err.contains("`sidecars[0].executable` must end in a file name"),
            "{err}"
        );
        let two = format!(
            "{}- name: other\n  dependency: config-server\n  executable: lib/config-server\n  memory_mb: 8\n",
            good()
        );
        let err = load(&two).expect_err("clash");
        assert!(
            err.contains("`sidecars[1].executable` installs as bin/config-server"),
            "{err}"
        );
        let same = two.replace("lib/config-server", "bin/config-server");
        assert!(load(&same).is_ok(), "one binary may serve two sidecars");
    }

    #[test]
    fn sidecar_names_that_share_a_settings_prefix_clash() {
        let with = |second: &str| {
            format!(
                "{}- name: {second}\n  dependency: config-server\n  executable: bin/config-server\n  memory_mb: 8\n",
                good()
            )
        };
        for clash in [
            "config-server",
            "config_server",
            "CONFIG-SERVER",
            "Config_Server",
        ] {
            let err = load(&with(clash)).expect_err(clash);
            assert!(
                err.starts_with("/bp/manifest.yml: `sidecars[1].name` "),
                "{clash}: {err}"
            );
            if clash != "config-server" {
                assert!(
                    err.contains(&format!(
                        "{clash:?} clashes with \"config-server\" (sidecars[0]): both would read \
                         the app's settings from SIDECAR_BUILDPACK_CONFIG_SERVER_*"
                    )),
                    "{err}"
                );
            }
        }
        for distinct in [
            "config-server2",
            "config--server",
            "configserver",
            "server-config",
        ] {
            assert!(load(&with(distinct)).is_ok(), "{distinct}");
        }
        // Among three, the first clashing pair is named.
        let three = format!(
            "{}- name: b\n  dependency: config-server\n  executable: bin/config-server\n  memory_mb: 8\n",
            with("other")
        )
        .replace("- name: b\n", "- name: OTHER\n");
        let err = load(&three).expect_err("three");
        assert!(
            err.contains("`sidecars[2].name` \"OTHER\" clashes with \"other\" (sidecars[1])"),
            "{err}"
        );
    }

    #[test]
    fn strings_for_paths_and_log_lines_are_checked() {
        for (from, to, key) in [
            (
                "- name: config-server\n  version: 0.1.0\n  uri",
                "- name: /../../../escape-dep\n  version: 0.1.0\n  uri",
                "dependencies[0].name",
            ),
            (
                "- name: config-server\n  version: 0.1.0\n  uri",
                "- name: \"config-server\\n-----> Fake\"\n  version: 0.1.0\n  uri",
                "dependencies[0].name",
            ),
            (
                "- name: config-server\n  version: 0.1.0\n  uri",
                "- name: config-server\n  version: \"0.1.0\\r-----> Fake\"\n  uri",
                "dependencies[0].version",
            ),
            (
                "- name: config-server\n  version: 0.1.0\ndependencies",
                "- name: ..\n  version: 0.1.0\ndependencies",
                "default_versions[0].name",
            ),
            (
                "[cflinuxfs3]",
                "[\"cflinuxfs3\\n\"]",
                "dependencies[0].cf_stacks[0]",
            ),
            (
                "memory_mb: 32",
                "memory_mb: 32\n  args: [\"ok\", \"a\\nb\"]",
                "sidecars[0].args[1]",
            ),
            (
                "executable: bin/config-server",
                "executable: \"bi\\u001bn/config-server\"",
                "sidecars[0].executable",
            ),
        ] {
            let text = good().replacen(from, to, 1);
            assert_ne!(text, good(), "{to}");
            let err = load(&text).expect_err(to);
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
            assert!(!err.contains('\n') && !err.contains('\r'), "{err}");
        }
        let ok = good().replace("version: 0.1.0", "version: 1.2.3+build.7~rc_1");
        assert!(load(&ok).is_ok());
    }

    /// Line and column (1-based) where `needle` starts in `text`.
    fn where_is(text: &str, needle: &str) -> (usize, usize) {
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in text"));
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        (text[..at].matches('\n').count() + 1, at - line_start + 1)
    }

    #[test]
    fn deprecation_dates_are_typed_at_load() {
        let with = |entries: &str| format!("{}dependency_deprecation_dates:\n{entries}", good());
        let m = load(&with(
            "- name: config-server\n  version_line: 0.1.x\n  date: 2027-04-01\n  \
             link: https://example.com/eol\n  match: ignored, as libbuildpack ignores it\n\
             - name: retired-agent\n  version_line: '>= 1.0, < 2.0'\n  date: \"2026-01-31\"\n  link: ''\n",
        ))
        .expect("loads");
        let e = &m.dependency_deprecation_dates;
        assert_eq!(
            (e[0].date.to_string(), e[0].link.as_deref()),
            ("2027-04-01".into(), Some("https://example.com/eol"))
        );
        assert_eq!(
            (e[1].version_line.as_str(), e[1].link.as_deref()),
            (">= 1.0, < 2.0", None)
        );
        assert!(
            load(&format!("{}dependency_deprecation_dates:\n", good())).is_ok(),
            "empty"
        );

        for (entry, key, value, why) in [
            (
                "  version_line: 0.1.x\n  date: 2027-4-1\n",
                "date",
                "2027-4-1",
                "must be a date written as YYYY-MM-DD",
            ),
            (
                "  version_line: 0.1.x\n  date: 2027-02-30\n",
                "date",
                "2027-02-30",
                "is not a day of the calendar",
            ),
            (
                "  version_line: latest\n  date: 2027-04-01\n",
                "version_line",
                "latest",
                "must be a semver range such as 0.1.x",
            ),
            (
                "  version_line: 0.1.x 0.2.x\n  date: 2027-04-01\n",
                "version_line",
                "0.1.x 0.2.x",
                "separate comparators with ','",
            ),
            (
                "  version_line: ''\n  date: 2027-04-01\n",
                "version_line",
                "''",
                "empty comparator",
            ),
            (
                "  version_line: 0.1.x\n  date: 2027-04-01\n  link: ftp://x/y\n",
                "link",
                "ftp://x/y",
                "must be an https:// or http:// URL",
            ),
            (
                "  version_line: 0.1.x\n  date: 2027-04-01\n  link: \"https://x/\\n-----> Fake\"\n",
                "link",
                "\"https",
                "must be an https:// or http:// URL",
            ),
            // Trimmed, these are ranges; printed as written, they would break the
            // warning's line or flood the log.
            (
                "  version_line: \"0.1.x\\n\"\n  date: 2027-04-01\n",
                "version_line",
                "\"0.1.x",
                "must not hold control characters",
            ),
            (
                "  version_line: \"\\u2028 0.1.x\"\n  date: 2027-04-01\n",
                "version_line",
                "\"\\u2028",
                "must not hold control characters",
            ),
            (
                &format!(
                    "  version_line: 0.1.x{}\n  date: 2027-04-01\n",
                    " || 0.1.x".repeat(500)
                ),
                "version_line",
                "0.1.x ||",
                "or be longer than 4096 characters",
            ),
        ] {
            let text = with(&format!("- name: config-server\n{entry}"));
            let err = load(&text).expect_err(entry);
            let (line, column) = where_is(&text, &format!("{key}: {value}"));
            let column = column + key.len() + 2;
            assert!(
                err.starts_with(&format!(
                    "/bp/manifest.yml: `dependency_deprecation_dates[0].{key}` "
                )),
                "{err}"
            );
            assert!(err.contains(why), "{entry}: {err}");
            assert_eq!(position(&err), (line, column), "{err}");
        }
        for (entry, key) in [
            (
                "- version_line: 0.1.x\n  date: 2027-04-01\n",
                "missing field `name`",
            ),
            (
                "- name: config-server\n  date: 2027-04-01\n",
                "missing field `version_line`",
            ),
            (
                "- name: config-server\n  version_line: 0.1.x\n",
                "missing field `date`",
            ),
            (
                "- name: ../x\n  version_line: 0.1.x\n  date: 2027-04-01\n",
                "`dependency_deprecation_dates[0].name`",
            ),
            (
                "- name: config-server\n  version_line: 0.1.x\n  date: 20270401\n",
                "dependency_deprecation_dates[0].date",
            ),
        ] {
            let err = load(&with(entry)).expect_err(entry);
            assert!(err.contains(key), "{entry}: {err}");
            assert!(err.contains(" at line "), "{err}");
        }
        // libbuildpack's keys and `match:` only: a misspelt key is named where it is.
        for (typo, column) in [("lnk", 3), ("version-line", 3), ("Date", 3)] {
            let text = with(&format!(
                "- name: config-server\n  version_line: 0.1.x\n  date: 2027-04-01\n  {typo}: x\n"
            ));
            let err = load(&text).expect_err(typo);
            assert!(
                err.starts_with(&format!(
                    "/bp/manifest.yml: `dependency_deprecation_dates[0]` unknown field `{typo}`"
                )),
                "{err}"
            );
            assert_eq!(position(&err), (where_is(&text, typo).0, column), "{err}");
        }
        // A line that is not a range is kept only for a version that is not semver,
        // which libbuildpack compares as text.
        let odd = good().replace("0.1.0", "0.1.0_7");
        let text = format!("{odd}dependency_deprecation_dates:\n- name: config-server\n  version_line: 0.1.0_7\n  date: 2027-04-01\n");
        assert!(load(&text).is_ok(), "{:?}", load(&text));
        let err = load(&text.replace("version_line: 0.1.0_7", "version_line: 0.1.0_8"))
            .expect_err("no such version");
        assert!(
            err.contains("`dependency_deprecation_dates[0].version_line` must be a semver range"),
            "{err}"
        );
    }

    #[test]
    fn a_stack_without_a_build_lists_the_stacks_the_buildpack_has() {
        let two = format!(
            "{}- name: other\n  dependency: agent\n  executable: bin/agent\n  memory_mb: 8\n",
            good().replace(
                "dependencies:\n",
                &format!("- name: agent\n  version: 1.0.0\ndependencies:\n- name: agent\n  version: 1.0.0\n  uri: https://h/agent.tgz\n  sha256: {SHA}\n  cf_stacks: [cflinuxfs4, cflinuxfs5]\n"),
            )
        );
        let m = load(&two).expect("loads");
        assert_eq!(
            m.stacks(),
            ["cflinuxfs4"],
            "only where every sidecar has a build"
        );
        match m.pick("config-server", Some("cflinuxfs5")) {
            Err(Error::UnsupportedStack {
                buildpack,
                supported,
                ..
            }) => {
                assert_eq!(buildpack, "sidecar_buildpack");
                assert_eq!(supported, ["cflinuxfs4"]);
            }
            other => panic!("expected unsupported stack, got {other:?}"),
        }
    }

    #[test]
    fn a_buildpack_packaged_for_one_stack_stages_only_there() {
        // One build for every stack, as the repo's own manifest has; the zip made with
        // --stack cflinuxfs4 says `stack: cflinuxfs4`.
        let text = format!(
            "{}stack: cflinuxfs4\n",
            good().replace("[cflinuxfs4]", "[cflinuxfs4, cflinuxfs5]")
        );
        let m = load(&text).expect("loads");
        assert_eq!(m.stacks(), ["cflinuxfs4"]);
        assert!(m.pick("config-server", Some("cflinuxfs4")).is_ok());
        assert!(m.pick("config-server", None).is_ok(), "a local run");
        for other in ["cflinuxfs5", "cflinuxfs3"] {
            match m.pick("config-server", Some(other)) {
                Err(Error::UnsupportedStack { supported, .. }) => {
                    assert_eq!(supported, ["cflinuxfs4"], "{other}");
                }
                got => panic!("{other}: expected unsupported stack, got {got:?}"),
            }
        }
    }

    #[test]
    fn picks_by_stack() {
        let m = load(&good()).expect("good");
        let fs4 = m.pick("config-server", Some("cflinuxfs4")).expect("fs4");
        assert!(fs4.uri.as_str().ends_with("-fs4.tgz"));
        assert!(m.pick("config-server", None).is_ok());
        match m.pick("config-server", Some("windows")) {
            Err(Error::UnsupportedStack {
                stack, supported, ..
            }) => {
                assert_eq!(stack, "\"windows\"");
                assert_eq!(supported, vec!["cflinuxfs3", "cflinuxfs4"]);
            }
            other => panic!("expected unsupported stack, got {other:?}"),
        }
    }

    #[test]
    fn relative_paths() {
        assert!(relative_inside("bin/config-server"));
        for bad in ["", "/abs", "a/../b", "./a", "a//b", ".."] {
            assert!(!relative_inside(bad), "{bad}");
        }
    }

    #[test]
    fn basenames() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert_eq!(basename(&u("https://h/a/b.tgz?x=1")), Some("b.tgz".into()));
        assert_eq!(basename(&u("https://h/a/")), None);
        assert_eq!(basename(&u("file:///srv/c%20d")), Some("c d".into()));
    }
}
