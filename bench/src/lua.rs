//! The Lua baseline: each workload as a Lua filter running in LuaJIT
//! (embedded with `mlua`), the comparison gateways such as OpenResty,
//! Kong and Higress make against Wasm plugins.
//!
//! Lua reaches the request through host functions over the same
//! [`HeaderMap`] and body buffer the Wasm host uses (`host.add_header`,
//! `host.get_body`, `host.http_call`, ...), one Lua call per host operation,
//! which is how a Lua filter API is usually exposed to scripts.

use crate::workload::{Fixture, Served, Workload};
use mlua::{Function, Lua, Table};
use polyhost::HeaderMap;
use polyhost::services::{CalloutDispatcher, CalloutQueue, CalloutRequest, HttpCallout};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The filter for each workload. Phases a workload does not use are left
/// undefined, so the host skips them as it skips callbacks a plugin does
/// not export.
fn script(workload: Workload) -> &'static str {
    match workload {
        Workload::Noop => {
            r#"
function on_request_headers() end
function on_response_headers() end
"#
        }
        Workload::Headers => {
            r#"
local add, get, remove = host.add_header, host.get_header, host.remove_header
function on_request_headers()
  for i = 0, 19 do add("fake_key_" .. i, "fake_value_" .. i) end
  for i = 0, 19 do local _ = get("fake_key_" .. i) end
  for i = 0, 19 do remove("fake_key_" .. i) end
end
function on_response_headers() end
"#
        }
        Workload::Body => {
            r#"
-- A plain-text find loop rather than string.gsub: gsub runs Lua's pattern
-- matcher at every byte and is several times slower here, and a Lua author
-- tuning a filter would write this.
local find, sub, concat = string.find, string.sub, table.concat
function on_request_headers() end
function on_request_body()
  local body = host.get_body()
  local parts, n, pos = {}, 0, 1
  while true do
    local s, e = find(body, "needle", pos, true)
    if not s then break end
    parts[n + 1], parts[n + 2], n = sub(body, pos, s - 1), "NEEDLE", n + 2
    pos = e + 1
  end
  parts[n + 1] = sub(body, pos)
  host.set_body(concat(parts, "", 1, n + 1))
end
function on_response_headers() end
"#
        }
        Workload::Callout => {
            r#"
local callout_headers = {{":method", "GET"}, {":path", "/"}, {":authority", "bench"}}
function on_request_headers()
  host.http_call("bench-cluster", callout_headers, 1000)
end
function on_http_call_response(token)
  host.add_header("x-callout-status", host.callout_header(":status") or "none")
  host.resume()
end
function on_response_headers() end
"#
        }
    }
}

/// What the host functions work on during one request.
#[derive(Default)]
struct Request {
    headers: HeaderMap,
    body: Vec<u8>,
    callout_response: HeaderMap,
    resumed: bool,
    next_token: u32,
}

/// A LuaJIT state with one workload's filter loaded.
pub struct LuaBench {
    workload: Workload,
    fixture: Arc<Fixture>,
    request: Rc<RefCell<Request>>,
    callouts: Arc<CalloutQueue>,
    on_request_headers: Function,
    on_request_body: Option<Function>,
    on_http_call_response: Option<Function>,
    on_response_headers: Function,
    // Owns the state the functions above live in.
    _lua: Lua,
}

fn lua_err(e: mlua::Error) -> String {
    format!("lua: {e}")
}

impl LuaBench {
    /// Creates a LuaJIT state, registers the host functions and loads the
    /// filter for `workload`.
    ///
    /// # Errors
    /// A Lua error, as text.
    pub fn new(workload: Workload, fixture: Arc<Fixture>) -> Result<Self, String> {
        let lua = Lua::new();
        let request = Rc::new(RefCell::new(Request {
            next_token: 1,
            ..Request::default()
        }));
        let callouts = Arc::new(CalloutQueue::default());
        let host = host_table(&lua, &request, &callouts).map_err(lua_err)?;
        lua.globals().set("host", host).map_err(lua_err)?;
        lua.load(script(workload))
            .set_name(format!("{}.lua", workload.id()))
            .exec()
            .map_err(lua_err)?;
        let globals = lua.globals();
        Ok(LuaBench {
            workload,
            fixture,
            on_request_headers: globals.get("on_request_headers").map_err(lua_err)?,
            on_request_body: globals.get("on_request_body").map_err(lua_err)?,
            on_http_call_response: globals.get("on_http_call_response").map_err(lua_err)?,
            on_response_headers: globals.get("on_response_headers").map_err(lua_err)?,
            request,
            callouts,
            _lua: lua,
        })
    }

    /// Serves one request: request headers (then the body, or the callout's
    /// answer), then response headers.
    ///
    /// # Errors
    /// A Lua error, as text.
    pub fn serve(&mut self) -> Result<Served, String> {
        let fixture = &*self.fixture;
        self.request.borrow_mut().headers = fixture.request_headers.clone();
        self.on_request_headers.call::<()>(()).map_err(lua_err)?;
        let mut served = Served::default();
        if let Some(f) = &self.on_request_body
            && self.workload.has_body()
        {
            self.request.borrow_mut().body = fixture.body.clone();
            f.call::<()>(()).map_err(lua_err)?;
            served.request_body = std::mem::take(&mut self.request.borrow_mut().body);
        }
        if let Some(f) = &self.on_http_call_response {
            for call in self.callouts.take() {
                let CalloutRequest::Http(call) = call else {
                    continue;
                };
                served.callouts += 1;
                self.request.borrow_mut().callout_response = fixture.callout_response.clone();
                f.call::<()>(call.token).map_err(lua_err)?;
            }
        }
        // Lua sees the response headers through the same map; the filters
        // here leave them alone.
        let request_headers = {
            let mut r = self.request.borrow_mut();
            served.resumed = std::mem::take(&mut r.resumed);
            std::mem::replace(&mut r.headers, fixture.response_headers.clone())
        };
        self.on_response_headers.call::<()>(()).map_err(lua_err)?;
        served.request_headers = request_headers;
        served.response_headers = std::mem::take(&mut self.request.borrow_mut().headers);
        Ok(served)
    }

    /// Serves one request and checks the result against the workload's
    /// contract.
    ///
    /// # Errors
    /// What went wrong, as a sentence for the report.
    pub fn check(&mut self) -> Result<(), String> {
        for _ in 0..2 {
            let served = self.serve()?;
            self.workload.check(&self.fixture, &served)?;
        }
        Ok(())
    }
}

/// The version of the embedded LuaJIT (`jit.version`).
pub fn luajit_version() -> String {
    Lua::new()
        .load("return jit and jit.version or _VERSION")
        .eval::<String>()
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// The `host` table: the filter API, each function a Rust closure over the
/// current request.
fn host_table(
    lua: &Lua,
    request: &Rc<RefCell<Request>>,
    callouts: &Arc<CalloutQueue>,
) -> mlua::Result<Table> {
    let host = lua.create_table()?;
    let r = request.clone();
    host.set(
        "add_header",
        lua.create_function(move |_, (k, v): (mlua::String, mlua::String)| {
            r.borrow_mut().headers.add(&*k.as_bytes(), &*v.as_bytes());
            Ok(())
        })?,
    )?;
    let r = request.clone();
    host.set(
        "get_header",
        lua.create_function(move |lua, k: mlua::String| {
            match r.borrow().headers.get(&*k.as_bytes()) {
                Some(v) => lua.create_string(v).map(Some),
                None => Ok(None),
            }
        })?,
    )?;
    let r = request.clone();
    host.set(
        "remove_header",
        lua.create_function(move |_, k: mlua::String| {
            r.borrow_mut().headers.remove(&*k.as_bytes());
            Ok(())
        })?,
    )?;
    let r = request.clone();
    host.set(
        "get_body",
        lua.create_function(move |lua, ()| lua.create_string(&r.borrow().body))?,
    )?;
    let r = request.clone();
    host.set(
        "set_body",
        lua.create_function(move |_, body: mlua::String| {
            let mut r = r.borrow_mut();
            r.body.clear();
            r.body.extend_from_slice(&body.as_bytes());
            Ok(())
        })?,
    )?;
    let r = request.clone();
    host.set(
        "callout_header",
        lua.create_function(move |lua, k: mlua::String| {
            match r.borrow().callout_response.get(&*k.as_bytes()) {
                Some(v) => lua.create_string(v).map(Some),
                None => Ok(None),
            }
        })?,
    )?;
    let r = request.clone();
    host.set(
        "resume",
        lua.create_function(move |_, ()| {
            r.borrow_mut().resumed = true;
            Ok(())
        })?,
    )?;
    let r = request.clone();
    let queue = callouts.clone();
    let plugin: Arc<str> = "lua".into();
    host.set(
        "http_call",
        lua.create_function(move |_, (upstream, pairs, timeout): (String, Table, u64)| {
            let mut headers = HeaderMap::new();
            for pair in pairs.sequence_values::<Table>() {
                let pair = pair?;
                let k: mlua::String = pair.get(1)?;
                let v: mlua::String = pair.get(2)?;
                headers.add(&*k.as_bytes(), &*v.as_bytes());
            }
            let token = {
                let mut r = r.borrow_mut();
                let t = r.next_token;
                r.next_token = t.wrapping_add(1);
                t
            };
            let call = CalloutRequest::Http(HttpCallout {
                plugin: plugin.clone(),
                token,
                upstream,
                headers,
                body: Vec::new(),
                trailers: HeaderMap::new(),
                timeout: Duration::from_millis(timeout),
            });
            queue
                .dispatch(call)
                .map_err(|s| mlua::Error::runtime(format!("http_call: {s:?}")))?;
            Ok(token)
        })?,
    )?;
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_passes_its_check() {
        let fixture = Arc::new(Fixture::default());
        for w in Workload::ALL {
            let mut bench = LuaBench::new(w, fixture.clone()).unwrap();
            assert_eq!(bench.check(), Ok(()), "{w:?}");
        }
    }
}
