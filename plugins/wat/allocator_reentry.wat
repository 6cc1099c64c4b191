;; The allocator itself calls `proxy_get_header_map_value`, which needs the
;; allocator to return the value: host -> allocator -> host -> ... without
;; end. `proxy_on_request_headers` starts it by reading `:path`; the host
;; stops the recursion at 8 nested allocator calls and fails the callback
;; with one trap naming the limit (it used to overflow the host's native
;; stack on wasmer and wasmi). `proxy_on_response_headers` needs no
;; allocator and returns Continue, so a new VM serves responses.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ":path")
  (global $heap (mut i32) (i32.const 4096))
  (func $value
    ;; request headers (map 0), key ":path" at 16, value out at 32 / 36
    (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 36))))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (call $value)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $value)
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
