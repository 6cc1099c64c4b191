#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test on every engine
# (the benchmark harness in quick mode among them), and once with wasmi alone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh

# Every engine and variant with a permissive licence; the benchmark crate
# with each runtime's raw host-call baseline too.
features="polyhost/all-engines,polyhost-bench/all-engines"

cargo fmt --all --check
cargo clippy --workspace --all-targets --features "$features" -- -D warnings

# Includes bench/tests/quick_report.rs: the latency report harness in quick
# mode on every engine (numbers never judged).
cargo test --workspace --features "$features"

# The end-to-end smoke test: `polyhost run`, nginx + Lua and the upstream
# under wrk for a few thousand requests, on the dev-profile binaries the
# tests above just built (no release build). Fails on any errored request or
# missing result, never on timings.
bash scripts/bench-e2e.sh --quick

# The interpreter alone: the facade and its tests build and pass without
# wasmtime or wasmer compiling at all.
cargo test -p polyhost --no-default-features --features wasmi
