;; `proxy_on_request_headers` loops forever without calling the host;
;; `proxy_on_response_headers` returns Continue at once. Only the callback
;; deadline (EngineConfig::call_timeout, on by default) stops the loop: the
;; request callback fails as Interrupted, naming the deadline, and a new VM
;; of the same plugin serves responses.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
