//! Shared test plumbing: engines, fixtures, hand-written modules.

use polyhost::services::{
    CalloutQueue, ForeignFunctionRegistry, HostServices, InMemoryMetrics, InMemoryQueues,
    InMemorySharedData, MetricValue, StaticProperties,
};
use polyhost::{Engine, HeaderMap, Plugin, PluginConfig, Vm};
use std::path::PathBuf;
use std::sync::Arc;

/// Makers of every engine (and variant) compiled in: `(module name, maker)`.
/// Expands `$callback!(module, maker_fn_expr)` per engine.
macro_rules! for_each_engine {
    ($callback:ident ! ($($args:tt)*)) => {
        #[cfg(feature = "wasmtime")]
        $callback!(wasmtime, |c: &polyhost::EngineConfig| polyhost::engines::WasmtimeEngine::new(polyhost::engines::WasmtimeVariant::Cranelift, c); $($args)*);
        #[cfg(feature = "wasmtime-winch")]
        $callback!(wasmtime_winch, |c: &polyhost::EngineConfig| polyhost::engines::WasmtimeEngine::new(polyhost::engines::WasmtimeVariant::Winch, c); $($args)*);
        #[cfg(feature = "wasmtime-pulley")]
        $callback!(wasmtime_pulley, |c: &polyhost::EngineConfig| polyhost::engines::WasmtimeEngine::new(polyhost::engines::WasmtimeVariant::Pulley, c); $($args)*);
        #[cfg(feature = "wasmi")]
        $callback!(wasmi, |c: &polyhost::EngineConfig| polyhost::engines::WasmiEngine::new(c); $($args)*);
        #[cfg(feature = "wasmer")]
        $callback!(wasmer, |c: &polyhost::EngineConfig| polyhost::engines::WasmerEngine::by_name("wasmer", c); $($args)*);
        #[cfg(feature = "wasmer-singlepass")]
        $callback!(wasmer_singlepass, |c: &polyhost::EngineConfig| polyhost::engines::WasmerEngine::by_name("wasmer-singlepass", c); $($args)*);
    };
}
pub(crate) use for_each_engine;

macro_rules! engine_module {
    ($engine:ident, $make:expr; plain $($test:ident),*) => {
        mod $engine {
            $(#[test] fn $test() {
                let make = $make;
                super::$test(make(&Default::default()).expect("engine with default settings"))
            })*
        }
    };
    ($engine:ident, $make:expr; configured $($test:ident),*) => {
        mod $engine {
            $(#[test] fn $test() { super::$test($make) })*
        }
    };
}
pub(crate) use engine_module;

/// Runs each generic test `fn name<E: Engine>(engine: E)` once per engine
/// (and variant) compiled in, as `<area>::<engine>::<name>`.
macro_rules! engine_tests {
    ($($test:ident),* $(,)?) => {
        use crate::harness::engine_module;
        crate::harness::for_each_engine!(engine_module!(plain $($test),*));
    };
}
pub(crate) use engine_tests;

/// As [`engine_tests!`] for tests that build engines with their own
/// settings: `fn name<E: Engine>(make: impl Fn(&EngineConfig) -> Result<E>)`.
macro_rules! engine_config_tests {
    ($($test:ident),* $(,)?) => {
        use crate::harness::engine_module;
        crate::harness::for_each_engine!(engine_module!(configured $($test),*));
    };
}
pub(crate) use engine_config_tests;

/// The engine `make` builds with `config` when the engine has the
/// capability `has` picks; where it lacks it, checks that asking for it is
/// refused with `NotSupported` and returns `None`.
pub fn engine_if_capable<E: Engine>(
    make: impl Fn(&polyhost::EngineConfig) -> polyhost::engine_core::Result<E>,
    config: &polyhost::EngineConfig,
    has: impl Fn(&polyhost::Capabilities) -> bool,
) -> Option<E> {
    let plain = make(&polyhost::EngineConfig::default()).expect("engine with default settings");
    if has(&plain.capabilities()) {
        return Some(make(config).unwrap_or_else(|e| panic!("{config:?}: {e}")));
    }
    let err = make(config)
        .err()
        .unwrap_or_else(|| panic!("{} must refuse {config:?}", plain.name()));
    assert_eq!(
        err.kind(),
        polyhost::engine_core::ErrorKind::NotSupported,
        "{err}"
    );
    None
}

/// The two Rust SDK builds of every fixture plugin.
pub const RUST_TARGETS: [&str; 2] = ["rust-wasip1", "rust-unknown"];

/// Bytes of a plugin built by `scripts/setup.sh`.
pub fn fixture(target: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../build/plugins")
        .join(target)
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read plugin fixture {} ({e}); build the fixtures with scripts/setup.sh",
            path.display()
        )
    })
}

/// In-memory services with handles to inspect them.
#[derive(Clone)]
pub struct Services {
    pub host: HostServices,
    pub callouts: Arc<CalloutQueue>,
    pub metrics: Arc<InMemoryMetrics>,
    pub shared: Arc<InMemorySharedData>,
}

impl Services {
    pub fn new() -> Self {
        let callouts = Arc::new(CalloutQueue::default());
        let metrics = Arc::new(InMemoryMetrics::default());
        let shared = Arc::new(InMemorySharedData::default());
        let host = HostServices {
            callouts: callouts.clone(),
            metrics: metrics.clone(),
            shared_data: shared.clone(),
            queues: Arc::new(InMemoryQueues::default()),
            properties: Arc::new(
                StaticProperties::default()
                    .with("source.address", "10.0.0.1:5555")
                    .with("node.id", "test-node"),
            ),
            foreign: Arc::new(
                ForeignFunctionRegistry::default().with("echo", |args| Ok(args.to_vec())),
            ),
        };
        Services {
            host,
            callouts,
            metrics,
            shared,
        }
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metrics.value(name) {
            Some(MetricValue::Counter(c)) => Some(c),
            other => panic!("metric {name} is {other:?}, not a counter"),
        }
    }
}

/// Loads a plugin and starts one VM.
pub fn start<E: Engine>(
    engine: &E,
    wasm: &[u8],
    config: PluginConfig,
    services: &Services,
) -> (Plugin<E>, Vm<E>) {
    let name = config.name.clone();
    let plugin = Plugin::load(engine, wasm, config, services.host.clone())
        .unwrap_or_else(|e| panic!("loading {name} on {}: {e}", engine.name()));
    let vm = plugin
        .new_vm()
        .unwrap_or_else(|e| panic!("starting {name} on {}: {e}", engine.name()));
    (plugin, vm)
}

/// A GET request's headers.
pub fn request(path: &str) -> HeaderMap {
    [
        (":method", "GET"),
        (":path", path),
        (":authority", "example.com"),
        (":scheme", "https"),
    ]
    .into_iter()
    .collect()
}

/// Appends `extra` headers to `map`.
pub fn with(mut map: HeaderMap, extra: &[(&str, &str)]) -> HeaderMap {
    for (k, v) in extra {
        map.add(k, v);
    }
    map
}

/// The plugin's log lines as `level message` strings.
pub fn log_texts<E: Engine>(vm: &Vm<E>) -> Vec<String> {
    vm.logs()
        .iter()
        .map(|l| format!("{} {}", l.level.as_str(), l.message))
        .collect()
}

/// A hand-written module: memory, the 0.2.1 marker, a bump `malloc`, plus
/// `extra` (imports must come first inside `extra`; use `imports`).
pub fn wat_plugin(imports: &str, body: &str) -> Vec<u8> {
    wat_module("proxy_abi_version_0_2_1", imports, body)
}

/// As [`wat_plugin`] with another ABI marker.
pub fn wat_module(marker: &str, imports: &str, body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 4096))
            (func (export "{marker}"))
            (func (export "malloc") (param $n i32) (result i32)
                (local $p i32)
                (local.set $p (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (local.get $n)))
                (local.get $p))
            {body}
        )"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test module: {e}\n{text}"))
}
