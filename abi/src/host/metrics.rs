//! Metrics calls.

use super::{Ret, over_limit, put_u32, read_string};
use crate::limits::Limit;
use crate::state::HostState;
use crate::types::{MetricType, Status};
use polyhost_engine_core::HostContext;

/// `proxy_define_metric(type, name, *id)`.
pub(super) fn define<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    np: i32,
    nl: i32,
    pid: i32,
) -> Ret {
    let kind = MetricType::from_raw(t).ok_or(Status::BadArgument)?;
    let name = read_string(cx, np, nl)?;
    let state = cx.data_mut();
    let metrics = &state.services.metrics;
    let id = match metrics.define(kind, &name) {
        // The store is process-wide and bounds itself; its refusal is
        // reported as a limit. A name taken by another kind of metric is
        // refused with the same status, and is no limit.
        Err(Status::BadArgument) if !metrics.has_room_for(&name) => {
            let shown: String = name.chars().take(64).collect();
            let detail = format!(
                "a metric named {shown:?} ({} bytes) did not fit in the store",
                name.len()
            );
            return Err(over_limit(state, Limit::Metrics, detail));
        }
        other => other?,
    };
    put_u32(cx, pid, id)
}

/// `proxy_increment_metric(id, i64 delta)`.
pub(super) fn increment<C: HostContext<Data = HostState>>(cx: &mut C, id: i32, delta: i64) -> Ret {
    Ok(cx.data().services.metrics.increment(id as u32, delta)?)
}

/// `proxy_record_metric(id, u64 value)`.
pub(super) fn record<C: HostContext<Data = HostState>>(cx: &mut C, id: i32, value: u64) -> Ret {
    Ok(cx.data().services.metrics.record(id as u32, value)?)
}

/// `proxy_get_metric(id, *u64)`.
pub(super) fn get<C: HostContext<Data = HostState>>(cx: &mut C, id: i32, out: i32) -> Ret {
    let value = cx.data().services.metrics.get(id as u32)?;
    Ok(cx.write_u64(out as u32, value)?)
}
