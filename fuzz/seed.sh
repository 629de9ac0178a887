#!/usr/bin/env bash
# Writes seed corpora for every fuzz target (fuzz/corpus/<target>/seed-*) from a small real store
# built by fuzz/seedgen. The corpora are generated, not committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/seedgen/target}"
cargo run --quiet --release --manifest-path "$here/seedgen/Cargo.toml" -- "$here/corpus"
