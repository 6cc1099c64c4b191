//! Properties (Envoy attributes) and foreign functions.

use super::{Ret, give, in_bounds, over_limit, read, read_string};
use crate::limits::Limit;
use crate::state::HostState;
use crate::types::Status;
use polyhost_engine_core::HostContext;

/// Splits a property path into segments. Paths are NUL-separated
/// (`request\0path`); a single dotted segment (`request.path`) is accepted
/// too, since some plugins send that form.
pub(crate) fn split_path(raw: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    if parts.len() == 1 && parts[0].contains(&b'.') {
        return parts[0].split(|b| *b == b'.').collect();
    }
    parts
}

fn int(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// The value the host itself derives for `path`, before asking the
/// embedder's provider.
fn derived(state: &HostState, path: &[&[u8]]) -> Option<Vec<u8>> {
    let plugin = &state.plugin;
    let stream = state.stream();
    let header = |map: &crate::headers::HeaderMap, name: &str| map.get(name).map(<[u8]>::to_vec);
    match path {
        [b"plugin_name"] => Some(plugin.name.as_bytes().to_vec()),
        [b"plugin_root_id"] => Some(plugin.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => Some(plugin.vm_id.as_bytes().to_vec()),
        [b"request", field] => {
            let h = &stream?.request_headers;
            match *field {
                b"path" => header(h, ":path"),
                b"url_path" => h
                    .get(":path")
                    .map(|p| p.split(|b| *b == b'?').next().unwrap_or(p).to_vec()),
                b"query" => h.get(":path").map(|p| {
                    let query = p
                        .iter()
                        .position(|b| *b == b'?')
                        .map_or(&[][..], |at| &p[at + 1..]);
                    query.to_vec()
                }),
                b"host" => header(h, ":authority").or_else(|| header(h, "host")),
                b"scheme" => header(h, ":scheme"),
                b"method" => header(h, ":method"),
                b"referer" => header(h, "referer"),
                b"useragent" => header(h, "user-agent"),
                b"id" => header(h, "x-request-id"),
                b"size" => Some(int(stream?.request_body.len() as i64)),
                _ => None,
            }
        }
        [b"request", b"headers", name] => stream?.request_headers.get(name).map(<[u8]>::to_vec),
        [b"response", b"headers", name] => stream?.response_headers.get(name).map(<[u8]>::to_vec),
        [b"response", b"trailers", name] => stream?.response_trailers.get(name).map(<[u8]>::to_vec),
        [b"response", b"code"] => {
            let s = stream?;
            let code = match &s.local_response {
                Some(local) => i64::from(local.status),
                None => std::str::from_utf8(s.response_headers.get(":status")?)
                    .ok()?
                    .parse()
                    .ok()?,
            };
            Some(int(code))
        }
        [b"response", b"grpc_status"] => {
            let s = stream?;
            let v = s
                .response_trailers
                .get("grpc-status")
                .or_else(|| s.response_headers.get("grpc-status"))?;
            Some(int(std::str::from_utf8(v).ok()?.parse().ok()?))
        }
        [b"response", b"size"] => Some(int(stream?.response_body.len() as i64)),
        _ => None,
    }
}

/// `proxy_get_property(path, **value, *len)`.
pub(super) fn get<C: HostContext<Data = HostState>>(
    cx: &mut C,
    path_ptr: i32,
    path_len: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let raw = read(cx, path_ptr, path_len)?;
    let value = {
        let state = cx.data();
        let path = split_path(&raw);
        let joined = path.join(&b'.');
        state
            .stream()
            .and_then(|s| s.properties.get(&joined).cloned())
            .or_else(|| state.stream()?.provided.as_ref()?.0.get(&path))
            .or_else(|| state.vm_properties.get(&joined).cloned())
            .or_else(|| derived(state, &path))
            .or_else(|| state.services.properties.get(&path))
            .ok_or(Status::NotFound)?
    };
    give(cx, &value, pp, p)
}

/// `proxy_set_property(path, value)`: stored on the current stream (or the
/// VM when no stream is current) and returned by later `get_property` calls.
/// Key and value count against the VM's budget, checked before the value
/// is copied.
pub(super) fn set<C: HostContext<Data = HostState>>(
    cx: &mut C,
    path_ptr: i32,
    path_len: i32,
    vp: i32,
    vl: i32,
) -> Ret {
    let raw = read(cx, path_ptr, path_len)?;
    in_bounds(cx, &[(vp, vl)])?;
    let key = split_path(&raw).join(&b'.');
    if key.is_empty() {
        return Err(Status::BadArgument.into());
    }
    let state = cx.data_mut();
    let HostState {
        streams,
        effective,
        vm_properties,
        budget,
        ..
    } = state;
    let new = key.len() + vl as u32 as usize;
    let stream = streams.get_mut(effective);
    let properties = match &stream {
        Some(stream) => &stream.properties,
        None => &*vm_properties,
    };
    let old = properties.get(&key).map_or(0, |v| key.len() + v.len());
    if new > old && !budget.fits(new - old) {
        let detail = format!(
            "a property of {new} bytes, with {} of the VM's {} bytes held",
            budget.held(),
            budget.limits.max_vm_bytes
        );
        return Err(over_limit(state, Limit::VmBytes, detail));
    }
    let value = read(cx, vp, vl)?;
    let HostState {
        streams,
        effective,
        vm_properties,
        budget,
        ..
    } = cx.data_mut();
    // Checked above; nothing ran in between.
    match streams.get_mut(effective) {
        Some(stream) => {
            budget.resize_stream(&mut stream.charge, old, new);
            stream.properties.insert(key, value);
        }
        None => {
            budget.resize_vm(old, new);
            vm_properties.insert(key, value);
        }
    }
    Ok(())
}

/// `proxy_call_foreign_function(name, args, **result, *len)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn call_foreign<C: HostContext<Data = HostState>>(
    cx: &mut C,
    np: i32,
    nl: i32,
    ap: i32,
    al: i32,
    pp: i32,
    p: i32,
) -> Ret {
    let name = read_string(cx, np, nl)?;
    let args = read(cx, ap, al)?;
    let result = cx.data().services.foreign.call(&name, &args)?;
    give(cx, &result, pp, p)
}
