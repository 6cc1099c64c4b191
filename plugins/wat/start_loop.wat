;; A module whose start function loops forever. The start section runs
;; while the VM is being made, before any callback: the start-up limit must
;; stop it on every engine (wasmer runs it after instantiation for that,
;; see engine-wasmer/src/start.rs), and making the VM fails as Interrupted.
(module
  (memory (export "memory") 1)
  (func $start (loop $forever (br $forever)))
  (start $start)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (i32.const 1024)))
