#!/usr/bin/env bash
# Where the time of the hot path goes: `perf` samples one operation repeated
# for a while by `polyhost-bench-profile` (nothing else runs in that
# process), and the flat profile's top frames are written as markdown.
#
#   scripts/profile.sh                  headers request and new VM, Rust
#                                       plugin, wasmtime; prints the tables
#   scripts/profile.sh --report         also writes them into the profile
#                                       section of bench/REPORT.md
#
# Options: --operations "headers noop new-vm new-vm-pooled proxy", --engine
# NAME, --language rust|go|assemblyscript|cpp, --seconds N, --no-setup,
# --report.
#
# `proxy` profiles the data plane instead: `polyhost run` with the
# `bench_headers` plugin (1 worker) in front of `polyhost-bench-e2e
# upstream`, driven by wrk over one loopback connection; perf samples the
# proxy process only, so the share of Pingora, the filter chain, the plugin
# and the kernel's socket work in a whole request shows.
# Samples of JIT-compiled guest code have no symbol and show as the
# runtime's anonymous mapping; everything named is host code.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
target_dir="${CARGO_TARGET_DIR:-$root/target}"
command_line="scripts/profile.sh${*:+ $*}"

operations="headers new-vm"
engine="wasmtime"
language="rust"
seconds=8
setup=1
report=0
while [ $# -gt 0 ]; do
    case "$1" in
        --operations) operations="$2"; shift ;;
        --engine) engine="$2"; shift ;;
        --language) language="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        --no-setup) setup=0 ;;
        --report) report=1 ;;
        *) echo "profile: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$setup" = 1 ]; then
    bash scripts/setup.sh
fi
if ! command -v perf >/dev/null; then
    echo "profile: installing linux-perf"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
fi

# Release build, every engine: the profile binary picks one at run time.
# One invocation, so the shared dependencies are compiled once.
cargo build --release -p polyhost-cli -p polyhost-bench \
    --features polyhost-cli/all-engines,polyhost-bench/all-engines \
    --bin polyhost-bench-profile --bin polyhost --bin polyhost-bench-e2e
bin="$target_dir/release/polyhost-bench-profile"

# record_proxy DATA: perf samples of `polyhost run` serving wrk's requests
# for $seconds; the throughput line goes to stdout.
record_proxy() {
    local data="$1" work base port up_port admin_port plugin dir pids=()
    for tool in wrk curl; do
        command -v "$tool" >/dev/null || { echo "profile: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
    done
    dir="$language"; [ "$language" = rust ] && dir=rust-wasip1
    plugin="$root/build/plugins/$dir/bench_headers.wasm"
    [ -f "$plugin" ] || { echo "profile: $plugin is missing; run scripts/setup.sh" >&2; exit 1; }
    work="$(mktemp -d)"
    base="${PROFILE_PORT_BASE:-18580}"
    up_port=$base port=$((base + 1)) admin_port=$((base + 2))
    "$target_dir/release/polyhost-bench-e2e" upstream --listen "127.0.0.1:$up_port" 2>"$work/upstream.log" &
    pids+=("$!")
    polyhost_bench_conf "$plugin" "$engine" "$port" "$up_port" "$admin_port" >"$work/envoy.yaml"
    "$target_dir/release/polyhost" run -c "$work/envoy.yaml" --concurrency 1 --base-id 4949 -l warning \
        2>"$work/polyhost.log" &
    local proxy=$!
    pids+=("$proxy")
    # shellcheck disable=SC2064 # expand now: the locals are gone at exit
    trap "kill ${pids[*]} 2>/dev/null || true; rm -rf '$work'" EXIT
    wait_http profile "http://127.0.0.1:$admin_port/ready" || { cat "$work/polyhost.log" >&2; exit 1; }
    local url="http://127.0.0.1:$port/api/v1/items?id=42"
    # Warm-up: the worker's VM, the upstream pool, the caches.
    wrk -t1 -c1 -d2s "${bench_request_headers[@]}" "$url" >/dev/null
    wrk -t1 -c1 -d"$((seconds + 2))s" "${bench_request_headers[@]}" "$url" >"$work/wrk.txt" &
    local load=$!
    sleep 1
    perf record -q -e cpu-clock -F 4000 -o "$data" -p "$proxy" -- sleep "$seconds" 2>/dev/null
    wait "$load"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    trap - EXIT
    local rps bad
    rps="$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")"
    bad="$(awk '/^  Non-2xx/ {print $NF}' "$work/wrk.txt")"
    # One line without ": " after the first, as the section's heading takes
    # the text after the last one.
    echo "proxy: ${rps:-?} requests/s through polyhost run, 1 worker, 1 wrk connection, $language bench_headers on $engine, ${bad:-0} non-2xx answers"
    rm -rf "$work"
}

out="$target_dir/profile"
mkdir -p "$out"
section="$out/section.md"
commit="$(report_commit)"
{
    echo "<!-- profile:begin -->"
    echo "## Where the time goes"
    echo
    echo "Flat \`perf\` profiles (self time, cpu-clock samples at 4 kHz) of one operation"
    echo "repeated for ${seconds} s by \`polyhost-bench-profile\`, $language plugin on $engine;"
    echo "frames under 1% are left out (\`proxy\`: the \`polyhost run\` process sampled while wrk"
    echo "drives it, see its heading). Guest code compiled by the runtime has no"
    echo "symbols: its share is the JIT row of each first table. Commit $commit, $(date -u +%Y-%m-%d),"
    echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores."
    echo "Reproduce with \`$command_line\`."
} >"$section"

for operation in $operations; do
    data="$out/$operation.perf.data"
    # cpu-clock works without hardware counters (virtual machines, containers).
    if [ "$operation" = proxy ]; then
        record_proxy "$data" | tee "$out/$operation.txt"
    else
        perf record -q -e cpu-clock -F 4000 -o "$data" -- \
            "$bin" --operation "$operation" --engine "$engine" --language "$language" \
            --seconds "$seconds" | tee "$out/$operation.txt"
    fi
    {
        echo
        echo "### \`$operation\`: $(sed 's/.*: //' "$out/$operation.txt")"
        echo
        # Where the samples fall: Polyhost and the runtime (the binary),
        # libc (mostly malloc and free), the kernel, and the guest's code.
        echo "| share | where |"
        echo "|---:|---|"
        perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null \
            | awk '/^ *[0-9.]+%/ {
                share = $1
                $1 = ""
                sub(/^ +/, ""); sub(/ +$/, "")
                if ($0 ~ /^\[JIT\]/) { $0 = "guest code (JIT)" }
                else if ($0 == "polyhost-bench-profile" || $0 == "polyhost") { $0 = "Polyhost and the runtime" }
                if (share + 0 >= 0.5) printf "| %s | %s |\n", share, $0
            }'
        echo
        echo "| self | frame |"
        echo "|---:|---|"
        perf report -i "$data" --no-children --sort symbol --stdio --percent-limit 1 \
            2>/dev/null \
            | awk '/^ *[0-9.]+%/ {
                share = $1
                $1 = ""; $2 = ""
                sub(/^ +/, ""); sub(/ +- -$/, "")
                if ($0 ~ /^0x[0-9a-f]+$/) { $0 = "[guest code]" }
                gsub(/\|/, "\\|")
                printf "| %s | `%s` |\n", share, $0
            }'
    } >>"$section"
done

echo "<!-- profile:end -->" >>"$section"
cat "$section"
if [ "$report" = 1 ]; then
    put_report_section profile "$section" bench/REPORT.md
    echo "profile: wrote the profile section of bench/REPORT.md"
fi
