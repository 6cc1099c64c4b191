// tcp_upper: a stream (TCP) filter (as plugins/rust/tcp_upper). Upper-cases
// ASCII letters flowing downstream -> upstream, prefixes every upstream ->
// downstream chunk with "> ", logs connection events and counts connections
// in "tcp_connections".
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"polyhost.test/plugins/go/internal/util"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
	connections proxywasm.MetricCounter
}

func (v *vmContext) OnVMStart(int) types.OnVMStartStatus {
	v.connections = proxywasm.DefineCounterMetric("tcp_connections")
	return types.OnVMStartStatusOK
}

func (v *vmContext) NewPluginContext(uint32) types.PluginContext {
	return &tcpRoot{vm: v}
}

type tcpRoot struct {
	types.DefaultPluginContext
	vm *vmContext
}

// NewHttpContext stays the default (nil), so the SDK makes every stream
// context a TCP context.
func (r *tcpRoot) NewTcpContext(uint32) types.TcpContext {
	return &tcpUpper{vm: r.vm}
}

type tcpUpper struct {
	types.DefaultTcpContext
	vm *vmContext
}

func (t *tcpUpper) OnNewConnection() types.Action {
	proxywasm.LogInfo("tcp: new connection")
	t.vm.connections.Increment(1)
	return types.ActionContinue
}

// asciiUpper upper-cases a-z only (bytes.ToUpper would also map non-ASCII
// letters, which Rust's to_ascii_uppercase leaves alone).
func asciiUpper(data []byte) []byte {
	out := make([]byte, len(data))
	for i, c := range data {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func (*tcpUpper) OnDownstreamData(dataSize int, _ bool) types.Action {
	if dataSize > 0 {
		data, _ := proxywasm.GetDownstreamData(0, dataSize)
		// The SDK's replace is set_buffer_bytes(2, start 0, size MaxInt32, ..).
		util.Must(proxywasm.ReplaceDownstreamData(asciiUpper(data)), "set_buffer_bytes")
	}
	return types.ActionContinue
}

func (*tcpUpper) OnUpstreamData(dataSize int, _ bool) types.Action {
	// An empty end-of-stream notification carries no data to mark.
	if dataSize > 0 {
		util.Must(proxywasm.PrependUpstreamData([]byte("> ")), "set_buffer_bytes")
	}
	return types.ActionContinue
}

func peerName(peer types.PeerType) string {
	switch peer {
	case types.PeerTypeLocal:
		return "Local"
	case types.PeerTypeRemote:
		return "Remote"
	}
	return "Unknown"
}

func (*tcpUpper) OnDownstreamClose(peer types.PeerType) {
	proxywasm.LogInfo("tcp: downstream closed by " + peerName(peer))
}

func (*tcpUpper) OnUpstreamClose(peer types.PeerType) {
	proxywasm.LogInfo("tcp: upstream closed by " + peerName(peer))
}
