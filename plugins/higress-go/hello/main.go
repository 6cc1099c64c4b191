// hello, written with Higress's plugin framework (github.com/higress-group/wasm-go,
// on github.com/higress-group/proxy-wasm-go-sdk): the behaviour of
// plugins/rust/hello where the framework allows. plugins/go/README.md lists
// the differences the framework imposes.
package main

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/higress-group/proxy-wasm-go-sdk/proxywasm"
	"github.com/higress-group/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/higress-group/wasm-go/pkg/wrapper"
	"github.com/tidwall/gjson"
)

func main() {}

func init() {
	// What wrapper.SetCtx does (proxywasm.SetVMContext(wrapper.NewCommonVmCtx(..))),
	// with the framework's VM context wrapped to add the vm_start log line:
	// the framework's own OnVMStart does nothing.
	proxywasm.SetVMContext(&vmContext{wrapper.NewCommonVmCtx[HelloConfig]("hello",
		wrapper.ParseConfig(parseConfig),
		wrapper.ProcessRequestHeaders(onHttpRequestHeaders),
		wrapper.ProcessRequestBody(onHttpRequestBody),
		wrapper.ProcessResponseHeaders(onHttpResponseHeaders),
		wrapper.ProcessStreamDone(onHttpStreamDone),
	)})
}

type vmContext struct {
	*wrapper.CommonVmCtx[HelloConfig]
}

func (*vmContext) OnVMStart(vmConfigurationSize int) types.OnVMStartStatus {
	// Only read a configuration the host says is there: the SDK's allocator
	// traps when a host asks it for 0 bytes to return empty data.
	var vmConfig []byte
	if vmConfigurationSize > 0 {
		vmConfig, _ = proxywasm.GetVMConfiguration() // NotFound (no data) reads as empty
	}
	proxywasm.LogInfo("hello: vm_start config=" + lossy(vmConfig))
	return types.OnVMStartStatusOK
}

// HelloConfig is the plugin configuration; every field is optional.
type HelloConfig struct {
	Header   string
	Value    string
	DenyPath string
}

var errInvalid = errors.New("hello: invalid configuration")

// parseConfig receives the configuration as gjson parsed it. The framework
// has already rejected bytes that are not valid JSON (with its own warning);
// an empty configuration arrives as an empty result.
func parseConfig(json gjson.Result, config *HelloConfig) error {
	*config = HelloConfig{Header: "x-hello", Value: "polyhost", DenyPath: "/admin"}
	if json.Raw == "" {
		return nil
	}
	if !json.IsObject() {
		proxywasm.LogError("hello: invalid configuration")
		return errInvalid
	}
	for key, slot := range map[string]*string{"header": &config.Header, "value": &config.Value, "deny_path": &config.DenyPath} {
		field := json.Get(gjson.Escape(key))
		if !field.Exists() {
			continue
		}
		if field.Type != gjson.String {
			proxywasm.LogError("hello: invalid configuration")
			return errInvalid
		}
		*slot = field.String()
	}
	return nil
}

func header(name, fallback string) string {
	value, err := proxywasm.GetHttpRequestHeader(name)
	if err != nil {
		return fallback
	}
	return value
}

func onHttpRequestHeaders(ctx wrapper.HttpContext, config HelloConfig) types.Action {
	method := header(":method", "-")
	path := header(":path", "-")
	proxywasm.LogInfo("hello: " + method + " " + path)

	if strings.HasPrefix(path, config.DenyPath) {
		_ = proxywasm.SendHttpResponse(403, [][2]string{{"x-denied-by", "hello"}}, []byte("access denied\n"), -1)
		return types.ActionPause
	}
	_ = proxywasm.AddHttpRequestHeader(config.Header, config.Value)
	_ = proxywasm.RemoveHttpRequestHeader("x-remove-me")
	if _, err := proxywasm.GetHttpRequestHeader("user-agent"); err == nil {
		_ = proxywasm.ReplaceHttpRequestHeader("user-agent", "polyhost-hello")
	}
	return types.ActionContinue
}

// onHttpRequestBody gets the whole body: the framework pauses every chunk
// until end_of_stream and then reads it.
func onHttpRequestBody(ctx wrapper.HttpContext, config HelloConfig, body []byte) types.Action {
	_ = proxywasm.ReplaceHttpRequestBody(bytes.ReplaceAll(body, []byte("hello"), []byte("HELLO")))
	return types.ActionContinue
}

func onHttpResponseHeaders(ctx wrapper.HttpContext, config HelloConfig) types.Action {
	_ = proxywasm.AddHttpResponseHeader("x-powered-by", "polyhost")
	return types.ActionContinue
}

func onHttpStreamDone(ctx wrapper.HttpContext, config HelloConfig) {
	status, err := proxywasm.GetHttpResponseHeader(":status")
	if err != nil {
		status = "-"
	}
	proxywasm.LogDebug("hello: done " + status)
}

// lossy decodes like Rust's String::from_utf8_lossy (one U+FFFD per maximal
// invalid subsequence); see plugins/go/internal/util for the commented
// version.
func lossy(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			out.Write(b[i : i+size])
			i += size
			continue
		}
		out.WriteRune(utf8.RuneError)
		i += invalidPrefixLen(b[i:])
	}
	return out.String()
}

func isCont(b byte) bool { return b >= 0x80 && b <= 0xBF }

func invalidPrefixLen(b []byte) int {
	first := b[0]
	if len(b) < 2 || first < 0xE0 || first > 0xF4 {
		return 1
	}
	second := b[1]
	if first <= 0xEF {
		ok := (first == 0xE0 && second >= 0xA0 && second <= 0xBF) ||
			(first >= 0xE1 && first <= 0xEC && isCont(second)) ||
			(first == 0xED && second >= 0x80 && second <= 0x9F) ||
			(first >= 0xEE && isCont(second))
		if !ok {
			return 1
		}
		return 2
	}
	ok := (first == 0xF0 && second >= 0x90 && second <= 0xBF) ||
		(first >= 0xF1 && first <= 0xF3 && isCont(second)) ||
		(first == 0xF4 && second >= 0x80 && second <= 0x8F)
	if !ok {
		return 1
	}
	if len(b) < 3 || !isCont(b[2]) {
		return 2
	}
	return 3
}
