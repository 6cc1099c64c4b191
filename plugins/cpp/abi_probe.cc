// `abi_probe`: exercises the host functions one at a time (contract:
// plugins/rust/README.md, `abi_probe`). Run it with vm_id `probe-vm`.
//
// The request header `x-case` selects what a request does; results are
// *added* as request headers `x-result-*`, so a result never depends on
// whether the host's replace also inserts missing keys. Where the Rust plugin
// panics on an unexpected status (an `unwrap()` in its SDK), this one panics
// the same way (critical log line, then a trap).

#include <unordered_map>

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {

constexpr std::string_view kVmId = "probe-vm";
constexpr std::string_view kQueueName = "probe-queue";
constexpr std::string_view kSharedKey = "probe/counter";
constexpr uint32_t kCalloutTimeoutMs = 500;

uint32_t define_metric(MetricType type, std::string_view name) {
  uint32_t id = 0;
  Status status = proxy_define_metric(type, name.data(), name.size(), &id);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("define_metric: ") + status_name(status));
  return id;
}

// Metric ids, defined once per VM.
struct Metrics {
  uint32_t requests, gauge, latency, ticks;

  static Metrics define() {
    Metrics m;
    m.requests = define_metric(MetricType::Counter, "probe_requests");
    m.gauge = define_metric(MetricType::Gauge, "probe_gauge");
    m.latency = define_metric(MetricType::Histogram, "probe_latency");
    m.ticks = define_metric(MetricType::Counter, "probe_ticks");
    return m;
  }
};

std::optional<Metrics> g_metrics;

const Metrics& metrics() {
  // define_metric is idempotent per name, so defining here is only a
  // fallback for a host that skipped proxy_on_vm_start.
  if (!g_metrics) g_metrics = Metrics::define();
  return *g_metrics;
}

// Per-request state.
struct Probe {
  std::string kase;     // value of x-case, remembered for later callbacks
  std::string body_op;  // value of x-body-op for the body case
  // gRPC stream state for the grpc-stream case.
  std::string stream_messages;
  std::optional<uint32_t> stream_initial, stream_trailing;
};

std::unordered_map<uint32_t, Probe> g_probes;

// Callouts are answered by token; these remember which request made them
// (the context id the host passes with the answer is not relied on: the
// reference host passes the root context's).
std::unordered_map<uint32_t, uint32_t> g_http_calls, g_grpc_calls, g_grpc_streams;

std::string to_s(uint64_t v) { return std::to_string(v); }

// Results are added, never replaced (see the file comment).
void result(std::string_view name, std::string_view value) {
  add_header(MapType::RequestHeaders, name, value);
}

std::string header_or_empty(std::string_view name) {
  return utf8_lossy(get_header(MapType::RequestHeaders, name).value_or(""));
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Byte-wise, so bodies that are not UTF-8 survive untouched.
std::string replace_all(std::string_view haystack, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(haystack.size());
  size_t i = 0;
  while (i < haystack.size()) {
    if (haystack.substr(i, from.size()) == from) {
      out.append(to);
      i += from.size();
    } else {
      out += haystack[i++];
    }
  }
  return out;
}

// Rust's `str::trim()`: strips White_Space characters (ASCII and the
// multi-byte ones) from both ends of valid UTF-8.
std::string_view trim(std::string_view s) {
  static constexpr std::string_view kSpaces[] = {
      "\t", "\n", "\v", "\f", "\r", " ", "\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80",
      "\xE2\x80\x80", "\xE2\x80\x81", "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84",
      "\xE2\x80\x85", "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89",
      "\xE2\x80\x8A", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F",
      "\xE3\x80\x80"};
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view sp : kSpaces) {
      if (s.size() >= sp.size() && s.substr(0, sp.size()) == sp) {
        s.remove_prefix(sp.size());
        changed = true;
      }
      if (s.size() >= sp.size() && s.substr(s.size() - sp.size()) == sp) {
        s.remove_suffix(sp.size());
        changed = true;
      }
    }
  }
  return s;
}

// `none` when absent or empty, the bytes as UTF-8 (lossy) otherwise.
std::string or_none(const Result<std::string>& r) {
  if (!r.ok() || r.value.empty()) return "none";
  return utf8_lossy(r.value);
}

Result<std::string> get_property(std::string_view path) {
  char* ptr = nullptr;
  size_t size = 0;
  Status status = proxy_get_property(path.data(), path.size(), &ptr, &size);
  if (status != Status::Ok) return {status, {}};
  return {status, HostBuffer(ptr, size).str()};
}

Result<std::string> call_foreign(std::string_view name, std::string_view args) {
  char* ptr = nullptr;
  size_t size = 0;
  Status status = proxy_call_foreign_function(name.data(), name.size(), args.data(), args.size(),
                                              &ptr, &size);
  if (status != Status::Ok) return {status, {}};
  return {status, HostBuffer(ptr, size).str()};
}

struct Shared {
  Status status;
  std::string value;
  uint32_t cas;
};

Shared get_shared(std::string_view key) {
  char* ptr = nullptr;
  size_t size = 0;
  uint32_t cas = 0;
  Status status = proxy_get_shared_data(key.data(), key.size(), &ptr, &size, &cas);
  if (status != Status::Ok) return {status, {}, 0};
  return {status, HostBuffer(ptr, size).str(), cas};
}

Status set_shared(std::string_view key, std::string_view value, uint32_t cas) {
  return proxy_set_shared_data(key.data(), key.size(), value.data(), value.size(), cas);
}

uint32_t dispatch_failed(Status status) {
  send_local_response(503, std::string("dispatch failed: ") + status_name(status), {});
  return static_cast<uint32_t>(Action::Pause);
}

// ---------------------------------------------------------------------------
// Cases run in proxy_on_request_headers.

uint32_t case_log() {
  log(LogLevel::Trace, "probe trace");
  log(LogLevel::Debug, "probe debug");
  log(LogLevel::Info, "probe info");
  log(LogLevel::Warn, "probe warn");
  log(LogLevel::Error, "probe error");
  log(LogLevel::Critical, "probe critical");
  uint32_t level = 0;
  Status status = proxy_get_log_level(&level);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("get_log_level: ") + status_name(status));
  result("x-result-log-level", to_s(level));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_time() {
  uint64_t nanos = 0;
  Status status = proxy_get_current_time_nanoseconds(&nanos);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("get_current_time: ") + status_name(status));
  result("x-result-time", to_s(nanos));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_headers() {
  auto pairs = get_header_pairs(MapType::RequestHeaders);
  if (!pairs.ok()) PROXY_WASM_PANIC(std::string("get_header_map_pairs: ") + status_name(pairs.status));
  std::string count = to_s(pairs.value.size());
  auto nope = get_header(MapType::RequestHeaders, "x-nope");
  std::string missing = nope ? "present:" + utf8_lossy(*nope) : "none";
  // Replace the whole map: every original pair (x-case included), in order,
  // followed by the results gathered so far.
  Pairs map;
  for (const auto& [key, value] : pairs.value) map.emplace_back(key, value);
  map.emplace_back("x-result-count", count);
  map.emplace_back("x-result-missing", missing);
  map.emplace_back("x-result-rewritten", "yes");
  Status set = set_header_pairs(MapType::RequestHeaders, map);
  if (set != Status::Ok) PROXY_WASM_PANIC(std::string("set_header_map_pairs: ") + status_name(set));
  auto after = get_header_pairs(MapType::RequestHeaders);
  result("x-result-size", to_s(after.value.size()));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_bytes_header() {
  // "\xC3\x28" is not valid UTF-8; nothing later in this request reads the
  // whole map.
  replace_header(MapType::RequestHeaders, "x-result-bytes", "\xC3\x28");
  auto back = get_header(MapType::RequestHeaders, "x-result-bytes");
  result("x-result-bytes-hex", back ? hex(*back) : "none");
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_local() {
  std::string path = header_or_empty(":path");
  uint32_t status = 418;
  if (auto xs = get_header(MapType::RequestHeaders, "x-status")) {
    if (auto parsed = parse_u64(*xs, UINT32_MAX)) status = static_cast<uint32_t>(*parsed);
  }
  send_local_response(status, "local:" + path, {{"x-local", "1"}});
  return static_cast<uint32_t>(Action::Pause);
}

uint32_t case_grpc_status() {
  // What the Rust SDK's send_grpc_response does: HTTP 200, the gRPC message
  // as the body, the gRPC status as grpc_status.
  send_local_response(200, "denied", {}, kGrpcPermissionDenied);
  return static_cast<uint32_t>(Action::Pause);
}

uint32_t case_http_call(uint32_t id) {
  std::string headers = serialize_pairs(
      {{":method", "GET"}, {":path", "/check"}, {":authority", "auth"}, {"x-from", "probe"}});
  std::string trailers = serialize_pairs({});
  std::string_view upstream = "auth-cluster", body = "ping";
  uint32_t token = 0;
  Status status = proxy_http_call(upstream.data(), upstream.size(), headers.data(), headers.size(),
                                  body.data(), body.size(), trailers.data(), trailers.size(),
                                  kCalloutTimeoutMs, &token);
  if (status != Status::Ok) return dispatch_failed(status);
  g_http_calls[token] = id;
  return static_cast<uint32_t>(Action::Pause);
}

uint32_t case_grpc_call(uint32_t id) {
  std::string metadata = serialize_pairs({{"x-md", "1"}});
  std::string_view upstream = "grpc-cluster", service = "pkg.Service", method = "Method",
                   message = "req";
  uint32_t token = 0;
  Status status = proxy_grpc_call(upstream.data(), upstream.size(), service.data(), service.size(),
                                  method.data(), method.size(), metadata.data(), metadata.size(),
                                  message.data(), message.size(), kCalloutTimeoutMs, &token);
  if (status != Status::Ok) return dispatch_failed(status);
  g_grpc_calls[token] = id;
  return static_cast<uint32_t>(Action::Pause);
}

// Opens the stream and sends "m1".
Result<uint32_t> open_stream(uint32_t id) {
  std::string metadata = serialize_pairs({});
  std::string_view upstream = "grpc-cluster", service = "pkg.Service", method = "Stream";
  uint32_t token = 0;
  Status status = proxy_grpc_stream(upstream.data(), upstream.size(), service.data(),
                                    service.size(), method.data(), method.size(), metadata.data(),
                                    metadata.size(), &token);
  if (status != Status::Ok) return {status, 0};
  g_grpc_streams[token] = id;
  std::string_view m1 = "m1";
  return {proxy_grpc_send(token, m1.data(), m1.size(), 0), token};
}

uint32_t case_grpc_stream(uint32_t id) {
  auto opened = open_stream(id);
  if (!opened.ok()) return dispatch_failed(opened.status);
  return static_cast<uint32_t>(Action::Pause);
}

// Cancelling is final: no gRPC callback follows, so the request is not
// paused. The second cancel of the same token reports the host's status.
uint32_t case_grpc_cancel(uint32_t id) {
  auto opened = open_stream(id);
  if (!opened.ok()) return dispatch_failed(opened.status);
  auto outcome = [](Status s) { return s == Status::Ok ? std::string("ok") : status_name(s); };
  result("x-result-cancel", outcome(proxy_grpc_cancel(opened.value)));
  result("x-result-cancel-again", outcome(proxy_grpc_cancel(opened.value)));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_shared() {
  Shared got = get_shared(kSharedKey);
  uint64_t current = 0;
  if (got.status == Status::Ok && is_utf8(got.value)) {
    current = parse_u64(got.value).value_or(0);
  }
  std::string next = to_s(current + 1);
  Status set = set_shared(kSharedKey, next, got.cas);
  result("x-result-shared", set == Status::Ok ? next : status_name(set));

  // Make a cas stale on purpose: read the current cas, write the same value
  // with it (which bumps the cas), then write again with the now-outdated cas.
  // Works on the very first request too.
  Shared now = get_shared(kSharedKey);
  set_shared(kSharedKey, next, now.cas);
  Status stale = set_shared(kSharedKey, next, now.cas);
  result("x-result-cas",
         stale == Status::CasMismatch ? std::string("mismatch") : std::string("other:") + status_name(stale));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_queue() {
  std::string path = get_header(MapType::RequestHeaders, ":path").value_or("");
  uint32_t queue = 0;
  Status resolved = proxy_resolve_shared_queue(kVmId.data(), kVmId.size(), kQueueName.data(),
                                               kQueueName.size(), &queue);
  std::string outcome;
  if (resolved == Status::NotFound) {
    outcome = "missing";
  } else if (resolved != Status::Ok) {
    outcome = std::string("error:") + status_name(resolved);
  } else {
    Status enqueued = proxy_enqueue_shared_queue(queue, path.data(), path.size());
    outcome = enqueued == Status::Ok ? std::string("enqueued") : std::string("error:") + status_name(enqueued);
  }
  result("x-result-queue", outcome);
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_metrics() {
  const Metrics& m = metrics();
  for (Status s : {proxy_increment_metric(m.requests, 1), proxy_record_metric(m.gauge, 42),
                   proxy_record_metric(m.latency, 7)}) {
    if (s != Status::Ok) log(LogLevel::Warn, std::string("probe: metric write failed: ") + status_name(s));
  }
  auto read = [](uint32_t metric) {
    uint64_t value = 0;
    Status s = proxy_get_metric(metric, &value);
    return s == Status::Ok ? to_s(value) : std::string(status_name(s));
  };
  result("x-result-counter", read(m.requests));
  result("x-result-gauge", read(m.gauge));
  return static_cast<uint32_t>(Action::Continue);
}

std::string property(std::string_view path) {
  auto r = get_property(path);
  if (r.ok()) return or_none(r);
  if (r.status == Status::NotFound) return "none";
  return std::string("error:") + status_name(r.status);
}

uint32_t case_property() {
  using namespace std::string_view_literals;
  result("x-result-path", property("request\0path"sv));
  result("x-result-plugin", property("plugin_name"));
  // The Rust SDK traps unless the host answers Ok here; so does this plugin.
  std::string_view path = "probe\0prop"sv, value = "v1";
  Status set = proxy_set_property(path.data(), path.size(), value.data(), value.size());
  if (set != Status::Ok) PROXY_WASM_PANIC(std::string("set_property: ") + status_name(set));
  result("x-result-prop", property(path));
  return static_cast<uint32_t>(Action::Continue);
}

uint32_t case_foreign() {
  auto echo = call_foreign("echo", "abc");
  result("x-result-foreign", echo.ok() ? or_none(echo) : std::string("error:") + status_name(echo.status));
  auto missing = call_foreign("nope", {});
  result("x-result-foreign-missing", missing.ok() ? std::string("unexpected-ok") : status_name(missing.status));
  return static_cast<uint32_t>(Action::Continue);
}

// Makes `id` the effective context for a callout answer, as the Rust SDK
// does before calling into the request that made the callout.
void enter(uint32_t id) {
  Status status = proxy_set_effective_context(id);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("set_effective_context: ") + status_name(status));
}

// Unary gRPC answer: status 0 with a message, or a close with a status.
void grpc_call_response(uint32_t status_code, uint32_t size) {
  std::string body = "none";
  if (size > 0) {
    auto r = get_buffer(BufferType::GrpcReceiveBuffer, 0, size);
    if (r.ok()) body = utf8_lossy(r.value);
  }
  result("x-result-grpc-status", to_s(status_code));
  result("x-result-grpc-body", body);
  proxy_continue_stream(StreamType::HttpRequest);
}

Probe* probe(uint32_t id) {
  auto it = g_probes.find(id);
  return it == g_probes.end() ? nullptr : &it->second;
}

}  // namespace

// ---------------------------------------------------------------------------
// Root context.

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t root) {
  if (root != 0) g_probes[id] = Probe{};
}

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
  g_metrics = Metrics::define();
  uint32_t queue = 0;
  Status status = proxy_register_shared_queue(kQueueName.data(), kQueueName.size(), &queue);
  if (status != Status::Ok) PROXY_WASM_PANIC(std::string("register_shared_queue: ") + status_name(status));
  // A VM configuration that is a decimal number turns on the tick timer with
  // that period in milliseconds; anything else leaves it off.
  auto vm_config = get_buffer(BufferType::VmConfiguration, 0, UINT32_MAX);
  if (is_utf8(vm_config.value)) {
    auto period = parse_u64(trim(vm_config.value));
    if (period && *period > 0) proxy_set_tick_period_milliseconds(static_cast<uint32_t>(*period));
  }
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t) {
  if (g_metrics) proxy_increment_metric(g_metrics->ticks, 1);
}

PROXY_WASM_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t, uint32_t queue) {
  // Drain everything: the host may coalesce readiness signals.
  while (true) {
    char* ptr = nullptr;
    size_t size = 0;
    if (proxy_dequeue_shared_queue(queue, &ptr, &size) != Status::Ok) break;
    HostBuffer item(ptr, size);
    log(LogLevel::Info, "probe queue: " + utf8_lossy(item.view()));
  }
}

PROXY_WASM_EXPORT(proxy_on_foreign_function)
void proxy_on_foreign_function(uint32_t, uint32_t function_id, uint32_t size) {
  auto args = get_buffer(BufferType::CallData, 0, size);
  log(LogLevel::Info, "probe foreign: function_id=" + to_s(function_id) + " args=" + utf8_lossy(args.value));
}

// ---------------------------------------------------------------------------
// HTTP stream.

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t, uint32_t) {
  Probe* p = probe(id);
  if (!p) return static_cast<uint32_t>(Action::Continue);
  p->kase = header_or_empty("x-case");
  const std::string& c = p->kase;
  if (c == "log") return case_log();
  if (c == "time") return case_time();
  if (c == "headers") return case_headers();
  if (c == "bytes-header") return case_bytes_header();
  if (c == "local") return case_local();
  if (c == "grpc-status") return case_grpc_status();
  if (c == "body") {
    p->body_op = header_or_empty("x-body-op");
    return static_cast<uint32_t>(Action::Continue);
  }
  if (c == "http-call") return case_http_call(id);
  if (c == "grpc-call") return case_grpc_call(id);
  if (c == "grpc-stream") return case_grpc_stream(id);
  if (c == "grpc-cancel") return case_grpc_cancel(id);
  if (c == "shared") return case_shared();
  if (c == "queue") return case_queue();
  if (c == "metrics") return case_metrics();
  if (c == "property") return case_property();
  if (c == "foreign") return case_foreign();
  if (c == "trap") PROXY_WASM_PANIC("probe trap");
  // "done", "trailers" (acts later) and anything unknown.
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t id, uint32_t size, uint32_t end_of_stream) {
  Probe* p = probe(id);
  if (!p || p->kase != "body") return static_cast<uint32_t>(Action::Continue);
  // Pause until the end so the host buffers the whole body.
  if (!end_of_stream) return static_cast<uint32_t>(Action::Pause);
  if (p->body_op == "replace") {
    auto body = get_buffer(BufferType::HttpRequestBody, 0, size);
    set_buffer(BufferType::HttpRequestBody, 0, size, replace_all(body.value, "foo", "bar"));
  } else if (p->body_op == "prepend") {
    set_buffer(BufferType::HttpRequestBody, 0, 0, "<<");
  } else if (p->body_op == "append") {
    set_buffer(BufferType::HttpRequestBody, size, 0, ">>");
  }
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_request_trailers) uint32_t proxy_on_request_trailers(uint32_t id, uint32_t) {
  Probe* p = probe(id);
  if (p && p->kase == "trailers") add_header(MapType::RequestTrailers, "x-result-trailer", "seen");
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_response_body)
uint32_t proxy_on_response_body(uint32_t id, uint32_t size, uint32_t end_of_stream) {
  // Not buffered: "!" goes after the last chunk the host delivers.
  Probe* p = probe(id);
  if (p && p->kase == "body" && end_of_stream) set_buffer(BufferType::HttpResponseBody, size, 0, "!");
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_response_trailers) uint32_t proxy_on_response_trailers(uint32_t id, uint32_t) {
  Probe* p = probe(id);
  if (p && p->kase == "trailers" && get_header(MapType::ResponseTrailers, "grpc-status")) {
    replace_header(MapType::ResponseTrailers, "grpc-status", "0");
  }
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {
  g_probes.erase(id);
  // Forget callouts the request left unanswered.
  for (auto* calls : {&g_http_calls, &g_grpc_calls, &g_grpc_streams}) {
    for (auto it = calls->begin(); it != calls->end();) {
      it = it->second == id ? calls->erase(it) : std::next(it);
    }
  }
}

// ---------------------------------------------------------------------------
// Callout answers, routed by token.

PROXY_WASM_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t, uint32_t token, uint32_t num_headers, uint32_t body_size,
                                 uint32_t) {
  auto it = g_http_calls.find(token);
  if (it == g_http_calls.end()) PROXY_WASM_PANIC("invalid token_id");
  uint32_t id = it->second;
  g_http_calls.erase(it);
  enter(id);
  // A failed or timed-out callout arrives with no headers at all.
  if (num_headers == 0) {
    send_local_response(503, "callout failed", {});
    return;
  }
  auto status = get_header(MapType::HttpCallResponseHeaders, ":status");
  auto body = get_buffer(BufferType::HttpCallResponseBody, 0, body_size);
  auto auth = get_header(MapType::HttpCallResponseHeaders, "x-auth");
  result("x-result-status", status ? utf8_lossy(*status) : "none");
  result("x-result-body", utf8_lossy(body.value));
  result("x-result-callout-header", auth ? utf8_lossy(*auth) : "none");
  proxy_continue_stream(StreamType::HttpRequest);
}

PROXY_WASM_EXPORT(proxy_on_grpc_receive_initial_metadata)
void proxy_on_grpc_receive_initial_metadata(uint32_t, uint32_t token, uint32_t count) {
  if (auto it = g_grpc_streams.find(token); it != g_grpc_streams.end()) {
    enter(it->second);
    if (Probe* p = probe(it->second)) p->stream_initial = count;
  } else if (g_grpc_calls.count(token)) {
    enter(g_grpc_calls[token]);
  } else {
    log(LogLevel::Trace, "on_grpc_receive_initial_metadata: invalid token_id");
  }
}

PROXY_WASM_EXPORT(proxy_on_grpc_receive)
void proxy_on_grpc_receive(uint32_t, uint32_t token, uint32_t size) {
  if (auto it = g_grpc_streams.find(token); it != g_grpc_streams.end()) {
    enter(it->second);
    auto message = get_buffer(BufferType::GrpcReceiveBuffer, 0, size);
    if (Probe* p = probe(it->second)) p->stream_messages += utf8_lossy(message.value);
  } else if (auto call = g_grpc_calls.find(token); call != g_grpc_calls.end()) {
    // A unary response is final.
    uint32_t id = call->second;
    g_grpc_calls.erase(call);
    enter(id);
    grpc_call_response(0, size);
  } else {
    log(LogLevel::Trace, "on_grpc_receive_initial_metadata: invalid token_id");
  }
}

PROXY_WASM_EXPORT(proxy_on_grpc_receive_trailing_metadata)
void proxy_on_grpc_receive_trailing_metadata(uint32_t, uint32_t token, uint32_t count) {
  if (auto it = g_grpc_streams.find(token); it != g_grpc_streams.end()) {
    enter(it->second);
    if (Probe* p = probe(it->second)) p->stream_trailing = count;
  } else if (g_grpc_calls.count(token)) {
    enter(g_grpc_calls[token]);
  } else {
    log(LogLevel::Trace, "on_grpc_receive_trailing_metadata: invalid token_id");
  }
}

PROXY_WASM_EXPORT(proxy_on_grpc_close)
void proxy_on_grpc_close(uint32_t, uint32_t token, uint32_t status_code) {
  if (auto it = g_grpc_streams.find(token); it != g_grpc_streams.end()) {
    uint32_t id = it->second;
    g_grpc_streams.erase(it);
    enter(id);
    Probe* p = probe(id);
    if (!p || p->kase != "grpc-stream") {
      // Only grpc-stream waits for a close; anything else is a host bug
      // worth seeing in the log (e.g. a close after grpc-cancel).
      log(LogLevel::Warn, "probe: unexpected grpc close token=" + to_s(token) +
                              " status=" + to_s(status_code));
      return;
    }
    auto count = [](const std::optional<uint32_t>& n) { return n ? to_s(*n) : std::string("none"); };
    result("x-result-stream", p->stream_messages);
    result("x-result-stream-status", to_s(status_code));
    result("x-result-stream-initial", count(p->stream_initial));
    result("x-result-stream-trailing", count(p->stream_trailing));
    proxy_continue_stream(StreamType::HttpRequest);
  } else if (auto call = g_grpc_calls.find(token); call != g_grpc_calls.end()) {
    uint32_t id = call->second;
    g_grpc_calls.erase(call);
    enter(id);
    grpc_call_response(status_code, 0);
  } else {
    log(LogLevel::Trace, "on_grpc_close: invalid token_id, a non-connected stream has closed");
  }
}
