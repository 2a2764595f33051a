#!/usr/bin/env bash
# The 10,000-message fault run (bench/fault_run.py) against the real stack: brings up the
# broker (durable), pgstac and stac-fastapi-pgstac with deploy/stack.sh in a state folder
# of its own, runs, and stops what it started. Arguments go to bench/fault_run.py.
#
#   bench/fault_run.sh [--messages 10000] [--keep DIR]
#
# Needs what ./scripts/test.sh installs: the venv (.cache/venv), tansu and s3s-fs on PATH,
# and the release binary (ZARRSTAC_BIN, default ~/.cache/zarrstac/target/release/zarrstac).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$HOME/.cargo/bin:$PATH
export ZARRSTAC_BIN=${ZARRSTAC_BIN:-$HOME/.cache/zarrstac/target/release/zarrstac}
export ZARRSTAC_VENV=${ZARRSTAC_VENV:-$REPO/.cache/venv}
export ZARRSTAC_STACK_DIR=$REPO/.cache/stack-fault STACK_DB=zarrstac_fault
[ -x "$ZARRSTAC_BIN" ] || { echo "no binary at $ZARRSTAC_BIN (cargo build --release)" >&2; exit 1; }
rm -rf "$ZARRSTAC_STACK_DIR/broker-data"
trap '"$REPO/deploy/stack.sh" down || true' EXIT
"$REPO/deploy/stack.sh" up
eval "$("$REPO/deploy/stack.sh" env | sed 's/^/export /')"
"$ZARRSTAC_VENV/bin/python" "$REPO/bench/fault_run.py" "$@"
