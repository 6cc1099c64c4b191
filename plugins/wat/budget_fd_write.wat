;; Host budgets (issue 14, item 3): WASI fd_write with huge iovec lists.
;; Memory is 65 MiB + 128 KiB; 64 MiB of `a` (no newline) at 128 KiB,
;; filled once in proxy_on_vm_start.
;;   on_request_headers:
;;     fd_write(1) of 1000 iovecs, each the same 64 MiB: errno at 256,
;;       nwritten at 260
;;     fd_write(1) of 2000 iovecs: errno at 264
;;     fd_write(1) of "done\n": errno at 268
;;   on_response_headers: Continue (the next call works)
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1042)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 48) "done\n")
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
    ;; 2000 iovecs at 64 KiB (16000 bytes), all {131072, 64 MiB}.
    (loop $iov
      (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 8)))
        (i32.const 131072))
      (i32.store (i32.add (i32.const 65540) (i32.mul (local.get $i) (i32.const 8)))
        (i32.const 67108864))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $iov (i32.lt_u (local.get $i) (i32.const 2000))))
    (i32.store (i32.const 256)
      (call $write (i32.const 1) (i32.const 65536) (i32.const 1000) (i32.const 260)))
    (i32.store (i32.const 264)
      (call $write (i32.const 1) (i32.const 65536) (i32.const 2000) (i32.const 280)))
    ;; One iovec {48, 5}: "done\n".
    (i32.store (i32.const 288) (i32.const 48))
    (i32.store (i32.const 292) (i32.const 5))
    (i32.store (i32.const 268)
      (call $write (i32.const 1) (i32.const 288) (i32.const 1) (i32.const 284)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
