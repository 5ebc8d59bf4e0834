//! CONFIG_SERVER_PORT: exit code 2 for unusable values, 4 when the port is taken.

use std::net::TcpListener;

use crate::support::{free_port, Sidecar};

#[test]
fn port_that_is_not_a_number_from_1_to_65535() {
    for value in ["http", "0", "70000", "-1", "8082 "] {
        Sidecar::new()
            .env("CONFIG_SERVER_PORT", value)
            .run_to_exit()
            .assert_error(
                2,
                &format!("CONFIG_SERVER_PORT={value:?} is not a port number from 1 to 65535"),
            );
    }
}

#[test]
fn port_equal_to_app_port() {
    let port = free_port();
    Sidecar::new()
        .port(port)
        .env("PORT", port.to_string())
        .run_to_exit()
        .assert_error(
            2,
            &format!(
                "CONFIG_SERVER_PORT={port} is the app's own PORT: give the sidecar another port \
                 in the app's manifest env"
            ),
        );
}

/// Proves the default without binding 8082 (which something else may use):
/// with PORT=8082 the sidecar stops right after choosing its port.
#[test]
fn unset_port_defaults_to_8082() {
    Sidecar::new()
        .env_remove("CONFIG_SERVER_PORT")
        .env("PORT", "8082")
        .run_to_exit()
        .assert_error(
            2,
            "CONFIG_SERVER_PORT is not set, and its default 8082 is the app's own PORT: set \
             CONFIG_SERVER_PORT to another port in the app's manifest env",
        );
}

/// The default, and its warning, when the sidecar really tries to listen.
/// The test holds 8082 itself (or something else does) so that the sidecar
/// never serves there: it must fail to listen on exactly that port.
#[test]
fn unset_port_uses_8082_and_says_so() {
    let _blocker = TcpListener::bind("127.0.0.1:8082");
    let exited = Sidecar::new()
        .env_remove("CONFIG_SERVER_PORT")
        .run_to_exit();
    assert_eq!(exited.code, Some(4), "{exited:#?}");
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            "warning: CONFIG_SERVER_PORT is not set: using port 8082; set it in the app's \
             manifest env so that the app and the sidecar agree"
        )
    );
    assert_eq!(
        lines.last().copied(),
        Some(
            "error: cannot listen on 127.0.0.1:8082 (CONFIG_SERVER_PORT): Address already in use \
             (os error 98)"
        )
    );
}

#[test]
fn port_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    Sidecar::new().port(port).run_to_exit().assert_error(
        4,
        &format!(
            "cannot listen on 127.0.0.1:{port} (CONFIG_SERVER_PORT): Address already in use \
             (os error 98)"
        ),
    );
}
