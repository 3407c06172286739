#!/usr/bin/env bash
# Market data benchmarks: store imports (CSV, Parquet), 1-minute bars from
# N ticks, direct appends, and acknowledged ingest through the API.
#
#   packaging/bench/market.sh [ROWS]   (default 10,000,000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quantbox/target}"
export DUCKDB_LIB_DIR="$(packaging/scripts/fetch-libduckdb.sh)"
ROWS="${1:-10000000}"
cargo build --release -p qb-market --example market_bench -p quantbox --example ingest_bench >&2
cargo build --release -p quantbox >&2
"$CARGO_TARGET_DIR/release/examples/market_bench" "$ROWS"

DATA="$(mktemp -d)"
PORT=18701
export QUANTBOX_DATA_DIR="$DATA" QUANTBOX_ADMIN_PASSWORD="bench-admin-password" \
    SECRET_KEY="bench-secret-0123456789abcdef0123456789" QUANTBOX_RATE_LIMIT__ENABLED=false LOG_LEVEL=warn \
    QUANTBOX_LIMITS__UPLOAD_BYTES=200000000
"$CARGO_TARGET_DIR/release/quantbox" serve --bind 127.0.0.1:$PORT >/dev/null 2>"$DATA/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do sleep 0.05; done
TOKEN=$(curl -s -X POST "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"bench-admin-password"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
"$CARGO_TARGET_DIR/release/examples/ingest_bench" "http://127.0.0.1:$PORT" "$TOKEN" 100000 10 csv 2
"$CARGO_TARGET_DIR/release/examples/ingest_bench" "http://127.0.0.1:$PORT" "$TOKEN" 100000 10 json 2
