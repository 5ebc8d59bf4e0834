//! An instance of its own on its own loopback, as Diego gives each container its own
//! network: every process of an instance (the process and its sidecars) runs in one
//! network namespace, so two apps' sidecars both listen on 8082, and `PORT` is 8080 in
//! every instance as on CF. Only `PORT` is reachable from here, through a loopback port
//! of this machine that the instance's network helper forwards into the namespace.
//!
//! The helper is stage-local itself, started as `unshare --net [--user ...] --
//! stage-local --internal-instance-network PORT` with the host side's listening socket
//! as its stdin: it brings the namespace's `lo` up (a netlink message), says `ready`,
//! then accepts on that socket (which stays in this machine's network) and connects
//! each connection to `127.0.0.1:PORT` inside (see `forward`). The instance's processes
//! join the namespace with `nsenter --net=/proc/<helper>/ns/net`. No `unsafe`: util-linux
//! does the `unshare` and `setns`. As root the namespace is a plain network namespace;
//! otherwise it is owned by a user namespace that maps this user to itself, so the app
//! runs with the same uid and no capabilities. When stage-local stops, the instance's
//! processes are stopped first, then the helper; a namespace goes with its last process.

use crate::errors::Error;
use crate::out;
use crate::settings::{NetworkMode, Settings};
use anyhow::Context as _;
use cf_entrypoint::process::Supervisor;
use std::ffi::OsString;
use std::io::BufRead as _;
use std::net::TcpListener;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The first argument that makes stage-local its own network helper (never shown in
/// `--help`: nobody types it).
pub(crate) const HELPER: &str = "--internal-instance-network";

/// `PORT` inside an instance's own network: the port Diego gives every container (the
/// buildpack `DesiredLrpBuilder`'s default).
pub(crate) const INNER_PORT: u16 = 8080;

/// How this run's instances get their network.
pub(crate) enum Network {
    /// All share this machine's loopback (`--network host`, or no namespaces here).
    Host,
    /// Each instance has its own network namespace.
    Own(Namespaces),
}

/// How to make and enter an instance's network namespace on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Namespaces {
    /// stage-local's own executable, which the helper runs.
    exe: PathBuf,
    /// The namespace is owned by a user namespace of its own (not root).
    user: bool,
}

/// The network of one running instance: the helper's pid names its namespace.
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    helper: i32,
    user: bool,
}

/// Decides the network of this run from `--network` and what the machine allows, and
/// says which it is.
pub(crate) fn choose(s: &Settings) -> Result<Network, Error> {
    if s.network == NetworkMode::Host {
        return Ok(Network::Host);
    }
    match probe(s) {
        Ok(ns) => {
            out::say(format!(
                "each instance runs in its own network namespace{}, as a Diego container \
                 does: PORT={INNER_PORT} inside, forwarded from a loopback port here",
                if ns.user {
                    " (in a user namespace)"
                } else {
                    ""
                }
            ));
            Ok(Network::Own(ns))
        }
        Err(why) if s.network == NetworkMode::Auto => {
            out::say(format!(
                "no network namespace for the instances ({why}): every instance shares this \
                 machine's loopback, so each gets a free PORT and a sidecar's port must be \
                 free here (run as root, or allow unprivileged user namespaces, for one \
                 network per instance)"
            ));
            Ok(Network::Host)
        }
        Err(why) => Err(Error::NoNamespace { why }),
    }
}

/// Starts a helper that only brings `lo` up in a new namespace, as root (a plain
/// network namespace) or in a user namespace, and keeps the first way that works.
fn probe(s: &Settings) -> Result<Namespaces, String> {
    let exe = s
        .exe
        .clone()
        .ok_or("stage-local cannot find its own executable in /proc/self/exe")?;
    let ways: &[bool] = if rustix::process::geteuid().is_root() {
        &[false, true]
    } else {
        &[true]
    };
    let mut why = Vec::new();
    for &user in ways {
        let ns = Namespaces {
            exe: exe.clone(),
            user,
        };
        let output = ns
            .unshare(&["--check".into()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match output {
            Ok(o) if o.status.success() => return Ok(ns),
            Ok(o) => why.push(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("util-linux's `unshare` is not installed".into())
            }
            Err(e) => why.push(format!("cannot run `unshare`: {e}")),
        }
    }
    why.dedup();
    Err(why.join("; "))
}

impl Namespaces {
    /// `unshare --net -- stage-local --internal-instance-network ARGS`.
    fn unshare(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new("unshare");
        if self.user {
            // The namespace's own user namespace maps this user to itself; the helper
            // keeps the capabilities it has there, to bring `lo` up.
            cmd.args(["--user", "--map-current-user", "--keep-caps"]);
        }
        cmd.args(["--net", "--"])
            .arg(&self.exe)
            .arg(HELPER)
            .args(args);
        cmd
    }

    /// Starts the network helper of one instance: a new namespace whose `PORT` is
    /// reachable at `listener` (bound here, on this machine's loopback). Returns once
    /// the namespace's `lo` is up. `label` names the instance in messages.
    pub(crate) fn start(
        &self,
        nets: &mut Supervisor,
        label: &str,
        listener: TcpListener,
    ) -> anyhow::Result<Joined> {
        let mut cmd = self.unshare(&[INNER_PORT.to_string().into()]);
        cmd.stdin(Stdio::from(OwnedFd::from(listener)));
        let (helper, stdout) = nets
            .spawn_helper(&mut cmd, &format!("the network helper of {label}"))
            .context("cannot start `unshare`")?;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            anyhow::bail!(
                "the network helper of {label} (pid {helper}) stopped before its network \
                 namespace was ready (its message, if any, is above)"
            );
        }
        Ok(Joined {
            helper,
            user: self.user,
        })
    }
}

impl Joined {
    /// `program` run in the instance's network namespace (and its user namespace, with
    /// this user's uid): `nsenter` execs it, so its pid is the program's.
    pub(crate) fn command(&self, program: &str) -> Command {
        let ns = format!("/proc/{}/ns", self.helper);
        let mut cmd = Command::new("nsenter");
        if self.user {
            cmd.arg(format!("--user={ns}/user"))
                .arg("--preserve-credentials");
        }
        cmd.arg(format!("--net={ns}/net")).arg("--").arg(program);
        cmd
    }
}

/// The helper's side, inside the new namespace: `ARGS` is `--check` (bring `lo` up and
/// exit) or the port to forward to. Returns the exit code.
pub(crate) fn helper_main(args: &[OsString]) -> i32 {
    // Gone with stage-local, even if it is killed with SIGKILL.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if let Err(e) = loopback_up() {
        eprintln!(
            "stage-local: cannot bring up the loopback interface of a new network namespace: {e}"
        );
        return 1;
    }
    let port = match args {
        [a] if a == "--check" => return 0,
        [a] => a.to_str().and_then(|p| p.parse::<u16>().ok()),
        _ => None,
    };
    let Some(port) = port else {
        eprintln!("stage-local: {HELPER} takes --check or a port");
        return 2;
    };
    // stdin is the listening socket stage-local bound on its loopback.
    let listener = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => TcpListener::from(fd),
        Err(e) => {
            eprintln!("stage-local: the network helper has no listening socket: {e}");
            return 1;
        }
    };
    println!("ready");
    match crate::forward::serve(&listener, port) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stage-local: the network helper stopped forwarding to port {port}: {e}");
            1
        }
    }
}

/// Sets `lo` up, as `ip link set lo up` does: one RTM_NEWLINK netlink request for
/// interface 1 (the kernel's LOOPBACK_IFINDEX in every namespace), then its ack.
fn loopback_up() -> std::io::Result<()> {
    use rustix::net::{netlink, recv, sendto, socket, AddressFamily, RecvFlags, SendFlags};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    const LOOPBACK_IFINDEX: i32 = 1;
    let fd = socket(AddressFamily::NETLINK, rustix::net::SocketType::RAW, None)?;
    let mut msg = Vec::with_capacity(32);
    // struct nlmsghdr: length, type, flags, sequence, port id (0: the kernel's).
    msg.extend(32u32.to_ne_bytes());
    msg.extend(RTM_NEWLINK.to_ne_bytes());
    msg.extend(NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // struct ifinfomsg: family, padding, type, index, flags, change mask.
    msg.extend([0u8, 0u8]);
    msg.extend(0u16.to_ne_bytes());
    msg.extend(LOOPBACK_IFINDEX.to_ne_bytes());
    msg.extend(IFF_UP.to_ne_bytes());
    msg.extend(IFF_UP.to_ne_bytes());
    sendto(
        &fd,
        &msg,
        SendFlags::empty(),
        &netlink::SocketAddrNetlink::new(0, 0),
    )?;
    let mut ack = [0u8; 256];
    let (_, n) = recv(&fd, &mut ack, RecvFlags::empty())?;
    let field = |at: usize| ack.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    let kind = ack.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (n >= 20, kind, field(16).map(i32::from_ne_bytes)) {
        (true, Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (true, Some(NLMSG_ERROR), Some(errno)) => {
            Err(std::io::Error::from_raw_os_error(errno.saturating_neg()))
        }
        _ => Err(std::io::Error::other("no acknowledgement from the kernel")),
    }
}
