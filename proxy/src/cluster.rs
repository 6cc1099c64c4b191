//! Upstream clusters: endpoints, round-robin selection, and the HTTP client
//! that plugin callouts use.
//!
//! Endpoints of `STATIC` clusters are taken as written; `STRICT_DNS` and
//! `LOGICAL_DNS` names are resolved when the configuration loads (a name
//! that does not resolve is an error then) and again every
//! `dns_refresh_rate` on a thread of their own
//! ([`ClusterManager::start_dns_refresh`]). As in Envoy, a lookup that fails
//! or finds nothing later keeps the endpoints of the last good one.

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
use std::time::{Duration, Instant};

/// Largest callout response body kept; a larger answer is a failure, so an
/// upstream cannot make the host buffer without bound.
const MAX_CALLOUT_BODY_BYTES: usize = 16 << 20;

/// A set of clusters resolved for a reload, not yet installed.
pub(crate) struct PreparedClusters(HashMap<String, Arc<UpstreamCluster>>);

/// Resolves a host name and port to addresses (the system resolver in the
/// proxy; tests give their own).
type Resolver = dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_resolver(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// The names of a `STRICT_DNS` or `LOGICAL_DNS` cluster and when to look
/// them up again.
#[derive(Debug)]
struct DnsNames {
    hosts: Vec<(String, u16)>,
    /// `LOGICAL_DNS`: only the first address of each name is used.
    logical: bool,
    refresh_rate: Duration,
    next_refresh: std::sync::Mutex<Instant>,
}

impl DnsNames {
    /// Every endpoint the names resolve to, in order; the first failure or
    /// a name with no address is the error.
    fn resolve(&self, resolver: &Resolver) -> Result<Vec<SocketAddr>, String> {
        let mut endpoints = Vec::new();
        for (host, port) in &self.hosts {
            let found =
                resolver(host, *port).map_err(|e| format!("cannot resolve `{host}`: {e}"))?;
            if found.is_empty() {
                return Err(format!("`{host}` resolves to no address"));
            }
            let take = if self.logical { 1 } else { found.len() };
            endpoints.extend(found.into_iter().take(take));
        }
        Ok(endpoints)
    }
}

/// One cluster, ready to pick endpoints from.
#[derive(Debug)]
pub struct UpstreamCluster {
    /// The cluster's name.
    pub name: String,
    /// Replaced as a whole when a DNS refresh finds other addresses.
    endpoints: ArcSwap<Vec<SocketAddr>>,
    /// For DNS clusters, what to look up again.
    dns: Option<DnsNames>,
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
    fn from_config(cluster: &Cluster, resolver: &Resolver) -> Result<UpstreamCluster, ProxyError> {
        let mut endpoints = Vec::new();
        let mut dns = None;
        match cluster.discovery {
            Discovery::Static => {
                for (i, endpoint) in cluster.endpoints.iter().enumerate() {
                    let ip = endpoint.host.parse().map_err(|_| ProxyError::Invalid {
                        path: format!("clusters[{}].endpoints[{i}]", cluster.name),
                        message: format!(
                            "`{}` is not an IP address (a STATIC cluster needs IPs; use STRICT_DNS for names)",
                            endpoint.host
                        ),
                    })?;
                    endpoints.push(SocketAddr::new(ip, endpoint.port));
                }
            }
            Discovery::StrictDns | Discovery::LogicalDns => {
                let names = DnsNames {
                    hosts: (cluster.endpoints.iter())
                        .map(|e| (e.host.clone(), e.port))
                        .collect(),
                    // LOGICAL_DNS uses only the first address, as Envoy does.
                    logical: cluster.discovery == Discovery::LogicalDns,
                    refresh_rate: cluster.dns_refresh_rate,
                    next_refresh: std::sync::Mutex::new(Instant::now() + cluster.dns_refresh_rate),
                };
                endpoints = names
                    .resolve(resolver)
                    .map_err(|message| ProxyError::Invalid {
                        path: format!("clusters[{}].endpoints", cluster.name),
                        message,
                    })?;
                dns = Some(names);
            }
        }
        Ok(UpstreamCluster {
            name: cluster.name.clone(),
            endpoints: ArcSwap::from_pointee(endpoints),
            dns,
            next: AtomicUsize::new(0),
            connect_timeout: cluster.connect_timeout,
            http2: cluster.http2,
            requests: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        })
    }

    /// The cluster's endpoints now.
    pub fn endpoints(&self) -> Arc<Vec<SocketAddr>> {
        self.endpoints.load_full()
    }

    /// Looks the cluster's names up again if they are due at `now`, and
    /// installs what they resolve to; a failure keeps the endpoints. Returns
    /// whether the endpoints changed.
    fn refresh_dns(&self, now: Instant, resolver: &Resolver) -> bool {
        let Some(dns) = &self.dns else { return false };
        {
            let mut next = dns.next_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if now < *next {
                return false;
            }
            *next = now + dns.refresh_rate;
        }
        match dns.resolve(resolver) {
            Ok(found) if found != **self.endpoints.load() => {
                tracing::info!(target: "polyhost::upstream", cluster = %self.name, endpoints = ?found, "DNS refresh changed the endpoints");
                self.endpoints.store(Arc::new(found));
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(target: "polyhost::upstream", cluster = %self.name, error = %e, "DNS refresh failed; keeping the last endpoints");
                false
            }
        }
    }

    /// Whether requests go out as HTTP/2 (prior knowledge, no TLS).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    /// The next endpoint, round robin; `None` for a cluster without any.
    pub fn peer(&self) -> Option<HttpPeer> {
        let endpoints = self.endpoints.load();
        if endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        let mut peer = HttpPeer::new(endpoints[i], false, String::new());
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
            let built = UpstreamCluster::from_config(cluster, &system_resolver)?;
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

    /// Starts the thread that looks up the names of DNS clusters again
    /// every `dns_refresh_rate` (clusters a reload adds included); it ends
    /// once the manager is dropped. It runs even when no cluster uses DNS
    /// yet, since a reload may add one.
    pub fn start_dns_refresh(self: &Arc<Self>) -> std::io::Result<()> {
        let manager = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("polyhost-dns".into())
            .spawn(move || {
                loop {
                    let Some(manager) = manager.upgrade() else {
                        break;
                    };
                    let wait = manager.refresh_dns(Instant::now(), &system_resolver);
                    drop(manager);
                    std::thread::sleep(wait);
                }
            })
            .map(drop)
    }

    /// Refreshes the DNS clusters due at `now`; returns how long until the
    /// next one is due (at most a second, so clusters a reload adds are
    /// picked up soon).
    fn refresh_dns(&self, now: Instant, resolver: &Resolver) -> Duration {
        let mut wait = Duration::from_secs(1);
        for cluster in self.clusters.load().values() {
            cluster.refresh_dns(now, resolver);
            if let Some(dns) = &cluster.dns {
                let next = *dns.next_refresh.lock().unwrap_or_else(|e| e.into_inner());
                wait = wait.min(next.saturating_duration_since(now));
            }
        }
        wait.max(Duration::from_millis(1))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;
    use std::sync::Mutex;

    fn dns_cluster(discovery: Discovery) -> Cluster {
        Cluster {
            name: "backend".into(),
            discovery,
            connect_timeout: Duration::from_secs(1),
            dns_refresh_rate: Duration::from_secs(5),
            endpoints: vec![
                Endpoint {
                    host: "one.test".into(),
                    port: 80,
                },
                Endpoint {
                    host: "two.test".into(),
                    port: 81,
                },
            ],
            http2: false,
            metadata: serde_json::Map::new(),
        }
    }

    /// A resolver that answers from a table the test changes.
    fn table_resolver(
        table: &Arc<Mutex<HashMap<String, Vec<&'static str>>>>,
    ) -> impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + use<> {
        let table = table.clone();
        move |host, port| match table.lock().unwrap().get(host) {
            Some(ips) => Ok(ips
                .iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                .collect()),
            None => Err(std::io::Error::other("no such host")),
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn dns_clusters_follow_the_names_at_the_refresh_rate() {
        let table = Arc::new(Mutex::new(HashMap::from([
            ("one.test".to_string(), vec!["10.0.0.1", "10.0.0.2"]),
            ("two.test".to_string(), vec!["10.0.0.3"]),
        ])));
        let resolver = table_resolver(&table);
        let strict =
            UpstreamCluster::from_config(&dns_cluster(Discovery::StrictDns), &resolver).unwrap();
        let logical =
            UpstreamCluster::from_config(&dns_cluster(Discovery::LogicalDns), &resolver).unwrap();
        assert_eq!(
            *strict.endpoints(),
            addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:81"])
        );
        assert_eq!(
            *logical.endpoints(),
            addrs(&["10.0.0.1:80", "10.0.0.3:81"]),
            "LOGICAL_DNS takes the first address of each name"
        );

        // The names move; nothing changes before the refresh is due.
        table
            .lock()
            .unwrap()
            .insert("one.test".into(), vec!["10.0.1.1"]);
        let start = Instant::now();
        assert!(!strict.refresh_dns(start, &resolver));
        assert_eq!(strict.endpoints().len(), 3);
        let due = start + Duration::from_secs(6);
        assert!(strict.refresh_dns(due, &resolver));
        assert_eq!(*strict.endpoints(), addrs(&["10.0.1.1:80", "10.0.0.3:81"]));

        // A failed lookup keeps the last good endpoints.
        table.lock().unwrap().remove("two.test");
        assert!(!strict.refresh_dns(due + Duration::from_secs(6), &resolver));
        assert_eq!(*strict.endpoints(), addrs(&["10.0.1.1:80", "10.0.0.3:81"]));
        assert!(strict.peer().is_some());
    }

    #[test]
    fn a_name_that_does_not_resolve_at_start_is_an_error_naming_it() {
        let table = Arc::new(Mutex::new(HashMap::new()));
        let error = UpstreamCluster::from_config(
            &dns_cluster(Discovery::StrictDns),
            &table_resolver(&table),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("one.test"), "{message}");
        assert!(message.contains("clusters[backend]"), "{message}");
    }

    #[test]
    fn static_clusters_are_never_refreshed() {
        let mut cluster = dns_cluster(Discovery::Static);
        cluster.endpoints = vec![Endpoint {
            host: "127.0.0.1".into(),
            port: 9,
        }];
        let never = |_: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
            panic!("a STATIC cluster looked a name up")
        };
        let built = UpstreamCluster::from_config(&cluster, &never).unwrap();
        assert!(!built.refresh_dns(Instant::now() + Duration::from_secs(3600), &never));
        assert_eq!(*built.endpoints(), addrs(&["127.0.0.1:9"]));
    }
}
