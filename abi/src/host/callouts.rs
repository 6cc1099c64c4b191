//! HTTP and gRPC callouts.

use super::headers::check_value_len;
use super::{Ret, in_bounds, over_limit, put_u32, read, read_string};
use crate::headers::HeaderMap;
use crate::limits::Limit;
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

/// Refuses a callout request of `bytes` that does not fit in the VM's
/// budget (checked before the guest's bytes are copied). Requests count
/// until their answer, since the dispatcher may hold them until then.
fn check_callout(state: &mut HostState, bytes: usize) -> Ret {
    let HostState {
        budget, callouts, ..
    } = state;
    if budget.fits_callout(bytes, callouts.len(), |token| callouts.contains_key(&token)) {
        return Ok(());
    }
    let detail = format!(
        "a callout request of {bytes} bytes, with {} of the VM's {} bytes held",
        budget.held(),
        budget.limits.max_vm_bytes
    );
    Err(over_limit(state, Limit::VmBytes, detail))
}

/// Guest lengths as host sizes, summed.
fn total(lens: &[i32]) -> usize {
    lens.iter().map(|l| *l as u32 as usize).sum()
}

/// Dispatches `make(token)` and writes the token, or forgets it on refusal.
/// The request's `bytes` count against the budget until the answer.
fn dispatch<C: HostContext<Data = HostState>>(
    cx: &mut C,
    kind: CalloutKind,
    ptoken: i32,
    bytes: usize,
    make: impl FnOnce(u32) -> CalloutRequest,
) -> Ret {
    let state = cx.data_mut();
    let token = new_token(state, kind);
    if let Err(status) = state.services.callouts.dispatch(make(token)) {
        state.callouts.remove(&token);
        return Err(status.into());
    }
    state.budget.charge_callout(token, bytes);
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
    // The request goes to the embedder's dispatcher, not into this VM's
    // state, so only its body and values are bounded here.
    in_bounds(cx, &[(up, ul), (hp, hl), (bp, bl), (tp, tl)])?;
    let max_body = cx.data().budget.limits.max_body_bytes;
    if bl as u32 as usize > max_body {
        let detail = format!(
            "an HTTP callout body of {} bytes (the most is {max_body})",
            bl as u32
        );
        return Err(over_limit(cx.data_mut(), Limit::Body, detail));
    }
    let bytes = total(&[ul, hl, bl, tl]);
    check_callout(cx.data_mut(), bytes)?;
    let upstream = read_string(cx, up, ul)?;
    let headers = HeaderMap::deserialize(&read(cx, hp, hl)?)?;
    let body = read(cx, bp, bl)?;
    let trailers = HeaderMap::deserialize(&read(cx, tp, tl)?)?;
    check_value_len(
        cx.data_mut(),
        headers.longest_value().max(trailers.longest_value()),
    )?;
    // Envoy refuses a callout it could not route.
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| headers.get(h).is_none())
    {
        return Err(Status::BadArgument.into());
    }
    let plugin = cx.data().plugin.name.clone();
    let timeout = Duration::from_millis(u64::from(timeout_ms as u32));
    dispatch(cx, CalloutKind::Http, ptoken, bytes, |token| {
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

impl GrpcArgs {
    fn ranges(&self) -> [(i32, i32); 4] {
        [self.upstream, self.service, self.method, self.metadata]
    }

    fn bytes(&self) -> usize {
        total(&self.ranges().map(|(_, len)| len))
    }
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
    in_bounds(cx, &args.ranges())?;
    in_bounds(cx, &[(msgp, msgl)])?;
    let bytes = args.bytes() + total(&[msgl]);
    check_callout(cx.data_mut(), bytes)?;
    let t = read_grpc(cx, &args)?;
    check_value_len(cx.data_mut(), t.metadata.longest_value())?;
    let message = read(cx, msgp, msgl)?;
    let plugin = cx.data().plugin.name.clone();
    dispatch(cx, CalloutKind::GrpcCall, ptoken, bytes, |token| {
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
    in_bounds(cx, &args.ranges())?;
    let bytes = args.bytes();
    check_callout(cx.data_mut(), bytes)?;
    let t = read_grpc(cx, &args)?;
    check_value_len(cx.data_mut(), t.metadata.longest_value())?;
    let plugin = cx.data().plugin.name.clone();
    dispatch(cx, CalloutKind::GrpcStream, ptoken, bytes, |token| {
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
    // A message must fit in the budget, but is not counted after: a stream
    // may carry any number of them over its life, and the dispatcher sends
    // each on its way.
    in_bounds(cx, &[(p, n)])?;
    let bytes = total(&[n]);
    check_callout(cx.data_mut(), bytes)?;
    let message = read(cx, p, n)?;
    let state = cx.data_mut();
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
