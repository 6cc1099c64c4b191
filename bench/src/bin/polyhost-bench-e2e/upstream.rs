//! The upstream every setup proxies to: a fixed `200` with a small body over
//! HTTP/1.1 keep-alive, one thread per connection, on the standard library
//! alone, so the floor it sets is a few system calls and nothing else.
//!
//! It also guards the workload: a request that still carries one of the
//! `fake_key_*` headers the plugins and the Lua filter add and remove gets a
//! `500`, which the load generator counts as an error.

use anyhow::Context as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

const BODY: &str = "hello from the upstream\n";
/// Larger request heads are refused; the benchmark's are well under 1 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// Serves on `listen` until the process is killed.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        listen.ip().is_loopback(),
        "the upstream only listens on loopback, not {listen}"
    );
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let ok = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let leaked = "the request reached the upstream with a fake_key_ header\n";
    let refused = format!(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{leaked}",
        leaked.len()
    );
    let answers: &'static (String, String) = Box::leak(Box::new((ok, refused)));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    // A connection ending in an error is the client's doing
                    // (wrk stops mid-request at the end of a run).
                    let _ = connection(stream, answers);
                });
            }
            // Out of file descriptors or similar: keep serving the
            // connections already open rather than dying mid-run.
            Err(e) => eprintln!("upstream: accept: {e}"),
        }
    }
    Ok(())
}

/// Answers every request on one connection until the peer closes it.
fn connection(mut stream: TcpStream, (ok, refused): &(String, String)) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    loop {
        // Answer every complete head in the buffer (pipelined requests
        // included), then read more.
        while let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            let head = &buf[..end + 4];
            let leaked = find_ignore_case(head, b"\nfake_key_").is_some();
            let close = find_ignore_case(head, b"\nconnection: close").is_some();
            let answer = if leaked { refused } else { ok };
            // GET requests only: the benchmark sends no bodies.
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
            stream.write_all(answer.as_bytes())?;
            if close {
                return Ok(());
            }
        }
        if filled == buf.len() {
            return Err(ErrorKind::InvalidData.into());
        }
        match stream.read(&mut buf[filled..])? {
            0 => return Ok(()),
            n => filled += n,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}
