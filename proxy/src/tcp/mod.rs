//! The TCP proxy: Envoy's `envoy.filters.network.tcp_proxy`, with the
//! `envoy.filters.network.wasm` filters before it, as a Pingora
//! [`ServerApp`].
//!
//! For each accepted connection the network filters are started (their
//! contexts created, `proxy_on_new_connection`), an endpoint of the
//! listener's cluster is connected to (round robin, the cluster's connect
//! timeout), and bytes are pumped both ways through the filters (see
//! [`filter_chain`]). Each side's end of stream is passed on as a
//! half-close, as `tcp_proxy` does; when both sides have ended, the filters
//! hear that the connections closed and their contexts end.
//!
//! If the upstream cannot be reached the client connection is closed, and
//! the log line carries Envoy's `UF` flag. When the connection has ended,
//! the `tcp_proxy`'s `access_log` entries each write a line for it.

mod filter_chain;

use crate::access_log::{AccessLogger, Entry as AccessLogEntry};
use crate::cluster::ClusterManager;
use crate::config;
use crate::connection::{ConnectionProperties, UpstreamAddress, next_connection_id};
use crate::stats::TcpStats;
use crate::wasm::WasmFilter;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use filter_chain::{Close, NetworkChain};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use polyhost::services::PropertyProvider;
use polyhost::{PeerType, StreamProperties};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 << 10;

/// What one `tcp_proxy` listener runs: its network Wasm filters and the
/// cluster it forwards to. A reload replaces it as a whole.
pub struct TcpTable {
    listener: String,
    cluster: String,
    /// `None`: connections never time out for being idle.
    idle_timeout: Option<Duration>,
    filters: Vec<WasmFilter>,
    /// The `access_log` entries, opened.
    access_logs: Vec<AccessLogger>,
    clusters: Arc<ClusterManager>,
}

impl TcpTable {
    /// The table of `proxy` (listener `listener`) with its Wasm filters
    /// already loaded, in chain order, and its access logs opened.
    pub fn new(
        listener: &str,
        proxy: &config::TcpProxy,
        filters: Vec<WasmFilter>,
        access_logs: Vec<AccessLogger>,
        clusters: Arc<ClusterManager>,
    ) -> TcpTable {
        TcpTable {
            listener: listener.to_string(),
            cluster: proxy.cluster.clone(),
            idle_timeout: proxy.idle_timeout,
            filters,
            access_logs,
            clusters,
        }
    }

    /// The network Wasm filters, in chain order.
    pub fn filters(&self) -> &[WasmFilter] {
        &self.filters
    }

    /// The cluster connections are forwarded to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
}

/// A Pingora [`ServerApp`] that proxies each connection of one listener to
/// its cluster through the listener's network Wasm filters.
///
/// Each connection takes the [`TcpTable`] current when it is accepted and
/// keeps it to the end, so a reload ([`WasmTcpProxy::table_handle`]) only
/// changes later connections.
pub struct WasmTcpProxy {
    table: Arc<ArcSwap<TcpTable>>,
    stats: Arc<TcpStats>,
}

impl WasmTcpProxy {
    /// A proxy serving `table`, counting into `stats`.
    pub fn new(table: TcpTable, stats: Arc<TcpStats>) -> WasmTcpProxy {
        WasmTcpProxy {
            table: Arc::new(ArcSwap::from_pointee(table)),
            stats,
        }
    }

    /// Where the current [`TcpTable`] is kept: storing a new one there
    /// serves every later connection with it.
    pub fn table_handle(&self) -> Arc<ArcSwap<TcpTable>> {
        self.table.clone()
    }
}

#[async_trait]
impl ServerApp for WasmTcpProxy {
    async fn process_new(
        self: &Arc<Self>,
        downstream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let table = self.table.load_full();
        let started = Instant::now();
        let started_at = SystemTime::now();
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let properties = connection_properties(&downstream, &table);
        let mut chain = NetworkChain::new(&table.filters, StreamProperties(properties.clone()));
        let mut connection = Connection {
            table: &table,
            stats: &self.stats,
            downstream,
            upstream: None,
            downstream_ended: None,
            upstream_ended: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            properties: &properties,
        };
        let flags = match connection.pump(&mut chain).await {
            Ok(()) => "-",
            Err(Ended::Closed(close)) => {
                tracing::info!(target: "polyhost::wasm", listener = %table.listener, reason = %close.reason, "connection closed by a network filter");
                "-"
            }
            Err(Ended::UpstreamFailure(e)) => {
                tracing::info!(target: "polyhost::upstream", listener = %table.listener, cluster = %table.cluster, flags = "UF", error = %e, "connection failed");
                "UF"
            }
            Err(Ended::Io) => "-",
            Err(Ended::Idle) => {
                self.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "polyhost::upstream", listener = %table.listener, "connection idle for too long");
                "-"
            }
        };
        // Whoever has not ended a side by now is closed by the proxy.
        let downstream_peer = connection.downstream_ended.unwrap_or(PeerType::Local);
        let upstream_peer = connection
            .upstream
            .is_some()
            .then(|| connection.upstream_ended.unwrap_or(PeerType::Local));
        connection.downstream.shutdown().await.ok();
        chain.finish(downstream_peer, upstream_peer);
        tracing::debug!(target: "polyhost::upstream", listener = %table.listener, flags, "connection ended");
        if !table.access_logs.is_empty() {
            let digest = connection.downstream.get_socket_digest();
            let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| {
                a.and_then(|a| a.as_inet().copied())
            };
            let entry = AccessLogEntry {
                start: started_at,
                duration: started.elapsed(),
                request: None,
                response: None,
                flags,
                code_details: None,
                bytes_received: connection.bytes_received,
                bytes_sent: connection.bytes_sent,
                upstream_host: connection.upstream_host,
                cluster: Some(&table.cluster),
                route_name: None,
                downstream_remote: digest.as_ref().and_then(|d| inet(d.peer_addr())),
                downstream_local: digest.as_ref().and_then(|d| inet(d.local_addr())),
            };
            for log in &table.access_logs {
                log.write(&entry);
            }
        }
        None
    }
}

/// Why a connection stopped before both sides ended on their own.
enum Ended {
    /// A filter closed it, failed under `FAIL_CLOSED`, or held too much.
    Closed(Close),
    /// The upstream could not be reached (Envoy's `UF`).
    UpstreamFailure(String),
    /// A socket failed while writing.
    Io,
    /// No byte moved either way for the `idle_timeout`.
    Idle,
}

impl From<Close> for Ended {
    fn from(close: Close) -> Ended {
        Ended::Closed(close)
    }
}

/// One proxied connection.
struct Connection<'a> {
    table: &'a TcpTable,
    stats: &'a TcpStats,
    downstream: Stream,
    upstream: Option<TcpStream>,
    /// Who ended the client connection's stream first: the client (its end
    /// of stream reached us) or the proxy (it shut its side down).
    downstream_ended: Option<PeerType>,
    /// The same for the upstream connection.
    upstream_ended: Option<PeerType>,
    /// Bytes read from the client, for the access log.
    bytes_received: usize,
    /// Bytes written to the client, for the access log.
    bytes_sent: usize,
    /// The endpoint connected to (or tried), for the access log.
    upstream_host: Option<SocketAddr>,
    /// What the plugins read; the upstream host is added once connected.
    properties: &'a TcpProperties,
}

impl Connection<'_> {
    /// Moves bytes both ways through `chain` until both sides have ended.
    async fn pump(&mut self, chain: &mut NetworkChain) -> Result<(), Ended> {
        // Bytes the chain let through before the upstream is connected.
        let mut pending = chain.downstream(Vec::new(), false)?;
        let mut client_done = false;
        let mut upstream_done = false;
        let mut down_buf = vec![0u8; READ_CHUNK];
        let mut up_buf = vec![0u8; READ_CHUNK];
        // Pushed back whenever a byte arrives from either side.
        let idle_timeout = self.table.idle_timeout;
        let idle = tokio::time::sleep(idle_timeout.unwrap_or(Duration::MAX));
        tokio::pin!(idle);
        let reset_idle = |idle: std::pin::Pin<&mut tokio::time::Sleep>| {
            if let Some(timeout) = idle_timeout {
                idle.reset(tokio::time::Instant::now() + timeout);
            }
        };
        loop {
            if self.upstream.is_none() && chain.ready() {
                let mut upstream = self.connect().await?;
                write_all(&mut upstream, &pending).await?;
                pending = Vec::new();
                if client_done {
                    upstream.shutdown().await.ok();
                    self.upstream_ended.get_or_insert(PeerType::Local);
                }
                self.upstream = Some(upstream);
            }
            if client_done && (upstream_done || self.upstream.is_none()) {
                return Ok(());
            }
            let upstream = &mut self.upstream;
            let downstream = &mut self.downstream;
            let waiting = chain.waiting();
            tokio::select! {
                () = idle.as_mut(), if idle_timeout.is_some() => return Err(Ended::Idle),
                // A plugin let held bytes go from a tick or callout answer.
                () = chain.woken(), if waiting => {
                    reset_idle(idle.as_mut());
                    let (to_upstream, to_client) = chain.resume()?;
                    if !to_client.is_empty() {
                        write_all(downstream, &to_client).await?;
                        self.bytes_sent += to_client.len();
                        self.stats.tx_bytes.fetch_add(to_client.len() as u64, Ordering::Relaxed);
                    }
                    match upstream {
                        Some(upstream) => write_all(upstream, &to_upstream).await?,
                        None => pending.extend_from_slice(&to_upstream),
                    }
                }
                read = downstream.read(&mut down_buf), if !client_done => {
                    reset_idle(idle.as_mut());
                    let chunk = match read {
                        Ok(n) => &down_buf[..n],
                        Err(_) => &[][..],
                    };
                    let end = chunk.is_empty();
                    self.bytes_received += chunk.len();
                    self.stats.rx_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    let out = chain.downstream(chunk.to_vec(), end)?;
                    if end {
                        client_done = true;
                        self.downstream_ended.get_or_insert(PeerType::Remote);
                    }
                    match upstream {
                        Some(upstream) => {
                            write_all(upstream, &out).await?;
                            if end {
                                upstream.shutdown().await.ok();
                                self.upstream_ended.get_or_insert(PeerType::Local);
                            }
                        }
                        None => pending.extend_from_slice(&out),
                    }
                }
                read = read_from(upstream, &mut up_buf), if !upstream_done && upstream.is_some() => {
                    reset_idle(idle.as_mut());
                    let chunk = match read {
                        Ok(n) => &up_buf[..n],
                        Err(_) => &[][..],
                    };
                    let end = chunk.is_empty();
                    let out = chain.upstream(chunk.to_vec(), end)?;
                    write_all(downstream, &out).await?;
                    self.bytes_sent += out.len();
                    self.stats.tx_bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
                    if end {
                        upstream_done = true;
                        self.upstream_ended.get_or_insert(PeerType::Remote);
                        downstream.shutdown().await.ok();
                        self.downstream_ended.get_or_insert(PeerType::Local);
                    }
                }
            }
        }
    }

    /// Connects to the next endpoint of the cluster, within its connect
    /// timeout.
    async fn connect(&mut self) -> Result<TcpStream, Ended> {
        let name = &self.table.cluster;
        let Some(cluster) = self.table.clusters.get(name) else {
            return Err(Ended::UpstreamFailure(format!("no cluster {name}")));
        };
        let Some(peer) = cluster.peer() else {
            return Err(Ended::UpstreamFailure(format!(
                "cluster {name} has no endpoint"
            )));
        };
        let Some(address) = peer._address.as_inet().copied() else {
            return Err(Ended::UpstreamFailure(format!(
                "cluster {name}: not an IP endpoint"
            )));
        };
        self.upstream_host = Some(address);
        let timeout = peer
            .options
            .connection_timeout
            .unwrap_or(Duration::from_secs(5));
        let failed = |why: String| {
            cluster.connect_failures.fetch_add(1, Ordering::Relaxed);
            Ended::UpstreamFailure(format!("{address}: {why}"))
        };
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true).ok();
                self.properties.upstream.set(address);
                Ok(stream)
            }
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!("no connection within {timeout:?}"))),
        }
    }
}

/// Reads from the upstream once it exists; never completes before.
async fn read_from(upstream: &mut Option<TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match upstream {
        Some(stream) => stream.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn write_all<S: AsyncWrite + AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    data: &[u8],
) -> Result<(), Ended> {
    if data.is_empty() {
        return Ok(());
    }
    stream.write_all(data).await.map_err(|_| Ended::Io)?;
    stream.flush().await.map_err(|_| Ended::Io)
}

/// A connection's properties as its network filters read them: the
/// connection's own, and `cluster_name` (the `tcp_proxy` cluster), made
/// when a plugin reads one.
fn connection_properties(stream: &Stream, table: &Arc<TcpTable>) -> Arc<TcpProperties> {
    let digest = stream.get_socket_digest();
    let connection = ConnectionProperties::new(
        digest.as_ref().and_then(|d| d.peer_addr()),
        digest.as_ref().and_then(|d| d.local_addr()),
        next_connection_id(),
    );
    Arc::new(TcpProperties {
        connection,
        table: Arc::downgrade(table),
        upstream: UpstreamAddress::default(),
    })
}

/// What [`connection_properties`] keeps.
struct TcpProperties {
    connection: ConnectionProperties,
    /// Weak, as for HTTP requests: a connection context that is never
    /// finished must not keep a replaced table (and its filters) alive.
    table: Weak<TcpTable>,
    /// Known once `tcp_proxy` has connected upstream.
    upstream: UpstreamAddress,
}

impl PropertyProvider for TcpProperties {
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        match path {
            [b"cluster_name"] => Some(self.table.upgrade()?.cluster.as_bytes().to_vec()),
            [b"upstream", _] => self.upstream.get(path),
            _ => self.connection.get(path),
        }
    }
}
