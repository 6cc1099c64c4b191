//! HTTP and gRPC callouts: what leaves the plugin and what comes back.

use crate::harness::{RUST_TARGETS, Services, engine_tests, fixture, request, start};
use polyhost::services::CalloutRequest;
use polyhost::{
    ContextId, Decision, Engine, GrpcResult, HeaderMap, HttpCallResult, PluginConfig, StreamEvent,
    StreamType, Vm,
};
use std::time::Duration;

engine_tests!(
    http_call_round_trip,
    http_call_timeout_answers_503,
    http_call_to_refused_upstream,
    grpc_unary_call_success_and_failure,
    grpc_stream_messages_and_close,
    grpc_cancel_forgets_the_token,
    a_finished_stream_cancels_its_callouts,
    unknown_token_is_an_error,
);

fn probe_vm<E: Engine>(engine: &E, target: &str, services: &Services) -> Vm<E> {
    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        ..PluginConfig::named("abi_probe")
    };
    start(engine, &fixture(target, "abi_probe"), config, services).1
}

fn send_case<E: Engine>(vm: &mut Vm<E>, case: &str) -> (ContextId, Decision) {
    let id = vm.create_http_stream().unwrap();
    let mut h = request("/api");
    h.add("x-case", case);
    let d = vm.on_request_headers(id, h, false).unwrap();
    (id, d)
}

fn http_call_round_trip<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let mut vm = probe_vm(&engine, target, &services);
        let (id, decision) = send_case(&mut vm, "http-call");
        assert_eq!(decision, Decision::Pause);
        let calls = services.callouts.take();
        let [CalloutRequest::Http(call)] = calls.as_slice() else {
            panic!("{calls:?}")
        };
        assert_eq!(call.upstream, "auth-cluster");
        assert_eq!(call.headers.get_str(":path"), Some("/check"));
        assert_eq!(call.headers.get_str("x-from"), Some("probe"));
        assert_eq!(call.body, b"ping");
        assert_eq!(call.timeout, Duration::from_millis(500));
        assert_eq!(&*call.plugin, "abi_probe");
        let response = HttpCallResult::Response {
            headers: [(":status", "200"), ("x-auth", "ok")].into_iter().collect(),
            body: b"allowed".to_vec(),
            trailers: HeaderMap::new(),
        };
        vm.deliver_http_response(call.token, response).unwrap();
        assert_eq!(
            vm.take_events(id),
            [StreamEvent::Resume(StreamType::HttpRequest)]
        );
        let h = &vm.stream(id).unwrap().request_headers;
        assert_eq!(h.get_str("x-result-status"), Some("200"), "{target}");
        assert_eq!(h.get_str("x-result-body"), Some("allowed"));
        assert_eq!(h.get_str("x-result-callout-header"), Some("ok"));
    }
}

fn http_call_timeout_answers_503<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let (id, _) = send_case(&mut vm, "http-call");
    let [CalloutRequest::Http(call)] =
        <[CalloutRequest; 1]>::try_from(services.callouts.take()).unwrap()
    else {
        panic!()
    };
    vm.deliver_http_response(call.token, HttpCallResult::Timeout)
        .unwrap();
    let local = vm
        .stream(id)
        .unwrap()
        .local_response
        .clone()
        .expect("local response");
    assert_eq!(
        (local.status, local.body.as_slice()),
        (503, &b"callout failed"[..])
    );
    assert!(vm.take_events(id).is_empty());
}

fn http_call_to_refused_upstream<E: Engine>(engine: E) {
    let services = Services::new();
    services.callouts.refuse_upstream("auth-cluster");
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let (_, decision) = send_case(&mut vm, "http-call");
    let Decision::LocalResponse(r) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(
        (r.status, r.body.as_slice()),
        (503, &b"dispatch failed: BadArgument"[..])
    );
    assert!(services.callouts.take().is_empty());
}

fn grpc_unary_call_success_and_failure<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-unknown", &services);
    for (result, status, body) in [
        (GrpcResult::Ok(b"resp".to_vec()), "0", "resp"),
        (
            GrpcResult::Err {
                status: 14,
                message: "unavailable".into(),
            },
            "14",
            "none",
        ),
    ] {
        let (id, decision) = send_case(&mut vm, "grpc-call");
        assert_eq!(decision, Decision::Pause);
        let [CalloutRequest::Grpc(call)] =
            <[CalloutRequest; 1]>::try_from(services.callouts.take()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (call.service.as_str(), call.method.as_str()),
            ("pkg.Service", "Method")
        );
        assert_eq!(call.upstream, b"grpc-cluster");
        assert_eq!(call.initial_metadata.get_str("x-md"), Some("1"));
        assert_eq!(call.message, b"req");
        vm.deliver_grpc_response(call.token, result).unwrap();
        let h = &vm.stream(id).unwrap().request_headers;
        assert_eq!(h.get_str("x-result-grpc-status"), Some(status));
        assert_eq!(h.get_str("x-result-grpc-body"), Some(body));
        assert_eq!(
            vm.take_events(id),
            [StreamEvent::Resume(StreamType::HttpRequest)]
        );
    }
}

fn grpc_stream_messages_and_close<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let (id, decision) = send_case(&mut vm, "grpc-stream");
    assert_eq!(decision, Decision::Pause);
    let calls = services.callouts.take();
    let [
        CalloutRequest::GrpcStream(open),
        CalloutRequest::GrpcSend {
            token,
            message,
            end_stream,
            ..
        },
    ] = calls.as_slice()
    else {
        panic!("{calls:?}")
    };
    assert_eq!(open.method, "Stream");
    assert_eq!(
        (*token, message.as_slice(), *end_stream),
        (open.token, &b"m1"[..], false)
    );
    let t = open.token;
    vm.deliver_grpc_initial_metadata(t, [("a", "1")].into_iter().collect())
        .unwrap();
    vm.deliver_grpc_message(t, b"r1".to_vec()).unwrap();
    vm.deliver_grpc_message(t, b"r2".to_vec()).unwrap();
    vm.deliver_grpc_trailing_metadata(t, [("b", "1"), ("c", "2")].into_iter().collect())
        .unwrap();
    vm.deliver_grpc_close(t, 0, "").unwrap();
    let h = &vm.stream(id).unwrap().request_headers;
    assert_eq!(h.get_str("x-result-stream"), Some("r1r2"));
    assert_eq!(h.get_str("x-result-stream-status"), Some("0"));
    assert_eq!(h.get_str("x-result-stream-initial"), Some("1"));
    assert_eq!(h.get_str("x-result-stream-trailing"), Some("2"));
    assert!(
        vm.deliver_grpc_message(t, b"late".to_vec()).is_err(),
        "closed stream token must be gone"
    );
}

fn grpc_cancel_forgets_the_token<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let (id, decision) = send_case(&mut vm, "grpc-cancel");
    assert_eq!(decision, Decision::Continue);
    let h = &vm.stream(id).unwrap().request_headers;
    assert_eq!(h.get_str("x-result-cancel"), Some("ok"));
    assert_eq!(h.get_str("x-result-cancel-again"), Some("NotFound"));
    let calls = services.callouts.take();
    assert!(
        matches!(calls.last(), Some(CalloutRequest::GrpcCancel { .. })),
        "{calls:?}"
    );
}

/// As Envoy's context does when it is destroyed, a stream that ends with
/// callouts under way cancels them: the dispatcher hears of each, and an
/// answer that comes anyway finds no owner.
fn a_finished_stream_cancels_its_callouts<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let (http_stream, _) = send_case(&mut vm, "http-call");
    let (grpc_stream, _) = send_case(&mut vm, "grpc-stream");
    let calls = services.callouts.take();
    let [
        CalloutRequest::Http(call),
        CalloutRequest::GrpcStream(open),
        CalloutRequest::GrpcSend { .. },
    ] = calls.as_slice()
    else {
        panic!("{calls:?}")
    };
    let (http_token, grpc_token) = (call.token, open.token);

    vm.finish_stream(grpc_stream).unwrap();
    let calls = services.callouts.take();
    let [CalloutRequest::GrpcCancel { token, plugin }] = calls.as_slice() else {
        panic!("{calls:?}")
    };
    assert_eq!((*token, &**plugin), (grpc_token, "abi_probe"));
    vm.finish_stream(http_stream).unwrap();
    let calls = services.callouts.take();
    let [CalloutRequest::HttpCancel { token, .. }] = calls.as_slice() else {
        panic!("{calls:?}")
    };
    assert_eq!(*token, http_token);

    let late = vm
        .deliver_http_response(http_token, HttpCallResult::Failure)
        .unwrap_err();
    assert_eq!(late.kind(), polyhost::PluginErrorKind::UnknownContext);
    assert!(
        vm.deliver_grpc_message(grpc_token, b"late".to_vec())
            .is_err()
    );
    assert!(!vm.is_failed());
}

fn unknown_token_is_an_error<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe_vm(&engine, "rust-wasip1", &services);
    let err = vm
        .deliver_http_response(999, HttpCallResult::Failure)
        .unwrap_err();
    assert_eq!(err.kind(), polyhost::PluginErrorKind::UnknownContext);
    assert!(!vm.is_failed());
}
