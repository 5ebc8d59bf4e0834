//! The sidecar must be reachable from inside the container only.
//!
//! Rather than connecting to this machine's non-loopback addresses (this
//! workplace allows test traffic to loopback only), the test reads the
//! kernel's table of listening sockets: the only listener on the sidecar's
//! port must be 127.0.0.1, in /proc/net/tcp and /proc/net/tcp6 alike, which
//! rules out 0.0.0.0, [::] and every interface address at once. A connection
//! to another loopback address (127.0.0.2) must be refused as well.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpStream;

use crate::support::Sidecar;

/// `local_address` of every socket listening on `port`, as the kernel shows it.
fn listeners(port: u16) -> Vec<String> {
    let suffix = format!(":{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_else(|err| panic!("read {table}: {err}"));
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // fields: sl, local_address, rem_address, st (0A = LISTEN), ...
            if let [_, local, _, "0A", ..] = fields[..] {
                if local.ends_with(&suffix) {
                    found.push(local.to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn listens_on_ipv4_loopback_only() {
    let sidecar = Sidecar::new().start();
    // 127.0.0.1 as a native-endian u32 in hex, as /proc/net/tcp prints it.
    let loopback = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
    assert_eq!(
        listeners(sidecar.port),
        [format!("{loopback}:{:04X}", sidecar.port)]
    );
    let err = TcpStream::connect(("127.0.0.2", sidecar.port))
        .expect_err("127.0.0.2 must not reach a server bound to 127.0.0.1");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
