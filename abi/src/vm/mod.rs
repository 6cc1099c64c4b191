//! A running plugin VM and the embedder API that drives it.
//!
//! A [`Vm`] is one instance of a plugin with its root context, used by one
//! thread at a time (the reference host keeps one per worker thread). Every
//! HTTP stream or TCP connection is a context inside it, named by a
//! [`ContextId`]; the embedder calls the `on_*` methods as traffic arrives
//! and reads the plugin's edits back from [`Vm::stream`].
//!
//! As in Envoy, plugins whose VM configuration is the same (same `vm_id`,
//! code and VM configuration) can share one VM: [`Vm::add_root`] gives each
//! further plugin its own root context, with its own name, root id,
//! configuration, timer and queues, and [`Vm::create_http_stream_for`]
//! creates streams under it. Context ids come from one counter per VM.

mod callbacks;
mod http;
mod tcp;
mod upcalls;

pub use callbacks::Callback;
pub use http::Decision;
pub use upcalls::{GrpcResult, HttpCallResult};

use crate::error::{PluginError, PluginErrorKind};
use crate::plugin::Shared;
use crate::services::CalloutRequest;
use crate::state::{
    CalloutKind, HostState, LogLine, PluginInfo, RootState, ShutdownPhase, StreamEvent, StreamState,
};
use crate::types::LogLevel;
use polyhost_engine_core::{Engine, HostContext, Instance};
use std::sync::Arc;
use std::time::Instant;

/// The id of a context (stream or connection) inside a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub u32);

type Func<E> = <<E as Engine>::Instance<HostState> as Instance<HostState>>::Func;

/// Where a VM is after [`Vm::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// `proxy_on_done` returned false: the plugin has work in flight (a
    /// callout, a queue to drain). Keep delivering callouts, ticks and queue
    /// notifications; the VM is deleted once the plugin calls `proxy_done`.
    Pending,
    /// `proxy_on_delete` ran on the root context; the VM takes no more calls.
    Complete,
}

/// The id of the first root context of every VM.
const ROOT_CONTEXT: u32 = 1;

/// A further plugin joining a started VM as a root context of its own
/// ([`Vm::add_root`]). What the plugins sharing a VM have in common (code,
/// `vm_id`, VM configuration, environment, limits) comes from the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootConfig {
    /// The plugin's name (`plugin_name`, logs, errors).
    pub name: String,
    /// Its root id (`plugin_root_id`), by which SDKs pick its root context.
    pub root_id: String,
    /// Its plugin configuration (`proxy_on_configure`).
    pub configuration: Vec<u8>,
    /// Lowest level of its log lines that are kept; `None` keeps the VM's.
    pub log_level: Option<LogLevel>,
}

impl RootConfig {
    /// A root named `name` with root id `root_id` and `configuration`.
    pub fn new(
        name: impl Into<String>,
        root_id: impl Into<String>,
        configuration: impl Into<Vec<u8>>,
    ) -> Self {
        RootConfig {
            name: name.into(),
            root_id: root_id.into(),
            configuration: configuration.into(),
            log_level: None,
        }
    }
}

impl From<&crate::PluginConfig> for RootConfig {
    /// The root part of a plugin's configuration: what may differ between
    /// plugins that share a VM.
    fn from(config: &crate::PluginConfig) -> Self {
        RootConfig {
            name: config.name.clone(),
            root_id: config.root_id.clone(),
            configuration: config.configuration.clone().into_bytes(),
            log_level: Some(config.log_level),
        }
    }
}

/// The facts of a root context for `root`: its own name, root id,
/// configuration and log level; the rest (code, VM id and configuration,
/// environment, limits) from the VM's plugin.
fn info_for_root(base: &PluginInfo, root: RootConfig) -> PluginInfo {
    PluginInfo {
        name: root.name.as_str().into(),
        root_id: root.root_id,
        plugin_configuration: root.configuration,
        log_level: root.log_level.unwrap_or(base.log_level),
        ..PluginInfo::clone(base)
    }
}

/// A plugin instance with its root context started.
pub struct Vm<E: Engine> {
    shared: Arc<Shared<E>>,
    instance: E::Instance<HostState>,
    /// The callbacks the plugin exports, in the order the module was
    /// pre-linked with (`shared.slots` finds a [`Callback`] among them),
    /// each fetched from the instance when first called: a VM calls only
    /// some of them, and fetching one makes the runtime set up the
    /// function's entry in the instance.
    callbacks: Box<[Option<Func<E>>]>,
    next_context: u32,
    failed: Option<String>,
    /// A local reply is passing through the response callbacks
    /// ([`Vm::encode_local_response`]): a reply the plugin sent earlier is
    /// not a new decision.
    encoding_local_reply: bool,
}

impl<E: Engine> Vm<E> {
    /// Instantiates the module and starts its first root context as the
    /// plugin the VM was loaded for, or as `root` when given (a VM shared
    /// by several plugins, started for whichever of them needs it first).
    pub(crate) fn start(
        shared: Arc<Shared<E>>,
        root: Option<RootConfig>,
    ) -> Result<Self, PluginError> {
        let info = match root {
            Some(root) => Arc::new(info_for_root(&shared.info, root)),
            None => shared.info.clone(),
        };
        let name = info.name.clone();
        let err = |e| PluginError::engine(name.clone(), e);
        let state = HostState::new(info, shared.services.clone(), ROOT_CONTEXT);
        let mut instance = shared.engine.instantiate(&shared.pre, state).map_err(err)?;
        // Callbacks were resolved and type-checked once per plugin, at
        // prelink, and are fetched by position: the allocator (listed last)
        // now, the others when first called.
        let count = shared.slots.count;
        let allocator = instance.callback(count).map_err(err)?;
        instance.set_allocator_func(&allocator).map_err(err)?;
        let callbacks = (0..count).map(|_| None).collect();
        // Runtime initialisation and the root context's start get the
        // engine's longer start-up limit; every later callback the call one.
        instance.set_starting(true);
        let mut vm = Vm {
            shared,
            instance,
            callbacks,
            next_context: ROOT_CONTEXT + 1,
            failed: None,
            encoding_local_reply: false,
        };
        vm.initialize()?;
        vm.instance.set_starting(false);
        Ok(vm)
    }

    /// Runs the module's own initialisation, then the root context's start.
    fn initialize(&mut self) -> Result<(), PluginError> {
        let reactor = self.has(Callback::Initialize);
        if reactor {
            self.call(Callback::Initialize, &[])?;
        }
        if self.has(Callback::Main) {
            self.call(Callback::Main, &[0, 0])?;
        } else if self.has(Callback::MainVoid) {
            self.call(Callback::MainVoid, &[])?;
        } else if !reactor && self.has(Callback::Start) {
            // A command module's `_start` ends in `proc_exit(0)`, which is a
            // normal exit here.
            if let Err(e) = self.call(Callback::Start, &[]) {
                if self.instance.data().exit_code != Some(0) {
                    return Err(e);
                }
                self.failed = None;
            }
        }
        self.start_root(ROOT_CONTEXT)
    }

    /// Starts root context `id` as the reference host starts each plugin's
    /// root: `proxy_on_context_create(id, 0)`, `proxy_on_vm_start`,
    /// `proxy_on_configure`, with the root current so the plugin reads its
    /// own configuration and `plugin_root_id`.
    fn start_root(&mut self, id: u32) -> Result<(), PluginError> {
        self.instance.data_mut().enter(id);
        let info = Arc::clone(&self.instance.data().plugin);
        let root = id as i32;
        self.call_in(id, Callback::ContextCreate, &[root, 0])?;
        let vm_config = info.vm_configuration.len() as i32;
        if self.call_in(id, Callback::VmStart, &[root, vm_config])? == Some(0) {
            return Err(self.start_failed(&info, "proxy_on_vm_start returned false"));
        }
        let config = info.plugin_configuration.len() as i32;
        if self.call_in(id, Callback::Configure, &[root, config])? == Some(0) {
            return Err(self.start_failed(&info, "proxy_on_configure rejected the configuration"));
        }
        Ok(())
    }

    fn start_failed(&self, info: &PluginInfo, message: &str) -> PluginError {
        let message = if info.root_id.is_empty() {
            message.to_string()
        } else {
            format!("{message} (root_id `{}`)", info.root_id)
        };
        PluginError::new(info.name.clone(), PluginErrorKind::StartFailed, message)
            .with_logs(&self.instance.data().logs)
    }

    /// Adds a root context for another plugin sharing this VM, as Envoy
    /// does for plugins with the same VM configuration: it gets the next
    /// context id, then `proxy_on_context_create(id, 0)`,
    /// `proxy_on_vm_start` and `proxy_on_configure` run with `root`'s name,
    /// root id and configuration current. Its streams are created with
    /// [`Vm::create_http_stream_for`] / [`Vm::create_tcp_stream_for`]; ticks,
    /// queue notifications and shutdown cover it like the first root.
    ///
    /// # Errors
    /// [`PluginErrorKind::StartFailed`] naming the plugin and root id when
    /// the plugin refuses to start or rejects its configuration (the root
    /// is then forgotten and the VM keeps serving its other roots); a trap
    /// (which fails the VM); a failed or shut down VM.
    pub fn add_root(&mut self, root: RootConfig) -> Result<ContextId, PluginError> {
        if self.is_shut_down() {
            return Err(PluginError::new(
                root.name.as_str().into(),
                PluginErrorKind::ShutDown,
                format!(
                    "cannot add root context `{}`: the VM was shut down",
                    root.root_id
                ),
            ));
        }
        let info = Arc::new(info_for_root(&self.shared.info, root));
        let id = self.next_context;
        self.next_context += 1;
        let state = self.instance.data_mut();
        let previous = state.root_context;
        state.roots.push(RootState::new(id, info));
        self.instance.set_starting(true);
        let result = self.start_root(id);
        self.instance.set_starting(false);
        if let Err(e) = result {
            let state = self.instance.data_mut();
            if let Some(index) = state.root_index(id) {
                state.roots.remove(index);
            }
            let back = state.root_index(previous).unwrap_or(0);
            state.make_current(back);
            state.effective = previous;
            return Err(e);
        }
        Ok(ContextId(id))
    }

    /// The root contexts of this VM, in the order they were added (the
    /// first is the plugin the VM was made for).
    pub fn roots(&self) -> Vec<ContextId> {
        self.instance
            .data()
            .roots
            .iter()
            .map(|r| ContextId(r.id))
            .collect()
    }

    /// The facts (name, root id, configuration) of root context `root`.
    pub fn root_info(&self, root: ContextId) -> Option<&PluginInfo> {
        let state = self.instance.data();
        state.root_index(root.0).map(|i| &*state.roots[i].info)
    }

    /// The root context id to pass to a root callback made on behalf of
    /// context `ctx`: the root it belongs to.
    pub(crate) fn root_for(&self, ctx: u32) -> u32 {
        let state = self.instance.data();
        state
            .root_of(ctx)
            .map_or(ROOT_CONTEXT, |index| state.roots[index].id)
    }

    fn check_root(&self, root: ContextId) -> Result<(), PluginError> {
        match self.instance.data().root_index(root.0) {
            Some(_) => Ok(()),
            None => Err(self.unknown(format!("no root context with id {}", root.0))),
        }
    }

    fn has(&self, cb: Callback) -> bool {
        self.shared.slots.index[cb as usize].is_some()
    }

    /// Calls a callback if the plugin exports it (a missing callback means
    /// "do nothing / continue"). A trap fails the VM.
    fn call(&mut self, cb: Callback, args: &[i32]) -> Result<Option<i32>, PluginError> {
        // The current root is the one the call is for (`call_in` made it
        // current): once deleted, neither it nor its streams take calls.
        if self.instance.data().root().shutdown == ShutdownPhase::Deleted {
            return Err(PluginError::new(
                self.instance.data().plugin.name.clone(),
                PluginErrorKind::ShutDown,
                format!("cannot call {}: the root context was deleted", cb.name()),
            ));
        }
        if let Some(reason) = &self.failed {
            return Err(PluginError::new(
                self.instance.data().plugin.name.clone(),
                PluginErrorKind::VmFailed,
                format!("an earlier call trapped ({reason}); create a new VM"),
            ));
        }
        let Some(index) = self.shared.slots.index[cb as usize] else {
            return Ok(None);
        };
        let slot = &mut self.callbacks[usize::from(index)];
        let f = match slot {
            Some(f) => f,
            None => {
                let f = self.instance.callback(usize::from(index)).map_err(|e| {
                    let plugin = self.instance.data().plugin.name.clone();
                    PluginError::engine(plugin, e).in_callback(cb.name())
                })?;
                slot.insert(f)
            }
        };
        let state = self.instance.data_mut();
        state.allocator_depth = 0;
        state.trap_cause = None;
        let result = self.instance.call(f, args);
        crate::wasi::flush_stdio(self.instance.data_mut());
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut err = PluginError::engine(self.instance.data().plugin.name.clone(), e)
                    .in_callback(cb.name())
                    .with_logs(&self.instance.data().logs);
                // A host call that trapped the guest reaches the engine as a
                // host trap; a deadline that struck inside it (in a nested
                // allocator call, or a WASI wait) is still a deadline.
                if let Some(cause) = self.instance.data_mut().trap_cause.take()
                    && cause.kind == polyhost_engine_core::ErrorKind::Interrupted
                {
                    err = err.with_kind(PluginErrorKind::Interrupted);
                }
                self.failed = Some(format!("{} in {}", err.message(), cb.name()));
                tracing::error!(plugin = %self.instance.data().plugin.name, error = %err, "plugin failed");
                Err(err)
            }
        }
    }

    /// Calls a callback with context `ctx` as the effective context.
    fn call_in(
        &mut self,
        ctx: u32,
        cb: Callback,
        args: &[i32],
    ) -> Result<Option<i32>, PluginError> {
        self.instance.data_mut().enter(ctx);
        let result = self.call(cb, args)?;
        // The reference host runs `proxy_on_delete` after the callback in
        // which the plugin called `proxy_done`, never from inside it.
        if self.instance.data().done_pending {
            self.instance.data_mut().done_pending = false;
            let done: Vec<u32> = (self.instance.data().roots.iter())
                .filter(|r| r.shutdown == ShutdownPhase::DoneCalled)
                .map(|r| r.id)
                .collect();
            for root in done {
                self.delete_root(root)?;
            }
        }
        Ok(result)
    }

    fn delete_root(&mut self, root: u32) -> Result<(), PluginError> {
        self.instance.data_mut().enter(root);
        let result = self.call(Callback::Delete, &[root as i32]);
        self.cancel_callouts_of(root);
        let state = self.instance.data_mut();
        if let Some(index) = state.root_index(root) {
            state.roots[index].shutdown = ShutdownPhase::Deleted;
            // While other roots live, the deleted one's timer must not keep
            // `next_tick` due; the last root's stays, so a tick then reports
            // that the VM is shut down.
            if !state.all_deleted() {
                let r = &mut state.roots[index];
                (r.tick_period, r.next_tick) = (None, None);
            }
        }
        result.map(|_| ())
    }

    /// Forgets the callouts context `owner` made that are still under way
    /// and tells the dispatcher to cancel them, as Envoy's context does
    /// when it is destroyed: no answer is wanted any more, and a gRPC
    /// stream is reset rather than left open for nobody.
    fn cancel_callouts_of(&mut self, owner: u32) {
        let state = self.instance.data_mut();
        let mut orphaned: Vec<(u32, CalloutKind)> = state
            .callouts
            .extract_if(|_, (made_by, _)| *made_by == owner)
            .map(|(token, (_, kind))| (token, kind))
            .collect();
        // Oldest first (tokens count up), so the order does not depend on
        // the map's.
        orphaned.sort_unstable_by_key(|(token, _)| *token);
        for (token, kind) in orphaned {
            let plugin = state.plugin.name.clone();
            let request = match kind {
                CalloutKind::Http => CalloutRequest::HttpCancel { plugin, token },
                CalloutKind::GrpcCall | CalloutKind::GrpcStream => {
                    CalloutRequest::GrpcCancel { plugin, token }
                }
            };
            // Nothing is left to report a refusal to.
            let _ = state.services.callouts.dispatch(request);
        }
    }

    fn phase(&self, root: u32) -> ShutdownPhase {
        let state = self.instance.data();
        state
            .root_index(root)
            .map_or(ShutdownPhase::Deleted, |i| state.roots[i].shutdown)
    }

    /// Shuts down one root context as [`Vm::shutdown`] does for all: for a
    /// plugin removed from a VM that other plugins keep using.
    ///
    /// # Errors
    /// An unknown root; a trap in `proxy_on_done` or `proxy_on_delete`.
    pub fn shutdown_root(&mut self, root: ContextId) -> Result<Shutdown, PluginError> {
        self.check_root(root)?;
        let id = root.0;
        match self.phase(id) {
            ShutdownPhase::Deleted => return Ok(Shutdown::Complete),
            ShutdownPhase::AwaitingDone | ShutdownPhase::DoneCalled => {
                return Ok(Shutdown::Pending);
            }
            ShutdownPhase::Running => {}
        }
        let state = self.instance.data_mut();
        if let Some(index) = state.root_index(id) {
            state.roots[index].shutdown = ShutdownPhase::AwaitingDone;
        }
        let done = self.call_in(id, Callback::Done, &[id as i32])?;
        match self.phase(id) {
            ShutdownPhase::Deleted => Ok(Shutdown::Complete),
            // A missing `proxy_on_done` counts as true.
            _ if done != Some(0) => {
                self.delete_root(id)?;
                Ok(Shutdown::Complete)
            }
            _ => Ok(Shutdown::Pending),
        }
    }

    /// Shuts the plugin down as the reference host does when it is removed:
    /// `proxy_on_done` on the root context, then `proxy_on_delete` — at once
    /// if `proxy_on_done` returned true, or after the plugin calls
    /// `proxy_done` from a later callback if it returned false. A VM shared
    /// by several plugins ([`Vm::add_root`]) shuts every root context down
    /// this way, in the order they were added.
    ///
    /// Calling it again reports the current state without calling the
    /// plugin. [`Shutdown::Complete`] means every root was deleted.
    ///
    /// # Errors
    /// A trap in `proxy_on_done` or `proxy_on_delete`.
    pub fn shutdown(&mut self) -> Result<Shutdown, PluginError> {
        let mut all = Shutdown::Complete;
        for root in self.roots() {
            if self.shutdown_root(root)? == Shutdown::Pending {
                all = Shutdown::Pending;
            }
        }
        Ok(all)
    }

    /// Whether [`Vm::shutdown`] has completed (`proxy_on_delete` ran on
    /// every root context).
    pub fn is_shut_down(&self) -> bool {
        self.instance.data().all_deleted()
    }

    fn unknown(&self, what: String) -> PluginError {
        PluginError::new(
            self.instance.data().plugin.name.clone(),
            PluginErrorKind::UnknownContext,
            what,
        )
    }

    fn stream_state(&mut self, id: ContextId) -> Result<&mut StreamState, PluginError> {
        if !self.instance.data().streams.contains_key(&id.0) {
            return Err(self.unknown(format!("no stream with context id {}", id.0)));
        }
        Ok(self
            .instance
            .data_mut()
            .streams
            .get_mut(&id.0)
            .expect("checked above"))
    }

    /// Creates a stream context (HTTP stream or TCP connection) under root
    /// context `root`.
    fn create_context(&mut self, root: ContextId) -> Result<ContextId, PluginError> {
        self.check_root(root)?;
        let id = self.next_context;
        self.next_context += 1;
        self.instance.data_mut().streams.insert(
            id,
            StreamState {
                root: root.0,
                ..StreamState::default()
            },
        );
        if let Err(e) = self.call_in(id, Callback::ContextCreate, &[id as i32, root.0 as i32]) {
            // The embedder gets no id to finish it with.
            self.instance.data_mut().streams.remove(&id);
            return Err(e);
        }
        Ok(ContextId(id))
    }

    /// Ends a stream: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`,
    /// then cancels the callouts it still has under way (through the
    /// dispatcher, as [`CalloutRequest::HttpCancel`] and
    /// [`CalloutRequest::GrpcCancel`]) and forgets its state.
    ///
    /// As in the reference host, a stream context's `proxy_on_done` result
    /// is not waited on: only the root context can defer its deletion until
    /// `proxy_done` (see [`Vm::shutdown`]).
    ///
    /// # Errors
    /// A trap in any of the three callbacks; the stream is forgotten anyway.
    pub fn finish_stream(&mut self, id: ContextId) -> Result<StreamState, PluginError> {
        self.stream_state(id)?;
        let ctx = id.0 as i32;
        let result = self
            .call_in(id.0, Callback::Log, &[ctx])
            .and_then(|_| self.call_in(id.0, Callback::Done, &[ctx]))
            .and_then(|_| self.call_in(id.0, Callback::Delete, &[ctx]));
        self.cancel_callouts_of(id.0);
        let state = self.instance.data_mut();
        let stream = state.streams.remove(&id.0).unwrap_or_default();
        state.effective = state.root_context;
        result.map(|_| stream)
    }

    /// The plugin's view of a stream: headers, bodies, local response, events.
    pub fn stream(&self, id: ContextId) -> Option<&StreamState> {
        self.instance.data().streams.get(&id.0)
    }

    /// The stream's state, mutably (to set up headers before a callback).
    pub fn stream_mut(&mut self, id: ContextId) -> Option<&mut StreamState> {
        self.instance.data_mut().streams.get_mut(&id.0)
    }

    /// Changes the lowest level of plugin log lines kept, which is also
    /// what `proxy_get_log_level` answers, for every plugin sharing this VM:
    /// an operator turning debug logs on while the plugins run (Envoy's
    /// admin `/logging`).
    pub fn set_log_level(&mut self, level: LogLevel) {
        let state = self.instance.data_mut();
        for root in &mut state.roots {
            if root.info.log_level != level {
                Arc::make_mut(&mut root.info).log_level = level;
            }
        }
        if let Some(root) = state.roots.get(state.current) {
            state.plugin = Arc::clone(&root.info);
        }
    }

    /// Takes the resume/close requests the plugin made for a stream since
    /// the last call (for example `proxy_continue_stream` from a callout
    /// response).
    pub fn take_events(&mut self, id: ContextId) -> Vec<StreamEvent> {
        self.stream_mut(id)
            .map(|s| std::mem::take(&mut s.events))
            .unwrap_or_default()
    }

    /// The plugin's log lines so far (the most recent few thousand).
    pub fn logs(&self) -> &[LogLine] {
        &self.instance.data().logs
    }

    /// Takes the plugin's log lines.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.instance.data_mut().logs)
    }

    /// Whether a callback trapped; a failed VM refuses further calls and
    /// should be replaced by [`crate::Plugin::new_vm`].
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The plugin's configuration and ABI facts (the plugin the VM was made
    /// for; [`Vm::root_info`] for the others sharing it).
    pub fn info(&self) -> &crate::state::PluginInfo {
        &self.shared.info
    }

    /// The underlying engine instance (tests and tools read guest memory
    /// through it).
    pub fn instance(&mut self) -> &mut E::Instance<HostState> {
        &mut self.instance
    }

    /// When `proxy_on_tick` is next due, if the plugin set a tick period:
    /// the earliest over the VM's root contexts, which each have their own.
    pub fn next_tick(&self) -> Option<Instant> {
        let roots = &self.instance.data().roots;
        roots.iter().filter_map(|r| r.next_tick).min()
    }

    /// Calls `proxy_on_tick` on every root context whose tick is due at
    /// `now`, and schedules its next one. Returns whether any ticked.
    ///
    /// # Errors
    /// A trap in `proxy_on_tick` (roots after it are not ticked).
    pub fn tick(&mut self, now: Instant) -> Result<bool, PluginError> {
        let mut ticked = false;
        // A deleted root's timer is skipped while others live; once all are
        // deleted, a due tick reports that the VM is shut down.
        let skip_deleted = !self.instance.data().all_deleted();
        // By index: a callback cannot remove roots, only add them.
        let mut index = 0;
        while index < self.instance.data().roots.len() {
            let root = &mut self.instance.data_mut().roots[index];
            index += 1;
            let (Some(due), Some(period)) = (root.next_tick, root.tick_period) else {
                continue;
            };
            if now < due || (skip_deleted && root.shutdown == ShutdownPhase::Deleted) {
                continue;
            }
            // Skip missed ticks rather than firing a burst to catch up.
            let mut next = due + period;
            if next <= now {
                next = now + period;
            }
            root.next_tick = Some(next);
            let id = root.id;
            self.call_in(id, Callback::Tick, &[id as i32])?;
            ticked = true;
        }
        Ok(ticked)
    }

    /// Calls `proxy_on_tick` on root context `root` if its tick is due at
    /// `now` ([`Vm::tick`] for one root).
    ///
    /// # Errors
    /// An unknown root; a trap in `proxy_on_tick`.
    pub fn tick_root(&mut self, root: ContextId, now: Instant) -> Result<bool, PluginError> {
        self.check_root(root)?;
        let state = self.instance.data_mut();
        let Some(index) = state.root_index(root.0) else {
            return Ok(false);
        };
        let r = &mut state.roots[index];
        let (Some(due), Some(period)) = (r.next_tick, r.tick_period) else {
            return Ok(false);
        };
        if now < due {
            return Ok(false);
        }
        let mut next = due + period;
        if next <= now {
            next = now + period;
        }
        r.next_tick = Some(next);
        self.call_in(root.0, Callback::Tick, &[root.0 as i32])?;
        Ok(true)
    }

    /// Delivers `proxy_on_queue_ready` for every queue of this VM that
    /// received data since the last call. Returns how many were delivered.
    ///
    /// Only notifications pending when the call starts are delivered: one
    /// that the plugin causes from `proxy_on_queue_ready` (by enqueueing
    /// again) waits for the next call, as it would wait for the next event
    /// loop turn in Envoy, instead of keeping this call going forever.
    ///
    /// # Errors
    /// A trap in `proxy_on_queue_ready`.
    pub fn deliver_queue_ready(&mut self) -> Result<usize, PluginError> {
        // Each root context gets the notifications of the queues it
        // registered, as Envoy delivers them to the registering context.
        let state = self.instance.data();
        let skip_deleted = !state.all_deleted();
        let pending: Vec<_> = (state.roots.iter())
            .filter(|r| !(skip_deleted && r.shutdown == ShutdownPhase::Deleted))
            .map(|r| (r.id, Arc::clone(&r.ready_queues), r.ready_queues.len()))
            .collect();
        let mut delivered = 0;
        for (root, ready, count) in pending {
            for _ in 0..count {
                let Some(queue) = ready.pop() else { break };
                self.call_in(root, Callback::QueueReady, &[root as i32, queue as i32])?;
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Calls the plugin's `proxy_on_foreign_function(root, id, size)` with
    /// `args` readable as the call-data buffer, on the first root context.
    ///
    /// # Errors
    /// A trap in the callback.
    pub fn call_foreign_function(
        &mut self,
        function_id: u32,
        args: &[u8],
    ) -> Result<(), PluginError> {
        self.call_foreign_function_in(ContextId(ROOT_CONTEXT), function_id, args)
    }

    /// As [`Vm::call_foreign_function`] on root context `root`.
    ///
    /// # Errors
    /// An unknown root; a trap in the callback.
    pub fn call_foreign_function_in(
        &mut self,
        root: ContextId,
        function_id: u32,
        args: &[u8],
    ) -> Result<(), PluginError> {
        self.check_root(root)?;
        self.instance.data_mut().scratch.call_data = args.to_vec();
        let r = self.call_in(
            root.0,
            Callback::ForeignFunction,
            &[root.0 as i32, function_id as i32, args.len() as i32],
        );
        self.instance.data_mut().scratch.call_data.clear();
        r.map(|_| ())
    }
}
