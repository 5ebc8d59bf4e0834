//! A real forward proxy on loopback.

use super::server::closed_port;
use std::fs;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A real forward proxy (tinyproxy) on 127.0.0.1, logging every request it forwards.
/// scripts/test installs tinyproxy; without it the test fails and says so.
pub(crate) struct Tinyproxy {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    #[must_use = "the proxy stops when dropped"]
    pub(crate) fn start() -> Tinyproxy {
        Tinyproxy::configured("")
    }

    /// A proxy that wants `user` and `password` (Basic): without them it answers 407.
    #[must_use = "the proxy stops when dropped"]
    pub(crate) fn with_auth(user: &str, password: &str) -> Tinyproxy {
        Tinyproxy::configured(&format!("BasicAuth {user} {password}\n"))
    }

    fn configured(extra: &str) -> Tinyproxy {
        let dir = tempfile::tempdir().expect("proxy dir");
        let port = closed_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 16\nAllow 127.0.0.1\nDisableViaHeader Yes\n{extra}",
                log.display()
            ),
        )
        .expect("proxy conf");
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run tinyproxy ({e}): the proxy tests need it; scripts/test installs \
                     it (apt-get install tinyproxy)"
                )
            });
        let mut proxy = Tinyproxy { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "tinyproxy exited at start ({status}); log:\n{}",
                    proxy.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
