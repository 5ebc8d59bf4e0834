//! Notices that the configuration's files changed, by a low-frequency stat poll.
//!
//! Every interval (1 s by default) it stats the configured file, or the
//! bindings file, or every file of the `SERVICE_BINDING_ROOT` tree, following
//! symlinks, and hashes what it found: device, inode, size, mode, mtime and
//! ctime. Any change (an edit in place, a rename over the file, a Kubernetes
//! `..data` symlink swap, a symlink anywhere on the path pointed elsewhere, a
//! chmod, a deletion) changes the hash; the poll then waits until the files
//! hold still and asks for a reload.
//!
//! How long they must hold still depends on how they changed (#21). A file
//! replaced whole (a rename over it, a `..data` swap: its inode changed) is
//! complete by construction, and 50 ms is enough for a tree swapped file by
//! file. A file rewritten in place (same inode) may be half written: a writer
//! that truncates, writes a first half, and writes the second half later
//! leaves a file that parses, without the second half. Nothing in the bytes
//! tells it from a whole one, so it is read only once it has held still for
//! `CONFIG_SERVER_SETTLE_MS` (1 s), and while it keeps changing it is not read
//! at all. Writers should replace the file (write a temporary file, rename
//! it over); a writer in place must not pause that long mid-write.
//!
//! Why a poll and not inotify: inotify watches inodes, not paths, so it misses
//! a change behind a symlink in another directory, needs re-arming whenever a
//! directory is replaced, and draws on a per-user watch limit that the app in
//! the same container shares. A stat of a few files a second costs a few
//! microseconds of CPU and holds no file descriptor. An idle sidecar with
//! nothing to watch (the demo document, or VCAP_SERVICES) runs no timer at all.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::bindings::MAX_TREE_ENTRIES;
use crate::config::{BindingsInput, Source};
use crate::reload::{Live, Trigger};

/// How long files replaced whole must hold still before a change is loaded.
const SETTLE: Duration = Duration::from_millis(50);
/// How many times to wait for files replaced whole that keep changing before
/// loading anyway (each version is whole; only files changed in place wait
/// until they hold still).
const SETTLE_TRIES: usize = 20;

/// What to stat.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    File(PathBuf),
    Tree(PathBuf),
}

/// The files behind `source`; empty when nothing can change (an environment variable).
pub(crate) fn targets(source: &Source) -> Vec<Target> {
    match source {
        Source::File(path) => vec![Target::File(path.clone())],
        Source::Services { bindings, .. } => bindings
            .iter()
            .filter_map(|input| match input {
                BindingsInput::Root(root) => Some(Target::Tree(root.clone())),
                BindingsInput::File(path) => Some(Target::File(path.clone())),
                BindingsInput::Env(_) => None,
            })
            .collect(),
    }
}

/// The state of the targets' files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Print {
    /// A hash of everything stat says of them.
    pub all: u64,
    /// A hash of which files they are (device and inode) only: it stays the
    /// same when the files are changed in place.
    pub identity: u64,
}

/// Two hashers: one for everything, one for the files' identities.
#[derive(Default)]
struct Hashers {
    all: DefaultHasher,
    identity: DefaultHasher,
}

/// The state of every target's files.
pub(crate) fn fingerprint(targets: &[Target]) -> Print {
    let mut hasher = Hashers::default();
    for target in targets {
        match target {
            Target::File(path) => {
                stat(path, Follow::Yes, &mut hasher);
                // Its directory's mode: the file safety rule depends on it.
                if let Some(dir) = path.parent() {
                    fs::metadata(dir)
                        .ok()
                        .map(|m| (m.ino(), m.mode()))
                        .hash(&mut hasher.all);
                }
            }
            Target::Tree(root) => walk_tree(root, &mut hasher),
        }
    }
    Print {
        all: hasher.all.finish(),
        identity: hasher.identity.finish(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Yes,
    No,
}

fn stat(path: &Path, follow: Follow, hashers: &mut Hashers) -> Option<fs::Metadata> {
    path.hash(&mut hashers.all);
    path.hash(&mut hashers.identity);
    let hasher = &mut hashers.all;
    let meta = match follow {
        Follow::Yes => fs::metadata(path),
        Follow::No => fs::symlink_metadata(path),
    };
    match meta {
        Ok(m) => {
            (m.dev(), m.ino()).hash(&mut hashers.identity);
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
                .hash(hasher);
            Some(m)
        }
        Err(err) => {
            err.kind().hash(hasher);
            err.kind().hash(&mut hashers.identity);
            None
        }
    }
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

/// The tree as `bindings` reads it: the root, the binding directories and their
/// files, followed through symlinks. Hidden entries (`..data`, `..2024_...`)
/// are stat'ed themselves, not followed: a Kubernetes swap replaces the
/// `..data` symlink, which shows even when the swap goes back to files that
/// look the same as before. At most [`MAX_TREE_ENTRIES`] entries are listed,
/// as many as a load would accept.
fn walk_tree(root: &Path, hasher: &mut Hashers) {
    let mut budget = MAX_TREE_ENTRIES;
    if !stat(root, Follow::Yes, hasher).is_some_and(|m| m.is_dir()) {
        return;
    }
    for name in entries(root, &mut budget, hasher) {
        let dir = root.join(&name);
        if is_hidden(&name) {
            stat(&dir, Follow::No, hasher);
            continue;
        }
        if !stat(&dir, Follow::Yes, hasher).is_some_and(|m| m.is_dir()) {
            continue;
        }
        for name in entries(&dir, &mut budget, hasher) {
            let follow = if is_hidden(&name) {
                Follow::No
            } else {
                Follow::Yes
            };
            stat(&dir.join(name), follow, hasher);
        }
    }
}

/// The names in `dir`, sorted; no more than `budget` of them, which they use up.
fn entries(dir: &Path, budget: &mut usize, hashers: &mut Hashers) -> Vec<OsString> {
    let hasher = &mut hashers.all;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            err.kind().hash(hasher);
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        if *budget == 0 {
            "over the limit".hash(hasher);
            break;
        }
        *budget -= 1;
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(err) => err.kind().hash(hasher),
        }
    }
    names.sort();
    names
}

/// Polls the targets every `interval` and asks for a reload when they change,
/// or when the last reload failed in a way that may pass without a change
/// (see [`Live::wants_retry`]); never returns (and does nothing when there is
/// nothing to watch). Files changed in place are read only once they held
/// still for `settle`.
pub(crate) async fn run(
    live: Arc<Live>,
    trigger: Trigger,
    source: Arc<Source>,
    interval: Duration,
    settle: Duration,
) {
    let targets = targets(&source);
    if targets.is_empty() {
        return std::future::pending().await;
    }
    let mut seen = fingerprint(&targets);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut now = fingerprint(&targets);
        if now == seen && !live.wants_retry() {
            continue;
        }
        if now.identity == seen.identity && now.all != seen.all {
            // Changed in place: perhaps half written.
            tokio::time::sleep(settle).await;
            if fingerprint(&targets) != now {
                continue; // Still being written: look again at the next tick.
            }
        } else {
            for _ in 0..SETTLE_TRIES {
                tokio::time::sleep(SETTLE).await;
                let again = fingerprint(&targets);
                if again == now {
                    break;
                }
                now = again;
            }
        }
        seen = now;
        trigger.reload("a change");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn every_kind_of_change_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        fs::write(&file, "a: 1\n").unwrap();
        let targets = [Target::File(file.clone())];
        let mut last = fingerprint(&targets);
        assert_eq!(fingerprint(&targets), last, "stable when nothing changes");
        let mut changed = |what: &str, replaced: bool| {
            let now = fingerprint(&targets);
            assert_ne!(now.all, last.all, "{what}");
            assert_eq!(now.identity != last.identity, replaced, "{what}");
            last = now;
        };
        fs::write(&file, "a: 2\n").unwrap();
        changed("same size, new content", false);
        let tmp = dir.path().join("new");
        fs::write(&tmp, "a: 3\n").unwrap();
        fs::rename(&tmp, &file).unwrap();
        changed("renamed over", true);
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        changed("chmod", false);
        fs::remove_file(&file).unwrap();
        changed("deleted", true);
    }

    #[test]
    fn a_kubernetes_data_swap_changes_the_tree_fingerprint() {
        let root = tempfile::tempdir().unwrap();
        let binding = root.path().join("cfg");
        fs::create_dir(&binding).unwrap();
        for (version, value) in [("..v1", "one"), ("..v2", "two")] {
            fs::create_dir(binding.join(version)).unwrap();
            fs::write(binding.join(version).join("password"), value).unwrap();
        }
        symlink("..v1", binding.join("..data")).unwrap();
        symlink("..data/password", binding.join("password")).unwrap();
        let targets = [Target::Tree(root.path().to_path_buf())];
        let before = fingerprint(&targets);
        let swap = |version: &str| {
            symlink(version, binding.join("..data_tmp")).unwrap();
            fs::rename(binding.join("..data_tmp"), binding.join("..data")).unwrap();
        };
        swap("..v2");
        assert_ne!(fingerprint(&targets), before);
        // Back to the same files: still a change (a read may have straddled both swaps).
        swap("..v1");
        assert_ne!(fingerprint(&targets), before);
    }

    #[test]
    fn a_tree_is_listed_no_further_than_a_load_reads_it() {
        let root = tempfile::tempdir().unwrap();
        let binding = root.path().join("cfg");
        fs::create_dir(&binding).unwrap();
        for i in 0..MAX_TREE_ENTRIES + 10 {
            fs::write(binding.join(format!(".{i}")), "").unwrap();
        }
        let mut budget = MAX_TREE_ENTRIES;
        let listed = entries(&binding, &mut budget, &mut Hashers::default());
        assert_eq!((listed.len(), budget), (MAX_TREE_ENTRIES, 0));
    }
}
