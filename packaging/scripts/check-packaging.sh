#!/usr/bin/env bash
# Checks every packaging artefact with the real tool for it:
#   promtool (Prometheus config, alert rules and their unit tests),
#   amtool (Alertmanager), nginx -t (with a throwaway certificate),
#   systemd-analyze verify (units), cargo deb + lintian + dpkg-deb (the .deb),
#   the packaged binary run from an unpacked tree with the packaged config,
#   and, as root, a real dpkg install / upgrade / remove / purge cycle.
# Run by `packaging/scripts/dev.sh test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/quantbox/target}"
export DUCKDB_LIB_DIR="${DUCKDB_LIB_DIR:-$(packaging/scripts/fetch-libduckdb.sh)}"
# Scratch space under the target directory rather than /tmp: binaries run
# from it, and /tmp may be mounted noexec on build machines.
mkdir -p "$CARGO_TARGET_DIR"
WORK="$(mktemp -d "$CARGO_TARGET_DIR/pkgcheck.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n--- %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "promtool: config, rules, rule unit tests"
promtool check config packaging/monitoring/prometheus/prometheus.yml
promtool check rules packaging/monitoring/prometheus/quantbox.rules.yml
(cd packaging/monitoring/prometheus && promtool test rules quantbox.rules.test.yml)

step "amtool: alertmanager config"
amtool check-config packaging/monitoring/alertmanager/alertmanager.yml

step "nginx -t"
# shellcheck source=packaging/scripts/nginx-check.sh
. packaging/scripts/nginx-check.sh
nginx_check packaging/nginx/quantbox.conf "$WORK/nginx"

step "cargo deb"
export QB_PACKAGE_BUILD=1
cargo deb -p quantbox --profile dist -o "$WORK/new/" >/dev/null
DEB="$(ls "$WORK"/new/*.deb)"
VERSION="$(dpkg-deb -f "$DEB" Version)"
cargo deb -p quantbox --profile dist --no-build --deb-version 0.0.9-1 -o "$WORK/old/" >/dev/null
OLD="$(ls "$WORK"/old/*.deb)"
echo "built $DEB ($VERSION) and $OLD"

step "lintian"
lintian --fail-on error,warning "$DEB"

step "package contents"
dpkg-deb -c "$DEB" | awk '{print $6}' > "$WORK/contents"
for f in ./usr/bin/quantbox ./usr/lib/quantbox/libduckdb.so ./etc/quantbox/quantbox.toml \
         ./usr/lib/systemd/system/quantbox.service ./usr/lib/systemd/system/quantbox@.service \
         ./usr/share/doc/quantbox/copyright ./usr/share/doc/quantbox/nginx/quantbox.conf; do
    grep -qx "$f" "$WORK/contents" || fail "$f missing from the package"
done
dpkg-deb -f "$DEB" Depends | grep -q adduser || fail "Depends lacks adduser"
[ "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)" = "/etc/quantbox/quantbox.toml" ] \
    || fail "conffiles is not the config file"
for s in postinst postrm prerm; do
    dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./$s | grep -q systemctl \
        || dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./$s | grep -q deb-systemd \
        || fail "$s has no systemd handling"
done

step "the unpacked package runs with its own config"
dpkg-deb -x "$DEB" "$WORK/root"
BIN="$WORK/root/usr/bin/quantbox"
# shellcheck disable=SC2016  # a literal $ORIGIN, as the dynamic section holds it
readelf -d "$BIN" | grep -q 'RUNPATH.*\[\$ORIGIN/../lib/quantbox\]' || fail "RUNPATH is not \$ORIGIN/../lib/quantbox only"
# ld.so expands $ORIGIN from the real path of the binary, so compare real paths
# (a symlinked TMPDIR would otherwise print a different prefix).
FOUND="$(ldd "$BIN" | awk '$1 == "libduckdb.so" {print $3}')"
if [ -z "$FOUND" ] || [ "$(realpath "$FOUND")" != "$(realpath "$WORK/root/usr/lib/quantbox/libduckdb.so")" ]; then
    fail "libduckdb.so resolves to '$FOUND', not the one in the package: $(ldd "$BIN")"
fi
"$BIN" --version
mkdir -p "$WORK/data"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/secret_key"
# The packaged configuration serves /metrics on metrics.listen; moved to a
# port of this check's own.
export QUANTBOX_SECRET_KEY_FILE="$WORK/secret_key" QUANTBOX_DATA_DIR="$WORK/data" QUANTBOX_BIND=127.0.0.1:18799 \
    QUANTBOX_METRICS__LISTEN=127.0.0.1:18797
"$BIN" --config "$WORK/root/etc/quantbox/quantbox.toml" config check >/dev/null
"$BIN" --config "$WORK/root/etc/quantbox/quantbox.toml" serve 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18799/ready >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:18799/health | grep -q '"ok"' || fail "/health"
curl -sf http://127.0.0.1:18799/ready | grep -q '"ready"' || fail "/ready: $(cat "$WORK/serve.log")"
# The dashboard is embedded: the entry page at / and the bundle it names.
curl -sf http://127.0.0.1:18799/ >"$WORK/index.html" || fail "no dashboard at /"
ASSET="$(grep -o '/assets/index-[A-Za-z0-9_-]*\.js' "$WORK/index.html" | head -1)"
[ -n "$ASSET" ] || fail "the dashboard page names no bundle: $(cat "$WORK/index.html")"
curl -sfI "http://127.0.0.1:18799$ASSET" | grep -qi '^content-type: text/javascript' || fail "$ASSET is not served as JavaScript"
curl -sf http://127.0.0.1:18797/metrics | grep -q '^quantbox_build_info' || fail "no metrics on metrics.listen"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18799/metrics)" = 404 ] || fail "/metrics served on the API address"
kill -TERM "${PIDS[-1]}"; wait "${PIDS[-1]}" || fail "unclean exit"
unset QUANTBOX_SECRET_KEY_FILE QUANTBOX_DATA_DIR QUANTBOX_BIND QUANTBOX_METRICS__LISTEN

step "systemd-analyze verify"
mkdir -p "$WORK/units"
for u in quantbox.service quantbox@.service; do
    sed "s|/usr/bin/quantbox|$BIN|g" "systemd/$u" > "$WORK/units/$u"
done
cp "$WORK/units/quantbox@.service" "$WORK/units/quantbox@api.service"
systemd-analyze verify "$WORK/units/quantbox.service" "$WORK/units/quantbox@api.service"

if [ "$(id -u)" -ne 0 ]; then
    echo "not root: skipping the dpkg install/upgrade/purge cycle"
    exit 0
fi

step "dpkg: install the previous version, write data, upgrade, remove, purge"
dpkg -P quantbox >/dev/null 2>&1 || true
dpkg -i "$OLD" >/dev/null
getent passwd quantbox >/dev/null || fail "no quantbox user"
[ -s /etc/quantbox/secret_key ] || fail "no generated secret"
[ "$(stat -c %a /etc/quantbox/secret_key)" = 640 ] || fail "secret_key mode"
sed -i 's/^workers = 4$/workers = 3/' /etc/quantbox/quantbox.toml
grep -qx 'workers = 3' /etc/quantbox/quantbox.toml || fail "could not edit the config"
run_installed() {
    su -s /bin/sh quantbox -c "QUANTBOX_BIND=127.0.0.1:18798 /usr/bin/quantbox --config /etc/quantbox/quantbox.toml serve" \
        2>>"$WORK/installed.log" &
    PIDS+=($!)
    for _ in $(seq 1 200); do curl -sf http://127.0.0.1:18798/ready >/dev/null && return 0; sleep 0.1; done
    fail "installed quantbox not ready: $(cat "$WORK/installed.log")"
}
stop_installed() { pkill -TERM -u quantbox -f '/usr/bin/quantbox' || true; sleep 1; }
run_installed
PW="$(cat /var/lib/quantbox/initial-admin-password)"
TOKEN="$(curl -sf -X POST http://127.0.0.1:18798/api/v1/auth/login -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PW\"}" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')"
curl -sf -X POST http://127.0.0.1:18798/api/v1/market/ticks -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d '[{"symbol":"KEEP","ts":1700000000000000000,"price":1.5,"size":1}]' | grep -q '"stored":1' || fail "ingest"
stop_installed
dpkg -i "$DEB" >/dev/null
[ "$(dpkg-query -W -f '${Version}' quantbox)" = "$VERSION" ] || fail "upgrade did not install $VERSION"
grep -qx 'workers = 3' /etc/quantbox/quantbox.toml || fail "the admin's config change was lost on upgrade"
run_installed
curl -sf http://127.0.0.1:18798/api/v1/market/symbols -H "authorization: Bearer $TOKEN" | grep -q '"KEEP"' \
    || fail "data lost on upgrade"
stop_installed
dpkg -r quantbox >/dev/null
[ -f /var/lib/quantbox/quantbox.sqlite ] || fail "remove deleted the data"
dpkg -P quantbox >/dev/null
[ ! -e /var/lib/quantbox ] || fail "purge kept /var/lib/quantbox"
! getent passwd quantbox >/dev/null || fail "purge kept the quantbox user"
echo "packaging checks passed"
