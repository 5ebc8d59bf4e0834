//! Config as files (`CONFIG_SERVER_RENDER`): the document, or a part of it,
//! written into files under the app's directory in the app's format, before
//! the sidecar listens and again after every reload that changes them; then a
//! command run, or a signal sent, so that the app reloads.
//!
//! A file is written whole or not at all: to a temporary file beside it
//! (created new, mode 0600), fsync'ed, renamed over the old one, and its
//! directory fsync'ed. A path must stay inside the app's directory and go
//! through no symlink, checked at startup and again at every write. A render
//! that fails (the key gone from the new document, a value the format cannot
//! carry, a full disk) leaves the last good file as it was.
//!
//! Commands run in the background, one at a time per file (changes that come
//! while one runs make one more run), each bounded by
//! `CONFIG_SERVER_COMMAND_TIMEOUT_MS` and then killed with its process group:
//! a command that fails or hangs is logged, never waited for by a request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde::Deserialize;
use tokio::sync::watch;

use crate::document::{split_path, Document};
use crate::encode::{self, Format};
use crate::error::Error;
use crate::metrics::{self, Metrics};

/// The setting naming the files.
pub(crate) const SETTING: &str = "CONFIG_SERVER_RENDER";

/// One entry of `CONFIG_SERVER_RENDER`, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    path: String,
    format: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    signal: Option<String>,
    #[serde(default)]
    pid_file: Option<String>,
}

/// What to do after a file changed.
#[derive(Debug)]
enum Hook {
    /// Run by `sh -c` in the app's directory.
    Command(String),
    /// Sent to the process whose id the file holds; `name` as the setting wrote it,
    /// without `SIG`.
    Signal {
        signal: Signal,
        name: &'static str,
        pid_file: PathBuf,
    },
}

/// A file to render.
#[derive(Debug)]
pub(crate) struct Target {
    /// `CONFIG_SERVER_RENDER[0] (config/app.env)`, for messages.
    name: String,
    /// Relative to the app's directory, checked.
    relative: PathBuf,
    format: Format,
    key: Vec<String>,
    hook: Option<Hook>,
}

/// The files to render, and what was last written to each.
pub(crate) struct Files {
    app_dir: PathBuf,
    targets: Vec<Target>,
    /// A hash of the bytes last written to each target.
    written: Mutex<Vec<Option<u64>>>,
}

impl Files {
    /// Reads `CONFIG_SERVER_RENDER` (a JSON list; unset: no file), with every
    /// path checked against `app_dir`.
    pub(crate) fn from_setting(setting: Option<&str>, app_dir: &Path) -> Result<Self, Error> {
        let bad = |problem: String| Error::InvalidRender { problem };
        let entries: Vec<Entry> = match setting {
            None => Vec::new(),
            Some(text) => serde_json::from_str(text).map_err(|err| {
                bad(format!(
                    "not a JSON list of {{\"path\", \"format\", \"key\", \"command\", \"signal\", \
                     \"pid_file\"}} objects ({err})"
                ))
            })?,
        };
        let app_dir = if entries.is_empty() {
            app_dir.to_path_buf()
        } else {
            fs::canonicalize(app_dir).map_err(|err| {
                bad(format!(
                    "the app's directory {} (HOME) cannot be resolved: {err}",
                    app_dir.display()
                ))
            })?
        };
        let mut targets: Vec<Target> = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("[{i}]");
            let bad = |problem: String| bad(format!("{at}: {problem}"));
            let format = Format::parse(&entry.format).ok_or_else(|| {
                bad(format!(
                    "format {:?} is not one of {}",
                    crate::sanitize::cut(&entry.format, 32),
                    Format::NAMES
                ))
            })?;
            let relative = inside(&app_dir, Path::new(&entry.path)).map_err(|p| bad(p.clone()))?;
            check_path(&app_dir, &relative).map_err(bad)?;
            if targets.iter().any(|t| t.relative == relative) {
                return Err(bad(format!("{} is rendered twice", relative.display())));
            }
            let key = match entry.key.as_deref() {
                None | Some("") => Vec::new(),
                Some(key) => split_path(key)
                    .ok_or_else(|| bad(format!("key {key:?} has a malformed %-escape")))?
                    .into_iter()
                    .map(std::borrow::Cow::into_owned)
                    .collect(),
            };
            let hook = match (entry.command, entry.signal, entry.pid_file) {
                (None, None, None) => None,
                (Some(command), None, None) if !command.trim().is_empty() => {
                    Some(Hook::Command(command))
                }
                (None, Some(signal), Some(pid_file)) => {
                    let (signal, name) = parse_signal(&signal).ok_or_else(|| {
                        bad(format!(
                            "signal {:?} is not one of HUP, USR1, USR2, INT, TERM, QUIT",
                            crate::sanitize::cut(&signal, 16)
                        ))
                    })?;
                    Some(Hook::Signal {
                        signal,
                        name,
                        pid_file: app_dir.join(pid_file),
                    })
                }
                (Some(_), None, None) => return Err(bad("command is empty".to_owned())),
                (None, Some(_), None) => {
                    return Err(bad(
                        "signal needs pid_file: the file holding the process id to send it to"
                            .to_owned(),
                    ))
                }
                (None, None, Some(_)) => return Err(bad("pid_file without signal".to_owned())),
                _ => {
                    return Err(bad(
                        "give command, or signal and pid_file, not both".to_owned()
                    ))
                }
            };
            targets.push(Target {
                name: format!("{SETTING}{at} ({})", relative.display()),
                relative,
                format,
                key,
                hook,
            });
        }
        let written = Mutex::new(vec![None; targets.len()]);
        Ok(Self {
            app_dir,
            targets,
            written,
        })
    }

    /// Writes every file from `document`, at startup: any failure stops the sidecar.
    pub(crate) fn write_all(&self, document: &Document) -> Result<(), Error> {
        for (i, target) in self.targets.iter().enumerate() {
            self.write(i, document)
                .map_err(|problem| Error::RenderFailed {
                    name: target.name.clone(),
                    problem,
                })?;
        }
        Ok(())
    }

    /// Writes the files whose content `document` changes; returns their indexes.
    /// A file that cannot be written keeps its last good version, with a warning.
    pub(crate) fn update(&self, document: &Document, metrics: &Metrics) -> Vec<usize> {
        let mut changed = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            match self.write(i, document) {
                Ok(false) => {}
                Ok(true) => {
                    metrics.render(true);
                    changed.push(i);
                }
                Err(problem) => {
                    metrics.render(false);
                    eprintln!(
                        "warning: {}: not written, the last good file stays: {problem}",
                        target.name
                    );
                }
            }
        }
        changed
    }

    /// Renders target `i`; `Ok(false)` if the file already holds those bytes.
    fn write(&self, i: usize, document: &Document) -> Result<bool, String> {
        let target = &self.targets[i];
        let json = document.find(&target.key).ok_or_else(|| {
            format!(
                "no key \"{}\" in the configuration",
                crate::sanitize::cut(&target.key.join("/"), 128)
            )
        })?;
        let bytes = encode::encode(target.format, &json)?;
        let hash = {
            use std::hash::{DefaultHasher, Hasher};
            let mut hasher = DefaultHasher::new();
            hasher.write(&bytes);
            hasher.finish()
        };
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written[i] == Some(hash) {
            return Ok(false);
        }
        check_path(&self.app_dir, &target.relative)?;
        write_atomically(&self.app_dir, &target.relative, &bytes)
            .map_err(|err| format!("cannot write it: {err}"))?;
        written[i] = Some(hash);
        Ok(true)
    }

    /// Starts one task per file with a command or a signal; returns what tells
    /// them that their files changed.
    pub(crate) fn start_hooks(
        self: &Arc<Self>,
        metrics: Arc<dyn Fn(metrics::Hook) + Send + Sync>,
        timeout: Duration,
    ) -> impl Fn(Vec<usize>) + Send + 'static {
        let mut senders: Vec<Option<watch::Sender<u64>>> = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            if target.hook.is_none() {
                senders.push(None);
                continue;
            }
            let (tx, mut rx) = watch::channel(0_u64);
            senders.push(Some(tx));
            let files = Arc::clone(self);
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let outcome = files.run_hook(i, timeout).await;
                    metrics(outcome);
                }
            });
        }
        move |changed: Vec<usize>| {
            for i in changed {
                if let Some(Some(tx)) = senders.get(i) {
                    tx.send_modify(|n| *n += 1);
                }
            }
        }
    }

    async fn run_hook(&self, i: usize, timeout: Duration) -> metrics::Hook {
        let target = &self.targets[i];
        match &target.hook {
            None => metrics::Hook::Ok,
            Some(Hook::Command(command)) => {
                run_command(&target.name, command, &self.app_dir, timeout).await
            }
            Some(Hook::Signal {
                signal,
                name,
                pid_file,
            }) => match send_signal(*signal, pid_file) {
                Ok(pid) => {
                    println!("{}: sent {name} to process {pid}", target.name);
                    metrics::Hook::Ok
                }
                Err(problem) => {
                    eprintln!("warning: {}: signal not sent: {problem}", target.name);
                    metrics::Hook::Failed
                }
            },
        }
    }
}

async fn run_command(name: &str, command: &str, dir: &Path, timeout: Duration) -> metrics::Hook {
    let spawned = tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            eprintln!("warning: {name}: cannot start its command: {err}");
            return metrics::Hook::Failed;
        }
    };
    let group = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            println!("{name}: command done");
            metrics::Hook::Ok
        }
        Ok(Ok(status)) => {
            eprintln!("warning: {name}: command failed ({status})");
            metrics::Hook::Failed
        }
        Ok(Err(err)) => {
            eprintln!("warning: {name}: command failed: {err}");
            metrics::Hook::Failed
        }
        Err(_) => {
            if let Some(group) = group {
                let _ = kill_process_group(group, Signal::KILL);
            }
            let _ = child.wait().await;
            eprintln!(
                "warning: {name}: command still running after {}ms \
                 (CONFIG_SERVER_COMMAND_TIMEOUT_MS): killed it and its process group",
                timeout.as_millis()
            );
            metrics::Hook::TimedOut
        }
    }
}

/// The signal and its name without `SIG`.
fn parse_signal(name: &str) -> Option<(Signal, &'static str)> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    Some(match name {
        "HUP" => (Signal::HUP, "HUP"),
        "USR1" => (Signal::USR1, "USR1"),
        "USR2" => (Signal::USR2, "USR2"),
        "INT" => (Signal::INT, "INT"),
        "TERM" => (Signal::TERM, "TERM"),
        "QUIT" => (Signal::QUIT, "QUIT"),
        _ => return None,
    })
}

fn send_signal(signal: Signal, pid_file: &Path) -> Result<i32, String> {
    let text = crate::source::read_capped(pid_file, 64).map_err(|_| {
        format!(
            "cannot read a process id from {} (a regular file of at most 64 bytes)",
            pid_file.display()
        )
    })?;
    let pid = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|&pid| pid > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{} does not hold a process id", pid_file.display()))?;
    kill_process(pid, signal).map_err(|err| format!("process {}: {err}", pid.as_raw_nonzero()))?;
    Ok(pid.as_raw_nonzero().get())
}

/// `path` relative to `app_dir`, if it stays inside: relative paths start at
/// `app_dir`; `..` is refused.
fn inside(app_dir: &Path, path: &Path) -> Result<PathBuf, String> {
    let relative = if path.is_absolute() {
        path.strip_prefix(app_dir).map_err(|_| {
            format!(
                "{} is outside the app's directory {}",
                path.display(),
                app_dir.display()
            )
        })?
    } else {
        path
    };
    let mut clean = PathBuf::new();
    for part in relative.components() {
        match part {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{} leaves the app's directory (no .. in render paths)",
                    path.display()
                ))
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("path names no file".to_owned());
    }
    Ok(clean)
}

/// Checks that no part of `relative` below `app_dir` is a symlink, that its
/// directories are directories (missing ones are made at the write), and that
/// the file, if it exists, is a regular file.
fn check_path(app_dir: &Path, relative: &Path) -> Result<(), String> {
    let mut path = app_dir.to_path_buf();
    let parts: Vec<_> = relative.components().collect();
    for (n, part) in parts.iter().enumerate() {
        path.push(part);
        let last = n + 1 == parts.len();
        match fs::symlink_metadata(&path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(format!("cannot check {}: {err}", path.display())),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink: a rendered file must not be written through one",
                    path.display()
                ))
            }
            Ok(meta) if last && !meta.is_file() => {
                return Err(format!("{} is not a regular file", path.display()))
            }
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(format!("{} is not a directory", path.display()))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Writes `bytes` to `app_dir/relative`: a new temporary file beside it (mode
/// 0600, never through a symlink), fsync, rename over, fsync of the directory.
/// Missing directories are made, mode 0700.
fn write_atomically(app_dir: &Path, relative: &Path, bytes: &[u8]) -> io::Result<()> {
    let path = app_dir.join(relative);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".config-server-tmp");
    let temp = dir.join(temp_name);
    // Left by a write that was killed half way.
    let _ = fs::remove_file(&temp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn files(setting: &str, dir: &Path) -> Result<Files, String> {
        Files::from_setting(Some(setting), dir).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_are_checked_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().canonicalize().unwrap();
        fs::create_dir(app.join("real")).unwrap();
        symlink(app.join("real"), app.join("link")).unwrap();
        let outside = format!("{}/../x.env", app.display());
        for (setting, problem) in [
            (r#"{"path":"a"}"#.to_owned(), "not a JSON list"),
            (
                r#"[{"path":"a","format":"toml"}]"#.to_owned(),
                r#"[0]: format "toml" is not one of json, yaml, env or properties"#,
            ),
            (
                r#"[{"path":"a","format":"env","mode":1}]"#.to_owned(),
                "not a JSON list",
            ),
            (
                r#"[{"path":"../a","format":"env"}]"#.to_owned(),
                "[0]: ../a leaves the app's directory",
            ),
            (
                format!(r#"[{{"path":"{outside}","format":"env"}}]"#),
                "leaves the app's directory",
            ),
            (
                r#"[{"path":"/etc/x","format":"env"}]"#.to_owned(),
                "[0]: /etc/x is outside the app's directory",
            ),
            (
                r#"[{"path":"link/a.env","format":"env"}]"#.to_owned(),
                "link is a symlink",
            ),
            (
                r#"[{"path":"a","format":"env"},{"path":"./a","format":"json"}]"#.to_owned(),
                "[1]: a is rendered twice",
            ),
            (
                r#"[{"path":"a","format":"env","signal":"HUP"}]"#.to_owned(),
                "[0]: signal needs pid_file",
            ),
            (
                r#"[{"path":"a","format":"env","signal":"KILL","pid_file":"p"}]"#.to_owned(),
                "[0]: signal \"KILL\" is not one of",
            ),
            (
                r#"[{"path":"a","format":"env","command":"x","signal":"HUP","pid_file":"p"}]"#
                    .to_owned(),
                "[0]: give command, or signal and pid_file, not both",
            ),
        ] {
            let err = files(&setting, &app)
                .err()
                .unwrap_or_else(|| panic!("{setting} accepted"));
            assert!(
                err.starts_with(&format!("{SETTING} is not valid: ")),
                "{err}"
            );
            assert!(err.contains(problem), "{setting}: {err}");
        }
        let ok = files(
            &format!(r#"[{{"path":"{}/real/a.env","format":"env","key":"db"}},{{"path":"new/dir/b.json","format":"json","signal":"SIGHUP","pid_file":"app.pid"}}]"#, app.display()),
            &app,
        )
        .unwrap();
        assert_eq!(ok.targets[0].relative, Path::new("real/a.env"));
        assert_eq!(ok.targets[0].key, ["db"]);
    }

    #[test]
    fn files_are_written_whole_with_mode_0600_and_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        let files = files(r#"[{"path":"conf/db.env","format":"env","key":"db"}]"#, app).unwrap();
        let doc = |json: &str| Document::from_map(serde_json::from_str(json).unwrap());
        let metrics = Metrics::default();
        files.write_all(&doc(r#"{"db":{"user":"u"}}"#)).unwrap();
        let path = app.join("conf/db.env");
        assert_eq!(fs::read_to_string(&path).unwrap(), "user='u'\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(app.join("conf")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(files
            .update(&doc(r#"{"db":{"user":"u"},"other":1}"#), &metrics)
            .is_empty());
        assert_eq!(files.update(&doc(r#"{"db":{"user":"v"}}"#), &metrics), [0]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "user='v'\n");
        // The key is gone: the last good file stays.
        assert!(files.update(&doc(r#"{"x":1}"#), &metrics).is_empty());
        assert_eq!(fs::read_to_string(&path).unwrap(), "user='v'\n");
        // A symlink put in the way since startup: refused, nothing written through it.
        let elsewhere = tempfile::tempdir().unwrap();
        fs::remove_file(&path).unwrap();
        fs::remove_dir(app.join("conf")).unwrap();
        symlink(elsewhere.path(), app.join("conf")).unwrap();
        assert!(files
            .update(&doc(r#"{"db":{"user":"w"}}"#), &metrics)
            .is_empty());
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        let names: Vec<_> = fs::read_dir(app)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["conf"], "no temporary file left behind");
    }
}
