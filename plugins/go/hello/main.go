// hello: the README example, with the behaviour of plugins/rust/hello.
//
// Adds a configurable request header, removes x-remove-me, rewrites an
// existing user-agent, denies a path prefix with a local 403, upper-cases
// "hello" in request bodies, marks responses and logs each request's end.
// plugins/go/README.md lists how it differs from the Rust plugin at the ABI
// level (observable behaviour is the same).
package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/util"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

// config is the plugin configuration; every field is optional.
type config struct {
	header   string
	value    string
	denyPath string
}

func defaultConfig() *config {
	return &config{header: "x-hello", value: "polyhost", denyPath: "/admin"}
}

// parseConfig accepts an absent or empty configuration (all defaults) or a
// JSON object whose known fields are strings; unknown fields are ignored.
// Anything else (not JSON, not an object, a known field that is not a
// string) is rejected, as serde_json does in the Rust plugin.
func parseConfig(raw []byte) (*config, bool) {
	cfg := defaultConfig()
	if len(raw) == 0 {
		return cfg, true
	}
	if !utf8.Valid(raw) {
		return nil, false
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false // not an object (also catches `null`)
	}
	var object map[string]json.RawMessage
	if err := json.Unmarshal(raw, &object); err != nil {
		return nil, false
	}
	for _, field := range []struct {
		key  string
		slot *string
	}{{"header", &cfg.header}, {"value", &cfg.value}, {"deny_path", &cfg.denyPath}} {
		value, ok := object[field.key]
		if !ok {
			continue
		}
		// json.Unmarshal would accept null into a string; the Rust plugin
		// does not.
		if v := bytes.TrimLeft(value, " \t\r\n"); len(v) == 0 || v[0] != '"' {
			return nil, false
		}
		if err := json.Unmarshal(value, field.slot); err != nil {
			return nil, false
		}
	}
	return cfg, true
}

type vmContext struct {
	types.DefaultVMContext
}

func (*vmContext) OnVMStart(vmConfigurationSize int) types.OnVMStartStatus {
	var vmConfig []byte
	if vmConfigurationSize > 0 { // see OnPluginStart
		vmConfig, _ = proxywasm.GetVMConfiguration() // NotFound (no data) reads as empty
	}
	proxywasm.LogInfo("hello: vm_start config=" + util.Lossy(vmConfig))
	return types.OnVMStartStatusOK
}

func (*vmContext) NewPluginContext(uint32) types.PluginContext {
	return &pluginContext{config: defaultConfig()}
}

type pluginContext struct {
	types.DefaultPluginContext
	// Replaced wholesale on reconfiguration, so in-flight requests keep the
	// configuration they started with.
	config *config
}

func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	// Only read a configuration the host says is there: the SDK's allocator
	// traps when a host asks it for 0 bytes to return empty data.
	var raw []byte
	if pluginConfigurationSize > 0 {
		raw, _ = proxywasm.GetPluginConfiguration() // NotFound (no data) reads as empty
	}
	cfg, ok := parseConfig(raw)
	if !ok {
		proxywasm.LogError("hello: invalid configuration")
		return types.OnPluginStartStatusFailed
	}
	p.config = cfg
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{config: p.config}
}

type httpContext struct {
	types.DefaultHttpContext
	config *config
}

// header reads a request header, or fallback when the host has none.
func header(name, fallback string) string {
	value, err := proxywasm.GetHttpRequestHeader(name)
	if err != nil {
		return fallback
	}
	return value
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	method := header(":method", "-")
	path := header(":path", "-")
	proxywasm.LogInfo("hello: " + method + " " + path)

	if strings.HasPrefix(path, h.config.denyPath) {
		err := proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "hello"}}, []byte("access denied\n"), -1)
		util.Must(err, "send_local_response")
		return types.ActionPause
	}

	util.Must(proxywasm.AddHttpRequestHeader(h.config.header, h.config.value), "add_header_map_value")
	util.Must(proxywasm.RemoveHttpRequestHeader("x-remove-me"), "remove_header_map_value")
	// Replace only an existing user-agent: a replace on a missing key would
	// add it, which is not what this filter is about.
	if _, err := proxywasm.GetHttpRequestHeader("user-agent"); err == nil {
		util.Must(proxywasm.ReplaceHttpRequestHeader("user-agent", "polyhost-hello"), "replace_header_map_value")
	}
	return types.ActionContinue
}

func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	// Pausing before the end makes the host buffer the chunks, so the
	// replacement also catches a "hello" split across chunks.
	if !endOfStream {
		return types.ActionPause
	}
	var body []byte
	if bodySize > 0 { // nothing to read (and see OnPluginStart)
		body, _ = proxywasm.GetHttpRequestBody(0, bodySize) // NotFound (no data) reads as empty
	}
	rewritten := bytes.ReplaceAll(body, []byte("hello"), []byte("HELLO"))
	// The SDK's replace is set_buffer_bytes(0, start 0, size MaxInt32, ..).
	util.Must(proxywasm.ReplaceHttpRequestBody(rewritten), "set_buffer_bytes")
	return types.ActionContinue
}

func (h *httpContext) OnHttpResponseHeaders(int, bool) types.Action {
	util.Must(proxywasm.AddHttpResponseHeader("x-powered-by", "polyhost"), "add_header_map_value")
	return types.ActionContinue
}

// OnHttpStreamDone is the SDK's proxy_on_log.
func (h *httpContext) OnHttpStreamDone() {
	status, err := proxywasm.GetHttpResponseHeader(":status")
	if err != nil {
		status = "-"
	}
	proxywasm.LogDebug("hello: done " + status)
}
