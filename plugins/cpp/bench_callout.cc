// `bench_callout`: the callout workload of the latency comparison (contract:
// plugins/rust/README.md). Request headers dispatch GET / to cluster
// `bench-cluster` (authority `bench`, no body, no trailers, 1000 ms timeout)
// and pause; the callout's answer adds the request header
// `x-callout-status: <callout :status, or none>` and resumes the request. A
// refused dispatch leaves nothing to wait for: the request continues.

#include <unordered_map>

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {

// token -> context that made the callout. Built once: the request never
// changes.
std::unordered_map<uint32_t, uint32_t> g_calls;
const std::string g_headers =
    serialize_pairs({{":method", "GET"}, {":path", "/"}, {":authority", "bench"}});
const std::string g_trailers = serialize_pairs({});

}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t, uint32_t) {
  std::string_view upstream = "bench-cluster";
  uint32_t token = 0;
  Status status = proxy_http_call(upstream.data(), upstream.size(), g_headers.data(), g_headers.size(),
                                  nullptr, 0, g_trailers.data(), g_trailers.size(), 1000, &token);
  if (status != Status::Ok) return static_cast<uint32_t>(Action::Continue);
  g_calls[token] = id;
  return static_cast<uint32_t>(Action::Pause);
}

// Routed by token (the context id argument is the root context's in the
// reference host).
PROXY_WASM_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t, uint32_t token, uint32_t, uint32_t, uint32_t) {
  auto it = g_calls.find(token);
  if (it == g_calls.end()) PROXY_WASM_PANIC("invalid token_id");
  uint32_t id = it->second;
  g_calls.erase(it);
  Status status = proxy_set_effective_context(id);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("set_effective_context: ") + status_name(status));
  auto callout_status = get_header(MapType::HttpCallResponseHeaders, ":status");
  add_header(MapType::RequestHeaders, "x-callout-status", callout_status ? utf8_lossy(*callout_status) : "none");
  proxy_continue_stream(StreamType::HttpRequest);
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {
  // A request that ends before its callout answers: forget the token.
  for (auto it = g_calls.begin(); it != g_calls.end();) {
    it = it->second == id ? g_calls.erase(it) : std::next(it);
  }
}
