// The export surface of every plugin here. It is what
// `export * from "@solo-io/proxy-runtime/proxy"` gives: the SDK's allocator
// (`malloc`/`free`), its ABI marker and context creation, and one export per
// callback that finds the SDK context object and calls its method. The
// callback exports are restated here instead of re-exported, for these
// reasons:
//
//  - Leak. The SDK's exports look contexts up with `getContext`/
//    `getRootContext`, which downcast the result of `Map.get` (`... as
//    Context`). AssemblyScript 0.14 never releases the reference such a
//    downcast call returns, so every callback pins its context forever (the
//    request's Context object is never freed: about 40 bytes per request,
//    measured). `contextOf`/`rootOf` (base.ts) take the same object through a
//    local and `changetype`, which releases correctly. The bodies are
//    otherwise the SDK's.
//  - `proxy_abi_version_0_2_1` is exported besides the SDK's
//    `proxy_abi_version_0_2_0`: npm's 0.1.8 still declares 0.2.0, although
//    our plugins use 0.2.1's `proxy_get_log_level`. The compiler emits this
//    module's own exports before re-exported ones, so a host that takes the
//    first known marker (as the reference host does) sees 0.2.1.
//  - `proxy_on_foreign_function` reaches the root context (the SDK's is an
//    empty "TODO: implement me").
//  - `proxy_on_grpc_receive_trailing_metadata` carries its ABI name (the SDK
//    exports it as `proxy_on_grpc_trailing_metadata`, which no host calls;
//    that name is kept as well).
//
// As in the SDK (and the reference host), callout callbacks expect the *root*
// context id as their first argument; the SDK's root context finds the
// request by token.
//
// What remains of the SDK's leak: its `proxy_on_context_create` (kept, since
// the context table is private to the SDK) takes one reference to the root
// context per context it creates and never drops it. That costs no memory,
// but the 28-bit reference count would overflow after 2^28 contexts.

import { getBaseContext, deleteContext } from "@solo-io/proxy-runtime/runtime";
import { PolyhostRoot, contextOf, rootOf } from "./base";

export { malloc, free } from "@solo-io/proxy-runtime/malloc";
export { proxy_abi_version_0_2_0, proxy_on_context_create } from "@solo-io/proxy-runtime/exports";

export function proxy_abi_version_0_2_1(): void { }

// ---------------------------------------------------------------------------
// Root context.

export function proxy_on_vm_start(root_context_id: u32, configuration_size: u32): u32 {
  let root = rootOf(root_context_id);
  return root.onStart(configuration_size) ? 1 : 0;
}

export function proxy_validate_configuration(root_context_id: u32, configuration_size: u32): u32 {
  let root = rootOf(root_context_id);
  return root.validateConfiguration(configuration_size) ? 1 : 0;
}

export function proxy_on_configure(root_context_id: u32, configuration_size: u32): u32 {
  let root = rootOf(root_context_id);
  return root.onConfigure(configuration_size) ? 1 : 0;
}

export function proxy_on_tick(root_context_id: u32): void {
  let root = rootOf(root_context_id);
  root.onTick();
}

export function proxy_on_queue_ready(root_context_id: u32, token: u32): void {
  let root = rootOf(root_context_id);
  root.onQueueReady(token);
}

export function proxy_on_foreign_function(root_context_id: u32, function_id: u32, data_size: u32): void {
  let root = rootOf(root_context_id);
  changetype<PolyhostRoot>(root).onForeignFunction(function_id, data_size);
}

// ---------------------------------------------------------------------------
// HTTP streams. Return values are the SDK's status enums as i32.

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onRequestHeaders(headers, end_of_stream != 0) as i32;
}

export function proxy_on_request_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onRequestBody(body_buffer_length, end_of_stream != 0) as i32;
}

export function proxy_on_request_trailers(context_id: u32, trailers: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onRequestTrailers(trailers) as i32;
}

export function proxy_on_request_metadata(context_id: u32, nelements: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onRequestMetadata(nelements) as i32;
}

export function proxy_on_response_headers(context_id: u32, headers: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onResponseHeaders(headers, end_of_stream != 0) as i32;
}

export function proxy_on_response_body(context_id: u32, body_buffer_length: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onResponseBody(body_buffer_length, end_of_stream != 0) as i32;
}

export function proxy_on_response_trailers(context_id: u32, trailers: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onResponseTrailers(trailers) as i32;
}

export function proxy_on_response_metadata(context_id: u32, nelements: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onResponseMetadata(nelements) as i32;
}

// ---------------------------------------------------------------------------
// Callout answers (on the root context, which routes them by token).

export function proxy_on_http_call_response(context_id: u32, token: u32, headers: u32, body_size: u32, trailers: u32): void {
  let root = rootOf(context_id);
  root.onHttpCallResponse(token, headers, body_size, trailers);
}

export function proxy_on_grpc_receive_initial_metadata(context_id: u32, token: u32, headers: u32): void {
  let root = rootOf(context_id);
  root.on_grpc_receive_initial_metadata(token, headers);
}

export function proxy_on_grpc_receive_trailing_metadata(context_id: u32, token: u32, trailers: u32): void {
  let root = rootOf(context_id);
  root.on_grpc_trailing_metadata(token, trailers);
}

// The SDK's (misspelt) name for the export above, kept for parity with it.
export function proxy_on_grpc_trailing_metadata(context_id: u32, token: u32, trailers: u32): void {
  let root = rootOf(context_id);
  root.on_grpc_trailing_metadata(token, trailers);
}

export function proxy_on_grpc_receive(context_id: u32, token: u32, response_size: u32): void {
  let root = rootOf(context_id);
  root.on_grpc_receive(token, response_size);
}

export function proxy_on_grpc_close(context_id: u32, token: u32, status_code: u32): void {
  let root = rootOf(context_id);
  root.on_grpc_close(token, status_code);
}

// ---------------------------------------------------------------------------
// End of a context.

export function proxy_on_done(context_id: u32): u32 {
  let ctx = getBaseContext(context_id);
  return ctx.onDone() ? 1 : 0;
}

// proxy_on_log comes after proxy_on_done.
export function proxy_on_log(context_id: u32): void {
  let ctx = contextOf(context_id);
  ctx.onLog();
}

export function proxy_on_delete(context_id: u32): void {
  let ctx = getBaseContext(context_id);
  ctx.onDelete();
  deleteContext(context_id);
}
