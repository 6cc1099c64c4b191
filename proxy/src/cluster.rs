//! Upstream clusters: endpoints, round-robin selection, and the HTTP client
//! that plugin callouts use.
//!
//! Endpoints of `STATIC` clusters are taken as written; `STRICT_DNS` and
//! `LOGICAL_DNS` names are resolved once when the configuration loads (Envoy
//! re-resolves them periodically; Polyhost does not yet, see the README).

use crate::config::{Cluster, Discovery};
use crate::error::ProxyError;
use arc_swap::ArcSwap;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use polyhost::services::HttpCallout;
use polyhost::{HeaderMap, HttpCallResult};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Largest callout response body kept; a larger answer is a failure, so an
/// upstream cannot make the host buffer without bound.
const MAX_CALLOUT_BODY_BYTES: usize = 16 << 20;

/// A set of clusters resolved for a reload, not yet installed.
pub(crate) struct PreparedClusters(HashMap<String, Arc<UpstreamCluster>>);

/// One cluster, ready to pick endpoints from.
#[derive(Debug)]
pub struct UpstreamCluster {
    /// The cluster's name.
    pub name: String,
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
    connect_timeout: Duration,
    http2: bool,
    /// Requests sent to the cluster (`upstream_rq_total`).
    pub requests: AtomicU64,
    /// Connection failures (`upstream_cx_connect_fail`).
    pub connect_failures: AtomicU64,
    /// Requests that timed out (`upstream_rq_timeout`).
    pub timeouts: AtomicU64,
}

impl UpstreamCluster {
    fn from_config(cluster: &Cluster) -> Result<UpstreamCluster, ProxyError> {
        let mut endpoints = Vec::new();
        for (i, endpoint) in cluster.endpoints.iter().enumerate() {
            let resolved: Vec<SocketAddr> = match cluster.discovery {
                Discovery::Static => {
                    let ip = endpoint.host.parse().map_err(|_| ProxyError::Invalid {
                        path: format!("clusters[{}].endpoints[{i}]", cluster.name),
                        message: format!(
                            "`{}` is not an IP address (a STATIC cluster needs IPs; use STRICT_DNS for names)",
                            endpoint.host
                        ),
                    })?;
                    vec![SocketAddr::new(ip, endpoint.port)]
                }
                Discovery::StrictDns | Discovery::LogicalDns => {
                    let found = (endpoint.host.as_str(), endpoint.port)
                        .to_socket_addrs()
                        .map_err(|e| ProxyError::Invalid {
                            path: format!("clusters[{}].endpoints[{i}]", cluster.name),
                            message: format!("cannot resolve `{}`: {e}", endpoint.host),
                        })?;
                    // LOGICAL_DNS uses only the first address, as Envoy does.
                    if cluster.discovery == Discovery::LogicalDns {
                        found.take(1).collect()
                    } else {
                        found.collect()
                    }
                }
            };
            endpoints.extend(resolved);
        }
        Ok(UpstreamCluster {
            name: cluster.name.clone(),
            endpoints,
            next: AtomicUsize::new(0),
            connect_timeout: cluster.connect_timeout,
            http2: cluster.http2,
            requests: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        })
    }

    /// The cluster's endpoints.
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Whether requests go out as HTTP/2 (prior knowledge, no TLS).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// The next endpoint, round robin; `None` for a cluster without any.
    pub fn peer(&self) -> Option<HttpPeer> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let mut peer = HttpPeer::new(self.endpoints[i], false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        if self.http2 {
            peer.options.alpn = ALPN::H2;
        }
        Some(peer)
    }
}

/// Every cluster of the configuration, and a client for callouts. The set
/// of clusters is replaced as a whole on a reload ([`ClusterManager::replace`]);
/// a request holds on to the cluster it picked, so it finishes on it.
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<UpstreamCluster>>>,
    connector: Connector,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("clusters", &self.clusters.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ClusterManager {
    /// Builds the clusters, resolving DNS names.
    ///
    /// # Errors
    /// A name that does not resolve, or a STATIC endpoint that is not an IP.
    pub fn new(clusters: &[Cluster]) -> Result<ClusterManager, ProxyError> {
        Ok(ClusterManager {
            clusters: ArcSwap::from_pointee(Self::build(clusters, &HashMap::new())?),
            connector: Connector::new(None),
        })
    }

    /// Resolves `clusters`; a cluster that keeps its name keeps its
    /// counters, as Envoy's stats survive a configuration update.
    fn build(
        clusters: &[Cluster],
        previous: &HashMap<String, Arc<UpstreamCluster>>,
    ) -> Result<HashMap<String, Arc<UpstreamCluster>>, ProxyError> {
        let mut map = HashMap::new();
        for cluster in clusters {
            let built = UpstreamCluster::from_config(cluster)?;
            if let Some(old) = previous.get(&cluster.name) {
                for (new, old) in [
                    (&built.requests, &old.requests),
                    (&built.connect_failures, &old.connect_failures),
                    (&built.timeouts, &old.timeouts),
                ] {
                    new.store(old.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
            map.insert(cluster.name.clone(), Arc::new(built));
        }
        Ok(map)
    }

    /// Resolves a new set of clusters without installing it: a reload
    /// builds everything first and installs nothing if any part fails.
    ///
    /// # Errors
    /// As [`ClusterManager::new`].
    pub(crate) fn prepare(&self, clusters: &[Cluster]) -> Result<PreparedClusters, ProxyError> {
        Ok(PreparedClusters(Self::build(
            clusters,
            &self.clusters.load(),
        )?))
    }

    /// Installs clusters made by [`ClusterManager::prepare`]; requests
    /// already routed finish on the clusters they picked.
    pub(crate) fn replace(&self, prepared: PreparedClusters) {
        self.clusters.store(Arc::new(prepared.0));
    }

    /// The client (with its connection pools) callouts go through.
    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The cluster called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// Every cluster, sorted by name.
    pub fn all(&self) -> Vec<Arc<UpstreamCluster>> {
        let mut all: Vec<_> = self.clusters.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Sends a plugin's `proxy_http_call` and waits for the answer, at most
    /// the callout's timeout.
    pub async fn http_call(&self, call: HttpCallout) -> HttpCallResult {
        let Some(cluster) = self.get(&call.upstream) else {
            return HttpCallResult::Failure;
        };
        cluster.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = call.timeout;
        match tokio::time::timeout(timeout, self.send(&cluster, call)).await {
            Ok(Some(result)) => result,
            Ok(None) => HttpCallResult::Failure,
            Err(_) => {
                cluster.timeouts.fetch_add(1, Ordering::Relaxed);
                HttpCallResult::Timeout
            }
        }
    }

    async fn send(&self, cluster: &UpstreamCluster, call: HttpCallout) -> Option<HttpCallResult> {
        let peer = cluster.peer()?;
        let request = callout_request(&call)?;
        let (mut session, _reused) = match self.connector.get_http_session(&peer).await {
            Ok(s) => s,
            Err(e) => {
                cluster.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "polyhost::upstream", cluster = %cluster.name, error = %e, "callout connect failed");
                return None;
            }
        };
        session.write_request_header(Box::new(request)).await.ok()?;
        if !call.body.is_empty() {
            session
                .write_request_body(Bytes::from(call.body), true)
                .await
                .ok()?;
        }
        session.finish_request_body().await.ok()?;
        session.read_response_header().await.ok()?;
        let mut headers = HeaderMap::new();
        {
            let response = session.response_header()?;
            headers.add(":status", response.status.as_str());
            for (name, value) in response.headers.iter() {
                headers.add(name.as_str(), value.as_bytes());
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.ok()? {
            if body.len() + chunk.len() > MAX_CALLOUT_BODY_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        self.connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        Some(HttpCallResult::Response {
            headers,
            body,
            trailers: HeaderMap::new(),
        })
    }
}

/// The request line and headers of a callout; `None` if the plugin sent no
/// `:method` or `:path` (Envoy refuses those at the call already).
fn callout_request(call: &HttpCallout) -> Option<RequestHeader> {
    let method = call.headers.get_str(":method")?;
    let path = call.headers.get_str(":path")?;
    let mut request = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    for (name, value) in call.headers.iter() {
        match name {
            b":authority" => request.insert_header("host", value).ok()?,
            _ if name.starts_with(b":") => {}
            _ => request
                .append_header(String::from_utf8_lossy(name).into_owned(), value)
                .ok()
                .map(|_| ())?,
        }
    }
    if !call.body.is_empty() && request.headers.get("content-length").is_none() {
        request
            .insert_header("content-length", call.body.len().to_string())
            .ok()?;
    }
    Some(request)
}
