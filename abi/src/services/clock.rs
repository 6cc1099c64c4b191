//! The time a VM runs on: the system's, or a virtual one a tool advances.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Where a VM reads the time: `proxy_get_current_time_nanoseconds` reads
/// [`Clock::wall_time`], and a tick period the plugin sets with
/// `proxy_set_tick_period_milliseconds` is due one period after
/// [`Clock::now`]. The embedder drives ticks with the same clock
/// (`Vm::tick(clock.now())`), so ticks and the time the plugin reads agree.
///
/// WASI's clocks (`clock_time_get`, `poll_oneoff`) stay on the system's
/// time: they bound real waits against the callback deadline.
pub trait Clock: Send + Sync {
    /// Monotonic time, for tick scheduling.
    fn now(&self) -> Instant;
    /// Time since the Unix epoch, as the plugin reads it.
    fn wall_time(&self) -> SystemTime;
}

/// The system's clocks (the default of every VM).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until it is advanced, for tools and tests that
/// run ticks without waiting for them: time starts at the moment the clock
/// is made and moves only through [`VirtualClock::advance`] and
/// [`VirtualClock::advance_to`], so a run gives the same ticks and times
/// however fast the machine is.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    start_wall: SystemTime,
    elapsed: Mutex<Duration>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::starting_at(SystemTime::now())
    }
}

impl VirtualClock {
    /// A clock whose wall time starts at `wall` (its monotonic time starts
    /// now).
    pub fn starting_at(wall: SystemTime) -> Self {
        VirtualClock {
            start: Instant::now(),
            start_wall: wall,
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// How far the clock was advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().expect("poisoned")
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: Duration) {
        let mut elapsed = self.elapsed.lock().expect("poisoned");
        *elapsed = elapsed.saturating_add(by);
    }

    /// Moves the clock forward to `instant` (one of its own
    /// [`Clock::now`] values plus some time, e.g. `Vm::next_tick`); an
    /// instant already past leaves it where it is, since time never runs
    /// backwards.
    pub fn advance_to(&self, instant: Instant) {
        let target = instant.saturating_duration_since(self.start);
        let mut elapsed = self.elapsed.lock().expect("poisoned");
        *elapsed = (*elapsed).max(target);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn wall_time(&self) -> SystemTime {
        self.start_wall + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_moves_only_when_advanced_and_never_back() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = VirtualClock::starting_at(epoch);
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), t0);
        assert_eq!(clock.wall_time(), epoch);
        clock.advance(Duration::from_millis(10));
        assert_eq!(clock.now(), t0 + Duration::from_millis(10));
        assert_eq!(clock.wall_time(), epoch + Duration::from_millis(10));
        clock.advance_to(t0 + Duration::from_millis(25));
        assert_eq!(clock.elapsed(), Duration::from_millis(25));
        clock.advance_to(t0 + Duration::from_millis(5));
        assert_eq!(clock.elapsed(), Duration::from_millis(25));
    }
}
