//! Bandwidth: a bulk TCP transfer, counted by the receiver.
//!
//! The sender asks the agent for a `sink`, waits for its grant (so an agent that is busy, or
//! anything that is not an agent, never receives bulk data), writes for the granted time and
//! closes its side; the sink counts what arrives and replies with the count.
//!
//! **Receiver side**, because the sender's count is what it handed to its kernel: up to a
//! socket buffer (megabytes with autotuning) more than what crossed the path when it stops,
//! which at 10 Mbit/s is seconds' worth. The receiver counts only bytes that arrived, over
//! the time between arrivals on its own monotonic clock.
//!
//! **Warm-up excluded**: the rate is taken over a window that starts `warmup` after the first
//! byte (by default min(1 s, T/5)) and ends at the last byte. Slow start needs about
//! log2(BDP / 10 segments) round trips to fill a path (six for 100 Mbit/s × 50 ms, 0.3 s),
//! and a token-bucket shaper lets its burst through at line rate first; both bias a
//! whole-transfer average, up or down. The whole-transfer figure is reported too.
//!
//! **Buffers**: socket buffers are left to Linux's autotuning (up to `tcp_rmem`/`tcp_wmem`
//! max, 6 MiB/4 MiB by default), which fills a 100 Mbit/s × 50 ms path (625 kB in flight).
//! Setting `SO_RCVBUF`/`SO_SNDBUF` would turn autotuning off and cap them at
//! `net.core.rmem_max`/`wmem_max` (208 KiB by default): about 33 Mbit/s at 50 ms. The sender
//! sets `TCP_NOTSENT_LOWAT` (128 KiB), so little more than a window is queued unsent when it
//! stops and the transfer ends promptly after its time.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::wire::{self, LineError, MAX_REPLY, Reply, Request};
use super::{ProbeError, now, timeout_at_least};

/// Bytes per read and per write.
const CHUNK: usize = 256 * 1024;

/// Unsent bytes the sender lets its kernel hold (`TCP_NOTSENT_LOWAT`).
const NOTSENT_LOWAT: libc::c_int = 128 * 1024;

/// How often blocked reads and writes wake to look at deadlines and the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// The default warm-up for a transfer of `seconds`: min(1 s, T/5).
pub fn default_warmup(seconds: f64) -> f64 {
    (seconds / 5.0).min(1.0)
}

/// How a bandwidth measurement is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandwidthConfig {
    /// How long to send.
    pub seconds: Duration,
    /// Start of the counted window after the first byte; `None`: min(1 s, T/5).
    pub warmup: Option<Duration>,
    /// How long connecting and each reply may take beyond the transfer itself.
    pub timeout: Duration,
}

impl Default for BandwidthConfig {
    fn default() -> Self {
        BandwidthConfig {
            seconds: Duration::from_secs(5),
            warmup: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// What a sink grants: the transfer's length and bounds after the agent's caps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SinkGrant {
    /// Seconds the sender may send.
    pub seconds: f64,
    /// Seconds after the first byte that are not counted in the rate.
    pub warmup: f64,
    /// Bytes the sink reads at most.
    pub max_bytes: u64,
    /// Seconds after the granted time that the sink waits for data in flight.
    pub drain: f64,
}

/// What a sink received, and the rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkReport {
    /// Bytes received in all.
    pub bytes: u64,
    /// Seconds from the first byte to the last (the receiver's monotonic clock).
    pub seconds: f64,
    /// Bytes received in the counted window.
    pub window_bytes: u64,
    /// Length of the counted window, seconds.
    pub window_seconds: f64,
    /// Seconds excluded at the start (0 when the transfer was too short to leave any out).
    pub warmup: f64,
    /// The rate over the window, bytes/s (`None` when fewer than two reads arrived).
    pub bytes_per_s: Option<f64>,
    /// The rate over the whole transfer, first byte to last, bytes/s.
    pub bytes_per_s_total: Option<f64>,
    /// Why the transfer ended: `eof` (the sender finished), `seconds` or `bytes` (a cap),
    /// `idle` (nothing arrived for a while), `stopped` (the agent is shutting down).
    pub end: String,
}

/// The receiver's byte count over time, for a rate over a window after a warm-up.
///
/// Each read is recorded at its completion. The window starts at the first read completed
/// at least `warmup` after the first one, and counts the bytes read after it, up to the last
/// read: those arrived inside the window.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    warmup: Duration,
    first: Option<(Duration, u64)>,
    start: Option<(Duration, u64)>,
    last: Duration,
    bytes: u64,
}

impl RateWindow {
    /// An empty count whose window starts `warmup` after the first byte.
    pub fn new(warmup: Duration) -> RateWindow {
        RateWindow {
            warmup,
            ..RateWindow::default()
        }
    }

    /// Notes that a read completed at `t` returned `n` bytes.
    pub fn record(&mut self, t: Duration, n: u64) {
        self.bytes += n;
        self.last = t;
        let (first, _) = *self.first.get_or_insert((t, self.bytes));
        if self.start.is_none() && t >= first + self.warmup {
            self.start = Some((t, self.bytes));
        }
    }

    /// Bytes recorded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The report, with `end` saying why the transfer ended.
    pub fn report(&self, end: &str) -> SinkReport {
        let rate = |(t0, b0): (Duration, u64)| {
            let s = self.last.saturating_sub(t0).as_secs_f64();
            let b = self.bytes - b0;
            (b, s, (s > 0.0).then(|| b as f64 / s))
        };
        let total = self.first.map(rate).unwrap_or((0, 0.0, None));
        let window = self.start.map(rate);
        // A window shorter than a tenth of the transfer is too noisy to stand for it.
        let (window, warmup) = match window {
            Some(w) if w.2.is_some() && w.1 >= total.1 / 10.0 => (w, self.warmup.as_secs_f64()),
            _ => (total, 0.0),
        };
        SinkReport {
            bytes: self.bytes,
            seconds: total.1,
            window_bytes: window.0,
            window_seconds: window.1,
            warmup,
            bytes_per_s: window.2,
            bytes_per_s_total: total.2,
            end: end.into(),
        }
    }
}

/// The agent's side of a granted sink: counts what arrives until the sender closes or a cap
/// is reached, then writes the report line. After a cap it reads on for up to `drain`
/// seconds, uncounted, so that the sender sees the report rather than a connection reset.
pub(crate) fn serve_sink(
    reader: &mut BufReader<TcpStream>,
    grant: &SinkGrant,
    idle: Duration,
    stop: &AtomicUsize,
) -> io::Result<SinkReport> {
    let start = now();
    let drain = Duration::from_secs_f64(grant.drain);
    let deadline = start + Duration::from_secs_f64(grant.seconds) + drain;
    let mut window = RateWindow::new(Duration::from_secs_f64(grant.warmup));
    let mut buf = vec![0u8; CHUNK];
    let mut last_data = start;
    let end = loop {
        let t = now();
        if stop.load(Ordering::Relaxed) != 0 {
            break "stopped";
        }
        if t >= deadline {
            break "seconds";
        }
        let room = grant.max_bytes.saturating_sub(window.bytes());
        if room == 0 {
            break "bytes";
        }
        if t.saturating_sub(last_data) >= idle {
            break "idle";
        }
        reader
            .get_ref()
            .set_read_timeout(timeout_at_least(deadline.saturating_sub(t).min(TICK)))?;
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        match reader.read(&mut buf[..want]) {
            Ok(0) => break "eof",
            Ok(n) => {
                last_data = now();
                window.record(last_data, n as u64);
            }
            Err(e) if super::is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    };
    let report = window.report(end);
    let reply = Reply {
        ok: true,
        received: Some(report.clone()),
        ..Reply::default()
    };
    wire::write_line(reader.get_mut(), &reply)?;
    if end != "eof" {
        let _ = reader.get_ref().shutdown(Shutdown::Write);
        let until = now() + drain;
        while now() < until {
            reader.get_ref().set_read_timeout(Some(TICK))?;
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if super::is_timeout(&e) => {}
                Err(_) => break,
            }
        }
    }
    Ok(report)
}

/// A bandwidth measurement from one place to a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthResult {
    /// The sink, as given.
    pub target: String,
    /// Seconds asked for.
    pub seconds_requested: f64,
    /// Seconds the sink granted (its cap).
    pub seconds_granted: f64,
    /// Bytes the sender handed to its kernel (more than arrived: see the module's notes).
    pub bytes_sent: u64,
    /// What the sink counted, and the rate.
    pub received: SinkReport,
}

impl BandwidthResult {
    /// The measured rate (receiver side, warm-up excluded), bytes/s.
    pub fn bytes_per_s(&self) -> Option<f64> {
        self.received.bytes_per_s
    }
}

/// Measures the bandwidth from here to the agent at `target` (HOST:PORT): a bulk TCP
/// transfer to its sink for `config.seconds`.
pub fn measure_bandwidth(
    target: &str,
    config: &BandwidthConfig,
) -> Result<BandwidthResult, ProbeError> {
    send(target, config, &AtomicUsize::new(0))
}

/// Pseudo-random bytes to send, so a compressing link (a VPN) cannot inflate the rate.
fn payload() -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..CHUNK)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// Whether data (or an end) is waiting to be read on `stream`, without waiting.
fn readable(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && fds.revents != 0
}

/// Sets `TCP_NOTSENT_LOWAT`; failure (an old kernel) only lets the drain take longer.
fn set_notsent_lowat(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the stated length.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&NOTSENT_LOWAT as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// [`measure_bandwidth`], ending early when `stop` becomes non-zero.
pub(crate) fn send(
    target: &str,
    config: &BandwidthConfig,
    stop: &AtomicUsize,
) -> Result<BandwidthResult, ProbeError> {
    let io = |source: io::Error| ProbeError::Io {
        addr: target.into(),
        source,
    };
    let stream = wire::connect(target, config.timeout)?;
    set_notsent_lowat(&stream);
    let request = Request::Sink {
        seconds: config.seconds.as_secs_f64(),
        warmup: config.warmup.map(|w| w.as_secs_f64()),
    };
    let mut reader = BufReader::new(stream);
    wire::write_line(reader.get_mut(), &request).map_err(io)?;
    let grant = wire::read_reply(&mut reader, target, config.timeout, "sink grant")?
        .sink
        .ok_or_else(|| ProbeError::Protocol {
            addr: target.into(),
            message: "the sink's reply has no grant".into(),
        })?;
    let data = payload();
    let mut sent = 0u64;
    let end = now() + Duration::from_secs_f64(grant.seconds);
    let stream = reader.get_mut();
    stream.set_write_timeout(Some(TICK)).map_err(io)?;
    let mut offset = 0;
    while now() < end && stop.load(Ordering::Relaxed) == 0 {
        // The sink reports early only when it stops counting (a cap): stop sending.
        if readable(stream) {
            break;
        }
        match stream.write(&data[offset..]) {
            Ok(n) => {
                sent += n as u64;
                offset = (offset + n) % data.len();
            }
            Err(e) if super::is_timeout(&e) => {}
            // The sink closed: its report, if it sent one, is read below.
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let wait = Duration::from_secs_f64(grant.drain) + config.timeout;
    let report = match wire::read_line(&mut reader, MAX_REPLY, now() + wait, None) {
        Ok(line) => {
            wire::parse_reply(&line, target)?
                .received
                .ok_or_else(|| ProbeError::Protocol {
                    addr: target.into(),
                    message: "the sink's report has no byte count".into(),
                })?
        }
        Err(LineError::Timeout) => {
            return Err(ProbeError::Timeout {
                addr: target.into(),
                what: "sink report",
                seconds: wait.as_secs_f64(),
            });
        }
        Err(e) => return Err(e.into_probe(target, "sink report")),
    };
    Ok(BandwidthResult {
        target: target.into(),
        seconds_requested: config.seconds.as_secs_f64(),
        seconds_granted: grant.seconds,
        bytes_sent: sent,
        received: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn the_window_starts_after_the_warmup_and_counts_what_arrived_in_it() {
        // Slow start: 1 kB per 100 ms for 0.5 s, then 10 kB per 100 ms until 2.0 s.
        let mut w = RateWindow::new(ms(500));
        for i in 1..=5 {
            w.record(ms(100 * i), 1000);
        }
        for i in 6..=20 {
            w.record(ms(100 * i), 10_000);
        }
        let r = w.report("eof");
        assert_eq!(r.bytes, 155_000);
        // Window from the read at 0.6 s (the first ≥ 0.1 + 0.5) to 2.0 s: 14 reads.
        assert_eq!(r.window_bytes, 140_000);
        assert!((r.window_seconds - 1.4).abs() < 1e-12);
        assert!((r.bytes_per_s.expect("rate") - 100_000.0).abs() < 1e-6);
        // Whole transfer: bytes after the first read over 0.1 → 2.0 s.
        let total = r.bytes_per_s_total.expect("total");
        assert!((total - 154_000.0 / 1.9).abs() < 1e-6, "{total}");
        assert_eq!(r.warmup, 0.5);
        assert_eq!(r.end, "eof");
    }

    #[test]
    fn a_transfer_too_short_for_its_warmup_falls_back_to_the_whole() {
        let mut w = RateWindow::new(ms(1000));
        for i in 1..=10 {
            w.record(ms(10 * i), 500);
        }
        let r = w.report("eof");
        assert_eq!(r.warmup, 0.0);
        assert_eq!(r.window_bytes, 4500);
        assert_eq!(r.bytes_per_s, r.bytes_per_s_total);
        let one = {
            let mut w = RateWindow::new(ms(0));
            w.record(ms(5), 100);
            w.report("eof")
        };
        assert_eq!(one.bytes_per_s, None, "one read has no duration");
        assert_eq!(RateWindow::new(ms(0)).report("idle").bytes, 0);
    }
}
