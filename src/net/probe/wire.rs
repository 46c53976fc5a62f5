//! The TCP control protocol: one JSON request line per connection, JSON reply lines.
//!
//! Requests (`op`): `hello`; `sink` (seconds, warmup); `latency` (target, count, interval,
//! timeout); `bandwidth` (target, seconds, warmup). Every reply has `ok`; a refusal has
//! `code` (`busy`, `malformed`, `too_long`, `timeout`, `failed`) and `error`, a sentence that
//! names what failed. Times are seconds (floating point), sizes bytes. Lines end in `\n`; a
//! request line is at most 4 KiB.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::agent::Limits;
use super::bulk::{BandwidthConfig, BandwidthResult, SinkGrant, SinkReport};
use super::echo::{LatencyConfig, LatencyResult};
use super::{PROTOCOL_VERSION, ProbeError, now, resolve, timeout_at_least};

/// The longest reply line a client reads (a latency result lists every round trip).
pub const MAX_REPLY: usize = 4 << 20;

/// A request to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Who are you, and what are your limits?
    Hello,
    /// Receive a bulk transfer from me and count it.
    Sink {
        /// Seconds I intend to send.
        seconds: f64,
        /// Seconds after the first byte not to count (default min(1, seconds/5)).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup: Option<f64>,
    },
    /// Measure round trips from you to `target`'s echo.
    Latency {
        /// HOST:PORT of an agent.
        target: String,
        /// Probes.
        count: u32,
        /// Seconds between probes.
        interval: f64,
        /// Seconds a reply may take.
        timeout: f64,
    },
    /// Measure bandwidth from you to `target`'s sink.
    Bandwidth {
        /// HOST:PORT of an agent.
        target: String,
        /// Seconds to send.
        seconds: f64,
        /// Seconds after the first byte not to count.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warmup: Option<f64>,
        /// Seconds connecting to the target and its replies may take (default 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<f64>,
    },
}

/// An agent's introduction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// `vmmon` and its version.
    pub agent: String,
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The bounds it enforces.
    pub limits: Limits,
}

/// A reply line; only the fields for the request are present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was accepted (and, for measurements, succeeded).
    pub ok: bool,
    /// Why not, in one word: `busy`, `malformed`, `too_long`, `timeout`, `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why not, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to `hello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<Hello>,
    /// The grant of a `sink`, before the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkGrant>,
    /// The count of a `sink`, after the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<SinkReport>,
    /// The result of `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyResult>,
    /// The result of `bandwidth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthResult>,
}

impl Reply {
    /// A refusal with its code and message.
    pub fn refuse(code: &str, error: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            code: Some(code.into()),
            error: Some(error.into()),
            ..Reply::default()
        }
    }
}

/// Writes `value` as one JSON line.
pub(crate) fn write_line(stream: &mut TcpStream, value: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Why no line was read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The peer closed before sending anything.
    Eof,
    /// The peer closed in the middle of a line.
    Incomplete,
    /// Longer than allowed.
    TooLong,
    /// Not complete by the deadline.
    Timeout,
    /// The stop flag was raised.
    Stopped,
    /// The socket failed.
    Io(io::Error),
}

impl LineError {
    /// The error a client reports for this, waiting for `what` from `addr`.
    pub(crate) fn into_probe(self, addr: &str, what: &'static str) -> ProbeError {
        let protocol = |message: &str| ProbeError::Protocol {
            addr: addr.into(),
            message: message.into(),
        };
        match self {
            LineError::Eof | LineError::Incomplete => ProbeError::Agent {
                addr: addr.into(),
                message: format!("the connection closed before the {what}"),
            },
            LineError::TooLong => protocol("reply line too long"),
            LineError::Timeout | LineError::Stopped => ProbeError::Agent {
                addr: addr.into(),
                message: format!("gave up waiting for the {what}"),
            },
            LineError::Io(source) => ProbeError::Io {
                addr: addr.into(),
                source,
            },
        }
    }
}

/// Reads one line of at most `max` bytes (without its `\n`) by `deadline` (monotonic),
/// waking every 250 ms to look at `stop`.
pub(crate) fn read_line(
    reader: &mut BufReader<TcpStream>,
    max: usize,
    deadline: Duration,
    stop: Option<&AtomicUsize>,
) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    loop {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed) != 0) {
            return Err(LineError::Stopped);
        }
        let left = deadline.saturating_sub(now());
        if left.is_zero() {
            return Err(LineError::Timeout);
        }
        reader
            .get_ref()
            .set_read_timeout(timeout_at_least(left.min(Duration::from_millis(250))))
            .map_err(LineError::Io)?;
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if super::is_timeout(&e) => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return Err(if line.is_empty() {
                LineError::Eof
            } else {
                LineError::Incomplete
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take + usize::from(done));
        if done {
            return Ok(line);
        }
    }
}

/// Connects to `addr` within `timeout`.
pub(crate) fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let sock = resolve(addr)?;
    let stream = TcpStream::connect_timeout(&sock, timeout).map_err(|source| {
        if super::is_timeout(&source) {
            ProbeError::Timeout {
                addr: addr.into(),
                what: "connect",
                seconds: timeout.as_secs_f64(),
            }
        } else {
            ProbeError::Connect {
                addr: addr.into(),
                source,
            }
        }
    })?;
    // Control lines are small and awaited: send each at once.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Parses a reply line; a refusal becomes the matching error.
pub(crate) fn parse_reply(line: &[u8], addr: &str) -> Result<Reply, ProbeError> {
    let reply: Reply = serde_json::from_slice(line).map_err(|e| ProbeError::Protocol {
        addr: addr.into(),
        message: format!("unreadable reply: {e}"),
    })?;
    if reply.ok {
        return Ok(reply);
    }
    let message = reply
        .error
        .unwrap_or_else(|| "refused without a reason".into());
    Err(match reply.code.as_deref() {
        Some("busy") => ProbeError::Busy {
            addr: addr.into(),
            message,
        },
        _ => ProbeError::Agent {
            addr: addr.into(),
            message,
        },
    })
}

/// Reads and parses a reply line within `wait`, naming `what` on a timeout.
pub(crate) fn read_reply(
    reader: &mut BufReader<TcpStream>,
    addr: &str,
    wait: Duration,
    what: &'static str,
) -> Result<Reply, ProbeError> {
    match read_line(reader, MAX_REPLY, now() + wait, None) {
        Ok(line) => parse_reply(&line, addr),
        Err(LineError::Timeout) => Err(ProbeError::Timeout {
            addr: addr.into(),
            what,
            seconds: wait.as_secs_f64(),
        }),
        Err(e) => Err(e.into_probe(addr, what)),
    }
}

/// Sends `request` to the agent at `addr` and reads its reply, waiting `timeout` to connect
/// and `timeout + work` for the reply.
fn exchange(
    addr: &str,
    request: &Request,
    timeout: Duration,
    work: Duration,
    what: &'static str,
) -> Result<Reply, ProbeError> {
    let stream = connect(addr, timeout)?;
    let mut reader = BufReader::new(stream);
    write_line(reader.get_mut(), request).map_err(|source| ProbeError::Io {
        addr: addr.into(),
        source,
    })?;
    read_reply(&mut reader, addr, timeout + work, what)
}

/// Asks the agent at `addr` who it is; checks that it speaks this protocol.
pub fn hello(addr: &str, timeout: Duration) -> Result<Hello, ProbeError> {
    let reply = exchange(addr, &Request::Hello, timeout, Duration::ZERO, "hello")?;
    let hello = reply.hello.ok_or_else(|| ProbeError::Protocol {
        addr: addr.into(),
        message: "no hello in the reply".into(),
    })?;
    if hello.protocol != PROTOCOL_VERSION {
        return Err(ProbeError::Protocol {
            addr: addr.into(),
            message: format!(
                "it speaks protocol {}, this vmmon speaks {PROTOCOL_VERSION}",
                hello.protocol
            ),
        });
    }
    Ok(hello)
}

/// Asks the agent at `agent` to measure round trips from itself to the agent at `target`.
/// `timeout` bounds connecting and the reply beyond the measurement's own length.
pub fn remote_latency(
    agent: &str,
    target: &str,
    config: &LatencyConfig,
    timeout: Duration,
) -> Result<LatencyResult, ProbeError> {
    let request = Request::Latency {
        target: target.into(),
        count: config.count,
        interval: config.interval.as_secs_f64(),
        timeout: config.timeout.as_secs_f64(),
    };
    exchange(
        agent,
        &request,
        timeout,
        config.duration(),
        "latency result",
    )?
    .latency
    .ok_or_else(|| ProbeError::Protocol {
        addr: agent.into(),
        message: "no latency in the reply".into(),
    })
}

/// Asks the agent at `agent` to measure the bandwidth from itself to the agent at `target`.
pub fn remote_bandwidth(
    agent: &str,
    target: &str,
    config: &BandwidthConfig,
) -> Result<BandwidthResult, ProbeError> {
    let request = Request::Bandwidth {
        target: target.into(),
        seconds: config.seconds.as_secs_f64(),
        warmup: config.warmup.map(|w| w.as_secs_f64()),
        timeout: Some(config.timeout.as_secs_f64()),
    };
    // The agent connects to the target and waits for its grant (a timeout each), sends, and
    // waits for the sink's report (its drain and a timeout); with ours, four in all.
    let work = config.seconds + 3 * config.timeout + Duration::from_secs_f64(Limits::DRAIN);
    exchange(agent, &request, config.timeout, work, "bandwidth result")?
        .bandwidth
        .ok_or_else(|| ProbeError::Protocol {
            addr: agent.into(),
            message: "no bandwidth in the reply".into(),
        })
}
