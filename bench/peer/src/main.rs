//! Times Rust SDK plugins on `proxy-wasm-host` 0.2.0, the other Rust
//! proxy-wasm host on crates.io, through the request life Polyhost's
//! in-process benchmark uses (`bench/src/wasm.rs`, `PluginBench::serve`):
//! a stream context is created under the plugin's root, the request headers
//! arrive with end of stream, then the response headers with end of stream,
//! and the context is finished with `proxy_on_done`, `proxy_on_log` and
//! `proxy_on_delete`. The headers are those of Polyhost's `Fixture`
//! (`bench/src/workload.rs`), copied in per request and taken back out, as
//! an embedding proxy would.
//!
//! The timing loop is `bench/src/measure.rs` itself, compiled in: a
//! warm-up, batches sized to a fixed duration, and per-request figures from
//! the batch means (p50 is their median, mean their mean, as every batch
//! runs the same number of requests). One JSON object goes to stdout; `scripts/bench-peer.sh`
//! runs this next to Polyhost's side (`polyhost-bench-peer measure`) and
//! renders both.
//!
//! ```text
//! proxy-wasm-host-bench [--quick] [--fixtures DIR] [--plugin NAME ...]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use proxy_wasm_host::abi::v0_2_1::types::{Action, LogLevel, MapType, Status};
use proxy_wasm_host::abi::v0_2_1::{
    Access, ContextId, Guest, GuestError, Host, Invocation, LogContext, LogSink, PluginConfig,
    Started, StreamState, VmServices,
};
use proxy_wasm_host::{Engine, HeaderMap, Limits, Module, VecHeaderMap};

/// What this binary reports itself as.
const HOST: &str = "proxy-wasm-host";
/// The exact version Cargo.toml pins.
const HOST_VERSION: &str = "0.2.0";

/// Polyhost's report timing loop (`bench/src/measure.rs`), compiled from
/// the same file so both hosts are timed by the same code. Its memory
/// helpers are not used here.
#[allow(dead_code)]
#[path = "../../src/measure.rs"]
mod measure;

/// The request and response headers of Polyhost's benchmark fixture, from
/// the same file as Polyhost's side.
#[path = "../../src/fixture_headers.rs"]
mod fixture_headers;

use measure::{Settings, measure};

fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// One request as the proxy lends it to the guest: its request headers and
/// the upstream's response headers.
struct Exchange {
    request: VecHeaderMap,
    response: VecHeaderMap,
}

impl StreamState for Exchange {
    // No per-callback access rules: the cheapest stream state the crate
    // allows, so the comparison does not load the peer with checks of ours.
    fn header_map(
        &mut self,
        _call: Invocation,
        _access: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request),
            MapType::HttpResponseHeaders => Ok(&mut self.response),
            _ => Err(Status::BadArgument),
        }
    }
}

/// Plugins run at log level info, as in Polyhost's benchmark; lines at info
/// and above go to stderr (the benchmark plugins write none per request).
struct Stderr;

impl LogSink for Stderr {
    fn log(&self, _context: LogContext<'_>, level: LogLevel, message: &[u8]) {
        if level as i32 >= LogLevel::Info as i32 {
            eprintln!(
                "proxy-wasm-host-bench: plugin {level:?}: {}",
                String::from_utf8_lossy(message)
            );
        }
    }
}

/// One started guest of one plugin, ready to serve the fixture's request.
struct PeerBench {
    guest: Guest,
    root: ContextId,
    request: Vec<(Vec<u8>, Vec<u8>)>,
    response: Vec<(Vec<u8>, Vec<u8>)>,
}

fn text(e: GuestError) -> String {
    e.to_string()
}

impl PeerBench {
    /// Compiles `wasm`, instantiates it with the crate's default limits and
    /// starts its root context.
    fn new(engine: &Engine, host: &Host, name: &str, wasm: &[u8]) -> Result<Self, String> {
        let module = Module::new(engine, wasm).map_err(|e| format!("compile: {e}"))?;
        let services = VmServices::new(Arc::new(Stderr)).with_log_level(LogLevel::Info);
        let mut guest = Guest::new(host, &module, services, &Limits::default()).map_err(text)?;
        let root = match guest
            .start(PluginConfig::new().with_name(name))
            .map_err(text)?
        {
            Started::Serving(root) => root,
            Started::Refused { callback, .. } => {
                return Err(format!("the plugin refused its start in {callback:?}"));
            }
        };
        Ok(PeerBench {
            guest,
            root,
            request: pairs(fixture_headers::REQUEST_HEADERS),
            response: pairs(fixture_headers::RESPONSE_HEADERS),
        })
    }

    /// Serves one request's full life and gives the request back.
    fn serve(&mut self) -> Result<Exchange, String> {
        let exchange = Exchange {
            request: VecHeaderMap::from(self.request.clone()),
            response: VecHeaderMap::from(self.response.clone()),
        };
        let (request_count, response_count) = (self.request.len(), self.response.len());
        let root = self.root;
        // One scope for the whole life: the fewest crossings of the crate's
        // API a request can take. The crate requires `proxy_on_done` before
        // `proxy_on_log`; Polyhost calls log, done, delete (the same three
        // callbacks).
        let (answer, exchange) = self.guest.with(exchange, |scope| {
            let stream = scope.on_context_create(Some(root))?;
            let request = scope.on_request_headers(stream, request_count as u32, true)?;
            let response = scope.on_response_headers(stream, response_count as u32, true)?;
            let done = scope.on_done(stream)?;
            scope.on_log(stream)?;
            scope.on_delete(stream)?;
            Ok::<_, GuestError>((request, response, done))
        });
        let (request, response, done) = answer.map_err(text)?;
        if request != Action::Continue {
            return Err(format!("on_request_headers answered {request:?}"));
        }
        if response != Action::Continue {
            return Err(format!("on_response_headers answered {response:?}"));
        }
        if !done {
            return Err("on_done answered false".into());
        }
        Ok(exchange)
    }

    /// Serves two requests and checks that each left with its headers as
    /// they came (what `noop` and `bench_headers` promise), as Polyhost's
    /// harness does before timing a cell.
    fn check(&mut self) -> Result<(), String> {
        for _ in 0..2 {
            let exchange = self.serve()?;
            if exchange.request != VecHeaderMap::from(self.request.clone()) {
                return Err(format!(
                    "the request left with other headers: {:?}",
                    exchange.request
                ));
            }
            if exchange.response != VecHeaderMap::from(self.response.clone()) {
                return Err(format!(
                    "the response left with other headers: {:?}",
                    exchange.response
                ));
            }
        }
        Ok(())
    }
}

struct Args {
    quick: bool,
    fixtures: PathBuf,
    plugins: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut parsed = Args {
        quick: false,
        fixtures: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../build/plugins"),
        plugins: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--fixtures" => {
                parsed.fixtures = it.next().ok_or("--fixtures needs a folder")?.into();
            }
            "--plugin" => parsed
                .plugins
                .push(it.next().ok_or("--plugin needs a name")?),
            _ => {
                return Err(format!(
                    "unknown argument {arg}; usage: proxy-wasm-host-bench [--quick] [--fixtures DIR] [--plugin NAME ...]"
                ));
            }
        }
    }
    if parsed.plugins.is_empty() {
        parsed.plugins = vec!["noop".into(), "bench_headers".into()];
    }
    Ok(parsed)
}

/// A JSON string literal (the values here are plugin names and fixed text).
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run() -> Result<String, String> {
    let args = args()?;
    let settings = if args.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    // The crate's defaults: Cranelift, epoch interruption with a 10 ms
    // ticker thread, and (below) `Limits::default()`.
    let engine = Engine::new().map_err(|e| format!("engine: {e}"))?;
    let host = Host::new(&engine).map_err(|e| format!("host: {e}"))?;
    let mut cells = Vec::new();
    for name in &args.plugins {
        let path = args
            .fixtures
            .join("rust-wasip1")
            .join(format!("{name}.wasm"));
        let wasm = std::fs::read(&path)
            .map_err(|e| format!("{}: {e} (run scripts/setup.sh to build it)", path.display()))?;
        let mut bench =
            PeerBench::new(&engine, &host, name, &wasm).map_err(|e| format!("{name}: {e}"))?;
        bench.check().map_err(|e| format!("{name}: {e}"))?;
        let stats = measure(&settings, || {
            bench.serve().map(|e| drop(std::hint::black_box(e)))
        })
        .map_err(|e| format!("{name}: {e}"))?;
        eprintln!(
            "proxy-wasm-host-bench: {name}: p50 {:.3} µs, mean {:.3} µs",
            stats.median_ns / 1e3,
            stats.mean_ns / 1e3
        );
        cells.push(format!(
            "{{\"plugin\":{},\"p50_us\":{},\"mean_us\":{},\"min_us\":{},\"max_us\":{},\"batches\":{},\"iterations\":{}}}",
            json_string(name),
            stats.median_ns / 1e3,
            stats.mean_ns / 1e3,
            stats.min_ns / 1e3,
            stats.max_ns / 1e3,
            stats.batches,
            stats.iterations
        ));
    }
    Ok(format!(
        "{{\"host\":{},\"version\":{},\"quick\":{},\"plugins\":[{}]}}",
        json_string(HOST),
        json_string(HOST_VERSION),
        args.quick,
        cells.join(",")
    ))
}

fn main() {
    match run() {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("proxy-wasm-host-bench: {e}");
            std::process::exit(1);
        }
    }
}
