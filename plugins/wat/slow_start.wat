;; A plugin with a slow start: `proxy_on_vm_start` spins on the host clock
;; for 300 ms (more than a callback's 100 ms deadline, less than the 1 s
;; start-up limit), as a language runtime's initialisation may on an
;; interpreter. `proxy_on_configure` loops forever when the plugin is given a
;; configuration, so the start-up limit itself can be seen to hold.
(module
  (import "env" "proxy_get_current_time_nanoseconds"
    (func $now (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $clock (result i64)
    (drop (call $now (i32.const 0)))
    (i64.load (i32.const 0)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (local $until i64)
    (local.set $until (i64.add (call $clock) (i64.const 300000000)))
    (loop $spin
      (br_if $spin (i64.lt_u (call $clock) (local.get $until))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (if (i32.gt_s (local.get $size) (i32.const 0))
      (then (loop $forever (br $forever))))
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
