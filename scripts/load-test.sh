#!/usr/bin/env bash
# A bounded loopback load test of the data plane: for the hello plugin in
# each SDK language, `polyhost run` (release build) in front of a
# direct_response backend takes REQUESTS requests over CONNECTIONS
# connections from h2load (Debian's nghttp2-client, in HTTP/1.1 mode), in
# two halves after a warm-up of a tenth. It fails if any request fails (or
# the proxy does not start), or if the proxy's RSS grows during the second
# half by more than max(4 MiB, 5%): memory that settles (allocator arenas,
# pools) has settled by then, while a leak keeps growing; with the default
# 200000 requests that catches about 40 bytes per request.
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
        -e "s|root_id: hello_root|root_id: \"\"|" \
        examples/envoy.yaml >"$work/envoy.yaml"
    "$polyhost" run -c "$work/envoy.yaml" -l warning 2>"$work/stderr.log" &
    pid=$!
    for _ in $(seq 1 300); do
        curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null; then
        # The SDKs' hello plugins register their root context under the
        # empty root id (AssemblyScript's also under its name), so the
        # example's root_id is cleared above.
        echo "load-test: $lang: polyhost did not start:" >&2
        tail -20 "$work/stderr.log" >&2
        status=1
        continue
    fi
    warmup=$((requests / 10))
    h2load --h1 -n "$warmup" -c "$connections" http://127.0.0.1:10000/load >/dev/null
    rss_warm="$(rss_kib "$pid")"
    half=$((requests / 2))
    for part in first second; do
        out="$(h2load --h1 -n "$half" -c "$connections" http://127.0.0.1:10000/load)"
        if ! grep -qE "requests: $half total, $half started, $half done, $half succeeded, 0 failed, 0 errored" <<<"$out"; then
            echo "load-test: $lang had failures in the $part half" >&2
            grep -E '^requests:' <<<"$out" >&2
            tail -20 "$work/stderr.log" >&2
            status=1
        fi
        if [ "$part" = first ]; then rss_mid="$(rss_kib "$pid")"; fi
    done
    rss_end="$(rss_kib "$pid")"
    rps="$(grep -E '^finished in' <<<"$out")"
    echo "$lang on $engine: $((half * 2)) requests after $warmup of warm-up, second half $rps; RSS after warm-up ${rss_warm} KiB, after the first half ${rss_mid} KiB, at the end ${rss_end} KiB"
    allowed=$(( rss_mid / 20 > 4096 ? rss_mid / 20 : 4096 ))
    if [ $(( rss_end - rss_mid )) -gt "$allowed" ]; then
        echo "load-test: $lang: RSS grew by $(( rss_end - rss_mid )) KiB in the second half (allowed $allowed KiB): a leak?" >&2
        status=1
    fi
    curl -s -X POST http://127.0.0.1:9901/quitquitquit >/dev/null
    wait "$pid" 2>/dev/null || true
    pid=
done
exit "$status"
