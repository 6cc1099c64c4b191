//! One request's walk through the Wasm filter chain: proxy-wasm's stream
//! callbacks mapped onto Pingora's phases, in one place.
//!
//! Request callbacks run in chain order, response callbacks in reverse
//! order, as Envoy's decoder and encoder filters do. Each filter sees what
//! the previous one left. A filter that fails is handled by its failure
//! policy (see [`crate::wasm`]).

use crate::config::FailurePolicy;
use crate::wasm::{VmUnavailable, WasmFilter};
use polyhost::{
    ContextId, Decision, HeaderMap, LocalResponse, StreamEvent, StreamProperties, StreamType,
};
use std::time::Duration;

/// How long a paused stream waits for its plugin to resume it: Envoy's
/// default stream idle timeout (5 minutes).
const PAUSE_LIMIT: Duration = Duration::from_secs(300);

/// The largest body a plugin may make the proxy buffer by pausing body
/// callbacks; past it the request gets 413 (request) or 500 (response), as
/// Envoy answers when its buffer limit is exceeded.
pub(crate) const BODY_BUFFER_LIMIT: usize = 16 << 20;

/// Per-request state of one filter.
pub(crate) struct FilterStream {
    pub(crate) filter: WasmFilter,
    /// The plugin's context for this request; `None` once the filter is
    /// bypassed (failed open, or not started).
    pub(crate) context: Option<ContextId>,
    /// Bytes held back because the plugin paused a body callback.
    pub(crate) buffered: usize,
}

/// What the proxy does with a body chunk after the chain has seen it.
#[derive(Debug)]
pub(crate) enum BodyOutcome {
    /// Send these bytes on (possibly edited, possibly empty).
    Continue(Vec<u8>),
    /// Answer the client with this response.
    Respond(LocalResponse),
    /// Hold the data: a body callback paused to buffer.
    Hold,
}

/// The answer for a request whose plugin failed under `FAIL_CLOSED` or
/// `FAIL_RELOAD`.
pub(crate) fn plugin_failed_response() -> LocalResponse {
    LocalResponse {
        status: 503,
        // Envoy's details for a failed Wasm filter; the plugin's name is
        // in the failure's log line (details carry no spaces).
        details: "wasm_fail_stream".into(),
        body: Vec::new(),
        headers: HeaderMap::new(),
        grpc_status: None,
    }
}

/// Runs `op` on the filter's VM and context; turns a failure into the
/// policy's outcome. `Ok(None)` means "the filter is bypassed, carry on".
fn run<R>(
    stream: &mut FilterStream,
    op: impl FnOnce(&mut dyn crate::wasm::WorkerVm, ContextId) -> Result<R, polyhost::PluginError>,
) -> Result<Option<R>, LocalResponse> {
    let Some(id) = stream.context else {
        return Ok(None);
    };
    let failure = match stream.filter.with_vm(|vm| op(vm, id)) {
        Ok(Ok(r)) => return Ok(Some(r)),
        Ok(Err(e)) => {
            tracing::error!(target: "polyhost::wasm", plugin = %stream.filter.name(), error = %e, "plugin failed on a request");
            true
        }
        Err(VmUnavailable) => true,
    };
    debug_assert!(failure);
    stream.context = None;
    match stream.filter.failure_policy() {
        FailurePolicy::FailOpen => Ok(None),
        FailurePolicy::FailClosed | FailurePolicy::FailReload => Err(plugin_failed_response()),
    }
}

/// Creates the filter's context for a new request, with the request's
/// connection and route properties for the plugin to read.
pub(crate) fn start(
    filter: &WasmFilter,
    properties: &StreamProperties,
) -> Result<FilterStream, LocalResponse> {
    let mut stream = FilterStream {
        filter: filter.clone(),
        context: None,
        buffered: 0,
    };
    let created = filter.with_vm_as(|vm, root| {
        let id = vm.create_http_stream(root)?;
        if let Some(state) = vm.stream_mut(id) {
            state.provided = Some(properties.clone());
        }
        Ok::<_, polyhost::PluginError>(id)
    });
    match created {
        Ok(Ok(id)) => stream.context = Some(id),
        Ok(Err(e)) => {
            tracing::error!(target: "polyhost::wasm", plugin = %filter.name(), error = %e, "plugin failed to create a stream context");
            if filter.failure_policy() != FailurePolicy::FailOpen {
                return Err(plugin_failed_response());
            }
        }
        Err(VmUnavailable) => {
            if filter.failure_policy() != FailurePolicy::FailOpen {
                return Err(plugin_failed_response());
            }
        }
    }
    Ok(stream)
}

/// Waits until the plugin resumes `side` of the stream (after a callout
/// answer or a tick), answers locally, or fails.
async fn wait_for_resume(
    stream: &mut FilterStream,
    side: StreamType,
) -> Result<Option<LocalResponse>, LocalResponse> {
    let notify = stream.filter.pause_notifier();
    let deadline = tokio::time::Instant::now() + PAUSE_LIMIT;
    loop {
        // Register interest before looking, so a wake-up between the look
        // and the wait is not lost.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let seen = run(stream, |vm, id| {
            let events = vm.take_events(id);
            let local = vm.stream(id).and_then(|s| s.local_response.clone());
            Ok((events, local))
        })?;
        let Some((events, local)) = seen else {
            return Ok(None);
        };
        if let Some(local) = local {
            return Ok(Some(local));
        }
        if events.contains(&StreamEvent::Resume(side)) {
            return Ok(None);
        }
        if events.iter().any(|e| matches!(e, StreamEvent::Close(_))) {
            return Err(LocalResponse {
                status: 503,
                details: "wasm_close_stream".into(),
                body: Vec::new(),
                headers: HeaderMap::new(),
                grpc_status: None,
            });
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            tracing::warn!(target: "polyhost::wasm", plugin = %stream.filter.name(), "paused stream was never resumed");
            return Err(LocalResponse {
                status: 408,
                details: "stream_idle_timeout".into(),
                body: b"stream timeout".to_vec(),
                headers: HeaderMap::new(),
                grpc_status: None,
            });
        }
    }
}

/// Which half of the exchange a step of the chain is about.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The request: filters in chain order.
    Request,
    /// The response: filters in reverse order.
    Response,
}

impl Side {
    /// The `i`-th of `n` filters in this side's order.
    fn nth(self, i: usize, n: usize) -> usize {
        match self {
            Side::Request => i,
            Side::Response => n - 1 - i,
        }
    }
}

/// Runs request or response headers through every filter, in the side's
/// order; returns the headers as the last filter left them, or the local
/// reply a filter (or its failure policy) asked for.
pub(crate) async fn headers(
    streams: &mut [FilterStream],
    side: Side,
    mut headers: HeaderMap,
    end_of_stream: bool,
) -> Result<HeaderMap, LocalResponse> {
    let n = streams.len();
    for i in 0..n {
        let stream = &mut streams[side.nth(i, n)];
        if stream.context.is_none() {
            continue;
        }
        // The VM keeps the map it is given (plugins read it in later
        // callbacks), and the edited map is read back below, so the headers
        // move in; only a filter that fails open needs the original kept.
        let input = if stream.filter.failure_policy() == FailurePolicy::FailOpen {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        let Some(decision) = run(stream, |vm, id| match side {
            Side::Request => vm.on_request_headers(id, input, end_of_stream),
            Side::Response => vm.on_response_headers(id, input, end_of_stream),
        })?
        else {
            continue;
        };
        match decision {
            Decision::Continue => {}
            Decision::LocalResponse(reply) => return Err(reply),
            Decision::Pause => {
                let stream_type = match side {
                    Side::Request => StreamType::HttpRequest,
                    Side::Response => StreamType::HttpResponse,
                };
                if let Some(reply) = wait_for_resume(stream, stream_type).await? {
                    return Err(reply);
                }
            }
        }
        // A VM that became unusable since answers by its failure policy.
        if let Some(Some(edited)) = run(stream, |vm, id| {
            Ok(vm.stream(id).map(|s| match side {
                Side::Request => s.request_headers.clone(),
                Side::Response => s.response_headers.clone(),
            }))
        })? {
            headers = edited;
        }
    }
    Ok(headers)
}

/// Runs a body chunk through the chain. A filter that pauses holds the
/// bytes (the VM keeps them in the stream's buffer and shows the plugin the
/// whole buffer on the next chunk); at end of stream it is asked again.
pub(crate) fn body(
    streams: &mut [FilterStream],
    side: Side,
    chunk: Vec<u8>,
    end_of_stream: bool,
) -> BodyOutcome {
    let mut data = chunk;
    let n = streams.len();
    for i in 0..n {
        let stream = &mut streams[side.nth(i, n)];
        let input = std::mem::take(&mut data);
        let len = input.len();
        let outcome = run(stream, |vm, id| {
            let decision = match side {
                Side::Request => vm.on_request_body(id, &input, end_of_stream)?,
                Side::Response => vm.on_response_body(id, &input, end_of_stream)?,
            };
            let out = match decision {
                Decision::Continue => Some(match side {
                    Side::Request => vm.take_request_body(id),
                    Side::Response => vm.take_response_body(id),
                }),
                Decision::Pause if end_of_stream => {
                    // Nothing more will arrive to resume it; Envoy would
                    // wait for proxy_continue_stream, which a body callback
                    // cannot get here, so pass the buffer on.
                    Some(match side {
                        Side::Request => vm.take_request_body(id),
                        Side::Response => vm.take_response_body(id),
                    })
                }
                Decision::Pause => None,
                Decision::LocalResponse(reply) => return Ok(Err(reply)),
            };
            Ok(Ok(out))
        });
        match outcome {
            Ok(None) => data = input,
            Ok(Some(Ok(Some(out)))) => {
                stream.buffered = 0;
                data = out;
            }
            Ok(Some(Ok(None))) => {
                stream.buffered += len;
                if stream.buffered > BODY_BUFFER_LIMIT {
                    // Envoy's answers and details for a body over the
                    // buffer limit.
                    let (status, details) = match side {
                        Side::Request => (413, "request_payload_too_large"),
                        Side::Response => (500, "response_payload_too_large"),
                    };
                    return BodyOutcome::Respond(LocalResponse {
                        status,
                        details: details.into(),
                        body: Vec::new(),
                        headers: HeaderMap::new(),
                        grpc_status: None,
                    });
                }
                return BodyOutcome::Hold;
            }
            Ok(Some(Err(reply))) | Err(reply) => return BodyOutcome::Respond(reply),
        }
    }
    BodyOutcome::Continue(data)
}

/// Runs response trailers through every filter in response order and
/// returns them as the last filter left them. The response headers and body
/// have gone out by now, so a plugin can no longer pause or answer locally
/// here (Envoy would reset the stream): such a decision is logged and the
/// trailers go on.
pub(crate) fn response_trailers(
    streams: &mut [FilterStream],
    mut trailers: HeaderMap,
) -> HeaderMap {
    let n = streams.len();
    for i in 0..n {
        let stream = &mut streams[Side::Response.nth(i, n)];
        let input = trailers.clone();
        let seen = run(stream, |vm, id| {
            let decision = vm.on_response_trailers(id, input)?;
            let edited = vm.stream(id).map(|s| s.response_trailers.clone());
            Ok((decision, edited))
        });
        match seen {
            Ok(Some((decision, edited))) => {
                if decision != Decision::Continue {
                    tracing::warn!(target: "polyhost::wasm", plugin = %stream.filter.name(), ?decision, "a plugin paused or answered on response trailers, after the response went out; continuing");
                }
                if let Some(edited) = edited {
                    trailers = edited;
                }
            }
            Ok(None) => {}
            Err(reply) => {
                tracing::warn!(target: "polyhost::wasm", plugin = %stream.filter.name(), status = reply.status, "a plugin failed on response trailers, after the response went out");
            }
        }
    }
    trailers
}

/// Runs a local reply (a plugin's, a direct response, or one the proxy
/// makes) through the response callbacks of every filter, in response
/// order, as Envoy sends local replies through its encoder filters: a
/// plugin sees, and may edit, the reply it or another filter sent. A filter
/// that fails meanwhile makes the reply its policy's answer.
pub(crate) fn encode_local(
    streams: &mut [FilterStream],
    mut reply: LocalResponse,
) -> LocalResponse {
    let n = streams.len();
    for i in 0..n {
        let stream = &mut streams[Side::Response.nth(i, n)];
        let input = reply.clone();
        match run(stream, |vm, id| vm.encode_local_response(id, input)) {
            Ok(Some(encoded)) => reply = encoded,
            Ok(None) => {}
            Err(failed) => return failed,
        }
    }
    reply
}

/// Ends every filter's context (`proxy_on_log`, `proxy_on_done`,
/// `proxy_on_delete`).
pub(crate) fn finish(streams: &mut [FilterStream]) {
    for stream in streams.iter_mut() {
        if let Some(id) = stream.context.take() {
            let filter = stream.filter.clone();
            if let Ok(Err(e)) = filter.with_vm(|vm| vm.finish_stream(id)) {
                tracing::error!(target: "polyhost::wasm", plugin = %filter.name(), error = %e, "plugin failed at the end of a stream");
            }
        }
    }
}
