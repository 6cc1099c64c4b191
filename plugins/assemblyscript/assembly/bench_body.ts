// `bench_body`: the body workload of the latency comparison (contract:
// plugins/rust/README.md). Request headers continue; the request body is
// buffered (Pause until end_of_stream), then read whole, every `needle`
// replaced by `NEEDLE` (byte-wise), and written back with
// proxy_set_buffer_bytes(HttpRequestBody, 0, N, ...).

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterDataStatusValues,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { HTTP_REQUEST_BODY, getBuffer, setBuffer, replaceAll, utf8 } from "./lib/host";

const NEEDLE_LOWER = utf8("needle");
const NEEDLE_UPPER = utf8("NEEDLE");

class BenchRoot extends PolyhostRoot {
  createContext(context_id: u32): Context {
    return new BenchBody(context_id, this);
  }
}

class BenchBody extends PolyhostContext {
  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) {
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    let size = <u32>body_buffer_length;
    let body = getBuffer(HTTP_REQUEST_BODY, 0, size).data;
    setBuffer(HTTP_REQUEST_BODY, 0, size, replaceAll(body, NEEDLE_LOWER, NEEDLE_UPPER));
    return FilterDataStatusValues.Continue;
  }
}

registerRoot("bench_body", (context_id: u32): RootContext => new BenchRoot(context_id), idof<BenchBody>());
