//! The HTTP connection manager: Envoy's `http_connection_manager` as a
//! Pingora [`ProxyHttp`], running the Wasm filter chain on every request and
//! routing what the plugins let through.
//!
//! | Pingora phase | what happens |
//! |---|---|
//! | `request_filter` | stream contexts created, `proxy_on_request_headers` on each filter, then routing: `direct_response`, 404, or a cluster |
//! | `upstream_peer` | round-robin endpoint of the route's cluster, route timeout |
//! | `upstream_request_filter` | `prefix_rewrite`, `host_rewrite_literal` |
//! | `request_body_filter` | `proxy_on_request_body` |
//! | `response_filter` | `proxy_on_response_headers` (reverse order) |
//! | `response_body_filter` | `proxy_on_response_body` (reverse order) |
//! | `response_trailer_filter` | `proxy_on_response_trailers` (reverse order) |
//! | `logging` | `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`; stats |

mod filter_chain;
mod header_mutation;
mod properties;
mod redirect;

use crate::access_log::{AccessLogger, Entry as AccessLogEntry};
use crate::cluster::{ClusterManager, UpstreamCluster};
use crate::config::{self, ClusterSpecifier, PathMatch, Route, RouteAction, VirtualHost};
use crate::stats::HttpStats;
use crate::wasm::WasmFilter;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use filter_chain::{BodyOutcome, FilterStream, Side};
use header_mutation::Direction;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer as _};
use polyhost::{HeaderMap, LocalResponse, StreamProperties};
pub(crate) use properties::protocol_name;
use properties::{Completed, RequestProperties, ResponseFlag, request_properties};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The header carrying a request's id.
const REQUEST_ID: &str = "x-request-id";

/// The header naming the scheme the client used.
const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Envoy's route timeout when a route sets none.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// A Pingora [`ProxyHttp`] that runs a chain of proxy-wasm HTTP plugins on
/// each request and routes it as an Envoy HTTP connection manager would.
///
/// The routes and the filter chain form one [`RouteTable`] that a reload
/// replaces as a whole ([`WasmHttpProxy::table_handle`]); each request takes
/// the table current when it starts and finishes on it.
pub struct WasmHttpProxy {
    stat_prefix: String,
    table: Arc<ArcSwap<RouteTable>>,
    stats: Arc<HttpStats>,
}

/// What one `http_connection_manager` runs: its routes and its Wasm filter
/// chain, with the clusters the routes name.
pub struct RouteTable {
    route_config_name: String,
    virtual_hosts: Vec<VirtualHost>,
    filters: Vec<WasmFilter>,
    /// The connection manager's `access_log` entries, opened.
    access_logs: Vec<AccessLogger>,
    /// The router's `upstream_log` entries, opened.
    upstream_logs: Vec<AccessLogger>,
    /// `route_config`'s own header mutations.
    route_config_headers: config::HeaderMutations,
    /// `most_specific_header_mutations_wins`.
    most_specific_header_mutations_wins: bool,
    /// Counts requests routed to weighted clusters, to take turns.
    weighted_turn: AtomicU64,
    /// `generate_request_id`.
    generate_request_id: bool,
    clusters: Arc<ClusterManager>,
}

impl RouteTable {
    /// The routes of `manager` with its Wasm filters already loaded (in
    /// chain order), its access logs opened, and the clusters its routes
    /// name.
    pub fn new(
        manager: &config::HttpConnectionManager,
        filters: Vec<WasmFilter>,
        access_logs: Vec<AccessLogger>,
        clusters: Arc<ClusterManager>,
    ) -> RouteTable {
        RouteTable {
            route_config_name: manager.route_config_name.clone(),
            virtual_hosts: manager.virtual_hosts.clone(),
            filters,
            access_logs,
            upstream_logs: Vec::new(),
            route_config_headers: manager.route_config_headers.clone(),
            most_specific_header_mutations_wins: manager.most_specific_header_mutations_wins,
            weighted_turn: AtomicU64::new(0),
            generate_request_id: manager.generate_request_id,
            clusters,
        }
    }

    /// The same table, writing the router's `upstream_log` entries (a line
    /// per request that went to an upstream) with these loggers.
    pub fn with_upstream_logs(self, upstream_logs: Vec<AccessLogger>) -> RouteTable {
        RouteTable {
            upstream_logs,
            ..self
        }
    }

    /// The Wasm filters, in chain order.
    pub fn filters(&self) -> &[WasmFilter] {
        &self.filters
    }

    /// The cluster of `clusters` whose turn it is. Reading the turn does
    /// not move it, so routing a request twice (before and after the Wasm
    /// filters) gives the same cluster; [`RouteTable::next_weighted_turn`]
    /// moves it once the request is routed.
    fn weighted_pick<'a>(&self, clusters: &'a [config::ClusterWeight]) -> &'a str {
        let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
        let mut turn = self.weighted_turn.load(Ordering::Relaxed) % total.max(1);
        for c in clusters {
            if turn < u64::from(c.weight) {
                return &c.name;
            }
            turn -= u64::from(c.weight);
        }
        // Unreachable while the weights add up above 0 (the config checks).
        clusters.last().map_or("", |c| c.name.as_str())
    }

    /// Moves weighted clusters on to their next turn.
    fn next_weighted_turn(&self) {
        self.weighted_turn.fetch_add(1, Ordering::Relaxed);
    }
    /// Finds the route for the request as the plugins left it.
    fn route(&self, headers: &HeaderMap) -> Option<RouteTarget> {
        let authority = authority_of(headers);
        let path = headers.get_str(":path").unwrap_or("/");
        let host = config::select_virtual_host(&self.virtual_hosts, authority)?;
        let route = host.route_index(path, |name| headers.get_str(name))?;
        // Indices rather than copies of the route: the table outlives the
        // request (`RequestContext::table`), and a route's strings (and a
        // direct response's body) need not be cloned per request.
        let cluster = match &host.routes[route].action {
            RouteAction::Cluster {
                cluster: ClusterSpecifier::Name(name),
                ..
            } => self.clusters.get(name),
            RouteAction::Cluster {
                cluster: ClusterSpecifier::Weighted(clusters),
                ..
            } => self.clusters.get(self.weighted_pick(clusters)),
            RouteAction::DirectResponse { .. } | RouteAction::Redirect(_) => None,
        };
        Some(RouteTarget {
            host: self
                .virtual_hosts
                .iter()
                .position(|h| std::ptr::eq(h, host))?,
            route,
            cluster,
        })
    }

    /// The configured route `target` points at.
    fn route_of(&self, target: &RouteTarget) -> &Route {
        &self.virtual_hosts[target.host].routes[target.route]
    }

    /// The header mutations of `target`'s route, virtual host and route
    /// configuration in the order they apply, or `None` when none of them
    /// has any for `direction`. By default the route's apply first, so
    /// the wider levels overwrite them; `most_specific_header_mutations_wins`
    /// reverses that.
    fn header_levels(
        &self,
        target: Option<&RouteTarget>,
        direction: Direction,
    ) -> Option<[&config::HeaderMutations; 3]> {
        let target = target?;
        let host = &self.virtual_hosts[target.host];
        let route = &host.routes[target.route];
        let mut levels = [&route.headers, &host.headers, &self.route_config_headers];
        if self.most_specific_header_mutations_wins {
            levels.reverse();
        }
        let any = levels.iter().any(|level| {
            let (remove, add) = header_mutation::lists(level, direction);
            !remove.is_empty() || !add.is_empty()
        });
        any.then_some(levels)
    }
}

/// The request's authority: `:authority`, else `host`, else empty.
fn authority_of(headers: &HeaderMap) -> &str {
    headers
        .get_str(":authority")
        .or_else(|| headers.get_str("host"))
        .unwrap_or("")
}

/// The path a route matched by prefix (or exactly), which `prefix_rewrite`
/// replaces.
fn matched_prefix(route: &Route) -> Option<&str> {
    match &route.matcher.path {
        PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) | PathMatch::Exact(p) => Some(p),
        PathMatch::Regex(_) => None,
    }
}

impl WasmHttpProxy {
    /// A proxy for one `http_connection_manager` serving `table`.
    pub fn new(stat_prefix: &str, table: RouteTable, stats: Arc<HttpStats>) -> WasmHttpProxy {
        WasmHttpProxy {
            stat_prefix: stat_prefix.to_string(),
            table: Arc::new(ArcSwap::from_pointee(table)),
            stats,
        }
    }

    /// The `stat_prefix` of the connection manager.
    pub fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }

    /// Where the current [`RouteTable`] is kept: storing a new one there
    /// serves every later request with it.
    pub fn table_handle(&self) -> Arc<ArcSwap<RouteTable>> {
        self.table.clone()
    }
}

/// The route a request took, in the [`RouteTable`] it was found in.
pub struct RouteTarget {
    /// Index of the virtual host in the table.
    host: usize,
    /// Index of the route in the virtual host.
    route: usize,
    /// The route's cluster, when it forwards to one that exists.
    cluster: Option<Arc<UpstreamCluster>>,
}

/// Per-request state.
pub struct RequestContext {
    /// The routes and filters this request runs with, even if a reload
    /// replaces them meanwhile.
    table: Arc<RouteTable>,
    streams: Vec<FilterStream>,
    route: Option<RouteTarget>,
    /// A response-phase local reply replaces the upstream body with this.
    replacement_body: Option<Bytes>,
    /// The request headers ended the stream: there is no request body, and
    /// as in Envoy the plugins get no body callback for it.
    request_ended_at_headers: bool,
    /// Envoy's response flags for the access log (UF, UT, NR, ...).
    response_flags: &'static str,
    /// Envoy's response code details (`via_upstream`, a local reply's).
    code_details: Option<Cow<'static, str>>,
    /// When the request started, for the access log.
    started: std::time::Instant,
    started_at: std::time::SystemTime,
    /// The endpoint `upstream_peer` chose, for the access log.
    upstream_host: Option<std::net::SocketAddr>,
    /// What the request's plugins read as properties, when it has plugins;
    /// `upstream_peer` adds the upstream host to it.
    properties: Option<Arc<RequestProperties>>,
    /// The upstream's response as it arrived, before the plugins saw it;
    /// kept only for the router's `upstream_log`.
    upstream_response: Option<ResponseHeader>,
}

impl RequestContext {
    /// Records an Envoy response flag, for the access log and for the
    /// plugins' `response.flags`.
    fn flag(&mut self, flag: ResponseFlag) {
        self.response_flags = flag.letters();
        if let Some(properties) = &self.properties {
            properties.add_flag(flag);
        }
    }

    /// Records why the response is what it is, for the access log's
    /// `%RESPONSE_CODE_DETAILS%` and the plugins' `response.code_details`
    /// (a later answer replaces an earlier one, as a local reply replaces
    /// an upstream response).
    fn code_details(&mut self, details: impl Into<Cow<'static, str>>) {
        let details = details.into();
        if let Some(properties) = &self.properties {
            properties.set_code_details(details.clone());
        }
        self.code_details = Some(details);
    }
}

/// Answers the request with `reply` instead of the upstream: its details
/// become `response.code_details`, then the plugins' response callbacks
/// see it (as Envoy's encoder path does) and it goes to the client.
async fn respond_locally(
    session: &mut Session,
    ctx: &mut RequestContext,
    reply: LocalResponse,
) -> Result<()> {
    ctx.code_details(reply.details.clone());
    send_local(session, filter_chain::encode_local(&mut ctx.streams, reply)).await
}

#[async_trait]
impl ProxyHttp for WasmHttpProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            table: self.table.load_full(),
            streams: Vec::new(),
            route: None,
            replacement_body: None,
            request_ended_at_headers: false,
            response_flags: "-",
            code_details: None,
            started: std::time::Instant::now(),
            started_at: std::time::SystemTime::now(),
            upstream_host: None,
            properties: None,
            upstream_response: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        normalize_absolute_form(session.req_header_mut())?;
        // As Envoy's connection manager does before any filter runs, so
        // the plugins (`request.id`), the upstream and the access log see
        // them: an id for a request without one, and the scheme the client
        // used (listeners are plain HTTP) when no proxy before said it.
        if ctx.table.generate_request_id && session.req_header().headers.get(REQUEST_ID).is_none() {
            let id = uuid::Uuid::new_v4().to_string();
            session.req_header_mut().insert_header(REQUEST_ID, id)?;
        }
        if session.req_header().headers.get(FORWARDED_PROTO).is_none() {
            session
                .req_header_mut()
                .insert_header(FORWARDED_PROTO, "http")?;
        }
        let headers = request_header_map(session);
        // The connection and route properties plugins may read, formatted
        // only if one is read; a listener without Wasm filters skips even
        // that.
        let table = ctx.table.clone();
        if !table.filters.is_empty() {
            let route = table.route(&headers);
            let properties = request_properties(session, &table, route, ctx.started_at);
            ctx.properties = Some(properties.clone());
            let properties = StreamProperties(properties);
            for filter in &table.filters {
                match filter_chain::start(filter, &properties) {
                    Ok(stream) => ctx.streams.push(stream),
                    Err(reply) => {
                        respond_locally(session, ctx, reply).await?;
                        return Ok(true);
                    }
                }
            }
        }
        let end_of_stream = session.is_body_empty();
        ctx.request_ended_at_headers = end_of_stream;
        let headers = if ctx.streams.is_empty() {
            headers
        } else {
            match filter_chain::headers(&mut ctx.streams, Side::Request, headers, end_of_stream)
                .await
            {
                Ok(edited) => {
                    apply_request_headers(session.req_header_mut(), &edited)?;
                    edited
                }
                Err(reply) => {
                    respond_locally(session, ctx, reply).await?;
                    return Ok(true);
                }
            }
        };
        // Envoy clears the route cache when a plugin edits headers; routing
        // after the chain sees the edits.
        let Some(route) = table.route(&headers) else {
            ctx.flag(ResponseFlag::NoRouteFound);
            respond_locally(session, ctx, simple_reply(404, "route_not_found")).await?;
            return Ok(true);
        };
        let matched = table.route_of(&route);
        if let RouteAction::Cluster {
            cluster: ClusterSpecifier::Weighted(_),
            ..
        } = matched.action
        {
            table.next_weighted_turn();
        }
        let answer = match &matched.action {
            RouteAction::Cluster { .. } => None,
            RouteAction::DirectResponse { status, body } => Some(LocalResponse {
                status: u32::from(*status),
                details: "direct_response".into(),
                body: body.clone(),
                headers: HeaderMap::new(),
                grpc_status: None,
            }),
            RouteAction::Redirect(redirect) => {
                let url = redirect::RequestUrl {
                    scheme: headers
                        .get_str(FORWARDED_PROTO)
                        .or_else(|| headers.get_str(":scheme"))
                        .unwrap_or("http"),
                    authority: authority_of(&headers),
                    path: headers.get_str(":path").unwrap_or("/"),
                };
                let mut location = HeaderMap::new();
                location.add(
                    "location",
                    redirect::location(redirect, &url, matched_prefix(matched)),
                );
                Some(LocalResponse {
                    status: u32::from(redirect.status),
                    details: "redirect".into(),
                    body: Vec::new(),
                    headers: location,
                    grpc_status: None,
                })
            }
        };
        if let Some(mut reply) = answer {
            ctx.route = Some(route);
            if let Some(levels) = table.header_levels(ctx.route.as_ref(), Direction::Response) {
                let entry = request_entry(session, ctx);
                header_mutation::apply(&levels, Direction::Response, &entry, &mut reply.headers);
            }
            respond_locally(session, ctx, reply).await?;
            return Ok(true);
        }
        if route.cluster.is_none() {
            ctx.flag(ResponseFlag::NoClusterFound);
            respond_locally(session, ctx, simple_reply(503, "cluster_not_found")).await?;
            return Ok(true);
        }
        ctx.route = Some(route);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(HTTPStatus(404), "no route"))?;
        let cluster = route
            .cluster
            .as_ref()
            .ok_or_else(|| Error::explain(HTTPStatus(503), "no cluster"))?;
        let Some(mut peer) = cluster.peer() else {
            ctx.flag(ResponseFlag::NoHealthyUpstream);
            return Err(Error::explain(HTTPStatus(503), "no healthy upstream"));
        };
        cluster.requests.fetch_add(1, Ordering::Relaxed);
        ctx.upstream_host = peer.address().as_inet().copied();
        if let (Some(properties), Some(host)) = (&ctx.properties, ctx.upstream_host) {
            properties.upstream.set(host);
        }
        let timeout = match &ctx.table.route_of(route).action {
            RouteAction::Cluster { timeout, .. } => timeout.unwrap_or(DEFAULT_ROUTE_TIMEOUT),
            RouteAction::DirectResponse { .. } | RouteAction::Redirect(_) => DEFAULT_ROUTE_TIMEOUT,
        };
        // A zero timeout disables it, as in Envoy.
        if !timeout.is_zero() {
            peer.options.read_timeout = Some(timeout);
        }
        Ok(Box::new(peer))
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if !ctx.table.upstream_logs.is_empty() {
            ctx.upstream_response = Some(upstream_response.clone());
        }
        // Before the Wasm filters' response callbacks, which see them.
        if let Some(levels) = ctx
            .table
            .header_levels(ctx.route.as_ref(), Direction::Response)
        {
            let entry = request_entry(session, ctx);
            header_mutation::apply(&levels, Direction::Response, &entry, upstream_response);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let Some(target) = &ctx.route else {
            return Ok(());
        };
        let route = ctx.table.route_of(target);
        if let RouteAction::Cluster {
            prefix_rewrite,
            host_rewrite_literal,
            ..
        } = &route.action
        {
            if let (Some(rewrite), Some(prefix)) = (prefix_rewrite, matched_prefix(route)) {
                let path = String::from_utf8_lossy(upstream_request.raw_path()).into_owned();
                if let Some(rest) = path.strip_prefix(prefix) {
                    let new_path = format!("{rewrite}{rest}");
                    let uri = new_path
                        .parse()
                        .map_err(|_| Error::explain(HTTPStatus(400), "bad rewritten path"))?;
                    upstream_request.set_uri(uri);
                }
            }
            if let Some(host) = host_rewrite_literal {
                upstream_request.insert_header("host", host.as_str())?;
            }
        }
        // After the Wasm filters, which do not see them.
        if let Some(levels) = ctx.table.header_levels(Some(target), Direction::Request) {
            let entry = request_entry(session, ctx);
            header_mutation::apply(&levels, Direction::Request, &entry, upstream_request);
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if ctx.request_ended_at_headers || ctx.streams.iter().all(|s| s.context.is_none()) {
            return Ok(());
        }
        let had_chunk = body.is_some();
        let chunk = body.take().map(|b| b.to_vec()).unwrap_or_default();
        match filter_chain::body(&mut ctx.streams, Side::Request, chunk, end_of_stream) {
            BodyOutcome::Continue(data) => *body = body_out(had_chunk, data),
            BodyOutcome::Hold => *body = None,
            BodyOutcome::Respond(reply) => {
                respond_locally(session, ctx, reply).await?;
                return Err(Error::explain(HTTPStatus(0), "answered by a plugin"));
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        ctx.code_details("via_upstream");
        if ctx.streams.iter().all(|s| s.context.is_none()) {
            return Ok(());
        }
        let headers = response_header_map(upstream_response);
        match filter_chain::headers(&mut ctx.streams, Side::Response, headers, false).await {
            Ok(edited) => apply_response_headers(upstream_response, &edited)?,
            Err(reply) => {
                ctx.code_details(reply.details.clone());
                // The upstream's headers are already in hand but not sent:
                // replace them, and the body, with the plugin's answer.
                *upstream_response = local_response_header(&reply)?;
                ctx.replacement_body = Some(Bytes::from(reply.body));
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<Option<Duration>> {
        if let Some(replacement) = &ctx.replacement_body {
            *body = end_of_stream.then(|| replacement.clone());
            return Ok(None);
        }
        if ctx.streams.iter().all(|s| s.context.is_none()) {
            return Ok(None);
        }
        let had_chunk = body.is_some();
        let chunk = body.take().map(|b| b.to_vec()).unwrap_or_default();
        match filter_chain::body(&mut ctx.streams, Side::Response, chunk, end_of_stream) {
            BodyOutcome::Continue(data) => *body = body_out(had_chunk, data),
            BodyOutcome::Hold => *body = None,
            BodyOutcome::Respond(reply) => {
                // Headers have gone out; all that can change is the rest of
                // the body.
                tracing::warn!(target: "polyhost::wasm", status = reply.status, "a plugin answered locally after the response headers were sent; ending the body");
                *body = Some(Bytes::from(reply.body));
            }
        }
        Ok(None)
    }

    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut RequestContext,
    ) -> Result<Option<Bytes>> {
        if ctx.streams.iter().all(|s| s.context.is_none()) {
            return Ok(None);
        }
        let mut trailers = HeaderMap::new();
        for (name, value) in upstream_trailers.iter() {
            trailers.add(name.as_str(), value.as_bytes());
        }
        let edited = filter_chain::response_trailers(&mut ctx.streams, trailers);
        let mut rebuilt = http::HeaderMap::with_capacity(edited.len());
        for (name, value) in edited.iter() {
            let (Ok(name), Ok(value)) = (
                http::header::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) else {
                tracing::warn!(target: "polyhost::wasm", "a plugin set a trailer that is not valid HTTP; dropped");
                continue;
            };
            rebuilt.append(name, value);
        }
        *upstream_trailers = rebuilt;
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestContext,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.flag(ResponseFlag::UpstreamConnectionFailure);
        if let Some(cluster) = ctx.route.as_ref().and_then(|r| r.cluster.as_ref()) {
            cluster.connect_failures.fetch_add(1, Ordering::Relaxed);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        // Envoy's answers (status, body, code details): 503 when the
        // upstream cannot be reached, 504 when it does not answer within
        // the route timeout.
        const CONNECT_FAILURE: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        const TERMINATION: &str = "upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        let (code, body, details): (u16, &str, &str) = match e.etype() {
            HTTPStatus(0) => (0, "", ""),
            HTTPStatus(code) if ctx.response_flags == ResponseFlag::NoHealthyUpstream.letters() => {
                (*code, "no healthy upstream", "no_healthy_upstream")
            }
            HTTPStatus(code) => (*code, "", "upstream_failure"),
            ConnectTimedout | ConnectRefused | ConnectError | ConnectNoRoute => {
                ctx.flag(ResponseFlag::UpstreamConnectionFailure);
                (
                    503,
                    CONNECT_FAILURE,
                    "upstream_reset_before_response_started{connection_failure}",
                )
            }
            ReadTimedout | WriteTimedout => {
                ctx.flag(ResponseFlag::UpstreamRequestTimeout);
                if let Some(cluster) = ctx.route.as_ref().and_then(|r| r.cluster.as_ref()) {
                    cluster.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                (504, "upstream request timeout", "response_timeout")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => {
                    ctx.flag(ResponseFlag::UpstreamConnectionTermination);
                    (
                        503,
                        TERMINATION,
                        "upstream_reset_before_response_started{connection_termination}",
                    )
                }
                ErrorSource::Downstream => (0, "", ""),
                _ => (500, "", "upstream_failure"),
            },
        };
        if code > 0 && session.response_written().is_none() {
            let mut reply = simple_reply(code, details);
            reply.body = body.as_bytes().to_vec();
            if let Err(err) = respond_locally(session, ctx, reply).await {
                tracing::debug!(target: "polyhost::http", error = %err, "cannot send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestContext) {
        if let Some(properties) = &ctx.properties {
            // What the plugins' proxy_on_log reads, as Envoy's stream info
            // has it once the stream is complete.
            let response = session.response_written();
            properties.complete(Completed {
                duration: ctx.started.elapsed(),
                request_total: request_header_bytes(session.req_header())
                    + session.body_bytes_read() as u64,
                response_total: response.map_or(0, response_header_bytes)
                    + session.body_bytes_sent() as u64,
            });
        }
        filter_chain::finish(&mut ctx.streams);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.stats.record_status(status);
        let millis = u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.stats.request_time.record(millis);
        if ctx.response_flags != "-" {
            tracing::info!(target: "polyhost::http", status, flags = ctx.response_flags, path = %String::from_utf8_lossy(session.req_header().raw_path()), "request failed");
        }
        if !ctx.table.access_logs.is_empty() || !ctx.table.upstream_logs.is_empty() {
            write_access_logs(session, ctx);
        }
    }
}

/// One line per `access_log` entry for the request that just ended, and
/// one per `upstream_log` entry if it went to an upstream.
fn write_access_logs(session: &Session, ctx: &RequestContext) {
    let entry = AccessLogEntry {
        response: session.response_written(),
        ..request_entry(session, ctx)
    };
    for log in &ctx.table.access_logs {
        log.write(&entry);
    }
    if ctx.upstream_host.is_some() {
        let entry = AccessLogEntry {
            response: ctx.upstream_response.as_ref(),
            ..entry
        };
        for log in &ctx.table.upstream_logs {
            log.write(&entry);
        }
    }
}

/// What the access log, and the operators in a header mutation's value,
/// can tell about the request so far (no response yet).
fn request_entry<'a>(session: &'a Session, ctx: &'a RequestContext) -> AccessLogEntry<'a> {
    let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
        a.and_then(|a| a.as_inet().copied())
    };
    let route = ctx.route.as_ref();
    AccessLogEntry {
        start: ctx.started_at,
        duration: ctx.started.elapsed(),
        request: Some(session.req_header()),
        response: None,
        flags: ctx.response_flags,
        code_details: ctx.code_details.as_deref(),
        bytes_received: session.body_bytes_read(),
        bytes_sent: session.body_bytes_sent(),
        upstream_host: ctx.upstream_host,
        cluster: route
            .and_then(|r| r.cluster.as_ref())
            .map(|c| c.name.as_str()),
        route_name: route.map(|r| ctx.table.route_of(r).name.as_str()),
        downstream_remote: inet(session.client_addr()),
        downstream_local: inet(session.server_addr()),
    }
}

/// What goes on to Pingora after the plugins saw a body step: nothing when
/// there was no chunk and the plugins added none (Pingora warns on every
/// empty write after the body has ended), else the bytes.
fn body_out(had_chunk: bool, data: Vec<u8>) -> Option<Bytes> {
    (had_chunk || !data.is_empty()).then(|| Bytes::from(data))
}

/// The size Envoy gives a header map: names and values, pseudo-headers
/// (`:method`, `:path`) included.
fn request_header_bytes(header: &RequestHeader) -> u64 {
    let pseudo =
        ":method".len() + header.method.as_str().len() + ":path".len() + header.raw_path().len();
    (pseudo + fields_bytes(&header.headers)) as u64
}

/// As [`request_header_bytes`], for a response (`:status` and its three
/// digits).
fn response_header_bytes(header: &ResponseHeader) -> u64 {
    (":status".len() + 3 + fields_bytes(&header.headers)) as u64
}

fn fields_bytes(headers: &http::HeaderMap) -> usize {
    (headers.iter())
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

fn simple_reply(status: u16, details: &str) -> LocalResponse {
    LocalResponse {
        status: u32::from(status),
        details: details.to_string(),
        body: Vec::new(),
        headers: HeaderMap::new(),
        grpc_status: None,
    }
}

/// Sends a local reply (a plugin's `proxy_send_local_response`, a
/// `direct_response`, or an error) to the client.
async fn send_local(session: &mut Session, reply: LocalResponse) -> Result<()> {
    let mut header = local_response_header(&reply)?;
    header.insert_header("content-length", reply.body.len().to_string())?;
    let empty = reply.body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session
            .write_response_body(Some(Bytes::from(reply.body)), true)
            .await?;
    }
    Ok(())
}

fn local_response_header(reply: &LocalResponse) -> Result<ResponseHeader> {
    let status = u16::try_from(reply.status).unwrap_or(500);
    let mut header = ResponseHeader::build(status, None)?;
    for (name, value) in reply.response_headers().iter() {
        if name.starts_with(b":") {
            continue;
        }
        header.append_header(String::from_utf8_lossy(name).into_owned(), value)?;
    }
    Ok(header)
}

/// A request line in absolute form (`GET http://host/path`, as proxies and
/// some clients send) becomes origin form plus a `host` header, as Envoy
/// normalises it, so routes and plugins see `:path` = `/path`.
fn normalize_absolute_form(request: &mut RequestHeader) -> Result<()> {
    let raw = request.raw_path();
    if raw.starts_with(b"/") || raw == b"*" || request.method == http::Method::CONNECT {
        return Ok(());
    }
    // Pingora keeps an absolute-form target verbatim in the raw path.
    let Ok(absolute) = http::Uri::try_from(raw) else {
        return Ok(());
    };
    let Some(authority) = absolute.authority().map(|a| a.as_str().to_string()) else {
        return Ok(());
    };
    let origin: http::Uri = absolute
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::explain(HTTPStatus(400), "bad request path"))?;
    request.set_uri(origin);
    request.insert_header("host", authority)?;
    Ok(())
}

/// The request as proxy-wasm sees it, entry by entry: pseudo-headers
/// first, then the rest (`host` is `:authority`).
fn request_entries(request: &RequestHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    let pseudo: [(&[u8], &[u8]); 4] = [
        (b":authority", authority(request)),
        (b":path", request.raw_path()),
        (b":method", request.method.as_str().as_bytes()),
        (
            b":scheme",
            request.uri.scheme_str().unwrap_or("http").as_bytes(),
        ),
    ];
    let rest = request
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::HOST)
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    pseudo.into_iter().chain(rest)
}

/// The request as proxy-wasm sees it.
fn request_header_map(session: &Session) -> HeaderMap {
    request_entries(session.req_header()).collect()
}

fn authority(request: &RequestHeader) -> &[u8] {
    request
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| {
            request
                .headers
                .get(http::header::HOST)
                .map(|v| v.as_bytes())
        })
        .unwrap_or(b"")
}

/// Writes the plugins' edits back into Pingora's request header. Most
/// requests leave the chain as they came (plugins read, or add and take
/// away), and comparing costs far less than rebuilding the header, so an
/// unchanged request is left alone.
fn apply_request_headers(request: &mut RequestHeader, edited: &HeaderMap) -> Result<()> {
    if edited.iter().eq(request_entries(request)) {
        return Ok(());
    }
    let mut rebuilt = RequestHeader::build(
        edited.get_str(":method").unwrap_or("GET"),
        edited.get(":path").unwrap_or(b"/"),
        Some(edited.len()),
    )?;
    rebuilt.set_version(request.version);
    for (name, value) in edited.iter() {
        match name {
            b":authority" => {
                rebuilt.insert_header("host", value)?;
            }
            _ if name.starts_with(b":") => {}
            _ => {
                rebuilt.append_header(String::from_utf8_lossy(name).into_owned(), value)?;
            }
        }
    }
    *request = rebuilt;
    Ok(())
}

/// The response as proxy-wasm sees it, entry by entry: `:status`, then the
/// headers.
fn response_entries(response: &ResponseHeader) -> impl Iterator<Item = (&[u8], &[u8])> {
    let status: (&[u8], &[u8]) = (b":status", response.status.as_str().as_bytes());
    let rest = response
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    std::iter::once(status).chain(rest)
}

fn response_header_map(response: &ResponseHeader) -> HeaderMap {
    response_entries(response).collect()
}

/// Writes the plugins' edits back into the upstream's response header,
/// leaving an unchanged one alone (see [`apply_request_headers`]).
fn apply_response_headers(response: &mut ResponseHeader, edited: &HeaderMap) -> Result<()> {
    if edited.iter().eq(response_entries(response)) {
        return Ok(());
    }
    let status: u16 = edited
        .get_str(":status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(response.status.as_u16());
    let mut rebuilt = ResponseHeader::build(status, Some(edited.len()))?;
    rebuilt.set_version(response.version);
    for (name, value) in edited.iter() {
        if !name.starts_with(b":") {
            rebuilt.append_header(String::from_utf8_lossy(name).into_owned(), value)?;
        }
    }
    *response = rebuilt;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/items?id=42", None).unwrap();
        request.insert_header("Host", "example.com").unwrap();
        request.append_header("X-Trace", "a").unwrap();
        request.append_header("X-Trace", "b").unwrap();
        request
    }

    /// The header names as they would go upstream, in order and case.
    fn names_on_the_wire(request: &RequestHeader) -> Vec<String> {
        let mut wire = Vec::new();
        request.header_to_h1_wire(&mut wire);
        String::from_utf8(wire)
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once(':').map(|(name, _)| name.to_string()))
            .collect()
    }

    #[test]
    fn a_request_the_plugins_left_as_it_came_is_not_rebuilt() {
        let mut request = request();
        let seen: HeaderMap = request_entries(&request).collect();
        apply_request_headers(&mut request, &seen).unwrap();
        // A rebuilt header would carry the plugins' lowercase names.
        assert_eq!(names_on_the_wire(&request), ["Host", "X-Trace", "X-Trace"]);
    }

    #[test]
    fn plugin_edits_reach_the_request_headers() {
        let mut request = request();
        let mut edited: HeaderMap = request_entries(&request).collect();
        edited.replace(":path", "/other");
        edited.add("x-added", "1");
        edited.remove("x-trace");
        apply_request_headers(&mut request, &edited).unwrap();
        assert_eq!(request.raw_path(), b"/other");
        assert_eq!(names_on_the_wire(&request), ["host", "x-added"]);
        assert_eq!(request.headers.get("host").unwrap(), "example.com");
    }

    #[test]
    fn response_edits_are_applied_and_an_unchanged_response_is_kept() {
        let mut response = ResponseHeader::build(200, None).unwrap();
        response.append_header("Content-Length", "2").unwrap();
        let seen: HeaderMap = response_entries(&response).collect();
        apply_response_headers(&mut response, &seen).unwrap();
        assert_eq!(
            response.headers.get("content-length").unwrap(),
            "2",
            "an unchanged response keeps its headers"
        );
        let mut edited = seen;
        edited.replace(":status", "503");
        edited.add("x-plugin", "yes");
        apply_response_headers(&mut response, &edited).unwrap();
        assert_eq!(response.status.as_u16(), 503);
        assert_eq!(response.headers.get("x-plugin").unwrap(), "yes");
    }
}
