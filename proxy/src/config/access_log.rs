//! The `access_log` entries of a connection manager or a `tcp_proxy`: the
//! logger, its format and its filter, each checked and parsed here so a
//! bad one is a startup error naming its path.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::ConfigError;
use super::convert::{
    Extension, de, filter_label, filter_typed_config, header_matcher, identify, inline_data,
    invalid, unsupported,
};
use super::ignored::check;
use super::model::AccessLog;
use super::raw;
use super::values::{At, List};
use crate::access_log::{
    CompareOp, Comparison, DEFAULT_FORMAT, Filter, Format, JsonFormatError, RESPONSE_FLAGS, Sink,
};

/// The entries of an `access_log` list, in order.
pub(super) fn access_logs(
    entries: List<raw::AccessLog>,
    at: &At,
) -> Result<Vec<AccessLog>, ConfigError> {
    let mut logs = Vec::new();
    for (entry_at, entry) in entries.into_iter_at(at) {
        check(&entry.rest, "AccessLog", &entry_at)?;
        let filter = match entry.filter {
            Some(f) => Some(filter(f, &entry_at.field("filter"))?),
            None => None,
        };
        let any = filter_typed_config(entry.typed_config, &entry_at)?;
        let label = filter_label(&entry.name, &any);
        // The format fields the logger has, by name: at most one may be set.
        let mut formats: Vec<(&str, FormatSource)> = Vec::new();
        let sink = match identify(&entry.name, any.type_name.as_deref()) {
            Some(ext @ (Extension::StdoutAccessLog | Extension::StderrAccessLog))
                if any.type_name.is_some() =>
            {
                let raw: raw::StreamAccessLog = de(any.value, &any.at)?;
                check(&raw.rest, "StreamAccessLog", &any.at)?;
                if let Some(f) = raw.log_format {
                    formats.push(("log_format", FormatSource::Substitution(f)));
                }
                if ext == Extension::StderrAccessLog {
                    Sink::Stderr
                } else {
                    Sink::Stdout
                }
            }
            Some(Extension::FileAccessLog) if any.type_name.is_some() => {
                let raw: raw::FileAccessLog = de(any.value, &any.at)?;
                check(&raw.rest, "FileAccessLog", &any.at)?;
                if raw.path.is_empty() {
                    return Err(invalid(&any.at.field("path"), "path is required"));
                }
                if let Some(f) = raw.log_format {
                    formats.push(("log_format", FormatSource::Substitution(f)));
                }
                if let Some(t) = raw.format {
                    formats.push(("format", FormatSource::Text(t)));
                }
                if let Some(d) = raw.json_format {
                    formats.push(("json_format", FormatSource::Json(d, false)));
                }
                if let Some(d) = raw.typed_json_format {
                    formats.push(("typed_json_format", FormatSource::Json(d, true)));
                }
                Sink::File(PathBuf::from(raw.path))
            }
            Some(
                Extension::StdoutAccessLog | Extension::StderrAccessLog | Extension::FileAccessLog,
            ) => return Err(invalid(&any.at, "typed_config is required")),
            Some(_) => {
                return Err(invalid(
                    &entry_at,
                    format!("{label} is not an access logger"),
                ));
            }
            None => {
                return Err(unsupported(
                    &entry_at,
                    format!("access logger {label} is not supported"),
                ));
            }
        };
        if formats.len() > 1 {
            let names: Vec<&str> = formats.iter().map(|(name, _)| *name).collect();
            return Err(invalid(
                &any.at,
                format!("only one of {} may be set", names.join(", ")),
            ));
        }
        let format = match formats.pop() {
            Some((name, source)) => source.parse(&any.at.field(name))?,
            None => Format::envoy_default(),
        };
        logs.push(AccessLog {
            sink,
            format,
            filter,
            at: entry_at.to_string(),
        });
    }
    Ok(logs)
}

/// A logger's format, as written.
enum FormatSource {
    /// `log_format`: a `SubstitutionFormatString`.
    Substitution(raw::SubstitutionFormatString),
    /// The file logger's deprecated `format`.
    Text(String),
    /// The file logger's deprecated `json_format` (`false`: every value a
    /// string) or `typed_json_format` (`true`).
    Json(Map<String, Value>, bool),
}

impl FormatSource {
    fn parse(self, at: &At) -> Result<Format, ConfigError> {
        match self {
            FormatSource::Text(text) => Format::text(&text).map_err(|e| invalid(at, e)),
            FormatSource::Json(dictionary, typed) => json_format(&dictionary, typed, at),
            FormatSource::Substitution(f) => {
                check(&f.rest, "SubstitutionFormatString", at)?;
                let mut set = Vec::new();
                if let Some(t) = f.text_format {
                    set.push(("text_format", FormatSource::Text(t)));
                }
                if let Some(source) = f.text_format_source {
                    let s_at = at.field("text_format_source");
                    let bytes = inline_data(source, &s_at)?;
                    let text = String::from_utf8(bytes)
                        .map_err(|_| invalid(&s_at, "the format is not UTF-8"))?;
                    set.push(("text_format_source", FormatSource::Text(text)));
                }
                // In a `SubstitutionFormatString` the dictionary is typed.
                if let Some(d) = f.json_format {
                    set.push(("json_format", FormatSource::Json(d, true)));
                }
                let format = match set.len() {
                    0 => Format::text(DEFAULT_FORMAT).map_err(|e| invalid(at, e))?,
                    1 => {
                        let (name, source) = set.pop().expect("one format");
                        source.parse(&at.field(name))?
                    }
                    _ => {
                        return Err(invalid(
                            at,
                            "only one of text_format, text_format_source and json_format may be set",
                        ));
                    }
                };
                Ok(format.omit_empty_values(f.omit_empty_values))
            }
        }
    }
}

fn json_format(
    dictionary: &Map<String, Value>,
    typed: bool,
    at: &At,
) -> Result<Format, ConfigError> {
    Format::json(dictionary, typed).map_err(|JsonFormatError { keys, message }| {
        let at = keys.iter().fold(at.clone(), |at, key| at.field(key));
        invalid(&at, message)
    })
}

/// The filter kinds Polyhost implements, for the message when none is set.
const FILTER_KINDS: &str = "status_code_filter, duration_filter, not_health_check_filter, \
                            and_filter, or_filter, header_filter or response_flag_filter";

/// One `AccessLogFilter`: a oneof, so exactly one kind.
fn filter(raw: raw::AccessLogFilter, at: &At) -> Result<Filter, ConfigError> {
    check(&raw.rest, "AccessLogFilter", at)?;
    let set = [
        raw.status_code_filter.is_some(),
        raw.duration_filter.is_some(),
        raw.not_health_check_filter.is_some(),
        raw.and_filter.is_some(),
        raw.or_filter.is_some(),
        raw.header_filter.is_some(),
        raw.response_flag_filter.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    match set {
        0 => return Err(invalid(at, format!("a filter is required: {FILTER_KINDS}"))),
        1 => {}
        _ => {
            return Err(invalid(
                at,
                "an access log filter takes only one kind of filter",
            ));
        }
    }
    if let Some(f) = raw.status_code_filter {
        let f_at = at.field("status_code_filter");
        return Ok(Filter::StatusCode(comparison(
            f,
            "StatusCodeFilter",
            &f_at,
        )?));
    }
    if let Some(f) = raw.duration_filter {
        let f_at = at.field("duration_filter");
        return Ok(Filter::Duration(comparison(f, "DurationFilter", &f_at)?));
    }
    if let Some(f) = raw.not_health_check_filter {
        check(
            &f.rest,
            "NotHealthCheckFilter",
            &at.field("not_health_check_filter"),
        )?;
        return Ok(Filter::NotHealthCheck);
    }
    if let Some(f) = raw.and_filter {
        return Ok(Filter::And(filters(f, "and_filter", at)?));
    }
    if let Some(f) = raw.or_filter {
        return Ok(Filter::Or(filters(f, "or_filter", at)?));
    }
    if let Some(f) = raw.header_filter {
        let f_at = at.field("header_filter");
        check(&f.rest, "HeaderFilter", &f_at)?;
        let h_at = f_at.field("header");
        let header = f
            .header
            .ok_or_else(|| invalid(&h_at, "header is required"))?;
        return Ok(Filter::Header(header_matcher(header, &h_at)?));
    }
    let f = raw.response_flag_filter.expect("the one filter set");
    let f_at = at.field("response_flag_filter");
    check(&f.rest, "ResponseFlagFilter", &f_at)?;
    let flags_at = f_at.field("flags");
    let single = f.flags.single;
    let mut flags = Vec::new();
    for (i, flag) in f.flags.items.into_iter().enumerate() {
        if !RESPONSE_FLAGS.contains(&flag.as_str()) {
            let flag_at = if single {
                flags_at.clone()
            } else {
                flags_at.index(i)
            };
            return Err(invalid(&flag_at, format!("unknown response flag {flag:?}")));
        }
        flags.push(flag);
    }
    Ok(Filter::ResponseFlag(flags))
}

/// The filters of an `and_filter` or `or_filter`: at least two, as Envoy
/// requires.
fn filters(raw: raw::FilterList, kind: &str, at: &At) -> Result<Vec<Filter>, ConfigError> {
    let at = at.field(kind);
    check(&raw.rest, "FilterList", &at)?;
    let list_at = at.field("filters");
    if raw.filters.items.len() < 2 {
        return Err(invalid(
            &list_at,
            format!("{kind} needs at least two filters"),
        ));
    }
    raw.filters
        .into_iter_at(&list_at)
        .into_iter()
        .map(|(f_at, f)| filter(f, &f_at))
        .collect()
}

/// A `StatusCodeFilter` or `DurationFilter`'s comparison.
fn comparison(
    raw: raw::ComparisonHolder,
    message: &str,
    at: &At,
) -> Result<Comparison, ConfigError> {
    check(&raw.rest, message, at)?;
    let c_at = at.field("comparison");
    let c = raw
        .comparison
        .ok_or_else(|| invalid(&c_at, "comparison is required"))?;
    check(&c.rest, "ComparisonFilter", &c_at)?;
    let op = match c.op.as_ref().map(|op| op.0.as_str()) {
        None | Some("EQ") => CompareOp::Eq,
        Some("GE") => CompareOp::Ge,
        Some("LE") => CompareOp::Le,
        Some(other) => {
            return Err(invalid(
                &c_at.field("op"),
                format!("unknown comparison {other}: expected EQ, GE or LE"),
            ));
        }
    };
    let value = match c.value {
        Some(v) => {
            check(&v.rest, "RuntimeUInt32", &c_at.field("value"))?;
            u64::from(v.default_value)
        }
        None => 0,
    };
    Ok(Comparison { op, value })
}
