//! Route matching with Envoy's semantics: virtual host selection by
//! authority, then the first route whose path and header matchers all hold.

use std::fmt;

use super::model::{Route, VirtualHost};

/// The most memory one compiled regex may take. Envoy bounds RE2 programs
/// too (`max_program_size`); this keeps a hostile pattern from exhausting
/// memory at load time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A route's `match`: a path matcher plus header matchers, all of which must
/// hold.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteMatch {
    /// `prefix`, `path`, `path_separated_prefix` or `safe_regex`.
    pub path: PathMatch,
    /// `headers`.
    pub headers: Vec<HeaderMatcher>,
    /// `case_sensitive` (default `true`). Applies to `prefix`, `path` and
    /// `path_separated_prefix`, not to `safe_regex`, as in Envoy.
    pub case_sensitive: bool,
}

/// How a route matches the request path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathMatch {
    /// `prefix`: the path starts with this.
    Prefix(String),
    /// `path`: the path is exactly this.
    Exact(String),
    /// `path_separated_prefix`: the path is this, or this then `/...`.
    SeparatedPrefix(String),
    /// `safe_regex`: the whole path matches.
    Regex(FullRegex),
}

/// One entry of `headers` in a route's `match`.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatcher {
    /// `name`, lower-cased: the name the `header` lookup is asked for.
    pub name: String,
    /// What the value must be.
    pub rule: HeaderRule,
    /// `invert_match`.
    pub invert: bool,
    /// `treat_missing_header_as_empty`: match a missing header as `""`.
    pub treat_missing_as_empty: bool,
}

/// The test a [`HeaderMatcher`] applies.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaderRule {
    /// `present_match`: `true` holds when the header is present, `false`
    /// when it is absent.
    Present(bool),
    /// The deprecated `exact_match`, or no matcher at all: the header is
    /// present and, unless this is empty, equal to it (Envoy treats an empty
    /// `exact_match` as "any value").
    Value(String),
    /// `string_match`, or the deprecated `prefix_match`, `suffix_match`,
    /// `contains_match`, `safe_regex_match`.
    String(StringMatcher),
}

/// Envoy's `type.matcher.v3.StringMatcher`.
#[derive(Clone, Debug, PartialEq)]
pub struct StringMatcher {
    /// The pattern.
    pub pattern: StringPattern,
    /// `ignore_case` (ASCII); not applied to regexes, as in Envoy.
    pub ignore_case: bool,
}

/// One kind of [`StringMatcher`].
#[derive(Clone, Debug, PartialEq)]
pub enum StringPattern {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `suffix`.
    Suffix(String),
    /// `contains`.
    Contains(String),
    /// `safe_regex`: the whole value matches.
    Regex(FullRegex),
}

/// A regex that must match a whole string, as RE2's full match does in
/// Envoy. The `regex` crate's syntax is close to RE2's; it differs in that
/// `\d`, `\w` and `\s` are Unicode-aware.
#[derive(Clone)]
pub struct FullRegex {
    source: String,
    anchored: regex::Regex,
}

impl FullRegex {
    /// Compiles `source` to match whole strings only.
    ///
    /// # Errors
    ///
    /// The regex's syntax error, or that it compiles beyond the size limit.
    pub fn new(source: &str) -> Result<FullRegex, regex::Error> {
        // The group keeps alternations inside the anchors: `a|b` must match
        // all of "a" or all of "b".
        let anchored = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(FullRegex {
            source: source.to_string(),
            anchored,
        })
    }

    /// The regex as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether all of `text` matches.
    pub fn is_full_match(&self, text: &str) -> bool {
        self.anchored.is_match(text)
    }
}

impl PartialEq for FullRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for FullRegex {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_tuple("FullRegex").field(&self.source).finish()
    }
}

impl StringMatcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.pattern {
            StringPattern::Exact(p) => eq(value, p, ic),
            StringPattern::Prefix(p) => starts_with(value, p, ic),
            StringPattern::Suffix(p) => ends_with(value, p, ic),
            StringPattern::Contains(p) => {
                if ic {
                    value.to_ascii_lowercase().contains(&p.to_ascii_lowercase())
                } else {
                    value.contains(p.as_str())
                }
            }
            StringPattern::Regex(re) => re.is_full_match(value),
        }
    }
}

impl HeaderMatcher {
    /// Whether the request's headers satisfy this matcher; `header` returns
    /// the value of a lower-case header name, several values joined with
    /// `,` as Envoy joins them.
    pub fn matches<'h>(&self, header: &impl Fn(&str) -> Option<&'h str>) -> bool {
        let value = match header(&self.name) {
            Some(value) => value,
            None if self.treat_missing_as_empty => "",
            // Envoy: a missing header fails every matcher, inverted or not,
            // except a presence test that asks for exactly that.
            None => {
                return matches!(self.rule, HeaderRule::Present(present) if present == self.invert);
            }
        };
        let matched = match &self.rule {
            HeaderRule::Present(present) => *present,
            HeaderRule::Value(expected) => expected.is_empty() || value == expected,
            HeaderRule::String(m) => m.matches(value),
        };
        matched != self.invert
    }
}

impl RouteMatch {
    /// Whether a request matches. `path` is the `:path` as received; its
    /// query string (and fragment) is dropped before matching, as Envoy
    /// does. `header` returns the value of a lower-case header name
    /// (pseudo-headers such as `:method` included), `None` when absent;
    /// several values should be joined with `,`.
    pub fn matches<'h>(&self, path: &str, header: impl Fn(&str) -> Option<&'h str>) -> bool {
        self.matches_path(path) && self.headers.iter().all(|h| h.matches(&header))
    }

    fn matches_path(&self, path: &str) -> bool {
        let path = strip_query(path);
        let ic = !self.case_sensitive;
        match &self.path {
            PathMatch::Prefix(p) => starts_with(path, p, ic),
            PathMatch::Exact(p) => eq(path, p, ic),
            PathMatch::SeparatedPrefix(p) => {
                starts_with(path, p, ic)
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatch::Regex(re) => re.is_full_match(path),
        }
    }
}

impl VirtualHost {
    /// The first route that matches, as Envoy picks it; see
    /// [`RouteMatch::matches`] for `path` and `header`.
    pub fn route<'h>(
        &self,
        path: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<&Route> {
        self.route_index(path, header).map(|i| &self.routes[i])
    }

    /// Where in `routes` [`VirtualHost::route`]'s pick is.
    pub fn route_index<'h>(
        &self,
        path: &str,
        header: impl Fn(&str) -> Option<&'h str>,
    ) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matcher.matches(path, &header))
    }
}

/// Picks the virtual host for a request's authority (`:authority` or
/// `Host`), as Envoy does: an exact domain, then the longest suffix wildcard
/// (`*.example.com`, `*-canary`), then the longest prefix wildcard
/// (`example.*`), then `*`. Hosts compare case-insensitively, and a
/// wildcard must match at least one character.
///
/// When the authority carries a port (`example.com:8080`) and no domain
/// matches it with the port, the search is repeated without the port before
/// falling back to `*`, so `example.com` serves `example.com:8080`. (Envoy
/// itself strips the port only when `ignore_port_in_host_matching` or
/// `strip_matching_host_port` is set; without the port retry such requests
/// would fall to `*`.)
pub fn select_virtual_host<'a>(
    hosts: &'a [VirtualHost],
    authority: &str,
) -> Option<&'a VirtualHost> {
    // Most authorities are lowercase already: no copy for those.
    let host: std::borrow::Cow<str> = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        authority.to_ascii_lowercase().into()
    } else {
        authority.into()
    };
    if let Some(found) = find_named(hosts, &host) {
        return Some(found);
    }
    if let Some(without_port) = strip_port(&host)
        && let Some(found) = find_named(hosts, without_port)
    {
        return Some(found);
    }
    hosts.iter().find(|vh| vh.domains.iter().any(|d| d == "*"))
}

/// Exact, then suffix-wildcard, then prefix-wildcard match, longest
/// wildcard first; ties go to the earlier virtual host.
fn find_named<'a>(hosts: &'a [VirtualHost], host: &str) -> Option<&'a VirtualHost> {
    if let Some(vh) = hosts.iter().find(|vh| vh.domains.iter().any(|d| d == host)) {
        return Some(vh);
    }
    let longest = |pick: &dyn Fn(&str) -> Option<usize>| {
        let mut best: Option<(usize, &'a VirtualHost)> = None;
        for vh in hosts {
            for d in &vh.domains {
                if let Some(len) = pick(d)
                    && best.is_none_or(|(best_len, _)| len > best_len)
                {
                    best = Some((len, vh));
                }
            }
        }
        best.map(|(_, vh)| vh)
    };
    let suffix = |d: &str| {
        let suffix = d.strip_prefix('*')?;
        (!suffix.is_empty() && suffix.len() < host.len() && host.ends_with(suffix))
            .then_some(suffix.len())
    };
    if let Some(vh) = longest(&suffix) {
        return Some(vh);
    }
    let prefix = |d: &str| {
        let prefix = d.strip_suffix('*')?;
        (!prefix.is_empty() && prefix.len() < host.len() && host.starts_with(prefix))
            .then_some(prefix.len())
    };
    longest(&prefix)
}

/// The host without a trailing `:port`, if it has one. IPv6 literals keep
/// their brackets: `[::1]:80` becomes `[::1]`.
fn strip_port(host: &str) -> Option<&str> {
    let (name, port) = if host.starts_with('[') {
        let close = host.rfind(']')?;
        let rest = &host[close + 1..];
        (&host[..=close], rest.strip_prefix(':')?)
    } else {
        let (name, port) = host.rsplit_once(':')?;
        if name.contains(':') {
            // A bare IPv6 address, not host:port.
            return None;
        }
        (name, port)
    };
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

/// The path without its query string and fragment.
fn strip_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    }
}

fn eq(value: &str, pattern: &str, ignore_case: bool) -> bool {
    if ignore_case {
        value.eq_ignore_ascii_case(pattern)
    } else {
        value == pattern
    }
}

fn starts_with(value: &str, pattern: &str, ignore_case: bool) -> bool {
    // Compared as bytes: a prefix may end inside a multi-byte character of
    // the value without that being a panic.
    let (value, pattern) = (value.as_bytes(), pattern.as_bytes());
    value.len() >= pattern.len() && eq_bytes(&value[..pattern.len()], pattern, ignore_case)
}

fn ends_with(value: &str, pattern: &str, ignore_case: bool) -> bool {
    let (value, pattern) = (value.as_bytes(), pattern.as_bytes());
    value.len() >= pattern.len()
        && eq_bytes(&value[value.len() - pattern.len()..], pattern, ignore_case)
}

fn eq_bytes(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}
