//! The Envoy v3 bootstrap that proxy-wasm users already have, read into a
//! typed, validated model.
//!
//! [`load`] and [`parse`] accept YAML or JSON in Envoy's own field names
//! and produce a [`Bootstrap`]: listeners ending in an HTTP connection
//! manager (inline routes, Wasm HTTP filters, the router) or a TCP proxy
//! (after network Wasm filters), clusters (static or DNS endpoints,
//! optionally HTTP/2), `envoy.bootstrap.wasm` services, `node` and `admin`.
//!
//! # Design
//!
//! * **Nothing is silently dropped.** Every field is modelled, listed in
//!   one table of fields that only tune Envoy's internals (accepted with a
//!   `tracing` warning naming the path; see `ignored.rs`), or an error.
//!   Errors name the path of the offending field:
//!   `static_resources.listeners[0].filter_chains[0].filters[1]: filter envoy.filters.http.lua is not supported`.
//! * **Envoy's parsing rules, not serde's defaults:** enum names are
//!   case-insensitive (`codec_type: auto`), a repeated field may be given
//!   as a single value, durations are `"0.25s"` or `{seconds, nanos}`,
//!   `typed_config` may be wrapped in a `TypedStruct`, and an extension is
//!   recognised by its `typed_config` type before its name, so a filter
//!   named `my-plugin` with the Wasm type is a Wasm filter.
//! * **Two stages.** The text becomes a JSON value; serde (through
//!   `serde_path_to_error`) reads it into raw Envoy messages (`raw.rs`)
//!   whose `Any` fields stay values; `convert.rs` opens each `Any` by its
//!   type, checks references (routes and TCP proxies name existing
//!   clusters) and uniqueness, and builds the model (`model.rs`).
//! * **Routing is part of the model** (`route.rs`): the data plane asks the
//!   configuration which virtual host and route a request takes, with
//!   Envoy's precedence rules, so those rules live next to the fields they
//!   interpret.
//!
//! # Plugin configuration bytes
//!
//! A plugin's `configuration` (and `vm_config.configuration`) is a
//! `google.protobuf.Any`. A `StringValue` gives its string, a `BytesValue`
//! its base64-decoded bytes; `Struct`, `Value`, `ListValue` and
//! `TypedStruct` give their `value` as JSON text; any other message gives
//! its fields, without `@type`, as JSON text (Envoy would pass the
//! serialized protobuf). Absent means empty.
//!
//! # Not supported
//!
//! Dynamic resources (xDS, RDS), TLS (`transport_socket`), several filter
//! chains or `filter_chain_match`, listener filters, filters other than the
//! ones above, network Wasm filters before an HTTP connection manager,
//! remote Wasm code, the `null` Wasm runtime, `EDS` and `ORIGINAL_DST`
//! clusters, retries (`retry_policy`), `cluster_header`, per-cluster
//! settings of `weighted_clusters`, `regex_rewrite`, access log filters
//! other than those [`crate::access_log::Filter`] lists, and camelCase
//! field names. Each is an error naming where it appears.

mod access_log;
mod convert;
mod header_mutation;
mod ignored;
mod model;
mod raw;
mod route;
mod values;

#[cfg(test)]
mod tests;

use crate::files::{BoundedReadError, read_at_most};
use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{
    AccessLog, Admin, AppendAction, Bootstrap, Cluster, ClusterSpecifier, ClusterWeight, Codec,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_REFRESH_RATE, DEFAULT_ROUTE_TIMEOUT,
    DEFAULT_TCP_IDLE_TIMEOUT, Discovery, Endpoint, FailurePolicy, HeaderMutations, HeaderToAdd,
    HttpConnectionManager, Listener, ListenerKind, Node, PathRedirect, Redirect, Route,
    RouteAction, TcpProxy, VirtualHost, WasmCode, WasmPlugin,
};
pub use route::{
    FullRegex, HeaderMatcher, HeaderRule, PathMatch, RouteMatch, StringMatcher, StringPattern,
    select_virtual_host,
};

use values::At;

/// The largest configuration file [`load`] reads. Real bootstraps are a few
/// kilobytes; the bound keeps a wrong path (a device, a huge log) from
/// exhausting memory.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The text format of a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML (a superset of JSON, so JSON text parses too).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, anything else YAML
    /// (which reads JSON too).
    pub fn from_path(path: &Path) -> Format {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Reads and checks a bootstrap file; the format follows the extension
/// ([`Format::from_path`]).
///
/// # Errors
///
/// The file cannot be read or is larger than [`MAX_CONFIG_BYTES`], or its
/// contents fail [`parse`]; the error carries the file name.
pub fn load(path: &Path) -> Result<Bootstrap, ConfigError> {
    let text = read_bounded(path).map_err(|e| e.in_file(path))?;
    parse(&text, Format::from_path(path)).map_err(|e| e.in_file(path))
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let bytes = read_at_most(path, MAX_CONFIG_BYTES).map_err(|e| {
        let message = match e {
            BoundedReadError::Io(e) => e.to_string(),
            BoundedReadError::TooLarge => {
                format!("the file is larger than {MAX_CONFIG_BYTES} bytes")
            }
        };
        ConfigError::new(ErrorKind::Io, &At::root(), message)
    })?;
    String::from_utf8(bytes).map_err(|e| {
        ConfigError::new(
            ErrorKind::Syntax,
            &At::root(),
            format!("not UTF-8 text: {e}"),
        )
    })
}

/// Parses and checks a bootstrap held in memory.
///
/// # Errors
///
/// The text is not valid YAML or JSON, or it holds something Polyhost does
/// not support or Envoy would reject; [`ConfigError::path`] names the
/// field.
pub fn parse(text: &str, format: Format) -> Result<Bootstrap, ConfigError> {
    let syntax = |message: String| ConfigError::new(ErrorKind::Syntax, &At::root(), message);
    let document: serde_json::Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        Format::Yaml => {
            let mut yaml: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
            // Envoy's YAML reader honours merge keys (`<<: *defaults`).
            yaml.apply_merge().map_err(|e| syntax(e.to_string()))?;
            serde_yaml::from_value(yaml).map_err(|e| syntax(e.to_string()))?
        }
    };
    convert::bootstrap(document)
}

/// What kind of problem a [`ConfigError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not well-formed YAML or JSON.
    Syntax,
    /// A field or value Envoy accepts but Polyhost does not implement.
    Unsupported,
    /// A value Envoy would reject too: wrong type, missing, out of range,
    /// duplicate, or a reference to nothing.
    Invalid,
}

/// Why a configuration was refused, and where.
///
/// Displays as `<file>: <path>: <message>`, leaving out the file for
/// [`parse`] and the path for errors about the whole text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    kind: ErrorKind,
    file: Option<PathBuf>,
    path: String,
    message: String,
}

impl ConfigError {
    fn new(kind: ErrorKind, at: &At, message: String) -> ConfigError {
        ConfigError {
            kind,
            file: None,
            path: at.as_str().to_string(),
            message,
        }
    }

    fn in_file(mut self, file: &Path) -> ConfigError {
        self.file = Some(file.to_path_buf());
        self
    }

    /// The path of the offending field, such as
    /// `static_resources.clusters[1].name`; empty when the problem is the
    /// file or text as a whole.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file, for errors from [`load`].
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
