//! Call deadlines on wasmer: metering points, emptied by a watchdog.
//!
//! wasmer 7 has no epochs, and its signal-based host interrupt is
//! experimental and best-effort (a store once interrupted cannot be entered
//! again). What it does have is the metering middleware: compiled code
//! checks a points global at every basic block and traps once the points
//! run out. So when a deadline is configured every module is metered, each
//! top-level call starts with as many points as its fuel budget allows, and
//! one watchdog thread per engine empties the points of every call still
//! running past its deadline. The guest traps at its next metering check,
//! and the call reports the deadline.
//!
//! Bound: the watchdog looks every [`TICK`] (5 ms), so a guest stops at most
//! one tick after its deadline plus the rest of the basic block it is in (a
//! single bulk-memory instruction, at most the time to copy the guest's
//! memory once) or of a host call in progress. It re-empties the points at
//! every tick until the call ends, because the guest's own
//! read-subtract-write of the points can overwrite the watchdog's store
//! once.
//!
//! The start section runs before the instance's globals are known, so it is
//! bounded by its compiled-in points (the fuel budget, or [`START_POINTS`])
//! rather than by the clock.

use polyhost_engine_core::Deadline;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often the watchdog looks at running calls.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// The points a start section gets when only a deadline is configured:
/// seconds of compiled code, far more than any initialiser needs.
pub(crate) const START_POINTS: u64 = 10_000_000_000;

/// The running-call state of one instance that the watchdog can see.
pub(crate) struct CallSlot {
    state: Mutex<SlotState>,
}

struct SlotState {
    /// The deadline of the running top-level call, if one is running.
    deadline: Option<Deadline>,
    /// Whether the watchdog emptied the points of the current call.
    fired: bool,
    /// The instance's remaining-points global.
    remaining: RemainingPoints,
}

/// The address of an instance's `wasmer_metering_remaining_points` value,
/// inside the instance's own allocation.
struct RemainingPoints(NonNull<u64>);

// SAFETY: the pointer is only written through while the slot's lock is held
// and a call is running (`deadline` is `Some`); during a call the instance
// is borrowed by that call and cannot be dropped, and `end` takes the lock
// before the call returns. The write is an atomic 8-byte store to an
// 8-byte-aligned global, the same width the compiled code reads.
unsafe impl Send for RemainingPoints {}

impl CallSlot {
    /// A slot for an instance whose remaining-points value lives at
    /// `remaining`.
    ///
    /// # Safety
    /// `remaining` must stay valid for writes for as long as calls are
    /// started on this slot (the instance outlives them).
    pub(crate) unsafe fn new(remaining: NonNull<u64>) -> Arc<Self> {
        Arc::new(CallSlot {
            state: Mutex::new(SlotState {
                deadline: None,
                fired: false,
                remaining: RemainingPoints(remaining),
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

    /// Empties the points of a call running past its deadline.
    fn check(&self) {
        let mut s = self.lock();
        if s.deadline.is_some_and(|d| d.passed()) {
            // SAFETY: see `RemainingPoints`: a call is running, so the
            // instance is alive; the address is aligned for u64.
            let points = unsafe { AtomicU64::from_ptr(s.remaining.0.as_ptr()) };
            points.store(0, Ordering::Relaxed);
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
