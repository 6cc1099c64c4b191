;; Host budgets (issue 14, item 3): header values and maps on every route.
;; Memory is 65 MiB + 128 KiB so the plugin can point at a 64 MiB value.
;;   on_request_headers, on the request headers (map 0), records at
;;     256  proxy_add_header_map_value of a 64 MiB value, 10 times: last status
;;     260  proxy_replace_header_map_value of a 64 MiB value: status
;;     264  proxy_set_header_map_pairs of one pair with a 100 KiB value: status
;;     268  how many of 40 adds of `x-fill: <60 KiB>` returned Ok
;;     272  the status of the last of those adds
;;     276  proxy_replace_header_map_value of `x-new: <60 KiB>` on the
;;          full map (a new name, so the map would grow): status
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs"
    (func $set (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1042)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "x-big")
  (data (i32.const 32) "x-fill")
  (data (i32.const 48) "x-new")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    ;; 64 MiB at 128 KiB.
    (loop $big
      (i32.store (i32.const 256)
        (call $add (i32.const 0) (i32.const 16) (i32.const 5)
          (i32.const 131072) (i32.const 67108864)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $big (i32.lt_u (local.get $i) (i32.const 10))))
    (i32.store (i32.const 260)
      (call $replace (i32.const 0) (i32.const 16) (i32.const 5)
        (i32.const 131072) (i32.const 67108864)))
    ;; One pair, `k` -> 100 KiB of zeros, serialized at 64 KiB:
    ;; u32 1, u32 1, u32 102400, "k\0", value, "\0" = 102415 bytes.
    (i32.store (i32.const 65536) (i32.const 1))
    (i32.store (i32.const 65540) (i32.const 1))
    (i32.store (i32.const 65544) (i32.const 102400))
    (i32.store8 (i32.const 65548) (i32.const 107))
    (i32.store (i32.const 264)
      (call $set (i32.const 0) (i32.const 65536) (i32.const 102415)))
    ;; 60 KiB values until the 1 MiB map limit.
    (local.set $i (i32.const 0))
    (loop $fill
      (local.set $status
        (call $add (i32.const 0) (i32.const 32) (i32.const 6)
          (i32.const 131072) (i32.const 61440)))
      (i32.store (i32.const 272) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 268)
          (i32.add (i32.load (i32.const 268)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 40))))
    (i32.store (i32.const 276)
      (call $replace (i32.const 0) (i32.const 48) (i32.const 5)
        (i32.const 131072) (i32.const 61440)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
