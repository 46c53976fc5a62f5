//! Round-trip latency: the UDP echo packet, the agent's answer, and the prober.
//!
//! The prober sends `count` packets at a fixed, low rate (one per `interval`, 10 ms by
//! default), so that probes never queue behind each other, and times each on
//! `CLOCK_MONOTONIC` (ns) from just before `send` to just after `recv`. It keeps its own send
//! times; the echoed timestamp only has to match them, so a stray or forged reply is ignored.
//! A probe whose reply has not come within `timeout` of its sending is lost.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ProbeError, now, resolve, timeout_at_least};

/// Size of every echo packet, request and reply.
pub const ECHO_LEN: usize = 32;
/// First four bytes of every echo packet.
pub const ECHO_MAGIC: [u8; 4] = *b"VMPE";
/// The packet format's version (byte 4).
pub const ECHO_VERSION: u8 = 1;
/// Byte 5 of a request.
pub const KIND_REQUEST: u8 = 1;
/// Byte 5 of a reply.
pub const KIND_REPLY: u8 = 2;

/// One echo packet: `magic(4) version(1) kind(1) zero(2) session(8) seq(8) sent_ns(8)`, the
/// integers big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoPacket {
    /// [`KIND_REQUEST`] or [`KIND_REPLY`].
    pub kind: u8,
    /// Chosen at random per measurement, so that replies to another run are ignored.
    pub session: u64,
    /// The probe's number within the run, from 0.
    pub seq: u64,
    /// The sender's `CLOCK_MONOTONIC` at sending, ns; echoed unchanged.
    pub sent_ns: u64,
}

/// Why a datagram is not an echo packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than [`ECHO_LEN`] bytes.
    Short,
    /// More than [`ECHO_LEN`] bytes.
    Oversized,
    /// The right size but a wrong magic, version, kind or reserved bytes.
    Invalid,
}

impl EchoPacket {
    /// The 32 bytes on the wire.
    pub fn encode(&self) -> [u8; ECHO_LEN] {
        let mut b = [0u8; ECHO_LEN];
        b[..4].copy_from_slice(&ECHO_MAGIC);
        b[4] = ECHO_VERSION;
        b[5] = self.kind;
        b[8..16].copy_from_slice(&self.session.to_be_bytes());
        b[16..24].copy_from_slice(&self.seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.sent_ns.to_be_bytes());
        b
    }

    /// Parses a datagram, checking its size, magic, version, kind and reserved bytes.
    pub fn parse(b: &[u8]) -> Result<EchoPacket, Malformed> {
        if b.len() < ECHO_LEN {
            return Err(Malformed::Short);
        }
        if b.len() > ECHO_LEN {
            return Err(Malformed::Oversized);
        }
        if b[..4] != ECHO_MAGIC
            || b[4] != ECHO_VERSION
            || !matches!(b[5], KIND_REQUEST | KIND_REPLY)
            || b[6..8] != [0, 0]
        {
            return Err(Malformed::Invalid);
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        Ok(EchoPacket {
            kind: b[5],
            session: word(8),
            seq: word(16),
            sent_ns: word(24),
        })
    }
}

/// The agent's answer to datagram `b`: the same bytes as a reply, or why it is dropped.
/// A request's reply has exactly its size, so the echo never amplifies traffic.
pub fn answer(b: &[u8]) -> Result<[u8; ECHO_LEN], Malformed> {
    let p = EchoPacket::parse(b)?;
    if p.kind != KIND_REQUEST {
        // A reply sent to an agent would otherwise bounce between two agents forever.
        return Err(Malformed::Invalid);
    }
    Ok(EchoPacket {
        kind: KIND_REPLY,
        ..p
    }
    .encode())
}

/// How a latency measurement is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// Probes to send.
    pub count: u32,
    /// Time between probes.
    pub interval: Duration,
    /// How long each probe's reply may take before the probe counts as lost.
    pub timeout: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            count: 20,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        }
    }
}

impl LatencyConfig {
    /// The longest the measurement can take: the warm-up probe's timeout, then the last
    /// probe's sending plus its timeout.
    pub fn duration(&self) -> Duration {
        self.timeout + self.interval * self.count.saturating_sub(1) + self.timeout
    }
}

/// Round trips to one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// The target, as given.
    pub target: String,
    /// Probes sent.
    pub sent: u32,
    /// Probes answered within their timeout.
    pub received: u32,
    /// Round trips of the answered probes in seconds, in the order they were sent.
    pub rtts: Vec<f64>,
    /// Smallest round trip, seconds (`None` when nothing was answered).
    pub rtt_min: Option<f64>,
    /// Median round trip (nearest rank), seconds.
    pub rtt_p50: Option<f64>,
    /// 99th percentile round trip (nearest rank), seconds.
    pub rtt_p99: Option<f64>,
    /// Share of the probes lost, 0 to 1.
    pub loss: f64,
}

impl LatencyResult {
    /// The summary of round trips `rtts` (seconds) of `sent` probes to `target`.
    pub fn from_rtts(target: &str, sent: u32, rtts: Vec<f64>) -> LatencyResult {
        let mut sorted = rtts.clone();
        sorted.sort_by(f64::total_cmp);
        let received = rtts.len() as u32;
        LatencyResult {
            target: target.into(),
            sent,
            received,
            rtt_min: sorted.first().copied(),
            rtt_p50: percentile(&sorted, 50.0),
            rtt_p99: percentile(&sorted, 99.0),
            rtts,
            loss: if sent == 0 {
                0.0
            } else {
                f64::from(sent - received.min(sent)) / f64::from(sent)
            },
        }
    }
}

/// The `p`-th percentile (0 < p ≤ 100) of ascending `sorted` by the nearest-rank method: the
/// value of rank ⌈p/100 · n⌉ (1-based). It is always one of the samples, never an
/// interpolation; with fewer than 100 samples the 99th percentile is the maximum.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A session number that differs between runs and processes.
fn session() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process and stepped per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now().as_nanos());
    h.finish()
}

/// The sequence number of the uncounted first probe.
const WARM_UP: u64 = u64::MAX;

/// Sends one uncounted probe and waits for its reply, up to `timeout`. The first packet to a
/// host resolves its link-layer address (ARP: a whole round trip on a quiet path) and wakes
/// idle CPUs and caches on the way; counted, it would be the maximum of every run. An
/// unanswered warm-up is no error: the counted probes say what is lost.
fn warm_up(
    socket: &UdpSocket,
    session: u64,
    timeout: Duration,
    stop: &AtomicUsize,
    buf: &mut [u8],
) -> io::Result<()> {
    let probe = EchoPacket {
        kind: KIND_REQUEST,
        session,
        seq: WARM_UP,
        sent_ns: now().as_nanos() as u64,
    };
    socket.send(&probe.encode())?;
    let until = now() + timeout;
    while stop.load(Ordering::Relaxed) == 0 {
        let left = until.saturating_sub(now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(timeout_at_least(left.min(Duration::from_millis(100))))?;
        match socket.recv(buf) {
            Ok(len) => {
                if EchoPacket::parse(&buf[..len])
                    .is_ok_and(|r| r.kind == KIND_REPLY && r.session == session && r.seq == WARM_UP)
                {
                    break;
                }
            }
            Err(e) if super::is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Measures round trips from here to the agent at `target` (HOST:PORT).
pub fn measure_latency(target: &str, config: &LatencyConfig) -> Result<LatencyResult, ProbeError> {
    measure(target, config, &AtomicUsize::new(0))
}

/// [`measure_latency`], ending early (as a timeout) when `stop` becomes non-zero.
pub(crate) fn measure(
    target: &str,
    config: &LatencyConfig,
    stop: &AtomicUsize,
) -> Result<LatencyResult, ProbeError> {
    let addr = resolve(target)?;
    let io = |source: io::Error| ProbeError::Io {
        addr: target.into(),
        source,
    };
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).map_err(io)?;
    socket.connect(addr).map_err(io)?;
    let session = session();
    let n = config.count as usize;
    let mut sent_at: Vec<Duration> = Vec::with_capacity(n);
    let mut rtt: Vec<Option<Duration>> = vec![None; n];
    let mut answered = 0usize;
    let mut buf = [0u8; ECHO_LEN + 1];
    warm_up(&socket, session, config.timeout, stop, &mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeError::Refused(target.into()),
        _ => io(e),
    })?;
    let start = now();
    loop {
        let t = now();
        let next_due = start + config.interval * sent_at.len() as u32;
        if sent_at.len() < n && t >= next_due {
            let seq = sent_at.len() as u64;
            let sent = now();
            let packet = EchoPacket {
                kind: KIND_REQUEST,
                session,
                seq,
                sent_ns: sent.as_nanos() as u64,
            };
            match socket.send(&packet.encode()) {
                Ok(_) => {}
                // The ICMP error of an earlier probe: that probe's loss is counted anyway.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if answered == 0 {
                        return Err(ProbeError::Refused(target.into()));
                    }
                }
                Err(e) => return Err(io(e)),
            }
            sent_at.push(sent);
            continue;
        }
        let Some(&last) = sent_at.last() else {
            // count 0: nothing to do.
            break;
        };
        let all_sent = sent_at.len() == n;
        if all_sent && (answered == n || t >= last + config.timeout) {
            break;
        }
        if stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        let until = if all_sent {
            last + config.timeout
        } else {
            next_due
        };
        // Wake at least every 100 ms to look at the stop flag.
        let wait = until.saturating_sub(t).min(Duration::from_millis(100));
        socket
            .set_read_timeout(timeout_at_least(wait))
            .map_err(io)?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if super::is_timeout(&e) => continue,
            // Nothing listens there. After some replies it is an agent that went away
            // mid-run: the rest counts as lost.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if answered == 0 {
                    return Err(ProbeError::Refused(target.into()));
                }
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        let received = now();
        let Ok(reply) = EchoPacket::parse(&buf[..len]) else {
            continue;
        };
        let seq = reply.seq as usize;
        if reply.kind != KIND_REPLY
            || reply.session != session
            || seq >= sent_at.len()
            || reply.sent_ns != sent_at[seq].as_nanos() as u64
            || rtt[seq].is_some()
        {
            continue;
        }
        let d = received.saturating_sub(sent_at[seq]);
        if d <= config.timeout {
            rtt[seq] = Some(d);
            answered += 1;
        }
    }
    let rtts = rtt.iter().flatten().map(Duration::as_secs_f64).collect();
    Ok(LatencyResult::from_rtts(target, sent_at.len() as u32, rtts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_only_requests_are_answered() {
        let p = EchoPacket {
            kind: KIND_REQUEST,
            session: 0x0102_0304_0506_0708,
            seq: 7,
            sent_ns: 123_456_789,
        };
        let b = p.encode();
        assert_eq!(&b[..8], b"VMPE\x01\x01\x00\x00");
        assert_eq!(EchoPacket::parse(&b), Ok(p));
        let reply = answer(&b).expect("a request is answered");
        assert_eq!(reply.len(), b.len());
        assert_eq!(
            EchoPacket::parse(&reply),
            Ok(EchoPacket {
                kind: KIND_REPLY,
                ..p
            })
        );
        assert_eq!(answer(&reply), Err(Malformed::Invalid), "no ping-pong");
        assert_eq!(answer(&b[..31]), Err(Malformed::Short));
        assert_eq!(
            answer(&[b.as_slice(), &[0]].concat()),
            Err(Malformed::Oversized)
        );
        for i in [0, 4, 5, 6] {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert_eq!(answer(&bad), Err(Malformed::Invalid), "byte {i}");
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&x, 50.0), Some(5.0));
        assert_eq!(percentile(&x, 99.0), Some(10.0));
        assert_eq!(percentile(&x, 10.0), Some(1.0));
        assert_eq!(percentile(&x, 11.0), Some(2.0));
        assert_eq!(percentile(&x, 100.0), Some(10.0));
        let y: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&y, 99.0), Some(198.0));
        assert_eq!(percentile(&y, 50.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&x, 0.0), None);
        let r = LatencyResult::from_rtts("t", 4, vec![0.3, 0.1, 0.2]);
        assert_eq!(r.rtt_min, Some(0.1));
        assert_eq!(r.rtt_p50, Some(0.2));
        assert_eq!(r.rtt_p99, Some(0.3));
        assert_eq!(r.loss, 0.25);
        assert_eq!(r.rtts, [0.3, 0.1, 0.2], "in sending order");
    }

    #[test]
    fn a_silent_port_is_all_loss_and_a_closed_one_is_refused() {
        // Bound but never read: every probe is lost.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let cfg = LatencyConfig {
            count: 3,
            interval: Duration::from_millis(1),
            timeout: Duration::from_millis(50),
        };
        let r = measure_latency(&addr, &cfg).expect("measured");
        assert_eq!((r.sent, r.received, r.loss), (3, 0, 1.0));
        assert_eq!(r.rtt_min, None);
        drop(silent);
        let e = measure_latency(&addr, &cfg).expect_err("closed");
        assert!(e.to_string().contains("UDP port unreachable"), "{e}");
    }
}
