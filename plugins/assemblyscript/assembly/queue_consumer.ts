// `queue_consumer`: the receiving half of the shared-queue pair (contract:
// plugins/rust/README.md). Run it with vm_id `queue-vm`. Registers the queue
// "events" at VM start and drains it whenever the host signals it, logging
// and counting each item. HTTP traffic passes through.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  LogLevelValues,
  MetricTypeValues,
  WasmResultValues,
  define_metric,
  increment_metric,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { OK, registerSharedQueue, dequeueSharedQueue, statusName, logBytes, concat, utf8, utf8Lossy } from "./lib/host";

class Consumer extends PolyhostRoot {
  // Id of the consumer_items counter.
  items: u32 = 0;

  onStart(vm_configuration_size: usize): bool {
    let r = define_metric(MetricTypeValues.Counter, "consumer_items");
    if (r.result != WasmResultValues.Ok) {
      throw new Error("define_metric failed: " + statusName(r.result));
    }
    this.items = r.metric_id;
    let q = registerSharedQueue("events");
    if (q.status != OK) {
      throw new Error("register_shared_queue failed: " + statusName(q.status));
    }
    return true;
  }

  onQueueReady(queue_id: u32): void {
    // Drain everything: readiness signals may be coalesced by the host.
    while (true) {
      let item = dequeueSharedQueue(queue_id);
      if (item.status != OK) break;
      logBytes(LogLevelValues.info, concat(utf8("consumer: "), utf8Lossy(item.data)));
      increment_metric(this.items, 1);
    }
  }

  // A pass-through HTTP context, so attaching the plugin to a listener is
  // harmless.
  createContext(context_id: u32): Context {
    return new PolyhostContext(context_id, this);
  }
}

registerRoot("queue_consumer", (context_id: u32): RootContext => new Consumer(context_id), idof<PolyhostContext>());
