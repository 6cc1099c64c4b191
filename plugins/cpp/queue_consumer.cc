// `queue_consumer`: the receiving half of the shared-queue pair (contract:
// plugins/rust/README.md). Run it with vm_id `queue-vm`. Registers the queue
// "events" at VM start and drains it whenever the host signals it, logging
// and counting each item. HTTP traffic passes through (no HTTP callbacks are
// exported, which the ABI reads as "continue").

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {
uint32_t g_items;  // id of the consumer_items counter
}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
  std::string_view metric = "consumer_items", queue = "events";
  Status status = proxy_define_metric(MetricType::Counter, metric.data(), metric.size(), &g_items);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("define_metric: ") + status_name(status));
  uint32_t id = 0;
  status = proxy_register_shared_queue(queue.data(), queue.size(), &id);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("register_shared_queue: ") + status_name(status));
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t, uint32_t queue) {
  // Drain everything: readiness signals may be coalesced by the host.
  while (true) {
    char* ptr = nullptr;
    size_t size = 0;
    if (proxy_dequeue_shared_queue(queue, &ptr, &size) != Status::Ok) break;
    HostBuffer item(ptr, size);
    log(LogLevel::Info, "consumer: " + utf8_lossy(item.view()));
    proxy_increment_metric(g_items, 1);
  }
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
