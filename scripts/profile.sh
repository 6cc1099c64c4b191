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
# Options: --operations "headers noop new-vm new-vm-pooled", --engine NAME,
# --language rust|go|assemblyscript|cpp, --seconds N, --no-setup, --report.
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
cargo build --release -p polyhost-bench --features all-engines --bin polyhost-bench-profile
bin="$target_dir/release/polyhost-bench-profile"

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
    echo "frames under 1% are left out. Guest code compiled by the runtime has no"
    echo "symbols: its share is the JIT row of each first table. Commit $commit, $(date -u +%Y-%m-%d),"
    echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores."
    echo "Reproduce with \`$command_line\`."
} >"$section"

for operation in $operations; do
    data="$out/$operation.perf.data"
    # cpu-clock works without hardware counters (virtual machines, containers).
    perf record -q -e cpu-clock -F 4000 -o "$data" -- \
        "$bin" --operation "$operation" --engine "$engine" --language "$language" \
        --seconds "$seconds" | tee "$out/$operation.txt"
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
                else if ($0 == "polyhost-bench-profile") { $0 = "Polyhost and the runtime" }
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
