//! Envoy's access log filters (`config.accesslog.v3.AccessLogFilter`):
//! which requests or connections an access log writes a line for.

use super::Entry;
use crate::config::HeaderMatcher;

/// One `filter` of an `access_log` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `status_code_filter`: the response code (`0` when none was sent)
    /// compared with a value.
    StatusCode(Comparison),
    /// `duration_filter`: the duration in milliseconds compared with a
    /// value.
    Duration(Comparison),
    /// `not_health_check_filter`. Polyhost has no health check filter that
    /// could mark a request as a health check, so every entry passes.
    NotHealthCheck,
    /// `and_filter`: every filter passes (checked in order, stopping at
    /// the first that does not).
    And(Vec<Filter>),
    /// `or_filter`: some filter passes (stopping at the first that does).
    Or(Vec<Filter>),
    /// `header_filter`: a request header matcher. A connection has no
    /// headers, so only matchers that hold for a missing header pass it.
    Header(HeaderMatcher),
    /// `response_flag_filter`: one of these response flags is set; any
    /// flag when the list is empty.
    ResponseFlag(Vec<String>),
}

/// Envoy's `ComparisonFilter`. Its value is a `RuntimeUInt32`; Polyhost
/// has no runtime, so the `default_value` is the value, as in an Envoy
/// whose runtime does not set the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// `op`.
    pub op: CompareOp,
    /// `value.default_value`.
    pub value: u64,
}

/// `ComparisonFilter.Op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `EQ` (the default).
    Eq,
    /// `GE`.
    Ge,
    /// `LE`.
    Le,
}

impl Comparison {
    fn holds(self, actual: u64) -> bool {
        match self.op {
            CompareOp::Eq => actual == self.value,
            CompareOp::Ge => actual >= self.value,
            CompareOp::Le => actual <= self.value,
        }
    }
}

impl Filter {
    /// Whether `entry` is logged.
    pub fn admits(&self, entry: &Entry<'_>) -> bool {
        match self {
            Filter::StatusCode(c) => {
                c.holds(entry.response.map_or(0, |r| u64::from(r.status.as_u16())))
            }
            Filter::Duration(c) => {
                c.holds(u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX))
            }
            Filter::NotHealthCheck => true,
            Filter::And(filters) => filters.iter().all(|f| f.admits(entry)),
            Filter::Or(filters) => filters.iter().any(|f| f.admits(entry)),
            Filter::Header(matcher) => matcher.matches(&|name| entry.request_header(name)),
            Filter::ResponseFlag(wanted) => {
                let set = entry
                    .flags
                    .split(',')
                    .filter(|f| !f.is_empty() && *f != "-");
                if wanted.is_empty() {
                    set.count() > 0
                } else {
                    set.into_iter().any(|f| wanted.iter().any(|w| w == f))
                }
            }
        }
    }
}

/// The response flags `response_flag_filter` accepts, as Envoy's API lists
/// them.
pub const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderRule, StringMatcher, StringPattern};
    use pingora::http::{RequestHeader, ResponseHeader};
    use std::time::{Duration, SystemTime};

    fn entry<'a>(
        request: Option<&'a RequestHeader>,
        response: Option<&'a ResponseHeader>,
        flags: &'a str,
    ) -> Entry<'a> {
        Entry {
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(250),
            request,
            response,
            flags,
            code_details: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            cluster: None,
            route_name: None,
            downstream_remote: None,
            downstream_local: None,
        }
    }

    fn compare(op: CompareOp, value: u64) -> Comparison {
        Comparison { op, value }
    }

    #[test]
    fn status_and_duration_compare_as_envoy_does() {
        let ok = ResponseHeader::build(200, None).unwrap();
        let failed = ResponseHeader::build(503, None).unwrap();
        let request = RequestHeader::build("GET", b"/", None).unwrap();
        let errors = Filter::StatusCode(compare(CompareOp::Ge, 500));
        assert!(!errors.admits(&entry(Some(&request), Some(&ok), "-")));
        assert!(errors.admits(&entry(Some(&request), Some(&failed), "UF")));
        // No response at all is code 0.
        assert!(Filter::StatusCode(compare(CompareOp::Eq, 0)).admits(&entry(None, None, "-")));
        let slow = Filter::Duration(compare(CompareOp::Ge, 200));
        assert!(slow.admits(&entry(None, None, "-")));
        assert!(!Filter::Duration(compare(CompareOp::Le, 100)).admits(&entry(None, None, "-")));
    }

    #[test]
    fn flags_headers_and_combinations() {
        let any_flag = Filter::ResponseFlag(Vec::new());
        assert!(!any_flag.admits(&entry(None, None, "-")));
        assert!(any_flag.admits(&entry(None, None, "UF")));
        let timeouts = Filter::ResponseFlag(vec!["UT".into(), "UF".into()]);
        assert!(timeouts.admits(&entry(None, None, "UF")));
        assert!(!timeouts.admits(&entry(None, None, "NR")));

        let mut request = RequestHeader::build("GET", b"/api/x", None).unwrap();
        request.insert_header("x-debug", "1").unwrap();
        let header = |name: &str, prefix: &str| {
            Filter::Header(HeaderMatcher {
                name: name.into(),
                rule: HeaderRule::String(StringMatcher {
                    pattern: StringPattern::Prefix(prefix.into()),
                    ignore_case: false,
                }),
                invert: false,
                treat_missing_as_empty: false,
            })
        };
        let e = entry(Some(&request), None, "-");
        assert!(header("x-debug", "1").admits(&e));
        assert!(header(":path", "/api").admits(&e));
        assert!(!header(":path", "/web").admits(&e));
        // A connection has no headers.
        assert!(!header("x-debug", "1").admits(&entry(None, None, "-")));

        let both = Filter::And(vec![header(":path", "/api"), any_flag.clone()]);
        assert!(!both.admits(&e));
        let either = Filter::Or(vec![header(":path", "/api"), any_flag]);
        assert!(either.admits(&e));
        assert!(Filter::NotHealthCheck.admits(&e));
    }
}
