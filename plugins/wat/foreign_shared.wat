;; Foreign functions and shared data, for `polyhost call` runs with several
;; plugins (cli/tests/call/multi.rs). On each request, `proxy_on_request_headers`:
;;
;;   1. reads the shared data key `greeting` of its vm_id and logs, at info,
;;      "shared greeting=<value>" (or "shared greeting=?" when there is none);
;;   2. sets `greeting` to "hi from <plugin_name>";
;;   3. when its plugin configuration is not empty, calls the foreign
;;      function of that name with the argument bytes "ping" and logs
;;      "foreign <name> status <status> answer <bytes>" (no bytes unless the
;;      status is 0);
;;
;; then continues. No other callback is exported.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property"
    (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data"
    (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data"
    (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_foreign_function"
    (func $call_foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "shared greeting=")
  (data (i32.const 32) "greeting")
  (data (i32.const 48) "hi from ")
  (data (i32.const 64) "plugin_name")
  (data (i32.const 80) "ping")
  (data (i32.const 96) "foreign ")
  (data (i32.const 120) "?")
  (data (i32.const 136) " status ")
  (data (i32.const 152) " answer ")
  ;; 256: data pointer and 260: length returned by host calls; 268: CAS.
  ;; 1024..4096: the line (or value) being built, $len bytes so far.
  (global $len (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))

  ;; Appends $n bytes from $p to the line (what does not fit is dropped).
  (func $put (param $p i32) (param $n i32)
    (local $i i32)
    (block $end
      (loop $next
        (br_if $end (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $end (i32.ge_u (global.get $len) (i32.const 3072)))
        (i32.store8
          (i32.add (i32.const 1024) (global.get $len))
          (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (global.set $len (i32.add (global.get $len) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; Appends unsigned $v in decimal.
  (func $put_num (param $v i32)
    (local $digits i32) (local $t i32) (local $i i32)
    (local.set $digits (i32.const 1))
    (local.set $t (local.get $v))
    (block $done
      (loop $count
        (br_if $done (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (br $count)))
    (local.set $i (local.get $digits))
    (loop $write
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8
        (i32.add (i32.add (i32.const 1024) (global.get $len)) (local.get $i))
        (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $write (i32.gt_u (local.get $i) (i32.const 0))))
    (global.set $len (i32.add (global.get $len) (local.get $digits))))

  ;; Appends what the last host call returned at 256/260, or `?` if it
  ;; failed.
  (func $put_result (param $status i32)
    (if (i32.eqz (local.get $status))
      (then (call $put (i32.load (i32.const 256)) (i32.load (i32.const 260))))
      (else (call $put (i32.const 120) (i32.const 1)))))

  (func $flush
    (drop (call $log (i32.const 2) (i32.const 1024) (global.get $len))))

  (func (export "proxy_on_request_headers")
    (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $name i32) (local $name_len i32) (local $status i32)
    ;; 1. What the shared data says now.
    (global.set $len (i32.const 0))
    (call $put (i32.const 0) (i32.const 16))
    (call $put_result
      (call $get_shared (i32.const 32) (i32.const 8)
        (i32.const 256) (i32.const 260) (i32.const 268)))
    (call $flush)
    ;; 2. "hi from <plugin_name>", built in the line buffer, stored.
    (global.set $len (i32.const 0))
    (call $put (i32.const 48) (i32.const 8))
    (call $put_result
      (call $get_property (i32.const 64) (i32.const 11) (i32.const 256) (i32.const 260)))
    (drop (call $set_shared (i32.const 32) (i32.const 8)
      (i32.const 1024) (global.get $len) (i32.const 0)))
    ;; 3. The foreign function the configuration names, if any.
    (if (i32.eqz
          (call $get_buffer (i32.const 7) (i32.const 0) (i32.const -1)
            (i32.const 256) (i32.const 260)))
      (then
        (local.set $name (i32.load (i32.const 256)))
        (local.set $name_len (i32.load (i32.const 260)))
        (if (i32.gt_u (local.get $name_len) (i32.const 0))
          (then
            (i32.store (i32.const 256) (i32.const 0))
            (i32.store (i32.const 260) (i32.const 0))
            (local.set $status
              (call $call_foreign (local.get $name) (local.get $name_len)
                (i32.const 80) (i32.const 4) (i32.const 256) (i32.const 260)))
            (global.set $len (i32.const 0))
            (call $put (i32.const 96) (i32.const 8))
            (call $put (local.get $name) (local.get $name_len))
            (call $put (i32.const 136) (i32.const 8))
            (call $put_num (local.get $status))
            (call $put (i32.const 152) (i32.const 8))
            (if (i32.eqz (local.get $status))
              (then (call $put (i32.load (i32.const 256)) (i32.load (i32.const 260)))))
            (call $flush)))))
    (i32.const 0)))
