//! The local stand-in for the app's final buildpack (ruby_buildpack for the sample),
//! which cannot run here. It does the little the rest of the pipeline relies on and says
//! plainly that it is not the real thing: it checks that the machine's Ruby and Bundler
//! can run the app offline (`bundle check`), does what libbuildpack's finalize does for
//! supply buildpacks (profile.d, 000_multi-supply.sh), names itself in config.yml, and
//! offers the default `web` command ruby_buildpack gives a Rack app, with the
//! environment ruby_buildpack gives it (RACK_ENV and RAILS_ENV `production` unless set,
//! so that rackup listens on 0.0.0.0, as a container needs, not on localhost).

use crate::env::Vars;
use crate::errors::Error;
use crate::launch_yml::Declared;
use crate::out;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Where the stand-in works: CF's `bin/finalize BUILD CACHE DEPS IDX PROFILE_DIR`.
pub(crate) struct Finalize<'a> {
    /// The final buildpack's name, from the app's manifest.
    pub name: &'a str,
    pub build_dir: &'a Path,
    pub deps_dir: &'a Path,
    pub idx: &'a str,
    pub profile_dir: &'a Path,
    pub env: &'a Vars,
}

/// ruby_buildpack's profile.d/ruby.sh defaults: rackup binds 0.0.0.0 outside development.
const RUBY_ENV: &str =
    "export RACK_ENV=${RACK_ENV:-production}\nexport RAILS_ENV=${RAILS_ENV:-production}\n";

/// What ruby_buildpack's `bin/release` offers a Rack app.
const RACK_WEB: &str = "bundle exec rackup config.ru -p $PORT";

/// Runs the stand-in; returns its default process types.
pub(crate) fn run(f: &Finalize<'_>) -> Result<Vec<Declared>, Error> {
    let gemfile = f.build_dir.join("Gemfile").is_file();
    if gemfile {
        let version = ruby_version(f)?;
        out::line(format!(
            "-----> local stand-in for {} (not the real buildpack): using system Ruby {version} \
             and bundle exec",
            f.name
        ));
        bundle_check(f)?;
    } else {
        out::line(format!(
            "-----> local stand-in for {} (not the real buildpack): no Gemfile, so the app's \
             Procfile says what runs",
            f.name
        ));
    }
    set_launch_environment(f).map_err(|e| failed(f, format!("cannot write profile.d: {e}")))?;
    if gemfile {
        fs::write(f.profile_dir.join("ruby.sh"), RUBY_ENV)
            .map_err(|e| failed(f, format!("cannot write profile.d/ruby.sh: {e}")))?;
    }
    let config = format!("---\nname: {} (local stand-in)\nconfig: {{}}\n", f.name);
    fs::write(f.deps_dir.join(f.idx).join("config.yml"), config)
        .map_err(|e| failed(f, format!("cannot write config.yml: {e}")))?;
    let rack = gemfile && f.build_dir.join("config.ru").is_file();
    Ok(if rack {
        vec![Declared {
            kind: "web".into(),
            command: RACK_WEB.into(),
            memory: None,
            sidecar_for: vec![],
        }]
    } else {
        vec![]
    })
}

fn failed(f: &Finalize<'_>, problem: String) -> Error {
    Error::FinalFailed {
        name: f.name.to_string(),
        problem,
        fix: "check that the work dir is writable and has free space".into(),
    }
}

fn command(f: &Finalize<'_>, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(f.build_dir);
    crate::env::apply(&mut cmd, f.env);
    cmd
}

fn ruby_version(f: &Finalize<'_>) -> Result<String, Error> {
    let missing = |detail: String| Error::FinalFailed {
        name: f.name.to_string(),
        problem: format!("the app has a Gemfile but Ruby does not run here ({detail})"),
        fix: "install Ruby and Bundler; scripts/install-ruby installs them from Debian's \
              packages"
            .into(),
    };
    let out = command(f, "ruby", &["-e", "print RUBY_VERSION"])
        .output()
        .map_err(|e| missing(format!("ruby: {e}")))?;
    if !out.status.success() {
        return Err(missing(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `bundle check` needs no network: it only says whether installed gems satisfy the
/// Gemfile.lock. The stand-in never installs gems.
fn bundle_check(f: &Finalize<'_>) -> Result<(), Error> {
    let out = command(f, "bundle", &["check"])
        .output()
        .map_err(|e| Error::FinalFailed {
            name: f.name.to_string(),
            problem: format!("bundle: {e}"),
            fix: "install Bundler; scripts/install-ruby installs it from Debian's packages".into(),
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        out::line(format!("       {line}"));
    }
    if out.status.success() {
        return Ok(());
    }
    Err(Error::FinalFailed {
        name: f.name.to_string(),
        problem: "bundle check says the app's gems are not installed on this machine".into(),
        fix: "install them (for fixtures/rubyapp, scripts/install-ruby installs Debian's \
              packages; elsewhere `bundle install`), then run again; the stand-in never \
              downloads gems"
            .into(),
    })
}

/// libbuildpack's Stager.SetLaunchEnvironment, which libbuildpack-based final buildpacks
/// (ruby_buildpack among them) run in finalize: `000_multi-supply.sh` puts every
/// `$DEPS_DIR/<idx>/bin` and `lib` on PATH and LD_LIBRARY_PATH, and each
/// `<DEPS_DIR>/<idx>/profile.d/<name>` is copied to `<PROFILE_DIR>/<idx>_<name>`. CF's
/// launcher itself does neither.
fn set_launch_environment(f: &Finalize<'_>) -> std::io::Result<()> {
    let mut idxs: Vec<String> = fs::read_dir(f.deps_dir)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    idxs.sort();
    let mut script = String::new();
    for (var, sub) in [
        ("PATH", "bin"),
        ("LD_LIBRARY_PATH", "lib"),
        ("LIBRARY_PATH", "lib"),
    ] {
        // libbuildpack prepends as it reads the directory: the last index comes first.
        let dirs: Vec<String> = idxs
            .iter()
            .rev()
            .filter(|i| f.deps_dir.join(i).join(sub).exists())
            .map(|i| format!("$DEPS_DIR/{i}/{sub}"))
            .collect();
        if !dirs.is_empty() {
            script.push_str(&format!(
                "export {var}={}$([[ ! -z \"${{{var}:-}}\" ]] && echo \":${var}\")\n",
                dirs.join(":")
            ));
        }
    }
    fs::write(f.profile_dir.join("000_multi-supply.sh"), script)?;
    for idx in &idxs {
        let Ok(entries) = fs::read_dir(f.deps_dir.join(idx).join("profile.d")) else {
            continue;
        };
        let mut names: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            let to = format!("{idx}_{name}");
            fs::copy(
                f.deps_dir.join(idx).join("profile.d").join(&name),
                f.profile_dir.join(&to),
            )?;
            out::line(format!(
                "       Copied deps/{idx}/profile.d/{name} to profile.d/{to}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wires_supply_dependencies_like_libbuildpack() {
        let root = tempfile::tempdir().expect("tempdir");
        let (build, deps, profile) = (
            root.path().join("app"),
            root.path().join("deps"),
            root.path().join("profile.d"),
        );
        for d in [
            &build,
            &profile,
            &deps.join("00/bin"),
            &deps.join("01/lib"),
            &deps.join("01/profile.d"),
            &deps.join("02"),
        ] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(deps.join("01/profile.d/env.sh"), "export X=1\n").expect("write");
        let vars = Vars::default();
        let f = Finalize {
            name: "ruby_buildpack",
            build_dir: &build,
            deps_dir: &deps,
            idx: "02",
            profile_dir: &profile,
            env: &vars,
        };
        assert_eq!(run(&f).expect("no Gemfile needs no Ruby"), vec![]);
        assert_eq!(
            fs::read_to_string(profile.join("000_multi-supply.sh")).expect("script"),
            "export PATH=$DEPS_DIR/00/bin$([[ ! -z \"${PATH:-}\" ]] && echo \":$PATH\")\n\
             export LD_LIBRARY_PATH=$DEPS_DIR/01/lib$([[ ! -z \"${LD_LIBRARY_PATH:-}\" ]] && echo \":$LD_LIBRARY_PATH\")\n\
             export LIBRARY_PATH=$DEPS_DIR/01/lib$([[ ! -z \"${LIBRARY_PATH:-}\" ]] && echo \":$LIBRARY_PATH\")\n"
        );
        assert_eq!(
            fs::read_to_string(profile.join("01_env.sh")).expect("copied"),
            "export X=1\n"
        );
        assert_eq!(
            fs::read_to_string(deps.join("02/config.yml")).expect("config"),
            "---\nname: ruby_buildpack (local stand-in)\nconfig: {}\n"
        );
    }
}
