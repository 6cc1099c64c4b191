// `tcp_upper`: a TCP (stream) filter (contract: plugins/rust/README.md,
// `tcp_upper`). Upper-cases ASCII flowing downstream -> upstream, prefixes
// every upstream -> downstream chunk with "> ", logs connection lifecycle
// events and counts connections.

export * from "./lib/proxy";
export * from "./lib/tcp";

import {
  RootContext,
  Context,
  FilterStatusValues,
  LogLevelValues,
  MetricTypeValues,
  PeerTypeValues,
  WasmResultValues,
  log,
  define_metric,
  increment_metric,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import { DOWNSTREAM_DATA, UPSTREAM_DATA, getBuffer, setBuffer, utf8, statusName } from "./lib/host";

function defineCounter(): u32 {
  let r = define_metric(MetricTypeValues.Counter, "tcp_connections");
  if (r.result != WasmResultValues.Ok) {
    throw new Error("define_metric failed: " + statusName(r.result));
  }
  return r.metric_id;
}

class TcpRoot extends PolyhostRoot {
  // Id of the tcp_connections counter; u32.MAX_VALUE until defined.
  connections: u32 = u32.MAX_VALUE;

  onStart(vm_configuration_size: usize): bool {
    this.connections = defineCounter();
    return true;
  }

  createContext(context_id: u32): Context {
    // define_metric is idempotent per name; this only covers a host that
    // skipped vm_start.
    if (this.connections == u32.MAX_VALUE) this.connections = defineCounter();
    return new TcpUpper(context_id, this, this.connections);
  }
}

function peerName(peer: PeerTypeValues): string {
  if (peer == PeerTypeValues.Local) return "Local";
  if (peer == PeerTypeValues.Remote) return "Remote";
  return "Unknown";
}

class TcpUpper extends PolyhostContext {
  connections: u32;

  constructor(context_id: u32, root: RootContext, connections: u32) {
    super(context_id, root);
    this.connections = connections;
  }

  onNewConnection(): FilterStatusValues {
    log(LogLevelValues.info, "tcp: new connection");
    increment_metric(this.connections, 1);
    return FilterStatusValues.Continue;
  }

  onDownstreamData(size: usize, end: bool): FilterStatusValues {
    if (size > 0) {
      let data = getBuffer(DOWNSTREAM_DATA, 0, <u32>size).data;
      let p = changetype<usize>(data);
      for (let i = 0; i < data.byteLength; i++) {
        let c = load<u8>(p + i);
        if (c >= 0x61 && c <= 0x7A) store<u8>(p + i, c - 0x20);
      }
      setBuffer(DOWNSTREAM_DATA, 0, <u32>size, data);
    }
    return FilterStatusValues.Continue;
  }

  onUpstreamData(size: usize, end: bool): FilterStatusValues {
    // An empty end-of-stream notification carries no data to mark.
    if (size > 0) {
      setBuffer(UPSTREAM_DATA, 0, 0, utf8("> "));
    }
    return FilterStatusValues.Continue;
  }

  onDownstreamConnectionClose(peer: PeerTypeValues): void {
    log(LogLevelValues.info, "tcp: downstream closed by " + peerName(peer));
  }

  onUpstreamConnectionClose(peer: PeerTypeValues): void {
    log(LogLevelValues.info, "tcp: upstream closed by " + peerName(peer));
  }
}

registerRoot("tcp_upper", (context_id: u32): RootContext => new TcpRoot(context_id), idof<TcpUpper>());
