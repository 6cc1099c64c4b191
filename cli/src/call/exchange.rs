//! One request's life through the plugins, as Envoy runs it: request
//! headers and body through the filters in chain order, callouts answered
//! as they are made, ticks while the stream waits, the simulated upstream
//! response through the filters in reverse order, and a local reply sent
//! through the response callbacks instead of the upstream one.

use super::report::{self, Event, Leftovers};
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

/// One run of a request through the chain of filters.
pub struct Exchange<'a, E: Engine> {
    s: Session<'a, E>,
    /// Each filter's stream, in chain order.
    ids: Vec<ContextId>,
    /// Whether each filter keeps the side being run waiting (its last
    /// callback paused it and it did not resume it since).
    paused: Vec<bool>,
    replied: bool,
}

/// How a direction ended.
enum Flow {
    /// It went on (to the upstream, or to the client).
    Continued,
    /// A plugin answered locally; the reply went out.
    Replied,
    /// It stayed paused with nothing left to resume it.
    Stuck,
}

/// One side (request or response) on its way through the filters.
///
/// As in Envoy, a filter gets the body only after its headers, so bytes
/// that leave a filter while the next one waits for its headers (the
/// filter paused them) wait in `pending`; a filter that paused its headers
/// still gets the body, and one that continues a body chunk goes on.
struct Walk<'b> {
    side: Side,
    /// The filters in this side's order (chain order for the request,
    /// reverse for the response).
    order: Vec<usize>,
    /// How many of them (in `order`) got their headers callback.
    reached: usize,
    /// The headers as they came in.
    sent: HeaderMap,
    /// Each filter's input headers and its headers right after its
    /// callback.
    input: Vec<HeaderMap>,
    after_callback: Vec<HeaderMap>,
    end_of_stream: bool,
    body: Option<&'b [u8]>,
    /// Body bytes (and whether the end came) waiting for the next filter's
    /// headers.
    pending: Option<(Vec<u8>, bool)>,
    /// What left the last filter.
    forwarded: Vec<u8>,
    body_reported: bool,
}

impl<'a, E: Engine> Exchange<'a, E> {
    /// Starts a stream in every filter, in chain order.
    ///
    /// # Errors
    /// A plugin fails creating the stream context.
    pub fn new(mut s: Session<'a, E>) -> Result<Self> {
        let mut ids = Vec::with_capacity(s.filters());
        for f in 0..s.filters() {
            let root = s.root(f);
            let id = s.vm(f).create_http_stream_for(root);
            s.after_call();
            ids.push(id?);
        }
        Ok(Exchange {
            s,
            paused: vec![false; ids.len()],
            ids,
            replied: false,
        })
    }

    /// Runs the request and the response, then the ticks left; fills in
    /// the unanswered callouts and the properties the plugins set.
    ///
    /// # Errors
    /// A plugin fails in any callback.
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
        let mut states = Vec::with_capacity(self.ids.len());
        for (f, id) in self.ids.clone().into_iter().enumerate() {
            let finished = self.s.vm(f).finish_stream(id);
            self.s.after_call();
            states.push(finished);
        }
        let mut properties = Vec::new();
        for (f, state) in states.into_iter().enumerate() {
            let tag = self.s.report.tag(self.s.name(f));
            for (path, value) in stream_properties(&state?.properties, &[]) {
                properties.push((path, value, tag.clone()));
            }
        }
        // The timers go on after the stream, as they would in a proxy.
        while let Some(due) = self.s.next_tick() {
            self.s.tick(due)?;
            self.settle(Side::Response)?;
        }
        properties.extend(self.s.vm_properties());
        leftovers.properties = properties;
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

    /// Headers through the filters, then the body in chunks, then waiting
    /// while a filter keeps the side paused.
    fn side(
        &mut self,
        side: Side,
        headers: HeaderMap,
        body: Option<&[u8]>,
        chunk_size: Option<usize>,
    ) -> Result<Flow> {
        let n = self.ids.len();
        let order: Vec<usize> = match side {
            Side::Request => (0..n).collect(),
            Side::Response => (0..n).rev().collect(),
        };
        self.paused = vec![false; n];
        let mut walk = Walk {
            side,
            order,
            reached: 0,
            input: vec![HeaderMap::new(); n],
            after_callback: vec![HeaderMap::new(); n],
            sent: headers,
            end_of_stream: body.is_none(),
            body,
            pending: None,
            forwarded: Vec::new(),
            body_reported: false,
        };
        if let Some(flow) = self.advance(side, &mut walk)? {
            return Ok(flow);
        }
        if let Some(body) = body {
            let chunks = super::input::chunks(body, chunk_size);
            let count = chunks.len();
            for (index, chunk) in chunks.into_iter().enumerate() {
                let end = index + 1 == count;
                let position = Some((index + 1, count));
                if let Some(flow) = self.body(side, &mut walk, 0, chunk.to_vec(), end, position)? {
                    return Ok(flow);
                }
                if let Some(flow) = self.advance(side, &mut walk)? {
                    return Ok(flow);
                }
            }
        }
        let flow = self.wait_while_paused(side, &mut walk)?;
        if let Flow::Continued = flow {
            // Edits the last filter made while the stream waited (from a
            // callout answer or a tick) go on with it.
            if let Some(&last) = walk.order.last() {
                self.pass_on(side, &walk, last);
            }
            self.report_body(&mut walk);
        }
        Ok(flow)
    }

    /// The headers of `side` as filter `f` has them now.
    fn headers_of(&self, side: Side, f: usize) -> HeaderMap {
        match self.s.vm_ref(f).stream(self.ids[f]) {
            Some(stream) => match side {
                Side::Request => stream.request_headers.clone(),
                Side::Response => stream.response_headers.clone(),
            },
            None => HeaderMap::new(),
        }
    }

    /// The headers filter `f` passes on, reported when it changed them
    /// after its callback (while the stream waited).
    fn pass_on(&mut self, side: Side, walk: &Walk, f: usize) -> HeaderMap {
        let now = self.headers_of(side, f);
        if now != walk.after_callback[f] {
            self.emit_headers(f, side, None, &walk.input[f], &now);
        }
        now
    }

    /// Runs the headers through the next filters while the one before
    /// does not keep them paused, each followed by the body that waited
    /// for it. `Some` when a local reply ended the side.
    fn advance(&mut self, side: Side, walk: &mut Walk) -> Result<Option<Flow>> {
        while walk.reached < walk.order.len() {
            let input = match walk.reached.checked_sub(1).map(|p| walk.order[p]) {
                None => walk.sent.clone(),
                Some(previous) if self.paused[previous] => return Ok(None),
                Some(previous) => self.pass_on(side, walk, previous),
            };
            let f = walk.order[walk.reached];
            let id = self.ids[f];
            let end = walk.end_of_stream;
            let decision = match side {
                Side::Request => self.s.vm(f).on_request_headers(id, input.clone(), end),
                Side::Response => self.s.vm(f).on_response_headers(id, input.clone(), end),
            };
            self.s.after_call();
            let decision = decision?;
            let after = self.headers_of(side, f);
            self.emit_headers(f, side, Some(&decision), &input, &after);
            walk.input[f] = input;
            walk.after_callback[f] = after;
            walk.reached += 1;
            if let Some(flow) = self.after_callback(side, f, &decision)? {
                return Ok(Some(flow));
            }
            if let Some((data, end)) = walk.pending.take() {
                let from = walk.reached - 1;
                if let Some(flow) = self.body(side, walk, from, data, end, None)? {
                    return Ok(Some(flow));
                }
            }
        }
        Ok(None)
    }

    /// Runs body bytes through the filters from position `from` on that
    /// got their headers: each passes on what it lets through, and one that
    /// pauses (before the end) keeps them for its next chunk. `position`
    /// is the chunk's number and count, shown when the body goes in
    /// several.
    fn body(
        &mut self,
        side: Side,
        walk: &mut Walk,
        from: usize,
        mut data: Vec<u8>,
        end: bool,
        position: Option<(usize, usize)>,
    ) -> Result<Option<Flow>> {
        for p in from..walk.reached {
            let f = walk.order[p];
            let id = self.ids[f];
            let decision = match side {
                Side::Request => self.s.vm(f).on_request_body(id, &data, end),
                Side::Response => self.s.vm(f).on_response_body(id, &data, end),
            };
            self.s.after_call();
            let decision = decision?;
            if let Some((index, count)) = position
                && count > 1
            {
                self.s.emit(
                    f,
                    Event::BodyChunk {
                        side: side.name(),
                        index,
                        count,
                        bytes: data.len(),
                        decision: decision_name(&decision),
                    },
                );
            }
            // A body the plugin lets through goes on; a paused one stays
            // buffered for the next chunk.
            let goes_on = decision == Decision::Continue || end;
            if goes_on {
                data = match side {
                    Side::Request => self.s.vm(f).take_request_body(id),
                    Side::Response => self.s.vm(f).take_response_body(id),
                };
            }
            if let Some(flow) = self.after_callback(side, f, &decision)? {
                return Ok(Some(flow));
            }
            if !goes_on {
                return Ok(None);
            }
        }
        if walk.reached == walk.order.len() {
            walk.forwarded.extend(data);
            if end {
                self.report_body(walk);
            }
        } else {
            let pending = walk.pending.get_or_insert_with(|| (Vec::new(), false));
            pending.0.extend(data);
            pending.1 |= end;
        }
        Ok(None)
    }

    /// Reports the whole body as sent and as it left the last filter (once).
    fn report_body(&mut self, walk: &mut Walk) {
        let Some(body) = walk.body else { return };
        if walk.body_reported {
            return;
        }
        walk.body_reported = true;
        self.s.report.emit(Event::Body {
            side: walk.side.name(),
            sent: String::from_utf8_lossy(body).into_owned(),
            forwarded: String::from_utf8_lossy(&walk.forwarded).into_owned(),
        });
    }

    /// Reports the headers of `side` as filter `f` left them: right after
    /// its headers callback (with that callback's `decision`), or as they
    /// went on after a wait (`None`).
    fn emit_headers(
        &mut self,
        f: usize,
        side: Side,
        decision: Option<&Decision>,
        sent: &HeaderMap,
        now: &HeaderMap,
    ) {
        let (removed, added) = report::diff(sent, now);
        self.s.emit(
            f,
            Event::Headers {
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
            },
        );
    }

    /// Takes note of filter `f`'s decision, answers the callouts it made
    /// and passes on resume requests. `Some` when the side ended in a
    /// local reply.
    fn after_callback(
        &mut self,
        side: Side,
        f: usize,
        decision: &Decision,
    ) -> Result<Option<Flow>> {
        self.paused[f] = *decision == Decision::Pause;
        self.settle(side)?;
        self.reply_if_sent()
    }

    /// Answers new callouts (whose answers may make more), delivers queue
    /// notifications and applies the plugins' resume and close requests.
    fn settle(&mut self, side: Side) -> Result<()> {
        let streams: Vec<(usize, ContextId)> = self.ids.iter().copied().enumerate().collect();
        let paused = &mut self.paused;
        self.s.settle(&streams, |s, f, event| {
            stream_event(s, f, paused, side, event);
            Ok(())
        })
    }

    /// Sends a plugin's local reply, if one made one and it did not go
    /// out yet, through the response callbacks of every filter (in
    /// response order), as Envoy's encoder path does.
    fn reply_if_sent(&mut self) -> Result<Option<Flow>> {
        if self.replied {
            return Ok(None);
        }
        let sender = (0..self.ids.len()).find_map(|f| {
            let stream = self.s.vm_ref(f).stream(self.ids[f])?;
            Some((f, stream.local_response.clone()?))
        });
        let Some((sender, reply)) = sender else {
            return Ok(None);
        };
        self.replied = true;
        let sent_status = reply.status;
        let mut encoded = reply;
        for f in (0..self.ids.len()).rev() {
            let id = self.ids[f];
            let result = self.s.vm(f).encode_local_response(id, encoded);
            self.s.after_call();
            encoded = result?;
        }
        self.settle(Side::Response)?;
        self.s.emit(
            sender,
            Event::LocalResponse {
                sent_status,
                status: encoded.status,
                headers: encoded.headers.to_string_pairs(),
                grpc_status: encoded.grpc_status,
                body: String::from_utf8_lossy(&encoded.body).into_owned(),
            },
        );
        Ok(Some(Flow::Replied))
    }

    /// Runs ticks while a filter keeps `side` paused, until it resumes
    /// (and the headers and body go on through the filters after it), a
    /// plugin replies, or no tick is left.
    fn wait_while_paused(&mut self, side: Side, walk: &mut Walk) -> Result<Flow> {
        loop {
            let reached = &walk.order[..walk.reached];
            let Some(&f) = reached.iter().find(|&&f| self.paused[f]) else {
                if walk.reached == walk.order.len() {
                    return Ok(Flow::Continued);
                }
                if let Some(flow) = self.advance(side, walk)? {
                    return Ok(flow);
                }
                continue;
            };
            let Some(due) = self.s.next_tick() else {
                self.s.emit(f, Event::StillPaused { side: side.name() });
                return Ok(Flow::Stuck);
            };
            self.s.tick(due)?;
            self.settle(side)?;
            if let Some(flow) = self.reply_if_sent()? {
                return Ok(flow);
            }
            if let Some(flow) = self.advance(side, walk)? {
                return Ok(flow);
            }
        }
    }
}

/// Reports a resume or close request of filter `f`'s stream, and notes a
/// resume of the `side` waiting.
fn stream_event<E: Engine>(
    s: &mut Session<'_, E>,
    f: usize,
    paused: &mut [bool],
    side: Side,
    event: StreamEvent,
) {
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
            paused[f] = false;
        }
        s.emit(f, Event::Resume { side: named.name() });
    } else {
        s.emit(f, Event::Close { side: named.name() });
    }
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Continue => "continue",
        Decision::Pause => "pause",
        Decision::LocalResponse(_) => "local_response",
    }
}
