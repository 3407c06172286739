#!/usr/bin/env bash
# Trader failover time: two trader nodes (roles api,trader) on this
# machine's PostgreSQL and Redis; KILLS times over, the node holding the
# desk lease is killed with SIGKILL and the clock runs until the other one
# accepts an order (POST /api/v1/trading/orders answered 201, polled every
# 10 ms); then the killed node is started again as the standby. Prints
# every sample and the median, p90 and maximum in milliseconds.
#
#   packaging/bench/failover.sh [KILLS] [LEASE_MS]   (default 20 3000)
# QB_BENCH_PROFILE=dist uses the shipped profile (release by default).
# Needs psql, curl, PostgreSQL at QB_TEST_PG (default 127.0.0.1:5432) and
# Redis at QB_TEST_REDIS (default 127.0.0.1:6379).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KILLS="${1:-20}"
LEASE_MS="${2:-3000}"
PROFILE="${QB_BENCH_PROFILE:-release}"
cargo build --profile "$PROFILE" -p quantbox >&2
BIN="$CARGO_TARGET_DIR/$PROFILE/quantbox"
PREFIX="qb-failover-$$"
declare -A PID DIR
cleanup() {
    for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_cluster_drop
    for d in "${DIR[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
bench_cluster_db "qb_failover_$$"
PORT=([1]=18721 [2]=18722)

# start N: trader N on its port, its own data directory; waits until ready.
start() {
    local n=$1
    [ -n "${DIR[$n]:-}" ] || DIR[$n]="$(mktemp -d)"
    env "${BENCH_ENV[@]}" QUANTBOX_DATA_DIR="${DIR[$n]}" \
        DATABASE_URL="$DB_URL" REDIS_URL="$REDIS" QUANTBOX_CLUSTER__REDIS_PREFIX="$PREFIX" \
        QUANTBOX_CLUSTER__NODE_ID="trader-$n" QUANTBOX_ROLE=api,trader \
        QUANTBOX_CLUSTER__DESK_LEASE_MS="$LEASE_MS" \
        "$BIN" serve --bind "127.0.0.1:${PORT[$n]}" >/dev/null 2>>"${DIR[$n]}/log" &
    PID[$n]=$!
    until curl -sf "http://127.0.0.1:${PORT[$n]}/ready" >/dev/null; do sleep 0.05; done
}

holds() { curl -sf "http://127.0.0.1:${PORT[$1]}/ready" | grep -q '"desk":"held"'; }

start 1
until holds 1; do sleep 0.05; done
start 2
BASE="http://127.0.0.1:${PORT[1]}"
TOKEN=$(bench_token "$BASE")
curl -sf -X POST "$BASE/api/v1/market/ticks" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d '[{"symbol":"IF2409","ts":1704157200000000000,"price":3500,"size":1,"bid":3499.8,"ask":3500.2}]' >/dev/null

# order N ID: the HTTP status of a resting limit buy on trader N.
order() {
    curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${PORT[$1]}/api/v1/trading/orders" \
        -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"client_id\":\"$2\",\"symbol\":\"IF2409\",\"side\":\"buy\",\"qty\":\"1\",\"type\":\"limit\",\"price\":\"3000\"}" || true
}

echo "# $(date -u +%F) $(nproc) cores, $(uname -m); lease ${LEASE_MS} ms; both traders, PostgreSQL and Redis on this machine"
SAMPLES=()
for i in $(seq 1 "$KILLS"); do
    if holds 1; then active=1 standby=2; else active=2 standby=1; fi
    [ "$(order "$active" "warm-$i")" = 201 ] || { echo "the holder refused an order" >&2; exit 1; }
    t0=$(date +%s%N)
    kill -9 "${PID[$active]}"
    wait "${PID[$active]}" 2>/dev/null || true
    n=0
    until [ "$(order "$standby" "after-$i")" = 201 ]; do
        n=$((n + 1))
        [ "$n" -lt 3000 ] || { echo "no takeover within 30 s" >&2; exit 1; }
        sleep 0.01
    done
    ms=$((($(date +%s%N) - t0) / 1000000))
    SAMPLES+=("$ms")
    echo "kill $i: trader-$active -> trader-$standby accepted an order after $ms ms"
    start "$active"
done
printf '%s\n' "${SAMPLES[@]}" | sort -n | awk '{a[NR]=$1} END {
    printf "failover (kill -9 to first accepted order), %d kills: median %d ms, p90 %d ms, max %d ms\n",
        NR, a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR] }'
