//! What a connection tells plugins, for the HTTP and TCP filter chains
//! alike: the downstream connection's two addresses and its
//! `connection.id`, and the upstream host once one is chosen.

use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers downstream connections, HTTP and TCP listeners together, as
/// Envoy numbers them: one id is never given to two connections.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A new `connection.id`.
pub(crate) fn next_connection_id() -> u64 {
    NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed)
}

/// A connection's `source.*`, `destination.*` and `connection.id`
/// properties, kept as plain values and formatted only when a plugin reads
/// one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionProperties {
    /// The client's address (`source.address`).
    source: Option<SocketAddr>,
    /// The address the client connected to (`destination.address`).
    destination: Option<SocketAddr>,
    id: u64,
}

impl ConnectionProperties {
    /// The properties of connection `id` from `source` to `destination`
    /// (Pingora's addresses: a Unix socket has no `source.address`).
    pub(crate) fn new(
        source: Option<&PingoraAddr>,
        destination: Option<&PingoraAddr>,
        id: u64,
    ) -> ConnectionProperties {
        ConnectionProperties {
            source: source.and_then(PingoraAddr::as_inet).copied(),
            destination: destination.and_then(PingoraAddr::as_inet).copied(),
            id,
        }
    }

    /// The value at `path` if it is one of the connection's properties:
    /// addresses as `ip:port` text, ports and the id as 8-byte
    /// little-endian integers, as Envoy encodes them.
    pub(crate) fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        Some(match path {
            [b"source", b"address"] => self.source?.to_string().into_bytes(),
            [b"source", b"port"] => port(self.source?),
            [b"destination", b"address"] => self.destination?.to_string().into_bytes(),
            [b"destination", b"port"] => port(self.destination?),
            [b"connection", b"id"] => self.id.to_le_bytes().to_vec(),
            _ => return None,
        })
    }
}

/// Envoy's port encoding: an 8-byte little-endian integer.
fn port(addr: SocketAddr) -> Vec<u8> {
    i64::from(addr.port()).to_le_bytes().to_vec()
}

/// The upstream host a request or connection goes to: `upstream.address`
/// and `upstream.port`. Unknown (the properties are missing) until the
/// proxy has chosen it, which is after the request headers' callbacks, as
/// in Envoy. Set once: the proxy does not retry on another host.
#[derive(Debug, Default)]
pub(crate) struct UpstreamAddress(OnceLock<SocketAddr>);

impl UpstreamAddress {
    /// Records the chosen host; a second call changes nothing.
    pub(crate) fn set(&self, addr: SocketAddr) {
        let _ = self.0.set(addr);
    }

    /// The value at `path` if it is an upstream property and known.
    pub(crate) fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        let addr = *self.0.get()?;
        match path {
            [b"upstream", b"address"] => Some(addr.to_string().into_bytes()),
            [b"upstream", b"port"] => Some(port(addr)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_text_and_ports_and_ids_little_endian_integers() {
        let source: PingoraAddr = PingoraAddr::Inet("127.0.0.1:5000".parse().unwrap());
        let destination: PingoraAddr = PingoraAddr::Inet("[::1]:8080".parse().unwrap());
        let props = ConnectionProperties::new(Some(&source), Some(&destination), 7);
        assert_eq!(
            props.get(&[b"source", b"address"]).unwrap(),
            b"127.0.0.1:5000"
        );
        assert_eq!(
            props.get(&[b"source", b"port"]).unwrap(),
            5000i64.to_le_bytes()
        );
        assert_eq!(
            props.get(&[b"destination", b"address"]).unwrap(),
            b"[::1]:8080"
        );
        assert_eq!(
            props.get(&[b"destination", b"port"]).unwrap(),
            8080i64.to_le_bytes()
        );
        assert_eq!(
            props.get(&[b"connection", b"id"]).unwrap(),
            7u64.to_le_bytes()
        );
        assert_eq!(props.get(&[b"cluster_name"]), None);
        let unknown = ConnectionProperties::new(None, None, 8);
        assert_eq!(unknown.get(&[b"source", b"address"]), None);
    }

    #[test]
    fn the_upstream_is_unknown_until_set_and_then_fixed() {
        let upstream = UpstreamAddress::default();
        assert_eq!(upstream.get(&[b"upstream", b"address"]), None);
        upstream.set("10.0.0.1:8000".parse().unwrap());
        upstream.set("10.0.0.2:9000".parse().unwrap());
        assert_eq!(
            upstream.get(&[b"upstream", b"address"]).unwrap(),
            b"10.0.0.1:8000"
        );
        assert_eq!(
            upstream.get(&[b"upstream", b"port"]).unwrap(),
            8000i64.to_le_bytes()
        );
        assert_eq!(upstream.get(&[b"source", b"address"]), None);
    }

    #[test]
    fn connection_ids_are_never_repeated() {
        let first = next_connection_id();
        let second = next_connection_id();
        assert!(second > first);
    }
}
