//! `SIDECAR_BUILDPACK_<SIDECAR>_HOLD_APP`: a `.profile.d` script in the app that holds
//! the start of the processes a sidecar serves until the sidecar is ready.
//!
//! CF gives a sidecar no readiness check and starts the app and its sidecars in no
//! defined order (cloud-foundry.md section 7), so the only place to wait is the app's
//! own start. The launcher sources `app/.profile.d/*` in every process, sidecars
//! included, with the process's start command as `$2`: the script skips the wait when
//! that is one of this buildpack's sidecar commands (a sidecar waiting for itself would
//! never start), and the sidecar's executable skips it in a process type it does not
//! serve (`wait --only-for`, from `VCAP_APPLICATION`'s `process_type`). The wait is
//! bounded; at its end the app starts anyway, with the sidecar's reason in its log:
//! holding longer would only turn a slow sidecar into a failed health check and a
//! crash loop of the whole instance.
//!
//! Safe under `set -u` and `set -e` (the Java buildpack's launcher runs with both): it
//! reads `${2-}` and `${DEPS_DIR:-...}` only, and a failed wait never fails the sourcing.

use buildpack::launch::shell_quote;
use std::time::Duration;

/// Where the launcher finds it: `BUILD_DIR/.profile.d/<name>`.
pub fn file_name(sidecar: &str) -> String {
    format!("sidecar_buildpack_hold_{sidecar}.sh")
}

/// The script for `sidecar`, whose executable is `bin/<executable>` of `deps_idx`,
/// waiting with `wait_args` at most `timeout` in the process types `serves`, never in
/// a process started with one of `sidecar_commands`.
pub fn script(
    sidecar: &str,
    deps_idx: &str,
    executable: &str,
    wait_args: &[String],
    timeout: Duration,
    serves: &[String],
    sidecar_commands: &[String],
) -> String {
    let skip: Vec<String> = sidecar_commands.iter().map(|c| shell_quote(c)).collect();
    let mut wait = format!("\"${{DEPS_DIR:-/home/vcap/deps}}/{deps_idx}/bin/{executable}\"");
    for a in wait_args {
        wait.push(' ');
        wait.push_str(&shell_quote(a));
    }
    wait.push_str(&format!(
        " --timeout {}s --only-for {}",
        timeout.as_secs(),
        shell_quote(&serves.join(","))
    ));
    format!(
        "# Written by the sidecar buildpack at staging ({var}HOLD_APP): holds the start of\n\
         # the process types {sidecar} serves ({types}) until it is ready, at most {secs} s.\n\
         # $2 is the process's start command (the launcher's): {sidecar} itself never waits.\n\
         case \"${{2-}}\" in\n\
         \x20 {skip}) ;;\n\
         \x20 *) {wait} || true ;;\n\
         esac\n",
        var = buildpack::settings::sidecar_var_base(sidecar),
        types = serves.join(", "),
        secs = timeout.as_secs(),
        skip = skip.join("|"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_skips_the_sidecars_and_waits_bounded_elsewhere() {
        let text = script(
            "config-server",
            "03",
            "config-server",
            &["wait".into()],
            Duration::from_secs(30),
            &["web".into(), "worker".into()],
            &[
                "\"$DEPS_DIR/03/bin/config-server\"".into(),
                "\"$DEPS_DIR/03/bin/agent\" --x 'a b'".into(),
            ],
        );
        assert_eq!(
            text.lines().skip(3).collect::<Vec<_>>(),
            [
                "case \"${2-}\" in",
                r#"  '"$DEPS_DIR/03/bin/config-server"'|'"$DEPS_DIR/03/bin/agent" --x '\''a b'\''') ;;"#,
                r#"  *) "${DEPS_DIR:-/home/vcap/deps}/03/bin/config-server" wait --timeout 30s --only-for web,worker || true ;;"#,
                "esac",
            ]
        );
        assert_eq!(
            file_name("config-server"),
            "sidecar_buildpack_hold_config-server.sh"
        );
    }
}
