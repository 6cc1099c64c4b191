;; A module whose linear memory is not exported; a global is exported under
;; the name `memory` instead. Otherwise a complete plugin (marker,
;; allocator, a callback). The host cannot reach the plugin's data, so it
;; must refuse the module at load time, with the same message as for a
;; module without memory, on every engine.
(module
  (memory 1)
  (global (export "memory") i32 (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))
