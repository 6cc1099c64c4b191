#!/usr/bin/env bash
# Side by side with proxy-wasm-host 0.2.0, the other proxy-wasm host for Rust
# on crates.io: the Rust `noop` and `bench_headers` plugins through the same
# in-process request life on both hosts (Polyhost on wasmtime/Cranelift),
# the hosts taking turns round after round so machine noise falls on both.
# Writes the section of bench/REPORT.md between
# `<!-- bench-peer:begin -->` and `<!-- bench-peer:end -->`
# (scripts/bench-report.sh keeps it when it regenerates the rest).
#
#   scripts/bench-peer.sh          full run: 5 rounds of the report's full
#                                  settings (about 30 s once built), waits for
#                                  a quiet machine first; writes bench/REPORT.md
#   scripts/bench-peer.sh --quick  1 round of the quick settings, no waiting;
#                                  writes target/bench-peer-quick/REPORT.md
#
# Options (after --quick, if given, to override it): --rounds N, --no-wait
# (skip waiting for the machine to be quiet), --no-setup (skip
# scripts/setup.sh when it has run), --out DIR (write DIR/REPORT.md instead).
#
# The peer needs rustc >= 1.96, newer than this workspace's toolchain, so its
# half is a crate of its own (bench/peer, its own workspace and Cargo.lock),
# built by Debian's cargo and rustc (/usr/bin, packages cargo-web and
# rustc-web) into target/peer, never sharing artifacts with the workspace.
# Polyhost's half is `polyhost-bench-peer` (bench/src/bin), built as
# scripts/bench-report.sh builds the report binary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
target_dir="${CARGO_TARGET_DIR:-$root/target}"
command_line="scripts/bench-peer.sh${*:+ $*}"

quick=0
rounds=5
wait_quiet=1
setup=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; rounds=1; wait_quiet=0 ;;
        --rounds) rounds="$2"; shift ;;
        --no-wait) wait_quiet=0 ;;
        --no-setup) setup=0 ;;
        --out) out="$2"; shift ;;
        *) echo "bench-peer: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench-peer: --rounds needs a positive number" >&2; exit 2; }
if [ -z "$out" ]; then
    # Quick numbers never overwrite the committed report.
    if [ "$quick" = 1 ]; then out="$target_dir/bench-peer-quick"; else out="bench"; fi
fi
quick_flag=()
[ "$quick" = 1 ] && quick_flag=(--quick)

# --- fixtures and the two binaries --------------------------------------------
if [ "$setup" = 1 ]; then
    bash scripts/setup.sh >/dev/null
fi
for plugin in noop bench_headers; do
    [ -f "build/plugins/rust-wasip1/$plugin.wasm" ] || {
        echo "bench-peer: build/plugins/rust-wasip1/$plugin.wasm is missing; run scripts/setup.sh" >&2
        exit 1
    }
done

# Debian's toolchain for the peer (rustup's cargo on PATH is too old for it).
peer_cargo=/usr/bin/cargo
peer_rustc=/usr/bin/rustc
if [ ! -x "$peer_cargo" ] || [ ! -x "$peer_rustc" ]; then
    echo "bench-peer: installing Debian's cargo-web and rustc-web" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq cargo-web rustc-web >/dev/null
fi
rustc_version="$("$peer_rustc" --version)"
minor="$(sed -E 's/^rustc 1\.([0-9]+).*/\1/' <<<"$rustc_version")"
if ! [[ "$minor" =~ ^[0-9]+$ ]] || [ "$minor" -lt 96 ]; then
    echo "bench-peer: proxy-wasm-host 0.2.0 needs rustc >= 1.96; $peer_rustc is $rustc_version" >&2
    exit 1
fi
peer_target="$target_dir/peer"
# Only Debian's tools on this build: no rustup proxies, no flags from the
# caller's environment meant for the workspace's compiler.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u RUSTC_WRAPPER \
    -u RUSTUP_TOOLCHAIN \
    PATH="/usr/bin:$PATH" RUSTC="$peer_rustc" RUSTDOC=/usr/bin/rustdoc \
    CARGO_TARGET_DIR="$peer_target" \
    "$peer_cargo" build --release --locked --manifest-path bench/peer/Cargo.toml
peer_bin="$peer_target/release/proxy-wasm-host-bench"

# The same features as scripts/bench-report.sh, so the two share artifacts.
cargo build --release -p polyhost-bench --features all-engines --bin polyhost-bench-peer
polyhost_bin="$target_dir/release/polyhost-bench-peer"

# --- a quiet machine ------------------------------------------------------------
if [ "$wait_quiet" = 1 ]; then
    wait_for_quiet_machine bench-peer
else
    quiet_note="not waited for"
fi

# --- the rounds ---------------------------------------------------------------------
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
runs="$work/runs.jsonl"
: >"$runs"
loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
started=$SECONDS
for round in $(seq 1 "$rounds"); do
    echo "bench-peer: round $round of $rounds: proxy-wasm-host" >&2
    "$peer_bin" "${quick_flag[@]+"${quick_flag[@]}"}" --fixtures "$root/build/plugins" >>"$runs"
    echo "bench-peer: round $round of $rounds: Polyhost" >&2
    "$polyhost_bin" measure "${quick_flag[@]+"${quick_flag[@]}"}" --engine wasmtime \
        --fixtures "$root/build/plugins" >>"$runs"
done
echo "bench-peer: measured in $((SECONDS - started)) s" >&2

# --- the report ---------------------------------------------------------------------
lock_version() { # lock_version LOCKFILE CRATE
    awk -v name="$2" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$1"
}
commit="$(report_commit)"
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
settings="the report's full settings: 200 ms warm-up, 30 batches of about 20 ms"
[ "$quick" = 1 ] && settings="the report's quick settings: 10 ms warm-up, 5 batches of about 2 ms"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=\`$commit\`"
    echo "machine=${cpu_model:-unknown CPU}, $(nproc) cores (\`nproc\`), Linux $(uname -r)"
    echo "loadavg=$loadavg (machine quiet: $quiet_note)"
    echo "command=\`$command_line\`"
    echo "polyhost=wasmtime $(lock_version Cargo.lock wasmtime), built by $(rustc --version | cut -d' ' -f1-2) (the workspace's toolchain), \`release\` profile, \`--features all-engines\`; engine \`wasmtime\` (Cranelift), \`EngineConfig::default()\`"
    echo "peer=proxy-wasm-host $(lock_version bench/peer/Cargo.lock proxy-wasm-host) with wasmtime $(lock_version bench/peer/Cargo.lock wasmtime) (\`bench/peer/Cargo.lock\`), built by $(cut -d' ' -f1-2 <<<"$rustc_version") (Debian's \`/usr/bin/rustc\`), \`release\` profile; \`Engine::new()\`, \`Limits::default()\`"
    echo "rounds=$rounds, each proxy-wasm-host then Polyhost, each a fresh process; per round and plugin $settings"
} >"$work/meta.txt"

keep="$target_dir/bench-peer"
[ "$quick" = 1 ] && keep="$out"
mkdir -p "$keep" "$out"
cp "$runs" "$keep/runs.jsonl"
cp "$work/meta.txt" "$keep/meta.txt"
"$polyhost_bin" render --runs "$runs" --meta "$work/meta.txt" --markdown "$keep/section.md"

# Replaced in place between the markers, or appended the first time.
report="$out/REPORT.md"
put_report_section bench-peer "$keep/section.md" "$report"
echo "bench-peer: wrote $report (raw rounds in $keep/runs.jsonl)"
