//! TCP connections (network filters).

use super::{Callback, ContextId, Decision, Vm};
use crate::error::PluginError;
use crate::state::StreamProperties;
use crate::types::PeerType;
use polyhost_engine_core::Engine;

impl<E: Engine> Vm<E> {
    /// Creates a connection context under the first root context and calls
    /// `proxy_on_new_connection`.
    ///
    /// # Errors
    /// A trap, or a failed VM.
    pub fn create_tcp_stream(&mut self) -> Result<(ContextId, Decision), PluginError> {
        self.create_tcp_stream_for(ContextId(super::ROOT_CONTEXT))
    }

    /// As [`Vm::create_tcp_stream`] for the plugin whose root context is
    /// `root` ([`Vm::add_root`]).
    ///
    /// # Errors
    /// An unknown root, a trap, or a failed VM.
    pub fn create_tcp_stream_for(
        &mut self,
        root: ContextId,
    ) -> Result<(ContextId, Decision), PluginError> {
        self.create_tcp_stream_with(root, std::iter::empty())
    }

    /// As [`Vm::create_tcp_stream_for`], with `properties` (dotted path,
    /// value) set on the stream before `proxy_on_new_connection` runs, so
    /// the plugin reads the connection's addresses there, as in Envoy.
    ///
    /// # Errors
    /// An unknown root, a trap, or a failed VM.
    pub fn create_tcp_stream_with(
        &mut self,
        root: ContextId,
        properties: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(ContextId, Decision), PluginError> {
        let id = self.create_context(root)?;
        if let Some(stream) = self.stream_mut(id) {
            stream.properties.extend(properties);
        }
        self.new_connection(id)
    }

    /// As [`Vm::create_tcp_stream_for`], with `provided` answering the
    /// plugin's property reads ([`StreamState::provided`]) from
    /// `proxy_on_new_connection` on: an embedder computes a connection's
    /// attributes when one is read instead of formatting them all up front.
    ///
    /// [`StreamState::provided`]: crate::StreamState::provided
    ///
    /// # Errors
    /// An unknown root, a trap, or a failed VM.
    pub fn create_tcp_stream_provided(
        &mut self,
        root: ContextId,
        provided: StreamProperties,
    ) -> Result<(ContextId, Decision), PluginError> {
        let id = self.create_context(root)?;
        if let Some(stream) = self.stream_mut(id) {
            stream.provided = Some(provided);
        }
        self.new_connection(id)
    }

    /// Calls `proxy_on_new_connection` on the connection context `id`.
    fn new_connection(&mut self, id: ContextId) -> Result<(ContextId, Decision), PluginError> {
        let ret = self.call_in(id.0, Callback::NewConnection, &[id.0 as i32])?;
        let decision = self.decide(id, ret);
        Ok((id, decision))
    }

    fn data(
        &mut self,
        cb: Callback,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        let stream = self.stream_state(id)?;
        let buf = if cb == Callback::DownstreamData {
            &mut stream.downstream_data
        } else {
            &mut stream.upstream_data
        };
        buf.extend_from_slice(chunk);
        let size = buf.len() as i32;
        let ret = self.call_in(id.0, cb, &[id.0 as i32, size, i32::from(end_of_stream)])?;
        Ok(self.decide(id, ret))
    }

    /// Delivers bytes from the downstream peer. They are appended to the
    /// connection's downstream buffer; on `Continue` take them with
    /// [`Vm::take_downstream_data`].
    ///
    /// # Errors
    /// An unknown connection, a trap, or a failed VM.
    pub fn on_downstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.data(Callback::DownstreamData, id, chunk, end_of_stream)
    }

    /// Delivers bytes from the upstream peer.
    ///
    /// # Errors
    /// An unknown connection, a trap, or a failed VM.
    pub fn on_upstream_data(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.data(Callback::UpstreamData, id, chunk, end_of_stream)
    }

    /// Tells the plugin the downstream side closed.
    ///
    /// # Errors
    /// An unknown connection, a trap, or a failed VM.
    pub fn on_downstream_close(
        &mut self,
        id: ContextId,
        peer: PeerType,
    ) -> Result<(), PluginError> {
        self.stream_state(id)?;
        self.call_in(id.0, Callback::DownstreamClose, &[id.0 as i32, peer as i32])
            .map(|_| ())
    }

    /// Tells the plugin the upstream side closed.
    ///
    /// # Errors
    /// An unknown connection, a trap, or a failed VM.
    pub fn on_upstream_close(&mut self, id: ContextId, peer: PeerType) -> Result<(), PluginError> {
        self.stream_state(id)?;
        self.call_in(id.0, Callback::UpstreamClose, &[id.0 as i32, peer as i32])
            .map(|_| ())
    }

    /// Takes the buffered downstream bytes (to forward upstream).
    pub fn take_downstream_data(&mut self, id: ContextId) -> Vec<u8> {
        self.stream_mut(id)
            .map(|s| std::mem::take(&mut s.downstream_data))
            .unwrap_or_default()
    }

    /// Takes the buffered upstream bytes (to forward downstream).
    pub fn take_upstream_data(&mut self, id: ContextId) -> Vec<u8> {
        self.stream_mut(id)
            .map(|s| std::mem::take(&mut s.upstream_data))
            .unwrap_or_default()
    }
}
