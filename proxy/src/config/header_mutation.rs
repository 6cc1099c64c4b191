//! `request_headers_to_add` / `_remove` and `response_headers_to_add` /
//! `_remove` of a route, a virtual host or a route configuration.

use super::ConfigError;
use super::convert::invalid;
use super::ignored::check;
use super::model::{AppendAction, HeaderMutations, HeaderToAdd};
use super::raw;
use super::values::{At, List};
use crate::access_log::Format;

/// The four mutation lists at `at` (the route, virtual host or route
/// configuration that holds them).
pub(super) fn header_mutations(
    raw: raw::HeaderMutations,
    at: &At,
) -> Result<HeaderMutations, ConfigError> {
    Ok(HeaderMutations {
        request_remove: removals(
            raw.request_headers_to_remove,
            &at.field("request_headers_to_remove"),
        )?,
        request_add: additions(
            raw.request_headers_to_add,
            &at.field("request_headers_to_add"),
        )?,
        response_remove: removals(
            raw.response_headers_to_remove,
            &at.field("response_headers_to_remove"),
        )?,
        response_add: additions(
            raw.response_headers_to_add,
            &at.field("response_headers_to_add"),
        )?,
    })
}

/// Envoy refuses to let the configuration add or remove pseudo-headers and
/// `host`: the proxy owns them.
fn modifiable(name: &str, at: &At) -> Result<String, ConfigError> {
    let name = name.to_ascii_lowercase();
    if name.is_empty() {
        return Err(invalid(at, "a header name is required"));
    }
    if name.starts_with(':') || name == "host" {
        return Err(invalid(
            at,
            format!("{name}: pseudo-headers and host may not be modified"),
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(invalid(at, format!("{name:?} is not a valid header name")));
    }
    Ok(name)
}

fn removals(names: List<String>, at: &At) -> Result<Vec<String>, ConfigError> {
    names
        .into_iter_at(at)
        .into_iter()
        .map(|(n_at, name)| modifiable(&name, &n_at))
        .collect()
}

fn additions(
    options: List<raw::HeaderValueOption>,
    at: &At,
) -> Result<Vec<HeaderToAdd>, ConfigError> {
    let mut out = Vec::new();
    for (o_at, option) in options.into_iter_at(at) {
        check(&option.rest, "HeaderValueOption", &o_at)?;
        let h_at = o_at.field("header");
        let header = option
            .header
            .ok_or_else(|| invalid(&h_at, "header is required"))?;
        check(&header.rest, "HeaderValue", &h_at)?;
        let name = modifiable(&header.key, &h_at.field("key"))?;
        // As in Envoy, an operator with no value gives an empty string, and
        // a value left empty is not added (unless `keep_empty_value`).
        let value = Format::text(&header.value)
            .map_err(|e| invalid(&h_at.field("value"), e))?
            .omit_empty_values(true);
        let action = match (
            option.append,
            option.append_action.as_ref().map(|a| a.0.as_str()),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &o_at,
                    "only one of append and append_action may be set",
                ));
            }
            (Some(true), None) | (None, None | Some("APPEND_IF_EXISTS_OR_ADD")) => {
                AppendAction::AppendIfExistsOrAdd
            }
            (Some(false), None) | (None, Some("OVERWRITE_IF_EXISTS_OR_ADD")) => {
                AppendAction::OverwriteIfExistsOrAdd
            }
            (None, Some("ADD_IF_ABSENT")) => AppendAction::AddIfAbsent,
            (None, Some("OVERWRITE_IF_EXISTS")) => AppendAction::OverwriteIfExists,
            (None, Some(other)) => {
                return Err(invalid(
                    &o_at.field("append_action"),
                    format!(
                        "unknown append_action {other}: expected APPEND_IF_EXISTS_OR_ADD, \
                         ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD or OVERWRITE_IF_EXISTS"
                    ),
                ));
            }
        };
        out.push(HeaderToAdd {
            name,
            value,
            action,
            keep_empty: option.keep_empty_value,
        });
    }
    Ok(out)
}
