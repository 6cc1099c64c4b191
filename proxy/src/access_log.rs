//! Envoy's HTTP access logs: the `access_log` entries of an
//! `http_connection_manager`, written once per request when it ends.
//!
//! Supported: the `envoy.access_loggers.stdout`, `.stderr` and `.file`
//! loggers, in Envoy's default format or a text format
//! (`log_format.text_format_source.inline_string`, `log_format.text_format`,
//! or the file logger's legacy `format`) made of the command operators
//! [`Operator`] lists. The format is parsed with the configuration, so an
//! unknown operator is a startup error naming its path.

use pingora::http::{RequestHeader, ResponseHeader};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// `%START_TIME%` without a format: ISO 8601 in UTC with milliseconds, as
/// Envoy writes it.
const DEFAULT_START_TIME: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

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

/// One piece of a format: text as it is, or a command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Operator(Operator, Option<usize>),
}

/// The command operators Polyhost fills in (a `:N` after one keeps its
/// first N characters).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operator {
    /// `%START_TIME%`, or `%START_TIME(strftime)%`.
    StartTime(String),
    /// `%REQ(NAME)%` or `%REQ(NAME?ALTERNATIVE)%`: a request header, or a
    /// pseudo-header (`:method`, `:path`, `:authority`, `:scheme`).
    Request(String, Option<String>),
    /// `%RESP(NAME)%` or `%RESP(NAME?ALTERNATIVE)%`: a response header.
    Response(String, Option<String>),
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`, ...
    Protocol,
    /// `%RESPONSE_CODE%`: the status sent, `0` when none was.
    ResponseCode,
    /// `%RESPONSE_FLAGS%`: `UF`, `UT`, `NR`, ... or `-`.
    ResponseFlags,
    /// `%BYTES_RECEIVED%`: request body bytes.
    BytesReceived,
    /// `%BYTES_SENT%`: response body bytes.
    BytesSent,
    /// `%DURATION%`: milliseconds from the request's start to its end.
    Duration,
    /// `%UPSTREAM_HOST%`: the endpoint the request went to.
    UpstreamHost,
    /// `%UPSTREAM_CLUSTER%`: the route's cluster.
    UpstreamCluster,
    /// `%ROUTE_NAME%`.
    RouteName,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: the client's address and port.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the listener's address and port.
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    DownstreamLocalAddressWithoutPort,
}

/// A parsed text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Vec<Piece>);

impl Format {
    /// Parses Envoy's format language: text, with `%OPERATOR%`,
    /// `%OPERATOR(ARGS)%` and `%OPERATOR(ARGS):N%` in it. `%%` is one `%`.
    ///
    /// # Errors
    /// An operator Polyhost does not fill in, or malformed syntax; the
    /// message names it.
    pub fn parse(format: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                text.push('%');
                rest = after;
                continue;
            }
            let (piece, after) = parse_operator(rest)?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = after;
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Format(pieces))
    }

    /// Envoy's default format.
    pub fn envoy_default() -> Format {
        Format::parse(DEFAULT_FORMAT).expect("the default format parses")
    }

    /// The line for `entry`, with `-` for what is not known.
    fn render(&self, entry: &Entry<'_>) -> String {
        let mut line = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => line.push_str(t),
                Piece::Operator(op, max) => {
                    let value = entry.value(op);
                    let value = value.as_deref().unwrap_or("-");
                    match max {
                        Some(n) => line.extend(value.chars().take(*n)),
                        None => line.push_str(value),
                    }
                }
            }
        }
        line
    }
}

/// Reads one operator after its opening `%`: the piece and what follows
/// its closing `%`.
fn parse_operator(s: &str) -> Result<(Piece, &str), String> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    let name = &s[..name_len];
    if name.is_empty() {
        return Err("a '%' that starts no operator (write %% for a '%')".to_string());
    }
    let mut rest = &s[name_len..];
    let mut args = None;
    if let Some(after) = rest.strip_prefix('(') {
        let close = after
            .find(')')
            .ok_or_else(|| format!("operator %{name}( has no closing parenthesis"))?;
        args = Some(&after[..close]);
        rest = &after[close + 1..];
    }
    let mut max = None;
    if let Some(after) = rest.strip_prefix(':') {
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let n = after[..digits]
            .parse()
            .map_err(|_| format!("operator %{name}%: the length after ':' is not a number"))?;
        max = Some(n);
        rest = &after[digits..];
    }
    let rest = rest
        .strip_prefix('%')
        .ok_or_else(|| format!("operator %{name} is not closed by '%'"))?;
    let header = |kind: &str| -> Result<(String, Option<String>), String> {
        let args = args
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("%{kind}(...)% needs a header name"))?;
        let (main, alternative) = match args.split_once('?') {
            Some((m, a)) => (m, Some(a.to_ascii_lowercase())),
            None => (args, None),
        };
        Ok((main.to_ascii_lowercase(), alternative))
    };
    let op = match name {
        "START_TIME" => {
            let format = args.unwrap_or(DEFAULT_START_TIME).to_string();
            let invalid = chrono::format::StrftimeItems::new(&format)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if invalid {
                return Err(format!("%START_TIME({format})% is not a valid time format"));
            }
            Operator::StartTime(format)
        }
        "REQ" => {
            let (main, alternative) = header("REQ")?;
            Operator::Request(main, alternative)
        }
        "RESP" => {
            let (main, alternative) = header("RESP")?;
            Operator::Response(main, alternative)
        }
        "PROTOCOL" => Operator::Protocol,
        "RESPONSE_CODE" => Operator::ResponseCode,
        "RESPONSE_FLAGS" => Operator::ResponseFlags,
        "BYTES_RECEIVED" => Operator::BytesReceived,
        "BYTES_SENT" => Operator::BytesSent,
        "DURATION" => Operator::Duration,
        "UPSTREAM_HOST" => Operator::UpstreamHost,
        "UPSTREAM_CLUSTER" => Operator::UpstreamCluster,
        "ROUTE_NAME" => Operator::RouteName,
        "DOWNSTREAM_REMOTE_ADDRESS" => Operator::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Operator::DownstreamRemoteAddressWithoutPort,
        "DOWNSTREAM_LOCAL_ADDRESS" => Operator::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Operator::DownstreamLocalAddressWithoutPort,
        other => return Err(format!("command operator %{other}% is not supported")),
    };
    Ok((Piece::Operator(op, max), rest))
}

/// What one request's log line can tell.
pub struct Entry<'a> {
    /// When the request started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The request as the plugins left it.
    pub request: &'a RequestHeader,
    /// The response sent, if one was.
    pub response: Option<&'a ResponseHeader>,
    /// Envoy's response flags, `-` for none.
    pub flags: &'a str,
    /// Request body bytes read.
    pub bytes_received: usize,
    /// Response body bytes sent.
    pub bytes_sent: usize,
    /// The endpoint the request went to.
    pub upstream_host: Option<String>,
    /// The route's cluster.
    pub cluster: Option<&'a str>,
    /// The route's name.
    pub route_name: Option<&'a str>,
    /// The client's address.
    pub downstream_remote: Option<std::net::SocketAddr>,
    /// The listener's address.
    pub downstream_local: Option<std::net::SocketAddr>,
}

impl Entry<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        let uri = &self.request.uri;
        match name {
            ":method" => Some(self.request.method.as_str().to_string()),
            ":path" => Some(
                uri.path_and_query()
                    .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            ),
            ":authority" => uri
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| header_text(self.request.headers.get("host"))),
            ":scheme" => uri.scheme_str().map(str::to_string),
            _ => header_text(self.request.headers.get(name)),
        }
    }

    fn value(&self, op: &Operator) -> Option<String> {
        let either = |get: &dyn Fn(&str) -> Option<String>, main: &str, alt: &Option<String>| {
            get(main).or_else(|| alt.as_deref().and_then(get))
        };
        match op {
            Operator::StartTime(format) => Some(
                chrono::DateTime::<chrono::Utc>::from(self.start)
                    .format(format)
                    .to_string(),
            ),
            Operator::Request(main, alt) => either(&|n| self.request_header(n), main, alt),
            Operator::Response(main, alt) => {
                let response = self.response?;
                either(&|n| header_text(response.headers.get(n)), main, alt)
            }
            Operator::Protocol => {
                Some(crate::http::protocol_name(self.request.version).to_string())
            }
            Operator::ResponseCode => {
                Some(self.response.map_or(0, |r| r.status.as_u16()).to_string())
            }
            Operator::ResponseFlags => Some(self.flags.to_string()),
            Operator::BytesReceived => Some(self.bytes_received.to_string()),
            Operator::BytesSent => Some(self.bytes_sent.to_string()),
            Operator::Duration => Some(self.duration.as_millis().to_string()),
            Operator::UpstreamHost => self.upstream_host.clone(),
            Operator::UpstreamCluster => self.cluster.map(str::to_string),
            Operator::RouteName => self
                .route_name
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            Operator::DownstreamRemoteAddress => self.downstream_remote.map(|a| a.to_string()),
            Operator::DownstreamRemoteAddressWithoutPort => {
                self.downstream_remote.map(|a| a.ip().to_string())
            }
            Operator::DownstreamLocalAddress => self.downstream_local.map(|a| a.to_string()),
            Operator::DownstreamLocalAddressWithoutPort => {
                self.downstream_local.map(|a| a.ip().to_string())
            }
        }
    }
}

fn header_text(value: Option<&http::HeaderValue>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// An access log ready to write: its sink opened, its format parsed.
pub struct AccessLogger {
    format: Format,
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
    /// Opens `sink` (a file is created if missing and appended to).
    ///
    /// # Errors
    /// The file cannot be opened for appending; the message names it.
    pub fn open(sink: &Sink, format: Format) -> Result<AccessLogger, String> {
        let out = match sink {
            Sink::Stdout => Output::Stdout,
            Sink::Stderr => Output::Stderr,
            Sink::File(path) => Output::File(Mutex::new(open_append(path)?)),
        };
        Ok(AccessLogger { format, out })
    }

    /// Writes `entry`'s line. A failed write is reported in the log, not
    /// to the request.
    pub fn write(&self, entry: &Entry<'_>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request: &RequestHeader, response: Option<&ResponseHeader>) -> String {
        let entry = Entry {
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            duration: Duration::from_millis(42),
            request,
            response,
            flags: "-",
            bytes_received: 5,
            bytes_sent: 23,
            upstream_host: Some("127.0.0.1:8080".into()),
            cluster: Some("backend"),
            route_name: None,
            downstream_remote: Some("10.0.0.1:5555".parse().unwrap()),
            downstream_local: None,
        };
        Format::envoy_default().render(&entry)
    }

    #[test]
    fn the_default_format_reads_as_envoys() {
        let mut request = RequestHeader::build("POST", b"/greet?x=1", None).unwrap();
        request.insert_header("host", "example.com").unwrap();
        request.insert_header("user-agent", "curl/8").unwrap();
        let mut response = ResponseHeader::build(200, None).unwrap();
        response
            .insert_header("content-type", "text/plain")
            .unwrap();
        assert_eq!(
            entry(&request, Some(&response)),
            "[2023-11-14T22:13:20.123Z] \"POST /greet?x=1 HTTP/1.1\" 200 - 5 23 42 - \"-\" \
             \"curl/8\" \"-\" \"example.com\" \"127.0.0.1:8080\"\n"
        );
        // No response sent: code 0.
        assert!(entry(&request, None).contains("\" 0 - 5 23 42 "));
    }

    #[test]
    fn custom_formats_take_alternatives_lengths_and_percent_signs() {
        let format = Format::parse(
            "%REQ(X-MISSING?USER-AGENT):4% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%% \
             %START_TIME(%s)% %UPSTREAM_CLUSTER% %ROUTE_NAME%",
        )
        .unwrap();
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        request.insert_header("user-agent", "curl/8").unwrap();
        let entry = Entry {
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::ZERO,
            request: &request,
            response: None,
            flags: "NR",
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            cluster: None,
            route_name: Some(""),
            downstream_remote: Some("10.0.0.1:5555".parse().unwrap()),
            downstream_local: None,
        };
        assert_eq!(format.render(&entry), "curl 10.0.0.1 100% 1700000000 - -");
    }

    #[test]
    fn unknown_or_malformed_operators_are_named() {
        let err = |f: &str| Format::parse(f).unwrap_err();
        assert_eq!(
            err("%DYNAMIC_METADATA(a)%"),
            "command operator %DYNAMIC_METADATA% is not supported"
        );
        assert_eq!(err("%REQ()%"), "%REQ(...)% needs a header name");
        assert_eq!(err("%REQ(x"), "operator %REQ( has no closing parenthesis");
        assert_eq!(err("%PROTOCOL"), "operator %PROTOCOL is not closed by '%'");
        assert!(err("%START_TIME(%Q)%").contains("not a valid time format"));
        assert!(err("50 % off").contains("starts no operator"));
    }
}
