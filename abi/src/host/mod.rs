//! The proxy-wasm host functions, written once for every engine.
//!
//! Each function is generic over the engine's caller (`C: HostContext`) and
//! returns `Ret`; [`register`] wraps each in a closure of the right Wasm
//! signature for the engine's linker. Guest pointers are checked by the
//! engine's memory accessors: an out-of-range pointer or length returns
//! `InvalidMemoryAccess` to the guest, as the reference host does, while a
//! trap inside the guest allocator (called to return data) traps the guest.
//!
//! An allocator may itself call host functions that need the allocator.
//! Nesting is capped at [`MAX_ALLOCATOR_DEPTH`] levels, so a plugin cannot
//! recurse host -> guest -> host until the host's native stack overflows;
//! the innermost failure is reported once, not once per level.

mod callouts;
pub(crate) mod context;
mod data;
mod headers;
mod metrics;
mod properties;
mod shared;
mod stream;

use crate::limits::Limit;
use crate::state::{HostState, TrapCause};
use crate::types::Status;
use polyhost_engine_core::{Error, ErrorKind, HostContext, HostLinker, HostResult, HostTrap};

/// Why a host function did not return `Ok`.
pub(crate) enum Fail {
    /// Return this status to the guest.
    Status(Status),
    /// Trap the guest.
    Trap(HostTrap),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Status(s)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::MemoryOutOfBounds => Fail::Status(Status::InvalidMemoryAccess),
            // Memory accessors only fail out of bounds, and the allocator's
            // failures go through `allocator_failed`; anything else traps
            // with a short reason (the outer trap carries the backtrace).
            _ => Fail::Trap(HostTrap(format!(
                "{} in a host call: {}",
                e.kind(),
                e.message().lines().next().unwrap_or_default()
            ))),
        }
    }
}

/// What host function bodies return.
pub(crate) type Ret = Result<(), Fail>;

/// Refuses a call that would go over `limit`: counts it, reports the first
/// of its kind in this VM (see [`crate::limits`]), and answers the guest
/// `BadArgument`, the ABI's status for a request the host will not honour
/// (the ABI has no "resource exhausted").
pub(crate) fn over_limit(state: &mut HostState, limit: Limit, detail: String) -> Fail {
    state.refused(limit, &detail);
    Fail::Status(Status::BadArgument)
}

/// Turns a body's result into what the guest sees.
#[inline]
pub(crate) fn status(r: Ret) -> HostResult<i32> {
    match r {
        Ok(()) => Ok(Status::Ok.raw()),
        Err(Fail::Status(s)) => Ok(s.raw()),
        Err(Fail::Trap(t)) => Err(t),
    }
}

/// Checks that every `(ptr, len)` range is inside guest memory, without
/// reading it: size limits are checked after this (so an out-of-range
/// pointer is still `InvalidMemoryAccess`, as when the bytes are read
/// first) and before anything the guest sized is copied.
pub(crate) fn in_bounds<C: HostContext>(cx: &C, ranges: &[(i32, i32)]) -> Ret {
    let size = cx.memory_size() as u64;
    for &(ptr, len) in ranges {
        if u64::from(ptr as u32) + u64::from(len as u32) > size {
            return Err(Status::InvalidMemoryAccess.into());
        }
    }
    Ok(())
}

/// Reads `len` bytes of guest memory at `ptr`.
#[inline]
pub(crate) fn read<C: HostContext>(cx: &C, ptr: i32, len: i32) -> Result<Vec<u8>, Fail> {
    Ok(cx.read_vec(ptr as u32, len as u32)?)
}

/// Bytes handed back to the guest that are usually short (header values):
/// on the stack up to 128 bytes.
pub(crate) type ShortBytes = smallvec::SmallVec<[u8; 128]>;

/// Reads a guest string (invalid UTF-8 is replaced: names are for display
/// and lookup only).
pub(crate) fn read_string<C: HostContext>(cx: &C, ptr: i32, len: i32) -> Result<String, Fail> {
    let bytes = read(cx, ptr, len)?;
    Ok(String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// How many host calls may wait on the plugin's allocator at once. SDK
/// allocators never call the host, so 1 is the norm; 8 leaves room for a
/// logging allocator while keeping the host's native stack far from
/// overflowing on every engine.
pub(crate) const MAX_ALLOCATOR_DEPTH: u32 = 8;

/// Calls the plugin's allocator from a host call, at most
/// [`MAX_ALLOCATOR_DEPTH`] levels deep.
fn allocate<C: HostContext<Data = HostState>>(cx: &mut C, size: u32) -> Result<u32, Fail> {
    let depth = cx.data().allocator_depth;
    if depth >= MAX_ALLOCATOR_DEPTH {
        return Err(allocator_failed(
            cx,
            ErrorKind::Trap,
            format!(
                "the plugin's allocator called back into a host function that needs the \
                 allocator, {MAX_ALLOCATOR_DEPTH} levels deep (the most the host allows)"
            ),
        ));
    }
    cx.data_mut().allocator_depth = depth + 1;
    let result = cx.allocate(size);
    cx.data_mut().allocator_depth = depth;
    result.map_err(|e| {
        let first_line = e.message().lines().next().unwrap_or_default().to_string();
        allocator_failed(cx, e.kind(), first_line)
    })
}

/// Traps the guest because the allocator failed. A failure deep in nested
/// allocator calls unwinds through every level; each traps with the
/// innermost cause, recorded once, instead of wrapping it again (which
/// printed the prefix once per level).
fn allocator_failed<C: HostContext<Data = HostState>>(
    cx: &mut C,
    kind: ErrorKind,
    message: String,
) -> Fail {
    let cause = cx
        .data_mut()
        .trap_cause
        .get_or_insert(TrapCause { kind, message });
    Fail::Trap(HostTrap(format!(
        "{} in the plugin's allocator: {}",
        cause.kind, cause.message
    )))
}

/// Copies `bytes` into fresh guest memory from the plugin's allocator and
/// writes its address and length through `ptr_out` and `len_out`.
///
/// Empty data is returned as a null pointer without calling the allocator,
/// as the reference host does (some SDK allocators fail on size 0).
pub(crate) fn give<C: HostContext<Data = HostState>>(
    cx: &mut C,
    bytes: &[u8],
    ptr_out: i32,
    len_out: i32,
) -> Ret {
    let addr = if bytes.is_empty() {
        0
    } else {
        allocate(cx, bytes.len() as u32)?
    };
    let outs = [(ptr_out as u32, addr), (len_out as u32, bytes.len() as u32)];
    Ok(cx.write_with_u32s(addr, bytes, outs)?)
}

/// Writes a `u32` result through an out-pointer.
#[inline]
pub(crate) fn put_u32<C: HostContext>(cx: &mut C, out: i32, v: u32) -> Ret {
    Ok(cx.write_u32(out as u32, v)?)
}

/// Registers every proxy-wasm host function (all ABI versions) under `env`.
///
/// # Errors
/// A link error from the engine (a duplicate name).
pub fn register<L: HostLinker<HostState>>(l: &mut L) -> polyhost_engine_core::Result<()> {
    const ENV: &str = "env";
    // Context and logging.
    l.i32_0(ENV, "proxy_done", |cx| status(context::done(cx)))?;
    l.i32_1(ENV, "proxy_set_effective_context", |cx, id| {
        status(context::set_effective_context(cx, id))
    })?;
    l.i32_3(ENV, "proxy_log", |cx, lvl, p, n| {
        status(context::log(cx, lvl, p, n))
    })?;
    l.i32_1(ENV, "proxy_get_log_level", |cx, out| {
        status(context::get_log_level(cx, out))
    })?;
    l.i32_1(ENV, "proxy_get_current_time_nanoseconds", |cx, out| {
        status(context::current_time(cx, out))
    })?;
    l.i32_1(ENV, "proxy_set_tick_period_milliseconds", |cx, ms| {
        status(context::set_tick_period(cx, ms))
    })?;
    l.i32_2(ENV, "proxy_get_configuration", |cx, pp, p| {
        status(context::get_configuration(cx, pp, p))
    })?;
    // Buffers.
    l.i32_5(ENV, "proxy_get_buffer_bytes", |cx, t, start, max, pp, p| {
        status(data::get_buffer_bytes(cx, t, start, max, pp, p))
    })?;
    l.i32_5(
        ENV,
        "proxy_set_buffer_bytes",
        |cx, t, start, size, ptr, len| status(data::set_buffer_bytes(cx, t, start, size, ptr, len)),
    )?;
    l.i32_3(ENV, "proxy_get_buffer_status", |cx, t, plen, pflags| {
        status(data::get_buffer_status(cx, t, plen, pflags))
    })?;
    // Header maps.
    l.i32_2(ENV, "proxy_get_header_map_size", |cx, t, p| {
        status(headers::get_size(cx, t, p))
    })?;
    l.i32_3(ENV, "proxy_get_header_map_pairs", |cx, t, pp, p| {
        status(headers::get_pairs(cx, t, pp, p))
    })?;
    l.i32_3(ENV, "proxy_set_header_map_pairs", |cx, t, ptr, len| {
        status(headers::set_pairs(cx, t, ptr, len))
    })?;
    l.i32_5(ENV, "proxy_get_header_map_value", |cx, t, kp, kl, pp, p| {
        status(headers::get_value(cx, t, kp, kl, pp, p))
    })?;
    l.i32_5(
        ENV,
        "proxy_add_header_map_value",
        |cx, t, kp, kl, vp, vl| status(headers::add_value(cx, t, kp, kl, vp, vl)),
    )?;
    l.i32_5(
        ENV,
        "proxy_replace_header_map_value",
        |cx, t, kp, kl, vp, vl| status(headers::replace_value(cx, t, kp, kl, vp, vl)),
    )?;
    l.i32_3(ENV, "proxy_remove_header_map_value", |cx, t, kp, kl| {
        status(headers::remove_value(cx, t, kp, kl))
    })?;
    // Stream control.
    l.i32_1(ENV, "proxy_continue_stream", |cx, t| {
        status(stream::continue_stream(cx, t))
    })?;
    l.i32_1(ENV, "proxy_close_stream", |cx, t| {
        status(stream::close_stream(cx, t))
    })?;
    l.i32_0(ENV, "proxy_continue_request", |cx| {
        status(stream::continue_stream(cx, 0))
    })?;
    l.i32_0(ENV, "proxy_continue_response", |cx| {
        status(stream::continue_stream(cx, 1))
    })?;
    l.i32_0(ENV, "proxy_clear_route_cache", |cx| {
        status(stream::clear_route_cache(cx))
    })?;
    l.i32_8(
        ENV,
        "proxy_send_local_response",
        |cx, code, dp, dl, bp, bl, hp, hl, grpc| {
            status(stream::send_local_response(
                cx, code, dp, dl, bp, bl, hp, hl, grpc,
            ))
        },
    )?;
    l.i32_3(ENV, "proxy_get_status", |cx, pcode, pp, p| {
        status(stream::get_status(cx, pcode, pp, p))
    })?;
    // Callouts.
    l.i32_10(
        ENV,
        "proxy_http_call",
        |cx, up, ul, hp, hl, bp, bl, tp, tl, timeout, ptoken| {
            status(callouts::http_call(
                cx, up, ul, hp, hl, bp, bl, tp, tl, timeout, ptoken,
            ))
        },
    )?;
    l.i32_12(
        ENV,
        "proxy_grpc_call",
        |cx, up, ul, sp, sl, mp, ml, mdp, mdl, msgp, msgl, timeout, ptoken| {
            let call = callouts::GrpcArgs {
                upstream: (up, ul),
                service: (sp, sl),
                method: (mp, ml),
                metadata: (mdp, mdl),
            };
            status(callouts::grpc_call(cx, call, msgp, msgl, timeout, ptoken))
        },
    )?;
    l.i32_9(
        ENV,
        "proxy_grpc_stream",
        |cx, up, ul, sp, sl, mp, ml, mdp, mdl, ptoken| {
            let call = callouts::GrpcArgs {
                upstream: (up, ul),
                service: (sp, sl),
                method: (mp, ml),
                metadata: (mdp, mdl),
            };
            status(callouts::grpc_stream(cx, call, ptoken))
        },
    )?;
    l.i32_4(ENV, "proxy_grpc_send", |cx, token, p, n, end| {
        status(callouts::grpc_send(cx, token, p, n, end))
    })?;
    l.i32_1(ENV, "proxy_grpc_cancel", |cx, token| {
        status(callouts::grpc_cancel(cx, token))
    })?;
    l.i32_1(ENV, "proxy_grpc_close", |cx, token| {
        status(callouts::grpc_close(cx, token))
    })?;
    // Shared data and queues.
    l.i32_5(ENV, "proxy_get_shared_data", |cx, kp, kl, pp, p, pcas| {
        status(shared::get_data(cx, kp, kl, pp, p, pcas))
    })?;
    l.i32_5(ENV, "proxy_set_shared_data", |cx, kp, kl, vp, vl, cas| {
        status(shared::set_data(cx, kp, kl, vp, vl, cas))
    })?;
    l.i32_3(ENV, "proxy_register_shared_queue", |cx, np, nl, pid| {
        status(shared::register_queue(cx, np, nl, pid))
    })?;
    l.i32_5(
        ENV,
        "proxy_resolve_shared_queue",
        |cx, vp, vl, np, nl, pid| status(shared::resolve_queue(cx, vp, vl, np, nl, pid)),
    )?;
    l.i32_3(ENV, "proxy_enqueue_shared_queue", |cx, id, p, n| {
        status(shared::enqueue(cx, id, p, n))
    })?;
    l.i32_3(ENV, "proxy_dequeue_shared_queue", |cx, id, pp, p| {
        status(shared::dequeue(cx, id, pp, p))
    })?;
    // Metrics.
    l.i32_4(ENV, "proxy_define_metric", |cx, t, np, nl, pid| {
        status(metrics::define(cx, t, np, nl, pid))
    })?;
    l.i32_i32_i64(ENV, "proxy_increment_metric", |cx, id, delta| {
        status(metrics::increment(cx, id, delta))
    })?;
    l.i32_i32_i64(ENV, "proxy_record_metric", |cx, id, value| {
        status(metrics::record(cx, id, value as u64))
    })?;
    l.i32_2(ENV, "proxy_get_metric", |cx, id, out| {
        status(metrics::get(cx, id, out))
    })?;
    // Properties and foreign functions.
    l.i32_4(ENV, "proxy_get_property", |cx, pp_path, pl, pp, p| {
        status(properties::get(cx, pp_path, pl, pp, p))
    })?;
    l.i32_4(ENV, "proxy_set_property", |cx, pp_path, pl, vp, vl| {
        status(properties::set(cx, pp_path, pl, vp, vl))
    })?;
    l.i32_6(
        ENV,
        "proxy_call_foreign_function",
        |cx, np, nl, ap, al, pp, p| status(properties::call_foreign(cx, np, nl, ap, al, pp, p)),
    )?;
    // Emscripten-built C++ plugins import this; memory growth needs no action
    // here because memory is looked up on every access.
    l.void_1(ENV, "emscripten_notify_memory_growth", |_cx, _idx| Ok(()))?;
    Ok(())
}
