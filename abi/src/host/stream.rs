//! Stream control: resume, close, local responses, status.

use super::headers::check_value_len;
use super::{Ret, give, in_bounds, over_limit, put_u32, read};
use crate::headers::{HeaderMap, MAX_SERIALIZED_MAP_BYTES};
use crate::limits::Limit;
use crate::state::{HostState, LocalResponse, StreamEvent};
use crate::types::{Status, StreamType};
use polyhost_engine_core::HostContext;

/// Records a request for the embedder. One already pending is not queued
/// again, so the list stays a handful of entries however often a plugin
/// asks.
fn push_event<C: HostContext<Data = HostState>>(cx: &mut C, event: StreamEvent) -> Ret {
    let stream = cx.data_mut().stream_mut().ok_or(Status::NotFound)?;
    if !stream.events.contains(&event) {
        stream.events.push(event);
    }
    Ok(())
}

/// Bytes a local response holds.
fn response_bytes(r: &LocalResponse) -> usize {
    r.details.len() + r.body.len() + r.headers.serialized_len()
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
    in_bounds(
        cx,
        &[
            (details_ptr, details_len),
            (body_ptr, body_len),
            (headers_ptr, headers_len),
        ],
    )?;
    let max_body = cx.data().budget.limits.max_body_bytes;
    let (details_len_u, body_len_u, headers_len_u) = (
        details_len as u32 as usize,
        body_len as u32 as usize,
        headers_len as u32 as usize,
    );
    if body_len_u > max_body {
        let detail =
            format!("a local response body of {body_len_u} bytes (the most is {max_body})");
        return Err(over_limit(cx.data_mut(), Limit::Body, detail));
    }
    if headers_len_u > MAX_SERIALIZED_MAP_BYTES {
        let detail = format!(
            "local response headers of {headers_len_u} serialized bytes (the most is {MAX_SERIALIZED_MAP_BYTES})"
        );
        return Err(over_limit(cx.data_mut(), Limit::HeaderMap, detail));
    }
    let new = details_len_u + body_len_u + headers_len_u.max(4);
    {
        let state = cx.data_mut();
        let HostState {
            streams,
            effective,
            budget,
            ..
        } = state;
        let stream = streams.get(effective).ok_or(Status::NotFound)?;
        let old = stream.local_response.as_ref().map_or(0, response_bytes);
        if new > old && !budget.fits(new - old) {
            let detail = format!(
                "a local response of {new} bytes, with {} of the VM's {} bytes held",
                budget.held(),
                budget.limits.max_vm_bytes
            );
            return Err(over_limit(state, Limit::VmBytes, detail));
        }
    }
    let details = read(cx, details_ptr, details_len)?;
    let body = read(cx, body_ptr, body_len)?;
    let headers = HeaderMap::deserialize(&read(cx, headers_ptr, headers_len)?)?;
    check_value_len(cx.data_mut(), headers.longest_value())?;
    let response = LocalResponse {
        status: code as u32,
        details: String::from_utf8_lossy(&details).into_owned(),
        body,
        headers,
        // The SDKs pass -1 for "no gRPC status".
        grpc_status: u32::try_from(grpc_status).ok(),
    };
    let HostState {
        streams,
        effective,
        budget,
        ..
    } = cx.data_mut();
    let stream = streams.get_mut(effective).ok_or(Status::NotFound)?;
    let old = stream.local_response.as_ref().map_or(0, response_bytes);
    // Within what was checked above (the headers' kept size is at most
    // their serialized length).
    budget.resize_stream(&mut stream.charge, old, response_bytes(&response));
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
