//! Loading a plugin: validation, ABI detection and pre-linking.

use crate::error::{PluginError, PluginErrorKind};
use crate::limits::HostLimits;
use crate::services::HostServices;
use crate::state::{HostState, PluginInfo};
use crate::types::{AbiVersion, LogLevel};
use crate::vm::{Callback, Vm};
use polyhost_engine_core::{CallbackExport, CallbackSig, Engine, FuncType};
use std::sync::Arc;

/// How the embedder configures one plugin (what Envoy's `PluginConfig` and
/// `VmConfig` hold).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Name used in logs and errors.
    pub name: String,
    /// Root id (selects the plugin's root context in multi-root plugins).
    pub root_id: String,
    /// VM id: plugins with the same id share data and queues.
    pub vm_id: String,
    /// Bytes passed to `proxy_on_configure` (often JSON).
    pub configuration: String,
    /// Bytes passed to `proxy_on_vm_start`.
    pub vm_configuration: String,
    /// Environment variables the plugin may read through WASI, by name; their
    /// values are taken from the host's environment at load time.
    pub allowed_env: Vec<String>,
    /// Environment variables given to the plugin with fixed values.
    pub env: Vec<(String, String)>,
    /// Lowest plugin log level kept (default `trace`: everything).
    pub log_level: LogLevel,
    /// What the host keeps for each VM of the plugin at most (header bytes,
    /// bodies, log lines, WASI writes); see [`HostLimits`].
    #[serde(default)]
    pub limits: HostLimits,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            name: "plugin".into(),
            root_id: String::new(),
            vm_id: String::new(),
            configuration: String::new(),
            vm_configuration: String::new(),
            allowed_env: Vec::new(),
            env: Vec::new(),
            log_level: LogLevel::Trace,
            limits: HostLimits::default(),
        }
    }
}

impl PluginConfig {
    /// A configuration with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        PluginConfig {
            name: name.into(),
            ..PluginConfig::default()
        }
    }
}

/// The magic number every WebAssembly binary module starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Checks that `wasm` is a WebAssembly *binary* before any engine sees it,
/// so every engine gives the same answer for the same file: some runtimes
/// accept the text format and others do not, and their messages for
/// arbitrary bytes all differ. [`Plugin::load`] calls it; call it yourself
/// before compiling by other means (a module cache) to get the same error.
///
/// # Errors
/// [`PluginErrorKind::InvalidModule`] naming `plugin`, saying whether the
/// bytes look like WebAssembly text (and how to compile it) or are
/// something else.
pub fn check_binary(plugin: &str, wasm: &[u8]) -> Result<(), PluginError> {
    if wasm.starts_with(WASM_MAGIC) {
        return check_memory_export(plugin, wasm);
    }
    let message = if wasm.is_empty() {
        "the module is empty".to_string()
    } else if looks_like_text(wasm) {
        "this is WebAssembly text, not a binary module; compile it with `wat2wasm` or `wasm-tools parse`".to_string()
    } else {
        format!(
            "not a WebAssembly binary: it starts with {:02x?}, not the magic bytes `\\0asm`",
            &wasm[..wasm.len().min(4)]
        )
    };
    Err(PluginError::new(
        plugin.into(),
        PluginErrorKind::InvalidModule,
        message,
    ))
}

/// An export named `memory` that is not a memory (a global, say) looks like
/// a memory in [`Engine::exports`], which only tells functions apart, so
/// the export section itself is read. A malformed module is left to the
/// engine, whose compile error says what is wrong.
fn check_memory_export(plugin: &str, wasm: &[u8]) -> Result<(), PluginError> {
    use wasmparser::{ExternalKind, Payload};
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ExportSection(exports)) => {
                let memory = exports
                    .into_iter()
                    .map_while(Result::ok)
                    .find(|e| e.name == "memory");
                return match memory {
                    Some(e) if e.kind != ExternalKind::Memory => Err(no_memory(plugin.into())),
                    _ => Ok(()),
                };
            }
            // The export section comes before the code: no need to go on.
            Ok(Payload::CodeSectionStart { .. }) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
    Ok(())
}

fn no_memory(plugin: Arc<str>) -> PluginError {
    PluginError::new(
        plugin,
        PluginErrorKind::MissingMemory,
        "the module exports no linear memory named `memory`",
    )
}

/// Text modules start with `(` after whitespace and `;;` / `(; ;)`
/// comments; only the beginning is looked at, so a huge file costs nothing.
fn looks_like_text(bytes: &[u8]) -> bool {
    let mut rest = &bytes[..bytes.len().min(4096)];
    loop {
        rest = rest.trim_ascii_start();
        if let Some(line) = rest.strip_prefix(b";;") {
            let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
            rest = &line[end..];
        } else if let Some(block) = rest.strip_prefix(b"(;") {
            match block.windows(2).position(|w| w == b";)") {
                Some(end) => rest = &block[end + 2..],
                None => return true,
            }
        } else {
            return rest.first() == Some(&b'(') || (rest.is_empty() && bytes.len() > 4096);
        }
    }
}

pub(crate) struct Shared<E: Engine> {
    pub engine: E,
    pub info: Arc<PluginInfo>,
    pub services: Arc<HostServices>,
    /// Pre-linked with the callbacks the plugin exports, then its
    /// allocator, as [`Shared::slots`] says.
    pub pre: E::InstancePre<HostState>,
    pub slots: CallbackSlots,
}

/// Where each callback the plugin exports is in the list the module was
/// pre-linked with ([`polyhost_engine_core::Instance::callback`] takes the
/// position): worked out once per plugin, so a new VM only fetches them.
pub(crate) struct CallbackSlots {
    /// By `Callback as usize`: the callback's position among the VM's
    /// resolved callbacks, or `None` when the plugin does not export it.
    pub index: [Option<u8>; Callback::ALL.len()],
    /// How many callbacks were listed; the allocator comes right after.
    pub count: usize,
}

impl CallbackSlots {
    /// The exports to pre-link: every callback in `present` with its
    /// signature under `abi`, then the allocator.
    fn new(present: &[Callback], abi: AbiVersion, allocator: &str) -> (Self, Vec<CallbackExport>) {
        let mut index = [None; Callback::ALL.len()];
        let mut list = Vec::with_capacity(present.len() + 1);
        for (position, &cb) in present.iter().enumerate() {
            index[cb as usize] = Some(position as u8);
            list.push(CallbackExport::new(cb.name(), cb.sig(abi)));
        }
        list.push(CallbackExport::new(allocator, CallbackSig::i32(1)));
        let count = present.len();
        (CallbackSlots { index, count }, list)
    }
}

/// A compiled, validated and pre-linked plugin: the "base VM" from which
/// every [`Vm`] is made. Cheap to clone and shareable across threads.
pub struct Plugin<E: Engine> {
    pub(crate) shared: Arc<Shared<E>>,
}

impl<E: Engine> Clone for Plugin<E> {
    fn clone(&self) -> Self {
        Plugin {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Engine> Plugin<E> {
    /// Compiles `wasm` and prepares it.
    ///
    /// # Errors
    /// [`PluginErrorKind::InvalidModule`], [`PluginErrorKind::MissingAbiVersion`],
    /// [`PluginErrorKind::MissingMemory`], [`PluginErrorKind::MissingAllocator`],
    /// [`PluginErrorKind::BadExport`] or [`PluginErrorKind::UnknownImport`],
    /// each naming the plugin.
    pub fn load(
        engine: &E,
        wasm: &[u8],
        config: PluginConfig,
        services: HostServices,
    ) -> Result<Self, PluginError> {
        check_binary(&config.name, wasm)?;
        let name: Arc<str> = config.name.as_str().into();
        let module = engine
            .compile(wasm)
            .map_err(|e| PluginError::engine(name.clone(), e))?;
        Self::from_module(engine, module, config, services)
    }

    /// Prepares an already compiled (or deserialized) module.
    ///
    /// # Errors
    /// As [`Plugin::load`], except for compilation.
    pub fn from_module(
        engine: &E,
        module: E::Module,
        config: PluginConfig,
        services: HostServices,
    ) -> Result<Self, PluginError> {
        let name: Arc<str> = config.name.as_str().into();
        let exports = engine.exports(&module);
        // The marker is a function in every SDK; a global (or table, or
        // memory) of that name is a malformed module, refused the same way
        // on every engine rather than taken as a plugin.
        if let Some(marker) = exports
            .iter()
            .find(|e| e.name.starts_with("proxy_abi_version_") && e.func.is_none())
        {
            return Err(PluginError::new(
                name,
                PluginErrorKind::BadExport,
                format!(
                    "export `{}` is not a function; the proxy-wasm ABI marker must be an exported function",
                    marker.name
                ),
            ));
        }
        let abi = AbiVersion::detect(exports.iter().map(|e| e.name.as_str())).ok_or_else(|| {
            PluginError::new(
                name.clone(),
                PluginErrorKind::MissingAbiVersion,
                "the module exports none of proxy_abi_version_0_1_0, proxy_abi_version_0_2_0, proxy_abi_version_0_2_1 or proxy_abi_version_0_2_100",
            )
        })?;
        // Every host call passes data through the guest's memory; without an
        // exported `memory` the plugin could load and then fail on its first
        // call (differently per engine), so it is refused here.
        if !exports
            .iter()
            .any(|e| e.name == "memory" && e.func.is_none())
        {
            return Err(no_memory(name));
        }
        // The reference host prefers `malloc`, then `proxy_on_memory_allocate`.
        let alloc_type = FuncType::i32s(1, 1);
        let allocator = ["malloc", "proxy_on_memory_allocate"]
            .into_iter()
            .find(|want| {
                exports
                    .iter()
                    .any(|e| e.name == *want && e.func.as_ref() == Some(&alloc_type))
            })
            .ok_or_else(|| {
                PluginError::new(
                    name.clone(),
                    PluginErrorKind::MissingAllocator,
                    "the module exports neither `malloc` nor `proxy_on_memory_allocate` of type (i32) -> (i32)",
                )
            })?;
        let mut present = Vec::new();
        for &cb in Callback::ALL {
            let expected = cb.sig(abi).func_type();
            let Some(export) = exports.iter().find(|e| e.name == cb.name()) else {
                continue;
            };
            present.push(cb);
            if export.func.as_ref() != Some(&expected) {
                let actual = export
                    .func
                    .as_ref()
                    .map_or_else(|| "not a function".to_string(), ToString::to_string);
                return Err(PluginError::new(
                    name.clone(),
                    PluginErrorKind::BadExport,
                    format!(
                        "export `{}` has type {actual}, expected {expected} (ABI {})",
                        cb.name(),
                        abi.as_str()
                    ),
                ));
            }
        }
        let mut linker = engine.linker::<HostState>();
        crate::host::register(&mut linker)
            .and_then(|()| crate::wasi::register(&mut linker))
            .map_err(|e| PluginError::engine(name.clone(), e))?;
        // Every export a VM calls is resolved once, here: a new VM fetches
        // them by position.
        let (slots, callbacks) = CallbackSlots::new(&present, abi, allocator);
        let pre = engine
            .prelink(&linker, &module, &callbacks)
            .map_err(|e| PluginError::engine(name.clone(), e))?;
        let mut environment = config.env.clone();
        for var in &config.allowed_env {
            if let Ok(value) = std::env::var(var) {
                environment.push((var.clone(), value));
            }
        }
        let info = PluginInfo {
            name,
            root_id: config.root_id,
            vm_id: config.vm_id,
            vm_configuration: config.vm_configuration.into_bytes(),
            plugin_configuration: config.configuration.into_bytes(),
            environment,
            log_level: config.log_level,
            abi,
            limits: config.limits,
        };
        tracing::debug!(plugin = %info.name, abi = abi.as_str(), engine = engine.name(), "plugin loaded");
        Ok(Plugin {
            shared: Arc::new(Shared {
                engine: engine.clone(),
                info: Arc::new(info),
                services: Arc::new(services),
                pre,
                slots,
            }),
        })
    }

    /// Facts about the plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.shared.info
    }

    /// The services its VMs use.
    pub fn services(&self) -> &HostServices {
        &self.shared.services
    }

    /// The engine it runs on.
    pub fn engine(&self) -> &E {
        &self.shared.engine
    }

    /// Creates a VM: instantiates the module, runs its initialisation, then
    /// creates the root context and calls `proxy_on_vm_start` and
    /// `proxy_on_configure`.
    ///
    /// # Errors
    /// [`PluginErrorKind::StartFailed`] when either start callback returns
    /// false, [`PluginErrorKind::Trap`] when start-up traps; the error
    /// carries the plugin's log lines.
    pub fn new_vm(&self) -> Result<Vm<E>, PluginError> {
        Vm::start(self.shared.clone(), None)
    }

    /// Creates a VM as [`Plugin::new_vm`] does, with `root` (its name, root
    /// id and configuration) as the first root context instead of the
    /// plugin's own. For a VM that several plugins share: it is started for
    /// whichever of them needs it first, and the others join it with
    /// [`Vm::add_root`].
    ///
    /// # Errors
    /// As [`Plugin::new_vm`], naming `root`'s plugin.
    pub fn new_vm_as(&self, root: crate::RootConfig) -> Result<Vm<E>, PluginError> {
        Vm::start(self.shared.clone(), Some(root))
    }
}
