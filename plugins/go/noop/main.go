// noop: the latency floor. The SDK's default VM and plugin contexts (vm_start
// and configure succeed, nothing logged); every HTTP callback returns
// Continue and makes no host call.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &types.DefaultHttpContext{} })
}
