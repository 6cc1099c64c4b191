;; A module whose `proxy_abi_version_0_2_1` export is a global, not a
;; function; otherwise a complete plugin (memory, allocator, a callback).
;; The host must refuse it as a bad export on every engine instead of
;; taking the global as the ABI marker.
(module
  (memory (export "memory") 1)
  (global (export "proxy_abi_version_0_2_1") i32 (i32.const 0))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
