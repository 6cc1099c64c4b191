//! One connection's walk through the network Wasm filters.
//!
//! Downstream bytes (client to upstream) run through the filters in chain
//! order, upstream bytes in reverse order, as Envoy's read and write
//! filters do; each filter sees what the previous one let through.
//!
//! A filter's context is created (`proxy_on_new_connection`) when the
//! chain first reaches it. A filter that pauses there keeps the filters
//! after it (and so the upstream connection, which `tcp_proxy` opens when
//! its own turn comes) waiting until it lets data through, as Envoy's
//! filter manager starts a filter only once the one before it continued.
//!
//! A filter that pauses a data callback holds the bytes: the VM keeps them
//! in the connection's buffer and shows the plugin the whole buffer with
//! the next chunk. At end of stream nothing more can arrive, so what is
//! held is passed on. A plugin may also let held bytes (or a connection
//! paused at its start) go from a tick or a callout answer with
//! `proxy_continue_stream`: the connection waits on the plugin's VM for
//! that ([`NetworkChain::woken`], [`NetworkChain::resume`]).

use crate::config::FailurePolicy;
use crate::wasm::{VmUnavailable, WasmFilter, WorkerVm};
use polyhost::{
    ContextId, Decision, PeerType, PluginError, StreamEvent, StreamProperties, StreamType,
};

/// The most bytes one filter may hold back in one direction by pausing;
/// past it the connection is closed, so a plugin cannot make the proxy
/// buffer without bound (the same bound as a paused HTTP body).
pub(crate) const HOLD_LIMIT: usize = 16 << 20;

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the client towards the upstream: `proxy_on_downstream_data`,
    /// filters in chain order.
    Downstream,
    /// From the upstream towards the client: `proxy_on_upstream_data`,
    /// filters in reverse order.
    Upstream,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Downstream => 0,
            Direction::Upstream => 1,
        }
    }
}

/// Why the connection must be closed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    /// For the log: which plugin, and why.
    pub(crate) reason: String,
}

/// Where one filter is in the connection's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The chain has not reached it yet: no context.
    NotStarted,
    /// Its context exists (`proxy_on_new_connection` was called).
    Started,
    /// It failed under `FAIL_OPEN`: bytes pass it unfiltered.
    Bypassed,
}

/// One filter's state for one connection.
struct NetworkFilter {
    filter: WasmFilter,
    phase: Phase,
    context: Option<ContextId>,
    /// It paused `proxy_on_new_connection` and has not let data through
    /// since: the filters after it wait.
    paused_at_start: bool,
    /// A copy of what it holds back in each direction, so that failing
    /// open passes those bytes on instead of losing them with the VM.
    held: [Vec<u8>; 2],
}

/// The network filters of one connection.
pub(crate) struct NetworkChain {
    filters: Vec<NetworkFilter>,
    /// The connection's properties (`source.address`, ...), which every
    /// filter's context reads from its `proxy_on_new_connection` on.
    properties: StreamProperties,
}

impl NetworkChain {
    /// A chain over `filters` (in chain order); nothing runs until
    /// [`NetworkChain::downstream`] is first called.
    pub(crate) fn new(filters: &[WasmFilter], properties: StreamProperties) -> NetworkChain {
        NetworkChain {
            filters: filters
                .iter()
                .map(|filter| NetworkFilter {
                    filter: filter.clone(),
                    phase: Phase::NotStarted,
                    context: None,
                    paused_at_start: false,
                    held: [Vec::new(), Vec::new()],
                })
                .collect(),
            properties,
        }
    }

    /// Whether every filter has been started and none waits at its start:
    /// the terminal `tcp_proxy` may connect upstream.
    pub(crate) fn ready(&self) -> bool {
        self.filters
            .iter()
            .all(|f| f.phase != Phase::NotStarted && !f.paused_at_start)
    }

    /// Runs bytes from the client through the filters; returns what goes
    /// upstream (possibly edited, possibly empty). An empty chunk without
    /// end of stream only starts the filters that the chain reaches.
    pub(crate) fn downstream(
        &mut self,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Vec<u8>, Close> {
        self.downstream_from(0, chunk, end_of_stream)
    }

    /// [`NetworkChain::downstream`] from filter `first` on.
    fn downstream_from(
        &mut self,
        first: usize,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Vec<u8>, Close> {
        let mut data = chunk;
        for i in first..self.filters.len() {
            if self.filters[i].phase == Phase::NotStarted {
                self.start(i)?;
            }
            let filter = &mut self.filters[i];
            if data.is_empty() && !end_of_stream {
                if filter.paused_at_start {
                    return Ok(Vec::new());
                }
                continue;
            }
            match pass(filter, Direction::Downstream, data, end_of_stream)? {
                Some(out) => {
                    filter.paused_at_start = false;
                    data = out;
                }
                None => return Ok(Vec::new()),
            }
        }
        Ok(data)
    }

    /// Runs bytes from the upstream through the filters, last to first;
    /// returns what goes to the client.
    pub(crate) fn upstream(
        &mut self,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Vec<u8>, Close> {
        self.upstream_before(self.filters.len(), chunk, end_of_stream)
    }

    /// [`NetworkChain::upstream`] through the filters before `end` only.
    fn upstream_before(
        &mut self,
        end: usize,
        chunk: Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Vec<u8>, Close> {
        let mut data = chunk;
        if data.is_empty() && !end_of_stream {
            return Ok(data);
        }
        for filter in self.filters[..end].iter_mut().rev() {
            match pass(filter, Direction::Upstream, data, end_of_stream)? {
                Some(out) => data = out,
                None => return Ok(Vec::new()),
            }
        }
        Ok(data)
    }

    /// Whether some filter holds bytes or keeps the connection waiting at
    /// its start: only then can a tick or a callout answer release
    /// anything.
    pub(crate) fn waiting(&self) -> bool {
        self.filters.iter().any(NetworkFilter::waiting)
    }

    /// Resolves when the VM of a waiting filter may have resumed its
    /// connection: at once if `proxy_continue_stream` (or
    /// `proxy_close_stream`) is already pending, else on the next tick or
    /// callout answer in one of those VMs. [`NetworkChain::resume`] then
    /// says what moved.
    pub(crate) async fn woken(&self) {
        use std::future::Future;
        let waiting = self.filters.iter().filter(|f| f.waiting());
        // Register interest before looking, so a wake-up between the look
        // and the wait is not lost.
        let mut wakes: Vec<_> = waiting
            .clone()
            .map(|f| Box::pin(f.filter.pause_notifier().notified_owned()))
            .collect();
        for wake in &mut wakes {
            wake.as_mut().enable();
        }
        let pending = waiting.into_iter().any(|f| {
            let Some(id) = f.context else { return false };
            f.filter
                .with_vm(|vm| {
                    vm.stream(id).is_some_and(|s| {
                        s.events
                            .iter()
                            .any(|e| matches!(e, StreamEvent::Resume(_) | StreamEvent::Close(_)))
                    })
                })
                .unwrap_or(true)
        });
        if pending {
            return;
        }
        std::future::poll_fn(|cx| {
            if wakes.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }

    /// Lets go what waiting filters released with `proxy_continue_stream`
    /// since they paused: returns the bytes for the upstream and for the
    /// client, each already through the rest of the chain in its direction.
    /// A filter resumed at its start lets the filters after it start, and
    /// so the upstream connection be made.
    pub(crate) fn resume(&mut self) -> Result<(Vec<u8>, Vec<u8>), Close> {
        let mut to_upstream = Vec::new();
        let mut to_client = Vec::new();
        for i in 0..self.filters.len() {
            let filter = &mut self.filters[i];
            if !filter.waiting() {
                continue;
            }
            let Some(id) = filter.context else { continue };
            let events = match filter.filter.with_vm(|vm| vm.take_events(id)) {
                Ok(events) => events,
                // The VM failed meanwhile: the filter's policy decides, and
                // what it held goes on unfiltered if it fails open.
                Err(VmUnavailable) => {
                    fail(filter)?;
                    let down = std::mem::take(&mut filter.held[Direction::Downstream.index()]);
                    let up = std::mem::take(&mut filter.held[Direction::Upstream.index()]);
                    to_upstream.extend(self.downstream_from(i + 1, down, false)?);
                    to_client.extend(self.upstream_before(i, up, false)?);
                    continue;
                }
            };
            if events.iter().any(|e| matches!(e, StreamEvent::Close(_))) {
                return Err(closed_by_plugin(&filter.filter));
            }
            if events.contains(&StreamEvent::Resume(StreamType::Downstream)) {
                filter.paused_at_start = false;
                let released = release(filter, Direction::Downstream, id);
                to_upstream.extend(self.downstream_from(i + 1, released, false)?);
            }
            let filter = &mut self.filters[i];
            if events.contains(&StreamEvent::Resume(StreamType::Upstream)) {
                let released = release(filter, Direction::Upstream, id);
                to_client.extend(self.upstream_before(i, released, false)?);
            }
        }
        Ok((to_upstream, to_client))
    }

    /// Tells every started filter that the client connection closed
    /// (`proxy_on_downstream_connection_close`) and, if an upstream
    /// connection was made, that it closed too; `peer` says which side
    /// ended each. Then ends every context (`proxy_on_log`,
    /// `proxy_on_done`, `proxy_on_delete`).
    pub(crate) fn finish(&mut self, downstream: PeerType, upstream: Option<PeerType>) {
        for filter in &mut self.filters {
            let Some(id) = filter.context.take() else {
                continue;
            };
            let plugin = filter.filter.clone();
            let ended = plugin.with_vm(|vm| {
                let closes = vm
                    .on_downstream_close(id, downstream)
                    .and_then(|()| match upstream {
                        Some(peer) => vm.on_upstream_close(id, peer),
                        None => Ok(()),
                    });
                // The context ends even if a close callback failed.
                let finished = vm.finish_stream(id).map(|_| ());
                closes.and(finished)
            });
            if let Ok(Err(e)) = ended {
                tracing::error!(target: "polyhost::wasm", plugin = %plugin.name(), error = %e, "plugin failed at the end of a connection");
            }
        }
    }

    /// Creates filter `i`'s context and calls `proxy_on_new_connection`.
    fn start(&mut self, i: usize) -> Result<(), Close> {
        let properties = &self.properties;
        let filter = &mut self.filters[i];
        let created = filter.filter.with_vm_as(|vm, root| {
            let (id, decision) = vm.create_tcp_stream(root, properties.clone())?;
            let closed = took_close(vm, id);
            Ok::<_, PluginError>((id, decision, closed))
        });
        match created {
            Ok(Ok((id, decision, closed))) => {
                filter.phase = Phase::Started;
                filter.context = Some(id);
                if closed {
                    return Err(closed_by_plugin(&filter.filter));
                }
                filter.paused_at_start = decision == Decision::Pause;
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::error!(target: "polyhost::wasm", plugin = %filter.filter.name(), error = %e, "plugin failed on a new connection");
                fail(filter)
            }
            Err(VmUnavailable) => fail(filter),
        }
    }
}

impl NetworkFilter {
    /// Whether it holds bytes or waits at its start.
    fn waiting(&self) -> bool {
        self.context.is_some()
            && (self.paused_at_start || self.held.iter().any(|held| !held.is_empty()))
    }
}

/// What a filter held in `direction`, as the plugin left its buffer, now
/// that it let it go.
fn release(filter: &mut NetworkFilter, direction: Direction, id: ContextId) -> Vec<u8> {
    let held = std::mem::take(&mut filter.held[direction.index()]);
    if held.is_empty() {
        return held;
    }
    let taken = filter.filter.with_vm(|vm| match direction {
        Direction::Downstream => vm.take_downstream_data(id),
        Direction::Upstream => vm.take_upstream_data(id),
    });
    // Should the VM be gone, the bytes still go on as they came.
    taken.unwrap_or(held)
}

/// Runs one chunk through one filter. `Some(bytes)` to pass on, `None` when
/// the filter holds them.
fn pass(
    filter: &mut NetworkFilter,
    direction: Direction,
    input: Vec<u8>,
    end_of_stream: bool,
) -> Result<Option<Vec<u8>>, Close> {
    let Some(id) = filter.context else {
        return Ok(Some(input));
    };
    let outcome = filter.filter.with_vm(|vm| {
        let decision = match direction {
            Direction::Downstream => vm.on_downstream_data(id, &input, end_of_stream)?,
            Direction::Upstream => vm.on_upstream_data(id, &input, end_of_stream)?,
        };
        let closed = took_close(vm, id);
        // A local reply has no meaning on a connection; go on with the data.
        let out = (decision != Decision::Pause || end_of_stream).then(|| match direction {
            Direction::Downstream => vm.take_downstream_data(id),
            Direction::Upstream => vm.take_upstream_data(id),
        });
        Ok::<_, PluginError>((out, closed))
    });
    let held = &mut filter.held[direction.index()];
    match outcome {
        Ok(Ok((_, true))) => Err(closed_by_plugin(&filter.filter)),
        Ok(Ok((Some(out), false))) => {
            held.clear();
            Ok(Some(out))
        }
        Ok(Ok((None, false))) => {
            held.extend_from_slice(&input);
            if held.len() > HOLD_LIMIT {
                return Err(Close {
                    reason: format!(
                        "plugin {} held more than {} MiB",
                        filter.filter.name(),
                        HOLD_LIMIT >> 20
                    ),
                });
            }
            Ok(None)
        }
        Ok(Err(e)) => {
            tracing::error!(target: "polyhost::wasm", plugin = %filter.filter.name(), error = %e, "plugin failed on connection data");
            fail(filter)?;
            let mut unfiltered = std::mem::take(&mut filter.held[direction.index()]);
            unfiltered.extend_from_slice(&input);
            Ok(Some(unfiltered))
        }
        Err(VmUnavailable) => {
            fail(filter)?;
            let mut unfiltered = std::mem::take(&mut filter.held[direction.index()]);
            unfiltered.extend_from_slice(&input);
            Ok(Some(unfiltered))
        }
    }
}

/// Whether the plugin asked to close the connection (`proxy_close_stream`)
/// during the last callback; other events are spent, since a data callback
/// answers for itself.
fn took_close(vm: &mut dyn WorkerVm, id: ContextId) -> bool {
    vm.take_events(id)
        .iter()
        .any(|e| matches!(e, StreamEvent::Close(_)))
}

fn closed_by_plugin(filter: &WasmFilter) -> Close {
    Close {
        reason: format!("plugin {} closed the connection", filter.name()),
    }
}

/// Applies the failure policy to a filter that failed: under `FAIL_OPEN`
/// it is bypassed from now on; otherwise the connection closes.
fn fail(filter: &mut NetworkFilter) -> Result<(), Close> {
    filter.context = None;
    filter.paused_at_start = false;
    match filter.filter.failure_policy() {
        FailurePolicy::FailOpen => {
            filter.phase = Phase::Bypassed;
            Ok(())
        }
        FailurePolicy::FailClosed | FailurePolicy::FailReload => {
            filter.phase = Phase::Bypassed;
            Err(Close {
                reason: format!("plugin {} failed", filter.filter.name()),
            })
        }
    }
}
