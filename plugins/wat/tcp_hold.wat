;; tcp_hold: a network filter that holds the client's bytes until a callout
;; answer or a tick lets them go (`polyhost call --tcp`, cli/tests/call/tcp.rs).
;;
;; - proxy_on_new_connection logs `from <source.address> to
;;   <destination.address>` (the properties the host set on the connection)
;;   and continues, unless the source address starts with `0`: then it
;;   pauses, as a hold with nothing buffered yet (callout and release below).
;; - proxy_on_downstream_data with bytes buffered pauses (an empty end of
;;   stream continues); the first pause of a hold makes an HTTP callout to
;;   cluster `auth` (GET /auth, 1000 ms).
;; - The callout's answer prepends `[auth] ` to the held bytes and resumes
;;   the downstream (proxy_continue_stream(Downstream)); a tick (every 10 ms)
;;   does the same with `[tick] ` while a hold still waits.
;; - proxy_on_upstream_data: a chunk starting with `c` closes the connection
;;   (proxy_close_stream(Upstream)) and continues; one starting with `t`
;;   traps (unreachable); one starting with `o` loads past linear memory
;;   (an out-of-bounds trap); anything else continues unchanged.
;; - The close callbacks log `downstream closed by N` / `upstream closed by
;;   N`, N the peer type (1 Local, 2 Remote).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  ;; The connection holding bytes, and whether it does.
  (global $stream (mut i32) (i32.const 0))
  (global $holding (mut i32) (i32.const 0))
  ;; 8, 12: out-parameters of host calls.
  (data (i32.const 16) "source.address")
  (data (i32.const 32) "destination.address")
  (data (i32.const 56) " to ")
  (data (i32.const 64) "auth")
  ;; :method GET, :path /auth, :authority auth (68 bytes).
  (data (i32.const 80) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\05\00\00\00\0a\00\00\00\04\00\00\00:method\00GET\00:path\00/auth\00:authority\00auth\00")
  ;; No trailers.
  (data (i32.const 160) "\00\00\00\00")
  (data (i32.const 176) "[auth] ")
  (data (i32.const 192) "[tick] ")
  (data (i32.const 208) "downstream closed by 0")
  (data (i32.const 240) "upstream closed by 0")
  ;; The new-connection line is built here.
  (data (i32.const 1024) "from ")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $copy (param $dst i32) (param $src i32) (param $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next))))
  ;; Appends property (path at $path, $len bytes) at $at; returns the end.
  (func $append_property (param $at i32) (param $path i32) (param $len i32) (result i32)
    (if (i32.eqz (call $get_property (local.get $path) (local.get $len) (i32.const 8) (i32.const 12)))
      (then
        (call $copy (local.get $at) (i32.load (i32.const 8)) (i32.load (i32.const 12)))
        (local.set $at (i32.add (local.get $at) (i32.load (i32.const 12))))))
    (local.get $at))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
    (local $p i32)
    (local.set $p (call $append_property (i32.const 1029) (i32.const 16) (i32.const 14)))
    (call $copy (local.get $p) (i32.const 56) (i32.const 4))
    (local.set $p (call $append_property (i32.add (local.get $p) (i32.const 4)) (i32.const 32) (i32.const 19)))
    (drop (call $log (i32.const 2) (i32.const 1024) (i32.sub (local.get $p) (i32.const 1024))))
    (if (i32.eq (i32.load8_u (i32.const 1029)) (i32.const 48))
      (then
        (global.set $stream (local.get $ctx))
        (call $hold)
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.eqz (local.get $size)) (then (return (i32.const 0))))
    (global.set $stream (local.get $ctx))
    (call $hold)
    (i32.const 1))
  ;; Starts a hold, with its callout, unless one waits already.
  (func $hold
    (if (global.get $holding) (then (return)))
    (global.set $holding (i32.const 1))
    (drop (call $http_call
      (i32.const 64) (i32.const 4)
      (i32.const 80) (i32.const 68)
      (i32.const 0) (i32.const 0)
      (i32.const 160) (i32.const 4)
      (i32.const 1000) (i32.const 8))))
  ;; Lets the held bytes go behind the 7-byte marker at $marker.
  (func $release (param $marker i32)
    (if (i32.eqz (global.get $holding)) (then (return)))
    (global.set $holding (i32.const 0))
    (drop (call $effective (global.get $stream)))
    (drop (call $set_buffer (i32.const 2) (i32.const 0) (i32.const 0) (local.get $marker) (i32.const 7)))
    (drop (call $continue (i32.const 2))))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (call $release (i32.const 176)))
  (func (export "proxy_on_tick") (param i32)
    (call $release (i32.const 192)))
  (func (export "proxy_on_upstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $c i32)
    (if (i32.eqz (local.get $size)) (then (return (i32.const 0))))
    (drop (call $get_buffer (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8) (i32.const 12)))
    (local.set $c (i32.load8_u (i32.load (i32.const 8))))
    ;; `c`
    (if (i32.eq (local.get $c) (i32.const 99))
      (then
        (drop (call $close (i32.const 3)))
        (return (i32.const 0))))
    ;; `t`
    (if (i32.eq (local.get $c) (i32.const 116)) (then unreachable))
    ;; `o`
    (if (i32.eq (local.get $c) (i32.const 111))
      (then (drop (i32.load (i32.const -16)))))
    (i32.const 0))
  (func (export "proxy_on_downstream_connection_close") (param $ctx i32) (param $peer i32)
    (i32.store8 (i32.const 229) (i32.add (i32.const 48) (local.get $peer)))
    (drop (call $log (i32.const 2) (i32.const 208) (i32.const 22))))
  (func (export "proxy_on_upstream_connection_close") (param $ctx i32) (param $peer i32)
    (i32.store8 (i32.const 259) (i32.add (i32.const 48) (local.get $peer)))
    (drop (call $log (i32.const 2) (i32.const 240) (i32.const 20)))))
