;; ABI 0.1.0: the calls that 0.2 replaced, as an old plugin makes them.
;;
;; on_configure   proxy_get_configuration, logged at info.
;; on_request_headers(ctx, num_headers) (two parameters in 0.1.0):
;;   x-result-missing-status / -len   proxy_get_header_map_value of a missing
;;                                    key (0.1.0: Ok with an empty value)
;;   x-result-config-buffer           proxy_get_buffer_bytes(PluginConfiguration):
;;                                    0.1.0 has no such buffer (NotFound)
;;   x-result-continue                proxy_continue_request
;;   x-result-clear                   proxy_clear_route_cache
;;   returns Pause (the continue above resumes the request).
;; on_response_headers(ctx, num_headers):
;;   x-result-continue-response       proxy_continue_response (response map)
(module
  (import "env" "proxy_get_configuration" (func $get_config (param i32 i32) (result i32)))
  (import "env" "proxy_continue_request" (func $continue_request (result i32)))
  (import "env" "proxy_continue_response" (func $continue_response (result i32)))
  (import "env" "proxy_clear_route_cache" (func $clear (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "x-missing")
  (data (i32.const 80) "x-result-missing-status")
  (data (i32.const 112) "x-result-missing-len")
  (data (i32.const 144) "x-result-config-buffer")
  (data (i32.const 176) "x-result-continue")
  (data (i32.const 208) "x-result-clear")
  (data (i32.const 240) "x-result-continue-response")
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  ;; Adds header `key` (ptr, len) to `map` with `value` in decimal.
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
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $get_config (i32.const 512) (i32.const 516)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 512)) (i32.load (i32.const 516))))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
    (call $record (i32.const 0) (i32.const 80) (i32.const 23)
      (call $get_value (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 520) (i32.const 524)))
    (call $record (i32.const 0) (i32.const 112) (i32.const 20) (i32.load (i32.const 524)))
    (call $record (i32.const 0) (i32.const 144) (i32.const 22)
      (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 528) (i32.const 532)))
    (call $record (i32.const 0) (i32.const 176) (i32.const 17) (call $continue_request))
    (call $record (i32.const 0) (i32.const 208) (i32.const 14) (call $clear))
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32) (result i32)
    (call $record (i32.const 2) (i32.const 240) (i32.const 26) (call $continue_response))
    (i32.const 0)))
