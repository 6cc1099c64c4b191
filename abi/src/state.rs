//! The host data attached to every plugin instance.

use crate::headers::HeaderMap;
use crate::limits::{Budget, HostLimits, Limit, StreamCharge};
use crate::services::{Clock, HostServices, PropertyProvider, SystemClock};
use crate::types::{AbiVersion, BufferType, LogLevel, MapType, StreamType};
use crate::vm::ContextId;
use crossbeam::queue::SegQueue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read-only facts about a loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The plugin's name (from the embedder's configuration).
    pub name: Arc<str>,
    /// The root id that selects the plugin's root context.
    pub root_id: String,
    /// The VM id: plugins with the same VM id share data and queues.
    pub vm_id: String,
    /// VM configuration bytes (`proxy_on_vm_start`).
    pub vm_configuration: Vec<u8>,
    /// Plugin configuration bytes (`proxy_on_configure`).
    pub plugin_configuration: Vec<u8>,
    /// Environment variables the operator lets the plugin see.
    pub environment: Vec<(String, String)>,
    /// Lowest level of plugin log lines that are kept.
    pub log_level: LogLevel,
    /// The ABI the plugin was built against.
    pub abi: AbiVersion,
    /// What the host keeps for each VM at most (see [`HostLimits`]).
    pub limits: HostLimits,
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
    /// The root context that was current when the plugin logged: in a VM
    /// shared by several plugins it says whose line this is
    /// ([`crate::Vm::root_info`] gives that plugin's name and root id).
    pub root: ContextId,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.level.as_str(), self.message)
    }
}

/// A reply the plugin sent instead of letting the stream go upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// Response code details (Envoy's `%RESPONSE_CODE_DETAILS%`).
    pub details: String,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers.
    pub headers: HeaderMap,
    /// gRPC status, when the plugin set one.
    pub grpc_status: Option<u32>,
}

/// Something a plugin did to a stream outside the callback's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// `proxy_continue_stream`: resume a paused direction.
    Resume(StreamType),
    /// `proxy_close_stream`: close a direction.
    Close(StreamType),
    /// `proxy_clear_route_cache` (ABI 0.1.0).
    ClearRouteCache,
}

/// The state of one HTTP stream or TCP connection as the plugin sees it.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// Request headers.
    pub request_headers: HeaderMap,
    /// Request trailers.
    pub request_trailers: HeaderMap,
    /// Response headers.
    pub response_headers: HeaderMap,
    /// Response trailers.
    pub response_trailers: HeaderMap,
    /// Request body buffered so far.
    pub request_body: Vec<u8>,
    /// Response body buffered so far.
    pub response_body: Vec<u8>,
    /// TCP: data from downstream buffered so far.
    pub downstream_data: Vec<u8>,
    /// TCP: data from upstream buffered so far.
    pub upstream_data: Vec<u8>,
    /// The local response, once the plugin sent one.
    pub local_response: Option<LocalResponse>,
    /// Resume/close requests not yet taken by the embedder.
    pub events: Vec<StreamEvent>,
    /// Properties the plugin set on this stream (or the embedder put
    /// there).
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Properties the embedder provides for this stream, computed only when
    /// the plugin reads one: a proxy's connection and route attributes
    /// (`source.address`, `route_name`, ...) cost a lookup on the rare
    /// read rather than a map of formatted values on every stream. Asked
    /// after [`StreamState::properties`], so a plugin's own
    /// `proxy_set_property` of the same path wins.
    pub provided: Option<StreamProperties>,
    /// The root context this stream was created for.
    pub(crate) root: u32,
    /// What the plugin's changes to this stream hold against the VM's
    /// budget; given back when this state is dropped.
    pub(crate) charge: StreamCharge,
}

/// A stream's [`PropertyProvider`], shared: one provider may serve every
/// filter's stream of a request.
#[derive(Clone)]
pub struct StreamProperties(pub Arc<dyn PropertyProvider>);

impl std::fmt::Debug for StreamProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamProperties(..)")
    }
}

impl StreamState {
    pub(crate) fn map(&self, t: MapType) -> Option<&HeaderMap> {
        Some(match t {
            MapType::RequestHeaders => &self.request_headers,
            MapType::RequestTrailers => &self.request_trailers,
            MapType::ResponseHeaders => &self.response_headers,
            MapType::ResponseTrailers => &self.response_trailers,
            _ => return None,
        })
    }

    /// Map `t`, mutably, with the stream's charge borrowed alongside.
    pub(crate) fn map_and_charge(
        &mut self,
        t: MapType,
    ) -> Option<(&mut HeaderMap, &mut StreamCharge)> {
        let map = match t {
            MapType::RequestHeaders => &mut self.request_headers,
            MapType::RequestTrailers => &mut self.request_trailers,
            MapType::ResponseHeaders => &mut self.response_headers,
            MapType::ResponseTrailers => &mut self.response_trailers,
            _ => return None,
        };
        Some((map, &mut self.charge))
    }

    /// Bytes this stream holds against the VM's budget
    /// ([`HostLimits::max_vm_bytes`]).
    pub fn charged_bytes(&self) -> usize {
        self.charge.bytes()
    }

    pub(crate) fn buffer_mut(&mut self, t: BufferType) -> Option<&mut Vec<u8>> {
        Some(match t {
            BufferType::HttpRequestBody => &mut self.request_body,
            BufferType::HttpResponseBody => &mut self.response_body,
            BufferType::DownstreamData => &mut self.downstream_data,
            BufferType::UpstreamData => &mut self.upstream_data,
            _ => return None,
        })
    }
}

/// Data readable only while the host delivers a callout result or a foreign
/// call to the plugin.
#[derive(Debug, Default)]
pub(crate) struct CallScratch {
    pub http_headers: HeaderMap,
    pub http_body: Vec<u8>,
    pub http_trailers: HeaderMap,
    pub grpc_initial: HeaderMap,
    pub grpc_trailing: HeaderMap,
    pub grpc_message: Vec<u8>,
    pub call_data: Vec<u8>,
}

/// The kind of outstanding callout behind a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CalloutKind {
    Http,
    GrpcCall,
    GrpcStream,
}

/// The root context's shutdown, as the reference host tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownPhase {
    /// Not asked to shut down.
    Running,
    /// `proxy_on_done` returned false: deferred work is still in flight and
    /// the plugin will call `proxy_done`.
    AwaitingDone,
    /// `proxy_done` was called; `proxy_on_delete` runs once the current
    /// callback returns.
    DoneCalled,
    /// `proxy_on_delete` ran; the VM takes no more callbacks.
    Deleted,
}

/// One root context of a VM: a plugin sharing the VM, with what the host
/// keeps for it alone.
pub(crate) struct RootState {
    /// Its context id.
    pub id: u32,
    /// The plugin's facts (name, root id, configuration) as host calls made
    /// while this root is current see them.
    pub info: Arc<PluginInfo>,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Instant>,
    /// Where this root is in its shutdown (see `Vm::shutdown`).
    pub shutdown: ShutdownPhase,
    /// Ids of the queues this root registered that have data, filled by
    /// other VMs.
    pub ready_queues: Arc<SegQueue<u32>>,
}

impl RootState {
    pub(crate) fn new(id: u32, info: Arc<PluginInfo>) -> Self {
        RootState {
            id,
            info,
            tick_period: None,
            next_tick: None,
            shutdown: ShutdownPhase::Running,
            ready_queues: Arc::new(SegQueue::new()),
        }
    }
}

/// Most recent lines kept per VM for error reports and tools.
const LOG_CAPACITY: usize = 4096;

/// Everything host functions need, stored in the engine's instance.
pub struct HostState {
    /// The current root's facts: `roots[current].info`, copied out so host
    /// calls read it without an index.
    pub(crate) plugin: Arc<PluginInfo>,
    /// The plugin's services, shared by all its VMs: one reference count
    /// per VM rather than one per service.
    pub(crate) services: Arc<HostServices>,
    /// The context host calls act on (set before every callback and by
    /// `proxy_set_effective_context`).
    pub(crate) effective: u32,
    /// The id of the current root: the effective context's root.
    pub(crate) root_context: u32,
    /// The VM's root contexts in creation order (one per plugin sharing
    /// the VM); `current` indexes the one host calls act for.
    pub(crate) roots: Vec<RootState>,
    pub(crate) current: usize,
    /// Some root's `proxy_done` was called; its `proxy_on_delete` runs
    /// after the current callback.
    pub(crate) done_pending: bool,
    /// Keyed by context id with Fx hashing: every header call looks its
    /// stream up here, and SipHash showed in the profile of that path.
    pub(crate) streams: rustc_hash::FxHashMap<u32, StreamState>,
    pub(crate) scratch: CallScratch,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) callouts: HashMap<u32, (u32, CalloutKind)>,
    pub(crate) next_token: u32,
    pub(crate) vm_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub(crate) last_status: (u32, Vec<u8>),
    /// Set by WASI `proc_exit`.
    pub(crate) exit_code: Option<i32>,
    /// Unfinished lines written to stdout and stderr.
    pub(crate) stdio_partial: [Vec<u8>; 2],
    /// How many host calls are waiting on the plugin's allocator right now
    /// (host -> allocator -> host -> allocator ...), capped by
    /// [`crate::host::MAX_ALLOCATOR_DEPTH`].
    pub(crate) allocator_depth: u32,
    /// Why a host call trapped the guest in the running callback: the first
    /// (innermost) allocator failure, which outer levels report instead of
    /// wrapping it again, or a WASI wait cut short by the deadline.
    pub(crate) trap_cause: Option<TrapCause>,
    /// Bytes held for the plugin and the limits reported (see
    /// [`crate::limits`]).
    pub(crate) budget: Budget,
    /// The time the plugin reads and its ticks are scheduled on.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Why a host call trapped the guest.
#[derive(Debug, Clone)]
pub(crate) struct TrapCause {
    /// The error kind (`Interrupted` when a deadline struck).
    pub kind: polyhost_engine_core::ErrorKind,
    /// The first line of the message.
    pub message: String,
}

impl HostState {
    /// Properties the plugin set with `proxy_set_property` outside any
    /// stream (from a root context), by dotted path.
    pub fn vm_properties(&self) -> &HashMap<Vec<u8>, Vec<u8>> {
        &self.vm_properties
    }

    /// A state whose first root context, `root`, is `plugin`'s.
    pub(crate) fn new(plugin: Arc<PluginInfo>, services: Arc<HostServices>, root: u32) -> Self {
        let plugin_limits = plugin.limits;
        HostState {
            roots: vec![RootState::new(root, plugin.clone())],
            current: 0,
            done_pending: false,
            plugin,
            services,
            effective: 0,
            root_context: root,
            streams: rustc_hash::FxHashMap::default(),
            scratch: CallScratch::default(),
            logs: Vec::new(),
            callouts: HashMap::new(),
            next_token: 1,
            vm_properties: HashMap::new(),
            last_status: (0, Vec::new()),
            exit_code: None,
            stdio_partial: [Vec::new(), Vec::new()],
            allocator_depth: 0,
            trap_cause: None,
            budget: Budget::new(plugin_limits),
            clock: Arc::new(SystemClock),
        }
    }

    /// The current root context.
    pub(crate) fn root(&self) -> &RootState {
        &self.roots[self.current]
    }

    pub(crate) fn root_mut(&mut self) -> &mut RootState {
        &mut self.roots[self.current]
    }

    /// Where root context `id` is in `roots`.
    pub(crate) fn root_index(&self, id: u32) -> Option<usize> {
        self.roots.iter().position(|r| r.id == id)
    }

    /// The root context that context `ctx` belongs to: itself for a root,
    /// the root it was created for for a stream.
    pub(crate) fn root_of(&self, ctx: u32) -> Option<usize> {
        match self.streams.get(&ctx) {
            Some(stream) => self.root_index(stream.root),
            None => self.root_index(ctx),
        }
    }

    /// Makes context `ctx` effective and its root current. The root's
    /// facts are swapped in only when the root changes, and a VM with one
    /// root never looks anything up.
    pub(crate) fn enter(&mut self, ctx: u32) {
        self.effective = ctx;
        if self.roots.len() > 1
            && let Some(index) = self.root_of(ctx)
            && index != self.current
        {
            self.make_current(index);
        }
    }

    pub(crate) fn make_current(&mut self, index: usize) {
        self.current = index;
        self.root_context = self.roots[index].id;
        self.plugin = Arc::clone(&self.roots[index].info);
    }

    /// Whether every root context was deleted: the VM takes no more calls.
    pub(crate) fn all_deleted(&self) -> bool {
        self.roots
            .iter()
            .all(|r| r.shutdown == ShutdownPhase::Deleted)
    }

    /// The stream the plugin is acting on, if the effective context is one.
    pub(crate) fn stream(&self) -> Option<&StreamState> {
        self.streams.get(&self.effective)
    }

    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective)
    }

    /// Keeps a log line: the most recent [`LOG_CAPACITY`] lines are kept,
    /// and their bytes count against the VM's budget, oldest evicted first
    /// to make room. A line that does not fit even then is not kept (it was
    /// still emitted through `tracing`).
    pub(crate) fn push_log(&mut self, line: LogLine) {
        // The embedder may have taken the lines (`Vm::take_logs`).
        if self.logs.is_empty() {
            self.budget.log_bytes = 0;
        }
        let size = line.message.len();
        let mut evict = usize::from(self.logs.len() == LOG_CAPACITY);
        let mut freed: usize = self.logs[..evict].iter().map(|l| l.message.len()).sum();
        while !self.budget.fits(size.saturating_sub(freed)) && evict < self.logs.len() {
            freed += self.logs[evict].message.len();
            evict += 1;
        }
        if !self.budget.fits(size.saturating_sub(freed)) {
            let detail = format!(
                "a log line of {size} bytes does not fit in what is left of the VM's {} bytes",
                self.budget.limits.max_vm_bytes
            );
            self.refused(Limit::VmBytes, &detail);
            return;
        }
        self.logs.drain(..evict);
        self.budget.log_bytes = (self.budget.log_bytes + size).saturating_sub(freed);
        self.logs.push(line);
    }

    /// Counts a refusal of `limit` and reports the first of its kind.
    pub(crate) fn refused(&mut self, limit: Limit, detail: &str) {
        self.budget.refused(&self.plugin.name, limit, detail);
    }

    /// Puts the VM on `clock` (the system's by default), e.g. a
    /// [`crate::services::VirtualClock`] that a tool advances to run ticks
    /// without waiting: `proxy_get_current_time_nanoseconds` reads it from
    /// now on, and every tick timer restarts on it, due one period after
    /// its [`Clock::now`] (a timer the plugin set while starting was set on
    /// the previous clock). Drive ticks with the same clock:
    /// `vm.tick(clock.now())`.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        let now = clock.now();
        for root in &mut self.roots {
            if let Some(period) = root.tick_period {
                root.next_tick = Some(now + period);
            }
        }
        self.clock = clock;
    }

    /// The clock the VM runs on ([`HostState::set_clock`]).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The limits this VM runs under.
    pub fn limits(&self) -> &HostLimits {
        &self.budget.limits
    }

    /// Bytes the host holds for this VM because of the plugin, as counted
    /// against [`HostLimits::max_vm_bytes`].
    pub fn held_bytes(&self) -> usize {
        // Exact, unlike the hot-path count: lines the embedder took and
        // callouts answered since are not held any more.
        let mut held = self.budget.held();
        if self.logs.is_empty() {
            held -= self.budget.log_bytes;
        }
        held - self
            .budget
            .stale_callout_bytes(|token| self.callouts.contains_key(&token))
    }

    /// How many calls `limit` refused (or cut) in this VM.
    pub fn limit_refusals(&self, limit: Limit) -> u64 {
        self.budget.refusals(limit)
    }

    /// The warnings logged when a limit was first hit, one per kind of
    /// limit, in order.
    pub fn limit_warnings(&self) -> &[String] {
        self.budget.warnings()
    }
}
