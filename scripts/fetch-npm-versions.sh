#!/usr/bin/env bash
# Fetches consecutive versions of one npm package with `npm pack NAME@VERSION`, for the
# `relstore ingest` figures (files/s, MB/s, dedup ratio across versions). Each version is
# unpacked into target/npm-data/<name>/<version>/ (without the tarball's leading "package/"),
# the same layout scripts/fetch-npm-releases.sh uses, so both share downloads. Idempotent: a
# version whose directory holds .complete is skipped. Never commit target/npm-data.
#
# Usage: scripts/fetch-npm-versions.sh NAME [VERSION...]
#        scripts/fetch-npm-versions.sh NAME --last N     (the newest N stable versions)
# Prints the version directories, oldest first, one a line, on stdout.
#
# Then, for example:
#   for d in $(scripts/fetch-npm-versions.sh pdfjs-dist --last 5); do
#     relstore --data /tmp/rs ingest --org bench --project pdfjs --release "$(basename "$d")" \
#       --ignore .complete "$d"
#   done
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
name="$1"
shift
command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 1; }

if [ $# -eq 0 ] || [ "$1" = "--last" ]; then
  count="${2:-5}"
  # Stable versions only (no "-rc.1", "-next.2" ...), in publication order; the newest $count.
  mapfile -t versions < <(npm view "$name" versions --json | node -e '
    const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const n = parseInt(process.argv[1], 10);
    const stable = (Array.isArray(v) ? v : [v]).filter(x => /^\d+\.\d+\.\d+$/.test(x));
    console.log(stable.slice(-n).join("\n"));' "$count")
else
  versions=("$@")
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
data="${RELSTORE_NPM_DATA:-$root/target/npm-data}"
for ver in "${versions[@]}"; do
  dest="$data/$name/$ver"
  if [ ! -f "$dest/.complete" ]; then
    echo "fetching $name@$ver" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$name@$ver" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
    rm -rf "$tmp"
    touch "$dest/.complete"
  fi
  echo "$dest"
done
