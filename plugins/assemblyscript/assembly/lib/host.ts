// Host calls and byte helpers that @solo-io/proxy-runtime 0.1.8 lacks or
// gets wrong, shared by every plugin in this directory.
//
// The SDK is used wherever it works (context dispatch, logging, header
// add/replace/remove, local replies, HTTP callouts, metric definition and
// updates, enqueueing). What lives here instead:
//   - imports the SDK does not declare at all: proxy_get_log_level,
//     proxy_set_buffer_bytes (the SDK's `proxy_set_buffer_status` is bound to
//     the *get*_buffer_status import), and gRPC calls with the ABI's real
//     signatures (the SDK's proxy_grpc_call/proxy_grpc_stream declarations
//     lack the metadata parameters, so they would not link against a 0.2
//     host);
//   - wrappers whose SDK version is broken: register/resolve_shared_queue
//     (pass the token *value* as the out-pointer), get/set_shared_data (no
//     cas, wrong pointers), get_metric (calls proxy_record_metric), and two
//     that do not compile with AssemblyScript 0.14.13: dequeue_shared_queue
//     and the header manipulator's set_headers;
//   - reads that must tell "missing" from "empty": the SDK's header getters
//     answer "" for both, but the contract logs `-` / adds `none` for missing.

import { free } from "@solo-io/proxy-runtime/malloc";
import * as sdk_imports from "@solo-io/proxy-runtime/imports";
import { LogLevelValues } from "@solo-io/proxy-runtime/runtime";

// ---------------------------------------------------------------------------
// Raw imports (module "env", signatures from the proxy-wasm 0.2.1 ABI).

// @ts-ignore: decorator
@external("env", "proxy_get_log_level")
declare function proxy_get_log_level(level_ptr: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: i32, start: u32, size: u32, data: usize, len: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_grpc_call")
declare function proxy_grpc_call(up: usize, ul: usize, sp: usize, sl: usize, mp: usize, ml: usize,
  mdp: usize, mdl: usize, msgp: usize, msgl: usize, timeout_ms: u32, token_ptr: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_grpc_stream")
declare function proxy_grpc_stream(up: usize, ul: usize, sp: usize, sl: usize, mp: usize, ml: usize,
  mdp: usize, mdl: usize, token_ptr: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_grpc_send")
declare function proxy_grpc_send(token: u32, p: usize, n: usize, end_stream: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_grpc_cancel")
declare function proxy_grpc_cancel(token: u32): u32;

// ---------------------------------------------------------------------------
// Status codes (proxy-wasm WasmResult) and their names as the Rust SDK
// prints them, so result headers read the same in every language.

export const OK: u32 = 0;
export const NOT_FOUND: u32 = 1;
export const CAS_MISMATCH: u32 = 8;

export function statusName(status: u32): string {
  switch (status) {
    case 0: return "Ok";
    case 1: return "NotFound";
    case 2: return "BadArgument";
    case 3: return "SerializationFailure";
    case 4: return "ParseFailure";
    case 5: return "BadExpression";
    case 6: return "InvalidMemoryAccess";
    case 7: return "Empty";
    case 8: return "CasMismatch";
    case 9: return "ResultMismatch";
    case 10: return "InternalFailure";
    case 11: return "BrokenConnection";
    case 12: return "Unimplemented";
  }
  return "Status(" + status.toString() + ")";
}

// Map and buffer type numbers from the ABI.
export const REQUEST_HEADERS: i32 = 0;
export const RESPONSE_HEADERS: i32 = 2;
export const RESPONSE_TRAILERS: i32 = 3;
export const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;

export const HTTP_REQUEST_BODY: i32 = 0;
export const HTTP_RESPONSE_BODY: i32 = 1;
export const DOWNSTREAM_DATA: i32 = 2;
export const UPSTREAM_DATA: i32 = 3;
export const HTTP_CALL_RESPONSE_BODY: i32 = 4;
export const GRPC_RECEIVE_BUFFER: i32 = 5;
export const VM_CONFIGURATION: i32 = 6;
export const PLUGIN_CONFIGURATION: i32 = 7;
export const CALL_DATA: i32 = 8;

// ---------------------------------------------------------------------------
// Out-parameters. Host calls write through pointers; these two words are
// scratch space for them (the VM is single-threaded and host calls do not
// nest, so one set suffices). `new ArrayBuffer` keeps them in managed memory
// the runtime will never reuse while the globals hold them.

const scratch = new ArrayBuffer(16);
const OUT0: usize = changetype<usize>(scratch);
const OUT1: usize = changetype<usize>(scratch) + 4;
const OUT2: usize = changetype<usize>(scratch) + 8;

// Takes ownership of a buffer the host filled through our `malloc` export.
// Same dance as the SDK's ArrayBufferReference.toArrayBuffer: `malloc`
// retained the ArrayBuffer once for the host; the local reference keeps it
// alive, so that extra retain is dropped here. A null pointer means "no data".
function takeHostBuffer(ptr: usize): ArrayBuffer {
  if (ptr == 0) {
    return new ArrayBuffer(0);
  }
  let buffer = changetype<ArrayBuffer>(ptr);
  free(ptr);
  return buffer;
}

// The result of a call that returns bytes: status plus data (empty unless Ok).
export class BytesResult {
  status: u32;
  data: ArrayBuffer;
  constructor(status: u32, data: ArrayBuffer) {
    this.status = status;
    this.data = data;
  }
}

function bytesResult(status: u32): BytesResult {
  if (status != OK) {
    return new BytesResult(status, new ArrayBuffer(0));
  }
  return new BytesResult(OK, takeHostBuffer(<usize>load<u32>(OUT0)));
}

// ---------------------------------------------------------------------------
// Byte strings.

export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

export function ptr(b: ArrayBuffer): usize {
  return changetype<usize>(b);
}

export function concat(a: ArrayBuffer, b: ArrayBuffer): ArrayBuffer {
  let out = new ArrayBuffer(a.byteLength + b.byteLength);
  memory.copy(changetype<usize>(out), changetype<usize>(a), a.byteLength);
  memory.copy(changetype<usize>(out) + a.byteLength, changetype<usize>(b), b.byteLength);
  return out;
}

export function startsWith(haystack: ArrayBuffer, prefix: ArrayBuffer): bool {
  if (prefix.byteLength > haystack.byteLength) return false;
  return memory.compare(changetype<usize>(haystack), changetype<usize>(prefix), prefix.byteLength) == 0;
}

// Byte-wise replace of every non-overlapping `from` (left to right) with `to`,
// so bodies that are not UTF-8 keep every other byte as it was.
export function replaceAll(haystack: ArrayBuffer, from: ArrayBuffer, to: ArrayBuffer): ArrayBuffer {
  let n = haystack.byteLength;
  let m = from.byteLength;
  let src = changetype<usize>(haystack);
  let pat = changetype<usize>(from);
  // Count first, so the output is allocated once.
  let count = 0;
  if (m > 0) {
    for (let i = 0; i + m <= n;) {
      if (memory.compare(src + i, pat, m) == 0) { count++; i += m; } else { i++; }
    }
  }
  if (count == 0) {
    return haystack.slice(0);
  }
  let out = new ArrayBuffer(n + count * (to.byteLength - m));
  let dst = changetype<usize>(out);
  let o = 0;
  let i = 0;
  while (i < n) {
    if (i + m <= n && memory.compare(src + i, pat, m) == 0) {
      memory.copy(dst + o, changetype<usize>(to), to.byteLength);
      o += to.byteLength;
      i += m;
    } else {
      store<u8>(dst + o, load<u8>(src + i));
      o++;
      i++;
    }
  }
  return out;
}

export function hex(b: ArrayBuffer): string {
  const digits = "0123456789abcdef";
  let out = "";
  let p = changetype<usize>(b);
  for (let i = 0; i < b.byteLength; i++) {
    let v = <i32>load<u8>(p + i);
    out += digits.charAt(v >> 4) + digits.charAt(v & 15);
  }
  return out;
}

// Rust's String::from_utf8_lossy: every maximal invalid subsequence becomes
// one U+FFFD, so log lines and header values match the Rust plugins byte for
// byte. Returns valid UTF-8.
export function utf8Lossy(input: ArrayBuffer): ArrayBuffer {
  let n = input.byteLength;
  let src = changetype<usize>(input);
  // Worst case: every byte becomes the 3-byte replacement character.
  let out = new ArrayBuffer(n * 3);
  let dst = changetype<usize>(out);
  let o = 0;
  let i = 0;
  while (i < n) {
    let b = <u32>load<u8>(src + i);
    let len = validSequenceLength(src, i, n);
    if (len > 0) {
      memory.copy(dst + o, src + i, len);
      o += len;
      i += len;
    } else {
      // -len bytes form the invalid subpart (at least 1).
      store<u8>(dst + o, 0xEF);
      store<u8>(dst + o + 1, 0xBF);
      store<u8>(dst + o + 2, 0xBD);
      o += 3;
      i += -len;
    }
  }
  return out.slice(0, o);
}

// Length of the valid UTF-8 sequence at i, or minus the length of the
// maximal invalid subpart starting there.
function validSequenceLength(src: usize, i: i32, n: i32): i32 {
  let b = <u32>load<u8>(src + i);
  if (b < 0x80) return 1;
  let width = 0;
  let lo: u32 = 0x80;
  let hi: u32 = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    width = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    width = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    width = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  // Second byte has the lead-dependent range, the rest are plain continuations.
  for (let k = 1; k < width; k++) {
    if (i + k >= n) return -k;
    let c = <u32>load<u8>(src + i + k);
    let min = k == 1 ? lo : 0x80;
    let max = k == 1 ? hi : 0xBF;
    if (c < min || c > max) return -k;
  }
  return width;
}

export function lossyString(b: ArrayBuffer): string {
  return String.UTF8.decode(utf8Lossy(b));
}

export function isValidUtf8(b: ArrayBuffer): bool {
  let n = b.byteLength;
  let src = changetype<usize>(b);
  for (let i = 0; i < n;) {
    let len = validSequenceLength(src, i, n);
    if (len <= 0) return false;
    i += len;
  }
  return true;
}

// Rust's `str::parse::<u64>()` (or `::<u32>()` with max = u32.MAX_VALUE):
// an optional '+', then one or more ASCII digits, nothing else, no overflow.
export class ParsedU64 {
  ok: bool;
  value: u64;
  constructor(ok: bool, value: u64) {
    this.ok = ok;
    this.value = value;
  }
}

export function parseU64(s: string, max: u64 = u64.MAX_VALUE): ParsedU64 {
  let start = 0;
  if (s.length > 0 && s.charCodeAt(0) == 0x2B) start = 1;
  if (start >= s.length) return new ParsedU64(false, 0);
  let v: u64 = 0;
  for (let i = start; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return new ParsedU64(false, 0);
    let d = <u64>(c - 0x30);
    if (v > (max - d) / 10) return new ParsedU64(false, 0);
    v = v * 10 + d;
  }
  return new ParsedU64(true, v);
}

// Rust's `str::trim()`: strips characters with the Unicode White_Space
// property from both ends.
export function trim(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWhiteSpace(s.charCodeAt(a))) a++;
  while (b > a && isWhiteSpace(s.charCodeAt(b - 1))) b--;
  return s.substring(a, b);
}

function isWhiteSpace(c: i32): bool {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
    || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F
    || c == 0x205F || c == 0x3000;
}

// ---------------------------------------------------------------------------
// Logging with bytes (already valid UTF-8), for lines built from host data.

export function logBytes(level: LogLevelValues, message: ArrayBuffer): void {
  sdk_imports.proxy_log(<usize>level, changetype<usize>(message), message.byteLength);
}

export function getLogLevel(): BytesResultU32 {
  let status = proxy_get_log_level(OUT0);
  return new BytesResultU32(status, status == OK ? load<u32>(OUT0) : 0);
}

export class BytesResultU32 {
  status: u32;
  value: u32;
  constructor(status: u32, value: u32) {
    this.status = status;
    this.value = value;
  }
}

// ---------------------------------------------------------------------------
// Header maps.

// A header value, or null when the host says NotFound.
export function getHeader(map: i32, key: string): ArrayBuffer | null {
  let k = utf8(key);
  let status = sdk_imports.proxy_get_header_map_value(map, ptr(k), k.byteLength, OUT0, OUT1);
  if (status != OK) {
    return null;
  }
  return takeHostBuffer(<usize>load<u32>(OUT0));
}

// `value`, or `fallback` when it is null. A function rather than a ternary:
// AssemblyScript 0.14's reference counting mishandles `x === null ? fresh :
// x` (the existing reference is released as if it were a temporary, which
// later trips the runtime's use-after-free assertion).
export function orElse(value: ArrayBuffer | null, fallback: ArrayBuffer): ArrayBuffer {
  if (value === null) return fallback;
  return value as ArrayBuffer;
}

export function addHeaderBytes(map: i32, key: string, value: ArrayBuffer): u32 {
  let k = utf8(key);
  return sdk_imports.proxy_add_header_map_value(map, ptr(k), k.byteLength, ptr(value), value.byteLength);
}

// Serialises pairs in the ABI's header map format:
// u32 N, N x (u32 key_len, u32 value_len), N x (key 0x00 value 0x00).
export function serializePairs(keys: Array<ArrayBuffer>, values: Array<ArrayBuffer>): ArrayBuffer {
  let n = keys.length;
  let size = 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    size += keys[i].byteLength + values[i].byteLength + 2;
  }
  let out = new ArrayBuffer(size);
  let p = changetype<usize>(out);
  store<u32>(p, <u32>n);
  for (let i = 0; i < n; i++) {
    store<u32>(p + 4 + 8 * i, <u32>keys[i].byteLength);
    store<u32>(p + 8 + 8 * i, <u32>values[i].byteLength);
  }
  let o = p + 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    memory.copy(o, ptr(keys[i]), keys[i].byteLength);
    o += keys[i].byteLength;
    store<u8>(o, 0);
    o++;
    memory.copy(o, ptr(values[i]), values[i].byteLength);
    o += values[i].byteLength;
    store<u8>(o, 0);
    o++;
  }
  return out;
}

// Replaces a whole map. (The SDK's `set_headers` does not compile with
// AssemblyScript 0.14.13: it resolves `set_header_map_pairs` to itself.)
export function setHeaderPairs(map: i32, keys: Array<ArrayBuffer>, values: Array<ArrayBuffer>): u32 {
  let bytes = serializePairs(keys, values);
  return sdk_imports.proxy_set_header_map_pairs(map, ptr(bytes), bytes.byteLength);
}

// ---------------------------------------------------------------------------
// Buffers.

export function getBuffer(typ: i32, start: u32, maxSize: u32): BytesResult {
  return bytesResult(sdk_imports.proxy_get_buffer_bytes(typ, start, maxSize, OUT0, OUT1));
}

export function setBuffer(typ: i32, start: u32, size: u32, data: ArrayBuffer): u32 {
  return proxy_set_buffer_bytes(typ, start, size, ptr(data), data.byteLength);
}

// ---------------------------------------------------------------------------
// Shared data.

export class SharedValue {
  status: u32;
  value: ArrayBuffer;
  cas: u32;
  constructor(status: u32, value: ArrayBuffer, cas: u32) {
    this.status = status;
    this.value = value;
    this.cas = cas;
  }
}

export function getSharedData(key: string): SharedValue {
  let k = utf8(key);
  let status = sdk_imports.proxy_get_shared_data(ptr(k), k.byteLength, OUT0, OUT1, OUT2);
  if (status != OK) {
    return new SharedValue(status, new ArrayBuffer(0), 0);
  }
  let cas = load<u32>(OUT2);
  return new SharedValue(OK, takeHostBuffer(<usize>load<u32>(OUT0)), cas);
}

export function setSharedData(key: string, value: ArrayBuffer, cas: u32): u32 {
  let k = utf8(key);
  return sdk_imports.proxy_set_shared_data(ptr(k), k.byteLength, ptr(value), value.byteLength, cas);
}

// ---------------------------------------------------------------------------
// Shared queues. Results carry the queue id in `value`.

export function registerSharedQueue(name: string): BytesResultU32 {
  let n = utf8(name);
  let status = sdk_imports.proxy_register_shared_queue(ptr(n), n.byteLength, OUT0);
  return new BytesResultU32(status, status == OK ? load<u32>(OUT0) : 0);
}

export function resolveSharedQueue(vmId: string, name: string): BytesResultU32 {
  let v = utf8(vmId);
  let n = utf8(name);
  let status = sdk_imports.proxy_resolve_shared_queue(ptr(v), v.byteLength, ptr(n), n.byteLength, OUT0);
  return new BytesResultU32(status, status == OK ? load<u32>(OUT0) : 0);
}

export function dequeueSharedQueue(queueId: u32): BytesResult {
  return bytesResult(sdk_imports.proxy_dequeue_shared_queue(queueId, OUT0, OUT1));
}

// ---------------------------------------------------------------------------
// Metrics.

export class MetricValue {
  status: u32;
  value: u64;
  constructor(status: u32, value: u64) {
    this.status = status;
    this.value = value;
  }
}

export function getMetric(id: u32): MetricValue {
  let status = sdk_imports.proxy_get_metric(id, OUT0);
  return new MetricValue(status, status == OK ? load<u64>(OUT0) : 0);
}

// ---------------------------------------------------------------------------
// Properties and foreign functions.

export function getProperty(path: ArrayBuffer): BytesResult {
  return bytesResult(sdk_imports.proxy_get_property(ptr(path), path.byteLength, OUT0, OUT1));
}

export function setProperty(path: ArrayBuffer, value: ArrayBuffer): u32 {
  return sdk_imports.proxy_set_property(ptr(path), path.byteLength, ptr(value), value.byteLength);
}

export function callForeignFunction(name: string, args: ArrayBuffer): BytesResult {
  let n = utf8(name);
  return bytesResult(sdk_imports.proxy_call_foreign_function(ptr(n), n.byteLength,
    ptr(args), args.byteLength, OUT0, OUT1));
}

// ---------------------------------------------------------------------------
// gRPC (not in the SDK). Results carry the token in `value`.

export function grpcCall(upstream: string, service: string, method: string, metadata: ArrayBuffer,
  message: ArrayBuffer, timeoutMs: u32): BytesResultU32 {
  let u = utf8(upstream);
  let s = utf8(service);
  let m = utf8(method);
  let status = proxy_grpc_call(ptr(u), u.byteLength, ptr(s), s.byteLength, ptr(m), m.byteLength,
    ptr(metadata), metadata.byteLength, ptr(message), message.byteLength, timeoutMs, OUT0);
  return new BytesResultU32(status, status == OK ? load<u32>(OUT0) : 0);
}

export function grpcStream(upstream: string, service: string, method: string, metadata: ArrayBuffer): BytesResultU32 {
  let u = utf8(upstream);
  let s = utf8(service);
  let m = utf8(method);
  let status = proxy_grpc_stream(ptr(u), u.byteLength, ptr(s), s.byteLength, ptr(m), m.byteLength,
    ptr(metadata), metadata.byteLength, OUT0);
  return new BytesResultU32(status, status == OK ? load<u32>(OUT0) : 0);
}

export function grpcSend(token: u32, message: ArrayBuffer, endStream: bool): u32 {
  return proxy_grpc_send(token, ptr(message), message.byteLength, endStream ? 1 : 0);
}

export function grpcCancel(token: u32): u32 {
  return proxy_grpc_cancel(token);
}
