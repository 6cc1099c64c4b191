// `bad_config`: always rejects its configuration (contract:
// plugins/rust/README.md). vm_start succeeds; configure logs an error and
// returns false, so a host must refuse to serve with it. HTTP traffic, if a
// host ignored the false, passes through (no HTTP callbacks are exported).

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) {
  log(LogLevel::Error, "bad_config: rejecting configuration");
  return 0;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
