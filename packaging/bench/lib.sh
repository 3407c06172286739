# Sourced by the benchmark scripts (packaging/bench/*.sh): the repository
# root as working directory, the shared cargo target directory, the
# prebuilt libduckdb, and what the cluster benchmarks share.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quantbox/target}"
DUCKDB_LIB_DIR="$(packaging/scripts/fetch-libduckdb.sh)"
export DUCKDB_LIB_DIR
PG="${QB_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS="${QB_TEST_REDIS:-redis://127.0.0.1:6379}"
# What every benchmark server runs with (rate limits off: the load is ours).
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_ENV=(QUANTBOX_ADMIN_PASSWORD="bench-admin-password"
    SECRET_KEY="bench-secret-0123456789abcdef0123456789"
    QUANTBOX_RATE_LIMIT__ENABLED=false LOG_LEVEL=warn)

# bench_token BASE_URL: an access token of the bootstrap admin.
bench_token() {
    curl -s -X POST "$1/api/v1/auth/login" -H 'content-type: application/json' \
        -d '{"username":"admin","password":"bench-admin-password"}' |
        sed 's/.*"access_token":"\([^"]*\)".*/\1/'
}

# bench_cluster_db NAME: a fresh PostgreSQL database NAME on $PG; sets
# DB and DB_URL. bench_cluster_drop removes it and the Redis keys under
# $PREFIX (when set).
bench_cluster_db() {
    DB="$1"
    psql -q -d "$PG" -c "CREATE DATABASE $DB" >/dev/null
    # shellcheck disable=SC2034 # used by the scripts that source this file
    DB_URL="${PG%/*}/$DB"
}

bench_cluster_drop() {
    psql -q -d "$PG" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    if [ -n "${PREFIX:-}" ]; then
        redis-cli -u "$REDIS" --scan --pattern "$PREFIX*" |
            xargs -r redis-cli -u "$REDIS" del >/dev/null 2>&1 || true
    fi
}
