//! The agent (`vmmon probe serve`): UDP echo and TCP requests on one port number, bounded.
//!
//! One thread answers the echo, so that round trips never wait behind TCP work; one thread
//! accepts connections and each connection gets a thread of its own, up to
//! [`Limits::max_connections`]. Every request is bounded in size, time and bytes, one bulk
//! test (sink or send) runs at a time, and whatever is not a request is dropped and counted.

use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bulk::{self, BandwidthConfig, SinkGrant};
use super::echo::{self, LatencyConfig, Malformed};
use super::wire::{self, Hello, LineError, Reply, Request};
use super::{PROTOCOL_VERSION, now};

/// The bounds an agent enforces on every request (times in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
// An agent of a later version may announce more or fewer limits: take what is there.
#[serde(default)]
pub struct Limits {
    /// Longest bulk transfer or latency run; longer requests are cut to this.
    pub max_seconds: f64,
    /// Most bytes one sink reads.
    pub max_bytes: u64,
    /// Most probes in one latency run.
    pub max_count: u32,
    /// Shortest interval between probes.
    pub min_interval: f64,
    /// Longest wait for one probe's reply, and for a target to accept a connection.
    pub max_timeout: f64,
    /// Connections served at once; more are refused as busy.
    pub max_connections: usize,
    /// Time allowed for a client to send its request line.
    pub request_timeout: f64,
    /// Longest request line, bytes.
    pub max_request: usize,
    /// Time a sink waits after the granted time for data still in flight.
    pub drain: f64,
    /// A sink that receives nothing for this long ends.
    pub idle: f64,
}

impl Limits {
    /// The default drain, also what a client allows for it.
    pub const DRAIN: f64 = 2.0;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Minutes of bulk traffic would disturb whatever else the network carries, and a
            // steady-state rate needs seconds, not minutes.
            max_seconds: 60.0,
            // 32 GiB: 4.6 Gbit/s for 60 s. A faster link ends its test early, after plenty of
            // steady state; the cap bounds the volume one request can pull through a network.
            max_bytes: 32 << 30,
            max_count: 10_000,
            // 1000 probes/s of 32 bytes at most: 32 kB/s, nothing a link notices.
            min_interval: 0.001,
            max_timeout: 10.0,
            max_connections: 64,
            request_timeout: 5.0,
            max_request: 4096,
            drain: Limits::DRAIN,
            idle: 5.0,
        }
    }
}

/// What the agent saw, for the summary at exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    /// Echo datagrams received.
    pub udp_received: u64,
    /// Echo requests answered.
    pub udp_echoed: u64,
    /// Datagrams dropped: shorter than an echo packet.
    pub udp_short: u64,
    /// Datagrams dropped: longer than an echo packet.
    pub udp_oversized: u64,
    /// Datagrams dropped: the right size but not an echo request.
    pub udp_malformed: u64,
    /// Echo replies the network refused to send.
    pub udp_send_errors: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Connections refused because [`Limits::max_connections`] were being served.
    pub connections_refused: u64,
    /// `hello` requests.
    pub hello: u64,
    /// `sink` requests granted.
    pub sink: u64,
    /// `latency` requests run.
    pub latency: u64,
    /// `bandwidth` requests run.
    pub bandwidth: u64,
    /// Bulk requests refused because another was running.
    pub busy: u64,
    /// Requests dropped: not JSON, unknown, invalid values, or cut off.
    pub malformed: u64,
    /// Requests dropped: longer than [`Limits::max_request`].
    pub too_long: u64,
    /// Connections dropped: no request line within [`Limits::request_timeout`].
    pub timed_out: u64,
    /// Connections closed without a byte (port checks).
    pub empty: u64,
    /// Sinks ended by a cap (seconds or bytes) rather than by the sender.
    pub capped: u64,
    /// Measurements that failed (target unreachable, connection lost).
    pub failed: u64,
}

impl AgentStats {
    /// UDP datagrams dropped for any reason.
    pub fn udp_dropped(&self) -> u64 {
        self.udp_short + self.udp_oversized + self.udp_malformed
    }

    /// TCP requests dropped for any reason.
    pub fn tcp_dropped(&self) -> u64 {
        self.malformed + self.too_long + self.timed_out
    }
}

impl std::fmt::Display for AgentStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "udp: received {}, echoed {}, dropped {} (short {}, oversized {}, malformed {}), \
             send errors {}; tcp: connections {} (refused {}), requests: hello {}, sink {}, \
             latency {}, bandwidth {}; busy {}; dropped {} (bad requests {}, too long {}, \
             timed out {}), empty {}; capped {}; failed {}",
            self.udp_received,
            self.udp_echoed,
            self.udp_dropped(),
            self.udp_short,
            self.udp_oversized,
            self.udp_malformed,
            self.udp_send_errors,
            self.connections,
            self.connections_refused,
            self.hello,
            self.sink,
            self.latency,
            self.bandwidth,
            self.busy,
            self.tcp_dropped(),
            self.malformed,
            self.too_long,
            self.timed_out,
            self.empty,
            self.capped,
            self.failed
        )
    }
}

/// The counters, shared by the agent's threads.
#[derive(Debug, Default)]
struct Counters([AtomicU64; 19]);

/// Index of each counter in [`Counters`], in [`AgentStats`]' order.
#[derive(Debug, Clone, Copy)]
enum C {
    UdpReceived,
    UdpEchoed,
    UdpShort,
    UdpOversized,
    UdpMalformed,
    UdpSendErrors,
    Connections,
    ConnectionsRefused,
    Hello,
    Sink,
    Latency,
    Bandwidth,
    Busy,
    Malformed,
    TooLong,
    TimedOut,
    Empty,
    Capped,
    Failed,
}

impl Counters {
    fn add(&self, c: C) {
        self.0[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> AgentStats {
        let g = |c: C| self.0[c as usize].load(Ordering::Relaxed);
        AgentStats {
            udp_received: g(C::UdpReceived),
            udp_echoed: g(C::UdpEchoed),
            udp_short: g(C::UdpShort),
            udp_oversized: g(C::UdpOversized),
            udp_malformed: g(C::UdpMalformed),
            udp_send_errors: g(C::UdpSendErrors),
            connections: g(C::Connections),
            connections_refused: g(C::ConnectionsRefused),
            hello: g(C::Hello),
            sink: g(C::Sink),
            latency: g(C::Latency),
            bandwidth: g(C::Bandwidth),
            busy: g(C::Busy),
            malformed: g(C::Malformed),
            too_long: g(C::TooLong),
            timed_out: g(C::TimedOut),
            empty: g(C::Empty),
            capped: g(C::Capped),
            failed: g(C::Failed),
        }
    }
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Not IP:PORT.
    #[error("--listen {0}: give IP:PORT, e.g. 127.0.0.1:{port}", port = super::DEFAULT_PORT)]
    Address(String),
    /// The TCP port could not be bound.
    #[error("cannot listen on {addr} (TCP)")]
    Tcp {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The UDP port could not be bound.
    #[error("cannot listen on {addr} (UDP)")]
    Udp {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
}

/// A bound agent: a TCP listener and a UDP socket on the same port number.
#[derive(Debug)]
pub struct Agent {
    tcp: TcpListener,
    udp: UdpSocket,
    limits: Limits,
    counters: Counters,
    bulk: AtomicBool,
    active: AtomicUsize,
}

/// How long the echo and accept loops wait before looking at the stop flag again.
const POLL: Duration = Duration::from_millis(100);

/// Holds the agent's one bulk slot; frees it when dropped.
struct BulkSlot<'a>(&'a AtomicBool);

impl Drop for BulkSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Holds a connection's place in the count; frees it when dropped.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Agent {
    /// Binds TCP and UDP on `addr` (IP:PORT; port 0 picks one that is free for both).
    pub fn bind(addr: &str, limits: Limits) -> Result<Agent, BindError> {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| BindError::Address(addr.into()))?;
        let tcp_err = |source| BindError::Tcp {
            addr: addr.into(),
            source,
        };
        let udp_err = |source| BindError::Udp {
            addr: addr.into(),
            source,
        };
        let (tcp, udp) = if sock.port() != 0 {
            let tcp = TcpListener::bind(sock).map_err(tcp_err)?;
            (tcp, UdpSocket::bind(sock).map_err(udp_err)?)
        } else {
            // The kernel picks a free TCP port; its UDP twin is usually free too.
            let mut tries = 0;
            loop {
                let tcp = TcpListener::bind(sock).map_err(tcp_err)?;
                let mut twin = sock;
                twin.set_port(tcp.local_addr().map_err(tcp_err)?.port());
                match UdpSocket::bind(twin) {
                    Ok(udp) => break (tcp, udp),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => tries += 1,
                    Err(e) => return Err(udp_err(e)),
                }
            }
        };
        udp.set_read_timeout(Some(POLL)).map_err(udp_err)?;
        crate::clock::serve::set_receive_buffer(&udp, 1 << 20);
        Ok(Agent {
            tcp,
            udp,
            limits,
            counters: Counters::default(),
            bulk: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        })
    }

    /// The address bound (TCP and UDP share its port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters so far.
    pub fn stats(&self) -> AgentStats {
        self.counters.snapshot()
    }

    /// Serves until `stop` becomes non-zero, then waits for the requests in progress (each
    /// looks at `stop` at least every 250 ms) and returns the counters.
    pub fn run(&self, stop: &AtomicUsize) -> io::Result<AgentStats> {
        let echo = std::thread::scope(|s| {
            let echo = s.spawn(|| self.echo(stop));
            self.accept(s, stop);
            // A panic in the echo thread is a bug; report it as an error, not a crash.
            echo.join()
                .unwrap_or_else(|_| Err(io::Error::other("the echo thread panicked")))
        });
        echo.map(|()| self.stats())
    }

    /// The echo loop.
    fn echo(&self, stop: &AtomicUsize) -> io::Result<()> {
        // Large enough for any datagram, so an oversized one is seen whole and counted.
        let mut buf = vec![0u8; 65_536];
        while stop.load(Ordering::Relaxed) == 0 {
            let (len, from) = match self.udp.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if super::is_timeout(&e) => continue,
                // An ICMP error about an earlier reply's destination: not ours to stop for.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            self.counters.add(C::UdpReceived);
            match echo::answer(&buf[..len]) {
                Ok(reply) => {
                    if self.udp.send_to(&reply, from).is_ok() {
                        self.counters.add(C::UdpEchoed);
                    } else {
                        self.counters.add(C::UdpSendErrors);
                    }
                }
                Err(Malformed::Short) => self.counters.add(C::UdpShort),
                Err(Malformed::Oversized) => self.counters.add(C::UdpOversized),
                Err(Malformed::Invalid) => self.counters.add(C::UdpMalformed),
            }
        }
        Ok(())
    }

    /// The accept loop: a thread per connection, up to the limit.
    fn accept<'s>(&'s self, s: &'s std::thread::Scope<'s, '_>, stop: &'s AtomicUsize) {
        while stop.load(Ordering::Relaxed) == 0 {
            if !wait_readable(&self.tcp, POLL) {
                continue;
            }
            let stream = match self.tcp.accept() {
                Ok((stream, _)) => stream,
                // Out of descriptors, or a connection reset before we took it: wait, go on.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            self.counters.add(C::Connections);
            if self.active.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
                self.active.fetch_sub(1, Ordering::AcqRel);
                self.counters.add(C::ConnectionsRefused);
                let mut stream = stream;
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = wire::write_line(
                    &mut stream,
                    &Reply::refuse(
                        "busy",
                        format!(
                            "too many connections ({} being served)",
                            self.limits.max_connections
                        ),
                    ),
                );
                continue;
            }
            s.spawn(move || {
                let _active = Active(&self.active);
                self.serve(stream, stop);
            });
        }
    }

    /// Takes the bulk slot if it is free.
    fn try_bulk(&self) -> Option<BulkSlot<'_>> {
        self.bulk
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| BulkSlot(&self.bulk))
    }

    /// One connection: read the request line, answer it.
    fn serve(&self, stream: TcpStream, stop: &AtomicUsize) {
        let _ = stream.set_nodelay(true);
        // A client that does not read its reply must not hold the thread.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(stream);
        let deadline = now() + secs(self.limits.request_timeout);
        let refusal =
            match wire::read_line(&mut reader, self.limits.max_request, deadline, Some(stop)) {
                Ok(line) => match serde_json::from_slice::<Request>(&line) {
                    Ok(request) => match self.dispatch(request, &mut reader, stop) {
                        Some(reply) => reply,
                        None => return,
                    },
                    Err(e) => {
                        self.counters.add(C::Malformed);
                        Reply::refuse("malformed", format!("malformed request: {e}"))
                    }
                },
                Err(LineError::Eof) => {
                    self.counters.add(C::Empty);
                    return;
                }
                Err(LineError::Incomplete) => {
                    self.counters.add(C::Malformed);
                    return;
                }
                Err(LineError::TooLong) => {
                    self.counters.add(C::TooLong);
                    Reply::refuse(
                        "too_long",
                        format!("request line longer than {} bytes", self.limits.max_request),
                    )
                }
                Err(LineError::Timeout) => {
                    self.counters.add(C::TimedOut);
                    Reply::refuse(
                        "timeout",
                        format!(
                            "no complete request line within {} s",
                            self.limits.request_timeout
                        ),
                    )
                }
                Err(LineError::Stopped | LineError::Io(_)) => return,
            };
        let _ = wire::write_line(reader.get_mut(), &refusal);
    }

    /// Runs one request; the reply to write, or `None` if it was written already.
    fn dispatch(
        &self,
        request: Request,
        reader: &mut BufReader<TcpStream>,
        stop: &AtomicUsize,
    ) -> Option<Reply> {
        let l = &self.limits;
        let malformed = |what: String| {
            self.counters.add(C::Malformed);
            Some(Reply::refuse(
                "malformed",
                format!("malformed request: {what}"),
            ))
        };
        let busy = || {
            self.counters.add(C::Busy);
            Some(Reply::refuse(
                "busy",
                "a bandwidth test is already running on this agent; bulk tests run one at a time",
            ))
        };
        match request {
            Request::Hello => {
                self.counters.add(C::Hello);
                Some(Reply {
                    ok: true,
                    hello: Some(Hello {
                        agent: format!("vmmon {}", env!("CARGO_PKG_VERSION")),
                        protocol: PROTOCOL_VERSION,
                        limits: *l,
                    }),
                    ..Reply::default()
                })
            }
            Request::Sink { seconds, warmup } => {
                let (seconds, warmup) = match bulk_times(seconds, warmup, l) {
                    Ok(t) => t,
                    Err(e) => return malformed(e),
                };
                let Some(_slot) = self.try_bulk() else {
                    return busy();
                };
                self.counters.add(C::Sink);
                let grant = SinkGrant {
                    seconds,
                    warmup,
                    max_bytes: l.max_bytes,
                    drain: l.drain,
                };
                let granted = Reply {
                    ok: true,
                    sink: Some(grant),
                    ..Reply::default()
                };
                if wire::write_line(reader.get_mut(), &granted).is_err() {
                    return None;
                }
                match bulk::serve_sink(reader, &grant, secs(l.idle), stop) {
                    Ok(r) if r.end == "seconds" || r.end == "bytes" => self.counters.add(C::Capped),
                    Ok(_) => {}
                    Err(_) => self.counters.add(C::Failed),
                }
                None
            }
            Request::Latency {
                target,
                count,
                interval,
                timeout,
            } => {
                if count == 0 {
                    return malformed("count must be at least 1".into());
                }
                if !(interval.is_finite() && interval >= 0.0) {
                    return malformed(format!("interval {interval}: give seconds ≥ 0"));
                }
                if !(timeout.is_finite() && timeout > 0.0) {
                    return malformed(format!("timeout {timeout}: give seconds > 0"));
                }
                let interval = interval.max(l.min_interval);
                // Cut the run to the agent's longest, in probes.
                let fit = (l.max_seconds / interval).floor() as u32 + 1;
                let config = LatencyConfig {
                    count: count.min(l.max_count).min(fit),
                    interval: secs(interval),
                    timeout: secs(timeout.min(l.max_timeout)),
                };
                self.counters.add(C::Latency);
                Some(match echo::measure(&target, &config, stop) {
                    Ok(r) => Reply {
                        ok: true,
                        latency: Some(r),
                        ..Reply::default()
                    },
                    Err(e) => {
                        self.counters.add(C::Failed);
                        Reply::refuse("failed", format!("latency: {e}"))
                    }
                })
            }
            Request::Bandwidth {
                target,
                seconds,
                warmup,
                timeout,
            } => {
                let (seconds, warmup) = match bulk_times(seconds, warmup, l) {
                    Ok(t) => t,
                    Err(e) => return malformed(e),
                };
                let timeout = timeout.unwrap_or(2.0);
                if !(timeout.is_finite() && timeout > 0.0) {
                    return malformed(format!("timeout {timeout}: give seconds > 0"));
                }
                let Some(_slot) = self.try_bulk() else {
                    return busy();
                };
                self.counters.add(C::Bandwidth);
                let config = BandwidthConfig {
                    seconds: secs(seconds),
                    warmup: Some(secs(warmup)),
                    timeout: secs(timeout.min(l.max_timeout)),
                };
                Some(match bulk::send(&target, &config, stop) {
                    Ok(r) => Reply {
                        ok: true,
                        bandwidth: Some(r),
                        ..Reply::default()
                    },
                    // `failed` even when the target is busy: `busy` would say that this agent is.
                    Err(e) => {
                        self.counters.add(C::Failed);
                        Reply::refuse("failed", format!("bandwidth: {e}"))
                    }
                })
            }
        }
    }
}

/// Checks a transfer's seconds and warm-up, cuts the seconds to the agent's cap, and fills
/// in the default warm-up.
fn bulk_times(seconds: f64, warmup: Option<f64>, l: &Limits) -> Result<(f64, f64), String> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("seconds {seconds}: give a duration > 0"));
    }
    let seconds = seconds.min(l.max_seconds);
    let warmup = match warmup {
        None => bulk::default_warmup(seconds),
        Some(w) if w.is_finite() && w >= 0.0 => w.min(seconds),
        Some(w) => return Err(format!("warmup {w}: give seconds ≥ 0")),
    };
    Ok((seconds, warmup))
}

/// Seconds as a duration; values were checked finite and non-negative.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Waits up to `timeout` for a connection to accept.
fn wait_readable(listener: &TcpListener, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    n > 0
}
