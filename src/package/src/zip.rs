//! `package zip`: makes `<language>_buildpack[-cached][-<stack>]-v<VERSION>.zip`, the zip
//! an operator uploads with `cf create-buildpack`. It reads the manifest and fetches
//! dependencies with the same code `supply` uses, so a cached zip holds exactly what
//! supply would have verified. `package dev` lays out the same files as a directory.

use crate::edit::{Editor, Refused, Value};
use crate::errors::PackError;
use crate::pin::{check_result, refusal, spans};
use buildpack::digest::copy_hashed;
use buildpack::download::download;
use buildpack::errors::Error;
use buildpack::fsutil::read_text;
use buildpack::manifest::{
    basename, buildpack_name, key_position, read_version, relative_inside, Dependency, Manifest,
    MAX_MANIFEST_BYTES,
};
use buildpack::settings::Env;
use buildpack::transport::Fetcher;
use buildpack::verify::{copy_verified, Verified};
use buildpack::{detail, step};
use md5::{Digest, Md5};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;

/// What to package.
pub(crate) struct ZipArgs<'a> {
    pub root: &'a Path,
    pub supply: &'a Path,
    pub cached: bool,
    pub stack: Option<&'a str>,
    pub output: &'a Path,
    pub artifact_dirs: &'a [PathBuf],
}

/// A file of the buildpack: where it comes from and its mode.
pub(crate) struct Item {
    pub source: PathBuf,
    pub mode: u32,
}

pub(crate) fn run(args: &ZipArgs<'_>, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let manifest_file = args.root.join("manifest.yml");
    let text = read(&manifest_file)?;
    let manifest = Manifest::parse(&text, &manifest_file)?;
    let version = read_version(args.root)?;
    // A zip for a stack that some sidecar has no build for would fail every staging.
    for sidecar in &manifest.sidecars {
        manifest.pick(&sidecar.dependency, args.stack)?;
    }
    let zip_name = format!(
        "{}{}{}-v{version}.zip",
        buildpack_name(&manifest),
        if args.cached { "-cached" } else { "" },
        args.stack.map(|s| format!("-{s}")).unwrap_or_default()
    );
    step!("Packaging {zip_name}");
    fs::create_dir_all(args.output).map_err(Error::write(args.output))?;
    let work = WorkDir::new(args.output)?;

    let deps: Vec<(usize, &Dependency)> = manifest
        .dependencies
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            args.stack
                .is_none_or(|s| d.cf_stacks.iter().any(|c| c == s))
        })
        .collect();

    // Every file and edit is checked before the first download: the packaged manifest
    // without `file:` entries now, with them once the dependencies are cached.
    let uncached = packaged_manifest(
        &text,
        &manifest_file,
        &manifest,
        args.stack,
        &HashMap::new(),
    )?;
    let mut items = contents(
        args.root,
        &text,
        &manifest,
        args.supply,
        &uncached,
        work.path(),
    )?;

    if args.cached {
        // With its `file:` entries, known before any download: a manifest they take
        // over the cap is refused before the first one.
        let files: HashMap<usize, String> =
            deps.iter().map(|(i, dep)| (*i, cached_path(dep))).collect();
        let packaged = packaged_manifest(&text, &manifest_file, &manifest, args.stack, &files)?;
        let net = Env(env).network()?;
        let fetcher = Fetcher::new(&net);
        for (i, dep) in &deps {
            step!("Caching {}", dep.id());
            let verified = fetch_dependency(&fetcher, dep, args.artifact_dirs, work.path())?;
            let rel = &files[i];
            let kept = work.path().join(format!("dep-{i}"));
            verified
                .file
                .persist(&kept)
                .map_err(|e| Error::write(&kept)(e.error))?;
            detail!("{} ({} bytes, sha256 {})", rel, verified.bytes, dep.sha256);
            items.insert(
                rel.clone(),
                Item {
                    source: kept,
                    mode: 0o644,
                },
            );
        }
        let path = work.path().join("manifest.yml");
        fs::write(&path, packaged).map_err(Error::write(&path))?;
    }
    let dest = args.output.join(&zip_name);
    write_zip(&items, work.path(), &dest)?;
    summary(&dest, &deps, args.cached)?;
    Ok(())
}

/// Reads a manifest as supply does: a regular file (a FIFO would hang the tool), at
/// most the 1 MB Cloud Controller accepts.
pub(crate) fn read(path: &Path) -> anyhow::Result<String> {
    let text = read_text(path, MAX_MANIFEST_BYTES).map_err(|e| Error::BuildpackFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(text)
}

/// The buildpack's files by their path in the buildpack: `include_files` from `root`,
/// with `bin/supply` the compiled `supply` and `manifest.yml` the packaged text
/// (written into `work`). Every entry must be a file inside `root`.
pub(crate) fn contents(
    root: &Path,
    text: &str,
    manifest: &Manifest,
    supply: &Path,
    packaged: &str,
    work: &Path,
) -> anyhow::Result<BTreeMap<String, Item>> {
    let place = |key: &str| key_position(text, key);
    listed(root, manifest, supply, (packaged, work), &place)
}

/// `contents`, with `place` finding the line and column of a key of the manifest: it
/// parses the whole text, so it is asked once, for the error, never for each entry (a
/// manifest near 1 MiB may list tens of thousands).
fn listed(
    root: &Path,
    manifest: &Manifest,
    supply: &Path,
    (packaged, work): (&str, &Path),
    place: &dyn Fn(&str) -> Option<(usize, usize)>,
) -> anyhow::Result<BTreeMap<String, Item>> {
    let manifest_file = root.join("manifest.yml");
    let packaged_path = work.join("manifest.yml");
    fs::write(&packaged_path, packaged).map_err(Error::write(&packaged_path))?;
    let real_root = root.canonicalize().map_err(|e| Error::BuildpackFile {
        path: root.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut items = BTreeMap::new();
    for (i, name) in manifest.include_files.iter().enumerate() {
        let position = || place(&format!("include_files[{i}]"));
        // Checked before anything is read: the zip holds only the buildpack's files.
        let outside = |problem| PackError::IncludeOutside {
            manifest: manifest_file.clone(),
            entry: name.clone(),
            problem,
            position: position(),
        };
        if !relative_inside(name) {
            let escapes = name.starts_with('/') || name.split('/').any(|c| c == "..");
            return Err(outside(if escapes {
                "is outside the buildpack"
            } else {
                "must be a plain relative path (no empty or '.' part, no trailing '/')"
            })
            .into());
        }
        let source = match name.as_str() {
            "manifest.yml" => packaged_path.clone(),
            "bin/supply" => supply.to_path_buf(),
            // The standard packager's copy of the compiled supply: here it *is* bin/supply.
            "bin/supply-linux-x86_64" => continue,
            _ => {
                let path = root.join(name);
                let missing = |reason: String| PackError::IncludeMissing {
                    manifest: manifest_file.clone(),
                    entry: name.clone(),
                    path: path.clone(),
                    reason,
                    position: position(),
                };
                // A symlink in the checkout may not lead out of it.
                let real = path.canonicalize().map_err(|e| missing(e.to_string()))?;
                if !real.starts_with(&real_root) {
                    return Err(
                        outside("is outside the buildpack (a symlink leads out of it)").into(),
                    );
                }
                if !real.is_file() {
                    return Err(missing("not a regular file".into()).into());
                }
                real
            }
        };
        if !source.is_file() {
            return Err(Error::BuildpackFile {
                path: source,
                reason: format!("{} lists {name} in include_files", manifest_file.display()),
            }
            .into());
        }
        let mode = if name.starts_with("bin/") {
            0o755
        } else {
            0o644
        };
        items.insert(name.clone(), Item { source, mode });
    }
    for required in [
        "bin/supply",
        "bin/detect",
        "bin/compile",
        "manifest.yml",
        "VERSION",
    ] {
        if !items.contains_key(required) {
            return Err(Error::Manifest {
                path: manifest_file.clone(),
                key: "include_files".into(),
                problem: format!("must list {required}"),
                position: place("include_files"),
            }
            .into());
        }
    }
    Ok(items)
}

/// Takes a dependency from the first artifact dir that holds a file of its name and
/// the right digest, else downloads it; either way verified against the pin.
fn fetch_dependency(
    fetcher: &Fetcher<'_>,
    dep: &Dependency,
    dirs: &[PathBuf],
    work: &Path,
) -> anyhow::Result<Verified> {
    let name = basename(&dep.uri).unwrap_or_else(|| dep.name.clone());
    for dir in dirs {
        let candidate = dir.join(&name);
        if candidate.is_file() {
            match copy_verified(&candidate, dep, work) {
                Ok(v) => {
                    detail!("Using {} (sha256 matches the pin)", candidate.display());
                    return Ok(v);
                }
                Err(e @ Error::Write { .. }) => return Err(e.into()),
                Err(e) => tracing::warn!("not using {}: {e}", candidate.display()),
            }
        }
    }
    Ok(download(fetcher, dep, work)?)
}

/// `dependencies/<md5 hex of the exact uri>/<basename>`, where CF tools expect it.
fn cached_path(dep: &Dependency) -> String {
    let md5: String = Md5::digest(dep.uri_text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = basename(&dep.uri).unwrap_or_else(|| dep.name.clone());
    format!("dependencies/{md5}/{name}")
}

/// The manifest as packaged, edited by span so that its comments stay: `stack:` with
/// --stack (and only that stack's dependencies), and `file:` on each cached one. It
/// must load as exactly that change of the source manifest.
pub(crate) fn packaged_manifest(
    text: &str,
    path: &Path,
    manifest: &Manifest,
    stack: Option<&str>,
    files: &HashMap<usize, String>,
) -> anyhow::Result<String> {
    let mut expected = manifest.clone();
    for (i, d) in expected.dependencies.iter_mut().enumerate() {
        d.file = files.get(&i).cloned();
    }
    expected
        .dependencies
        .retain(|d| stack.is_none_or(|s| d.cf_stacks.iter().any(|c| c == s)));
    expected.stack = stack.map(str::to_string);

    let root = spans(text, path)?;
    let mut ed = Editor::new(text);
    let refused = |key: String| move |r: Refused| refusal(path, text, &key, "packaged", r);
    if let Some((key, seq)) = root.entries_named("dependencies").first().copied() {
        let keep = |d: &Dependency| stack.is_none_or(|s| d.cf_stacks.iter().any(|c| c == s));
        if expected.dependencies.is_empty() && !manifest.dependencies.is_empty() {
            ed.replace_value(key, seq, &Value::Items(vec![]))
                .map_err(refused("dependencies".into()))?;
        }
        for (i, dep) in manifest.dependencies.iter().enumerate() {
            let Some(node) = seq.items().get(i) else {
                break;
            };
            if !keep(dep) {
                if !expected.dependencies.is_empty() {
                    ed.remove_item(seq, i)
                        .map_err(refused(format!("dependencies[{i}]")))?;
                }
                continue;
            }
            let Some(file) = files.get(&i) else { continue };
            match node.entries_named("file").first().copied() {
                Some((_, value)) => ed.set_scalar(value, file),
                None => ed.insert_entry(node, "file", &Value::Scalar(file.clone())),
            }
            .map_err(refused(format!("dependencies[{i}]")))?;
        }
    }
    match (root.entries_named("stack").first().copied(), stack) {
        (Some((_, value)), Some(s)) => ed.set_scalar(value, s),
        (Some((key, value)), None) => ed.remove_entry(key, value),
        (None, Some(s)) => ed.insert_entry(&root, "stack", &Value::Scalar(s.to_string())),
        (None, None) => Ok(()),
    }
    .map_err(refused("stack".into()))?;
    let packaged = ed
        .finish()
        .map_err(|r| refusal(path, text, "(document)", "packaged", r))?;

    // What supply will read must load as planned, with a build of every sidecar.
    check_result(&packaged, path, "packaging", &expected)?;
    for sidecar in &expected.sidecars {
        expected.pick(&sidecar.dependency, stack)?;
    }
    Ok(packaged)
}

/// A work directory in the output directory (so the zip's rename stays on one
/// filesystem), locked while a run uses it. A run killed with SIGKILL leaves its
/// directory behind unlocked; the next run in that directory removes it.
pub(crate) struct WorkDir {
    dir: TempDir,
    _lock: File,
}

const WORK_PREFIX: &str = ".package-";

impl WorkDir {
    pub(crate) fn new(output: &Path) -> anyhow::Result<WorkDir> {
        sweep(output);
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix(WORK_PREFIX)
                .tempdir_in(output)
                .map_err(Error::write(output))?;
            let lock = File::open(dir.path()).map_err(Error::write(dir.path()))?;
            lock.lock().map_err(Error::write(dir.path()))?;
            // A sweep in another run may have taken it between mkdir and lock.
            let ours = fs::metadata(dir.path())
                .ok()
                .zip(lock.metadata().ok())
                .is_some_and(|(path, locked)| path.ino() == locked.ino() && locked.nlink() > 0);
            if ours {
                return Ok(WorkDir { dir, _lock: lock });
            }
        }
        Err(Error::write(output)(io::Error::other(
            "another run keeps removing the work directory",
        ))
        .into())
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the work directories of runs that no longer hold their lock.
fn sweep(output: &Path) {
    let Ok(entries) = fs::read_dir(output) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(WORK_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !ours {
            continue;
        }
        if let Ok(dir) = File::open(&path) {
            if dir.try_lock().is_ok() {
                detail!("Removing {}, left by a run that was killed", path.display());
                if let Err(e) = fs::remove_dir_all(&path) {
                    tracing::warn!("could not remove {}: {e}", path.display());
                }
            }
        }
    }
}

/// Passes writes through until one fails, then only counts the rest. The zip library
/// finishes the archive again when it is dropped after an error and prints that
/// failure to stderr, into the middle of the `**ERROR**` block; here that second
/// attempt writes nothing, fails nothing and prints nothing (positions stay
/// consistent, as the library checks them). The first error is the one reported.
struct Sticky<W> {
    inner: W,
    failed: bool,
    pos: u64,
    end: u64,
}

impl<W> Sticky<W> {
    fn new(inner: W) -> Self {
        Sticky {
            inner,
            failed: false,
            pos: 0,
            end: 0,
        }
    }

    fn moved(&mut self, pos: u64) -> u64 {
        self.pos = pos;
        self.end = self.end.max(pos);
        pos
    }
}

impl<W: Write> Write for Sticky<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed {
            self.moved(self.pos + buf.len() as u64);
            return Ok(buf.len());
        }
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.moved(self.pos + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl<W: Seek> Seek for Sticky<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        if self.failed {
            let pos = match to {
                SeekFrom::Start(p) => p,
                SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
                SeekFrom::End(d) => self.end.saturating_add_signed(d),
            };
            return Ok(self.moved(pos));
        }
        let pos = self.inner.seek(to).inspect_err(|_| self.failed = true)?;
        Ok(self.moved(pos))
    }
}

/// Writes the zip with sorted entries, fixed timestamps and Unix modes, through a
/// temp file renamed into place, so a failure leaves no zip.
fn write_zip(items: &BTreeMap<String, Item>, work: &Path, dest: &Path) -> anyhow::Result<()> {
    let failed = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(e) => Error::write(dest)(e),
        other => Error::write(dest)(io::Error::other(other)),
    };
    // 0666 less the umask, as `zip` and any build output are created: the zip is for
    // `cf create-buildpack`, not a secret (tempfile's default is 0600).
    let tmp = tempfile::Builder::new()
        .prefix(".zip-")
        .suffix(".partial")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(work)
        .map_err(Error::write(work))?;
    let mut zip = zip::ZipWriter::new(Sticky::new(BufWriter::new(tmp)));
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (name, item) in items {
        zip.start_file(name.as_str(), base.unix_permissions(item.mode))
            .map_err(failed)?;
        let mut src = File::open(&item.source).map_err(|e| Error::BuildpackFile {
            path: item.source.clone(),
            reason: e.to_string(),
        })?;
        io::copy(&mut src, &mut zip).map_err(Error::write(dest))?;
    }
    let sticky = zip.finish().map_err(failed)?;
    if sticky.failed {
        // The library returns the first error; should it ever swallow one, keep no zip.
        return Err(Error::write(dest)(io::Error::other("a write failed while zipping")).into());
    }
    let tmp = sticky
        .inner
        .into_inner()
        .map_err(|e| Error::write(dest)(e.into_error()))?;
    // A temp file is 0600; the zip is for others to read (an upload job, a web server).
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(Error::write(dest))?;
    tmp.as_file().sync_all().map_err(Error::write(dest))?;
    tmp.persist(dest).map_err(|e| Error::write(dest)(e.error))?;
    Ok(())
}

fn summary(zip: &Path, deps: &[(usize, &Dependency)], cached: bool) -> anyhow::Result<()> {
    let mut f = File::open(zip)?;
    let (digest, size, _) = copy_hashed(&mut f, io::sink())?;
    step!("Packaged {}", zip.display());
    detail!("size:   {size} bytes");
    detail!("sha256: {digest}");
    for (_, d) in deps {
        detail!(
            "{} {} [{}] {}",
            d.name,
            d.version,
            d.cf_stacks.join(", "),
            if cached {
                "cached"
            } else {
                "not cached (downloaded at staging)"
            }
        );
    }
    let mut out = io::stdout();
    writeln!(out, "zip: {}", zip.display())?;
    Ok(())
}

/// True for a directory that `package dev` may fill: missing, or empty.
pub(crate) fn is_free(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Lays the items out as a buildpack directory at `dest`: built beside it, then
/// renamed into place, so a failure leaves nothing there.
pub(crate) fn write_dir(items: &BTreeMap<String, Item>, dest: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(Error::write(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".package-dev-")
        .tempdir_in(parent)
        .map_err(Error::write(parent))?;
    for (name, item) in items {
        let path = tmp.path().join(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(Error::write(dir))?;
        }
        fs::copy(&item.source, &path).map_err(Error::write(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(item.mode))
            .map_err(Error::write(&path))?;
    }
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(Error::write(tmp.path()))?;
    // rename(2) replaces an empty directory, and fails on any other.
    fs::rename(tmp.path(), dest).map_err(Error::write(dest))?;
    let _ = tmp.keep();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn entries_are_placed_only_for_the_error() {
        let root = TempDir::new().expect("tempdir");
        let work = TempDir::new().expect("tempdir");
        let mut names: Vec<String> = ["bin/supply", "bin/detect", "bin/compile", "manifest.yml"]
            .map(String::from)
            .to_vec();
        names.extend((0..200).map(|i| format!("lib/f{i}")));
        names.push("VERSION".into());
        fs::create_dir_all(root.path().join("bin")).expect("bin");
        fs::create_dir_all(root.path().join("lib")).expect("lib");
        for name in &names {
            fs::write(root.path().join(name), "x").expect("write");
        }
        let mut manifest = Manifest {
            language: "sidecar".into(),
            default_versions: Vec::new(),
            dependencies: Vec::new(),
            include_files: names,
            pre_package: None,
            stack: None,
            sidecars: Vec::new(),
            dependency_deprecation_dates: Vec::new(),
        };
        let supply = root.path().join("bin/supply");
        let asked = Cell::new(0);
        let place = |_: &str| {
            asked.set(asked.get() + 1);
            Some((1, 1))
        };
        let items =
            listed(root.path(), &manifest, &supply, ("m", work.path()), &place).expect("all there");
        assert_eq!(items.len(), 205);
        // Each lookup parses the whole manifest: none for entries that are fine.
        assert_eq!(asked.get(), 0);
        manifest.include_files.push("lib/missing".into());
        let Err(err) = listed(root.path(), &manifest, &supply, ("m", work.path()), &place) else {
            panic!("lib/missing is not there");
        };
        assert!(err.to_string().contains("lib/missing"), "{err}");
        assert_eq!(asked.get(), 1);
    }
}
