// `abi_probe`: exercises the host functions one at a time (contract:
// plugins/rust/README.md, `abi_probe`). Run it with vm_id `probe-vm`.
//
// The request header `x-case` selects what a request does; results are added
// as request headers `x-result-*`. Status names are the Rust SDK's (`NotFound`,
// `CasMismatch`, ...), so the same expectations hold for every language.
// Where the Rust plugin panics on an unexpected status (an `unwrap()` in the
// SDK), this one throws, which the SDK's abort handler turns into a critical
// log line and `proc_exit(255)`, i.e. a trap.

export * from "./lib/proxy";

import {
  RootContext,
  Context,
  FilterHeadersStatusValues,
  FilterDataStatusValues,
  FilterTrailersStatusValues,
  GrpcStatusValues,
  HeaderPair,
  LogLevelValues,
  MetricTypeValues,
  WasmResultValues,
  log,
  send_local_response,
  stream_context,
  get_current_time_nanoseconds,
  set_tick_period_milliseconds,
  define_metric,
  increment_metric,
  record_metric,
  enqueue_shared_queue,
  replace_header_map_value,
  continue_request,
  proxy_set_effective_context,
} from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, PolyhostContext, registerRoot } from "./lib/base";
import {
  OK, NOT_FOUND, CAS_MISMATCH,
  REQUEST_HEADERS, RESPONSE_TRAILERS, HTTP_CALL_RESPONSE_HEADERS,
  HTTP_REQUEST_BODY, HTTP_RESPONSE_BODY, HTTP_CALL_RESPONSE_BODY, GRPC_RECEIVE_BUFFER,
  VM_CONFIGURATION, CALL_DATA,
  statusName, getHeader, addHeaderBytes, setHeaderPairs, serializePairs, getBuffer, setBuffer,
  utf8, concat, logBytes, utf8Lossy, lossyString, replaceAll, hex, parseU64, trim,
  isValidUtf8, getLogLevel, getSharedData, setSharedData, registerSharedQueue,
  resolveSharedQueue, dequeueSharedQueue, getMetric, getProperty, setProperty,
  callForeignFunction, grpcCall, grpcStream, grpcSend, grpcCancel, orElse,
} from "./lib/host";

const VM_ID = "probe-vm";
const QUEUE_NAME = "probe-queue";
const SHARED_KEY = "probe/counter";
const CALLOUT_TIMEOUT_MS: u32 = 500;

function defineMetric(typ: MetricTypeValues, name: string): u32 {
  let r = define_metric(typ, name);
  if (r.result != WasmResultValues.Ok) {
    throw new Error("define_metric(" + name + ") failed: " + statusName(r.result));
  }
  return r.metric_id;
}

// Metric ids, defined once per VM.
class Metrics {
  requests: u32;
  gauge: u32;
  latency: u32;
  ticks: u32;

  constructor() {
    this.requests = defineMetric(MetricTypeValues.Counter, "probe_requests");
    this.gauge = defineMetric(MetricTypeValues.Gauge, "probe_gauge");
    this.latency = defineMetric(MetricTypeValues.Histogram, "probe_latency");
    this.ticks = defineMetric(MetricTypeValues.Counter, "probe_ticks");
  }
}

// Who owns an outstanding gRPC token, and whether it is a unary call.
class GrpcOwner {
  probe: Probe;
  unary: bool;
  constructor(probe: Probe, unary: bool) {
    this.probe = probe;
    this.unary = unary;
  }
}

class ProbeRoot extends PolyhostRoot {
  metrics: Metrics | null = null;
  // The SDK has no gRPC support; the root routes gRPC callbacks by token,
  // as the Rust SDK does.
  grpcOwners: Map<u32, GrpcOwner> = new Map();

  createContext(context_id: u32): Context {
    // Defining here is only a fallback for a host that skipped vm_start;
    // define_metric is idempotent per name.
    if (this.metrics === null) this.metrics = new Metrics();
    return new Probe(context_id, this, this.metrics as Metrics);
  }

  onStart(vm_configuration_size: usize): bool {
    this.metrics = new Metrics();
    let q = registerSharedQueue(QUEUE_NAME);
    if (q.status != OK) {
      throw new Error("register_shared_queue failed: " + statusName(q.status));
    }
    // A VM configuration that is a decimal number turns on the tick timer
    // with that period in milliseconds; anything else leaves it off.
    let vmConfig = getBuffer(VM_CONFIGURATION, 0, u32.MAX_VALUE).data;
    if (isValidUtf8(vmConfig)) {
      let period = parseU64(trim(String.UTF8.decode(vmConfig)));
      if (period.ok && period.value > 0) {
        set_tick_period_milliseconds(<u32>period.value);
      }
    }
    return true;
  }

  onTick(): void {
    if (this.metrics !== null) {
      increment_metric((this.metrics as Metrics).ticks, 1);
    }
  }

  onQueueReady(queue_id: u32): void {
    // Drain everything: the host may coalesce readiness signals.
    while (true) {
      let item = dequeueSharedQueue(queue_id);
      if (item.status != OK) break;
      logBytes(LogLevelValues.info, concat(utf8("probe queue: "), utf8Lossy(item.data)));
    }
  }

  onForeignFunction(function_id: u32, arguments_size: u32): void {
    let args = getBuffer(CALL_DATA, 0, arguments_size).data;
    logBytes(LogLevelValues.info, concat(
      utf8("probe foreign: function_id=" + function_id.toString() + " args="), utf8Lossy(args)));
  }

  trackGrpc(token: u32, probe: Probe, unary: bool): void {
    this.grpcOwners.set(token, new GrpcOwner(probe, unary));
  }

  // Forgets the tokens a finished request still owns (a cancelled stream's
  // token is kept until then, so a host's stray close after a cancel is
  // logged, as by the Rust plugin).
  forgetGrpc(probe: Probe): void {
    let tokens = this.grpcOwners.keys();
    for (let i = 0; i < tokens.length; i++) {
      let owner = this.grpcOwners.get(tokens[i]);
      if (owner.probe === probe) this.grpcOwners.delete(tokens[i]);
    }
  }

  // Looks the token up and makes its context the effective one, or logs at
  // trace (the Rust SDK's wording) and returns null.
  grpcOwner(token: u32, unknownMessage: string): GrpcOwner | null {
    if (!this.grpcOwners.has(token)) {
      log(LogLevelValues.trace, unknownMessage);
      return null;
    }
    let owner = this.grpcOwners.get(token);
    proxy_set_effective_context(owner.probe.context_id);
    return owner;
  }

  on_grpc_receive_initial_metadata(token: u32, headers: u32): void {
    let owner = this.grpcOwner(token, "on_grpc_receive_initial_metadata: invalid token_id");
    if (owner !== null && !owner.unary) owner.probe.streamInitial = <i64>headers;
  }

  on_grpc_trailing_metadata(token: u32, trailers: u32): void {
    let owner = this.grpcOwner(token, "on_grpc_receive_trailing_metadata: invalid token_id");
    if (owner !== null && !owner.unary) owner.probe.streamTrailing = <i64>trailers;
  }

  on_grpc_receive(token: u32, response_size: u32): void {
    let owner = this.grpcOwner(token, "on_grpc_receive_initial_metadata: invalid token_id");
    if (owner === null) return;
    if (owner.unary) {
      // A unary response is final.
      this.grpcOwners.delete(token);
      owner.probe.onGrpcCallResponse(0, response_size);
    } else {
      owner.probe.onGrpcStreamMessage(response_size);
    }
  }

  on_grpc_close(token: u32, status_code: u32): void {
    let owner = this.grpcOwner(token, "on_grpc_close: invalid token_id, a non-connected stream has closed");
    if (owner === null) return;
    this.grpcOwners.delete(token);
    if (owner.unary) {
      owner.probe.onGrpcCallResponse(status_code, 0);
    } else {
      owner.probe.onGrpcStreamClose(token, status_code);
    }
  }
}

function orNone(r: ArrayBuffer | null): ArrayBuffer {
  if (r === null || r.byteLength == 0) return utf8("none");
  return utf8Lossy(r as ArrayBuffer);
}

function dispatchFailed(status: u32): FilterHeadersStatusValues {
  send_local_response(503, "", utf8("dispatch failed: " + statusName(status)), [],
    GrpcStatusValues.InvalidCode);
  return FilterHeadersStatusValues.StopIteration;
}

function warnIfFailed(status: u32): void {
  if (status != OK) {
    log(LogLevelValues.warn, "probe: metric write failed: " + statusName(status));
  }
}

// A metric's value in decimal, or the status name if reading it fails.
function metricText(id: u32): string {
  let r = getMetric(id);
  if (r.status != OK) return statusName(r.status);
  return r.value.toString();
}

function pair(k: string, v: string): HeaderPair {
  return new HeaderPair(utf8(k), utf8(v));
}

// The http-call case's callback (the SDK calls it with the origin context
// already made effective).
function onAuthResponse(origin: Context, num_headers: u32, body_size: usize, num_trailers: u32): void {
  let probe = changetype<Probe>(origin);
  // A failed or timed-out callout arrives with no headers at all.
  if (num_headers == 0) {
    send_local_response(503, "", utf8("callout failed"), [], GrpcStatusValues.InvalidCode);
    return;
  }
  let status = getHeader(HTTP_CALL_RESPONSE_HEADERS, ":status");
  let body = getBuffer(HTTP_CALL_RESPONSE_BODY, 0, <u32>body_size).data;
  let auth = getHeader(HTTP_CALL_RESPONSE_HEADERS, "x-auth");
  probe.result("x-result-status", status === null ? utf8("none") : utf8Lossy(status as ArrayBuffer));
  probe.result("x-result-body", utf8Lossy(body));
  probe.result("x-result-callout-header", auth === null ? utf8("none") : utf8Lossy(auth as ArrayBuffer));
  continue_request();
}

class Probe extends PolyhostContext {
  metrics: Metrics;
  // Value of x-case, remembered for the later callbacks.
  case: string = "";
  // Value of x-body-op for the body case.
  bodyOp: string = "";
  // gRPC stream state for the grpc-stream case (-1: not seen).
  streamMessages: ArrayBuffer = new ArrayBuffer(0);
  streamInitial: i64 = -1;
  streamTrailing: i64 = -1;

  constructor(context_id: u32, root: RootContext, metrics: Metrics) {
    super(context_id, root);
    this.metrics = metrics;
  }

  probeRoot(): ProbeRoot {
    let root = this.root_context;
    return changetype<ProbeRoot>(root);
  }

  onDelete(): void {
    this.probeRoot().forgetGrpc(this);
  }

  // Results are *added*, so a result never depends on whether the host's
  // replace also inserts missing keys.
  result(name: string, value: ArrayBuffer): void {
    addHeaderBytes(REQUEST_HEADERS, name, value);
  }

  resultStr(name: string, value: string): void {
    this.result(name, utf8(value));
  }

  header(name: string): string {
    let v = getHeader(REQUEST_HEADERS, name);
    return v === null ? "" : lossyString(v as ArrayBuffer);
  }

  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.case = this.header("x-case");
    let c = this.case;
    if (c == "log") return this.caseLog();
    if (c == "time") return this.caseTime();
    if (c == "headers") return this.caseHeaders();
    if (c == "bytes-header") return this.caseBytesHeader();
    if (c == "local") return this.caseLocal();
    if (c == "grpc-status") return this.caseGrpcStatus();
    if (c == "body") {
      this.bodyOp = this.header("x-body-op");
      return FilterHeadersStatusValues.Continue;
    }
    if (c == "http-call") return this.caseHttpCall();
    if (c == "grpc-call") return this.caseGrpcCall();
    if (c == "grpc-stream") return this.caseGrpcStream();
    if (c == "grpc-cancel") return this.caseGrpcCancel();
    if (c == "shared") return this.caseShared();
    if (c == "queue") return this.caseQueue();
    if (c == "metrics") return this.caseMetrics();
    if (c == "property") return this.caseProperty();
    if (c == "foreign") return this.caseForeign();
    if (c == "trap") throw new Error("probe trap");
    // "done", "trailers" (acts later) and anything unknown.
    return FilterHeadersStatusValues.Continue;
  }

  caseLog(): FilterHeadersStatusValues {
    log(LogLevelValues.trace, "probe trace");
    log(LogLevelValues.debug, "probe debug");
    log(LogLevelValues.info, "probe info");
    log(LogLevelValues.warn, "probe warn");
    log(LogLevelValues.error, "probe error");
    log(LogLevelValues.critical, "probe critical");
    let level = getLogLevel();
    if (level.status != OK) {
      throw new Error("proxy_get_log_level failed: " + statusName(level.status));
    }
    this.resultStr("x-result-log-level", level.value.toString());
    return FilterHeadersStatusValues.Continue;
  }

  caseTime(): FilterHeadersStatusValues {
    this.resultStr("x-result-time", get_current_time_nanoseconds().toString());
    return FilterHeadersStatusValues.Continue;
  }

  caseHeaders(): FilterHeadersStatusValues {
    let pairs = stream_context.headers.request.get_headers();
    let count = pairs.length;
    let nope = getHeader(REQUEST_HEADERS, "x-nope");
    let missing = nope === null ? utf8("none") : concat(utf8("present:"), utf8Lossy(nope as ArrayBuffer));
    // Replace the whole map: every original pair (x-case included), in
    // order, followed by the results gathered so far.
    let keys = new Array<ArrayBuffer>();
    let values = new Array<ArrayBuffer>();
    for (let i = 0; i < count; i++) {
      keys.push(pairs[i].key);
      values.push(pairs[i].value);
    }
    keys.push(utf8("x-result-count"));
    values.push(utf8(count.toString()));
    keys.push(utf8("x-result-missing"));
    values.push(missing);
    keys.push(utf8("x-result-rewritten"));
    values.push(utf8("yes"));
    let set = setHeaderPairs(REQUEST_HEADERS, keys, values);
    if (set != OK) throw new Error("set_header_map_pairs failed: " + statusName(set));
    let size = stream_context.headers.request.get_headers().length;
    this.resultStr("x-result-size", size.toString());
    return FilterHeadersStatusValues.Continue;
  }

  caseBytesHeader(): FilterHeadersStatusValues {
    // 0xC3 0x28 is not valid UTF-8; nothing later reads the whole map.
    let bad = new ArrayBuffer(2);
    store<u8>(changetype<usize>(bad), 0xC3);
    store<u8>(changetype<usize>(bad) + 1, 0x28);
    replace_header_map_value(REQUEST_HEADERS, utf8("x-result-bytes"), bad);
    let back = getHeader(REQUEST_HEADERS, "x-result-bytes");
    this.resultStr("x-result-bytes-hex", back === null ? "none" : hex(back as ArrayBuffer));
    return FilterHeadersStatusValues.Continue;
  }

  caseLocal(): FilterHeadersStatusValues {
    let path = getHeader(REQUEST_HEADERS, ":path");
    let status: u32 = 418;
    let xs = getHeader(REQUEST_HEADERS, "x-status");
    if (xs !== null) {
      let parsed = parseU64(lossyString(xs as ArrayBuffer), <u64>u32.MAX_VALUE);
      if (parsed.ok) status = <u32>parsed.value;
    }
    let body = concat(utf8("local:"), path === null ? new ArrayBuffer(0) : utf8Lossy(path as ArrayBuffer));
    send_local_response(status, "", body, [pair("x-local", "1")], GrpcStatusValues.InvalidCode);
    return FilterHeadersStatusValues.StopIteration;
  }

  caseGrpcStatus(): FilterHeadersStatusValues {
    // What the Rust SDK's send_grpc_response does: HTTP 200, the gRPC
    // message as the body, the gRPC status as grpc_status.
    send_local_response(200, "", utf8("denied"), [], GrpcStatusValues.PermissionDenied);
    return FilterHeadersStatusValues.StopIteration;
  }

  caseHttpCall(): FilterHeadersStatusValues {
    let headers: Array<HeaderPair> = [
      pair(":method", "GET"),
      pair(":path", "/check"),
      pair(":authority", "auth"),
      pair("x-from", "probe"),
    ];
    let status = this.root_context.httpCall("auth-cluster", headers, utf8("ping"), [],
      CALLOUT_TIMEOUT_MS, this, onAuthResponse);
    if (status != WasmResultValues.Ok) return dispatchFailed(status);
    return FilterHeadersStatusValues.StopIteration;
  }

  caseGrpcCall(): FilterHeadersStatusValues {
    let metadata = serializePairs([utf8("x-md")], [utf8("1")]);
    let r = grpcCall("grpc-cluster", "pkg.Service", "Method", metadata, utf8("req"), CALLOUT_TIMEOUT_MS);
    if (r.status != OK) return dispatchFailed(r.status);
    this.probeRoot().trackGrpc(r.value, this, true);
    return FilterHeadersStatusValues.StopIteration;
  }

  // Opens the stream and sends "m1". Returns the status and (in `value`) the
  // token.
  openStream(): Array<u32> {
    let r = grpcStream("grpc-cluster", "pkg.Service", "Stream", serializePairs([], []));
    if (r.status != OK) return [r.status, 0];
    this.probeRoot().trackGrpc(r.value, this, false);
    let sent = grpcSend(r.value, utf8("m1"), false);
    return [sent, r.value];
  }

  caseGrpcStream(): FilterHeadersStatusValues {
    let opened = this.openStream();
    if (opened[0] != OK) return dispatchFailed(opened[0]);
    return FilterHeadersStatusValues.StopIteration;
  }

  // Cancelling is final: no gRPC callback follows, so the request is not
  // paused. The second cancel of the same token reports the host's status.
  caseGrpcCancel(): FilterHeadersStatusValues {
    let opened = this.openStream();
    if (opened[0] != OK) return dispatchFailed(opened[0]);
    let first = grpcCancel(opened[1]);
    this.resultStr("x-result-cancel", first == OK ? "ok" : statusName(first));
    let again = grpcCancel(opened[1]);
    this.resultStr("x-result-cancel-again", again == OK ? "ok" : statusName(again));
    return FilterHeadersStatusValues.Continue;
  }

  caseShared(): FilterHeadersStatusValues {
    let got = getSharedData(SHARED_KEY);
    let current: u64 = 0;
    let cas: u32 = 0;
    if (got.status == OK) {
      cas = got.cas;
      if (isValidUtf8(got.value)) {
        let parsed = parseU64(String.UTF8.decode(got.value));
        if (parsed.ok) current = parsed.value;
      }
    }
    let next = utf8((current + 1).toString());
    let set = setSharedData(SHARED_KEY, next, cas);
    this.result("x-result-shared", set == OK ? next : utf8(statusName(set)));

    // Make a cas stale on purpose: read the current cas, write the same value
    // with it (which bumps the cas), then write again with the now-outdated
    // cas. Works on the very first request too.
    let now = getSharedData(SHARED_KEY);
    let casNow: u32 = now.status == OK ? now.cas : 0;
    setSharedData(SHARED_KEY, next, casNow);
    let stale = setSharedData(SHARED_KEY, next, casNow);
    let outcome = stale == CAS_MISMATCH ? "mismatch" : "other:" + statusName(stale);
    this.resultStr("x-result-cas", outcome);
    return FilterHeadersStatusValues.Continue;
  }

  caseQueue(): FilterHeadersStatusValues {
    let path = getHeader(REQUEST_HEADERS, ":path");
    let q = resolveSharedQueue(VM_ID, QUEUE_NAME);
    let outcome: string;
    if (q.status == NOT_FOUND) {
      outcome = "missing";
    } else if (q.status != OK) {
      outcome = "error:" + statusName(q.status);
    } else {
      let e = enqueue_shared_queue(q.value, orElse(path, new ArrayBuffer(0)));
      outcome = e == WasmResultValues.Ok ? "enqueued" : "error:" + statusName(e);
    }
    this.resultStr("x-result-queue", outcome);
    return FilterHeadersStatusValues.Continue;
  }

  caseMetrics(): FilterHeadersStatusValues {
    let m = this.metrics;
    warnIfFailed(increment_metric(m.requests, 1));
    warnIfFailed(record_metric(m.gauge, 42));
    warnIfFailed(record_metric(m.latency, 7));
    this.resultStr("x-result-counter", metricText(m.requests));
    this.resultStr("x-result-gauge", metricText(m.gauge));
    return FilterHeadersStatusValues.Continue;
  }

  property(path: string): ArrayBuffer {
    let r = getProperty(utf8(path));
    if (r.status == OK) return orNone(r.data);
    if (r.status == NOT_FOUND) return utf8("none");
    return utf8("error:" + statusName(r.status));
  }

  caseProperty(): FilterHeadersStatusValues {
    this.result("x-result-path", this.property("request\0path"));
    this.result("x-result-plugin", this.property("plugin_name"));
    // The Rust SDK traps unless the host answers Ok here.
    let set = setProperty(utf8("probe\0prop"), utf8("v1"));
    if (set != OK) throw new Error("set_property failed: " + statusName(set));
    this.result("x-result-prop", this.property("probe\0prop"));
    return FilterHeadersStatusValues.Continue;
  }

  caseForeign(): FilterHeadersStatusValues {
    let echo = callForeignFunction("echo", utf8("abc"));
    this.result("x-result-foreign", echo.status == OK ? orNone(echo.data) : utf8("error:" + statusName(echo.status)));
    let missing = callForeignFunction("nope", new ArrayBuffer(0));
    this.resultStr("x-result-foreign-missing", missing.status == OK ? "unexpected-ok" : statusName(missing.status));
    return FilterHeadersStatusValues.Continue;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (this.case != "body") return FilterDataStatusValues.Continue;
    // Pause until the end so the host buffers the whole body.
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    let size = <u32>body_buffer_length;
    if (this.bodyOp == "replace") {
      let body = getBuffer(HTTP_REQUEST_BODY, 0, size).data;
      setBuffer(HTTP_REQUEST_BODY, 0, size, replaceAll(body, utf8("foo"), utf8("bar")));
    } else if (this.bodyOp == "prepend") {
      setBuffer(HTTP_REQUEST_BODY, 0, 0, utf8("<<"));
    } else if (this.bodyOp == "append") {
      setBuffer(HTTP_REQUEST_BODY, size, 0, utf8(">>"));
    }
    return FilterDataStatusValues.Continue;
  }

  onRequestTrailers(num_trailers: u32): FilterTrailersStatusValues {
    if (this.case == "trailers") {
      stream_context.trailers.request.add("x-result-trailer", "seen");
    }
    return FilterTrailersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    // Not buffered: "!" goes after the last chunk the host delivers.
    if (this.case == "body" && end_of_stream) {
      setBuffer(HTTP_RESPONSE_BODY, <u32>body_buffer_length, 0, utf8("!"));
    }
    return FilterDataStatusValues.Continue;
  }

  onResponseTrailers(num_trailers: u32): FilterTrailersStatusValues {
    if (this.case == "trailers" && getHeader(RESPONSE_TRAILERS, "grpc-status") !== null) {
      stream_context.trailers.response.replace("grpc-status", "0");
    }
    return FilterTrailersStatusValues.Continue;
  }

  // Unary gRPC: the answer (status 0 with a message, or a close with a status).
  onGrpcCallResponse(status_code: u32, response_size: u32): void {
    let body: ArrayBuffer = utf8("none");
    if (response_size > 0) {
      let r = getBuffer(GRPC_RECEIVE_BUFFER, 0, response_size);
      if (r.status == OK) body = utf8Lossy(r.data);
    }
    this.resultStr("x-result-grpc-status", status_code.toString());
    this.result("x-result-grpc-body", body);
    continue_request();
  }

  onGrpcStreamMessage(message_size: u32): void {
    let message = getBuffer(GRPC_RECEIVE_BUFFER, 0, message_size).data;
    this.streamMessages = concat(this.streamMessages, utf8Lossy(message));
  }

  onGrpcStreamClose(token: u32, status_code: u32): void {
    if (this.case != "grpc-stream") {
      // Only grpc-stream waits for a close; anything else is a host bug worth
      // seeing in the log (e.g. a close after grpc-cancel).
      log(LogLevelValues.warn, "probe: unexpected grpc close token=" + token.toString()
        + " status=" + status_code.toString());
      return;
    }
    this.result("x-result-stream", this.streamMessages);
    this.resultStr("x-result-stream-status", status_code.toString());
    this.resultStr("x-result-stream-initial", this.streamInitial < 0 ? "none" : this.streamInitial.toString());
    this.resultStr("x-result-stream-trailing", this.streamTrailing < 0 ? "none" : this.streamTrailing.toString());
    continue_request();
  }
}

registerRoot("abi_probe", (context_id: u32): RootContext => new ProbeRoot(context_id), idof<Probe>());
