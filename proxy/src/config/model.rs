//! The validated configuration: Envoy's vocabulary, only what Polyhost runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::route::RouteMatch;

/// A loaded Envoy v3 bootstrap.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// Envoy's `node` block, which plugins can read as `node.*` properties.
    pub node: Node,
    /// The admin listener, if configured.
    pub admin: Option<Admin>,
    /// `static_resources.listeners`, in file order.
    pub listeners: Vec<Listener>,
    /// `static_resources.clusters`, in file order.
    pub clusters: Vec<Cluster>,
    /// `bootstrap_extensions` of type `envoy.bootstrap.wasm`: Wasm services
    /// that run outside any request.
    pub wasm_services: Vec<WasmPlugin>,
}

impl Bootstrap {
    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Envoy's `node`: who this proxy is.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// `node.id`; empty if absent.
    pub id: String,
    /// `node.cluster`; empty if absent.
    pub cluster: String,
    /// `node.metadata` (a `google.protobuf.Struct`): always a JSON object,
    /// empty if absent.
    pub metadata: Value,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            id: String::new(),
            cluster: String::new(),
            metadata: Value::Object(Map::new()),
        }
    }
}

/// The admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// `admin.address.socket_address`.
    pub address: SocketAddr,
}

/// A listener: one address, one filter chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// `name`. Envoy invents a random name when it is absent; Polyhost uses
    /// the address (`0.0.0.0:10000`), which is unique because listener
    /// addresses must be.
    pub name: String,
    /// `address.socket_address`: always an IP literal, as Envoy requires.
    pub address: SocketAddr,
    /// What the filter chain ends in.
    pub kind: ListenerKind,
}

/// The terminal filter of a listener's filter chain.
#[derive(Clone, Debug, PartialEq)]
pub enum ListenerKind {
    /// `envoy.filters.network.http_connection_manager`.
    Http(HttpConnectionManager),
    /// `envoy.filters.network.tcp_proxy`, after any network Wasm filters.
    Tcp(TcpProxy),
}

/// `envoy.filters.network.http_connection_manager` with an inline
/// `route_config`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConnectionManager {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `codec_type`.
    pub codec: Codec,
    /// `route_config.name`.
    pub route_config_name: String,
    /// `route_config.virtual_hosts`, in file order; see
    /// [`select_virtual_host`](super::select_virtual_host).
    pub virtual_hosts: Vec<VirtualHost>,
    /// The `envoy.filters.http.wasm` filters of `http_filters`, in order.
    /// The router, which must come last, is implied.
    pub wasm_filters: Vec<WasmPlugin>,
    /// `scheme_header_transformation.scheme_to_overwrite`: the `:scheme`
    /// plugins and upstreams see, whatever the downstream used.
    pub scheme_to_overwrite: Option<String>,
    /// `route_config`'s own header mutations.
    pub route_config_headers: HeaderMutations,
    /// `route_config.most_specific_header_mutations_wins`: apply the route
    /// configuration's mutations first and the route's last (by default
    /// the route's come first, so the wider levels overwrite them).
    pub most_specific_header_mutations_wins: bool,
    /// `access_log`, in order.
    pub access_logs: Vec<AccessLog>,
    /// The router's `upstream_log`, in order: a line per request that went
    /// to an upstream, with the upstream's response.
    pub upstream_logs: Vec<AccessLog>,
    /// `generate_request_id` (default true): a request that comes without
    /// `x-request-id` gets one, a random UUID, before the plugins see it.
    pub generate_request_id: bool,
}

/// One `access_log` entry of a connection manager or a `tcp_proxy`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    /// Where it writes.
    pub sink: crate::access_log::Sink,
    /// What it writes.
    pub format: crate::access_log::Format,
    /// `filter`: which entries it writes; all when `None`.
    pub filter: Option<crate::access_log::Filter>,
    /// Its path in the configuration, for errors found when it is opened.
    pub at: String,
}

/// Which HTTP versions a listener speaks (`codec_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `AUTO`: HTTP/1.1, or HTTP/2 when the client starts with its preface.
    Auto,
    /// `HTTP1`.
    Http1,
    /// `HTTP2`.
    Http2,
}

/// A virtual host: the routes for a set of domains.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains`, lower-cased (host matching ignores case): exact names,
    /// `*.suffix` / `*suffix`, `prefix.*` / `prefix*`, or `*`.
    pub domains: Vec<String>,
    /// `routes`, tried in order.
    pub routes: Vec<Route>,
    /// `request_headers_to_add` and the other header mutations of the
    /// virtual host.
    pub headers: HeaderMutations,
}

/// One route: a match and what to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// `name`; empty if absent.
    pub name: String,
    /// `match`.
    pub matcher: RouteMatch,
    /// `route` or `direct_response`.
    pub action: RouteAction,
    /// `metadata.filter_metadata`, which plugins read as the
    /// `route_metadata` property; empty if absent.
    pub metadata: Map<String, Value>,
    /// `request_headers_to_add` and the other header mutations of the
    /// route.
    pub headers: HeaderMutations,
}

/// The header mutations a route, a virtual host or a route configuration
/// carries. Request mutations apply to the request sent upstream, after
/// the Wasm filters (which do not see them); response mutations apply to
/// the upstream's response and to a direct response, before the Wasm
/// filters see them, as Envoy's router does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderMutations {
    /// `request_headers_to_remove`, lower-cased.
    pub request_remove: Vec<String>,
    /// `request_headers_to_add`, applied after the removals.
    pub request_add: Vec<HeaderToAdd>,
    /// `response_headers_to_remove`, lower-cased.
    pub response_remove: Vec<String>,
    /// `response_headers_to_add`, applied after the removals.
    pub response_add: Vec<HeaderToAdd>,
}

/// One `HeaderValueOption`.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderToAdd {
    /// `header.key`, lower-cased.
    pub name: String,
    /// `header.value`: a format string, so it may hold command operators
    /// such as `%DOWNSTREAM_REMOTE_ADDRESS%` (`%%` for a `%`).
    pub value: crate::access_log::Format,
    /// `append_action`, or the deprecated `append`.
    pub action: AppendAction,
    /// `keep_empty_value`: add the header even when its value is empty.
    pub keep_empty: bool,
}

/// `HeaderValueOption.HeaderAppendAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD`, the default: one more value.
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`: only when the header is not there.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD`: replaces every value, or adds.
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`: replaces every value, only when there.
    OverwriteIfExists,
}

/// What a matched route does.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    /// `route`: forward to a cluster.
    Cluster {
        /// `route.cluster` or `route.weighted_clusters`.
        cluster: ClusterSpecifier,
        /// `route.prefix_rewrite`: replaces the matched prefix (or path).
        prefix_rewrite: Option<String>,
        /// `route.timeout`. `None` when absent, which Envoy treats as 15
        /// seconds; `Some(Duration::ZERO)` (`timeout: 0s`) disables the
        /// timeout.
        timeout: Option<Duration>,
        /// `route.host_rewrite_literal`: the `:authority` sent upstream.
        host_rewrite_literal: Option<String>,
    },
    /// `direct_response`: answer without an upstream.
    DirectResponse {
        /// `status`, 100 to 599.
        status: u16,
        /// `body.inline_string`, or `body.inline_bytes` decoded from base64;
        /// empty if absent.
        body: Vec<u8>,
    },
    /// `redirect`: answer with a redirect to a URL made from the request's.
    Redirect(Redirect),
}

/// Which cluster a route forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterSpecifier {
    /// `cluster`: it names a cluster of the bootstrap.
    Name(String),
    /// `weighted_clusters.clusters`: each request goes to one of them, in
    /// proportion to the weights (by weighted turns, so the split is exact
    /// over each round of `sum of weights` requests).
    Weighted(Vec<ClusterWeight>),
}

/// One entry of `weighted_clusters.clusters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWeight {
    /// `name`: a cluster of the bootstrap.
    pub name: String,
    /// `weight`; 0 means never.
    pub weight: u32,
}

/// `route.v3.RedirectAction`: what of the request's URL the `location`
/// changes. The rest comes from the request as the Wasm filters left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `https_redirect` (`https`) or `scheme_redirect`.
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    /// `path_redirect` or `prefix_rewrite`.
    pub path: PathRedirect,
    /// `strip_query`: drop the request's query string.
    pub strip_query: bool,
    /// `response_code`: 301 (the default), 302, 303, 307 or 308.
    pub status: u16,
}

/// How a redirect changes the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRedirect {
    /// The request's path.
    Keep,
    /// `path_redirect`: this path (with its own query string, if it has one).
    Replace(String),
    /// `prefix_rewrite`: the route's matched prefix replaced by this.
    Prefix(String),
}

/// Envoy's default route timeout, which applies when
/// [`RouteAction::Cluster::timeout`] is `None`.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// `envoy.filters.network.tcp_proxy` and the network Wasm filters before it.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpProxy {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `cluster`; it names a cluster of the bootstrap.
    pub cluster: String,
    /// The `envoy.filters.network.wasm` filters before the proxy, in order.
    pub wasm_filters: Vec<WasmPlugin>,
    /// `idle_timeout`: a connection on which no byte moves either way for
    /// this long is closed. Envoy's default is 1 h; `0s` turns it off
    /// (`None`).
    pub idle_timeout: Option<Duration>,
    /// `access_log`, in order: a line per connection when it closes.
    pub access_logs: Vec<AccessLog>,
}

/// One Wasm plugin: a filter (`envoy.filters.http.wasm`,
/// `envoy.filters.network.wasm`) or a bootstrap service
/// (`envoy.bootstrap.wasm`). Fields come from Envoy's `PluginConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct WasmPlugin {
    /// `config.name`: empty when absent, as in Envoy (the filter's own
    /// `name` is not used).
    pub name: String,
    /// `config.root_id`; empty if absent.
    pub root_id: String,
    /// `config.vm_config.vm_id`; empty if absent. Plugins with the same
    /// `vm_id` and code share a VM in Envoy.
    pub vm_id: String,
    /// The engine to run the plugin on: `None` for Polyhost's default, which
    /// is what Envoy's runtime names (`envoy.wasm.runtime.v8`, `wasmtime`,
    /// `wamr`, `wavm`) and an empty runtime become; any other string is a
    /// Polyhost engine name (`wasmi`, `wasmtime-winch`, ...) that the proxy
    /// checks when it builds the plugin. `envoy.wasm.runtime.null`, which
    /// means native code linked into Envoy, is an error.
    pub engine: Option<String>,
    /// `config.vm_config.code.local`.
    pub code: WasmCode,
    /// `config.configuration`, as the bytes the plugin reads at start; see
    /// [the module docs](super#plugin-configuration-bytes) for how an `Any`
    /// becomes bytes.
    pub configuration: Vec<u8>,
    /// `config.vm_config.configuration`, same rules.
    pub vm_configuration: Vec<u8>,
    /// `config.vm_config.environment_variables.key_values`, sorted by key.
    pub env: Vec<(String, String)>,
    /// `config.vm_config.environment_variables.host_env_keys`: variables
    /// passed through from Polyhost's own environment.
    pub host_env_keys: Vec<String>,
    /// `config.vm_config.allow_precompiled`.
    pub allow_precompiled: bool,
    /// `config.failure_policy`, or the legacy `config.fail_open`.
    pub failure_policy: FailurePolicy,
    /// `singleton` of a bootstrap `WasmService`; always `false` for filters.
    pub singleton: bool,
}

/// Where a plugin's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WasmCode {
    /// `local.filename`, as written: a relative path is opened relative to
    /// the process's working directory, as Envoy does.
    File(PathBuf),
    /// `local.inline_bytes` (decoded from base64) or `local.inline_string`.
    Inline(Vec<u8>),
}

/// What happens to traffic when a plugin's VM has failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Reject the traffic (`FAIL_CLOSED`, and Envoy's default).
    #[default]
    FailClosed,
    /// Let traffic bypass the plugin (`FAIL_OPEN`, or `fail_open: true`).
    FailOpen,
    /// Start a new VM and retry (`FAIL_RELOAD`).
    FailReload,
}

/// An upstream cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    /// `name`.
    pub name: String,
    /// `type`.
    pub discovery: Discovery,
    /// `connect_timeout`; Envoy's default, 5 seconds, when absent.
    pub connect_timeout: Duration,
    /// `dns_refresh_rate`: how often `STRICT_DNS` and `LOGICAL_DNS` names
    /// are resolved again; Envoy's default, 5 seconds, when absent.
    pub dns_refresh_rate: Duration,
    /// `load_assignment.endpoints[].lb_endpoints[].endpoint.address`, all
    /// localities flattened in file order.
    pub endpoints: Vec<Endpoint>,
    /// Talk HTTP/2 to the upstream: `http2_protocol_options` is present, or
    /// `typed_extension_protocol_options` holds an `HttpProtocolOptions`
    /// whose `explicit_http_config` is `http2_protocol_options`.
    pub http2: bool,
    /// `metadata.filter_metadata`, which plugins read as the
    /// `cluster_metadata` property; empty if absent.
    pub metadata: Map<String, Value>,
}

/// Envoy's default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Envoy's default `dns_refresh_rate`.
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

/// Envoy's default `idle_timeout` of `tcp_proxy`.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a cluster's endpoint addresses become IPs (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// `STATIC`: the endpoints are IP literals.
    Static,
    /// `STRICT_DNS`: every address each name resolves to is an endpoint.
    StrictDns,
    /// `LOGICAL_DNS`: one name; connect to the first address it resolves to.
    LogicalDns,
}

/// One upstream address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `socket_address.address`: an IP literal, or a DNS name for DNS
    /// clusters.
    pub host: String,
    /// `socket_address.port_value`.
    pub port: u16,
}
