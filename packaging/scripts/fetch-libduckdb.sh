#!/usr/bin/env bash
# Fetches the official prebuilt libduckdb.so (from the npm package
# @duckdb/node-bindings-linux-x64, the same C library DuckDB releases) into
# .cache/duckdb/ in the checkout, checks its integrity, and prints the
# directory. Building DuckDB's C++ from source takes about an hour on two
# cores; this takes seconds. The version pairs with the `duckdb` crate pin
# in Cargo.toml (=1.10506.x <-> DuckDB 1.5.6).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PKG="@duckdb/node-bindings-linux-x64"
VERSION="1.5.6-r.1"
INTEGRITY="sha512-IXcrZJE6kEqM0Z4wwdVnGBHX/frOS33VPNAwDXQ/Q+Fs84b058Qe94chrCCIcNJlG8Y3UHIUU4eBeCQxW5mN1Q=="
DEST="$ROOT/.cache/duckdb"

if [ -f "$DEST/libduckdb.so" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION stripped" ]; then
    echo "$DEST"
    exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "$PKG@$VERSION" >/dev/null)
TGZ="$(ls "$TMP"/*.tgz)"
GOT="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [ "$GOT" != "$INTEGRITY" ]; then
    echo "integrity mismatch for $PKG@$VERSION: $GOT" >&2
    exit 1
fi
tar -xzf "$TGZ" -C "$TMP" package/libduckdb.so package/LICENSE
mkdir -p "$DEST"
# Debug symbols stay out of the shipped library (lintian: unstripped-binary-or-object).
strip --strip-unneeded -o "$TMP/libduckdb.so" "$TMP/package/libduckdb.so"
install -m 0644 "$TMP/libduckdb.so" "$DEST/libduckdb.so"
install -m 0644 "$TMP/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION stripped" > "$DEST/VERSION"
echo "$DEST"
