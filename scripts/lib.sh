# shellcheck shell=bash
# Shared helpers for scripts/ and tests/. Source it; it only defines functions.
#
# The ensure_* functions install what a fresh machine lacks, from Debian's packages,
# PyPI or crates.io, and are silent and quick when it is already there. Tool versions
# that change the bytes of a build are pinned here, so every machine builds the same.

# Pinned because the linker (zig) and its driver shape the binaries we ship.
ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.24.1
# Pinned because they write into what we ship: cargo-auditable embeds the dependency
# tree in each binary (0.7.3 and later drive cargo-zigbuild), cargo-cyclonedx writes
# the SBOM packed beside config-server. rust-audit-info only reads (tests).
CARGO_AUDITABLE_VERSION=0.7.7
CARGO_CYCLONEDX_VERSION=0.5.9
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
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq || die 1 "apt-get update failed"
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || die 1 "apt-get install ${missing[*]} failed"
}

# ensure_python: python3 with pip.
ensure_python() {
  command -v python3 >/dev/null || ensure_apt python3
  python3 -m pip --version >/dev/null 2>&1 || ensure_apt python3-pip
}

# ensure_pip SPEC DIST...: pip-installs SPEC (e.g. 'moto[server]') unless every
# distribution DIST is installed, then puts pip's scripts dir on PATH so its
# commands run.
ensure_pip() {
  local spec=$1 dist missing=
  shift
  ensure_python
  for dist in "$@"; do
    python3 -m pip show --quiet "$dist" >/dev/null 2>&1 || missing=1
  done
  if [[ -n $missing ]]; then
    log "installing $spec (pip)"
    # PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses installs otherwise (PEP 668).
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
      --no-input "$spec" || die 1 "pip install $spec failed"
  fi
  local scripts
  scripts=$(python3 -m sysconfig | sed -n 's/^\tscripts = "\(.*\)"$/\1/p')
  case ":$PATH:" in
    *":$scripts:"*) ;;
    *) PATH="$scripts:$PATH" ;;
  esac
}

# ensure_rust: cargo on PATH (rustup's default location is added if needed).
ensure_rust() {
  if ! command -v cargo >/dev/null && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  fi
  command -v cargo >/dev/null || die 1 "cargo not found: install Rust with rustup (https://rustup.rs)"
}

# ensure_zig: zig (the pinned PyPI ziglang) and cargo-zigbuild, which looks for
# `python3 -m ziglang` before any `zig` on PATH.
ensure_zig() {
  ensure_rust
  ensure_python
  if [[ $(python3 -m ziglang version 2>/dev/null) != "$ZIGLANG_VERSION" ]]; then
    log "installing ziglang $ZIGLANG_VERSION (pip)"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
      --no-input "ziglang==$ZIGLANG_VERSION" || die 1 "pip install ziglang==$ZIGLANG_VERSION failed"
  fi
  ensure_cargo_tool cargo-zigbuild "$CARGO_ZIGBUILD_VERSION"
}

# ensure_cargo_tool CRATE VERSION: `cargo install --locked CRATE@VERSION` from crates.io
# unless cargo already lists that version as installed.
ensure_cargo_tool() {
  ensure_rust
  local installed
  installed=$(cargo install --list 2>/dev/null) || installed=
  grep -qxF "$1 v$2:" <<<"$installed" && return 0
  log "installing $1 $2 (cargo install; takes a few minutes once)"
  cargo install --quiet --locked "$1@$2" || die 1 "cargo install $1@$2 failed"
}

# ensure_sbom_tools: cargo-auditable (`cargo auditable zigbuild` embeds the dependency
# tree in the binary) and cargo-cyclonedx (writes the SBOM), at their pinned versions.
ensure_sbom_tools() {
  ensure_cargo_tool cargo-auditable "$CARGO_AUDITABLE_VERSION"
  ensure_cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION"
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
  # The one dev build every script and suite uses (scripts/stage-local too): another
  # package selection would unify features otherwise and compile much of it again.
  log "building the workspace's tools (cargo build --workspace --bins)"
  cargo build --locked --manifest-path "$ROOT/Cargo.toml" --workspace --bins ||
    die 1 "cargo build failed"
  PACKAGE=${CARGO_TARGET_DIR:-$ROOT/target}/debug/package
}
