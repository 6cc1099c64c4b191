//! The one error type every engine returns.

use std::fmt;

/// What went wrong, independent of the engine that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a valid WebAssembly module (or the engine rejected it).
    Compile,
    /// A host function could not be registered, or an import is not provided.
    Link,
    /// Instantiation failed (out of instances, start section trapped, ...).
    Instantiate,
    /// The guest trapped while running (`unreachable`, out-of-bounds access, ...).
    Trap,
    /// The guest ran past its deadline or out of fuel.
    Interrupted,
    /// The guest asked for more memory than its limit allows.
    ResourceLimit,
    /// A guest pointer/length pair falls outside the guest's linear memory.
    MemoryOutOfBounds,
    /// A required export is missing.
    MissingExport,
    /// An export exists but its type is not the one expected.
    SignatureMismatch,
    /// The engine does not have this capability at all.
    NotSupported,
    /// A serialized (precompiled) module could not be loaded.
    Deserialize,
    /// Anything else reported by the engine.
    Other,
}

impl ErrorKind {
    /// A short, lowercase description used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Compile => "compile error",
            ErrorKind::Link => "link error",
            ErrorKind::Instantiate => "instantiation failed",
            ErrorKind::Trap => "trap",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::ResourceLimit => "resource limit exceeded",
            ErrorKind::MemoryOutOfBounds => "guest memory access out of bounds",
            ErrorKind::MissingExport => "missing export",
            ErrorKind::SignatureMismatch => "export has the wrong signature",
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Deserialize => "cannot load precompiled module",
            ErrorKind::Other => "engine error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reported by an engine backend.
///
/// It carries the [`ErrorKind`], the name of the engine, a message, and for
/// traps the export (callback) that was running and the guest backtrace when
/// the runtime provides one. Layers above (the ABI crate) add the plugin name.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    engine: &'static str,
    message: String,
    callback: Option<String>,
    backtrace: Option<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Creates an error of `kind` reported by `engine`.
    pub fn new(kind: ErrorKind, engine: &'static str, message: impl Into<String>) -> Self {
        Error {
            kind,
            engine,
            message: message.into(),
            callback: None,
            backtrace: None,
            source: None,
        }
    }

    /// The error for a capability `engine` does not have.
    pub fn not_supported(engine: &'static str, what: &str) -> Self {
        Error::new(
            ErrorKind::NotSupported,
            engine,
            format!("{what} is not supported by {engine}"),
        )
    }

    /// The error for a guest stopped because it ran past its call deadline
    /// ([`crate::EngineConfig::call_timeout`]), worded the same on every
    /// engine. The layers above add the callback and the plugin.
    pub fn deadline(engine: &'static str, timeout: std::time::Duration) -> Self {
        Error::new(
            ErrorKind::Interrupted,
            engine,
            format!(
                "ran past its deadline of {} (EngineConfig::call_timeout)",
                format_duration(timeout)
            ),
        )
    }

    /// The error of [`crate::Instance::callback`] for an `index` past the
    /// `listed` callbacks the module was pre-linked with.
    pub fn unlisted_callback(engine: &'static str, index: usize, listed: usize) -> Self {
        Error::new(
            ErrorKind::MissingExport,
            engine,
            format!("no callback {index}: the module was pre-linked with {listed}"),
        )
    }

    /// An export `name` of type `actual` (or "not a function") looked up
    /// as a callback of signature `sig`: the same message on every engine.
    pub fn callback_mismatch(
        engine: &'static str,
        name: &str,
        actual: &str,
        sig: crate::CallbackSig,
    ) -> Self {
        let message = if sig.params > crate::CallbackSig::MAX_PARAMS {
            format!(
                "callbacks take at most {} parameters",
                crate::CallbackSig::MAX_PARAMS
            )
        } else {
            format!(
                "export `{name}` has type {actual}, expected {}",
                sig.func_type()
            )
        };
        Error::new(ErrorKind::SignatureMismatch, engine, message)
    }

    /// An out-of-bounds guest memory access.
    // Cold and out of line: the accessors that call it sit on every host
    // call's path, and keeping the message formatting out of them keeps
    // them small enough to inline.
    #[cold]
    #[inline(never)]
    pub fn out_of_bounds(engine: &'static str, ptr: u32, len: u32, memory_size: usize) -> Self {
        Error::new(
            ErrorKind::MemoryOutOfBounds,
            engine,
            format!(
                "guest range {ptr:#x}..{:#x} ({len} bytes) is outside linear memory of {memory_size} bytes",
                u64::from(ptr) + u64::from(len)
            ),
        )
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Records which export was running when the error happened.
    pub fn with_callback(mut self, callback: impl Into<String>) -> Self {
        self.callback = Some(callback.into());
        self
    }

    /// Records the guest backtrace.
    pub fn with_backtrace(mut self, backtrace: impl Into<String>) -> Self {
        let bt = backtrace.into();
        if !bt.trim().is_empty() {
            self.backtrace = Some(bt);
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The engine that reported the error.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The message, without kind or engine.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The export that was running, if the error happened in guest code.
    pub fn callback(&self) -> Option<&str> {
        self.callback.as_deref()
    }

    /// The guest backtrace, when the runtime gives one.
    pub fn guest_backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.engine)?;
        if let Some(cb) = &self.callback {
            write!(f, " in `{cb}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(bt) = &self.backtrace {
            write!(f, "\nguest backtrace:\n{bt}")?;
        }
        Ok(())
    }
}

/// `50 ms`, `1.5 s`, `250 µs`: deadlines as people write them.
fn format_duration(d: std::time::Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) && d.as_millis() < 10_000 {
        format!("{} ms", d.as_millis())
    } else if d.as_millis() >= 1000 {
        format!("{} s", d.as_secs_f64())
    } else {
        format!("{} µs", d.as_micros())
    }
}

/// Shorthand for results of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
