;; Imports a real host function (proxy_log takes three i32s) with the wrong
;; signature.
(module
  (import "env" "proxy_log" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096)))
