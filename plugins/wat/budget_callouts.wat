;; Host budgets (issue 14, item 3): callout requests count against the VM's
;; total (limits.max_vm_bytes) until they are answered.
;;   on_request_headers: proxy_http_call to `backend` (GET /) with a 1 MiB
;;     body, 10 times; records how many returned Ok at 256 (reset first)
;;     and the last status at 260
;;   on_response_headers: Continue (the next call works)
(module
  (import "env" "proxy_http_call"
    (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 20)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "backend")
  ;; The request headers, serialized: :method GET, :path /, :authority backend.
  (data (i32.const 512) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00\0a\00\00\00\07\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\00\3a\61\75\74\68\6f\72\69\74\79\00\62\61\63\6b\65\6e\64\00")
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
      (local.set $status
        (call $call (i32.const 16) (i32.const 7) (i32.const 512) (i32.const 67)
          (i32.const 65536) (i32.const 1048576) (i32.const 0) (i32.const 0)
          (i32.const 1000) (i32.const 264)))
      (i32.store (i32.const 260) (local.get $status))
      (if (i32.eqz (local.get $status))
        (then (i32.store (i32.const 256)
          (i32.add (i32.load (i32.const 256)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 10))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0)))
