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

# The end-to-end benchmark (scripts/bench-e2e.sh) compares `polyhost run`
# with nginx + its Lua module, the OpenResty baseline, driven by wrk; all
# three from Debian's packages. Checked first so a re-run never touches apt.
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null \
    || [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    echo "setup: installing nginx, libnginx-mod-http-lua and wrk"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        nginx libnginx-mod-http-lua wrk >/dev/null
fi

# Plugin fixtures, one script per language; each installs its own toolchain.
for lang in rust go assemblyscript cpp wat; do
    script="scripts/build-$lang-plugins.sh"
    if [ -x "$script" ] || [ -f "$script" ]; then
        echo "setup: building $lang plugins"
        bash "$script"
    fi
done
echo "setup: done"
