;; An ABI marker but neither proxy_on_memory_allocate nor malloc: the host
;; could never return data to it.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
