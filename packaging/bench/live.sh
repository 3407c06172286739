#!/usr/bin/env bash
# Live trading benchmarks: tick-to-order latency through a live strategy,
# and /ws fan-out to many subscribers.
#
#   packaging/bench/live.sh [SAMPLES] [CLIENTS] [RATE] [SECONDS]   (default 500 1000 100 10)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cargo build --release -p quantbox >&2
cargo build --release -p quantbox --example live_bench >&2
COMPONENT="$(mktemp --suffix=.wasm)"
"$CARGO_TARGET_DIR/release/quantbox" plugin build plugins/sma-crossover -o "$COMPONENT" >&2

DATA="$(mktemp -d)"
PORT=18702
export QUANTBOX_DATA_DIR="$DATA" QUANTBOX_ADMIN_PASSWORD="bench-admin-password" \
    SECRET_KEY="bench-secret-0123456789abcdef0123456789" QUANTBOX_RATE_LIMIT__ENABLED=false LOG_LEVEL=warn
ulimit -n 65536 2>/dev/null || true
"$CARGO_TARGET_DIR/release/quantbox" serve --bind 127.0.0.1:$PORT >/dev/null 2>"$DATA/log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA" "$COMPONENT"' EXIT
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do sleep 0.05; done
TOKEN=$(bench_token "http://127.0.0.1:$PORT")
"$CARGO_TARGET_DIR/release/examples/live_bench" "http://127.0.0.1:$PORT" "$TOKEN" "$COMPONENT" "$@"
