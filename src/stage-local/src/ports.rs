//! The ports an instance needs, checked before anything starts. On CF every container
//! has its own network, so `PORT` (8080) and a sidecar's fixed port are always free;
//! here the instance shares the machine, so a port may be taken. The app and its
//! sidecars get the same environment (a sidecar must never listen on `$PORT`), so the
//! port a sidecar listens on is one the app's env names: this buildpack's config-server
//! reads `CONFIG_SERVER_PORT`. stage-local takes `<SIDECAR NAME>_PORT` (the sidecar's
//! name upper-cased, other characters as `_`) as that sidecar's port. When a port is
//! taken, the message names the process that listens on it, found in `/proc/net/tcp*`
//! and `/proc/<pid>/fd`.

use crate::app::App;
use crate::errors::Error;
use crate::process::running_as;
use crate::result::Sidecar;
use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;

/// A port the app's env gives a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarPort {
    /// The variable, e.g. `CONFIG_SERVER_PORT`.
    pub var: String,
    pub port: u16,
    pub sidecar: String,
}

/// The variable that holds `sidecar`'s port by stage-local's convention.
pub fn var_for(sidecar: &str) -> String {
    let name: String = sidecar
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_PORT")
}

/// Checks every port the instance needs before anything starts, and picks `PORT`:
/// returns it with the sidecars' ports. A sidecar's port that is taken fails, naming
/// its holder; another `*_PORT` of the app's env that is taken only gets a warning, as
/// it may well name a remote service.
pub fn plan(
    app: &App,
    sidecars: &[&Sidecar],
    wanted: Option<u16>,
) -> anyhow::Result<(u16, Vec<SidecarPort>)> {
    let ports = of_sidecars(app, sidecars);
    check_sidecar_ports(&ports)?;
    if !sidecars.is_empty() {
        for (var, p) in other_env_ports(app, &ports) {
            if in_use(p) {
                crate::out::warn(format!(
                    "the app's env has {var}={p}, and port {p} is held here by {}; if a \
                     sidecar is to listen on it, it cannot",
                    holder(p)
                ));
            }
        }
    }
    Ok((pick(wanted, &ports)?, ports))
}

/// The ports of `sidecars` that the app's env names.
fn of_sidecars(app: &App, sidecars: &[&Sidecar]) -> Vec<SidecarPort> {
    sidecars
        .iter()
        .filter_map(|s| {
            let var = var_for(&s.name);
            let port = env_port(app, &var)?;
            Some(SidecarPort {
                var,
                port,
                sidecar: s.name.clone(),
            })
        })
        .collect()
}

/// Other `*_PORT` variables of the app's env that hold a port number: maybe a sidecar's
/// under another name, maybe a remote service's.
fn other_env_ports(app: &App, known: &[SidecarPort]) -> Vec<(String, u16)> {
    app.env
        .iter()
        .filter(|(k, _)| k.ends_with("_PORT") && !known.iter().any(|p| &p.var == k))
        .filter_map(|(k, _)| env_port(app, k).map(|p| (k.clone(), p)))
        .collect()
}

fn env_port(app: &App, var: &str) -> Option<u16> {
    app.env
        .iter()
        .rev()
        .find(|(k, _)| k == var)
        .and_then(|(_, v)| v.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
}

/// Fails with the holder named if a sidecar's port is taken.
fn check_sidecar_ports(ports: &[SidecarPort]) -> Result<(), Error> {
    for p in ports {
        if in_use(p.port) {
            return Err(Error::PortInUse {
                port: p.port,
                what: format!(
                    "{}={} (the app's env), where sidecar {} is to listen,",
                    p.var, p.port, p.sidecar
                ),
                holder: holder(p.port),
            });
        }
    }
    Ok(())
}

/// `--port` if free and no sidecar's; else a free loopback port that no sidecar's port
/// variable names. CF's own PORT is 8080 in every container; here instances share the
/// machine.
fn pick(wanted: Option<u16>, reserved: &[SidecarPort]) -> anyhow::Result<u16> {
    let taken: BTreeSet<u16> = reserved.iter().map(|p| p.port).collect();
    let Some(port) = wanted else {
        for _ in 0..100 {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let port = l.local_addr()?.port();
            if !taken.contains(&port) {
                return Ok(port);
            }
        }
        anyhow::bail!("cannot find a free loopback port");
    };
    if let Some(p) = reserved.iter().find(|p| p.port == port) {
        return Err(Error::PortShared {
            port,
            var: p.var.clone(),
            sidecar: p.sidecar.clone(),
        }
        .into());
    }
    if in_use(port) {
        return Err(Error::PortInUse {
            port,
            what: format!("--port {port}"),
            holder: holder(port),
        }
        .into());
    }
    Ok(port)
}

/// True if a listener cannot bind `port`: processes listen on 0.0.0.0 or on loopback,
/// so both must be free.
pub fn in_use(port: u16) -> bool {
    ["0.0.0.0", "127.0.0.1"]
        .iter()
        .any(|host| TcpListener::bind((*host, port)).is_err())
}

/// The process listening on TCP `port`, as `pid N (command line)`, or why it is unknown.
pub fn holder(port: u16) -> String {
    let sockets = listening_sockets(port);
    let Some((inode, uid)) = sockets.first().copied() else {
        return "no listening socket on it shows in /proc/net/tcp (it may be bound \
                without listening, or be in another network namespace)"
            .to_string();
    };
    for pid in pids() {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let wanted = format!("socket:[{inode}]");
        let owns = fds.flatten().any(|fd| {
            fs::read_link(fd.path())
                .map(|l| l.as_os_str() == wanted.as_str())
                .unwrap_or(false)
        });
        if owns {
            return match running_as(pid) {
                Some((exe, argv)) => format!("pid {pid} ({exe}: {argv})"),
                None => format!("pid {pid}"),
            };
        }
    }
    format!("a process of uid {uid} that this user cannot inspect")
}

/// (inode, uid) of the sockets in LISTEN state on `port`, IPv4 and IPv6.
fn listening_sockets(port: u16) -> Vec<(u64, u32)> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            if let Some(hit) = parse_tcp_line(line, port) {
                found.push(hit);
            }
        }
    }
    found
}

/// One line of /proc/net/tcp: `sl local rem st tx:rx tr:when retr uid timeout inode`.
fn parse_tcp_line(line: &str, port: u16) -> Option<(u64, u32)> {
    const LISTEN: &str = "0A";
    let f: Vec<&str> = line.split_whitespace().collect();
    let local_port = f.get(1)?.rsplit_once(':')?.1;
    if u16::from_str_radix(local_port, 16).ok()? != port || *f.get(3)? != LISTEN {
        return None;
    }
    Some((f.get(9)?.parse().ok()?, f.get(7)?.parse().ok()?))
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_port_variable_follows_its_name() {
        assert_eq!(var_for("config-server"), "CONFIG_SERVER_PORT");
        assert_eq!(var_for("envoy.admin"), "ENVOY_ADMIN_PORT");
    }

    #[test]
    fn reads_listening_sockets_from_proc_net_tcp() {
        let line = "   3: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000 100 0 0 10 0";
        assert_eq!(parse_tcp_line(line, 8082), Some((4242, 1000)));
        assert_eq!(parse_tcp_line(line, 8083), None);
        let established = line.replace(" 0A ", " 01 ");
        assert_eq!(parse_tcp_line(&established, 8082), None);
    }

    #[test]
    fn names_the_process_that_listens() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(in_use(port));
        let who = holder(port);
        assert!(
            who.starts_with(&format!("pid {} (", std::process::id())),
            "{who}"
        );
        drop(l);
        assert!(!in_use(port));
    }

    #[test]
    fn a_taken_port_is_refused_and_a_free_one_found() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = pick(Some(port), &[]).expect_err("taken");
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::PortInUse { .. })
        ));
        drop(taken);
        assert_eq!(pick(Some(port), &[]).expect("free now"), port);
        let side = SidecarPort {
            var: "X_PORT".into(),
            port,
            sidecar: "x".into(),
        };
        assert!(matches!(
            pick(Some(port), std::slice::from_ref(&side))
                .expect_err("shared")
                .downcast_ref::<Error>(),
            Some(Error::PortShared { .. })
        ));
        assert_ne!(pick(None, &[side]).expect("any"), port);
    }
}
