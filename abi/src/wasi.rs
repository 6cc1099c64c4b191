//! WASI preview1, as much of it as a proxy plugin may use.
//!
//! Registered under both `wasi_snapshot_preview1` and `wasi_unstable`
//! (AssemblyScript plugins import the latter); Go (>= 1.24) plugins need
//! every one of these names to link. There is no file system, no socket,
//! and nothing that can block the host thread past the callback's deadline
//! ([`EngineConfig::call_timeout`](polyhost_engine_core::EngineConfig)).
//! What the host keeps from these calls counts against the VM's budgets
//! ([`crate::limits`]). Errnos are WASI's (`BADF` 8, `FAULT` 21, `INVAL`
//! 28, `NOSYS` 52, `NOTSUP` 58, `SPIPE` 70); a guest pointer outside linear
//! memory answers `FAULT`.
//!
//! | function | behaviour |
//! |---|---|
//! | `fd_write` | fd 1: info log lines, fd 2: error log lines (split at `\n`; a partial line is logged when the callback ends, or once it reaches [`max_log_line_bytes`](crate::HostLimits::max_log_line_bytes)); a line over that limit is kept cut. More than [`max_fd_write_iovecs`](crate::HostLimits::max_fd_write_iovecs) iovecs (1024) is `INVAL` and writes nothing; more than [`max_fd_write_bytes`](crate::HostLimits::max_fd_write_bytes) (1 MiB) is a short write of that many bytes (`nwritten` says so; only those bytes are copied). Other fds `BADF` |
//! | `fd_read` | fd 0: end of file (0 bytes); fds 1, 2 `NOTSUP`; others `BADF` |
//! | `fd_fdstat_get` | fds 0..=2: a character device, readable (0) or writable (1, 2); others `BADF` |
//! | `fd_fdstat_set_flags`, `fd_close` | fds 0..=2: success, nothing changes; others `BADF` |
//! | `fd_prestat_get`, `fd_prestat_dir_name` | `BADF`: no pre-opened directories |
//! | `fd_seek` | fds 0..=2 `SPIPE`; others `BADF` |
//! | `fd_datasync`, `fd_sync`, `fd_filestat_get`, `fd_tell`, `fd_renumber`, `fd_filestat_set_size`, `fd_allocate`, `fd_fdstat_set_rights`, `fd_advise`, `fd_filestat_set_times`, `fd_pread`, `fd_pwrite`, `fd_readdir` | fds 0..=2 `NOTSUP`; others `BADF` |
//! | `path_*` (open, create/remove directory, unlink, filestat get/set times, symlink, readlink, rename, link) | `NOSYS` |
//! | `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown` | `NOSYS` |
//! | `clock_time_get`, `clock_res_get` | realtime (0) and monotonic (1); the process and thread CPU-time clocks (2, 3) read the monotonic one; resolution 1 ns; other ids `INVAL` |
//! | `random_get` | OS randomness, at most [`MAX_RANDOM_BYTES`] a call, else `INVAL` |
//! | `environ_sizes_get`, `environ_get` | only the variables the operator allowed (`PluginConfig::allowed_env`, `env`) |
//! | `args_sizes_get`, `args_get` | no arguments |
//! | `sched_yield` | success at once; the host thread is not given up (it belongs to the proxy, and the plugin's turn ends when its callback returns) |
//! | `proc_exit` | never exits the host process: records the code and traps, ending the callback with a `Trap` error that names the plugin, the callback and `proc_exit(code)`; the VM fails and the next one starts clean. `proc_exit(0)` from a command module's `_start` is a normal end of initialisation |
//! | `proc_raise` | `NOSYS` |
//! | `poll_oneoff` | clock subscriptions: the host thread sleeps until the earliest one is due, **unless that is past the callback's deadline: then it does not sleep at all and traps at once**, and the callback fails as `Interrupted`, naming the deadline (waiting first would only delay the same outcome). Descriptor subscriptions complete at once with `NOTSUP`, unknown clocks with `INVAL`; `nsubscriptions` 0 is `INVAL`. With the deadline turned off, a clock wait sleeps as asked. |

use crate::host::context::{cut_line, emit};
use crate::host::{Fail, Ret, read};
use crate::limits::Limit;
use crate::state::{HostState, TrapCause};
use crate::types::{LogLevel, Status};
use polyhost_engine_core::{ErrorKind, HostContext, HostLinker, HostResult, HostTrap};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const NOTSUP: i32 = 58;
const SPIPE: i32 = 70;

/// Largest `random_get` request, as in the reference host.
pub const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// Maps a host-function body's result to a WASI errno.
fn errno(r: Ret) -> HostResult<i32> {
    match r {
        Ok(()) => Ok(SUCCESS),
        Err(Fail::Status(_)) => Ok(FAULT),
        Err(Fail::Trap(t)) => Err(t),
    }
}

fn is_stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

fn fd_write<C: HostContext<Data = HostState>>(
    cx: &mut C,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> HostResult<i32> {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(BADF),
    };
    let limits = cx.data().budget.limits;
    let count = iovs_len as u32;
    if count > limits.max_fd_write_iovecs {
        cx.data_mut().refused(
            Limit::FdWriteIovecs,
            &format!(
                "fd_write of {count} iovecs (the most is {})",
                limits.max_fd_write_iovecs
            ),
        );
        return Ok(INVAL);
    }
    errno((|| {
        // At most `max_fd_write_bytes` are taken: a short write, which
        // callers of write(2) already loop over. Only what is taken is
        // copied, so iovecs that all point at one huge region cost the
        // host no more than the limit.
        let mut text = Vec::new();
        let mut wanted: u64 = 0;
        let memory = cx.memory_size() as u64;
        for i in 0..count {
            let at = (iovs as u32).wrapping_add(i.wrapping_mul(8));
            let ptr = cx.read_u32(at)?;
            let len = cx.read_u32(at.wrapping_add(4))?;
            if u64::from(ptr) + u64::from(len) > memory {
                return Err(Status::InvalidMemoryAccess.into());
            }
            wanted += u64::from(len);
            let take = (limits.max_fd_write_bytes - text.len()).min(len as usize);
            if take > 0 {
                text.extend(cx.read_vec(ptr, take as u32)?);
            }
        }
        if wanted > text.len() as u64 {
            cx.data_mut().refused(
                Limit::FdWriteBytes,
                &format!(
                    "fd_write of {wanted} bytes (the most one call takes is {}; it took that many)",
                    limits.max_fd_write_bytes
                ),
            );
        }
        cx.write_u32(nwritten as u32, text.len() as u32)?;
        // Programs write a line in several pieces (Go's panic output does);
        // log complete lines, and the rest when the call into the guest ends.
        let state = cx.data_mut();
        let partial = &mut state.stdio_partial[(fd - 1) as usize];
        partial.extend_from_slice(&text);
        let mut lines = Vec::new();
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            lines.push(line[..end].to_vec());
        }
        // A line that never ends is logged (cut) once it reaches the limit,
        // so the unfinished part stays bounded too.
        if partial.len() > limits.max_log_line_bytes {
            lines.push(std::mem::take(partial));
        }
        for line in lines {
            let line = if line.len() > limits.max_log_line_bytes {
                cut_line(state, &line[..limits.max_log_line_bytes], line.len())
            } else {
                String::from_utf8_lossy(&line).into_owned()
            };
            emit(state, level, line);
        }
        Ok(())
    })())
}

/// Logs what the plugin wrote to stdout/stderr without a final newline.
pub(crate) fn flush_stdio(state: &mut HostState) {
    for (i, level) in [(0, LogLevel::Info), (1, LogLevel::Error)] {
        if !state.stdio_partial[i].is_empty() {
            let rest = std::mem::take(&mut state.stdio_partial[i]);
            emit(state, level, String::from_utf8_lossy(&rest).into_owned());
        }
    }
}

fn monotonic_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn realtime_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn clock_now(id: i32) -> Option<u64> {
    match id {
        0 => Some(realtime_nanos()),
        1..=3 => Some(monotonic_nanos()),
        _ => None,
    }
}

fn clock_time_get<C: HostContext<Data = HostState>>(
    cx: &mut C,
    id: i32,
    out: i32,
) -> HostResult<i32> {
    let Some(now) = clock_now(id) else {
        return Ok(INVAL);
    };
    errno(cx.write_u64(out as u32, now).map_err(Fail::from))
}

fn random_get<C: HostContext<Data = HostState>>(cx: &mut C, ptr: i32, len: i32) -> HostResult<i32> {
    if len as u32 > MAX_RANDOM_BYTES {
        return Ok(INVAL);
    }
    let mut bytes = vec![0u8; len as u32 as usize];
    rand::fill(&mut bytes[..]);
    errno(cx.write(ptr as u32, &bytes).map_err(Fail::from))
}

/// `KEY=VALUE\0` strings of the allowed environment.
fn environ(state: &HostState) -> Vec<Vec<u8>> {
    state
        .plugin
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

fn environ_sizes_get<C: HostContext<Data = HostState>>(
    cx: &mut C,
    count: i32,
    size: i32,
) -> HostResult<i32> {
    let env = environ(cx.data());
    let total: usize = env.iter().map(Vec::len).sum();
    errno((|| {
        cx.write_u32(count as u32, env.len() as u32)?;
        cx.write_u32(size as u32, total as u32)?;
        Ok(())
    })())
}

fn environ_get<C: HostContext<Data = HostState>>(
    cx: &mut C,
    ptrs: i32,
    buf: i32,
) -> HostResult<i32> {
    let env = environ(cx.data());
    errno((|| {
        let mut at = buf as u32;
        for (i, entry) in env.iter().enumerate() {
            cx.write_u32((ptrs as u32).wrapping_add(i as u32 * 4), at)?;
            cx.write(at, entry)?;
            at = at.wrapping_add(entry.len() as u32);
        }
        Ok(())
    })())
}

fn fd_fdstat_get<C: HostContext<Data = HostState>>(
    cx: &mut C,
    fd: i32,
    out: i32,
) -> HostResult<i32> {
    if !is_stdio(fd) {
        return Ok(BADF);
    }
    const CHARACTER_DEVICE: u8 = 2;
    const RIGHT_FD_READ: u64 = 1 << 1;
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    let rights = if fd == 0 {
        RIGHT_FD_READ
    } else {
        RIGHT_FD_WRITE
    };
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    errno(cx.write(out as u32, &stat).map_err(Fail::from))
}

/// `poll_oneoff`: waits for clock subscriptions, never past the callback's
/// deadline (see the table at the top); descriptor subscriptions complete
/// at once with `NOTSUP`.
fn poll_oneoff<C: HostContext<Data = HostState>>(
    cx: &mut C,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents: i32,
) -> HostResult<i32> {
    const SUB_SIZE: u32 = 48;
    const EVENT_SIZE: u32 = 32;
    const CLOCK: u8 = 0;
    const ABSTIME: u16 = 1;
    if nsubs <= 0 {
        return Ok(INVAL);
    }
    errno((|| {
        let mut ready = Vec::new();
        let mut earliest: Option<(Duration, Vec<(u64, u8)>)> = None;
        for i in 0..nsubs as u32 {
            let at = (subs as u32).wrapping_add(i.wrapping_mul(SUB_SIZE));
            let sub = read(cx, at as i32, SUB_SIZE as i32)?;
            let userdata = u64::from_le_bytes(sub[0..8].try_into().expect("8 bytes"));
            let tag = sub[8];
            if tag != CLOCK {
                ready.push((userdata, tag, NOTSUP as u16));
                continue;
            }
            let clock = i32::from_le_bytes(sub[16..20].try_into().expect("4 bytes"));
            let timeout = u64::from_le_bytes(sub[24..32].try_into().expect("8 bytes"));
            let flags = u16::from_le_bytes(sub[40..42].try_into().expect("2 bytes"));
            let wait = match (clock_now(clock), flags & ABSTIME != 0) {
                (None, _) => {
                    ready.push((userdata, tag, INVAL as u16));
                    continue;
                }
                (Some(now), true) => Duration::from_nanos(timeout.saturating_sub(now)),
                (Some(_), false) => Duration::from_nanos(timeout),
            };
            match &mut earliest {
                Some((w, subs)) if *w == wait => subs.push((userdata, tag)),
                Some((w, _)) if *w < wait => {}
                _ => earliest = Some((wait, vec![(userdata, tag)])),
            }
        }
        if ready.is_empty()
            && let Some((wait, subs)) = earliest
        {
            if let Some(deadline) = cx.call_deadline()
                && wait > deadline.remaining()
            {
                let message = format!(
                    "poll_oneoff would wait {wait:?}, past the callback's deadline: {}",
                    deadline.error(cx.engine_name()).message()
                );
                cx.data_mut().trap_cause = Some(TrapCause {
                    kind: ErrorKind::Interrupted,
                    message: message.clone(),
                });
                return Err(Fail::Trap(HostTrap(message)));
            }
            std::thread::sleep(wait);
            ready.extend(subs.into_iter().map(|(u, t)| (u, t, 0)));
        }
        for (i, (userdata, tag, error)) in ready.iter().enumerate() {
            let mut event = [0u8; EVENT_SIZE as usize];
            event[0..8].copy_from_slice(&userdata.to_le_bytes());
            event[8..10].copy_from_slice(&error.to_le_bytes());
            event[10] = *tag;
            let at = (events as u32).wrapping_add((i as u32).wrapping_mul(EVENT_SIZE));
            cx.write(at, &event)?;
        }
        cx.write_u32(nevents as u32, ready.len() as u32)?;
        Ok(())
    })())
}

/// Registers WASI preview1 under `module`.
fn register_module<L: HostLinker<HostState>>(
    l: &mut L,
    m: &str,
) -> polyhost_engine_core::Result<()> {
    l.i32_4(m, "fd_write", |cx, fd, iovs, n, out| {
        fd_write(cx, fd, iovs, n, out)
    })?;
    l.i32_4(m, "fd_read", |cx, fd, _iovs, _n, out| match fd {
        0 => errno(cx.write_u32(out as u32, 0).map_err(Fail::from)),
        1 | 2 => Ok(NOTSUP),
        _ => Ok(BADF),
    })?;
    l.i32_i32_i64_i32(m, "clock_time_get", |cx, id, _precision, out| {
        clock_time_get(cx, id, out)
    })?;
    l.i32_2(m, "clock_res_get", |cx, id, out| match clock_now(id) {
        Some(_) => errno(cx.write_u64(out as u32, 1).map_err(Fail::from)),
        None => Ok(INVAL),
    })?;
    l.i32_2(m, "random_get", |cx, p, n| random_get(cx, p, n))?;
    l.i32_2(m, "environ_sizes_get", |cx, c, s| {
        environ_sizes_get(cx, c, s)
    })?;
    l.i32_2(m, "environ_get", |cx, p, b| environ_get(cx, p, b))?;
    l.i32_2(m, "args_sizes_get", |cx, count, size| {
        errno((|| {
            cx.write_u32(count as u32, 0)?;
            cx.write_u32(size as u32, 0)?;
            Ok(())
        })())
    })?;
    l.i32_2(m, "args_get", |_cx, _argv, _buf| Ok(SUCCESS))?;
    l.void_1(m, "proc_exit", |cx, code| {
        // The plugin's exit ends its callback, never the host process.
        cx.data_mut().exit_code = Some(code);
        Err(HostTrap(format!(
            "the plugin called WASI proc_exit({code}), which ends the callback as a trap \
             (the host process does not exit)"
        )))
    })?;
    l.i32_1(m, "proc_raise", |_cx, _sig| Ok(NOSYS))?;
    l.i32_0(m, "sched_yield", |_cx| Ok(SUCCESS))?;
    l.i32_4(m, "poll_oneoff", |cx, s, e, n, o| {
        poll_oneoff(cx, s, e, n, o)
    })?;
    l.i32_2(m, "fd_fdstat_get", |cx, fd, out| fd_fdstat_get(cx, fd, out))?;
    l.i32_2(m, "fd_fdstat_set_flags", |_cx, fd, _flags| {
        Ok(if is_stdio(fd) { SUCCESS } else { BADF })
    })?;
    l.i32_1(m, "fd_close", |_cx, fd| {
        Ok(if is_stdio(fd) { SUCCESS } else { BADF })
    })?;
    l.i32_2(m, "fd_prestat_get", |_cx, _fd, _out| Ok(BADF))?;
    l.i32_3(m, "fd_prestat_dir_name", |_cx, _fd, _p, _n| Ok(BADF))?;
    // Descriptor calls with nothing behind them: stdio cannot do them, other
    // descriptors do not exist.
    let fd_only = |fd: i32| Ok(if is_stdio(fd) { NOTSUP } else { BADF });
    l.i32_1(m, "fd_datasync", move |_cx, fd| fd_only(fd))?;
    l.i32_1(m, "fd_sync", move |_cx, fd| fd_only(fd))?;
    l.i32_2(m, "fd_filestat_get", move |_cx, fd, _out| fd_only(fd))?;
    l.i32_2(m, "fd_tell", move |_cx, fd, _out| fd_only(fd))?;
    l.i32_2(m, "fd_renumber", move |_cx, fd, _to| fd_only(fd))?;
    l.i32_i32_i64(m, "fd_filestat_set_size", move |_cx, fd, _size| fd_only(fd))?;
    l.i32_i32_i64_i64(m, "fd_allocate", move |_cx, fd, _off, _len| fd_only(fd))?;
    l.i32_i32_i64_i64(m, "fd_fdstat_set_rights", move |_cx, fd, _b, _i| {
        fd_only(fd)
    })?;
    l.i32_i32_i64_i64_i32(m, "fd_advise", move |_cx, fd, _o, _l, _a| fd_only(fd))?;
    l.i32_i32_i64_i64_i32(m, "fd_filestat_set_times", move |_cx, fd, _a, _m, _f| {
        fd_only(fd)
    })?;
    l.i32_i32x3_i64_i32(m, "fd_pread", move |_cx, fd, _i, _n, _o, _r| fd_only(fd))?;
    l.i32_i32x3_i64_i32(m, "fd_pwrite", move |_cx, fd, _i, _n, _o, _r| fd_only(fd))?;
    l.i32_i32x3_i64_i32(m, "fd_readdir", move |_cx, fd, _b, _n, _c, _r| fd_only(fd))?;
    l.i32_i32_i64_i32_i32(m, "fd_seek", |_cx, fd, _off, _whence, _out| {
        Ok(if is_stdio(fd) { SPIPE } else { BADF })
    })?;
    // No file system and no sockets.
    l.i32_3(m, "path_create_directory", |_cx, _a, _b, _c| Ok(NOSYS))?;
    l.i32_3(m, "path_remove_directory", |_cx, _a, _b, _c| Ok(NOSYS))?;
    l.i32_3(m, "path_unlink_file", |_cx, _a, _b, _c| Ok(NOSYS))?;
    l.i32_5(m, "path_filestat_get", |_cx, _a, _b, _c, _d, _e| Ok(NOSYS))?;
    l.i32_5(m, "path_symlink", |_cx, _a, _b, _c, _d, _e| Ok(NOSYS))?;
    l.i32_6(m, "path_readlink", |_cx, _a, _b, _c, _d, _e, _f| Ok(NOSYS))?;
    l.i32_6(m, "path_rename", |_cx, _a, _b, _c, _d, _e, _f| Ok(NOSYS))?;
    l.i32_7(m, "path_link", |_cx, _a, _b, _c, _d, _e, _f, _g| Ok(NOSYS))?;
    l.i32_i32x4_i64_i64_i32(
        m,
        "path_filestat_set_times",
        |_cx, _a, _b, _c, _d, _e, _f, _g| Ok(NOSYS),
    )?;
    l.i32_i32x5_i64_i64_i32_i32(m, "path_open", |_cx, _a, _b, _c, _d, _e, _f, _g, _h, _i| {
        Ok(NOSYS)
    })?;
    l.i32_3(m, "sock_accept", |_cx, _a, _b, _c| Ok(NOSYS))?;
    l.i32_6(m, "sock_recv", |_cx, _a, _b, _c, _d, _e, _f| Ok(NOSYS))?;
    l.i32_5(m, "sock_send", |_cx, _a, _b, _c, _d, _e| Ok(NOSYS))?;
    l.i32_2(m, "sock_shutdown", |_cx, _a, _b| Ok(NOSYS))?;
    Ok(())
}

/// Registers WASI preview1 under `wasi_snapshot_preview1` and `wasi_unstable`.
///
/// # Errors
/// A link error from the engine.
pub fn register<L: HostLinker<HostState>>(l: &mut L) -> polyhost_engine_core::Result<()> {
    register_module(l, "wasi_snapshot_preview1")?;
    register_module(l, "wasi_unstable")
}
