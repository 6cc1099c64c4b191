#!/usr/bin/env bash
# Builds the hand-written WebAssembly text modules (plugins/wat) into
#   build/plugins/wat/<name>.wasm
# with wabt's wat2wasm (Debian package `wabt`, installed if missing).
#
# `--no-check` keeps wat2wasm from validating: some modules are broken on
# purpose (plugins/wat/invalid.wat), and refusing them is the host's job.
# Idempotent: a module is rebuilt only when its .wat file or this script is
# newer than its output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
SRC="$ROOT/plugins/wat"
OUT="$ROOT/build/plugins/wat"

log() { echo "build-wat-plugins: $*" >&2; }

if ! command -v wat2wasm >/dev/null 2>&1; then
    log "installing wabt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y wabt
fi

mkdir -p "$OUT"
built=0
for source in "$SRC"/*.wat; do
    name="$(basename "$source" .wat)"
    out="$OUT/$name.wasm"
    if [[ ! -f "$out" || "$source" -nt "$out" || "$SELF" -nt "$out" ]]; then
        wat2wasm --no-check -o "$out.tmp" "$source"
        mv "$out.tmp" "$out"
        built=$((built + 1))
    fi
done
log "$built module(s) rebuilt; outputs in ${OUT#"$ROOT"/}/"
