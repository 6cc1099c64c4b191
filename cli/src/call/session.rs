//! What every `polyhost call` run shares, HTTP or TCP: the VM and the
//! report, callouts answered as they are made, and ticks on the run's
//! clock.

use super::callouts::Answers;
use super::report::{Callout, Event, Report};
use anyhow::Result;
use polyhost::services::{CalloutQueue, CalloutRequest, Clock, VirtualClock};
use polyhost::{ContextId, Engine, StreamEvent, Vm};
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

/// One run's VM, report, callout answers and clock.
pub struct Session<'a, E: Engine> {
    /// The plugin's VM.
    pub vm: &'a mut Vm<E>,
    /// Where the steps go.
    pub report: &'a mut Report,
    callouts: &'a CalloutQueue,
    answers: Answers,
    timeline: Timeline,
    unanswered: Vec<Callout>,
}

impl<'a, E: Engine> Session<'a, E> {
    /// A run of `vm` answering callouts from `answers` on `timeline`.
    pub fn new(
        vm: &'a mut Vm<E>,
        report: &'a mut Report,
        callouts: &'a CalloutQueue,
        answers: Answers,
        timeline: Timeline,
    ) -> Self {
        Session {
            vm,
            report,
            callouts,
            answers,
            timeline,
            unanswered: Vec::new(),
        }
    }

    /// Reports the plugin's new log lines.
    pub fn logs(&mut self) {
        self.report.logs(self.vm.take_logs());
    }

    /// Answers the callouts made so far (whose answers may make more),
    /// handing each resume or close request of stream `id` to `on_event`,
    /// those made before the answers first.
    ///
    /// # Errors
    /// The plugin fails handling an answer, or `on_event` fails.
    pub fn settle(
        &mut self,
        id: ContextId,
        mut on_event: impl FnMut(&mut Self, StreamEvent) -> Result<()>,
    ) -> Result<()> {
        loop {
            let made = self.callouts.take();
            for event in self.vm.take_events(id) {
                on_event(self, event)?;
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

    /// When the next tick the run allows is due, if any.
    pub fn next_tick(&self) -> Option<Instant> {
        self.timeline.next_tick(self.vm)
    }

    /// Runs the tick due at `due`, moving the clock there.
    ///
    /// # Errors
    /// The plugin fails in `proxy_on_tick`.
    pub fn tick(&mut self, due: Instant) -> Result<()> {
        self.timeline.wait_until(due);
        self.timeline.ticks_left -= 1;
        self.report.emit(Event::Tick {
            at_ms: self.timeline.elapsed_ms(),
        });
        self.vm.tick(self.timeline.clock.now())?;
        self.logs();
        Ok(())
    }

    /// The callouts nobody answered, taken.
    pub fn take_unanswered(&mut self) -> Vec<Callout> {
        std::mem::take(&mut self.unanswered)
    }
}

/// The properties the plugin set on a stream, as text and sorted by path,
/// leaving out those `given` at its start that it did not change.
pub fn stream_properties(
    set: &std::collections::HashMap<Vec<u8>, Vec<u8>>,
    given: &[(Vec<u8>, Vec<u8>)],
) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = (set.iter())
        .filter(|(k, v)| !given.iter().any(|(gk, gv)| gk == *k && gv == *v))
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    properties.sort();
    properties
}
