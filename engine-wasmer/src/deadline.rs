//! Call deadlines on wasmer: a flag the compiled code polls, raised by a
//! watchdog.
//!
//! wasmer 7 has no epochs, and its signal-based host interrupt is
//! experimental and best-effort (a store once interrupted cannot be entered
//! again). So, in the manner of wasmtime's epochs, [`DeadlineMiddleware`]
//! adds a global flag to every module and a check of it at every function
//! entry and loop header (`global.get; if; unreachable; end`, plus a store
//! to a scratch global that keeps the compiler from reusing an earlier
//! read of the flag): no guest
//! code runs for long without passing one. One watchdog thread per engine
//! raises the flag of every call still running past its deadline; the guest
//! traps at its next check, and the call reports the deadline.
//!
//! A first version emptied the metering points instead, but the guest's own
//! read-subtract-write of the points, served from the CPU's store buffer in
//! a tight loop, hid the watchdog's store for up to seconds. The guest
//! never writes the flag, so the watchdog's store is seen at once.
//!
//! Bound: the watchdog looks every [`TICK`] (5 ms), so a guest stops at most
//! one tick after its deadline, plus the rest of a single instruction (a
//! bulk-memory copy of at most the guest's memory) or of a host call in
//! progress.

use polyhost_engine_core::Deadline;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{
    AsStoreMut, ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability,
    Type,
};

/// How often the watchdog looks at running calls.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// The name under which modules export the deadline flag.
pub(crate) const FLAG_EXPORT: &str = "polyhost_deadline_flag";

/// The running-call state of one instance that the watchdog can see.
pub(crate) struct CallSlot {
    state: Mutex<SlotState>,
}

struct SlotState {
    /// The deadline of the running top-level call, if one is running.
    deadline: Option<Deadline>,
    /// Whether the watchdog emptied the points of the current call.
    fired: bool,
    /// The instance's deadline flag.
    flag: FlagAddress,
}

/// The address of an instance's deadline flag (an i32 global), inside the
/// instance's own allocation.
struct FlagAddress(NonNull<u32>);

// SAFETY: the pointer is only written through while the slot's lock is held
// and a call is running (`deadline` is `Some`, or in `begin` by the calling
// thread); during a call the instance is borrowed by that call and cannot
// be dropped, and `end` takes the lock before the call returns. The write
// is an atomic 4-byte store to an aligned global the compiled code only
// reads.
unsafe impl Send for FlagAddress {}

impl CallSlot {
    /// A slot for an instance whose deadline flag lives at `flag`.
    ///
    /// # Safety
    /// `flag` must stay valid for writes for as long as calls are started
    /// on this slot (the instance outlives them).
    pub(crate) unsafe fn new(flag: NonNull<u32>) -> Arc<Self> {
        Arc::new(CallSlot {
            state: Mutex::new(SlotState {
                deadline: None,
                fired: false,
                flag: FlagAddress(flag),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A top-level call starts, to end by `deadline`.
    pub(crate) fn begin(&self, deadline: Deadline) {
        let mut s = self.lock();
        s.deadline = Some(deadline);
        s.fired = false;
        // SAFETY: see `FlagAddress`; the instance is alive during the call.
        unsafe { AtomicU32::from_ptr(s.flag.0.as_ptr()) }.store(0, Ordering::Relaxed);
    }

    /// The call ended; returns whether the watchdog stopped it.
    pub(crate) fn end(&self) -> bool {
        let mut s = self.lock();
        s.deadline = None;
        s.fired
    }

    /// Whether the watchdog stopped the running (or last) call.
    pub(crate) fn fired(&self) -> bool {
        self.lock().fired
    }

    /// Raises the flag of a call running past its deadline.
    fn check(&self) {
        let mut s = self.lock();
        if s.deadline.is_some_and(|d| d.passed()) {
            // SAFETY: see `FlagAddress`: a call is running, so the instance
            // is alive; the address is aligned for u32.
            unsafe { AtomicU32::from_ptr(s.flag.0.as_ptr()) }.store(1, Ordering::Relaxed);
            s.fired = true;
        }
    }
}

/// One thread per engine that stops calls past their deadline.
pub(crate) struct Watchdog {
    slots: Mutex<Vec<Weak<CallSlot>>>,
    stop: AtomicBool,
}

impl Watchdog {
    /// Starts the watchdog thread. It holds only a weak reference and ends
    /// when the engine drops the watchdog.
    ///
    /// # Errors
    /// The OS refused a thread: without it deadlines would not be enforced.
    pub(crate) fn spawn() -> std::io::Result<Arc<Self>> {
        let dog = Arc::new(Watchdog {
            slots: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name("polyhost-wasmer-deadline".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(dog) = weak.upgrade() else { break };
                    if dog.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    dog.tick();
                }
            })?;
        Ok(dog)
    }

    /// Watches `slot` until it is dropped.
    pub(crate) fn watch(&self, slot: &Arc<CallSlot>) {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::downgrade(slot));
    }

    fn tick(&self) {
        let live: Vec<Arc<CallSlot>> = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.retain(|s| s.strong_count() > 0);
            slots.iter().filter_map(Weak::upgrade).collect()
        };
        for slot in live {
            slot.check();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Adds the deadline flag to each module and a check of it at every
/// function entry and loop header.
///
/// The flag's global index differs per module, and a compiler configuration
/// holds one middleware for every module it compiles, so the module pass
/// records the index for the function passes that follow. That is sound
/// because the engine compiles one module at a time when it is on (its
/// compile lock, as for metering).
#[derive(Debug, Default)]
pub(crate) struct DeadlineMiddleware {
    /// The flag's and the scratch global's indexes in the module being
    /// compiled.
    flag_index: Mutex<Option<(u32, u32)>>,
}

impl ModuleMiddleware for DeadlineMiddleware {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let flag = *self
            .flag_index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Box::new(FunctionCheck {
            globals: flag,
            entered: false,
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let flag = info
            .globals
            .push(GlobalType::new(Type::I32, Mutability::Var));
        info.global_initializers.push(GlobalInit::I32Const(0));
        info.exports
            .insert(FLAG_EXPORT.to_string(), ExportIndex::Global(flag));
        let scratch = info
            .globals
            .push(GlobalType::new(Type::I32, Mutability::Var));
        info.global_initializers.push(GlobalInit::I32Const(0));
        *self
            .flag_index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((flag.as_u32(), scratch.as_u32()));
        Ok(())
    }
}

#[derive(Debug)]
struct FunctionCheck {
    /// The flag's and the scratch global's indexes; `None` only if wasmer
    /// skipped the module pass, and then nothing is checked rather than
    /// guessing an index.
    globals: Option<(u32, u32)>,
    entered: bool,
}

impl FunctionCheck {
    fn check<'a>(&self, state: &mut MiddlewareReaderState<'a>) {
        // The store to the scratch global matters: in a loop that stores
        // nothing, Cranelift proves the flag unchanged since the function
        // entry and drops the load, so the watchdog's flag was never seen.
        // A store to any global makes every later global load real.
        if let Some((flag, scratch)) = self.globals {
            state.extend(&[
                Operator::GlobalGet { global_index: flag },
                Operator::If {
                    blockty: BlockType::Empty,
                },
                Operator::Unreachable,
                Operator::End,
                Operator::I32Const { value: 0 },
                Operator::GlobalSet {
                    global_index: scratch,
                },
            ]);
        }
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionCheck {
    fn feed(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        if !self.entered {
            self.entered = true;
            self.check(state);
        }
        let is_loop = matches!(operator, Operator::Loop { .. });
        state.push_operator(operator);
        if is_loop {
            self.check(state);
        }
        Ok(())
    }
}

/// The address of an instance's deadline flag, for the watchdog.
pub(crate) fn flag_address(
    instance: &wasmer::Instance,
    store: &mut impl AsStoreMut,
) -> Option<NonNull<u32>> {
    let global = instance.exports.get_global(FLAG_EXPORT).ok()?.clone();
    // Only the `sys` backend is compiled in, so the handle is a sys one.
    let wasmer::sys::vm::VMExtern::Global(handle) =
        wasmer::Extern::Global(global).to_vm_extern().unwrap_sys()
    else {
        return None;
    };
    // The value sits at the start of the global's definition (a
    // little-endian union whose i32 member the compiled code reads).
    Some(
        handle
            .get(store.objects_mut().as_sys())
            .vmglobal()
            .cast::<u32>(),
    )
}
