//! The ports the instances need, checked before anything starts. On CF every container
//! has its own network, so `PORT` (8080, for every process type: Cloud Controller's
//! buildpack DesiredLrpBuilder falls back to it when a process has no ports) and a
//! sidecar's fixed port are always free; here the instances share the machine, so a
//! port may be taken. The app and its sidecars get the same environment (a sidecar must
//! never listen on `$PORT`), so the port a sidecar listens on is one the app's env
//! names: this buildpack's config-server reads `CONFIG_SERVER_PORT`. stage-local takes
//! `<SIDECAR NAME>_PORT` (the sidecar's name upper-cased, other characters as `_`) as
//! that sidecar's port. Each instance gets its own free `PORT`; a sidecar that runs
//! beside several process types keeps the app's port in the first instance, and every
//! later instance gets a free port in that variable instead (its process and its
//! sidecars share the value, as they share an environment). When a port is taken, the
//! message names the process that listens on it, found in `/proc/net/tcp*` and
//! `/proc/<pid>/fd`.

use crate::app::App;
use crate::errors::Error;
use crate::result::Sidecar;
use cf_entrypoint::process::running_as;
use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;

/// A port the app's env gives a sidecar, or the free port that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SidecarPort {
    /// The variable, e.g. `CONFIG_SERVER_PORT`.
    pub var: String,
    pub port: u16,
    pub sidecar: String,
    /// The app's value, when an earlier instance's sidecar listens on it and this
    /// instance got `port` instead.
    pub moved_from: Option<u16>,
}

/// The ports of one instance: its `PORT` and its sidecars'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstancePorts {
    pub port: u16,
    pub sidecars: Vec<SidecarPort>,
}

impl InstancePorts {
    /// The variables this instance gets another value of than the app's env has.
    pub(crate) fn overrides(&self) -> Vec<(String, String)> {
        self.sidecars
            .iter()
            .filter(|p| p.moved_from.is_some())
            .map(|p| (p.var.clone(), p.port.to_string()))
            .collect()
    }
}

/// The variable that holds `sidecar`'s port by stage-local's convention.
pub(crate) fn var_for(sidecar: &str) -> String {
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

/// Checks every port the instances need before anything starts, and picks each one's
/// `PORT` (`wanted` is web's): `instances` are (process type, its sidecars), and the
/// answer is in the same order. A sidecar's port from the app's env that is taken fails,
/// naming its holder; another `*_PORT` of the app's env that is taken only gets a
/// warning, as it may well name a remote service.
pub(crate) fn plan(
    app: &App,
    instances: &[(&str, Vec<&Sidecar>)],
    wanted: Option<u16>,
) -> anyhow::Result<Vec<InstancePorts>> {
    let mut per_instance: Vec<Vec<SidecarPort>> = Vec::new();
    let mut kept: Vec<SidecarPort> = Vec::new();
    for (_, sidecars) in instances {
        let mut mine = of_sidecars(app, sidecars);
        for p in &mut mine {
            if kept.iter().any(|k| k.var == p.var) {
                p.moved_from = Some(p.port);
            } else {
                kept.push(p.clone());
            }
        }
        per_instance.push(mine);
    }
    check_sidecar_ports(&kept)?;
    if instances.iter().any(|(_, s)| !s.is_empty()) {
        for (var, p) in other_env_ports(app, &kept) {
            if in_use(p) {
                crate::out::warn(format!(
                    "the app's env has {var}={p}, and port {p} is held here by {}; if a \
                     sidecar is to listen on it, it cannot",
                    holder(p)
                ));
            }
        }
    }
    let mut taken: BTreeSet<u16> = kept.iter().map(|p| p.port).collect();
    // Web's first, so that `--port` is checked before any other port is picked.
    let web_port = if instances.iter().any(|(kind, _)| *kind == "web") {
        Some(pick(wanted, &kept, &taken)?)
    } else {
        None
    };
    taken.extend(web_port);
    let mut planned = Vec::new();
    let mut web_port = web_port;
    for ((kind, _), mut sidecars) in instances.iter().zip(per_instance) {
        // Web's first instance has the picked port; every other instance a free one.
        let port = match web_port.take_if(|_| *kind == "web") {
            Some(port) => port,
            None => free(&taken)?,
        };
        taken.insert(port);
        for p in sidecars.iter_mut().filter(|p| p.moved_from.is_some()) {
            p.port = free(&taken)?;
            taken.insert(p.port);
        }
        planned.push(InstancePorts { port, sidecars });
    }
    Ok(planned)
}

/// The ports of instances that each have their own network: a sidecar listens on the
/// app's port in every one of them (no check: a new namespace has nothing on it), and
/// each instance's `PORT` is reached from here at its own loopback port: `wanted` (web's
/// `--port`) for web's first instance, a free one for every other.
pub(crate) fn plan_own(
    app: &App,
    instances: &[(&str, Vec<&Sidecar>)],
    wanted: Option<u16>,
) -> anyhow::Result<Vec<InstancePorts>> {
    let mut taken = BTreeSet::new();
    let mut planned = Vec::new();
    let mut wanted = wanted;
    for (kind, sidecars) in instances {
        let port = match wanted.take_if(|_| *kind == "web") {
            Some(port) => pick(Some(port), &[], &taken)?,
            None => free(&taken)?,
        };
        taken.insert(port);
        planned.push(InstancePorts {
            port,
            sidecars: of_sidecars(app, sidecars),
        });
    }
    Ok(planned)
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
                moved_from: None,
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

/// `--port` if free and no sidecar's; else a free loopback port not in `taken`. CF's
/// own PORT is 8080 in every container; here instances share the machine.
fn pick(
    wanted: Option<u16>,
    reserved: &[SidecarPort],
    taken: &BTreeSet<u16>,
) -> anyhow::Result<u16> {
    let Some(port) = wanted else {
        return free(taken);
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

/// A free loopback port that is not in `taken`.
fn free(taken: &BTreeSet<u16>) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    anyhow::bail!("cannot find a free loopback port");
}

/// True if a listener cannot bind `port`: processes listen on 0.0.0.0 or on loopback,
/// so both must be free.
pub(crate) fn in_use(port: u16) -> bool {
    ["0.0.0.0", "127.0.0.1"]
        .iter()
        .any(|host| TcpListener::bind((*host, port)).is_err())
}

/// The process listening on TCP `port`, as `pid N (command line)`, or why it is unknown.
pub(crate) fn holder(port: u16) -> String {
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
        let owns = fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()));
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
        // A test running beside this one may take a freed port at once (a client's
        // ephemeral port counts too): a free port seen once in a few tries is enough.
        assert!((0..5).any(|_| {
            let freed = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind")
                .port();
            !in_use(freed)
        }));
    }

    #[test]
    fn a_taken_port_is_refused_and_a_free_one_found() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let none = BTreeSet::new();
        let err = pick(Some(port), &[], &none).expect_err("taken");
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::PortInUse { .. })
        ));
        drop(taken);
        // A freed port is free, unless a test beside this one takes it at once (a
        // client's ephemeral port counts too): seen once in a few tries is enough.
        let port = (0..5)
            .find_map(|_| {
                let freed = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("bind")
                    .port();
                pick(Some(freed), &[], &none).ok().filter(|&p| p == freed)
            })
            .expect("a freed port is given back");
        let side = SidecarPort {
            var: "X_PORT".into(),
            port,
            sidecar: "x".into(),
            moved_from: None,
        };
        assert!(matches!(
            pick(Some(port), std::slice::from_ref(&side), &none)
                .expect_err("shared")
                .downcast_ref::<Error>(),
            Some(Error::PortShared { .. })
        ));
        assert_ne!(
            pick(None, &[side], &BTreeSet::from([port])).expect("any"),
            port
        );
    }

    /// Two instances on one machine: each gets its own PORT, and a sidecar beside both
    /// keeps the app's port in the first and gets a free one in the second.
    #[test]
    fn later_instances_get_their_own_ports() {
        let app_port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let app = App {
            dir: "/app".into(),
            name: "demo".into(),
            memory_mb: 256,
            env: vec![("SHARED_PORT".into(), app_port.to_string())],
            buildpacks: vec![],
            sidecars: vec![],
            processes: vec![],
        };
        let sidecar = |name: &str| Sidecar {
            name: name.into(),
            process_types: vec!["web".into(), "worker".into()],
            command: "x".into(),
            memory: Some(8),
            origin: "bp0".into(),
        };
        let (shared, solo) = (sidecar("shared"), sidecar("solo"));
        let planned = plan(
            &app,
            &[("web", vec![&shared, &solo]), ("worker", vec![&shared])],
            None,
        )
        .expect("planned");
        let (web, worker) = (&planned[0], &planned[1]);
        assert_eq!(web.sidecars.len(), 1, "solo has no SOLO_PORT in the env");
        assert_eq!(
            (web.sidecars[0].port, web.sidecars[0].moved_from),
            (app_port, None)
        );
        assert!(web.overrides().is_empty());
        assert_eq!(worker.sidecars[0].moved_from, Some(app_port));
        let moved = worker.sidecars[0].port;
        let all = BTreeSet::from([web.port, worker.port, app_port, moved]);
        assert_eq!(all.len(), 4, "every port differs: {all:?}");
        assert_eq!(
            worker.overrides(),
            vec![("SHARED_PORT".to_string(), moved.to_string())]
        );
        // Two instances of web: the second gets its own PORT and sidecar port.
        let two = plan(
            &app,
            &[("web", vec![&shared]), ("web", vec![&shared])],
            None,
        )
        .expect("planned");
        assert_ne!(two[0].port, two[1].port, "each instance its own PORT");
        assert_eq!(two[1].sidecars[0].moved_from, Some(app_port));
        // Started alone, a worker keeps the app's port.
        let alone = plan(&app, &[("worker", vec![&shared])], None).expect("planned");
        assert_eq!(alone[0].sidecars[0].port, app_port);
    }
}
