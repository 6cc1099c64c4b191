//! The contract between Polyhost and a WebAssembly runtime.
//!
//! Polyhost implements the host side of proxy-wasm once (crate `polyhost-abi`)
//! and runs it on several runtimes. This crate is the seam between the two: an
//! [`Engine`] compiles and pre-links modules, an [`Instance`] calls exports and
//! exposes guest memory, and a [`HostLinker`] registers host functions.
//!
//! # Design choices
//!
//! * **Generic, not dynamic.** [`Engine`] is a bundle of associated types
//!   (module, linker, pre-linked template, instance) in the style of
//!   `wgpu-hal`: code above this crate is generic over `E: Engine` and gets
//!   monomorphised per backend, so a call from the host into the guest or back
//!   never goes through a vtable or a `&[Val]` slice. The choice of runtime is
//!   made once, at the boundary (the `polyhost` facade's engine enum).
//! * **Host functions are written once, registered per signature shape.** A
//!   host function is an ordinary Rust closure over `&mut L::Caller<'_>`, where
//!   the caller implements [`HostContext`] (guest memory, the host data, and the
//!   guest allocator). Runtimes insist on knowing a host function's Wasm
//!   signature at compile time to use their fast typed path
//!   (`wasmtime::Linker::func_wrap`, `wasmi::Linker::func_wrap`,
//!   `wasmer::Function::new_typed_with_env`), so [`HostLinker`] has one method
//!   per signature shape that proxy-wasm and WASI preview1 need (for example
//!   [`HostLinker::i32_3`] for `(i32, i32, i32) -> i32`). The list lives in
//!   one place, [`for_each_host_signature!`], which both declares the trait
//!   methods here and lets every backend generate its implementation with a
//!   short macro, so a new shape is one line.
//! * **Exports are resolved once per module.** The exports the host calls
//!   are listed at [`Engine::prelink`] ([`CallbackExport`]), which checks
//!   their types ([`check_callbacks`], the same words on every engine) and
//!   resolves them in the pre-linked template; a new instance then hands
//!   each out by position ([`Instance::callback`]), with no name lookup or
//!   type comparison on the path that creates instances.
//! * **Host functions may re-enter the guest.** [`HostContext::allocate`] calls
//!   the plugin's allocator from inside a host call, which proxy-wasm needs to
//!   return data to the guest.
//! * **Backends differ honestly.** [`Engine::capabilities`] says what a
//!   backend can do; asking for a missing capability yields an error of kind
//!   [`ErrorKind::NotSupported`] naming the engine.
//! * **Memory access is checked.** Every read and write of guest memory takes
//!   a pointer and a length from the guest and returns
//!   [`ErrorKind::MemoryOutOfBounds`] rather than touching memory outside the
//!   guest's linear memory.

mod error;

pub use error::{Error, ErrorKind, Result};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A WebAssembly value type used at the proxy-wasm boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValType {
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// Any other type (floats, references, vectors): never valid in proxy-wasm.
    Other,
}

/// A WebAssembly value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Value {
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
}

/// The type of a function: its parameter and result types.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    /// Parameter types, in order.
    pub params: Vec<ValType>,
    /// Result types, in order.
    pub results: Vec<ValType>,
}

impl FuncType {
    /// A function type whose parameters and results are all `i32`.
    pub fn i32s(params: usize, results: usize) -> Self {
        FuncType {
            params: vec![ValType::I32; params],
            results: vec![ValType::I32; results],
        }
    }

    /// The type of a host function from the [`WasmTypes`] of its Rust
    /// parameters and result, as a backend's [`HostLinker`] records it:
    /// `FuncType::host(&[i32::TYPES, i64::TYPES], i32::TYPES)`.
    pub fn host(params: &[&[ValType]], results: &[ValType]) -> Self {
        FuncType {
            params: params.concat(),
            results: results.to_vec(),
        }
    }
}

/// The Wasm value types a Rust type stands for in a host function's
/// signature (`()` is no value). Backends use it to record what each
/// [`HostLinker`] method registered, so [`Engine::prelink`] can check a
/// module's imports the same way on every runtime.
pub trait WasmTypes {
    /// The Wasm types, in order.
    const TYPES: &'static [ValType];
}

impl WasmTypes for i32 {
    const TYPES: &'static [ValType] = &[ValType::I32];
}

impl WasmTypes for i64 {
    const TYPES: &'static [ValType] = &[ValType::I64];
}

impl WasmTypes for () {
    const TYPES: &'static [ValType] = &[];
}

/// Checks one import of a module against what the host provides and says
/// what is wrong in the words every backend uses: `wanted` is the import's
/// function type, or `Err(kind)` ("memory", "table", ...) when it is not a
/// function; `provided` is the type the host registered under that name.
/// `None` means the import is satisfied.
pub fn import_mismatch(
    module: &str,
    name: &str,
    wanted: std::result::Result<&FuncType, &str>,
    provided: Option<&FuncType>,
) -> Option<String> {
    let what = format!("`{module}.{name}`");
    match (wanted, provided) {
        (Err(kind), _) => Some(format!(
            "import {what} is a {kind}; the host only provides functions"
        )),
        (Ok(_), None) => Some(format!("missing import {what}")),
        (Ok(wanted), Some(have)) if wanted != have => Some(format!(
            "import {what} has type {wanted} but the host provides {have}"
        )),
        (Ok(_), Some(_)) => None,
    }
}

impl std::fmt::Display for FuncType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[ValType]| {
            v.iter()
                .map(|t| match t {
                    ValType::I32 => "i32",
                    ValType::I64 => "i64",
                    ValType::Other => "?",
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(&self.params), list(&self.results))
    }
}

/// What a module exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The export name.
    pub name: String,
    /// The function type, or `None` when the export is not a function.
    pub func: Option<FuncType>,
}

/// What a module imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The module the import comes from (`env`, `wasi_snapshot_preview1`, ...).
    pub module: String,
    /// The field name.
    pub name: String,
    /// The function type, or `None` when the import is not a function.
    pub func: Option<FuncType>,
}

/// The signature of a guest export that the host calls: every proxy-wasm
/// callback takes only `i32` parameters and returns nothing or one `i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackSig {
    /// Number of `i32` parameters (at most [`CallbackSig::MAX_PARAMS`]).
    pub params: u8,
    /// Whether the callback returns one `i32`.
    pub returns: bool,
}

impl CallbackSig {
    /// The largest number of parameters a callback may take.
    pub const MAX_PARAMS: u8 = 5;

    /// `params` `i32` parameters and no result.
    pub const fn void(params: u8) -> Self {
        CallbackSig {
            params,
            returns: false,
        }
    }

    /// `params` `i32` parameters and one `i32` result.
    pub const fn i32(params: u8) -> Self {
        CallbackSig {
            params,
            returns: true,
        }
    }

    /// The equivalent [`FuncType`].
    pub fn func_type(self) -> FuncType {
        FuncType::i32s(self.params as usize, usize::from(self.returns))
    }
}

/// A guest export the host calls, named once per module rather than once
/// per instance: [`Engine::prelink`] takes the list of them, checks each
/// (with [`check_callbacks`]) and resolves it inside the pre-linked
/// template, and every instance then hands out the resolved handle by its
/// position in the list ([`Instance::callback`]), without a name lookup or
/// a type check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallbackExport {
    /// The export name. Shared: the handles of every instance keep it for
    /// their error messages without copying it.
    pub name: Arc<str>,
    /// The signature the export must have.
    pub sig: CallbackSig,
}

impl CallbackExport {
    /// The export `name` with signature `sig`.
    pub fn new(name: impl Into<Arc<str>>, sig: CallbackSig) -> Self {
        CallbackExport {
            name: name.into(),
            sig,
        }
    }
}

/// Checks `callbacks` against a module's `exports` (from
/// [`Engine::exports`]) in the words every backend uses, so that
/// [`Engine::prelink`] refuses the same lists the same way on every engine.
///
/// # Errors
/// [`ErrorKind::MissingExport`] naming the first listed export the module
/// does not have; [`ErrorKind::SignatureMismatch`] naming the first one that
/// is not a function of its signature (or whose signature has more than
/// [`CallbackSig::MAX_PARAMS`] parameters).
pub fn check_callbacks(
    engine: &'static str,
    exports: &[Export],
    callbacks: &[CallbackExport],
) -> Result<()> {
    for cb in callbacks {
        let name = &*cb.name;
        if cb.sig.params > CallbackSig::MAX_PARAMS {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!(
                    "export `{name}`: callbacks take at most {} parameters",
                    CallbackSig::MAX_PARAMS
                ),
            ));
        }
        let Some(export) = exports.iter().find(|e| e.name == name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("the module has no export `{name}`"),
            ));
        };
        let expected = cb.sig.func_type();
        match &export.func {
            Some(actual) if *actual == expected => {}
            Some(actual) => {
                return Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!("export `{name}` has type {actual}, expected {expected}"),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!("export `{name}` is not a function, expected {expected}"),
                ));
            }
        }
    }
    Ok(())
}

/// Maps a [`CallbackSig`] to the backend's typed handle for it: expands to
/// a `match` that invokes `$make!(args..., Variant, Params, Results)` for
/// the signature's variant (`V0` .. `V5` without a result, `I0` .. `I5`
/// with an `i32` one) and evaluates to `Some` of it, or `None` for more
/// than [`CallbackSig::MAX_PARAMS`] parameters. Every backend keeps one
/// enum of typed functions with these variant names; this is the one place
/// that says which Rust types each signature has.
#[macro_export]
macro_rules! match_callback_sig {
    ($sig:expr, $make:ident!($($arg:tt),*)) => {
        match ($sig.params, $sig.returns) {
            (0, false) => Some($make!($($arg),*, V0, (), ())),
            (0, true) => Some($make!($($arg),*, I0, (), i32)),
            (1, false) => Some($make!($($arg),*, V1, i32, ())),
            (1, true) => Some($make!($($arg),*, I1, i32, i32)),
            (2, false) => Some($make!($($arg),*, V2, (i32, i32), ())),
            (2, true) => Some($make!($($arg),*, I2, (i32, i32), i32)),
            (3, false) => Some($make!($($arg),*, V3, (i32, i32, i32), ())),
            (3, true) => Some($make!($($arg),*, I3, (i32, i32, i32), i32)),
            (4, false) => Some($make!($($arg),*, V4, (i32, i32, i32, i32), ())),
            (4, true) => Some($make!($($arg),*, I4, (i32, i32, i32, i32), i32)),
            (5, false) => Some($make!($($arg),*, V5, (i32, i32, i32, i32, i32), ())),
            (5, true) => Some($make!($($arg),*, I5, (i32, i32, i32, i32, i32), i32)),
            _ => None,
        }
    };
}

/// What a backend can do. Queried with [`Engine::capabilities`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Ahead-of-time compilation: [`Engine::precompile`] and [`Engine::deserialize`].
    pub precompile: bool,
    /// Interrupting a running guest after a wall-clock deadline
    /// ([`EngineConfig::call_timeout`]).
    pub interruption: bool,
    /// Bounding work by fuel (instruction budget, [`EngineConfig::fuel_per_call`]).
    pub fuel: bool,
    /// Capping linear memory growth ([`EngineConfig::max_memory_bytes`]).
    pub memory_limit: bool,
    /// Guest backtraces in trap errors.
    pub backtraces: bool,
    /// Pre-allocated instance slots ([`EngineConfig::pooled_instances`]).
    pub instance_pooling: bool,
}

/// Settings shared by every backend. Asking for something a backend cannot
/// do makes its constructor fail with [`ErrorKind::NotSupported`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Largest linear memory an instance may grow to. Default 1 GiB, the
    /// reference host's default.
    pub max_memory_bytes: u64,
    /// Wall-clock limit on one call into the guest (a callback, with every
    /// host call and nested allocator call it makes); a guest still running
    /// then stops with [`ErrorKind::Interrupted`] ([`Error::deadline`]).
    /// Default [`DEFAULT_CALL_TIMEOUT`]: unlike the reference host, which
    /// leaves CPU time unbounded, a plugin cannot hang the host thread unless
    /// the embedder asks for it with `None` (no limit).
    ///
    /// How soon after the deadline the guest stops depends on the backend
    /// (each documents its bound): wasmtime checks epochs, wasmi and wasmer
    /// count fuel and look at the clock.
    pub call_timeout: Option<Duration>,
    /// Wall-clock limit on each start-up call of an instance while it is
    /// starting ([`Instance::set_starting`]): the module's start section,
    /// `_initialize` or `main`, and the root context's creation, VM start and
    /// configuration. Language runtimes (Go's above all, on an interpreter)
    /// do far more work once at start-up than in any later callback, so they
    /// get this longer limit. Applies only when `call_timeout` is set, and
    /// never less than it. Default [`DEFAULT_STARTUP_TIMEOUT`].
    pub startup_timeout: Duration,
    /// Fuel (roughly, instructions) one call into the guest may spend; `None`
    /// means unlimited.
    pub fuel_per_call: Option<u64>,
    /// Pre-allocate memory and state for this many live instances (wasmtime's
    /// pooling allocator, with copy-on-write memory initialisation), which
    /// makes instantiation a matter of microseconds. Creating an instance
    /// when all slots are live fails with [`ErrorKind::Instantiate`]; a slot
    /// is freed when its instance is dropped. `None` (the default) allocates
    /// on demand.
    pub pooled_instances: Option<u32>,
}

/// The default [`EngineConfig::call_timeout`]: long enough for any sane
/// callback (plugins answer in microseconds), short enough that a looping
/// plugin stalls one worker for a moment, not forever.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// The default [`EngineConfig::startup_timeout`]: ten times the call
/// default, enough for a Go runtime's initialisation on an interpreter.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(1);

impl EngineConfig {
    /// `call_timeout` from a number of milliseconds where 0 means no limit,
    /// as command lines and configuration files spell it.
    pub fn timeout_from_millis(ms: u64) -> Option<Duration> {
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The limit on one call while an instance is starting: the longer of
    /// `call_timeout` and `startup_timeout`, or none when calls are
    /// unlimited.
    pub fn startup_call_timeout(&self) -> Option<Duration> {
        self.call_timeout.map(|t| t.max(self.startup_timeout))
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_memory_bytes: 1 << 30,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            fuel_per_call: None,
            pooled_instances: None,
        }
    }
}

/// The wall-clock end of one top-level call into the guest, as a backend
/// that polls the clock (wasmi, wasmer) or a host function that could block
/// (WASI `poll_oneoff`) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// The deadline of a call starting now with `timeout`.
    pub fn after(timeout: Duration) -> Self {
        Deadline::starting_at(Instant::now(), timeout)
    }

    /// The deadline of a call that started at `start` with `timeout`, for
    /// a backend that keeps a cheaper clock than [`Instant::now`].
    pub fn starting_at(start: Instant, timeout: Duration) -> Self {
        Deadline {
            // A timeout too large to add is as good as none.
            at: start
                .checked_add(timeout)
                .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365)),
            timeout,
        }
    }

    /// The instant the call must be over by.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The configured timeout this deadline came from.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The error for a guest stopped at this deadline.
    pub fn error(&self, engine: &'static str) -> Error {
        Error::deadline(engine, self.timeout)
    }
}

/// The slices of `memory` at each `(ptr, len)` range, for backends that
/// implement [`HostContext::lend`] over their own linear memory.
///
/// # Errors
/// [`ErrorKind::MemoryOutOfBounds`] for the first range outside `memory`.
#[inline]
pub fn guest_slices<'m, const N: usize>(
    engine: &'static str,
    memory: &'m [u8],
    ranges: [(u32, u32); N],
) -> Result<[&'m [u8]; N]> {
    let mut slices = [&[][..]; N];
    for (slice, (ptr, len)) in slices.iter_mut().zip(ranges) {
        *slice = memory
            .get(ptr as usize..)
            .and_then(|tail| tail.get(..len as usize))
            .ok_or_else(|| Error::out_of_bounds(engine, ptr, len, memory.len()))?;
    }
    Ok(slices)
}

/// A trap raised by a host function (for example WASI `proc_exit`): the guest
/// stops and the call into it fails with [`ErrorKind::Trap`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostTrap(pub String);

/// What a host function returns: its value, or a trap that unwinds the guest.
pub type HostResult<T> = std::result::Result<T, HostTrap>;

/// What host code sees of the guest while it runs: the host data attached to
/// the instance, linear memory, and the guest allocator.
///
/// Implemented by each backend's caller type (inside host functions) and by
/// its instance type (outside guest calls).
pub trait HostContext {
    /// The host data attached to the instance.
    type Data;

    /// The engine's name, for error messages.
    fn engine_name(&self) -> &'static str;

    /// The host data.
    fn data(&self) -> &Self::Data;

    /// The host data, mutably.
    fn data_mut(&mut self) -> &mut Self::Data;

    /// Current size of the guest's linear memory in bytes (0 when the module
    /// exports no memory).
    fn memory_size(&self) -> usize;

    /// Copies `buf.len()` bytes from guest address `ptr` into `buf`.
    ///
    /// # Errors
    /// [`ErrorKind::MemoryOutOfBounds`] when the range is outside linear memory.
    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()>;

    /// Copies `bytes` to guest address `ptr`.
    ///
    /// # Errors
    /// [`ErrorKind::MemoryOutOfBounds`] when the range is outside linear memory.
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()>;

    /// Calls the guest allocator chosen with [`Instance::set_allocator`] and
    /// returns the guest address of `size` fresh bytes.
    ///
    /// # Errors
    /// [`ErrorKind::MissingExport`] when no allocator was set, a trap from the
    /// allocator, or [`ErrorKind::Trap`] when it returns a null pointer for a
    /// non-zero size.
    fn allocate(&mut self, size: u32) -> Result<u32>;

    /// The deadline of the top-level call into the guest that is running,
    /// when [`EngineConfig::call_timeout`] is set. Host functions that wait
    /// (WASI `poll_oneoff`) must not wait past it. The default says there is
    /// none.
    fn call_deadline(&self) -> Option<Deadline> {
        None
    }

    /// Reads `len` bytes at `ptr` into a new vector.
    ///
    /// # Errors
    /// As [`HostContext::read`].
    fn read_vec(&self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let size = self.memory_size();
        if u64::from(ptr) + u64::from(len) > size as u64 {
            return Err(Error::out_of_bounds(self.engine_name(), ptr, len, size));
        }
        let mut buf = vec![0; len as usize];
        self.read(ptr, &mut buf)?;
        Ok(buf)
    }

    /// Lends the guest bytes of each `(ptr, len)` range to `f`, together
    /// with the host data, so host code can look them up or take them into
    /// its own structures without a copy of its own (a header name found in
    /// a map, a value appended to one).
    ///
    /// The default copies each range out first. Backends whose linear
    /// memory can be borrowed at the same time as their host data lend it
    /// in place: `f` cannot reach the guest, so nothing can change the
    /// memory while it holds the slices.
    ///
    /// # Errors
    /// As [`HostContext::read`], for the first range outside linear memory;
    /// `f` is not called then.
    fn lend<const N: usize, R>(
        &mut self,
        ranges: [(u32, u32); N],
        f: impl FnOnce([&[u8]; N], &mut Self::Data) -> R,
    ) -> Result<R> {
        let mut copies: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
        for (copy, (ptr, len)) in copies.iter_mut().zip(ranges) {
            *copy = self.read_vec(ptr, len)?;
        }
        Ok(f(
            std::array::from_fn(|i| copies[i].as_slice()),
            self.data_mut(),
        ))
    }

    /// Writes a little-endian `u32` at `ptr`.
    ///
    /// # Errors
    /// As [`HostContext::write`].
    #[inline]
    fn write_u32(&mut self, ptr: u32, value: u32) -> Result<()> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// Copies `bytes` to `ptr`, then writes each `(address, value)` of
    /// `words` as a little-endian `u32`, in that order: how a host call
    /// hands the guest a buffer (its address and length through two
    /// out-pointers). The default makes one call per write; a backend whose
    /// memory lookup costs something does it once for all of them.
    ///
    /// # Errors
    /// As [`HostContext::write`], for the first write out of bounds; the
    /// writes before it are done.
    #[inline]
    fn write_with_u32s(&mut self, ptr: u32, bytes: &[u8], words: [(u32, u32); 2]) -> Result<()> {
        self.write(ptr, bytes)?;
        for (at, value) in words {
            self.write_u32(at, value)?;
        }
        Ok(())
    }

    /// Writes a little-endian `u64` at `ptr`.
    ///
    /// # Errors
    /// As [`HostContext::write`].
    #[inline]
    fn write_u64(&mut self, ptr: u32, value: u64) -> Result<()> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// Reads a little-endian `u32` at `ptr`.
    ///
    /// # Errors
    /// As [`HostContext::read`].
    #[inline]
    fn read_u32(&self, ptr: u32) -> Result<u32> {
        let mut b = [0; 4];
        self.read(ptr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Calls `$mac!` with every host function signature shape Polyhost
/// registers, as `method => (arg: type, ...) -> result;` lines.
///
/// [`HostLinker`] declares one method per line; each backend expands the same
/// list into its implementation. Add a line here to support a new shape.
#[macro_export]
macro_rules! for_each_host_signature {
    ($mac:ident) => {
        $mac! {
            i32_0 => () -> i32;
            i32_1 => (a0: i32) -> i32;
            i32_2 => (a0: i32, a1: i32) -> i32;
            i32_3 => (a0: i32, a1: i32, a2: i32) -> i32;
            i32_4 => (a0: i32, a1: i32, a2: i32, a3: i32) -> i32;
            i32_5 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32) -> i32;
            i32_6 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32) -> i32;
            i32_7 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32, a6: i32) -> i32;
            i32_8 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32, a6: i32, a7: i32) -> i32;
            i32_9 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32, a6: i32, a7: i32, a8: i32) -> i32;
            i32_10 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32, a6: i32, a7: i32, a8: i32, a9: i32) -> i32;
            i32_12 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32, a6: i32, a7: i32, a8: i32, a9: i32, a10: i32, a11: i32) -> i32;
            void_1 => (a0: i32) -> ();
            i32_i32_i64 => (a0: i32, a1: i64) -> i32;
            i32_i32_i64_i32 => (a0: i32, a1: i64, a2: i32) -> i32;
            i32_i32_i64_i32_i32 => (a0: i32, a1: i64, a2: i32, a3: i32) -> i32;
            i32_i32_i64_i64 => (a0: i32, a1: i64, a2: i64) -> i32;
            i32_i32_i64_i64_i32 => (a0: i32, a1: i64, a2: i64, a3: i32) -> i32;
            i32_i32x3_i64_i32 => (a0: i32, a1: i32, a2: i32, a3: i64, a4: i32) -> i32;
            i32_i32x4_i64_i64_i32 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i64, a5: i64, a6: i32) -> i32;
            i32_i32x5_i64_i64_i32_i32 => (a0: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i64, a6: i64, a7: i32, a8: i32) -> i32;
        }
    };
}

macro_rules! declare_host_linker {
    ($( $method:ident => ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        /// Registers host functions with an engine's linker, through the
        /// runtime's typed host-function path.
        ///
        /// There is one method per Wasm signature shape (see
        /// [`for_each_host_signature!`]); the method name spells the shape,
        /// e.g. `i32_3` is `(i32, i32, i32) -> i32` and `i32_i32_i64` is
        /// `(i32, i64) -> i32`. The closure receives the engine's caller, which
        /// implements [`HostContext`].
        pub trait HostLinker<D: Send + 'static> {
            /// The value host functions receive to reach the guest.
            type Caller<'a>: HostContext<Data = D>;

            $(
                #[doc = concat!("Registers `module.name` with the Wasm signature `",
                    stringify!(($($ty),*) -> $ret), "`.")]
                ///
                /// # Errors
                /// [`ErrorKind::Link`] when the name is already defined.
                fn $method<F>(&mut self, module: &str, name: &str, f: F) -> Result<()>
                where
                    F: for<'a> Fn(&mut Self::Caller<'a>, $($ty),*) -> HostResult<$ret>
                        + Send
                        + Sync
                        + 'static;
            )*
        }
    };
}

for_each_host_signature!(declare_host_linker);

/// A live instance of a module: host data, memory and exports.
pub trait Instance<D>: HostContext<Data = D> + Send {
    /// A resolved, typed handle to an export that [`Instance::call`] invokes.
    type Func: Clone + Send + Sync;

    /// Looks up the export `name` and checks it has signature `sig`.
    ///
    /// Returns `Ok(None)` when there is no such export.
    ///
    /// # Errors
    /// [`ErrorKind::SignatureMismatch`] when the export exists but is not a
    /// function of type `sig`.
    fn func(&mut self, name: &str, sig: CallbackSig) -> Result<Option<Self::Func>>;

    /// The handle of the callback at `index` in the list given to
    /// [`Engine::prelink`]: resolved and type-checked there, so this only
    /// fetches the instance's function by its index (no name lookup, no
    /// type comparison). The way to resolve a module's callbacks on every
    /// new instance; [`Instance::func`] is for tools and tests.
    ///
    /// # Errors
    /// [`ErrorKind::MissingExport`] when `index` is past the end of the list.
    fn callback(&mut self, index: usize) -> Result<Self::Func>;

    /// Calls a resolved export with `args` (exactly as many as its signature
    /// has parameters) and returns its result, if it has one.
    ///
    /// # Errors
    /// [`ErrorKind::Trap`] (with the export name and guest backtrace) when the
    /// guest traps, [`ErrorKind::Interrupted`] when it runs out of time or
    /// fuel, [`ErrorKind::SignatureMismatch`] when `args` has the wrong length.
    fn call(&mut self, func: &Self::Func, args: &[i32]) -> Result<Option<i32>>;

    /// Calls any function export by name with arbitrary `i32`/`i64` values.
    /// Slower than [`Instance::call`]; meant for tools and tests.
    ///
    /// # Errors
    /// [`ErrorKind::MissingExport`] when there is no such function, else as
    /// [`Instance::call`].
    fn call_dynamic(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>>;

    /// Chooses the export that [`HostContext::allocate`] calls (it must be
    /// `(i32) -> i32`).
    ///
    /// # Errors
    /// [`ErrorKind::MissingExport`] or [`ErrorKind::SignatureMismatch`].
    fn set_allocator(&mut self, name: &str) -> Result<()>;

    /// Chooses a resolved export (from [`Instance::callback`] or
    /// [`Instance::func`] on this instance) as the function
    /// [`HostContext::allocate`] calls, as [`Instance::set_allocator`] does
    /// without looking the export up by name.
    ///
    /// # Errors
    /// [`ErrorKind::SignatureMismatch`] when `func` is not `(i32) -> i32`.
    fn set_allocator_func(&mut self, func: &Self::Func) -> Result<()>;

    /// Marks the instance as starting (`true`) or serving (`false`): while
    /// starting, each top-level call is limited by
    /// [`EngineConfig::startup_call_timeout`] instead of
    /// [`EngineConfig::call_timeout`]. A new instance is serving; its start
    /// section always runs under the start-up limit.
    fn set_starting(&mut self, starting: bool);
}

/// A WebAssembly runtime.
///
/// Clone is cheap (engines are reference-counted handles) and an engine is
/// shared by all threads.
pub trait Engine: Clone + Send + Sync + 'static {
    /// A compiled module.
    type Module: Clone + Send + Sync + 'static;
    /// Collects host functions before pre-linking.
    type Linker<D: Send + 'static>: HostLinker<D>;
    /// A module with its imports resolved, ready to instantiate many times.
    type InstancePre<D: Send + 'static>: Clone + Send + Sync + 'static;
    /// A live instance.
    type Instance<D: Send + 'static>: Instance<D>;

    /// The engine's name as users select it (`wasmtime`, `wasmi`, ...).
    fn name(&self) -> &'static str;

    /// What this engine can do.
    fn capabilities(&self) -> Capabilities;

    /// A string that changes whenever compiled code from this engine would
    /// change: runtime name and version, variant, target and code-affecting
    /// settings. Used to key caches of precompiled modules.
    fn fingerprint(&self) -> String;

    /// Validates and compiles a module.
    ///
    /// # Errors
    /// [`ErrorKind::Compile`] for invalid or unsupported Wasm.
    fn compile(&self, wasm: &[u8]) -> Result<Self::Module>;

    /// The module's exports with their types.
    fn exports(&self, module: &Self::Module) -> Vec<Export>;

    /// The module's imports with their types.
    fn imports(&self, module: &Self::Module) -> Vec<Import>;

    /// Compiles ahead of time to bytes that [`Engine::deserialize`] loads.
    ///
    /// # Errors
    /// [`ErrorKind::NotSupported`] when the engine has no AOT mode.
    fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>> {
        let _ = wasm;
        Err(Error::not_supported(
            self.name(),
            "ahead-of-time compilation",
        ))
    }

    /// Loads bytes produced by [`Engine::precompile`] of an engine with the
    /// same [`Engine::fingerprint`].
    ///
    /// # Safety
    /// The bytes are trusted to be machine code this engine produced; the
    /// runtime checks headers but cannot verify the code itself. Only load
    /// what you wrote yourself (the module cache checks a content hash).
    ///
    /// # Errors
    /// [`ErrorKind::Deserialize`] for bytes from another engine or version,
    /// [`ErrorKind::NotSupported`] when the engine has no AOT mode.
    unsafe fn deserialize(&self, bytes: &[u8]) -> Result<Self::Module> {
        let _ = bytes;
        Err(Error::not_supported(
            self.name(),
            "loading precompiled modules",
        ))
    }

    /// A fresh, empty linker.
    fn linker<D: Send + 'static>(&self) -> Self::Linker<D>;

    /// Resolves the module's imports against the linker, and the exports
    /// listed in `callbacks` against the module: each instance made from
    /// the result hands them out by position with [`Instance::callback`].
    ///
    /// # Errors
    /// [`ErrorKind::Link`] naming the first import the linker does not
    /// provide or provides with another type; then, as
    /// [`check_callbacks`] words them, [`ErrorKind::MissingExport`] or
    /// [`ErrorKind::SignatureMismatch`] naming the first listed export the
    /// module lacks or exports with another type.
    fn prelink<D: Send + 'static>(
        &self,
        linker: &Self::Linker<D>,
        module: &Self::Module,
        callbacks: &[CallbackExport],
    ) -> Result<Self::InstancePre<D>>;

    /// Creates an instance with host data `data`, running the module's start
    /// section.
    ///
    /// # Errors
    /// [`ErrorKind::Instantiate`] or [`ErrorKind::Trap`] from the start section.
    fn instantiate<D: Send + 'static>(
        &self,
        pre: &Self::InstancePre<D>,
        data: D,
    ) -> Result<Self::Instance<D>>;
}
