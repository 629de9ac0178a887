#!/usr/bin/env bash
# Fetches consecutive releases of npm packages that ship source maps, for the W8 benchmark
# (benches/compare). Each version is unpacked into target/npm-data/<pkg>/<version>/ (the
# package's files, without the tarball's leading "package/"). Idempotent: a version whose
# directory holds .complete is skipped. Never commit target/npm-data.
#
# Usage: scripts/fetch-npm-releases.sh [COUNT] [PACKAGE...]
#   COUNT     consecutive stable versions per package, the newest ones (default 10)
#   PACKAGE   default: echarts pdfjs-dist @angular/core
set -euo pipefail

count="${1:-10}"
shift || true
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=(echarts pdfjs-dist @angular/core)
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
data="${RELSTORE_NPM_DATA:-$root/target/npm-data}"
command -v npm >/dev/null || { echo "npm is required (apt-get install npm)" >&2; exit 1; }

for pkg in "${pkgs[@]}"; do
  # Stable versions only (no "-rc.1", "-next.2" ...), in publication order; the newest $count.
  versions=$(npm view "$pkg" versions --json | node -e '
    const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const n = parseInt(process.argv[1], 10);
    const stable = (Array.isArray(v) ? v : [v]).filter(x => /^\d+\.\d+\.\d+$/.test(x));
    console.log(stable.slice(-n).join("\n"));' "$count")
  for ver in $versions; do
    dest="$data/$pkg/$ver"
    if [ -f "$dest/.complete" ]; then
      continue
    fi
    echo "fetching $pkg@$ver" >&2
    rm -rf "$dest"
    mkdir -p "$dest"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$dest" --strip-components=1
    rm -rf "$tmp"
    touch "$dest/.complete"
  done
  echo "$pkg: $(echo "$versions" | wc -w) versions in $data/$pkg" >&2
done
