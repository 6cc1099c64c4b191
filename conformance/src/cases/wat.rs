//! Cases for the hand-written modules in `plugins/wat/`: what no SDK
//! produces (ABI 0.1.0, a plugin without callbacks, broken modules, traps,
//! pointers outside linear memory, the header-map limits, raw WASI calls)
//! and the host calls the SDK fixtures make without an observable result.
//! Each module's header comment says what it records; most add the status
//! a host call returned as a request header `x-result-*` in decimal.

use super::{case, get, header};
use crate::case::{Case, Expect as E, Language as L, PluginSpec as P, Step as S};

/// A case written only as WebAssembly text.
fn wat(
    name: &'static str,
    covers: &'static [&'static str],
    plugins: Vec<P>,
    steps: Vec<S>,
) -> Case {
    Case {
        languages: &[L::Wat],
        ..case(name, covers, plugins, steps)
    }
}

/// A module that must be refused at load time with `kind` and a message
/// containing `needle`.
fn refused(
    name: &'static str,
    covers: &'static [&'static str],
    plugin: &'static str,
    kind: &'static str,
    needle: &'static str,
) -> Case {
    wat(
        name,
        covers,
        vec![P::new(plugin)],
        vec![S::Expect(E::LoadFailed(kind, needle))],
    )
}

/// Every hand-written-module case.
pub(super) fn cases() -> Vec<Case> {
    vec![
        wat(
            "abi/legacy-0.1.0",
            &[
                "proxy_abi_version_0_1_0",
                "proxy_get_configuration",
                "proxy_continue_request",
                "proxy_continue_response",
                "proxy_clear_route_cache",
                "proxy_on_request_headers(ctx, n)",
                "proxy_on_response_headers(ctx, n)",
            ],
            vec![P::new("legacy").config("legacy-config")],
            vec![
                S::Expect(E::Log("info legacy-config")),
                S::NewHttp,
                S::RequestHeaders(get("/"), true),
                S::Expect(E::Pause),
                // 0.1.0: a missing header is an empty value, not NotFound.
                header("x-result-missing-status", "0"),
                header("x-result-missing-len", "0"),
                // 0.1.0 has no configuration buffers.
                header("x-result-config-buffer", "1"),
                header("x-result-continue", "0"),
                header("x-result-clear", "0"),
                S::Expect(E::ResumedRequest),
                S::Expect(E::Event("ClearRouteCache")),
                S::ResponseHeaders(vec![(":status", "200")], true),
                S::Expect(E::Continue),
                S::Expect(E::ResponseHeader("x-result-continue-response", Some("0"))),
                S::Expect(E::Event("Resume(HttpResponse)")),
            ],
        ),
        wat(
            "abi/no-callbacks",
            &["missing callbacks mean continue"],
            vec![P::new("no_callbacks")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), false),
                S::Expect(E::Continue),
                S::RequestBody("request", true),
                S::Expect(E::Continue),
                S::Expect(E::RequestBody("request")),
                S::ResponseHeaders(vec![(":status", "200")], false),
                S::Expect(E::Continue),
                S::ResponseBody("response", true),
                S::Expect(E::ResponseBody("response")),
                S::Finish,
                S::NewTcp,
                S::Expect(E::Continue),
                S::Downstream("down", false),
                S::Expect(E::DownstreamData("down")),
                S::Upstream("up", true),
                S::Expect(E::UpstreamData("up")),
            ],
        ),
        wat(
            "abi/higress-marker",
            &["proxy_abi_version_0_2_100", "proxy_get_log_level"],
            vec![P::new("higress_marker")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), true),
                S::Expect(E::Continue),
                header("x-result-log-level-status", "0"),
                header("x-result-log-level", "0"),
            ],
        ),
        refused(
            "load/invalid-wasm",
            &["module validation"],
            "invalid",
            "InvalidModule",
            "invalid WebAssembly module",
        ),
        refused(
            "load/missing-marker",
            &["ABI version detection"],
            "no_marker",
            "MissingAbiVersion",
            "proxy_abi_version_0_2_1",
        ),
        refused(
            "load/unknown-marker",
            &["ABI version detection"],
            "unknown_marker",
            "MissingAbiVersion",
            "missing or unknown proxy-wasm ABI version",
        ),
        refused(
            "load/missing-allocator",
            &["proxy_on_memory_allocate", "malloc"],
            "no_allocator",
            "MissingAllocator",
            "proxy_on_memory_allocate",
        ),
        refused(
            "load/unknown-import",
            &["import resolution"],
            "unknown_import",
            "UnknownImport",
            "proxy_does_not_exist",
        ),
        refused(
            "load/wrong-import-type",
            &["import resolution"],
            "wrong_import_type",
            "UnknownImport",
            "proxy_log",
        ),
        refused(
            "load/wrong-export-signature",
            &["callback signature check"],
            "wrong_signature",
            "BadExport",
            "proxy_on_request_headers",
        ),
        wat(
            "trap/fails-the-vm",
            &["trap in proxy_on_request_body", "VM replacement"],
            vec![P::new("trap")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), false),
                S::Expect(E::Continue),
                header("x-result-headers", "seen"),
                S::RequestBody("boom", true),
                S::Expect(E::Trapped("proxy_on_request_body")),
                S::Expect(E::VmFailed),
                S::Restart,
                S::NewHttp,
                S::RequestHeaders(get("/"), false),
                S::Expect(E::Continue),
                header("x-result-headers", "seen"),
            ],
        ),
        wat(
            "trap/in-allocator",
            &["trap in proxy_on_memory_allocate"],
            vec![P::new("allocator_trap")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), true),
                S::Expect(E::Trapped("proxy_on_request_headers")),
                S::Expect(E::VmFailed),
            ],
        ),
        wat(
            "memory/out-of-bounds",
            &["InvalidMemoryAccess", "guest pointer checks"],
            vec![P::new("out_of_bounds")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), true),
                S::Expect(E::Continue),
                header("x-result-log-past-end", "6"),
                header("x-result-log-huge-length", "6"),
                header("x-result-time-past-end", "6"),
                header("x-result-value-past-end", "6"),
                header("x-result-key-past-end", "6"),
                header("x-result-in-bounds", "0"),
                // The VM is still healthy.
                S::NewHttp,
                S::RequestHeaders(get("/again"), true),
                S::Expect(E::Continue),
                header("x-result-in-bounds", "0"),
            ],
        ),
        wat(
            "limits/header-maps",
            &[
                "1024 pairs per header map",
                "proxy_set_header_map_pairs(malformed)",
            ],
            vec![P::new("header_limits")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), false),
                S::Expect(E::Continue),
                header("x-result-too-many", "2"),
                header("x-result-truncated", "4"),
                S::Expect(E::RequestHeaderCount(1024)),
                S::ResponseHeaders(vec![(":status", "200")], true),
                S::Expect(E::ResponseHeader("x-result-add-over", Some("2"))),
            ],
        ),
        wat(
            "wasi/preview1",
            &[
                "fd_write",
                "random_get",
                "clock_time_get",
                "args_sizes_get",
                "fd_prestat_get",
                "path_open",
                "wasi_unstable",
            ],
            vec![P::new("wasi")],
            vec![
                S::Expect(E::Log("info to stdout")),
                S::Expect(E::Log("error to stderr")),
                S::NewHttp,
                S::RequestHeaders(get("/"), true),
                header("x-result-random", "0"),
                header("x-result-random-too-big", "28"),
                header("x-result-clock", "0"),
                header("x-result-bad-clock", "28"),
                header("x-result-argc", "0"),
                header("x-result-prestat", "8"),
                header("x-result-path-open", "52"),
                header("x-result-write-bad-fd", "8"),
            ],
        ),
        wat(
            "stream/size-status-close",
            &[
                "proxy_get_header_map_size",
                "proxy_get_buffer_status",
                "proxy_close_stream",
            ],
            vec![P::new("host_calls")],
            vec![
                S::NewHttp,
                S::RequestHeaders(get("/"), false),
                S::Expect(E::Continue),
                header("x-result-map-size-status", "0"),
                // 4 (pair count) + 4 pairs x 8 (two lengths) + keys and
                // values with their NULs: 12 + 8 + 23 + 14.
                header("x-result-map-size", "93"),
                header("x-result-bad-map", "2"),
                header("x-result-close-response", "0"),
                header("x-result-close-bad", "2"),
                S::Expect(E::Event("Close(HttpResponse)")),
                S::RequestBody("seventeen bytes!!", true),
                S::Expect(E::Continue),
                header("x-result-body-status", "0"),
                header("x-result-body-len", "17"),
                header("x-result-body-flags", "0"),
            ],
        ),
        wat(
            "lifecycle/deferred-done",
            &[
                "proxy_on_done returning false",
                "proxy_done",
                "proxy_on_delete",
            ],
            vec![P::new("deferred_done")],
            vec![
                // Outside a shutdown there is nothing to finish.
                S::Ticks(1),
                S::Expect(E::Log("info proxy_done: NotFound")),
                S::Shutdown,
                S::Expect(E::Log("info on_done: deferring")),
                S::Expect(E::NoLog("info on_delete 1")),
                S::Expect(E::ShutDown(false)),
                // The next tick calls proxy_done; proxy_on_delete follows.
                S::Ticks(1),
                S::Expect(E::Log("info proxy_done: Ok")),
                S::Expect(E::Log("info on_delete 1")),
                S::Expect(E::ShutDown(true)),
            ],
        ),
    ]
}
