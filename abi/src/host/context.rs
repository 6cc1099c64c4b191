//! Context, logging, time and configuration calls.

use super::{Ret, give, in_bounds, put_u32, read};
use crate::limits::Limit;
use crate::state::{HostState, LogLine, ShutdownPhase};
use crate::types::{LogLevel, Status};
use crate::vm::ContextId;
use polyhost_engine_core::HostContext;
use std::time::{Duration, UNIX_EPOCH};

/// `proxy_done`: the current root context finished the work it deferred
/// when its `proxy_on_done` returned false. As in the reference host, the
/// call is `NotFound` unless such a shutdown is pending; `proxy_on_delete`
/// follows after the current callback returns, never from inside this call.
pub(super) fn done<C: HostContext<Data = HostState>>(cx: &mut C) -> Ret {
    let state = cx.data_mut();
    if state.root().shutdown != ShutdownPhase::AwaitingDone {
        return Err(Status::NotFound.into());
    }
    state.root_mut().shutdown = ShutdownPhase::DoneCalled;
    state.done_pending = true;
    Ok(())
}

/// `proxy_set_effective_context`: later calls act on context `id`.
pub(super) fn set_effective_context<C: HostContext<Data = HostState>>(cx: &mut C, id: i32) -> Ret {
    let state = cx.data_mut();
    let id = id as u32;
    if state.root_of(id).is_none() {
        return Err(Status::BadArgument.into());
    }
    // A context of another plugin sharing the VM acts with that plugin's
    // configuration, properties and log name.
    state.enter(id);
    Ok(())
}

/// Emits one plugin log line through `tracing` and keeps it for the embedder.
pub(crate) fn emit(state: &mut HostState, level: LogLevel, message: String) {
    if level < state.plugin.log_level {
        return;
    }
    // Name, root id and VM id travel with the line so a host can print it
    // as Envoy does ("wasm log <name> <root_id> <vm_id>: <message>").
    let plugin = &*state.plugin.name;
    let root_id = state.plugin.root_id.as_str();
    let vm_id = state.plugin.vm_id.as_str();
    match level {
        LogLevel::Trace => {
            tracing::trace!(target: "polyhost::plugin", plugin, root_id, vm_id, "{message}")
        }
        LogLevel::Debug => {
            tracing::debug!(target: "polyhost::plugin", plugin, root_id, vm_id, "{message}")
        }
        LogLevel::Info => {
            tracing::info!(target: "polyhost::plugin", plugin, root_id, vm_id, "{message}")
        }
        LogLevel::Warn => {
            tracing::warn!(target: "polyhost::plugin", plugin, root_id, vm_id, "{message}")
        }
        LogLevel::Error | LogLevel::Critical => {
            tracing::error!(target: "polyhost::plugin", plugin, root_id, vm_id, critical = level == LogLevel::Critical, "{message}")
        }
    }
    let root = ContextId(state.root_context);
    state.push_log(LogLine {
        level,
        message,
        root,
    });
}

/// A log line cut to `limit` bytes, marked with how much was cut.
/// `total` is the line's full length; only `head` was read.
pub(crate) fn cut_line(state: &mut HostState, head: &[u8], total: usize) -> String {
    let limit = state.budget.limits.max_log_line_bytes;
    state.refused(
        Limit::LogLine,
        &format!("a log line of {total} bytes (the most kept is {limit}; longer lines are cut)"),
    );
    format!(
        "{} [... {} bytes cut]",
        String::from_utf8_lossy(head),
        total - head.len()
    )
}

/// `proxy_log(level, ptr, len)`. A line over
/// [`HostLimits::max_log_line_bytes`](crate::HostLimits::max_log_line_bytes)
/// is kept cut, and only the part kept is copied out of the guest; the
/// call still succeeds, because SDKs treat a failed log call as fatal.
pub(super) fn log<C: HostContext<Data = HostState>>(
    cx: &mut C,
    level: i32,
    ptr: i32,
    len: i32,
) -> Ret {
    let level = LogLevel::from_raw(level).ok_or(Status::BadArgument)?;
    let total = len as u32 as usize;
    let limit = cx.data().budget.limits.max_log_line_bytes;
    let message = if total > limit {
        // The whole line must still be in bounds, as for any other call.
        in_bounds(cx, &[(ptr, len)])?;
        let head = read(cx, ptr, limit as i32)?;
        cut_line(cx.data_mut(), &head, total)
    } else {
        String::from_utf8_lossy(&read(cx, ptr, len)?).into_owned()
    };
    emit(cx.data_mut(), level, message);
    Ok(())
}

/// `proxy_get_log_level(*level)` (ABI 0.2.1).
///
/// Inlined so that the runtime's trampoline holds the whole call, as it
/// holds a raw typed host function: out of line, its cold error paths gave
/// this four-byte write a frame of its own with six saved registers, about
/// a third more per call in `scripts/profile.sh --operations host-calls`.
#[inline]
pub(super) fn get_log_level<C: HostContext<Data = HostState>>(cx: &mut C, out: i32) -> Ret {
    let level = cx.data().plugin.log_level as u32;
    put_u32(cx, out, level)
}

/// `proxy_get_current_time_nanoseconds(*u64)`: wall-clock time, on the
/// VM's clock ([`HostState::set_clock`]).
pub(super) fn current_time<C: HostContext<Data = HostState>>(cx: &mut C, out: i32) -> Ret {
    let nanos = cx
        .data()
        .clock
        .wall_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(cx.write_u64(out as u32, nanos)?)
}

/// `proxy_set_tick_period_milliseconds(ms)` for the current root context;
/// 0 stops its ticks.
pub(super) fn set_tick_period<C: HostContext<Data = HostState>>(cx: &mut C, ms: i32) -> Ret {
    let now = cx.data().clock.now();
    // Each root context has its own timer, as in Envoy.
    let state = cx.data_mut().root_mut();
    if ms as u32 == 0 {
        state.tick_period = None;
        state.next_tick = None;
    } else {
        let period = Duration::from_millis(u64::from(ms as u32));
        state.tick_period = Some(period);
        state.next_tick = Some(now + period);
    }
    Ok(())
}

/// `proxy_get_configuration(**ptr, *len)` (ABI 0.1.0): the plugin
/// configuration.
pub(super) fn get_configuration<C: HostContext<Data = HostState>>(
    cx: &mut C,
    pp: i32,
    p: i32,
) -> Ret {
    let plugin = cx.data().plugin.clone();
    give(cx, &plugin.plugin_configuration, pp, p)
}
