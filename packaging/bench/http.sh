#!/usr/bin/env bash
# HTTP benchmark: requests/s and latency of /health and an authenticated
# GET /api/v1/jobs on loopback (wrk in a second process), idle resident
# memory, and start-to-ready time. Needs `wrk` (Debian package wrk).
#
#   packaging/bench/http.sh [DURATION_SECONDS]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DUR="${1:-10}"
cargo build --release -p quantbox >&2
BIN="$CARGO_TARGET_DIR/release/quantbox"
DATA="$(mktemp -d)"
PORT=18700
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

export QUANTBOX_DATA_DIR="$DATA" QUANTBOX_ADMIN_PASSWORD="bench-admin-password" \
    SECRET_KEY="bench-secret-0123456789abcdef0123456789" QUANTBOX_RATE_LIMIT__ENABLED=false LOG_LEVEL=warn

# Start-to-ready: first start (creates stores, hashes the admin password) and a warm restart.
start() {
    local t0 t1
    t0=$(date +%s%N)
    "$BIN" serve --bind 127.0.0.1:$PORT >/dev/null 2>>"$DATA/log" &
    PID=$!
    until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do sleep 0.005; done
    t1=$(date +%s%N)
    echo "start-to-ready, $1: $(( (t1 - t0) / 1000000 )) ms"
}
start "first start"
kill $PID; wait $PID || true
start "restart"
sleep 2
echo "idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"

TOKEN=$(bench_token "http://127.0.0.1:$PORT")
for _ in $(seq 1 20); do
    curl -s -X POST "http://127.0.0.1:$PORT/api/v1/jobs" -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' -d '{"kind":"diag.sleep","params":{"seconds":0}}' >/dev/null
done

echo
echo "--- GET /health"
wrk -t1 -c32 -d"${DUR}s" --latency "http://127.0.0.1:$PORT/health" | grep -E 'Requests/sec|50%|99%|Non-2xx'
echo "--- GET /api/v1/jobs (bearer token, 20 jobs, page of 20)"
wrk -t1 -c32 -d"${DUR}s" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/jobs" \
    | grep -E 'Requests/sec|50%|99%|Non-2xx'
echo "RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$PID/status)"
