//! Nothing half-written: everything a run puts in the deps dir is first made in one
//! staging dir beside it (`<DEPS_DIR>/.sidecar-buildpack-<idx>-XXXXXX.partial`), and
//! put in place with renames only once all of it is ready. A regular file a rename
//! replaces is kept by a hard link in the staging dir, so it is never missing; anything
//! else in the way (a directory, a symlink, a file where a directory must go) is moved
//! aside into the staging dir first. Both are put back if a later step fails. So a
//! failed run leaves the deps dir as it found it, and a killed one leaves the staging
//! dir and a deps dir part way through an ordered commit (see `supply::commit`), which
//! the next run finishes and sweeps.

use buildpack::errors::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

/// Names of our temp files and dirs directly in DEPS_DIR start with this and end
/// with `.partial` (the git-URL entry point's download too).
pub const TEMP_PREFIX: &str = ".sidecar-buildpack-";

/// One run's staged changes to the deps dir.
pub struct Staging {
    dir: Option<tempfile::TempDir>,
    deps_dir: PathBuf,
    done: Vec<Action>,
    /// How many of `done` `begin` recorded: DEPS_DIR and the parents it created, which
    /// hold the staging dir.
    begun: usize,
    aside: usize,
}

/// What the run did to the deps dir, in order, so it can be undone in reverse.
enum Action {
    Created(PathBuf),
    MovedAside {
        from: PathBuf,
        to: PathBuf,
    },
    Placed(PathBuf),
    /// A regular file at `dest` replaced by one rename; `kept` links the old one.
    Replaced {
        dest: PathBuf,
        kept: PathBuf,
    },
}

impl Staging {
    /// Makes the staging dir in `deps_dir` (and `deps_dir` itself, if missing).
    pub fn begin(deps_dir: &Path, deps_idx: &str) -> Result<Staging, Error> {
        let mut st = Staging {
            dir: None,
            deps_dir: deps_dir.to_path_buf(),
            done: Vec::new(),
            begun: 0,
            aside: 0,
        };
        let made = st.create_dir_all(deps_dir);
        st.begun = st.done.len();
        let dir = made.and_then(|()| {
            tempfile::Builder::new()
                .prefix(&format!("{TEMP_PREFIX}{deps_idx}-"))
                .suffix(".partial")
                .tempdir_in(deps_dir)
                .map_err(Error::write(deps_dir))
        });
        match dir {
            Ok(d) => {
                st.dir = Some(d);
                Ok(st)
            }
            Err(e) => {
                st.rollback();
                Err(e)
            }
        }
    }

    /// Where new files are made and downloads land before the commit.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(&self.deps_dir, |d| d.path())
    }

    /// Creates `dir` and any missing parents, recording each for rollback.
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), Error> {
        let mut missing = Vec::new();
        // A relative path's last parent is "": the working directory, which exists.
        let mut at = Some(dir).filter(|p| !p.as_os_str().is_empty());
        while let Some(p) = at {
            match fs::symlink_metadata(p) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Only a real absence is missing: creating it would fail with a
                // misleading "exists".
                Err(e) => return Err(Error::write(p)(e)),
            }
            missing.push(p.to_path_buf());
            at = p.parent().filter(|p| !p.as_os_str().is_empty());
        }
        for p in missing.into_iter().rev() {
            fs::create_dir(&p).map_err(Error::write(&p))?;
            self.done.push(Action::Created(p));
        }
        Ok(())
    }

    /// Moves whatever is at `path` (a file, a symlink, a directory) into the staging
    /// dir, to be put back on rollback or removed with the staging dir on success.
    fn move_aside(&mut self, path: &Path) -> Result<(), Error> {
        self.aside += 1;
        let to = self.path().join(format!("old-{}", self.aside));
        fs::rename(path, &to).map_err(Error::write(path))?;
        self.done.push(Action::MovedAside {
            from: path.to_path_buf(),
            to,
        });
        Ok(())
    }

    /// Makes `dir` a real directory: a file or symlink there is moved aside (never
    /// followed), a missing one is created. Its parent must be one already.
    pub fn ensure_dir(&mut self, dir: &Path) -> Result<(), Error> {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => self.move_aside(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::write(dir)(e)),
        }
        fs::create_dir(dir).map_err(Error::write(dir))?;
        self.done.push(Action::Created(dir.to_path_buf()));
        Ok(())
    }

    /// Puts the staged file `staged` at `dest`. A regular file there is replaced by the
    /// one rename, after a hard link in the staging dir keeps it for rollback: `dest`
    /// is never missing, so a run killed here leaves the old file or the new one.
    /// Anything else there (a directory, a symlink) is moved aside first, so it is
    /// replaced, never written through.
    pub fn place(&mut self, staged: &Path, dest: &Path) -> Result<(), Error> {
        let old = match fs::symlink_metadata(dest) {
            Ok(m) if m.is_file() => self.keep_link(dest)?,
            Ok(_) => {
                self.move_aside(dest)?;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::write(dest)(e)),
        };
        fs::rename(staged, dest).map_err(Error::write(dest))?;
        self.done.push(match old {
            Some(kept) => Action::Replaced {
                dest: dest.to_path_buf(),
                kept,
            },
            None => Action::Placed(dest.to_path_buf()),
        });
        Ok(())
    }

    /// A hard link to the regular file `dest` in the staging dir, to put back on
    /// rollback. Where the filesystem cannot link, `dest` is moved aside instead (and
    /// is missing until the rename that follows).
    fn keep_link(&mut self, dest: &Path) -> Result<Option<PathBuf>, Error> {
        self.aside += 1;
        let kept = self.path().join(format!("old-{}", self.aside));
        match fs::hard_link(dest, &kept) {
            Ok(()) => Ok(Some(kept)),
            Err(e) => {
                debug!("could not link {}: {e}; moving it aside", dest.display());
                self.move_aside(dest).map(|()| None)
            }
        }
    }

    /// True when `dir` is a real directory; false when nothing or something else is
    /// there. Only a real absence means absent: an error (an I/O error) fails.
    pub fn is_real_dir(&self, dir: &Path) -> Result<bool, Error> {
        match fs::symlink_metadata(dir) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::write(dir)(e)),
        }
    }

    /// Removes whatever is at `dest`, undoably.
    pub fn remove(&mut self, dest: &Path) -> Result<(), Error> {
        match fs::symlink_metadata(dest) {
            Ok(_) => self.move_aside(dest),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::write(dest)(e)),
        }
    }

    /// Undoes every change in reverse order and removes the staging dir.
    pub fn rollback(mut self) {
        let done = std::mem::take(&mut self.done);
        for (i, action) in done.into_iter().enumerate().rev() {
            let undone = match &action {
                Action::Placed(p) => fs::remove_file(p),
                Action::MovedAside { from, to } => fs::rename(to, from),
                Action::Replaced { dest, kept } => fs::rename(kept, dest),
                Action::Created(d) => {
                    // A DEPS_DIR created by `begin` holds the staging dir: it goes
                    // first (everything moved aside into it is back by now). Known by
                    // position, not by path: the staging dir's path is absolute, a
                    // DEPS_DIR given on the command line may be relative.
                    if i < self.begun {
                        self.dir.take();
                    }
                    fs::remove_dir(d)
                }
            };
            if let Err(e) = undone {
                let path = match &action {
                    Action::Placed(p) | Action::Created(p) => p,
                    Action::MovedAside { from, .. } | Action::Replaced { dest: from, .. } => from,
                };
                warn!("could not undo the change to {}: {e}", path.display());
            }
        }
    }

    /// Keeps every change: removes the staging dir, with what was moved aside, and the
    /// leftovers of runs that were killed (ours in DEPS_DIR, and the temp files of
    /// older versions in `idx_dir`).
    pub fn finish(mut self, idx_dir: &Path) {
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                warn!("could not remove {}: {e}", path.display());
            }
        }
        for e in fs::read_dir(&self.deps_dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(TEMP_PREFIX) && name.ends_with(".partial") {
                remove_leftover(&e.path());
            }
        }
        for e in fs::read_dir(idx_dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".unpack-") || (name.starts_with('.') && name.ends_with(".partial"))
            {
                remove_leftover(&e.path());
            }
        }
    }
}

/// Removes a file, symlink or directory a killed run left behind.
fn remove_leftover(p: &Path) {
    let removed = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => return,
    };
    match removed {
        Ok(()) => debug!("removed {}, left by an earlier staging", p.display()),
        Err(e) => warn!(
            "could not remove {}, left by an earlier staging: {e}",
            p.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read").flatten() {
                let p = e.path();
                let m = fs::symlink_metadata(&p).expect("stat");
                let what = if m.is_symlink() {
                    format!("-> {}", fs::read_link(&p).expect("link").display())
                } else if m.is_dir() {
                    stack.push(p.clone());
                    "dir".into()
                } else {
                    fs::read_to_string(&p).unwrap_or_default()
                };
                out.push(format!(
                    "{} {what}",
                    p.strip_prefix(dir).expect("under").display()
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn rollback_restores_what_was_there() {
        let root = tempfile::tempdir().expect("root");
        let deps = root.path().join("deps");
        fs::create_dir_all(deps.join("0")).expect("idx");
        fs::write(deps.join("0/launch.yml"), "old").expect("old");
        fs::create_dir(deps.join("0/config.yml")).expect("dir in the way");
        symlink("/nowhere", deps.join("0/bin")).expect("link in the way");
        let before = tree(&deps);

        let mut st = Staging::begin(&deps, "0").expect("begin");
        for name in ["a", "b", "c"] {
            fs::write(st.path().join(name), "new").expect("stage");
        }
        st.ensure_dir(&deps.join("0/bin")).expect("bin");
        st.place(&st.path().join("a"), &deps.join("0/bin/x"))
            .expect("place");
        st.place(&st.path().join("b"), &deps.join("0/launch.yml"))
            .expect("place");
        st.place(&st.path().join("c"), &deps.join("0/config.yml"))
            .expect("place");
        st.ensure_dir(&deps.join("3")).expect("unpadded");
        assert_ne!(tree(&deps), before);
        st.rollback();
        assert_eq!(tree(&deps), before);
    }

    #[test]
    fn rollback_removes_a_deps_dir_it_created() {
        let root = tempfile::tempdir().expect("root");
        let deps = root.path().join("a/b/deps");
        let st = Staging::begin(&deps, "0").expect("begin");
        assert!(st.path().starts_with(&deps));
        st.rollback();
        assert_eq!(tree(root.path()), Vec::<String>::new());
    }

    #[test]
    fn finish_keeps_the_changes_and_sweeps_leftovers() {
        let root = tempfile::tempdir().expect("root");
        let deps = root.path().join("deps");
        fs::create_dir_all(deps.join("0")).expect("idx");
        fs::create_dir(deps.join(".sidecar-buildpack-0-dead.partial")).expect("leftover");
        fs::write(deps.join(".sidecar-buildpack-supply-x.partial"), "x").expect("leftover");
        fs::write(deps.join("0/.config-server-x.partial"), "x").expect("leftover");
        fs::write(deps.join("0/launch.yml"), "old").expect("old");
        let mut st = Staging::begin(&deps, "0").expect("begin");
        fs::write(st.path().join("n"), "new").expect("stage");
        st.place(&st.path().join("n"), &deps.join("0/launch.yml"))
            .expect("place");
        st.finish(&deps.join("0"));
        assert_eq!(tree(&deps), ["0 dir", "0/launch.yml new"]);
    }
}
