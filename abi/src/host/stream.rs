//! Stream control: resume, close, local responses, status.

use super::{Ret, give, put_u32, read};
use crate::headers::HeaderMap;
use crate::state::{HostState, LocalResponse, StreamEvent};
use crate::types::{Status, StreamType};
use polyhost_engine_core::HostContext;

fn push_event<C: HostContext<Data = HostState>>(cx: &mut C, event: StreamEvent) -> Ret {
    let stream = cx.data_mut().stream_mut().ok_or(Status::NotFound)?;
    stream.events.push(event);
    Ok(())
}

/// `proxy_continue_stream(type)` (and 0.1.0's `proxy_continue_request` /
/// `proxy_continue_response`).
pub(super) fn continue_stream<C: HostContext<Data = HostState>>(cx: &mut C, t: i32) -> Ret {
    let t = StreamType::from_raw(t).ok_or(Status::BadArgument)?;
    push_event(cx, StreamEvent::Resume(t))
}

/// `proxy_close_stream(type)`.
pub(super) fn close_stream<C: HostContext<Data = HostState>>(cx: &mut C, t: i32) -> Ret {
    let t = StreamType::from_raw(t).ok_or(Status::BadArgument)?;
    push_event(cx, StreamEvent::Close(t))
}

/// `proxy_clear_route_cache()` (ABI 0.1.0).
pub(super) fn clear_route_cache<C: HostContext<Data = HostState>>(cx: &mut C) -> Ret {
    push_event(cx, StreamEvent::ClearRouteCache)
}

/// `proxy_send_local_response(status, details, body, headers, grpc_status)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_local_response<C: HostContext<Data = HostState>>(
    cx: &mut C,
    code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    grpc_status: i32,
) -> Ret {
    let details = read(cx, details_ptr, details_len)?;
    let body = read(cx, body_ptr, body_len)?;
    let headers = HeaderMap::deserialize(&read(cx, headers_ptr, headers_len)?)?;
    let response = LocalResponse {
        status: code as u32,
        details: String::from_utf8_lossy(&details).into_owned(),
        body,
        headers,
        // The SDKs pass -1 for "no gRPC status".
        grpc_status: u32::try_from(grpc_status).ok(),
    };
    let stream = cx.data_mut().stream_mut().ok_or(Status::NotFound)?;
    stream.local_response = Some(response);
    Ok(())
}

/// `proxy_get_status(*code, **message, *len)`: the status of the last gRPC
/// call or stream that closed.
pub(super) fn get_status<C: HostContext<Data = HostState>>(
    cx: &mut C,
    pcode: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let (code, message) = cx.data().last_status.clone();
    put_u32(cx, pcode, code)?;
    give(cx, &message, pp, p)
}
