// bench_body: a body-rewriting benchmark workload. Request headers continue;
// the request body is buffered (Pause) until end_of_stream, then every
// "needle" in [0, N) becomes "NEEDLE" and the whole body is written back.
package main

import (
	"bytes"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

var (
	needle  = []byte("needle")
	replace = []byte("NEEDLE")
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &benchBody{} })
}

type benchBody struct {
	types.DefaultHttpContext
}

func (*benchBody) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause
	}
	var body []byte
	if bodySize > 0 { // the SDK's allocator traps when asked for 0 bytes
		body, _ = proxywasm.GetHttpRequestBody(0, bodySize) // NotFound (no data) reads as empty
	}
	// ReplaceHttpRequestBody is set_buffer_bytes(0, start 0, size MaxInt32, ..):
	// the whole buffer, i.e. [0, N).
	if err := proxywasm.ReplaceHttpRequestBody(bytes.ReplaceAll(body, needle, replace)); err != nil {
		panic(err)
	}
	return types.ActionContinue
}
