#!/usr/bin/env bash
# The project's test suite: ./scripts/test.sh from anywhere in the repository.
#
# On a fresh Debian 12 machine (as root, or with sudo) with a Rust toolchain it installs what
# it needs once — Debian packages, a Python venv in .cache/venv, the s3s-fs S3 server — then
# runs: cargo fmt --check, clippy (warnings are errors), the release build, cargo test, and the
# Python tests against the release binary: round trips, S3, bad input, STAC, the catalog sinks
# and the Kafka worker, with the real stack started by deploy/stack.sh (tansu broker,
# PostgreSQL + PostGIS + pgstac, stac-fastapi-pgstac) and stopped at the end. Repeat runs skip
# the installs. Exits non-zero when any step fails; stops whatever it started.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/zarrstac/target}
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR=$REPO/$CARGO_TARGET_DIR ;; esac
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"  # where cargo install puts s3s-fs
VENV=$REPO/.cache/venv
APT_PACKAGES=(libhdf5-dev pkg-config gcc g++ make zlib1g-dev libc6-dev python3 python3-venv ca-certificates
    postgresql postgresql-client postgresql-15-postgis-3)
S3S_VERSION='~0.14'
TANSU_VERSION='~0.6'
# The test stack (deploy/stack.sh): its own database and state, ports clear of the defaults.
export STACK_DB=zarrstac_test STACK_API_PORT=${STACK_API_PORT:-8082} STACK_BROKER_PORT=${STACK_BROKER_PORT:-9092}
export ZARRSTAC_STACK_DIR=$REPO/.cache/stack-test ZARRSTAC_VENV=$VENV

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup of what we start
# Every step runs in its own process group, so that stopping it also stops what it started
# (servers launched by the tests included).
RUNNING=()
STACK_UP=0
cleanup() {
    [ "$STACK_UP" -eq 1 ] && { "$REPO/deploy/stack.sh" down || true; STACK_UP=0; }
    [ -n "${SERVERS_PID:-}" ] && { kill -TERM -- "-$SERVERS_PID" 2>/dev/null || true; wait "$SERVERS_PID" 2>/dev/null || true; }
    local pid
    for pid in "${RUNNING[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${RUNNING[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    RUNNING=()
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

run_group() {  # run "$@" in a new process group (one at a time) and wait for it; its status
    setsid --wait "$@" </dev/null &
    local pid=$! status=0
    RUNNING=("$pid")
    wait "$pid" || status=$?
    RUNNING=()
    return "$status"
}

# ---------------------------------------------------------------- installs
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

install_debian_packages() {
    command -v dpkg-query >/dev/null || { echo "no dpkg: not Debian, skipping package installs"; return; }
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_rust() {
    command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (https://rustup.rs)"
    local c
    for c in rustfmt clippy; do
        if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null || die "cargo ${c/rustfmt/fmt} is missing and there is no rustup to add it"
            say "rustup component add $c"
            rustup component add "$c"
        fi
    done
}

setup_venv() {
    local python=python3
    [ -x /usr/bin/python3 ] && python=/usr/bin/python3
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(sha256sum tests/requirements.txt | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        return
    fi
    say "Python venv in .cache/venv (tests/requirements.txt)"
    [ -x "$VENV/bin/python" ] || { rm -rf "$VENV"; "$python" -m venv "$VENV"; }
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$want" >"$stamp"
}

# The two servers the tests run, from crates.io: s3s-fs (S3 over a folder) and tansu (the
# Kafka-protocol broker; dynostore is its object-store backend). A throwaway target dir: their
# builds share nothing with the workspace. opt-level 1: test servers, built in half the time.
install_servers() {
    export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
    if ! command -v s3s-fs >/dev/null; then
        env -u CARGO_TARGET_DIR cargo install s3s-fs --locked --version "$S3S_VERSION" --features binary || return
    fi
    if ! command -v tansu >/dev/null; then
        env -u CARGO_TARGET_DIR cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore || return
    fi
}

# A fresh machine spends about 25 minutes building the servers: they build in the background
# while the checks and the workspace build run, and the stack waits for them.
SERVERS_PID=
SERVERS_LOG=$REPO/.cache/server-installs.log
SERVERS_START=0
start_server_installs() {
    command -v s3s-fs >/dev/null && command -v tansu >/dev/null && return
    mkdir -p "$REPO/.cache"
    say "cargo install s3s-fs and tansu in the background (once per machine; log in .cache/server-installs.log)"
    SERVERS_START=$SECONDS
    S3S_VERSION=$S3S_VERSION TANSU_VERSION=$TANSU_VERSION \
        setsid bash -c "$(declare -f install_servers); install_servers" >"$SERVERS_LOG" 2>&1 </dev/null &
    SERVERS_PID=$!
}
wait_server_installs() {  # records the installs as a step; fails when they did
    [ -n "$SERVERS_PID" ] || return 0
    say "waiting for the s3s-fs and tansu installs"
    local status=0
    wait "$SERVERS_PID" || status=$?
    SERVERS_PID=
    STEPS+=("cargo install s3s-fs tansu")
    if [ "$status" -eq 0 ]; then
        RESULTS+=("ok      $((SECONDS - SERVERS_START))s")
        return 0
    fi
    RESULTS+=("FAILED  $((SECONDS - SERVERS_START))s (exit $status)")
    FAILED=1
    tail -n 40 "$SERVERS_LOG" >&2
    return "$status"
}

start_postgres() {  # Debian's PostgreSQL, when it is not already serving on 127.0.0.1:5432
    psql -h 127.0.0.1 -U postgres -d postgres -qAtc 'SELECT 1' >/dev/null 2>&1 && return
    say "starting PostgreSQL"
    local v
    v=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
    [ -n "$v" ] || die "PostgreSQL is not installed and not reachable on 127.0.0.1:5432"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start
    for _ in $(seq 1 50); do
        psql -h 127.0.0.1 -U postgres -d postgres -qAtc 'SELECT 1' >/dev/null 2>&1 && return
        sleep 0.2
    done
    die "PostgreSQL did not come up on 127.0.0.1:5432 (it must accept user postgres without a password)"
}

stack_up() {
    rm -rf "$ZARRSTAC_STACK_DIR/broker-data"  # a fresh broker for each run
    STACK_UP=1  # before `up`: whatever part of it started is stopped again, even if it fails
    "$REPO/deploy/stack.sh" up
    eval "$("$REPO/deploy/stack.sh" env | sed 's/^/export /')"
}

# ---------------------------------------------------------------- steps
STEPS=()
RESULTS=()
FAILED=0
step() {  # step NAME COMMAND...: run, time and record
    local name=$1
    shift
    say "$name"
    local start=$SECONDS status=0
    run_group "$@" || status=$?
    local took=$((SECONDS - start))
    STEPS+=("$name")
    if [ "$status" -eq 0 ]; then
        RESULTS+=("ok      ${took}s")
    else
        RESULTS+=("FAILED  ${took}s (exit $status)")
        FAILED=1
    fi
    return "$status"
}
skip() {
    STEPS+=("$1")
    RESULTS+=("skipped ($2)")
    FAILED=1
}
summary() {
    printf '\n==> summary\n'
    local i
    for i in "${!STEPS[@]}"; do
        printf '  %-40s %s\n' "${STEPS[$i]}" "${RESULTS[$i]}"
    done
    if [ "$FAILED" -eq 0 ]; then echo "all steps passed"; else echo "FAILED"; fi
}

install_debian_packages
check_rust
start_server_installs
setup_venv
start_postgres

# libhdf5 (the Rust tests' oracle) finds the blosc/zstd/lz4/bitshuffle filters hdf5plugin ships
HDF5_PLUGIN_PATH=$("$VENV/bin/python" -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)')
export HDF5_PLUGIN_PATH
export PATH="$VENV/bin:$PATH"

step "cargo fmt --check" cargo fmt --all --check || true
# --release: its build scripts and proc-macros are the release build's
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --release -- -D warnings || true
# The fuzz targets (fuzz/, its own workspace) are type-checked with the stable toolchain so that
# they keep compiling; scripts/fuzz.sh builds them with nightly and runs them.
step "fuzz targets check" cargo check --manifest-path fuzz/Cargo.toml --release --bins || true
if step "cargo build --release" cargo build --release -p zarrstac && wait_server_installs; then
    # The stack first: the catalog sink conformance suite runs against its STAC API and pgstac.
    say "starting the test stack (deploy/stack.sh up)"
    export ZARRSTAC_BIN="$CARGO_TARGET_DIR/release/zarrstac"
    stack_up
    step "cargo test --release" cargo test --workspace --release || true
    step "pytest tests/python" env ZARRSTAC_BIN="$CARGO_TARGET_DIR/release/zarrstac" \
        "$VENV/bin/python" -m pytest tests/python -q -o cache_dir=.cache/pytest || true
else
    skip "cargo test --release" "no build, or no servers"
    skip "pytest tests/python" "no build, or no servers"
fi

summary
exit "$FAILED"
