//! From the raw Envoy messages to the validated model, checking every
//! field and naming the path of the first one Polyhost cannot honour.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::header_mutation::header_mutations;
use super::ignored::check;
use super::model::{
    AccessLog, Admin, Bootstrap, Cluster, ClusterSpecifier, ClusterWeight, Codec,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_REFRESH_RATE, DEFAULT_TCP_IDLE_TIMEOUT, Discovery,
    Endpoint, FailurePolicy, HttpConnectionManager, Listener, ListenerKind, Node, PathRedirect,
    Redirect, Route, RouteAction, TcpProxy, VirtualHost, WasmCode, WasmPlugin,
};
use super::raw;
use super::route::{
    FullRegex, HeaderMatcher, HeaderRule, PathMatch, RouteMatch, StringMatcher, StringPattern,
};
use super::values::{At, EnumName, List, decode_base64};
use super::{ConfigError, ErrorKind};

/// The extensions Polyhost implements, by the type Envoy would look them up
/// by and by the names (current and legacy) it accepts without a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extension {
    HttpConnectionManager,
    TcpProxy,
    NetworkWasm,
    HttpWasm,
    Router,
    WasmService,
    StdoutAccessLog,
    StderrAccessLog,
    FileAccessLog,
}

const EXTENSIONS: &[(Extension, &str, &[&str])] = &[
    (
        Extension::HttpConnectionManager,
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        &[
            "envoy.filters.network.http_connection_manager",
            "envoy.http_connection_manager",
        ],
    ),
    (
        Extension::TcpProxy,
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        &["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"],
    ),
    (
        Extension::NetworkWasm,
        "envoy.extensions.filters.network.wasm.v3.Wasm",
        &["envoy.filters.network.wasm"],
    ),
    (
        Extension::HttpWasm,
        "envoy.extensions.filters.http.wasm.v3.Wasm",
        &["envoy.filters.http.wasm"],
    ),
    (
        Extension::Router,
        "envoy.extensions.filters.http.router.v3.Router",
        &["envoy.filters.http.router", "envoy.router"],
    ),
    (
        Extension::WasmService,
        "envoy.extensions.wasm.v3.WasmService",
        &["envoy.bootstrap.wasm"],
    ),
    (
        Extension::StdoutAccessLog,
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        &["envoy.access_loggers.stdout"],
    ),
    (
        Extension::StderrAccessLog,
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
        &["envoy.access_loggers.stderr"],
    ),
    (
        Extension::FileAccessLog,
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
        &["envoy.access_loggers.file", "envoy.file_access_log"],
    ),
];

const TYPED_STRUCTS: &[&str] = &["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Envoy picks an extension by the type of its `typed_config` when it has
/// one, so a filter may carry any name; only untyped ones go by name.
pub(super) fn identify(name: &str, type_name: Option<&str>) -> Option<Extension> {
    EXTENSIONS
        .iter()
        .find(|(_, ty, names)| match type_name {
            Some(t) => t == *ty,
            None => names.contains(&name),
        })
        .map(|(ext, _, _)| *ext)
}

/// The canonical name of an extension, for messages.
fn canonical(ext: Extension) -> &'static str {
    EXTENSIONS
        .iter()
        .find(|(e, _, _)| *e == ext)
        .map_or("", |(_, _, names)| names[0])
}

/// A `google.protobuf.Any` opened up: the message type and its fields.
pub(super) struct Any {
    /// The type after the last `/` of its URL, `None` for an empty Any.
    pub type_name: Option<String>,
    /// The message's fields.
    pub value: Value,
    /// Where the fields are in the document.
    pub at: At,
}

fn error(kind: ErrorKind, at: &At, message: impl Into<String>) -> ConfigError {
    ConfigError::new(kind, at, message.into())
}

pub(super) fn invalid(at: &At, message: impl Into<String>) -> ConfigError {
    error(ErrorKind::Invalid, at, message)
}

pub(super) fn unsupported(at: &At, message: impl Into<String>) -> ConfigError {
    error(ErrorKind::Unsupported, at, message)
}

/// Deserializes `value` (found at `at`), naming the path of a bad field.
pub(super) fn de<T: DeserializeOwned>(value: Value, at: &At) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| invalid(&at.join(e.path()), e.inner().to_string()))
}

fn type_name_of(url: &str, at: &At) -> Result<String, ConfigError> {
    match url.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(invalid(
            at,
            format!("invalid type URL {url:?}: expected type.googleapis.com/<message>"),
        )),
    }
}

/// A filter's `typed_config`, or an empty one when absent (Envoy allows
/// that for filters recognised by name, such as the router).
pub(super) fn filter_typed_config(
    typed_config: Option<Value>,
    filter_at: &At,
) -> Result<Any, ConfigError> {
    let at = filter_at.field("typed_config");
    match typed_config {
        Some(v) => unpack_any(v, &at),
        None => Ok(Any {
            type_name: None,
            value: Value::Object(Map::new()),
            at,
        }),
    }
}

/// Opens a `typed_config`, seeing through `TypedStruct` wrappers.
fn unpack_any(value: Value, at: &At) -> Result<Any, ConfigError> {
    let Value::Object(mut fields) = value else {
        return Err(invalid(at, "expected an object with \"@type\""));
    };
    let Some(url) = fields.remove("@type") else {
        if fields.is_empty() {
            return Ok(Any {
                type_name: None,
                value: Value::Object(fields),
                at: at.clone(),
            });
        }
        return Err(invalid(at, "missing \"@type\""));
    };
    let type_at = at.field("@type");
    let Value::String(url) = url else {
        return Err(invalid(&type_at, "expected a type URL string"));
    };
    let type_name = type_name_of(&url, &type_at)?;
    if !TYPED_STRUCTS.contains(&type_name.as_str()) {
        return Ok(Any {
            type_name: Some(type_name),
            value: Value::Object(fields),
            at: at.clone(),
        });
    }
    let mut inner_url = None;
    let mut inner = Value::Object(Map::new());
    for (key, v) in fields {
        match (key.as_str(), v) {
            ("type_url", Value::String(url)) => inner_url = Some(url),
            ("value", v @ Value::Object(_)) => inner = v,
            ("type_url", _) => return Err(invalid(&at.field("type_url"), "expected a string")),
            ("value", _) => return Err(invalid(&at.field("value"), "expected an object")),
            (other, _) => {
                return Err(invalid(
                    &at.field(other),
                    format!("unknown field `{other}` in {type_name}"),
                ));
            }
        }
    }
    let url = inner_url.ok_or_else(|| invalid(at, format!("{type_name} needs `type_url`")))?;
    Ok(Any {
        type_name: Some(type_name_of(&url, &at.field("type_url"))?),
        value: inner,
        at: at.field("value"),
    })
}

/// A filter's `typed_config`, required for extensions that need settings.
fn required_any(typed_config: Option<Value>, at: &At) -> Result<Any, ConfigError> {
    let at = at.field("typed_config");
    let value = typed_config.ok_or_else(|| invalid(&at, "typed_config is required"))?;
    unpack_any(value, &at)
}

pub(super) fn filter_label(name: &str, any: &Any) -> String {
    match (name, &any.type_name) {
        ("", Some(t)) => t.clone(),
        ("", None) => "(unnamed)".to_string(),
        (name, _) => name.to_string(),
    }
}

/// State gathered while walking the document and checked at the end.
#[derive(Default)]
struct Walk {
    /// Every cluster named by a route or a TCP proxy, with where.
    cluster_refs: Vec<(At, String)>,
}

/// Checks and converts a whole bootstrap document.
pub(super) fn bootstrap(document: Value) -> Result<Bootstrap, ConfigError> {
    let root = At::root();
    let document = match document {
        // An empty file is an empty bootstrap, as for Envoy.
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    let raw: raw::Bootstrap = de(document, &root)?;
    check(&raw.rest, "Bootstrap", &root)?;
    let mut walk = Walk::default();

    let node = match raw.node {
        Some(n) => node(n, &root.field("node"))?,
        None => Node::default(),
    };
    let admin_at = root.field("admin");
    let admin = match raw.admin {
        Some(a) => admin(a, &admin_at)?,
        None => None,
    };

    let resources = raw.static_resources.unwrap_or_default();
    let resources_at = root.field("static_resources");
    check(&resources.rest, "StaticResources", &resources_at)?;

    let listeners_at = resources_at.field("listeners");
    let mut listeners = Vec::with_capacity(resources.listeners.items.len());
    let mut listener_paths = Vec::new();
    for (at, l) in resources.listeners.into_iter_at(&listeners_at) {
        listeners.push(listener(l, &at, &mut walk)?);
        listener_paths.push(at);
    }

    let clusters_at = resources_at.field("clusters");
    let mut clusters: Vec<Cluster> = Vec::with_capacity(resources.clusters.items.len());
    let mut cluster_index: HashMap<String, usize> = HashMap::new();
    for (at, c) in resources.clusters.into_iter_at(&clusters_at) {
        let c = cluster(c, &at)?;
        if let Some(&first) = cluster_index.get(&c.name) {
            return Err(invalid(
                &at.field("name"),
                format!(
                    "duplicate cluster name {:?} (cluster {first} has it too)",
                    c.name
                ),
            ));
        }
        cluster_index.insert(c.name.clone(), clusters.len());
        clusters.push(c);
    }

    let mut wasm_services = Vec::new();
    let ext_at = root.field("bootstrap_extensions");
    for (at, e) in raw.bootstrap_extensions.into_iter_at(&ext_at) {
        wasm_services.push(bootstrap_extension(e, &at)?);
    }

    check_listeners(&listeners, &listener_paths, admin.as_ref())?;
    for (at, name) in walk.cluster_refs {
        if !cluster_index.contains_key(&name) {
            return Err(invalid(&at, format!("unknown cluster {name:?}")));
        }
    }

    Ok(Bootstrap {
        node,
        admin,
        listeners,
        clusters,
        wasm_services,
    })
}

fn node(raw: raw::Node, at: &At) -> Result<Node, ConfigError> {
    check(&raw.rest, "Node", at)?;
    Ok(Node {
        id: raw.id.unwrap_or_default(),
        cluster: raw.cluster.unwrap_or_default(),
        metadata: Value::Object(raw.metadata.unwrap_or_default()),
    })
}

/// The admin endpoint; an `admin` block without an address runs none, as
/// in Envoy.
fn admin(raw: raw::Admin, at: &At) -> Result<Option<Admin>, ConfigError> {
    check(&raw.rest, "Admin", at)?;
    match raw.address {
        Some(address) => Ok(Some(Admin {
            address: ip_address(Some(address), &at.field("address"))?,
        })),
        None => Ok(None),
    }
}

/// Listener names must be unique, and no two listeners (or a listener and
/// the admin endpoint) may bind the same port on overlapping addresses.
fn check_listeners(
    listeners: &[Listener],
    paths: &[At],
    admin: Option<&Admin>,
) -> Result<(), ConfigError> {
    let overlaps = |a: &SocketAddr, b: &SocketAddr| {
        a.port() == b.port()
            && a.port() != 0
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    for (i, (l, at)) in listeners.iter().zip(paths).enumerate() {
        for earlier in &listeners[..i] {
            if earlier.name == l.name {
                return Err(invalid(
                    &at.field("name"),
                    format!("duplicate listener name {:?}", l.name),
                ));
            }
            if overlaps(&earlier.address, &l.address) {
                return Err(invalid(
                    &at.field("address"),
                    format!(
                        "{} overlaps listener {:?} on {}",
                        l.address, earlier.name, earlier.address
                    ),
                ));
            }
        }
        if let Some(admin) = admin
            && overlaps(&admin.address, &l.address)
        {
            return Err(invalid(
                &at.field("address"),
                format!("{} overlaps the admin address {}", l.address, admin.address),
            ));
        }
    }
    Ok(())
}

/// An `Address` holding a `socket_address`: the host as written and the
/// port.
fn socket_address(raw: Option<raw::Address>, at: &At) -> Result<(String, u16, At), ConfigError> {
    let raw = raw.ok_or_else(|| invalid(at, "an address is required"))?;
    check(&raw.rest, "Address", at)?;
    let sa_at = at.field("socket_address");
    let sa = raw
        .socket_address
        .ok_or_else(|| invalid(&sa_at, "socket_address is required"))?;
    check(&sa.rest, "SocketAddress", &sa_at)?;
    if let Some(protocol) = &sa.protocol
        && protocol.0 != "TCP"
    {
        return Err(unsupported(
            &sa_at.field("protocol"),
            format!("protocol {} is not supported: only TCP", protocol.0),
        ));
    }
    let port = sa
        .port_value
        .ok_or_else(|| invalid(&sa_at.field("port_value"), "port_value is required"))?;
    let address_at = sa_at.field("address");
    if sa.address.is_empty() {
        return Err(invalid(&address_at, "address is required"));
    }
    Ok((sa.address, port.0, address_at))
}

/// A socket address whose host must be an IP literal, as Envoy requires for
/// anything it binds.
fn ip_address(raw: Option<raw::Address>, at: &At) -> Result<SocketAddr, ConfigError> {
    let (host, port, host_at) = socket_address(raw, at)?;
    let ip: IpAddr = host.parse().map_err(|_| {
        invalid(
            &host_at,
            format!(
                "{host:?} is not an IP address: Envoy binds IP literals only, such as 0.0.0.0 or ::"
            ),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

fn listener(raw: raw::Listener, at: &At, walk: &mut Walk) -> Result<Listener, ConfigError> {
    check(&raw.rest, "Listener", at)?;
    let address = ip_address(raw.address, &at.field("address"))?;
    let chains_at = at.field("filter_chains");
    if raw.filter_chains.items.len() > 1 {
        return Err(unsupported(
            &raw.filter_chains.item_path(&chains_at, 1),
            "only one filter chain per listener is supported",
        ));
    }
    let (chain_at, chain) = raw
        .filter_chains
        .into_iter_at(&chains_at)
        .into_iter()
        .next()
        .ok_or_else(|| invalid(&chains_at, "a listener needs a filter chain"))?;
    check(&chain.rest, "FilterChain", &chain_at)?;
    let kind = network_filters(chain.filters, &chain_at.field("filters"), walk)?;
    Ok(Listener {
        name: raw.name.unwrap_or_else(|| address.to_string()),
        address,
        kind,
    })
}

/// Network Wasm filters, then the terminal filter: the HTTP connection
/// manager (with no Wasm filters before it) or a TCP proxy.
fn network_filters(
    filters: List<raw::Filter>,
    at: &At,
    walk: &mut Walk,
) -> Result<ListenerKind, ConfigError> {
    let mut wasm_filters = Vec::new();
    let mut first_wasm: Option<At> = None;
    let mut terminal: Option<(ListenerKind, &'static str)> = None;
    for (f_at, f) in filters.into_iter_at(at) {
        check(&f.rest, "Filter", &f_at)?;
        if f.is_optional.is_some() {
            return Err(unsupported(
                &f_at.field("is_optional"),
                "unknown or unsupported field `is_optional` in Filter",
            ));
        }
        if let Some((_, terminal_name)) = &terminal {
            return Err(invalid(
                &f_at,
                format!(
                    "filter {} follows {terminal_name}, which must be the last filter",
                    f.name
                ),
            ));
        }
        let any = filter_typed_config(f.typed_config, &f_at)?;
        let label = filter_label(&f.name, &any);
        let Some(ext) = identify(&f.name, any.type_name.as_deref()) else {
            return Err(unsupported(
                &f_at,
                format!("filter {label} is not supported"),
            ));
        };
        if any.type_name.is_none() {
            // Every network filter Polyhost runs has settings.
            return Err(invalid(&any.at, "typed_config is required"));
        }
        match ext {
            Extension::NetworkWasm => {
                let raw: raw::WasmFilter = de(any.value, &any.at)?;
                check(&raw.rest, "Wasm", &any.at)?;
                wasm_filters.push(wasm_plugin(raw.config, &any.at.field("config"), false)?);
                first_wasm.get_or_insert(f_at);
            }
            Extension::HttpConnectionManager => {
                if let Some(wasm_at) = first_wasm.take() {
                    return Err(unsupported(
                        &wasm_at,
                        "network Wasm filters before the HTTP connection manager are not supported",
                    ));
                }
                let hcm = http_connection_manager(any, walk)?;
                terminal = Some((ListenerKind::Http(hcm), canonical(ext)));
            }
            Extension::TcpProxy => {
                let raw: raw::TcpProxy = de(any.value, &any.at)?;
                check(&raw.rest, "TcpProxy", &any.at)?;
                let cluster_at = any.at.field("cluster");
                let cluster = raw.cluster.filter(|c| !c.is_empty()).ok_or_else(|| {
                    unsupported(
                        &cluster_at,
                        "cluster is required (weighted_clusters is not supported)",
                    )
                })?;
                walk.cluster_refs.push((cluster_at, cluster.clone()));
                let idle_timeout = match raw.idle_timeout {
                    None => Some(DEFAULT_TCP_IDLE_TIMEOUT),
                    Some(t) if t.0.is_zero() => None,
                    Some(t) => Some(t.0),
                };
                let access_logs =
                    super::access_log::access_logs(raw.access_log, &any.at.field("access_log"))?;
                let proxy = TcpProxy {
                    access_logs,
                    stat_prefix: raw.stat_prefix,
                    cluster,
                    wasm_filters: std::mem::take(&mut wasm_filters),
                    idle_timeout,
                };
                terminal = Some((ListenerKind::Tcp(proxy), canonical(ext)));
            }
            Extension::HttpWasm
            | Extension::Router
            | Extension::WasmService
            | Extension::StdoutAccessLog
            | Extension::StderrAccessLog
            | Extension::FileAccessLog => {
                return Err(invalid(&f_at, format!("{label} is not a network filter")));
            }
        }
    }
    terminal.map(|(kind, _)| kind).ok_or_else(|| {
        invalid(
            at,
            "the filter chain must end in envoy.filters.network.http_connection_manager or envoy.filters.network.tcp_proxy",
        )
    })
}

fn http_connection_manager(
    any: Any,
    walk: &mut Walk,
) -> Result<HttpConnectionManager, ConfigError> {
    let at = any.at;
    let raw: raw::HttpConnectionManager = de(any.value, &at)?;
    check(&raw.rest, "HttpConnectionManager", &at)?;
    let codec = match raw.codec_type.as_ref().map(|c| c.0.as_str()) {
        None | Some("AUTO") => Codec::Auto,
        Some("HTTP1") => Codec::Http1,
        Some("HTTP2") => Codec::Http2,
        Some("HTTP3") => {
            return Err(unsupported(
                &at.field("codec_type"),
                "HTTP3 is not supported",
            ));
        }
        Some(other) => {
            return Err(invalid(
                &at.field("codec_type"),
                format!("unknown codec_type {other}: expected AUTO, HTTP1 or HTTP2"),
            ));
        }
    };
    let scheme_to_overwrite = match raw.scheme_header_transformation {
        Some(t) => {
            let t_at = at.field("scheme_header_transformation");
            check(&t.rest, "SchemeHeaderTransformation", &t_at)?;
            match t.scheme_to_overwrite {
                Some(s) if s == "http" || s == "https" => Some(s),
                Some(s) => {
                    return Err(invalid(
                        &t_at.field("scheme_to_overwrite"),
                        format!("scheme {s:?} must be \"http\" or \"https\""),
                    ));
                }
                None => None,
            }
        }
        None => None,
    };

    let rc_at = at.field("route_config");
    let rc = raw
        .route_config
        .ok_or_else(|| invalid(&rc_at, "route_config is required (rds is not supported)"))?;
    check(&rc.rest, "RouteConfiguration", &rc_at)?;
    let virtual_hosts = virtual_hosts(rc.virtual_hosts, &rc_at.field("virtual_hosts"), walk)?;
    let route_config_headers = header_mutations(rc.headers, &rc_at)?;

    let (wasm_filters, upstream_logs) = http_filters(raw.http_filters, &at.field("http_filters"))?;
    let access_logs = super::access_log::access_logs(raw.access_log, &at.field("access_log"))?;
    Ok(HttpConnectionManager {
        stat_prefix: raw.stat_prefix,
        codec,
        route_config_name: rc.name,
        virtual_hosts,
        wasm_filters,
        scheme_to_overwrite,
        route_config_headers,
        most_specific_header_mutations_wins: rc.most_specific_header_mutations_wins,
        access_logs,
        upstream_logs,
        generate_request_id: raw.generate_request_id.unwrap_or(true),
    })
}

/// Wasm filters in order, then the router, which must be last; with the
/// router's `upstream_log`.
fn http_filters(
    filters: List<raw::Filter>,
    at: &At,
) -> Result<(Vec<WasmPlugin>, Vec<AccessLog>), ConfigError> {
    let mut wasm = Vec::new();
    let mut upstream_logs = Vec::new();
    let mut router: Option<At> = None;
    for (f_at, f) in filters.into_iter_at(at) {
        check(&f.rest, "HttpFilter", &f_at)?;
        if let Some(router_at) = router {
            return Err(invalid(
                &router_at,
                format!(
                    "envoy.filters.http.router must be the last HTTP filter, but {} follows it",
                    f.name
                ),
            ));
        }
        let any = filter_typed_config(f.typed_config, &f_at)?;
        let label = filter_label(&f.name, &any);
        match identify(&f.name, any.type_name.as_deref()) {
            Some(Extension::HttpWasm) => {
                if any.type_name.is_none() {
                    return Err(invalid(&any.at, "typed_config is required"));
                }
                let raw: raw::WasmFilter = de(any.value, &any.at)?;
                check(&raw.rest, "Wasm", &any.at)?;
                wasm.push(wasm_plugin(raw.config, &any.at.field("config"), false)?);
            }
            Some(Extension::Router) => {
                let raw: raw::Router = de(any.value, &any.at)?;
                check(&raw.rest, "Router", &any.at)?;
                upstream_logs = super::access_log::access_logs(
                    raw.upstream_log,
                    &any.at.field("upstream_log"),
                )?;
                router = Some(f_at);
            }
            Some(_) => {
                return Err(invalid(&f_at, format!("{label} is not an HTTP filter")));
            }
            None if f.is_optional == Some(true) => {
                // Envoy's contract for optional filters: skip what it lacks.
                tracing::warn!(path = %f_at, "optional HTTP filter {label} is not supported; skipped");
            }
            None => {
                return Err(unsupported(
                    &f_at,
                    format!("filter {label} is not supported"),
                ));
            }
        }
    }
    if router.is_none() {
        return Err(invalid(
            at,
            "the last HTTP filter must be envoy.filters.http.router",
        ));
    }
    Ok((wasm, upstream_logs))
}

/// Virtual hosts, with names and domains unique across the route
/// configuration, as Envoy requires.
fn virtual_hosts(
    hosts: List<raw::VirtualHost>,
    at: &At,
    walk: &mut Walk,
) -> Result<Vec<VirtualHost>, ConfigError> {
    let mut out: Vec<VirtualHost> = Vec::with_capacity(hosts.items.len());
    let mut domain_owner: BTreeMap<String, String> = BTreeMap::new();
    for (vh_at, vh) in hosts.into_iter_at(at) {
        check(&vh.rest, "VirtualHost", &vh_at)?;
        if out.iter().any(|v| v.name == vh.name) {
            return Err(invalid(
                &vh_at.field("name"),
                format!("duplicate virtual host name {:?}", vh.name),
            ));
        }
        let domains_at = vh_at.field("domains");
        if vh.domains.items.is_empty() {
            return Err(invalid(
                &domains_at,
                "a virtual host needs at least one domain",
            ));
        }
        let mut domains = Vec::with_capacity(vh.domains.items.len());
        for (d_at, domain) in vh.domains.into_iter_at(&domains_at) {
            let domain = domain.to_ascii_lowercase();
            let stars = domain.matches('*').count();
            let well_formed = !domain.is_empty()
                && (stars == 0
                    || domain == "*"
                    || (stars == 1 && (domain.starts_with('*') || domain.ends_with('*'))));
            if !well_formed {
                return Err(invalid(
                    &d_at,
                    format!("invalid domain {domain:?}: a wildcard may only start or end it"),
                ));
            }
            if let Some(owner) = domain_owner.get(&domain) {
                return Err(invalid(
                    &d_at,
                    format!("domain {domain:?} is already served by virtual host {owner:?}"),
                ));
            }
            domain_owner.insert(domain.clone(), vh.name.clone());
            domains.push(domain);
        }
        let mut routes = Vec::with_capacity(vh.routes.items.len());
        for (r_at, r) in vh.routes.into_iter_at(&vh_at.field("routes")) {
            routes.push(route(r, &r_at, walk)?);
        }
        let headers = header_mutations(vh.headers, &vh_at)?;
        out.push(VirtualHost {
            name: vh.name,
            domains,
            routes,
            headers,
        });
    }
    Ok(out)
}

fn route(raw: raw::Route, at: &At, walk: &mut Walk) -> Result<Route, ConfigError> {
    check(&raw.rest, "Route", at)?;
    let match_at = at.field("match");
    let matcher = route_match(
        raw.matcher
            .ok_or_else(|| invalid(&match_at, "a route needs a match"))?,
        &match_at,
    )?;
    let action = match (raw.route, raw.direct_response, raw.redirect) {
        (Some(action), None, None) => {
            let a_at = at.field("route");
            check(&action.rest, "RouteAction", &a_at)?;
            let cluster_at = a_at.field("cluster");
            let cluster = match (
                action.cluster.filter(|c| !c.is_empty()),
                action.weighted_clusters,
            ) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &a_at,
                        "only one of cluster and weighted_clusters may be set",
                    ));
                }
                (Some(name), None) => {
                    walk.cluster_refs.push((cluster_at, name.clone()));
                    ClusterSpecifier::Name(name)
                }
                (None, Some(weighted)) => {
                    weighted_clusters(weighted, &a_at.field("weighted_clusters"), walk)?
                }
                (None, None) => {
                    return Err(invalid(
                        &cluster_at,
                        "cluster or weighted_clusters is required (cluster_header is not supported)",
                    ));
                }
            };
            RouteAction::Cluster {
                cluster,
                prefix_rewrite: action.prefix_rewrite,
                timeout: action.timeout.map(|t| t.0),
                host_rewrite_literal: action.host_rewrite_literal,
            }
        }
        (None, Some(direct), None) => {
            let d_at = at.field("direct_response");
            check(&direct.rest, "DirectResponse", &d_at)?;
            let status_at = d_at.field("status");
            let status = direct
                .status
                .ok_or_else(|| invalid(&status_at, "status is required"))?;
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| invalid(&status_at, format!("status {status} is not in 100-599")))?;
            let body = match direct.body {
                Some(body) => inline_data(body, &d_at.field("body"))?,
                None => Vec::new(),
            };
            RouteAction::DirectResponse { status, body }
        }
        (None, None, Some(redirect)) => {
            RouteAction::Redirect(redirect_action(redirect, &at.field("redirect"))?)
        }
        (None, None, None) => {
            return Err(invalid(
                at,
                "a route needs `route`, `direct_response` or `redirect`",
            ));
        }
        _ => {
            return Err(invalid(
                at,
                "a route has only one of `route`, `direct_response` and `redirect`",
            ));
        }
    };
    let metadata = match raw.metadata {
        Some(m) => metadata(m, &at.field("metadata"))?,
        None => Map::new(),
    };
    let headers = header_mutations(raw.headers, at)?;
    Ok(Route {
        name: raw.name,
        matcher,
        action,
        metadata,
        headers,
    })
}

fn weighted_clusters(
    raw: raw::WeightedCluster,
    at: &At,
    walk: &mut Walk,
) -> Result<ClusterSpecifier, ConfigError> {
    check(&raw.rest, "WeightedCluster", at)?;
    let clusters_at = at.field("clusters");
    let mut clusters = Vec::new();
    for (c_at, c) in raw.clusters.into_iter_at(&clusters_at) {
        check(&c.rest, "ClusterWeight", &c_at)?;
        if c.name.is_empty() {
            return Err(invalid(
                &c_at.field("name"),
                "name is required (cluster_header is not supported)",
            ));
        }
        walk.cluster_refs.push((c_at.field("name"), c.name.clone()));
        clusters.push(ClusterWeight {
            name: c.name,
            weight: c.weight.unwrap_or(0),
        });
    }
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return Err(invalid(
            &clusters_at,
            "at least one cluster needs a weight above 0",
        ));
    }
    if let Some(expected) = raw.total_weight
        && u64::from(expected) != total
    {
        return Err(invalid(
            &at.field("total_weight"),
            format!("the weights add up to {total}, not {expected}"),
        ));
    }
    Ok(ClusterSpecifier::Weighted(clusters))
}

fn redirect_action(raw: raw::RedirectAction, at: &At) -> Result<Redirect, ConfigError> {
    check(&raw.rest, "RedirectAction", at)?;
    let scheme = match (raw.https_redirect, raw.scheme_redirect) {
        (true, Some(_)) => {
            return Err(invalid(
                at,
                "only one of https_redirect and scheme_redirect may be set",
            ));
        }
        (true, None) => Some("https".to_string()),
        (false, scheme) => scheme.map(|s| s.to_ascii_lowercase()),
    };
    let port = match raw.port_redirect {
        Some(p) => Some(u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            invalid(
                &at.field("port_redirect"),
                format!("port {p} is not in 1-65535"),
            )
        })?),
        None => None,
    };
    let path = match (raw.path_redirect, raw.prefix_rewrite) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at,
                "only one of path_redirect and prefix_rewrite may be set",
            ));
        }
        (Some(p), None) if !p.starts_with('/') => {
            return Err(invalid(
                &at.field("path_redirect"),
                format!("{p:?} does not start with '/'"),
            ));
        }
        (Some(p), None) => PathRedirect::Replace(p),
        (None, Some(p)) => PathRedirect::Prefix(p),
        (None, None) => PathRedirect::Keep,
    };
    let status = match raw.response_code.as_ref().map(|c| c.0.as_str()) {
        None | Some("MOVED_PERMANENTLY") => 301,
        Some("FOUND") => 302,
        Some("SEE_OTHER") => 303,
        Some("TEMPORARY_REDIRECT") => 307,
        Some("PERMANENT_REDIRECT") => 308,
        Some(other) => {
            return Err(invalid(
                &at.field("response_code"),
                format!(
                    "unknown response_code {other}: expected MOVED_PERMANENTLY, FOUND, \
                     SEE_OTHER, TEMPORARY_REDIRECT or PERMANENT_REDIRECT"
                ),
            ));
        }
    };
    Ok(Redirect {
        scheme,
        host: raw.host_redirect,
        port,
        path,
        strip_query: raw.strip_query,
        status,
    })
}

fn metadata(raw: raw::Metadata, at: &At) -> Result<Map<String, Value>, ConfigError> {
    check(&raw.rest, "Metadata", at)?;
    Ok(raw.filter_metadata.unwrap_or_default())
}

/// A `DataSource` that must be inline: `inline_string` or base64
/// `inline_bytes`.
pub(super) fn inline_data(raw: raw::DataSource, at: &At) -> Result<Vec<u8>, ConfigError> {
    check(&raw.rest, "DataSource", at)?;
    match (raw.inline_string, raw.inline_bytes, raw.filename) {
        (Some(s), None, None) => Ok(s.into_bytes()),
        (None, Some(b), None) => {
            decode_base64(&b).map_err(|e| invalid(&at.field("inline_bytes"), e))
        }
        (None, None, Some(_)) => Err(unsupported(
            &at.field("filename"),
            "a file here is not supported: use inline_string or inline_bytes",
        )),
        (None, None, None) => Ok(Vec::new()),
        _ => Err(invalid(
            at,
            "only one of inline_string, inline_bytes, filename may be set",
        )),
    }
}

fn route_match(raw: raw::RouteMatch, at: &At) -> Result<RouteMatch, ConfigError> {
    check(&raw.rest, "RouteMatch", at)?;
    let mut specifiers = Vec::new();
    if let Some(p) = raw.prefix {
        specifiers.push(PathMatch::Prefix(p));
    }
    if let Some(p) = raw.path {
        specifiers.push(PathMatch::Exact(p));
    }
    if let Some(p) = raw.path_separated_prefix {
        let p_at = at.field("path_separated_prefix");
        if p.contains(['?', '#']) || p.ends_with('/') || p.is_empty() {
            return Err(invalid(
                &p_at,
                "path_separated_prefix must not be empty, hold '?' or '#', or end in '/'",
            ));
        }
        specifiers.push(PathMatch::SeparatedPrefix(p));
    }
    if let Some(re) = raw.safe_regex {
        specifiers.push(PathMatch::Regex(regex(re, &at.field("safe_regex"))?));
    }
    if specifiers.len() != 1 {
        return Err(invalid(
            at,
            "a route match needs exactly one of prefix, path, path_separated_prefix, safe_regex",
        ));
    }
    let path = specifiers.remove(0);
    let mut headers = Vec::with_capacity(raw.headers.items.len());
    for (h_at, h) in raw.headers.into_iter_at(&at.field("headers")) {
        headers.push(header_matcher(h, &h_at)?);
    }
    Ok(RouteMatch {
        path,
        headers,
        case_sensitive: raw.case_sensitive.unwrap_or(true),
    })
}

fn regex(raw: raw::RegexMatcher, at: &At) -> Result<FullRegex, ConfigError> {
    check(&raw.rest, "RegexMatcher", at)?;
    if let Some(engine) = &raw.google_re2
        && !engine.is_object()
    {
        return Err(invalid(&at.field("google_re2"), "expected an object"));
    }
    FullRegex::new(&raw.regex)
        .map_err(|e| invalid(&at.field("regex"), format!("invalid regex: {e}")))
}

pub(super) fn header_matcher(
    raw: raw::HeaderMatcher,
    at: &At,
) -> Result<HeaderMatcher, ConfigError> {
    check(&raw.rest, "HeaderMatcher", at)?;
    if raw.name.is_empty() {
        return Err(invalid(&at.field("name"), "a header name is required"));
    }
    let plain = |pattern| {
        HeaderRule::String(StringMatcher {
            pattern,
            ignore_case: false,
        })
    };
    let mut rules = Vec::new();
    if let Some(v) = raw.exact_match {
        rules.push(HeaderRule::Value(v));
    }
    if let Some(re) = raw.safe_regex_match {
        rules.push(plain(StringPattern::Regex(regex(
            re,
            &at.field("safe_regex_match"),
        )?)));
    }
    if let Some(p) = raw.prefix_match {
        rules.push(plain(StringPattern::Prefix(p)));
    }
    if let Some(s) = raw.suffix_match {
        rules.push(plain(StringPattern::Suffix(s)));
    }
    if let Some(c) = raw.contains_match {
        rules.push(plain(StringPattern::Contains(c)));
    }
    if let Some(p) = raw.present_match {
        rules.push(HeaderRule::Present(p));
    }
    if let Some(m) = raw.string_match {
        rules.push(HeaderRule::String(string_matcher(
            m,
            &at.field("string_match"),
        )?));
    }
    if rules.len() > 1 {
        return Err(invalid(at, "a header matcher takes only one kind of match"));
    }
    Ok(HeaderMatcher {
        name: raw.name.to_ascii_lowercase(),
        // No match kind at all: Envoy checks that the header is present.
        rule: rules.pop().unwrap_or(HeaderRule::Value(String::new())),
        invert: raw.invert_match,
        treat_missing_as_empty: raw.treat_missing_header_as_empty,
    })
}

fn string_matcher(raw: raw::StringMatcher, at: &At) -> Result<StringMatcher, ConfigError> {
    check(&raw.rest, "StringMatcher", at)?;
    let mut patterns = Vec::new();
    if let Some(v) = raw.exact {
        patterns.push(StringPattern::Exact(v));
    }
    if let Some(v) = raw.prefix {
        patterns.push(StringPattern::Prefix(v));
    }
    if let Some(v) = raw.suffix {
        patterns.push(StringPattern::Suffix(v));
    }
    if let Some(v) = raw.contains {
        patterns.push(StringPattern::Contains(v));
    }
    if let Some(re) = raw.safe_regex {
        patterns.push(StringPattern::Regex(regex(re, &at.field("safe_regex"))?));
    }
    if patterns.len() != 1 {
        return Err(invalid(
            at,
            "a string matcher needs exactly one of exact, prefix, suffix, contains, safe_regex",
        ));
    }
    Ok(StringMatcher {
        pattern: patterns.remove(0),
        ignore_case: raw.ignore_case,
    })
}

fn bootstrap_extension(raw: raw::TypedExtension, at: &At) -> Result<WasmPlugin, ConfigError> {
    check(&raw.rest, "TypedExtensionConfig", at)?;
    if raw.is_optional.is_some() {
        return Err(unsupported(
            &at.field("is_optional"),
            "unknown or unsupported field `is_optional` in TypedExtensionConfig",
        ));
    }
    let any = required_any(raw.typed_config, at)?;
    match identify(&raw.name, any.type_name.as_deref()) {
        Some(Extension::WasmService) if any.type_name.is_some() => {
            let service: raw::WasmService = de(any.value, &any.at)?;
            check(&service.rest, "WasmService", &any.at)?;
            wasm_plugin(service.config, &any.at.field("config"), service.singleton)
        }
        Some(Extension::WasmService) => Err(invalid(&any.at, "missing \"@type\"")),
        _ => Err(unsupported(
            at,
            format!(
                "bootstrap extension {} is not supported",
                filter_label(&raw.name, &any)
            ),
        )),
    }
}

/// A Wasm `PluginConfig` at `at`.
fn wasm_plugin(
    raw: Option<raw::PluginConfig>,
    at: &At,
    singleton: bool,
) -> Result<WasmPlugin, ConfigError> {
    let raw = raw.ok_or_else(|| invalid(at, "config is required"))?;
    check(&raw.rest, "PluginConfig", at)?;

    let vm_at = at.field("vm_config");
    let vm = raw.vm_config.ok_or_else(|| {
        unsupported(
            &vm_at,
            "vm_config is required (vm_config_discovery is not supported)",
        )
    })?;
    check(&vm.rest, "VmConfig", &vm_at)?;
    let engine = engine(&vm.runtime, &vm_at.field("runtime"))?;
    let code = wasm_code(vm.code, &vm_at.field("code"))?;
    let vm_configuration = any_bytes(vm.configuration, &vm_at.field("configuration"))?;
    let (env, host_env_keys) = match vm.environment_variables {
        Some(e) => {
            let e_at = vm_at.field("environment_variables");
            check(&e.rest, "EnvironmentVariables", &e_at)?;
            (e.key_values.into_iter().collect(), e.host_env_keys.items)
        }
        None => (Vec::new(), Vec::new()),
    };

    let configuration = any_bytes(raw.configuration, &at.field("configuration"))?;
    let failure_policy = failure_policy(&raw.failure_policy, raw.fail_open, at)?;
    Ok(WasmPlugin {
        name: raw.name,
        root_id: raw.root_id,
        vm_id: vm.vm_id,
        engine,
        code,
        configuration,
        vm_configuration,
        env,
        host_env_keys,
        allow_precompiled: vm.allow_precompiled,
        failure_policy,
        singleton,
    })
}

/// Envoy's runtimes all mean "a Wasm engine", which for Polyhost is its
/// default one; other names pick a Polyhost engine.
fn engine(runtime: &str, at: &At) -> Result<Option<String>, ConfigError> {
    match runtime {
        ""
        | "envoy.wasm.runtime.v8"
        | "envoy.wasm.runtime.wasmtime"
        | "envoy.wasm.runtime.wamr"
        | "envoy.wasm.runtime.wavm" => Ok(None),
        "envoy.wasm.runtime.null" => Err(unsupported(
            at,
            "the null runtime (plugins compiled into Envoy as native code) is not supported",
        )),
        other => Ok(Some(other.to_string())),
    }
}

fn wasm_code(raw: Option<raw::AsyncDataSource>, at: &At) -> Result<WasmCode, ConfigError> {
    let raw = raw.ok_or_else(|| invalid(at, "code is required"))?;
    check(&raw.rest, "AsyncDataSource", at)?;
    if raw.remote.is_some() {
        return Err(unsupported(
            &at.field("remote"),
            "remote code is not supported: download the module and use local.filename",
        ));
    }
    let local_at = at.field("local");
    let local = raw
        .local
        .ok_or_else(|| invalid(&local_at, "local is required"))?;
    check(&local.rest, "DataSource", &local_at)?;
    match (local.filename, local.inline_bytes, local.inline_string) {
        (Some(f), None, None) if !f.is_empty() => Ok(WasmCode::File(PathBuf::from(f))),
        (Some(_), None, None) => Err(invalid(&local_at.field("filename"), "filename is empty")),
        (None, Some(b), None) => decode_base64(&b)
            .map(WasmCode::Inline)
            .map_err(|e| invalid(&local_at.field("inline_bytes"), e)),
        (None, None, Some(s)) => Ok(WasmCode::Inline(s.into_bytes())),
        (None, None, None) => Err(invalid(
            &local_at,
            "one of filename, inline_bytes, inline_string is required",
        )),
        _ => Err(invalid(
            &local_at,
            "only one of filename, inline_bytes, inline_string may be set",
        )),
    }
}

/// The bytes a plugin reads as its configuration, from an `Any`:
/// `StringValue` and `BytesValue` give their value (as Envoy does), JSON
/// well-known types and `TypedStruct` give their `value` as JSON text, any
/// other message gives its fields as JSON text without `@type` (where Envoy
/// would pass the serialized protobuf, which Polyhost cannot produce).
fn any_bytes(value: Option<Value>, at: &At) -> Result<Vec<u8>, ConfigError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Object(mut fields) = value else {
        return Err(invalid(
            at,
            "expected an Any such as {\"@type\": \"type.googleapis.com/google.protobuf.StringValue\", \"value\": \"...\"}",
        ));
    };
    let Some(url) = fields.remove("@type") else {
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        return Err(invalid(at, "missing \"@type\""));
    };
    let type_at = at.field("@type");
    let Value::String(url) = url else {
        return Err(invalid(&type_at, "expected a type URL string"));
    };
    let type_name = type_name_of(&url, &type_at)?;
    let value_at = at.field("value");
    let only_value = |fields: &mut Map<String, Value>| match fields.keys().find(|k| *k != "value") {
        Some(extra) => Err(invalid(
            &at.field(extra),
            format!("unknown field `{extra}` in {type_name}"),
        )),
        None => Ok(fields.remove("value")),
    };
    let json = |v: &Value| {
        serde_json::to_vec(v).map_err(|e| invalid(&value_at, format!("cannot encode as JSON: {e}")))
    };
    match type_name.as_str() {
        "google.protobuf.StringValue" => match only_value(&mut fields)? {
            Some(Value::String(s)) => Ok(s.into_bytes()),
            None => Ok(Vec::new()),
            Some(_) => Err(invalid(&value_at, "expected a string")),
        },
        "google.protobuf.BytesValue" => match only_value(&mut fields)? {
            Some(Value::String(s)) => decode_base64(&s).map_err(|e| invalid(&value_at, e)),
            None => Ok(Vec::new()),
            Some(_) => Err(invalid(&value_at, "expected a base64 string")),
        },
        "google.protobuf.Struct" | "udpa.type.v1.TypedStruct" | "xds.type.v3.TypedStruct" => {
            // A TypedStruct's type_url names the plugin's own schema; the
            // plugin gets the value.
            fields.remove("type_url");
            json(&only_value(&mut fields)?.unwrap_or(Value::Object(Map::new())))
        }
        "google.protobuf.ListValue" => {
            json(&only_value(&mut fields)?.unwrap_or(Value::Array(Vec::new())))
        }
        "google.protobuf.Value" => json(&only_value(&mut fields)?.unwrap_or(Value::Null)),
        _ => json(&Value::Object(fields)),
    }
}

/// `failure_policy`, or the deprecated `fail_open`; both set must agree.
fn failure_policy(
    policy: &Option<EnumName>,
    fail_open: Option<bool>,
    at: &At,
) -> Result<FailurePolicy, ConfigError> {
    let policy_at = at.field("failure_policy");
    let policy = match policy.as_ref().map(|p| p.0.as_str()) {
        None | Some("UNSPECIFIED") => None,
        Some("FAIL_CLOSED") => Some(FailurePolicy::FailClosed),
        Some("FAIL_OPEN") => Some(FailurePolicy::FailOpen),
        Some("FAIL_RELOAD") => Some(FailurePolicy::FailReload),
        Some(other) => {
            return Err(invalid(
                &policy_at,
                format!(
                    "unknown failure_policy {other}: expected FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD"
                ),
            ));
        }
    };
    match (policy, fail_open) {
        (Some(p), Some(open)) if (p == FailurePolicy::FailOpen) != open => Err(invalid(
            &policy_at,
            format!("failure_policy {p:?} contradicts fail_open: {open}"),
        )),
        (Some(p), _) => Ok(p),
        (None, Some(true)) => Ok(FailurePolicy::FailOpen),
        (None, _) => Ok(FailurePolicy::FailClosed),
    }
}

fn cluster(raw: raw::Cluster, at: &At) -> Result<Cluster, ConfigError> {
    check(&raw.rest, "Cluster", at)?;
    if raw.name.is_empty() {
        return Err(invalid(&at.field("name"), "a cluster needs a name"));
    }
    let type_at = at.field("type");
    let discovery = match raw.discovery.as_ref().map(|d| d.0.as_str()) {
        None | Some("STATIC") => Discovery::Static,
        Some("STRICT_DNS") => Discovery::StrictDns,
        Some("LOGICAL_DNS") => Discovery::LogicalDns,
        Some(other @ ("EDS" | "ORIGINAL_DST")) => {
            return Err(unsupported(
                &type_at,
                format!("cluster type {other} is not supported"),
            ));
        }
        Some(other) => {
            return Err(invalid(
                &type_at,
                format!("unknown cluster type {other}: expected STATIC, STRICT_DNS or LOGICAL_DNS"),
            ));
        }
    };
    match raw.lb_policy.as_ref().map(|p| p.0.as_str()) {
        None | Some("ROUND_ROBIN") => {}
        Some(
            other @ ("LEAST_REQUEST"
            | "RANDOM"
            | "RING_HASH"
            | "MAGLEV"
            | "CLUSTER_PROVIDED"
            | "LOAD_BALANCING_POLICY_CONFIG"),
        ) => {
            tracing::warn!(path = %at.field("lb_policy"), "lb_policy {other} ignored: Polyhost balances round robin");
        }
        Some(other) => {
            return Err(invalid(
                &at.field("lb_policy"),
                format!("unknown lb_policy {other}"),
            ));
        }
    }

    let mut endpoints = Vec::new();
    if let Some(la) = raw.load_assignment {
        let la_at = at.field("load_assignment");
        check(&la.rest, "ClusterLoadAssignment", &la_at)?;
        for (l_at, locality) in la.endpoints.into_iter_at(&la_at.field("endpoints")) {
            check(&locality.rest, "LocalityLbEndpoints", &l_at)?;
            for (e_at, lb) in locality
                .lb_endpoints
                .into_iter_at(&l_at.field("lb_endpoints"))
            {
                check(&lb.rest, "LbEndpoint", &e_at)?;
                let ep_at = e_at.field("endpoint");
                let ep = lb
                    .endpoint
                    .ok_or_else(|| invalid(&ep_at, "endpoint is required"))?;
                check(&ep.rest, "Endpoint", &ep_at)?;
                let (host, port, host_at) = socket_address(ep.address, &ep_at.field("address"))?;
                if discovery == Discovery::Static && host.parse::<IpAddr>().is_err() {
                    return Err(invalid(
                        &host_at,
                        format!(
                            "{host:?} is not an IP address, which a STATIC cluster needs: use type STRICT_DNS or LOGICAL_DNS"
                        ),
                    ));
                }
                if discovery == Discovery::LogicalDns && !endpoints.is_empty() {
                    return Err(invalid(
                        &e_at,
                        "a LOGICAL_DNS cluster takes exactly one endpoint",
                    ));
                }
                endpoints.push(Endpoint { host, port });
            }
        }
    }

    let mut http2 = false;
    if let Some(options) = raw.http2_protocol_options {
        http2_options(&options, &at.field("http2_protocol_options"))?;
        http2 = true;
    }
    let teo_at = at.field("typed_extension_protocol_options");
    for (key, value) in raw.typed_extension_protocol_options {
        let key_at = teo_at.field(&key);
        if key != HTTP_PROTOCOL_OPTIONS {
            return Err(unsupported(
                &key_at,
                format!("protocol options {key} are not supported"),
            ));
        }
        let any = unpack_any(value, &key_at)?;
        if any.type_name.as_deref() != Some(HTTP_PROTOCOL_OPTIONS) {
            return Err(invalid(
                &key_at,
                format!("expected \"@type\": type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
            ));
        }
        let options: raw::HttpProtocolOptions = de(any.value, &any.at)?;
        check(&options.rest, "HttpProtocolOptions", &any.at)?;
        if let Some(explicit) = options.explicit_http_config {
            let ex_at = any.at.field("explicit_http_config");
            check(&explicit.rest, "ExplicitHttpConfig", &ex_at)?;
            match (
                explicit.http_protocol_options,
                explicit.http2_protocol_options,
            ) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &ex_at,
                        "only one of http_protocol_options, http2_protocol_options may be set",
                    ));
                }
                (Some(h1), None) => {
                    http2_options(&h1, &ex_at.field("http_protocol_options"))?;
                    http2 = false;
                }
                (None, Some(h2)) => {
                    http2_options(&h2, &ex_at.field("http2_protocol_options"))?;
                    http2 = true;
                }
                (None, None) => {}
            }
        }
    }

    let metadata = match raw.metadata {
        Some(m) => metadata(m, &at.field("metadata"))?,
        None => Map::new(),
    };
    let dns_refresh_rate = match raw.dns_refresh_rate {
        None => DEFAULT_DNS_REFRESH_RATE,
        // Envoy requires more than 1 ms; a busy loop of lookups helps no one.
        Some(rate) if rate.0 <= std::time::Duration::from_millis(1) => {
            return Err(invalid(
                &at.field("dns_refresh_rate"),
                "must be more than 1ms",
            ));
        }
        Some(rate) => rate.0,
    };
    Ok(Cluster {
        name: raw.name,
        discovery,
        connect_timeout: raw.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.0),
        dns_refresh_rate,
        endpoints,
        http2,
        metadata,
    })
}

/// HTTP/1 or HTTP/2 protocol options: their presence picks the protocol;
/// their settings tune Envoy's codec, which Polyhost does not have.
fn http2_options(options: &Value, at: &At) -> Result<(), ConfigError> {
    match options {
        Value::Object(fields) if fields.is_empty() => Ok(()),
        Value::Object(_) => {
            tracing::warn!(path = %at, "protocol option settings ignored: codec tuning is Pingora's");
            Ok(())
        }
        _ => Err(invalid(at, "expected an object")),
    }
}
