//! The request and the simulated upstream response, from the command line.

use crate::files::{MAX_BODY_BYTES, read_bounded};
use anyhow::{Result, bail};
use polyhost::HeaderMap;
use std::path::Path;

/// The request pseudo-headers, in the order Envoy presents them.
const REQUEST_PSEUDO: [&str; 4] = [":method", ":path", ":authority", ":scheme"];

/// Splits `name: value` (a pseudo-header such as `:path: /x` at its second
/// colon). Names are lower-cased, as Envoy presents them to plugins; the
/// value is trimmed.
///
/// # Errors
/// No colon after the name, or an empty name.
pub fn parse_header(raw: &str) -> Result<(String, String)> {
    let skip = usize::from(raw.starts_with(':'));
    let Some(colon) = raw[skip..].find(':').map(|i| i + skip) else {
        bail!("header `{raw}` is not `name: value`");
    };
    let name = raw[..colon].trim().to_ascii_lowercase();
    if name.is_empty() || name == ":" {
        bail!("header `{raw}` has no name");
    }
    Ok((name, raw[colon + 1..].trim().to_string()))
}

/// What the command line says about the request line.
pub struct RequestLine<'a> {
    /// `--method`, if given.
    pub method: Option<&'a str>,
    /// `--path`, if given.
    pub path: Option<&'a str>,
    /// Every `-H`, as given.
    pub headers: &'a [String],
}

/// The request headers: the pseudo-headers first (from `-H`, the flags or
/// the defaults `GET`, `/`, `localhost`, `http`), then every other `-H` in
/// order.
///
/// A pseudo-header given with `-H` is used as given; given as well by its
/// flag (`--path`, `--method`) it is an error naming both, so neither
/// silently wins. As Envoy's HTTP/1 codec does, a `host` header becomes
/// `:authority`.
///
/// # Errors
/// A malformed header, an unknown or repeated pseudo-header, or a conflict.
pub fn request_headers(line: &RequestLine) -> Result<HeaderMap> {
    let mut pseudo: [Option<String>; 4] = Default::default();
    let mut rest = Vec::new();
    for raw in line.headers {
        let (name, value) = parse_header(raw)?;
        if name == "host" {
            if pseudo[2].is_some() {
                bail!(
                    "`-H '{raw}'`: the authority is already given (`host` and `:authority` are the same header to Envoy)"
                );
            }
            pseudo[2] = Some(value);
            continue;
        }
        if !name.starts_with(':') {
            rest.push((name, value));
            continue;
        }
        let Some(slot) = REQUEST_PSEUDO.iter().position(|p| *p == name) else {
            bail!(
                "`-H '{raw}'`: `{name}` is not a request pseudo-header (those are {})",
                REQUEST_PSEUDO.join(", ")
            );
        };
        if pseudo[slot].is_some() {
            let also = if slot == 2 { " (or `host`)" } else { "" };
            bail!("`-H '{raw}'`: `{name}`{also} is given more than once");
        }
        let flag = match slot {
            0 => line.method.map(|m| ("--method", m)),
            1 => line.path.map(|p| ("--path", p)),
            _ => None,
        };
        if let Some((flag, given)) = flag {
            bail!("`-H '{raw}'` conflicts with `{flag} {given}`: give the {name} one way");
        }
        pseudo[slot] = Some(value);
    }
    let defaults = [
        line.method.unwrap_or("GET"),
        line.path.unwrap_or("/"),
        "localhost",
        "http",
    ];
    let mut headers = HeaderMap::new();
    for ((name, given), default) in REQUEST_PSEUDO.iter().zip(pseudo).zip(defaults) {
        headers.add(name, given.as_deref().unwrap_or(default));
    }
    for (name, value) in rest {
        headers.add(name, value);
    }
    Ok(headers)
}

/// The simulated upstream's response headers: `:status` (from `--status`,
/// a `:status` response header, or 200), then every `--response-header`
/// in order, repeated names kept.
///
/// # Errors
/// A malformed header, a pseudo-header other than `:status`, a `:status`
/// that is not a number from 100 to 999, or `:status` given twice.
pub fn response_headers(status: Option<u16>, given: &[String]) -> Result<HeaderMap> {
    let mut code = None;
    let mut rest = Vec::new();
    for raw in given {
        let (name, value) = parse_header(raw)?;
        match name.as_str() {
            ":status" => {
                if let Some(flag) = status {
                    bail!(
                        "`--response-header '{raw}'` conflicts with `--status {flag}`: give the status one way"
                    );
                }
                if code.is_some() {
                    bail!("`--response-header '{raw}'`: `:status` is given more than once");
                }
                match value.parse::<u16>() {
                    Ok(n) if (100..=999).contains(&n) => code = Some(n),
                    _ => bail!(
                        "`--response-header '{raw}'`: `:status` must be a number from 100 to 999"
                    ),
                }
            }
            n if n.starts_with(':') => {
                bail!(
                    "`--response-header '{raw}'`: `{n}` is not a response pseudo-header (only `:status` is)"
                )
            }
            _ => rest.push((name, value)),
        }
    }
    let mut headers = HeaderMap::new();
    headers.add(":status", status.or(code).unwrap_or(200).to_string());
    for (name, value) in rest {
        headers.add(name, value);
    }
    Ok(headers)
}

/// A body given inline, as `@FILE` (as curl reads it), or by the older
/// `--*-body-file` flag; files are read with the 16 MiB bound.
///
/// # Errors
/// The file cannot be read or is over the bound.
pub fn body(what: &str, inline: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    Ok(match (inline, file) {
        (Some(text), _) => match text.strip_prefix('@') {
            Some(path) => Some(read_bounded(what, Path::new(path), MAX_BODY_BYTES)?),
            None => Some(text.as_bytes().to_vec()),
        },
        (None, Some(path)) => Some(read_bounded(what, path, MAX_BODY_BYTES)?),
        (None, None) => None,
    })
}

/// `body` in chunks of at most `size` bytes (one chunk without a size); an
/// empty body is one empty chunk, so the plugin still sees end of stream.
pub fn chunks(body: &[u8], size: Option<usize>) -> Vec<&[u8]> {
    match size {
        Some(size) if !body.is_empty() => body.chunks(size.max(1)).collect(),
        _ => vec![body],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(
        method: Option<&'a str>,
        path: Option<&'a str>,
        headers: &'a [String],
    ) -> RequestLine<'a> {
        RequestLine {
            method,
            path,
            headers,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pseudo_headers_split_at_their_second_colon() {
        assert_eq!(
            parse_header(":path: /x").unwrap(),
            (":path".into(), "/x".into())
        );
        assert_eq!(
            parse_header("X-A:b:c").unwrap(),
            ("x-a".into(), "b:c".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn explicit_pseudo_headers_win_over_defaults_and_conflict_with_flags() {
        let h = strings(&[":path: /x", ":authority: example.com", "a: 1"]);
        let map = request_headers(&line(None, None, &h)).unwrap();
        assert_eq!(
            map.to_string_pairs(),
            [
                (":method", "GET"),
                (":path", "/x"),
                (":authority", "example.com"),
                (":scheme", "http"),
                ("a", "1")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let err = request_headers(&line(None, Some("/y"), &h))
            .unwrap_err()
            .to_string();
        assert!(err.contains("conflicts with `--path /y`"), "{err}");
        let h = strings(&["host: a", ":authority: b"]);
        assert!(request_headers(&line(None, None, &h)).is_err());
        let h = strings(&[":bogus: 1"]);
        let err = request_headers(&line(None, None, &h))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`:bogus` is not a request pseudo-header"),
            "{err}"
        );
    }

    #[test]
    fn response_status_comes_from_one_place() {
        let h = strings(&[":status: 404", "set-cookie: a", "set-cookie: b"]);
        let map = response_headers(None, &h).unwrap();
        assert_eq!(map.get_str(":status"), Some("404"));
        assert_eq!(map.len(), 3);
        assert!(response_headers(Some(200), &h).is_err());
        assert!(response_headers(None, &strings(&[":status: x"])).is_err());
    }

    #[test]
    fn bodies_split_into_chunks() {
        assert_eq!(chunks(b"abcde", Some(2)), vec![&b"ab"[..], b"cd", b"e"]);
        assert_eq!(chunks(b"abc", None), vec![&b"abc"[..]]);
        assert_eq!(chunks(b"", Some(4)), vec![&b""[..]]);
    }
}
