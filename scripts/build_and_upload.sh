#!/usr/bin/env bash
# Releases config-server: builds the reproducible tarball (scripts/build-portable),
# publishes it, checks that what was published is byte-for-byte what was built, then
# pins it: the config-server entry of manifest.yml (version, uri, sha256, cf_stacks),
# its default_versions entry, and .downloadurl, all in one step. The rest of
# manifest.yml (comments, order, other entries) is left byte-for-byte as it was.
#
# Usage: scripts/build_and_upload.sh [options]
#   --bucket NAME          S3 bucket (env BUCKET; default sidecar-buildpack-releases)
#   --prefix PREFIX        key prefix in the bucket (env PREFIX; default config-server)
#   --endpoint-url URL     an S3-compatible server instead of AWS, e.g. minio or an
#                          air-gapped mirror (env S3_ENDPOINT_URL); uris are path-style
#   --dest-dir DIR         copy the tarball into a local directory instead of S3
#   --public-url-base URL  the uri written is URL/<file> (default: by destination,
#                          https://BUCKET.s3.amazonaws.com/PREFIX/<file>,
#                          ENDPOINT/BUCKET/PREFIX/<file>, or file://DIR/<file>)
#   --repo DIR             the buildpack checkout whose manifest.yml and .downloadurl
#                          are updated (default: this script's repo); the build is
#                          always of this script's repo
#   --dry-run              build, then show what would be uploaded and the diff that
#                          would be applied; change nothing
#   --no-upload            build and update the pin to the uri the tarball would have,
#                          without publishing (keeps the pin in step with the
#                          reproducible build on a machine without credentials)
#   --no-verify-public     skip fetching the public uri after publishing (for mirrors
#                          that this machine cannot reach)
# S3 uses the aws CLI (installed from PyPI if missing) and its usual credentials
# (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...). An object already at the
# destination is reused when identical and never overwritten when not: published
# tarballs are pinned by older buildpacks, so a changed build needs a new version.
#
# Exit codes: 0 done (or nothing to change); 1 unexpected failure; 2 usage;
#             3 a tool, setting, credential or file is missing; 4 the build failed;
#             5 publishing or its verification failed; 6 manifest.yml has a shape this
#             script cannot update safely (nothing was written).
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
endpoint=${S3_ENDPOINT_URL:-}
dest_dir=
public_base=
repo=$ROOT
dry_run=
no_upload=
verify_public=1

need_value() { (($# >= 2)) && [[ -n $2 ]] || die "$EXIT_USAGE" "$1 needs a value (see --help)"; }
while (($#)); do
  case $1 in
    --bucket) need_value "$@"; bucket=$2; shift ;;
    --prefix) need_value "$@"; prefix=$2; shift ;;
    --endpoint-url) need_value "$@"; endpoint=$2; shift ;;
    --dest-dir) need_value "$@"; dest_dir=$2; shift ;;
    --public-url-base) need_value "$@"; public_base=$2; shift ;;
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

# A uri lands in manifest.yml and in every staging log: no credentials, no query.
check_url() {
  local what=$1 url=$2
  [[ $url =~ ^https?://[^/@?#]+(/[^?#@]*)?$ ]] ||
    die "$EXIT_USAGE" "$what must be an http(s) URL without user:password@, query or fragment (it ends up in manifest.yml and staging logs)"
}

[[ -n $dest_dir && -n $endpoint ]] && die "$EXIT_USAGE" "--dest-dir and --endpoint-url (or S3_ENDPOINT_URL) are two destinations; give one"
[[ -n $dry_run && -n $no_upload ]] && log "--dry-run: --no-upload changes nothing more"
[[ $prefix =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] ||
  die "$EXIT_USAGE" "--prefix '$prefix' must be path segments of letters, digits, '.', '_' or '-'"
if [[ -z $dest_dir ]]; then
  [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    die "$EXIT_USAGE" "--bucket '$bucket' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
fi
[[ -z $endpoint ]] || { check_url "--endpoint-url" "$endpoint"; endpoint=${endpoint%/}; }
[[ -z $public_base ]] || { check_url "--public-url-base" "$public_base"; public_base=${public_base%/}; }

[[ -d $repo ]] || die "$EXIT_SETUP" "--repo $repo is not a directory"
repo=$(cd "$repo" && pwd -P)
[[ -f $repo/manifest.yml ]] || die "$EXIT_SETUP" "no manifest.yml in $repo (--repo names the buildpack checkout to update)"

ensure_python
uploading_s3=
if [[ -z $dest_dir && -z $no_upload && -z $dry_run ]]; then
  uploading_s3=1
  command -v aws >/dev/null || ensure_pip awscli awscli
  command -v aws >/dev/null || die "$EXIT_SETUP" "the aws CLI is not on PATH: pip install awscli"
  export AWS_PAGER=""
  # `configure list` resolves the credential chain without printing any secret.
  creds=$(aws configure list 2>/dev/null) || creds=
  if [[ -z $creds ]] || grep -Eq '^ *access_key +<not set>' <<<"$creds"; then
    die "$EXIT_SETUP" "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or use --no-upload / --dest-dir"
  fi
fi

# --- build ----------------------------------------------------------------------

built=$("$ROOT/scripts/build-portable" --only config-server) ||
  die "$EXIT_BUILD" "scripts/build-portable --only config-server failed (its error is above)"
read -r sha256 rel_tgz <<<"$(tail -1 <<<"$built")"
[[ $sha256 =~ ^[0-9a-f]{64}$ && -f $ROOT/$rel_tgz ]] ||
  die 1 "unexpected output from scripts/build-portable: $built"
tgz=$ROOT/$rel_tgz
file=${tgz##*/}
[[ $file =~ ^config-server-(.+)-linux-x86_64\.tgz$ ]] || die 1 "unexpected tarball name $file"
version=${BASH_REMATCH[1]}
log "built $rel_tgz (config-server $version, sha256 $sha256)"

# --- where it goes, and the uri it will have ---------------------------------------

s3_url="s3://$bucket/$prefix/$file"
if [[ -n $dest_dir ]]; then
  [[ -n $dry_run ]] || mkdir -p "$dest_dir" || die "$EXIT_PUBLISH" "cannot create --dest-dir $dest_dir"
  dest_abs=$(python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$dest_dir")
  destination="$dest_abs/$file"
  default_uri=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).as_uri())' "$destination")
elif [[ -n $endpoint ]]; then
  destination="$s3_url (at $endpoint)"
  default_uri="$endpoint/$bucket/$prefix/$file"
else
  destination=$s3_url
  default_uri="https://$bucket.s3.amazonaws.com/$prefix/$file"
fi
uri=${public_base:+$public_base/$file}
uri=${uri:-$default_uri}

# --- the pin, computed before anything is published --------------------------------

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pin MODE: prints the diff; MODE=write also writes it. Exits 6 (EXIT_MANIFEST) on a
# manifest it cannot edit safely, 1 on anything unexpected.
pin() {
  python3 - "$1" "$repo" "$version" "$uri" "$sha256" <<'PY'
"""Edits only the config-server lines of manifest.yml, by text, so comments and
every other byte stay as they are; then writes it and .downloadurl via temp+rename."""
import difflib, os, re, sys, tempfile

mode, repo, version, uri, sha256 = sys.argv[1:]
NAME, STACKS = "config-server", ["cflinuxfs3", "cflinuxfs4"]
manifest_path = os.path.join(repo, "manifest.yml")
url_path = os.path.join(repo, ".downloadurl")


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


def write(path, text, like):
    fd, tmp = tempfile.mkstemp(dir=repo, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(like).st_mode & 0o777 if os.path.exists(like) else 0o644)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


try:
    old = open(manifest_path, encoding="utf-8").read()
    new = edit(old)
    check(old, new)
except Shape as e:
    print(f"build_and_upload.sh: error: {manifest_path}: {e}", file=sys.stderr)
    sys.exit(6)
old_url = open(url_path, encoding="utf-8").read() if os.path.exists(url_path) else None
new_url = uri + "\n"

diff = list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/manifest.yml", "b/manifest.yml"))
diff += difflib.unified_diff((old_url or "").splitlines(True), [new_url],
                             "a/.downloadurl" if old_url is not None else "/dev/null", "b/.downloadurl")
sys.stdout.write("".join(diff) if diff else "(manifest.yml and .downloadurl already pin this build)\n")
if mode == "write" and diff:
    tmps = [write(manifest_path, new, manifest_path), write(url_path, new_url, url_path)]
    os.replace(tmps[1], url_path)
    os.replace(tmps[0], manifest_path)
    dfd = os.open(repo, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
PY
}

pin plan >"$work/diff" || exit $?

if [[ -n $dry_run ]]; then
  if [[ -n $no_upload ]]; then
    echo "would upload nothing (--no-upload)"
  else
    echo "would upload $rel_tgz (sha256 $sha256) to $destination"
  fi
  echo "would pin uri $uri"
  echo "would apply to $repo:"
  cat "$work/diff"
  exit 0
fi

# --- publish and verify ------------------------------------------------------------

# verify_file FILE WHAT: FILE's sha256 must be the build's.
verify_file() {
  local got
  got=$(sha256_of "$1")
  [[ $got == "$sha256" ]] || die "$EXIT_PUBLISH" "$2 has sha256 $got, not the build's $sha256"
}

aws_s3() { aws ${endpoint:+--endpoint-url "$endpoint"} --only-show-errors s3 "$@"; }

if [[ -n $no_upload ]]; then
  log "not uploading (--no-upload)"
elif [[ -n $dest_dir ]]; then
  if [[ -e $destination ]]; then
    verify_file "$destination" "$destination (already there; a changed build needs a new version in src/config-server-sidecar/Cargo.toml)"
    log "$destination is already this build"
  else
    tmp=$(mktemp "$destination.XXXXXX")
    cp "$tgz" "$tmp" && chmod 0644 "$tmp" && mv "$tmp" "$destination" || {
      rm -f "$tmp"
      die "$EXIT_PUBLISH" "cannot copy to $destination"
    }
    verify_file "$destination" "$destination"
    log "copied to $destination"
  fi
elif [[ -n $uploading_s3 ]]; then
  # What is there already? A 404 means nothing; any other failure stops here.
  if aws_s3 cp "$s3_url" "$work/existing" 2>"$work/err"; then
    verify_file "$work/existing" "$s3_url (already published; a changed build needs a new version in src/config-server-sidecar/Cargo.toml)"
    log "$s3_url is already this build"
  elif grep -Eq '\(404\)|Not Found|does not exist' "$work/err"; then
    log "uploading to $destination"
    aws_s3 cp "$tgz" "$s3_url" --content-type application/gzip --metadata "sha256=$sha256" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "aws s3 cp to $s3_url failed: $(tail -3 "$work/err")"
    aws_s3 cp "$s3_url" "$work/readback" 2>"$work/err" ||
      die "$EXIT_PUBLISH" "cannot read back $s3_url: $(tail -3 "$work/err")"
    verify_file "$work/readback" "$s3_url as read back"
  else
    die "$EXIT_PUBLISH" "cannot check $s3_url (bucket missing? credentials or permissions?): $(tail -3 "$work/err")"
  fi
fi

# The uri is what staging will fetch: check it serves the same bytes, anonymously.
if [[ -z $no_upload && -n $verify_public ]]; then
  python3 - "$uri" "$sha256" <<'PY' || die "$EXIT_PUBLISH" "the public uri does not serve this build; fix the bucket's public read (or --public-url-base), or pass --no-verify-public for a mirror this machine cannot reach"
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
  log "$uri serves sha256 $sha256"
fi

# --- pin ---------------------------------------------------------------------------

pin write >"$work/diff" || exit $?
cat "$work/diff"
log "pinned config-server $version in $repo/manifest.yml and .downloadurl: $uri"
