#!/usr/bin/env bash
# Sweep throughput with 1, 2 and 3 worker processes: one API node and N
# worker nodes (each with the seed's 2 backtest threads) on this machine's
# PostgreSQL and Redis; the same sweep (RUNS backtests of the SMA example
# over BARS one-minute bars) is submitted through the API node and timed
# until its last run finished. Workers of one machine share its cores:
# the figures show what a process adds on this machine, not on more.
#
#   packaging/bench/sweep.sh [BARS] [RUNS]   (default 50000 24; RUNS a multiple of 4)
# QB_BENCH_PROFILE=dist uses the shipped profile (release by default).
# Needs psql, curl, PostgreSQL at QB_TEST_PG and Redis at QB_TEST_REDIS.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BARS="${1:-50000}"
RUNS="${2:-24}"
PROFILE="${QB_BENCH_PROFILE:-release}"
cargo build --profile "$PROFILE" -p quantbox >&2
BIN="$CARGO_TARGET_DIR/$PROFILE/quantbox"
WORK="$(mktemp -d)"
"$BIN" plugin build plugins/sma-crossover -o "$WORK/sma.wasm" >&2
PREFIX="qb-sweep-$$"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bench_cluster_drop
    rm -rf "$WORK"
}
trap cleanup EXIT
bench_cluster_db "qb_sweep_$$"

# start NAME ROLE PORT: a node with its own data directory; waits until ready.
start() {
    local dir="$WORK/$1"
    mkdir -p "$dir"
    env "${BENCH_ENV[@]}" QUANTBOX_DATA_DIR="$dir" \
        DATABASE_URL="$DB_URL" REDIS_URL="$REDIS" QUANTBOX_CLUSTER__REDIS_PREFIX="$PREFIX" \
        QUANTBOX_CLUSTER__NODE_ID="$1" QUANTBOX_ROLE="$2" \
        "$BIN" serve --bind "127.0.0.1:$3" >/dev/null 2>>"$dir/log" &
    PIDS+=($!)
    until curl -sf "http://127.0.0.1:$3/ready" >/dev/null; do sleep 0.05; done
}

start api api 18731
BASE="http://127.0.0.1:18731"
TOKEN=$(bench_token "$BASE")
auth=(-H "authorization: Bearer $TOKEN")

# field JSON NAME: a top-level string or number of a flat JSON answer.
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$1"; }

# Bars: a random walk with trend changes, prices on a 0.2 grid.
awk -v n="$BARS" 'BEGIN {
    srand(7); print "symbol,ts,open,high,low,close,volume"; c = 19500
    for (i = 0; i < n; i++) {
        o = c; c = o + int(rand() * 9) - 4 + (int(i / 300) % 2 ? 1 : -1)
        h = (o > c ? o : c) + 1; l = (o < c ? o : c) - 1
        printf "rb,%d,%.1f,%.1f,%.1f,%.1f,10\n", 1704157200 + i * 60, o / 5, h / 5, l / 5, c / 5
    } }' >"$WORK/bars.csv"
start worker-1 worker 18741
job=$(curl -s "${auth[@]}" -F "file=@$WORK/bars.csv" -F format=bars_csv -F interval=1m -F ts_unit=s \
    "$BASE/api/v1/market/imports")
id=$(field "$job" id)
until curl -s "${auth[@]}" "$BASE/api/v1/jobs/$id" | grep -q '"state":"succeeded"'; do sleep 0.2; done
curl -sf "${auth[@]}" -H 'content-type: application/wasm' --data-binary @"$WORK/sma.wasm" \
    "$BASE/api/v1/plugins" >/dev/null

# The grid: RUNS combinations of fast x slow.
per=$((RUNS / 4))
fast="[5,8,11,14]"
slow="[$(seq -s, 30 10 $((20 + 10 * per)))]"
sweep() {
    local s id t0
    s=$(curl -s "${auth[@]}" -H 'content-type: application/json' "$BASE/api/v1/sweeps" \
        -d "{\"base\":{\"plugin\":\"sma-crossover@0.1.0\",\"symbols\":[\"rb\"],\"interval\":\"1m\"},\"grid\":{\"fast\":$fast,\"slow\":$slow}}")
    id=$(field "$s" id)
    t0=$(date +%s%N)
    until curl -s "${auth[@]}" "$BASE/api/v1/sweeps/$id" | grep -q "\"done\":$RUNS"; do sleep 0.1; done
    echo $((($(date +%s%N) - t0) / 1000000))
}

echo "# $(date -u +%F) $(nproc) cores, $(uname -m); $PROFILE build; $BARS bars, $RUNS runs per sweep"
for n in 1 2 3; do
    [ "$n" -eq 1 ] || start "worker-$n" worker $((18740 + n))
    sweep >/dev/null # warm: plugin compiled and cached on every worker
    ms=$(sweep)
    awk -v n="$n" -v ms="$ms" -v r="$RUNS" \
        'BEGIN { printf "%d worker process(es): %d runs in %.2f s, %.2f runs/s\n", n, r, ms / 1000, r * 1000 / ms }'
done
