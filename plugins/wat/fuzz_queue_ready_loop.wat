;; Found by the fuzzer (polyhost/tests/all/fuzz.rs, `scripts/fuzz.sh` seed
;; 12855727760757030224 on every engine), shrunk by hand.
;;
;; `proxy_on_queue_ready` enqueues into the queue it is told about. The host
;; used to deliver queue notifications until none were left, while each
;; delivery added a new one: `Vm::deliver_queue_ready` never returned, and no
;; deadline stopped it because every single callback was quick. A delivery
;; now handles only the notifications pending when it starts; the one the
;; plugin adds is delivered by the next call.
;;
;; `proxy_on_vm_start` registers queue "queue" (id stored at 32) and
;; enqueues one message, so the first delivery has one notification.
(module
  (import "env" "proxy_register_shared_queue"
    (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue"
    (func $enqueue (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "queue")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $register (i32.const 16) (i32.const 5) (i32.const 32)))
    (drop (call $enqueue (i32.load (i32.const 32)) (i32.const 16) (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (drop (call $enqueue (local.get 1) (i32.const 16) (i32.const 5)))))
