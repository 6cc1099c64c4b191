// ticker: exercises the timer (as plugins/rust/ticker). Sets a 10 ms tick
// period at VM start; every tick increments the counter "ticker_ticks" and
// stores the number of ticks this root context has seen, in decimal, in
// shared data under "ticker/last". HTTP traffic passes through.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/util"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

// The Go SDK splits the root context into a VM context (proxy_on_vm_start)
// and a plugin context (proxy_on_configure, proxy_on_tick, ...); both stand
// for the same root context id, so the counter is shared through the VM
// context.
type vmContext struct {
	types.DefaultVMContext
	counter proxywasm.MetricCounter
}

func (v *vmContext) OnVMStart(int) types.OnVMStartStatus {
	// DefineCounterMetric panics (traps) on a failing status, like the Rust
	// plugin's unwrap().
	v.counter = proxywasm.DefineCounterMetric("ticker_ticks")
	util.Must(proxywasm.SetTickPeriodMilliSeconds(10), "set_tick_period_milliseconds")
	return types.OnVMStartStatusOK
}

func (v *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &ticker{vm: v}
}

type ticker struct {
	types.DefaultPluginContext
	vm    *vmContext
	ticks uint64
}

func (t *ticker) OnTick() {
	t.ticks++
	t.vm.counter.Increment(1)
	// cas 0: unconditional write, the ticker is the only writer.
	util.Must(proxywasm.SetSharedData("ticker/last", []byte(strconv.FormatUint(t.ticks, 10)), 0), "set_shared_data")
}

// A pass-through HTTP context, so attaching the plugin to a listener is harmless.
func (*ticker) NewHttpContext(uint32) types.HttpContext {
	return &types.DefaultHttpContext{}
}
