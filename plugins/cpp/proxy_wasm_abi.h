// proxy_wasm_abi.h: the proxy-wasm 0.2.1 ABI for C++ plugins, without an SDK.
//
// No C++ proxy-wasm SDK is published on the registries our machines reach,
// so Polyhost's C++ test plugins are written against this header alone: the
// host imports, the ABI's enums and status codes, and the few helpers every
// plugin would otherwise repeat (owning host buffers, header-map
// serialization, UTF-8 repair). Plugins export the proxy_on_* callbacks
// themselves and keep their own per-context state; there is no context
// framework here on purpose, so each plugin shows exactly which callbacks
// and host calls it uses.
//
// Build (Zig's clang, wasi-libc and libc++; scripts/build-cpp-plugins.sh):
//   python -m ziglang c++ -target wasm32-wasi -O2 -mexec-model=reactor -s \
//       -std=c++17 -fno-exceptions -fno-rtti -Wl,-z,stack-size=1048576 \
//       -o X.wasm X.cc
// The reactor model gives the module an `_initialize` export (running global
// constructors), which the host calls before any callback.
//
// Each plugin is a single translation unit: this header *defines* the ABI
// marker and the allocator export, so include it in exactly one .cc file.

#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace proxy_wasm {

// ---------------------------------------------------------------------------
// Enums (values from the ABI). Scoped enums with a fixed 32-bit type are
// passed as wasm i32 exactly like the raw integers, but keep call sites from
// mixing a map type up with a buffer type.

enum class Status : uint32_t {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  BadExpression = 5,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  ResultMismatch = 9,
  InternalFailure = 10,
  BrokenConnection = 11,
  Unimplemented = 12,
};

enum class LogLevel : uint32_t { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4, Critical = 5 };

// What stream callbacks return. For bodies, Pause means StopIterationAndBuffer.
enum class Action : uint32_t { Continue = 0, Pause = 1 };

enum class MapType : uint32_t {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  GrpcReceiveInitialMetadata = 4,
  GrpcReceiveTrailingMetadata = 5,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
};

enum class BufferType : uint32_t {
  HttpRequestBody = 0,
  HttpResponseBody = 1,
  DownstreamData = 2,
  UpstreamData = 3,
  HttpCallResponseBody = 4,
  GrpcReceiveBuffer = 5,
  VmConfiguration = 6,
  PluginConfiguration = 7,
  CallData = 8,
};

enum class StreamType : uint32_t { HttpRequest = 0, HttpResponse = 1, Downstream = 2, Upstream = 3 };

enum class MetricType : uint32_t { Counter = 0, Gauge = 1, Histogram = 2 };

enum class PeerType : uint32_t { Unknown = 0, Local = 1, Remote = 2 };

// gRPC status for proxy_send_local_response; -1 (as u32) means "not gRPC".
constexpr uint32_t kNoGrpcStatus = UINT32_MAX;
constexpr uint32_t kGrpcPermissionDenied = 7;

}  // namespace proxy_wasm

// ---------------------------------------------------------------------------
// Host functions (imports from module "env"). Every call returns a Status.
// Out-pointers: `char** ptr_out` receives memory the host allocated through
// our allocator export (free it with free()); `size_t* size_out` its length.
// Only functions a plugin actually calls end up in its import section.

#define PROXY_WASM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

extern "C" {
using proxy_wasm::BufferType;
using proxy_wasm::LogLevel;
using proxy_wasm::MapType;
using proxy_wasm::MetricType;
using proxy_wasm::Status;
using proxy_wasm::StreamType;

// Context and logging.
PROXY_WASM_IMPORT(proxy_done) Status proxy_done();
PROXY_WASM_IMPORT(proxy_set_effective_context) Status proxy_set_effective_context(uint32_t context_id);
PROXY_WASM_IMPORT(proxy_log) Status proxy_log(LogLevel level, const char* message, size_t size);
PROXY_WASM_IMPORT(proxy_get_log_level) Status proxy_get_log_level(uint32_t* level_out);

// Time.
PROXY_WASM_IMPORT(proxy_get_current_time_nanoseconds)
Status proxy_get_current_time_nanoseconds(uint64_t* nanoseconds_out);
PROXY_WASM_IMPORT(proxy_set_tick_period_milliseconds)
Status proxy_set_tick_period_milliseconds(uint32_t milliseconds);

// Buffers.
PROXY_WASM_IMPORT(proxy_get_buffer_bytes)
Status proxy_get_buffer_bytes(BufferType type, uint32_t start, uint32_t max_size, char** ptr_out,
                              size_t* size_out);
PROXY_WASM_IMPORT(proxy_set_buffer_bytes)
Status proxy_set_buffer_bytes(BufferType type, uint32_t start, uint32_t size, const char* data,
                              size_t data_size);
PROXY_WASM_IMPORT(proxy_get_buffer_status)
Status proxy_get_buffer_status(BufferType type, size_t* length_out, uint32_t* flags_out);

// Header maps.
PROXY_WASM_IMPORT(proxy_get_header_map_size)
Status proxy_get_header_map_size(MapType type, size_t* size_out);
PROXY_WASM_IMPORT(proxy_get_header_map_pairs)
Status proxy_get_header_map_pairs(MapType type, char** ptr_out, size_t* size_out);
PROXY_WASM_IMPORT(proxy_set_header_map_pairs)
Status proxy_set_header_map_pairs(MapType type, const char* ptr, size_t size);
PROXY_WASM_IMPORT(proxy_get_header_map_value)
Status proxy_get_header_map_value(MapType type, const char* key, size_t key_size, char** value_out,
                                  size_t* value_size_out);
PROXY_WASM_IMPORT(proxy_add_header_map_value)
Status proxy_add_header_map_value(MapType type, const char* key, size_t key_size, const char* value,
                                  size_t value_size);
PROXY_WASM_IMPORT(proxy_replace_header_map_value)
Status proxy_replace_header_map_value(MapType type, const char* key, size_t key_size,
                                      const char* value, size_t value_size);
PROXY_WASM_IMPORT(proxy_remove_header_map_value)
Status proxy_remove_header_map_value(MapType type, const char* key, size_t key_size);

// Stream control.
PROXY_WASM_IMPORT(proxy_continue_stream) Status proxy_continue_stream(StreamType type);
PROXY_WASM_IMPORT(proxy_close_stream) Status proxy_close_stream(StreamType type);
PROXY_WASM_IMPORT(proxy_get_status)
Status proxy_get_status(uint32_t* code_out, char** message_out, size_t* message_size_out);
PROXY_WASM_IMPORT(proxy_send_local_response)
Status proxy_send_local_response(uint32_t status_code, const char* details, size_t details_size,
                                 const char* body, size_t body_size, const char* headers,
                                 size_t headers_size, uint32_t grpc_status);

// HTTP callouts.
PROXY_WASM_IMPORT(proxy_http_call)
Status proxy_http_call(const char* upstream, size_t upstream_size, const char* headers,
                       size_t headers_size, const char* body, size_t body_size,
                       const char* trailers, size_t trailers_size, uint32_t timeout_ms,
                       uint32_t* token_out);

// gRPC callouts.
PROXY_WASM_IMPORT(proxy_grpc_call)
Status proxy_grpc_call(const char* upstream, size_t upstream_size, const char* service,
                       size_t service_size, const char* method, size_t method_size,
                       const char* metadata, size_t metadata_size, const char* message,
                       size_t message_size, uint32_t timeout_ms, uint32_t* token_out);
PROXY_WASM_IMPORT(proxy_grpc_stream)
Status proxy_grpc_stream(const char* upstream, size_t upstream_size, const char* service,
                         size_t service_size, const char* method, size_t method_size,
                         const char* metadata, size_t metadata_size, uint32_t* token_out);
PROXY_WASM_IMPORT(proxy_grpc_send)
Status proxy_grpc_send(uint32_t token, const char* message, size_t message_size,
                       uint32_t end_stream);
PROXY_WASM_IMPORT(proxy_grpc_cancel) Status proxy_grpc_cancel(uint32_t token);
PROXY_WASM_IMPORT(proxy_grpc_close) Status proxy_grpc_close(uint32_t token);

// Shared data and queues.
PROXY_WASM_IMPORT(proxy_get_shared_data)
Status proxy_get_shared_data(const char* key, size_t key_size, char** value_out,
                             size_t* value_size_out, uint32_t* cas_out);
PROXY_WASM_IMPORT(proxy_set_shared_data)
Status proxy_set_shared_data(const char* key, size_t key_size, const char* value, size_t value_size,
                             uint32_t cas);
PROXY_WASM_IMPORT(proxy_register_shared_queue)
Status proxy_register_shared_queue(const char* name, size_t name_size, uint32_t* queue_id_out);
PROXY_WASM_IMPORT(proxy_resolve_shared_queue)
Status proxy_resolve_shared_queue(const char* vm_id, size_t vm_id_size, const char* name,
                                  size_t name_size, uint32_t* queue_id_out);
PROXY_WASM_IMPORT(proxy_enqueue_shared_queue)
Status proxy_enqueue_shared_queue(uint32_t queue_id, const char* data, size_t size);
PROXY_WASM_IMPORT(proxy_dequeue_shared_queue)
Status proxy_dequeue_shared_queue(uint32_t queue_id, char** data_out, size_t* size_out);

// Metrics.
PROXY_WASM_IMPORT(proxy_define_metric)
Status proxy_define_metric(MetricType type, const char* name, size_t name_size,
                           uint32_t* metric_id_out);
PROXY_WASM_IMPORT(proxy_increment_metric) Status proxy_increment_metric(uint32_t metric_id, int64_t delta);
PROXY_WASM_IMPORT(proxy_record_metric) Status proxy_record_metric(uint32_t metric_id, uint64_t value);
PROXY_WASM_IMPORT(proxy_get_metric) Status proxy_get_metric(uint32_t metric_id, uint64_t* value_out);

// Properties and foreign functions.
PROXY_WASM_IMPORT(proxy_get_property)
Status proxy_get_property(const char* path, size_t path_size, char** value_out,
                          size_t* value_size_out);
PROXY_WASM_IMPORT(proxy_set_property)
Status proxy_set_property(const char* path, size_t path_size, const char* value, size_t value_size);
PROXY_WASM_IMPORT(proxy_call_foreign_function)
Status proxy_call_foreign_function(const char* name, size_t name_size, const char* args,
                                   size_t args_size, char** result_out, size_t* result_size_out);
}  // extern "C"

#undef PROXY_WASM_IMPORT

// Marks a plugin callback as a module export under its own name.
#define PROXY_WASM_EXPORT(name) extern "C" __attribute__((export_name(#name)))

// ---------------------------------------------------------------------------
// What every module must export besides its callbacks.

// The ABI version marker: the host reads the name and never calls it.
PROXY_WASM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1() {}

// The host returns data by asking the plugin for memory and copying into it;
// plugins free such memory with free() (HostBuffer below does). wasi-libc's
// malloc is not exported by default, so this is the host's allocator.
PROXY_WASM_EXPORT(proxy_on_memory_allocate) void* proxy_on_memory_allocate(size_t size) {
  return malloc(size);
}

// libc++ reports fatal errors (a length_error or bad_alloc, which cannot be
// thrown under -fno-exceptions) through this hook. Its default prints with
// stdio, which would add fd_write/fd_seek/fd_close to every plugin's imports
// and send the message to a stderr the host may not show; the message goes
// to proxy_log instead (unformatted: it is a printf format), then we trap.
[[noreturn]] void std::__libcpp_verbose_abort(const char* format, ...) noexcept {
  proxy_log(proxy_wasm::LogLevel::Critical, format, strlen(format));
  __builtin_trap();
}

namespace proxy_wasm {

// ---------------------------------------------------------------------------
// Results.

// A status with a value that is meaningful only when the status is Ok.
template <class T>
struct Result {
  Status status;
  T value;
  bool ok() const { return status == Status::Ok; }
};

// The status names the Rust SDK prints (its `Status` Debug form), so result
// headers and log lines read the same in every language.
inline const char* status_name(Status status) {
  switch (status) {
    case Status::Ok: return "Ok";
    case Status::NotFound: return "NotFound";
    case Status::BadArgument: return "BadArgument";
    case Status::SerializationFailure: return "SerializationFailure";
    case Status::ParseFailure: return "ParseFailure";
    case Status::BadExpression: return "BadExpression";
    case Status::InvalidMemoryAccess: return "InvalidMemoryAccess";
    case Status::Empty: return "Empty";
    case Status::CasMismatch: return "CasMismatch";
    case Status::ResultMismatch: return "ResultMismatch";
    case Status::InternalFailure: return "InternalFailure";
    case Status::BrokenConnection: return "BrokenConnection";
    case Status::Unimplemented: return "Unimplemented";
  }
  return "Unknown";
}

// ---------------------------------------------------------------------------
// Memory the host allocated for us. Move-only; frees on destruction. A null
// pointer (the reference host's answer for "no data") is an empty buffer.

class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(char* data, size_t size) : data_(data), size_(data ? size : 0) {}
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer(HostBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~HostBuffer() { free(data_); }

  std::string_view view() const { return {data_, size_}; }
  std::string str() const { return std::string(view()); }
  char* data() { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Logging.

inline Status log(LogLevel level, std::string_view message) {
  return proxy_log(level, message.data(), message.size());
}

// Logs a critical line in the Rust SDK's panic format, then traps, as a Rust
// plugin's panic does. A macro, so the location is the caller's.
#define PROXY_WASM_PANIC(message)                                                     \
  ::proxy_wasm::panic_at(__FILE_NAME__, __LINE__, __builtin_COLUMN(), (message))

[[noreturn]] inline void panic_at(const char* file, unsigned line, unsigned column,
                                  std::string_view message) {
  std::string text = "panicked at ";
  text += file;
  text += ':';
  text += std::to_string(line);
  text += ':';
  text += std::to_string(column);
  text += ":\n";
  text += message;
  log(LogLevel::Critical, text);
  __builtin_trap();
}

// ---------------------------------------------------------------------------
// Header maps.

using Pair = std::pair<std::string_view, std::string_view>;
using Pairs = std::vector<Pair>;

// The ABI's serialized map: u32 N, N x (u32 key_len, u32 value_len), then
// N x (key, 0x00, value, 0x00); all integers little-endian (as wasm is).
inline std::string serialize_pairs(const Pairs& pairs) {
  size_t size = 4 + 8 * pairs.size();
  for (const auto& [key, value] : pairs) size += key.size() + value.size() + 2;
  std::string out(size, '\0');
  char* p = out.data();
  auto put_u32 = [&p](uint32_t v) {
    memcpy(p, &v, 4);
    p += 4;
  };
  put_u32(static_cast<uint32_t>(pairs.size()));
  for (const auto& [key, value] : pairs) {
    put_u32(static_cast<uint32_t>(key.size()));
    put_u32(static_cast<uint32_t>(value.size()));
  }
  for (const auto& [key, value] : pairs) {
    memcpy(p, key.data(), key.size());
    p += key.size() + 1;
    memcpy(p, value.data(), value.size());
    p += value.size() + 1;
  }
  return out;
}

// Views into `bytes` (which must outlive the result). Malformed input gives
// nullopt; an empty buffer is an empty map.
inline std::optional<Pairs> deserialize_pairs(std::string_view bytes) {
  Pairs pairs;
  if (bytes.empty()) return pairs;
  if (bytes.size() < 4) return std::nullopt;
  uint32_t n;
  memcpy(&n, bytes.data(), 4);
  // Checked before multiplying, so a huge N cannot wrap the size test.
  if (n > (bytes.size() - 4) / 8) return std::nullopt;
  size_t data = 4 + 8 * static_cast<size_t>(n);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t key_size, value_size;
    memcpy(&key_size, bytes.data() + 4 + 8 * i, 4);
    memcpy(&value_size, bytes.data() + 8 + 8 * i, 4);
    if (bytes.size() - data < static_cast<size_t>(key_size) + value_size + 2) return std::nullopt;
    std::string_view key = bytes.substr(data, key_size);
    data += key_size + 1;
    std::string_view value = bytes.substr(data, value_size);
    data += value_size + 1;
    pairs.emplace_back(key, value);
  }
  return pairs;
}

// A header's value, or nullopt when the host answers NotFound (or fails).
inline std::optional<std::string> get_header(MapType map, std::string_view key) {
  char* ptr = nullptr;
  size_t size = 0;
  if (proxy_get_header_map_value(map, key.data(), key.size(), &ptr, &size) != Status::Ok) {
    return std::nullopt;
  }
  return HostBuffer(ptr, size).str();
}

inline Status add_header(MapType map, std::string_view key, std::string_view value) {
  return proxy_add_header_map_value(map, key.data(), key.size(), value.data(), value.size());
}

inline Status replace_header(MapType map, std::string_view key, std::string_view value) {
  return proxy_replace_header_map_value(map, key.data(), key.size(), value.data(), value.size());
}

inline Status remove_header(MapType map, std::string_view key) {
  return proxy_remove_header_map_value(map, key.data(), key.size());
}

// The whole map as owned (key, value) strings.
inline Result<std::vector<std::pair<std::string, std::string>>> get_header_pairs(MapType map) {
  char* ptr = nullptr;
  size_t size = 0;
  std::vector<std::pair<std::string, std::string>> out;
  Status status = proxy_get_header_map_pairs(map, &ptr, &size);
  if (status != Status::Ok) return {status, std::move(out)};
  HostBuffer buffer(ptr, size);
  auto pairs = deserialize_pairs(buffer.view());
  if (!pairs) return {Status::SerializationFailure, std::move(out)};
  for (const auto& [key, value] : *pairs) out.emplace_back(key, value);
  return {Status::Ok, std::move(out)};
}

inline Status set_header_pairs(MapType map, const Pairs& pairs) {
  std::string bytes = serialize_pairs(pairs);
  return proxy_set_header_map_pairs(map, bytes.data(), bytes.size());
}

// ---------------------------------------------------------------------------
// Buffers.

// Bytes [start, start + max_size) of a buffer, clamped by the host. Pass
// UINT32_MAX as max_size to read everything.
inline Result<std::string> get_buffer(BufferType type, uint32_t start, uint32_t max_size) {
  char* ptr = nullptr;
  size_t size = 0;
  Status status = proxy_get_buffer_bytes(type, start, max_size, &ptr, &size);
  if (status != Status::Ok) return {status, {}};
  return {Status::Ok, HostBuffer(ptr, size).str()};
}

// Replaces `size` bytes at `start` with `data` (size 0 inserts).
inline Status set_buffer(BufferType type, uint32_t start, uint32_t size, std::string_view data) {
  return proxy_set_buffer_bytes(type, start, size, data.data(), data.size());
}

// ---------------------------------------------------------------------------
// Local replies.

inline Status send_local_response(uint32_t status_code, std::string_view body, const Pairs& headers,
                                  uint32_t grpc_status = kNoGrpcStatus,
                                  std::string_view details = {}) {
  std::string map = serialize_pairs(headers);
  return proxy_send_local_response(status_code, details.data(), details.size(), body.data(),
                                   body.size(), map.data(), map.size(), grpc_status);
}

// ---------------------------------------------------------------------------
// Text.

// Length of the valid UTF-8 sequence at the start of `s`, or minus the length
// of the maximal invalid subpart there (Unicode's "substitution of maximal
// subparts", which Rust's from_utf8_lossy implements).
inline int utf8_sequence(std::string_view s) {
  auto b = [&s](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t lead = b(0);
  if (lead < 0x80) return 1;
  int width;
  uint8_t lo = 0x80, hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    width = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    width = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    width = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < width; k++) {
    if (static_cast<size_t>(k) >= s.size()) return -k;
    uint8_t min = k == 1 ? lo : 0x80;
    uint8_t max = k == 1 ? hi : 0xBF;
    if (b(k) < min || b(k) > max) return -k;
  }
  return width;
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one
// U+FFFD, so text built from host bytes matches the Rust plugins exactly.
inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    int n = utf8_sequence(s);
    if (n > 0) {
      out.append(s.substr(0, n));
      s.remove_prefix(n);
    } else {
      out.append("\xEF\xBF\xBD");
      s.remove_prefix(-n);
    }
  }
  return out;
}

inline bool is_utf8(std::string_view s) {
  while (!s.empty()) {
    int n = utf8_sequence(s);
    if (n <= 0) return false;
    s.remove_prefix(n);
  }
  return true;
}

// Rust's `str::parse::<u64>()` (or a narrower type via `max`): an optional
// '+', then one or more ASCII digits and nothing else, without overflow.
inline std::optional<uint64_t> parse_u64(std::string_view s, uint64_t max = UINT64_MAX) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace proxy_wasm
