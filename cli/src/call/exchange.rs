//! One request's life through the plugin, as Envoy runs it: request
//! headers and body, callouts answered as they are made, ticks while the
//! stream waits, the simulated upstream response, and a local reply sent
//! through the plugin's response callbacks instead of the upstream one.

use super::callouts::Answers;
use super::report::{self, Callout, Event, Leftovers, Report};
use anyhow::Result;
use polyhost::services::{CalloutQueue, CalloutRequest, Clock, VirtualClock};
use polyhost::{ContextId, Decision, Engine, HeaderMap, StreamEvent, StreamType, Vm};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many ticks may run, and on which clock.
pub struct Timeline {
    clock: Arc<dyn Clock>,
    /// The virtual clock, when the run does not wait for real time.
    virtual_clock: Option<Arc<VirtualClock>>,
    start: Instant,
    ticks_left: u64,
    until: Option<Duration>,
}

impl Timeline {
    /// At most `ticks` ticks (unbounded with only `run_for`), none due
    /// after `run_for`; on a virtual clock unless `real_time`.
    pub fn new(ticks: Option<u64>, run_for: Option<Duration>, real_time: bool) -> Self {
        let virtual_clock = (!real_time).then(|| Arc::new(VirtualClock::default()));
        let clock: Arc<dyn Clock> = match &virtual_clock {
            Some(v) => v.clone(),
            None => Arc::new(polyhost::services::SystemClock),
        };
        let ticks_left = match (ticks, run_for) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => 0,
        };
        Timeline {
            start: clock.now(),
            clock,
            virtual_clock,
            ticks_left,
            until: run_for,
        }
    }

    /// The clock the VM runs on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// When the next tick the run allows is due.
    fn next_tick<E: Engine>(&self, vm: &Vm<E>) -> Option<Instant> {
        let due = vm.next_tick()?;
        let in_time = self.until.is_none_or(|until| due <= self.start + until);
        (self.ticks_left > 0 && in_time).then_some(due)
    }

    /// Moves time to `due` (jumping on a virtual clock, sleeping on the
    /// real one).
    fn wait_until(&self, due: Instant) {
        match &self.virtual_clock {
            Some(v) => v.advance_to(due),
            None => std::thread::sleep(due.saturating_duration_since(Instant::now())),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_millis() as u64
    }
}

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
    vm: &'a mut Vm<E>,
    id: ContextId,
    report: &'a mut Report,
    callouts: &'a CalloutQueue,
    answers: Answers,
    timeline: Timeline,
    unanswered: Vec<Callout>,
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
    /// Starts a stream in `vm`.
    ///
    /// # Errors
    /// The plugin fails creating the stream context.
    pub fn new(
        vm: &'a mut Vm<E>,
        report: &'a mut Report,
        callouts: &'a CalloutQueue,
        answers: Answers,
        timeline: Timeline,
    ) -> Result<Self> {
        let id = vm.create_http_stream()?;
        Ok(Exchange {
            vm,
            id,
            report,
            callouts,
            answers,
            timeline,
            unanswered: Vec::new(),
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
        self.report.emit(Event::Done {
            outcome: match outcome {
                Flow::Continued => "continue",
                Flow::Replied => "local_response",
                Flow::Stuck => "paused",
            },
        });
        let finished = self.vm.finish_stream(self.id);
        self.logs();
        let state = finished?;
        // The timers go on after the stream, as they would in a proxy.
        while let Some(due) = self.timeline.next_tick(self.vm) {
            self.tick(due)?;
            self.settle(Side::Response)?;
        }
        let mut properties: Vec<(String, String)> = (state.properties.iter())
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        properties.sort();
        leftovers.properties = properties;
        leftovers.unanswered_callouts = std::mem::take(&mut self.unanswered);
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
                .vm
                .on_request_headers(id, headers.clone(), body.is_none())?,
            Side::Response => self
                .vm
                .on_response_headers(id, headers.clone(), body.is_none())?,
        };
        self.logs();
        let stream = self.vm.stream(id).expect("the stream lives");
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
                    Side::Request => self.vm.on_request_body(id, chunk, end)?,
                    Side::Response => self.vm.on_response_body(id, chunk, end)?,
                };
                self.logs();
                if count > 1 {
                    self.report.emit(Event::BodyChunk {
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
                        Side::Request => self.vm.take_request_body(id),
                        Side::Response => self.vm.take_response_body(id),
                    });
                }
                if let Some(flow) = self.after_callback(side, &decision)? {
                    return Ok(flow);
                }
            }
            self.report.emit(Event::Body {
                side: side.name(),
                sent: String::from_utf8_lossy(body).into_owned(),
                forwarded: String::from_utf8_lossy(&forwarded).into_owned(),
            });
        }
        let flow = self.wait_while_paused(side)?;
        // Edits made while the stream waited (from a callout answer or a
        // tick) go on with it.
        if let (Flow::Continued, Some(stream)) = (&flow, self.vm.stream(id)) {
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
        self.report.emit(Event::Headers {
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
        loop {
            let made = self.callouts.take();
            for event in self.vm.take_events(self.id) {
                self.stream_event(side, event);
            }
            if made.is_empty() {
                return Ok(());
            }
            for call in made {
                self.callout(call)?;
                self.logs();
            }
        }
    }

    fn stream_event(&mut self, side: Side, event: StreamEvent) {
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
                self.paused = false;
            }
            self.report.emit(Event::Resume { side: named.name() });
        } else {
            self.report.emit(Event::Close { side: named.name() });
        }
    }

    fn callout(&mut self, call: CalloutRequest) -> Result<()> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (callout, grpc) = match &call {
            CalloutRequest::Http(c) => (
                Callout {
                    kind: "http",
                    token: c.token,
                    cluster: c.upstream.clone(),
                    headers: c.headers.to_string_pairs(),
                    method: String::new(),
                    body: text(&c.body),
                    timeout_ms: c.timeout.as_millis(),
                },
                false,
            ),
            CalloutRequest::Grpc(c) => (
                Callout {
                    kind: "grpc",
                    token: c.token,
                    cluster: text(&c.upstream),
                    headers: c.initial_metadata.to_string_pairs(),
                    method: format!("{}/{}", c.service, c.method),
                    body: text(&c.message),
                    timeout_ms: c.timeout.as_millis(),
                },
                true,
            ),
            CalloutRequest::GrpcStream(s) => {
                self.unanswered.push(Callout {
                    kind: "grpc_stream",
                    token: s.token,
                    cluster: text(&s.upstream),
                    headers: s.initial_metadata.to_string_pairs(),
                    method: format!("{}/{}", s.service, s.method),
                    body: String::new(),
                    timeout_ms: 0,
                });
                return Ok(());
            }
            // Messages on streams, cancels and closes need no answer.
            _ => return Ok(()),
        };
        self.report.emit(Event::Callout(callout.clone()));
        let Some(answer) = self.answers.take(grpc, &callout.cluster) else {
            self.unanswered.push(callout);
            return Ok(());
        };
        let shown = if self.answers.defaults() {
            if grpc {
                "UNAVAILABLE (default answer)".to_string()
            } else {
                "200, empty body (default answer)".to_string()
            }
        } else {
            answer.spec.clone()
        };
        self.report.emit(Event::CalloutAnswer {
            token: callout.token,
            answer: shown,
        });
        if grpc {
            let result = if self.answers.defaults() {
                polyhost::GrpcResult::Err {
                    status: 14,
                    message: "no upstream in `polyhost call`".into(),
                }
            } else {
                answer.grpc()
            };
            self.vm.deliver_grpc_response(callout.token, result)?;
        } else {
            self.vm
                .deliver_http_response(callout.token, answer.http())?;
        }
        Ok(())
    }

    /// Sends the plugin's local reply, if it made one and it did not go out
    /// yet, through its response callbacks, as Envoy's encoder path does.
    fn reply_if_sent(&mut self) -> Result<Option<Flow>> {
        if self.replied {
            return Ok(None);
        }
        let Some(reply) = self
            .vm
            .stream(self.id)
            .and_then(|s| s.local_response.clone())
        else {
            return Ok(None);
        };
        self.replied = true;
        let sent_status = reply.status;
        let encoded = self.vm.encode_local_response(self.id, reply)?;
        self.logs();
        self.settle(Side::Response)?;
        self.report.emit(Event::LocalResponse {
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
            let Some(due) = self.timeline.next_tick(self.vm) else {
                self.report.emit(Event::StillPaused { side: side.name() });
                return Ok(Flow::Stuck);
            };
            self.tick(due)?;
            self.settle(side)?;
            if let Some(flow) = self.reply_if_sent()? {
                return Ok(flow);
            }
        }
        Ok(Flow::Continued)
    }

    fn tick(&mut self, due: Instant) -> Result<()> {
        self.timeline.wait_until(due);
        self.timeline.ticks_left -= 1;
        self.report.emit(Event::Tick {
            at_ms: self.timeline.elapsed_ms(),
        });
        self.vm.tick(self.timeline.clock.now())?;
        self.logs();
        Ok(())
    }

    fn logs(&mut self) {
        self.report.logs(self.vm.take_logs());
    }
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Continue => "continue",
        Decision::Pause => "pause",
        Decision::LocalResponse(_) => "local_response",
    }
}
