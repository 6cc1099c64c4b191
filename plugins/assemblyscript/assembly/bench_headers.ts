// `bench_headers`: the 60-header-operation workload used in gateway latency
// comparisons (contract: plugins/rust/README.md). In on_request_headers: add
// `fake_key_<i>: fake_value_<i>` for i in 0..20, read each back, then remove
// each. Exactly 60 host calls; the request leaves with the headers it came
// with.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterHeadersStatusValues,
  stream_context,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";

const N = 20;

class BenchRoot extends PolyhostRoot {
  createContext(context_id: u32): Context {
    return new BenchHeaders(context_id, this);
  }
}

class BenchHeaders extends PolyhostContext {
  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    // Names are formatted per request on purpose: the workload includes the
    // guest-side string work of a typical plugin.
    let headers = stream_context.headers.request;
    for (let i = 0; i < N; i++) {
      headers.add("fake_key_" + i.toString(), "fake_value_" + i.toString());
    }
    for (let i = 0; i < N; i++) {
      headers.get("fake_key_" + i.toString());
    }
    for (let i = 0; i < N; i++) {
      headers.remove("fake_key_" + i.toString());
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRoot("bench_headers", (context_id: u32): RootContext => new BenchRoot(context_id), idof<BenchHeaders>());
