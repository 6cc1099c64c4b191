//! What is measured: plugin languages, workloads, the request every
//! implementation serves, and the check each result must pass before it is
//! timed.

use crate::fixture_headers::{REQUEST_HEADERS, RESPONSE_HEADERS};
use polyhost::HeaderMap;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A plugin language whose fixtures are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Language {
    /// Rust SDK (`proxy-wasm` crate), wasm32-wasip1.
    Rust,
    /// Go, proxy-wasm-go-sdk (upstream Go, wasip1 reactor).
    Go,
    /// AssemblyScript, `@solo-io/proxy-runtime`.
    AssemblyScript,
    /// C++ against Polyhost's own ABI header (no SDK).
    Cpp,
}

impl Language {
    /// Every language, in report order.
    pub const ALL: [Language; 4] = [
        Language::Rust,
        Language::Go,
        Language::AssemblyScript,
        Language::Cpp,
    ];

    /// The folder under `build/plugins/` holding its fixtures.
    pub fn dir(self) -> &'static str {
        match self {
            Language::Rust => "rust-wasip1",
            Language::Go => "go",
            Language::AssemblyScript => "assemblyscript",
            Language::Cpp => "cpp",
        }
    }

    /// The label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Go => "Go",
            Language::AssemblyScript => "AssemblyScript",
            Language::Cpp => "C++ (ABI header)",
        }
    }

    /// A short name for benchmark ids and file names.
    pub fn id(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Go => "go",
            Language::AssemblyScript => "assemblyscript",
            Language::Cpp => "cpp",
        }
    }

    /// The path of `plugin` for this language under `fixtures` (the
    /// `build/plugins` folder).
    pub fn fixture(self, fixtures: &Path, plugin: &str) -> PathBuf {
        fixtures.join(self.dir()).join(format!("{plugin}.wasm"))
    }
}

/// One unit of per-request work, done the same way in every language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Workload {
    /// Nothing: the cost of a request's callbacks alone (the floor).
    Noop,
    /// 20 header adds, 20 gets and 20 removes in `on_request_headers`.
    Headers,
    /// A buffered 16 KiB request body with every `needle` made `NEEDLE`.
    Body,
    /// One HTTP callout, answered by the host, then the request resumes.
    Callout,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 4] = [
        Workload::Noop,
        Workload::Headers,
        Workload::Body,
        Workload::Callout,
    ];

    /// The fixture plugin that does this work (`build/plugins/<lang>/<name>.wasm`).
    pub fn plugin(self) -> &'static str {
        match self {
            Workload::Noop => "noop",
            Workload::Headers => "bench_headers",
            Workload::Body => "bench_body",
            Workload::Callout => "bench_callout",
        }
    }

    /// A short name for benchmark ids.
    pub fn id(self) -> &'static str {
        match self {
            Workload::Noop => "noop",
            Workload::Headers => "headers",
            Workload::Body => "body",
            Workload::Callout => "callout",
        }
    }

    /// One line saying what the workload does, for the report.
    pub fn description(self) -> &'static str {
        match self {
            Workload::Noop => {
                "no work: stream create, request and response headers, log/done/delete"
            }
            Workload::Headers => {
                "20 header adds, 20 gets, 20 removes on the request headers (60 host calls)"
            }
            Workload::Body => {
                "16 KiB request body buffered, every `needle` replaced by `NEEDLE`, written back"
            }
            Workload::Callout => {
                "one HTTP callout answered by the host with `:status 200`, then the request resumes"
            }
        }
    }

    /// Whether a request of this workload carries a body.
    pub fn has_body(self) -> bool {
        self == Workload::Body
    }

    /// Checks what an implementation did with [`Fixture`]'s request.
    ///
    /// # Errors
    /// A sentence saying what differs from the workload's contract.
    pub fn check(self, fixture: &Fixture, served: &Served) -> Result<(), String> {
        let expected_request = match self {
            Workload::Callout => {
                let mut h = fixture.request_headers.clone();
                h.add("x-callout-status", "200");
                h
            }
            _ => fixture.request_headers.clone(),
        };
        if served.request_headers != expected_request {
            return Err(format!(
                "request left with headers {:?}, expected {:?}",
                served.request_headers.to_string_pairs(),
                expected_request.to_string_pairs()
            ));
        }
        if served.response_headers != fixture.response_headers {
            return Err(format!(
                "response left with headers {:?}, expected them unchanged",
                served.response_headers.to_string_pairs()
            ));
        }
        if self.has_body() && served.request_body != fixture.expected_body {
            let left = served
                .request_body
                .windows(NEEDLE.len())
                .filter(|w| *w == NEEDLE)
                .count();
            return Err(format!(
                "request body differs from the expected one ({} bytes, {left} `needle` left)",
                served.request_body.len()
            ));
        }
        let callouts = usize::from(self == Workload::Callout);
        if served.callouts != callouts {
            return Err(format!(
                "{} HTTP callouts made, expected {callouts}",
                served.callouts
            ));
        }
        if self == Workload::Callout && !served.resumed {
            return Err("the request was not resumed after the callout answer".into());
        }
        Ok(())
    }
}

const NEEDLE: &[u8] = b"needle";

/// What one request looked like after an implementation served it.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The request headers as they go upstream.
    pub request_headers: HeaderMap,
    /// The request body as it goes upstream (empty without a body).
    pub request_body: Vec<u8>,
    /// The response headers as they go downstream.
    pub response_headers: HeaderMap,
    /// HTTP callouts the implementation made.
    pub callouts: usize,
    /// Whether it resumed the request after the callout answer.
    pub resumed: bool,
}

/// The request (and upstream answers) every implementation serves.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Request headers of a typical API request.
    pub request_headers: HeaderMap,
    /// The 16 KiB request body of [`Workload::Body`].
    pub body: Vec<u8>,
    /// [`Fixture::body`] with every `needle` made `NEEDLE`, built
    /// independently of any implementation under test.
    pub expected_body: Vec<u8>,
    /// Upstream response headers.
    pub response_headers: HeaderMap,
    /// The callout's answer.
    pub callout_response: HeaderMap,
}

/// Size of the request body of [`Workload::Body`].
pub const BODY_BYTES: usize = 16 * 1024;

impl Default for Fixture {
    fn default() -> Self {
        let request_headers = REQUEST_HEADERS.iter().copied().collect();
        let response_headers = RESPONSE_HEADERS.iter().copied().collect();
        let callout_response = [(":status", "200"), ("content-length", "0")]
            .into_iter()
            .collect();
        // 64-byte lines with one needle each: 256 replacements in 16 KiB.
        let line = |needle: &str| {
            format!("haystack straw hay {needle} chaff husk stalk bale grass seed oats\n")
        };
        assert_eq!(line("needle").len(), 64);
        let body = line("needle").repeat(BODY_BYTES / 64).into_bytes();
        let expected_body = line("NEEDLE").repeat(BODY_BYTES / 64).into_bytes();
        Fixture {
            request_headers,
            body,
            expected_body,
            response_headers,
            callout_response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_16_kib_with_needles() {
        let f = Fixture::default();
        assert_eq!(f.body.len(), BODY_BYTES);
        assert_eq!(f.expected_body.len(), BODY_BYTES);
        assert_eq!(f.body.windows(6).filter(|w| *w == NEEDLE).count(), 256);
        assert!(!f.expected_body.windows(6).any(|w| w == NEEDLE));
    }

    #[test]
    fn check_rejects_unchanged_body() {
        let f = Fixture::default();
        let served = Served {
            request_headers: f.request_headers.clone(),
            request_body: f.body.clone(),
            response_headers: f.response_headers.clone(),
            ..Served::default()
        };
        let err = Workload::Body.check(&f, &served).unwrap_err();
        assert!(err.contains("256 `needle` left"), "{err}");
        assert!(Workload::Headers.check(&f, &served).is_ok());
    }
}
