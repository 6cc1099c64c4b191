;; Not valid WebAssembly: the function claims to return an i32 but leaves
;; an i64 on the stack. Built with `wat2wasm --no-check`, so rejecting it is
;; the host's job.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i64.const 0)))
