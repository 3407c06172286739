#!/usr/bin/env bash
# Embedded vs cluster, side by side in one run on this machine: the same
# release binary started twice, once on its embedded stores and once on
# PostgreSQL + Redis (a fresh database and key prefix), each measured with
# the same load: authenticated GET requests/s and p99 (wrk), job
# enqueue-to-start p50/p99 and order submit p50/p99 (the store_bench
# example, sequential requests).
#
#   packaging/bench/cluster.sh [DURATION_SECONDS] [SAMPLES]   (default 10 300)
# Needs wrk, psql, PostgreSQL at QB_TEST_PG (default 127.0.0.1:5432) and
# Redis at QB_TEST_REDIS (default 127.0.0.1:6379).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DUR="${1:-10}"
SAMPLES="${2:-300}"
cargo build --release -p quantbox >&2
cargo build --release -p quantbox --example store_bench >&2
BIN="$CARGO_TARGET_DIR/release/quantbox"
BENCH="$CARGO_TARGET_DIR/release/examples/store_bench"
PREFIX="qb-bench-$$"
PIDS=()
DIRS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_cluster_drop
    for d in "${DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
bench_cluster_db "qb_bench_$$"

# start NAME PORT [ENV...]: a server on PORT with its own data directory.
start() {
    local name=$1 port=$2
    shift 2
    local dir
    dir="$(mktemp -d)"
    DIRS+=("$dir")
    env "${BENCH_ENV[@]}" QUANTBOX_DATA_DIR="$dir" "$@" "$BIN" serve --bind "127.0.0.1:$port" >/dev/null 2>"$dir/log" &
    PIDS+=($!)
    until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.05; done
    echo "$name ready on port $port" >&2
}

measure() {
    local name=$1 port=$2 base token
    base="http://127.0.0.1:$port"
    token=$(bench_token "$base")
    for _ in $(seq 1 20); do
        curl -s -X POST "$base/api/v1/jobs" -H "authorization: Bearer $token" \
            -H 'content-type: application/json' -d '{"kind":"diag.sleep","params":{"seconds":0}}' >/dev/null
    done
    sleep 1
    local w rps p50 p99
    w=$(wrk -t1 -c32 -d"${DUR}s" --latency -H "Authorization: Bearer $token" "$base/api/v1/jobs")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$w")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$w")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$w")
    printf '%-9s GET /api/v1/jobs (32 conns): %s req/s, p50 %s, p99 %s\n' "$name" "$rps" "$p50" "$p99"
    "$BENCH" "$base" "$token" "$SAMPLES" | while read -r what a b n; do
        printf '%-9s %s: p50 %s ms, p99 %s ms (%s samples)\n' "$name" "$what" "$a" "$b" "$n"
    done
}

start embedded 18711
start cluster 18712 DATABASE_URL="$DB_URL" REDIS_URL="$REDIS" \
    QUANTBOX_CLUSTER__REDIS_PREFIX="$PREFIX" QUANTBOX_CLUSTER__NODE_ID="bench-$$"
echo "# $(date -u +%F) $(nproc) cores, $(uname -m); wrk and the bench client on the same machine"
measure embedded 18711
measure cluster 18712
