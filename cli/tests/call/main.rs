//! `polyhost call` and `polyhost compile` as a user runs them: bounded
//! reads, one answer for a text module on every engine, the module cache,
//! and many headers; `polyhost call --tcp` in tcp.rs; several plugins at
//! once in multi.rs.

mod bench;
mod multi;
mod tcp;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(relative: &str) -> String {
    let path = root().join("build/plugins").join(relative);
    assert!(
        path.exists(),
        "missing fixture {} (run scripts/setup.sh)",
        path.display()
    );
    path.display().to_string()
}

fn polyhost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_polyhost"))
        .args(args)
        .output()
        .expect("polyhost runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with exit code 2 and a first error line containing `needle`.
fn assert_fails(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}\n{}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(err.contains(needle), "`{needle}` not in:\n{err}");
}

fn engines() -> Vec<String> {
    let o = polyhost(&["engines"]);
    assert!(o.status.success());
    stdout(&o)
        .lines()
        .map(|l| l.trim_end_matches(" (default)").to_string())
        .collect()
}

#[test]
fn unbounded_files_are_refused_naming_file_and_limit() {
    let hello = fixture("rust-wasip1/hello.wasm");
    let o = polyhost(&["call", "/dev/zero", "--no-cache"]);
    assert_fails(&o, "plugin `/dev/zero` is larger than the 256 MiB limit");
    let o = polyhost(&["call", &hello, "--no-cache", "--config", "/dev/zero"]);
    assert_fails(&o, "config `/dev/zero` is larger than the 16 MiB limit");
    let o = polyhost(&["call", &hello, "--no-cache", "--body-file", "/dev/zero"]);
    assert_fails(
        &o,
        "request body `/dev/zero` is larger than the 16 MiB limit",
    );
    let o = polyhost(&["compile", "/dev/zero", "--cache-dir", "/nonexistent"]);
    assert_fails(&o, "plugin `/dev/zero` is larger than the 256 MiB limit");
}

#[test]
fn body_files_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.bin");
    std::fs::write(&body, b"from a file").unwrap();
    let o = polyhost(&[
        "call",
        &fixture("rust-wasip1/noop.wasm"),
        "--no-cache",
        "--body-file",
        body.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("request body: unchanged (11 bytes)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn text_modules_get_the_same_answer_on_every_engine() {
    let source = root().join("plugins/wat/no_callbacks.wat");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut answers = Vec::new();
    for engine in engines() {
        for cache_args in [
            vec!["--no-cache"],
            vec!["--cache-dir", cache.to_str().unwrap()],
        ] {
            let mut args = vec!["call", source.to_str().unwrap(), "--engine", &engine];
            args.extend(&cache_args);
            let o = polyhost(&args);
            assert_fails(&o, "this is WebAssembly text, not a binary module");
            // The error's own lines, without the engine-independent hint.
            answers.push((engine.clone(), stderr(&o)));
        }
    }
    for (engine, text) in &answers {
        assert_eq!(text, &answers[0].1, "{engine} answers differently");
    }
}

#[test]
fn call_loads_through_the_cache_and_refuses_an_open_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let hello = fixture("rust-wasip1/hello.wasm");
    let call = || {
        polyhost(&[
            "call",
            &hello,
            "--engine",
            "wasmtime",
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };
    for _ in 0..2 {
        let o = call();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("+ x-hello: polyhost"), "{}", stdout(&o));
    }
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].ends_with(".cwasm"), "{entries:?}");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    // `compile` filled the same entry: it is a hit now.
    let o = polyhost(&[
        "compile",
        &hello,
        "--engine",
        "wasmtime",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(stdout(&o).contains("already cached"), "{}", stdout(&o));

    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = call();
    assert_fails(
        &o,
        &format!("module cache at {} is refused", cache.display()),
    );
    assert_fails(&o, "writable by everyone");
    let o = polyhost(&["call", &hello, "--engine", "wasmtime", "--no-cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn compile_with_a_zero_bound_prints_no_cached_path() {
    let dir = tempfile::tempdir().unwrap();
    let o = polyhost(&[
        "compile",
        &fixture("rust-wasip1/noop.wasm"),
        "--engine",
        "wasmtime",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "--max-mib",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("not cached"), "{out}");
    assert!(!out.contains("->"), "{out}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn many_request_headers_are_reported_exactly() {
    let headers: Vec<String> = (0..20_000).map(|i| format!("x-h{i}:v{i}")).collect();
    let mut args = vec!["call", "--no-cache", "--engine", "wasmtime"];
    let noop = fixture("rust-wasip1/noop.wasm");
    args.push(&noop);
    for h in &headers {
        args.push("-H");
        args.push(h);
    }
    let o = polyhost(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("request headers: unchanged"), "{out}");
    assert!(out.contains("decision: continue"), "{out}");
}

/// The data plane loads a plugin with `vm_config.allow_precompiled` through
/// the module cache in the platform cache directory (here
/// `$XDG_CACHE_HOME/polyhost`), the folder `polyhost compile` fills.
#[test]
fn data_plane_loads_allow_precompiled_plugins_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hello = fixture("rust-wasip1/hello.wasm");
    let config = dir.path().join("envoy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200 }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: hello
                vm_config:
                  allow_precompiled: true
                  code: {{ local: {{ filename: "{hello}" }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
        ),
    )
    .unwrap();
    let cache_home = dir.path().join("xdg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polyhost"))
        .args(["run", "-c", config.to_str().unwrap(), "--concurrency", "1"])
        .env("XDG_CACHE_HOME", &cache_home)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cache = cache_home.join("polyhost");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let entries = loop {
        let entries: Vec<String> = std::fs::read_dir(&cache)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".cwasm"))
                    .collect()
            })
            .unwrap_or_default();
        let exited = child.try_wait().unwrap();
        if !entries.is_empty() || exited.is_some() || std::time::Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(entries.len(), 1, "no cache entry in {}", cache.display());
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

/// Sets `root.note` from `proxy_on_configure` (a root context, no stream)
/// and `stream.note` from the request headers callback.
const SETS_PROPERTIES: &str = r#"
(module
  (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 64) "root.note")
  (data (i32.const 80) "from-configure")
  (data (i32.const 96) "stream.note")
  (data (i32.const 112) "from-request")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $set (i32.const 64) (i32.const 9) (i32.const 80) (i32.const 14)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $set (i32.const 96) (i32.const 11) (i32.const 112) (i32.const 12)))
    (i32.const 0)))
"#;

#[test]
fn properties_set_from_the_root_context_are_listed_too() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("sets_properties.wasm");
    std::fs::write(&plugin, wat::parse_str(SETS_PROPERTIES).unwrap()).unwrap();
    for engine in engines() {
        let o = polyhost(&[
            "call",
            plugin.to_str().unwrap(),
            "--engine",
            &engine,
            "--no-cache",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{engine}: {}", stderr(&o));
        assert!(
            out.contains("property root.note = \"from-configure\""),
            "{engine}: {out}"
        );
        assert!(
            out.contains("property stream.note = \"from-request\""),
            "{engine}: {out}"
        );
    }
}
