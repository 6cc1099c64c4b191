;; Host budgets (issue 14, item 3): proxy_log of 64 MiB lines.
;; Memory is 65 MiB + 128 KiB; the line is 64 MiB of `a` at 128 KiB, filled
;; once in proxy_on_vm_start.
;;   on_request_headers: proxy_log(info) of the 64 MiB line 50 times;
;;     records the last status at 256 and how many were Ok at 260
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1042)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (memory.fill (i32.const 131072) (i32.const 97) (i32.const 67108864))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    (loop $next
      (local.set $status
        (call $log (i32.const 2) (i32.const 131072) (i32.const 67108864)))
      (i32.store (i32.const 256) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 260)
          (i32.add (i32.load (i32.const 260)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 50))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
