// bench_headers: the 60-header-operation workload used in gateway latency
// comparisons (as plugins/rust/bench_headers). In on_request_headers: add
// fake_key_<i>: fake_value_<i> for i in 0..20, read each back, then remove
// each; the request leaves with the headers it came with. No logging.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const n = 20

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &benchHeaders{} })
}

type benchHeaders struct {
	types.DefaultHttpContext
}

func (*benchHeaders) OnHttpRequestHeaders(int, bool) types.Action {
	// Names are formatted per request on purpose: the workload includes the
	// guest-side string work of a typical plugin.
	for i := 0; i < n; i++ {
		s := strconv.Itoa(i)
		if err := proxywasm.AddHttpRequestHeader("fake_key_"+s, "fake_value_"+s); err != nil {
			panic(err)
		}
	}
	for i := 0; i < n; i++ {
		_, _ = proxywasm.GetHttpRequestHeader("fake_key_" + strconv.Itoa(i))
	}
	for i := 0; i < n; i++ {
		if err := proxywasm.RemoveHttpRequestHeader("fake_key_" + strconv.Itoa(i)); err != nil {
			panic(err)
		}
	}
	return types.ActionContinue
}
