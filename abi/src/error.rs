//! Errors of plugin loading and execution.

use crate::state::LogLine;
use std::fmt;
use std::sync::Arc;

/// What went wrong with a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginErrorKind {
    /// The module is not valid WebAssembly.
    InvalidModule,
    /// No (known) `proxy_abi_version_*` export.
    MissingAbiVersion,
    /// Neither `malloc` nor `proxy_on_memory_allocate` is exported.
    MissingAllocator,
    /// The module exports no linear memory named `memory`.
    MissingMemory,
    /// An export the host calls has the wrong type.
    BadExport,
    /// The module imports something the host does not provide.
    UnknownImport,
    /// The instance could not be created.
    Instantiate,
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    StartFailed,
    /// The plugin trapped.
    Trap,
    /// The plugin ran past its time or fuel budget.
    Interrupted,
    /// The VM trapped earlier and must be replaced (`Plugin::new_vm`).
    VmFailed,
    /// The embedder named a stream, token or context that does not exist.
    UnknownContext,
    /// The VM's root context was deleted by `Vm::shutdown`.
    ShutDown,
    /// The engine reported something else.
    Engine,
}

impl PluginErrorKind {
    fn describe(self) -> &'static str {
        match self {
            PluginErrorKind::InvalidModule => "invalid WebAssembly module",
            PluginErrorKind::MissingAbiVersion => "missing or unknown proxy-wasm ABI version",
            PluginErrorKind::MissingAllocator => "missing memory allocator",
            PluginErrorKind::MissingMemory => "missing exported memory",
            PluginErrorKind::BadExport => "export has the wrong signature",
            PluginErrorKind::UnknownImport => "imports a function the host does not provide",
            PluginErrorKind::Instantiate => "cannot instantiate",
            PluginErrorKind::StartFailed => "failed to start",
            PluginErrorKind::Trap => "trapped",
            PluginErrorKind::Interrupted => "interrupted",
            PluginErrorKind::VmFailed => "VM has failed",
            PluginErrorKind::UnknownContext => "unknown context",
            PluginErrorKind::ShutDown => "VM has shut down",
            PluginErrorKind::Engine => "engine error",
        }
    }
}

/// An error that names the plugin, what failed, the callback that was
/// running, and the plugin's most recent log lines.
///
/// Boxed inside, so results that carry it stay one pointer wide.
#[derive(Debug)]
pub struct PluginError {
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    plugin: Arc<str>,
    kind: PluginErrorKind,
    callback: Option<String>,
    message: String,
    logs: Vec<LogLine>,
    source: Option<polyhost_engine_core::Error>,
}

impl std::error::Error for PluginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How many of the plugin's last log lines an error carries.
const LOG_LINES_IN_ERROR: usize = 20;

impl PluginError {
    pub(crate) fn new(plugin: Arc<str>, kind: PluginErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            inner: Box::new(Inner {
                plugin,
                kind,
                callback: None,
                message: message.into(),
                logs: Vec::new(),
                source: None,
            }),
        }
    }

    /// Wraps an engine error, classifying it.
    pub(crate) fn engine(plugin: Arc<str>, e: polyhost_engine_core::Error) -> Self {
        use polyhost_engine_core::ErrorKind as K;
        let kind = match e.kind() {
            K::Compile => PluginErrorKind::InvalidModule,
            K::Link => PluginErrorKind::UnknownImport,
            K::Instantiate | K::ResourceLimit => PluginErrorKind::Instantiate,
            K::Trap | K::MemoryOutOfBounds => PluginErrorKind::Trap,
            K::Interrupted => PluginErrorKind::Interrupted,
            K::SignatureMismatch | K::MissingExport => PluginErrorKind::BadExport,
            _ => PluginErrorKind::Engine,
        };
        let mut err = PluginError::new(plugin, kind, e.message().to_string());
        err.inner.callback = e.callback().map(str::to_string);
        if let Some(bt) = e.guest_backtrace() {
            err.inner.message = format!("{}\nguest backtrace:\n{bt}", err.inner.message);
        }
        err.inner.source = Some(e);
        err
    }

    /// Wraps an engine error about plugin `plugin`, classified as
    /// [`Plugin::load`](crate::Plugin::load) does, for embedders that compile
    /// by other means (a module cache) and want the same error.
    pub fn from_engine(plugin: &str, e: polyhost_engine_core::Error) -> Self {
        Self::engine(plugin.into(), e)
    }

    pub(crate) fn with_kind(mut self, kind: PluginErrorKind) -> Self {
        self.inner.kind = kind;
        self
    }

    pub(crate) fn in_callback(mut self, callback: &str) -> Self {
        self.inner
            .callback
            .get_or_insert_with(|| callback.to_string());
        self
    }

    pub(crate) fn with_logs(mut self, logs: &[LogLine]) -> Self {
        let from = logs.len().saturating_sub(LOG_LINES_IN_ERROR);
        self.inner.logs = logs[from..].to_vec();
        self
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.inner.plugin
    }

    /// What went wrong.
    pub fn kind(&self) -> PluginErrorKind {
        self.inner.kind
    }

    /// The callback (export) that was running, if any.
    pub fn callback(&self) -> Option<&str> {
        self.inner.callback.as_deref()
    }

    /// The detail message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The plugin's last log lines before the error.
    pub fn logs(&self) -> &[LogLine] {
        &self.inner.logs
    }

    /// The engine's error, when the engine reported this.
    pub fn engine_error(&self) -> Option<&polyhost_engine_core::Error> {
        self.inner.source.as_ref()
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` {}",
            self.inner.plugin,
            self.inner.kind.describe()
        )?;
        if let Some(cb) = &self.inner.callback {
            write!(f, " in `{cb}`")?;
        }
        if let Some(engine) = self.inner.source.as_ref().map(|e| e.engine()) {
            write!(f, " (engine {engine})")?;
        }
        write!(f, ": {}", self.inner.message)?;
        if !self.inner.logs.is_empty() {
            write!(f, "\nplugin log:")?;
            for line in &self.inner.logs {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}
