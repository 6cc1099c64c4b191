//! HTTP and gRPC callouts.

use super::{Ret, put_u32, read, read_string};
use crate::headers::HeaderMap;
use crate::services::{CalloutRequest, GrpcCallout, GrpcStreamOpen, HttpCallout};
use crate::state::{CalloutKind, HostState};
use crate::types::Status;
use polyhost_engine_core::HostContext;
use std::time::Duration;

/// Hands out a token and remembers which context asked, so the answer goes
/// back to it.
fn new_token(state: &mut HostState, kind: CalloutKind) -> u32 {
    let token = state.next_token;
    state.next_token = state.next_token.wrapping_add(1).max(1);
    state.callouts.insert(token, (state.effective, kind));
    token
}

/// Dispatches `make(token)` and writes the token, or forgets it on refusal.
fn dispatch<C: HostContext<Data = HostState>>(
    cx: &mut C,
    kind: CalloutKind,
    ptoken: i32,
    make: impl FnOnce(u32) -> CalloutRequest,
) -> Ret {
    let state = cx.data_mut();
    let token = new_token(state, kind);
    if let Err(status) = state.services.callouts.dispatch(make(token)) {
        state.callouts.remove(&token);
        return Err(status.into());
    }
    put_u32(cx, ptoken, token)
}

/// `proxy_http_call(upstream, headers, body, trailers, timeout_ms, *token)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn http_call<C: HostContext<Data = HostState>>(
    cx: &mut C,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    bp: i32,
    bl: i32,
    tp: i32,
    tl: i32,
    timeout_ms: i32,
    ptoken: i32,
) -> Ret {
    let upstream = read_string(cx, up, ul)?;
    let headers = HeaderMap::deserialize(&read(cx, hp, hl)?)?;
    let body = read(cx, bp, bl)?;
    let trailers = HeaderMap::deserialize(&read(cx, tp, tl)?)?;
    // Envoy refuses a callout it could not route.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| headers.get(h).is_none())
    {
        return Err(Status::BadArgument.into());
    }
    let plugin = cx.data().plugin.name.clone();
    let timeout = Duration::from_millis(u64::from(timeout_ms as u32));
    dispatch(cx, CalloutKind::Http, ptoken, |token| {
        CalloutRequest::Http(HttpCallout {
            plugin,
            token,
            upstream,
            headers,
            body,
            trailers,
            timeout,
        })
    })
}

/// The (pointer, length) pairs shared by `proxy_grpc_call` and
/// `proxy_grpc_stream`.
pub(super) struct GrpcArgs {
    pub upstream: (i32, i32),
    pub service: (i32, i32),
    pub method: (i32, i32),
    pub metadata: (i32, i32),
}

struct GrpcTarget {
    upstream: Vec<u8>,
    service: String,
    method: String,
    metadata: HeaderMap,
}

fn read_grpc<C: HostContext<Data = HostState>>(
    cx: &C,
    a: &GrpcArgs,
) -> Result<GrpcTarget, super::Fail> {
    Ok(GrpcTarget {
        upstream: read(cx, a.upstream.0, a.upstream.1)?,
        service: read_string(cx, a.service.0, a.service.1)?,
        method: read_string(cx, a.method.0, a.method.1)?,
        metadata: HeaderMap::deserialize(&read(cx, a.metadata.0, a.metadata.1)?)?,
    })
}

/// `proxy_grpc_call(...)`: a unary call.
pub(super) fn grpc_call<C: HostContext<Data = HostState>>(
    cx: &mut C,
    args: GrpcArgs,
    msgp: i32,
    msgl: i32,
    timeout_ms: i32,
    ptoken: i32,
) -> Ret {
    let t = read_grpc(cx, &args)?;
    let message = read(cx, msgp, msgl)?;
    let plugin = cx.data().plugin.name.clone();
    dispatch(cx, CalloutKind::GrpcCall, ptoken, |token| {
        CalloutRequest::Grpc(GrpcCallout {
            plugin,
            token,
            upstream: t.upstream,
            service: t.service,
            method: t.method,
            initial_metadata: t.metadata,
            message,
            timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
        })
    })
}

/// `proxy_grpc_stream(...)`: opens a bidirectional stream.
pub(super) fn grpc_stream<C: HostContext<Data = HostState>>(
    cx: &mut C,
    args: GrpcArgs,
    ptoken: i32,
) -> Ret {
    let t = read_grpc(cx, &args)?;
    let plugin = cx.data().plugin.name.clone();
    dispatch(cx, CalloutKind::GrpcStream, ptoken, |token| {
        CalloutRequest::GrpcStream(GrpcStreamOpen {
            plugin,
            token,
            upstream: t.upstream,
            service: t.service,
            method: t.method,
            initial_metadata: t.metadata,
        })
    })
}

fn known(state: &HostState, token: u32, kinds: &[CalloutKind]) -> Result<(), Status> {
    match state.callouts.get(&token) {
        Some((_, k)) if kinds.contains(k) => Ok(()),
        _ => Err(Status::NotFound),
    }
}

/// `proxy_grpc_send(token, ptr, len, end_stream)`.
pub(super) fn grpc_send<C: HostContext<Data = HostState>>(
    cx: &mut C,
    token: i32,
    p: i32,
    n: i32,
    end_stream: i32,
) -> Ret {
    let token = token as u32;
    known(cx.data(), token, &[CalloutKind::GrpcStream])?;
    let message = read(cx, p, n)?;
    let state = cx.data();
    let request = CalloutRequest::GrpcSend {
        plugin: state.plugin.name.clone(),
        token,
        message,
        end_stream: end_stream != 0,
    };
    Ok(state.services.callouts.dispatch(request)?)
}

/// `proxy_grpc_cancel(token)`: no callback will follow for this token.
pub(super) fn grpc_cancel<C: HostContext<Data = HostState>>(cx: &mut C, token: i32) -> Ret {
    let token = token as u32;
    let state = cx.data_mut();
    known(
        state,
        token,
        &[CalloutKind::GrpcCall, CalloutKind::GrpcStream],
    )?;
    state.callouts.remove(&token);
    let request = CalloutRequest::GrpcCancel {
        plugin: state.plugin.name.clone(),
        token,
    };
    Ok(state.services.callouts.dispatch(request)?)
}

/// `proxy_grpc_close(token)`: the plugin closes its side of a stream; the
/// remote side may still answer until it closes too.
pub(super) fn grpc_close<C: HostContext<Data = HostState>>(cx: &mut C, token: i32) -> Ret {
    let token = token as u32;
    let state = cx.data_mut();
    known(
        state,
        token,
        &[CalloutKind::GrpcCall, CalloutKind::GrpcStream],
    )?;
    let request = CalloutRequest::GrpcClose {
        plugin: state.plugin.name.clone(),
        token,
    };
    Ok(state.services.callouts.dispatch(request)?)
}
