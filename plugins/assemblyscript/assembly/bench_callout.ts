// `bench_callout`: the callout workload of the latency comparison (contract:
// plugins/rust/README.md). Request headers dispatch GET / to cluster
// `bench-cluster` (authority `bench`, no body, no trailers, 1000 ms timeout)
// and pause; the callout's answer adds the request header
// `x-callout-status: <callout :status, or none>` and resumes the request. A
// refused dispatch leaves nothing to wait for: the request continues.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterHeadersStatusValues,
  HeaderPair,
  WasmResultValues,
  continue_request,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import {
  REQUEST_HEADERS, HTTP_CALL_RESPONSE_HEADERS,
  getHeader, addHeaderBytes, utf8, utf8Lossy,
} from "./lib/host";

class BenchRoot extends PolyhostRoot {
  createContext(context_id: u32): Context {
    return new BenchCallout(context_id, this);
  }
}

// Called by the SDK with the origin context already made effective.
function onBenchResponse(origin: Context, num_headers: u32, body_size: usize, num_trailers: u32): void {
  let status = getHeader(HTTP_CALL_RESPONSE_HEADERS, ":status");
  addHeaderBytes(REQUEST_HEADERS, "x-callout-status",
    status === null ? utf8("none") : utf8Lossy(status as ArrayBuffer));
  continue_request();
}

class BenchCallout extends PolyhostContext {
  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    let headers: Array<HeaderPair> = [
      new HeaderPair(utf8(":method"), utf8("GET")),
      new HeaderPair(utf8(":path"), utf8("/")),
      new HeaderPair(utf8(":authority"), utf8("bench")),
    ];
    let status = this.root_context.httpCall("bench-cluster", headers, new ArrayBuffer(0), [],
      1000, this, onBenchResponse);
    if (status != WasmResultValues.Ok) {
      return FilterHeadersStatusValues.Continue;
    }
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRoot("bench_callout", (context_id: u32): RootContext => new BenchRoot(context_id), idof<BenchCallout>());
