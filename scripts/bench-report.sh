#!/usr/bin/env bash
# Regenerates bench/REPORT.md and bench/chart.svg: the latency one request
# gains from a plugin, per plugin language and engine, with native Rust and
# LuaJIT baselines measured in the same run.
#
#   scripts/bench-report.sh           full run (about three minutes on two
#                                     cores once built), writes bench/
#   scripts/bench-report.sh --quick   rough numbers, under two minutes once
#                                     built; writes target/bench-report-quick/
#                                     so the committed report is left alone
#
#   scripts/bench-report.sh --e2e     then the end-to-end run through
#                                     `polyhost run` (scripts/bench-e2e.sh,
#                                     with --quick if given)
#   scripts/bench-report.sh --peer    then the side-by-side run against
#                                     proxy-wasm-host (scripts/bench-peer.sh,
#                                     with --quick if given)
#   scripts/bench-report.sh --profile then perf profiles of the hot path
#                                     (scripts/profile.sh --report)
#
# Other arguments go to the report binary, e.g. `--engine wasmtime --engine
# wasmi` to run only those engines.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="bench"
json="$target_dir/bench-report/results.json"
args=()
e2e=()
peer=()
profile=()
for arg in "$@"; do
    if [ "$arg" = "--e2e" ]; then
        e2e=(bash scripts/bench-e2e.sh)
        continue
    fi
    if [ "$arg" = "--peer" ]; then
        # Set-up has run just before.
        peer=(bash scripts/bench-peer.sh --no-setup)
        continue
    fi
    if [ "$arg" = "--profile" ]; then
        profile=(bash scripts/profile.sh --no-setup --report)
        continue
    fi
    if [ "$arg" = "--quick" ]; then
        # Quick numbers never overwrite the committed report.
        out="$target_dir/bench-report-quick"
        json="$out/results.json"
    fi
    args+=("$arg")
done

bash scripts/setup.sh

commit="$(report_commit)"

# The report binary rewrites REPORT.md whole; the sections other scripts
# write between their markers (bench-e2e: scripts/bench-e2e.sh, bench-peer:
# scripts/bench-peer.sh, profile: scripts/profile.sh) are kept and put back, in this order.
kept_sections=(bench-e2e bench-peer profile)
kept="$(mktemp -d)"
trap 'rm -rf "$kept"' EXIT
if [ -f "$out/REPORT.md" ]; then
    for name in "${kept_sections[@]}"; do
        sed -n "/^<!-- $name:begin -->\$/,/^<!-- $name:end -->\$/p" "$out/REPORT.md" >"$kept/$name"
    done
fi

# Every engine and variant with a permissive licence; the binary runs all
# that are compiled in.
cargo build --release -p polyhost-bench --features all-engines --bin polyhost-bench-report
"$target_dir/release/polyhost-bench-report" --out "$out" --json "$json" \
    --commit "$commit" --date "$(date -u +%Y-%m-%d)" "${args[@]}"
for name in "${kept_sections[@]}"; do
    if [ -s "$kept/$name" ] && ! grep -q "^<!-- $name:begin -->\$" "$out/REPORT.md"; then
        { echo; cat "$kept/$name"; } >>"$out/REPORT.md"
    fi
done
echo "bench-report: wrote $out/REPORT.md and $out/chart.svg"

if [ ${#e2e[@]} -gt 0 ]; then
    quick=()
    for arg in "${args[@]}"; do [ "$arg" = --quick ] && quick=(--quick); done
    "${e2e[@]}" "${quick[@]+"${quick[@]}"}"
fi
if [ ${#peer[@]} -gt 0 ]; then
    quick=()
    for arg in "${args[@]}"; do [ "$arg" = --quick ] && quick=(--quick); done
    "${peer[@]}" "${quick[@]+"${quick[@]}"}"
fi
if [ ${#profile[@]} -gt 0 ]; then
    "${profile[@]}"
fi
