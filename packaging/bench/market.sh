#!/usr/bin/env bash
# Market data benchmarks: the two tick stores side by side (DuckDB and
# PostgreSQL at QB_TEST_PG): imports (CSV, Parquet), 1-minute bars from N
# ticks, reading every tick back, direct appends; then acknowledged ingest
# through the API of an embedded server.
#
#   packaging/bench/market.sh [ROWS]   (default 10,000,000)
#   QB_BENCH_PROFILE=dist packaging/bench/market.sh   the shipped profile
#   (reuses the package build's artifacts; default: release)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROWS="${1:-10000000}"
PROFILE="${QB_BENCH_PROFILE:-release}"
cargo build --profile "$PROFILE" -p qb-pg --example tick_store_bench -p quantbox --example ingest_bench >&2
cargo build --profile "$PROFILE" -p quantbox >&2
OUT="$CARGO_TARGET_DIR/$PROFILE"
"$OUT/examples/tick_store_bench" "$ROWS"

# Acknowledged ingest through the API: an embedded server, then a cluster
# server (PostgreSQL at QB_TEST_PG on a fresh database, Redis at
# QB_TEST_REDIS), the same requests.
DB="qb_bench_ingest_$$"
DATA="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    psql -q -d "$PG" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$DATA"
}
trap cleanup EXIT
psql -q -d "$PG" -c "CREATE DATABASE $DB" >/dev/null
export QUANTBOX_ADMIN_PASSWORD="bench-admin-password" \
    SECRET_KEY="bench-secret-0123456789abcdef0123456789" QUANTBOX_RATE_LIMIT__ENABLED=false LOG_LEVEL=warn \
    QUANTBOX_LIMITS__UPLOAD_BYTES=200000000

ingest() {
    local name=$1 port=$2
    shift 2
    mkdir -p "$DATA/$name"
    env QUANTBOX_DATA_DIR="$DATA/$name" "$@" "$OUT/quantbox" serve \
        --bind "127.0.0.1:$port" >/dev/null 2>"$DATA/$name.log" &
    PID=$!
    until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.05; done
    local token
    token=$(bench_token "http://127.0.0.1:$port")
    echo "--- API ingest, $name"
    "$OUT/examples/ingest_bench" "http://127.0.0.1:$port" "$token" 100000 10 csv 2
    "$OUT/examples/ingest_bench" "http://127.0.0.1:$port" "$token" 100000 10 json 2
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
}
ingest embedded 18701
ingest cluster 18703 DATABASE_URL="${PG%/*}/$DB" REDIS_URL="${QB_TEST_REDIS:-redis://127.0.0.1:6379}" \
    QUANTBOX_CLUSTER__REDIS_PREFIX="qb-bench-ingest-$$" QUANTBOX_CLUSTER__NODE_ID="bench-ingest-$$"
