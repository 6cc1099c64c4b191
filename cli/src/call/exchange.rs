//! One request's life through the plugin, as Envoy runs it: request
//! headers and body, callouts answered as they are made, ticks while the
//! stream waits, the simulated upstream response, and a local reply sent
//! through the plugin's response callbacks instead of the upstream one.

use super::report::{self, Event, Leftovers, Report};
use super::session::{Session, stream_properties};
use anyhow::Result;
use polyhost::{ContextId, Decision, Engine, HeaderMap, StreamEvent, StreamType};

/// Which half of the exchange.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// What the command line gives the exchange.
pub struct Traffic<'a> {
    /// Request headers.
    pub request_headers: HeaderMap,
    /// Request body, if any.
    pub request_body: Option<&'a [u8]>,
    /// The simulated upstream's response headers.
    pub response_headers: HeaderMap,
    /// Its body, if any.
    pub response_body: Option<&'a [u8]>,
    /// Bodies go in chunks of this many bytes (one chunk without it).
    pub chunk_size: Option<usize>,
}

/// One run of a request through a VM.
pub struct Exchange<'a, E: Engine> {
    s: Session<'a, E>,
    id: ContextId,
    paused: bool,
    replied: bool,
}

/// How a direction ended.
enum Flow {
    /// It went on (to the upstream, or to the client).
    Continued,
    /// The plugin answered locally; the reply went out.
    Replied,
    /// It stayed paused with nothing left to resume it.
    Stuck,
}

impl<'a, E: Engine> Exchange<'a, E> {
    /// Starts a stream in the session's VM.
    ///
    /// # Errors
    /// The plugin fails creating the stream context.
    pub fn new(s: Session<'a, E>) -> Result<Self> {
        let id = s.vm.create_http_stream()?;
        Ok(Exchange {
            s,
            id,
            paused: false,
            replied: false,
        })
    }

    /// Runs the request and the response, then the ticks left; fills in
    /// the unanswered callouts and the properties the plugin set.
    ///
    /// # Errors
    /// The plugin fails in any callback.
    pub fn run(mut self, traffic: &Traffic, leftovers: &mut Leftovers) -> Result<()> {
        let outcome = self.request(traffic)?;
        let outcome = match outcome {
            Flow::Continued => self.response(traffic)?,
            other => other,
        };
        self.s.report.emit(Event::Done {
            outcome: match outcome {
                Flow::Continued => "continue",
                Flow::Replied => "local_response",
                Flow::Stuck => "paused",
            },
        });
        let finished = self.s.vm.finish_stream(self.id);
        self.logs();
        let state = finished?;
        // The timers go on after the stream, as they would in a proxy.
        while let Some(due) = self.s.next_tick() {
            self.s.tick(due)?;
            self.settle(Side::Response)?;
        }
        leftovers.properties = stream_properties(&state.properties, &[]);
        leftovers.unanswered_callouts = self.s.take_unanswered();
        Ok(())
    }

    fn request(&mut self, traffic: &Traffic) -> Result<Flow> {
        self.side(
            Side::Request,
            traffic.request_headers.clone(),
            traffic.request_body,
            traffic.chunk_size,
        )
    }

    fn response(&mut self, traffic: &Traffic) -> Result<Flow> {
        self.side(
            Side::Response,
            traffic.response_headers.clone(),
            traffic.response_body,
            traffic.chunk_size,
        )
    }

    /// Headers, then the body in chunks, then waiting while paused.
    fn side(
        &mut self,
        side: Side,
        headers: HeaderMap,
        body: Option<&[u8]>,
        chunk_size: Option<usize>,
    ) -> Result<Flow> {
        let id = self.id;
        let decision = match side {
            Side::Request => self
                .s
                .vm
                .on_request_headers(id, headers.clone(), body.is_none())?,
            Side::Response => self
                .s
                .vm
                .on_response_headers(id, headers.clone(), body.is_none())?,
        };
        self.logs();
        let stream = self.s.vm.stream(id).expect("the stream lives");
        let after = match side {
            Side::Request => &stream.request_headers,
            Side::Response => &stream.response_headers,
        };
        let after_callback = after.clone();
        self.emit_headers(side, Some(&decision), &headers, &after_callback);
        if let Some(flow) = self.after_callback(side, &decision)? {
            return Ok(flow);
        }
        if let Some(body) = body {
            let chunks = super::input::chunks(body, chunk_size);
            let count = chunks.len();
            let mut forwarded = Vec::new();
            for (index, chunk) in chunks.into_iter().enumerate() {
                let end = index + 1 == count;
                let decision = match side {
                    Side::Request => self.s.vm.on_request_body(id, chunk, end)?,
                    Side::Response => self.s.vm.on_response_body(id, chunk, end)?,
                };
                self.logs();
                if count > 1 {
                    self.s.report.emit(Event::BodyChunk {
                        side: side.name(),
                        index: index + 1,
                        count,
                        bytes: chunk.len(),
                        decision: decision_name(&decision),
                    });
                }
                // A body the plugin lets through goes on; a paused one
                // stays buffered for the next chunk.
                if decision == Decision::Continue || end {
                    forwarded.extend(match side {
                        Side::Request => self.s.vm.take_request_body(id),
                        Side::Response => self.s.vm.take_response_body(id),
                    });
                }
                if let Some(flow) = self.after_callback(side, &decision)? {
                    return Ok(flow);
                }
            }
            self.s.report.emit(Event::Body {
                side: side.name(),
                sent: String::from_utf8_lossy(body).into_owned(),
                forwarded: String::from_utf8_lossy(&forwarded).into_owned(),
            });
        }
        let flow = self.wait_while_paused(side)?;
        // Edits made while the stream waited (from a callout answer or a
        // tick) go on with it.
        if let (Flow::Continued, Some(stream)) = (&flow, self.s.vm.stream(id)) {
            let now = match side {
                Side::Request => stream.request_headers.clone(),
                Side::Response => stream.response_headers.clone(),
            };
            if now != after_callback {
                self.emit_headers(side, None, &headers, &now);
            }
        }
        Ok(flow)
    }

    /// Reports the headers of `side` as the plugin left them: right after
    /// its headers callback (with that callback's `decision`), or as they
    /// went on after a wait (`None`).
    fn emit_headers(
        &mut self,
        side: Side,
        decision: Option<&Decision>,
        sent: &HeaderMap,
        now: &HeaderMap,
    ) {
        let (removed, added) = report::diff(sent, now);
        self.s.report.emit(Event::Headers {
            side: side.name(),
            stage: if decision.is_some() {
                "callback"
            } else {
                "resumed"
            },
            decision: decision.map_or("continue", decision_name),
            removed,
            added,
            headers: now.to_string_pairs(),
        });
    }

    /// Takes note of a callback's decision, answers the callouts it made
    /// and passes on its resume requests. `Some` when the direction ended
    /// in a local reply.
    fn after_callback(&mut self, side: Side, decision: &Decision) -> Result<Option<Flow>> {
        self.paused = *decision == Decision::Pause;
        self.settle(side)?;
        self.reply_if_sent()
    }

    /// Answers new callouts (whose answers may make more) and applies the
    /// plugin's resume and close requests.
    fn settle(&mut self, side: Side) -> Result<()> {
        let paused = &mut self.paused;
        self.s.settle(self.id, |s, event| {
            stream_event(s.report, paused, side, event);
            Ok(())
        })
    }

    /// Sends the plugin's local reply, if it made one and it did not go out
    /// yet, through its response callbacks, as Envoy's encoder path does.
    fn reply_if_sent(&mut self) -> Result<Option<Flow>> {
        if self.replied {
            return Ok(None);
        }
        let Some(reply) = self
            .s
            .vm
            .stream(self.id)
            .and_then(|s| s.local_response.clone())
        else {
            return Ok(None);
        };
        self.replied = true;
        let sent_status = reply.status;
        let encoded = self.s.vm.encode_local_response(self.id, reply)?;
        self.logs();
        self.settle(Side::Response)?;
        self.s.report.emit(Event::LocalResponse {
            sent_status,
            status: encoded.status,
            headers: encoded.headers.to_string_pairs(),
            grpc_status: encoded.grpc_status,
            body: String::from_utf8_lossy(&encoded.body).into_owned(),
        });
        Ok(Some(Flow::Replied))
    }

    /// Runs ticks while `side` is paused, until it is resumed, the plugin
    /// replies, or no tick is left.
    fn wait_while_paused(&mut self, side: Side) -> Result<Flow> {
        while self.paused {
            let Some(due) = self.s.next_tick() else {
                self.s.report.emit(Event::StillPaused { side: side.name() });
                return Ok(Flow::Stuck);
            };
            self.s.tick(due)?;
            self.settle(side)?;
            if let Some(flow) = self.reply_if_sent()? {
                return Ok(flow);
            }
        }
        Ok(Flow::Continued)
    }

    fn logs(&mut self) {
        self.s.logs();
    }
}

/// Reports a resume or close request of the stream, and notes a resume of
/// the `side` waiting.
fn stream_event(report: &mut Report, paused: &mut bool, side: Side, event: StreamEvent) {
    let (stream, is_resume) = match event {
        StreamEvent::Resume(t) => (t, true),
        StreamEvent::Close(t) => (t, false),
        StreamEvent::ClearRouteCache => return,
    };
    let named = match stream {
        StreamType::HttpRequest => Side::Request,
        _ => Side::Response,
    };
    if is_resume {
        if named == side {
            *paused = false;
        }
        report.emit(Event::Resume { side: named.name() });
    } else {
        report.emit(Event::Close { side: named.name() });
    }
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Continue => "continue",
        Decision::Pause => "pause",
        Decision::LocalResponse(_) => "local_response",
    }
}
