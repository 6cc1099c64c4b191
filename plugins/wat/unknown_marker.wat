;; A marker from an ABI version this host does not know.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_9_9_9"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096)))
