#!/usr/bin/env bash
# Builds the C++ test plugins (plugins/cpp) into
#   build/plugins/cpp/<name>.wasm
#
# The plugins use no SDK, only plugins/cpp/proxy_wasm_abi.h ("C++ (ABI
# header)"). They are compiled by the clang that ships inside Zig (PyPI
# package `ziglang`), which has a wasm32-wasi target with wasi-libc and
# libc++:
#   python3 -m ziglang c++ -target wasm32-wasi -O2 -mexec-model=reactor -s \
#       -std=c++17 -fno-exceptions -fno-rtti -Wl,-z,stack-size=1048576 \
#       -o <out> <name>.cc
# The stack size matches Rust's wasm default (1 MiB); Zig's own default is
# 16 MiB, which would make every instance start with 16 MiB of memory.
#
# Idempotent and non-interactive (root on Debian 12): installs ziglang with
# pip only if `python3 -m ziglang version` fails, and recompiles a plugin only
# when its .cc file, the header or this script is newer than its output. The
# first compile on a machine also builds wasi-libc and libc++ into Zig's cache
# (minutes on two busy cores); later ones take seconds. Environment:
#   POLYHOST_PYTHON  Python interpreter to use (default: python3)
#   POLYHOST_JOBS    parallel compiler processes (default: number of CPUs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
SRC="$ROOT/plugins/cpp"
OUT="$ROOT/build/plugins/cpp"
PYTHON="${POLYHOST_PYTHON:-python3}"
JOBS="${POLYHOST_JOBS:-$(nproc)}"
CXXFLAGS=(-target wasm32-wasi -O2 -mexec-model=reactor -s -std=c++17 -fno-exceptions -fno-rtti
    -Wl,-z,stack-size=1048576 -Wall -Wextra -Werror)

log() { echo "build-cpp-plugins: $*" >&2; }

# --- Zig (clang, wasi-libc, libc++) ----------------------------------------
if ! "$PYTHON" -m ziglang version >/dev/null 2>&1; then
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        log "installing python3-pip"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y python3-pip
    fi
    log "installing ziglang from PyPI"
    # Debian's own python3 refuses pip installs outside a venv (PEP 668)
    # unless told otherwise; other interpreters (pyenv, venvs) accept the first.
    "$PYTHON" -m pip install --quiet ziglang ||
        "$PYTHON" -m pip install --quiet --break-system-packages ziglang
fi
ZIG_VERSION="$("$PYTHON" -m ziglang version)"

# --- build -----------------------------------------------------------------
mkdir -p "$OUT"
plugins=()
for source in "$SRC"/*.cc; do
    plugins+=("$(basename "$source" .cc)")
done

stale() {
    local out="$OUT/$1.wasm"
    # This script is an input too: it holds the compiler flags.
    [[ ! -f "$out" || "$SRC/$1.cc" -nt "$out" || "$SRC/proxy_wasm_abi.h" -nt "$out" ||
        "$SELF" -nt "$out" ]]
}

compile() {
    local name="$1" tmp="$OUT/.$1.wasm.tmp"
    (cd "$SRC" && "$PYTHON" -m ziglang c++ "${CXXFLAGS[@]}" -o "$tmp" "$name.cc")
    # Replace only when the bytes changed, but always refresh the mtime so the
    # staleness check sees the output as current.
    if cmp -s "$tmp" "$OUT/$name.wasm"; then
        rm -f "$tmp"
        touch "$OUT/$name.wasm"
    else
        mv "$tmp" "$OUT/$name.wasm"
    fi
}

todo=()
for name in "${plugins[@]}"; do
    if stale "$name"; then todo+=("$name"); fi
done

if ((${#todo[@]})); then
    log "compiling ${#todo[@]} plugin(s) with zig $ZIG_VERSION, $JOBS at a time"
    pids=()
    failed=0
    for name in "${todo[@]}"; do
        compile "$name" &
        pids+=($!)
        if ((${#pids[@]} >= JOBS)); then
            wait "${pids[0]}" || failed=1
            pids=("${pids[@]:1}")
        fi
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    if ((failed)); then
        log "compilation failed"
        exit 1
    fi
else
    log "all plugins up to date"
fi

# --- summary ---------------------------------------------------------------
printf '%-16s %10s\n' plugin bytes
for name in "${plugins[@]}"; do
    printf '%-16s %10s\n' "$name" "$(stat -c %s "$OUT/$name.wasm")"
done
echo "(outputs in ${OUT#"$ROOT"/}/)"
