#!/usr/bin/env bash
# Builds the AssemblyScript test plugins (plugins/assemblyscript) into
#   build/plugins/assemblyscript/<name>.wasm
#
# Toolchain: npm's @solo-io/proxy-runtime 0.1.8 with assemblyscript 0.14.13
# (newer compilers reject the SDK), both pinned in package-lock.json. Each
# plugin is one entry file, assembly/<name>.ts, compiled with
#   asc assembly/<name>.ts -b <out> --use abort=abort_proc_exit --optimize
#
# Idempotent and non-interactive (root on Debian 12): installs Node.js/npm
# from Debian if missing, runs `npm ci` only when node_modules is missing or
# older than package-lock.json, and recompiles a plugin only when its entry
# file, the shared assembly/lib/*.ts, the lock file or this script is newer
# than its output. Environment:
#   POLYHOST_JOBS   parallel compiler processes (default: number of CPUs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"
PROJECT="$ROOT/plugins/assemblyscript"
OUT="$ROOT/build/plugins/assemblyscript"
JOBS="${POLYHOST_JOBS:-$(nproc)}"

log() { echo "build-assemblyscript-plugins: $*" >&2; }

# --- Node.js ---------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y nodejs npm
fi

# --- npm packages ----------------------------------------------------------
# npm writes node_modules/.package-lock.json on every install; comparing it
# with package-lock.json tells whether node_modules matches the lock file.
cd "$PROJECT"
ASC="$PROJECT/node_modules/.bin/asc"
stamp="$PROJECT/node_modules/.package-lock.json"
if [[ ! -x "$ASC" || ! -f "$stamp" || "$PROJECT/package-lock.json" -nt "$stamp" ]]; then
    log "installing npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
fi

# --- build -----------------------------------------------------------------
mkdir -p "$OUT"
plugins=()
for entry in "$PROJECT"/assembly/*.ts; do
    plugins+=("$(basename "$entry" .ts)")
done

# Inputs every plugin shares.
# (This script is one too: it holds the compiler flags.)
shared_inputs=("$PROJECT"/assembly/lib/*.ts "$PROJECT/package-lock.json" "$SELF")

stale() {
    local name="$1" out="$OUT/$1.wasm" input
    [[ -f "$out" ]] || return 0
    for input in "$PROJECT/assembly/$name.ts" "${shared_inputs[@]}"; do
        [[ "$input" -nt "$out" ]] && return 0
    done
    return 1
}

compile() {
    local name="$1" tmp="$OUT/.$1.wasm.tmp"
    "$ASC" "assembly/$name.ts" -b "$tmp" --use abort=abort_proc_exit --optimize \
        2> >(grep -v -e 'AS201' -e 'utoa32(this, radix)' -e '~~~~' -e 'number.ts(221' -e '^$' >&2 || true)
    # Replace only when the bytes changed, but always refresh the mtime so the
    # staleness check above sees the output as current.
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
    log "compiling ${#todo[@]} plugin(s) with $("$ASC" --version 2>/dev/null | head -n1), $JOBS at a time"
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
