;; Several root contexts in one VM (Envoy: plugins with the same vm_id share
;; a VM, each with its own root context). Every callback logs, at info, what
;; it was called with and what the host shows the context it runs in, so a
;; test can check which root each call was made for:
;;
;;   proxy_on_context_create(c, p)   "create <c> <p> root_id=<plugin_root_id>"
;;   proxy_on_vm_start(c, _)         "vm_start <c> config=<VM configuration>"
;;   proxy_on_configure(c, _)        "configure <c> config=<plugin configuration>
;;                                    name=<plugin_name> root_id=<plugin_root_id>"
;;   proxy_on_request_headers(c, ..) "request <c> config=.. name=.. root_id=.."
;;   proxy_on_tick(c)                "tick <c>"
;;   proxy_on_queue_ready(c, q)      "queue <c> <q> <first message dequeued>"
;;   proxy_on_foreign_function(c, f) "foreign <c> <f>"
;;   proxy_on_done(c)                "done <c>" (returns true)
;;   proxy_on_delete(c)              "delete <c>"
;;
;; proxy_on_configure also sets the tick period to 10 ms times the context
;; id, registers a shared queue named after the plugin configuration, and
;; rejects a configuration that starts with `!`. A property or buffer the
;; host does not have is logged as `?`.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property"
    (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds"
    (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_register_shared_queue"
    (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue"
    (func $dequeue (param i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "create ")
  (data (i32.const 16) "vm_start ")
  (data (i32.const 32) "configure ")
  (data (i32.const 48) "tick ")
  (data (i32.const 64) "queue ")
  (data (i32.const 80) "done ")
  (data (i32.const 96) "delete ")
  (data (i32.const 112) "request ")
  (data (i32.const 128) "plugin_root_id")
  (data (i32.const 144) "plugin_name")
  (data (i32.const 160) " config=")
  (data (i32.const 176) " name=")
  (data (i32.const 192) " root_id=")
  (data (i32.const 208) " ")
  (data (i32.const 224) "foreign ")
  (data (i32.const 240) "?")
  ;; 256: data pointer and 260: length returned by host calls; 264: queue id.
  ;; 1024..4096: the log line being built, $len bytes so far.
  (global $len (mut i32) (i32.const 0))
  (global $heap (mut i32) (i32.const 4096))
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
      (else (call $put (i32.const 240) (i32.const 1)))))

  (func $put_property (param $path i32) (param $n i32)
    (call $put_result
      (call $get_property (local.get $path) (local.get $n) (i32.const 256) (i32.const 260))))

  (func $put_buffer (param $type i32)
    (call $put_result
      (call $get_buffer (local.get $type) (i32.const 0) (i32.const -1)
        (i32.const 256) (i32.const 260))))

  ;; Starts a line with $n bytes at $p and the context id.
  (func $begin (param $p i32) (param $n i32) (param $ctx i32)
    (global.set $len (i32.const 0))
    (call $put (local.get $p) (local.get $n))
    (call $put_num (local.get $ctx)))

  (func $flush
    (drop (call $log (i32.const 2) (i32.const 1024) (global.get $len))))

  ;; " config=.. name=.. root_id=.." as the current root sees them.
  (func $put_plugin
    (call $put (i32.const 160) (i32.const 8))
    (call $put_buffer (i32.const 7))
    (call $put (i32.const 176) (i32.const 6))
    (call $put_property (i32.const 144) (i32.const 11))
    (call $put (i32.const 192) (i32.const 9))
    (call $put_property (i32.const 128) (i32.const 14)))

  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (call $begin (i32.const 0) (i32.const 7) (local.get $ctx))
    (call $put (i32.const 208) (i32.const 1))
    (call $put_num (local.get $parent))
    (call $put (i32.const 192) (i32.const 9))
    (call $put_property (i32.const 128) (i32.const 14))
    (call $flush))

  (func (export "proxy_on_vm_start") (param $ctx i32) (param $size i32) (result i32)
    (call $begin (i32.const 16) (i32.const 9) (local.get $ctx))
    (call $put (i32.const 160) (i32.const 8))
    (call $put_buffer (i32.const 6))
    (call $flush)
    (i32.const 1))

  (func (export "proxy_on_configure") (param $ctx i32) (param $size i32) (result i32)
    (local $ok i32)
    (local.set $ok (i32.const 1))
    (if (i32.eqz
          (call $get_buffer (i32.const 7) (i32.const 0) (i32.const -1)
            (i32.const 256) (i32.const 260)))
      (then
        (drop (call $register (i32.load (i32.const 256)) (i32.load (i32.const 260))
          (i32.const 264)))
        (if (i32.and
              (i32.gt_u (i32.load (i32.const 260)) (i32.const 0))
              (i32.eq (i32.load8_u (i32.load (i32.const 256))) (i32.const 33)))
          (then (local.set $ok (i32.const 0))))))
    (drop (call $set_tick (i32.mul (local.get $ctx) (i32.const 10))))
    (call $begin (i32.const 32) (i32.const 10) (local.get $ctx))
    (call $put_plugin)
    (call $flush)
    (local.get $ok))

  (func (export "proxy_on_request_headers")
    (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (call $begin (i32.const 112) (i32.const 8) (local.get $ctx))
    (call $put_plugin)
    (call $flush)
    (i32.const 0))

  (func (export "proxy_on_tick") (param $ctx i32)
    (call $begin (i32.const 48) (i32.const 5) (local.get $ctx))
    (call $flush))

  (func (export "proxy_on_queue_ready") (param $ctx i32) (param $queue i32)
    (call $begin (i32.const 64) (i32.const 6) (local.get $ctx))
    (call $put (i32.const 208) (i32.const 1))
    (call $put_num (local.get $queue))
    (call $put (i32.const 208) (i32.const 1))
    (call $put_result
      (call $dequeue (local.get $queue) (i32.const 256) (i32.const 260)))
    (call $flush))

  (func (export "proxy_on_foreign_function")
    (param $ctx i32) (param $function i32) (param $size i32)
    (call $begin (i32.const 224) (i32.const 8) (local.get $ctx))
    (call $put (i32.const 208) (i32.const 1))
    (call $put_num (local.get $function))
    (call $flush))

  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (call $begin (i32.const 80) (i32.const 5) (local.get $ctx))
    (call $flush)
    (i32.const 1))

  (func (export "proxy_on_delete") (param $ctx i32)
    (call $begin (i32.const 96) (i32.const 7) (local.get $ctx))
    (call $flush)))
