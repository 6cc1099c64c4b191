// abi_probe: exercises the host functions one at a time, with the cases of
// plugins/rust/abi_probe (see plugins/rust/README.md for the contract and
// plugins/go/README.md for where the Go version differs).
//
// The request header x-case selects what a request does. Results are added
// as request headers named x-result-*, unless the case answers locally.
//
// The Go SDK has no API for gRPC, proxy_get_log_level,
// proxy_get_current_time_nanoseconds, record_metric, status-reporting
// metric calls, CallData (buffer 8) or GrpcReceiveBuffer (buffer 5), nor a
// proxy_on_foreign_function or proxy_on_grpc_* callback. Those cases use
// package rawabi (plain //go:wasmimport declarations) and the //go:wasmexport
// functions in grpc.go, the way the Rust probe drops to proxy_wasm::hostcalls.
package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/rawabi"
	"polyhost.test/plugins/go/internal/util"
)

const (
	// The probe expects to run with this vm_id (the queue case resolves its
	// own queue through it).
	vmID             = "probe-vm"
	queueName        = "probe-queue"
	sharedKey        = "probe/counter"
	calloutTimeoutMs = 500
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

// metrics are the metric ids, defined once per VM.
type metrics struct {
	requests proxywasm.MetricCounter
	gauge    proxywasm.MetricGauge
	latency  proxywasm.MetricHistogram
	ticks    proxywasm.MetricCounter
	defined  bool
}

func defineMetrics() metrics {
	// The SDK's Define*Metric panic (trap) on a failing status, like the
	// Rust probe's unwrap().
	return metrics{
		requests: proxywasm.DefineCounterMetric("probe_requests"),
		gauge:    proxywasm.DefineGaugeMetric("probe_gauge"),
		latency:  proxywasm.DefineHistogramMetric("probe_latency"),
		ticks:    proxywasm.DefineCounterMetric("probe_ticks"),
		defined:  true,
	}
}

// vmContext is the root context's proxy_on_vm_start half; the Go SDK gives
// proxy_on_configure, ticks and queues to the plugin context below, which
// has the same root context id.
type vmContext struct {
	types.DefaultVMContext
	metrics metrics
}

// tickPeriod reads the VM configuration as Rust's `text.trim().parse::<u64>()`.
func tickPeriod(vmConfig []byte) (uint64, bool) {
	if !utf8.Valid(vmConfig) {
		return 0, false
	}
	ms, ok := util.ParseUint(strings.TrimSpace(string(vmConfig)), 64)
	return ms, ok && ms > 0
}

func (v *vmContext) OnVMStart(vmConfigurationSize int) types.OnVMStartStatus {
	v.metrics = defineMetrics()
	_, err := proxywasm.RegisterSharedQueue(queueName)
	util.Must(err, "register_shared_queue")

	// A VM configuration that is a decimal number turns on the tick timer
	// with that period in milliseconds; anything else leaves it off.
	// Only read a configuration the host says is there: the SDK's allocator
	// traps when a host asks it for 0 bytes to return empty data.
	var vmConfig []byte
	if vmConfigurationSize > 0 {
		vmConfig, _ = proxywasm.GetVMConfiguration()
	}
	if ms, ok := tickPeriod(vmConfig); ok {
		util.Must(proxywasm.SetTickPeriodMilliSeconds(uint32(ms)), "set_tick_period_milliseconds")
	}
	return types.OnVMStartStatusOK
}

func (v *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &probeRoot{vm: v}
}

type probeRoot struct {
	types.DefaultPluginContext
	vm *vmContext
}

func (r *probeRoot) OnPluginStart(int) types.OnPluginStartStatus {
	return types.OnPluginStartStatusOK // configuration ignored
}

func (r *probeRoot) OnTick() {
	if r.vm.metrics.defined {
		r.vm.metrics.ticks.Increment(1)
	}
}

func (r *probeRoot) OnQueueReady(queueID uint32) {
	// Drain everything: the host signals readiness once per enqueue, but may
	// coalesce signals. Stops on Empty or any error, and (as the Rust SDK
	// does) on an Ok without data.
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if err != nil || item == nil {
			return
		}
		proxywasm.LogInfo("probe queue: " + util.Lossy(item))
	}
}

func (r *probeRoot) NewHttpContext(contextID uint32) types.HttpContext {
	// define_metric is idempotent per name, so defining here only covers a
	// host that skipped proxy_on_vm_start.
	if !r.vm.metrics.defined {
		r.vm.metrics = defineMetrics()
	}
	return &probe{id: contextID, metrics: r.vm.metrics}
}

// probe is one HTTP stream.
type probe struct {
	types.DefaultHttpContext
	id      uint32
	metrics metrics
	// Value of x-case, remembered for the later callbacks.
	kase string
	// Value of x-body-op for the body case.
	bodyOp string
	// gRPC stream state for the grpc-stream case.
	streamMessages strings.Builder
	streamInitial  *uint32
	streamTrailing *uint32
}

// result adds a request header (add, never replace, so a result does not
// depend on whether the host's replace inserts missing keys).
func (p *probe) result(name, value string) {
	util.Must(proxywasm.AddHttpRequestHeader(name, value), "add_header_map_value")
}

func sendLocal(status uint32, headers [][2]string, body string) {
	util.Must(proxywasm.SendHttpResponse(status, headers, []byte(body), -1), "send_local_response")
}

func (p *probe) dispatchFailed(name string) types.Action {
	sendLocal(503, nil, "dispatch failed: "+name)
	return types.ActionPause
}

// header reads a request header; ok is false when the host has none.
func header(name string) (string, bool) {
	value, err := proxywasm.GetHttpRequestHeader(name)
	if err != nil {
		if !errors.Is(err, types.ErrorStatusNotFound) {
			panic("get_header_map_value: " + util.ErrName(err))
		}
		return "", false
	}
	return value, true
}

func orNone(value []byte) string {
	if value == nil {
		return "none"
	}
	return util.Lossy(value)
}

func (p *probe) OnHttpRequestHeaders(int, bool) types.Action {
	p.kase, _ = header("x-case")
	switch p.kase {
	case "log":
		return p.caseLog()
	case "time":
		return p.caseTime()
	case "headers":
		return p.caseHeaders()
	case "bytes-header":
		return p.caseBytesHeader()
	case "local":
		return p.caseLocal()
	case "grpc-status":
		return p.caseGrpcStatus()
	case "body":
		p.bodyOp, _ = header("x-body-op")
		return types.ActionContinue
	case "http-call":
		return p.caseHTTPCall()
	case "grpc-call":
		return p.caseGrpcCall()
	case "grpc-stream":
		return p.caseGrpcStream()
	case "grpc-cancel":
		return p.caseGrpcCancel()
	case "shared":
		return p.caseShared()
	case "queue":
		return p.caseQueue()
	case "metrics":
		return p.caseMetrics()
	case "property":
		return p.caseProperty()
	case "foreign":
		return p.caseForeign()
	case "trap":
		panic("probe trap")
	}
	// "done", "trailers" (acts later) and anything unknown.
	return types.ActionContinue
}

func (p *probe) caseLog() types.Action {
	proxywasm.LogTrace("probe trace")
	proxywasm.LogDebug("probe debug")
	proxywasm.LogInfo("probe info")
	proxywasm.LogWarn("probe warn")
	proxywasm.LogError("probe error")
	proxywasm.LogCritical("probe critical")
	// The SDK has no get_log_level; rawabi imports proxy_get_log_level.
	level, st := rawabi.GetLogLevel()
	if st != rawabi.OK {
		panic("get_log_level: " + util.StatusName(st))
	}
	p.result("x-result-log-level", strconv.FormatUint(uint64(level), 10))
	return types.ActionContinue
}

func (p *probe) caseTime() types.Action {
	// The SDK has no wrapper for proxy_get_current_time_nanoseconds (Go's
	// time.Now() would read WASI clock_time_get instead); rawabi imports it.
	ns, st := rawabi.GetCurrentTimeNanoseconds()
	if st != rawabi.OK {
		panic("get_current_time_nanoseconds: " + util.StatusName(st))
	}
	p.result("x-result-time", strconv.FormatUint(ns, 10))
	return types.ActionContinue
}

func (p *probe) caseHeaders() types.Action {
	pairs, err := proxywasm.GetHttpRequestHeaders()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) { // NotFound: the SDK's "no data"
		panic("get_header_map_pairs: " + util.ErrName(err))
	}
	count := strconv.Itoa(len(pairs))
	missing := "none"
	if value, ok := header("x-nope"); ok {
		missing = "present:" + value
	}
	// Replace the whole map: every original pair (x-case included), in
	// order, followed by the results gathered so far.
	replaced := make([][2]string, 0, len(pairs)+3)
	replaced = append(replaced, pairs...)
	replaced = append(replaced,
		[2]string{"x-result-count", count},
		[2]string{"x-result-missing", missing},
		[2]string{"x-result-rewritten", "yes"})
	util.Must(proxywasm.ReplaceHttpRequestHeaders(replaced), "set_header_map_pairs")

	after, err := proxywasm.GetHttpRequestHeaders()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		panic("get_header_map_pairs: " + util.ErrName(err))
	}
	p.result("x-result-size", strconv.Itoa(len(after)))
	return types.ActionContinue
}

func (p *probe) caseBytesHeader() types.Action {
	// "\xc3\x28" is an invalid UTF-8 sequence; Go strings carry it as is.
	util.Must(proxywasm.ReplaceHttpRequestHeader("x-result-bytes", "\xc3\x28"), "replace_header_map_value")
	back := "none"
	if value, ok := header("x-result-bytes"); ok {
		back = hex.EncodeToString([]byte(value))
	}
	p.result("x-result-bytes-hex", back)
	return types.ActionContinue
}

func (p *probe) caseLocal() types.Action {
	path, _ := header(":path")
	status := uint32(418)
	if s, ok := header("x-status"); ok {
		if v, ok := util.ParseUint(s, 32); ok {
			status = uint32(v)
		}
	}
	sendLocal(status, [][2]string{{"x-local", "1"}}, "local:"+path)
	return types.ActionPause
}

func (p *probe) caseGrpcStatus() types.Action {
	// The Rust SDK's send_grpc_response(PermissionDenied, Some("denied"), [])
	// is exactly this call: status 200, body "denied", an N=0 header map,
	// grpc_status 7.
	util.Must(proxywasm.SendHttpResponse(200, nil, []byte("denied"), 7), "send_local_response")
	return types.ActionPause
}

func (p *probe) caseHTTPCall() types.Action {
	headers := [][2]string{
		{":method", "GET"},
		{":path", "/check"},
		{":authority", "auth"},
		{"x-from", "probe"},
	}
	_, err := proxywasm.DispatchHttpCall("auth-cluster", headers, []byte("ping"), nil, calloutTimeoutMs, p.onHTTPCallResponse)
	if err != nil {
		return p.dispatchFailed(util.ErrName(err))
	}
	return types.ActionPause
}

func (p *probe) onHTTPCallResponse(numHeaders, bodySize, _ int) {
	// A failed or timed-out callout arrives with no headers at all.
	if numHeaders == 0 {
		sendLocal(503, nil, "callout failed")
		return
	}
	// The SDK has no single-header getter for callout responses; it reads the
	// whole map once (get_header_map_pairs(6)).
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		panic("get_header_map_pairs: " + util.ErrName(err))
	}
	status, ok := util.Lookup(headers, ":status")
	if !ok {
		status = "none"
	}
	var body []byte
	if bodySize > 0 { // see OnVMStart
		body, _ = proxywasm.GetHttpCallResponseBody(0, bodySize) // NotFound (no data) reads as empty
	}
	auth, ok := util.Lookup(headers, "x-auth")
	if !ok {
		auth = "none"
	}
	p.result("x-result-status", status)
	p.result("x-result-body", util.Lossy(body))
	p.result("x-result-callout-header", auth)
	util.Must(proxywasm.ResumeHttpRequest(), "continue_stream")
}

func (p *probe) caseGrpcCall() types.Action {
	token, st := rawabi.GrpcCall("grpc-cluster", "pkg.Service", "Method",
		[][2]string{{"x-md", "1"}}, []byte("req"), calloutTimeoutMs)
	if st != rawabi.OK {
		return p.dispatchFailed(util.StatusName(st))
	}
	grpcCalls[token] = p
	return types.ActionPause
}

// openStream opens the gRPC stream and sends "m1"; it returns the token or
// the failing status.
func (p *probe) openStream() (uint32, uint32) {
	token, st := rawabi.GrpcStream("grpc-cluster", "pkg.Service", "Stream", nil)
	if st != rawabi.OK {
		return 0, st
	}
	grpcStreams[token] = p
	if st := rawabi.GrpcSend(token, []byte("m1"), false); st != rawabi.OK {
		return 0, st
	}
	return token, rawabi.OK
}

func (p *probe) caseGrpcStream() types.Action {
	if _, st := p.openStream(); st != rawabi.OK {
		return p.dispatchFailed(util.StatusName(st))
	}
	return types.ActionPause
}

// caseGrpcCancel: cancelling is final, no gRPC callback follows, so the
// request is not paused. The second cancel reports the host's status.
func (p *probe) caseGrpcCancel() types.Action {
	token, st := p.openStream()
	if st != rawabi.OK {
		return p.dispatchFailed(util.StatusName(st))
	}
	outcome := func(st uint32) string {
		if st == rawabi.OK {
			return "ok"
		}
		return util.StatusName(st)
	}
	p.result("x-result-cancel", outcome(rawabi.GrpcCancel(token)))
	p.result("x-result-cancel-again", outcome(rawabi.GrpcCancel(token)))
	return types.ActionContinue
}

func (p *probe) caseShared() types.Action {
	getShared := func() ([]byte, uint32) {
		value, cas, err := proxywasm.GetSharedData(sharedKey)
		if err != nil {
			if !errors.Is(err, types.ErrorStatusNotFound) {
				panic("get_shared_data: " + util.ErrName(err))
			}
			return nil, 0
		}
		return value, cas
	}
	value, cas := getShared()
	var current uint64
	if value != nil && utf8.Valid(value) {
		if v, ok := util.ParseUint(string(value), 64); ok {
			current = v
		}
	}
	next := strconv.FormatUint(current+1, 10)
	shared := next
	if err := proxywasm.SetSharedData(sharedKey, []byte(next), cas); err != nil {
		shared = util.ErrName(err)
	}
	p.result("x-result-shared", shared)

	// Make a cas stale on purpose: read the current cas, write the same value
	// with it (which bumps the cas), then write again with the now-outdated
	// cas.
	_, casNow := getShared()
	_ = proxywasm.SetSharedData(sharedKey, []byte(next), casNow)
	stale := "other:Ok"
	if err := proxywasm.SetSharedData(sharedKey, []byte(next), casNow); err != nil {
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			stale = "mismatch"
		} else {
			stale = "other:" + util.ErrName(err)
		}
	}
	p.result("x-result-cas", stale)
	return types.ActionContinue
}

func (p *probe) caseQueue() types.Action {
	path, _ := header(":path")
	outcome := "missing"
	queueID, err := proxywasm.ResolveSharedQueue(vmID, queueName)
	switch {
	case err == nil:
		var st string
		if path == "" {
			// The SDK's EnqueueSharedQueue indexes data[0] and would panic on
			// an empty item; call the import directly instead.
			if code := rawabi.EnqueueSharedQueue(queueID, nil); code != rawabi.OK {
				st = util.StatusName(code)
			}
		} else if err := proxywasm.EnqueueSharedQueue(queueID, []byte(path)); err != nil {
			st = util.ErrName(err)
		}
		if st == "" {
			outcome = "enqueued"
		} else {
			outcome = "error:" + st
		}
	case errors.Is(err, types.ErrorStatusNotFound):
	default:
		panic("resolve_shared_queue: " + util.ErrName(err))
	}
	p.result("x-result-queue", outcome)
	return types.ActionContinue
}

// caseMetrics uses rawabi: the SDK's metric methods panic instead of
// returning a status, and its gauge has no record (set) operation.
func (p *probe) caseMetrics() types.Action {
	m := p.metrics
	writes := []uint32{
		rawabi.IncrementMetric(uint32(m.requests), 1),
		rawabi.RecordMetric(uint32(m.gauge), 42),
		rawabi.RecordMetric(uint32(m.latency), 7),
	}
	for _, st := range writes {
		if st != rawabi.OK {
			proxywasm.LogWarn("probe: metric write failed: " + util.StatusName(st))
		}
	}
	read := func(id uint32) string {
		v, st := rawabi.GetMetric(id)
		if st != rawabi.OK {
			return util.StatusName(st)
		}
		return strconv.FormatUint(v, 10)
	}
	p.result("x-result-counter", read(uint32(m.requests)))
	p.result("x-result-gauge", read(uint32(m.gauge)))
	return types.ActionContinue
}

func (p *probe) caseProperty() types.Action {
	get := func(path ...string) string {
		value, err := proxywasm.GetProperty(path)
		switch {
		case err == nil:
			return orNone(value)
		case errors.Is(err, types.ErrorStatusNotFound):
			return "none"
		}
		return "error:" + util.ErrName(err)
	}
	p.result("x-result-path", get("request", "path"))
	p.result("x-result-plugin", get("plugin_name"))
	// The Rust SDK traps unless the host answers Ok here; so does this.
	util.Must(proxywasm.SetProperty([]string{"probe", "prop"}, []byte("v1")), "set_property")
	p.result("x-result-prop", get("probe", "prop"))
	return types.ActionContinue
}

func (p *probe) caseForeign() types.Action {
	echo := "none"
	if value, err := proxywasm.CallForeignFunction("echo", []byte("abc")); err != nil {
		echo = "error:" + util.ErrName(err)
	} else {
		echo = orNone(value)
	}
	p.result("x-result-foreign", echo)
	missing := "unexpected-ok"
	if _, err := proxywasm.CallForeignFunction("nope", nil); err != nil {
		missing = util.ErrName(err)
	}
	p.result("x-result-foreign-missing", missing)
	return types.ActionContinue
}

func (p *probe) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if p.kase != "body" {
		return types.ActionContinue
	}
	// Pause until the end so the host buffers the whole body.
	if !endOfStream {
		return types.ActionPause
	}
	switch p.bodyOp {
	case "replace":
		var body []byte
		if bodySize > 0 { // see OnVMStart
			body, _ = proxywasm.GetHttpRequestBody(0, bodySize) // NotFound (no data) reads as empty
		}
		// set_buffer_bytes(0, start 0, size MaxInt32, ..)
		util.Must(proxywasm.ReplaceHttpRequestBody(bytes.ReplaceAll(body, []byte("foo"), []byte("bar"))), "set_buffer_bytes")
	case "prepend":
		// set_buffer_bytes(0, start 0, size 0, "<<")
		util.Must(proxywasm.PrependHttpRequestBody([]byte("<<")), "set_buffer_bytes")
	case "append":
		// set_buffer_bytes(0, start MaxInt32, size 0, ">>")
		util.Must(proxywasm.AppendHttpRequestBody([]byte(">>")), "set_buffer_bytes")
	}
	return types.ActionContinue
}

func (p *probe) OnHttpRequestTrailers(int) types.Action {
	if p.kase == "trailers" {
		util.Must(proxywasm.AddHttpRequestTrailer("x-result-trailer", "seen"), "add_header_map_value")
	}
	return types.ActionContinue
}

func (p *probe) OnHttpResponseBody(_ int, endOfStream bool) types.Action {
	// Not buffered: "!" goes after the last chunk the host delivers.
	// set_buffer_bytes(1, start MaxInt32, size 0, "!")
	if p.kase == "body" && endOfStream {
		util.Must(proxywasm.AppendHttpResponseBody([]byte("!")), "set_buffer_bytes")
	}
	return types.ActionContinue
}

func (p *probe) OnHttpResponseTrailers(int) types.Action {
	if p.kase == "trailers" {
		if _, err := proxywasm.GetHttpResponseTrailer("grpc-status"); err == nil {
			util.Must(proxywasm.ReplaceHttpResponseTrailer("grpc-status", "0"), "replace_header_map_value")
		}
	}
	return types.ActionContinue
}
