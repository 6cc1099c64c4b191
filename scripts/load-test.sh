#!/usr/bin/env bash
# A bounded loopback load test of the data plane: for the hello plugin in
# each SDK language, `polyhost run` (release build) in front of a
# direct_response backend takes REQUESTS requests over CONNECTIONS
# connections from h2load (Debian's nghttp2-client, in HTTP/1.1 mode). It
# fails if any request fails, and prints the proxy's RSS after a warm-up and
# at the end, so a leak shows as growth.
#
#   scripts/load-test.sh [REQUESTS] [CONNECTIONS] [ENGINE]
#
# Defaults: 200000 requests, 64 connections, the default engine. Traffic
# goes to 127.0.0.1 only and every run ends by itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

requests="${1:-200000}"
connections="${2:-64}"
engine="${3:-envoy.wasm.runtime.v8}"

bash scripts/setup.sh >/dev/null
if ! command -v h2load >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --quiet --release -p polyhost-cli --features all-engines
polyhost="$root/target/release/polyhost"

work="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

status=0
for lang in rust-wasip1 go assemblyscript cpp; do
    plugin="$root/build/plugins/$lang/hello.wasm"
    sed -e "s|build/plugins/rust-wasip1/hello.wasm|$plugin|" \
        -e "s|runtime: envoy.wasm.runtime.v8|runtime: $engine|" \
        examples/envoy.yaml >"$work/envoy.yaml"
    "$polyhost" run -c "$work/envoy.yaml" -l warning 2>"$work/stderr.log" &
    pid=$!
    for _ in $(seq 1 300); do
        curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
        sleep 0.1
    done
    warmup=$((requests / 10))
    h2load --h1 -n "$warmup" -c "$connections" http://127.0.0.1:10000/load >/dev/null
    rss_warm="$(rss_kib "$pid")"
    out="$(h2load --h1 -n "$requests" -c "$connections" http://127.0.0.1:10000/load)"
    rss_end="$(rss_kib "$pid")"
    summary="$(grep -E '^requests:' <<<"$out")"
    rps="$(grep -E '^finished in' <<<"$out")"
    echo "$lang on $engine: $summary; $rps; RSS after warm-up ${rss_warm} KiB, at the end ${rss_end} KiB"
    if ! grep -qE "requests: $requests total, $requests started, $requests done, $requests succeeded, 0 failed, 0 errored" <<<"$out"; then
        echo "load-test: $lang had failures" >&2
        tail -20 "$work/stderr.log" >&2
        status=1
    fi
    curl -s -X POST http://127.0.0.1:9901/quitquitquit >/dev/null
    wait "$pid" 2>/dev/null || true
    pid=
done
exit "$status"
