#!/usr/bin/env bash
# Builds the Rust SDK test plugins (plugins/rust) for wasm32-wasip1 and
# wasm32-unknown-unknown and copies them to
#   build/plugins/rust-wasip1/<name>.wasm
#   build/plugins/rust-unknown/<name>.wasm
#
# rustup cannot download the wasm32 standard library on our machines, so the
# plugins are compiled by Debian's rustc (/usr/bin/rustc, package rustc-web)
# with -Zbuild-std against Debian's std sources (rust-web-src). Any cargo
# works as the driver (RUSTC selects the compiler; rustup's 1.95 cargo is
# fine); RUSTC_BOOTSTRAP=1 lets the stable tools accept -Z flags.
#
# Idempotent: installs missing Debian packages (needs root), then lets cargo
# decide what is stale. Environment:
#   POLYHOST_CARGO   cargo binary to use (default: cargo on PATH,
#                    then ~/.cargo/bin/cargo, then /usr/bin/cargo)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGINS="$ROOT/plugins/rust"
OUT="$ROOT/build/plugins"

# target triple -> short name used in target/ and build/plugins/rust-<short>.
TARGETS=(wasm32-wasip1 wasm32-unknown-unknown)
declare -A SHORT=([wasm32-wasip1]=wasip1 [wasm32-unknown-unknown]=unknown)

# --- Debian packages -------------------------------------------------------
PACKAGES=(rustc-web rust-web-src rust-web-llvm lld-22 wasi-libc)
missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg -s also succeeds for removed-but-configured packages; require the
    # "install ok installed" state.
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "build-rust-plugins: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${PACKAGES[@]}"
fi

# --- tools -----------------------------------------------------------------
RUSTC_BIN=/usr/bin/rustc
if [[ -n "${POLYHOST_CARGO:-}" ]]; then
    CARGO_BIN="$POLYHOST_CARGO"
elif command -v cargo >/dev/null 2>&1; then
    CARGO_BIN="$(command -v cargo)"
elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    CARGO_BIN="$HOME/.cargo/bin/cargo"
elif [[ -x /usr/bin/cargo ]]; then
    CARGO_BIN=/usr/bin/cargo
else
    echo "build-rust-plugins: no cargo found (install rustup's or Debian's cargo-web)" >&2
    exit 1
fi

# Flags and directories from the caller's environment (or from an enclosing
# cargo build) must not leak into these builds: each target gets exactly the
# RUSTFLAGS below, and CARGO_ENCODED_RUSTFLAGS would take precedence over them.
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET \
    CARGO_BUILD_TARGET_DIR CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS

rustflags_for() {
    case "$1" in
        # Link Debian's wasi-libc instead of the (absent) self-contained one.
        wasm32-wasip1) echo "-L /usr/lib/wasm32-wasi -C link-self-contained=no" ;;
        *) echo "" ;;
    esac
}

# Crate directories = workspace members; output name = crate name with
# dashes turned into underscores (cargo's cdylib naming).
crates=()
for manifest in "$PLUGINS"/*/Cargo.toml; do
    crates+=("$(basename "$(dirname "$manifest")")")
done

# --- build -----------------------------------------------------------------
for target in "${TARGETS[@]}"; do
    short="${SHORT[$target]}"
    echo "build-rust-plugins: building ${#crates[@]} plugins for $target" >&2
    # One target dir per target, so the two RUSTFLAGS sets never invalidate
    # each other's artifacts.
    RUSTC="$RUSTC_BIN" RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(rustflags_for "$target")" \
        CARGO_TARGET_DIR="$PLUGINS/target/$short" \
        "$CARGO_BIN" build --release --workspace \
        --manifest-path "$PLUGINS/Cargo.toml" \
        -Zbuild-std=std,panic_abort --target "$target"

    mkdir -p "$OUT/rust-$short"
    for crate in "${crates[@]}"; do
        name="${crate//-/_}"
        src="$PLUGINS/target/$short/$target/release/$name.wasm"
        dst="$OUT/rust-$short/$name.wasm"
        # Copy only when changed, so consumers watching mtimes stay quiet.
        if ! cmp -s "$src" "$dst"; then
            cp "$src" "$dst.tmp"
            mv "$dst.tmp" "$dst"
        fi
    done
done

# --- summary ---------------------------------------------------------------
echo "build-rust-plugins: $("$RUSTC_BIN" --version), driven by $("$CARGO_BIN" --version)"
printf '%-16s %14s %14s\n' plugin rust-wasip1 rust-unknown
for crate in "${crates[@]}"; do
    name="${crate//-/_}"
    printf '%-16s %14s %14s\n' "$name" \
        "$(stat -c %s "$OUT/rust-wasip1/$name.wasm")" \
        "$(stat -c %s "$OUT/rust-unknown/$name.wasm")"
done
echo "(sizes in bytes; outputs in ${OUT#"$ROOT"/}/rust-{wasip1,unknown}/)"
