//! CF's launcher (buildpackapplifecycle `launcher`), as both stage-local and the image's
//! entrypoint start every process of a droplet: the script it execs, the names `cf logs`
//! gives each process, and the `VCAP_APPLICATION` it rewrites for each one.

use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// What CF's launcher execs for a buildpack app (buildpackapplifecycle
/// launcher_unix.go), step for step: `bash -c <this> <launcher> <app dir> <command>`,
/// started in the droplet's root (`/home/vcap` on CF). So a profile script sees what
/// it sees on CF: `$0` the launcher, `$1` the app's directory, `$2` the command, and
/// `OLDPWD` the droplet's root; it is sourced by its unquoted name, as CF sources it.
/// The two lines it echoes open every process's log on CF.
const SCRIPT: &str = r#"
cd "$1"
echo 'Invoking pre-start scripts.'
if [ -n "$(ls ../profile.d/* 2> /dev/null)" ]; then
  for env_file in ../profile.d/*; do source $env_file; done
fi
if [ -n "$(ls .profile.d/* 2> /dev/null)" ]; then
  for env_file in .profile.d/*; do source $env_file; done
fi
if [ -f .profile ]; then source .profile; fi
shift
echo 'Invoking start command.'
exec bash -c "$@"
"#;

/// The launcher's path on CF, `$0` of the script above.
const PATH_ON_CF: &str = "/tmp/lifecycle/launcher";

/// `bash` running `command` through the launcher's steps for the droplet at `root`
/// (its `app/`, `profile.d/`). The caller sets the environment, including what the
/// launcher itself sets ([`launcher_env`]).
pub fn command(root: &Path, command: &str) -> Command {
    command_with(Command::new("bash"), root, command)
}

/// [`command`], with `bash` started by `bash` (a command that ends where bash's own
/// arguments go, such as `nsenter --net=... -- bash`).
pub fn command_with(mut cmd: Command, root: &Path, command: &str) -> Command {
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(PATH_ON_CF)
        .arg(root.join("app"))
        .arg(command)
        .current_dir(root);
    cmd
}

/// What the launcher sets for every process (env.CalcEnv), on the droplet's paths:
/// HOME, TMPDIR and DEPS_DIR.
pub fn launcher_env(root: &Path) -> [(&'static str, String); 3] {
    [
        ("HOME", root.join("app").display().to_string()),
        ("TMPDIR", root.join("tmp").display().to_string()),
        ("DEPS_DIR", root.join("deps").display().to_string()),
    ]
}

/// As `cf logs` names a process of instance `index` of `kind`: `APP/PROC/WEB/0`, or
/// with `sidecar`, `APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0`.
pub fn log_source(kind: &str, sidecar: Option<&str>, index: u32) -> String {
    let kind = kind.to_uppercase();
    match sidecar {
        None => format!("APP/PROC/{kind}/{index}"),
        Some(name) => format!("APP/PROC/{kind}/SIDECAR/{}/{index}", name.to_uppercase()),
    }
}

/// VCAP_APPLICATION as CF's launcher rewrites it for every process (env.CalcEnv): with
/// `host` 0.0.0.0, `instance_id` (INSTANCE_GUID), `port` (PORT, when a number) and
/// `instance_index` (INSTANCE_INDEX, when a number) added, re-encoded by Go's
/// `json.Marshal`: keys sorted, `&`, `<`, `>` escaped. Text that is not a JSON object is
/// left as it is, as the launcher leaves it.
pub fn vcap_application(
    cloud_controllers: &str,
    instance_guid: &str,
    port: &str,
    instance_index: &str,
) -> String {
    let Ok(serde_json::Value::Object(mut v)) = serde_json::from_str(cloud_controllers) else {
        return cloud_controllers.to_string();
    };
    v.insert("host".into(), json!("0.0.0.0"));
    v.insert("instance_id".into(), json!(instance_guid));
    if let Ok(port) = port.parse::<i64>() {
        v.insert("port".into(), json!(port));
    }
    if let Ok(index) = instance_index.parse::<i64>() {
        v.insert("instance_index".into(), json!(index));
    }
    go_marshal(&sorted(serde_json::Value::Object(v)))
}

/// A JSON value with every object's keys in order, as Go encodes a map.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let keyed: std::collections::BTreeMap<String, serde_json::Value> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(keyed.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// JSON as Go's `json.Marshal` writes it: one line, `<`, `>`, `&`, U+2028 and U+2029
/// escaped (they only ever occur inside strings).
pub fn go_marshal(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sources_name_the_process_and_the_sidecar() {
        assert_eq!(log_source("web", None, 0), "APP/PROC/WEB/0");
        assert_eq!(
            log_source("worker", Some("config-server"), 3),
            "APP/PROC/WORKER/SIDECAR/CONFIG-SERVER/3"
        );
    }

    #[test]
    fn vcap_application_gets_what_the_launcher_adds() {
        let cc = r#"{"name":"a<b","limits":{"mem":1,"disk":2}}"#;
        assert_eq!(
            vcap_application(cc, "guid", "8080", "0"),
            r#"{"host":"0.0.0.0","instance_id":"guid","instance_index":0,"limits":{"disk":2,"mem":1},"name":"a\u003cb","port":8080}"#
        );
        // The launcher skips what does not parse, and leaves non-JSON alone.
        let v = vcap_application("{}", "g", "", "x");
        assert_eq!(v, r#"{"host":"0.0.0.0","instance_id":"g"}"#);
        assert_eq!(vcap_application("nope", "g", "1", "0"), "nope");
    }

    #[test]
    fn the_script_runs_profile_scripts_with_the_command_as_2() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("app/.profile.d")).expect("mkdir");
        std::fs::create_dir_all(r.join("profile.d")).expect("mkdir");
        std::fs::write(r.join("profile.d/a.sh"), "export A=\"from-profile.d:$2\"\n")
            .expect("write");
        std::fs::write(r.join("app/.profile.d/b.sh"), "export B=$PWD\n").expect("write");
        std::fs::write(r.join("app/.profile"), "export C=profile\n").expect("write");
        let out = command(r, "echo \"$A|$B|$C|$0\"")
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let app = r.join("app");
        assert_eq!(
            text,
            format!(
                "Invoking pre-start scripts.\nInvoking start command.\nfrom-profile.d:echo \"$A|$B|$C|$0\"|{}|profile|bash\n",
                app.display()
            )
        );
    }
}
