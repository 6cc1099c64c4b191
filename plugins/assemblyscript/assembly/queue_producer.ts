// `queue_producer`: the sending half of the shared-queue pair (contract:
// plugins/rust/README.md). For every request it resolves the queue "events"
// of vm_id "queue-vm", enqueues the request's :path and reports the outcome
// in the request header `x-enqueued`.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterHeadersStatusValues,
  WasmResultValues,
  stream_context,
  enqueue_shared_queue,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { OK, REQUEST_HEADERS, getHeader, resolveSharedQueue, orElse } from "./lib/host";

class ProducerRoot extends PolyhostRoot {
  createContext(context_id: u32): Context {
    return new Producer(context_id, this);
  }
}

class Producer extends PolyhostContext {
  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let path = getHeader(REQUEST_HEADERS, ":path");
    // Resolved per request, so the producer copes with the consumer starting
    // after it.
    let enqueued = false;
    let q = resolveSharedQueue("queue-vm", "events");
    if (q.status == OK) {
      let item = orElse(path, new ArrayBuffer(0));
      enqueued = enqueue_shared_queue(q.value, item) == WasmResultValues.Ok;
    }
    stream_context.headers.request.add("x-enqueued", enqueued ? "yes" : "no");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRoot("queue_producer", (context_id: u32): RootContext => new ProducerRoot(context_id), idof<Producer>());
