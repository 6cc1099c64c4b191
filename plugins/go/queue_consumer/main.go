// queue_consumer: the receiving half of the shared-queue pair (as
// plugins/rust/queue_consumer). Run it with vm_id "queue-vm". Registers the
// queue "events" at VM start; on proxy_on_queue_ready drains it, logging
// `consumer: <item>` and counting each item in "consumer_items". HTTP
// traffic passes through.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/util"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
	items proxywasm.MetricCounter
}

func (v *vmContext) OnVMStart(int) types.OnVMStartStatus {
	v.items = proxywasm.DefineCounterMetric("consumer_items")
	_, err := proxywasm.RegisterSharedQueue("events")
	util.Must(err, "register_shared_queue")
	return types.OnVMStartStatusOK
}

func (v *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &consumer{vm: v}
}

type consumer struct {
	types.DefaultPluginContext
	vm *vmContext
}

func (c *consumer) OnQueueReady(queueID uint32) {
	// Drain everything: readiness signals may be coalesced by the host.
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		// Stop on Empty (or any error) and, like the Rust SDK (which reads
		// an Ok without data as "no item"), on an Ok with a null pointer.
		if err != nil || item == nil {
			return
		}
		proxywasm.LogInfo("consumer: " + util.Lossy(item))
		c.vm.items.Increment(1)
	}
}

// A pass-through HTTP context, so attaching the plugin to a listener is harmless.
func (*consumer) NewHttpContext(uint32) types.HttpContext {
	return &types.DefaultHttpContext{}
}
