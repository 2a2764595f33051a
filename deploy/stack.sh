#!/usr/bin/env bash
# Starts and stops the zarrstac stack on one machine, for real: a Kafka-protocol broker
# (tansu), the catalog (PostgreSQL + PostGIS + pgstac behind stac-fastapi-pgstac, and the
# asset API `zarrstac serve` on the same database) and N `zarrstac worker` processes. The project's tests drive the stack with this script.
#
#   deploy/stack.sh up [--workers N]        everything (workers default 0)
#   deploy/stack.sh start broker|catalog|api|assets|workers [N]
#   deploy/stack.sh stop  broker [keep-store]|api|assets|workers|all
#   deploy/stack.sh down                     stop everything this script started
#   deploy/stack.sh status | env
#
# Settings (environment; defaults suit one machine):
#   ZARRSTAC_STACK_DIR   state: pid files, logs              (.cache/stack in the repository)
#   ZARRSTAC_VENV        Python venv with pypgstac, stac-fastapi-pgstac, uvicorn (.cache/venv)
#   ZARRSTAC_BIN         the zarrstac binary                  (zarrstac on PATH)
#   PGHOST PGPORT PGUSER PGPASSWORD   the PostgreSQL server   (127.0.0.1 5432 postgres -)
#   STACK_DB             pgstac database                      (zarrstac)
#   STACK_BROKER_PORT    broker port                          (9092)
#   STACK_BROKER_STORAGE s3 (durable: kept in $STACK_BROKER_DATA through s3s-fs) | memory (s3)
#   STACK_BROKER_DATA    the durable broker's data            ($ZARRSTAC_STACK_DIR/broker-data)
#   STACK_BROKER_STORE   the broker's S3 store: s3s-fs (on disk, in STACK_BROKER_DATA) |
#                        moto (moto_server of the venv, in memory: it outlives broker
#                        restarts, not its own; fetches ~10x faster at thousands of
#                        records per partition)                              (s3s-fs)
#   STACK_API_PORT       STAC API port                        (8082)
#   STACK_ASSETS_PORT    asset API port (zarrstac serve)      (8083)
#   STACK_WORKER_CONFIG  pipeline.toml for the workers        (deploy/worker.toml)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
STATE=${ZARRSTAC_STACK_DIR:-$REPO/.cache/stack}
VENV=${ZARRSTAC_VENV:-$REPO/.cache/venv}
BIN=${ZARRSTAC_BIN:-zarrstac}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
DB=${STACK_DB:-zarrstac}
BROKER_PORT=${STACK_BROKER_PORT:-9092}
BROKER_STORAGE=${STACK_BROKER_STORAGE:-s3}
BROKER_DATA=${STACK_BROKER_DATA:-$STATE/broker-data}
BROKER_STORE_PORT=${STACK_BROKER_STORE_PORT:-9093}
BROKER_STORE=${STACK_BROKER_STORE:-s3s-fs}
API_PORT=${STACK_API_PORT:-8082}
ASSETS_PORT=${STACK_ASSETS_PORT:-8083}
WORKER_CONFIG=${STACK_WORKER_CONFIG:-$HERE/worker.toml}
mkdir -p "$STATE"

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

pg_url() {  # pg_url DB
    local auth=$PGUSER
    [ -n "${PGPASSWORD:-}" ] && auth="$PGUSER:$PGPASSWORD"
    printf 'postgresql://%s@%s:%s/%s' "$auth" "$PGHOST" "$PGPORT" "$1"
}

running() {  # a killed process nobody reaped yet (a zombie) counts as stopped
    local pid
    [ -f "$STATE/$1.pid" ] || return 1
    pid=$(cat "$STATE/$1.pid")
    kill -0 "$pid" 2>/dev/null || return 1
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z*|"") return 1 ;; esac
}

launch() {  # launch NAME COMMAND...: in the background, its own process group, logged
    local name=$1
    shift
    running "$name" && { say "$name already running"; return; }
    setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

halt() {  # halt NAME [SIGNAL]: stop a launched process group and wait for it
    local name=$1 sig=${2:-TERM} pid i
    [ -f "$STATE/$name.pid" ] || return 0
    pid=$(cat "$STATE/$name.pid")
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 350); do  # workers get their shutdown grace
        running "$name" || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
}

port_free() {  # port_free PORT WHAT: refuse to start beside something already listening
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        die "port $1 (for $2) is already in use by another process; stop it or choose another port"
    fi
}

wait_port() {  # wait_port PORT WHAT
    local i
    for i in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 did not open port $1 (log: $STATE)"
}

psql_admin() { psql -v ON_ERROR_STOP=1 -qAt -d postgres "$@"; }

ensure_db() {  # ensure_DB NAME: create unless it exists
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
        psql_admin -c "CREATE DATABASE \"$1\""
    fi
}

start_catalog() {  # the pgstac database, migrated
    command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
    psql_admin -c 'SELECT 1' >/dev/null || die "PostgreSQL is not reachable at $PGHOST:$PGPORT"
    ensure_db "$DB"
    psql -v ON_ERROR_STOP=1 -qAt -d "$DB" \
        -c 'CREATE EXTENSION IF NOT EXISTS postgis' \
        -c 'CREATE EXTENSION IF NOT EXISTS btree_gist' \
        -c 'CREATE EXTENSION IF NOT EXISTS unaccent'
    "$VENV/bin/pypgstac" migrate --dsn "$(pg_url "$DB")" >/dev/null
    say "pgstac ready: $(pg_url "$DB" | sed 's/:[^:@]*@/:***@/')"
}

start_api() {
    running api && { say "api already running"; return; }
    port_free "$API_PORT" "the STAC API"
    local pass=${PGPASSWORD:-}
    launch api env POSTGRES_USER="$PGUSER" POSTGRES_PASS="$pass" \
        POSTGRES_HOST_READER="$PGHOST" POSTGRES_HOST_WRITER="$PGHOST" POSTGRES_PORT="$PGPORT" \
        POSTGRES_DBNAME="$DB" PGDATABASE="$DB" PGPASSWORD="$pass" \
        ENABLE_TRANSACTIONS_EXTENSIONS=TRUE \
        "$VENV/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory \
        --host 127.0.0.1 --port "$API_PORT"
    wait_port "$API_PORT" "stac-fastapi-pgstac"
    say "STAC API at http://127.0.0.1:$API_PORT"
}

# The settings by which items link to the asset API, for every zarrstac process of the
# stack (workers, the tests' own runs) and for the service itself.
serve_env() {
    printf '%s\n' "ZARRSTAC_SERVE__PUBLIC_URL=http://127.0.0.1:$ASSETS_PORT" \
        "ZARRSTAC_SERVE__STAC_API_URL=http://127.0.0.1:$API_PORT"
}

start_assets() {
    running assets && { say "asset API already running"; return; }
    command -v "$BIN" >/dev/null || die "no zarrstac binary for the asset API ($BIN; set ZARRSTAC_BIN)"
    port_free "$ASSETS_PORT" "the asset API"
    # shellcheck disable=SC2046
    launch assets env $(serve_env) "$BIN" serve --catalog "$(pg_url "$DB")" \
        --addr "127.0.0.1:$ASSETS_PORT"
    wait_port "$ASSETS_PORT" "zarrstac serve"
    say "asset API at http://127.0.0.1:$ASSETS_PORT"
}

start_broker() {
    running broker && { say "broker already running"; return; }
    command -v tansu >/dev/null || die "tansu not found: cargo install tansu --locked --features dynostore"
    local storage="memory://tansu/" store_env=()
    if [ "$BROKER_STORAGE" = s3 ]; then
        # Durable: tansu keeps topics and offsets in an S3 bucket, here a local s3s-fs
        # serving $BROKER_DATA, so a restarted broker finds everything again.
        if ! running broker-store; then
            port_free "$BROKER_STORE_PORT" "the broker's S3 store"
            if [ "$BROKER_STORE" = moto ]; then
                [ -x "$VENV/bin/moto_server" ] || die "moto_server not in $VENV (pip install 'moto[server]==5.*')"
                launch broker-store "$VENV/bin/moto_server" -H 127.0.0.1 -p "$BROKER_STORE_PORT"
                wait_port "$BROKER_STORE_PORT" "the broker's S3 store"
                AWS_ACCESS_KEY_ID=zarrstac-broker AWS_SECRET_ACCESS_KEY=zarrstac-broker "$VENV/bin/python" -c \
                    "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:$BROKER_STORE_PORT', region_name='us-east-1').create_bucket(Bucket='tansu')"
            else
                command -v s3s-fs >/dev/null || die "s3s-fs not found: cargo install s3s-fs --locked --version '~0.14' --features binary"
                mkdir -p "$BROKER_DATA/tansu"
                launch broker-store s3s-fs --host 127.0.0.1 --port "$BROKER_STORE_PORT" \
                    --access-key zarrstac-broker --secret-key zarrstac-broker "$BROKER_DATA"
                wait_port "$BROKER_STORE_PORT" "the broker's S3 store"
            fi
        fi
        storage="s3://tansu/"
        store_env=(AWS_ACCESS_KEY_ID=zarrstac-broker AWS_SECRET_ACCESS_KEY=zarrstac-broker
            AWS_REGION=us-east-1 AWS_ENDPOINT="http://127.0.0.1:$BROKER_STORE_PORT" AWS_ALLOW_HTTP=true)
    fi
    port_free "$BROKER_PORT" "the broker"
    launch broker env "${store_env[@]}" tansu broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine "$storage"
    wait_port "$BROKER_PORT" "tansu"
    local where=$BROKER_STORAGE
    [ "$BROKER_STORAGE" = s3 ] && where="s3 on $BROKER_STORE"
    say "broker at 127.0.0.1:$BROKER_PORT ($where storage)"
}

stop_broker() {  # the broker; its store too unless asked to keep it for a restart
    halt broker
    [ "${1:-}" = keep-store ] || halt broker-store
}

start_workers() {
    local n=${1:-1} k
    for k in $(seq 1 "$n"); do
        # A stable instance id per slot: a restarted worker takes its partitions back at once.
        # shellcheck disable=SC2046
        launch "worker-$k" env $(serve_env) ZARRSTAC_WORKER__BROKERS="127.0.0.1:$BROKER_PORT" \
            ZARRSTAC_WORKER__INSTANCE_ID="worker-$k" \
            ZARRSTAC_WORKER__METRICS_ADDR="127.0.0.1:$((9100 + k))" \
            "$BIN" worker --config "$WORKER_CONFIG"
    done
    say "$n worker(s) started (metrics on 127.0.0.1:9101..)"
}

stop_workers() {
    local f
    for f in "$STATE"/worker-*.pid; do
        [ -e "$f" ] || continue
        halt "$(basename "$f" .pid)"
    done
}

cmd=${1:-status}
shift || true
case "$cmd" in
    up)
        workers=0
        [ "${1:-}" = --workers ] && workers=${2:-1}
        start_catalog
        start_api
        start_assets
        start_broker
        if [ "$workers" -gt 0 ]; then start_workers "$workers"; fi
        ;;
    start)
        case "${1:-}" in
            broker) start_broker ;;
            catalog) start_catalog ;;
            api) start_api ;;
            assets) start_assets ;;
            workers) start_workers "${2:-1}" ;;
            *) die "start what? broker, catalog, api, assets or workers N" ;;
        esac
        ;;
    stop)
        case "${1:-}" in
            broker) stop_broker "${2:-}" ;;
            api) halt api ;;
            assets) halt assets ;;
            workers) stop_workers ;;
            catalog) halt assets; halt api ;;
            all) stop_workers; halt assets; halt api; stop_broker ;;
            *) die "stop what? broker, api, assets, workers or all" ;;
        esac
        ;;
    down) stop_workers; halt assets; halt api; stop_broker ;;
    status)
        for f in "$STATE"/*.pid; do
            [ -e "$f" ] || continue
            n=$(basename "$f" .pid)
            if running "$n"; then echo "$n running (pid $(cat "$f"))"; else echo "$n stopped"; fi
        done
        ;;
    env)
        echo "ZARRSTAC_TEST_BROKERS=127.0.0.1:$BROKER_PORT"
        echo "ZARRSTAC_TEST_API=http://127.0.0.1:$API_PORT"
        echo "ZARRSTAC_TEST_PGSTAC=$(pg_url "$DB")"
        echo "ZARRSTAC_TEST_ASSETS=http://127.0.0.1:$ASSETS_PORT"
        serve_env
        ;;
    *) die "unknown command $cmd (up, start, stop, down, status, env)" ;;
esac
