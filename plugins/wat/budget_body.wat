;; Host budgets (issue 14, item 3): repeated proxy_set_buffer_bytes appends.
;;   on_request_body: appends 1 MiB of its own memory to the request body
;;     100 times, whatever the host answers; records at
;;       256  how many appends returned Ok
;;       260  the status of the last append
;;     (the host stops the body at limits.max_body_bytes, 16 MiB by
;;     default, or earlier at limits.max_vm_bytes)
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_set_buffer_bytes"
    (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $i i32)
    (local $status i32)
    (loop $next
      ;; start = 0xffffffff is past the end: an append.
      (local.set $status
        (call $set (i32.const 0) (i32.const -1) (i32.const 0)
          (i32.const 65536) (i32.const 1048576)))
      (i32.store (i32.const 260) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 256)
          (i32.add (i32.load (i32.const 256)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 100))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
