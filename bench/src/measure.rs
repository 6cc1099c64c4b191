//! The report's own timing loop, and resident-memory readings.
//!
//! Criterion (in `benches/`) is the tool for studying one benchmark; the
//! report needs a hundred cells in a few minutes, so it uses this simpler
//! loop: warm up, size batches to a target duration, time a number of
//! batches, and keep every batch's mean. The spread it reports is the
//! minimum and maximum of those batch means, so a noisy cell shows as a wide
//! range rather than being hidden.

use serde::Serialize;
use std::time::{Duration, Instant};

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Time spent running the routine before measuring.
    pub warm_up: Duration,
    /// Target duration of one batch.
    pub batch: Duration,
    /// Number of timed batches.
    pub batches: usize,
    /// Separately timed runs of slow one-off operations (compilation).
    pub slow_runs: usize,
    /// VMs created to estimate the memory one more VM adds.
    pub memory_vms: usize,
}

impl Settings {
    /// The settings of the published report.
    pub fn full() -> Self {
        Settings {
            warm_up: Duration::from_millis(200),
            batch: Duration::from_millis(20),
            batches: 30,
            slow_runs: 5,
            memory_vms: 16,
        }
    }

    /// A fast pass that shows the harness works; the numbers are rough.
    pub fn quick() -> Self {
        Settings {
            warm_up: Duration::from_millis(10),
            batch: Duration::from_millis(2),
            batches: 5,
            slow_runs: 1,
            memory_vms: 4,
        }
    }
}

/// Timing of one routine, per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Median of the batch means, in nanoseconds.
    pub median_ns: f64,
    /// Mean of the batch means, in nanoseconds: every batch runs the same
    /// number of iterations, so this is the mean over every timed iteration.
    pub mean_ns: f64,
    /// Fastest batch mean, in nanoseconds.
    pub min_ns: f64,
    /// Slowest batch mean, in nanoseconds.
    pub max_ns: f64,
    /// Number of batches.
    pub batches: usize,
    /// Iterations per batch.
    pub iterations: u64,
}

impl Stats {
    fn from_means(mut means: Vec<f64>, iterations: u64) -> Stats {
        means.sort_by(f64::total_cmp);
        let n = means.len();
        let median = if n % 2 == 1 {
            means[n / 2]
        } else {
            (means[n / 2 - 1] + means[n / 2]) / 2.0
        };
        Stats {
            median_ns: median,
            mean_ns: means.iter().sum::<f64>() / n as f64,
            min_ns: means[0],
            max_ns: means[n - 1],
            batches: n,
            iterations,
        }
    }

    /// These statistics divided by `n` (for a routine that does `n` units
    /// of work per iteration).
    pub fn per(self, n: f64) -> Stats {
        Stats {
            median_ns: self.median_ns / n,
            mean_ns: self.mean_ns / n,
            min_ns: self.min_ns / n,
            max_ns: self.max_ns / n,
            ..self
        }
    }
}

/// Times `routine` with `settings`; stops at the first error.
///
/// # Errors
/// The routine's first error.
pub fn measure<F>(settings: &Settings, mut routine: F) -> Result<Stats, String>
where
    F: FnMut() -> Result<(), String>,
{
    let iterations = warm_up(settings, &mut routine)?;
    let mut means = Vec::with_capacity(settings.batches);
    for _ in 0..settings.batches.max(1) {
        means.push(time_batch(iterations, &mut routine)?);
    }
    Ok(Stats::from_means(means, iterations))
}

/// Times several routines whose ratio is the result, with their batches
/// taking turns: after each routine's own warm-up and batch sizing, round
/// `k` runs one batch of every routine, starting at routine `k` modulo
/// their number. Timed one after the other, as [`measure`] times them, a
/// routine and its baseline can see different machines (another process,
/// a frequency change) and their ratio drifts with it; taking turns spreads
/// such noise over all of them.
///
/// Each routine is a closure returning `Ok` per iteration. A routine that
/// fails reports its first error and sits out the remaining rounds; the
/// others go on. So a routine with nothing to measure (its set-up failed)
/// can simply return that error.
pub fn alternating<const N: usize>(
    settings: &Settings,
    mut routines: [&mut dyn FnMut() -> Result<(), String>; N],
) -> [Result<Stats, String>; N] {
    let mut iterations = routines
        .each_mut()
        .map(|routine| warm_up(settings, routine));
    let mut means: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for round in 0..settings.batches.max(1) {
        for turn in 0..N {
            let i = (round + turn) % N;
            let Ok(n) = iterations[i] else { continue };
            match time_batch(n, &mut routines[i]) {
                Ok(mean) => means[i].push(mean),
                Err(e) => iterations[i] = Err(e),
            }
        }
    }
    let mut means = means.into_iter();
    iterations.map(|n| {
        let means = means.next().unwrap_or_default();
        n.map(|n| Stats::from_means(means, n))
    })
}

/// Runs `routine` for the warm-up time; the number of iterations that
/// fills one batch.
fn warm_up<F>(settings: &Settings, mut routine: F) -> Result<u64, String>
where
    F: FnMut() -> Result<(), String>,
{
    let start = Instant::now();
    let mut warm = 0u64;
    while warm == 0 || start.elapsed() < settings.warm_up {
        routine()?;
        warm += 1;
    }
    let per_iter = start.elapsed().as_secs_f64() / warm as f64;
    Ok(((settings.batch.as_secs_f64() / per_iter) as u64).max(1))
}

/// Runs `iterations` of `routine`; the mean time of one, in nanoseconds.
fn time_batch<F>(iterations: u64, mut routine: F) -> Result<f64, String>
where
    F: FnMut() -> Result<(), String>,
{
    let t = Instant::now();
    for _ in 0..iterations {
        routine()?;
    }
    Ok(t.elapsed().as_nanos() as f64 / iterations as f64)
}

/// Times `runs` separate runs of a slow routine (one iteration each).
///
/// # Errors
/// The routine's first error.
pub fn measure_runs<F>(runs: usize, mut routine: F) -> Result<Stats, String>
where
    F: FnMut() -> Result<(), String>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        routine()?;
        times.push(t.elapsed().as_nanos() as f64);
    }
    Ok(Stats::from_means(times, 1))
}

/// This process's resident set size in bytes, from `VmRSS` in
/// `/proc/self/status` (`None` where there is no procfs).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Hands memory the allocator holds free back to the kernel, so that a VM
/// reusing it shows up as resident growth instead of hiding in pages an
/// earlier measurement left behind. glibc only (`malloc_trim`); elsewhere a
/// no-op, and the memory figures may then read low.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: `malloc_trim` takes no pointers and only returns free
        // pages of glibc's allocator (Rust's global allocator here) to the
        // kernel; it is safe to call at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_median_min_max() {
        let s = Stats::from_means(vec![3.0, 1.0, 2.0, 10.0], 5);
        assert_eq!((s.median_ns, s.min_ns, s.max_ns), (2.5, 1.0, 10.0));
        assert_eq!(s.mean_ns, 4.0);
        assert_eq!((s.batches, s.iterations), (4, 5));
        assert_eq!(s.per(2.0).median_ns, 1.25);
    }

    #[test]
    fn measure_runs_the_routine_and_stops_on_error() {
        let mut n = 0;
        let settings = Settings::quick();
        let s = measure(&settings, || {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert!(n as u64 >= s.iterations * s.batches as u64);
        let mut calls = 0;
        let e = measure(&settings, || {
            calls += 1;
            if calls == 3 {
                Err("boom".into())
            } else {
                Ok(())
            }
        });
        assert_eq!(e, Err("boom".into()));
    }

    #[test]
    fn alternating_batches_take_turns_and_a_failing_routine_sits_out() {
        let settings = Settings {
            batches: 5,
            ..Settings::quick()
        };
        // Which routine ran, once per run of consecutive iterations.
        let turns = std::cell::RefCell::new(Vec::<usize>::new());
        let ran = |id: usize| {
            let mut turns = turns.borrow_mut();
            if turns.last() != Some(&id) {
                turns.push(id);
            }
            Ok(())
        };
        let [first, second, failing] = alternating(
            &settings,
            [&mut || ran(0), &mut || ran(1), &mut || {
                Err("no instance".into())
            }],
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!((first.batches, second.batches), (5, 5));
        assert_eq!(failing, Err("no instance".into()));
        // Warm-ups 0 1, then rounds starting at routine 0, 1, 2 (which
        // sits out), 0, 1: 0 1 | 1 0 | 0 1 | 0 1 | 1 0. Timed one after the
        // other, as `measure` times them, they would show as just [0, 1].
        assert_eq!(*turns.borrow(), [0, 1, 0, 1, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn resident_memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 0);
        }
    }
}
