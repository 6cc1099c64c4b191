;; An ABI 0.2.1 plugin whose proxy_on_request_headers has the 0.1.0 shape
;; (two parameters instead of three).
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0)))
