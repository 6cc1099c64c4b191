//! What every `polyhost call` run shares, HTTP or TCP: the VMs of its
//! plugins and the report, callouts answered as they are made, queue
//! notifications delivered to the plugin that registered the queue, and
//! ticks on the run's clock.

use super::callouts::Answers;
use super::report::{Callout, Event, Report, Tagged};
use super::services::RunServices;
use anyhow::Result;
use polyhost::engine_core::HostContext;
use polyhost::services::{CalloutQueue, CalloutRequest, Clock, VirtualClock};
use polyhost::{ContextId, Engine, Plugin, PluginError, RootConfig, StreamEvent, Vm};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many rounds of queue notifications one settling delivers at most:
/// plugins that keep enqueueing to each other from `proxy_on_queue_ready`
/// would otherwise never let the run go on. What is left waits for the
/// next step of the run.
const QUEUE_ROUNDS: usize = 100;

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

    /// When the next tick the run allows is due, given when the VMs want
    /// their next one.
    fn next_tick(&self, due: Option<Instant>) -> Option<Instant> {
        let due = due?;
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

/// One plugin of the run: a root context in one of its VMs.
pub struct Member {
    /// The plugin's name.
    pub name: String,
    /// Its VM (an index into the run's VMs).
    pub vm: usize,
    /// Its root context there.
    pub root: ContextId,
}

/// A callout made and not answered yet.
struct Pending {
    vm: usize,
    owner: usize,
    call: CalloutRequest,
}

/// One run's VMs, report, callout answers and clock.
///
/// The members are the run's filters, in chain order, then its services.
pub struct Session<'a, E: Engine> {
    vms: &'a mut Vec<Vm<E>>,
    /// Each VM's callouts.
    callouts: Vec<Arc<CalloutQueue>>,
    members: Vec<Member>,
    /// How many of the members are filters.
    filters: usize,
    /// Where the steps go.
    pub report: &'a mut Report,
    services: &'a RunServices,
    answers: Answers,
    timeline: Timeline,
    unanswered: Vec<Tagged<Callout>>,
    pending: Vec<Pending>,
    /// The member being called now.
    current: usize,
}

impl<'a, E: Engine> Session<'a, E> {
    /// A run of the VMs in `vms` (empty; [`Session::start`] fills it)
    /// answering callouts from `answers` on `timeline`.
    pub fn new(
        vms: &'a mut Vec<Vm<E>>,
        report: &'a mut Report,
        services: &'a RunServices,
        answers: Answers,
        timeline: Timeline,
    ) -> Self {
        Session {
            vms,
            callouts: Vec::new(),
            members: Vec::new(),
            filters: 0,
            report,
            services,
            answers,
            timeline,
            unanswered: Vec::new(),
            pending: Vec::new(),
            current: 0,
        }
    }

    /// Starts a plugin: in a new VM of `plugin` (whose services came with
    /// `callouts`) when `vm` is `None`, else as a further root context in
    /// VM `vm`.
    ///
    /// # Errors
    /// The plugin fails to start. Returns the index of its VM.
    pub fn start(
        &mut self,
        plugin: &Plugin<E>,
        callouts: &Arc<CalloutQueue>,
        vm: Option<usize>,
        root: RootConfig,
        filter: bool,
    ) -> Result<usize, PluginError> {
        let name = root.name.clone();
        // Filters come first among the members, in chain order.
        let member = if filter {
            self.filters
        } else {
            self.members.len()
        };
        self.current = member;
        self.services.current.set(&name);
        // The member exists before it starts, so its start-up log lines are
        // put down to it.
        let index = vm.unwrap_or(self.vms.len());
        self.members.insert(
            member,
            Member {
                name,
                vm: index,
                root: ContextId(0),
            },
        );
        let started = match vm {
            Some(index) => self.vms[index].add_root(root),
            None => plugin.new_vm_as(root).map(|mut new| {
                // A timer the plugin set while starting restarts on the
                // run's clock.
                new.instance()
                    .data_mut()
                    .set_clock(self.timeline.clock.clone());
                self.vms.push(new);
                self.callouts.push(callouts.clone());
                self.vms[index].roots()[0]
            }),
        };
        match started {
            Ok(root) => {
                self.members[member].root = root;
                if filter {
                    self.filters += 1;
                }
                self.after_call();
                Ok(index)
            }
            Err(e) => {
                if vm.is_some() {
                    self.after_call();
                }
                self.members.remove(member);
                Err(e)
            }
        }
    }

    /// How many filters the run has.
    pub fn filters(&self) -> usize {
        self.filters
    }

    /// The name of member `m`.
    pub fn name(&self, m: usize) -> &str {
        &self.members[m].name
    }

    /// The root context of member `m`.
    pub fn root(&self, m: usize) -> ContextId {
        self.members[m].root
    }

    /// The VM of member `m`, which the next calls are put down to.
    pub fn vm(&mut self, m: usize) -> &mut Vm<E> {
        self.current = m;
        self.services.current.set(&self.members[m].name);
        &mut self.vms[self.members[m].vm]
    }

    /// Properties the plugins set outside any stream (from a root
    /// context), per VM, tagged with the first plugin of the VM when the
    /// run has several: (path, value, plugin).
    pub fn vm_properties(&mut self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        for (index, vm) in self.vms.iter_mut().enumerate() {
            let Some(first) = self.members.iter().find(|m| m.vm == index) else {
                continue;
            };
            let tag = self.report.tag(&first.name);
            for (path, value) in stream_properties(vm.instance().data().vm_properties(), &[]) {
                out.push((path, value, tag.clone()));
            }
        }
        out
    }

    /// The VM of member `m`, to read.
    pub fn vm_ref(&self, m: usize) -> &Vm<E> {
        &self.vms[self.members[m].vm]
    }

    /// Records an event about member `m`.
    pub fn emit(&mut self, m: usize, event: Event) {
        let name = self.members[m].name.clone();
        self.report.emit_by(&name, event);
    }

    /// After a callback: reports the log lines and foreign function calls
    /// made, and takes the callouts made (put down to the member called).
    pub fn after_call(&mut self) {
        report_logs(self.report, self.vms, &self.members);
        report_foreign_calls(self.report, self.services);
        for (vm, queue) in self.callouts.iter().enumerate() {
            for call in queue.take() {
                // A VM's calls come from the member called, or (in a VM
                // several share) from its first member.
                let owner = if self.members[self.current].vm == vm {
                    self.current
                } else {
                    (self.members.iter().position(|m| m.vm == vm)).unwrap_or(0)
                };
                self.pending.push(Pending { vm, owner, call });
            }
        }
    }

    /// Answers the callouts made so far (whose answers may make more) and
    /// delivers queue notifications, handing each resume or close request
    /// of the streams `(member, id)` to `on_event`, those made before the
    /// answers first.
    ///
    /// # Errors
    /// A plugin fails handling an answer or a notification, or `on_event`
    /// fails.
    pub fn settle(
        &mut self,
        streams: &[(usize, ContextId)],
        mut on_event: impl FnMut(&mut Self, usize, StreamEvent) -> Result<()>,
    ) -> Result<()> {
        let mut rounds = 0;
        loop {
            for &(m, id) in streams {
                for event in self.vm(m).take_events(id) {
                    on_event(self, m, event)?;
                }
            }
            let delivered = rounds < QUEUE_ROUNDS && self.deliver_queues()?;
            rounds += 1;
            let made = std::mem::take(&mut self.pending);
            if made.is_empty() && !delivered {
                return Ok(());
            }
            for call in made {
                self.callout(call)?;
                self.after_call();
            }
        }
    }

    /// Delivers `proxy_on_queue_ready` for the queues that received data,
    /// to the plugins that registered them. Whether there were any.
    fn deliver_queues(&mut self) -> Result<bool> {
        let notified = self.services.take_notified();
        if notified.is_empty() {
            return Ok(false);
        }
        let mut vms: Vec<(usize, usize)> = Vec::new();
        for n in notified {
            let Some(owner) = self.members.iter().position(|m| m.name == n.owner) else {
                continue;
            };
            self.emit(
                owner,
                Event::QueueReady {
                    vm_id: n.vm_id,
                    queue: n.name,
                    queue_id: n.id,
                },
            );
            let vm = self.members[owner].vm;
            if !vms.iter().any(|(v, _)| *v == vm) {
                vms.push((vm, owner));
            }
        }
        for (_, owner) in vms {
            let delivered = self.vm(owner).deliver_queue_ready();
            self.after_call();
            delivered?;
        }
        Ok(true)
    }

    fn callout(&mut self, pending: Pending) -> Result<()> {
        let Pending { vm, owner, call } = pending;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let tag = self.report.tag(&self.members[owner].name);
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
                self.unanswered.push(Tagged {
                    item: Callout {
                        kind: "grpc_stream",
                        token: s.token,
                        cluster: text(&s.upstream),
                        headers: s.initial_metadata.to_string_pairs(),
                        method: format!("{}/{}", s.service, s.method),
                        body: String::new(),
                        timeout_ms: 0,
                    },
                    plugin: tag,
                });
                return Ok(());
            }
            // Messages on streams, cancels and closes need no answer.
            _ => return Ok(()),
        };
        self.emit(owner, Event::Callout(callout.clone()));
        let Some(answer) = self.answers.take(grpc, &callout.cluster) else {
            self.unanswered.push(Tagged {
                item: callout,
                plugin: tag,
            });
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
        self.emit(
            owner,
            Event::CalloutAnswer {
                token: callout.token,
                answer: shown,
            },
        );
        self.current = owner;
        self.services.current.set(&self.members[owner].name);
        let vm = &mut self.vms[vm];
        if grpc {
            let result = if self.answers.defaults() {
                polyhost::GrpcResult::Err {
                    status: 14,
                    message: "no upstream in `polyhost call`".into(),
                }
            } else {
                answer.grpc()
            };
            vm.deliver_grpc_response(callout.token, result)?;
        } else {
            vm.deliver_http_response(callout.token, answer.http())?;
        }
        Ok(())
    }

    /// When the next tick the run allows is due, if any.
    pub fn next_tick(&self) -> Option<Instant> {
        let due = self.vms.iter().filter_map(|vm| vm.next_tick()).min();
        self.timeline.next_tick(due)
    }

    /// Runs the ticks due at `due` (every plugin whose timer is due then),
    /// moving the clock there.
    ///
    /// # Errors
    /// A plugin fails in `proxy_on_tick`.
    pub fn tick(&mut self, due: Instant) -> Result<()> {
        self.timeline.wait_until(due);
        self.timeline.ticks_left -= 1;
        self.report.emit(Event::Tick {
            at_ms: self.timeline.elapsed_ms(),
        });
        let now = self.timeline.clock.now();
        for m in 0..self.members.len() {
            let root = self.members[m].root;
            let ticked = self.vm(m).tick_root(root, now);
            self.after_call();
            ticked?;
        }
        Ok(())
    }

    /// The callouts nobody answered, taken.
    pub fn take_unanswered(&mut self) -> Vec<Tagged<Callout>> {
        std::mem::take(&mut self.unanswered)
    }
}

/// Reports the log lines the VMs kept, each put down to the plugin whose
/// root context was current when it logged.
pub fn report_logs<E: Engine>(report: &mut Report, vms: &mut [Vm<E>], members: &[Member]) {
    for (index, vm) in vms.iter_mut().enumerate() {
        for line in vm.take_logs() {
            let owner = (members
                .iter()
                .find(|m| m.vm == index && m.root == line.root))
            .or_else(|| members.iter().find(|m| m.vm == index));
            let name = owner.map_or("", |m| m.name.as_str());
            report.logs_by(name, vec![line]);
        }
    }
}

/// Reports the foreign function calls made since the last look.
pub fn report_foreign_calls(report: &mut Report, services: &RunServices) {
    for call in services.take_foreign_calls() {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (answer, status) = match &call.result {
            Ok(bytes) => (Some(text(bytes)), "Ok".to_string()),
            Err(status) => (None, format!("{status:?}")),
        };
        report.emit_by(
            &call.plugin,
            Event::ForeignCall {
                name: call.name,
                argument: text(&call.argument),
                answer,
                status,
                named: call.named,
            },
        );
    }
}

impl<E: Engine> Drop for Session<'_, E> {
    /// What the plugins logged in a callback that failed is still shown.
    fn drop(&mut self) {
        report_logs(self.report, self.vms, &self.members);
        report_foreign_calls(self.report, self.services);
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
