use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::{decode_base64, parse_duration};
use super::*;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name)
}

fn fixture(name: &str) -> Bootstrap {
    let path = fixture_path(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn yaml(text: &str) -> Result<Bootstrap, ConfigError> {
    parse(text, Format::Yaml)
}

/// The error a configuration must fail with, as `(path, message)`.
fn fails(text: &str) -> (String, String) {
    match yaml(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => (e.path().to_string(), e.message().to_string()),
    }
}

fn http(listener: &Listener) -> &HttpConnectionManager {
    match &listener.kind {
        ListenerKind::Http(hcm) => hcm,
        ListenerKind::Tcp(_) => panic!("listener {} is TCP", listener.name),
    }
}

fn tcp(listener: &Listener) -> &TcpProxy {
    match &listener.kind {
        ListenerKind::Tcp(proxy) => proxy,
        ListenerKind::Http(_) => panic!("listener {} is HTTP", listener.name),
    }
}

fn no_headers(_: &str) -> Option<&'static str> {
    None
}

/// A complete, valid bootstrap to derive error cases from: a listener with
/// one Wasm HTTP filter and the router, routing to cluster `backend`.
const BASE: &str = r#"
static_resources:
  listeners:
    - name: main
      address:
        socket_address: { address: 0.0.0.0, port_value: 8080 }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: main
                route_config:
                  name: routes
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: "/" }
                          route: { cluster: backend }
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        vm_config:
                          code: { local: { filename: plugin.wasm } }
                  - name: envoy.filters.http.router
  clusters:
    - name: backend
      connect_timeout: 1s
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: { address: 127.0.0.1, port_value: 9000 }
"#;

/// `BASE` with one substring replaced, which must be present.
fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

const HCM_AT: &str = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

#[test]
fn base_loads() {
    let b = yaml(BASE).unwrap();
    assert_eq!(b.listeners.len(), 1);
    assert_eq!(
        b.clusters[0].endpoints,
        [Endpoint {
            host: "127.0.0.1".into(),
            port: 9000
        }]
    );
    let hcm = http(&b.listeners[0]);
    assert_eq!(hcm.wasm_filters.len(), 1);
    assert_eq!(
        hcm.wasm_filters[0].code,
        WasmCode::File("plugin.wasm".into())
    );
    assert_eq!(
        hcm.wasm_filters[0].name, "",
        "Envoy leaves an absent plugin name empty"
    );
    assert_eq!(
        hcm.wasm_filters[0].failure_policy,
        FailurePolicy::FailClosed
    );
    assert_eq!(hcm.codec, Codec::Auto);
}

// ---- fixtures in the shapes users bring -----------------------------------

#[test]
fn rust_sdk_http_shape() {
    let b = fixture("rust-sdk-http.yaml");
    assert_eq!(b.listeners.len(), 1, "a single map counts as a list of one");
    let l = &b.listeners[0];
    assert_eq!(
        l.name, "0.0.0.0:10000",
        "an unnamed listener is named after its address"
    );
    let hcm = http(l);
    assert_eq!(hcm.stat_prefix, "ingress_http");
    assert_eq!(hcm.route_config_name, "example_routes");
    let plugin = &hcm.wasm_filters[0];
    assert_eq!(plugin.name, "header_stamper");
    assert_eq!(plugin.engine, None, "v8 means Polyhost's default engine");
    assert_eq!(plugin.configuration, b"stamp-value");
    assert_eq!(
        plugin.code,
        WasmCode::File("/opt/plugins/header_stamper.wasm".into())
    );
    let vh = &hcm.virtual_hosts[0];
    assert_eq!(
        vh.routes[0].action,
        RouteAction::DirectResponse {
            status: 200,
            body: b"served by the proxy\n".to_vec()
        }
    );
    let backend = b.cluster("backend").unwrap();
    assert_eq!(backend.discovery, Discovery::StrictDns);
    assert_eq!(backend.connect_timeout, Duration::from_secs(5000));
    assert_eq!(
        backend.endpoints,
        [Endpoint {
            host: "backend.internal".into(),
            port: 8080
        }]
    );
    assert!(!backend.http2);
    assert_eq!(b.admin, None);
}

#[test]
fn rust_sdk_tcp_shape() {
    let b = fixture("rust-sdk-tcp.yaml");
    let l = &b.listeners[0];
    assert_eq!(
        l.address,
        "[::]:10001".parse::<std::net::SocketAddr>().unwrap()
    );
    let proxy = tcp(l);
    assert_eq!(proxy.stat_prefix, "tcp_out");
    assert_eq!(proxy.cluster, "upstream_a");
    let plugin = &proxy.wasm_filters[0];
    assert_eq!(plugin.name, "tcp_picker");
    assert_eq!(plugin.root_id, "tcp_picker_root");
    assert_eq!(plugin.vm_id, "vm.tcp_picker");
    assert!(plugin.allow_precompiled);
    assert_eq!(plugin.configuration, b"pick-first");
    assert_eq!(
        plugin.code,
        WasmCode::File("plugins/tcp_picker.wasm".into()),
        "relative paths stay as written"
    );
    assert_eq!(
        b.cluster("upstream_b").unwrap().discovery,
        Discovery::LogicalDns
    );
    assert_eq!(
        b.admin,
        Some(Admin {
            address: "127.0.0.1:9901".parse::<std::net::SocketAddr>().unwrap()
        })
    );
}

#[test]
fn higress_shape() {
    let b = fixture("higress-plugin.yaml");
    let hcm = http(&b.listeners[0]);
    assert_eq!(hcm.scheme_to_overwrite.as_deref(), Some("https"));
    let plugin = &hcm.wasm_filters[0];
    assert_eq!(
        plugin.name, "mock-responder",
        "recognised by type_url despite its custom filter name"
    );
    let config: serde_json::Value = serde_json::from_slice(&plugin.configuration).unwrap();
    assert_eq!(
        config,
        serde_json::json!({"enabled": true, "reply": "mocked"})
    );
    assert!(b.cluster("outbound|6379||cache.static").is_some());
    assert_eq!(
        b.admin.as_ref().unwrap().address,
        "0.0.0.0:9901".parse::<std::net::SocketAddr>().unwrap()
    );
}

#[test]
fn bootstrap_wasm_services() {
    let b = fixture("bootstrap-wasm.yaml");
    assert_eq!(b.node.id, "polyhost-test-node");
    assert_eq!(b.node.cluster, "polyhost-test");
    assert_eq!(
        b.node.metadata,
        serde_json::json!({"region": "eu-west", "shard": 3})
    );

    let [first, second] = &b.wasm_services[..] else {
        panic!("expected two services, got {:?}", b.wasm_services);
    };
    assert!(first.singleton);
    assert!(!second.singleton);
    assert_eq!(first.vm_id, second.vm_id);
    assert_eq!(first.root_id, "collector_root");
    assert_eq!(first.configuration, b"queue:requests");
    assert_eq!(
        first.vm_configuration, b"vm-settings",
        "BytesValue is base64"
    );
    assert_eq!(
        first.engine, None,
        "envoy.wasm.runtime.wasmtime is the default engine"
    );
    assert_eq!(
        first.env,
        [
            ("LEVEL".to_string(), "debug".to_string()),
            ("MODE".to_string(), "collect".to_string())
        ]
    );
    assert_eq!(first.host_env_keys, ["HOME", "PATH"]);
    assert_eq!(first.code, WasmCode::File("./build/collector.wasm".into()));
    let struct_config: serde_json::Value = serde_json::from_slice(&second.configuration).unwrap();
    assert_eq!(
        struct_config,
        serde_json::json!({"queue": "responses", "depth": 8})
    );
    assert_eq!(second.engine.as_deref(), Some("wasmi"));
    assert_eq!(second.code, WasmCode::Inline(b"\0asm\x01\0\0\0".to_vec()));

    let hcm = http(&b.listeners[0]);
    assert_eq!(hcm.codec, Codec::Http1);
    let [feeder, limits] = &hcm.wasm_filters[..] else {
        panic!("expected two filters");
    };
    assert_eq!(
        feeder.failure_policy,
        FailurePolicy::FailOpen,
        "legacy fail_open"
    );
    assert_eq!(feeder.code, WasmCode::Inline(b"not really wasm".to_vec()));
    let typed: serde_json::Value = serde_json::from_slice(&feeder.configuration).unwrap();
    assert_eq!(
        typed,
        serde_json::json!({"queue": "requests"}),
        "TypedStruct gives its value"
    );
    assert_eq!(limits.failure_policy, FailurePolicy::FailReload);
    assert_eq!(limits.engine.as_deref(), Some("wasmtime-winch"));
    let other: serde_json::Value = serde_json::from_slice(&limits.configuration).unwrap();
    assert_eq!(
        other,
        serde_json::json!({"max": 10}),
        "other messages: fields without @type"
    );
}

#[test]
fn h2_clusters_and_durations() {
    let b = fixture("h2-clusters.yaml");
    assert_eq!(
        b.admin.as_ref().unwrap().address,
        "[::1]:9902".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(http(&b.listeners[0]).codec, Codec::Http2);

    let legacy = b.cluster("legacy_h2").unwrap();
    assert!(legacy.http2);
    assert_eq!(legacy.discovery, Discovery::Static);
    assert_eq!(legacy.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        legacy.endpoints[1],
        Endpoint {
            host: "fd00::2".into(),
            port: 50051
        }
    );

    let modern = b.cluster("modern_h2").unwrap();
    assert!(modern.http2);
    assert_eq!(modern.connect_timeout, Duration::from_secs(1));
    assert_eq!(modern.endpoints.len(), 2, "localities are flattened");

    let plain = b.cluster("plain_h1").unwrap();
    assert!(!plain.http2);
    assert_eq!(plain.connect_timeout, DEFAULT_CONNECT_TIMEOUT);

    let routes = &http(&b.listeners[0]).virtual_hosts[0].routes;
    let timeout = |i: usize| match &routes[i].action {
        RouteAction::Cluster { timeout, .. } => *timeout,
        other => panic!("{other:?}"),
    };
    assert_eq!(timeout(0), Some(Duration::ZERO), "0s disables the timeout");
    assert_eq!(timeout(1), Some(Duration::from_millis(2500)));
    assert_eq!(timeout(2), None, "absent: Envoy's 15s default applies");
}

#[test]
fn go_sdk_shape() {
    let b = fixture("go-sdk-shape.yaml");
    assert_eq!(b.listeners.len(), 3);
    let main = http(&b.listeners[0]);
    assert_eq!(main.wasm_filters.len(), 2);
    assert_eq!(main.wasm_filters[0].configuration, b"first");
    assert_eq!(main.wasm_filters[1].configuration, b"second");
    let tagged = &main.virtual_hosts[0].routes[0];
    assert_eq!(
        tagged.metadata["envoy.filters.http.wasm"]["audience"],
        "internal"
    );
    let responder = http(&b.listeners[1]);
    assert_eq!(
        responder.virtual_hosts[0].routes[0].action,
        RouteAction::DirectResponse {
            status: 503,
            body: Vec::new()
        }
    );
    let proxy = tcp(&b.listeners[2]);
    assert_eq!(proxy.wasm_filters.len(), 1);
    assert_eq!(proxy.idle_timeout, Some(DEFAULT_TCP_IDLE_TIMEOUT));
    let cluster = b.cluster("responder").unwrap();
    assert_eq!(
        cluster.discovery,
        Discovery::Static,
        "lower-case enum names"
    );
    assert_eq!(cluster.metadata["location"]["zone"], "local-a");
}

#[test]
fn json_routing_fixture() {
    let path = fixture_path("routing.json");
    assert_eq!(Format::from_path(&path), Format::Json);
    let b = fixture("routing.json");
    let hosts = &http(&b.listeners[0]).virtual_hosts;
    assert_eq!(
        hosts[0].domains,
        ["api.example.com", "api.example.com:8443"],
        "domains are lower-cased"
    );

    let api = select_virtual_host(hosts, "API.Example.com").unwrap();
    let beta = |name: &str| match name {
        "x-beta" => Some("YES"),
        _ => None,
    };
    let route = api.route("/v2/users?id=1", beta).unwrap();
    assert_eq!(route.name, "v2-beta");
    assert_eq!(
        route.action,
        RouteAction::Cluster {
            cluster: crate::config::ClusterSpecifier::Name("api_beta".into()),
            prefix_rewrite: Some("/".into()),
            timeout: Some(Duration::from_millis(1500)),
            host_rewrite_literal: Some("beta.internal".into()),
        }
    );
    let blocked = |name: &str| match name {
        "x-beta" => Some("yes"),
        "x-blocked" => Some(""),
        _ => None,
    };
    assert_eq!(api.route("/v2/users", blocked).unwrap().name, "rest");
    assert_eq!(api.route("/items/42", no_headers).unwrap().name, "items");
    assert_eq!(api.route("/items/42/x", no_headers).unwrap().name, "rest");
    let health = api.route("/HEALTH?verbose", no_headers).unwrap();
    assert_eq!(
        health.action,
        RouteAction::DirectResponse {
            status: 200,
            body: b"ok".to_vec()
        }
    );

    assert_eq!(
        select_virtual_host(hosts, "www.example.com").unwrap().name,
        "wildcard-suffix"
    );
    assert_eq!(
        select_virtual_host(hosts, "other.test").unwrap().name,
        "fallback"
    );
}

#[test]
fn load_names_the_file_in_errors() {
    let dir = std::env::temp_dir().join(format!("polyhost-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        base_with("connect_timeout: 1s", "connect_timeout: 1m"),
    )
    .unwrap();
    let e = load(&file).unwrap_err();
    assert_eq!(e.file(), Some(file.as_path()));
    assert_eq!(e.path(), "static_resources.clusters[0].connect_timeout");
    assert!(
        e.to_string().starts_with(&format!(
            "{}: static_resources.clusters[0].connect_timeout: ",
            file.display()
        )),
        "{e}"
    );

    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    let e = load(&big).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.message().contains("larger than 16777216 bytes"), "{e}");

    let e = load(&dir.join("missing.yaml")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- errors name the path -------------------------------------------------

#[test]
fn unknown_http_filter() {
    let text = base_with(
        "                  - name: envoy.filters.http.router",
        "                  - name: envoy.filters.http.lua\n                    typed_config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua\n                  - name: envoy.filters.http.router",
    );
    let (path, message) = fails(&text);
    assert_eq!(path, format!("{HCM_AT}.http_filters[1]"));
    assert_eq!(message, "filter envoy.filters.http.lua is not supported");
    let e = yaml(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{HCM_AT}.http_filters[1]: filter envoy.filters.http.lua is not supported")
    );
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn optional_unknown_http_filter_is_skipped() {
    let text = base_with(
        "                  - name: envoy.filters.http.router",
        "                  - name: envoy.filters.http.lua\n                    is_optional: true\n                  - name: envoy.filters.http.router",
    );
    assert_eq!(
        http(&yaml(&text).unwrap().listeners[0]).wasm_filters.len(),
        1
    );
}

#[test]
fn unknown_network_filter() {
    let text = base_with(
        "            - name: envoy.filters.network.http_connection_manager",
        "            - name: envoy.filters.network.redis_proxy\n              typed_config:\n                \"@type\": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy\n            - name: envoy.filters.network.http_connection_manager",
    );
    let (path, message) = fails(&text);
    assert_eq!(
        path,
        "static_resources.listeners[0].filter_chains[0].filters[0]"
    );
    assert_eq!(
        message,
        "filter envoy.filters.network.redis_proxy is not supported"
    );
}

#[test]
fn unknown_field_in_supported_message() {
    let (path, message) = fails(&base_with(
        "connect_timeout: 1s",
        "connect_timeout: 1s\n      conect_timeout: 2s",
    ));
    assert_eq!(path, "static_resources.clusters[0].conect_timeout");
    assert_eq!(
        message,
        "unknown or unsupported field `conect_timeout` in Cluster"
    );

    let (path, _) = fails(&base_with(
        "stat_prefix: main",
        "stat_prefix: main\n                rds: {}",
    ));
    assert_eq!(path, format!("{HCM_AT}.rds"));

    let (path, _) = fails(&base_with(
        "- match: { prefix: \"/\" }",
        "- match: { prefix: \"/\", grpc: {} }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].routes[0].match.grpc")
    );
}

#[test]
fn ignored_fields_are_accepted() {
    let text = base_with("connect_timeout: 1s", "connect_timeout: 1s\n      dns_lookup_family: V4_ONLY\n      lb_policy: LEAST_REQUEST")
        .replacen("stat_prefix: main", "stat_prefix: main\n                use_remote_address: true\n                generate_request_id: false", 1);
    yaml(&text).unwrap();
}

#[test]
fn router_missing_or_not_last() {
    let (path, message) = fails(&base_with(
        "                  - name: envoy.filters.http.router\n",
        "",
    ));
    assert_eq!(path, format!("{HCM_AT}.http_filters"));
    assert_eq!(
        message,
        "the last HTTP filter must be envoy.filters.http.router"
    );

    let moved = base_with("                  - name: envoy.filters.http.router\n", "").replacen(
        "                http_filters:\n",
        "                http_filters:\n                  - name: envoy.router\n",
        1,
    );
    let (path, message) = fails(&moved);
    assert_eq!(path, format!("{HCM_AT}.http_filters[0]"));
    assert!(
        message.starts_with("envoy.filters.http.router must be the last HTTP filter"),
        "{message}"
    );
}

#[test]
fn unknown_cluster() {
    let (path, message) = fails(&base_with(
        "route: { cluster: backend }",
        "route: { cluster: nowhere }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].routes[0].route.cluster")
    );
    assert_eq!(message, "unknown cluster \"nowhere\"");
}

#[test]
fn unknown_tcp_proxy_cluster() {
    let text = r#"
static_resources:
  listeners:
    - address: { socket_address: { address: 0.0.0.0, port_value: 1 } }
      filter_chains:
        - filters:
            - name: envoy.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                cluster: missing
"#;
    let (path, message) = fails(text);
    assert_eq!(
        path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster"
    );
    assert_eq!(message, "unknown cluster \"missing\"");
}

#[test]
fn tcp_proxy_idle_timeout() {
    let with = |timeout: &str| {
        format!(
            r#"
static_resources:
  listeners:
    - address: {{ socket_address: {{ address: 0.0.0.0, port_value: 1 }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                cluster: backend
                idle_timeout: {timeout}
  clusters:
    - name: backend
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 2 }} }} }}
"#
        )
    };
    let idle = |timeout: &str| {
        let b = yaml(&with(timeout)).unwrap_or_else(|e| panic!("{timeout}: {e}"));
        tcp(&b.listeners[0]).idle_timeout
    };
    assert_eq!(idle("2.5s"), Some(Duration::from_millis(2500)));
    assert_eq!(idle("0s"), None, "0s turns the timeout off");
    let (path, message) = fails(&with("soon"));
    assert_eq!(
        path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.idle_timeout"
    );
    assert!(message.starts_with("invalid duration"), "{message}");
}

#[test]
fn cluster_dns_refresh_rate() {
    let rate = |text: &str| yaml(text).unwrap().clusters[0].dns_refresh_rate;
    assert_eq!(
        rate(BASE),
        DEFAULT_DNS_REFRESH_RATE,
        "Envoy's 5 s when absent"
    );
    let set = base_with(
        "connect_timeout: 1s",
        "connect_timeout: 1s\n      dns_refresh_rate: 30s",
    );
    assert_eq!(rate(&set), Duration::from_secs(30));
    let (path, message) = fails(&base_with(
        "connect_timeout: 1s",
        "connect_timeout: 1s\n      dns_refresh_rate: 0.001s",
    ));
    assert_eq!(path, "static_resources.clusters[0].dns_refresh_rate");
    assert!(message.contains("more than 1ms"), "{message}");
}

#[test]
fn bad_duration() {
    let (path, message) = fails(&base_with("connect_timeout: 1s", "connect_timeout: 1m"));
    assert_eq!(path, "static_resources.clusters[0].connect_timeout");
    assert!(message.starts_with("invalid duration \"1m\""), "{message}");

    let (path, _) = fails(&base_with(
        "connect_timeout: 1s",
        "connect_timeout: { seconds: 1, nanos: 1000000000 }",
    ));
    assert_eq!(path, "static_resources.clusters[0].connect_timeout");

    let (path, _) = fails(&base_with(
        "route: { cluster: backend }",
        "route: { cluster: backend, timeout: \"-1s\" }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].routes[0].route.timeout")
    );
}

#[test]
fn remote_code() {
    let (path, message) = fails(&base_with(
        "code: { local: { filename: plugin.wasm } }",
        "code: { remote: { http_uri: { uri: \"https://example.com/p.wasm\" }, sha256: abc } }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.http_filters[0].typed_config.config.vm_config.code.remote")
    );
    assert!(
        message.starts_with("remote code is not supported"),
        "{message}"
    );
}

#[test]
fn null_runtime() {
    let (path, message) = fails(&base_with(
        "vm_config:\n",
        "vm_config:\n                          runtime: envoy.wasm.runtime.null\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.http_filters[0].typed_config.config.vm_config.runtime")
    );
    assert!(message.contains("not supported"), "{message}");
}

#[test]
fn listener_address_not_ip() {
    let (path, message) = fails(&base_with(
        "address: 0.0.0.0, port_value: 8080",
        "address: localhost, port_value: 8080",
    ));
    assert_eq!(
        path,
        "static_resources.listeners[0].address.socket_address.address"
    );
    assert!(
        message.starts_with("\"localhost\" is not an IP address"),
        "{message}"
    );
}

#[test]
fn single_value_lists_keep_their_path() {
    let text = r#"
static_resources:
  listeners:
    address: { socket_address: { address: my-host, port_value: 1 } }
"#;
    let (path, _) = fails(text);
    assert_eq!(
        path,
        "static_resources.listeners.address.socket_address.address"
    );
}

#[test]
fn static_cluster_needs_ips() {
    let (path, _) = fails(&base_with(
        "address: 127.0.0.1, port_value: 9000",
        "address: db.local, port_value: 9000",
    ));
    assert_eq!(
        path,
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address"
    );
}

#[test]
fn duplicate_cluster() {
    let second = "\n    - name: backend\n      type: STRICT_DNS\n";
    let (path, message) = fails(&format!("{BASE}{second}"));
    assert_eq!(path, "static_resources.clusters[1].name");
    assert!(
        message.starts_with("duplicate cluster name \"backend\""),
        "{message}"
    );
}

#[test]
fn duplicate_listener_name_and_port() {
    let listener = BASE
        .split("  clusters:")
        .next()
        .unwrap()
        .split("  listeners:\n")
        .nth(1)
        .unwrap();
    let twice = BASE.replacen(listener, &format!("{listener}{listener}"), 1);
    let (path, message) = fails(&twice);
    assert_eq!(path, "static_resources.listeners[1].name");
    assert_eq!(message, "duplicate listener name \"main\"");

    let other_name = BASE.replacen(
        listener,
        &format!(
            "{listener}{}",
            listener
                .replace("name: main", "name: other")
                .replace("0.0.0.0", "127.0.0.1")
        ),
        1,
    );
    let (path, message) = fails(&other_name);
    assert_eq!(path, "static_resources.listeners[1].address");
    assert!(message.contains("overlaps listener \"main\""), "{message}");
}

#[test]
fn failure_policy_contradiction() {
    let (path, message) = fails(&base_with(
        "vm_config:\n",
        "fail_open: true\n                        failure_policy: FAIL_CLOSED\n                        vm_config:\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.http_filters[0].typed_config.config.failure_policy")
    );
    assert!(message.contains("contradicts fail_open"), "{message}");

    let agreeing = base_with(
        "vm_config:\n",
        "fail_open: true\n                        failure_policy: fail_open\n                        vm_config:\n",
    );
    let b = yaml(&agreeing).unwrap();
    assert_eq!(
        http(&b.listeners[0]).wasm_filters[0].failure_policy,
        FailurePolicy::FailOpen
    );
}

#[test]
fn wrong_type_names_the_field() {
    let (path, message) = fails(&base_with("port_value: 9000", "port_value: 70000"));
    assert_eq!(
        path,
        "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"
    );
    assert!(message.contains("out of range"), "{message}");

    let (path, _) = fails(&base_with("stat_prefix: main", "stat_prefix: [main]"));
    assert_eq!(path, format!("{HCM_AT}.stat_prefix"));
}

#[test]
fn typed_config_type_is_checked() {
    // A Wasm filter whose typed_config is the router's type is a router,
    // as in Envoy, so the real router after it is out of place.
    let (path, _) = fails(&base_with(
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.http_filters[0].typed_config.config")
    );

    let (path, message) = fails(&base_with(
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "\"@type\": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
    ));
    assert_eq!(path, format!("{HCM_AT}.http_filters[0]"));
    assert_eq!(message, "envoy.filters.http.wasm is not an HTTP filter");
}

#[test]
fn typed_struct_errors_point_inside_value() {
    let text = r#"
static_resources:
  listeners:
    - address: { socket_address: { address: 0.0.0.0, port_value: 1 } }
      filter_chains:
        - filters:
            - name: hcm
              typed_config:
                "@type": type.googleapis.com/xds.type.v3.TypedStruct
                type_url: type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                value:
                  stat_prefix: x
                  codec_type: HTTP9
"#;
    let (path, message) = fails(text);
    assert_eq!(
        path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.value.codec_type"
    );
    assert!(message.starts_with("unknown codec_type HTTP9"), "{message}");
}

#[test]
fn syntax_errors_and_empty_documents() {
    let e = yaml("static_resources: [").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    assert_eq!(e.path(), "");
    let e = parse("{", Format::Json).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Syntax);
    let empty = yaml("").unwrap();
    assert!(empty.listeners.is_empty() && empty.clusters.is_empty());
    assert_eq!(empty.node, Node::default());
    let (path, _) = fails("static_resources: 3");
    assert_eq!(path, "static_resources");
}

#[test]
fn yaml_merge_keys() {
    let text = r#"
x-endpoint: &endpoint
  socket_address: { address: 127.0.0.1, port_value: 1 }
"#;
    // Unknown top-level field: anchors must live inside known fields.
    assert_eq!(fails(text).0, "x-endpoint");
    let text = r#"
static_resources:
  clusters:
    - &common
      name: a
      connect_timeout: 2s
    - <<: *common
      name: b
"#;
    let b = yaml(text).unwrap();
    assert_eq!(
        b.cluster("b").unwrap().connect_timeout,
        Duration::from_secs(2)
    );
}

// ---- virtual host selection and route matching -------------------------------

fn vhost(name: &str, domains: &[&str]) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes: Vec::new(),
        headers: Default::default(),
    }
}

#[test]
fn virtual_host_precedence() {
    let hosts = [
        vhost("default", &["*"]),
        vhost("prefix-short", &["foo.*"]),
        vhost("prefix-long", &["foo.bar.*"]),
        vhost("suffix-short", &["*.com"]),
        vhost("suffix-long", &["*.bar.com"]),
        vhost("exact", &["foo.bar.com"]),
        vhost("canary", &["*-canary"]),
    ];
    let pick = |authority: &str| select_virtual_host(&hosts, authority).map(|v| v.name.as_str());
    assert_eq!(pick("foo.bar.com"), Some("exact"));
    assert_eq!(pick("FOO.Bar.COM"), Some("exact"), "case-insensitive");
    assert_eq!(
        pick("x.bar.com"),
        Some("suffix-long"),
        "longest suffix wins"
    );
    assert_eq!(
        pick("foo.baz.com"),
        Some("suffix-short"),
        "suffix before prefix"
    );
    assert_eq!(
        pick("foo.bar.org"),
        Some("prefix-long"),
        "longest prefix wins"
    );
    assert_eq!(pick("foo.org"), Some("prefix-short"));
    assert_eq!(pick("app-canary"), Some("canary"));
    assert_eq!(
        pick("-canary"),
        Some("default"),
        "a wildcard matches at least one character"
    );
    assert_eq!(pick("example.org"), Some("default"));
    assert_eq!(
        select_virtual_host(&hosts[1..], "example.org"),
        None,
        "no * and no match"
    );
}

#[test]
fn virtual_host_port_stripping() {
    let hosts = [
        vhost("default", &["*"]),
        vhost("plain", &["example.com"]),
        vhost("with-port", &["example.com:8443"]),
        vhost("v6", &["[::1]"]),
    ];
    let pick = |authority: &str| select_virtual_host(&hosts, authority).map(|v| v.name.as_str());
    assert_eq!(
        pick("example.com:8443"),
        Some("with-port"),
        "a domain with the port wins"
    );
    assert_eq!(
        pick("example.com:8080"),
        Some("plain"),
        "else the port is stripped"
    );
    assert_eq!(pick("example.com"), Some("plain"));
    assert_eq!(pick("[::1]:80"), Some("v6"));
    assert_eq!(
        pick("example.com:"),
        Some("default"),
        "an empty port is not a port"
    );
    assert_eq!(
        pick("::1"),
        Some("default"),
        "a bare IPv6 address has no port to strip"
    );
}

fn matcher(path: PathMatch) -> RouteMatch {
    RouteMatch {
        path,
        headers: Vec::new(),
        case_sensitive: true,
    }
}

#[test]
fn path_matching() {
    let prefix = matcher(PathMatch::Prefix("/api".into()));
    assert!(prefix.matches("/api/v1", no_headers));
    assert!(prefix.matches("/apiary", no_headers));
    assert!(!prefix.matches("/API", no_headers));
    assert!(
        !prefix.matches("/x?/api", no_headers),
        "the query string is not part of the path"
    );

    let exact = matcher(PathMatch::Exact("/status".into()));
    assert!(
        exact.matches("/status?full=1", no_headers),
        "the query string is stripped"
    );
    assert!(exact.matches("/status#top", no_headers));
    assert!(!exact.matches("/status/", no_headers));

    let separated = matcher(PathMatch::SeparatedPrefix("/api".into()));
    assert!(separated.matches("/api", no_headers));
    assert!(separated.matches("/api/x", no_headers));
    assert!(separated.matches("/api?x", no_headers));
    assert!(!separated.matches("/apiary", no_headers));

    let insensitive = RouteMatch {
        case_sensitive: false,
        ..matcher(PathMatch::Prefix("/API/é".into()))
    };
    assert!(insensitive.matches("/api/é/x", no_headers));
    assert!(
        !insensitive.matches("/api/É", no_headers),
        "only ASCII folds, as in Envoy"
    );
    assert!(!insensitive.matches("/ap", no_headers));
    let insensitive_exact = RouteMatch {
        case_sensitive: false,
        ..matcher(PathMatch::Exact("/Health".into()))
    };
    assert!(insensitive_exact.matches("/HEALTH", no_headers));
}

#[test]
fn regex_is_a_full_match() {
    let re = matcher(PathMatch::Regex(
        FullRegex::new("/v[0-9]+/.*|/ping").unwrap(),
    ));
    assert!(re.matches("/v1/users", no_headers));
    assert!(re.matches("/ping?x=1", no_headers));
    assert!(
        !re.matches("/api/v1/users", no_headers),
        "anchored at the start"
    );
    assert!(
        !re.matches("/pingpong", no_headers),
        "anchored at the end, across alternation"
    );
    let insensitive = RouteMatch {
        case_sensitive: false,
        ..matcher(PathMatch::Regex(FullRegex::new("/a").unwrap()))
    };
    assert!(
        !insensitive.matches("/A", no_headers),
        "case_sensitive does not apply to regexes"
    );
    assert!(FullRegex::new("(").is_err());
    assert!(FullRegex::new("a{1000}{1000}").is_err(), "size limit");
}

fn header(name: &str, rule: HeaderRule, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        rule,
        invert,
        treat_missing_as_empty: false,
    }
}

fn string(pattern: StringPattern, ignore_case: bool) -> HeaderRule {
    HeaderRule::String(StringMatcher {
        pattern,
        ignore_case,
    })
}

#[test]
fn header_matching() {
    let headers = |name: &str| match name {
        "x-env" => Some("Staging-EU"),
        ":method" => Some("POST"),
        "x-empty" => Some(""),
        _ => None,
    };
    let check = |m: HeaderMatcher| {
        RouteMatch {
            headers: vec![m],
            ..matcher(PathMatch::Prefix("/".into()))
        }
        .matches("/", headers)
    };
    assert!(check(header(
        "x-env",
        HeaderRule::Value("Staging-EU".into()),
        false
    )));
    assert!(!check(header(
        "x-env",
        HeaderRule::Value("staging-eu".into()),
        false
    )));
    assert!(
        check(header("x-env", HeaderRule::Value(String::new()), false)),
        "empty exact_match: any value"
    );
    assert!(check(header(
        ":method",
        string(StringPattern::Exact("POST".into()), false),
        false
    )));
    assert!(check(header(
        "x-env",
        string(StringPattern::Prefix("staging".into()), true),
        false
    )));
    assert!(!check(header(
        "x-env",
        string(StringPattern::Prefix("staging".into()), false),
        false
    )));
    assert!(check(header(
        "x-env",
        string(StringPattern::Suffix("-EU".into()), false),
        false
    )));
    assert!(check(header(
        "x-env",
        string(StringPattern::Contains("ING-e".into()), true),
        false
    )));
    assert!(!check(header(
        "x-env",
        string(StringPattern::Contains("ING-e".into()), false),
        false
    )));
    let full = |re: &str| string(StringPattern::Regex(FullRegex::new(re).unwrap()), false);
    assert!(check(header("x-env", full("Staging-[A-Z]{2}"), false)));
    assert!(
        !check(header("x-env", full("Staging"), false)),
        "header regexes match fully too"
    );

    assert!(check(header("x-env", HeaderRule::Present(true), false)));
    assert!(!check(header(
        "x-missing",
        HeaderRule::Present(true),
        false
    )));
    assert!(check(header(
        "x-missing",
        HeaderRule::Present(false),
        false
    )));
    assert!(
        check(header("x-empty", HeaderRule::Present(true), false)),
        "present even if empty"
    );

    // invert_match, including Envoy's handling of a missing header.
    assert!(!check(header("x-env", HeaderRule::Present(true), true)));
    assert!(check(header("x-missing", HeaderRule::Present(true), true)));
    assert!(check(header(
        "x-env",
        HeaderRule::Value("prod".into()),
        true
    )));
    assert!(!check(header(
        "x-env",
        HeaderRule::Value("Staging-EU".into()),
        true
    )));
    assert!(
        !check(header("x-missing", HeaderRule::Value("prod".into()), true)),
        "a missing header fails an inverted value match"
    );

    let mut missing_as_empty = header(
        "x-missing",
        string(StringPattern::Exact(String::new()), false),
        false,
    );
    assert!(!check(missing_as_empty.clone()));
    missing_as_empty.treat_missing_as_empty = true;
    assert!(check(missing_as_empty));
}

#[test]
fn first_matching_route_wins() {
    let text = base_with(
        "                        - match: { prefix: \"/\" }\n",
        concat!(
            "                        - match: { path: \"/exact\" }\n",
            "                          direct_response: { status: 201 }\n",
            "                        - match: { prefix: \"/\", headers: [{ name: X-Debug, present_match: true }] }\n",
            "                          direct_response: { status: 202 }\n",
            "                        - match: { prefix: \"/\" }\n",
        ),
    );
    let b = yaml(&text).unwrap();
    let vh = select_virtual_host(&http(&b.listeners[0]).virtual_hosts, "any").unwrap();
    let status = |path: &str, debug: bool| match &vh
        .route(path, |n| (debug && n == "x-debug").then_some("1"))
        .unwrap()
        .action
    {
        RouteAction::DirectResponse { status, .. } => *status,
        RouteAction::Cluster { .. } | RouteAction::Redirect(_) => 0,
    };
    assert_eq!(status("/exact", true), 201);
    assert_eq!(
        status("/exact/more", true),
        202,
        "header names are matched lower-cased"
    );
    assert_eq!(status("/exact/more", false), 0);
}

#[test]
fn domain_validation() {
    let (path, message) = fails(&base_with(
        "domains: [\"*\"]",
        "domains: [\"*\", \"a.*.com\"]",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].domains[1]")
    );
    assert!(message.starts_with("invalid domain"), "{message}");
    let (path, message) = fails(&base_with(
        "domains: [\"*\"]",
        "domains: [\"A.com\", \"a.COM\"]",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].domains[1]")
    );
    assert!(message.contains("already served"), "{message}");
}

// ---- scalar forms -----------------------------------------------------------

#[test]
fn durations() {
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    for bad in [
        "5",
        "s",
        "1.s",
        "1.0000000001s",
        "-1s",
        "1ms",
        "1e3s",
        "+1s",
        " 1s",
        "99999999999999999999s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn base64() {
    assert_eq!(decode_base64("aGVsbG8="), Ok(b"hello".to_vec()));
    assert_eq!(
        decode_base64("aGVsbG8"),
        Ok(b"hello".to_vec()),
        "padding optional"
    );
    assert_eq!(
        decode_base64("aGVs\nbG8="),
        Ok(b"hello".to_vec()),
        "whitespace skipped"
    );
    assert_eq!(
        decode_base64("-_8="),
        Ok(vec![0xfb, 0xff]),
        "URL-safe alphabet"
    );
    assert_eq!(decode_base64(""), Ok(Vec::new()));
    assert!(decode_base64("a").is_err());
    assert!(decode_base64("aGVs=bG8").is_err());
    assert!(decode_base64("aGVsbG8*").is_err());
}

#[test]
fn configuration_bytes_forms() {
    let with_config = |config: &str| {
        let text = base_with(
            "vm_config:\n",
            &format!("configuration: {config}\n                        vm_config:\n"),
        );
        yaml(&text).map(|b| http(&b.listeners[0]).wasm_filters[0].configuration.clone())
    };
    assert_eq!(
        with_config(r#"{"@type": type.googleapis.com/google.protobuf.StringValue, value: "a b"}"#)
            .unwrap(),
        b"a b"
    );
    assert_eq!(
        with_config(r#"{"@type": type.googleapis.com/google.protobuf.BytesValue, value: "AAE="}"#)
            .unwrap(),
        [0, 1]
    );
    assert_eq!(
        with_config(r#"{"@type": type.googleapis.com/google.protobuf.Value, value: [1, "x"]}"#)
            .unwrap(),
        br#"[1,"x"]"#
    );
    assert_eq!(
        with_config(r#"{"@type": type.googleapis.com/google.protobuf.StringValue}"#).unwrap(),
        b""
    );
    assert_eq!(with_config("{}").unwrap(), b"");
    let e = with_config("just-a-string").unwrap_err();
    assert_eq!(
        e.path(),
        format!("{HCM_AT}.http_filters[0].typed_config.config.configuration")
    );
    let e = with_config(r#"{value: "x"}"#).unwrap_err();
    assert_eq!(e.message(), "missing \"@type\"");
    let e = with_config(
        r#"{"@type": type.googleapis.com/google.protobuf.StringValue, value: "x", extra: 1}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.path(),
        format!("{HCM_AT}.http_filters[0].typed_config.config.configuration.extra")
    );
}

#[test]
fn hostile_inputs_do_not_panic() {
    let inputs = [
        "[]",
        "3",
        "static_resources: { listeners: [null] }",
        "static_resources: { listeners: [{}] }",
        "static_resources: { listeners: [{ filter_chains: [{}] }] }",
        "static_resources: { clusters: [{ name: a, load_assignment: { endpoints: [{ lb_endpoints: [{}] }] } }] }",
        "bootstrap_extensions: [{ name: envoy.bootstrap.wasm }]",
        "bootstrap_extensions: [{ typed_config: { \"@type\": \"no-slash\" } }]",
        "bootstrap_extensions: [{ typed_config: { \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct } }]",
        "node: { metadata: 3 }",
        "admin: { address: { pipe: { path: /tmp/x } } }",
        "static_resources: { clusters: [{ name: a, connect_timeout: { seconds: -1 } }] }",
        "static_resources: { clusters: [{ name: a, connect_timeout: { seconds: \"9223372036854775808\" } }] }",
        "a: &a [*a]",
    ];
    for input in inputs {
        assert!(yaml(input).is_err(), "{input:?} should be refused");
        let _ = parse(input, Format::Json);
    }
    let deep = "[".repeat(10_000);
    assert!(yaml(&deep).is_err());
    assert!(parse(&deep, Format::Json).is_err());
}

// ---- the proxy-wasm Go SDK's own example configs ---------------------------

/// The Go SDK's example `envoy.yaml` files, which must load unchanged.
///
/// `scripts/build-go-plugins.sh` (run by setup) copies them, byte for byte,
/// from the module zip of `github.com/tetratelabs/proxy-wasm-go-sdk` v0.16.0
/// to `build/go-sdk-examples/<example>/envoy.yaml`: today's SDK keeps each
/// example in a Go module of its own, which the module proxy does not serve,
/// and v0.16.0 is the last release whose zip carries `examples/`. Set
/// `POLYHOST_GO_SDK_DIR` to a checkout of the current SDK to load its
/// examples instead.
fn go_sdk_examples() -> Result<Vec<PathBuf>, String> {
    let root = match std::env::var_os("POLYHOST_GO_SDK_DIR") {
        Some(dir) => PathBuf::from(dir).join("examples"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/go-sdk-examples"),
    };
    let entries = std::fs::read_dir(&root).map_err(|e| {
        format!(
            "{}: {e} (scripts/build-go-plugins.sh puts the Go SDK's examples there)",
            root.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path().join("envoy.yaml"))
        .filter(|file| file.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no <example>/envoy.yaml in {}", root.display()));
    }
    Ok(files)
}

#[test]
fn go_sdk_examples_load_unchanged() {
    let files = go_sdk_examples().unwrap_or_else(|e| panic!("{e}"));
    // v0.16.0 has 13 examples; fewer means the copy went wrong.
    assert!(
        files.len() >= 13,
        "only {} examples: {files:?}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        match load(file) {
            Ok(b) => assert!(!b.listeners.is_empty(), "{}: no listeners", file.display()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// `access_log` entries of an HTTP connection manager, placed before its
/// `route_config`.
fn with_access_log(entries: &str) -> String {
    base_with(
        "                stat_prefix: main\n",
        &format!("                stat_prefix: main\n                access_log:\n{entries}"),
    )
}

#[test]
fn http_access_logs() {
    use crate::access_log::{Format as LogFormat, Sink};
    let b = yaml(&with_access_log(
        r#"                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                      log_format:
                        text_format_source:
                          inline_string: "%REQ(:METHOD)% %RESPONSE_CODE%\n"
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: /tmp/access.log
                  - name: envoy.access_loggers.stderr
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
                      log_format: { text_format: "%PROTOCOL%\n" }
"#,
    ))
    .unwrap();
    let logs = &http(&b.listeners[0]).access_logs;
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0].sink, Sink::Stdout);
    assert_eq!(
        logs[0].format,
        LogFormat::text("%REQ(:METHOD)% %RESPONSE_CODE%\n").unwrap()
    );
    assert_eq!(logs[1].sink, Sink::File("/tmp/access.log".into()));
    assert_eq!(logs[1].format, LogFormat::envoy_default());
    assert_eq!(logs[2].sink, Sink::Stderr);
    assert_eq!(logs[2].format, LogFormat::text("%PROTOCOL%\n").unwrap());
    assert_eq!(logs[2].at, format!("{HCM_AT}.access_log[2]"));
    assert!(logs.iter().all(|l| l.filter.is_none()));
}

#[test]
fn access_log_dictionaries_and_filters() {
    use crate::access_log::{CompareOp, Comparison, Filter, Format as LogFormat};
    let b = yaml(&with_access_log(
        r#"                  - name: envoy.access_loggers.stdout
                    filter:
                      and_filter:
                        filters:
                        - status_code_filter:
                            comparison:
                              op: GE
                              value: { default_value: 500, runtime_key: access_log.error.status }
                        - or_filter:
                            filters:
                            - response_flag_filter: { flags: [UF, UT] }
                            - duration_filter: { comparison: { op: le, value: { default_value: 10, runtime_key: k } } }
                            - header_filter: { header: { name: X-Debug, present_match: true } }
                            - not_health_check_filter: {}
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                      log_format:
                        json_format: { status: "%RESPONSE_CODE%", up: { host: "%UPSTREAM_HOST%" } }
                        omit_empty_values: true
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: /tmp/access.log
                      json_format: { status: "%RESPONSE_CODE%" }
"#,
    ))
    .unwrap();
    let logs = &http(&b.listeners[0]).access_logs;
    let dictionary =
        |v: serde_json::Value, typed| LogFormat::json(v.as_object().unwrap(), typed).unwrap();
    assert_eq!(
        logs[0].format,
        dictionary(
            serde_json::json!({ "status": "%RESPONSE_CODE%", "up": { "host": "%UPSTREAM_HOST%" } }),
            true
        )
        .omit_empty_values(true)
    );
    // The file logger's deprecated `json_format` writes strings only.
    assert_eq!(
        logs[1].format,
        dictionary(serde_json::json!({ "status": "%RESPONSE_CODE%" }), false)
    );
    assert_eq!(logs[1].filter, None);
    let Some(Filter::And(all)) = &logs[0].filter else {
        panic!("{:?}", logs[0].filter);
    };
    assert_eq!(
        all[0],
        Filter::StatusCode(Comparison {
            op: CompareOp::Ge,
            value: 500
        })
    );
    let Filter::Or(any) = &all[1] else {
        panic!("{:?}", all[1]);
    };
    assert_eq!(any[0], Filter::ResponseFlag(vec!["UF".into(), "UT".into()]));
    assert_eq!(
        any[1],
        Filter::Duration(Comparison {
            op: CompareOp::Le,
            value: 10
        })
    );
    let Filter::Header(header) = &any[2] else {
        panic!("{:?}", any[2]);
    };
    assert_eq!(header.name, "x-debug");
    assert_eq!(any[3], Filter::NotHealthCheck);
}

#[test]
fn tcp_proxy_access_logs() {
    let b = yaml(
        r#"
static_resources:
  listeners:
    - address: { socket_address: { address: 0.0.0.0, port_value: 1 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                cluster: backend
                access_log:
                - name: envoy.access_loggers.stderr
                  filter: { response_flag_filter: {} }
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
  clusters:
    - name: backend
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 2 } } }
"#,
    )
    .unwrap();
    let logs = &tcp(&b.listeners[0]).access_logs;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].sink, crate::access_log::Sink::Stderr);
    assert_eq!(logs[0].format, crate::access_log::Format::envoy_default());
    assert_eq!(
        logs[0].filter,
        Some(crate::access_log::Filter::ResponseFlag(Vec::new()))
    );
    assert_eq!(
        logs[0].at,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log[0]"
    );
}

#[test]
fn http_access_log_errors_name_the_path() {
    let stdout = |fields: &str| {
        with_access_log(&format!(
            r#"                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
{fields}"#
        ))
    };
    let (path, message) = fails(&stdout(
        "                      log_format: { text_format_source: { inline_string: \"%DYNAMIC_METADATA(x)%\" } }\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].typed_config.log_format.text_format_source")
    );
    assert_eq!(
        message,
        "command operator %DYNAMIC_METADATA% is not supported"
    );

    // A format dictionary names the key of a bad value.
    let (path, message) = fails(&stdout(
        "                      log_format: { json_format: { up: { host: \"%NOPE%\" } } }\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].typed_config.log_format.json_format.up.host")
    );
    assert_eq!(message, "command operator %NOPE% is not supported");

    let (path, message) = fails(&stdout(
        "                      log_format: { text_format: \"x\", json_format: { a: b } }\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].typed_config.log_format")
    );
    assert!(message.starts_with("only one of"), "{message}");

    // Filters: one kind each, known flags, two or more in and/or, and a
    // filter Polyhost does not implement is refused, not ignored.
    let filtered = |filter: &str| {
        with_access_log(&format!(
            "                  - name: envoy.access_loggers.stdout\n                    filter: {filter}\n"
        ))
    };
    let (path, message) = fails(&filtered("{ traceable_filter: {} }"));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].filter.traceable_filter")
    );
    assert!(
        message.contains("unknown or unsupported field"),
        "{message}"
    );
    let (path, message) = fails(&filtered("{}"));
    assert_eq!(path, format!("{HCM_AT}.access_log[0].filter"));
    assert!(message.starts_with("a filter is required"), "{message}");
    let (path, message) = fails(&filtered("{ response_flag_filter: { flags: [UF, XX] } }"));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].filter.response_flag_filter.flags[1]")
    );
    assert_eq!(message, "unknown response flag \"XX\"");
    let (path, message) = fails(&filtered(
        "{ and_filter: { filters: [ { not_health_check_filter: {} } ] } }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].filter.and_filter.filters")
    );
    assert_eq!(message, "and_filter needs at least two filters");
    let (path, message) = fails(&filtered(
        "{ status_code_filter: { comparison: { op: GT, value: { default_value: 500, runtime_key: k } } } }",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.access_log[0].filter.status_code_filter.comparison.op")
    );
    assert_eq!(message, "unknown comparison GT: expected EQ, GE or LE");

    let (path, message) = fails(&with_access_log(
        "                  - name: envoy.access_loggers.open_telemetry\n                    typed_config: { \"@type\": type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig }\n",
    ));
    assert_eq!(path, format!("{HCM_AT}.access_log[0]"));
    assert_eq!(
        message,
        "access logger envoy.access_loggers.open_telemetry is not supported"
    );
}

#[test]
fn request_ids_are_generated_unless_turned_off() {
    let b = yaml(BASE).unwrap();
    assert!(http(&b.listeners[0]).generate_request_id);
    let b = yaml(&base_with(
        "                stat_prefix: main\n",
        "                stat_prefix: main\n                generate_request_id: false\n",
    ))
    .unwrap();
    assert!(!http(&b.listeners[0]).generate_request_id);
}

#[test]
fn header_mutations_at_each_level() {
    use crate::config::AppendAction;
    let b = yaml(&base_with(
        "                      routes:\n",
        r#"                      request_headers_to_add:
                      - header: { key: X-Host-Level, value: "%DOWNSTREAM_REMOTE_ADDRESS%" }
                        append_action: OVERWRITE_IF_EXISTS
                      response_headers_to_remove: [server]
                      routes:
"#,
    ))
    .unwrap();
    let host = &http(&b.listeners[0]).virtual_hosts[0];
    assert_eq!(host.headers.request_add.len(), 1);
    assert_eq!(host.headers.request_add[0].name, "x-host-level");
    assert_eq!(
        host.headers.request_add[0].action,
        AppendAction::OverwriteIfExists
    );
    assert_eq!(host.headers.response_remove, ["server"]);

    let with = |fields: &str| {
        base_with(
            "                      routes:\n",
            &format!("{fields}                      routes:\n"),
        )
    };
    let (path, message) = fails(&with(
        "                      request_headers_to_add: [ { header: { key: \":path\", value: x } } ]\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].request_headers_to_add[0].header.key")
    );
    assert_eq!(
        message,
        ":path: pseudo-headers and host may not be modified"
    );
    let (path, message) = fails(&with(
        "                      request_headers_to_remove: [Host]\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].request_headers_to_remove[0]")
    );
    assert!(message.starts_with("host:"), "{message}");
    let (path, message) = fails(&with(
        "                      response_headers_to_add: [ { header: { key: a, value: \"%NOPE%\" } } ]\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].response_headers_to_add[0].header.value")
    );
    assert_eq!(message, "command operator %NOPE% is not supported");
    let (path, message) = fails(&with(
        "                      response_headers_to_add: [ { header: { key: a, value: b }, append: true, append_action: ADD_IF_ABSENT } ]\n",
    ));
    assert_eq!(
        path,
        format!("{HCM_AT}.route_config.virtual_hosts[0].response_headers_to_add[0]")
    );
    assert_eq!(message, "only one of append and append_action may be set");
}

#[test]
fn redirect_routes() {
    use crate::config::{PathRedirect, Redirect, RouteAction};
    let with = |action: &str| {
        base_with(
            "                          route: { cluster: backend }\n",
            &format!("                          {action}\n"),
        )
    };
    let b = yaml(&with(
        "redirect: { https_redirect: true, port_redirect: 8443, prefix_rewrite: /v2/, response_code: PERMANENT_REDIRECT, strip_query: true }",
    ))
    .unwrap();
    assert_eq!(
        http(&b.listeners[0]).virtual_hosts[0].routes[0].action,
        RouteAction::Redirect(Redirect {
            scheme: Some("https".into()),
            host: None,
            port: Some(8443),
            path: PathRedirect::Prefix("/v2/".into()),
            strip_query: true,
            status: 308,
        })
    );
    let route_at = format!("{HCM_AT}.route_config.virtual_hosts[0].routes[0]");
    let (path, message) = fails(&with("redirect: { path_redirect: /a, prefix_rewrite: /b }"));
    assert_eq!(path, format!("{route_at}.redirect"));
    assert_eq!(
        message,
        "only one of path_redirect and prefix_rewrite may be set"
    );
    let (path, message) = fails(&with("redirect: { response_code: GONE }"));
    assert_eq!(path, format!("{route_at}.redirect.response_code"));
    assert!(
        message.starts_with("unknown response_code GONE"),
        "{message}"
    );
    let (path, message) = fails(&with(
        "redirect: { host_redirect: a }\n                          direct_response: { status: 200 }",
    ));
    assert_eq!(path, route_at);
    assert_eq!(
        message,
        "a route has only one of `route`, `direct_response` and `redirect`"
    );
}

#[test]
fn weighted_cluster_routes() {
    use crate::config::{ClusterSpecifier, ClusterWeight, RouteAction};
    let with = |action: &str| {
        base_with(
            "                          route: { cluster: backend }\n",
            &format!("                          route: {action}\n"),
        )
    };
    let b = yaml(&with(
        "{ weighted_clusters: { clusters: [ { name: backend, weight: 9 }, { name: backend, weight: 1 } ], total_weight: 10 } }",
    ))
    .unwrap();
    let RouteAction::Cluster { cluster, .. } =
        &http(&b.listeners[0]).virtual_hosts[0].routes[0].action
    else {
        panic!("not a cluster route");
    };
    assert_eq!(
        cluster,
        &ClusterSpecifier::Weighted(vec![
            ClusterWeight {
                name: "backend".into(),
                weight: 9
            },
            ClusterWeight {
                name: "backend".into(),
                weight: 1
            },
        ])
    );
    let route_at = format!("{HCM_AT}.route_config.virtual_hosts[0].routes[0].route");
    let (path, message) = fails(&with(
        "{ weighted_clusters: { clusters: [ { name: missing, weight: 1 } ] } }",
    ));
    assert_eq!(
        path,
        format!("{route_at}.weighted_clusters.clusters[0].name")
    );
    assert_eq!(message, "unknown cluster \"missing\"");
    let (path, message) = fails(&with(
        "{ weighted_clusters: { clusters: [ { name: backend, weight: 1 } ], total_weight: 100 } }",
    ));
    assert_eq!(path, format!("{route_at}.weighted_clusters.total_weight"));
    assert_eq!(message, "the weights add up to 1, not 100");
    let (path, message) = fails(&with(
        "{ cluster: backend, weighted_clusters: { clusters: [ { name: backend, weight: 1 } ] } }",
    ));
    assert_eq!(path, route_at);
    assert_eq!(
        message,
        "only one of cluster and weighted_clusters may be set"
    );
}
