//! Host-side budgets per VM: how much a plugin can make the host hold.
//!
//! A plugin's own linear memory is capped by the engine
//! (`EngineConfig::max_memory_bytes`); these limits cap what it makes the
//! *host* keep on its behalf, so no sequence of host calls can grow the
//! host's memory without bound or make it allocate a size the guest chose.
//! Every check is an integer compare against a counter kept as the state
//! changes; nothing is re-summed on the hot path.
//!
//! What the plugin sees when it goes over a limit:
//!
//! | limit | default | over it |
//! |---|---|---|
//! | [`max_vm_bytes`](HostLimits::max_vm_bytes): header entries, bodies and properties the plugin set, local responses, callout requests not yet answered, log lines kept | 64 MiB | the call that would grow past it returns `BadArgument` (2) and changes nothing; log lines evict the oldest kept lines first |
//! | [`max_header_value_bytes`](HostLimits::max_header_value_bytes), on every route a value reaches a map (add, replace, set pairs, local response and callout headers) | 64 KiB | `BadArgument` |
//! | 1 MiB serialized / 1024 pairs per header map ([`MAX_SERIALIZED_MAP_BYTES`](crate::MAX_SERIALIZED_MAP_BYTES), [`MAX_MAP_PAIRS`](crate::MAX_MAP_PAIRS)), on every route | fixed, as the reference host | `BadArgument` |
//! | [`max_body_bytes`](HostLimits::max_body_bytes): a buffer after `proxy_set_buffer_bytes`, a local response or callout body | 16 MiB | `BadArgument` |
//! | [`max_log_line_bytes`](HostLimits::max_log_line_bytes): one `proxy_log` line or one line of WASI stdout/stderr | 64 KiB | the line is kept cut to the limit, marked `[... N bytes cut]`, and the call succeeds (SDKs treat a failed log call as fatal; a long line is not worth the VM) |
//! | [`max_fd_write_iovecs`](HostLimits::max_fd_write_iovecs) per WASI `fd_write` | 1024 (Linux's `IOV_MAX`) | errno `INVAL` (28), nothing written |
//! | [`max_fd_write_bytes`](HostLimits::max_fd_write_bytes) per WASI `fd_write` | 1 MiB | a short write: the first bytes up to the limit are taken and `nwritten` says how many, as a pipe does; callers loop for the rest |
//!
//! Each kind of limit is reported once per VM (a `tracing` warning naming
//! the plugin and the setting to raise, also kept in
//! [`HostState::limit_warnings`](crate::HostState::limit_warnings)); later
//! refusals are only counted
//! ([`HostState::limit_refusals`](crate::HostState::limit_refusals)), so a
//! plugin retrying in a loop cannot flood the host's log.
//!
//! Shared data and shared queues are process-wide services, not per VM:
//! their in-memory implementations bound the whole store instead
//! ([`InMemorySharedData`](crate::services::InMemorySharedData),
//! [`InMemoryQueues`](crate::services::InMemoryQueues)), and a refusal there
//! is reported here like the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Budgets for what the host keeps on behalf of one plugin VM. Part of
/// [`PluginConfig`](crate::PluginConfig) (`limits`); every field has a
/// default, so a configuration names only what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostLimits {
    /// Total bytes the host holds for the VM because of the plugin: header
    /// entries it added or replaced (counted as serialized: name, value and
    /// 10 bytes of framing), body and TCP bytes it set, properties it set,
    /// local responses it sent, HTTP and gRPC callout requests until their
    /// answer (one gRPC stream message must fit, but is not kept counted),
    /// and its log lines kept. Bytes the embedder put there (the request as
    /// received) are not counted; bytes of a stream are given back when the
    /// stream ends. Default 64 MiB.
    pub max_vm_bytes: usize,
    /// Largest header (or trailer, or metadata) value a plugin may set.
    /// Default 64 KiB, above any real header and far below the 1 MiB map
    /// limit.
    pub max_header_value_bytes: usize,
    /// Largest body or TCP buffer a plugin may leave after
    /// `proxy_set_buffer_bytes`, and largest body of a local response or a
    /// callout it sends. Default 16 MiB (what the data plane buffers for a
    /// paused body).
    pub max_body_bytes: usize,
    /// Longest log line kept, from `proxy_log` or WASI stdout/stderr; longer
    /// ones are cut. Default 64 KiB.
    pub max_log_line_bytes: usize,
    /// Most iovecs in one WASI `fd_write`. Default 1024, Linux's `IOV_MAX`,
    /// which is what the Rust and C standard libraries stay within.
    pub max_fd_write_iovecs: u32,
    /// Most bytes one WASI `fd_write` takes; the rest is left to the
    /// caller's next write. Default 1 MiB.
    pub max_fd_write_bytes: usize,
}

/// Default of [`HostLimits::max_vm_bytes`] (64 MiB).
pub const DEFAULT_MAX_VM_BYTES: usize = 64 << 20;
/// Default of [`HostLimits::max_header_value_bytes`] (64 KiB).
pub const DEFAULT_MAX_HEADER_VALUE_BYTES: usize = 64 << 10;
/// Default of [`HostLimits::max_body_bytes`] (16 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// Default of [`HostLimits::max_log_line_bytes`] (64 KiB).
pub const DEFAULT_MAX_LOG_LINE_BYTES: usize = 64 << 10;
/// Default of [`HostLimits::max_fd_write_iovecs`] (1024).
pub const DEFAULT_MAX_FD_WRITE_IOVECS: u32 = 1024;
/// Default of [`HostLimits::max_fd_write_bytes`] (1 MiB).
pub const DEFAULT_MAX_FD_WRITE_BYTES: usize = 1 << 20;

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_vm_bytes: DEFAULT_MAX_VM_BYTES,
            max_header_value_bytes: DEFAULT_MAX_HEADER_VALUE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_log_line_bytes: DEFAULT_MAX_LOG_LINE_BYTES,
            max_fd_write_iovecs: DEFAULT_MAX_FD_WRITE_IOVECS,
            max_fd_write_bytes: DEFAULT_MAX_FD_WRITE_BYTES,
        }
    }
}

/// A kind of limit, for the once-per-VM report and the refusal counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`HostLimits::max_vm_bytes`].
    VmBytes,
    /// [`HostLimits::max_header_value_bytes`].
    HeaderValue,
    /// The 1 MiB / 1024-pair header map limit.
    HeaderMap,
    /// [`HostLimits::max_body_bytes`].
    Body,
    /// [`HostLimits::max_log_line_bytes`].
    LogLine,
    /// [`HostLimits::max_fd_write_iovecs`].
    FdWriteIovecs,
    /// [`HostLimits::max_fd_write_bytes`].
    FdWriteBytes,
    /// The shared data store refused a value (its own bound).
    SharedData,
    /// The shared queue registry refused a message (its own bound).
    SharedQueue,
    /// The metrics store refused a new metric (its own bound).
    Metrics,
}

impl Limit {
    const ALL: [Limit; 10] = [
        Limit::VmBytes,
        Limit::HeaderValue,
        Limit::HeaderMap,
        Limit::Body,
        Limit::LogLine,
        Limit::FdWriteIovecs,
        Limit::FdWriteBytes,
        Limit::SharedData,
        Limit::SharedQueue,
        Limit::Metrics,
    ];

    /// The setting to change (as written in a configuration), or the fixed
    /// limit's name.
    pub fn setting(self) -> &'static str {
        match self {
            Limit::VmBytes => "limits.max_vm_bytes",
            Limit::HeaderValue => "limits.max_header_value_bytes",
            Limit::HeaderMap => "the header map limit of 1 MiB and 1024 pairs",
            Limit::Body => "limits.max_body_bytes",
            Limit::LogLine => "limits.max_log_line_bytes",
            Limit::FdWriteIovecs => "limits.max_fd_write_iovecs",
            Limit::FdWriteBytes => "limits.max_fd_write_bytes",
            Limit::SharedData => "the shared data store's bound",
            Limit::SharedQueue => "the shared queue registry's bound",
            Limit::Metrics => "the metrics store's bound",
        }
    }

    fn index(self) -> usize {
        Limit::ALL
            .iter()
            .position(|l| *l == self)
            .expect("every limit is in ALL")
    }
}

/// The VM's accounting: bytes held, and which limits were reported.
#[derive(Debug)]
pub(crate) struct Budget {
    pub limits: HostLimits,
    /// Bytes held at VM scope: properties set with no stream current.
    vm_bytes: usize,
    /// Bytes of the log lines kept (see `HostState::push_log`).
    pub log_bytes: usize,
    /// Bytes charged to streams, less what they gave back through this
    /// budget. Plain, so a header change costs no atomic operation.
    streams_charged: usize,
    /// Bytes given back by [`StreamCharge`]s dropped since (the embedder
    /// ends streams, not this code, so a drop cannot reach the budget
    /// itself). What streams hold is the difference.
    streams_returned: Arc<AtomicUsize>,
    /// Bytes of callout requests (headers, body, messages) by token, held
    /// until the answer: the VM forgets a token when the answer comes or
    /// its stream ends, and [`Budget::fits_callout`] catches up with that
    /// only when the budget is short, so the hot path stays a compare.
    callouts: HashMap<u32, usize>,
    callout_bytes: usize,
    refusals: [u64; Limit::ALL.len()],
    warnings: Vec<String>,
}

impl Budget {
    pub fn new(limits: HostLimits) -> Self {
        Budget {
            limits,
            vm_bytes: 0,
            log_bytes: 0,
            streams_charged: 0,
            streams_returned: Arc::default(),
            callouts: HashMap::new(),
            callout_bytes: 0,
            refusals: [0; Limit::ALL.len()],
            warnings: Vec::new(),
        }
    }

    /// Bytes held for the VM now.
    #[inline]
    pub fn held(&self) -> usize {
        self.vm_bytes
            .saturating_add(self.log_bytes)
            .saturating_add(self.callout_bytes)
            .saturating_add(self.stream_bytes())
    }

    /// Bytes held by streams now.
    #[inline]
    fn stream_bytes(&self) -> usize {
        self.streams_charged
            .saturating_sub(self.streams_returned.load(Ordering::Relaxed))
    }

    /// Bytes of callouts counted but no longer `live` (the budget catches
    /// up with those only when it is short; see [`Budget::fits_callout`]).
    pub fn stale_callout_bytes(&self, live: impl Fn(u32) -> bool) -> usize {
        self.callouts
            .iter()
            .filter(|(token, _)| !live(**token))
            .map(|(_, bytes)| bytes)
            .sum()
    }

    /// Whether `more` bytes fit in the budget.
    #[inline]
    pub fn fits(&self, more: usize) -> bool {
        self.held()
            .checked_add(more)
            .is_some_and(|total| total <= self.limits.max_vm_bytes)
    }

    /// Whether a callout request of `more` bytes fits; when it does not at
    /// first, callouts no longer `live` (answered, cancelled, or of an
    /// ended stream; `live_count` of them are) are forgotten and it is
    /// checked again. They are also forgotten once most of those counted
    /// are gone, so the count stays the size of what is outstanding, at an
    /// amortized constant cost per callout.
    pub fn fits_callout(
        &mut self,
        more: usize,
        live_count: usize,
        live: impl Fn(u32) -> bool,
    ) -> bool {
        let crowded = self.callouts.len() > 2 * live_count + 16;
        if !crowded && self.fits(more) {
            return true;
        }
        let total = &mut self.callout_bytes;
        self.callouts.retain(|token, bytes| {
            let keep = live(*token);
            if !keep {
                *total -= *bytes;
            }
            keep
        });
        self.fits(more)
    }

    /// Counts `bytes` for a new callout `token` (replacing whatever a
    /// reused token number still held).
    pub fn charge_callout(&mut self, token: u32, bytes: usize) {
        let old = self.callouts.insert(token, bytes).unwrap_or(0);
        self.callout_bytes = self.callout_bytes - old + bytes;
    }

    /// Changes the VM-scope count from `old` bytes to `new`, if that fits.
    pub fn resize_vm(&mut self, old: usize, new: usize) -> bool {
        if new > old && !self.fits(new - old) {
            return false;
        }
        self.vm_bytes = (self.vm_bytes + new).saturating_sub(old);
        true
    }

    /// Changes what `charge` holds for its stream from `old` bytes to `new`,
    /// if that fits. A stream gives back at most what it was charged, so
    /// shrinking what the embedder put there earns nothing.
    pub fn resize_stream(&mut self, charge: &mut StreamCharge, old: usize, new: usize) -> bool {
        charge.bind(&self.streams_returned);
        if new > old {
            if !self.fits(new - old) {
                return false;
            }
            self.streams_charged += new - old;
            charge.bytes += new - old;
        } else {
            let n = (old - new).min(charge.bytes);
            self.streams_charged -= n;
            charge.bytes -= n;
        }
        true
    }

    /// Counts a refusal and reports the first of each kind in this VM.
    pub fn refused(&mut self, plugin: &str, limit: Limit, detail: &str) {
        let n = &mut self.refusals[limit.index()];
        *n += 1;
        if *n > 1 {
            return;
        }
        let message = format!(
            "plugin `{plugin}` went over a host limit ({}): {detail}; the call was refused \
             or cut. Later ones of this kind in this VM are counted, not logged",
            limit.setting()
        );
        tracing::warn!(target: "polyhost::limits", plugin, limit = ?limit, "{message}");
        self.warnings.push(message);
    }

    pub fn refusals(&self, limit: Limit) -> u64 {
        self.refusals[limit.index()]
    }

    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// What one stream holds against its VM's budget. Dropping it (the stream's
/// state ended, or was replaced by the embedder) gives the bytes back, so
/// the budget follows streams without a hook where they end.
#[derive(Debug, Default)]
pub struct StreamCharge {
    ledger: Option<Arc<AtomicUsize>>,
    bytes: usize,
}

impl StreamCharge {
    /// Makes `returned` (a budget's `streams_returned`) the ledger this
    /// charge gives back to when dropped. A charge carried over from
    /// another VM's budget first gives that budget its bytes back. After
    /// the first call per stream this is a pointer compare.
    #[inline]
    fn bind(&mut self, returned: &Arc<AtomicUsize>) {
        if self
            .ledger
            .as_ref()
            .is_some_and(|ledger| Arc::ptr_eq(ledger, returned))
        {
            return;
        }
        self.give_all_back();
        self.ledger = Some(Arc::clone(returned));
    }

    fn give_all_back(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.fetch_add(self.bytes, Ordering::Relaxed);
        }
        self.bytes = 0;
    }

    /// Bytes this stream holds against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A copy of a stream's state belongs to whoever made it; only the VM's
/// own state is charged.
impl Clone for StreamCharge {
    fn clone(&self) -> Self {
        StreamCharge::default()
    }
}

impl Drop for StreamCharge {
    fn drop(&mut self) {
        self.give_all_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_bytes_come_back_when_the_stream_is_dropped() {
        let mut budget = Budget::new(HostLimits {
            max_vm_bytes: 100,
            ..HostLimits::default()
        });
        let mut charge = StreamCharge::default();
        assert!(budget.resize_stream(&mut charge, 0, 60));
        assert!(!budget.resize_stream(&mut charge, 0, 41), "over 100");
        assert!(budget.resize_vm(0, 40));
        assert_eq!(budget.held(), 100);
        // Shrinking below what was charged gives back only the charge.
        assert!(budget.resize_stream(&mut charge, 1000, 0));
        assert_eq!(budget.held(), 40);
        assert!(budget.resize_stream(&mut charge, 0, 50));
        let copy = charge.clone();
        drop(copy);
        assert_eq!(budget.held(), 90, "a copy gives nothing back");
        drop(charge);
        assert_eq!(budget.held(), 40);
        // A charge carried into another VM's budget gives the first its
        // bytes back and is counted by the second from then on.
        let mut other = Budget::new(HostLimits::default());
        let mut charge = StreamCharge::default();
        assert!(budget.resize_stream(&mut charge, 0, 30));
        assert_eq!(budget.held(), 70);
        assert!(other.resize_stream(&mut charge, 30, 35));
        assert_eq!((budget.held(), other.held(), charge.bytes()), (40, 5, 5));
        assert!(other.resize_stream(&mut charge, 0, 20));
        drop(charge);
        assert_eq!((budget.held(), other.held()), (40, 0));
    }

    #[test]
    fn answered_callouts_are_forgotten_when_short_or_crowded() {
        let mut budget = Budget::new(HostLimits {
            max_vm_bytes: 100,
            ..HostLimits::default()
        });
        for token in 1..=10 {
            assert!(budget.fits_callout(10, token as usize - 1, |_| true));
            budget.charge_callout(token, 10);
        }
        assert_eq!(budget.held(), 100);
        // Full: only token 10 is still outstanding, the rest are forgotten.
        assert!(budget.fits_callout(90, 1, |t| t == 10));
        assert_eq!(budget.held(), 10);
        // Many answered callouts are forgotten even with room to spare.
        for token in 11..=40 {
            budget.charge_callout(token, 1);
        }
        assert!(budget.fits_callout(1, 0, |_| false));
        assert_eq!(budget.held(), 0);
        assert!(budget.callouts.is_empty());
    }

    #[test]
    fn each_kind_is_reported_once() {
        let mut budget = Budget::new(HostLimits::default());
        for _ in 0..3 {
            budget.refused("p", Limit::Body, "a body of 20 bytes");
        }
        budget.refused("p", Limit::LogLine, "a line");
        assert_eq!(budget.refusals(Limit::Body), 3);
        assert_eq!(budget.warnings().len(), 2);
        assert!(budget.warnings()[0].contains("limits.max_body_bytes"));
    }
}
