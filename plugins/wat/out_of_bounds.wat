;; Host calls with guest pointers outside linear memory (one 64 KiB page).
;; Each must return InvalidMemoryAccess (6) without touching the VM; the
;; results are added as request headers:
;;   x-result-log-past-end      proxy_log of a message running past the end
;;   x-result-log-huge-length   proxy_log with length 0xffffffff
;;   x-result-time-past-end     proxy_get_current_time_nanoseconds(65535)
;;   x-result-value-past-end    proxy_get_header_map_value writing its result
;;                              pointer past the end
;;   x-result-key-past-end      proxy_add_header_map_value with a key past the end
;;   x-result-in-bounds         proxy_get_current_time_nanoseconds(8): Ok
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "x-result-log-past-end")
  (data (i32.const 96) "x-result-log-huge-length")
  (data (i32.const 128) "x-result-time-past-end")
  (data (i32.const 160) "x-result-value-past-end")
  (data (i32.const 192) "x-result-key-past-end")
  (data (i32.const 224) "x-result-in-bounds")
  (data (i32.const 256) ":path")
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
    (call $record (i32.const 0) (i32.const 64) (i32.const 21)
      (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
    (call $record (i32.const 0) (i32.const 96) (i32.const 24)
      (call $log (i32.const 2) (i32.const 0) (i32.const -1)))
    (call $record (i32.const 0) (i32.const 128) (i32.const 22)
      (call $time (i32.const 65535)))
    (call $record (i32.const 0) (i32.const 160) (i32.const 23)
      (call $get_value (i32.const 0) (i32.const 256) (i32.const 5) (i32.const 70000) (i32.const 512)))
    (call $record (i32.const 0) (i32.const 192) (i32.const 21)
      (call $add (i32.const 0) (i32.const 65530) (i32.const 100) (i32.const 256) (i32.const 5)))
    (call $record (i32.const 0) (i32.const 224) (i32.const 18)
      (call $time (i32.const 8)))
    (i32.const 0)))
