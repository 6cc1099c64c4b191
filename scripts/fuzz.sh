#!/usr/bin/env bash
# A longer run of the structured fuzzer (polyhost/tests/all/fuzz.rs) than the
# test command's: random plugin modules calling random host functions,
# driven through request lives on every engine, until a time limit.
#
#   scripts/fuzz.sh [--seconds S] [--seed N] [--cases N] [--engine NAME]
#
#   --seconds S    stop each engine's run after S seconds (default 300;
#                  env POLYHOST_FUZZ_SECONDS); engines run side by side
#   --seed N       first case's seed; case i uses N + i (default: random,
#                  printed; env POLYHOST_FUZZ_SEED)
#   --cases N      at most N cases per engine (default: unbounded, the time
#                  limit stops the run; env POLYHOST_FUZZ_CASES)
#   --engine NAME  one engine (wasmtime, wasmtime-winch, wasmtime-pulley,
#                  wasmi, wasmer); default all of them
#
# Replay one case: scripts/fuzz.sh --seed SEED --cases 1 --engine NAME
# A failing case is shrunk and written to target/tmp/fuzz/fuzz_<engine>_<seed>.wat;
# commit it as plugins/wat/fuzz_<what>.wat and the test command replays it
# on every engine. If the process aborts, the case in progress is printed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${POLYHOST_FUZZ_SECONDS:-300}"
seed="${POLYHOST_FUZZ_SEED:-}"
cases="${POLYHOST_FUZZ_CASES:-18446744073709551615}"
engine=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --cases) cases="$2"; shift 2 ;;
        --engine) engine="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$seconds" "$cases"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: $n is not a number" >&2; exit 2; }
done
if [[ -z "$seed" ]]; then
    seed="$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"
fi
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: seed $seed is not a number" >&2; exit 2; }

filter="random_plugins_cannot_break_the_host"
if [[ -n "$engine" ]]; then
    filter="fuzz::${engine//-/_}::$filter"
fi
# The same features as the test command, so the build is shared with it.
features="polyhost/all-engines"
cargo_test=(cargo test --workspace --features "$features" --test all)

echo "fuzz.sh: seed $seed, at most $seconds s per engine${engine:+, engine $engine}" >&2
"${cargo_test[@]}" --no-run

tmp="${CARGO_TARGET_DIR:-$root/target}/tmp/fuzz"
mkdir -p "$tmp"
# Progress files are per process; this marks which ones are this run's.
started="$(mktemp)"
trap 'rm -f "$started"' EXIT
status=0
# The test stops itself at the time limit; `timeout` is the backstop for a
# host that hangs (which would itself be a finding).
POLYHOST_FUZZ_SEED="$seed" POLYHOST_FUZZ_CASES="$cases" POLYHOST_FUZZ_SECONDS="$seconds" \
    timeout --kill-after=10 "$((seconds * 2 + 120))" \
    "${cargo_test[@]}" -- "$filter" --nocapture --test-threads=8 || status=$?

if [[ $status -ne 0 ]]; then
    echo "fuzz.sh: FAILED (exit $status) with seed $seed" >&2
    for current in "$tmp"/*.current; do
        [[ -f "$current" && "$current" -nt "$started" ]] || continue
        echo "fuzz.sh: case in progress in $current when the run stopped (seed on the first line):" >&2
        cat "$current" >&2
    done
    ls "$tmp"/fuzz_*.wat 2>/dev/null | sed 's/^/fuzz.sh: shrunk case: /' >&2 || true
    exit "$status"
fi
echo "fuzz.sh: no finding with seed $seed" >&2
