// Exports for TCP (stream) filters. @solo-io/proxy-runtime 0.1.8 has the
// Context methods (onNewConnection, onDownstreamData, ...) but never exports
// the ABI callbacks that would reach them; these do, in the same style as the
// SDK's HTTP exports (with the leak-free lookup of base.ts).

import { contextOf } from "./base";

export function proxy_on_new_connection(context_id: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onNewConnection() as i32;
}

export function proxy_on_downstream_data(context_id: u32, data_size: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onDownstreamData(data_size, end_of_stream != 0) as i32;
}

export function proxy_on_upstream_data(context_id: u32, data_size: u32, end_of_stream: u32): i32 {
  let ctx = contextOf(context_id);
  return ctx.onUpstreamData(data_size, end_of_stream != 0) as i32;
}

export function proxy_on_downstream_connection_close(context_id: u32, peer_type: u32): void {
  let ctx = contextOf(context_id);
  ctx.onDownstreamConnectionClose(peer_type);
}

export function proxy_on_upstream_connection_close(context_id: u32, peer_type: u32): void {
  let ctx = contextOf(context_id);
  ctx.onUpstreamConnectionClose(peer_type);
}
