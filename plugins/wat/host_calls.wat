;; Host calls that the SDK fixtures make without an observable result.
;;   on_request_headers adds request headers:
;;     x-result-map-size-status   proxy_get_header_map_size(RequestHeaders): Ok
;;     x-result-map-size          the size it wrote: the serialized map's
;;                                bytes, measured before any header is added
;;     x-result-bad-map           proxy_get_header_map_size(8): BadArgument
;;     x-result-close-response    proxy_close_stream(HttpResponse): Ok
;;     x-result-close-bad         proxy_close_stream(4): BadArgument
;;   on_request_body adds:
;;     x-result-body-status       proxy_get_buffer_status(HttpRequestBody): Ok
;;     x-result-body-len          the length it wrote
;;     x-result-body-flags        the flags it wrote (the reference host: 0)
(module
  (import "env" "proxy_get_header_map_size" (func $map_size (param i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $buffer_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "x-result-map-size-status")
  (data (i32.const 96) "x-result-map-size")
  (data (i32.const 128) "x-result-bad-map")
  (data (i32.const 160) "x-result-close-response")
  (data (i32.const 192) "x-result-close-bad")
  (data (i32.const 224) "x-result-body-status")
  (data (i32.const 256) "x-result-body-len")
  (data (i32.const 288) "x-result-body-flags")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $record (param $map i32) (param $key i32) (param $key_len i32) (param $value i32)
    (local $p i32)
    (local.set $p (i32.const 1040))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $value) (i32.const 10))))
      (local.set $value (i32.div_u (local.get $value) (i32.const 10)))
      (br_if $digit (local.get $value)))
    (drop (call $add (local.get $map) (local.get $key) (local.get $key_len)
      (local.get $p) (i32.sub (i32.const 1040) (local.get $p)))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $status i32)
    (local.set $status (call $map_size (i32.const 0) (i32.const 512)))
    (call $record (i32.const 0) (i32.const 64) (i32.const 24) (local.get $status))
    (call $record (i32.const 0) (i32.const 96) (i32.const 17) (i32.load (i32.const 512)))
    (call $record (i32.const 0) (i32.const 128) (i32.const 16)
      (call $map_size (i32.const 8) (i32.const 516)))
    (call $record (i32.const 0) (i32.const 160) (i32.const 23) (call $close (i32.const 1)))
    (call $record (i32.const 0) (i32.const 192) (i32.const 18) (call $close (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (i32.store (i32.const 524) (i32.const 99))
    (call $record (i32.const 0) (i32.const 224) (i32.const 20)
      (call $buffer_status (i32.const 0) (i32.const 520) (i32.const 524)))
    (call $record (i32.const 0) (i32.const 256) (i32.const 17) (i32.load (i32.const 520)))
    (call $record (i32.const 0) (i32.const 288) (i32.const 19) (i32.load (i32.const 524)))
    (i32.const 0)))
