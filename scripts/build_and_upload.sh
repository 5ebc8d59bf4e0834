#!/usr/bin/env bash
# Releases the two prebuilt artifacts of this buildpack version, built reproducibly by
# scripts/build-portable:
#   config-server  build/config-server-<its Cargo.toml version>-linux-x86_64.tgz, the
#                  sidecar that supply installs;
#   supply         bin/supply-linux-x86_64 as supply-<./VERSION>-linux-x86_64, what the
#                  bin/supply entry point fetches when an app lists the buildpack by
#                  git URL.
# It publishes both, checks that each public uri serves byte-for-byte what was built,
# then pins both in one step: the config-server entry of manifest.yml (version, uri,
# sha256, cf_stacks) and its default_versions entry, .downloadurl, and the url= and
# sha256= lines of bin/supply.lock. Every other byte of those files (comments, order,
# other entries) stays as it was.
#
# Both are always released together, by design: bin/supply.lock must pin the supply
# built from the same commit as the rest of the checkout, or git-URL users of a tag run
# other code than the tag's. An artifact that did not change costs nothing: its
# published object is reused and its pin lines stay as they are.
#
# Usage: scripts/build_and_upload.sh [options]
#   --bucket NAME          S3 bucket (env BUCKET; default sidecar-buildpack-releases)
#   --prefix PREFIX        key prefix of config-server in the bucket (env PREFIX;
#                          default config-server)
#   --supply-prefix PREFIX key prefix of supply in the bucket (env SUPPLY_PREFIX;
#                          default supply)
#   --endpoint-url URL     an S3-compatible server instead of AWS, e.g. minio or an
#                          air-gapped mirror (env S3_ENDPOINT_URL); uris are path-style
#   --dest-dir DIR         copy both files into a local directory instead of S3
#   --public-url-base URL  config-server's uri is URL/<file> (default: by destination,
#                          https://BUCKET.s3.amazonaws.com/PREFIX/<file>,
#                          ENDPOINT/BUCKET/PREFIX/<file>, or file://DIR/<file>)
#   --supply-public-url-base URL
#                          supply's uri is URL/<file> (default: as for config-server,
#                          with SUPPLY_PREFIX; with --dest-dir, --public-url-base).
#                          Needed with --public-url-base when publishing to S3, where
#                          the two files are under different prefixes
#   --repo DIR             the buildpack checkout whose manifest.yml, .downloadurl and
#                          bin/supply.lock are updated (default: this script's repo);
#                          the build is always of this script's repo
#   --dry-run              build, then show what would be uploaded and the diff that
#                          would be applied; change nothing
#   --no-upload            build and update the pins to the uris the files would have,
#                          without publishing (keeps the pins in step with the
#                          reproducible build on a machine without credentials)
#   --no-verify-public     skip fetching the public uris after publishing (for mirrors
#                          that this machine cannot reach)
# S3 uses the aws CLI (installed from PyPI if missing) and its usual credentials
# (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...). An object already at the
# destination is reused when identical and never overwritten when not: published files
# are pinned by older buildpacks, so a changed build needs a new version (./VERSION for
# supply, src/config-server-sidecar/Cargo.toml for config-server). Both destinations
# are checked before either is uploaded, so such a refusal publishes nothing.
# There is no --only: both are always released together (why: at the top of this file).
#
# Exit codes: 0 done (or nothing to change); 1 unexpected failure; 2 usage;
#             3 a tool, setting, credential or file is missing; 4 the build failed;
#             5 publishing or its verification failed; 6 manifest.yml or
#             bin/supply.lock has a shape this script cannot update safely (nothing
#             was written).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

readonly EXIT_USAGE=2 EXIT_SETUP=3 EXIT_BUILD=4 EXIT_PUBLISH=5

# usage: the header's Usage section, on stdout for --help.
usage() {
  sed -n '/^# Usage:/,/^# Exit codes/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit 0
}

bucket=${BUCKET:-sidecar-buildpack-releases}
prefix=${PREFIX:-config-server}
supply_prefix=${SUPPLY_PREFIX:-supply}
endpoint=${S3_ENDPOINT_URL:-}
dest_dir=
public_base=
supply_public_base=
repo=$ROOT
dry_run=
no_upload=
verify_public=1

need_value() { (($# >= 2)) && [[ -n $2 ]] || die "$EXIT_USAGE" "$1 needs a value (see --help)"; }
while (($#)); do
  case $1 in
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
    --no-verify-public) verify_public= ;;
    -h | --help) usage ;;
    *) die "$EXIT_USAGE" "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

# --- settings -------------------------------------------------------------------

# A uri lands in manifest.yml, bin/supply.lock and every staging log: no credentials,
# no query.
check_url() {
  local what=$1 url=$2
  [[ $url =~ ^https?://[^/@?#]+(/[^?#@]*)?$ ]] ||
    die "$EXIT_USAGE" "$what must be an http(s) URL without user:password@, query or fragment (it ends up in the pins and staging logs)"
}
check_prefix() {
  [[ $2 =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] ||
    die "$EXIT_USAGE" "$1 '$2' must be path segments of letters, digits, '.', '_' or '-'"
}

[[ -n $dest_dir && -n $endpoint ]] && die "$EXIT_USAGE" "--dest-dir and --endpoint-url (or S3_ENDPOINT_URL) are two destinations; give one"
[[ -n $dry_run && -n $no_upload ]] && log "--dry-run: --no-upload changes nothing more"
check_prefix --prefix "$prefix"
check_prefix --supply-prefix "$supply_prefix"
if [[ -z $dest_dir ]]; then
  [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    die "$EXIT_USAGE" "--bucket '$bucket' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
fi
[[ -z $endpoint ]] || { check_url "--endpoint-url" "$endpoint"; endpoint=${endpoint%/}; }
[[ -z $public_base ]] || { check_url "--public-url-base" "$public_base"; public_base=${public_base%/}; }
[[ -z $supply_public_base ]] || {
  check_url "--supply-public-url-base" "$supply_public_base"
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
[[ -f $repo/manifest.yml ]] || die "$EXIT_SETUP" "no manifest.yml in $repo (--repo names the buildpack checkout to update)"

# supply is published under the buildpack's version: the one the checkout carries.
bp_version=$(cat "$ROOT/VERSION" 2>/dev/null) || die "$EXIT_SETUP" "cannot read $ROOT/VERSION"
[[ $bp_version =~ ^[0-9A-Za-z][0-9A-Za-z._-]*$ ]] ||
  die "$EXIT_SETUP" "$ROOT/VERSION must be one line like 1.2.3 (letters, digits, '.', '_', '-'), not '$bp_version'"

ensure_python
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
trap 'rm -rf "$work"' EXIT

# --- build ----------------------------------------------------------------------

# build PACKAGE: scripts/build-portable --only PACKAGE, its own cargo invocation (so
# the bytes do not depend on what else is built), then a private copy of the output in
# $work, checked against the digest the build printed: what is published is what was
# built, even if bin/ or build/ is rebuilt meanwhile. Prints "<sha256> <output path
# relative to the repo>".
build() {
  local out sha rel
  out=$("$ROOT/scripts/build-portable" --only "$1") ||
    die "$EXIT_BUILD" "scripts/build-portable --only $1 failed (its error is above)"
  read -r sha rel <<<"$(tail -1 <<<"$out")"
  [[ $sha =~ ^[0-9a-f]{64}$ && -f $ROOT/$rel ]] ||
    die 1 "unexpected output from scripts/build-portable --only $1: $out"
  cp "$ROOT/$rel" "$work/${rel##*/}" || die 1 "cannot copy $rel to $work"
  [[ $(sha256_of "$work/${rel##*/}") == "$sha" ]] || die "$EXIT_BUILD" "$rel changed while it was being copied; run again"
  printf '%s %s\n' "$sha" "$rel"
}

built=$(build supply) || exit $?
read -r sha_supply rel_supply <<<"$built"
file_supply=supply-$bp_version-linux-x86_64
log "built $rel_supply (supply $bp_version, sha256 $sha_supply)"

built=$(build config-server) || exit $?
read -r sha_cs rel_cs <<<"$built"
file_cs=${rel_cs##*/}
[[ $file_cs =~ ^config-server-(.+)-linux-x86_64\.tgz$ ]] || die 1 "unexpected tarball name $file_cs"
version=${BASH_REMATCH[1]}
log "built $rel_cs (config-server $version, sha256 $sha_cs)"

# The two artifacts, by index: 0 supply, 1 config-server.
names=(supply config-server)
rels=("$rel_supply" "$rel_cs")
srcs=("$work/${rel_supply##*/}" "$work/$file_cs")
files=("$file_supply" "$file_cs")
shas=("$sha_supply" "$sha_cs")
prefixes=("$supply_prefix" "$prefix")
bases=("$supply_public_base" "$public_base")
content_types=(application/octet-stream application/gzip)
bumps=("a changed supply needs a new buildpack version in VERSION"
  "a changed build needs a new version in src/config-server-sidecar/Cargo.toml")

# --- where they go, and the uris they will have -------------------------------------

if [[ -n $dest_dir ]]; then
  [[ -n $dry_run ]] || mkdir -p "$dest_dir" || die "$EXIT_PUBLISH" "cannot create --dest-dir $dest_dir"
  dest_abs=$(python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$dest_dir")
fi
dests=() uris=()
for i in 0 1; do
  file=${files[i]}
  if [[ -n $dest_dir ]]; then
    dests[i]=$dest_abs/$file
    default_uri=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).as_uri())' "${dests[i]}")
  else
    dests[i]=s3://$bucket/${prefixes[i]}/$file
    if [[ -n $endpoint ]]; then
      default_uri=$endpoint/$bucket/${prefixes[i]}/$file
    else
      default_uri=https://$bucket.s3.amazonaws.com/${prefixes[i]}/$file
    fi
  fi
  uris[i]=${bases[i]:+${bases[i]}/$file}
  uris[i]=${uris[i]:-$default_uri}
done

# --- the pins, computed before anything is published --------------------------------

# pin MODE: prints the diff; MODE=write also writes it. Exits 6 (a manifest.yml or
# bin/supply.lock it cannot edit safely), 1 on anything unexpected.
pin() {
  python3 - "$1" "$repo" "$version" "${uris[1]}" "${shas[1]}" "${uris[0]}" "${shas[0]}" <<'PY'
"""Edits only the config-server lines of manifest.yml and the url=/sha256= lines of
bin/supply.lock, by text, so comments and every other byte stay as they are; then
writes them and .downloadurl, each via temp+rename, all or none."""
import difflib, os, re, sys, tempfile

mode, repo, version, uri, sha256, supply_uri, supply_sha256 = sys.argv[1:]
NAME, STACKS = "config-server", ["cflinuxfs3", "cflinuxfs4"]
manifest_path = os.path.join(repo, "manifest.yml")
url_path = os.path.join(repo, ".downloadurl")
lock_path = os.path.join(repo, "bin", "supply.lock")


class Shape(Exception):
    pass


def ind(line):
    return len(line) - len(line.lstrip(" "))


def inert(line):
    s = line.strip()
    return not s or s.startswith("#")


def unquote(v):
    v = re.sub(r"\s+#.*$", "", v).strip()
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def items(lines, key):
    """The block-list items under top-level `key:`, as (first, end, key_indent)."""
    heads = [i for i, l in enumerate(lines) if re.match(rf"{key}:", l)]
    if len(heads) != 1:
        raise Shape(f"expected one top-level '{key}:', found {len(heads)}")
    if not re.match(rf"{key}:\s*(#.*)?$", lines[heads[0]]):
        raise Shape(f"line {heads[0] + 1} '{key}:' must be followed by a block list ('- name: ...' lines)")
    end = heads[0] + 1
    while end < len(lines) and (inert(lines[end]) or ind(lines[end]) > 0 or lines[end].startswith("-")):
        end += 1
    body = [i for i in range(heads[0] + 1, end) if not inert(lines[i])]
    if not body or not re.match(r"\s*- ", lines[body[0]]):
        raise Shape(f"'{key}:' is not a block list ('- name: ...' lines)")
    dash = ind(lines[body[0]])
    starts = [i for i in body if ind(lines[i]) == dash and re.match(r"\s*- ", lines[i])]
    out = []
    for n, s in enumerate(starts):
        e = starts[n + 1] if n + 1 < len(starts) else end
        out.append((s, e, len(re.match(r"\s*-\s+", lines[s]).group(0))))
    return out


def keys(lines, item):
    """{key: line index} of the item's own keys."""
    s, e, k = item
    found = {}
    for i in range(s, e):
        m = re.match(r"\s*-\s+([A-Za-z_][\w-]*):", lines[i]) if i == s else re.match(rf" {{{k}}}([A-Za-z_][\w-]*):", lines[i])
        if m:
            found[m.group(1)] = i
    return found


def entry(lines, key):
    named = []
    for it in items(lines, key):
        k = keys(lines, it)
        if "name" in k and unquote(lines[k["name"]].split(":", 1)[1]) == NAME:
            named.append((it, k))
    if len(named) != 1:
        raise Shape(f"expected exactly one '{NAME}' entry in '{key}:', found {len(named)}")
    return named[0]


def set_scalar(lines, i, key, value):
    m = re.match(rf"(\s*(?:-\s+)?{key}:[ \t]*)(\"[^\"]*\"|'[^']*'|[^\s#][^#]*?)([ \t]+#.*)?[ \t]*$", lines[i])
    if not m:
        raise Shape(f"line {i + 1} '{key}:' has no plain value to replace")
    q = m.group(2)[0] if m.group(2)[0] in "'\"" else ""
    lines[i] = f"{m.group(1)}{q}{value}{q}{m.group(3) or ''}"


def need(k, key, where):
    if key not in k:
        raise Shape(f"the '{NAME}' entry in '{where}:' has no '{key}:' key; add it (any value)")
    return k[key]


def edit(text):
    lines = text.split("\n")
    (_, k) = entry(lines, "default_versions")
    set_scalar(lines, need(k, "version", "default_versions"), "version", version)
    (item, k) = entry(lines, "dependencies")
    for key, value in (("version", version), ("uri", uri), ("sha256", sha256)):
        set_scalar(lines, need(k, key, "dependencies"), key, value)
    i = need(k, "cf_stacks", "dependencies")
    head = re.match(r"(\s*(?:-\s+)?cf_stacks:)[ \t]*(.*)$", lines[i])
    if head.group(2).startswith("["):  # flow style: [a, b]
        comment = re.search(r"\]([ \t]+#.*)$", head.group(2))
        lines[i] = f"{head.group(1)} [{', '.join(STACKS)}]{comment.group(1) if comment else ''}"
    elif head.group(2) and not head.group(2).startswith("#"):
        raise Shape(f"line {i + 1} 'cf_stacks:' is neither a block nor a [flow] list")
    else:  # block style: the '- stack' lines that follow, kept at their indent
        key_indent = ind(lines[i]) if i != item[0] else item[2]
        j = i + 1
        while j < item[1] and (ind(lines[j]) > key_indent or (ind(lines[j]) == key_indent and re.match(r"\s*- ", lines[j]))):
            j += 1
        pad = ind(lines[i + 1]) if j > i + 1 else key_indent
        lines[i + 1:j] = [f"{' ' * pad}- {s}" for s in STACKS]
    return "\n".join(lines)


def check(old, new):
    """With PyYAML at hand: the new manifest means the old one plus exactly our pin."""
    try:
        import yaml
    except ImportError:
        return
    want, got = yaml.safe_load(old), yaml.safe_load(new)
    for d in want["default_versions"]:
        if d["name"] == NAME:
            d["version"] = version
    for d in want["dependencies"]:
        if d["name"] == NAME:
            d.update(version=version, uri=uri, sha256=sha256, cf_stacks=STACKS)
    if want != got:
        raise Shape("the edited manifest.yml does not parse to the intended change (a bug in this script)")


def edit_lock(text):
    """Replaces the url= and sha256= lines, which bin/supply reads with sed '^key='."""
    lines = text.split("\n")
    found = {"url": [], "sha256": []}
    for i, line in enumerate(lines):
        m = re.match(r"(url|sha256)=", line)
        if m:
            found[m.group(1)].append(i)
        elif not inert(line):
            raise Shape(f"line {i + 1} is neither a comment nor a url= or sha256= line")
    for key, value in (("url", supply_uri), ("sha256", supply_sha256)):
        if len(found[key]) != 1:
            raise Shape(f"expected one '{key}=' line, found {len(found[key])}")
        lines[found[key][0]] = f"{key}={value}"
    return "\n".join(lines)


def tmp_copy(path, text):
    """A fsynced temp file beside path holding text, with path's mode."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def fail(path, e):
    print(f"build_and_upload.sh: error: {path}: {e}", file=sys.stderr)
    sys.exit(6)


try:
    old = open(manifest_path, encoding="utf-8").read()
    new = edit(old)
    check(old, new)
except Shape as e:
    fail(manifest_path, e)
try:
    old_lock = open(lock_path, encoding="utf-8").read()
except FileNotFoundError:
    fail(lock_path, "missing; restore it (git checkout bin/supply.lock): only its url= and sha256= lines are rewritten")
try:
    new_lock = edit_lock(old_lock)
except Shape as e:
    fail(lock_path, e)
old_url = open(url_path, encoding="utf-8").read() if os.path.exists(url_path) else None

# (path, name in the diff, old text or None, new text)
files = [(manifest_path, "manifest.yml", old, new), (url_path, ".downloadurl", old_url, uri + "\n"),
         (lock_path, "bin/supply.lock", old_lock, new_lock)]
diff = []
for _, name, before, after in files:
    diff += difflib.unified_diff((before or "").splitlines(True), after.splitlines(True),
                                 "/dev/null" if before is None else f"a/{name}", f"b/{name}")
sys.stdout.write("".join(diff) if diff else "(manifest.yml, .downloadurl and bin/supply.lock already pin this build)\n")

changes = [f for f in files if f[2] != f[3]]
if mode == "write" and changes:
    # Every temp file is complete before the first rename; a failed rename puts back
    # what was already replaced, so the three files never disagree.
    tmps = []
    try:
        for path, _, _, after in changes:
            tmps.append(tmp_copy(path, after))
        done = []
        try:
            for tmp, (path, _, before, _) in zip(tmps, changes):
                os.replace(tmp, path)
                done.append((path, before))
        except BaseException:
            for path, before in done:
                if before is None:
                    os.unlink(path)
                else:
                    os.replace(tmp_copy(path, before), path)
            raise
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    for d in {os.path.dirname(f[0]) for f in changes}:
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
PY
}

pin plan >"$work/diff" || exit $?

if [[ -n $dry_run ]]; then
  for i in 0 1; do
    if [[ -n $no_upload ]]; then
      echo "would upload nothing for ${names[i]} (--no-upload)"
    else
      echo "would upload ${rels[i]} (sha256 ${shas[i]}) to ${dests[i]}${endpoint:+ (at $endpoint)}"
    fi
    echo "would pin ${names[i]} uri ${uris[i]}"
  done
  echo "would apply to $repo:"
  cat "$work/diff"
  exit 0
fi

# --- publish and verify ------------------------------------------------------------

# verify_file FILE SHA WHAT: FILE's sha256 must be SHA.
verify_file() {
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
    tmp=$(mktemp "$dest.XXXXXX")
    cp "$src" "$tmp" && chmod 0644 "$tmp" && mv "$tmp" "$dest" || {
      rm -f "$tmp"
      die "$EXIT_PUBLISH" "cannot copy to $dest"
    }
    verify_file "$dest" "$sha" "$dest"
    log "copied to $dest"
  else
    log "uploading to $dest${endpoint:+ (at $endpoint)}"
    aws_s3 cp "$src" "$dest" --content-type "${content_types[$1]}" --metadata "sha256=$sha" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "aws s3 cp to $dest failed: $(tail -3 "$work/err")"
    aws_s3 cp "$dest" "$work/readback" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "cannot read back $dest: $(tail -3 "$work/err")"
    verify_file "$work/readback" "$sha" "$dest as read back"
  fi
}

# verify_public I: the uri is what staging fetches: it must serve the same bytes,
# anonymously.
verify_public() {
  python3 - "${uris[$1]}" "${shas[$1]}" <<'PY' || die "$EXIT_PUBLISH" "the public uri of ${names[$1]} does not serve this build; fix the bucket's public read (or --public-url-base / --supply-public-url-base), or pass --no-verify-public for a mirror this machine cannot reach"
import hashlib, sys, urllib.request
uri, want = sys.argv[1:]
h = hashlib.sha256()
try:
    with urllib.request.urlopen(uri, timeout=60) as r:
        for chunk in iter(lambda: r.read(1 << 16), b""):
            h.update(chunk)
except Exception as e:
    sys.exit(f"GET {uri}: {e}")
if h.hexdigest() != want:
    sys.exit(f"GET {uri}: sha256 {h.hexdigest()}")
PY
  log "${uris[$1]} serves sha256 ${shas[$1]}"
}

if [[ -n $no_upload ]]; then
  log "not uploading (--no-upload)"
else
  # Both checked before either is uploaded: a refusal leaves nothing half-released.
  missing=()
  for i in 0 1; do
    published "$i" || missing+=("$i")
  done
  for i in "${missing[@]}"; do
    upload "$i"
  done
  if [[ -n $verify_public ]]; then
    for i in 0 1; do
      verify_public "$i"
    done
  fi
fi

# --- pin ---------------------------------------------------------------------------

pin write >"$work/diff" || exit $?
cat "$work/diff"
log "pinned config-server $version (${uris[1]}) in $repo/manifest.yml and .downloadurl"
log "pinned supply $bp_version (${uris[0]}) in $repo/bin/supply.lock"
