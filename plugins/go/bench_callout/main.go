// bench_callout: an HTTP-callout benchmark workload. Every request's headers
// dispatch GET / to cluster "bench-cluster" (authority "bench", no body, no
// trailers, 1000 ms) and pause; the response adds the request header
// x-callout-status: <callout :status, or none> and resumes the request.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/util"
)

var calloutHeaders = [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "bench"}}

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &benchCallout{} })
}

type benchCallout struct {
	types.DefaultHttpContext
}

func (*benchCallout) OnHttpRequestHeaders(int, bool) types.Action {
	_, err := proxywasm.DispatchHttpCall("bench-cluster", calloutHeaders, nil, nil, 1000, onResponse)
	if err != nil {
		// Same reply as abi_probe's http-call case when the host refuses.
		body := []byte("dispatch failed: " + util.ErrName(err))
		util.Must(proxywasm.SendHttpResponse(503, nil, body, -1), "send_local_response")
	}
	return types.ActionPause
}

func onResponse(numHeaders, _, _ int) {
	status := "none"
	if numHeaders > 0 {
		// The SDK has no single-header getter for callout responses: it
		// reads the whole map (get_header_map_pairs(6)).
		if headers, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
			if s, ok := util.Lookup(headers, ":status"); ok {
				status = s
			}
		}
	}
	util.Must(proxywasm.AddHttpRequestHeader("x-callout-status", status), "add_header_map_value")
	util.Must(proxywasm.ResumeHttpRequest(), "continue_stream")
}
