;; WASI clock waits against the callback deadline.
;; `proxy_on_request_headers` asks `poll_oneoff` to sleep u64::MAX
;; nanoseconds on the monotonic clock: the host does not sleep past the
;; deadline but traps at once, and the callback fails as Interrupted naming
;; the deadline. `proxy_on_response_headers` calls `sched_yield` and sleeps
;; 1 ms; it returns Continue only if both answered success (errno 0) and one
;; event came back, and traps otherwise.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  ;; One clock subscription at 1024: userdata 7, tag 0 (clock), clock 1
  ;; (monotonic), relative timeout `$nanos`; events at 2048, count at 3000.
  (func $sleep (param $nanos i64) (result i32)
    (i64.store (i32.const 1024) (i64.const 7))
    (i32.store8 (i32.const 1032) (i32.const 0))
    (i32.store (i32.const 1040) (i32.const 1))
    (i64.store (i32.const 1048) (local.get $nanos))
    (i64.store (i32.const 1056) (i64.const 0))
    (i32.store16 (i32.const 1064) (i32.const 0))
    (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 3000)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $sleep (i64.const -1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.ne (call $yield) (i32.const 0)) (then unreachable))
    (if (i32.ne (call $sleep (i64.const 1000000)) (i32.const 0)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 3000)) (i32.const 1)) (then unreachable))
    (i32.const 0)))
