// `bench_headers`: the 60-header-operation workload used in gateway latency
// comparisons (contract: plugins/rust/README.md). In on_request_headers: add
// `fake_key_<i>: fake_value_<i>` for i in 0..20, read each back, then remove
// each. Exactly 60 host calls; the request leaves with the headers it came
// with.

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {
constexpr int kN = 20;
}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }
PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t, uint32_t, uint32_t) {
  // Names are formatted per request on purpose: the workload includes the
  // guest-side string work of a typical plugin.
  for (int i = 0; i < kN; i++) {
    add_header(MapType::RequestHeaders, "fake_key_" + std::to_string(i), "fake_value_" + std::to_string(i));
  }
  for (int i = 0; i < kN; i++) {
    get_header(MapType::RequestHeaders, "fake_key_" + std::to_string(i));
  }
  for (int i = 0; i < kN; i++) {
    remove_header(MapType::RequestHeaders, "fake_key_" + std::to_string(i));
  }
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
