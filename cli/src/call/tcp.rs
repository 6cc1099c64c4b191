//! `polyhost call --tcp`: one connection through a network-filter plugin,
//! as the data plane runs it (`proxy/src/tcp`): `proxy_on_new_connection`
//! with the connection's addresses readable, the bytes each peer sends in
//! the order given on the command line, held bytes let go from a tick or a
//! callout answer, each side's end of stream, then the close callbacks.

use super::report::{Event, Leftovers};
use super::session::{Session, stream_properties};
use crate::files::{MAX_BODY_BYTES, read_bounded};
use anyhow::{Result, bail};
use clap::{Arg, ArgAction, ArgMatches, Command, parser::ValueSource};
use polyhost::{ContextId, Decision, Engine, PeerType, StreamEvent, StreamType};
use std::net::SocketAddr;
use std::path::Path;

/// The options only an HTTP run has; `--tcp` refuses each by name.
const HTTP_ONLY: [&str; 10] = [
    "headers",
    "method",
    "path",
    "body",
    "body_file",
    "status",
    "response_body",
    "response_body_file",
    "response_headers",
    "chunk_size",
];

/// The run's one network filter (services may run beside it).
const F: usize = 0;

/// The client's address unless `--property source.address=...` says.
const SOURCE: &str = "127.0.0.1:50000";
/// The listener's address unless `--property destination.address=...`.
const DESTINATION: &str = "127.0.0.1:10000";

/// Who sends: the client (downstream) or the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The client: `proxy_on_downstream_data`.
    Downstream,
    /// The upstream: `proxy_on_upstream_data`.
    Upstream,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Downstream => "downstream",
            Peer::Upstream => "upstream",
        }
    }

    fn index(self) -> usize {
        match self {
            Peer::Downstream => 0,
            Peer::Upstream => 1,
        }
    }
}

/// One event of the connection, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `--downstream DATA` or `--upstream DATA` (`@FILE` not read yet).
    Data(Peer, String),
    /// `--downstream-close` or `--upstream-close`: that peer ends its
    /// stream.
    End(Peer),
}

/// `--tcp` and its events, in command-line order (clap's derive cannot
/// keep the order of different options, so this reads the indices).
#[derive(Default)]
pub struct TcpArgs {
    /// Run a connection instead of a request.
    pub tcp: bool,
    /// The events, in the order given.
    pub steps: Vec<Step>,
}

impl clap::FromArgMatches for TcpArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut steps: Vec<(usize, Step)> = Vec::new();
        for (id, peer) in [
            ("downstream", Peer::Downstream),
            ("upstream", Peer::Upstream),
        ] {
            if let (Some(values), Some(indices)) =
                (matches.get_many::<String>(id), matches.indices_of(id))
            {
                for (value, index) in values.zip(indices) {
                    steps.push((index, Step::Data(peer, value.clone())));
                }
            }
            let close = format!("{id}_close");
            if matches.value_source(&close) == Some(ValueSource::CommandLine)
                && let Some(index) = matches.index_of(&close)
            {
                steps.push((index, Step::End(peer)));
            }
        }
        steps.sort_by_key(|(index, _)| *index);
        Ok(TcpArgs {
            tcp: matches.get_flag("tcp"),
            steps: steps.into_iter().map(|(_, step)| step).collect(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for TcpArgs {
    fn augment_args(cmd: Command) -> Command {
        let event = |id: &'static str| Arg::new(id).long(id).requires("tcp");
        cmd.arg(
            Arg::new("tcp")
                .long("tcp")
                .action(ArgAction::SetTrue)
                .conflicts_with_all(HTTP_ONLY)
                .help(
                    "Run one TCP connection through a network-filter plugin instead of an \
                     HTTP request (see --downstream, --upstream)",
                ),
        )
        .arg(
            event("downstream")
                .value_name("DATA")
                .action(ArgAction::Append)
                .help(
                    "With --tcp: bytes the client sends; `@FILE` reads a file (at most \
                     16 MiB). Repeatable; events run in command-line order",
                ),
        )
        .arg(
            event("upstream")
                .value_name("DATA")
                .action(ArgAction::Append)
                .help("With --tcp: bytes the upstream sends; `@FILE` reads a file. Repeatable"),
        )
        .arg(
            event("downstream_close")
                .long("downstream-close")
                .action(ArgAction::SetTrue)
                .help(
                    "With --tcp: the client ends its stream here (by default after the \
                     last event)",
                ),
        )
        .arg(
            event("upstream_close")
                .long("upstream-close")
                .action(ArgAction::SetTrue)
                .help(
                    "With --tcp: the upstream ends its stream here (by default after the \
                     client's end)",
                ),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// One event of the connection, ready to run.
pub enum Segment {
    /// Bytes from a peer.
    Data(Peer, Vec<u8>),
    /// A peer ends its stream.
    End(Peer),
}

/// The connection as the command line describes it.
pub struct Connection {
    /// The events, files read, then an end of stream for each peer that
    /// did not end (the client first).
    pub events: Vec<Segment>,
    /// The properties the connection's context starts with.
    pub properties: Properties,
    /// `source.address` and `destination.address`, for the report.
    addresses: (String, String),
}

impl Connection {
    /// Reads `@FILE` chunks and checks the order of events.
    ///
    /// # Errors
    /// An unreadable or too large file, data from a peer after its end of
    /// stream.
    pub fn parse(steps: &[Step], property_args: &[String]) -> Result<Connection> {
        let mut events = Vec::with_capacity(steps.len() + 2);
        let mut ended = [false; 2];
        for step in steps {
            match step {
                Step::Data(peer, text) => {
                    if ended[peer.index()] {
                        bail!(
                            "`--{0} {text}` comes after `--{0}-close`: the {0} already ended its stream",
                            peer.name()
                        );
                    }
                    let data = match text.strip_prefix('@') {
                        Some(path) => read_bounded(
                            &format!("{} data", peer.name()),
                            Path::new(path),
                            MAX_BODY_BYTES,
                        )?,
                        None => text.as_bytes().to_vec(),
                    };
                    events.push(Segment::Data(*peer, data));
                }
                Step::End(peer) => {
                    ended[peer.index()] = true;
                    events.push(Segment::End(*peer));
                }
            }
        }
        for peer in [Peer::Downstream, Peer::Upstream] {
            if !ended[peer.index()] {
                events.push(Segment::End(peer));
            }
        }
        let (properties, addresses) = connection_properties(property_args);
        Ok(Connection {
            events,
            properties,
            addresses,
        })
    }
}

/// Properties as (dotted path, value).
type Properties = Vec<(Vec<u8>, Vec<u8>)>;

/// Envoy's connection attributes, as the data plane sets them
/// (`source.*`, `destination.*`, `connection.id`), except those given with
/// `--property`; a port not given comes from its address.
fn connection_properties(property_args: &[String]) -> (Properties, (String, String)) {
    let given = |path: &str| {
        property_args.iter().rev().find_map(|raw| {
            let (p, v) = raw.split_once('=')?;
            (p.trim() == path).then(|| v.to_string())
        })
    };
    let mut properties = Vec::new();
    let mut addresses = Vec::new();
    for (prefix, default) in [("source", SOURCE), ("destination", DESTINATION)] {
        let path = format!("{prefix}.address");
        let address = match given(&path) {
            Some(address) => address,
            None => {
                properties.push((path.into_bytes(), default.as_bytes().to_vec()));
                default.to_string()
            }
        };
        let port_path = format!("{prefix}.port");
        if given(&port_path).is_none()
            && let Ok(addr) = address.parse::<SocketAddr>()
        {
            let port = i64::from(addr.port()).to_le_bytes().to_vec();
            properties.push((port_path.into_bytes(), port));
        }
        addresses.push(address);
    }
    if given("connection.id").is_none() {
        properties.push((b"connection.id".to_vec(), 1u64.to_le_bytes().to_vec()));
    }
    let destination = addresses.pop().unwrap_or_default();
    let source = addresses.pop().unwrap_or_default();
    (properties, (source, destination))
}

/// How the connection ended.
enum Outcome {
    /// Both sides ended and the connection closed.
    Closed,
    /// The plugin closed it (`proxy_close_stream`).
    ClosedByPlugin,
}

/// One connection through a VM.
pub struct Run<'a, E: Engine> {
    s: Session<'a, E>,
    id: ContextId,
    /// `proxy_on_new_connection` paused and nothing let data through
    /// since: the upstream is not connected yet.
    paused_at_start: bool,
    /// The upstream connection was made.
    connected: bool,
    /// The plugin closed the connection.
    closed: bool,
    /// Who ended each side first (as the data plane records it).
    ended_by: [Option<PeerType>; 2],
    /// What each peer received: [upstream, downstream].
    received: [Vec<u8>; 2],
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Pause => "pause",
        _ => "continue",
    }
}

impl<'a, E: Engine> Run<'a, E> {
    /// Creates the connection's context (`proxy_on_new_connection`) with
    /// its properties.
    ///
    /// # Errors
    /// The plugin fails creating the context.
    pub fn new(mut s: Session<'a, E>, connection: &Connection) -> Result<Self> {
        let root = s.root(F);
        let created = s
            .vm(F)
            .create_tcp_stream_with(root, connection.properties.iter().cloned());
        s.after_call();
        let (id, decision) = created?;
        let (source, destination) = connection.addresses.clone();
        s.emit(
            F,
            Event::NewConnection {
                source,
                destination,
                decision: decision_name(&decision),
            },
        );
        let paused_at_start = decision == Decision::Pause;
        let mut run = Run {
            s,
            id,
            paused_at_start,
            connected: !paused_at_start,
            closed: false,
            ended_by: [None; 2],
            received: [Vec::new(), Vec::new()],
        };
        run.settle()?;
        Ok(run)
    }

    /// Runs the events, the ticks the plugin waits for, the close
    /// callbacks and then the ticks left; fills in the unanswered callouts
    /// and the properties the plugin set.
    ///
    /// # Errors
    /// The plugin fails in any callback.
    pub fn run(mut self, connection: Connection, leftovers: &mut Leftovers) -> Result<()> {
        for event in connection.events {
            self.wait_while_held()?;
            let (peer, chunk, end) = match event {
                Segment::Data(peer, data) => (peer, data, false),
                Segment::End(peer) => (peer, Vec::new(), true),
            };
            self.deliver(peer, &chunk, end)?;
        }
        self.wait_while_held()?;
        let held = self.report_held();
        let outcome = if self.closed {
            Outcome::ClosedByPlugin
        } else {
            Outcome::Closed
        };
        // Whoever has not ended a side by now is closed by the proxy.
        let downstream_peer = self.ended_by[0].unwrap_or(PeerType::Local);
        let closes = self
            .close(Peer::Downstream, downstream_peer)
            .and_then(|()| {
                if self.connected {
                    let upstream_peer = self.ended_by[1].unwrap_or(PeerType::Local);
                    self.close(Peer::Upstream, upstream_peer)
                } else {
                    Ok(())
                }
            });
        let finished = self.s.vm(F).finish_stream(self.id);
        self.s.after_call();
        closes?;
        let state = finished?;
        for (by, data) in ["upstream", "downstream"].into_iter().zip(&self.received) {
            self.s.report.emit(Event::Received {
                by,
                data: String::from_utf8_lossy(data).into_owned(),
            });
        }
        self.s.report.emit(Event::Done {
            outcome: match outcome {
                Outcome::ClosedByPlugin => "closed_by_plugin",
                Outcome::Closed if held => "held",
                Outcome::Closed => "closed",
            },
        });
        // The timers go on after the connection, as they would in a proxy.
        while let Some(due) = self.s.next_tick() {
            self.s.tick(due)?;
            self.settle()?;
        }
        let tag = self.s.report.tag(self.s.name(F));
        leftovers.properties = (stream_properties(&state.properties, &connection.properties))
            .into_iter()
            .map(|(path, value)| (path, value, tag.clone()))
            .chain(self.s.vm_properties())
            .collect();
        leftovers.unanswered_callouts = self.s.take_unanswered();
        Ok(())
    }

    /// Runs one chunk (or an end of stream) from `peer` through the plugin.
    fn deliver(&mut self, peer: Peer, chunk: &[u8], end: bool) -> Result<()> {
        let what = if end { "end_of_stream" } else { "data" };
        if self.closed {
            self.s.emit(
                F,
                Event::NotDelivered {
                    side: peer.name(),
                    what,
                    reason: "the plugin closed the connection",
                },
            );
            return Ok(());
        }
        if peer == Peer::Upstream && !self.connected {
            self.s.emit(
                F,
                Event::NotDelivered {
                    side: peer.name(),
                    what,
                    reason: "the upstream is not connected (the plugin paused the new connection)",
                },
            );
            return Ok(());
        }
        let id = self.id;
        let decision = match peer {
            Peer::Downstream => self.s.vm(F).on_downstream_data(id, chunk, end)?,
            Peer::Upstream => self.s.vm(F).on_upstream_data(id, chunk, end)?,
        };
        self.s.after_call();
        // A data callback answers for itself: only a close it asked for
        // counts, as in the data plane.
        let closed =
            (self.s.vm(F).take_events(id).iter()).any(|e| matches!(e, StreamEvent::Close(_)));
        let forwarded = if decision == Decision::Pause || closed {
            Vec::new()
        } else {
            if peer == Peer::Downstream && self.paused_at_start {
                self.paused_at_start = false;
                self.connected = true;
            }
            self.take(peer)
        };
        let held = self.held(peer).len();
        self.s.emit(
            F,
            Event::Data {
                side: peer.name(),
                sent: String::from_utf8_lossy(chunk).into_owned(),
                end_of_stream: end,
                decision: decision_name(&decision),
                forwarded: String::from_utf8_lossy(&forwarded).into_owned(),
                held,
            },
        );
        self.received[peer.index()].extend_from_slice(&forwarded);
        if closed {
            self.plugin_closed(peer);
            return Ok(());
        }
        if end {
            // As the data plane: the first to end a side is its peer; the
            // proxy then ends the other side of the connection.
            let [downstream, upstream] = &mut self.ended_by;
            match peer {
                Peer::Downstream => {
                    downstream.get_or_insert(PeerType::Remote);
                    if self.connected {
                        upstream.get_or_insert(PeerType::Local);
                    }
                }
                Peer::Upstream => {
                    upstream.get_or_insert(PeerType::Remote);
                    downstream.get_or_insert(PeerType::Local);
                }
            }
        }
        self.settle()
    }

    /// Answers the callouts the last callback made (whose answers may make
    /// more) and applies the resume and close requests they lead to.
    fn settle(&mut self) -> Result<()> {
        let id = self.id;
        let mut resumed = Vec::new();
        let mut closed = None;
        self.s.settle(&[(F, id)], |s, _, event| {
            match event {
                StreamEvent::Resume(t @ (StreamType::Downstream | StreamType::Upstream)) => {
                    let peer = if t == StreamType::Downstream {
                        Peer::Downstream
                    } else {
                        Peer::Upstream
                    };
                    s.emit(F, Event::Resume { side: peer.name() });
                    resumed.push(peer);
                }
                StreamEvent::Close(t) => {
                    closed.get_or_insert(if t == StreamType::Upstream {
                        Peer::Upstream
                    } else {
                        Peer::Downstream
                    });
                }
                _ => {}
            }
            Ok(())
        })?;
        if self.closed {
            return Ok(());
        }
        if let Some(peer) = closed {
            self.plugin_closed(peer);
            return Ok(());
        }
        for peer in resumed {
            self.release(peer);
        }
        Ok(())
    }

    /// The plugin let `peer`'s held bytes go (and, downstream, a
    /// connection paused at its start connect).
    fn release(&mut self, peer: Peer) {
        if peer == Peer::Downstream && self.paused_at_start {
            self.paused_at_start = false;
            self.connected = true;
        }
        if self.held(peer).is_empty() {
            return;
        }
        let forwarded = self.take(peer);
        self.received[peer.index()].extend_from_slice(&forwarded);
        self.s.emit(
            F,
            Event::Released {
                side: peer.name(),
                forwarded: String::from_utf8_lossy(&forwarded).into_owned(),
            },
        );
    }

    fn plugin_closed(&mut self, peer: Peer) {
        self.closed = true;
        self.s.emit(F, Event::Close { side: peer.name() });
    }

    /// While the plugin holds bytes or keeps the connection paused at its
    /// start, runs ticks until it lets go or no tick is left.
    fn wait_while_held(&mut self) -> Result<()> {
        while !self.closed && self.waiting() {
            let Some(due) = self.s.next_tick() else {
                return Ok(());
            };
            self.s.tick(due)?;
            self.settle()?;
        }
        Ok(())
    }

    fn waiting(&self) -> bool {
        self.paused_at_start
            || [Peer::Downstream, Peer::Upstream]
                .iter()
                .any(|p| !self.held(*p).is_empty())
    }

    /// Reports what the plugin still holds (and a connection still paused
    /// at its start); whether it held any bytes.
    fn report_held(&mut self) -> bool {
        if self.paused_at_start && !self.closed {
            self.s.emit(F, Event::StillPaused { side: "connection" });
        }
        let mut any = false;
        for peer in [Peer::Downstream, Peer::Upstream] {
            let data = self.held(peer).to_vec();
            if data.is_empty() {
                continue;
            }
            any = true;
            self.s.emit(
                F,
                Event::StillHeld {
                    side: peer.name(),
                    data: String::from_utf8_lossy(&data).into_owned(),
                    bytes: data.len(),
                },
            );
        }
        any
    }

    /// Runs the close callback of `side`.
    fn close(&mut self, side: Peer, peer: PeerType) -> Result<()> {
        let id = self.id;
        let result = match side {
            Peer::Downstream => self.s.vm(F).on_downstream_close(id, peer),
            Peer::Upstream => self.s.vm(F).on_upstream_close(id, peer),
        };
        self.s.after_call();
        result?;
        self.s.emit(
            F,
            Event::ConnectionClose {
                side: side.name(),
                peer: match peer {
                    PeerType::Local => "local",
                    PeerType::Remote => "remote",
                    PeerType::Unknown => "unknown",
                },
            },
        );
        self.settle()
    }

    /// The bytes the plugin holds from `peer`.
    fn held(&self, peer: Peer) -> &[u8] {
        match (self.s.vm_ref(F).stream(self.id), peer) {
            (Some(s), Peer::Downstream) => &s.downstream_data,
            (Some(s), Peer::Upstream) => &s.upstream_data,
            (None, _) => &[],
        }
    }

    fn take(&mut self, peer: Peer) -> Vec<u8> {
        match peer {
            Peer::Downstream => self.s.vm(F).take_downstream_data(self.id),
            Peer::Upstream => self.s.vm(F).take_upstream_data(self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_properties_yield_to_given_ones() {
        let (props, (source, destination)) = connection_properties(&[]);
        assert_eq!(source, SOURCE);
        assert_eq!(destination, DESTINATION);
        assert!(props.contains(&(b"source.port".to_vec(), 50000i64.to_le_bytes().to_vec())));
        let (props, (source, _)) =
            connection_properties(&["source.address=10.0.0.1:5555".to_string()]);
        assert_eq!(source, "10.0.0.1:5555");
        assert!(!props.iter().any(|(k, _)| k == b"source.address"));
        assert!(props.contains(&(b"source.port".to_vec(), 5555i64.to_le_bytes().to_vec())));
    }

    #[test]
    fn every_peer_ends_after_the_events_unless_it_did() {
        let steps = [
            Step::Data(Peer::Downstream, "a".into()),
            Step::End(Peer::Upstream),
        ];
        let c = Connection::parse(&steps, &[]).unwrap();
        let kinds: Vec<String> = (c.events.iter())
            .map(|e| match e {
                Segment::Data(p, _) => format!("data {}", p.name()),
                Segment::End(p) => format!("end {}", p.name()),
            })
            .collect();
        assert_eq!(kinds, ["data downstream", "end upstream", "end downstream"]);
        let steps = [
            Step::End(Peer::Downstream),
            Step::Data(Peer::Downstream, "late".into()),
        ];
        let err = Connection::parse(&steps, &[]).err().unwrap().to_string();
        assert!(err.contains("after `--downstream-close`"), "{err}");
    }
}
