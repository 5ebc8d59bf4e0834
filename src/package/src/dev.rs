//! `package dev`: a development buildpack directory, laid out as the zip would be, whose
//! dependencies named on the command line are pinned to local files (a `file://` uri
//! and their sha256), so `bin/supply` can be run by hand or staged with stage-local
//! against a fresh build, with no network.

use crate::errors::PackError;
use crate::pin::{pin, Pin};
use crate::zip::{contents, is_free, packaged_manifest, read, write_dir, WorkDir};
use buildpack::digest::copy_hashed;
use buildpack::errors::Error;
use buildpack::manifest::{with_position, Manifest};
use buildpack::verify::open_regular;
use buildpack::{detail, step};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use url::Url;

pub(crate) struct DevArgs<'a> {
    pub root: &'a Path,
    pub supply: &'a Path,
    pub out: &'a Path,
    /// (dependency name, local artifact)
    pub artifacts: &'a [(String, PathBuf)],
}

pub(crate) fn run(args: &DevArgs<'_>) -> anyhow::Result<()> {
    if !is_free(args.out) {
        return Err(PackError::OutputInTheWay {
            path: args.out.to_path_buf(),
        }
        .into());
    }
    let manifest_file = args.root.join("manifest.yml");
    let source = read(&manifest_file)?;
    let mut text = source.clone();
    let mut manifest = Manifest::parse(&text, &manifest_file)?;
    // Every name first: a typo in the last one fails before any file is hashed.
    for (name, _) in args.artifacts {
        crate::pin::known_dependency(&manifest, &manifest_file, name)?;
    }
    step!("Making a development buildpack at {}", args.out.display());
    for (name, file) in args.artifacts {
        let unreadable = |e: io::Error| PackError::Artifact {
            path: file.clone(),
            reason: e.to_string(),
        };
        let path = file.canonicalize().map_err(unreadable)?;
        // A regular file only: a FIFO would hang here, a device never end.
        let (sha256, bytes, _) =
            copy_hashed(&mut open_regular(&path).map_err(unreadable)?, io::sink())
                .map_err(unreadable)?;
        let version = manifest
            .default_version(name)
            .map(str::to_string)
            .ok_or_else(|| {
                with_position(
                    Error::Manifest {
                        path: manifest_file.clone(),
                        key: "default_versions".into(),
                        problem: format!(
                            "has no {name}: add it (package pin) before pinning a local build"
                        ),
                        position: None,
                    },
                    &text,
                )
            })?;
        let uri = Url::from_file_path(&path)
            .map_err(|()| unreadable(io::Error::other("not an absolute path")))?
            .to_string();
        let pinned = pin(
            &text,
            &manifest_file,
            &Pin {
                name: name.clone(),
                version: version.clone(),
                uri: uri.clone(),
                sha256,
                stacks: Vec::new(),
            },
        )?;
        text = pinned.text;
        manifest = pinned.manifest;
        detail!("{name} {version}: {uri} ({bytes} bytes, sha256 {sha256})");
    }
    let packaged = packaged_manifest(&text, &manifest_file, &manifest, None, &HashMap::new())?;
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::write(parent))?;
    let work = WorkDir::new(parent)?;
    let items = contents(
        args.root,
        &source,
        &manifest,
        args.supply,
        &packaged,
        work.path(),
    )?;
    write_dir(&items, args.out)?;
    let supply =
        std::path::absolute(args.out.join("bin/supply")).map_err(Error::write(args.out))?;
    detail!(
        "Run it: {} BUILD_DIR CACHE_DIR DEPS_DIR 0",
        buildpack::launch::shell_quote(&supply.to_string_lossy())
    );
    Ok(())
}
