//! A running plugin VM and the embedder API that drives it.
//!
//! A [`Vm`] is one instance of a plugin with its root context, used by one
//! thread at a time (the reference host keeps one per worker thread). Every
//! HTTP stream or TCP connection is a context inside it, named by a
//! [`ContextId`]; the embedder calls the `on_*` methods as traffic arrives
//! and reads the plugin's edits back from [`Vm::stream`].

mod callbacks;
mod http;
mod tcp;
mod upcalls;

pub use callbacks::Callback;
pub use http::Decision;
pub use upcalls::{GrpcResult, HttpCallResult};

use crate::error::{PluginError, PluginErrorKind};
use crate::plugin::Shared;
use crate::state::{HostState, LogLine, ShutdownPhase, StreamEvent, StreamState};
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

/// The id of the root context of every VM.
const ROOT_CONTEXT: u32 = 1;

/// A plugin instance with its root context started.
pub struct Vm<E: Engine> {
    shared: Arc<Shared<E>>,
    instance: E::Instance<HostState>,
    callbacks: Vec<Option<Func<E>>>,
    next_context: u32,
    failed: Option<String>,
    /// A local reply is passing through the response callbacks
    /// ([`Vm::encode_local_response`]): a reply the plugin sent earlier is
    /// not a new decision.
    encoding_local_reply: bool,
}

impl<E: Engine> Vm<E> {
    pub(crate) fn start(shared: Arc<Shared<E>>) -> Result<Self, PluginError> {
        let name = shared.info.name.clone();
        let err = |e| PluginError::engine(name.clone(), e);
        let state = HostState::new(shared.info.clone(), shared.services.clone());
        let mut instance = shared.engine.instantiate(&shared.pre, state).map_err(err)?;
        instance.set_allocator(shared.allocator).map_err(err)?;
        // Runtime initialisation and the root context's start get the
        // engine's longer start-up limit; every later callback the call one.
        instance.set_starting(true);
        let abi = shared.info.abi;
        let mut callbacks = Vec::with_capacity(Callback::ALL.len());
        for cb in Callback::ALL {
            let f = instance
                .func(cb.name(), cb.sig(abi))
                .map_err(|e| err(e).in_callback(cb.name()))?;
            callbacks.push(f);
        }
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
        let root = ROOT_CONTEXT as i32;
        self.instance.data_mut().root_context = ROOT_CONTEXT;
        self.call_in(ROOT_CONTEXT, Callback::ContextCreate, &[root, 0])?;
        let vm_config = self.shared.info.vm_configuration.len() as i32;
        if self.call_in(ROOT_CONTEXT, Callback::VmStart, &[root, vm_config])? == Some(0) {
            return Err(self.start_failed("proxy_on_vm_start returned false"));
        }
        let config = self.shared.info.plugin_configuration.len() as i32;
        if self.call_in(ROOT_CONTEXT, Callback::Configure, &[root, config])? == Some(0) {
            return Err(self.start_failed("proxy_on_configure rejected the configuration"));
        }
        Ok(())
    }

    fn start_failed(&self, message: &str) -> PluginError {
        PluginError::new(
            self.shared.info.name.clone(),
            PluginErrorKind::StartFailed,
            message,
        )
        .with_logs(&self.instance.data().logs)
    }

    fn has(&self, cb: Callback) -> bool {
        self.callbacks[cb as usize].is_some()
    }

    /// Calls a callback if the plugin exports it (a missing callback means
    /// "do nothing / continue"). A trap fails the VM.
    fn call(&mut self, cb: Callback, args: &[i32]) -> Result<Option<i32>, PluginError> {
        if self.instance.data().shutdown == ShutdownPhase::Deleted {
            return Err(PluginError::new(
                self.shared.info.name.clone(),
                PluginErrorKind::ShutDown,
                format!("cannot call {}: the root context was deleted", cb.name()),
            ));
        }
        if let Some(reason) = &self.failed {
            return Err(PluginError::new(
                self.shared.info.name.clone(),
                PluginErrorKind::VmFailed,
                format!("an earlier call trapped ({reason}); create a new VM"),
            ));
        }
        let Some(f) = &self.callbacks[cb as usize] else {
            return Ok(None);
        };
        let state = self.instance.data_mut();
        state.allocator_depth = 0;
        state.trap_cause = None;
        let result = self.instance.call(f, args);
        crate::wasi::flush_stdio(self.instance.data_mut());
        match result {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut err = PluginError::engine(self.shared.info.name.clone(), e)
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
                tracing::error!(plugin = %self.shared.info.name, error = %err, "plugin failed");
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
        self.instance.data_mut().effective = ctx;
        let result = self.call(cb, args)?;
        // The reference host runs `proxy_on_delete` after the callback in
        // which the plugin called `proxy_done`, never from inside it.
        if self.instance.data().shutdown == ShutdownPhase::DoneCalled {
            self.delete_root()?;
        }
        Ok(result)
    }

    fn delete_root(&mut self) -> Result<(), PluginError> {
        let root = ROOT_CONTEXT as i32;
        self.instance.data_mut().effective = ROOT_CONTEXT;
        let result = self.call(Callback::Delete, &[root]);
        self.instance.data_mut().shutdown = ShutdownPhase::Deleted;
        result.map(|_| ())
    }

    /// Shuts the plugin down as the reference host does when it is removed:
    /// `proxy_on_done` on the root context, then `proxy_on_delete` — at once
    /// if `proxy_on_done` returned true, or after the plugin calls
    /// `proxy_done` from a later callback if it returned false.
    ///
    /// Calling it again reports the current state without calling the
    /// plugin.
    ///
    /// # Errors
    /// A trap in `proxy_on_done` or `proxy_on_delete`.
    pub fn shutdown(&mut self) -> Result<Shutdown, PluginError> {
        match self.instance.data().shutdown {
            ShutdownPhase::Deleted => return Ok(Shutdown::Complete),
            ShutdownPhase::AwaitingDone | ShutdownPhase::DoneCalled => {
                return Ok(Shutdown::Pending);
            }
            ShutdownPhase::Running => {}
        }
        let root = ROOT_CONTEXT as i32;
        self.instance.data_mut().shutdown = ShutdownPhase::AwaitingDone;
        let done = self.call_in(ROOT_CONTEXT, Callback::Done, &[root])?;
        match self.instance.data().shutdown {
            ShutdownPhase::Deleted => Ok(Shutdown::Complete),
            // A missing `proxy_on_done` counts as true.
            _ if done != Some(0) => {
                self.delete_root()?;
                Ok(Shutdown::Complete)
            }
            _ => Ok(Shutdown::Pending),
        }
    }

    /// Whether [`Vm::shutdown`] has completed (`proxy_on_delete` ran on the
    /// root context).
    pub fn is_shut_down(&self) -> bool {
        self.instance.data().shutdown == ShutdownPhase::Deleted
    }

    fn unknown(&self, what: String) -> PluginError {
        PluginError::new(
            self.shared.info.name.clone(),
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

    /// Creates a stream context (HTTP stream or TCP connection).
    fn create_context(&mut self) -> Result<ContextId, PluginError> {
        let id = self.next_context;
        self.next_context += 1;
        self.instance
            .data_mut()
            .streams
            .insert(id, StreamState::default());
        self.call_in(
            id,
            Callback::ContextCreate,
            &[id as i32, ROOT_CONTEXT as i32],
        )?;
        Ok(ContextId(id))
    }

    /// Ends a stream: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`,
    /// then forgets its state.
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
        let state = self.instance.data_mut();
        state.callouts.retain(|_, (owner, _)| *owner != id.0);
        let stream = state.streams.remove(&id.0).unwrap_or_default();
        state.effective = ROOT_CONTEXT;
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

    /// The plugin's configuration and ABI facts.
    pub fn info(&self) -> &crate::state::PluginInfo {
        &self.shared.info
    }

    /// The underlying engine instance (tests and tools read guest memory
    /// through it).
    pub fn instance(&mut self) -> &mut E::Instance<HostState> {
        &mut self.instance
    }

    /// When `proxy_on_tick` is next due, if the plugin set a tick period.
    pub fn next_tick(&self) -> Option<Instant> {
        self.instance.data().next_tick
    }

    /// Calls `proxy_on_tick` if a tick is due at `now`, and schedules the
    /// next one. Returns whether it ticked.
    ///
    /// # Errors
    /// A trap in `proxy_on_tick`.
    pub fn tick(&mut self, now: Instant) -> Result<bool, PluginError> {
        let state = self.instance.data_mut();
        let (Some(due), Some(period)) = (state.next_tick, state.tick_period) else {
            return Ok(false);
        };
        if now < due {
            return Ok(false);
        }
        // Skip missed ticks rather than firing a burst to catch up.
        let mut next = due + period;
        if next <= now {
            next = now + period;
        }
        state.next_tick = Some(next);
        self.call_in(ROOT_CONTEXT, Callback::Tick, &[ROOT_CONTEXT as i32])?;
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
        let ready = Arc::clone(&self.instance.data().ready_queues);
        let mut delivered = 0;
        for _ in 0..ready.len() {
            let Some(queue) = ready.pop() else { break };
            self.call_in(
                ROOT_CONTEXT,
                Callback::QueueReady,
                &[ROOT_CONTEXT as i32, queue as i32],
            )?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Calls the plugin's `proxy_on_foreign_function(root, id, size)` with
    /// `args` readable as the call-data buffer.
    ///
    /// # Errors
    /// A trap in the callback.
    pub fn call_foreign_function(
        &mut self,
        function_id: u32,
        args: &[u8],
    ) -> Result<(), PluginError> {
        self.instance.data_mut().scratch.call_data = args.to_vec();
        let r = self.call_in(
            ROOT_CONTEXT,
            Callback::ForeignFunction,
            &[ROOT_CONTEXT as i32, function_id as i32, args.len() as i32],
        );
        self.instance.data_mut().scratch.call_data.clear();
        r.map(|_| ())
    }
}
