// `noop`: the latency floor (contract: plugins/rust/README.md). vm_start and
// configure succeed; every HTTP callback continues without a host call.
// Unlike an SDK plugin it keeps no per-context state at all, so what a
// request costs with it is the host's bare per-callback overhead.

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {
constexpr uint32_t kContinue = static_cast<uint32_t>(Action::Continue);
}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t, uint32_t) {}

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t, uint32_t, uint32_t) { return kContinue; }
PROXY_WASM_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t, uint32_t, uint32_t) { return kContinue; }
PROXY_WASM_EXPORT(proxy_on_request_trailers)
uint32_t proxy_on_request_trailers(uint32_t, uint32_t) { return kContinue; }
PROXY_WASM_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t, uint32_t, uint32_t) { return kContinue; }
PROXY_WASM_EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t, uint32_t, uint32_t) { return kContinue; }
PROXY_WASM_EXPORT(proxy_on_response_trailers)
uint32_t proxy_on_response_trailers(uint32_t, uint32_t) { return kContinue; }

PROXY_WASM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t) {}
PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t) {}
