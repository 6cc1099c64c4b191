//! HTTP streams.

use super::{Callback, ContextId, Vm};
use crate::error::PluginError;
use crate::headers::HeaderMap;
use crate::state::LocalResponse;
use crate::types::{AbiVersion, Action};
use polyhost_engine_core::{Engine, HostContext};

/// What the embedder should do after a stream callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward what the plugin saw (with its edits).
    Continue,
    /// Hold the stream (for bodies: keep buffering) until the plugin resumes
    /// it (see [`Vm::take_events`]) or more data arrives.
    Pause,
    /// Answer the client with this response instead of going upstream.
    LocalResponse(LocalResponse),
}

/// Which half of an HTTP exchange.
#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

impl<E: Engine> Vm<E> {
    /// Creates an HTTP stream context (`proxy_on_context_create`) under the
    /// first root context.
    ///
    /// # Errors
    /// A trap in the callback, or a failed VM.
    pub fn create_http_stream(&mut self) -> Result<ContextId, PluginError> {
        self.create_context(ContextId(super::ROOT_CONTEXT))
    }

    /// Creates an HTTP stream context for the plugin whose root context is
    /// `root` ([`Vm::add_root`]): `proxy_on_context_create(stream, root)`.
    ///
    /// # Errors
    /// An unknown root, a trap in the callback, or a failed VM.
    pub fn create_http_stream_for(&mut self, root: ContextId) -> Result<ContextId, PluginError> {
        self.create_context(root)
    }

    /// Turns a callback's return value and the stream's state into a decision.
    pub(super) fn decide(&mut self, id: ContextId, ret: Option<i32>) -> Decision {
        if !self.encoding_local_reply
            && let Some(local) = self.stream_mut(id).and_then(|s| s.local_response.clone())
        {
            return Decision::LocalResponse(local);
        }
        match ret.map(Action::from_raw) {
            Some(Action::Pause) => Decision::Pause,
            _ => Decision::Continue,
        }
    }

    fn headers(
        &mut self,
        side: Side,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        let stream = self.stream_state(id)?;
        let (cb, n) = match side {
            Side::Request => {
                stream.request_headers = headers;
                (Callback::RequestHeaders, stream.request_headers.len())
            }
            Side::Response => {
                stream.response_headers = headers;
                (Callback::ResponseHeaders, stream.response_headers.len())
            }
        };
        let args = [id.0 as i32, n as i32, i32::from(end_of_stream)];
        // ABI 0.1.0 headers callbacks have no end_of_stream flag.
        let args = if self.instance.data().plugin.abi >= AbiVersion::V0_2_0 {
            &args[..]
        } else {
            &args[..2]
        };
        let ret = self.call_in(id.0, cb, args)?;
        Ok(self.decide(id, ret))
    }

    fn body(
        &mut self,
        side: Side,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        let stream = self.stream_state(id)?;
        let (cb, buf) = match side {
            Side::Request => (Callback::RequestBody, &mut stream.request_body),
            Side::Response => (Callback::ResponseBody, &mut stream.response_body),
        };
        buf.extend_from_slice(chunk);
        let size = buf.len() as i32;
        let ret = self.call_in(id.0, cb, &[id.0 as i32, size, i32::from(end_of_stream)])?;
        Ok(self.decide(id, ret))
    }

    fn trailers(
        &mut self,
        side: Side,
        id: ContextId,
        trailers: HeaderMap,
    ) -> Result<Decision, PluginError> {
        let stream = self.stream_state(id)?;
        let (cb, n) = match side {
            Side::Request => {
                stream.request_trailers = trailers;
                (Callback::RequestTrailers, stream.request_trailers.len())
            }
            Side::Response => {
                stream.response_trailers = trailers;
                (Callback::ResponseTrailers, stream.response_trailers.len())
            }
        };
        let ret = self.call_in(id.0, cb, &[id.0 as i32, n as i32])?;
        Ok(self.decide(id, ret))
    }

    /// Delivers request headers. Afterwards [`Vm::stream`] shows them as the
    /// plugin left them.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_request_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.headers(Side::Request, id, headers, end_of_stream)
    }

    /// Delivers a request body chunk. The chunk is appended to the stream's
    /// request body buffer and the plugin sees the whole buffer; on
    /// [`Decision::Continue`] take the (possibly edited) bytes with
    /// [`Vm::take_request_body`], on [`Decision::Pause`] keep buffering.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_request_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.body(Side::Request, id, chunk, end_of_stream)
    }

    /// Delivers request trailers.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_request_trailers(
        &mut self,
        id: ContextId,
        trailers: HeaderMap,
    ) -> Result<Decision, PluginError> {
        self.trailers(Side::Request, id, trailers)
    }

    /// Delivers response headers.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_response_headers(
        &mut self,
        id: ContextId,
        headers: HeaderMap,
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.headers(Side::Response, id, headers, end_of_stream)
    }

    /// Delivers a response body chunk (buffered as for requests).
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_response_body(
        &mut self,
        id: ContextId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Decision, PluginError> {
        self.body(Side::Response, id, chunk, end_of_stream)
    }

    /// Delivers response trailers.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn on_response_trailers(
        &mut self,
        id: ContextId,
        trailers: HeaderMap,
    ) -> Result<Decision, PluginError> {
        self.trailers(Side::Response, id, trailers)
    }

    /// Runs a local reply through the stream's response callbacks, as
    /// Envoy's encoder path does for `proxy_send_local_response`, a direct
    /// response or an error it generates: `proxy_on_response_headers` with
    /// [`LocalResponse::response_headers`], then `proxy_on_response_body`
    /// with the body, if any. Returns the reply as the plugin left it (its
    /// header and body edits, a changed `:status`).
    ///
    /// While the reply is being encoded the plugin can no longer pause or
    /// replace it: as in Envoy, a second local reply is ignored, and a
    /// paused callback is continued.
    ///
    /// # Errors
    /// An unknown stream, a trap, or a failed VM.
    pub fn encode_local_response(
        &mut self,
        id: ContextId,
        reply: LocalResponse,
    ) -> Result<LocalResponse, PluginError> {
        self.encoding_local_reply = true;
        let result = self.encode_local_response_inner(id, reply);
        self.encoding_local_reply = false;
        result
    }

    fn encode_local_response_inner(
        &mut self,
        id: ContextId,
        mut reply: LocalResponse,
    ) -> Result<LocalResponse, PluginError> {
        let has_body = !reply.body.is_empty();
        self.on_response_headers(id, reply.response_headers(), !has_body)?;
        let mut headers = self
            .stream_mut(id)
            .map(|s| s.response_headers.clone())
            .unwrap_or_default();
        if has_body {
            let body = std::mem::take(&mut reply.body);
            self.on_response_body(id, &body, true)?;
            reply.body = self.take_response_body(id);
        }
        if let Some(status) = headers.get_str(":status").and_then(|s| s.parse().ok()) {
            reply.status = status;
        }
        if let Some(grpc) = headers.get_str("grpc-status").and_then(|s| s.parse().ok()) {
            reply.grpc_status = Some(grpc);
        }
        headers.remove(":status");
        headers.remove("grpc-status");
        reply.headers = headers;
        Ok(reply)
    }

    /// Takes the buffered request body (to forward it after `Continue`).
    pub fn take_request_body(&mut self, id: ContextId) -> Vec<u8> {
        self.stream_mut(id)
            .map(|s| std::mem::take(&mut s.request_body))
            .unwrap_or_default()
    }

    /// Takes the buffered response body.
    pub fn take_response_body(&mut self, id: ContextId) -> Vec<u8> {
        self.stream_mut(id)
            .map(|s| std::mem::take(&mut s.response_body))
            .unwrap_or_default()
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        self.instance.engine_name()
    }
}

impl LocalResponse {
    /// The headers a local reply goes out with, as Envoy builds them:
    /// `:status`, the plugin's own headers, `content-type: text/plain` for a
    /// body when the plugin set no content type, and `grpc-status` when the
    /// plugin gave one.
    pub fn response_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.add(":status", self.status.to_string());
        for (name, value) in self.headers.iter() {
            if !name.starts_with(b":") {
                headers.add(name, value);
            }
        }
        if !self.body.is_empty() && headers.get("content-type").is_none() {
            headers.add("content-type", "text/plain");
        }
        if let Some(grpc) = self.grpc_status {
            headers.replace("grpc-status", grpc.to_string());
        }
        headers
    }
}
