;; The reference host's header-map limits (1 MiB, 1024 pairs, whole buffer
;; consumed), from the plugin's side:
;;   on_request_headers:
;;     x-result-too-many    proxy_set_header_map_pairs of a map claiming
;;                          1025 pairs: BadArgument (2)
;;     x-result-truncated   a map claiming one pair that stops short:
;;                          ParseFailure (4)
;;     then adds `k: k` until the host refuses (the map holds 1024 pairs)
;;   on_response_headers:
;;     x-result-add-over    what the refused add returned: BadArgument (2)
(module
  (import "env" "proxy_set_header_map_pairs" (func $set (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $add_over (mut i32) (i32.const 99))
  (data (i32.const 16) "k")
  (data (i32.const 64) "x-result-too-many")
  (data (i32.const 96) "x-result-truncated")
  (data (i32.const 128) "x-result-add-over")
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
    (local $i i32)
    (i32.store (i32.const 256) (i32.const 1025))
    (call $record (i32.const 0) (i32.const 64) (i32.const 17)
      (call $set (i32.const 0) (i32.const 256) (i32.const 4)))
    (i32.store (i32.const 256) (i32.const 1))
    (call $record (i32.const 0) (i32.const 96) (i32.const 18)
      (call $set (i32.const 0) (i32.const 256) (i32.const 6)))
    (block $refused
      (loop $next
        (global.set $add_over
          (call $add (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 16) (i32.const 1)))
        (br_if $refused (global.get $add_over))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (i32.const 2000)))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $record (i32.const 2) (i32.const 128) (i32.const 17) (global.get $add_over))
    (i32.const 0)))
