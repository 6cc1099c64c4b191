#!/usr/bin/env bash
# The main job on a built-in default: `polyhost run` serves
# examples/envoy.yaml (the `hello` plugin in front of a small backend), curl
# sends real requests through it, and the script shows what the plugin did
# and stops the proxy. Extra arguments go to `polyhost run` (e.g.
# `--concurrency 1` or `--component-log-level wasm:debug`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
if ! command -v curl >/dev/null; then
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
fi
cargo build --quiet --release -p polyhost-cli
polyhost=target/release/polyhost

log="$(mktemp)"
"$polyhost" run -c examples/envoy.yaml "$@" 2>"$log" &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT

for _ in $(seq 1 200); do
    curl -fs http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done

show() { echo; echo "\$ curl $(printf '%q ' "$@")"; curl -s -i "$@" | tr -d '\r'; }
show -X POST -H 'user-agent: curl/8' -H 'x-remove-me: 1' --data 'hello, world' http://127.0.0.1:10000/greet
show http://127.0.0.1:10000/admin/secret

echo
echo "--- what the plugin logged (polyhost's stderr, in Envoy's format):"
grep -F '[wasm]' "$log" || true
echo
echo "--- counters (curl http://127.0.0.1:9901/stats):"
curl -s http://127.0.0.1:9901/stats | grep -E 'downstream_rq_(total|2xx|4xx)'
curl -s -X POST http://127.0.0.1:9901/quitquitquit >/dev/null
wait "$pid" 2>/dev/null || true
trap - EXIT
rm -f "$log"
