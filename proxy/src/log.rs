//! Logging in Envoy's shape, so scripts that read Envoy's stderr read ours.
//!
//! Lines look like `[2026-12-04 10:00:00.000][12][info][wasm] wasm log
//! my_plugin my_root_id: message`. `-l/--log-level` sets the level of every
//! component, `--component-log-level wasm:trace,upstream:debug` overrides
//! some, and `--log-format` takes Envoy's format flags (the subset listed
//! in [`LogFormat`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Envoy's default `--log-format`.
pub const DEFAULT_LOG_FORMAT: &str = "[%Y-%m-%d %T.%e][%t][%l][%n] %v";

/// Components and the tracing targets they cover; the first is where
/// everything else goes.
const COMPONENTS: &[(&str, &[&str])] = &[
    ("main", &["polyhost::main"]),
    (
        "wasm",
        &["polyhost::plugin", "polyhost::wasm", "polyhost_abi"],
    ),
    ("upstream", &["polyhost::upstream"]),
    ("http", &["polyhost::http", "pingora_proxy", "pingora_core"]),
    ("admin", &["polyhost::admin"]),
    ("config", &["polyhost::config", "polyhost_proxy::config"]),
];

/// A log setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LogSettingError(String);

/// Envoy's level names (`warning` and `warn` both work, `critical` is
/// logged as error, `off` silences).
fn level_directive(level: &str) -> Result<&'static str, LogSettingError> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        other => {
            return Err(LogSettingError(format!(
                "unknown log level `{other}`; expected one of trace, debug, info, warning, error, critical, off"
            )));
        }
    })
}

/// Builds the `tracing` filter for `-l LEVEL` and `--component-log-level`.
///
/// # Errors
/// An unknown level or component, named.
pub fn filter_directives(
    level: &str,
    component_levels: Option<&str>,
) -> Result<String, LogSettingError> {
    Ok(directives(&parse_levels(level, component_levels)?))
}

/// Each component of [`COMPONENTS`] with its level (`tracing`'s name):
/// `level` for all, then `--component-log-level`'s `COMPONENT:LEVEL,...`.
fn parse_levels(
    level: &str,
    component_levels: Option<&str>,
) -> Result<Vec<(&'static str, &'static str)>, LogSettingError> {
    let everything = level_directive(level)?;
    let mut levels: Vec<_> = COMPONENTS
        .iter()
        .map(|(name, _)| (*name, everything))
        .collect();
    for item in component_levels
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (component, lvl) = item.split_once(':').ok_or_else(|| {
            LogSettingError(format!(
                "--component-log-level: `{item}` is not COMPONENT:LEVEL"
            ))
        })?;
        set_level(&mut levels, component, level_directive(lvl)?)
            .map_err(|e| LogSettingError(format!("--component-log-level: {e}")))?;
    }
    Ok(levels)
}

/// The `tracing` filter for `levels`: the first component's level for
/// every target no component names, then each component's targets.
fn directives(levels: &[(&'static str, &'static str)]) -> String {
    let mut directives = vec![levels[0].1.to_string()];
    for (component, level) in levels {
        let targets = COMPONENTS.iter().find(|(name, _)| name == component);
        for target in targets.map_or(&[][..], |(_, t)| *t) {
            directives.push(format!("{target}={level}"));
        }
    }
    directives.join(",")
}

/// Installs a new `tracing` filter, given as [`filter_directives`] writes
/// them; an error says why the subscriber refused it.
pub type ReloadFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Changes log levels while the proxy runs, as Envoy's admin `/logging`
/// does: it keeps each component's level and hands the resulting
/// `tracing` filter to the embedder's `reload` function (the CLI's
/// reloadable subscriber). Plugins follow the `wasm` level.
pub struct LogControl {
    /// Each component of [`COMPONENTS`] with its level (`tracing`'s name).
    levels: std::sync::Mutex<Vec<(&'static str, &'static str)>>,
    reload: ReloadFilter,
}

impl fmt::Debug for LogControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogControl").finish_non_exhaustive()
    }
}

impl LogControl {
    /// Levels as `-l level` and `--component-log-level` set them; `reload`
    /// installs a filter given as [`filter_directives`] writes them.
    ///
    /// # Errors
    /// An unknown level or component, named.
    pub fn new(
        level: &str,
        component_levels: Option<&str>,
        reload: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Result<LogControl, LogSettingError> {
        Ok(LogControl {
            levels: std::sync::Mutex::new(parse_levels(level, component_levels)?),
            reload: Box::new(reload),
        })
    }

    /// Envoy's answer to `/logging`: `active loggers:` and a line per
    /// component with its level.
    pub(crate) fn listing(&self) -> String {
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from("active loggers:\n");
        for (component, level) in levels.iter() {
            let name = if *level == "warn" { "warning" } else { level };
            out.push_str(&format!("  {component}: {name}\n"));
        }
        out
    }

    /// Applies `changes`, (component, level) pairs where the component
    /// `*` means every one, and installs the new filter; nothing changes if
    /// any pair is wrong.
    ///
    /// # Errors
    /// An unknown component or level, named, or a filter the subscriber
    /// refused.
    pub(crate) fn set(&self, changes: &[(String, String)]) -> Result<(), LogSettingError> {
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = levels.clone();
        for (component, level) in changes {
            let level = level_directive(level)?;
            if component == "*" {
                changed.iter_mut().for_each(|(_, l)| *l = level);
            } else {
                set_level(&mut changed, component, level)?;
            }
        }
        (self.reload)(&directives(&changed)).map_err(LogSettingError)?;
        *levels = changed;
        Ok(())
    }
}

/// Sets `component`'s level in `levels`.
fn set_level(
    levels: &mut [(&'static str, &'static str)],
    component: &str,
    level: &'static str,
) -> Result<(), LogSettingError> {
    if let Some((_, l)) = levels.iter_mut().find(|(name, _)| *name == component) {
        *l = level;
        return Ok(());
    }
    let known: Vec<_> = levels.iter().map(|(name, _)| *name).collect();
    Err(LogSettingError(format!(
        "unknown logger `{component}`; known: {}",
        known.join(", ")
    )))
}

/// One piece of a parsed `--log-format`.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Year,
    Month,
    Day,
    Time,
    Hour,
    Minute,
    Second,
    Millis,
    Thread,
    Level,
    ShortLevel,
    Component,
    Message,
}

/// A parsed Envoy `--log-format`. Supported flags: `%Y %m %d %T %H %M %S
/// %e` (time, local), `%t` (thread), `%l` / `%L` (level, long / one
/// letter), `%n` (component), `%v` (message), `%%`.
#[derive(Debug, Clone)]
pub struct LogFormat {
    pieces: Vec<Piece>,
}

impl LogFormat {
    /// Parses a format string.
    ///
    /// # Errors
    /// A flag outside the supported subset, named.
    pub fn parse(format: &str) -> Result<LogFormat, LogSettingError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let flag = chars.next().ok_or_else(|| {
                LogSettingError("--log-format: the format ends with a lone `%`".into())
            })?;
            let piece = match flag {
                '%' => {
                    literal.push('%');
                    continue;
                }
                'Y' => Piece::Year,
                'm' => Piece::Month,
                'd' => Piece::Day,
                'T' => Piece::Time,
                'H' => Piece::Hour,
                'M' => Piece::Minute,
                'S' => Piece::Second,
                'e' => Piece::Millis,
                't' => Piece::Thread,
                'l' => Piece::Level,
                'L' => Piece::ShortLevel,
                'n' => Piece::Component,
                'v' => Piece::Message,
                other => {
                    return Err(LogSettingError(format!(
                        "--log-format: flag `%{other}` is not supported (supported: %Y %m %d %T %H %M %S %e %t %l %L %n %v %%)"
                    )));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(LogFormat { pieces })
    }
}

/// Formats `tracing` events in Envoy's shape.
#[derive(Debug, Clone)]
pub struct EnvoyFormat {
    format: LogFormat,
}

impl EnvoyFormat {
    /// A formatter for `format`.
    pub fn new(format: LogFormat) -> EnvoyFormat {
        EnvoyFormat { format }
    }
}

/// Envoy prints a small number per thread; so do we.
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

fn component(target: &str) -> &'static str {
    COMPONENTS
        .iter()
        .find(|(_, targets)| targets.iter().any(|t| target.starts_with(t)))
        .map_or("main", |(name, _)| name)
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    /// For a record of the `log` crate (Pingora logs through it), bridged
    /// into `tracing`: the record's own target, which names the component.
    log_target: Option<String>,
    plugin: Option<String>,
    root_id: Option<String>,
    vm_id: Option<String>,
    critical: bool,
    rest: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "log.target" => self.log_target = Some(text.trim_matches('"').to_string()),
            // Where in Pingora's source the record was written: noise in an
            // operator's log.
            "log.module_path" | "log.file" | "log.line" => {}
            "plugin" => self.plugin = Some(text.trim_matches('"').to_string()),
            "root_id" => self.root_id = Some(text.trim_matches('"').to_string()),
            "vm_id" => self.vm_id = Some(text.trim_matches('"').to_string()),
            name => self.rest.push((name.to_string(), text)),
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "log.target" => self.log_target = Some(value.to_string()),
            "log.module_path" | "log.file" | "log.line" => {}
            "plugin" => self.plugin = Some(value.to_string()),
            "root_id" => self.root_id = Some(value.to_string()),
            "vm_id" => self.vm_id = Some(value.to_string()),
            name => self.rest.push((name.to_string(), value.to_string())),
        }
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if field.name() == "critical" {
            self.critical = value;
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for EnvoyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let is_plugin_log = meta.target() == "polyhost::plugin";
        let level = if is_plugin_log && fields.critical {
            "critical"
        } else {
            level_name(meta.level())
        };
        let message = if is_plugin_log {
            // Envoy's wasm log line: "wasm log", then the plugin name, root
            // id and VM id each where not empty, then the message.
            let mut line = String::from("wasm log");
            for part in [&fields.plugin, &fields.root_id, &fields.vm_id] {
                if let Some(part) = part.as_deref().filter(|p| !p.is_empty()) {
                    line.push(' ');
                    line.push_str(part);
                }
            }
            line.push_str(": ");
            line.push_str(&fields.message);
            line
        } else {
            let mut m = fields.message.clone();
            for (k, v) in fields
                .plugin
                .iter()
                .map(|p| ("plugin".to_string(), p.clone()))
                .chain(fields.rest.iter().cloned())
            {
                m.push_str(&format!(" {k}={v}"));
            }
            m
        };
        let now = chrono::Local::now();
        for piece in &self.format.pieces {
            match piece {
                Piece::Literal(s) => writer.write_str(s)?,
                Piece::Year => write!(writer, "{}", now.format("%Y"))?,
                Piece::Month => write!(writer, "{}", now.format("%m"))?,
                Piece::Day => write!(writer, "{}", now.format("%d"))?,
                Piece::Time => write!(writer, "{}", now.format("%H:%M:%S"))?,
                Piece::Hour => write!(writer, "{}", now.format("%H"))?,
                Piece::Minute => write!(writer, "{}", now.format("%M"))?,
                Piece::Second => write!(writer, "{}", now.format("%S"))?,
                Piece::Millis => write!(writer, "{:03}", now.timestamp_subsec_millis() % 1000)?,
                Piece::Thread => write!(writer, "{}", thread_number())?,
                Piece::Level => writer.write_str(level)?,
                Piece::ShortLevel => writer.write_str(&level[..1].to_ascii_uppercase())?,
                Piece::Component => {
                    let target = fields.log_target.as_deref().unwrap_or(meta.target());
                    writer.write_str(component(target))?;
                }
                Piece::Message => writer.write_str(&message)?,
            }
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_parses() {
        let f = LogFormat::parse(DEFAULT_LOG_FORMAT).unwrap();
        assert_eq!(f.pieces.first(), Some(&Piece::Literal("[".into())));
        assert!(f.pieces.contains(&Piece::Component));
    }

    #[test]
    fn unknown_flag_is_named() {
        let e = LogFormat::parse("%v %Q").unwrap_err().to_string();
        assert!(e.contains("`%Q`"), "{e}");
    }

    #[test]
    fn component_levels_map_to_targets() {
        let d = filter_directives("info", Some("wasm:trace")).unwrap();
        assert!(d.contains("polyhost::plugin=trace"), "{d}");
        assert!(d.starts_with("info,"), "{d}");
        let e = filter_directives("info", Some("lua:debug"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown logger `lua`"), "{e}");
        let e = filter_directives("loud", None).unwrap_err().to_string();
        assert!(e.contains("unknown log level `loud`"), "{e}");
    }

    #[test]
    fn targets_map_to_components() {
        assert_eq!(component("polyhost::plugin"), "wasm");
        assert_eq!(component("polyhost::upstream"), "upstream");
        assert_eq!(component("something_else"), "main");
    }

    #[test]
    fn log_control_lists_changes_and_refuses_unknowns_whole() {
        use std::sync::{Arc, Mutex};
        let installed = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = installed.clone();
        let control = LogControl::new("warning", Some("wasm:debug"), move |d: &str| {
            seen.lock().unwrap().push(d.to_string());
            Ok(())
        })
        .unwrap();
        assert!(
            control
                .listing()
                .starts_with("active loggers:\n  main: warning\n")
        );
        assert!(control.listing().contains("\n  wasm: debug\n"));

        control
            .set(&[
                ("*".into(), "info".into()),
                ("upstream".into(), "trace".into()),
            ])
            .unwrap();
        let last = installed.lock().unwrap().last().cloned().unwrap();
        assert!(last.starts_with("info,polyhost::main=info,"), "{last}");
        assert!(last.contains("polyhost::upstream=trace"), "{last}");
        assert!(last.contains("polyhost::plugin=info"), "{last}");

        // One bad pair changes nothing.
        let e = control
            .set(&[
                ("wasm".into(), "error".into()),
                ("nope".into(), "debug".into()),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("unknown logger `nope`"), "{e}");
        assert!(control.listing().contains("\n  wasm: info\n"));
        assert_eq!(installed.lock().unwrap().len(), 1);
    }
}
