// `bench_body`: the body workload of the latency comparison (contract:
// plugins/rust/README.md). Request headers continue; the request body is
// buffered (Pause until end_of_stream), then read whole, every `needle`
// replaced by `NEEDLE` (byte-wise), and written back with
// proxy_set_buffer_bytes(HttpRequestBody, 0, N, ...).

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t, uint32_t size, uint32_t end_of_stream) {
  if (!end_of_stream) return static_cast<uint32_t>(Action::Pause);
  auto body = get_buffer(BufferType::HttpRequestBody, 0, size);
  // Same length in and out, so the rewrite is in place.
  std::string& bytes = body.value;
  constexpr std::string_view kNeedle = "needle";
  for (size_t at = bytes.find(kNeedle); at != std::string::npos; at = bytes.find(kNeedle, at + kNeedle.size())) {
    bytes.replace(at, kNeedle.size(), "NEEDLE");
  }
  set_buffer(BufferType::HttpRequestBody, 0, size, bytes);
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
