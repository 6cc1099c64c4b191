//! Header map calls.

use super::{Ret, give, put_u32, read};
use crate::headers::{HeaderMap, MAX_MAP_PAIRS};
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

/// Maps plugins may change: the current stream's headers and trailers.
fn map_mut(state: &mut HostState, t: i32) -> Result<&mut HeaderMap, Status> {
    let t = MapType::from_raw(t).ok_or(Status::BadArgument)?;
    state
        .stream_mut()
        .ok_or(Status::NotFound)?
        .map_mut(t)
        .ok_or(Status::BadArgument)
}

fn map_ref(state: &HostState, t: i32) -> Result<&HeaderMap, Status> {
    let t = MapType::from_raw(t).ok_or(Status::BadArgument)?;
    map(state, t).ok_or(Status::NotFound)
}

/// `proxy_get_header_map_size(type, *size)`: the serialized size in bytes,
/// as Envoy reports it.
pub(super) fn get_size<C: HostContext<Data = HostState>>(cx: &mut C, t: i32, p: i32) -> Ret {
    let size = map_ref(cx.data(), t)?.serialize().len() as u32;
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
    let bytes = read(cx, ptr, len)?;
    let new = HeaderMap::deserialize(&bytes)?;
    *map_mut(cx.data_mut(), t)? = new;
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
    let key = read(cx, kp, kl)?;
    let value = map_ref(cx.data(), t)?.get(&key).map(<[u8]>::to_vec);
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
    let key = read(cx, kp, kl)?;
    let value = read(cx, vp, vl)?;
    let map = map_mut(cx.data_mut(), t)?;
    if map.len() >= MAX_MAP_PAIRS {
        return Err(Status::BadArgument.into());
    }
    map.add(key, value);
    Ok(())
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
    let key = read(cx, kp, kl)?;
    let value = read(cx, vp, vl)?;
    let map = map_mut(cx.data_mut(), t)?;
    if map.get(&key).is_none() && map.len() >= MAX_MAP_PAIRS {
        return Err(Status::BadArgument.into());
    }
    map.replace(key, value);
    Ok(())
}

/// `proxy_remove_header_map_value(type, key)`.
pub(super) fn remove_value<C: HostContext<Data = HostState>>(
    cx: &mut C,
    t: i32,
    kp: i32,
    kl: i32,
) -> Ret {
    let key = read(cx, kp, kl)?;
    map_mut(cx.data_mut(), t)?.remove(key);
    Ok(())
}
