#!/usr/bin/env bash
# End-to-end latency and throughput of the data plane: wrk sends a fixed
# number of requests, over loopback only, to
#   - the upstream directly (a fixed 200 from `polyhost-bench-e2e upstream`),
#     the floor;
#   - nginx proxying to it, and nginx + Lua doing the 60 header operations in
#     access_by_lua_block (the OpenResty baseline), from Debian's packages;
#   - `polyhost run` proxying to it with no filter, and with the
#     `bench_headers` plugin (20 adds, 20 gets, 20 removes) per language and
#     engine;
# at each worker count (`--concurrency`, nginx's worker_processes) and
# connection count, and records req/s, p50 / p99 / p99.9, errors, and the
# proxy's RSS and CPU seconds. The helper's `report` step then fails the run
# if any request errored or a run is missing or malformed (timings are never
# judged) and renders the tables and chart.
#
#   scripts/bench-e2e.sh          full run: release build, waits for a quiet
#                                 machine, every language x engine, workers
#                                 1 and 2, connections 1 and 32; writes the
#                                 end-to-end section of bench/REPORT.md and
#                                 bench/chart-e2e.svg (about 15 minutes)
#   scripts/bench-e2e.sh --quick  smoke test: the dev-profile binaries the
#                                 test command already built, Rust on
#                                 wasmtime, 1 worker, 1 and 8 connections,
#                                 2000 requests; writes target/bench-e2e-quick/
#
# Options (after --quick, if given, to override it): --requests N,
# --languages "rust go ...", --engines "wasmtime wasmer ...", --workers "1 2",
# --connections "1 32", --polyhost PATH (a prebuilt binary), --no-wait (skip
# waiting for the machine to be quiet), --no-setup (skip scripts/setup.sh
# when it has run, e.g. in a worktree that links build/ from another
# checkout), --out DIR (write the report there instead of bench/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=lib/bench.sh
source scripts/lib/bench.sh
target_dir="${CARGO_TARGET_DIR:-$root/target}"
command_line="scripts/bench-e2e.sh${*:+ $*}"

quick=0
requests=20000
languages="rust go assemblyscript cpp"
engines="wasmtime wasmtime-winch wasmer wasmi"
workers_list="1 2"
connections_list="1 32"
polyhost=""
wait_quiet=1
setup=1
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick)
            quick=1
            requests=2000
            languages="rust"
            engines="wasmtime"
            workers_list="1"
            # 8, not 32: enough to exercise concurrent connections while
            # keeping the smoke test short on a debug build.
            connections_list="1 8"
            wait_quiet=0
            # The test command has just run set-up.
            setup=0
            ;;
        --requests) requests="$2"; shift ;;
        --languages) languages="$2"; shift ;;
        --engines) engines="$2"; shift ;;
        --workers) workers_list="$2"; shift ;;
        --connections) connections_list="$2"; shift ;;
        --polyhost) polyhost="$2"; shift ;;
        --no-wait) wait_quiet=0 ;;
        --no-setup) setup=0 ;;
        --out) out="$2"; shift ;;
        *) echo "bench-e2e: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$out" ]; then
    # Quick numbers never overwrite the committed report.
    if [ "$quick" = 1 ]; then out="$target_dir/bench-e2e-quick"; else out="bench"; fi
fi
# A warm-up of a tenth (at least 200 requests) starts every worker's VMs and
# fills the upstream connection pools before anything is measured.
warmup=$((requests / 10 > 200 ? requests / 10 : 200))
# wrk runs for a duration; the Lua script stops it at the request count, and
# this bounds the time if a setup is far slower than expected (the run then
# comes up short and the report step fails it).
max_seconds=$((quick ? 60 : 180))

# --- tools and binaries -----------------------------------------------------
if [ "$setup" = 1 ]; then
    bash scripts/setup.sh >/dev/null
fi
for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench-e2e: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done
lua_module=/usr/lib/nginx/modules/ngx_http_lua_module.so
ndk_module=/usr/lib/nginx/modules/ndk_http_module.so
[ -f "$lua_module" ] || { echo "bench-e2e: $lua_module is missing; run scripts/setup.sh" >&2; exit 1; }

if [ "$quick" = 1 ]; then
    # The dev profile, as `cargo test --workspace` leaves it (the workspace's
    # dev profile is optimised); built here only if missing, which is cheap
    # after the tests. No release build: that takes many minutes here.
    profile_dir="$target_dir/debug"
    if [ -z "$polyhost" ] && [ ! -x "$profile_dir/polyhost" ]; then
        cargo build --quiet -p polyhost-cli
    fi
    if [ ! -x "$profile_dir/polyhost-bench-e2e" ]; then
        cargo build --quiet -p polyhost-bench --bin polyhost-bench-e2e
    fi
    build="dev profile (\`target/debug\`)"
else
    # One invocation for both, so their shared dependencies resolve to the
    # same features and are compiled once.
    profile_dir="$target_dir/release"
    cargo build --release -p polyhost-cli -p polyhost-bench \
        --features polyhost-cli/all-engines,polyhost-bench/all-engines \
        --bin polyhost --bin polyhost-bench-e2e
    build="release profile, \`--features all-engines\`"
fi
polyhost="${polyhost:-$profile_dir/polyhost}"
helper="$profile_dir/polyhost-bench-e2e"
for lang in $languages; do
    dir="$lang"; [ "$lang" = rust ] && dir=rust-wasip1
    [ -f "build/plugins/$dir/bench_headers.wasm" ] || {
        echo "bench-e2e: build/plugins/$dir/bench_headers.wasm is missing; run scripts/setup.sh" >&2
        exit 1
    }
done
# Read whole first: `grep -q` closing the pipe early would fail the command.
have_engines="$("$polyhost" engines)"
for engine in $engines; do
    grep -qx "$engine\( (default)\)\?" <<<"$have_engines" || {
        echo "bench-e2e: $polyhost has no engine $engine (it has: $(tr '\n' ' ' <<<"$have_engines"))" >&2
        exit 1
    }
done

# --- a quiet machine ----------------------------------------------------------
if [ "$wait_quiet" = 1 ]; then
    wait_for_quiet_machine bench-e2e
else
    quiet_note="not waited for"
fi

# --- processes, ports, clean-up ---------------------------------------------
work="$(mktemp -d)"
pids=()
stop_all() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT
# Stops one process this script started and forgets it.
stop() {
    local p="$1" keep=()
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    pids=("${keep[@]+"${keep[@]}"}")
}

base="${E2E_PORT_BASE:-18480}"
up_port=$base polyhost_port=$((base + 1)) admin_port=$((base + 2))
nginx_port=$((base + 3))
for port in "$up_port" "$polyhost_port" "$admin_port" "$nginx_port"; do
    if ss -ltnH "sport = :$port" | grep -q .; then
        echo "bench-e2e: 127.0.0.1:$port is in use; set E2E_PORT_BASE to a free range" >&2
        exit 1
    fi
done


# The process and its children (nginx's workers), for CPU and RSS.
tree() {
    echo "$1"
    pgrep -P "$1" || true
}
clk_tck="$(getconf CLK_TCK)"
# User + system clock ticks of the processes given (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces).
ticks() {
    for p in "$@"; do sed 's/^.*) //' "/proc/$p/stat"; done | awk '{s += $12 + $13} END {print s + 0}'
}
rss_kib() {
    for p in "$@"; do awk '/^VmRSS/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s + 0}'
}

# --- the load generator -------------------------------------------------------
# wrk (Debian's) rather than h2load, which reports no percentiles, or oha,
# which Debian does not package. wrk runs for a duration, so this script
# stops each run after a fixed number of responses, and prints the
# percentiles from wrk's own histogram (1 µs resolution) in one line. wrk
# takes a response's time before calling `response`, so the hook adds nothing
# to the latencies; it delays the connection's next request by a little,
# the same for every setup. `thread:stop()` ends the load thread, but wrk's
# main thread sleeps out the whole duration unless interrupted, so the hook
# then has wrk sent SIGINT (the parent of the shell os.execute starts; in
# the background, as system() ignores SIGINT until it returns), which makes
# it report at once. Requests/s come from the load thread's own clock (wrk's
# duration would include that wake-up).
cat >"$work/count.lua" <<'EOF'
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } e2e_timespec;
int clock_gettime(int clock, e2e_timespec *t);
]]
local CLOCK_MONOTONIC = 1
local function now()
  local t = ffi.new("e2e_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, t)
  return tonumber(t.tv_sec) + tonumber(t.tv_nsec) / 1e9
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

-- Globals (`want` here, `elapsed` below), so that `done` can read them
-- through thread:get.
want = 0
local seen, started = 0, 0
function init(args)
  want = tonumber(args[1])
  started = now()
end
function response(status, headers, body)
  seen = seen + 1
  if seen == want then
    elapsed = now() - started
    wrk.thread:stop()
    os.execute("(sleep 0.02; kill -INT $PPID) >/dev/null 2>&1 &")
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local elapsed = threads[1]:get("elapsed")
  local rps
  if elapsed then
    rps = threads[1]:get("want") / elapsed
  else
    -- Stopped by the duration bound: the run is short and will be failed.
    rps = summary.requests / (summary.duration / 1e6)
  end
  io.write(string.format("E2E %d %d %.1f %.1f %.1f %.1f\n",
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout, rps,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF
results="$work/results.tsv"
printf 'workers\tconnections\tsetup\tlanguage\tengine\trequests\texpected\terrors\trps\tp50_us\tp99_us\tp999_us\trss_kib\tcpu_s\n' >"$results"

# wrk_run CONNECTIONS COUNT PORT: prints the E2E line (empty if wrk failed).
wrk_run() {
    wrk -t1 -c"$1" -d"${max_seconds}s" --timeout 5s "${bench_request_headers[@]}" \
        -s "$work/count.lua" "http://127.0.0.1:$3/api/v1/items?id=42" -- "$2" \
        2>"$work/wrk.err" | grep '^E2E ' || true
}

# measure WORKERS SETUP LANGUAGE ENGINE PORT PROXY_PID: one warm-up and one
# measured run per connection count, appended to the results.
measure() {
    local workers="$1" setup="$2" lang="$3" engine="$4" port="$5" proxy="$6"
    for conns in $connections_list; do
        wrk_run "$conns" "$warmup" "$port" >/dev/null
        local procs=() before=0 line rss="-" cpu="-"
        if [ -n "$proxy" ]; then
            mapfile -t procs < <(tree "$proxy")
            before="$(ticks "${procs[@]}")"
        fi
        line="$(wrk_run "$conns" "$requests" "$port")"
        if [ -n "$proxy" ]; then
            cpu="$(awk -v t="$(( $(ticks "${procs[@]}") - before ))" -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')"
            rss="$(rss_kib "${procs[@]}")"
        fi
        if [ -z "$line" ]; then
            echo "bench-e2e: wrk gave no result for $setup $lang $engine ($conns connections): $(cat "$work/wrk.err")" >&2
            # A row with nothing done, so the report step names it.
            line="E2E 0 0 0 0 0 0"
        fi
        read -r _ done errors rps p50 p99 p999 <<<"$line"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$workers" "$conns" "$setup" "$lang" "$engine" "$done" "$requests" "$errors" \
            "$rps" "$p50" "$p99" "$p999" "$rss" "$cpu" >>"$results"
        printf 'bench-e2e: %-16s %-14s %-15s %s workers %2s conns: %8s req/s  p50 %7s us  p99 %7s us  p99.9 %7s us  errors %s\n' \
            "$setup" "$lang" "$engine" "$workers" "$conns" "$rps" "$p50" "$p99" "$p999" "$errors"
    done
}

# --- the setups --------------------------------------------------------------
# nginx_conf WORKERS LUA(0|1): the baseline's configuration. Keep-alive to
# the upstream (HTTP/1.1, no Connection header) as Pingora does by default,
# no access log, as `polyhost run` has none here either.
nginx_conf() {
    local workers="$1" lua="$2"
    mkdir -p "$work/nginx"
    if [ "$lua" = 1 ]; then
        echo "load_module $ndk_module;"
        echo "load_module $lua_module;"
    fi
    cat <<EOF
worker_processes $workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    upstream upstream {
        server 127.0.0.1:$up_port;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
EOF
    if [ "$lua" = 1 ]; then
        # The plugin's work (plugins/rust/bench_headers): 20 adds, 20 gets,
        # 20 removes on the request headers. A get goes through ngx.var, one
        # lookup per name as proxy_get_header_map_value is (get_headers()
        # would copy every header per call); a missing header ends the
        # request with 500, so a broken filter shows as errors, and the
        # upstream answers 500 if a fake_key_ header reaches it.
        cat <<'EOF'
            access_by_lua_block {
                local set, clear, var = ngx.req.set_header, ngx.req.clear_header, ngx.var
                for i = 0, 19 do set("fake_key_" .. i, "fake_value_" .. i) end
                for i = 0, 19 do
                    if not var["http_fake_key_" .. i] then return ngx.exit(500) end
                end
                for i = 0, 19 do clear("fake_key_" .. i) end
            }
EOF
    fi
    echo "        }"
    echo "    }"
    echo "}"
}

run_nginx() {
    local workers="$1" lua="$2" setup=nginx
    [ "$lua" = 1 ] && setup=nginx-lua
    nginx_conf "$workers" "$lua" >"$work/nginx.conf"
    nginx -p "$work/nginx" -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx-stderr.log" &
    local pid=$!
    pids+=("$pid")
    wait_http bench-e2e "http://127.0.0.1:$nginx_port/" || { cat "$work/nginx-stderr.log" "$work/nginx/error.log" >&2 || true; exit 1; }
    measure "$workers" "$setup" - - "$nginx_port" "$pid"
    stop "$pid"
}

run_polyhost() {
    local workers="$1" lang="$2" engine="$3" plugin="" setup=polyhost
    if [ "$lang" != - ]; then
        local dir="$lang"
        [ "$lang" = rust ] && dir=rust-wasip1
        plugin="$root/build/plugins/$dir/bench_headers.wasm"
        setup=polyhost-plugin
    fi
    polyhost_bench_conf "$plugin" "$engine" "$polyhost_port" "$up_port" "$admin_port" >"$work/envoy.yaml"
    # Log level warning: no per-request lines, as nginx has no access log;
    # plugins log at that level too.
    "$polyhost" run -c "$work/envoy.yaml" --concurrency "$workers" --base-id 4848 -l warning \
        2>"$work/polyhost.log" &
    local pid=$!
    pids+=("$pid")
    wait_http bench-e2e "http://127.0.0.1:$admin_port/ready" || { cat "$work/polyhost.log" >&2; exit 1; }
    measure "$workers" "$setup" "$lang" "$engine" "$polyhost_port" "$pid"
    if grep -qiE '\]\[(error|critical)\]' "$work/polyhost.log"; then
        echo "bench-e2e: polyhost logged errors for $setup $lang $engine:" >&2
        grep -m5 -iE '\]\[(error|critical)\]' "$work/polyhost.log" >&2
    fi
    stop "$pid"
}

# --- the run ------------------------------------------------------------------
commit="$(report_commit)"
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit=$commit"
    echo "machine=${cpu_model:-unknown CPU}, $(nproc) cores (\`nproc\`), Linux $(uname -r)"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg) (machine quiet: $quiet_note)"
    echo "command=$command_line"
    echo "build=$build"
    echo "upstream=\`polyhost-bench-e2e upstream\`: fixed 200, 24-byte body, HTTP/1.1 keep-alive, a thread per connection (std only); answers 500 if a \`fake_key_\` header reaches it"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //') with lua-nginx-module $(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?') (Debian), upstream keep-alive, no access log"
    echo "wrk=wrk $(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?') (Debian): 1 thread, a Lua hook stops each run at the request count; 1 µs latency resolution"
    echo "requests=$requests measured per run, after a warm-up of $warmup on the same process; runs bounded by ${max_seconds} s"
} >"$work/meta.txt"

"$helper" upstream --listen "127.0.0.1:$up_port" 2>"$work/upstream.log" &
pids+=("$!")
wait_http bench-e2e "http://127.0.0.1:$up_port/"

started=$SECONDS
for workers in $workers_list; do
    measure "$workers" direct - - "$up_port" ""
    run_nginx "$workers" 0
    run_nginx "$workers" 1
    run_polyhost "$workers" - -
    for lang in $languages; do
        for engine in $engines; do
            run_polyhost "$workers" "$lang" "$engine"
        done
    done
done
echo "bench-e2e: measured in $((SECONDS - started)) s"

# --- the report -----------------------------------------------------------------
mkdir -p "$out"
# Raw rows and the rendered section, never committed.
keep="$target_dir/bench-e2e"
[ "$quick" = 1 ] && keep="$out"
mkdir -p "$keep"
cp "$results" "$keep/results.tsv"
cp "$work/meta.txt" "$keep/meta.txt"
status=0
"$helper" report --results "$results" --meta "$work/meta.txt" \
    --markdown "$keep/section.md" --chart "$out/chart-e2e.svg" --chart-link chart-e2e.svg || status=$?

# The section lives in REPORT.md between its markers: replaced in place, or
# appended the first time. (scripts/bench-report.sh keeps it when it
# regenerates the in-process part.)
report="$out/REPORT.md"
put_report_section bench-e2e "$keep/section.md" "$report"
if [ "$status" != 0 ]; then
    echo "bench-e2e: FAILED: see the messages above; raw results in $keep/results.tsv" >&2
    exit "$status"
fi
echo "bench-e2e: wrote $report and $out/chart-e2e.svg (raw results in $keep/)"
