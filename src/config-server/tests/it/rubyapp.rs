//! The fixture app (fixtures/rubyapp) against the real sidecar, run with
//! Debian's Ruby and gems exactly as its Procfile says, on loopback.
//!
//! Needs `ruby` and `bundle`: `scripts/install-ruby` installs them. Without
//! them these tests fail (never skip) and say so.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::support::{capture, free_port, request, wait_for, Response, Sidecar, DEMO};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/rubyapp");
/// Ruby, Sinatra and WEBrick start in about a second; allow for a busy machine.
const APP_START: Duration = Duration::from_secs(60);

/// The app started from a temp copy of the fixture; its process group is
/// killed on drop, so a failing test leaves no Ruby behind.
struct RubyApp {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl RubyApp {
    fn start(config_server_port: u16) -> Self {
        for tool in ["ruby", "bundle"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "`{tool}` is not installed: run scripts/install-ruby (as root) to install Ruby \
                 and the fixture app's gems from Debian's packages"
            );
        }

        let dir = tempfile::tempdir().expect("tempdir");
        for entry in fs::read_dir(FIXTURE).expect("read fixtures/rubyapp") {
            let entry = entry.expect("dir entry");
            if entry.file_type().expect("file type").is_file() {
                fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
            }
        }

        let port = free_port();
        // The Procfile's command, plus -o so that the test app stays on loopback.
        let mut child = Command::new("bundle")
            .args([
                "exec",
                "rackup",
                "config.ru",
                "-p",
                &port.to_string(),
                "-o",
                "127.0.0.1",
            ])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("PORT", port.to_string())
            .env("CONFIG_SERVER_PORT", config_server_port.to_string())
            .env("RACK_ENV", "production")
            .env("BUNDLE_GEMFILE", dir.path().join("Gemfile"))
            // Use Gemfile.lock as committed: fail rather than re-resolve.
            .env("BUNDLE_FROZEN", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn bundle exec rackup");
        let output = capture(child.stderr.take().expect("stderr"));
        let stdout = capture(child.stdout.take().expect("stdout"));
        let mut app = Self {
            child,
            port,
            output,
            _dir: dir,
        };

        let up = wait_for(APP_START, || {
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!(
                    "the Ruby app exited with {status}:\n{}{}",
                    stdout.lock().expect("lock"),
                    app.output()
                );
            }
            request(port, "GET", "/").ok()
        });
        assert!(
            up.is_some(),
            "the Ruby app did not start within {APP_START:?}:\n{}",
            app.output()
        );
        app
    }

    fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path)
            .unwrap_or_else(|err| panic!("GET {path} on the Ruby app: {err}\n{}", self.output()))
    }

    fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }
}

impl Drop for RubyApp {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs Ruby and the fixture app's gems (scripts/install-ruby)"]
fn app_gets_its_config_from_the_sidecar_and_502_without_it() {
    let sidecar = Sidecar::new().start();
    let app = RubyApp::start(sidecar.port);

    let greeting = app.get("/");
    assert_eq!(
        (
            greeting.status,
            greeting.header("content-type"),
            greeting.body.as_str()
        ),
        (
            200,
            Some("text/plain;charset=utf-8"),
            "Hi, I'm an app with a sidecar!"
        )
    );
    app.get("/config").assert_json(200, DEMO);

    let port = sidecar.port;
    let (exited, _) = sidecar.stop("SIGTERM");
    assert_eq!(exited.code, Some(0));
    app.get("/config").assert_json(
        502,
        &format!(r#"{{"error":"config-server unreachable on 127.0.0.1:{port}"}}"#),
    );
}

#[test]
#[ignore = "needs Ruby and the fixture app's gems (scripts/install-ruby)"]
fn app_turns_a_sidecar_error_status_into_502() {
    // A stand-in sidecar that fails every request.
    let failing = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = failing.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in failing.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let app = RubyApp::start(port);
    app.get("/config").assert_json(
        502,
        &format!(r#"{{"error":"config-server on 127.0.0.1:{port} answered 503"}}"#),
    );
}

#[test]
fn fixture_has_the_files_cf_push_needs() {
    let dir = Path::new(FIXTURE);
    for file in [
        "Gemfile",
        "Gemfile.lock",
        "config.ru",
        "app.rb",
        "Procfile",
        "manifest.yml",
    ] {
        assert!(
            dir.join(file).is_file(),
            "fixtures/rubyapp/{file} is missing"
        );
    }
    let procfile = fs::read_to_string(dir.join("Procfile")).expect("read Procfile");
    assert_eq!(procfile, "web: bundle exec rackup config.ru -p $PORT\n");
}
