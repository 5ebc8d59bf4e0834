#!/usr/bin/env bash
# Releases a dependency of this buildpack and the prebuilt supply, then pins both:
# build, publish, check that the public uris serve the built bytes, pin. A thin
# driver of `package` (src/package), which owns manifest.yml: it pins, and it
# fetches each uri the way staging does. Usage and options: --help.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

readonly EXIT_USAGE=2 EXIT_SETUP=3 EXIT_BUILD=4 EXIT_PUBLISH=5 EXIT_PIN=6
# The stacks config-server's portable build runs on (glibc 2.17 symbols; lib.sh).
readonly CONFIG_SERVER_STACKS=(cflinuxfs3 cflinuxfs4 cflinuxfs5)

usage() {
  cat <<'USAGE'
usage: scripts/build_and_upload.sh [DEPENDENCY] [options]

Releases DEPENDENCY (a `dependencies` name in manifest.yml; default config-server)
and the prebuilt supply that bin/supply fetches when an app lists the buildpack by
git URL. Both are published, each public uri is fetched the way staging fetches it
and must serve the built bytes, and only then are they pinned, in one step:
DEPENDENCY's build in manifest.yml (version, uri, sha256, cf_stacks) and its
default_versions entry (`package pin`: comments and order stay), bin/supply.lock,
and for config-server .downloadurl. supply is always released with it, so that
bin/supply.lock pins the supply built from the same commit as the rest.

config-server is built here (scripts/build-portable; its version is the one in
src/config-server/Cargo.toml) and pinned for the stacks its portable build
runs on: cflinuxfs3, cflinuxfs4 and cflinuxfs5. supply and config-server each come
with a CycloneDX SBOM (config-server's also inside its .tgz), published beside the
artifact as <artifact name without .tgz>.cdx.json. Any other dependency is built by
its owners and released from a file:

  --artifact FILE        the artifact to release (a .tgz holding the executable, or the
                         executable itself); its file name must contain --version
  --version VERSION      its version
  --stack STACK          a stack this build runs on (repeat for several); default: the
                         stacks of the build it replaces; required for a new dependency

Where it goes:
  --bucket NAME          S3 bucket (env BUCKET; default: release.conf's bucket=, the
                         one setting of the release location)
  --prefix PREFIX        key prefix of DEPENDENCY (env PREFIX; default: its name)
  --supply-prefix PREFIX key prefix of supply (env SUPPLY_PREFIX; default supply)
  --endpoint-url URL     an S3-compatible server instead of AWS (env S3_ENDPOINT_URL);
                         uris are then path-style, ENDPOINT/BUCKET/PREFIX/FILE
  --dest-dir DIR         copy both files into a local directory (file:// uris)
  --public-url-base URL  DEPENDENCY's uri is URL/FILE (default: by destination)
  --supply-public-url-base URL
                         supply's uri is URL/FILE; needed with --public-url-base when
                         publishing to S3, where the two are under different prefixes
  --repo DIR             the checkout whose manifest.yml, bin/supply.lock and
                         .downloadurl are pinned (default: this one; supply and
                         config-server are always built from this one)

What it does:
  --dry-run              build, then show the uploads and the diff; change nothing
  --no-upload            build and pin the uris the files would have, publish nothing
                         (keeps the pins in step with the build without credentials)
  --no-verify-public     do not fetch the public uris (a mirror this machine cannot reach)

S3 uses the aws CLI (installed from PyPI if missing) and its usual credentials. An
object already at the destination is reused when identical and never overwritten
when not: older buildpacks pin it, so a changed build needs a new version. Both
destinations are checked before either is uploaded.

Exit codes: 0 done (or nothing to change); 1 unexpected failure; 2 usage; 3 a tool,
setting, credential or file is missing; 4 the build failed; 5 publishing or its
verification failed; 6 the pin was refused (manifest.yml or bin/supply.lock cannot
take it; nothing was written).
USAGE
}

dep=config-server artifact='' version='' stacks=()
# The release location is one setting, release.conf's bucket= line.
conf_bucket=$(sed -n 's/^bucket=//p' "$ROOT/release.conf" 2>/dev/null) ||
  die "$EXIT_SETUP" "cannot read $ROOT/release.conf"
[[ -n $conf_bucket ]] || die "$EXIT_SETUP" "$ROOT/release.conf has no bucket= line"
bucket=${BUCKET:-$conf_bucket}
prefix=${PREFIX:-}
supply_prefix=${SUPPLY_PREFIX:-supply}
endpoint=${S3_ENDPOINT_URL:-}
dest_dir='' public_base='' supply_public_base='' repo=$ROOT
dry_run='' no_upload='' verify_public=1

need_value() { (($# >= 2)) && [[ -n $2 ]] || die "$EXIT_USAGE" "$1 needs a value (see --help)"; }
while (($#)); do
  case $1 in
    --artifact) need_value "$@"; artifact=$2; shift ;;
    --version) need_value "$@"; version=$2; shift ;;
    --stack) need_value "$@"; stacks+=(--stack "$2"); shift ;;
    --bucket) need_value "$@"; bucket=$2; shift ;;
    --prefix) need_value "$@"; prefix=$2; shift ;;
    --supply-prefix) need_value "$@"; supply_prefix=$2; shift ;;
    --endpoint-url) need_value "$@"; endpoint=$2; shift ;;
    --dest-dir) need_value "$@"; dest_dir=$2; shift ;;
    --public-url-base) need_value "$@"; public_base=$2; shift ;;
    --supply-public-url-base) need_value "$@"; supply_public_base=$2; shift ;;
    --repo) need_value "$@"; repo=$2; shift ;;
    --dry-run) dry_run=1 ;;
    --no-upload) no_upload=1 ;;
    --no-verify-public) verify_public='' ;;
    -h | --help) usage; exit 0 ;;
    -*) die "$EXIT_USAGE" "unknown option '$1' (see --help)" ;;
    *) dep=$1 ;;
  esac
  shift
done

# --- settings -------------------------------------------------------------------

# A uri lands in manifest.yml, bin/supply.lock and every staging log: no credentials,
# no query.
check_url() {
  [[ $2 =~ ^https?://[^/@?#]+(/[^?#@]*)?$ ]] ||
    die "$EXIT_USAGE" "$1 must be an http(s) URL without user:password@, query or fragment (it ends up in the pins and staging logs)"
}
check_segments() {
  [[ $2 =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] ||
    die "$EXIT_USAGE" "$1 '$2' must be path segments of letters, digits, '.', '_' or '-'"
}

[[ $dep =~ ^[A-Za-z0-9_-]+$ ]] || die "$EXIT_USAGE" "DEPENDENCY '$dep' must be letters, digits, '-' or '_'"
prefix=${prefix:-$dep}
if [[ $dep == config-server ]]; then
  [[ -z $artifact && -z $version ]] ||
    die "$EXIT_USAGE" "config-server is built here: --artifact and --version are for other dependencies"
  if ((${#stacks[@]} == 0)); then
    for s in "${CONFIG_SERVER_STACKS[@]}"; do stacks+=(--stack "$s"); done
  fi
else
  [[ -n $artifact && -n $version ]] ||
    die "$EXIT_USAGE" "$dep is not built here: give its --artifact FILE and --version VERSION"
  [[ -f $artifact ]] || die "$EXIT_SETUP" "--artifact $artifact is not a file"
  [[ ${artifact##*/} == *"$version"* ]] ||
    die "$EXIT_USAGE" "--artifact's file name '${artifact##*/}' must contain its version $version: published files are never overwritten"
fi
[[ -n $dest_dir && -n $endpoint ]] && die "$EXIT_USAGE" "--dest-dir and --endpoint-url (or S3_ENDPOINT_URL) are two destinations; give one"
check_segments --prefix "$prefix"
check_segments --supply-prefix "$supply_prefix"
if [[ -z $dest_dir ]]; then
  [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    die "$EXIT_USAGE" "--bucket '$bucket' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
fi
[[ -z $endpoint ]] || { check_url --endpoint-url "$endpoint"; endpoint=${endpoint%/}; }
[[ -z $public_base ]] || { check_url --public-url-base "$public_base"; public_base=${public_base%/}; }
[[ -z $supply_public_base ]] || {
  check_url --supply-public-url-base "$supply_public_base"
  supply_public_base=${supply_public_base%/}
}
# --dest-dir puts both files in one directory, so one base serves both; in a bucket
# they are under two prefixes, and guessing the second base would pin a wrong uri.
if [[ -n $public_base && -z $supply_public_base ]]; then
  [[ -n $dest_dir ]] ||
    die "$EXIT_USAGE" "--public-url-base needs --supply-public-url-base too when publishing to S3 (supply is under --supply-prefix '$supply_prefix', not '$prefix')"
  supply_public_base=$public_base
fi

[[ -d $repo ]] || die "$EXIT_SETUP" "--repo $repo is not a directory"
repo=$(cd "$repo" && pwd -P)
manifest=$repo/manifest.yml
lock=$repo/bin/supply.lock
[[ -f $manifest ]] || die "$EXIT_SETUP" "no manifest.yml in $repo (--repo names the buildpack checkout to pin)"
[[ -f $lock ]] || die "$EXIT_PIN" "$lock is missing; restore it (git checkout bin/supply.lock): only its url= and sha256= lines are rewritten"

# supply is published under the buildpack's version: the one the checkout carries.
bp_version=$(cat "$ROOT/VERSION" 2>/dev/null) || die "$EXIT_SETUP" "cannot read $ROOT/VERSION"
[[ $bp_version =~ ^[0-9A-Za-z][0-9A-Za-z._-]*$ ]] ||
  die "$EXIT_SETUP" "$ROOT/VERSION must be one line like 1.2.3 (letters, digits, '.', '_', '-'), not '$bp_version'"

ensure_package_tool
if [[ -z $dest_dir && -z $no_upload && -z $dry_run ]]; then
  command -v aws >/dev/null || ensure_pip awscli awscli
  command -v aws >/dev/null || die "$EXIT_SETUP" "the aws CLI is not on PATH: pip install awscli"
  export AWS_PAGER=""
  # `configure list` resolves the credential chain without printing any secret.
  creds=$(aws configure list 2>/dev/null) || creds=
  if [[ -z $creds ]] || grep -Eq '^ *access_key +<not set>' <<<"$creds"; then
    die "$EXIT_SETUP" "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or use --no-upload / --dest-dir"
  fi
fi

work=$(mktemp -d)
tmps=()
trap 'rm -rf "$work" "${tmps[@]}"' EXIT

# --- build ----------------------------------------------------------------------

# build PACKAGE: scripts/build-portable --only PACKAGE, then a private copy of each
# output (the artifact, on the last line, and its SBOM, on the line before) in $work,
# checked against the digest the build printed: what is published is what was built,
# even if bin/ or build/ is rebuilt meanwhile. Prints "<sha256> <path relative to the
# repo>" for the artifact, then for the SBOM.
build() {
  local out sha rel line
  out=$("$ROOT/scripts/build-portable" --only "$1") ||
    die "$EXIT_BUILD" "scripts/build-portable --only $1 failed (its error is above)"
  for line in "$(tail -1 <<<"$out")" "$(tail -2 <<<"$out" | head -1)"; do
    read -r sha rel <<<"$line"
    [[ $sha =~ ^[0-9a-f]{64}$ && -f $ROOT/$rel ]] || die 1 "unexpected output from scripts/build-portable --only $1: $out"
    cp "$ROOT/$rel" "$work/${rel##*/}" || die 1 "cannot copy $rel to $work"
    [[ $(sha256_of "$work/${rel##*/}") == "$sha" ]] || die "$EXIT_BUILD" "$rel changed while it was being copied; run again"
    printf '%s %s\n' "$sha" "$rel"
  done
  [[ $rel == *.cdx.json ]] || die 1 "scripts/build-portable --only $1 printed no SBOM: $out"
}

# The files, by index: 0 supply, 1 the dependency, the only two that are pinned; then
# the SBOMs, published beside their artifacts (same prefix, .cdx.json for the .tgz).
built=$(build supply) || exit $?
{ read -r sha rel && read -r sbom_sha sbom_rel; } <<<"$built"
names=(supply "$dep") rels=("$rel") shas=("$sha") files=("supply-$bp_version-linux-x86_64")
srcs=("$work/${rel##*/}") versions=("$bp_version")
sboms=("$sbom_sha $sbom_rel")
if [[ $dep == config-server ]]; then
  built=$(build config-server) || exit $?
  { read -r sha rel && read -r sbom_sha sbom_rel; } <<<"$built"
  sboms+=("$sbom_sha $sbom_rel")
  version=$(crate_version config-server)
else
  rel=$artifact
  cp "$artifact" "$work/" || die "$EXIT_SETUP" "cannot copy $artifact"
  sha=$(sha256_of "$work/${artifact##*/}")
fi
rels+=("$rel") shas+=("$sha") files+=("${rel##*/}") srcs+=("$work/${rel##*/}") versions+=("$version")
prefixes=("$supply_prefix" "$prefix") bases=("$supply_public_base" "$public_base")
bumps=("a changed supply needs a new buildpack version in VERSION"
  "a changed build needs a new version of $dep")
for i in "${!sboms[@]}"; do
  read -r sha rel <<<"${sboms[i]}"
  names+=("${names[i]} SBOM") rels+=("$rel") shas+=("$sha") files+=("${files[i]%.tgz}.cdx.json")
  srcs+=("$work/${rel##*/}") versions+=("${versions[i]}") prefixes+=("${prefixes[i]}")
  bases+=("${bases[i]}") bumps+=("${bumps[i]}")
done
for i in "${!rels[@]}"; do log "built ${rels[i]} (${names[i]} ${versions[i]}, sha256 ${shas[i]})"; done

# --- where they go, and the uris they will have ----------------------------------

if [[ -n $dest_dir ]]; then
  dest_abs=$(realpath -m "$dest_dir")
  # It becomes a file:// uri as it is, so only characters a uri needs no escape for.
  [[ $dest_abs =~ ^[A-Za-z0-9._/+-]+$ ]] ||
    die "$EXIT_USAGE" "--dest-dir $dest_abs must be a path of letters, digits and . _ / + -"
fi
dests=() uris=()
for i in "${!rels[@]}"; do
  if [[ -n $dest_dir ]]; then
    dests[i]=$dest_abs/${files[i]}
    default_uri=file://${dests[i]}
  elif [[ -n $endpoint ]]; then
    dests[i]=s3://$bucket/${prefixes[i]}/${files[i]}
    default_uri=$endpoint/$bucket/${prefixes[i]}/${files[i]}
  else
    dests[i]=s3://$bucket/${prefixes[i]}/${files[i]}
    default_uri=https://$bucket.s3.amazonaws.com/${prefixes[i]}/${files[i]}
  fi
  uris[i]=${bases[i]:+${bases[i]}/${files[i]}}
  uris[i]=${uris[i]:-$default_uri}
done

# --- the pins, planned before anything is published --------------------------------

# pin_manifest [ARGS]: `package pin` of the dependency's build into manifest.yml, or
# where ARGS say (--output FILE).
pin_manifest() {
  "$PACKAGE" pin "$dep" --version "$version" --uri "${uris[1]}" --sha256 "${shas[1]}" \
    ${stacks[@]+"${stacks[@]}"} --manifest "$manifest" "$@"
}

# new_lock FILE: bin/supply.lock with the new url= and sha256=, its comments kept
# (bin/supply reads the two lines with sed '^key=').
new_lock() {
  { grep '^#' "$lock" || true; printf 'url=%s\nsha256=%s\n' "${uris[0]}" "${shas[0]}"; } >"$1"
}

pin_manifest --output "$work/manifest.yml" 2>"$work/pin.err" ||
  die "$EXIT_PIN" "manifest.yml cannot take the pin (nothing was written): $(cat "$work/pin.err")"
new_lock "$work/supply.lock"
plan=("$manifest" "$work/manifest.yml" manifest.yml "$lock" "$work/supply.lock" bin/supply.lock)
if [[ $dep == config-server ]]; then
  printf '%s\n' "${uris[1]}" >"$work/.downloadurl"
  plan+=("$repo/.downloadurl" "$work/.downloadurl" .downloadurl)
fi
diff_plan() {
  local i old
  for ((i = 0; i < ${#plan[@]}; i += 3)); do
    old=${plan[i]}
    [[ -e $old ]] || old=/dev/null
    diff -u --label "a/${plan[i + 2]}" --label "b/${plan[i + 2]}" "$old" "${plan[i + 1]}" || true
  done
}
diff_plan >"$work/diff"
[[ -s $work/diff ]] || echo "(manifest.yml and bin/supply.lock already pin this build)" >"$work/diff"

if [[ -n $dry_run ]]; then
  for i in "${!rels[@]}"; do
    if [[ -n $no_upload ]]; then
      echo "would upload nothing for ${names[i]} (--no-upload)"
    else
      echo "would upload ${rels[i]} (sha256 ${shas[i]}) to ${dests[i]}${endpoint:+ (at $endpoint)}"
    fi
    if ((i < 2)); then
      echo "would pin ${names[i]} uri ${uris[i]}"
    else
      echo "would publish ${names[i]} beside it at ${uris[i]}"
    fi
  done
  echo "would apply to $repo:"
  cat "$work/diff"
  exit 0
fi

# --- publish and verify ------------------------------------------------------------

verify_file() { # FILE SHA WHAT
  local got
  got=$(sha256_of "$1")
  [[ $got == "$2" ]] || die "$EXIT_PUBLISH" "$3 has sha256 $got, not the build's $2"
}

aws_s3() { aws ${endpoint:+--endpoint-url "$endpoint"} --only-show-errors s3 "$@"; }

# published I: true if artifact I is already at its destination, false if nothing is
# there; exits if something else is there (never overwritten) or it cannot be checked.
published() {
  local dest=${dests[$1]} sha=${shas[$1]} bump=${bumps[$1]}
  if [[ -n $dest_dir ]]; then
    [[ -e $dest ]] || return 1
    verify_file "$dest" "$sha" "$dest (already there; $bump)"
  elif aws_s3 cp "$dest" "$work/existing" 2>"$work/err"; then
    verify_file "$work/existing" "$sha" "$dest (already published; $bump)"
  elif grep -Eq '\(404\)|Not Found|does not exist' "$work/err"; then
    return 1
  else
    die "$EXIT_PUBLISH" "cannot check $dest (bucket missing? credentials or permissions?): $(tail -3 "$work/err")"
  fi
  log "$dest is already this build"
}

# upload I: publishes artifact I, then checks what landed.
upload() {
  local src=${srcs[$1]} dest=${dests[$1]} sha=${shas[$1]} tmp
  if [[ -n $dest_dir ]]; then
    mkdir -p "$dest_abs" || die "$EXIT_PUBLISH" "cannot create --dest-dir $dest_abs"
    tmp=$(mktemp "$dest.XXXXXX")
    cp "$src" "$tmp" && chmod 0644 "$tmp" && mv "$tmp" "$dest" || {
      rm -f "$tmp"
      die "$EXIT_PUBLISH" "cannot copy to $dest"
    }
    verify_file "$dest" "$sha" "$dest"
    log "copied to $dest"
  else
    log "uploading to $dest${endpoint:+ (at $endpoint)}"
    aws_s3 cp "$src" "$dest" --metadata "sha256=$sha" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "aws s3 cp to $dest failed: $(tail -3 "$work/err")"
    aws_s3 cp "$dest" "$work/readback" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "cannot read back $dest: $(tail -3 "$work/err")"
    verify_file "$work/readback" "$sha" "$dest as read back"
  fi
}

if [[ -n $no_upload ]]; then
  log "not uploading (--no-upload)"
else
  # Both checked before either is uploaded: a refusal leaves nothing half-released.
  missing=()
  for i in "${!rels[@]}"; do
    published "$i" || missing+=("$i")
  done
  for i in ${missing[@]+"${missing[@]}"}; do
    upload "$i"
  done
  if [[ -n $verify_public ]]; then
    # What staging fetches, fetched as staging does: anonymously, same client.
    for i in "${!rels[@]}"; do
      "$PACKAGE" verify "${names[i]}" --uri "${uris[i]}" --sha256 "${shas[i]}" >&2 ||
        die "$EXIT_PUBLISH" "the public uri of ${names[i]} does not serve this build; fix the bucket's public read (or --public-url-base / --supply-public-url-base), or pass --no-verify-public for a mirror this machine cannot reach"
    done
  fi
fi

# --- pin ---------------------------------------------------------------------------

# The lock and .downloadurl are staged beside their files, so each lands by rename;
# the manifest is pinned in place by the tool (validated again, atomic).
for ((i = 3; i < ${#plan[@]}; i += 3)); do
  tmp=$(mktemp "${plan[i]}.XXXXXX") || die "$EXIT_PIN" "cannot write beside ${plan[i]}"
  tmps+=("$tmp")
  cp "${plan[i + 1]}" "$tmp" && chmod 0644 "$tmp" || die "$EXIT_PIN" "cannot write $tmp"
done
pin_manifest >&2 || die "$EXIT_PIN" "manifest.yml cannot take the pin (nothing was written)"
for ((i = 3; i < ${#plan[@]}; i += 3)); do
  mv -f "${tmps[i / 3 - 1]}" "${plan[i]}" || die 1 "cannot replace ${plan[i]}: manifest.yml is pinned, it is not; run again"
done
cat "$work/diff"
log "pinned $dep $version (${uris[1]}) in $manifest${plan[6]:+ and .downloadurl}"
log "pinned supply $bp_version (${uris[0]}) in $lock"
for ((i = 2; i < ${#rels[@]}; i++)); do
  [[ -n $no_upload ]] || log "published ${names[i]} beside it: ${uris[i]}"
done
