//! Envoy's access logs: the `access_log` entries of an
//! `http_connection_manager` (a line per request, when it ends) and of a
//! `tcp_proxy` (a line per connection, when it closes).
//!
//! Supported: the `envoy.access_loggers.stdout`, `.stderr` and `.file`
//! loggers; Envoy's default format, format strings and format dictionaries
//! (JSON) made of the command operators [`format`] lists; and the
//! [`Filter`]s that choose which entries are written. Formats and filters
//! are parsed with the configuration, so an unknown operator or filter is a
//! startup error naming its path.

mod filter;
mod format;

pub use filter::{CompareOp, Comparison, Filter, RESPONSE_FLAGS};
pub use format::{DEFAULT_FORMAT, Format, JsonFormatError};

use pingora::http::{RequestHeader, ResponseHeader};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Where a logger writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// `envoy.access_loggers.stdout`.
    Stdout,
    /// `envoy.access_loggers.stderr`.
    Stderr,
    /// `envoy.access_loggers.file`: appended to the file at this path.
    File(PathBuf),
}

/// What one request's or connection's log line can tell.
pub struct Entry<'a> {
    /// When the request (or connection) started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The request as the plugins left it; `None` for a TCP connection.
    pub request: Option<&'a RequestHeader>,
    /// The response sent, if one was.
    pub response: Option<&'a ResponseHeader>,
    /// Envoy's response flags, `-` for none.
    pub flags: &'a str,
    /// Why the response is what it is (`via_upstream`, a local reply's
    /// details); `None` for a connection or before a response.
    pub code_details: Option<&'a str>,
    /// Request body bytes read (for a connection: bytes from the client).
    pub bytes_received: usize,
    /// Response body bytes sent (for a connection: bytes to the client).
    pub bytes_sent: usize,
    /// The endpoint the request or connection went to.
    pub upstream_host: Option<SocketAddr>,
    /// The route's (or `tcp_proxy`'s) cluster.
    pub cluster: Option<&'a str>,
    /// The route's name.
    pub route_name: Option<&'a str>,
    /// The client's address.
    pub downstream_remote: Option<SocketAddr>,
    /// The listener's address.
    pub downstream_local: Option<SocketAddr>,
}

impl Entry<'_> {
    /// A request header's bytes by its lower-case name, pseudo-headers
    /// (`:method`, `:path`, `:authority`, `:scheme`) included; `None` for a
    /// connection.
    fn request_header_bytes(&self, name: &str) -> Option<&[u8]> {
        let request = self.request?;
        let uri = &request.uri;
        let header = |name: &str| request.headers.get(name).map(|v| v.as_bytes());
        match name {
            ":method" => Some(request.method.as_str().as_bytes()),
            ":path" => Some(
                uri.path_and_query()
                    .map_or_else(|| uri.path(), |p| p.as_str())
                    .as_bytes(),
            ),
            ":authority" => uri
                .authority()
                .map(|a| a.as_str().as_bytes())
                .or_else(|| header("host")),
            ":scheme" => uri.scheme_str().map(str::as_bytes),
            _ => header(name),
        }
    }

    /// The same as text, for header matchers; a value that is not UTF-8
    /// reads as absent.
    fn request_header(&self, name: &str) -> Option<&str> {
        self.request_header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// An access log ready to write: its sink opened, its format and filter
/// parsed.
pub struct AccessLogger {
    format: Format,
    filter: Option<Filter>,
    out: Output,
}

enum Output {
    Stdout,
    Stderr,
    /// One write per line, under the lock, so lines from the workers never
    /// interleave.
    File(Mutex<std::fs::File>),
}

impl AccessLogger {
    /// Opens `sink` (a file is created if missing and appended to) to
    /// write the entries `filter` admits (all when `None`) in `format`.
    ///
    /// # Errors
    /// The file cannot be opened for appending; the message names it.
    pub fn open(sink: &Sink, format: Format, filter: Option<Filter>) -> Result<Self, String> {
        let out = match sink {
            Sink::Stdout => Output::Stdout,
            Sink::Stderr => Output::Stderr,
            Sink::File(path) => Output::File(Mutex::new(open_append(path)?)),
        };
        Ok(AccessLogger {
            format,
            filter,
            out,
        })
    }

    /// Writes `entry`'s line, if the filter admits it. A failed write is
    /// reported in the log, not to the request.
    pub fn write(&self, entry: &Entry<'_>) {
        if self.filter.as_ref().is_some_and(|f| !f.admits(entry)) {
            return;
        }
        let line = self.format.render(entry);
        let written = match &self.out {
            Output::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Output::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Output::File(file) => match file.lock() {
                Ok(mut f) => f.write_all(line.as_bytes()),
                Err(poisoned) => poisoned.into_inner().write_all(line.as_bytes()),
            },
        };
        if let Err(e) = written {
            tracing::warn!(target: "polyhost::http", "access log write failed: {e}");
        }
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open access log {}: {e}", path.display()))
}
