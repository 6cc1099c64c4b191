#!/usr/bin/env bash
# Installs what Polyhost needs and builds every plugin fixture from source.
# Idempotent: re-running skips what is already installed or up to date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The host workspace builds with rustup's stable toolchain (rust-version in
# Cargo.toml); rustfmt and clippy are needed by the test command.
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

# Plugin fixtures, one script per language; each installs its own toolchain.
for lang in rust go assemblyscript cpp wat; do
    script="scripts/build-$lang-plugins.sh"
    if [ -x "$script" ] || [ -f "$script" ]; then
        echo "setup: building $lang plugins"
        bash "$script"
    fi
done
echo "setup: done"
