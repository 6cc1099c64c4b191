# Shell functions the benchmark scripts share (sourced, not run):
# waiting for a quiet machine and putting a section into bench/REPORT.md.

# wait_for_quiet_machine NAME
# Other people compile on this 2-core machine, and a compile during a run
# moves the numbers far more than anything measured. Waits for 60 s in a row
# without rustc (checked every 15 s), for at most 20 minutes, then goes on
# anyway and says so. Sets `quiet_note` for the report's metadata.
wait_for_quiet_machine() {
    local name="$1" quiet=0 waited=0
    while [ "$quiet" -lt 5 ] && [ "$waited" -lt 1200 ]; do
        if pgrep -x rustc >/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
        [ "$quiet" -lt 5 ] || break
        sleep 15
        waited=$((waited + 15))
    done
    if [ "$quiet" -lt 5 ]; then
        echo "$name: the machine did not go quiet in 20 minutes; measuring anyway" >&2
        quiet_note="no (rustc still running after 20 minutes of waiting)"
    else
        quiet_note="yes (no rustc for 60 s before the start)"
    fi
}

# put_report_section NAME SECTION_FILE REPORT_FILE
# SECTION_FILE starts with `<!-- NAME:begin -->` and ends with
# `<!-- NAME:end -->`. It replaces the lines between (and including) those
# markers in REPORT_FILE, or is appended the first time; the rest of the
# report is left as it was.
put_report_section() {
    local name="$1" section="$2" report="$3" new
    touch "$report"
    new="$(mktemp)"
    awk -v section="$section" -v begin="<!-- $name:begin -->" -v end="<!-- $name:end -->" '
        $0 == begin { while ((getline line < section) > 0) print line; skip = 1; done = 1; next }
        $0 == end { skip = 0; next }
        !skip { print }
        END { if (!done) { print ""; while ((getline line < section) > 0) print line } }
    ' "$report" >"$new"
    cp "$new" "$report"
    rm -f "$new"
}

# report_commit
# The commit a report was measured at, with "+ uncommitted changes" when the
# tree differs from it (the report itself and build outputs aside).
report_commit() {
    local commit
    commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ "$commit" != unknown ] &&
        [ -n "$(git status --porcelain -- . ':!bench/REPORT.md' ':!bench/chart*.svg' ':!build' 2>/dev/null)" ]; then
        commit="$commit + uncommitted changes"
    fi
    echo "$commit"
}

# Headers of a typical API request (as in bench/src/workload.rs), so the
# proxies parse and forward a realistic head.
bench_request_headers=(
    -H "user-agent: curl/8.5.0" -H "accept: */*" -H "accept-encoding: gzip, deflate"
    -H "x-request-id: 6f1d8a0e-2c4b-4f7e-9a51-3b2e8c9d0f12" -H "x-forwarded-for: 203.0.113.7"
)

# polyhost_bench_conf PLUGIN ENGINE LISTEN_PORT UPSTREAM_PORT ADMIN_PORT
# The data plane's configuration for the end-to-end benchmark and the
# proxy profile: the `bench_headers` plugin PLUGIN on ENGINE in front of
# the router (or the router alone when PLUGIN is empty), on 127.0.0.1.
polyhost_bench_conf() {
    local plugin="$1" engine="$2" polyhost_port="$3" up_port="$4" admin_port="$5"
    cat <<EOF
static_resources:
  listeners:
  - name: bench
    address:
      socket_address: { address: 127.0.0.1, port_value: $polyhost_port }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream, timeout: 5s }
          http_filters:
EOF
    if [ -n "$plugin" ]; then
        cat <<EOF
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bench_headers
                vm_config:
                  runtime: $engine
                  code: { local: { filename: $plugin } }
EOF
    fi
    cat <<EOF
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: $up_port }
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: $admin_port }
EOF
}

# wait_http NAME URL
# Waits until URL answers (anything but a refused connection), for 30 s;
# says so, as NAME, and fails if it never does.
wait_http() {
    local name="$1" url="$2"
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "$url" && return 0
        sleep 0.1
    done
    echo "$name: $url did not come up" >&2
    return 1
}
