//! The Envoy v3 messages Polyhost reads, as serde sees them.
//!
//! Each struct names the fields Polyhost models; everything else in the
//! message lands in `rest`, which `convert` checks against
//! [`super::ignored::IGNORED`] so a field is either modelled, knowingly
//! ignored (with a warning), or an error naming its path. `typed_config`
//! and other `google.protobuf.Any` values stay [`Value`]s here: their type
//! is only known once `@type` (or the filter name) has been read.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::values::{EnumName, List, Port, ProtoDuration};

/// Fields of a message that Polyhost does not model.
pub(super) type Rest = BTreeMap<String, Value>;

#[derive(Deserialize, Default)]
pub(super) struct Bootstrap {
    #[serde(default)]
    pub node: Option<Node>,
    #[serde(default)]
    pub admin: Option<Admin>,
    #[serde(default)]
    pub static_resources: Option<StaticResources>,
    #[serde(default)]
    pub bootstrap_extensions: List<TypedExtension>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize, Default)]
pub(super) struct Node {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Admin {
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize, Default)]
pub(super) struct StaticResources {
    #[serde(default)]
    pub listeners: List<Listener>,
    #[serde(default)]
    pub clusters: List<Cluster>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Address {
    #[serde(default)]
    pub socket_address: Option<SocketAddress>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct SocketAddress {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port_value: Option<Port>,
    #[serde(default)]
    pub protocol: Option<EnumName>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Listener {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    pub filter_chains: List<FilterChain>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct FilterChain {
    #[serde(default)]
    pub filters: List<Filter>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A network filter, an HTTP filter or a bootstrap extension: a name and an
/// `Any`.
#[derive(Deserialize)]
pub(super) struct Filter {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub typed_config: Option<Value>,
    /// HTTP filters only: Envoy skips an optional filter it does not know.
    #[serde(default)]
    pub is_optional: Option<bool>,
    #[serde(flatten)]
    pub rest: Rest,
}

pub(super) type TypedExtension = Filter;

#[derive(Deserialize)]
pub(super) struct HttpConnectionManager {
    #[serde(default)]
    pub stat_prefix: String,
    #[serde(default)]
    pub codec_type: Option<EnumName>,
    #[serde(default)]
    pub route_config: Option<RouteConfiguration>,
    #[serde(default)]
    pub http_filters: List<Filter>,
    #[serde(default)]
    pub scheme_header_transformation: Option<SchemeHeaderTransformation>,
    #[serde(default)]
    pub access_log: List<AccessLog>,
    #[serde(default)]
    pub generate_request_id: Option<bool>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `config.accesslog.v3.AccessLog`: a logger (a name and an `Any`) and
/// which entries it writes.
#[derive(Deserialize)]
pub(super) struct AccessLog {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub typed_config: Option<Value>,
    #[serde(default)]
    pub filter: Option<AccessLogFilter>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `config.accesslog.v3.AccessLogFilter`: a oneof, so exactly one field.
#[derive(Deserialize)]
pub(super) struct AccessLogFilter {
    #[serde(default)]
    pub status_code_filter: Option<ComparisonHolder>,
    #[serde(default)]
    pub duration_filter: Option<ComparisonHolder>,
    #[serde(default)]
    pub not_health_check_filter: Option<Empty>,
    #[serde(default)]
    pub and_filter: Option<FilterList>,
    #[serde(default)]
    pub or_filter: Option<FilterList>,
    #[serde(default)]
    pub header_filter: Option<HeaderFilter>,
    #[serde(default)]
    pub response_flag_filter: Option<ResponseFlagFilter>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `StatusCodeFilter` and `DurationFilter`: one comparison.
#[derive(Deserialize)]
pub(super) struct ComparisonHolder {
    #[serde(default)]
    pub comparison: Option<ComparisonFilter>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct ComparisonFilter {
    #[serde(default)]
    pub op: Option<EnumName>,
    #[serde(default)]
    pub value: Option<RuntimeUInt32>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `core.v3.RuntimeUInt32`.
#[derive(Deserialize)]
pub(super) struct RuntimeUInt32 {
    #[serde(default)]
    pub default_value: u32,
    /// A runtime override of `default_value`. Polyhost has no runtime, so
    /// the default applies, as in an Envoy whose runtime lacks the key.
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "accepted, but there is no runtime to look it up in"
    )]
    pub runtime_key: String,
    #[serde(flatten)]
    pub rest: Rest,
}

/// A message with no fields Polyhost reads (`NotHealthCheckFilter`).
#[derive(Deserialize)]
pub(super) struct Empty {
    #[serde(flatten)]
    pub rest: Rest,
}

/// `AndFilter` and `OrFilter`.
#[derive(Deserialize)]
pub(super) struct FilterList {
    #[serde(default)]
    pub filters: List<AccessLogFilter>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct HeaderFilter {
    #[serde(default)]
    pub header: Option<HeaderMatcher>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct ResponseFlagFilter {
    #[serde(default)]
    pub flags: List<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `envoy.access_loggers.stdout` / `.stderr`.
#[derive(Deserialize)]
pub(super) struct StreamAccessLog {
    #[serde(default)]
    pub log_format: Option<SubstitutionFormatString>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `envoy.access_loggers.file`.
#[derive(Deserialize)]
pub(super) struct FileAccessLog {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub log_format: Option<SubstitutionFormatString>,
    /// The deprecated text format.
    #[serde(default)]
    pub format: Option<String>,
    /// The deprecated format dictionary whose values are all strings.
    #[serde(default)]
    pub json_format: Option<Map<String, Value>>,
    /// The deprecated typed format dictionary.
    #[serde(default)]
    pub typed_json_format: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct SubstitutionFormatString {
    /// The deprecated form of `text_format_source.inline_string`.
    #[serde(default)]
    pub text_format: Option<String>,
    #[serde(default)]
    pub text_format_source: Option<DataSource>,
    #[serde(default)]
    pub json_format: Option<Map<String, Value>>,
    #[serde(default)]
    pub omit_empty_values: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct SchemeHeaderTransformation {
    #[serde(default)]
    pub scheme_to_overwrite: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct RouteConfiguration {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub virtual_hosts: List<VirtualHost>,
    #[serde(flatten)]
    pub headers: HeaderMutations,
    #[serde(default)]
    pub most_specific_header_mutations_wins: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct VirtualHost {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub domains: List<String>,
    #[serde(default)]
    pub routes: List<Route>,
    #[serde(flatten)]
    pub headers: HeaderMutations,
    #[serde(flatten)]
    pub rest: Rest,
}

/// The header mutation fields of a route, a virtual host and a route
/// configuration.
#[derive(Deserialize)]
pub(super) struct HeaderMutations {
    #[serde(default)]
    pub request_headers_to_add: List<HeaderValueOption>,
    #[serde(default)]
    pub request_headers_to_remove: List<String>,
    #[serde(default)]
    pub response_headers_to_add: List<HeaderValueOption>,
    #[serde(default)]
    pub response_headers_to_remove: List<String>,
}

/// `config.core.v3.HeaderValueOption`.
#[derive(Deserialize)]
pub(super) struct HeaderValueOption {
    #[serde(default)]
    pub header: Option<HeaderValue>,
    /// The deprecated form of `append_action`.
    #[serde(default)]
    pub append: Option<bool>,
    #[serde(default)]
    pub append_action: Option<EnumName>,
    #[serde(default)]
    pub keep_empty_value: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `config.core.v3.HeaderValue`.
#[derive(Deserialize)]
pub(super) struct HeaderValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Route {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Option<RouteMatch>,
    #[serde(default)]
    pub route: Option<RouteAction>,
    #[serde(default)]
    pub direct_response: Option<DirectResponse>,
    #[serde(default)]
    pub redirect: Option<RedirectAction>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(flatten)]
    pub headers: HeaderMutations,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct RouteMatch {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RegexMatcher>,
    #[serde(default)]
    pub path_separated_prefix: Option<String>,
    #[serde(default)]
    pub headers: List<HeaderMatcher>,
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct RegexMatcher {
    #[serde(default)]
    pub regex: String,
    /// Envoy's only engine; its `max_program_size` is replaced by the regex
    /// crate's own size limit.
    #[serde(default)]
    pub google_re2: Option<Value>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct HeaderMatcher {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub exact_match: Option<String>,
    #[serde(default)]
    pub safe_regex_match: Option<RegexMatcher>,
    #[serde(default)]
    pub prefix_match: Option<String>,
    #[serde(default)]
    pub suffix_match: Option<String>,
    #[serde(default)]
    pub contains_match: Option<String>,
    #[serde(default)]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub string_match: Option<StringMatcher>,
    #[serde(default)]
    pub invert_match: bool,
    #[serde(default)]
    pub treat_missing_header_as_empty: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct StringMatcher {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RegexMatcher>,
    #[serde(default)]
    pub ignore_case: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct RouteAction {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub weighted_clusters: Option<WeightedCluster>,
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    #[serde(default)]
    pub timeout: Option<ProtoDuration>,
    #[serde(default)]
    pub host_rewrite_literal: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `route.v3.WeightedCluster`.
#[derive(Deserialize)]
pub(super) struct WeightedCluster {
    #[serde(default)]
    pub clusters: List<ClusterWeight>,
    /// Deprecated: when set, the weights must add up to it.
    #[serde(default)]
    pub total_weight: Option<u32>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `route.v3.WeightedCluster.ClusterWeight`.
#[derive(Deserialize)]
pub(super) struct ClusterWeight {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `route.v3.RedirectAction`.
#[derive(Deserialize)]
pub(super) struct RedirectAction {
    #[serde(default)]
    pub https_redirect: bool,
    #[serde(default)]
    pub scheme_redirect: Option<String>,
    #[serde(default)]
    pub host_redirect: Option<String>,
    #[serde(default)]
    pub port_redirect: Option<u32>,
    #[serde(default)]
    pub path_redirect: Option<String>,
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
    #[serde(default)]
    pub response_code: Option<EnumName>,
    #[serde(default)]
    pub strip_query: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct DirectResponse {
    #[serde(default)]
    pub status: Option<u32>,
    #[serde(default)]
    pub body: Option<DataSource>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `config.core.v3.DataSource`: which fields are allowed depends on the
/// place it is used, so `convert` decides.
#[derive(Deserialize)]
pub(super) struct DataSource {
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub inline_bytes: Option<String>,
    #[serde(default)]
    pub inline_string: Option<String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Metadata {
    #[serde(default)]
    pub filter_metadata: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct TcpProxy {
    #[serde(default)]
    pub stat_prefix: String,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub idle_timeout: Option<ProtoDuration>,
    #[serde(default)]
    pub access_log: List<AccessLog>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `extensions.filters.http.router.v3.Router`.
#[derive(Deserialize)]
pub(super) struct Router {
    #[serde(default)]
    pub upstream_log: List<AccessLog>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// The HTTP and the network `Wasm` filter messages have the same shape.
#[derive(Deserialize)]
pub(super) struct WasmFilter {
    #[serde(default)]
    pub config: Option<PluginConfig>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct WasmService {
    #[serde(default)]
    pub config: Option<PluginConfig>,
    #[serde(default)]
    pub singleton: bool,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct PluginConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub root_id: String,
    #[serde(default)]
    pub vm_config: Option<VmConfig>,
    #[serde(default)]
    pub configuration: Option<Value>,
    #[serde(default)]
    pub fail_open: Option<bool>,
    #[serde(default)]
    pub failure_policy: Option<EnumName>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct VmConfig {
    #[serde(default)]
    pub vm_id: String,
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub code: Option<AsyncDataSource>,
    #[serde(default)]
    pub configuration: Option<Value>,
    #[serde(default)]
    pub allow_precompiled: bool,
    #[serde(default)]
    pub environment_variables: Option<EnvironmentVariables>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct AsyncDataSource {
    #[serde(default)]
    pub local: Option<DataSource>,
    #[serde(default)]
    pub remote: Option<Value>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct EnvironmentVariables {
    #[serde(default)]
    pub host_env_keys: List<String>,
    #[serde(default)]
    pub key_values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Cluster {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub discovery: Option<EnumName>,
    #[serde(default)]
    pub connect_timeout: Option<ProtoDuration>,
    #[serde(default)]
    pub dns_refresh_rate: Option<ProtoDuration>,
    #[serde(default)]
    pub lb_policy: Option<EnumName>,
    #[serde(default)]
    pub load_assignment: Option<ClusterLoadAssignment>,
    #[serde(default)]
    pub http2_protocol_options: Option<Value>,
    #[serde(default)]
    pub typed_extension_protocol_options: BTreeMap<String, Value>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct ClusterLoadAssignment {
    #[serde(default)]
    pub endpoints: List<LocalityLbEndpoints>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct LocalityLbEndpoints {
    #[serde(default)]
    pub lb_endpoints: List<LbEndpoint>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct LbEndpoint {
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct Endpoint {
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(flatten)]
    pub rest: Rest,
}

/// `extensions.upstreams.http.v3.HttpProtocolOptions`.
#[derive(Deserialize)]
pub(super) struct HttpProtocolOptions {
    #[serde(default)]
    pub explicit_http_config: Option<ExplicitHttpConfig>,
    #[serde(flatten)]
    pub rest: Rest,
}

#[derive(Deserialize)]
pub(super) struct ExplicitHttpConfig {
    #[serde(default)]
    pub http_protocol_options: Option<Value>,
    #[serde(default)]
    pub http2_protocol_options: Option<Value>,
    #[serde(flatten)]
    pub rest: Rest,
}
