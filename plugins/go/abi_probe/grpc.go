package main

// Callbacks the Go SDK does not export, declared here with //go:wasmexport.
// They route by token, as the Rust SDK's dispatcher does: the context id the
// host passes is ignored, the context that dispatched the token is made the
// effective context (proxy_set_effective_context) and handles the event.
// Unknown tokens are logged at trace level with the Rust SDK's texts.

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"polyhost.test/plugins/go/internal/rawabi"
	"polyhost.test/plugins/go/internal/util"
)

const (
	bufferGrpcReceive = 5
	bufferCallData    = 8
)

var (
	// Outstanding unary calls: removed by their (single) answer.
	grpcCalls = map[uint32]*probe{}
	// Open streams: removed by their close (a cancelled stream stays, as in
	// the Rust SDK, so a close the host should not send is still seen).
	grpcStreams = map[uint32]*probe{}
)

func activate(p *probe) {
	util.Must(proxywasm.SetEffectiveContext(p.id), "set_effective_context")
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGrpcReceiveInitialMetadata(_, token, numElements uint32) {
	p, ok := grpcStreams[token]
	if !ok {
		proxywasm.LogTrace("on_grpc_receive_initial_metadata: invalid token_id")
		return
	}
	activate(p)
	n := numElements
	p.streamInitial = &n
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(_, token, size uint32) {
	if p, ok := grpcCalls[token]; ok {
		delete(grpcCalls, token)
		activate(p)
		p.onGrpcCallResponse(0, size)
		return
	}
	if p, ok := grpcStreams[token]; ok {
		activate(p)
		if size > 0 { // see OnVMStart
			message, st := rawabi.GetBuffer(bufferGrpcReceive, 0, size)
			if st != rawabi.OK && st != 1 { // NotFound reads as absent
				panic("get_buffer_bytes: " + util.StatusName(st))
			}
			p.streamMessages.WriteString(util.Lossy(message))
		}
		return
	}
	proxywasm.LogTrace("on_grpc_receive_initial_metadata: invalid token_id")
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGrpcReceiveTrailingMetadata(_, token, numElements uint32) {
	p, ok := grpcStreams[token]
	if !ok {
		proxywasm.LogTrace("on_grpc_receive_trailing_metadata: invalid token_id")
		return
	}
	activate(p)
	n := numElements
	p.streamTrailing = &n
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(_, token, status uint32) {
	if p, ok := grpcCalls[token]; ok {
		delete(grpcCalls, token)
		activate(p)
		p.onGrpcCallResponse(status, 0)
		return
	}
	if p, ok := grpcStreams[token]; ok {
		delete(grpcStreams, token)
		activate(p)
		p.onGrpcStreamClose(token, status)
		return
	}
	proxywasm.LogTrace("on_grpc_close: invalid token_id, a non-connected stream has closed")
}

// onGrpcCallResponse: proxy_on_grpc_receive arrives as (status 0, size),
// proxy_on_grpc_close as (status, size 0).
func (p *probe) onGrpcCallResponse(status, size uint32) {
	body := "none"
	if size > 0 {
		message, st := rawabi.GetBuffer(bufferGrpcReceive, 0, size)
		if st != rawabi.OK && st != 1 {
			panic("get_buffer_bytes: " + util.StatusName(st))
		}
		body = orNone(message)
	}
	p.result("x-result-grpc-status", strconv.FormatUint(uint64(status), 10))
	p.result("x-result-grpc-body", body)
	util.Must(proxywasm.ResumeHttpRequest(), "continue_stream")
}

func (p *probe) onGrpcStreamClose(token, status uint32) {
	if p.kase != "grpc-stream" {
		// Only grpc-stream waits for a close; anything else is a host bug
		// worth seeing in the log (e.g. a close after grpc-cancel).
		proxywasm.LogWarn("probe: unexpected grpc close token=" + strconv.FormatUint(uint64(token), 10) +
			" status=" + strconv.FormatUint(uint64(status), 10))
		return
	}
	count := func(n *uint32) string {
		if n == nil {
			return "none"
		}
		return strconv.FormatUint(uint64(*n), 10)
	}
	p.result("x-result-stream", p.streamMessages.String())
	p.result("x-result-stream-status", strconv.FormatUint(uint64(status), 10))
	p.result("x-result-stream-initial", count(p.streamInitial))
	p.result("x-result-stream-trailing", count(p.streamTrailing))
	util.Must(proxywasm.ResumeHttpRequest(), "continue_stream")
}

//go:wasmexport proxy_on_foreign_function
func proxyOnForeignFunction(rootID, functionID, argsSize uint32) {
	util.Must(proxywasm.SetEffectiveContext(rootID), "set_effective_context")
	var args []byte
	if argsSize > 0 { // see OnVMStart
		var st uint32
		args, st = rawabi.GetBuffer(bufferCallData, 0, argsSize)
		if st != rawabi.OK && st != 1 {
			panic("get_buffer_bytes: " + util.StatusName(st))
		}
	}
	proxywasm.LogInfo("probe foreign: function_id=" + strconv.FormatUint(uint64(functionID), 10) +
		" args=" + util.Lossy(args))
}
