// `queue_producer`: the sending half of the shared-queue pair (contract:
// plugins/rust/README.md). For every request it resolves the queue "events"
// of vm_id "queue-vm", enqueues the request's :path and reports the outcome
// in the request header `x-enqueued`.

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t, uint32_t, uint32_t) {
  std::string path = get_header(MapType::RequestHeaders, ":path").value_or("");
  // Resolved per request, so the producer copes with the consumer starting
  // after it.
  std::string_view vm_id = "queue-vm", name = "events";
  uint32_t queue = 0;
  bool enqueued =
      proxy_resolve_shared_queue(vm_id.data(), vm_id.size(), name.data(), name.size(), &queue) == Status::Ok &&
      proxy_enqueue_shared_queue(queue, path.data(), path.size()) == Status::Ok;
  add_header(MapType::RequestHeaders, "x-enqueued", enqueued ? "yes" : "no");
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
