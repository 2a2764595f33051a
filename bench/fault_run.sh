#!/usr/bin/env bash
# The 10,000-message fault run (bench/fault_run.py) against the real stack: brings up the
# broker (durable), pgstac and stac-fastapi-pgstac with deploy/stack.sh in a state folder
# of its own, runs, and stops what it started. Arguments go to bench/fault_run.py.
#
#   bench/fault_run.sh [--messages 10000] [--keep DIR]
#
# Needs what ./scripts/test.sh installs: the venv (.cache/venv; moto[server] is added to it),
# tansu and s3s-fs on PATH, and the release binary (ZARRSTAC_BIN, default
# ~/.cache/zarrstac/target/release/zarrstac).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$HOME/.cargo/bin:$PATH
export ZARRSTAC_BIN=${ZARRSTAC_BIN:-$HOME/.cache/zarrstac/target/release/zarrstac}
export ZARRSTAC_VENV=${ZARRSTAC_VENV:-$REPO/.cache/venv}
export ZARRSTAC_STACK_DIR=$REPO/.cache/stack-fault STACK_DB=zarrstac_fault
# tansu's fetches from its S3 store slow down with the records of a partition; on s3s-fs
# a fetch from the start of a partition of 2,000 one-record batches took 51 s (moto: 5 s),
# long enough for the consumers to stall after every rebalance. The run uses moto.
export STACK_BROKER_STORE=${STACK_BROKER_STORE:-moto}
# Ports of its own: the test suite's stack can run beside it.
export STACK_BROKER_PORT=${STACK_BROKER_PORT:-19092} STACK_API_PORT=${STACK_API_PORT:-18082}
export STACK_BROKER_STORE_PORT=${STACK_BROKER_STORE_PORT:-19093} FAULT_RUN_METRICS_BASE=${FAULT_RUN_METRICS_BASE:-19140}
[ -x "$ZARRSTAC_BIN" ] || { echo "no binary at $ZARRSTAC_BIN (cargo build --release)" >&2; exit 1; }
[ -x "$ZARRSTAC_VENV/bin/moto_server" ] || "$ZARRSTAC_VENV/bin/pip" install -q "moto[server]==5.*"  # in tests/requirements.txt too
rm -rf "$ZARRSTAC_STACK_DIR/broker-data"
trap '"$REPO/deploy/stack.sh" down || true' EXIT
"$REPO/deploy/stack.sh" up
eval "$("$REPO/deploy/stack.sh" env | sed 's/^/export /')"
"$ZARRSTAC_VENV/bin/python" "$REPO/bench/fault_run.py" "$@"
