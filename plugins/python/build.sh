#!/usr/bin/env bash
# Builds the Python example strategies with componentize-py (from PyPI,
# pinned) into components that import nothing but the strategy interface
# (--stub-wasi replaces CPython's WASI imports with trapping stubs).
#   plugins/python/build.sh OUT_DIR
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/../.."
OUT="${1:?usage: build.sh OUT_DIR}"
VERSION=0.25.1
VENV="${QB_PY_VENV:-$HOME/.cache/quantbox/componentize-py-$VERSION}"
if [ ! -x "$VENV/bin/componentize-py" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "componentize-py==$VERSION"
fi
mkdir -p "$OUT"
for app in "$HERE"/*/app.py; do
    dir="$(dirname "$app")"
    name="$(basename "$dir")"
    out="$OUT/${name}_py.wasm"
    # Rebuild only when the source or the interface changed.
    if [ -f "$out" ] && [ -z "$(find "$app" "$ROOT/plugin-sdk/wit" -newer "$out" -print -quit)" ]; then
        continue
    fi
    (cd "$dir" && "$VENV/bin/componentize-py" -q -d "$ROOT/plugin-sdk/wit" -w strategy \
        componentize app --stub-wasi -o "$out.tmp")
    mv "$out.tmp" "$out"
done
