//! Envoy's access log formats: a format string (text with command
//! operators in it) or a format dictionary (a JSON object whose string
//! values are format strings).

use super::Entry;
use std::collections::BTreeMap;

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// `%START_TIME%` without a format: ISO 8601 in UTC with milliseconds, as
/// Envoy writes it.
const DEFAULT_START_TIME: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// A parsed access log format: what one line says about a request or a
/// connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    shape: Shape,
    /// `omit_empty_values`: a text format writes nothing (not `-`) for an
    /// unknown value, a dictionary leaves its key out.
    omit_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// A format string; the line is the text, newline included if the
    /// format has one.
    Text(Template),
    /// A format dictionary, written as one JSON object per line. Keys come
    /// out sorted, as Envoy's dictionaries (protobuf `Struct`s) have no
    /// order of their own.
    Json {
        fields: BTreeMap<String, Field>,
        /// `true` for `log_format.json_format` and the file logger's
        /// `typed_json_format`: a value that is one operator alone keeps
        /// its type (a number for `%RESPONSE_CODE%`, `null` when unknown).
        /// `false` for the file logger's deprecated `json_format`, where
        /// every value is a string.
        typed: bool,
    },
}

/// One value of a format dictionary.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Template(Template),
    Object(BTreeMap<String, Field>),
    /// A number, boolean or null written in the dictionary: kept as it is.
    Literal(serde_json::Value),
}

/// A format string, parsed: text and command operators.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

/// One piece of a format string: text as it is, or a command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Operator(Operator, Option<usize>),
}

/// The command operators Polyhost fills in (a `:N` after one keeps its
/// first N characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Operator {
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
    /// `%RESPONSE_CODE_DETAILS%`: why the response is what it is
    /// (`via_upstream`, `route_not_found`, `response_timeout`, ...).
    ResponseCodeDetails,
    /// `%BYTES_RECEIVED%`: request body bytes (a connection's bytes from
    /// the client).
    BytesReceived,
    /// `%BYTES_SENT%`: response body bytes (a connection's bytes to the
    /// client).
    BytesSent,
    /// `%DURATION%`: milliseconds from the start to the end.
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

/// What an operator gives for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Text(String),
    /// Counts, sizes, codes and durations: a JSON number in a typed
    /// dictionary.
    Number(u64),
    /// Not known for this entry: `-` in text, `null` in a typed dictionary.
    Missing,
}

/// A format dictionary that does not parse: the keys leading to the bad
/// value, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFormatError {
    /// The keys from the dictionary's top to the value, outermost first.
    pub keys: Vec<String>,
    /// What is wrong.
    pub message: String,
}

impl Format {
    /// Parses Envoy's format language: text, with `%OPERATOR%`,
    /// `%OPERATOR(ARGS)%` and `%OPERATOR(ARGS):N%` in it. `%%` is one `%`.
    ///
    /// # Errors
    /// An operator Polyhost does not fill in, or malformed syntax; the
    /// message names it.
    pub fn text(format: &str) -> Result<Format, String> {
        Ok(Format {
            shape: Shape::Text(Template::parse(format)?),
            omit_empty: false,
        })
    }

    /// A format dictionary: each string value is a format string, an
    /// object nests, a number, boolean or null is written as it is.
    /// `typed` keeps the type of a value that is one operator alone (see
    /// [`Format`]); without it every value is a string.
    ///
    /// # Errors
    /// A list, or a format string that does not parse; the error names
    /// its keys.
    pub fn json(
        dictionary: &serde_json::Map<String, serde_json::Value>,
        typed: bool,
    ) -> Result<Format, JsonFormatError> {
        Ok(Format {
            shape: Shape::Json {
                fields: parse_object(dictionary, &mut Vec::new())?,
                typed,
            },
            omit_empty: false,
        })
    }

    /// Envoy's default format.
    pub fn envoy_default() -> Format {
        Format::text(DEFAULT_FORMAT).expect("the default format parses")
    }

    /// The same format with `omit_empty_values` set or not.
    pub fn omit_empty_values(self, omit: bool) -> Format {
        Format {
            omit_empty: omit,
            ..self
        }
    }

    /// The line for `entry`.
    pub fn render(&self, entry: &Entry<'_>) -> String {
        match &self.shape {
            Shape::Text(template) => {
                let mut line = String::new();
                template.render(entry, self.missing_text(), &mut line);
                line
            }
            Shape::Json { fields, typed } => {
                let object = self.render_object(fields, entry, *typed);
                let mut line = serde_json::Value::Object(object).to_string();
                line.push('\n');
                line
            }
        }
    }

    /// What text shows for an unknown value.
    fn missing_text(&self) -> &'static str {
        if self.omit_empty { "" } else { "-" }
    }

    fn render_object(
        &self,
        fields: &BTreeMap<String, Field>,
        entry: &Entry<'_>,
        typed: bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut object = serde_json::Map::new();
        for (key, field) in fields {
            let value = match field {
                Field::Literal(v) => v.clone(),
                Field::Object(inner) => {
                    serde_json::Value::Object(self.render_object(inner, entry, typed))
                }
                Field::Template(template) => match template.single_operator() {
                    Some((op, max)) if typed => match entry.value(op) {
                        Value::Number(n) => n.into(),
                        Value::Text(t) => truncate(&t, max).into(),
                        Value::Missing => serde_json::Value::Null,
                    },
                    _ => {
                        let mut text = String::new();
                        template.render(entry, self.missing_text(), &mut text);
                        text.into()
                    }
                },
            };
            let empty = match &value {
                serde_json::Value::Null => true,
                serde_json::Value::String(s) => s.is_empty(),
                serde_json::Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if !(self.omit_empty && empty) {
                object.insert(key.clone(), value);
            }
        }
        object
    }
}

fn parse_object(
    dictionary: &serde_json::Map<String, serde_json::Value>,
    keys: &mut Vec<String>,
) -> Result<BTreeMap<String, Field>, JsonFormatError> {
    let mut fields = BTreeMap::new();
    for (key, value) in dictionary {
        keys.push(key.clone());
        let field = match value {
            serde_json::Value::String(s) => {
                Field::Template(Template::parse(s).map_err(|message| JsonFormatError {
                    keys: keys.clone(),
                    message,
                })?)
            }
            serde_json::Value::Object(inner) => Field::Object(parse_object(inner, keys)?),
            serde_json::Value::Array(_) => {
                return Err(JsonFormatError {
                    keys: keys.clone(),
                    message: "a list is not a format dictionary value".to_string(),
                });
            }
            literal => Field::Literal(literal.clone()),
        };
        keys.pop();
        fields.insert(key.clone(), field);
    }
    Ok(fields)
}

fn truncate(text: &str, max: Option<usize>) -> String {
    match max {
        Some(n) => text.chars().take(n).collect(),
        None => text.to_string(),
    }
}

impl Template {
    fn parse(format: &str) -> Result<Template, String> {
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
        Ok(Template(pieces))
    }

    /// The operator, when the template is one operator and nothing else.
    fn single_operator(&self) -> Option<(&Operator, Option<usize>)> {
        match self.0.as_slice() {
            [Piece::Operator(op, max)] => Some((op, *max)),
            _ => None,
        }
    }

    fn render(&self, entry: &Entry<'_>, missing: &str, line: &mut String) {
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => line.push_str(t),
                Piece::Operator(op, max) => {
                    let value = match entry.value(op) {
                        Value::Text(t) => t,
                        Value::Number(n) => n.to_string(),
                        Value::Missing => missing.to_string(),
                    };
                    match max {
                        Some(n) => line.extend(value.chars().take(*n)),
                        None => line.push_str(&value),
                    }
                }
            }
        }
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
        // `REQUEST_HEADER` and `RESPONSE_HEADER` are the long names newer
        // Envoy documents.
        "REQ" | "REQUEST_HEADER" => {
            let (main, alternative) = header(name)?;
            Operator::Request(main, alternative)
        }
        "RESP" | "RESPONSE_HEADER" => {
            let (main, alternative) = header(name)?;
            Operator::Response(main, alternative)
        }
        "PROTOCOL" => Operator::Protocol,
        "RESPONSE_CODE" => Operator::ResponseCode,
        "RESPONSE_FLAGS" => Operator::ResponseFlags,
        "RESPONSE_CODE_DETAILS" => Operator::ResponseCodeDetails,
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

impl Entry<'_> {
    /// What `op` gives for this entry.
    pub(super) fn value(&self, op: &Operator) -> Value {
        let text = |v: Option<String>| v.map_or(Value::Missing, Value::Text);
        let either = |get: &dyn Fn(&str) -> Option<String>, main: &str, alt: &Option<String>| {
            text(get(main).or_else(|| alt.as_deref().and_then(get)))
        };
        let count = |n: usize| Value::Number(u64::try_from(n).unwrap_or(u64::MAX));
        match op {
            Operator::StartTime(format) => Value::Text(
                chrono::DateTime::<chrono::Utc>::from(self.start)
                    .format(format)
                    .to_string(),
            ),
            // Lossy, as the log line before showed whatever bytes it could.
            Operator::Request(main, alt) => either(
                &|n| {
                    self.request_header_bytes(n)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                },
                main,
                alt,
            ),
            Operator::Response(main, alt) => match self.response {
                Some(response) => either(
                    &|n| {
                        response
                            .headers
                            .get(n)
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    },
                    main,
                    alt,
                ),
                None => Value::Missing,
            },
            Operator::Protocol => text(
                self.request
                    .map(|r| crate::http::protocol_name(r.version).to_string()),
            ),
            // HTTP: `0` when no response was sent. A connection has none.
            Operator::ResponseCode => match self.request {
                Some(_) => Value::Number(self.response.map_or(0, |r| r.status.as_u16()).into()),
                None => Value::Missing,
            },
            Operator::ResponseFlags => Value::Text(self.flags.to_string()),
            Operator::ResponseCodeDetails => text(self.code_details.map(str::to_string)),
            Operator::BytesReceived => count(self.bytes_received),
            Operator::BytesSent => count(self.bytes_sent),
            Operator::Duration => {
                Value::Number(u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX))
            }
            Operator::UpstreamHost => text(self.upstream_host.map(|a| a.to_string())),
            Operator::UpstreamCluster => text(self.cluster.map(str::to_string)),
            Operator::RouteName => text(
                self.route_name
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
            ),
            Operator::DownstreamRemoteAddress => {
                text(self.downstream_remote.map(|a| a.to_string()))
            }
            Operator::DownstreamRemoteAddressWithoutPort => {
                text(self.downstream_remote.map(|a| a.ip().to_string()))
            }
            Operator::DownstreamLocalAddress => text(self.downstream_local.map(|a| a.to_string())),
            Operator::DownstreamLocalAddressWithoutPort => {
                text(self.downstream_local.map(|a| a.ip().to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::http::{RequestHeader, ResponseHeader};
    use std::time::{Duration, SystemTime};

    fn entry<'a>(
        request: Option<&'a RequestHeader>,
        response: Option<&'a ResponseHeader>,
    ) -> Entry<'a> {
        Entry {
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            duration: Duration::from_millis(42),
            request,
            response,
            flags: "-",
            code_details: None,
            bytes_received: 5,
            bytes_sent: 23,
            upstream_host: Some("127.0.0.1:8080".parse().unwrap()),
            cluster: Some("backend"),
            route_name: None,
            downstream_remote: Some("10.0.0.1:5555".parse().unwrap()),
            downstream_local: None,
        }
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
        let line = |response| Format::envoy_default().render(&entry(Some(&request), response));
        assert_eq!(
            line(Some(&response)),
            "[2023-11-14T22:13:20.123Z] \"POST /greet?x=1 HTTP/1.1\" 200 - 5 23 42 - \"-\" \
             \"curl/8\" \"-\" \"example.com\" \"127.0.0.1:8080\"\n"
        );
        // No response sent: code 0.
        assert!(line(None).contains("\" 0 - 5 23 42 "));
    }

    #[test]
    fn a_connection_has_no_request_protocol_or_code() {
        let line = Format::envoy_default().render(&entry(None, None));
        assert_eq!(
            line,
            "[2023-11-14T22:13:20.123Z] \"- - -\" - - 5 23 42 - \"-\" \"-\" \"-\" \"-\" \
             \"127.0.0.1:8080\"\n"
        );
    }

    #[test]
    fn custom_formats_take_alternatives_lengths_and_percent_signs() {
        let format = Format::text(
            "%REQ(X-MISSING?USER-AGENT):4% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%% \
             %START_TIME(%s)% %UPSTREAM_CLUSTER% %ROUTE_NAME% %REQUEST_HEADER(:METHOD)%",
        )
        .unwrap();
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        request.insert_header("user-agent", "curl/8").unwrap();
        let mut e = entry(Some(&request), None);
        e.start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        e.cluster = None;
        e.route_name = Some("");
        assert_eq!(format.render(&e), "curl 10.0.0.1 100% 1700000000 - - GET");
        // omit_empty_values: nothing instead of `-`.
        let format = format.omit_empty_values(true);
        assert_eq!(format.render(&e), "curl 10.0.0.1 100% 1700000000   GET");
    }

    #[test]
    fn response_code_details_are_logged_when_known() {
        let format = Format::text("%RESPONSE_CODE%:%RESPONSE_CODE_DETAILS%").unwrap();
        let request = RequestHeader::build("GET", b"/", None).unwrap();
        let response = ResponseHeader::build(404, None).unwrap();
        let mut e = entry(Some(&request), Some(&response));
        assert_eq!(format.render(&e), "404:-");
        e.code_details = Some("route_not_found");
        assert_eq!(format.render(&e), "404:route_not_found");
    }

    #[test]
    fn header_values_beyond_ascii_are_logged() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        let value = http::HeaderValue::from_bytes("café".as_bytes()).unwrap();
        request.insert_header("x-name", value).unwrap();
        let format = Format::text("%REQ(X-NAME)%").unwrap();
        assert_eq!(format.render(&entry(Some(&request), None)), "café");
    }

    #[test]
    fn unknown_or_malformed_operators_are_named() {
        let err = |f: &str| Format::text(f).unwrap_err();
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

    fn json_format(dictionary: serde_json::Value, typed: bool) -> Format {
        Format::json(dictionary.as_object().unwrap(), typed).unwrap()
    }

    #[test]
    fn typed_dictionaries_keep_numbers_and_write_null_for_unknowns() {
        let mut request = RequestHeader::build("GET", b"/a", None).unwrap();
        request.insert_header("x-id", "7").unwrap();
        let response = ResponseHeader::build(503, None).unwrap();
        let format = json_format(
            serde_json::json!({
                "status": "%RESPONSE_CODE%",
                "path": "%REQ(:PATH)%",
                "took": "%DURATION%ms",
                "agent": "%REQ(USER-AGENT)%",
                "up": { "host": "%UPSTREAM_HOST%", "route": "%ROUTE_NAME%" },
                "id": "%REQ(X-ID):0%",
                "version": 2,
                "sampled": true,
            }),
            true,
        );
        let e = entry(Some(&request), Some(&response));
        let line = format.render(&e);
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.trim_end(),
            r#"{"agent":null,"id":"","path":"/a","sampled":true,"status":503,"took":"42ms","up":{"host":"127.0.0.1:8080","route":null},"version":2}"#
        );
        // omit_empty_values: unknown and empty values leave their keys out,
        // and an object left empty goes too.
        let mut e = e;
        e.upstream_host = None;
        let line = format.omit_empty_values(true).render(&e);
        assert_eq!(
            line.trim_end(),
            r#"{"path":"/a","sampled":true,"status":503,"took":"42ms","version":2}"#
        );
    }

    #[test]
    fn untyped_dictionaries_write_strings_and_dashes() {
        let request = RequestHeader::build("GET", b"/a", None).unwrap();
        let format = json_format(
            serde_json::json!({ "status": "%RESPONSE_CODE%", "agent": "%REQ(USER-AGENT)%" }),
            false,
        );
        assert_eq!(
            format.render(&entry(Some(&request), None)).trim_end(),
            r#"{"agent":"-","status":"0"}"#
        );
    }

    #[test]
    fn dictionary_errors_name_their_keys() {
        let err = |v: serde_json::Value| Format::json(v.as_object().unwrap(), true).unwrap_err();
        assert_eq!(
            err(serde_json::json!({ "a": { "b": "%NOPE%" } })),
            JsonFormatError {
                keys: vec!["a".into(), "b".into()],
                message: "command operator %NOPE% is not supported".into(),
            }
        );
        assert_eq!(
            err(serde_json::json!({ "list": ["%DURATION%"] })).keys,
            vec!["list".to_string()]
        );
    }
}
