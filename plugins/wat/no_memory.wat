;; A module with the 0.2.1 marker, an allocator and a callback but no
;; linear memory at all: every host call would have nowhere to read or
;; write, so the host must refuse it at load time on every engine.
(module
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
