#!/usr/bin/env bash
# Fuzzes zarrstac's parsers of untrusted input: ./scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs the nightly toolchain (`cargo +nightly`) and cargo-fuzz (installed here if missing).
# Each target of fuzz/ runs in turn for SECONDS (default 60) from its committed seeds in
# fuzz/corpus/TARGET; what it finds goes to .cache/fuzz/ (the grown corpus, and crash,
# timeout (> 10 s) and out-of-memory (> 2 GiB) inputs under artifacts/TARGET/). One line
# per target at the end: executions, executions per second, findings. Exit 1 when a target
# found something.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
SECONDS_PER_TARGET=${1:-60}
shift || true
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zarrstac/fuzz-target}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cargo +nightly --version >/dev/null 2>&1 || { echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd fuzz
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O

OUT=$REPO/.cache/fuzz
SUMMARY=()
FOUND=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
    log="$OUT/$t.log"
    echo "==> $t (${SECONDS_PER_TARGET}s)"
    status=0
    cargo +nightly fuzz run -O "$t" "$OUT/corpus/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" >"$log" 2>&1 || status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    findings=$(find "$OUT/artifacts/$t" -type f | wc -l)
    [ "$status" -eq 0 ] && [ "$findings" -eq 0 ] || FOUND=1
    SUMMARY+=("$(printf '%-16s %12s runs %8s/s  %s findings%s' "$t" "$runs" "$rate" "$findings" \
        "$([ "$status" -ne 0 ] && echo " (exit $status, see $log)")")")
done
printf '\n==> fuzz summary (%ss per target)\n' "$SECONDS_PER_TARGET"
printf '  %s\n' "${SUMMARY[@]}"
exit "$FOUND"
