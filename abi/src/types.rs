//! The enums and status codes of the proxy-wasm ABI (see `shared/ABI.md`).

/// The status every host function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, context, queue or export does not exist.
    NotFound = 1,
    /// An argument is out of range or of the wrong kind.
    BadArgument = 2,
    /// Data could not be serialized.
    SerializationFailure = 3,
    /// Data from the guest could not be parsed.
    ParseFailure = 4,
    /// A guest pointer or length is out of bounds.
    InvalidMemoryAccess = 6,
    /// Nothing to return (empty queue).
    Empty = 7,
    /// Compare-and-swap saw a newer version.
    CasMismatch = 8,
    /// The host failed.
    InternalFailure = 10,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    /// The raw value returned to the guest.
    #[inline]
    pub fn raw(self) -> i32 {
        self as i32
    }
}

/// Plugin log level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Trace (0).
    Trace = 0,
    /// Debug (1).
    Debug = 1,
    /// Info (2).
    Info = 2,
    /// Warn (3).
    Warn = 3,
    /// Error (4).
    Error = 4,
    /// Critical (5).
    Critical = 5,
}

impl LogLevel {
    /// Parses the raw value a plugin passes.
    pub fn from_raw(v: i32) -> Option<Self> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            other => return Err(format!("unknown log level `{other}`")),
        })
    }
}

/// Which header map a call refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    /// Request headers (0).
    RequestHeaders,
    /// Request trailers (1).
    RequestTrailers,
    /// Response headers (2).
    ResponseHeaders,
    /// Response trailers (3).
    ResponseTrailers,
    /// gRPC initial metadata received (4).
    GrpcReceiveInitialMetadata,
    /// gRPC trailing metadata received (5).
    GrpcReceiveTrailingMetadata,
    /// HTTP callout response headers (6).
    HttpCallResponseHeaders,
    /// HTTP callout response trailers (7).
    HttpCallResponseTrailers,
}

impl MapType {
    /// Parses the raw value.
    pub fn from_raw(v: i32) -> Option<Self> {
        Some(match v {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// Which buffer a call refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    /// HTTP request body (0).
    HttpRequestBody,
    /// HTTP response body (1).
    HttpResponseBody,
    /// TCP data from downstream (2).
    DownstreamData,
    /// TCP data from upstream (3).
    UpstreamData,
    /// HTTP callout response body (4).
    HttpCallResponseBody,
    /// gRPC message received (5).
    GrpcReceiveBuffer,
    /// VM configuration (6).
    VmConfiguration,
    /// Plugin configuration (7).
    PluginConfiguration,
    /// Foreign function arguments (8).
    CallData,
}

impl BufferType {
    /// Parses the raw value.
    pub fn from_raw(v: i32) -> Option<Self> {
        Some(match v {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }
}

/// Which direction of a stream a call refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// HTTP request (0).
    HttpRequest,
    /// HTTP response (1).
    HttpResponse,
    /// TCP downstream (2).
    Downstream,
    /// TCP upstream (3).
    Upstream,
}

impl StreamType {
    /// Parses the raw value.
    pub fn from_raw(v: i32) -> Option<Self> {
        Some(match v {
            0 => StreamType::HttpRequest,
            1 => StreamType::HttpResponse,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// Metric kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic counter (0).
    Counter,
    /// Gauge (1).
    Gauge,
    /// Histogram (2).
    Histogram,
}

impl MetricType {
    /// Parses the raw value.
    pub fn from_raw(v: i32) -> Option<Self> {
        Some(match v {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Histogram,
            _ => return None,
        })
    }
}

/// Who closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// Unknown (0).
    Unknown = 0,
    /// This proxy (1).
    Local = 1,
    /// The remote peer (2).
    Remote = 2,
}

/// The proxy-wasm ABI version a plugin was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AbiVersion {
    /// 0.1.0 (legacy).
    V0_1_0,
    /// 0.2.0.
    V0_2_0,
    /// 0.2.1 (also Higress's `0_2_100`).
    V0_2_1,
}

impl AbiVersion {
    /// Detects the version from a module's export names; the first known
    /// marker wins.
    pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        exports.into_iter().find_map(|name| match name {
            "proxy_abi_version_0_1_0" => Some(AbiVersion::V0_1_0),
            "proxy_abi_version_0_2_0" => Some(AbiVersion::V0_2_0),
            "proxy_abi_version_0_2_1" | "proxy_abi_version_0_2_100" => Some(AbiVersion::V0_2_1),
            _ => None,
        })
    }

    /// Dotted form, e.g. `0.2.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }
}

/// What a plugin's stream callback asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Go on with the stream.
    Continue,
    /// Stop iteration until the plugin resumes the stream (for bodies: and
    /// buffer the data). Values 1..=4 from the C++ SDK's extended statuses
    /// are all forms of stopping.
    Pause,
}

impl Action {
    /// Maps a callback's return value (0 continues; anything else stops).
    pub fn from_raw(v: i32) -> Self {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}
