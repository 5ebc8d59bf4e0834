//! Reloads racing with whatever changes the files underneath: a FIFO swapped
//! in between two looks at the same path, binding trees swapped half way
//! through a read, reloads that fail for a reason that passes by itself.
//! Races are provoked with bounded loops (a swapper thread, SIGHUP storms);
//! nothing asserts a speed.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::{
    lowest_free_fd, read_response, request, set_open_files, wait_for, Running, Sidecar,
};

const PATIENCE: Duration = Duration::from_secs(10);

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
            thread::sleep(Duration::from_micros(200));
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
    sidecar.wait_stderr("not a regular file");
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
    sidecar.wait_stderr("password: not a regular file");
}

/// A Kubernetes-style binding: every file a symlink through `..data` to one of
/// two versions, in which `user` and `password` always go together.
fn versioned_binding(root: &Path) -> std::path::PathBuf {
    let binding = root.join("cfg");
    for (version, n) in [("..v1", "1"), ("..v2", "2")] {
        let dir = binding.join(version);
        fs::create_dir_all(&dir).expect("mkdir");
        for key in ["host", "password", "user"] {
            fs::write(dir.join(key), format!("{key}{n}")).expect("write");
        }
    }
    symlink("..v1", binding.join("..data")).expect("symlink");
    for key in ["host", "password", "user"] {
        symlink(format!("..data/{key}"), binding.join(key)).expect("symlink");
    }
    fs::write(binding.join("type"), "config-server").expect("write");
    binding
}

#[test]
fn a_binding_tree_swapped_while_it_is_read_is_never_served_half_and_half() {
    let root = tempfile::tempdir().expect("tempdir");
    let binding = versioned_binding(root.path());
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let one = r#"{"host":"host1","password":"password1","user":"user1"}"#;
    let two = r#"{"host":"host2","password":"password2","user":"user2"}"#;
    sidecar.get("/config/").assert_json(200, one);
    let swapper = swapping(move |i| {
        let tmp = binding.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        if symlink(if i % 2 == 0 { "..v2" } else { "..v1" }, &tmp).is_ok() {
            let _ = fs::rename(&tmp, binding.join("..data"));
        }
    });
    for _ in 0..300 {
        for _ in 0..5 {
            sighup(&sidecar);
        }
        let body = sidecar.get("/config/").body;
        assert!(body == one || body == two, "served a mix: {body}");
    }
    drop(swapper);
    // Once the swaps stop, the version left in place is served.
    let tmp = root.path().join("cfg/..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink("..v2", &tmp).expect("symlink");
    fs::rename(&tmp, root.path().join("cfg/..data")).expect("swap");
    assert!(
        wait_for(PATIENCE, || (sidecar.get("/config/").body == two)
            .then_some(()))
        .is_some(),
        "the last version was never served; stderr:\n{}",
        sidecar.stderr()
    );
}

fn health(sidecar: &Running) -> serde_json::Value {
    sidecar.get("/health").json()
}

#[test]
fn a_change_missed_for_want_of_file_descriptors_is_picked_up_when_they_are_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yml");
    fs::write(&file, "token: one\n").expect("write");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &file)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let pid = sidecar.pid();
    // Let the startup check's connection close first: no file descriptor to spare.
    thread::sleep(Duration::from_millis(200));
    set_open_files(pid, lowest_free_fd(pid));
    fs::write(dir.path().join("new"), "token: two\n").expect("write");
    fs::rename(dir.path().join("new"), &file).expect("rename");
    wait_for(PATIENCE, || {
        sidecar
            .stderr()
            .contains("cannot read it: Too many open files")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the reload did not fail for want of file descriptors; stdout:\n{}\nstderr:\n{}",
            sidecar.stdout(),
            sidecar.stderr()
        )
    });
    // Nothing changes any more; file descriptors come back.
    set_open_files(pid, 1024);
    assert!(
        wait_for(PATIENCE, || (sidecar.get("/config/token").body
            == r#""two""#)
            .then_some(()))
        .is_some(),
        "the new version was never loaded; stderr:\n{}",
        sidecar.stderr()
    );
    assert_eq!(health(&sidecar)["last_attempt_failed"], false);
}

#[test]
fn requests_are_answered_while_a_large_document_reloads() {
    // #21: a reload read and checked the new document on the thread that answers
    // requests, so a large one held every request until it was done. `/metrics`
    // says `reloading 1` only while a reload runs: a request that sees it was
    // answered during one.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.yml");
    let text: String = (0..40_000)
        .map(|i| format!("k{i:05}: v{i:010}\n"))
        .collect();
    fs::write(&path, text).expect("write");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "0")
        .start();
    let mut conn = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    let mut get = |path: &str| {
        write!(conn, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        read_response(&mut conn)
    };
    let mut seen = false;
    for round in 1..=20 {
        sidecar.signal("HUP");
        let done = format!("config_server_reloads_total{{outcome=\"unchanged\"}} {round}\n");
        loop {
            let metrics = get("/metrics").body;
            if metrics.contains("config_server_reloading 1\n") {
                get("/config/k00001").assert_json(200, r#""v0000000001""#);
                seen = true;
            }
            if metrics.contains(&done) {
                break;
            }
        }
        if seen {
            break;
        }
    }
    assert!(
        seen,
        "no request was answered while a reload ran, in 20 reloads"
    );
}
