#!/usr/bin/env bash
# The two README commands:
#   packaging/scripts/dev.sh serve [ARGS...]   build and run `quantbox serve` with embedded defaults
#   packaging/scripts/dev.sh test              the whole test suite (what CI runs)
# Both run the same set-up first: toolchain targets, Debian tools the tests
# use, and anything the build needs. Builds go to CARGO_TARGET_DIR
# (default ~/.cache/quantbox/target) so repeated runs reuse them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quantbox/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '\n==> %s\n' "$*" >&2; }

# Debian packages the test suite drives, and the command each provides.
# chromium: the dashboard's browser test (web/e2e, playwright-core);
# docker-compose, shellcheck, yamllint: the deployment checks
# (packaging/scripts/check-deploy.sh).
DEB_PACKAGES=(prometheus prometheus-alertmanager nginx-light lintian chromium docker-compose shellcheck yamllint)
DEB_COMMANDS=(promtool amtool nginx lintian chromium docker-compose shellcheck yamllint)
# PyPI tools, pinned: the deployment checks' manifest validator, and
# schemathesis, which checks the running server against its OpenAPI
# document (appliance/quantbox/tests/it/openapi_contract.rs).
PIP_TOOLS=(kubernetes-validate==1.32.0 schemathesis==4.32.5)
PIP_COMMANDS=(kubernetes-validate schemathesis)

ensure_pip_tools() {
    local missing=()
    for i in "${!PIP_COMMANDS[@]}"; do
        local name="${PIP_TOOLS[$i]%%==*}" version="${PIP_TOOLS[$i]#*==}"
        if ! command -v "${PIP_COMMANDS[$i]}" >/dev/null 2>&1 ||
            # grep reads to the end (no -q): under pipefail, pip cut off by
            # an early exit would count as not installed.
            ! python3 -m pip show "$name" 2>/dev/null | grep -x "Version: $version" >/dev/null; then
            missing+=("${PIP_TOOLS[$i]}")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing from PyPI: ${missing[*]}"
    python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
}

ensure_debian_tools() {
    local missing=()
    for i in "${!DEB_COMMANDS[@]}"; do
        command -v "${DEB_COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${DEB_PACKAGES[$i]}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
        # The distribution's nginx unit must not hold port 80 on test machines.
        if command -v nginx >/dev/null; then nginx -s stop 2>/dev/null || true; fi
    else
        echo "missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
        exit 1
    fi
}

# The dashboard (web/) is built by appliance/qb-web's build script during
# the cargo build; its npm dependencies are installed here first, from
# web/package-lock.json (npm ci), so the build itself never has to.
setup_web() {
    if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
        log "dashboard dependencies (npm ci)"
        (cd web && npm ci --no-audit --no-fund >/dev/null)
    fi
}

setup() {
    log "toolchain"
    rustup show active-toolchain >/dev/null
    rustup target add wasm32-wasip2 wasm32-unknown-unknown >/dev/null 2>&1 || true
    log "libduckdb (prebuilt)"
    DUCKDB_LIB_DIR="$("$ROOT/packaging/scripts/fetch-libduckdb.sh")"
    export DUCKDB_LIB_DIR
    setup_web
}

cmd_serve() {
    setup
    log "building quantbox (release)"
    cargo build --release -p quantbox
    log "starting: quantbox serve $*"
    exec "$CARGO_TARGET_DIR/release/quantbox" serve "$@"
}

ensure_cargo_deb() {
    if ! command -v cargo-deb >/dev/null 2>&1; then
        log "installing cargo-deb"
        cargo install cargo-deb --locked --version 3.8.0 >/dev/null
    fi
}

# The example strategies the tests run: Rust ones as core modules
# (wasm32-unknown-unknown; the host componentizes them), the misbehaving
# one also for wasm32-wasip2 (a plugin importing WASI, which must be
# refused), Python ones with componentize-py.
build_plugins() {
    log "example plugins"
    local rust_plugins=()
    for manifest in plugins/*/Cargo.toml; do
        rust_plugins+=(-p "$(basename "$(dirname "$manifest")")")
    done
    cargo build --release --target wasm32-unknown-unknown "${rust_plugins[@]}"
    cargo build --release --target wasm32-wasip2 -p misbehave
    plugins/python/build.sh "$CARGO_TARGET_DIR/plugins"
}

# Cluster mode is tested against the machine's PostgreSQL and Redis
# (QB_TEST_PG / QB_TEST_REDIS override where they are).
PG_URL="${QB_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_TEST="${QB_TEST_REDIS:-redis://127.0.0.1:6379}"

check_services() {
    log "test services (PostgreSQL, Redis)"
    local ok=1
    if ! pg_isready -q -d "$PG_URL" 2>/dev/null; then
        echo "PostgreSQL does not answer at $PG_URL: the cluster-mode tests need it (set QB_TEST_PG, or start it: pg_ctlcluster <version> main start)" >&2
        ok=0
    fi
    if ! redis-cli -u "$REDIS_URL_TEST" ping 2>/dev/null | grep -q PONG; then
        echo "Redis does not answer at $REDIS_URL_TEST: the cluster-mode tests need it (set QB_TEST_REDIS, or start redis-server)" >&2
        ok=0
    fi
    [ "$ok" -eq 1 ] || exit 1
}

# The integration tests that exercise the stores, once more against a
# cluster-backed server (PostgreSQL + Redis) instead of the embedded files.
CLUSTER_IT_FILTERS=(auth:: jobs:: plugins:: market:: backtest:: trading:: strategies::)

test_cluster_config() {
    log "integration tests, cluster configuration (PostgreSQL + Redis)"
    # Databases of earlier runs' servers (one per data directory).
    psql -q -d "$PG_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'qb\_it\_%'" |
        while read -r db; do psql -q -d "$PG_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
    QB_IT_BACKEND=cluster cargo test -p quantbox --test it -- "${CLUSTER_IT_FILTERS[@]}"
}

cmd_test() {
    setup
    check_services
    ensure_debian_tools
    ensure_pip_tools
    ensure_cargo_deb
    log "cargo fmt --check"
    cargo fmt --all -- --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    build_plugins
    log "cargo test"
    cargo test --workspace
    test_cluster_config
    log "packaging checks"
    "$ROOT/packaging/scripts/check-packaging.sh"
    log "deployment checks (compose, Kubernetes, deploy/rollback, cluster monitoring)"
    QUANTBOX_BIN="$CARGO_TARGET_DIR/debug/quantbox" "$ROOT/packaging/scripts/check-deploy.sh"
}

case "${1:-}" in
    serve) shift; cmd_serve "$@" ;;
    test) shift; cmd_test "$@" ;;
    *) echo "usage: $0 serve [ARGS...] | test" >&2; exit 2 ;;
esac
