// `ticker`: exercises the timer (contract: plugins/rust/README.md). Sets a
// 10 ms tick period at VM start; every tick increments the counter
// ticker_ticks and stores the number of ticks seen so far, in decimal, in
// shared data under "ticker/last". HTTP traffic passes through (no HTTP
// callbacks are exported).

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {
uint32_t g_counter;  // id of the ticker_ticks counter
uint64_t g_ticks;    // ticks seen by this root context
}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
  std::string_view name = "ticker_ticks";
  Status status = proxy_define_metric(MetricType::Counter, name.data(), name.size(), &g_counter);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("define_metric: ") + status_name(status));
  status = proxy_set_tick_period_milliseconds(10);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("set_tick_period: ") + status_name(status));
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t) {
  g_ticks++;
  proxy_increment_metric(g_counter, 1);
  // cas 0: unconditional write, the ticker is the only writer.
  std::string_view key = "ticker/last";
  std::string value = std::to_string(g_ticks);
  Status status = proxy_set_shared_data(key.data(), key.size(), value.data(), value.size(), 0);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("set_shared_data: ") + status_name(status));
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
