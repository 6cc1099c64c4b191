//! Answers to callouts, delivered back into the plugin.

use super::{Callback, Vm};
use crate::error::PluginError;
use crate::headers::HeaderMap;
use crate::state::{CallScratch, CalloutKind};
use polyhost_engine_core::{Engine, HostContext};

/// The outcome of an HTTP callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpCallResult {
    /// The upstream answered.
    Response {
        /// Response headers, including `:status`.
        headers: HeaderMap,
        /// Response body.
        body: Vec<u8>,
        /// Response trailers.
        trailers: HeaderMap,
    },
    /// The call failed (connection reset, no healthy upstream, ...).
    Failure,
    /// The call's timeout passed.
    Timeout,
}

/// The outcome of a unary gRPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcResult {
    /// Status 0 with the response message.
    Ok(Vec<u8>),
    /// A non-zero gRPC status and its message.
    Err {
        /// gRPC status code (e.g. 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED).
        status: u32,
        /// Status message.
        message: String,
    },
}

impl<E: Engine> Vm<E> {
    /// Finds who made callout `token`; `remove` forgets it (final answer).
    fn callout_owner(
        &mut self,
        token: u32,
        remove: bool,
    ) -> Result<(u32, CalloutKind), PluginError> {
        let callouts = &mut self.instance.data_mut().callouts;
        let found = if remove {
            callouts.remove(&token)
        } else {
            callouts.get(&token).copied()
        };
        found.ok_or_else(|| self.unknown(format!("no outstanding callout with token {token}")))
    }

    /// Runs `cb` for the callout's owner with `fill` applied to the scratch
    /// buffers, which are cleared afterwards.
    ///
    /// As in Envoy, the callback's context argument is the root context (the
    /// Go and AssemblyScript SDKs look the token up there and then switch
    /// with `proxy_set_effective_context`); the effective context is already
    /// the stream that made the call, for plugins that do not switch.
    fn deliver(
        &mut self,
        owner: u32,
        cb: Callback,
        args: &[i32],
        fill: impl FnOnce(&mut CallScratch),
    ) -> Result<(), PluginError> {
        fill(&mut self.instance.data_mut().scratch);
        let result = self.call_in(owner, cb, args);
        self.instance.data_mut().scratch = CallScratch::default();
        result.map(|_| ())
    }

    /// Answers HTTP callout `token`: calls `proxy_on_http_call_response` on
    /// the context that made it. Failures and timeouts arrive with no
    /// headers, body or trailers, as in Envoy.
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_http_response(
        &mut self,
        token: u32,
        result: HttpCallResult,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, true)?;
        let (headers, body, trailers) = match result {
            HttpCallResult::Response {
                headers,
                body,
                trailers,
            } => (headers, body, trailers),
            HttpCallResult::Failure | HttpCallResult::Timeout => Default::default(),
        };
        let args = [
            self.root_for(owner) as i32,
            token as i32,
            headers.len() as i32,
            body.len() as i32,
            trailers.len() as i32,
        ];
        self.deliver(owner, Callback::HttpCallResponse, &args, |s| {
            s.http_headers = headers;
            s.http_body = body;
            s.http_trailers = trailers;
        })
    }

    /// Answers unary gRPC call `token`: `proxy_on_grpc_receive` with the
    /// message on success, `proxy_on_grpc_close` with the status otherwise.
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_grpc_response(
        &mut self,
        token: u32,
        result: GrpcResult,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, true)?;
        match result {
            GrpcResult::Ok(message) => {
                let args = [
                    self.root_for(owner) as i32,
                    token as i32,
                    message.len() as i32,
                ];
                self.deliver(owner, Callback::GrpcReceive, &args, |s| {
                    s.grpc_message = message
                })
            }
            GrpcResult::Err { status, message } => self.grpc_close(owner, token, status, message),
        }
    }

    fn grpc_close(
        &mut self,
        owner: u32,
        token: u32,
        status: u32,
        message: String,
    ) -> Result<(), PluginError> {
        self.instance.data_mut().last_status = (status, message.into_bytes());
        let args = [self.root_for(owner) as i32, token as i32, status as i32];
        self.deliver(owner, Callback::GrpcClose, &args, |_| {})
    }

    /// Delivers initial metadata on gRPC stream (or call) `token`.
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_grpc_initial_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, false)?;
        let args = [
            self.root_for(owner) as i32,
            token as i32,
            metadata.len() as i32,
        ];
        self.deliver(owner, Callback::GrpcInitialMetadata, &args, |s| {
            s.grpc_initial = metadata
        })
    }

    /// Delivers one message on gRPC stream `token`.
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_grpc_message(
        &mut self,
        token: u32,
        message: Vec<u8>,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, false)?;
        let args = [
            self.root_for(owner) as i32,
            token as i32,
            message.len() as i32,
        ];
        self.deliver(owner, Callback::GrpcReceive, &args, |s| {
            s.grpc_message = message
        })
    }

    /// Delivers trailing metadata on gRPC stream (or call) `token`.
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_grpc_trailing_metadata(
        &mut self,
        token: u32,
        metadata: HeaderMap,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, false)?;
        let args = [
            self.root_for(owner) as i32,
            token as i32,
            metadata.len() as i32,
        ];
        self.deliver(owner, Callback::GrpcTrailingMetadata, &args, |s| {
            s.grpc_trailing = metadata
        })
    }

    /// Closes gRPC stream `token` from the remote side with `status`
    /// (readable by the plugin through `proxy_get_status`).
    ///
    /// # Errors
    /// An unknown token, a trap, or a failed VM.
    pub fn deliver_grpc_close(
        &mut self,
        token: u32,
        status: u32,
        message: &str,
    ) -> Result<(), PluginError> {
        let (owner, _) = self.callout_owner(token, true)?;
        self.grpc_close(owner, token, status, message.to_string())
    }
}
