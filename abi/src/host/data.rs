//! Buffer calls: bodies, TCP data, callout results and configurations.

use super::{Ret, give, in_bounds, over_limit, put_u32, read};
use crate::limits::Limit;
use crate::state::HostState;
use crate::types::{AbiVersion, BufferType, Status};
use polyhost_engine_core::HostContext;

/// The bytes of buffer `t` as the current context sees them.
fn buffer(state: &HostState, t: BufferType) -> Option<&[u8]> {
    let s = &state.scratch;
    Some(match t {
        BufferType::HttpRequestBody => &state.stream()?.request_body,
        BufferType::HttpResponseBody => &state.stream()?.response_body,
        BufferType::DownstreamData => &state.stream()?.downstream_data,
        BufferType::UpstreamData => &state.stream()?.upstream_data,
        BufferType::HttpCallResponseBody => &s.http_body,
        BufferType::GrpcReceiveBuffer => &s.grpc_message,
        // 0.1.0 plugins read their configuration with proxy_get_configuration.
        BufferType::VmConfiguration if state.plugin.abi >= AbiVersion::V0_2_0 => {
            &state.plugin.vm_configuration
        }
        BufferType::PluginConfiguration if state.plugin.abi >= AbiVersion::V0_2_0 => {
            &state.plugin.plugin_configuration
        }
        BufferType::CallData => &s.call_data,
        _ => return None,
    })
}

/// `proxy_get_buffer_bytes(type, start, max_size, **ptr, *len)`: up to
/// `max_size` bytes from offset `start`.
pub(super) fn get_buffer_bytes<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    start: i32,
    max_size: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let t = BufferType::from_raw(t).ok_or(Status::BadArgument)?;
    let (start, max_size) = (start as u32 as usize, max_size as u32 as usize);
    let bytes = {
        let buf = buffer(cx.data(), t).ok_or(Status::NotFound)?;
        // Past the end is empty data, as in the reference host.
        let start = start.min(buf.len());
        let end = start.saturating_add(max_size).min(buf.len());
        buf[start..end].to_vec()
    };
    give(cx, &bytes, pp, p)
}

/// `proxy_set_buffer_bytes(type, start, size, ptr, len)`: replaces `size`
/// bytes at `start` with the guest's bytes. `start = 0, size = 0` prepends,
/// `start >= length` appends, `start = 0, size >= length` replaces all;
/// any other range is spliced in place (a superset of Envoy's rules).
///
/// The buffer may not end up over [`HostLimits::max_body_bytes`], and what
/// it grows by counts against the VM's budget; both are checked before the
/// guest's bytes are copied.
///
/// [`HostLimits::max_body_bytes`]: crate::HostLimits::max_body_bytes
pub(super) fn set_buffer_bytes<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> Ret {
    let t = BufferType::from_raw(t).ok_or(Status::BadArgument)?;
    in_bounds(cx, &[(ptr, len)])?;
    let state = cx.data_mut();
    let max = state.budget.limits.max_body_bytes;
    let HostState {
        streams,
        effective,
        budget,
        ..
    } = state;
    let stream = streams.get_mut(effective).ok_or(Status::NotFound)?;
    let old = stream.buffer_mut(t).ok_or(Status::BadArgument)?.len();
    let start = (start as u32 as usize).min(old);
    let end = start.saturating_add(size as u32 as usize).min(old);
    let new = old - (end - start) + len as u32 as usize;
    if new > max {
        let detail =
            format!("a buffer of {new} bytes after proxy_set_buffer_bytes (the most is {max})");
        return Err(over_limit(state, Limit::Body, detail));
    }
    if new > old && !budget.fits(new - old) {
        let detail = format!(
            "a buffer growing by {} bytes, with {} of the VM's {} bytes held",
            new - old,
            budget.held(),
            budget.limits.max_vm_bytes
        );
        return Err(over_limit(state, Limit::VmBytes, detail));
    }
    let data = read(cx, ptr, len)?;
    let HostState {
        streams,
        effective,
        budget,
        ..
    } = cx.data_mut();
    let stream = streams.get_mut(effective).ok_or(Status::NotFound)?;
    // Checked above; nothing ran in between.
    budget.resize_stream(&mut stream.charge, old, new);
    let buf = stream.buffer_mut(t).ok_or(Status::BadArgument)?;
    buf.splice(start..end, data);
    Ok(())
}

/// `proxy_get_buffer_status(type, *len, *flags)`.
pub(super) fn get_buffer_status<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    plen: i32,
    pflags: i32,
) -> Ret {
    let t = BufferType::from_raw(t).ok_or(Status::BadArgument)?;
    let len = buffer(cx.data(), t).ok_or(Status::NotFound)?.len() as u32;
    put_u32(cx, plen, len)?;
    put_u32(cx, pflags, 0)
}
