//! What a request's plugins read with `proxy_get_property` beyond their
//! own stream: the connection, the route, and the request's life as the
//! connection manager sees it (Envoy's stream info: start time, duration,
//! sizes, response flags and code details). Values are kept plain and
//! formatted only when a plugin reads one, which most requests never do.

use super::{RouteTable, RouteTarget};
use crate::connection::{ConnectionProperties, UpstreamAddress, next_connection_id};
use pingora::protocols::SocketDigest;
use pingora::proxy::Session;
use polyhost::services::PropertyProvider;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

thread_local! {
    /// This worker's live downstream connections and their ids, keyed by
    /// the address of the connection's socket digest (which Pingora keeps
    /// for as long as the connection lives). A connection is served on one
    /// worker from start to end, so a thread-local map sees all its
    /// requests.
    static CONNECTION_IDS: RefCell<FxHashMap<usize, (Weak<SocketDigest>, u64)>> =
        RefCell::new(FxHashMap::default());
}

/// The `connection.id` property: one number per downstream connection, the
/// same for every request on it (HTTP/1.1 keep-alive, HTTP/2 streams), as
/// Envoy numbers connections.
fn connection_id(session: &Session) -> u64 {
    let Some(socket) = session
        .as_downstream()
        .digest()
        .and_then(|d| d.socket_digest.as_ref())
    else {
        return next_connection_id();
    };
    let key = Arc::as_ptr(socket) as usize;
    CONNECTION_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some((weak, id)) = ids.get(&key)
            && weak
                .upgrade()
                .is_some_and(|live| Arc::ptr_eq(&live, socket))
        {
            return *id;
        }
        // Forget connections that have closed before the map grows.
        if ids.len() >= 1024 {
            ids.retain(|_, (weak, _)| weak.strong_count() > 0);
        }
        let id = next_connection_id();
        ids.insert(key, (Arc::downgrade(socket), id));
        id
    })
}

/// A request's protocol as Envoy names it (`request.protocol`,
/// `%PROTOCOL%`).
pub(crate) fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// Envoy's response flags that the proxy sets: the letters of the access
/// log's `%RESPONSE_FLAGS%`, and the bit each sets in `response.flags`
/// (Envoy's `ResponseFlag` bit values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFlag {
    /// `UH`: the cluster has no endpoint to send to.
    NoHealthyUpstream,
    /// `UT`: the upstream did not answer within the route timeout.
    UpstreamRequestTimeout,
    /// `UF`: the upstream connection could not be made.
    UpstreamConnectionFailure,
    /// `UC`: the upstream connection ended before a response.
    UpstreamConnectionTermination,
    /// `NR`: no route matched.
    NoRouteFound,
    /// `NC`: the route's cluster does not exist.
    NoClusterFound,
}

impl ResponseFlag {
    /// The access log's letters.
    pub(crate) fn letters(self) -> &'static str {
        match self {
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::NoRouteFound => "NR",
            ResponseFlag::NoClusterFound => "NC",
        }
    }

    /// Its bit in `response.flags`.
    fn bit(self) -> u64 {
        match self {
            ResponseFlag::NoHealthyUpstream => 0x2,
            ResponseFlag::UpstreamRequestTimeout => 0x4,
            ResponseFlag::UpstreamConnectionFailure => 0x20,
            ResponseFlag::UpstreamConnectionTermination => 0x40,
            ResponseFlag::NoRouteFound => 0x100,
            ResponseFlag::NoClusterFound => 0x100_0000,
        }
    }
}

/// The request's properties, for its plugins to read.
pub(super) fn request_properties(
    session: &Session,
    table: &Arc<RouteTable>,
    route: Option<RouteTarget>,
    started_at: SystemTime,
) -> Arc<RequestProperties> {
    let downstream = session.as_downstream();
    Arc::new(RequestProperties {
        connection: ConnectionProperties::new(
            downstream.client_addr(),
            downstream.server_addr(),
            connection_id(session),
        ),
        protocol: protocol_name(session.req_header().version),
        table: Arc::downgrade(table),
        route,
        upstream: UpstreamAddress::default(),
        started_at,
        flags: AtomicU64::new(0),
        code_details: Mutex::new(None),
        completed: OnceLock::new(),
    })
}

/// What [`request_properties`] keeps: plain values, the route as indices
/// into the request's own table, and what the connection manager records
/// as the request goes on.
pub(super) struct RequestProperties {
    connection: ConnectionProperties,
    protocol: &'static str,
    /// The request's table. Weak: the plugin's stream state holds these
    /// properties, and must not keep a replaced table (and its filters)
    /// alive if the stream is never finished.
    table: Weak<RouteTable>,
    /// The route the request takes as it arrived (before the filters).
    route: Option<RouteTarget>,
    /// Known from `upstream_peer` on: the response callbacks read it.
    pub(super) upstream: UpstreamAddress,
    /// `request.time`.
    started_at: SystemTime,
    /// `response.flags`: the [`ResponseFlag`] bits set so far.
    flags: AtomicU64,
    /// `response.code_details`, once the response is decided.
    code_details: Mutex<Option<Cow<'static, str>>>,
    /// `request.duration` and the total sizes, once the request is done
    /// (as in Envoy, the plugins' `proxy_on_log` reads them).
    completed: OnceLock<Completed>,
}

/// A finished request's figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Completed {
    /// From the first byte of the request to the end of the response.
    pub(super) duration: Duration,
    /// Request headers (names and values, pseudo-headers included) and
    /// body bytes.
    pub(super) request_total: u64,
    /// The same for the response.
    pub(super) response_total: u64,
}

impl RequestProperties {
    /// Records `flag` in `response.flags`.
    pub(super) fn add_flag(&self, flag: ResponseFlag) {
        self.flags.fetch_or(flag.bit(), Ordering::Relaxed);
    }

    /// Sets `response.code_details`.
    pub(super) fn set_code_details(&self, details: Cow<'static, str>) {
        let mut slot = self.code_details.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(details);
    }

    /// Records the finished request's figures; only the first call counts.
    pub(super) fn complete(&self, completed: Completed) {
        let _ = self.completed.set(completed);
    }

    /// The stream-info properties (`request.time`, `request.duration`,
    /// the total sizes, `response.flags`, `response.code_details`).
    fn stream_info(&self, field: (&[u8], &[u8])) -> Option<Vec<u8>> {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX).to_le_bytes().to_vec();
        let nanos = |d: Duration| int(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Some(match field {
            (b"request", b"time") => nanos(
                self.started_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?,
            ),
            (b"request", b"duration") => nanos(self.completed.get()?.duration),
            (b"request", b"total_size") => int(self.completed.get()?.request_total),
            (b"response", b"total_size") => int(self.completed.get()?.response_total),
            (b"response", b"flags") => int(self.flags.load(Ordering::Relaxed)),
            (b"response", b"code_details") => {
                let slot = self.code_details.lock().unwrap_or_else(|e| e.into_inner());
                slot.as_ref()?.as_bytes().to_vec()
            }
            _ => return None,
        })
    }
}

impl PropertyProvider for RequestProperties {
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        if let Some(value) = self.connection.get(path) {
            return Some(value);
        }
        // Newer Envoy names the configuration's attributes under `xds.`;
        // the older top-level names stay.
        let path = match path {
            [b"xds", name @ (b"cluster_name" | b"route_name")] => std::slice::from_ref(name),
            _ => path,
        };
        Some(match path {
            [b"upstream", _] => return self.upstream.get(path),
            [b"request", b"protocol"] => self.protocol.as_bytes().to_vec(),
            [group, field] if matches!(*group, b"request" | b"response") => {
                return self.stream_info((group, field));
            }
            [b"route_config_name"] => self.table.upgrade()?.route_config_name.as_bytes().to_vec(),
            [b"xds", b"virtual_host_name"] => {
                let host = self.route.as_ref()?.host;
                self.table.upgrade()?.virtual_hosts[host]
                    .name
                    .as_bytes()
                    .to_vec()
            }
            [b"route_name"] => {
                let route = self.route.as_ref()?;
                self.table
                    .upgrade()?
                    .route_of(route)
                    .name
                    .as_bytes()
                    .to_vec()
            }
            [b"cluster_name"] => self
                .route
                .as_ref()?
                .cluster
                .as_ref()?
                .name
                .as_bytes()
                .to_vec(),
            _ => return None,
        })
    }
}
