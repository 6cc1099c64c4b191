//! The headers of the benchmark's request: a typical API request and its
//! upstream answer. They live in a file of their own, with no dependencies,
//! because the side-by-side benchmark against proxy-wasm-host (`bench/peer`,
//! a crate outside this workspace) compiles this same file, so both hosts
//! serve exactly the same headers.

/// Request headers of [`crate::workload::Fixture`], in order.
pub const REQUEST_HEADERS: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/api/v1/items?id=42"),
    (":scheme", "https"),
    (":authority", "api.example.com"),
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("content-type", "text/plain"),
    ("content-length", "16384"),
    ("x-request-id", "6f1d8a0e-2c4b-4f7e-9a51-3b2e8c9d0f12"),
    ("x-forwarded-for", "203.0.113.7"),
];

/// Upstream response headers of [`crate::workload::Fixture`], in order.
pub const RESPONSE_HEADERS: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "application/json"),
    ("content-length", "2"),
    ("server", "upstream"),
    ("date", "Sat, 22 Nov 2025 00:00:00 GMT"),
];
