;; A root context that defers its shutdown, as a plugin with a callout in
;; flight would: proxy_on_done returns false and the next tick calls
;; proxy_done, after which the host runs proxy_on_delete.
;;   on_vm_start  sets a 10 ms tick
;;   on_tick      calls proxy_done and logs "proxy_done: Ok" or
;;                "proxy_done: NotFound" (no shutdown pending)
;;   on_done      logs "on_done: deferring", returns false
;;   on_delete    logs "on_delete <context id>" for context 1
(module
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "proxy_done: Ok")
  (data (i32.const 96) "proxy_done: NotFound")
  (data (i32.const 128) "on_done: deferring")
  (data (i32.const 160) "on_delete 1")
  (data (i32.const 192) "on_delete of another context")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (i32.eqz (call $done))
      (then (drop (call $log (i32.const 2) (i32.const 64) (i32.const 14))))
      (else (drop (call $log (i32.const 2) (i32.const 96) (i32.const 20))))))
  (func (export "proxy_on_done") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 128) (i32.const 18)))
    (i32.const 0))
  (func (export "proxy_on_delete") (param $ctx i32)
    (if (i32.eq (local.get $ctx) (i32.const 1))
      (then (drop (call $log (i32.const 2) (i32.const 160) (i32.const 11))))
      (else (drop (call $log (i32.const 2) (i32.const 192) (i32.const 28)))))))
