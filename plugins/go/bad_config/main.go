// bad_config: a plugin that always rejects its configuration (as
// plugins/rust/bad_config). vm_start succeeds; configure logs an error and
// fails, so a host must refuse to serve with it.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &badConfig{} })
}

type badConfig struct {
	types.DefaultPluginContext
}

func (*badConfig) OnPluginStart(int) types.OnPluginStartStatus {
	proxywasm.LogError("bad_config: rejecting configuration")
	return types.OnPluginStartStatusFailed
}

// Only reachable if a host ignores the failure above; pass everything.
func (*badConfig) NewHttpContext(uint32) types.HttpContext {
	return &types.DefaultHttpContext{}
}
