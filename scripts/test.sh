#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test on every engine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh

# Every engine and variant with a permissive licence.
features="polyhost/all-engines"

cargo fmt --all --check
cargo clippy --workspace --all-targets --features "$features" -- -D warnings
cargo test --workspace --features "$features"
