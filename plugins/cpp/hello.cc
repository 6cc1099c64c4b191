// `hello`: the README example (contract: plugins/rust/README.md, `hello`).
// Adds a configurable request header, denies a path prefix with a local 403,
// rewrites `hello` to `HELLO` in request bodies and tags responses.

#include <map>
#include <memory>
#include <unordered_map>

#include "proxy_wasm_abi.h"

using namespace proxy_wasm;

namespace {

struct Config {
  std::string header = "x-hello";
  std::string value = "polyhost";
  std::string deny_path = "/admin";
};

// ---------------------------------------------------------------------------
// Just enough JSON for this configuration: validates the whole document as
// strictly as serde_json (RFC 8259 grammar, no trailing commas or comments,
// no control characters or lone surrogates in strings, nothing after the
// value, nesting at most 128 deep) and collects the top-level members whose
// value is a string. Unknown members may hold anything.

class Json {
 public:
  explicit Json(std::string_view text) : s_(text) {}

  // Top-level string members by name, or nullopt unless the text is a JSON
  // object. `non_strings` receives the names whose (last) value is not a
  // string.
  std::optional<std::map<std::string, std::string>> object(std::map<std::string, bool>& non_strings) {
    std::map<std::string, std::string> strings;
    ws();
    if (peek() != '{') return std::nullopt;
    pos_++;
    depth_ = 1;
    ws();
    if (peek() == '}') {
      pos_++;
    } else {
      while (true) {
        ws();
        auto name = string();
        if (!name) return std::nullopt;
        ws();
        if (peek() != ':') return std::nullopt;
        pos_++;
        ws();
        // The last occurrence of a name counts, as in serde_json's map.
        if (peek() == '"') {
          auto value = string();
          if (!value) return std::nullopt;
          strings[*name] = *value;
          non_strings.erase(*name);
        } else {
          if (!skip_value()) return std::nullopt;
          strings.erase(*name);
          non_strings[*name] = true;
        }
        ws();
        int c = peek();
        pos_++;
        if (c == '}') break;
        if (c != ',') return std::nullopt;
      }
    }
    ws();
    if (pos_ != s_.size()) return std::nullopt;
    return strings;
  }

 private:
  int peek() const { return pos_ < s_.size() ? static_cast<uint8_t>(s_[pos_]) : -1; }

  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      pos_++;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  size_t digits() {
    size_t n = 0;
    while (peek() >= '0' && peek() <= '9') {
      pos_++;
      n++;
    }
    return n;
  }

  bool number() {
    if (peek() == '-') pos_++;
    if (peek() == '0') {
      pos_++;
    } else if (digits() == 0) {
      return false;
    }
    if (peek() == '.') {
      pos_++;
      if (digits() == 0) return false;
    }
    if (peek() == 'e' || peek() == 'E') {
      pos_++;
      if (peek() == '+' || peek() == '-') pos_++;
      if (digits() == 0) return false;
    }
    return true;
  }

  bool skip_value() {
    int c = peek();
    if (c == '"') return string().has_value();
    if (c == '{' || c == '[') return container(c == '{');
    if (c == 't') return literal("true");
    if (c == 'f') return literal("false");
    if (c == 'n') return literal("null");
    return number();
  }

  bool container(bool is_object) {
    if (++depth_ > 128) return false;
    pos_++;
    ws();
    char close = is_object ? '}' : ']';
    if (peek() == close) {
      pos_++;
      depth_--;
      return true;
    }
    while (true) {
      ws();
      if (is_object) {
        if (!string()) return false;
        ws();
        if (peek() != ':') return false;
        pos_++;
        ws();
      }
      if (!skip_value()) return false;
      ws();
      int c = peek();
      pos_++;
      if (c == close) break;
      if (c != ',') return false;
    }
    depth_--;
    return true;
  }

  int hex4() {
    if (pos_ + 4 > s_.size()) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
      char c = s_[pos_ + i];
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return -1;
      v = (v << 4) | d;
    }
    pos_ += 4;
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::optional<std::string> string() {
    if (peek() != '"') return std::nullopt;
    pos_++;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return std::nullopt;
      uint8_t c = static_cast<uint8_t>(s_[pos_]);
      if (c == '"') {
        pos_++;
        return out;
      }
      if (c < 0x20) return std::nullopt;
      if (c != '\\') {
        out += static_cast<char>(c);
        pos_++;
        continue;
      }
      pos_++;
      int e = peek();
      pos_++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          int u = hex4();
          if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return std::nullopt;
          uint32_t cp = static_cast<uint32_t>(u);
          if (u >= 0xD800 && u <= 0xDBFF) {
            // A leading surrogate must be followed by an escaped trailing one.
            if (peek() != '\\') return std::nullopt;
            pos_++;
            if (peek() != 'u') return std::nullopt;
            pos_++;
            int lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) return std::nullopt;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return std::nullopt;
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
};

// Absent or empty configuration: defaults. Otherwise a JSON object whose
// known fields, if present, are strings; unknown fields are ignored.
std::optional<Config> parse_config(std::string_view raw) {
  Config config;
  if (raw.empty()) return config;
  if (!is_utf8(raw)) return std::nullopt;
  std::map<std::string, bool> non_strings;
  auto fields = Json(raw).object(non_strings);
  if (!fields) return std::nullopt;
  for (const char* known : {"header", "value", "deny_path"}) {
    if (non_strings.count(known)) return std::nullopt;
  }
  if (auto it = fields->find("header"); it != fields->end()) config.header = it->second;
  if (auto it = fields->find("value"); it != fields->end()) config.value = it->second;
  if (auto it = fields->find("deny_path"); it != fields->end()) config.deny_path = it->second;
  return config;
}

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

// The root's configuration is replaced wholesale on reconfiguration; each
// stream keeps the one it started with.
std::shared_ptr<const Config> g_config = std::make_shared<Config>();
std::unordered_map<uint32_t, std::shared_ptr<const Config>> g_streams;

}  // namespace

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t root) {
  if (root != 0) g_streams[id] = g_config;
}

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
  auto vm_config = get_buffer(BufferType::VmConfiguration, 0, UINT32_MAX);
  log(LogLevel::Info, "hello: vm_start config=" + utf8_lossy(vm_config.value));
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t, uint32_t) {
  auto raw = get_buffer(BufferType::PluginConfiguration, 0, UINT32_MAX);
  auto config = parse_config(raw.value);
  if (!config) {
    log(LogLevel::Error, "hello: invalid configuration");
    return 0;
  }
  g_config = std::make_shared<const Config>(std::move(*config));
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t id, uint32_t, uint32_t) {
  auto stream = g_streams.find(id);
  const Config& config = stream != g_streams.end() ? *stream->second : *g_config;
  std::string method = get_header(MapType::RequestHeaders, ":method").value_or("-");
  std::string path = get_header(MapType::RequestHeaders, ":path").value_or("-");
  log(LogLevel::Info, "hello: " + utf8_lossy(method) + " " + utf8_lossy(path));

  if (std::string_view(path).substr(0, config.deny_path.size()) == config.deny_path) {
    send_local_response(403, "access denied\n", {{"x-denied-by", "hello"}});
    return static_cast<uint32_t>(Action::Pause);
  }

  add_header(MapType::RequestHeaders, config.header, config.value);
  remove_header(MapType::RequestHeaders, "x-remove-me");
  // Replace only an existing user-agent: a replace on a missing key adds it.
  if (get_header(MapType::RequestHeaders, "user-agent")) {
    replace_header(MapType::RequestHeaders, "user-agent", "polyhost-hello");
  }
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_request_body)
uint32_t proxy_on_request_body(uint32_t, uint32_t body_size, uint32_t end_of_stream) {
  // Pausing before the end makes the host buffer the chunks, so a "hello"
  // split across chunks is caught too.
  if (!end_of_stream) return static_cast<uint32_t>(Action::Pause);
  auto body = get_buffer(BufferType::HttpRequestBody, 0, body_size);
  set_buffer(BufferType::HttpRequestBody, 0, body_size, replace_all(body.value, "hello", "HELLO"));
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t, uint32_t, uint32_t) {
  add_header(MapType::ResponseHeaders, "x-powered-by", "polyhost");
  return static_cast<uint32_t>(Action::Continue);
}

PROXY_WASM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t) {
  std::string status = get_header(MapType::ResponseHeaders, ":status").value_or("-");
  log(LogLevel::Debug, "hello: done " + utf8_lossy(status));
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) { g_streams.erase(id); }
