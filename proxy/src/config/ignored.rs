//! The one list of Envoy fields Polyhost accepts without honouring.
//!
//! Every field here only tunes Envoy's own machinery (logging, buffers, DNS,
//! stats naming, connection tuning), so a configuration written for Envoy
//! still means the same thing to a plugin when Polyhost drops it. Loading
//! logs one warning per field found, naming its path. Any field that is
//! neither modelled nor listed here is an error.
//!
//! Two fields are ignored only for some values, so `convert` warns for them
//! itself: a cluster's `lb_policy` other than `ROUND_ROBIN` (Polyhost
//! balances round robin), and the settings inside HTTP/1 and HTTP/2
//! protocol options (only their presence, which picks the protocol,
//! counts).

use super::raw::Rest;
use super::values::At;
use super::{ConfigError, ErrorKind};

/// `(message, field, why it can be dropped)`. `message` is the Envoy message
/// name as `convert` passes it to [`check`].
pub(super) const IGNORED: &[(&str, &str, &str)] = &[
    (
        "Bootstrap",
        "stats_config",
        "Envoy's stats tag extraction; Polyhost keeps metric names whole",
    ),
    (
        "Admin",
        "access_log_path",
        "admin access logging is not implemented",
    ),
    (
        "Admin",
        "access_log",
        "admin access logging is not implemented",
    ),
    ("Admin", "profile_path", "CPU profiling is Envoy-specific"),
    (
        "Listener",
        "per_connection_buffer_limit_bytes",
        "buffer sizing is Pingora's",
    ),
    (
        "Listener",
        "traffic_direction",
        "only labels stats and tracing in Envoy",
    ),
    ("Listener", "enable_reuse_port", "socket option tuning"),
    (
        "FilterChain",
        "name",
        "a label; one filter chain per listener is supported",
    ),
    (
        "HttpConnectionManager",
        "use_remote_address",
        "X-Forwarded-For handling is not implemented",
    ),
    (
        "HttpConnectionManager",
        "xff_num_trusted_hops",
        "X-Forwarded-For handling is not implemented",
    ),
    (
        "HttpConnectionManager",
        "skip_xff_append",
        "X-Forwarded-For handling is not implemented",
    ),
    (
        "HttpConnectionManager",
        "preserve_external_request_id",
        "every request is internal without use_remote_address, so its x-request-id is kept",
    ),
    (
        "HttpConnectionManager",
        "upgrade_configs",
        "Pingora handles upgrades itself",
    ),
    (
        "HttpConnectionManager",
        "http_protocol_options",
        "HTTP/1 codec tuning is Pingora's",
    ),
    (
        "HttpConnectionManager",
        "http2_protocol_options",
        "HTTP/2 codec tuning is Pingora's",
    ),
    (
        "HttpConnectionManager",
        "common_http_protocol_options",
        "connection timeouts and limits are Pingora's",
    ),
    (
        "HttpConnectionManager",
        "stream_idle_timeout",
        "stream timeouts are Pingora's",
    ),
    (
        "HttpConnectionManager",
        "request_timeout",
        "stream timeouts are Pingora's",
    ),
    (
        "HttpConnectionManager",
        "drain_timeout",
        "connection draining is Pingora's",
    ),
    (
        "HttpConnectionManager",
        "delayed_close_timeout",
        "connection closing is Pingora's",
    ),
    (
        "HttpConnectionManager",
        "max_request_headers_kb",
        "header size limits are Pingora's",
    ),
    (
        "HttpConnectionManager",
        "normalize_path",
        "path normalisation is not implemented",
    ),
    (
        "HttpConnectionManager",
        "merge_slashes",
        "path normalisation is not implemented",
    ),
    (
        "HttpConnectionManager",
        "tracing",
        "tracing is not implemented",
    ),
    (
        "RouteConfiguration",
        "validate_clusters",
        "Polyhost always checks that routed clusters exist",
    ),
    ("Route", "decorator", "only names tracing spans"),
    ("Router", "dynamic_stats", "stats tuning"),
    ("Router", "start_child_span", "tracing is not implemented"),
    (
        "Router",
        "suppress_envoy_headers",
        "Polyhost adds no x-envoy-* headers anyway",
    ),
    (
        "TcpProxy",
        "max_connect_attempts",
        "connection retries are Pingora's",
    ),
    (
        "Cluster",
        "dns_lookup_family",
        "the system resolver picks the address family",
    ),
    (
        "Cluster",
        "respect_dns_ttl",
        "DNS caching is the resolver's",
    ),
    (
        "Cluster",
        "per_connection_buffer_limit_bytes",
        "buffer sizing is Pingora's",
    ),
    (
        "Cluster",
        "common_http_protocol_options",
        "connection timeouts and limits are Pingora's",
    ),
    (
        "Cluster",
        "upstream_connection_options",
        "TCP keepalive tuning is Pingora's",
    ),
    (
        "Cluster",
        "circuit_breakers",
        "connection limits are not implemented",
    ),
    (
        "ClusterLoadAssignment",
        "cluster_name",
        "only matters for EDS, which is not supported",
    ),
    (
        "ClusterLoadAssignment",
        "policy",
        "overprovisioning and drop policies are not implemented",
    ),
    (
        "LocalityLbEndpoints",
        "locality",
        "locality-aware balancing is not implemented",
    ),
    (
        "LbEndpoint",
        "load_balancing_weight",
        "Polyhost balances round robin without weights",
    ),
    (
        "Endpoint",
        "hostname",
        "only used by Envoy for health checks and auto host rewrite",
    ),
    (
        "HttpProtocolOptions",
        "common_http_protocol_options",
        "connection timeouts and limits are Pingora's",
    ),
    (
        "PluginConfig",
        "reload_config",
        "FAIL_RELOAD backoff tuning",
    ),
    (
        "VmConfig",
        "nack_on_code_cache_miss",
        "only for remote code, which is not supported",
    ),
];

/// Checks the fields of `message` that Polyhost did not model: warns for
/// each listed in [`IGNORED`], fails on the first that is not.
pub(super) fn check(rest: &Rest, message: &str, at: &At) -> Result<(), ConfigError> {
    for key in rest.keys() {
        let path = at.field(key);
        match IGNORED
            .iter()
            .find(|(m, field, _)| *m == message && field == key)
        {
            Some((_, _, why)) => {
                tracing::warn!(path = %path, "Envoy field ignored: {why}");
            }
            None => {
                return Err(ConfigError::new(
                    ErrorKind::Unsupported,
                    &path,
                    format!("unknown or unsupported field `{key}` in {message}"),
                ));
            }
        }
    }
    Ok(())
}
