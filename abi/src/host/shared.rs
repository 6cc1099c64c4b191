//! Shared data and shared queues.

use super::{Ret, give, over_limit, put_u32, read, read_string};
use crate::limits::Limit;
use crate::state::HostState;
use crate::types::Status;
use polyhost_engine_core::HostContext;
use std::sync::Arc;

/// `proxy_get_shared_data(key, **value, *len, *cas)`.
pub(super) fn get_data<C: HostContext<Data = HostState>>(
    cx: &mut C,
    kp: i32,
    kl: i32,
    pp: i32,
    p: i32,
    pcas: i32,
) -> Ret {
    let key = read(cx, kp, kl)?;
    let state = cx.data();
    let (value, cas) = state
        .services
        .shared_data
        .get(&state.plugin.vm_id, &key)
        .ok_or(Status::NotFound)?;
    give(cx, &value, pp, p)?;
    put_u32(cx, pcas, cas)
}

/// `proxy_set_shared_data(key, value, cas)`.
pub(super) fn set_data<C: HostContext<Data = HostState>>(
    cx: &mut C,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    cas: i32,
) -> Ret {
    let key = read(cx, kp, kl)?;
    let value = read(cx, vp, vl)?;
    let state = cx.data_mut();
    match state
        .services
        .shared_data
        .set(&state.plugin.vm_id, &key, &value, cas as u32)
    {
        // The store is process-wide and bounds itself; its refusal is
        // reported as a limit.
        Err(Status::BadArgument) => {
            let detail = format!(
                "shared data of {} bytes did not fit in the store",
                key.len() + value.len()
            );
            Err(over_limit(state, Limit::SharedData, detail))
        }
        other => Ok(other?),
    }
}

/// `proxy_register_shared_queue(name, *id)`: the current root context owns
/// the queue and gets `proxy_on_queue_ready` for it.
pub(super) fn register_queue<C: HostContext<Data = HostState>>(
    cx: &mut C,
    np: i32,
    nl: i32,
    pid: i32,
) -> Ret {
    let name = read_string(cx, np, nl)?;
    let state = cx.data();
    let ready = Arc::clone(&state.root().ready_queues);
    let id = state.services.queues.register(
        &state.plugin.vm_id,
        &name,
        Arc::new(move |id| ready.push(id)),
    );
    put_u32(cx, pid, id)
}

/// `proxy_resolve_shared_queue(vm_id, name, *id)`.
pub(super) fn resolve_queue<C: HostContext<Data = HostState>>(
    cx: &mut C,
    vp: i32,
    vl: i32,
    np: i32,
    nl: i32,
    pid: i32,
) -> Ret {
    let vm_id = read_string(cx, vp, vl)?;
    let name = read_string(cx, np, nl)?;
    let id = cx
        .data()
        .services
        .queues
        .resolve(&vm_id, &name)
        .ok_or(Status::NotFound)?;
    put_u32(cx, pid, id)
}

/// `proxy_enqueue_shared_queue(id, ptr, len)`.
pub(super) fn enqueue<C: HostContext<Data = HostState>>(
    cx: &mut C,
    id: i32,
    p: i32,
    n: i32,
) -> Ret {
    let data = read(cx, p, n)?;
    let state = cx.data_mut();
    match state.services.queues.enqueue(id as u32, &data) {
        // The registry is process-wide and bounds itself; its refusal is
        // reported as a limit.
        Err(Status::BadArgument) => {
            let detail = format!(
                "a queue message of {} bytes did not fit in the queues",
                data.len()
            );
            Err(over_limit(state, Limit::SharedQueue, detail))
        }
        other => Ok(other?),
    }
}

/// `proxy_dequeue_shared_queue(id, **ptr, *len)`; `Empty` when nothing is
/// queued.
pub(super) fn dequeue<C: HostContext<Data = HostState>>(
    cx: &mut C,
    id: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let item = cx.data().services.queues.dequeue(id as u32)?;
    give(cx, &item, pp, p)
}
