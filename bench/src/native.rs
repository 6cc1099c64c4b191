//! The native baseline: each workload as plain Rust on the host's own
//! [`HeaderMap`] and `Vec<u8>`, with no Wasm and no scripting runtime.
//!
//! It does what the plugins do, the same way (header names formatted per
//! request, a byte-wise scan of the body, a callout queued on the same
//! [`CalloutQueue`] and answered), and starts from the same copies of the
//! request that the Wasm path hands to a VM, so the difference to a plugin is
//! the cost of running the work inside a sandbox.

use crate::workload::{Fixture, Served, Workload};
use polyhost::HeaderMap;
use polyhost::services::{CalloutDispatcher, CalloutQueue, CalloutRequest, HttpCallout};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// The native implementation of every workload.
pub struct NativeBench {
    workload: Workload,
    fixture: Arc<Fixture>,
    callouts: CalloutQueue,
    plugin: Arc<str>,
    next_token: u32,
}

impl NativeBench {
    /// Prepares `workload` over `fixture`.
    pub fn new(workload: Workload, fixture: Arc<Fixture>) -> Self {
        NativeBench {
            workload,
            fixture,
            callouts: CalloutQueue::default(),
            plugin: "native".into(),
            next_token: 1,
        }
    }

    /// Serves one request from start to end.
    pub fn serve(&mut self) -> Served {
        let mut served = Served {
            request_headers: self.fixture.request_headers.clone(),
            ..Served::default()
        };
        match self.workload {
            Workload::Noop => {}
            Workload::Headers => headers_work(&mut served.request_headers),
            Workload::Body => {
                served.request_body = self.fixture.body.clone();
                replace_needles(&mut served.request_body);
            }
            Workload::Callout => self.callout(&mut served),
        }
        served.response_headers = self.fixture.response_headers.clone();
        served
    }

    fn callout(&mut self, served: &mut Served) {
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        let headers: HeaderMap = [(":method", "GET"), (":path", "/"), (":authority", "bench")]
            .into_iter()
            .collect();
        let request = CalloutRequest::Http(HttpCallout {
            plugin: self.plugin.clone(),
            token,
            upstream: "bench-cluster".into(),
            headers,
            body: Vec::new(),
            trailers: HeaderMap::new(),
            timeout: Duration::from_millis(1000),
        });
        if self.callouts.dispatch(request).is_err() {
            return;
        }
        for call in self.callouts.take() {
            let CalloutRequest::Http(call) = call else {
                continue;
            };
            served.callouts += 1;
            black_box(call.token);
            let answer = self.fixture.callout_response.clone();
            let status = answer.get_str(":status").unwrap_or("none");
            served.request_headers.add("x-callout-status", status);
            served.resumed = true;
        }
    }
}

/// The headers workload: 20 adds, 20 gets, 20 removes, with names formatted
/// per request as the plugins do.
pub fn headers_work(headers: &mut HeaderMap) {
    for i in 0..20 {
        headers.add(format!("fake_key_{i}"), format!("fake_value_{i}"));
    }
    for i in 0..20 {
        black_box(headers.get(format!("fake_key_{i}")));
    }
    for i in 0..20 {
        headers.remove(format!("fake_key_{i}"));
    }
}

/// The body workload: every `needle` becomes `NEEDLE`, scanning byte by byte
/// as the plugins do.
pub fn replace_needles(body: &mut [u8]) {
    const NEEDLE: &[u8] = b"needle";
    let mut i = 0;
    while i + NEEDLE.len() <= body.len() {
        if &body[i..i + NEEDLE.len()] == NEEDLE {
            body[i..i + NEEDLE.len()].copy_from_slice(b"NEEDLE");
            i += NEEDLE.len();
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_passes_its_check() {
        let fixture = Arc::new(Fixture::default());
        for w in Workload::ALL {
            let mut bench = NativeBench::new(w, fixture.clone());
            let served = bench.serve();
            assert_eq!(w.check(&fixture, &served), Ok(()), "{w:?}");
        }
    }
}
