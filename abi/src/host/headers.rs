//! Header map calls.
//!
//! Every route by which a plugin changes a map (add, replace, set pairs)
//! checks, before copying the guest's bytes, the reference host's map
//! limits ([`MAX_MAP_PAIRS`], [`MAX_SERIALIZED_MAP_BYTES`]), the longest
//! value ([`HostLimits::max_header_value_bytes`]) and the VM's budget
//! ([`HostLimits::max_vm_bytes`]); each is an integer compare against
//! sizes the map and the budget keep.
//!
//! [`HostLimits::max_header_value_bytes`]: crate::HostLimits::max_header_value_bytes
//! [`HostLimits::max_vm_bytes`]: crate::HostLimits::max_vm_bytes

use super::{Fail, Ret, ShortBytes, give, in_bounds, over_limit, put_u32, read};
use crate::headers::{HeaderMap, MAX_MAP_PAIRS, MAX_SERIALIZED_MAP_BYTES, entry_bytes};
use crate::limits::{Budget, Limit, StreamCharge};
use crate::state::HostState;
use crate::types::{AbiVersion, MapType, Status};
use polyhost_engine_core::HostContext;

fn map(state: &HostState, t: MapType) -> Option<&HeaderMap> {
    match t {
        MapType::GrpcReceiveInitialMetadata => Some(&state.scratch.grpc_initial),
        MapType::GrpcReceiveTrailingMetadata => Some(&state.scratch.grpc_trailing),
        MapType::HttpCallResponseHeaders => Some(&state.scratch.http_headers),
        MapType::HttpCallResponseTrailers => Some(&state.scratch.http_trailers),
        _ => state.stream()?.map(t),
    }
}

/// Refuses a value over [`HostLimits::max_header_value_bytes`], before it
/// is read.
///
/// [`HostLimits::max_header_value_bytes`]: crate::HostLimits::max_header_value_bytes
pub(super) fn check_value_len(state: &mut HostState, len: usize) -> Result<(), Fail> {
    let max = state.budget.limits.max_header_value_bytes;
    if len > max {
        return Err(over_limit(
            state,
            Limit::HeaderValue,
            format!("a header value of {len} bytes (the most is {max})"),
        ));
    }
    Ok(())
}

/// The current stream's map `t` (the maps plugins may change: headers and
/// trailers), its charge and the VM's budget, from one lookup. An unknown
/// type is `BadArgument`, no current stream `NotFound`.
fn stream_map(
    state: &mut HostState,
    t: i32,
) -> Result<(&mut HeaderMap, &mut StreamCharge, &mut Budget), Status> {
    let t = MapType::from_raw(t).ok_or(Status::BadArgument)?;
    let HostState {
        streams,
        effective,
        budget,
        ..
    } = state;
    let stream = streams.get_mut(effective).ok_or(Status::NotFound)?;
    let (map, charge) = stream.map_and_charge(t).ok_or(Status::BadArgument)?;
    Ok((map, charge, budget))
}

/// Refuses growing the VM's holdings by `more` bytes when the budget has
/// no room.
fn check_budget(state: &mut HostState, more: usize) -> Ret {
    if state.budget.fits(more) {
        return Ok(());
    }
    let detail = format!(
        "a header map growing by {more} bytes, with {} of the VM's {} bytes held",
        state.budget.held(),
        state.budget.limits.max_vm_bytes
    );
    Err(over_limit(state, Limit::VmBytes, detail))
}

/// Refuses a map change over the reference host's map limits.
fn map_full(state: &mut HostState, pairs: usize, bytes: usize) -> Fail {
    over_limit(
        state,
        Limit::HeaderMap,
        format!(
            "a header map of {pairs} pairs and {bytes} serialized bytes (the most is \
             {MAX_MAP_PAIRS} pairs and {MAX_SERIALIZED_MAP_BYTES} bytes)"
        ),
    )
}

fn map_ref(state: &HostState, t: i32) -> Result<&HeaderMap, Status> {
    let t = MapType::from_raw(t).ok_or(Status::BadArgument)?;
    map(state, t).ok_or(Status::NotFound)
}

/// `proxy_get_header_map_size(type, *size)`: the serialized size in bytes,
/// as Envoy reports it.
pub(super) fn get_size<C: HostContext<Data = HostState>>(cx: &mut C, t: i32, p: i32) -> Ret {
    let size = map_ref(cx.data(), t)?.serialized_len() as u32;
    put_u32(cx, p, size)
}

/// `proxy_get_header_map_pairs(type, **ptr, *len)`.
pub(super) fn get_pairs<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let bytes = map_ref(cx.data(), t)?.serialize();
    give(cx, &bytes, pp, p)
}

/// `proxy_set_header_map_pairs(type, ptr, len)`: replaces the whole map.
pub(super) fn set_pairs<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    ptr: i32,
    len: i32,
) -> Ret {
    in_bounds(cx, &[(ptr, len)])?;
    let state = cx.data_mut();
    let old = stream_map(state, t)?.0.serialized_len();
    let len = len as u32 as usize;
    if len > MAX_SERIALIZED_MAP_BYTES {
        return Err(map_full(state, 0, len));
    }
    check_budget(state, len.saturating_sub(old))?;
    let bytes = read(cx, ptr, len as i32)?;
    let state = cx.data_mut();
    let new = match HeaderMap::deserialize(&bytes) {
        // Only the size limits answer BadArgument.
        Err(Status::BadArgument) => return Err(map_full(state, MAX_MAP_PAIRS + 1, len)),
        other => other?,
    };
    check_value_len(state, new.longest_value())?;
    let (map, charge, budget) = stream_map(state, t)?;
    // Within the check above: the kept size is the serialized length.
    budget.resize_stream(charge, old, new.serialized_len());
    *map = new;
    Ok(())
}

/// `proxy_get_header_map_value(type, key, **ptr, *len)`.
pub(super) fn get_value<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    kp: i32,
    kl: i32,
    pp: i32,
    p: i32,
) -> Ret {
    // The key is looked up where it lies in guest memory. The value is
    // copied out (on the stack when short) because handing it to the guest
    // runs the guest's allocator, which may call back into the host.
    let value = cx.lend([(kp as u32, kl as u32)], |[key], state| {
        Ok::<_, Status>(map_ref(state, t)?.get(key).map(ShortBytes::from_slice))
    })??;
    match value {
        Some(v) => give(cx, &v, pp, p),
        // 0.1.0 hosts answered a missing header with an empty value.
        None if cx.data().plugin.abi == AbiVersion::V0_1_0 => {
            put_u32(cx, pp, 0)?;
            put_u32(cx, p, 0)
        }
        None => Err(Status::NotFound.into()),
    }
}

/// `proxy_add_header_map_value(type, key, value)`.
pub(super) fn add_value<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Ret {
    in_bounds(cx, &[(kp, kl), (vp, vl)])?;
    let (klen, vlen) = (kl as u32 as usize, vl as u32 as usize);
    let state = cx.data_mut();
    let map = stream_map(state, t)?.0;
    let (old, pairs, fits) = (
        map.serialized_len(),
        map.len() + 1,
        map.fits(0, 0, klen, vlen),
    );
    let entry = entry_bytes(klen, vlen);
    check_value_len(state, vlen)?;
    if !fits {
        return Err(map_full(state, pairs, old + entry));
    }
    check_budget(state, entry)?;
    // Copied once, from guest memory straight into the map's buffer.
    cx.lend(
        [(kp as u32, kl as u32), (vp as u32, vl as u32)],
        |[key, value], state| {
            let (map, charge, budget) = stream_map(state, t)?;
            budget.resize_stream(charge, old, old + entry);
            map.add(key, value);
            Ok(())
        },
    )?
}

/// `proxy_replace_header_map_value(type, key, value)`.
pub(super) fn replace_value<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Ret {
    in_bounds(cx, &[(kp, kl), (vp, vl)])?;
    let (klen, vlen) = (kl as u32 as usize, vl as u32 as usize);
    if klen > MAX_SERIALIZED_MAP_BYTES {
        return Err(map_full(cx.data_mut(), 1, entry_bytes(klen, vlen)));
    }
    check_value_len(cx.data_mut(), vlen)?;
    let entry = entry_bytes(klen, vlen);
    cx.lend(
        [(kp as u32, kl as u32), (vp as u32, vl as u32)],
        |[key, value], state| {
            let (map, _, budget) = stream_map(state, t)?;
            let old = map.serialized_len();
            // The common case costs no scan: the map and the budget have
            // room even if nothing of that name is dropped. Otherwise,
            // count what is.
            if !(map.fits(0, 0, klen, vlen) && budget.fits(entry)) {
                let (dropped_pairs, dropped) = map.named(key);
                let new = old - dropped + entry;
                if !map.fits(dropped_pairs, dropped, klen, vlen) {
                    let pairs = map.len() - dropped_pairs + 1;
                    return Err(map_full(state, pairs, new));
                }
                check_budget(state, new.saturating_sub(old))?;
            }
            let (map, charge, budget) = stream_map(state, t)?;
            map.replace(key, value);
            // Within what was checked above.
            budget.resize_stream(charge, old, map.serialized_len());
            Ok(())
        },
    )?
}

/// `proxy_remove_header_map_value(type, key)`.
pub(super) fn remove_value<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    kp: i32,
    kl: i32,
) -> Ret {
    cx.lend([(kp as u32, kl as u32)], |[key], state| {
        let (map, charge, budget) = stream_map(state, t)?;
        let old = map.serialized_len();
        map.remove(key);
        // Shrinking always fits.
        budget.resize_stream(charge, old, map.serialized_len());
        Ok(())
    })?
}
