//! The guest's side: bursts of NTP exchanges with a server, the best exchange of each burst.

use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::packet::{MODE_SERVER, PACKET_LEN, Packet};
use super::{Exchange, now_ns};

/// How bursts are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    /// Exchanges per burst, back to back.
    pub burst: usize,
    /// How long to wait for each reply.
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            burst: 8,
            timeout: Duration::from_millis(500),
        }
    }
}

/// The result of one burst: its minimum-RTT exchange.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measurement {
    /// Client wall time in the middle of the best exchange, ns since the Unix epoch.
    pub time_ns: i64,
    /// Server clock minus client clock, seconds.
    pub offset: f64,
    /// Round trip of the best exchange, seconds.
    pub rtt: f64,
    /// The true offset lies within `offset ± bound` (seconds): `rtt / 2`.
    pub bound: f64,
    /// Replies received in the burst.
    pub answered: usize,
    /// Requests sent in the burst.
    pub sent: usize,
}

/// What can go wrong with a server, beyond lost packets.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Socket trouble.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The address does not resolve.
    #[error("cannot resolve {0}: give HOST:PORT, e.g. 10.0.2.2:12300")]
    Resolve(String),
    /// The server refuses to serve (stratum 0, RFC 5905 §7.4).
    #[error("the server sent a kiss-o'-death ({0}): it refuses to answer")]
    Kiss(String),
    /// Nothing listens there (an ICMP port-unreachable came back).
    #[error("nothing answers at {0} (connection refused): is `vmmon clock serve` running there?")]
    Refused(String),
}

/// A socket connected to one server.
#[derive(Debug)]
pub struct Prober {
    socket: UdpSocket,
    server: String,
    config: ProbeConfig,
}

impl Prober {
    /// Resolves `server` (HOST:PORT) and connects a UDP socket to it.
    pub fn connect(server: &str, config: ProbeConfig) -> Result<Prober, ProbeError> {
        let addr = server
            .to_socket_addrs()
            .map_err(|_| ProbeError::Resolve(server.into()))?
            .next()
            .ok_or_else(|| ProbeError::Resolve(server.into()))?;
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(addr)?;
        Ok(Prober {
            socket,
            server: server.into(),
            config,
        })
    }

    /// One exchange; `None` if no matching reply came within the timeout.
    pub fn exchange(&mut self) -> Result<Option<Exchange>, ProbeError> {
        let mut buf = [0u8; 512];
        let t1 = now_ns();
        let request = Packet::request(t1);
        match self.socket.send(&request.encode()) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(ProbeError::Refused(self.server.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e) if super::is_timeout(&e) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(ProbeError::Refused(self.server.clone()));
                }
                Err(e) => return Err(e.into()),
            };
            let t4 = now_ns();
            // A late reply to an earlier request, or anything else, is not this exchange's.
            let Ok(reply) = Packet::parse(&buf[..len.min(PACKET_LEN + 1)]) else {
                continue;
            };
            if reply.mode != MODE_SERVER || reply.origin != request.transmit {
                continue;
            }
            if reply.stratum == 0 {
                return Err(ProbeError::Kiss(
                    String::from_utf8_lossy(&reply.reference_id).into_owned(),
                ));
            }
            if reply.transmit.is_zero() || reply.receive.is_zero() {
                continue;
            }
            return Ok(Some(Exchange {
                t1,
                t2: reply.receive.to_unix_ns(t1),
                t3: reply.transmit.to_unix_ns(t1),
                t4,
            }));
        }
    }

    /// A burst of exchanges; the one with the smallest round trip, or `None` if none was
    /// answered.
    pub fn burst(&mut self) -> Result<Option<Measurement>, ProbeError> {
        let mut best: Option<Exchange> = None;
        let mut answered = 0;
        for _ in 0..self.config.burst.max(1) {
            if let Some(e) = self.exchange()? {
                answered += 1;
                if best.is_none_or(|b| e.rtt() < b.rtt()) {
                    best = Some(e);
                }
            }
        }
        Ok(best.map(|e| Measurement {
            time_ns: e.midpoint(),
            offset: e.offset(),
            rtt: e.rtt(),
            bound: e.bound(),
            answered,
            sent: self.config.burst.max(1),
        }))
    }
}

/// The measurements of a run, and what they say together.
#[derive(Debug, Clone, Default)]
pub struct Track(pub Vec<Measurement>);

impl Track {
    /// Drift of the server's clock against this one over the run (Theil–Sen).
    pub fn drift(&self) -> Option<super::Drift> {
        let points: Vec<(f64, f64)> = self
            .0
            .iter()
            .map(|m| (m.time_ns as f64 * 1e-9, m.offset))
            .collect();
        super::theil_sen(&points)
    }

    /// Smallest round trip seen, seconds.
    pub fn min_rtt(&self) -> Option<f64> {
        self.0.iter().map(|m| m.rtt).min_by(f64::total_cmp)
    }

    /// Median offset, seconds (the upper median for an even count).
    pub fn median_offset(&self) -> Option<f64> {
        let mut offsets: Vec<f64> = self.0.iter().map(|m| m.offset).collect();
        offsets.sort_by(f64::total_cmp);
        offsets.get(offsets.len() / 2).copied()
    }
}

/// What a recorder's reference-clock thread saw over a run (for the trace's sidecar).
#[derive(Debug, Clone, Serialize)]
pub struct RefSummary {
    /// The server probed.
    pub server: String,
    /// Seconds between bursts.
    pub interval_s: f64,
    /// Bursts made.
    pub bursts: u64,
    /// Bursts answered.
    pub measured: usize,
    /// The first error met, if any (the thread keeps trying).
    pub error: Option<String>,
    /// Smallest round trip seen, seconds.
    pub min_rtt_s: Option<f64>,
    /// Drift of the reference against this machine's clock over the run.
    pub drift: Option<super::Drift>,
}

#[derive(Debug, Default)]
struct Shared {
    latest: Option<Measurement>,
    track: Track,
    bursts: u64,
    error: Option<String>,
    new_error: Option<String>,
}

/// Probes a reference clock from a thread of its own at a low rate, so that the recorder's
/// sampling schedule is not disturbed; the recorder takes the newest result for its next row.
#[derive(Debug)]
pub struct Background {
    shared: std::sync::Arc<std::sync::Mutex<Shared>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    server: String,
    interval: Duration,
}

impl Background {
    /// Starts probing now, then every `interval`.
    pub fn start(mut prober: Prober, interval: Duration) -> Background {
        use std::sync::atomic::Ordering;
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Shared::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = prober.server.clone();
        let (s2, stop2) = (shared.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("clock-ref".into())
            .spawn(move || {
                let mut next = Instant::now();
                while !stop2.load(Ordering::Relaxed) {
                    let result = prober.burst();
                    if let Ok(mut sh) = s2.lock() {
                        sh.bursts += 1;
                        match result {
                            Ok(Some(m)) => {
                                sh.track.0.push(m);
                                sh.latest = Some(m);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                if sh.error.is_none() {
                                    sh.error = Some(e.to_string());
                                    sh.new_error = Some(e.to_string());
                                }
                            }
                        }
                    }
                    next += interval;
                    while !stop2.load(Ordering::Relaxed) && Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .ok();
        Background {
            shared,
            stop,
            handle,
            server,
            interval,
        }
    }

    /// The newest result not yet taken.
    pub fn take(&self) -> Option<Measurement> {
        self.shared.lock().ok().and_then(|mut s| s.latest.take())
    }

    /// The first error, once (for a note to the user).
    pub fn take_error(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|mut s| s.new_error.take())
    }

    /// Stops the thread and summarises the run.
    pub fn finish(mut self) -> RefSummary {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Not joined: a burst in flight may wait for its timeouts, and the recorder should
        // not; the thread stops at its next check.
        drop(self.handle.take());
        let sh = match self.shared.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        RefSummary {
            server: self.server.clone(),
            interval_s: self.interval.as_secs_f64(),
            bursts: sh.bursts,
            measured: sh.track.0.len(),
            error: sh.error.clone(),
            min_rtt_s: sh.track.min_rtt(),
            drift: sh.track.drift(),
        }
    }
}
