//! Latency and bandwidth among VM hosts: an agent on every host (`probe serve`) and an
//! orchestrator (`probe mesh`) that asks each agent to measure every other one.
//!
//! An agent listens on one port number for two protocols (docs/network.md has the details):
//! - **UDP echo** ([`echo`]): 32-byte datagrams with a magic, a session, a sequence number and
//!   the sender's monotonic timestamp, answered by the same 32 bytes with the kind changed, so
//!   a reply is never larger than its request.
//! - **TCP** ([`wire`]): one newline-delimited JSON request per connection and JSON replies:
//!   `hello`, `sink` (the receiving end of a bulk transfer, [`bulk`]), and the orchestrator's
//!   `latency` and `bandwidth` requests, which the agent runs from itself to a target.
//!
//! Every request is bounded by the agent's [`Limits`]: duration and bytes of a transfer, one
//! bulk test at a time, request size, a read timeout, a number of connections.

pub mod agent;
pub mod bulk;
pub mod echo;
pub mod mesh;
pub mod wire;

pub use agent::{Agent, AgentStats, BindError, Limits};
pub use bulk::{BandwidthConfig, BandwidthResult, SinkReport, measure_bandwidth};
pub use echo::{EchoPacket, LatencyConfig, LatencyResult, measure_latency, percentile};
pub use mesh::{Cell, MeshConfig, MeshReport, Metric, Node, Progress};
pub use wire::{Hello, hello, remote_bandwidth, remote_latency};

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The agent's default port (TCP and UDP): unprivileged, next to `clock serve`'s 12300.
pub const DEFAULT_PORT: u16 = 12310;

/// The protocol version an agent announces in its `hello` reply.
pub const PROTOCOL_VERSION: u32 = 1;

/// What can go wrong when measuring or talking to an agent; each names the address.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The address does not resolve or is not HOST:PORT.
    #[error("cannot resolve {0}: give HOST:PORT, e.g. 10.0.0.2:{DEFAULT_PORT}")]
    Resolve(String),
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("{addr}: no answer within {seconds:.3} s ({what})")]
    Timeout {
        /// The address.
        addr: String,
        /// What was awaited.
        what: &'static str,
        /// How long we waited.
        seconds: f64,
    },
    /// Nothing listens on the UDP port (an ICMP port-unreachable came back).
    #[error("nothing answers at {0} (UDP port unreachable): is `vmmon probe serve` running there?")]
    Refused(String),
    /// The agent is already running a bulk test, or has too many connections.
    #[error("{addr} is busy: {message}")]
    Busy {
        /// The address.
        addr: String,
        /// The agent's words.
        message: String,
    },
    /// The agent refused or failed the request and said why.
    #[error("{addr}: {message}")]
    Agent {
        /// The address.
        addr: String,
        /// The agent's words.
        message: String,
    },
    /// The peer's reply is not this protocol.
    #[error("{addr}: not a vmmon probe agent ({message})")]
    Protocol {
        /// The address.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// A socket failed during the exchange.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Resolves HOST:PORT to its first address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ProbeError> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ProbeError::Resolve(addr.into()))
}

/// Whether a socket error only means that nothing came in time (or a signal woke us).
fn is_timeout(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// `CLOCK_MONOTONIC` with nanosecond resolution: every interval measured here uses it, so a
/// wall-clock step (NTP, a guest agent) never shows as latency.
fn now() -> Duration {
    crate::record::monotonic()
}

/// A read timeout for a socket: at least 1 µs (zero would mean "block forever").
fn timeout_at_least(d: Duration) -> Option<Duration> {
    Some(d.max(Duration::from_micros(1)))
}
