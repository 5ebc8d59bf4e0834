# shellcheck shell=bash
# Shared helpers for scripts/ and tests/. Source it; it only defines functions.
#
# The ensure_* functions install what a fresh machine lacks, from Debian's packages,
# PyPI or crates.io (into TOOLS, the project's own place), say what they install, and
# are silent and quick when it is already there. Tool versions
# that change the bytes of a build are pinned here, so every machine builds the same.

# Pinned because the linker (zig) and its driver shape the binaries we ship.
ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.24.1
# Pinned because it writes into what we ship: cargo-auditable embeds the dependency
# tree in each binary (0.7.3 and later drive cargo-zigbuild). rust-audit-info only
# reads (tests).
CARGO_AUDITABLE_VERSION=0.7.7
RUST_AUDIT_INFO_VERSION=0.5.4

# log MSG...: a line on stderr, prefixed with the calling script's name.
log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

# die CODE MSG...: log "error: MSG" and exit with CODE.
die() {
  local code=$1
  shift
  log "error: $*"
  exit "$code"
}

# talk WHAT CMD...: runs CMD with its stderr passed through line by line, and whenever it
# has printed nothing for 15 s, a line saying it is still WHAT (no step of a first run
# may look hung: a release build's last crates, linked with LTO, print nothing for a
# minute). CMD's stdout is untouched; the exit status is CMD's.
talk() {
  local what=$1
  shift
  { "$@" 2>&1 1>&3 3>&- | _heartbeat "$what" >&2; } 3>&1
  return "${PIPESTATUS[0]}"
}

_heartbeat() {
  local start=$SECONDS line rc
  while :; do
    if IFS= read -r -t 15 line; then
      printf '%s\n' "$line"
    else
      rc=$?
      if ((rc > 128)); then
        log "still $1 ($((SECONDS - start)) s so far)"
      else
        [[ -z $line ]] || printf '%s\n' "$line"
        return 0
      fi
    fi
  done
}

_apt_updated=
# ensure_apt PKG...: installs the Debian packages that are missing; runs apt-get update
# once before the first install (a fresh machine's package lists are empty or stale).
ensure_apt() {
  local pkg missing=()
  for pkg in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]] ||
      missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die 1 "missing ${missing[*]} and apt-get is not available; install them by hand"
  # Waits for another apt (a second script on the same machine) instead of failing.
  log "installing ${missing[*]} (apt)"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  if [[ -z $_apt_updated ]]; then
    talk "updating apt's package lists" "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq || die 1 "apt-get update failed"
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive talk "installing ${missing[*]} (apt)" "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install \
    -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die 1 "apt-get install ${missing[*]} failed"
}

# Tools the scripts install live in a place of the project's own, never in the user's
# ~/.cargo/bin or the system's Python: TOOLS, a directory named for this project that
# only these scripts put on PATH (a Python venv, and TOOLS/cargo for cargo tools).
# Its path is fixed, not inside the checkout: zig's own path reaches the release
# binaries (a checkout's target/tools gave other bytes in every clone), so every
# checkout on a machine must build with the same tools at the same path for the pins
# to hold. SIDECAR_BUILDPACK_TOOLS moves it (a user without write access to the
# default, or a bench that installs from nothing); builds then differ from the pins.
TOOLS=${SIDECAR_BUILDPACK_TOOLS:-/var/cache/sidecar-buildpack/tools}

# on_path DIR: puts DIR first on PATH (once).
on_path() {
  case ":$PATH:" in
    *":$1:"*) ;;
    *) PATH="$1:$PATH" ;;
  esac
}

# ensure_venv: the project's Python venv (TOOLS/venv), its bin/ first on PATH, so
# `python3` and the commands pip installs are the venv's from then on.
ensure_venv() {
  local venv=$TOOLS/venv
  if [[ ! -x $venv/bin/python3 ]] || ! "$venv/bin/python3" -m pip --version >/dev/null 2>&1; then
    command -v python3 >/dev/null || ensure_apt python3
    log "making the project's Python venv at $venv (a few seconds)"
    rm -rf "$venv" && mkdir -p "$TOOLS" ||
      die 1 "cannot write $TOOLS (run as root, or set SIDECAR_BUILDPACK_TOOLS to a directory you can write)"
    # Debian's python3 makes venvs only with python3-venv (ensurepip).
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      ensure_apt python3-venv
      python3 -m venv "$venv" || die 1 "python3 -m venv $venv failed"
    fi
  fi
  on_path "$venv/bin"
}

# pip_install SPEC...: into the project's venv, with pip's own progress on stderr.
pip_install() {
  log "installing $* (pip, into $TOOLS/venv; seconds to a minute, once)"
  talk "installing $* (pip)" python3 -m pip install --disable-pip-version-check --no-input \
    --progress-bar off "$@" 1>&2 || die 1 "pip install $* failed"
}

# ensure_pip SPEC DIST...: pip-installs SPEC (e.g. 'moto[server]') into the project's
# venv unless every distribution DIST is installed there.
ensure_pip() {
  local spec=$1 dist
  shift
  ensure_venv
  for dist in "$@"; do
    python3 -m pip show --quiet "$dist" >/dev/null 2>&1 || {
      pip_install "$spec"
      return 0
    }
  done
}

# ensure_rust: cargo on PATH (rustup's default location is added if needed).
ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  command -v cargo >/dev/null || die 1 "cargo not found: install Rust with rustup (https://rustup.rs)"
}

# ensure_zig: zig and cargo-zigbuild at their pinned versions, both from PyPI (prebuilt
# wheels: seconds, where `cargo install cargo-zigbuild` compiles for minutes), in the
# project's venv. cargo-zigbuild finds zig as `python3 -m ziglang`, the venv's.
ensure_zig() {
  ensure_rust
  ensure_venv
  if [[ $(python3 -m ziglang version 2>/dev/null) != "$ZIGLANG_VERSION" ]] ||
    [[ $(cargo-zigbuild --version 2>/dev/null) != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]]; then
    pip_install "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  fi
}

# ensure_cargo_tool CRATE VERSION: `cargo install --locked CRATE@VERSION` from crates.io
# into TOOLS/cargo, unless that version is there; TOOLS/cargo/bin goes first on PATH.
ensure_cargo_tool() {
  ensure_rust
  on_path "$TOOLS/cargo/bin"
  local installed
  installed=$(cargo install --list --root "$TOOLS/cargo" 2>/dev/null) || installed=
  grep -qxF "$1 v$2:" <<<"$installed" && return 0
  log "installing $1 $2 into $TOOLS/cargo (cargo install, once: a minute or two; cargo's progress follows)"
  talk "installing $1 (cargo install)" cargo install --locked --root "$TOOLS/cargo" "$1@$2" ||
    die 1 "cargo install $1@$2 failed"
}

# ensure_sbom_tools: cargo-auditable (`cargo auditable zigbuild` embeds the dependency
# tree in the binary) at its pinned version. The SBOM itself is written by
# scripts/sbom from `cargo metadata`, with Python's standard library.
ensure_sbom_tools() {
  ensure_cargo_tool cargo-auditable "$CARGO_AUDITABLE_VERSION"
}

# ensure_objdump: binutils' objdump, to read the glibc symbol versions a binary needs.
ensure_objdump() {
  command -v objdump >/dev/null || ensure_apt binutils
}

# sha256_of FILE: the hex digest alone.
sha256_of() {
  local out
  out=$(sha256sum "$1") || die 1 "cannot hash $1"
  printf '%s\n' "${out%% *}"
}

# crate_version PACKAGE: the version of a workspace crate, from cargo itself (its
# package id ends in `@VERSION`, or `#VERSION` when the name is the directory's).
crate_version() {
  local id
  id=$(cargo pkgid --quiet --locked --manifest-path "$ROOT/Cargo.toml" -p "$1") ||
    die 1 "cannot read the version of $1 (cargo pkgid -p $1)"
  printf '%s\n' "${id##*[@#]}"
}

# The newest glibc a shipped binary may need: cflinuxfs3's (Ubuntu 18.04).
MAX_GLIBC=2.27

# newest_glibc BIN: the newest GLIBC_x.y symbol version BIN needs (empty for none).
newest_glibc() {
  local syms newest
  syms=$(objdump -T "$1" 2>/dev/null) || die 1 "objdump -T $1 failed (is it a dynamic ELF?)"
  newest=$(grep -o 'GLIBC_[0-9.]*' <<<"$syms" | sort -uV | tail -1 || true)
  printf '%s\n' "${newest#GLIBC_}"
}

# glibc_ok BIN: true if BIN runs on cflinuxfs3, cflinuxfs4 and cflinuxfs5 (needs glibc <= MAX_GLIBC);
# says what it found either way.
glibc_ok() {
  local newest
  newest=$(newest_glibc "$1") || return 1
  log "${1#"$ROOT"/} needs glibc ${newest:-(none)} (at most $MAX_GLIBC allowed)"
  [[ -z $newest || $(printf '%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -1) == "$MAX_GLIBC" ]]
}

# ensure_package_tool: builds `package`, the packager and the one tool that reads and
# writes manifest.yml (`package --help`), and sets PACKAGE to its path.
ensure_package_tool() {
  ensure_rust
  # Only the packager's crates, but selected with --workspace: features are resolved
  # for the whole workspace as in the one dev build every script and suite uses
  # (scripts/stage-local too), so nothing built here is built again there, and a first
  # scripts/package does not wait for stage-local's and config-server's crates.
  log "building the packager (cargo build --workspace --bin package)"
  talk "building the packager (cargo build)" \
    cargo build --locked --manifest-path "$ROOT/Cargo.toml" --workspace --bin package ||
    die 1 "cargo build failed"
  PACKAGE=${CARGO_TARGET_DIR:-$ROOT/target}/debug/package
}
