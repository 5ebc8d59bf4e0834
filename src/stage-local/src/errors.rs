//! Every failure a user acts on, worded in one place (what happened, why, what to do),
//! and the exit codes, which the tests assert. Plumbing failures are `anyhow` with
//! context naming the path instead, and exit with `INTERNAL`.

use std::path::PathBuf;

/// Exit codes of `stage-local`. Staging failures that Cloud Foundry's builder has its
/// own code for keep that code (223, 225), so scripts can treat them alike.
pub mod exit {
    /// Staged; and, unless `--stage-only`, ran and stopped on request.
    pub const OK: i32 = 0;
    /// A bug, or a failure with no wording of its own (the message names what failed).
    pub const INTERNAL: i32 = 1;
    /// Wrong command line (clap's own code for usage errors), or flags that do not go
    /// together (`--get` without the web process).
    pub const USAGE: i32 = 2;
    /// Bad input: the app dir, its manifest.yml or Procfile, `--vcap-services`, a
    /// `--buildpack` that is no zip or dir (or holds an unsafe entry), a locked work dir
    /// (or one that processes of a killed run still use), a `--process` type the staged
    /// app does not have; for an image, no `web` start command, an `--image`,
    /// `--image-layout` or `--kube` path that cannot be written, an `--entrypoint` that
    /// is not a static Linux binary.
    pub const INPUT: i32 = 3;
    /// A `launch.yml` that CF's builder would reject (CF itself fails staging with 1);
    /// or, for an image, a sidecar for a process type the droplet does not have.
    pub const LAUNCH_YML: i32 = 4;
    /// The staging result Cloud Controller would refuse: a sidecar name clash, sidecar
    /// memory that leaves nothing to the app, or a memory of 0 or less.
    pub const CLOUD_CONTROLLER: i32 = 5;
    /// A port the instance needs is taken: `--port`, or a sidecar's port from the app's
    /// env (e.g. `CONFIG_SERVER_PORT`); or `--port` is a sidecar's port.
    pub const PORT_IN_USE: i32 = 6;
    /// The app did not answer on `$PORT` within `--wait`.
    pub const NO_ANSWER: i32 = 7;
    /// A process of the instance (web or a sidecar) exited: CF restarts the instance.
    pub const EXITED: i32 = 8;
    /// `--network own`, and this machine cannot give an instance a network namespace.
    pub const NO_NAMESPACE: i32 = 9;
    /// The image's base: `--base` is not an image or is one of another architecture,
    /// or the stand-in base cannot be built (mmdebstrap missing or failing).
    pub const BASE: i32 = 10;
    /// Interrupted (Ctrl-C, SIGTERM) before the app answered.
    pub const INTERRUPTED: i32 = 130;
    /// The final buildpack failed (CF's CompileFailCode): here, its local stand-in.
    pub const FINAL_FAILED: i32 = 223;
    /// "Failed to run all supply scripts" (CF's SupplyFailCode).
    pub const SUPPLY_FAILED: i32 = 225;
}

/// Why a supply buildpack's `bin/supply` cannot run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupplyProblem {
    /// There is no `bin/` directory (CF: "malformed buildpack does not contain a /bin dir").
    NoBinDir,
    /// `bin/supply` does not exist.
    Missing,
    /// `bin/supply` exists but has no executable bit.
    NotExecutable { mode: u32 },
    /// The zip entry of `bin/supply` carries no Unix mode.
    NoUnixMode { zip: PathBuf },
}

/// An error a user acts on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The app directory is missing or not a directory.
    #[error("the app directory {} {problem}", path.display())]
    AppDir { path: PathBuf, problem: String },
    /// The app's manifest.yml cannot be used.
    #[error("{}: {problem}", path.display())]
    AppManifest { path: PathBuf, problem: String },
    /// The app's Procfile is not a YAML map of process types to commands.
    #[error("{}: Failed to read command from Procfile: {problem}", path.display())]
    Procfile { path: PathBuf, problem: String },
    /// `--vcap-services` is unreadable or not a JSON object.
    #[error("--vcap-services {}: {problem}", path.display())]
    VcapServices { path: PathBuf, problem: String },
    /// `--bindings-dir` is not a directory.
    #[error("--bindings-dir {} {problem}", path.display())]
    BindingsDir { path: PathBuf, problem: String },
    /// `--droplet FILE` cannot be written.
    #[error("--droplet {}: {problem}", path.display())]
    DropletPath { path: PathBuf, problem: String },
    /// No work dir could be chosen.
    #[error("no work dir: neither XDG_CACHE_HOME nor HOME is set")]
    NoWorkDir,
    /// A `--buildpack` that is neither a zip nor a directory, or a broken zip.
    #[error("--buildpack {}: {problem}", path.display())]
    Buildpack { path: PathBuf, problem: String },
    /// A zip entry that would be written outside the buildpack's directory.
    #[error("--buildpack {}: entry {entry:?} {problem}", zip.display())]
    UnsafeZipEntry {
        zip: PathBuf,
        entry: String,
        problem: String,
    },
    /// Another stage-local run holds this app's work dir (while it stages or runs).
    #[error("another stage-local run{} is using {}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked { path: PathBuf, holder: Option<u32> },
    /// Processes of an earlier run that was killed (so it could not stop them) still use
    /// this app's work dir: its droplet, or its staging area.
    #[error("processes of an earlier run of {app} still use {}: {}", path.display(), pids.iter().map(|(p, c)| format!("pid {p} ({c})")).collect::<Vec<_>>().join(", "))]
    Leftovers {
        app: String,
        path: PathBuf,
        pids: Vec<(i32, String)>,
    },
    /// A supply buildpack's `bin/supply` cannot run.
    #[error("Failed to run all supply scripts: {}", supply_problem(path, problem))]
    SupplyScript {
        path: PathBuf,
        problem: SupplyProblem,
    },
    /// A supply buildpack's `bin/supply` exited non-zero.
    #[error("Failed to run all supply scripts: {} exited with {status}", path.display())]
    SupplyFailed { path: PathBuf, status: String },
    /// The local stand-in for the app's final buildpack failed.
    #[error("the local stand-in for {name} failed: {problem}")]
    FinalFailed {
        name: String,
        problem: String,
        fix: String,
    },
    /// A `launch.yml` that CF's builder would reject.
    #[error("{} would fail staging on Cloud Foundry", path.display())]
    LaunchYml {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// A buildpack sidecar has the name of a sidecar in the app's manifest.
    #[error("sidecar {name:?} from {origin} conflicts with an existing user-defined sidecar")]
    SidecarClash { name: String, origin: String },
    /// A buildpack sidecar declares a memory of 0 or less.
    #[error("sidecar {name:?} from {origin} declares limits.memory: {memory}")]
    SidecarMemoryInvalid {
        name: String,
        origin: String,
        memory: i64,
    },
    /// The sidecars of a process type take all of its memory, or more.
    #[error(
        "the sidecars of the {process_type:?} process take {total} MB of its {process_mb} MB \
         ({source_of}): the memory allocation defined is too large to run with the dependent \
         {process_type:?} process"
    )]
    SidecarMemoryTooLarge {
        process_type: String,
        total: i64,
        process_mb: u64,
        /// Where the process's memory comes from (the app's `memory:`, `processes:`, ...).
        source_of: String,
        sidecars: Vec<String>,
    },
    /// Staging gave no process of a type to start (`web`, or one named by `--process`).
    #[error("the staged app has no {wanted} process type: nothing to start")]
    NoProcessType { wanted: String, have: Vec<String> },
    /// Command-line flags that do not go together.
    #[error("{problem}")]
    Usage { problem: String, fix: String },
    /// A port the instance needs (`--port`, or a sidecar's from the app's env) is in use.
    #[error("port {port} is in use: {what} is held by {holder}")]
    PortInUse {
        port: u16,
        what: String,
        holder: String,
    },
    /// `--port` is the port the app's env gives a sidecar.
    #[error("--port {port} is also {var}, the port of sidecar {sidecar}")]
    PortShared {
        port: u16,
        var: String,
        sidecar: String,
    },
    /// The app never answered on its port.
    #[error("the app did not answer on {url} within {seconds} s")]
    NoAnswer { url: String, seconds: u64 },
    /// A process of the instance exited.
    #[error("{label} (pid {pid}) exited with {status}: Cloud Foundry restarts the whole instance")]
    Exited {
        label: String,
        pid: i32,
        status: String,
    },
    /// `--network own`, and no network namespace can be made here.
    #[error("--network own: this machine cannot give an instance a network namespace: {why}")]
    NoNamespace { why: String },
    /// `--image`, `--image-layout` or `--kube` names a place that cannot be written.
    #[error("{flag} {}: {problem}", path.display())]
    OutputPath {
        flag: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// The entrypoint to put into the image cannot be used.
    #[error("--entrypoint {}: {problem}", path.display())]
    Entrypoint { path: PathBuf, problem: String },
    /// `--base` cannot be used as the image's base.
    #[error("--base {}: {problem}", path.display())]
    Base { path: PathBuf, problem: String },
    /// `--base` holds no image for this machine's architecture.
    #[error("--base {}: holds an image for {} only, not for linux/{want}", path.display(), found.join(", "))]
    BaseArchitecture {
        path: PathBuf,
        found: Vec<String>,
        want: String,
    },
    /// The stand-in base could not be built.
    #[error("cannot build the stand-in base ({}): {problem}", packages.join(" "))]
    StandInBase {
        packages: Vec<String>,
        problem: String,
    },
    /// A sidecar's `sidecar_for` names a process type the droplet does not have.
    #[error("sidecar {sidecar:?} from {origin} runs beside the process type {process_type:?}, which the droplet does not have (it has: {})", have.join(", "))]
    SidecarForMissingType {
        sidecar: String,
        origin: String,
        process_type: String,
        have: Vec<String>,
    },
    /// Ctrl-C or SIGTERM before the work was done.
    #[error("interrupted while {during}")]
    Interrupted { during: String },
}

fn supply_problem(path: &std::path::Path, problem: &SupplyProblem) -> String {
    let p = path.display();
    match problem {
        SupplyProblem::NoBinDir => format!("malformed buildpack does not contain a /bin dir: {p}"),
        SupplyProblem::Missing => format!("{p} does not exist"),
        SupplyProblem::NotExecutable { mode } => format!("{p} is not executable (mode {mode:o})"),
        SupplyProblem::NoUnixMode { zip } => {
            format!("bin/supply in {} has no Unix file mode", zip.display())
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::AppDir { .. }
            | Error::AppManifest { .. }
            | Error::Procfile { .. }
            | Error::VcapServices { .. }
            | Error::BindingsDir { .. }
            | Error::DropletPath { .. }
            | Error::NoWorkDir
            | Error::Buildpack { .. }
            | Error::UnsafeZipEntry { .. }
            | Error::Locked { .. }
            | Error::Leftovers { .. }
            | Error::NoProcessType { .. }
            | Error::OutputPath { .. }
            | Error::Entrypoint { .. } => exit::INPUT,
            Error::Base { .. } | Error::BaseArchitecture { .. } | Error::StandInBase { .. } => {
                exit::BASE
            }
            Error::SidecarForMissingType { .. } => exit::LAUNCH_YML,
            Error::Usage { .. } => exit::USAGE,
            Error::SupplyScript { .. } | Error::SupplyFailed { .. } => exit::SUPPLY_FAILED,
            Error::FinalFailed { .. } => exit::FINAL_FAILED,
            Error::LaunchYml { .. } => exit::LAUNCH_YML,
            Error::SidecarClash { .. }
            | Error::SidecarMemoryInvalid { .. }
            | Error::SidecarMemoryTooLarge { .. } => exit::CLOUD_CONTROLLER,
            Error::PortInUse { .. } | Error::PortShared { .. } => exit::PORT_IN_USE,
            Error::NoAnswer { .. } => exit::NO_ANSWER,
            Error::Exited { .. } => exit::EXITED,
            Error::NoNamespace { .. } => exit::NO_NAMESPACE,
            Error::Interrupted { .. } => exit::INTERRUPTED,
        }
    }

    /// Why it probably happened and what to do, one line each, plus details.
    fn explain(&self) -> (String, String, Vec<String>) {
        let s = |x: &str| x.to_string();
        match self {
            Error::AppDir { .. } => (
                s("stage-local stages the directory given as APP_DIR, like `cf push -p`"),
                s("pass the directory that holds the app's files"),
                vec![],
            ),
            Error::AppManifest { .. } => (
                s("stage-local reads the first application of the app's manifest.yml as `cf push` does"),
                s("fix that key; `cf push` would refuse it too"),
                vec![],
            ),
            Error::Procfile { .. } => (
                s("CF's builder reads the Procfile as YAML: one `type: command` per line"),
                s("write it as `web: <command>`, one process type per line"),
                vec![],
            ),
            Error::VcapServices { .. } => (
                s("VCAP_SERVICES is a JSON object of service offerings to lists of bindings"),
                s("pass a file holding such an object, e.g. {\"user-provided\": [...]}"),
                vec![],
            ),
            Error::BindingsDir { .. } => (
                s("--bindings-dir names a directory of service bindings, one directory per \
                   binding, as Cloud Controller writes them for the service-binding-k8s \
                   app feature"),
                s("pass an existing directory, e.g. --bindings-dir ./bindings"),
                vec![],
            ),
            Error::DropletPath { .. } => (
                s("the droplet's .tgz is written next to where it goes, then renamed into place"),
                s("name a file in an existing directory, e.g. --droplet /tmp/droplet.tgz"),
                vec![],
            ),
            Error::NoWorkDir => (
                s("the droplet, the app caches and the unpacked buildpacks need a home"),
                s("pass --work-dir DIR"),
                vec![],
            ),
            Error::Buildpack { .. } => (
                s("a buildpack is a zip (as `cf create-buildpack` takes) or a directory with bin/"),
                s("pass the buildpack's zip or its directory"),
                vec![],
            ),
            Error::UnsafeZipEntry { .. } => (
                s("the zip would write outside its own directory (a `..` path, an absolute \
                   path, or a symlink that leads out)"),
                s("rebuild the zip from a clean directory; do not install it on a foundation"),
                vec![],
            ),
            Error::Locked { .. } => (
                s("a run holds the app's work dir until it ends, so that no other run (not \
                   even --stage-only) replaces the droplet or the caches under it"),
                s("stop the other run (Ctrl-C in its terminal), or give this one its own \
                   --work-dir"),
                vec![],
            ),
            Error::Leftovers { pids, .. } => (
                s("the run that started them was killed before it could stop them, and \
                   replacing the droplet under them would leave them running deleted files"),
                format!(
                    "stop them (`kill {}`), then run again",
                    pids.iter()
                        .map(|(p, _)| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                vec![],
            ),
            Error::SupplyScript { problem, .. } => match problem {
                SupplyProblem::NoBinDir | SupplyProblem::Missing => (
                    s("every buildpack listed before the last one runs as a supply buildpack, \
                       and CF fails staging with exit 225 (\"Error: one of the buildpacks \
                       chosen to supply dependencies does not support multi-buildpack apps\")"),
                    s("give the buildpack a bin/supply, or list it last (as the final buildpack)"),
                    vec![],
                ),
                SupplyProblem::NotExecutable { .. } => (
                    s("CF runs bin/supply directly, so it fails with permission denied and \
                       exit 225"),
                    s("chmod 0755 bin/supply before packaging, and keep the mode in the zip"),
                    vec![],
                ),
                SupplyProblem::NoUnixMode { .. } => (
                    s("the zip was made without Unix modes (on Windows, or by a tool that drops \
                       them): CF unpacks such entries as 0666, so bin/supply cannot run and \
                       staging fails with exit 225"),
                    s("package on Linux or macOS with a zip tool that keeps modes (`zip -r`, \
                       scripts/package), then check with `unzip -Z`"),
                    vec![],
                ),
            },
            Error::SupplyFailed { .. } => (
                s("the buildpack's own output above is all a CF user gets to see"),
                s("read that output; the staging area is kept for inspection (see above)"),
                vec![],
            ),
            Error::FinalFailed { fix, .. } => (
                s("the real final buildpack cannot run here, so a small local stand-in checks \
                   what it needs"),
                fix.clone(),
                vec![],
            ),
            Error::LaunchYml { problems, .. } => (
                s("CF's builder parses launch.yml with Go's yaml.v2 and strict types, and fails \
                   staging with exit 1 and a yaml message that does not name the file"),
                s("write launch.yml with a YAML serializer, in UTF-8, with `memory:` a plain \
                   integer of megabytes and `sidecar_for:` a list (`sidecar_for: [web]`), \
                   and read it back typed before exiting 0"),
                problems.clone(),
            ),
            Error::SidecarClash { .. } => (
                s("Cloud Controller re-creates buildpack sidecars from every new droplet and \
                   refuses one whose name a sidecar of the app's manifest already has"),
                s("rename one of them, or drop the manifest's `sidecars:` entry"),
                vec![],
            ),
            Error::SidecarMemoryInvalid { .. } => (
                s("CF does not check a buildpack sidecar's memory: 0 means unset (the sidecar \
                   may take all of the app's memory) and a negative value breaks MEMORY_LIMIT"),
                s("declare a positive whole number of megabytes in limits.memory"),
                vec![],
            ),
            Error::SidecarMemoryTooLarge {
                process_type,
                sidecars,
                ..
            } => (
                s("a sidecar's memory is carved out of the memory of each process it runs \
                   beside, and Cloud Controller needs the sum to be strictly less than that \
                   process's memory (the app's `memory:` sizes web only; other process types \
                   get 1024 MB unless the manifest's `processes:` says otherwise)"),
                if process_type == "web" {
                    s("give web more memory (the manifest's `memory:`), or the sidecars less")
                } else {
                    format!(
                        "give {process_type} more memory (the manifest's `processes: [{{type: \
                         {process_type}, memory: ...}}]`), or the sidecars less"
                    )
                },
                sidecars.clone(),
            ),
            Error::NoProcessType { wanted, have } => (
                if wanted == "web" {
                    s("neither the buildpacks nor a Procfile declared `web`; CF says \"No \
                       start command specified by buildpack or via Procfile\"")
                } else {
                    format!(
                        "process types come from the buildpacks' launch.yml and the Procfile; \
                         `cf scale {wanted}` fails for a type the droplet does not have"
                    )
                },
                if have.is_empty() {
                    format!("add a Procfile with `{wanted}: <command>`")
                } else {
                    format!(
                        "add `{wanted}: <command>` to the Procfile, or start one of the app's \
                         process types with --process: {}",
                        have.join(", ")
                    )
                },
                vec![],
            ),
            Error::Usage { fix, .. } => (
                s("only web gets a route, so only web can answer GET requests or be reached \
                   at --port; one instance of each --process type is started"),
                fix.clone(),
                vec![],
            ),
            Error::PortInUse { what, .. } if what.starts_with("--port") => (
                s("another process listens on that port"),
                s("stop that process, pick another --port, or leave --port out to get a free one"),
                vec![],
            ),
            Error::PortInUse { .. } => (
                s("on CF each instance has its own network, so a sidecar's fixed port is always \
                   free; here it shares the machine, and the sidecar would exit at once"),
                s("stop that process, or give the sidecar another port for this run with \
                   --env NAME=PORT (e.g. --env CONFIG_SERVER_PORT=18082)"),
                vec![],
            ),
            Error::PortShared { .. } => (
                s("the app listens on $PORT and the sidecar on its own port; a sidecar must \
                   never listen on $PORT"),
                s("leave --port out to get a free one, or pick one no sidecar uses"),
                vec![],
            ),
            Error::NoAnswer { .. } => (
                s("the web process must listen on $PORT (CF sets it; stage-local sets a free \
                   loopback port), and it may need more time to boot"),
                s("check the [APP/PROC/WEB/0] lines above; raise --wait if it is slow to start"),
                vec![],
            ),
            Error::Exited { .. } => (
                s("the app and its sidecars are codependent: when any one exits, even with \
                   status 0, CF stops the others and restarts the instance"),
                s("read its last log lines above; a sidecar must run until stopped"),
                vec![],
            ),
            Error::NoNamespace { .. } => (
                s("a network namespace takes root, or unprivileged user namespaces \
                   (kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, and no \
                   AppArmor rule against them), and util-linux's `unshare` and `nsenter`"),
                s("run as root, allow unprivileged user namespaces, or use --network host \
                   (every instance then shares this machine's loopback)"),
                vec![],
            ),
            Error::OutputPath { .. } => (
                s("the image and the Kubernetes YAML are written next to where they go, then \
                   renamed into place"),
                s("name a path in an existing directory, e.g. --image /tmp/app.oci.tar"),
                vec![],
            ),
            Error::Entrypoint { .. } => (
                s("the image runs cf-entrypoint as its entrypoint, on whatever libc the base \
                   has, so it must be a statically linked Linux binary of this machine's \
                   architecture"),
                s("use the one scripts/stage-local builds (cargo build -p cf-entrypoint \
                   --release --target x86_64-unknown-linux-gnu with RUSTFLAGS='-C \
                   target-feature=+crt-static'), or leave --entrypoint out"),
                vec![],
            ),
            Error::Base { .. } => (
                s("--base takes the stack's root filesystem as an image: an OCI image archive \
                   (skopeo copy docker://cloudfoundry/cflinuxfs4 oci-archive:cflinuxfs4.tar), \
                   an OCI layout directory, or a `docker save` tar"),
                s("pass such an archive or directory, or leave --base out for a stand-in base"),
                vec![],
            ),
            Error::BaseArchitecture { want, .. } => (
                format!(
                    "the droplet's binaries and the entrypoint are built for linux/{want}, and \
                     would not run on another architecture"
                ),
                format!("save the base for linux/{want} (skopeo copy --override-arch {want} ...)"),
                vec![],
            ),
            Error::StandInBase { .. } => (
                s("without --base, stage-local builds a stand-in for the stack from Debian's \
                   packages with mmdebstrap, as root, from the Debian mirror"),
                s("install mmdebstrap (apt-get install mmdebstrap) and check the Debian \
                   mirror is reachable, or pass --base with the stack's image"),
                vec![],
            ),
            Error::SidecarForMissingType { .. } => (
                s("on Cloud Foundry such a sidecar is silently never started; in an image it \
                   would be lost just the same"),
                s("fix the sidecar_for list in the buildpack's launch.yml (or the manifest's \
                   sidecars:), or add the process type to the Procfile"),
                vec![],
            ),
            Error::Interrupted { .. } => (
                s("a stop was requested"),
                s("nothing to do; every process started was stopped"),
                vec![],
            ),
        }
    }
}

/// The whole message for any error, and its exit code.
pub fn report(err: &anyhow::Error) -> (i32, String) {
    match err.downcast_ref::<Error>() {
        Some(e) => {
            let (cause, fix, details) = e.explain();
            let mut msg = format!("{e}");
            for d in details {
                msg.push_str("\n  ");
                msg.push_str(&d);
            }
            msg.push_str(&format!("\n  why: {cause}\n  to fix: {fix}"));
            (e.exit_code(), msg)
        }
        None => (exit::INTERNAL, format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_carry_their_code_and_advice() {
        let err = anyhow::Error::new(Error::SupplyFailed {
            path: "/bp/bin/supply".into(),
            status: "exit status 14".into(),
        });
        let (code, msg) = report(&err);
        assert_eq!(code, exit::SUPPLY_FAILED);
        assert!(msg.starts_with(
            "Failed to run all supply scripts: /bp/bin/supply exited with exit status 14\n  why: "
        ));
        assert!(msg.contains("\n  to fix: "), "{msg}");
    }

    #[test]
    fn other_errors_are_internal_with_their_context() {
        let err = anyhow::anyhow!("disk full").context("cannot write /x");
        assert_eq!(
            report(&err),
            (exit::INTERNAL, "cannot write /x: disk full".into())
        );
    }
}
