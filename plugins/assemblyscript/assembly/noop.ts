// `noop`: the latency floor (contract: plugins/rust/README.md). A root and
// HTTP context that continue everywhere and make no host call of their own.
// Whatever a request costs with this plugin is the host's per-request
// overhead of running an AssemblyScript SDK plugin, including the SDK's own
// context bookkeeping (which logs a few debug lines per context, see
// lib/base.ts).

export * from "./lib/proxy";

import { RootContext, Context } from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";

class NoopRoot extends PolyhostRoot {
  createContext(context_id: u32): Context {
    return new PolyhostContext(context_id, this);
  }
}

registerRoot("noop", (context_id: u32): RootContext => new NoopRoot(context_id), idof<PolyhostContext>());
