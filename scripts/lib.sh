# shellcheck shell=bash
# Shared helpers for scripts/ and tests/. Source it; it only defines functions.
#
# The ensure_* functions install what a fresh machine lacks, from Debian's packages,
# PyPI or crates.io, and are silent and quick when it is already there. Tool versions
# that change the bytes of a build are pinned here, so every machine builds the same.

# Pinned because the linker (zig) and its driver shape the binaries we ship.
ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.24.1

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
  log "installing ${missing[*]} (apt)"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  if [[ -z $_apt_updated ]]; then
    "${sudo[@]}" apt-get update -qq || die 1 "apt-get update failed"
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || die 1 "apt-get install ${missing[*]} failed"
}

# ensure_python: python3 with pip.
ensure_python() {
  command -v python3 >/dev/null || ensure_apt python3
  python3 -m pip --version >/dev/null 2>&1 || ensure_apt python3-pip
}

# ensure_pip SPEC MODULE...: pip-installs SPEC (e.g. 'moto[server]') unless python3 can
# already import every MODULE, then puts pip's scripts dir on PATH so its commands run.
ensure_pip() {
  local spec=$1
  shift
  ensure_python
  local imports
  imports=$(printf 'import %s\n' "$@")
  if ! python3 -c "$imports" 2>/dev/null; then
    log "installing $spec (pip)"
    # PIP_BREAK_SYSTEM_PACKAGES: Debian's own python3 refuses installs otherwise (PEP 668).
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
      --no-input "$spec" || die 1 "pip install $spec failed"
    python3 -c "$imports" || die 1 "pip installed $spec but python3 still cannot import $*"
  fi
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
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
  if [[ $(cargo-zigbuild --version 2>/dev/null) != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]]; then
    log "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION (cargo install; takes a few minutes once)"
    cargo install --quiet --locked "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION" ||
      die 1 "cargo install cargo-zigbuild@$CARGO_ZIGBUILD_VERSION failed"
  fi
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
