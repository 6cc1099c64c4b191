//! Unary gRPC calls a plugin makes with `proxy_grpc_call`, sent as real
//! HTTP/2 requests to a configured cluster.
//!
//! As in Envoy, the plugin names the upstream with a serialized
//! `envoy.config.core.v3.GrpcService` (its `envoy_grpc.cluster_name`) or,
//! when the bytes are not one, with the cluster's name itself. The request
//! is `POST /<service>/<method>` with `content-type: application/grpc`, the
//! plugin's initial metadata, and the message in one length-prefixed frame;
//! the answer's first message, or its `grpc-status` and `grpc-message`,
//! goes back to the plugin.
//!
//! Streams (`proxy_grpc_stream`) are one HTTP/2 stream each, open in both
//! directions at once: the plugin's messages are written as it sends them
//! (`proxy_grpc_send`, half-closed by `end_stream` or `proxy_grpc_close`),
//! while the upstream's initial metadata, each message and its trailing
//! metadata and status are delivered as they arrive. A stream has no
//! deadline, as in Envoy; `proxy_grpc_cancel` resets it and no callback
//! follows. What the plugin sends goes out as HTTP/2 flow control lets it;
//! what waits is held by the host up to [`MAX_GRPC_SEND_BACKLOG`] per
//! stream, past which the stream ends with `RESOURCE_EXHAUSTED`, so a
//! plugin cannot make the host hold without bound what a slow upstream
//! does not take.

use crate::cluster::{ClusterManager, UpstreamCluster};
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v2::client::Http2Session;
use polyhost::services::{GrpcCallout, GrpcStreamOpen};
use polyhost::{GrpcResult, HeaderMap};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// gRPC status codes the proxy itself reports.
const OK: u32 = 0;
const UNKNOWN: u32 = 2;
const DEADLINE_EXCEEDED: u32 = 4;
const RESOURCE_EXHAUSTED: u32 = 8;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

/// How long an idle gRPC connection is kept for reuse.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// Largest gRPC answer kept, as for HTTP callouts.
const MAX_GRPC_RESPONSE_BYTES: usize = 16 << 20;

/// Most bytes (framed messages) a plugin may have sent on one stream that
/// the upstream has not taken yet; as much as the largest answer kept.
pub(crate) const MAX_GRPC_SEND_BACKLOG: usize = MAX_GRPC_RESPONSE_BYTES;

/// Size of a message once framed (the flag byte and the length).
pub(crate) fn framed_len(message: &[u8]) -> usize {
    message.len() + 5
}

/// The cluster a plugin's `proxy_grpc_call` upstream names.
pub(crate) fn cluster_name(upstream: &[u8]) -> String {
    envoy_grpc_cluster(upstream).unwrap_or_else(|| String::from_utf8_lossy(upstream).into_owned())
}

/// `envoy_grpc.cluster_name` (field 1 of field 1) of a serialized
/// `GrpcService`, or `None` when the bytes are not one.
fn envoy_grpc_cluster(bytes: &[u8]) -> Option<String> {
    let mut found = None;
    for (field, value) in proto_fields(bytes)? {
        if let (1, Some(envoy_grpc)) = (field, value) {
            for (inner, value) in proto_fields(envoy_grpc)? {
                if let (1, Some(name)) = (inner, value) {
                    found = Some(String::from_utf8(name.to_vec()).ok()?);
                }
            }
        }
    }
    found.filter(|name| !name.is_empty())
}

/// The top-level fields of a protobuf message: number and, for
/// length-delimited fields, the bytes. `None` when it does not parse.
/// A protobuf field: its number and, when length-delimited, its bytes.
type ProtoField<'a> = (u64, Option<&'a [u8]>);

fn proto_fields(mut bytes: &[u8]) -> Option<Vec<ProtoField<'_>>> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return None;
        }
        match wire {
            0 => {
                varint(&mut bytes)?;
                fields.push((field, None));
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                bytes = bytes.get(n..)?;
                fields.push((field, None));
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let value = bytes.get(..len)?;
                bytes = &bytes[len..];
                fields.push((field, Some(value)));
            }
            _ => return None,
        }
    }
    Some(fields)
}

/// What the plugin sent on a stream that HTTP/2 flow control has not let
/// out yet, in order.
#[derive(Default)]
struct SendQueue {
    chunks: VecDeque<(Bytes, bool)>,
    /// Bytes in `chunks`.
    queued: usize,
    /// The plugin's side has ended (the last chunk carries the end).
    ended: bool,
}

impl SendQueue {
    fn push(&mut self, data: Bytes, end: bool) {
        self.queued += data.len();
        self.ended = end;
        self.chunks.push_back((data, end));
    }

    /// Whether something waits for the window.
    fn waits(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Sends what the stream's window takes now, takes it off `backlog`,
    /// and asks for the window the rest needs.
    fn flush(
        &mut self,
        writer: &mut h2::SendStream<Bytes>,
        backlog: &AtomicUsize,
    ) -> Result<(), h2::Error> {
        while let Some((data, end)) = self.chunks.front_mut() {
            let n = writer.capacity().min(data.len());
            if n == 0 && !data.is_empty() {
                break;
            }
            let chunk = data.split_to(n);
            let last = data.is_empty();
            let end = *end && last;
            if last {
                self.chunks.pop_front();
            }
            self.queued -= n;
            backlog.fetch_sub(n, Ordering::Relaxed);
            writer.send_data(chunk, end)?;
        }
        writer.reserve_capacity(self.queued);
        Ok(())
    }

    /// Drops what waits, once the stream is over.
    fn clear(&mut self, backlog: &AtomicUsize) {
        backlog.fetch_sub(self.queued, Ordering::Relaxed);
        self.chunks.clear();
        self.queued = 0;
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(framed_len(message));
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// A malformed answer, as gRPC reports one.
fn malformed(what: &str) -> GrpcResult {
    GrpcResult::Err {
        status: INTERNAL,
        message: format!("malformed gRPC response: {what}"),
    }
}

/// Takes the next whole message off the front of `buffer`: `Ok(None)`
/// while the frame is incomplete, an error for a compressed message or
/// one larger than `limit`.
fn next_message(buffer: &mut Vec<u8>, limit: usize) -> Result<Option<Vec<u8>>, GrpcResult> {
    let Some(header) = buffer.get(..5) else {
        return Ok(None);
    };
    if header[0] != 0 {
        return Err(malformed("compressed messages are not supported"));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > limit {
        return Err(GrpcResult::Err {
            status: RESOURCE_EXHAUSTED,
            message: format!("gRPC message of {len} bytes is over the {limit}-byte limit"),
        });
    }
    if buffer.len() < 5 + len {
        return Ok(None);
    }
    let message = buffer[5..5 + len].to_vec();
    buffer.drain(..5 + len);
    Ok(Some(message))
}

/// The first message of a response body made of frames.
fn first_message(body: &[u8]) -> Result<Vec<u8>, GrpcResult> {
    if body.is_empty() {
        return Err(malformed("no message"));
    }
    let mut buffer = body.to_vec();
    match next_message(&mut buffer, usize::MAX)? {
        Some(message) => Ok(message),
        None if buffer.len() < 5 => Err(malformed("truncated frame header")),
        None => Err(malformed("truncated message")),
    }
}

/// The gRPC status of an answer whose HTTP status is not 200, as gRPC
/// maps them.
fn status_of_http(http_status: u16) -> GrpcResult {
    let status = match http_status {
        429 | 502..=504 => UNAVAILABLE,
        _ => UNKNOWN,
    };
    GrpcResult::Err {
        status,
        message: format!("the upstream answered HTTP {http_status}"),
    }
}

/// `grpc-status` and `grpc-message` of `headers`; a missing or unreadable
/// status is UNKNOWN, as gRPC clients take it.
fn status_in(headers: &http::HeaderMap) -> (u32, String) {
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(UNKNOWN);
    let message = headers
        .get("grpc-message")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    (status, message)
}

/// `headers` as the plugin reads them, `:status` first when given.
fn metadata(status: Option<u16>, headers: &http::HeaderMap) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(status) = status {
        map.add(":status", status.to_string().as_bytes());
    }
    for (name, value) in headers {
        map.add(name.as_str(), value.as_bytes());
    }
    map
}

/// What a stream's plugin asks of it, in the order it asked.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// `proxy_grpc_send`: a message, and whether it ends the plugin's side.
    Message(Vec<u8>, bool),
    /// `proxy_grpc_close`: the plugin's side ends.
    Close,
    /// A message that would have made the backlog this many bytes, over
    /// [`MAX_GRPC_SEND_BACKLOG`]: the stream ends.
    Overflow(usize),
}

/// What the upstream sent on a stream, in the order the plugin hears it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// The response headers.
    InitialMetadata(HeaderMap),
    /// One message.
    Message(Vec<u8>),
    /// The trailers.
    TrailingMetadata(HeaderMap),
    /// The end of the stream with its status; nothing follows.
    Close {
        /// The gRPC status.
        status: u32,
        /// `grpc-message`, or what went wrong.
        message: String,
    },
}

impl Incoming {
    fn closed(result: GrpcResult) -> Incoming {
        match result {
            GrpcResult::Ok(_) => Incoming::Close {
                status: OK,
                message: String::new(),
            },
            GrpcResult::Err { status, message } => Incoming::Close { status, message },
        }
    }
}

/// Where a stream's reading is.
enum ReadPhase {
    Headers,
    Body,
    Trailers,
}

/// One step of reading a stream's response.
enum ReadStep {
    Headers,
    Chunk(Bytes),
    EndOfBody,
    Trailers(Option<http::HeaderMap>),
}

/// Reads the next part of the response. Every await in it can be
/// dropped and started again without losing data (the session keeps the
/// pending response and body), so it can race the plugin's commands.
async fn read_step(session: &mut Http2Session, phase: &ReadPhase) -> pingora::Result<ReadStep> {
    Ok(match phase {
        ReadPhase::Headers => {
            session.read_response_header().await?;
            ReadStep::Headers
        }
        ReadPhase::Body => match session.read_response_body().await? {
            Some(chunk) => ReadStep::Chunk(chunk),
            None => ReadStep::EndOfBody,
        },
        ReadPhase::Trailers => ReadStep::Trailers(session.read_trailers().await?),
    })
}

impl ClusterManager {
    /// Sends a plugin's unary `proxy_grpc_call` to `cluster` and waits for
    /// the answer, at most the call's timeout.
    pub(crate) async fn grpc_call(&self, cluster: &str, call: GrpcCallout) -> GrpcResult {
        let Some(cluster) = self.get(cluster) else {
            return GrpcResult::Err {
                status: UNAVAILABLE,
                message: format!("unknown cluster {cluster}"),
            };
        };
        if !cluster.is_http2() {
            return GrpcResult::Err {
                status: UNAVAILABLE,
                message: format!(
                    "cluster {} is not configured for HTTP/2, which gRPC needs",
                    cluster.name
                ),
            };
        }
        cluster.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = call.timeout;
        let send = self.send_grpc(&cluster, call);
        let answer = if timeout.is_zero() {
            send.await
        } else {
            match tokio::time::timeout(timeout, send).await {
                Ok(answer) => answer,
                Err(_) => {
                    cluster.timeouts.fetch_add(1, Ordering::Relaxed);
                    return GrpcResult::Err {
                        status: DEADLINE_EXCEEDED,
                        message: "gRPC call timed out".into(),
                    };
                }
            }
        };
        answer.unwrap_or_else(|status| status)
    }

    /// Runs a plugin's gRPC stream to `cluster` until it ends: writes what
    /// the plugin sends on `outgoing` and hands each thing the upstream
    /// sends to `deliver`, which returns false once nobody wants more
    /// (the VM is gone or the plugin cancelled). The plugin dropping its
    /// end of `outgoing` cancels the stream: it is reset and nothing more
    /// is delivered. A stream that could not start is closed with
    /// UNAVAILABLE, as Envoy closes it.
    ///
    /// `backlog` counts the framed bytes the plugin sent that have not
    /// gone out yet; the sender adds to it, this task takes away what it
    /// hands to HTTP/2 within the stream's flow-control window.
    pub(crate) async fn grpc_stream(
        &self,
        cluster: &str,
        open: GrpcStreamOpen,
        mut outgoing: UnboundedReceiver<Outgoing>,
        backlog: Arc<AtomicUsize>,
        mut deliver: impl FnMut(Incoming) -> bool,
    ) {
        let (mut session, peer) = match self.open_grpc_stream(cluster, &open).await {
            Ok(opened) => opened,
            Err(failure) => {
                deliver(Incoming::closed(failure));
                return;
            }
        };
        let Some(mut writer) = session.take_request_body_writer() else {
            deliver(Incoming::closed(GrpcResult::Err {
                status: INTERNAL,
                message: "the gRPC stream has no request body".into(),
            }));
            return;
        };
        let mut phase = ReadPhase::Headers;
        let mut pending = Vec::new();
        let mut sending = SendQueue::default();
        let write_failed = |e: h2::Error| {
            Incoming::closed(GrpcResult::Err {
                status: UNAVAILABLE,
                message: format!("writing to the gRPC stream: {e}"),
            })
        };
        let ended = loop {
            tokio::select! {
                command = outgoing.recv() => {
                    let (data, end) = match command {
                        None => {
                            writer.send_reset(h2::Reason::CANCEL);
                            return;
                        }
                        Some(_) if sending.ended => continue,
                        Some(Outgoing::Message(message, end)) => (Bytes::from(frame(&message)), end),
                        Some(Outgoing::Close) => (Bytes::new(), true),
                        Some(Outgoing::Overflow(held)) => {
                            writer.send_reset(h2::Reason::CANCEL);
                            break Incoming::closed(GrpcResult::Err {
                                status: RESOURCE_EXHAUSTED,
                                message: format!(
                                    "the plugin sent {held} bytes the upstream had not taken (the \
                                     most a stream holds is {MAX_GRPC_SEND_BACKLOG})"
                                ),
                            });
                        }
                    };
                    sending.push(data, end);
                    if let Err(e) = sending.flush(&mut writer, &backlog) {
                        break write_failed(e);
                    }
                }
                capacity = std::future::poll_fn(|cx| writer.poll_capacity(cx)), if sending.waits() => {
                    match capacity {
                        Some(Ok(_)) => {
                            if let Err(e) = sending.flush(&mut writer, &backlog) {
                                break write_failed(e);
                            }
                        }
                        Some(Err(e)) => break write_failed(e),
                        // The stream is over; the read side tells how.
                        None => sending.clear(&backlog),
                    }
                }
                step = read_step(&mut session, &phase) => {
                    let step = match step {
                        Ok(step) => step,
                        Err(e) => break Incoming::closed(GrpcResult::Err {
                            status: UNAVAILABLE,
                            message: format!("gRPC upstream: {e}"),
                        }),
                    };
                    match step {
                        ReadStep::Headers => {
                            let Some(response) = session.response_header() else {
                                continue;
                            };
                            let http_status = response.status.as_u16();
                            if http_status != 200 {
                                break Incoming::closed(status_of_http(http_status));
                            }
                            if response.headers.contains_key("grpc-status") {
                                // Trailers only: the headers end the stream.
                                let (status, message) = status_in(&response.headers);
                                let trailing = metadata(None, &response.headers);
                                if !deliver(Incoming::InitialMetadata(HeaderMap::new()))
                                    || !deliver(Incoming::TrailingMetadata(trailing))
                                {
                                    return;
                                }
                                break Incoming::Close { status, message };
                            }
                            if !deliver(Incoming::InitialMetadata(metadata(Some(http_status), &response.headers))) {
                                return;
                            }
                            phase = ReadPhase::Body;
                        }
                        ReadStep::Chunk(chunk) => {
                            pending.extend_from_slice(&chunk);
                            loop {
                                match next_message(&mut pending, MAX_GRPC_RESPONSE_BYTES) {
                                    Ok(Some(message)) => {
                                        if !deliver(Incoming::Message(message)) {
                                            writer.send_reset(h2::Reason::CANCEL);
                                            return;
                                        }
                                    }
                                    Ok(None) => break,
                                    Err(failure) => {
                                        writer.send_reset(h2::Reason::CANCEL);
                                        deliver(Incoming::closed(failure));
                                        return;
                                    }
                                }
                            }
                        }
                        ReadStep::EndOfBody => phase = ReadPhase::Trailers,
                        ReadStep::Trailers(trailers) => {
                            if !pending.is_empty() {
                                break Incoming::closed(malformed("truncated message"));
                            }
                            let trailers = trailers.unwrap_or_default();
                            if !deliver(Incoming::TrailingMetadata(metadata(None, &trailers))) {
                                return;
                            }
                            let (status, message) = status_in(&trailers);
                            break Incoming::Close { status, message };
                        }
                    }
                }
            }
        };
        // The upstream is done; a plugin that has not half-closed is done
        // too, as Envoy resets the rest of the stream.
        if !sending.ended || sending.waits() {
            writer.send_reset(h2::Reason::CANCEL);
        }
        sending.clear(&backlog);
        drop(writer);
        if matches!(ended, Incoming::Close { status: OK, .. }) {
            self.connector()
                .release_http_session(HttpSession::H2(*session), &peer, Some(IDLE_CONNECTION))
                .await;
        }
        deliver(ended);
    }

    /// Connects to `cluster` and sends the stream's request headers.
    async fn open_grpc_stream(
        &self,
        cluster: &str,
        open: &GrpcStreamOpen,
    ) -> Result<(Box<Http2Session>, pingora::upstreams::peer::HttpPeer), GrpcResult> {
        let unavailable = |message: String| GrpcResult::Err {
            status: UNAVAILABLE,
            message,
        };
        let cluster = self
            .get(cluster)
            .ok_or_else(|| unavailable(format!("unknown cluster {cluster}")))?;
        if !cluster.is_http2() {
            return Err(unavailable(format!(
                "cluster {} is not configured for HTTP/2, which gRPC needs",
                cluster.name
            )));
        }
        cluster.requests.fetch_add(1, Ordering::Relaxed);
        self.start_grpc_request(
            &cluster,
            &open.service,
            &open.method,
            &open.initial_metadata,
            Duration::ZERO,
        )
        .await
    }

    /// Connects to an endpoint of `cluster` over HTTP/2 and sends the
    /// request headers of `service/method`, leaving the body open: the
    /// start that a unary call and a stream share.
    async fn start_grpc_request(
        &self,
        cluster: &UpstreamCluster,
        service: &str,
        method: &str,
        initial_metadata: &HeaderMap,
        timeout: Duration,
    ) -> Result<(Box<Http2Session>, pingora::upstreams::peer::HttpPeer), GrpcResult> {
        let unavailable = |message: String| GrpcResult::Err {
            status: UNAVAILABLE,
            message,
        };
        let peer = cluster
            .peer()
            .ok_or_else(|| unavailable(format!("cluster {} has no endpoint", cluster.name)))?;
        let request = grpc_request(&cluster.name, service, method, initial_metadata, timeout)
            .map_err(|e| unavailable(format!("cannot build the gRPC request: {e}")))?;
        let (session, _reused) = self
            .connector()
            .get_http_session(&peer)
            .await
            .map_err(|e| {
                cluster.connect_failures.fetch_add(1, Ordering::Relaxed);
                unavailable(format!("cannot connect to cluster {}: {e}", cluster.name))
            })?;
        let HttpSession::H2(mut session) = session else {
            return Err(unavailable("the upstream did not speak HTTP/2".into()));
        };
        session
            .write_request_header(Box::new(request), false)
            .map_err(|e| unavailable(format!("gRPC upstream: {e}")))?;
        Ok((Box::new(session), peer))
    }

    async fn send_grpc(
        &self,
        cluster: &UpstreamCluster,
        call: GrpcCallout,
    ) -> Result<GrpcResult, GrpcResult> {
        let unavailable = |message: String| GrpcResult::Err {
            status: UNAVAILABLE,
            message,
        };
        let (mut session, peer) = self
            .start_grpc_request(
                cluster,
                &call.service,
                &call.method,
                &call.initial_metadata,
                call.timeout,
            )
            .await?;
        let io = |e: pingora::BError| unavailable(format!("gRPC upstream: {e}"));
        session
            .write_request_body(Bytes::from(frame(&call.message)), true)
            .await
            .map_err(io)?;
        session.finish_request_body().map_err(io)?;
        session.read_response_header().await.map_err(io)?;
        let (http_status, mut status_headers) = {
            let response = session
                .response_header()
                .ok_or_else(|| unavailable("no response headers".into()))?;
            let mut map = HeaderMap::new();
            for name in ["grpc-status", "grpc-message"] {
                if let Some(value) = response.headers.get(name) {
                    map.add(name, value.as_bytes());
                }
            }
            (response.status.as_u16(), map)
        };
        if http_status != 200 {
            return Ok(status_of_http(http_status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(io)? {
            if body.len() + chunk.len() > MAX_GRPC_RESPONSE_BYTES {
                return Ok(GrpcResult::Err {
                    status: RESOURCE_EXHAUSTED,
                    message: "gRPC response too large".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(trailers) = session.read_trailers().await.map_err(io)? {
            for name in ["grpc-status", "grpc-message"] {
                if let Some(value) = trailers.get(name) {
                    status_headers.replace(name, value.as_bytes());
                }
            }
        }
        self.connector()
            .release_http_session(HttpSession::H2(*session), &peer, Some(IDLE_CONNECTION))
            .await;
        let status = status_headers
            .get_str("grpc-status")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(UNKNOWN);
        if status != 0 {
            return Ok(GrpcResult::Err {
                status,
                message: status_headers
                    .get_str("grpc-message")
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(first_message(&body).map_or_else(|e| e, GrpcResult::Ok))
    }
}

/// The request headers of a call or stream: `POST /<service>/<method>`
/// with the plugin's initial metadata (pseudo-headers left out).
fn grpc_request(
    authority: &str,
    service: &str,
    method: &str,
    initial_metadata: &HeaderMap,
    timeout: Duration,
) -> pingora::Result<RequestHeader> {
    let path = format!("/{service}/{method}");
    let mut request = RequestHeader::build("POST", path.as_bytes(), None)?;
    request.set_version(http::Version::HTTP_2);
    request.insert_header("host", authority)?;
    request.insert_header("content-type", "application/grpc")?;
    request.insert_header("te", "trailers")?;
    if !timeout.is_zero() {
        request.insert_header("grpc-timeout", format!("{}m", timeout.as_millis()))?;
    }
    for (name, value) in initial_metadata.iter() {
        if !name.starts_with(b":") {
            request.append_header(String::from_utf8_lossy(name).into_owned(), value)?;
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names_a_cluster_directly_or_through_grpc_service() {
        assert_eq!(cluster_name(b"grpc"), "grpc");
        // GrpcService { envoy_grpc { cluster_name: "auth" } }
        let service = [0x0a, 0x06, 0x0a, 0x04, b'a', b'u', b't', b'h'];
        assert_eq!(cluster_name(&service), "auth");
        // With a timeout (field 3) after it.
        let mut with_timeout = service.to_vec();
        with_timeout.extend_from_slice(&[0x1a, 0x02, 0x08, 0x01]);
        assert_eq!(cluster_name(&with_timeout), "auth");
    }

    #[test]
    fn frames_round_trip_and_malformed_bodies_are_internal_errors() {
        assert_eq!(first_message(&frame(b"ping")).unwrap(), b"ping");
        for bad in [
            &b""[..],
            &[0, 0, 0][..],
            &[0, 0, 0, 0, 9, 1][..],
            &[1, 0, 0, 0, 0][..],
        ] {
            match first_message(bad) {
                Err(GrpcResult::Err { status, .. }) => assert_eq!(status, INTERNAL),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
