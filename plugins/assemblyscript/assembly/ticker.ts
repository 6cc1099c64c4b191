// `ticker`: exercises the timer (contract: plugins/rust/README.md). Sets a
// 10 ms tick period at VM start; every tick increments the counter
// ticker_ticks and stores the number of ticks this root context has seen, in
// decimal, in shared data under "ticker/last". HTTP traffic passes through.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  MetricTypeValues,
  WasmResultValues,
  define_metric,
  increment_metric,
  set_tick_period_milliseconds,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { OK, setSharedData, statusName, utf8 } from "./lib/host";

class Ticker extends PolyhostRoot {
  // Id of the ticker_ticks counter.
  counter: u32 = 0;
  // Ticks seen by this root context.
  ticks: u64 = 0;

  onStart(vm_configuration_size: usize): bool {
    let r = define_metric(MetricTypeValues.Counter, "ticker_ticks");
    if (r.result != WasmResultValues.Ok) {
      throw new Error("define_metric failed: " + statusName(r.result));
    }
    this.counter = r.metric_id;
    set_tick_period_milliseconds(10);
    return true;
  }

  onTick(): void {
    this.ticks++;
    increment_metric(this.counter, 1);
    // cas 0: unconditional write, the ticker is the only writer.
    let status = setSharedData("ticker/last", utf8(this.ticks.toString()), 0);
    if (status != OK) throw new Error("set_shared_data failed: " + statusName(status));
  }

  // A pass-through HTTP context, so attaching the plugin to a listener is
  // harmless.
  createContext(context_id: u32): Context {
    return new PolyhostContext(context_id, this);
  }
}

registerRoot("ticker", (context_id: u32): RootContext => new Ticker(context_id), idof<PolyhostContext>());
