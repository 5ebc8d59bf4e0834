//! `package`: makes `<language>_buildpack[-cached][-<stack>]-v<VERSION>.zip`, the zip
//! an operator uploads with `cf create-buildpack`. It reads the manifest and fetches
//! dependencies with the same code `supply` uses, so a cached zip holds exactly what
//! supply would have verified.

use clap::Parser;
use md5::{Digest, Md5};
use serde_yaml::{Mapping, Value};
use sidecar_buildpack::digest::copy_hashed;
use sidecar_buildpack::errors::{exit, report, Error};
use sidecar_buildpack::log::StagingLog;
use sidecar_buildpack::manifest::{
    basename, buildpack_name, manifest_path, read_version, Dependency, Manifest,
};
use sidecar_buildpack::settings::Env;
use sidecar_buildpack::transport::Fetcher;
use sidecar_buildpack::verify::{copy_verified, Verified};
use sidecar_buildpack::{detail, step};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

/// Packages the buildpack in ROOT into a zip for `cf create-buildpack`.
///
/// Exit codes: 0 packaged, 1 internal error, 2 usage, 3 configuration (manifest,
/// missing file), 4 artifact (download or checksum), 5 filesystem.
#[derive(Parser)]
#[command(name = "package", version, about)]
struct Args {
    /// The buildpack's source directory (holds manifest.yml and VERSION)
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The compiled, portable supply binary that becomes bin/supply
    #[arg(long)]
    supply: PathBuf,
    /// Put every dependency in the zip, for foundations without internet
    #[arg(long)]
    cached: bool,
    /// Bind the buildpack to one stack and keep only that stack's dependencies
    #[arg(long, value_parser = parse_stack)]
    stack: Option<String>,
    /// Where to write the zip
    #[arg(long, default_value = "build")]
    output: PathBuf,
    /// A directory searched for dependency files by name before the network
    /// (local reproducible builds, mirrors); each is verified against its pin
    #[arg(long = "artifact-dir")]
    artifact_dirs: Vec<PathBuf>,
}

fn parse_stack(s: &str) -> Result<String, String> {
    if sidecar_buildpack::manifest::valid_name(s) {
        Ok(s.to_string())
    } else {
        Err("a stack name is letters, digits, '-' or '_', such as cflinuxfs4".into())
    }
}

/// A file in the zip: where it comes from and its mode.
struct Item {
    source: PathBuf,
    mode: u32,
}

fn main() {
    let args = Args::parse();
    let env = sidecar_buildpack::settings::lossy_env(std::env::vars_os());
    StagingLog::new(Box::new(std::io::stdout()), env.contains_key("BP_DEBUG")).install();
    let code = match run(&args, &env) {
        Ok(()) => exit::OK,
        Err(e) => {
            let (code, msg) = report(&e);
            tracing::error!("{msg}");
            code
        }
    };
    std::process::exit(code);
}

fn run(args: &Args, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let manifest_file = manifest_path(&args.root);
    let manifest = Manifest::load(&manifest_file)?;
    let version = read_version(&args.root)?;
    // A zip for a stack that some sidecar has no build for would fail every staging.
    for sidecar in &manifest.sidecars {
        manifest.pick(&sidecar.dependency, args.stack.as_deref())?;
    }
    let zip_name = format!(
        "{}{}{}-v{version}.zip",
        buildpack_name(&manifest),
        if args.cached { "-cached" } else { "" },
        args.stack
            .as_ref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default()
    );
    step!("Packaging {zip_name}");
    fs::create_dir_all(&args.output).map_err(Error::write(&args.output))?;
    let work = tempfile::Builder::new()
        .prefix(".package-")
        .tempdir_in(&args.output)
        .map_err(Error::write(&args.output))?;

    let deps: Vec<&Dependency> = manifest
        .dependencies
        .iter()
        .filter(|d| match &args.stack {
            Some(s) => d.cf_stacks.iter().any(|c| c == s),
            None => true,
        })
        .collect();

    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut files: HashMap<String, String> = HashMap::new();
    if args.cached {
        let net = Env(env).network()?;
        let fetcher = Fetcher::new(&net);
        for dep in &deps {
            step!("Caching {} {}", dep.name, dep.version);
            let verified = fetch_dependency(&fetcher, dep, &args.artifact_dirs, work.path())?;
            let rel = cached_path(dep);
            let kept = work.path().join(format!("dep-{}", files.len()));
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
            files.insert(dep.uri_text.clone(), rel);
        }
    }

    let packaged = packaged_manifest(&manifest_file, args.stack.as_deref(), &files)?;
    let packaged_path = work.path().join("manifest.yml");
    // What supply will read must load, and give every sidecar a build for the stack.
    let check = Manifest::parse(&packaged, &manifest_file)?;
    for sidecar in &check.sidecars {
        check.pick(&sidecar.dependency, args.stack.as_deref())?;
    }
    fs::write(&packaged_path, packaged).map_err(Error::write(&packaged_path))?;

    for name in &manifest.include_files {
        let (source, name) = match name.as_str() {
            "manifest.yml" => (packaged_path.clone(), name.clone()),
            "bin/supply" => (args.supply.clone(), name.clone()),
            // The standard packager's copy of the compiled supply: here it *is* bin/supply.
            "bin/supply-linux-x86_64" => continue,
            _ => (args.root.join(name), name.clone()),
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
        items.insert(name, Item { source, mode });
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
            }
            .into());
        }
    }

    let dest = args.output.join(&zip_name);
    write_zip(&items, work.path(), &dest)?;
    summary(&dest, &deps, args.cached)?;
    Ok(())
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
                Err(e) => tracing::warn!("not using {}: {e}", candidate.display()),
            }
        }
    }
    Ok(fetcher.download(dep, work)?)
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

/// The manifest as packaged: `stack:` with --stack, only that stack's dependencies,
/// and `file:` on each cached one. Other keys are kept as they are.
fn packaged_manifest(
    path: &Path,
    stack: Option<&str>,
    files: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let text = fs::read_to_string(path)?;
    let mut doc: Mapping = serde_yaml::from_str(&text)?;
    if let Some(Value::Sequence(deps)) = doc.get_mut("dependencies") {
        deps.retain(|d| match stack {
            None => true,
            Some(s) => d
                .get("cf_stacks")
                .and_then(Value::as_sequence)
                .is_some_and(|st| st.iter().any(|v| v.as_str() == Some(s))),
        });
        for d in deps.iter_mut() {
            let uri = d.get("uri").and_then(Value::as_str).unwrap_or_default();
            if let (Some(file), Value::Mapping(m)) = (files.get(uri), d) {
                m.insert("file".into(), Value::String(file.clone()));
            }
        }
    }
    doc.remove("stack");
    if let Some(s) = stack {
        doc.insert("stack".into(), Value::String(s.to_string()));
    }
    Ok(format!("---\n{}", serde_yaml::to_string(&doc)?))
}

/// Writes the zip with sorted entries, fixed timestamps and Unix modes, through a
/// temp file renamed into place, so a failure leaves no zip.
fn write_zip(items: &BTreeMap<String, Item>, work: &Path, dest: &Path) -> anyhow::Result<()> {
    let failed = |e: zip::result::ZipError| Error::write(dest)(std::io::Error::other(e));
    let tmp = tempfile::Builder::new()
        .prefix(".zip-")
        .suffix(".partial")
        .tempfile_in(work)
        .map_err(Error::write(work))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(tmp));
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
        std::io::copy(&mut src, &mut zip).map_err(Error::write(dest))?;
    }
    let tmp = zip
        .finish()
        .map_err(failed)?
        .into_inner()
        .map_err(|e| Error::write(dest)(e.into_error()))?;
    tmp.persist(dest).map_err(|e| Error::write(dest)(e.error))?;
    Ok(())
}

fn summary(zip: &Path, deps: &[&Dependency], cached: bool) -> anyhow::Result<()> {
    let mut f = File::open(zip)?;
    let (digest, size, _) = copy_hashed(&mut f, std::io::sink())?;
    step!("Packaged {}", zip.display());
    detail!("size:   {size} bytes");
    detail!("sha256: {digest}");
    for d in deps {
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
    let mut out = std::io::stdout();
    writeln!(out, "zip: {}", zip.display())?;
    Ok(())
}
