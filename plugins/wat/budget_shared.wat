;; Host budgets (issue 14, item 3): shared data and shared queues are
;; process-wide, so their stores bound themselves; a refusal reaches the
;; plugin as BadArgument and is reported once per VM like the VM's limits.
;;   on_request_headers:
;;     proxy_set_shared_data of `k0`..`k9`, each a 1 MiB value: how many
;;       returned Ok at 256, the last status at 260
;;     proxy_register_shared_queue `q`, then 10 enqueues of 1 MiB: how
;;       many returned Ok at 264, the last status at 268
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_set_shared_data"
    (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue"
    (func $enqueue (param i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "k0")
  (data (i32.const 32) "q")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    (loop $next
      (i32.store8 (i32.const 17) (i32.add (i32.const 48) (local.get $i)))
      (local.set $status
        (call $set (i32.const 16) (i32.const 2) (i32.const 65536) (i32.const 1048576)
          (i32.const 0)))
      (i32.store (i32.const 260) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 256)
          (i32.add (i32.load (i32.const 256)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 10))))
    (drop (call $register (i32.const 32) (i32.const 1) (i32.const 272)))
    (local.set $i (i32.const 0))
    (loop $next
      (local.set $status
        (call $enqueue (i32.load (i32.const 272)) (i32.const 65536) (i32.const 1048576)))
      (i32.store (i32.const 268) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 264)
          (i32.add (i32.load (i32.const 264)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 10))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
