;; Host budgets (issue 14, item 3): the VM's total (limits.max_vm_bytes)
;; through proxy_set_property, whose keys are unbounded.
;;   on_request_headers: sets properties `p0`..`p9` on the stream, each a
;;     1 MiB value of its own memory; records how many returned Ok at 256
;;     and the last status at 260
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_set_property"
    (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "p0")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    (i32.store (i32.const 256) (i32.const 0))
    (loop $next
      (i32.store8 (i32.const 17) (i32.add (i32.const 48) (local.get $i)))
      (local.set $status
        (call $set (i32.const 16) (i32.const 2) (i32.const 65536) (i32.const 1048576)))
      (i32.store (i32.const 260) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 256)
          (i32.add (i32.load (i32.const 256)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 10))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
