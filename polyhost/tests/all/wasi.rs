//! WASI preview1 as plugins see it.

use crate::harness::{Services, engine_tests, log_texts, start, wat_plugin};
use polyhost::engine_core::{HostContext, Instance, Value};
use polyhost::{Engine, PluginConfig, PluginErrorKind, Vm};

engine_tests!(
    wasi_calls_behave_like_the_reference_host,
    proc_exit_ends_the_call
);

const IMPORTS: &str = r#"
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_unstable" "fd_write" (func $fd_write_old (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
"#;

const BODY: &str = r#"
    (data (i32.const 100) "to stdout\n")
    (data (i32.const 120) "to stderr\n")
    ;; iovec at 200 -> (100, 10); iovec at 208 -> (120, 10)
    (data (i32.const 200) "\64\00\00\00\0a\00\00\00\78\00\00\00\0a\00\00\00")
    (func (export "write") (param $fd i32) (param $iov i32) (result i32)
        (call $fd_write (local.get $fd) (local.get $iov) (i32.const 1) (i32.const 300)))
    (func (export "write_old") (result i32)
        (call $fd_write_old (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 300)))
    (func (export "written") (result i32) (i32.load (i32.const 300)))
    (func (export "env_sizes") (result i32) (call $env_sizes (i32.const 400) (i32.const 404)))
    (func (export "env_get") (result i32) (call $env_get (i32.const 408) (i32.const 1024)))
    (func (export "args_sizes") (result i32) (call $args_sizes (i32.const 400) (i32.const 404)))
    (func (export "random") (param $n i32) (result i32) (call $random (i32.const 8192) (local.get $n)))
    (func (export "clock") (param $id i32) (result i32) (call $clock (local.get $id) (i64.const 1) (i32.const 500)))
    (func (export "poll_sleep") (result i32)
        ;; One clock subscription: userdata 77, monotonic clock, 1 ms relative.
        (i64.store (i32.const 600) (i64.const 77))
        (i32.store8 (i32.const 608) (i32.const 0))
        (i32.store (i32.const 616) (i32.const 1))
        (i64.store (i32.const 624) (i64.const 1000000))
        (i32.store16 (i32.const 640) (i32.const 0))
        (call $poll (i32.const 600) (i32.const 700) (i32.const 1) (i32.const 760)))
    (func (export "path_open") (result i32)
        (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 800)))
    (func (export "prestat") (param $fd i32) (result i32) (call $prestat (local.get $fd) (i32.const 800)))
    (func (export "fdstat") (param $fd i32) (result i32) (call $fdstat (local.get $fd) (i32.const 800)))
    (func (export "yield") (result i32) (call $yield))
    (func (export "exit") (param $code i32) (call $exit (local.get $code)))
"#;

fn call<E: Engine>(vm: &mut Vm<E>, f: &str, args: &[i32]) -> i32 {
    let args: Vec<Value> = args.iter().map(|a| Value::I32(*a)).collect();
    match vm.instance().call_dynamic(f, &args).unwrap().as_slice() {
        [Value::I32(v)] => *v,
        other => panic!("{f} returned {other:?}"),
    }
}

fn u32_at<E: Engine>(vm: &mut Vm<E>, at: u32) -> u32 {
    vm.instance().read_u32(at).unwrap()
}

fn wasi_calls_behave_like_the_reference_host<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        env: vec![("MODE".into(), "test".into())],
        allowed_env: vec!["POLYHOST_SURELY_UNSET_VARIABLE".into()],
        ..PluginConfig::named("wasi")
    };
    let (_, mut vm) = start(&engine, &wat_plugin(IMPORTS, BODY), config, &services);
    // stdout and stderr become log lines.
    assert_eq!(call(&mut vm, "write", &[1, 200]), 0);
    assert_eq!(call(&mut vm, "written", &[]), 10);
    assert_eq!(call(&mut vm, "write", &[2, 208]), 0);
    assert_eq!(call(&mut vm, "write_old", &[]), 0);
    assert_eq!(call(&mut vm, "write", &[7, 200]), 8, "BADF");
    assert_eq!(
        log_texts(&vm),
        ["info to stdout", "error to stderr", "info to stdout"]
    );
    // Only the operator's variables are visible.
    assert_eq!(call(&mut vm, "env_sizes", &[]), 0);
    assert_eq!((u32_at(&mut vm, 400), u32_at(&mut vm, 404)), (1, 10));
    assert_eq!(call(&mut vm, "env_get", &[]), 0);
    assert_eq!(u32_at(&mut vm, 408), 1024);
    assert_eq!(vm.instance().read_vec(1024, 10).unwrap(), b"MODE=test\0");
    assert_eq!(call(&mut vm, "args_sizes", &[]), 0);
    assert_eq!((u32_at(&mut vm, 400), u32_at(&mut vm, 404)), (0, 0));
    // random_get fills at most 64 KiB per call.
    assert_eq!(call(&mut vm, "random", &[64]), 0);
    assert_ne!(vm.instance().read_vec(8192, 64).unwrap(), vec![0; 64]);
    assert_eq!(call(&mut vm, "random", &[65537]), 28, "INVAL");
    // Clocks: realtime is the wall clock, unknown clock ids are INVAL.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert_eq!(call(&mut vm, "clock", &[0]), 0);
    let t = u64::from(u32_at(&mut vm, 500)) | (u64::from(u32_at(&mut vm, 504)) << 32);
    assert!(t >= now && t < now + 60_000_000_000, "{t} vs {now}");
    assert_eq!(call(&mut vm, "clock", &[1]), 0);
    assert_eq!(call(&mut vm, "clock", &[9]), 28);
    // poll_oneoff waits for a clock subscription and reports it.
    assert_eq!(call(&mut vm, "poll_sleep", &[]), 0);
    assert_eq!(u32_at(&mut vm, 760), 1);
    assert_eq!(u32_at(&mut vm, 700), 77);
    // No file system: no pre-opens, path_open is NOSYS.
    assert_eq!(call(&mut vm, "prestat", &[3]), 8);
    assert_eq!(call(&mut vm, "path_open", &[]), 52);
    assert_eq!(call(&mut vm, "fdstat", &[1]), 0);
    assert_eq!(
        vm.instance().read_vec(800, 1).unwrap(),
        [2],
        "character device"
    );
    assert_eq!(call(&mut vm, "fdstat", &[9]), 8);
    assert_eq!(call(&mut vm, "yield", &[]), 0);
}

fn proc_exit_ends_the_call<E: Engine>(engine: E) {
    let services = Services::new();
    let (_, mut vm) = start(
        &engine,
        &wat_plugin(IMPORTS, BODY),
        PluginConfig::named("exiter"),
        &services,
    );
    let err = vm
        .instance()
        .call_dynamic("exit", &[Value::I32(3)])
        .unwrap_err();
    assert!(err.to_string().contains("proc_exit(3)"), "{err}");
    let _ = PluginErrorKind::Trap;
}
