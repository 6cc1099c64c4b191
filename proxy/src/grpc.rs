//! Unary gRPC calls a plugin makes with `proxy_grpc_call`, sent as real
//! HTTP/2 requests to a configured cluster.
//!
//! As in Envoy, the plugin names the upstream with a serialized
//! `envoy.config.core.v3.GrpcService` (its `envoy_grpc.cluster_name`) or,
//! when the bytes are not one, with the cluster's name itself. The request
//! is `POST /<service>/<method>` with `content-type: application/grpc`, the
//! plugin's initial metadata, and the message in one length-prefixed frame;
//! the answer's first message, or its `grpc-status` and `grpc-message`,
//! goes back to the plugin. Streams (`proxy_grpc_stream`) are not sent.

use crate::cluster::{ClusterManager, UpstreamCluster};
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use polyhost::services::GrpcCallout;
use polyhost::{GrpcResult, HeaderMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// gRPC status codes the proxy itself reports.
const UNKNOWN: u32 = 2;
const DEADLINE_EXCEEDED: u32 = 4;
const RESOURCE_EXHAUSTED: u32 = 8;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

/// How long an idle gRPC connection is kept for reuse.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// Largest gRPC answer kept, as for HTTP callouts.
const MAX_GRPC_RESPONSE_BYTES: usize = 16 << 20;

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

/// One gRPC message frame: uncompressed flag, big-endian length, message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// The first message of a response body made of frames.
fn first_message(body: &[u8]) -> Result<Vec<u8>, GrpcResult> {
    let malformed = |what: &str| GrpcResult::Err {
        status: INTERNAL,
        message: format!("malformed gRPC response: {what}"),
    };
    let Some((&compressed, rest)) = body.split_first() else {
        return Err(malformed("no message"));
    };
    if compressed != 0 {
        return Err(malformed("compressed messages are not supported"));
    }
    let len = rest
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| malformed("truncated frame header"))?;
    rest.get(4..4 + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| malformed("truncated message"))
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

    async fn send_grpc(
        &self,
        cluster: &UpstreamCluster,
        call: GrpcCallout,
    ) -> Result<GrpcResult, GrpcResult> {
        let unavailable = |message: String| GrpcResult::Err {
            status: UNAVAILABLE,
            message,
        };
        let peer = cluster
            .peer()
            .ok_or_else(|| unavailable(format!("cluster {} has no endpoint", cluster.name)))?;
        let request = grpc_request(&cluster.name, &call)
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
        let io = |e: pingora::BError| unavailable(format!("gRPC upstream: {e}"));
        session
            .write_request_header(Box::new(request), false)
            .map_err(io)?;
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
            // gRPC's mapping of HTTP statuses for a non-gRPC answer.
            let status = match http_status {
                429 | 502..=504 => UNAVAILABLE,
                _ => UNKNOWN,
            };
            return Ok(GrpcResult::Err {
                status,
                message: format!("the upstream answered HTTP {http_status}"),
            });
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
            .release_http_session(HttpSession::H2(session), &peer, Some(IDLE_CONNECTION))
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

fn grpc_request(authority: &str, call: &GrpcCallout) -> pingora::Result<RequestHeader> {
    let path = format!("/{}/{}", call.service, call.method);
    let mut request = RequestHeader::build("POST", path.as_bytes(), None)?;
    request.set_version(http::Version::HTTP_2);
    request.insert_header("host", authority)?;
    request.insert_header("content-type", "application/grpc")?;
    request.insert_header("te", "trailers")?;
    if !call.timeout.is_zero() {
        request.insert_header("grpc-timeout", format!("{}m", call.timeout.as_millis()))?;
    }
    for (name, value) in call.initial_metadata.iter() {
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
