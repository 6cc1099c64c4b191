// Package rawabi declares the proxy-wasm host functions the Go SDK
// (github.com/proxy-wasm/proxy-wasm-go-sdk) has no public wrapper for, or
// whose wrapper cannot express what the Rust test plugins do. Each is a
// plain //go:wasmimport of module "env" with the ABI's signature; the plugin
// calls it directly, exactly as the Rust probe uses proxy_wasm::hostcalls.
// plugins/go/README.md lists, case by case, where a plugin uses these.
package rawabi

import (
	"encoding/binary"
	"unsafe"
)

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(level *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ns *uint64) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType, start, maxSize uint32, retData unsafe.Pointer, retSize *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(queueID uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id uint32, value *uint64) uint32

//go:wasmimport env proxy_grpc_call
func proxyGrpcCall(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32,
	method unsafe.Pointer, methodSize uint32, metadata unsafe.Pointer, metadataSize uint32,
	message unsafe.Pointer, messageSize uint32, timeoutMs uint32, token *uint32) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGrpcStream(upstream unsafe.Pointer, upstreamSize uint32, service unsafe.Pointer, serviceSize uint32,
	method unsafe.Pointer, methodSize uint32, metadata unsafe.Pointer, metadataSize uint32, token *uint32) uint32

//go:wasmimport env proxy_grpc_send
func proxyGrpcSend(token uint32, message unsafe.Pointer, messageSize uint32, endStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGrpcCancel(token uint32) uint32

// Status 0 is Ok; anything else is the host's status code.
const OK uint32 = 0

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func strPtr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// GetLogLevel is proxy_get_log_level (ABI 0.2.1).
func GetLogLevel() (uint32, uint32) {
	var level uint32
	st := proxyGetLogLevel(&level)
	return level, st
}

// GetCurrentTimeNanoseconds is proxy_get_current_time_nanoseconds.
func GetCurrentTimeNanoseconds() (uint64, uint32) {
	var ns uint64
	st := proxyGetCurrentTimeNanoseconds(&ns)
	return ns, st
}

// GetBuffer is proxy_get_buffer_bytes for any buffer type. A null pointer
// from the host ("no data") comes back as a nil slice.
func GetBuffer(bufferType, start, maxSize uint32) ([]byte, uint32) {
	var data *byte
	var size uint32
	st := proxyGetBufferBytes(bufferType, start, maxSize, unsafe.Pointer(&data), &size)
	if st != OK || data == nil {
		return nil, st
	}
	return unsafe.Slice(data, size), st
}

// EnqueueSharedQueue is proxy_enqueue_shared_queue; unlike the SDK's wrapper
// it accepts empty data (pointer 0, length 0).
func EnqueueSharedQueue(queueID uint32, data []byte) uint32 {
	return proxyEnqueueSharedQueue(queueID, ptr(data), uint32(len(data)))
}

// IncrementMetric is proxy_increment_metric.
func IncrementMetric(id uint32, delta int64) uint32 { return proxyIncrementMetric(id, delta) }

// RecordMetric is proxy_record_metric.
func RecordMetric(id uint32, value uint64) uint32 { return proxyRecordMetric(id, value) }

// GetMetric is proxy_get_metric.
func GetMetric(id uint32) (uint64, uint32) {
	var v uint64
	st := proxyGetMetric(id, &v)
	return v, st
}

// GrpcCall is proxy_grpc_call.
func GrpcCall(upstream, service, method string, metadata [][2]string, message []byte, timeoutMs uint32) (uint32, uint32) {
	md := SerializeMap(metadata)
	var token uint32
	st := proxyGrpcCall(strPtr(upstream), uint32(len(upstream)), strPtr(service), uint32(len(service)),
		strPtr(method), uint32(len(method)), ptr(md), uint32(len(md)), ptr(message), uint32(len(message)),
		timeoutMs, &token)
	return token, st
}

// GrpcStream is proxy_grpc_stream.
func GrpcStream(upstream, service, method string, metadata [][2]string) (uint32, uint32) {
	md := SerializeMap(metadata)
	var token uint32
	st := proxyGrpcStream(strPtr(upstream), uint32(len(upstream)), strPtr(service), uint32(len(service)),
		strPtr(method), uint32(len(method)), ptr(md), uint32(len(md)), &token)
	return token, st
}

// GrpcSend is proxy_grpc_send.
func GrpcSend(token uint32, message []byte, endStream bool) uint32 {
	var end uint32
	if endStream {
		end = 1
	}
	return proxyGrpcSend(token, ptr(message), uint32(len(message)), end)
}

// GrpcCancel is proxy_grpc_cancel.
func GrpcCancel(token uint32) uint32 { return proxyGrpcCancel(token) }

// SerializeMap encodes pairs in the ABI's header-map format; an empty list
// becomes the 4-byte map with N = 0 (what the Rust SDK sends).
func SerializeMap(pairs [][2]string) []byte {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + 1 + len(p[1]) + 1
	}
	out := make([]byte, size)
	binary.LittleEndian.PutUint32(out, uint32(len(pairs)))
	at := 4
	for _, p := range pairs {
		binary.LittleEndian.PutUint32(out[at:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(out[at+4:], uint32(len(p[1])))
		at += 8
	}
	for _, p := range pairs {
		at += copy(out[at:], p[0]) + 1
		at += copy(out[at:], p[1]) + 1
	}
	return out
}
