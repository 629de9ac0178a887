#!/usr/bin/env bash
# Builds every fuzz target with the nightly toolchain and runs each for a short time, failing on
# any crash. Usage: fuzz/run.sh [seconds per target, default 20]
# Crashing inputs land in fuzz/artifacts/<target>/; turn each into a regression test.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
secs="${1:-${FUZZ_SECONDS:-20}}"
cd "$here"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

"$here/seed.sh"
# -a: debug assertions (integer overflow checks) on, so arithmetic on hostile lengths panics.
cargo +nightly fuzz build -a

failed=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    echo "=== $target (${secs}s)"
    if ! cargo +nightly fuzz run -a "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=16384 -print_final_stats=1 2>"corpus/$target.log"; then
        failed+=("$target")
        tail -n 40 "corpus/$target.log"
    else
        grep -E 'stat::number_of_executed_units|Done' "corpus/$target.log" | tail -n 2 || true
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "all fuzz targets ran ${secs}s without a crash"
