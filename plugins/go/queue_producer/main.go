// queue_producer: the sending half of the shared-queue pair (as
// plugins/rust/queue_producer). For every request it resolves the queue
// "events" of vm_id "queue-vm", enqueues the request's :path and reports the
// outcome in the request header x-enqueued (yes / no).
package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/rawabi"
	"polyhost.test/plugins/go/internal/util"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &producer{} })
}

type producer struct {
	types.DefaultHttpContext
}

func (*producer) OnHttpRequestHeaders(int, bool) types.Action {
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		path = ""
	}
	enqueued := "no"
	// Resolved per request, so the producer copes with the consumer
	// starting after it.
	queueID, err := proxywasm.ResolveSharedQueue("queue-vm", "events")
	switch {
	case err == nil:
		var st error
		if path == "" {
			// The SDK's EnqueueSharedQueue indexes data[0] and would panic on
			// an empty item; call the import directly instead.
			if code := rawabi.EnqueueSharedQueue(queueID, nil); code != rawabi.OK {
				st = errors.New(util.StatusName(code))
				if code == 1 {
					st = types.ErrorStatusNotFound
				}
			}
		} else {
			st = proxywasm.EnqueueSharedQueue(queueID, []byte(path))
		}
		switch {
		case st == nil:
			enqueued = "yes"
		case errors.Is(st, types.ErrorStatusNotFound):
		default:
			panic("enqueue_shared_queue: " + util.ErrName(st))
		}
	case errors.Is(err, types.ErrorStatusNotFound):
	default:
		panic("resolve_shared_queue: " + util.ErrName(err))
	}
	util.Must(proxywasm.AddHttpRequestHeader("x-enqueued", enqueued), "add_header_map_value")
	return types.ActionContinue
}
