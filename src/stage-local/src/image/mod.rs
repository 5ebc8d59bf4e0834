//! `--image FILE` and `--image-layout DIR`: the staged droplet as an OCI image that runs
//! as a Diego cell runs it. The base's layers come first, unchanged; then the lifecycle
//! layer, the entrypoint (`cf-entrypoint`) alone, the same for every app; then the
//! droplet's layer ([`layer`]), with the process plan. The config carries the staged environment and starts the entrypoint as vcap
//! in `/home/vcap/app`, `web` unless the container is given another process type.
//!
//! FILE is an OCI image layout in a tar with `docker save`'s `manifest.json` beside it,
//! so that `podman load`, `docker load` and `skopeo ... oci-archive:FILE` all read it.
//! Same droplet, same base: same bytes (every entry in name order, time 0, root-owned).
//! Nothing is written at FILE or DIR until the whole image is: it is made beside them
//! and renamed into place.

pub(crate) mod base;
mod layer;
pub(crate) mod oci;
pub(crate) mod standin;

use crate::app::App;
use crate::env::Vars;
use crate::errors::Error;
use crate::out;
use crate::result::Outcome;
use anyhow::Context as _;
use base::{Base, Blob};
use cf_entrypoint::plan::{self, Plan, Process, Sidecar, DROPLET_ROOT, ENTRYPOINT_PATH};
use layer::{Extra, Hashing};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The port the app listens on in the container, as on a Diego cell.
pub(crate) const PORT: u16 = 8080;

/// Where an image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `--image FILE`: an archive.
    Archive(PathBuf),
    /// `--image-layout DIR`: a directory.
    Layout(PathBuf),
}

/// What an image is made of, before anything is written.
pub(crate) struct Parts<'a> {
    pub name: String,
    pub base: &'a Base,
    pub droplet: &'a Path,
    pub entrypoint: &'a [u8],
    pub plan: Plan,
    pub env: Vars,
}

/// The process plan of a staged app: every process type with its MEMORY_LIMIT and its
/// sidecars, as Cloud Controller gives them to Diego. A sidecar for a process type the
/// droplet lacks would never run: refused, naming it.
pub(crate) fn plan(app: &App, outcome: &Outcome) -> Result<Plan, Error> {
    if !outcome.process_types.contains_key("web") {
        return Err(Error::NoProcessType {
            wanted: "web".into(),
            have: outcome.process_types.keys().cloned().collect(),
        });
    }
    for s in &outcome.sidecars {
        if let Some(t) = s
            .process_types
            .iter()
            .find(|t| !outcome.process_types.contains_key(*t))
        {
            return Err(Error::SidecarForMissingType {
                sidecar: s.name.clone(),
                origin: s.origin.clone(),
                process_type: t.clone(),
                have: outcome.process_types.keys().cloned().collect(),
            });
        }
    }
    let processes = outcome
        .process_types
        .iter()
        .map(|(kind, (command, _))| {
            let (process_mb, _) = app.process_memory(kind);
            let sidecars = outcome
                .sidecars_for(kind)
                .iter()
                .map(|s| Sidecar {
                    name: s.name.clone(),
                    command: s.command.clone(),
                    // Cloud Controller: a sidecar's MEMORY_LIMIT is its own memory, else
                    // the process's.
                    memory_mb: s.memory.filter(|m| *m > 0).map_or(process_mb, |m| m as u64),
                })
                .collect();
            let memory_mb = (process_mb as i64 - outcome.sidecar_memory(kind)).max(0) as u64;
            (
                kind.clone(),
                Process {
                    command: command.clone(),
                    memory_mb,
                    sidecars,
                },
            )
        })
        .collect();
    Ok(Plan { processes })
}

/// The image's name: `localhost/<app>:latest`, the app's name made a valid reference.
pub(crate) fn name_of(app: &str) -> String {
    let mut repo: String = app
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    repo = repo.trim_matches('-').to_string();
    if repo.is_empty() {
        repo = "app".into();
    }
    format!("localhost/{repo}:latest")
}

/// Writes the image to each target; returns its manifest's digest.
pub(crate) fn write(
    parts: &Parts<'_>,
    targets: &[Target],
    scratch: &Path,
) -> anyhow::Result<String> {
    let plan_json = parts.plan.to_json();
    let lifecycle = layer::files(
        &[Extra {
            path: &ENTRYPOINT_PATH[1..],
            mode: 0o755,
            bytes: parts.entrypoint,
        }],
        scratch,
    )?;
    let plan_file = [Extra {
        path: &plan::PLAN_PATH[1..],
        mode: 0o644,
        bytes: plan_json.as_bytes(),
    }];
    let droplet = layer::droplet(parts.droplet, &plan_file, scratch)?;
    let config = config(parts, &[&lifecycle.diff_id, &droplet.diff_id]);
    let mut layers: Vec<(oci::Descriptor, Source<'_>)> = parts
        .base
        .layers
        .iter()
        .map(|l| (l.descriptor.clone(), Source::Base(&l.blob)))
        .collect();
    for made in [&lifecycle, &droplet] {
        layers.push((
            made.descriptor.clone(),
            Source::Blob(Blob::File(made.file.path().to_path_buf())),
        ));
    }
    let image = Assembled::new(&parts.name, config, layers);
    for t in targets {
        image.write(t)?;
    }
    Ok(image.manifest_digest)
}

/// The config: the base's, with the droplet's diff_id, the staged environment over the
/// base's, and the entrypoint started as vcap in the app's directory. No `created` time
/// of its own: the image has the same digest whenever it is made.
fn config(parts: &Parts<'_>, diff_ids: &[&str]) -> Value {
    let mut c = parts.base.config.clone();
    let obj = c
        .as_object_mut()
        .expect("checked to be an object by base::open");
    obj.insert("created".into(), json!("1970-01-01T00:00:00Z"));
    let mut env: Vec<(String, String)> = obj
        .get("config")
        .and_then(|c| c.get("Env"))
        .and_then(Value::as_array)
        .map(|vars| {
            vars.iter()
                .filter_map(Value::as_str)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in parts.env.iter() {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    }
    let run = obj
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(run) = run {
        let vcap = format!("{}", layer::VCAP);
        run.insert(
            "Env".into(),
            json!(env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()),
        );
        run.insert("Entrypoint".into(), json!([ENTRYPOINT_PATH]));
        run.insert("Cmd".into(), json!(["web"]));
        run.insert("WorkingDir".into(), json!(format!("{DROPLET_ROOT}/app")));
        run.insert("User".into(), json!(format!("{vcap}:{vcap}")));
        run.insert("ExposedPorts".into(), json!({ format!("{PORT}/tcp"): {} }));
        run.insert("StopSignal".into(), json!("SIGTERM"));
    }
    if let Some(ids) = obj
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
    {
        ids.extend(diff_ids.iter().map(|d| json!(d)));
    }
    // History, when the base keeps one, has an entry per layer.
    if let Some(history) = obj.get_mut("history").and_then(Value::as_array_mut) {
        history.push(json!({
            "created": "1970-01-01T00:00:00Z",
            "created_by": "stage-local --image: the lifecycle",
            "comment": "cf-entrypoint under /lifecycle",
        }));
        history.push(json!({
            "created": "1970-01-01T00:00:00Z",
            "created_by": format!("stage-local --image: the droplet of {}", parts.name),
            "comment": "the droplet under /home/vcap, the process plan under /lifecycle",
        }));
    }
    c
}

/// Where a blob's bytes come from.
enum Source<'a> {
    /// A base layer: checked against its digest as it is copied.
    Base(&'a Blob),
    /// A blob made by this run.
    Blob(Blob),
    Bytes(Vec<u8>),
}

/// An image ready to write: its blobs by digest, index.json and manifest.json.
struct Assembled<'a> {
    blobs: BTreeMap<String, (u64, Source<'a>)>,
    index: Vec<u8>,
    docker: Vec<u8>,
    manifest_digest: String,
}

impl<'a> Assembled<'a> {
    fn new(name: &str, config: Value, layers: Vec<(oci::Descriptor, Source<'a>)>) -> Self {
        let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
        let config_d = oci::Descriptor {
            media_type: oci::CONFIG.into(),
            digest: oci::digest_of(&config_bytes),
            size: config_bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let manifest = oci::Manifest {
            schema_version: 2,
            media_type: Some(oci::MANIFEST.into()),
            config: config_d.clone(),
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let manifest_digest = oci::digest_of(&manifest_bytes);
        let index = oci::Index {
            schema_version: 2,
            media_type: Some(oci::INDEX.into()),
            manifests: vec![oci::Descriptor {
                media_type: oci::MANIFEST.into(),
                digest: manifest_digest.clone(),
                size: manifest_bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::from([(oci::REF_NAME.to_string(), name.to_string())]),
            }],
        };
        let path = |d: &oci::Descriptor| format!("blobs/sha256/{}", hex(&d.digest));
        let docker = vec![oci::DockerImage {
            config: path(&config_d),
            repo_tags: Some(vec![name.to_string()]),
            layers: layers.iter().map(|(d, _)| path(d)).collect(),
        }];
        let mut blobs = BTreeMap::new();
        blobs.insert(
            hex(&config_d.digest).to_string(),
            (config_d.size, Source::Bytes(config_bytes)),
        );
        blobs.insert(
            hex(&manifest_digest).to_string(),
            (manifest_bytes.len() as u64, Source::Bytes(manifest_bytes)),
        );
        for (d, source) in layers {
            blobs
                .entry(hex(&d.digest).to_string())
                .or_insert((d.size, source));
        }
        Assembled {
            blobs,
            index: serde_json::to_vec(&index).unwrap_or_default(),
            docker: serde_json::to_vec(&docker).unwrap_or_default(),
            manifest_digest,
        }
    }

    fn write(&self, target: &Target) -> anyhow::Result<()> {
        match target {
            Target::Archive(file) => self.write_archive(file),
            Target::Layout(dir) => self.write_layout(dir),
        }
    }

    /// The image as a tar, made beside `file` and renamed over it when complete.
    fn write_archive(&self, file: &Path) -> anyhow::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".image")
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, tmp));
        let entry = |kind: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(size);
            h
        };
        let dir_entry = tar::EntryType::Directory;
        tar.append_data(&mut entry(dir_entry, 0o755, 0), "blobs/", io::empty())?;
        tar.append_data(
            &mut entry(dir_entry, 0o755, 0),
            "blobs/sha256/",
            io::empty(),
        )?;
        for (hex, (size, source)) in &self.blobs {
            let mut h = entry(tar::EntryType::Regular, 0o644, *size);
            let name = format!("blobs/sha256/{hex}");
            let mut checked = Checked::new(source.open()?, hex, *size);
            tar.append_data(&mut h, &name, &mut checked)?;
            checked.verify()?;
        }
        for (name, bytes) in [
            ("index.json", self.index.as_slice()),
            ("manifest.json", self.docker.as_slice()),
            ("oci-layout", oci::LAYOUT_FILE.as_bytes()),
        ] {
            let mut h = entry(tar::EntryType::Regular, 0o644, bytes.len() as u64);
            tar.append_data(&mut h, name, bytes)?;
        }
        let tmp = tar
            .into_inner()
            .and_then(|buf| buf.into_inner().map_err(io::IntoInnerError::into_error))
            .with_context(|| format!("cannot write the image into {}", dir.display()))?;
        tmp.as_file().sync_all()?;
        tmp.persist(file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(())
    }

    /// The image as an OCI layout directory, made beside `dir` and renamed into its
    /// place (an older layout there is replaced).
    fn write_layout(&self, dir: &Path) -> anyhow::Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".image-layout")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
        let blobs = tmp.path().join("blobs/sha256");
        fs::create_dir_all(&blobs)?;
        for (hex, (size, source)) in &self.blobs {
            let path = blobs.join(hex);
            let mut out = io::BufWriter::new(fs::File::create(&path)?);
            let mut checked = Checked::new(source.open()?, hex, *size);
            io::copy(&mut checked, &mut out)
                .and_then(|_| out.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
            checked.verify()?;
        }
        fs::write(tmp.path().join("index.json"), &self.index)?;
        fs::write(tmp.path().join("oci-layout"), oci::LAYOUT_FILE)?;
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        fs::rename(tmp.keep(), dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(())
    }
}

impl Source<'_> {
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        match self {
            Source::Base(blob) => blob.open(),
            Source::Blob(blob) => blob.open(),
            Source::Bytes(b) => Ok(Box::new(b.as_slice())),
        }
    }
}

/// A blob's bytes, hashed and counted as they are read, then checked against the
/// digest and size its descriptor gives: a base whose blob was altered is refused.
struct Checked<'r> {
    inner: Box<dyn Read + 'r>,
    hash: Hashing<io::Sink>,
    hex: &'r str,
    size: u64,
}

impl<'r> Checked<'r> {
    fn new(inner: Box<dyn Read + 'r>, hex: &'r str, size: u64) -> Self {
        Checked {
            inner,
            hash: Hashing::new(io::sink()),
            hex,
            size,
        }
    }

    fn verify(&self) -> anyhow::Result<()> {
        let got = self.hash.digest();
        if got.strip_prefix("sha256:") != Some(self.hex) || self.hash.count != self.size {
            anyhow::bail!(
                "blob sha256:{} of the image has {} bytes with digest {got}, not the {} its \
                 manifest gives: the base is corrupt",
                self.hex,
                self.hash.count,
                self.size
            );
        }
        Ok(())
    }
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Says what went where, and how long writing it took (scripts/bench reads it).
pub(crate) fn report(
    name: &str,
    digest: &str,
    targets: &[Target],
    standin: bool,
    took: std::time::Duration,
) {
    for t in targets {
        let (what, path) = match t {
            Target::Archive(p) => ("image archive", p),
            Target::Layout(p) => ("image layout", p),
        };
        out::say(format!(
            "wrote {name} ({digest}) as an {what} at {}",
            path.display()
        ));
    }
    out::say(format!(
        "the image took {:.2} s to write",
        took.as_secs_f64()
    ));
    if standin {
        out::warn(
            "the image's base is a stand-in for the stack built from Debian's packages \
             (mmdebstrap), not cflinuxfs4; pass --base with the stack's image to run on the \
             real one",
        );
    }
}
