#!/usr/bin/env bash
# The main job on a built-in default: builds the example plugin and sends one
# request through it with `polyhost call`. Extra arguments go to `polyhost call`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
cargo run --quiet --release -p polyhost-cli -- call build/plugins/rust-wasip1/hello.wasm \
    --plugin-config '{"header": "x-hello", "value": "polyhost"}' \
    -H "user-agent: curl/8" -H "x-remove-me: 1" \
    --method POST --path /greet --body "hello, world" "$@"
