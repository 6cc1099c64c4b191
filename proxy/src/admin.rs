//! Envoy's admin endpoint, the parts scripts and dashboards use:
//! `/ready`, `/listeners`, `/clusters`, `/stats` (`?format=` `text`,
//! `json` or `prometheus`; `?filter=REGEX`), `/stats/prometheus` (also
//! filtered), `/server_info`, `/logging` (levels, changed with POST) and
//! `/quitquitquit` (POST).

use crate::cluster::ClusterManager;
use crate::log::LogControl;
use crate::stats::StatsStore;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// What the admin endpoint reports and controls.
pub struct Admin {
    pub(crate) stats: Arc<StatsStore>,
    pub(crate) clusters: Arc<ClusterManager>,
    /// `(name, address)` of every listener, in configuration order.
    pub(crate) listeners: Vec<(String, String)>,
    pub(crate) started: Instant,
    pub(crate) concurrency: usize,
    pub(crate) config_path: String,
    /// What `/logging` changes, when the embedder can reload the filter.
    pub(crate) log_control: Option<Arc<LogControl>>,
    /// Signalled by `/quitquitquit`.
    pub(crate) quit: Arc<Notify>,
}

fn response(status: u16, content_type: &str, body: String) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body.into_bytes())
        .expect("static response parts are valid")
}

fn text(status: u16, body: String) -> http::Response<Vec<u8>> {
    response(status, "text/plain; charset=UTF-8", body)
}

fn json(body: String) -> http::Response<Vec<u8>> {
    response(200, "application/json", body)
}

/// Reads `key` from a query string, percent-decoded, as browsers and
/// `curl -G --data-urlencode` send it: `filter=%5Ewasm%5C.` is the regex
/// `^wasm\.`. A `+` stays a `+`, which a regex may mean. Bytes that do not
/// decode to UTF-8 are replaced, so such a filter matches nothing rather
/// than failing.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
}

impl Admin {
    fn listeners_accept(&self) -> bool {
        self.listeners.iter().all(|(_, address)| {
            let Ok(mut addr) = address.parse::<std::net::SocketAddr>() else {
                return true;
            };
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
                .is_ok()
        })
    }

    fn handle(&self, method: &http::Method, path: &str, query: &str) -> http::Response<Vec<u8>> {
        match path {
            // Pingora binds each service's listeners as it starts them, so
            // the admin endpoint can be up before the listeners are: ready
            // means every listener accepts connections, as Envoy's
            // `/ready` answers 503 until its listeners are initialised.
            "/ready" if self.listeners_accept() => text(200, "LIVE\n".into()),
            "/ready" => text(503, "PRE_INITIALIZING\n".into()),
            // Envoy's `/stats/prometheus` is `/stats?format=prometheus`;
            // `filter=` applies to every format, matched against the names
            // `/stats` shows.
            "/stats" | "/stats/prometheus" => {
                let filter = match query_param(query, "filter").map(|f| regex::Regex::new(&f)) {
                    Some(Ok(re)) => Some(re),
                    Some(Err(e)) => return text(400, format!("Invalid regex: {e}\n")),
                    None => None,
                };
                let format = match path {
                    "/stats/prometheus" => Some("prometheus".to_string()),
                    _ => query_param(query, "format"),
                };
                match format.as_deref() {
                    None | Some("text") => text(200, self.stats.render_text(filter.as_ref())),
                    Some("json") => json(self.stats.render_json(filter.as_ref())),
                    Some("prometheus") => response(
                        200,
                        "text/plain; version=0.0.4",
                        self.stats.render_prometheus(filter.as_ref()),
                    ),
                    Some(other) => text(
                        400,
                        format!("usage: /stats?format=(json|prometheus|text); unknown format {other:?}\n"),
                    ),
                }
            }
            "/listeners" => {
                if query_param(query, "format").as_deref() == Some("json") {
                    let statuses: Vec<_> = self
                        .listeners
                        .iter()
                        .map(|(name, addr)| {
                            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
                            serde_json::json!({
                                "name": name,
                                "local_address": {"socket_address": {
                                    "address": ip.trim_matches(['[', ']']),
                                    "port_value": port.parse::<u16>().unwrap_or(0),
                                }},
                            })
                        })
                        .collect();
                    json(serde_json::json!({ "listener_statuses": statuses }).to_string())
                } else {
                    let mut out = String::new();
                    for (name, addr) in &self.listeners {
                        writeln!(out, "{name}::{addr}").expect("infallible");
                    }
                    text(200, out)
                }
            }
            "/clusters" => {
                let mut out = String::new();
                for cluster in self.clusters.all() {
                    let name = &cluster.name;
                    writeln!(out, "{name}::observability_name::{name}").expect("infallible");
                    writeln!(out, "{name}::added_via_api::false").expect("infallible");
                    for endpoint in cluster.endpoints().iter() {
                        writeln!(out, "{name}::{endpoint}::health_flags::healthy")
                            .expect("infallible");
                        writeln!(out, "{name}::{endpoint}::weight::1").expect("infallible");
                    }
                }
                text(200, out)
            }
            "/server_info" => json(
                serde_json::json!({
                    "version": format!("polyhost/{}", env!("CARGO_PKG_VERSION")),
                    "state": "LIVE",
                    "uptime_current_epoch": format!("{}s", self.started.elapsed().as_secs()),
                    "uptime_all_epochs": format!("{}s", self.started.elapsed().as_secs()),
                    "command_line_options": {
                        "concurrency": self.concurrency,
                        "config_path": self.config_path,
                    },
                })
                .to_string(),
            ),
            "/logging" => self.logging(method, query),
            "/quitquitquit" => {
                if method != http::Method::POST {
                    return text(405, "This endpoint requires POST\n".into());
                }
                tracing::info!(target: "polyhost::admin", "shutting down on /quitquitquit");
                // Let this answer reach the client before the process stops.
                let quit = self.quit.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    quit.notify_one();
                });
                text(200, "OK\n".into())
            }
            _ => text(
                404,
                "invalid path. admin commands are: /clusters /listeners /logging /quitquitquit /ready /server_info /stats /stats/prometheus\n".into(),
            ),
        }
    }
}

impl Admin {
    /// Envoy's `/logging`: without a query it lists the components and
    /// their levels; `?level=L` sets every component, `?COMPONENT=L` one,
    /// `?paths=C1:L1,C2:L2` several (POST only, as Envoy's changes are).
    /// The plugins follow the `wasm` level.
    fn logging(&self, method: &http::Method, query: &str) -> http::Response<Vec<u8>> {
        let Some(control) = &self.log_control else {
            return text(
                501,
                "log levels are fixed for this proxy (its embedder gave no way to change them)\n"
                    .into(),
            );
        };
        let mut changes = Vec::new();
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match key {
                "level" => changes.push(("*".to_string(), value.to_string())),
                "paths" => {
                    for item in value.split(',').filter(|s| !s.is_empty()) {
                        let Some((component, level)) = item.split_once(':') else {
                            return text(400, format!("`{item}` is not COMPONENT:LEVEL\n"));
                        };
                        changes.push((component.to_string(), level.to_string()));
                    }
                }
                component => changes.push((component.to_string(), value.to_string())),
            }
        }
        if !changes.is_empty() {
            if method != http::Method::POST {
                return text(405, "This endpoint requires POST\n".into());
            }
            if let Err(e) = control.set(&changes) {
                return text(400, format!("{e}\n{}", control.listing()));
            }
            let level = crate::wasm::refresh_plugin_log_level();
            tracing::info!(target: "polyhost::admin", ?changes, plugins = ?level, "log levels changed");
        }
        text(200, control.listing())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let request = session.req_header();
        let method = request.method.clone();
        let path = request.uri.path().to_string();
        let query = request.uri.query().unwrap_or("").to_string();
        // The request body of /quitquitquit and friends carries nothing.
        let _ = session.drain_request_body().await;
        self.handle(&method, &path, &query)
    }
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_values_are_percent_decoded() {
        let query = "format=json&filter=%5Ewasm%5C.a+b&empty=";
        assert_eq!(query_param(query, "format").as_deref(), Some("json"));
        assert_eq!(query_param(query, "filter").as_deref(), Some("^wasm\\.a+b"));
        assert_eq!(query_param(query, "empty").as_deref(), Some(""));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(
            query_param("filter=%FF", "filter").as_deref(),
            Some("\u{fffd}")
        );
    }
}
