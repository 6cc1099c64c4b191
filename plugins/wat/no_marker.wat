;; Valid wasm with an allocator and a callback but no proxy_abi_version_*
;; export: not a proxy-wasm plugin.
(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
