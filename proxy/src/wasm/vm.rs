//! A plugin VM with its engine type erased, so the data plane is compiled
//! once rather than once per engine.
//!
//! The engine is chosen per plugin at run time (`vm_config.runtime`);
//! everything below that choice is monomorphised by [`polyhost::AnyEngine`],
//! and the data plane talks to the result through [`WorkerVm`]. One dynamic
//! call per plugin callback is noise next to the callback itself.

use crate::grpc::Incoming;
use polyhost::{
    ContextId, Decision, Engine, GrpcResult, HeaderMap, HttpCallResult, LocalResponse, LogLevel,
    PeerType, Plugin, PluginError, RootConfig, Shutdown, StreamEvent, StreamProperties,
    StreamState, Vm,
};
use std::time::Instant;

/// Makes VMs of one loaded plugin (shared by every worker thread).
pub(crate) trait VmFactory: Send + Sync {
    /// A new VM with `root` as its first root context, started
    /// (`proxy_on_vm_start`, `proxy_on_configure`).
    fn new_vm_as(&self, root: RootConfig) -> Result<Box<dyn WorkerVm>, PluginError>;
    /// The engine the plugin runs on.
    fn engine_name(&self) -> &'static str;
}

impl<E: Engine> VmFactory for Plugin<E> {
    fn new_vm_as(&self, root: RootConfig) -> Result<Box<dyn WorkerVm>, PluginError> {
        Ok(Box::new(Plugin::new_vm_as(self, root)?))
    }

    fn engine_name(&self) -> &'static str {
        self.engine().name()
    }
}

/// The part of [`Vm`] the data plane drives, object-safe.
pub(crate) trait WorkerVm {
    /// The root context the VM was started with.
    fn first_root(&self) -> ContextId;
    fn add_root(&mut self, root: RootConfig) -> Result<ContextId, PluginError>;
    fn shutdown_root(&mut self, root: ContextId) -> Result<Shutdown, PluginError>;
    fn create_http_stream(&mut self, root: ContextId) -> Result<ContextId, PluginError>;
    fn stream(&self, id: ContextId) -> Option<&StreamState>;
    fn stream_mut(&mut self, id: ContextId) -> Option<&mut StreamState>;
    fn on_request_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn on_request_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn on_response_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn on_response_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn on_response_trailers(
        &mut self,
        id: ContextId,
        trailers: HeaderMap,
    ) -> Result<Decision, PluginError>;
    fn take_request_body(&mut self, id: ContextId) -> Vec<u8>;
    fn take_response_body(&mut self, id: ContextId) -> Vec<u8>;
    fn encode_local_response(
        &mut self,
        id: ContextId,
        reply: LocalResponse,
    ) -> Result<LocalResponse, PluginError>;
    fn take_events(&mut self, id: ContextId) -> Vec<StreamEvent>;
    /// A TCP stream under `root` whose property reads `properties`
    /// answers, from `proxy_on_new_connection` on.
    fn create_tcp_stream(
        &mut self,
        root: ContextId,
        properties: StreamProperties,
    ) -> Result<(ContextId, Decision), PluginError>;
    fn on_downstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn on_upstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError>;
    fn take_downstream_data(&mut self, id: ContextId) -> Vec<u8>;
    fn take_upstream_data(&mut self, id: ContextId) -> Vec<u8>;
    fn on_downstream_close(&mut self, id: ContextId, peer: PeerType) -> Result<(), PluginError>;
    fn on_upstream_close(&mut self, id: ContextId, peer: PeerType) -> Result<(), PluginError>;
    fn finish_stream(&mut self, id: ContextId) -> Result<StreamState, PluginError>;
    fn deliver_http_response(
        &mut self,
        token: u32,
        result: HttpCallResult,
    ) -> Result<(), PluginError>;
    fn deliver_grpc_response(&mut self, token: u32, result: GrpcResult) -> Result<(), PluginError>;
    /// One thing that arrived on gRPC stream `token`, to its callback.
    fn deliver_grpc_stream(&mut self, token: u32, incoming: Incoming) -> Result<(), PluginError>;
    fn next_tick(&self) -> Option<Instant>;
    fn tick(&mut self, now: Instant) -> Result<bool, PluginError>;
    fn deliver_queue_ready(&mut self) -> Result<usize, PluginError>;
    fn is_failed(&self) -> bool;
    fn set_log_level(&mut self, level: LogLevel);
}

impl<E: Engine> WorkerVm for Vm<E> {
    fn first_root(&self) -> ContextId {
        // A VM always starts with one root; later roots come after it.
        Vm::roots(self)[0]
    }
    fn add_root(&mut self, root: RootConfig) -> Result<ContextId, PluginError> {
        Vm::add_root(self, root)
    }
    fn shutdown_root(&mut self, root: ContextId) -> Result<Shutdown, PluginError> {
        Vm::shutdown_root(self, root)
    }
    fn create_http_stream(&mut self, root: ContextId) -> Result<ContextId, PluginError> {
        Vm::create_http_stream_for(self, root)
    }
    fn stream(&self, id: ContextId) -> Option<&StreamState> {
        Vm::stream(self, id)
    }
    fn stream_mut(&mut self, id: ContextId) -> Option<&mut StreamState> {
        Vm::stream_mut(self, id)
    }
    fn on_request_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_request_headers(self, id, headers, end_of_stream)
    }
    fn on_request_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_request_body(self, id, chunk, end_of_stream)
    }
    fn on_response_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_response_headers(self, id, headers, end_of_stream)
    }
    fn on_response_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_response_body(self, id, chunk, end_of_stream)
    }
    fn on_response_trailers(
        &mut self,
        id: ContextId,
        trailers: HeaderMap,
    ) -> Result<Decision, PluginError> {
        Vm::on_response_trailers(self, id, trailers)
    }
    fn take_request_body(&mut self, id: ContextId) -> Vec<u8> {
        Vm::take_request_body(self, id)
    }
    fn take_response_body(&mut self, id: ContextId) -> Vec<u8> {
        Vm::take_response_body(self, id)
    }
    fn encode_local_response(
        &mut self,
        id: ContextId,
        reply: LocalResponse,
    ) -> Result<LocalResponse, PluginError> {
        Vm::encode_local_response(self, id, reply)
    }
    fn take_events(&mut self, id: ContextId) -> Vec<StreamEvent> {
        Vm::take_events(self, id)
    }
    fn create_tcp_stream(
        &mut self,
        root: ContextId,
        properties: StreamProperties,
    ) -> Result<(ContextId, Decision), PluginError> {
        Vm::create_tcp_stream_provided(self, root, properties)
    }
    fn on_downstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_downstream_data(self, id, chunk, end_of_stream)
    }
    fn on_upstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        Vm::on_upstream_data(self, id, chunk, end_of_stream)
    }
    fn take_downstream_data(&mut self, id: ContextId) -> Vec<u8> {
        Vm::take_downstream_data(self, id)
    }
    fn take_upstream_data(&mut self, id: ContextId) -> Vec<u8> {
        Vm::take_upstream_data(self, id)
    }
    fn on_downstream_close(&mut self, id: ContextId, peer: PeerType) -> Result<(), PluginError> {
        Vm::on_downstream_close(self, id, peer)
    }
    fn on_upstream_close(&mut self, id: ContextId, peer: PeerType) -> Result<(), PluginError> {
        Vm::on_upstream_close(self, id, peer)
    }
    fn finish_stream(&mut self, id: ContextId) -> Result<StreamState, PluginError> {
        Vm::finish_stream(self, id)
    }
    fn deliver_http_response(
        &mut self,
        token: u32,
        result: HttpCallResult,
    ) -> Result<(), PluginError> {
        Vm::deliver_http_response(self, token, result)
    }
    fn deliver_grpc_response(&mut self, token: u32, result: GrpcResult) -> Result<(), PluginError> {
        Vm::deliver_grpc_response(self, token, result)
    }
    fn deliver_grpc_stream(&mut self, token: u32, incoming: Incoming) -> Result<(), PluginError> {
        match incoming {
            Incoming::InitialMetadata(headers) => {
                Vm::deliver_grpc_initial_metadata(self, token, headers)
            }
            Incoming::Message(message) => Vm::deliver_grpc_message(self, token, message),
            Incoming::TrailingMetadata(trailers) => {
                Vm::deliver_grpc_trailing_metadata(self, token, trailers)
            }
            Incoming::Close { status, message } => {
                Vm::deliver_grpc_close(self, token, status, &message)
            }
        }
    }
    fn next_tick(&self) -> Option<Instant> {
        Vm::next_tick(self)
    }
    fn tick(&mut self, now: Instant) -> Result<bool, PluginError> {
        Vm::tick(self, now)
    }
    fn deliver_queue_ready(&mut self) -> Result<usize, PluginError> {
        Vm::deliver_queue_ready(self)
    }
    fn is_failed(&self) -> bool {
        Vm::is_failed(self)
    }
    fn set_log_level(&mut self, level: LogLevel) {
        Vm::set_log_level(self, level);
    }
}
