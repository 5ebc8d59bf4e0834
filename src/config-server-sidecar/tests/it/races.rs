//! Reloads racing with whatever changes the files underneath: a FIFO swapped
//! in between two looks at the same path, binding trees swapped half way
//! through a read, reloads that fail for a reason that passes by itself.
//! Races are provoked with bounded loops (a swapper thread, SIGHUP storms);
//! nothing asserts a speed.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::support::{request, Running, Sidecar};

fn sighup(sidecar: &Running) {
    use rustix::process::{kill_process, Pid, Signal};
    let pid = Pid::from_raw(i32::try_from(sidecar.pid()).expect("pid")).expect("a pid");
    kill_process(pid, Signal::HUP).expect("SIGHUP the sidecar");
}

/// Runs `swap` over and over in a thread until the returned guard is dropped.
fn swapping(mut swap: impl FnMut(usize) + Send + 'static) -> impl Drop {
    struct Stop(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            if let Some(thread) = self.1.take() {
                let _ = thread.join();
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let thread = thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                swap(i);
                i += 1;
            }
        }
    });
    Stop(stop, Some(thread))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Swaps `file` between a regular file and a FIFO as fast as renames go.
fn fifo_swapper(dir: &Path, file: &Path, text: &str) -> impl Drop {
    let (regular, fifo, tmp) = (dir.join("regular"), dir.join("fifo"), dir.join("tmp"));
    fs::write(&regular, text).expect("write");
    mkfifo(&fifo);
    let file = file.to_path_buf();
    swapping(move |i| {
        let _ = fs::remove_file(&tmp);
        let from = if i % 2 == 0 { &regular } else { &fifo };
        if fs::hard_link(from, &tmp).is_ok() {
            let _ = fs::rename(&tmp, &file);
        }
    })
}

/// SIGHUPs the sidecar `storms` times and checks after each that it still answers.
fn assert_answers_through_sighup_storms(sidecar: &Running, storms: usize) {
    for _ in 0..storms {
        for _ in 0..20 {
            sighup(sidecar);
            thread::sleep(std::time::Duration::from_micros(200));
        }
        let health = request(sidecar.port, "GET", "/health");
        assert!(
            health.as_ref().is_ok_and(|r| r.status == 200),
            "the sidecar stopped answering ({health:?}); stderr:\n{}",
            sidecar.stderr()
        );
    }
}

#[test]
fn a_fifo_swapped_in_while_reloading_never_blocks_the_sidecar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    fs::write(&file, "a: 1\n").expect("write");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &file)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let swapper = fifo_swapper(dir.path(), &file, "a: 2\n");
    assert_answers_through_sighup_storms(&sidecar, 300);
    drop(swapper);
    assert!(sidecar.stderr().contains("not a regular file"));
}

#[test]
fn a_fifo_swapped_into_a_binding_tree_never_blocks_the_sidecar() {
    let root = tempfile::tempdir().expect("tempdir");
    let binding = root.path().join("cfg");
    fs::create_dir(&binding).expect("mkdir");
    fs::write(binding.join("type"), "config-server").expect("write");
    let password = binding.join("password");
    fs::write(&password, "one").expect("write");
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let spare = tempfile::tempdir().expect("tempdir");
    let swapper = fifo_swapper(spare.path(), &password, "two");
    assert_answers_through_sighup_storms(&sidecar, 300);
    drop(swapper);
    assert!(sidecar.stderr().contains("password: not a regular file"));
}
