//! What a conformance case is made of.

use serde::Serialize;

/// A plugin language (and build flavour) whose fixtures the suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Language {
    /// Rust SDK, wasm32-wasip1.
    RustWasip1,
    /// Rust SDK, wasm32-unknown-unknown.
    RustUnknown,
    /// Go, proxy-wasm-go-sdk.
    Go,
    /// Go, Higress's wasm-go framework.
    HigressGo,
    /// AssemblyScript, @solo-io/proxy-runtime.
    AssemblyScript,
    /// C++ against Polyhost's own ABI header (no SDK).
    Cpp,
    /// Hand-written WebAssembly text (`plugins/wat/`), for what no SDK
    /// produces: legacy calls, broken modules, traps, bad pointers.
    Wat,
}

impl Language {
    /// Every language, in report order.
    pub const ALL: [Language; 7] = [
        Language::RustWasip1,
        Language::RustUnknown,
        Language::Go,
        Language::HigressGo,
        Language::AssemblyScript,
        Language::Cpp,
        Language::Wat,
    ];

    /// The languages whose plugins are written with an SDK (or, for C++,
    /// an ABI header): the ones the SDK cases are written for.
    pub const SDKS: &'static [Language] = &[
        Language::RustWasip1,
        Language::RustUnknown,
        Language::Go,
        Language::HigressGo,
        Language::AssemblyScript,
        Language::Cpp,
    ];

    /// The folder under `build/plugins/` holding its fixtures.
    pub fn dir(self) -> &'static str {
        match self {
            Language::RustWasip1 => "rust-wasip1",
            Language::RustUnknown => "rust-unknown",
            Language::Go => "go",
            Language::HigressGo => "higress-go",
            Language::AssemblyScript => "assemblyscript",
            Language::Cpp => "cpp",
            Language::Wat => "wat",
        }
    }

    /// The label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Language::RustWasip1 => "Rust (wasip1)",
            Language::RustUnknown => "Rust (unknown)",
            Language::Go => "Go",
            Language::HigressGo => "Go (Higress)",
            Language::AssemblyScript => "AssemblyScript",
            Language::Cpp => "C++ (ABI header)",
            Language::Wat => "WebAssembly text",
        }
    }
}

/// One plugin a case loads.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Fixture name (`build/plugins/<language>/<plugin>.wasm`).
    pub plugin: &'static str,
    /// VM id.
    pub vm_id: &'static str,
    /// Plugin configuration.
    pub configuration: &'static str,
    /// VM configuration.
    pub vm_configuration: &'static str,
}

impl PluginSpec {
    /// The plugin with empty settings.
    pub const fn new(plugin: &'static str) -> Self {
        PluginSpec {
            plugin,
            vm_id: "",
            configuration: "",
            vm_configuration: "",
        }
    }

    /// With a VM id.
    pub const fn vm_id(mut self, vm_id: &'static str) -> Self {
        self.vm_id = vm_id;
        self
    }

    /// With a plugin configuration.
    pub const fn config(mut self, configuration: &'static str) -> Self {
        self.configuration = configuration;
        self
    }

    /// With a VM configuration.
    pub const fn vm_config(mut self, vm_configuration: &'static str) -> Self {
        self.vm_configuration = vm_configuration;
        self
    }
}

/// An action on the host, applied to the case's current VM and stream.
#[derive(Debug, Clone)]
pub enum Step {
    /// Switch to the case's `n`-th plugin (0 is the first).
    UseVm(usize),
    /// Start a new HTTP stream (it becomes current).
    NewHttp,
    /// Request headers (name, value pairs) with end-of-stream.
    RequestHeaders(Vec<(&'static str, &'static str)>, bool),
    /// A request body chunk with end-of-stream.
    RequestBody(&'static str, bool),
    /// Request trailers.
    RequestTrailers(Vec<(&'static str, &'static str)>),
    /// Response headers with end-of-stream.
    ResponseHeaders(Vec<(&'static str, &'static str)>, bool),
    /// A response body chunk with end-of-stream.
    ResponseBody(&'static str, bool),
    /// Response trailers.
    ResponseTrailers(Vec<(&'static str, &'static str)>),
    /// `on_log`, `on_done`, `on_delete`.
    Finish,
    /// Start a new TCP connection (it becomes current).
    NewTcp,
    /// Bytes from downstream with end-of-stream.
    Downstream(&'static str, bool),
    /// Bytes from upstream with end-of-stream.
    Upstream(&'static str, bool),
    /// Downstream closed by peer type 0/1/2.
    DownstreamClose(u8),
    /// Upstream closed by peer type 0/1/2.
    UpstreamClose(u8),
    /// Answer the oldest queued HTTP callout with status, headers and body.
    AnswerHttp(
        &'static str,
        Vec<(&'static str, &'static str)>,
        &'static str,
    ),
    /// Answer the oldest queued HTTP callout with a timeout.
    TimeoutHttp,
    /// Answer the oldest queued unary gRPC call with a message.
    AnswerGrpc(&'static str),
    /// Fail the oldest queued unary gRPC call with a status.
    FailGrpc(u32),
    /// On the oldest open gRPC stream: initial metadata, messages, trailing
    /// metadata, then close with status.
    GrpcStreamReply {
        /// Initial metadata pairs.
        initial: Vec<(&'static str, &'static str)>,
        /// Messages.
        messages: Vec<&'static str>,
        /// Trailing metadata pairs.
        trailing: Vec<(&'static str, &'static str)>,
        /// Close status.
        status: u32,
    },
    /// Deliver pending `proxy_on_queue_ready` calls.
    DeliverQueues,
    /// Fire `n` due ticks.
    Ticks(u32),
    /// Call the plugin's `proxy_on_foreign_function(id, args)`.
    Foreign(u32, &'static str),
    /// Replace the current VM with a fresh one from the same plugin (after a
    /// trap).
    Restart,
    /// Shut the current VM's root context down (`Vm::shutdown`:
    /// `proxy_on_done`, then `proxy_on_delete` now or after `proxy_done`).
    Shutdown,
    /// Check something.
    Expect(Expect),
}

/// An observable result.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The last stream callback continued.
    Continue,
    /// The last stream callback paused.
    Pause,
    /// The last stream callback answered locally with status and body.
    LocalResponse(u32, &'static str),
    /// The local response carried this header.
    LocalResponseHeader(&'static str, &'static str),
    /// The local response carried this gRPC status.
    LocalGrpcStatus(u32),
    /// A request header has this value (`None`: absent).
    RequestHeader(&'static str, Option<&'static str>),
    /// The request header's value parses as a number within 60 s of now
    /// (nanoseconds since the epoch).
    RequestHeaderIsNow(&'static str),
    /// A request header has these raw bytes.
    RequestHeaderBytes(&'static str, &'static [u8]),
    /// The request has this many header entries.
    RequestHeaderCount(usize),
    /// A response header has this value.
    ResponseHeader(&'static str, Option<&'static str>),
    /// A request trailer has this value.
    RequestTrailer(&'static str, Option<&'static str>),
    /// A response trailer has this value.
    ResponseTrailer(&'static str, Option<&'static str>),
    /// The buffered request body (taken, as the embedder forwards it).
    RequestBody(&'static str),
    /// The buffered response body (taken).
    ResponseBody(&'static str),
    /// The buffered downstream data (taken).
    DownstreamData(&'static str),
    /// The buffered upstream data (taken).
    UpstreamData(&'static str),
    /// The plugin resumed the request.
    ResumedRequest,
    /// The current stream received this event from the plugin, in its
    /// `Debug` form: `Close(HttpResponse)`, `ClearRouteCache`, ...
    Event(&'static str),
    /// The plugin logged exactly this line (`level message`) since the
    /// case started.
    Log(&'static str),
    /// The plugin logged a line ending with this text at this level.
    LogEndsWith(&'static str, &'static str),
    /// The plugin has not logged this line (`level message`) since the case
    /// started.
    NoLog(&'static str),
    /// Counter value.
    Counter(&'static str, u64),
    /// Gauge value.
    Gauge(&'static str, i64),
    /// A histogram holding exactly these samples (in any order).
    Histogram(&'static str, Vec<u64>),
    /// Shared data value for (vm id, key).
    SharedData(&'static str, &'static str, &'static str),
    /// An HTTP callout is queued to this upstream with this `:path` and body
    /// and timeout in ms.
    HttpCallout(&'static str, &'static str, &'static str, u64),
    /// A gRPC call is queued for service/method with this message.
    GrpcCallout(&'static str, &'static str, &'static str),
    /// No callout is queued.
    NoCallout,
    /// Starting the plugin failed.
    StartFailed,
    /// Loading the plugin failed with this error kind (its `Debug` name,
    /// e.g. `MissingAbiVersion`) and a message that contains the text and
    /// names the plugin.
    LoadFailed(&'static str, &'static str),
    /// The last step trapped in this callback.
    Trapped(&'static str),
    /// The current VM trapped earlier and refuses new work.
    VmFailed,
    /// Whether the current VM's root context has been deleted by a
    /// [`Step::Shutdown`].
    ShutDown(bool),
}

/// A conformance case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short unique name (`area/what`).
    pub name: &'static str,
    /// The host functions and callbacks it exercises.
    pub covers: &'static [&'static str],
    /// Plugins to load (the first is current at the start).
    pub plugins: Vec<PluginSpec>,
    /// Actions and checks, in order.
    pub steps: Vec<Step>,
    /// Request headers whose values differ between runs (times), left out
    /// of the differential transcript.
    pub volatile: &'static [&'static str],
    /// The languages the case is written for: [`Language::SDKS`] for the
    /// cases every SDK plugin implements, `[Language::Wat]` for the
    /// hand-written modules.
    pub languages: &'static [Language],
    /// Languages whose SDK cannot express this case, with the reason.
    pub not_expressible: &'static [(Language, &'static str)],
}
