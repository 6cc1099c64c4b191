//! The `location` of a route's `redirect`: the request's URL with the
//! parts the redirect names replaced.

use crate::config::{PathRedirect, Redirect};

/// What of the request a redirect starts from.
pub(super) struct RequestUrl<'a> {
    /// The scheme the client used (`x-forwarded-proto`, else `:scheme`).
    pub scheme: &'a str,
    /// `:authority` (or `host`): a host, with a port or not.
    pub authority: &'a str,
    /// `:path`, with its query string.
    pub path: &'a str,
}

/// The URL `redirect` sends the client to. `matched_prefix` is what the
/// route matched by prefix (or exactly), which `prefix_rewrite` replaces.
///
/// The port: `port_redirect` if set; none with `host_redirect` (its value
/// is taken as it is); otherwise the request's, unless it is the default
/// port of the new scheme or the scheme changed (then it was the old
/// scheme's port).
pub(super) fn location(
    redirect: &Redirect,
    request: &RequestUrl<'_>,
    matched_prefix: Option<&str>,
) -> String {
    let scheme = redirect.scheme.as_deref().unwrap_or(request.scheme);
    let (request_host, request_port) = split_port(request.authority);
    let authority = match (&redirect.host, redirect.port) {
        (Some(host), Some(port)) => format!("{}:{port}", split_port(host).0),
        (Some(host), None) => host.clone(),
        (None, Some(port)) => format!("{request_host}:{port}"),
        (None, None) => {
            let default_port = match scheme {
                "https" => Some("443"),
                "http" => Some("80"),
                _ => None,
            };
            match request_port {
                Some(port)
                    if Some(port) != default_port
                        && scheme.eq_ignore_ascii_case(request.scheme) =>
                {
                    format!("{request_host}:{port}")
                }
                _ => request_host.to_string(),
            }
        }
    };
    let (path, query) = match request.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.path, None),
    };
    let query = query.filter(|_| !redirect.strip_query);
    let with_query = |path: &str| match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let path = match &redirect.path {
        PathRedirect::Keep => with_query(path),
        // A query string in `path_redirect` replaces the request's.
        PathRedirect::Replace(new) if new.contains('?') => new.clone(),
        PathRedirect::Replace(new) => with_query(new),
        PathRedirect::Prefix(new) => {
            let rest = matched_prefix
                .and_then(|prefix| path.strip_prefix(prefix))
                .unwrap_or(path);
            with_query(&format!("{new}{rest}"))
        }
    };
    format!("{scheme}://{authority}{path}")
}

/// A host and its port, if the authority has one (`[::1]:80` included).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let port_at = if authority.starts_with('[') {
        authority.find("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match port_at {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> Redirect {
        Redirect {
            scheme: None,
            host: None,
            port: None,
            path: PathRedirect::Keep,
            strip_query: false,
            status: 301,
        }
    }

    fn at(
        scheme: &'static str,
        authority: &'static str,
        path: &'static str,
    ) -> RequestUrl<'static> {
        RequestUrl {
            scheme,
            authority,
            path,
        }
    }

    #[test]
    fn https_redirects_drop_the_old_schemes_port() {
        let https = Redirect {
            scheme: Some("https".into()),
            ..redirect()
        };
        let request = at("http", "example.com:8080", "/a?x=1");
        assert_eq!(
            location(&https, &request, None),
            "https://example.com/a?x=1"
        );
        assert_eq!(
            location(&https, &at("http", "[::1]:80", "/"), None),
            "https://[::1]/"
        );
        let same_scheme = at("https", "example.com:8443", "/a");
        assert_eq!(
            location(&https, &same_scheme, None),
            "https://example.com:8443/a"
        );
        let port = Redirect {
            port: Some(9443),
            ..https
        };
        assert_eq!(
            location(&port, &request, None),
            "https://example.com:9443/a?x=1"
        );
    }

    #[test]
    fn hosts_paths_prefixes_and_queries() {
        let request = at("http", "example.com", "/old/page?q=2");
        let host = Redirect {
            host: Some("other.org".into()),
            ..redirect()
        };
        assert_eq!(
            location(&host, &request, None),
            "http://other.org/old/page?q=2"
        );
        let path = Redirect {
            path: PathRedirect::Replace("/new".into()),
            strip_query: true,
            ..redirect()
        };
        assert_eq!(location(&path, &request, None), "http://example.com/new");
        let path_with_query = Redirect {
            path: PathRedirect::Replace("/new?from=old".into()),
            ..redirect()
        };
        assert_eq!(
            location(&path_with_query, &request, None),
            "http://example.com/new?from=old"
        );
        let prefix = Redirect {
            path: PathRedirect::Prefix("/v2/".into()),
            ..redirect()
        };
        assert_eq!(
            location(&prefix, &request, Some("/old/")),
            "http://example.com/v2/page?q=2"
        );
    }
}
