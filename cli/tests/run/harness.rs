//! Plumbing for the data-plane tests: a real upstream, the real `polyhost
//! run` process, and a real HTTP client, all on 127.0.0.1.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every engine compiled into this build, by the name `runtime:` takes.
pub fn engines() -> Vec<&'static str> {
    polyhost::AnyEngine::names()
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// A plugin fixture built by `scripts/setup.sh`; panics with the fix if it
/// is missing.
pub fn fixture(relative: &str) -> String {
    let path = root().join("build/plugins").join(relative);
    assert!(
        path.exists(),
        "{} is missing; run scripts/setup.sh",
        path.display()
    );
    path.display().to_string()
}

/// The SDK languages whose `hello` plugin is built, as (language, path).
pub fn hello_plugins() -> Vec<(&'static str, String)> {
    language_plugins("hello")
}

/// The fixture `name` in every SDK language, as (language, path). The C++
/// fixtures need clang and wasi-libc; setup builds them on Debian, so they
/// must be there too.
pub fn language_plugins(name: &str) -> Vec<(&'static str, String)> {
    [
        ("rust", "rust-wasip1"),
        ("go", "go"),
        ("assemblyscript", "assemblyscript"),
        ("cpp", "cpp"),
    ]
    .into_iter()
    .map(|(language, dir)| (language, fixture(&format!("{dir}/{name}.wasm"))))
    .collect()
}

/// What every hand-written plugin of the run tests has, added to the end of
/// its module by [`wat_plugin`]: the ABI version, a bump allocator from
/// 4096 up (`$heap`) that never frees, and a `proxy_on_context_create`
/// that does nothing.
const WAT_PRELUDE: &str = r#"
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
"#;

/// Compiles the WAT module `wat`, with [`WAT_PRELUDE`] added, into
/// `dir/<name>.wasm` and returns that path as configs name it: the run
/// tests' hand-written plugins. The module's own definitions may use
/// `$heap`; they must not define what the prelude does.
pub fn wat_plugin(dir: &Path, name: &str, wat: &str) -> String {
    let body = wat.trim_end();
    let body = body
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("{name}: the module does not end with `)`"));
    let wasm = wat::parse_str(format!("{body}{WAT_PRELUDE})"))
        .unwrap_or_else(|e| panic!("{name}: invalid wat: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).expect("write the plugin");
    path.display().to_string()
}

/// A port that was free a moment ago.
///
/// Tests run in parallel, so a port is never handed out twice in one run.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on 127.0.0.1");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `check` for up to 5 s: counters are updated when a request's log
/// phase ends, just after the client has its answer.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// The value of stat `name` on `/stats`, if listed.
pub fn stat(proxy: &Proxy, name: &str) -> Option<u64> {
    let prefix = format!("{name}: ");
    proxy
        .admin("/stats")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
}

/// The lines of a JSON-lines file such as a JSON access log, parsed; none
/// while the file does not exist.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Headers by name, every value kept in order.
pub type Headers = BTreeMap<String, Vec<String>>;

fn collect_headers(map: &hyper::HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (k, v) in map {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    headers
}

fn first_value<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_value(&self.headers, name)
    }
}

/// A real HTTP/1.1 and h2c upstream that records every request and answers
/// `200 upstream ok` with `x-upstream: yes`. `/slow` answers after 3 s.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

/// The upstream's answer to a gRPC request: `/echo.Echo/Say` answers the
/// message prefixed with `pong:`, any other method fails with status 7
/// (PERMISSION_DENIED) and a message, both in trailers as gRPC sends them.
fn grpc_answer(path: &str, body: &[u8]) -> Response<UpstreamBody> {
    let message = body.get(5..).unwrap_or_default();
    let (data, status, text) = if path == "/echo.Echo/Say" {
        let mut reply = b"pong:".to_vec();
        reply.extend_from_slice(message);
        let mut framed = vec![0];
        framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        framed.extend_from_slice(&reply);
        (framed, "0", "")
    } else {
        (Vec::new(), "7", "denied by the test upstream")
    };
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    trailers.insert("grpc-message", text.parse().unwrap());
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(
            Full::new(Bytes::from(data))
                .map_err(|never| match never {})
                .with_trailers(async move { Some(Ok(trailers)) })
                .boxed(),
        )
        .expect("grpc response")
}

/// A response body fed through a channel, so the upstream can answer a
/// gRPC stream message by message while the request is still coming.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<hyper::body::Frame<Bytes>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// One length-prefixed gRPC message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// The gRPC streaming methods of the test upstream, which answer while the
/// request is still open. Both start with the metadata `x-chat: hello`.
/// - `/echo.Echo/Chat` answers each message with `pong:` + message, and
///   ends with `x-chat-end: bye` and status 0 once the client half-closes.
/// - `/pkg.Service/Stream` (the abi_probe plugins' stream) answers its
///   first message with `r1` and `r2`, then ends at once with the trailing
///   metadata `b: 1`, `c: 2` and status 0, without waiting for the client.
/// - `/echo.Echo/Stall` never reads what the client sends, so HTTP/2 flow
///   control stops the client once the window is full; it answers nothing
///   after the metadata. It is recorded twice: as [`STALL_OPENED`] when the
///   stream is accepted, and (with an empty body) once the response is
///   dropped, which a reset does.
///
/// The request is recorded when the upstream's side ends.
/// The path under which a `/echo.Echo/Stall` stream is recorded when the
/// upstream accepts it (a stream reset before that is never seen there).
pub const STALL_OPENED: &str = "/echo.Echo/Stall (opened)";

fn is_grpc_stream(path: &str) -> bool {
    path == "/echo.Echo/Chat" || path == "/pkg.Service/Stream" || path == "/echo.Echo/Stall"
}

fn grpc_stream_answer(
    seen: Seen,
    mut request: Incoming,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Response<UpstreamBody> {
    let (send, receive) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        if seen.path == "/echo.Echo/Stall" {
            record.lock().unwrap().push(Seen {
                path: STALL_OPENED.to_string(),
                ..seen.clone()
            });
            // Holds the request body unread until the response is dropped,
            // which a reset from the client does.
            send.closed().await;
            drop(request);
            record.lock().unwrap().push(seen);
            return;
        }
        let chat = seen.path == "/echo.Echo/Chat";
        let mut received = Vec::new();
        let mut buffer = Vec::new();
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        'reading: while let Some(Ok(frame)) = request.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received.extend_from_slice(&data);
            buffer.extend_from_slice(&data);
            while buffer.len() >= 5 {
                let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
                if buffer.len() < 5 + len {
                    break;
                }
                let message: Vec<u8> = buffer.drain(..5 + len).skip(5).collect();
                if chat {
                    let mut reply = b"pong:".to_vec();
                    reply.extend_from_slice(&message);
                    let _ = send.send(hyper::body::Frame::data(grpc_frame(&reply)));
                } else {
                    let _ = send.send(hyper::body::Frame::data(grpc_frame(b"r1")));
                    let _ = send.send(hyper::body::Frame::data(grpc_frame(b"r2")));
                    trailers.insert("b", "1".parse().unwrap());
                    trailers.insert("c", "2".parse().unwrap());
                    break 'reading;
                }
            }
        }
        if chat {
            trailers.insert("x-chat-end", "bye".parse().unwrap());
        }
        let _ = send.send(hyper::body::Frame::trailers(trailers));
        record.lock().unwrap().push(Seen {
            body: received,
            ..seen
        });
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("x-chat", "hello")
        .body(ChannelBody(receive).boxed())
        .expect("grpc stream response")
}

/// What the test upstream answers with.
type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

impl Upstream {
    pub fn start() -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let record = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            if is_grpc_stream(parts.uri.path()) {
                                let seen = Seen {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_string(),
                                    version: format!("{:?}", parts.version),
                                    headers: collect_headers(&parts.headers),
                                    body: Vec::new(),
                                };
                                return Ok(grpc_stream_answer(seen, body, record));
                            }
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let headers = collect_headers(&parts.headers);
                            let path = parts
                                .uri
                                .path_and_query()
                                .map_or("/".to_string(), |p| p.as_str().to_string());
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                path: path.clone(),
                                version: format!("{:?}", parts.version),
                                headers,
                                body: body.clone(),
                            });
                            if path.starts_with("/slow") {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            if path.starts_with("/linger") {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            if parts
                                .headers
                                .get("content-type")
                                .is_some_and(|v| v == "application/grpc")
                            {
                                return Ok(grpc_answer(&path, &body));
                            }
                            if path.starts_with("/h2/trailers") {
                                let mut trailers = hyper::HeaderMap::new();
                                trailers
                                    .insert("x-upstream-trailer", "from-upstream".parse().unwrap());
                                return Ok(Response::builder()
                                    .status(200)
                                    .header("x-upstream", "yes")
                                    .body(
                                        Full::new(Bytes::from_static(b"upstream ok\n"))
                                            .map_err(|never| match never {})
                                            .with_trailers(async move { Some(Ok(trailers)) })
                                            .boxed(),
                                    )
                                    .expect("response with trailers"));
                            }
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(200)
                                    .header("x-upstream", "yes")
                                    .header("content-type", "text/plain")
                                    .body(
                                        Full::new(Bytes::from_static(b"upstream ok\n"))
                                            .map_err(|never| match never {})
                                            .boxed(),
                                    )
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request received whose path starts with `prefix`.
    pub fn last(&self, prefix: &str) -> Option<Seen> {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path.starts_with(prefix))
    }
}

/// A running `polyhost run`.
pub struct Proxy {
    child: Option<Child>,
    pub admin: u16,
    config_path: PathBuf,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// What `polyhost run` printed and how it ended, when it stops by itself.
pub struct Exit {
    pub code: Option<i32>,
    pub stderr: String,
}

/// The `polyhost` binary under test.
pub fn polyhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polyhost"))
}

/// Writes `config` to a file and runs `polyhost run -c` on it with `args`,
/// waiting for the process to end (for configurations that must fail).
pub fn run_expecting_exit(config: &str, args: &[&str]) -> Exit {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).expect("write config");
    let mut child = polyhost()
        .arg("run")
        .arg("-c")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn polyhost");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("piped")
                .read_to_string(&mut stderr)
                .ok();
            return Exit {
                code: status.code(),
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("polyhost run did not exit within 60 s for a bad configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Proxy {
    /// Starts `polyhost run` on `config` (which must have an admin address
    /// on port `admin`) and waits until `/ready` answers.
    pub fn start(config: &str, admin: u16, args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).expect("write config");
        if std::env::var_os("POLYHOST_TEST_SHOW_CONFIG").is_some() {
            eprintln!("{config}");
        }
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = polyhost()
            .arg("run")
            .arg("-c")
            .arg(&path)
            .args(if args.contains(&"--concurrency") {
                &[][..]
            } else {
                &["--concurrency", "2"][..]
            })
            .arg("--base-id")
            .arg(admin.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn polyhost");
        let mut proxy = Proxy {
            child: Some(child),
            admin,
            config_path: path,
            stderr_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = get(&format!("http://127.0.0.1:{admin}/ready"), &[])
                && r.status == 200
            {
                break;
            }
            if let Some(status) = proxy
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "polyhost run exited ({status}) before it was ready:\n{}",
                    proxy.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "polyhost run not ready within 60 s:\n{}",
                proxy.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// Rewrites the configuration file with `config` and sends SIGHUP, then
    /// waits until the proxy logs the outcome (`reloaded` or `not loaded`)
    /// for the `n`-th time, and returns that log line.
    pub fn reload(&self, config: &str, n: usize) -> String {
        std::fs::write(&self.config_path, config).expect("rewrite config");
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
        let outcome = |log: String| {
            log.lines()
                .filter(|l| l.contains("SIGHUP:"))
                .nth(n - 1)
                .map(str::to_string)
        };
        // Generous: a reload compiles the plugins it loads anew.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = outcome(self.stderr()) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no reload outcome logged within 30 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the proxy has logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `GET` on the admin endpoint.
    pub fn admin(&self, path: &str) -> Reply {
        get(&format!("http://127.0.0.1:{}{path}", self.admin), &[]).expect("admin endpoint")
    }

    /// Stops the proxy with `/quitquitquit` and returns its exit code.
    pub fn quit(mut self) -> Option<i32> {
        let reply = request(
            "POST",
            &format!("http://127.0.0.1:{}/quitquitquit", self.admin),
            &[],
            b"",
            false,
        )
        .expect("quitquitquit");
        assert_eq!(reply.status, 200);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("polyhost run did not exit within 30 s of /quitquitquit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: Headers,
    /// Trailers (HTTP/2), every value kept in order.
    pub trailers: Headers,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_value(&self.headers, name)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET url` over HTTP/1.1.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    request("GET", url, headers, b"", false)
}

/// One request on a new connection, HTTP/1.1 or h2 with prior knowledge.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    h2: bool,
) -> Result<Reply, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("no authority")?.to_string();
    let mut builder = Request::builder().method(method).uri(uri.clone());
    if !h2 {
        builder = builder.header("host", authority.clone());
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(authority.as_str()),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let io = TokioIo::new(stream);
        let work = async {
            let response = if h2 {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender.send_request(req).await.map_err(|e| e.to_string())?
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender.send_request(req).await.map_err(|e| e.to_string())?
            };
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.map_err(|e| e.to_string())?;
            let trailers = collected
                .trailers()
                .map(collect_headers)
                .unwrap_or_default();
            let body = collected.to_bytes().to_vec();
            let headers = collect_headers(&parts.headers);
            Ok::<_, String>(Reply {
                status: parts.status.as_u16(),
                version: format!("{:?}", parts.version),
                headers,
                trailers,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .map_err(|_| "request timed out".to_string())?
    })
}

/// Starts `polyhost run` with one listener (see [`http_listener`]) running
/// `plugins` in front of `upstream`; returns the proxy and the listener's
/// port.
pub fn serve(upstream: &Upstream, plugins: &[WasmFilterSpec], args: &[&str]) -> (Proxy, u16) {
    let admin = free_port();
    let port = free_port();
    let listener = http_listener("ingress", port, plugins);
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, args);
    (proxy, port)
}

/// An HTTP listener with one Wasm filter in front of a route to the
/// `upstream` cluster, plus `/direct` answered by `direct_response`.
pub fn http_listener(name: &str, port: u16, plugins: &[WasmFilterSpec]) -> String {
    let mut filters = String::new();
    for p in plugins {
        filters.push_str(&p.yaml());
    }
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/direct" }}
                direct_response: {{ status: 201, body: {{ inline_string: "direct answer\n" }} }}
              - match: {{ prefix: "/rewrite/" }}
                route: {{ cluster: upstream, prefix_rewrite: "/rewritten/" }}
              - match: {{ prefix: "/slow" }}
                route: {{ cluster: upstream, timeout: 0.5s }}
              - match: {{ prefix: "/dead" }}
                route: {{ cluster: dead }}
              - match: {{ prefix: "/h2/" }}
                route: {{ cluster: grpc }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

/// One proxy-wasm plugin entry (`envoy.filters.http.wasm` or
/// `envoy.filters.network.wasm`).
pub struct WasmFilterSpec {
    pub name: String,
    pub root_id: String,
    /// `vm_config.vm_id`; empty when not set.
    pub vm_id: String,
    pub engine: String,
    pub file: String,
    pub configuration: String,
    pub failure_policy: Option<&'static str>,
}

impl WasmFilterSpec {
    pub fn new(name: &str, engine: &str, file: &str) -> WasmFilterSpec {
        WasmFilterSpec {
            name: name.to_string(),
            root_id: String::new(),
            vm_id: String::new(),
            engine: engine.to_string(),
            file: file.to_string(),
            configuration: String::new(),
            failure_policy: None,
        }
    }

    /// The `config:` part (a `PluginConfig`), every line indented by
    /// `indent` spaces.
    fn plugin_config_yaml(&self, indent: usize) -> String {
        let mut lines = vec![
            "config:".to_string(),
            format!("  name: {}", self.name),
            format!("  root_id: \"{}\"", self.root_id),
            "  configuration:".to_string(),
            "    \"@type\": type.googleapis.com/google.protobuf.StringValue".to_string(),
            format!("    value: '{}'", self.configuration),
            "  vm_config:".to_string(),
            format!("    vm_id: \"{}\"", self.vm_id),
            format!("    runtime: {}", self.engine),
            format!("    code: {{ local: {{ filename: {} }} }}", self.file),
        ];
        if let Some(policy) = self.failure_policy {
            lines.push(format!("  failure_policy: {policy}"));
        }
        let pad = " ".repeat(indent);
        lines.iter().map(|l| format!("{pad}{l}\n")).collect()
    }

    /// This plugin as an `envoy.filters.http.wasm` entry, in the
    /// `TypedStruct` wrapping the Go SDK examples use.
    fn yaml(&self) -> String {
        format!(
            r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              value:
{}"#,
            self.plugin_config_yaml(16)
        )
    }

    /// This plugin as an `envoy.filters.network.wasm` entry.
    pub fn network_yaml(&self) -> String {
        format!(
            r#"      - name: envoy.filters.network.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
{}"#,
            self.plugin_config_yaml(10)
        )
    }
}

/// A whole bootstrap: the listeners, an `upstream` cluster pointing at
/// `upstream` (and `grpc` and `grpc-cluster`, the same over HTTP/2, the
/// second named as the abi_probe plugins name it), a `dead` cluster nothing
/// listens on, and the admin port.
pub fn bootstrap(listeners: &[String], upstream: SocketAddr, admin: u16) -> String {
    let dead = free_port();
    format!(
        r#"static_resources:
  listeners:
{listeners}
  clusters:
  - name: upstream
    connect_timeout: 1s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
  - name: bench-cluster
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: bench-cluster
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
  - name: grpc
    connect_timeout: 1s
    type: STATIC
    http2_protocol_options: {{}}
    load_assignment:
      cluster_name: grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
  - name: grpc-cluster
    connect_timeout: 1s
    type: STATIC
    http2_protocol_options: {{}}
    load_assignment:
      cluster_name: grpc-cluster
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }}
  - name: dead
    connect_timeout: 0.5s
    type: STATIC
    load_assignment:
      cluster_name: dead
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead} }} }} }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
"#,
        listeners = listeners.join(""),
        up = upstream.port(),
    )
}

/// The SDK languages whose `tcp_upper` plugin is built, as (language,
/// path). Each upper-cases client bytes and prefixes upstream chunks with
/// "> " (see plugins/rust/tcp_upper).
pub fn tcp_upper_plugins() -> Vec<(&'static str, String)> {
    vec![
        ("rust", fixture("rust-wasip1/tcp_upper.wasm")),
        ("go", fixture("go/tcp_upper.wasm")),
        ("assemblyscript", fixture("assemblyscript/tcp_upper.wasm")),
        ("cpp", fixture("cpp/tcp_upper.wasm")),
    ]
}

/// A real TCP upstream: on each connection it reads until the client's
/// end of stream, records the bytes, answers `got N bytes` and closes.
pub struct TcpUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TcpUpstream {
    pub fn start() -> TcpUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind TCP upstream");
        let addr = listener.local_addr().expect("TCP upstream address");
        let record = received.clone();
        runtime.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    if stream.read_to_end(&mut data).await.is_err() {
                        return;
                    }
                    let answer = format!("got {} bytes", data.len());
                    record.lock().unwrap().push(data);
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TcpUpstream {
            addr,
            received,
            _runtime: runtime,
        }
    }

    /// What each connection sent, in the order they ended.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

/// Why [`tcp_exchange`] failed: the step and the socket error.
#[derive(Debug)]
pub struct TcpExchangeError {
    /// `connect`, `write`, `shutdown` or `read`.
    pub step: &'static str,
    /// What the socket reported.
    pub error: std::io::Error,
}

impl TcpExchangeError {
    /// Whether the proxy closed the connection under the client: depending
    /// on how far the client got when the close arrived, that shows as a
    /// reset, a broken pipe or a socket that is no longer connected.
    pub fn closed_by_peer(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.error.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
        )
    }
}

impl std::fmt::Display for TcpExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

/// Connects to `port`, sends `data`, ends the stream (half-close) and
/// reads the answer to its end; at most 10 s.
pub fn tcp_exchange(port: u16, data: &[u8]) -> Result<Vec<u8>, TcpExchangeError> {
    use std::io::Write;
    let at = |step| move |error| TcpExchangeError { step, error };
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(at("connect"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(at("connect"))?;
    stream.write_all(data).map_err(at("write"))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(at("shutdown"))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(at("read"))?;
    Ok(answer)
}

/// A TCP listener: the network Wasm filters `plugins`, then `tcp_proxy` to
/// `cluster`, with `stat_prefix` = `name`.
pub fn tcp_listener(name: &str, port: u16, cluster: &str, plugins: &[WasmFilterSpec]) -> String {
    let mut filters = String::new();
    for p in plugins {
        filters.push_str(&p.network_yaml());
    }
    format!(
        r#"
  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
{filters}      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {name}
          cluster: {cluster}
"#
    )
}
