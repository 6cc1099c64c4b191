//! What `polyhost call` observed, printed as it happens (text) or as one
//! JSON document at the end (`--format json`).
//!
//! Every step of the run is an [`Event`]; the text form of an event is
//! printed the moment it happens, so a plugin that traps still shows what
//! came before. The JSON form collects the same events in order, then adds
//! what the plugin left behind ([`Leftovers`]). The README documents the
//! JSON schema; keep the two in step.

use polyhost::{HeaderMap, LogLine};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// How the run is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people, printed as the run goes.
    Text,
    /// One JSON object on stdout at the end.
    Json,
}

/// A header map as `[name, value]` pairs in order, repeated names kept.
pub type Pairs = Vec<(String, String)>;

/// One step of the run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A line the plugin logged.
    Log {
        /// `trace` ... `critical`.
        level: &'static str,
        /// The text.
        message: String,
    },
    /// Request or response headers went through the plugin.
    Headers {
        /// `request` or `response`.
        side: &'static str,
        /// `callback`: right after the headers callback; `resumed`: as
        /// they went on after the stream waited, when the plugin changed
        /// them meanwhile (from a callout answer or a tick).
        stage: &'static str,
        /// What the headers callback returned: `continue`, `pause` or
        /// `local_response`.
        decision: &'static str,
        /// Pairs the plugin removed, compared with the headers sent (as a
        /// multiset).
        removed: Pairs,
        /// Pairs the plugin added.
        added: Pairs,
        /// Every pair as the plugin left them.
        headers: Pairs,
    },
    /// One body chunk went through the plugin (printed when the body is
    /// sent in several chunks).
    BodyChunk {
        /// `request` or `response`.
        side: &'static str,
        /// 1-based chunk number.
        index: usize,
        /// How many chunks the body has.
        count: usize,
        /// Bytes in this chunk.
        bytes: usize,
        /// What the callback returned.
        decision: &'static str,
    },
    /// The whole body, as sent and as the plugin let it through.
    Body {
        /// `request` or `response`.
        side: &'static str,
        /// The body given on the command line.
        sent: String,
        /// What went on after the plugin's edits.
        forwarded: String,
    },
    /// The plugin made an HTTP or gRPC callout.
    Callout(Callout),
    /// A callout was answered from `--callout-response`.
    CalloutAnswer {
        /// The callout's token.
        token: u32,
        /// The answer, as given.
        answer: String,
    },
    /// `proxy_on_tick` ran.
    Tick {
        /// Time since the start of the run, in milliseconds (virtual
        /// unless `--real-time`).
        at_ms: u64,
    },
    /// The plugin resumed a paused direction (`proxy_continue_stream`).
    Resume {
        /// `request` or `response` (TCP: `downstream` or `upstream`).
        side: &'static str,
    },
    /// The plugin closed a direction (`proxy_close_stream`).
    Close {
        /// `request` or `response` (TCP: `downstream` or `upstream`).
        side: &'static str,
    },
    /// The plugin answered locally; the reply went through its response
    /// callbacks as Envoy's encoder path does.
    LocalResponse {
        /// The status the plugin sent.
        sent_status: u32,
        /// The reply as it leaves: status after the plugin's own edits.
        status: u32,
        /// Headers of the reply as it leaves (without `:status`).
        headers: Pairs,
        /// gRPC status, if any.
        grpc_status: Option<u32>,
        /// Body.
        body: String,
    },
    /// The run ended with a direction still paused and nothing left that
    /// could resume it.
    StillPaused {
        /// `request` or `response`.
        side: &'static str,
    },
    /// TCP: `proxy_on_new_connection` ran.
    NewConnection {
        /// `source.address` as the plugin reads it.
        source: String,
        /// `destination.address` as the plugin reads it.
        destination: String,
        /// What the callback returned: `continue` or `pause`.
        decision: &'static str,
    },
    /// TCP: bytes from one peer went through the plugin
    /// (`proxy_on_downstream_data` or `proxy_on_upstream_data`).
    Data {
        /// Who sent them: `downstream` (the client) or `upstream`.
        side: &'static str,
        /// The chunk given on the command line (empty at end of stream).
        sent: String,
        /// Whether the sender ended its stream with it.
        end_of_stream: bool,
        /// What the callback returned: `continue` or `pause`.
        decision: &'static str,
        /// What went on to the other peer after the plugin's edits.
        forwarded: String,
        /// Bytes the plugin holds back in this direction afterwards.
        held: usize,
    },
    /// TCP: bytes the plugin held went on after it resumed their direction
    /// (from a tick or a callout answer).
    Released {
        /// `downstream` or `upstream`: who sent them.
        side: &'static str,
        /// What went on to the other peer.
        forwarded: String,
    },
    /// TCP: a command-line event that could not happen.
    NotDelivered {
        /// `downstream` or `upstream`.
        side: &'static str,
        /// `data` or `end_of_stream`.
        what: &'static str,
        /// Why not.
        reason: &'static str,
    },
    /// TCP: the run ended with bytes still held by the plugin; they never
    /// reached the other peer.
    StillHeld {
        /// `downstream` or `upstream`: who sent them.
        side: &'static str,
        /// The held bytes, as the plugin left them.
        data: String,
        /// How many.
        bytes: usize,
    },
    /// TCP: `proxy_on_downstream_connection_close` or
    /// `proxy_on_upstream_connection_close` ran.
    ConnectionClose {
        /// `downstream` or `upstream`.
        side: &'static str,
        /// Who ended that side first: `remote` (the peer) or `local`.
        peer: &'static str,
    },
    /// TCP: everything one peer received over the connection.
    Received {
        /// `upstream` or `downstream` (the client).
        by: &'static str,
        /// The bytes, in order.
        data: String,
    },
    /// A queue a plugin registered received data:
    /// `proxy_on_queue_ready` ran on the plugin that registered it.
    QueueReady {
        /// The queue's VM id.
        vm_id: String,
        /// Its name.
        queue: String,
        /// The id the plugin got for it.
        queue_id: u32,
    },
    /// The plugin called `proxy_call_foreign_function`.
    ForeignCall {
        /// The function's name.
        name: String,
        /// The argument bytes, as text.
        argument: String,
        /// The answer's bytes, as text; `null` when the call failed.
        answer: Option<String>,
        /// `Ok`, or the status the call failed with (`NotFound` for a
        /// function no `--foreign-function` names).
        status: String,
        /// Whether a `--foreign-function` named it.
        named: bool,
    },
    /// How the exchange ended: `continue` (the response went to the
    /// client), `local_response` or `paused`; for a connection `closed`,
    /// `closed_by_plugin` or `held` (closed with bytes still held).
    Done {
        /// The outcome.
        outcome: &'static str,
    },
}

/// A callout the plugin made.
#[derive(Debug, Clone, Serialize)]
pub struct Callout {
    /// `http` or `grpc`.
    pub kind: &'static str,
    /// The token the plugin got.
    pub token: u32,
    /// The cluster (gRPC: the upstream as text).
    pub cluster: String,
    /// HTTP: request headers; gRPC: initial metadata.
    pub headers: Pairs,
    /// gRPC service and method (`pkg.Service/Method`); empty for HTTP.
    pub method: String,
    /// Request body or message.
    pub body: String,
    /// Timeout in milliseconds.
    pub timeout_ms: u128,
}

/// An event, a metric or a callout with the plugin it is about, when the
/// run has several.
#[derive(Debug, Clone, Serialize)]
pub struct Tagged<T: Serialize> {
    /// The event or item.
    #[serde(flatten)]
    pub item: T,
    /// The plugin's name (only when the run has several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// One metric the plugins defined.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Its name.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Counter or gauge value; for a histogram, the number, sum, smallest
    /// and largest of its samples.
    pub value: serde_json::Value,
}

/// Shared data set during the run.
#[derive(Debug, Clone)]
pub struct SharedRow {
    /// The VM id it is kept under.
    pub vm_id: String,
    /// Its key, as text.
    pub key: String,
    /// Its value, as text.
    pub value: String,
    /// The plugin that set it last (only when the run has several).
    pub by: Option<String>,
}

/// A queue registered during the run.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// The VM id it belongs to.
    pub vm_id: String,
    /// Its name.
    pub name: String,
    /// Messages nobody dequeued.
    pub left: usize,
    /// The plugin that registered it (only when the run has several).
    pub by: Option<String>,
}

/// What the plugins left behind after the run.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// Metrics, in definition order.
    pub metrics: Vec<Tagged<Metric>>,
    /// Shared data the plugins set, sorted by VM id and key.
    pub shared_data: Vec<SharedRow>,
    /// Queues the plugins registered.
    pub queues: Vec<QueueRow>,
    /// Properties the plugin set on the stream, sorted by path:
    /// `(path, value, plugin when the run has several)`.
    pub properties: Vec<(String, String, Option<String>)>,
    /// Callouts nobody answered.
    pub unanswered_callouts: Vec<Tagged<Callout>>,
}

/// A row as a JSON array of its columns, with the plugin last when given.
fn row(columns: Vec<serde_json::Value>, by: &Option<String>) -> serde_json::Value {
    let mut columns = columns;
    if let Some(by) = by {
        columns.push(serde_json::Value::from(by.as_str()));
    }
    serde_json::Value::Array(columns)
}

impl Leftovers {
    /// The JSON fields: `metrics`, `shared_data`, `queues`, `properties`,
    /// `unanswered_callouts`.
    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        map.insert("metrics".into(), to_value(&self.metrics));
        let shared = (self.shared_data.iter())
            .map(|r| {
                row(
                    vec![
                        r.vm_id.as_str().into(),
                        r.key.as_str().into(),
                        r.value.as_str().into(),
                    ],
                    &r.by,
                )
            })
            .collect();
        map.insert("shared_data".into(), serde_json::Value::Array(shared));
        let queues = (self.queues.iter())
            .map(|q| {
                row(
                    vec![
                        q.vm_id.as_str().into(),
                        q.name.as_str().into(),
                        q.left.into(),
                    ],
                    &q.by,
                )
            })
            .collect();
        map.insert("queues".into(), serde_json::Value::Array(queues));
        let properties = (self.properties.iter())
            .map(|(path, value, by)| row(vec![path.as_str().into(), value.as_str().into()], by))
            .collect();
        map.insert("properties".into(), serde_json::Value::Array(properties));
        map.insert(
            "unanswered_callouts".into(),
            to_value(&self.unanswered_callouts),
        );
        map
    }
}

/// Plain data as a JSON value (it cannot fail to serialize).
fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("plain data serializes")
}

/// One plugin of a run with several, for the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRow {
    /// Its name.
    pub name: String,
    /// `filter` (the request or connection goes through it) or `service`.
    pub kind: &'static str,
    /// The file it was loaded from.
    pub file: String,
    /// Its root id.
    pub root_id: String,
    /// Its VM id.
    pub vm_id: String,
    /// Its proxy-wasm ABI version.
    pub abi: String,
    /// Which VM of the run it has its root context in (from 1); plugins
    /// with the same number share one.
    pub vm: usize,
}

/// Prints events as they happen, or keeps them for the JSON document.
pub struct Report {
    format: Format,
    events: Vec<Tagged<Event>>,
    plugin: (String, String, String),
    /// The plugins of a run with several (events then name theirs).
    plugins: Vec<PluginRow>,
}

impl Report {
    /// A report in `format`.
    pub fn new(format: Format) -> Self {
        Report {
            format,
            events: Vec::new(),
            plugin: Default::default(),
            plugins: Vec::new(),
        }
    }

    /// The plugin loaded: name, ABI version, engine.
    pub fn plugin(&mut self, name: &str, abi: &str, engine: &str) {
        if self.format == Format::Text {
            println!("plugin `{name}` (proxy-wasm ABI {abi}) on {engine}");
        }
        self.plugin = (name.into(), abi.into(), engine.into());
    }

    /// The plugins of a run with several, in the order they started; from
    /// now on events say which plugin they are about.
    pub fn plugins(&mut self, plugins: Vec<PluginRow>, engine: &str) {
        if self.format == Format::Text {
            for p in &plugins {
                let shared: Vec<String> = (plugins.iter())
                    .filter(|o| o.vm == p.vm && o.name != p.name)
                    .map(|o| format!("`{}`", o.name))
                    .collect();
                let sharing = if shared.is_empty() {
                    String::new()
                } else {
                    format!(", sharing its VM with {}", shared.join(", "))
                };
                println!(
                    "{} `{}` (proxy-wasm ABI {}) on {engine}, vm_id `{}`{sharing}",
                    if p.kind == "service" {
                        "service"
                    } else {
                        "plugin"
                    },
                    p.name,
                    p.abi,
                    p.vm_id,
                );
            }
        }
        let first = plugins
            .iter()
            .find(|p| p.kind == "filter")
            .or(plugins.first());
        if let Some(p) = first {
            self.plugin = (p.name.clone(), p.abi.clone(), engine.into());
        }
        self.plugins = plugins;
    }

    /// Whether the run has several plugins, so that events name theirs.
    pub fn several(&self) -> bool {
        !self.plugins.is_empty()
    }

    /// `plugin` when the run has several, to tag what it did.
    pub fn tag(&self, plugin: &str) -> Option<String> {
        self.several().then(|| plugin.to_string())
    }

    /// Records one event.
    pub fn emit(&mut self, event: Event) {
        self.emit_tagged(None, event);
    }

    /// Records one event about `plugin` (named when the run has several).
    pub fn emit_by(&mut self, plugin: &str, event: Event) {
        let tag = self.tag(plugin);
        self.emit_tagged(tag, event);
    }

    fn emit_tagged(&mut self, plugin: Option<String>, event: Event) {
        match self.format {
            Format::Text => print!("{}", prefixed(plugin.as_deref(), &text(&event))),
            Format::Json => self.events.push(Tagged {
                item: event,
                plugin,
            }),
        }
    }

    /// Records the log lines of `plugin`.
    pub fn logs_by(&mut self, plugin: &str, lines: Vec<LogLine>) {
        for line in lines {
            self.emit_by(
                plugin,
                Event::Log {
                    level: line.level.as_str(),
                    message: line.message,
                },
            );
        }
    }

    /// Prints what the plugin left behind (text), or the whole document
    /// (JSON).
    pub fn finish(self, leftovers: &Leftovers) {
        match self.format {
            Format::Text => print!("{}", leftovers_text(leftovers)),
            Format::Json => {
                let (plugin, abi, engine) = &self.plugin;
                let mut document = serde_json::Map::new();
                document.insert("plugin".into(), plugin.as_str().into());
                document.insert("abi".into(), abi.as_str().into());
                document.insert("engine".into(), engine.as_str().into());
                if !self.plugins.is_empty() {
                    document.insert("plugins".into(), to_value(&self.plugins));
                }
                document.insert("events".into(), to_value(&self.events));
                document.extend(leftovers.json());
                println!(
                    "{}",
                    serde_json::to_string_pretty(&document).expect("plain data serializes")
                );
            }
        }
    }
}

/// `text` with every line starting `[plugin] ` when a plugin is named.
fn prefixed(plugin: Option<&str>, text: &str) -> String {
    match plugin {
        None => text.to_string(),
        Some(name) => text.lines().map(|l| format!("[{name}] {l}\n")).collect(),
    }
}

/// The text form of one event (whole lines).
fn text(event: &Event) -> String {
    let mut out = String::new();
    match event {
        Event::Log { level, message } => {
            let _ = writeln!(out, "log [{level}] {message}");
        }
        Event::Headers {
            side,
            stage,
            removed,
            added,
            headers,
            ..
        } => {
            let what = if *stage == "resumed" {
                format!("{side} headers as resumed")
            } else {
                format!("{side} headers")
            };
            out = diff_lines(&what, removed, added);
            out.push_str(&repeated_names(headers));
        }
        Event::BodyChunk {
            side,
            index,
            count,
            bytes,
            decision,
        } => {
            let _ = writeln!(
                out,
                "{side} body chunk {index}/{count} ({bytes} bytes): {decision}"
            );
        }
        Event::Body {
            side,
            sent,
            forwarded,
        } => {
            if sent == forwarded {
                let _ = writeln!(out, "{side} body: unchanged ({} bytes)", sent.len());
            } else {
                let _ = writeln!(out, "{side} body: {sent:?} -> {forwarded:?}");
            }
        }
        Event::Callout(c) => {
            let target = if c.kind == "grpc" {
                format!("{} {}", c.cluster, c.method)
            } else {
                let path = c
                    .headers
                    .iter()
                    .find(|(k, _)| k == ":path")
                    .map_or("", |(_, v)| v.as_str());
                format!("`{}` {path}", c.cluster)
            };
            let _ = writeln!(
                out,
                "{} callout {} to {target} (timeout {} ms)",
                c.kind, c.token, c.timeout_ms
            );
        }
        Event::CalloutAnswer { token, answer } => {
            let _ = writeln!(out, "callout {token} answered: {answer}");
        }
        Event::Tick { at_ms } => {
            let _ = writeln!(out, "tick at {at_ms} ms");
        }
        Event::Resume { side } => {
            let _ = writeln!(out, "plugin resumed the {side}");
        }
        Event::Close { side } => {
            let _ = writeln!(out, "plugin closed the {side}");
        }
        Event::LocalResponse {
            sent_status,
            status,
            headers,
            grpc_status,
            body,
        } => {
            if sent_status == status {
                let _ = writeln!(out, "local response: {status}");
            } else {
                let _ = writeln!(
                    out,
                    "local response: {status} (sent as {sent_status}, changed by the response callbacks)"
                );
            }
            for (k, v) in headers {
                let _ = writeln!(out, "  {k}: {v}");
            }
            if let Some(g) = grpc_status {
                let _ = writeln!(out, "  grpc-status: {g}");
            }
            if !body.is_empty() {
                let _ = writeln!(out, "  body: {body:?}");
            }
        }
        Event::StillPaused { side } => {
            let _ = writeln!(
                out,
                "the {side} is still paused: nothing left to resume it (a proxy would wait for its timeout)"
            );
        }
        Event::NewConnection {
            source,
            destination,
            decision,
        } => {
            let _ = writeln!(
                out,
                "new connection from {source} to {destination}: {decision}"
            );
        }
        Event::Data {
            side,
            sent,
            end_of_stream,
            decision,
            forwarded,
            held,
        } => {
            let what = if *end_of_stream && sent.is_empty() {
                format!("{side} end of stream")
            } else if *end_of_stream {
                format!("{side} data {sent:?} with end of stream")
            } else {
                format!("{side} data {sent:?}")
            };
            let _ = write!(out, "{what}: {decision}");
            if *held > 0 {
                let _ = write!(
                    out,
                    " (holds {held} byte{})",
                    if *held == 1 { "" } else { "s" }
                );
            }
            // An empty `forwarded` is shown when the plugin let the chunk
            // through and dropped every byte of it.
            if !forwarded.is_empty() || (*decision == "continue" && *held == 0 && !sent.is_empty())
            {
                let _ = write!(out, " -> {} gets {forwarded:?}", other_peer(side));
            }
            out.push('\n');
        }
        Event::Released { side, forwarded } => {
            let _ = writeln!(
                out,
                "held {side} data released -> {} gets {forwarded:?}",
                other_peer(side)
            );
        }
        Event::NotDelivered { side, what, reason } => {
            let what = what.replace('_', " ");
            let _ = writeln!(out, "{side} {what} not delivered: {reason}");
        }
        Event::StillHeld { side, data, bytes } => {
            let _ = writeln!(
                out,
                "the {side} data is still held: {data:?} ({bytes} bytes) never reached the {}",
                other_peer(side)
            );
        }
        Event::ConnectionClose { side, peer } => {
            let _ = writeln!(out, "{side} connection closed (peer: {peer})");
        }
        Event::Received { by, data } => {
            let _ = writeln!(out, "{by} received in all: {data:?}");
        }
        Event::QueueReady { vm_id, queue, .. } => {
            let _ = writeln!(out, "queue [{vm_id}] {queue} ready: proxy_on_queue_ready");
        }
        Event::ForeignCall {
            name,
            argument,
            answer,
            status,
            named,
        } => {
            let _ = write!(out, "foreign function `{name}`({argument:?}) -> ");
            match answer {
                Some(answer) => {
                    let _ = writeln!(out, "{answer:?}");
                }
                None if !named => {
                    let _ = writeln!(out, "{status} (no --foreign-function names it)");
                }
                None => {
                    let _ = writeln!(out, "{status}");
                }
            }
        }
        Event::Done { outcome } => {
            if let Some(how) = match *outcome {
                "closed" => Some("connection closed"),
                "closed_by_plugin" => Some("connection closed by the plugin"),
                "held" => Some("connection closed with data still held"),
                _ => None,
            } {
                let _ = writeln!(out, "{how}");
            } else if *outcome != "local_response" {
                let _ = writeln!(out, "decision: {}", outcome.replace("paused", "pause"));
            }
        }
    }
    out
}

/// The peer that gets what `side` sends.
fn other_peer(side: &str) -> &'static str {
    if side == "upstream" {
        "downstream"
    } else {
        "upstream"
    }
}

fn leftovers_text(left: &Leftovers) -> String {
    let mut out = String::new();
    for Tagged { item: c, plugin } in &left.unanswered_callouts {
        if let Some(p) = plugin {
            let _ = write!(out, "[{p}] ");
        }
        let headers: Vec<String> = c.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            out,
            "unanswered {} callout {} to `{}`{} (timeout {} ms): {}",
            c.kind,
            c.token,
            c.cluster,
            if c.method.is_empty() {
                String::new()
            } else {
                format!(" {}", c.method)
            },
            c.timeout_ms,
            headers.join(", ")
        );
    }
    let by = |plugin: &Option<String>, verb: &str| match plugin {
        Some(p) => format!(" ({verb} `{p}`)"),
        None => String::new(),
    };
    for Tagged { item: m, plugin } in &left.metrics {
        let _ = writeln!(
            out,
            "metric {} ({}) = {}{}",
            m.name,
            m.kind,
            m.value,
            by(plugin, "defined by")
        );
    }
    for r in &left.shared_data {
        let _ = writeln!(
            out,
            "shared data [{}] {} = {:?}{}",
            r.vm_id,
            r.key,
            r.value,
            by(&r.by, "set by")
        );
    }
    for q in &left.queues {
        let _ = writeln!(
            out,
            "queue [{}] {}: {} message(s) left{}",
            q.vm_id,
            q.name,
            q.left,
            by(&q.by, "registered by")
        );
    }
    for (path, value, plugin) in &left.properties {
        let _ = writeln!(out, "property {path} = {value:?}{}", by(plugin, "set by"));
    }
    out
}

/// The pairs of `from` that `other` does not match one for one, in order.
/// Linear in the number of headers (one count per distinct pair), so a
/// request with 100k headers prints at once.
pub fn missing(from: &[(String, String)], other: &[(String, String)]) -> Pairs {
    let mut left: HashMap<&(String, String), usize> = HashMap::with_capacity(other.len());
    for pair in other {
        *left.entry(pair).or_default() += 1;
    }
    from.iter()
        .filter(|pair| match left.get_mut(pair) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// The headers removed (`-`) and added (`+`) between two maps, in their
/// order, as multisets: a header sent twice and kept once is one removal.
pub fn diff(before: &HeaderMap, after: &HeaderMap) -> (Pairs, Pairs) {
    let b = before.to_string_pairs();
    let a = after.to_string_pairs();
    (missing(&b, &a), missing(&a, &b))
}

fn diff_lines(what: &str, removed: &Pairs, added: &Pairs) -> String {
    if removed.is_empty() && added.is_empty() {
        return format!("{what}: unchanged\n");
    }
    let mut out = format!("{what}:\n");
    for (k, v) in removed {
        let _ = writeln!(out, "  - {k}: {v}");
    }
    for (k, v) in added {
        let _ = writeln!(out, "  + {k}: {v}");
    }
    out
}

/// One line per header name that occurs more than once, with every value
/// in order: a diff line alone does not show that an added header joined
/// an existing one.
fn repeated_names(headers: &Pairs) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
    for (k, v) in headers {
        let entry = values.entry(k).or_default();
        if entry.is_empty() {
            order.push(k);
        }
        entry.push(v);
    }
    let mut out = String::new();
    for name in order {
        let vals = &values[name];
        if vals.len() > 1 {
            let quoted: Vec<String> = vals.iter().map(|v| format!("{v:?}")).collect();
            let _ = writeln!(
                out,
                "  {name} appears {} times: {}",
                vals.len(),
                quoted.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    fn diff_text(what: &str, before: &HeaderMap, after: &HeaderMap) -> String {
        let (removed, added) = diff(before, after);
        diff_lines(what, &removed, &added)
    }

    #[test]
    fn diff_lists_removed_then_added_in_order() {
        let before = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let after = map(&[("a", "1"), ("c", "30"), ("d", "4")]);
        assert_eq!(
            diff_text("request headers", &before, &after),
            "request headers:\n  - b: 2\n  - c: 3\n  + c: 30\n  + d: 4\n"
        );
        assert_eq!(
            diff_text("response headers", &before, &before),
            "response headers: unchanged\n"
        );
    }

    #[test]
    fn diff_counts_repeated_headers() {
        let before = map(&[("x", "1"), ("x", "1"), ("x", "1")]);
        let after = map(&[("x", "1"), ("y", "1")]);
        assert_eq!(
            diff_text("h", &before, &after),
            "h:\n  - x: 1\n  - x: 1\n  + y: 1\n"
        );
    }

    #[test]
    fn repeated_names_are_listed_with_every_value() {
        let headers = map(&[("a", "1"), ("x", "p"), ("b", "2"), ("x", "q")]).to_string_pairs();
        assert_eq!(
            repeated_names(&headers),
            "  x appears 2 times: \"p\", \"q\"\n"
        );
    }

    /// 20 000 headers (the quadratic version compared 4e8 pairs here): the
    /// plugin-side edit, one removed and one added header, is all that is
    /// printed, and so is a whole map replaced.
    #[test]
    fn diff_of_many_headers_is_exact() {
        let names: Vec<String> = (0..20_000).map(|i| format!("h{i}")).collect();
        let mut before = HeaderMap::new();
        for n in &names {
            before.add(n, "v");
        }
        let mut after = HeaderMap::new();
        for n in names.iter().filter(|n| *n != "h777") {
            after.add(n, "v");
        }
        after.add("x-new", "1");
        assert_eq!(
            diff_text("request headers", &before, &after),
            "request headers:\n  - h777: v\n  + x-new: 1\n"
        );
        let replaced = map(&[("only", "one")]);
        let text = diff_text("request headers", &before, &replaced);
        assert_eq!(text.lines().count(), 1 + 20_000 + 1);
        assert!(
            text.ends_with("  - h19999: v\n  + only: one\n"),
            "{}",
            &text[text.len() - 60..]
        );
    }
}
