//! Applies the `request_headers_to_add` / `_remove` and
//! `response_headers_to_add` / `_remove` of the matched route, its virtual
//! host and the route configuration, as Envoy's router does.

use crate::access_log::Entry;
use crate::config::{AppendAction, HeaderMutations, HeaderToAdd};
use pingora::http::{RequestHeader, ResponseHeader};

/// Which direction's lists to apply.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Request,
    Response,
}

/// A level's removals and additions for `direction`.
pub(super) fn lists(level: &HeaderMutations, direction: Direction) -> (&[String], &[HeaderToAdd]) {
    match direction {
        Direction::Request => (&level.request_remove, &level.request_add),
        Direction::Response => (&level.response_remove, &level.response_add),
    }
}

/// The header maps mutations apply to: Pingora's request and response
/// headers, and a local response's headers.
pub(super) trait MutableHeaders {
    /// Whether a header of this (lower-case) name is present.
    fn contains(&self, name: &str) -> bool;
    /// Removes every value of `name`.
    fn remove(&mut self, name: &str);
    /// Adds one more value.
    fn append(&mut self, name: &str, value: &str);
    /// Replaces every value of `name` with this one.
    fn set(&mut self, name: &str, value: &str);
}

/// Applies `levels` (most specific first, or last: the caller orders them)
/// to `headers`: each level's removals, then its additions, whose values
/// are rendered for `entry`.
pub(super) fn apply(
    levels: &[&HeaderMutations],
    direction: Direction,
    entry: &Entry<'_>,
    headers: &mut impl MutableHeaders,
) {
    // Values first: `entry` may borrow the headers being changed.
    let rendered: Vec<RenderedLevel<'_>> = levels
        .iter()
        .map(|level| {
            let (remove, add) = lists(level, direction);
            RenderedLevel {
                remove,
                add: add
                    .iter()
                    .map(|header| (header, header.value.render(entry)))
                    .collect(),
            }
        })
        .collect();
    for RenderedLevel { remove, add } in rendered {
        for name in remove {
            headers.remove(name);
        }
        for (header, value) in add {
            if value.is_empty() && !header.keep_empty {
                continue;
            }
            let present = headers.contains(&header.name);
            match header.action {
                AppendAction::AppendIfExistsOrAdd => headers.append(&header.name, &value),
                AppendAction::AddIfAbsent if !present => headers.append(&header.name, &value),
                AppendAction::OverwriteIfExistsOrAdd => headers.set(&header.name, &value),
                AppendAction::OverwriteIfExists if present => headers.set(&header.name, &value),
                AppendAction::AddIfAbsent | AppendAction::OverwriteIfExists => {}
            }
        }
    }
}

/// One level's removals, and its additions with their values rendered.
struct RenderedLevel<'a> {
    remove: &'a [String],
    add: Vec<(&'a HeaderToAdd, String)>,
}

/// A value Pingora refuses (a control character from a header the value
/// copies) is left out, with a line in the log, rather than failing the
/// request.
fn refused(name: &str, e: &pingora::Error) {
    tracing::debug!(target: "polyhost::http", header = name, error = %e, "header mutation skipped");
}

macro_rules! pingora_headers {
    ($type:ty) => {
        impl MutableHeaders for $type {
            fn contains(&self, name: &str) -> bool {
                self.headers.contains_key(name)
            }
            fn remove(&mut self, name: &str) {
                self.remove_header(name);
            }
            fn append(&mut self, name: &str, value: &str) {
                if let Err(e) = self.append_header(name.to_string(), value) {
                    refused(name, &e);
                }
            }
            fn set(&mut self, name: &str, value: &str) {
                if let Err(e) = self.insert_header(name.to_string(), value) {
                    refused(name, &e);
                }
            }
        }
    };
}

pingora_headers!(RequestHeader);
pingora_headers!(ResponseHeader);

impl MutableHeaders for polyhost::HeaderMap {
    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    fn remove(&mut self, name: &str) {
        polyhost::HeaderMap::remove(self, name);
    }
    fn append(&mut self, name: &str, value: &str) {
        self.add(name, value);
    }
    fn set(&mut self, name: &str, value: &str) {
        self.replace(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::Format;
    use std::time::{Duration, SystemTime};

    fn add(name: &str, value: &str, action: AppendAction) -> HeaderToAdd {
        HeaderToAdd {
            name: name.into(),
            value: Format::text(value).unwrap().omit_empty_values(true),
            action,
            keep_empty: false,
        }
    }

    fn entry(request: &RequestHeader) -> Entry<'_> {
        Entry {
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            request: Some(request),
            response: None,
            flags: "-",
            code_details: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            cluster: Some("backend"),
            route_name: None,
            downstream_remote: Some("10.1.2.3:4000".parse().unwrap()),
            downstream_local: None,
        }
    }

    fn values(request: &RequestHeader, name: &str) -> Vec<String> {
        request
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_append_action_and_the_order_of_levels() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in [("a", "1"), ("b", "1"), ("c", "1"), ("gone", "x")] {
            request.append_header(name, value).unwrap();
        }
        let route = HeaderMutations {
            request_remove: vec!["gone".into()],
            request_add: vec![
                add("a", "2", AppendAction::AppendIfExistsOrAdd),
                add("b", "2", AppendAction::AddIfAbsent),
                add("new-if-absent", "2", AppendAction::AddIfAbsent),
                add("c", "2", AppendAction::OverwriteIfExistsOrAdd),
                add("not-there", "2", AppendAction::OverwriteIfExists),
                add(
                    "client",
                    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    AppendAction::AppendIfExistsOrAdd,
                ),
                // Empty after rendering: not added unless keep_empty.
                add(
                    "empty",
                    "%REQ(x-missing)%",
                    AppendAction::AppendIfExistsOrAdd,
                ),
            ],
            ..HeaderMutations::default()
        };
        // A later level overwrites what an earlier one set.
        let global = HeaderMutations {
            request_add: vec![add("c", "3", AppendAction::OverwriteIfExists)],
            response_add: vec![add("resp", "1", AppendAction::AppendIfExistsOrAdd)],
            ..HeaderMutations::default()
        };
        let copy = request.clone();
        apply(
            &[&route, &global],
            Direction::Request,
            &entry(&copy),
            &mut request,
        );
        assert_eq!(values(&request, "a"), ["1", "2"]);
        assert_eq!(values(&request, "b"), ["1"]);
        assert_eq!(values(&request, "new-if-absent"), ["2"]);
        assert_eq!(values(&request, "c"), ["3"]);
        assert!(values(&request, "not-there").is_empty());
        assert!(values(&request, "gone").is_empty());
        assert_eq!(values(&request, "client"), ["10.1.2.3"]);
        assert!(values(&request, "empty").is_empty());
        // Response lists do not touch the request.
        assert!(values(&request, "resp").is_empty());
    }
}
