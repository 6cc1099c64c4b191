//! Plugins whose VM is configured the same share one VM per worker, each
//! with its own root context, as in Envoy; a reload that removes one shuts
//! its root down while the others keep serving from the same VM.

use crate::harness::*;

/// `plugins/wat/roots.wat`: logs every callback with the context it ran
/// in and what the host shows it (`create <ctx> <parent> root_id=..`,
/// `configure <ctx> config=.. name=.. root_id=..`, `request <ctx> ..`,
/// `done <ctx>`, `delete <ctx>`).
fn roots_plugin(dir: &std::path::Path) -> String {
    let wasm = wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/wat/roots.wat"
    ))
    .expect("plugins/wat/roots.wat");
    let path = dir.join("roots.wasm");
    std::fs::write(&path, wasm).unwrap();
    path.display().to_string()
}

fn plugin(name: &str, root_id: &str, vm_id: &str, engine: &str, file: &str) -> WasmFilterSpec {
    let mut spec = WasmFilterSpec::new(name, engine, file);
    spec.root_id = root_id.into();
    spec.vm_id = vm_id.into();
    spec.configuration = format!("cfg-{name}");
    spec
}

/// Whether a plugin log line of `name` (root id, VM id) says `message`.
fn logged(log: &str, name: &str, root_id: &str, vm_id: &str, message: &str) -> bool {
    let needle = format!("wasm log {name} {root_id} {vm_id}: {message}");
    log.lines().any(|l| l.ends_with(&needle))
}

#[test]
fn plugins_with_one_vm_configuration_share_a_vm_per_worker_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let file = roots_plugin(dir.path());
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let alpha = plugin("alpha", "ra", "shared", engine, &file);
        let beta = plugin("beta", "rb", "shared", engine, &file);
        let gamma = plugin("gamma", "rc", "other", engine, &file);
        let config = |plugins: &[WasmFilterSpec]| {
            bootstrap(&[http_listener("in", port, plugins)], upstream.addr, admin)
        };
        let proxy = Proxy::start(
            &config(&[alpha, beta, gamma]),
            admin,
            &["--concurrency", "1"],
        );
        let what = |step: &str| format!("{engine}: {step}\n{}", proxy.stderr());

        let reply = get(&format!("http://127.0.0.1:{port}/one"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{}", what("first request"));
        let log = proxy.stderr();
        // The worker's VM of `shared` started for alpha (root 1), and beta
        // joined it as root 2 with its own configuration.
        assert!(
            logged(
                &log,
                "alpha",
                "ra",
                "shared",
                "configure 1 config=cfg-alpha name=alpha root_id=ra"
            ),
            "{}",
            what("alpha's root")
        );
        assert!(
            logged(
                &log,
                "beta",
                "rb",
                "shared",
                "configure 2 config=cfg-beta name=beta root_id=rb"
            ),
            "{}",
            what("beta is the second root of alpha's VM")
        );
        // Each request context hangs off its own plugin's root.
        for (name, root_id, parent) in [("alpha", "ra", 1), ("beta", "rb", 2)] {
            let created = log.lines().find_map(|l| {
                let tail = l
                    .split_once(&format!("wasm log {name} {root_id} shared: create "))?
                    .1;
                let (ctx, rest) = tail.split_once(' ')?;
                (rest == format!("{parent} root_id={root_id}")).then(|| ctx.to_string())
            });
            let ctx = created.unwrap_or_else(|| panic!("{}", what(&format!("{name}'s stream"))));
            assert!(
                logged(
                    &log,
                    name,
                    root_id,
                    "shared",
                    &format!("request {ctx} config=cfg-{name} name={name} root_id={root_id}")
                ),
                "{}",
                what(&format!("{name}'s request callback"))
            );
        }
        // gamma has a VM id of its own, so its own VM, where it is root 1.
        assert!(
            logged(
                &log,
                "gamma",
                "rc",
                "other",
                "configure 1 config=cfg-gamma name=gamma root_id=rc"
            ),
            "{}",
            what("gamma's root")
        );
        assert!(
            !log.contains("configure 2 config=cfg-gamma"),
            "{}",
            what("gamma joined another VM")
        );
        assert!(
            !log.contains("configure 3 "),
            "{}",
            what("a third root in one VM")
        );

        // Without alpha, beta keeps serving from the same VM, and alpha's
        // root is shut down there (done, delete) once it is dropped.
        let beta = plugin("beta", "rb", "shared", engine, &file);
        let gamma = plugin("gamma", "rc", "other", engine, &file);
        let line = proxy.reload(&config(&[beta, gamma]), 1);
        assert!(line.contains("plugins_loaded=0"), "{}", what(&line));
        let reply = get(&format!("http://127.0.0.1:{port}/two"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{}", what("after the reload"));
        assert!(
            eventually(|| {
                let log = proxy.stderr();
                logged(&log, "alpha", "ra", "shared", "done 1")
                    && logged(&log, "alpha", "ra", "shared", "delete 1")
            }),
            "{}",
            what("alpha's root was not shut down")
        );
        let log = proxy.stderr();
        assert!(
            !logged(&log, "beta", "rb", "shared", "done 2"),
            "{}",
            what("beta's root was shut down")
        );
        // Only the start-up check ran beta as the first root of a VM.
        assert!(
            log.matches("configure 1 config=cfg-beta").count() <= 1,
            "{}",
            what("beta got a VM of its own")
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}
