// `tcp_upper`: a TCP (stream) filter (contract: plugins/rust/README.md,
// `tcp_upper`). Upper-cases ASCII flowing downstream -> upstream, prefixes
// every upstream -> downstream chunk with "> ", logs connection lifecycle
// events and counts connections.

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {

// Id of the tcp_connections counter, once defined.
std::optional<uint32_t> g_connections;

uint32_t connections() {
  // define_metric is idempotent per name; defining here only covers a host
  // that skipped proxy_on_vm_start.
  if (!g_connections) {
    std::string_view name = "tcp_connections";
    uint32_t id = 0;
    Status status = proxy_define_metric(MetricType::Counter, name.data(), name.size(), &id);
    if (status != Status::Ok) PROXY_WASM_PANIC(std::string("define_metric: ") + status_name(status));
    g_connections = id;
  }
  return *g_connections;
}

const char* peer_name(uint32_t peer) {
  switch (static_cast<PeerType>(peer)) {
    case PeerType::Local: return "Local";
    case PeerType::Remote: return "Remote";
    default: return "Unknown";
  }
}

}  // namespace

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
  connections();
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_new_connection) uint32_t proxy_on_new_connection(uint32_t) {
  log(LogLevel::Info, "tcp: new connection");
  proxy_increment_metric(connections(), 1);
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_downstream_data)
uint32_t proxy_on_downstream_data(uint32_t, uint32_t size, uint32_t) {
  if (size > 0) {
    auto data = get_buffer(BufferType::DownstreamData, 0, size);
    for (char& c : data.value) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    set_buffer(BufferType::DownstreamData, 0, size, data.value);
  }
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_upstream_data)
uint32_t proxy_on_upstream_data(uint32_t, uint32_t size, uint32_t) {
  // An empty end-of-stream notification carries no data to mark.
  if (size > 0) set_buffer(BufferType::UpstreamData, 0, 0, "> ");
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_downstream_connection_close)
void proxy_on_downstream_connection_close(uint32_t, uint32_t peer) {
  log(LogLevel::Info, std::string("tcp: downstream closed by ") + peer_name(peer));
}

PROXY_WASM_EXPORT(proxy_on_upstream_connection_close)
void proxy_on_upstream_connection_close(uint32_t, uint32_t peer) {
  log(LogLevel::Info, std::string("tcp: upstream closed by ") + peer_name(peer));
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }
