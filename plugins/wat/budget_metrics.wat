;; Host budgets: metrics are process-wide and live as long as the process,
;; so the store bounds itself; a new metric past the bound is refused with
;; BadArgument and reported once per VM like the VM's limits.
;;   on_request_headers:
;;     proxy_define_metric of 40 counters, each named by 1000 bytes that
;;       start with two letters of its own (`aa`, `ab`, ...): how many
;;       returned Ok at 256, the last status at 260
;;     proxy_define_metric of the first name again as a gauge: its status
;;       at 264 (BadArgument: the name is taken by a counter, no limit)
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_define_metric"
    (func $define (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 40000))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    ;; The name: 1000 bytes of `x` at 4096, its first two set per metric.
    (memory.fill (i32.const 4096) (i32.const 120) (i32.const 1000))
    (loop $next
      (i32.store8 (i32.const 4096)
        (i32.add (i32.const 97) (i32.div_u (local.get $i) (i32.const 26))))
      (i32.store8 (i32.const 4097)
        (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 26))))
      (local.set $status
        (call $define (i32.const 0) (i32.const 4096) (i32.const 1000) (i32.const 272)))
      (i32.store (i32.const 260) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 256)
          (i32.add (i32.load (i32.const 256)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 40))))
    ;; `aa...` again, as a gauge.
    (i32.store8 (i32.const 4096) (i32.const 97))
    (i32.store8 (i32.const 4097) (i32.const 97))
    (i32.store (i32.const 264)
      (call $define (i32.const 1) (i32.const 4096) (i32.const 1000) (i32.const 272)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
