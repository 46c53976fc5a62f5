//! A testbed for network measurements: hosts in network namespaces joined in a star through a
//! delaying relay, each host's link with a known rate (tc tbf) and a known one-way delay.
//!
//! ```text
//!   host 0 (eth0, 10.214.X.1) ──veth── p0 ┐
//!   host 1 (eth0, 10.214.X.2) ──veth── p1 ┼ relay in the middle namespace
//!   host 2 (eth0, 10.214.X.3) ──veth── p2 ┘
//! ```
//!
//! **Delay.** This kernel has no `netem`, so the relay of `examples/delay_relay.rs` (a
//! learning switch that holds each frame) provides it. Link i has a one-way delay ℓᵢ; a frame
//! from host i to host j is held ℓᵢ + ℓⱼ, so the round trip between them is 2(ℓᵢ + ℓⱼ) plus
//! the hosts' and the relay's own time (a few hundred µs here). [`Testbed::new`] gives every
//! link ℓ = D/2: every pair is D apart one way, 2D round trip.
//!
//! **Rate.** Each link is shaped in both directions at its rate rᵢ: a tbf on the host's
//! `eth0` (what host i sends) and one on the relay's port `pᵢ` (what host i receives), so a
//! transfer from i to j runs at min(rᵢ, rⱼ). tbf counts whole Ethernet frames (14-byte header,
//! no preamble or FCS): TCP over a 1500-byte MTU carries at most 1448/1514 = 95.6% of the rate
//! as payload. The parameters are in [`Tbf`].
//!
//! **Offloads.** Both ends of every veth have `tx`, `tso`, `gso` and `gro` off (ethtool): the
//! relay forwards frames verbatim, so the senders must fill in their checksums, and a frame
//! aggregated by GRO or left whole by TSO/GSO is bigger than the MTU and cannot be sent out
//! again (the relay counts such frames as `oversize`). IPv6 address generation is off, so
//! the links carry only what the test sends (and ARP).
//!
//! **Why the relay runs on threads of the test process**, not as a program under
//! `ip netns exec`: a thread that enters the middle namespace with `setns` opens the relay's
//! sockets there; the sockets stay in that namespace whichever thread then uses them. The test
//! binary then needs no other binary (cargo builds examples for `cargo test` but not for
//! `cargo test --test tests`, where a stale or missing relay would be used silently), a killed
//! test process takes its relay with it, and the counters are read directly. The example
//! binary runs the same code standalone. [`Host::run`] uses the same mechanism to open
//! sockets of the test process inside a host.
//!
//! **Isolation.** Every interface and address lives inside the testbed's own namespaces (the
//! veths are created in the middle namespace with their peers moved straight into the hosts),
//! so nothing in the machine's namespace changes and the addresses cannot clash with it. The
//! names carry the process id and a counter, so tests in parallel do not collide, and
//! namespaces left by a killed test process are removed by the next testbed. Dropping a
//! [`Testbed`], also while unwinding from a panic, stops the relay, kills every process still
//! in its namespaces and deletes them.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::{Guard, require, require_root};

#[path = "../examples/delay_relay.rs"]
#[allow(dead_code)]
mod delay_relay;

pub use delay_relay::{
    Config as RelayConfig, Port as RelayPort, Relay, Stats as RelayStats, parse_port,
};

/// The prefix of every namespace a testbed creates (followed by the process id).
pub const PREFIX: &str = "vmmontb-";

/// The interface of each host, and the largest frame on it.
pub const HOST_DEV: &str = "eth0";
const MAX_FRAME: u64 = 1514;

/// The kernel's timer frequency assumed by tc-tbf(8)'s rule burst ≥ rate/HZ (250 here; 100 is
/// the worst case, but tbf's watchdog is a high-resolution timer, so 250 is already generous).
const HZ: u64 = 250;

/// One host's link to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The rate in bit/s, each way (Ethernet frames, header included).
    pub rate_bit_s: u64,
    /// The one-way delay of this link alone; host i to host j is `delay_i + delay_j`.
    pub delay: Duration,
}

/// The tbf parameters of a link (the same in both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// The rate in bit/s.
    pub rate_bit_s: u64,
    /// The bucket: bytes that may leave back to back after an idle period. rate/HZ (4 ms of
    /// the rate, so a timer firing a tick late loses no tokens) and at least two full frames.
    /// A packet train shorter than this sees the veth's speed, not the rate: bandwidth probes
    /// must send well over this.
    pub burst_bytes: u64,
    /// The queue in bytes: one bandwidth-delay product at the testbed's largest round trip,
    /// plus 10 ms, and at least 16 full frames. A TCP flow whose bottleneck this is keeps the
    /// link busy after halving its window (cubic needs 0.43 of the BDP); a larger queue would
    /// only add delay under load.
    pub limit_bytes: u64,
}

impl Tbf {
    fn new(rate_bit_s: u64, max_rtt: Duration) -> Tbf {
        let bytes_s = rate_bit_s / 8;
        let bdp = bytes_s as f64 * (max_rtt + Duration::from_millis(10)).as_secs_f64();
        Tbf {
            rate_bit_s,
            burst_bytes: (bytes_s / HZ).max(2 * MAX_FRAME),
            limit_bytes: (bdp.ceil() as u64).max(16 * MAX_FRAME),
        }
    }
}

/// One host of a testbed: a network namespace with `eth0` on the shared /24.
#[derive(Debug, Clone)]
pub struct Host {
    ns: String,
    addr: Ipv4Addr,
}

impl Host {
    /// The network namespace's name (for `ip netns exec` and `ip -n`).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The host's IPv4 address on `eth0` (a /24 shared by the testbed's hosts).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// `ip netns exec NS program`: add arguments and stdio, then run or spawn it.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs `f` on a thread inside this host's namespace: sockets it opens belong to the host
    /// (and stay there when used from other threads). Panics if the namespace cannot be entered.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_netns(&self.ns, f).unwrap_or_else(|e| panic!("cannot enter {}: {e:#}", self.ns))
    }
}

/// Runs `f` on a new thread that has joined the network namespace `ns` (threads have their own
/// network namespace; the caller's is untouched).
fn in_netns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("network namespace {ns}"))?;
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            // SAFETY: setns on a descriptor we own; it changes only this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns");
            }
            Ok(f())
        });
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Hosts in network namespaces joined through a delaying relay; see the module's comment.
pub struct Testbed {
    hosts: Vec<Host>,
    links: Vec<Link>,
    tbf: Vec<Tbf>,
    mid: String,
    /// Every namespace created so far, for Drop (also of a half-built testbed).
    created: Vec<String>,
    relay: Option<Relay>,
}

impl Testbed {
    /// Whether this machine can build a testbed: root, `ip`, `tc` and `ethtool`. Prints the
    /// reason and returns false where not (fails under `VMMON_REQUIRE_EXTERNAL=1`).
    pub fn available() -> bool {
        require_root("creates network namespaces")
            && require(
                "ip",
                "creates the testbed's namespaces and veths (Debian: iproute2)",
            )
            && require(
                "tc",
                "shapes the testbed's links with tbf (Debian: iproute2)",
            )
            && require(
                "ethtool",
                "turns checksum offload, TSO, GSO and GRO off on the testbed's veths",
            )
    }

    /// `hosts` hosts, every link at `rate_bit_s` both ways, every pair `delay` apart one way
    /// (each link half of it).
    pub fn new(hosts: usize, rate_bit_s: u64, delay: Duration) -> anyhow::Result<Testbed> {
        let link = Link {
            rate_bit_s,
            delay: delay / 2,
        };
        Testbed::with_links(&vec![link; hosts])
    }

    /// One host per link, each link with its own rate and delay.
    pub fn with_links(links: &[Link]) -> anyhow::Result<Testbed> {
        Testbed::with_relay(links, |_| {})
    }

    /// As [`Testbed::with_links`], with the relay's configuration changed by `tune` (its
    /// queue, say) before it starts.
    pub fn with_relay(
        links: &[Link],
        tune: impl FnOnce(&mut RelayConfig) + Send,
    ) -> anyhow::Result<Testbed> {
        if links.len() < 2 {
            bail!("a testbed needs at least two hosts, not {}", links.len());
        }
        if links.len() > 250 {
            bail!(
                "a testbed has at most 250 hosts (one /24), not {}",
                links.len()
            );
        }
        if let Some(l) = links.iter().find(|l| l.rate_bit_s < 8_000) {
            bail!("link rate {} bit/s: give at least 8000", l.rate_bit_s);
        }
        reap_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("{PREFIX}{pid}-{k}");
        // Any /24 would do (nothing outside the namespaces sees it); varying it per testbed
        // keeps captures of different testbeds apart.
        let subnet = [10, 214, ((pid.wrapping_mul(7)).wrapping_add(k) % 256) as u8];
        let mut sorted: Vec<Duration> = links.iter().map(|l| l.delay).collect();
        sorted.sort_unstable();
        let max_rtt = 2 * (sorted[sorted.len() - 1] + sorted[sorted.len() - 2]);
        let mut tb = Testbed {
            hosts: Vec::new(),
            links: links.to_vec(),
            tbf: links
                .iter()
                .map(|l| Tbf::new(l.rate_bit_s, max_rtt))
                .collect(),
            mid: format!("{prefix}-mid"),
            created: Vec::new(),
            relay: None,
        };
        let mid = tb.mid.clone();
        tb.add_ns(&mid)?;
        for i in 0..links.len() {
            let host = Host {
                ns: format!("{prefix}-h{i}"),
                addr: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], (i + 1) as u8),
            };
            tb.add_ns(&host.ns)?;
            tb.hosts.push(host);
        }
        for i in 0..links.len() {
            tb.wire(i)?;
        }
        let ports = (0..links.len())
            .map(|i| RelayPort {
                name: port_name(i),
                delay: links[i].delay,
            })
            .collect();
        let mut config = RelayConfig::new(ports);
        tune(&mut config);
        let relay = in_netns(&mid, || Relay::start(config))?
            .with_context(|| format!("starting the relay in {mid}"))?;
        tb.relay = Some(relay);
        Ok(tb)
    }

    fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The veth of host i, its addresses, offloads and shaping.
    fn wire(&self, i: usize) -> anyhow::Result<()> {
        let host = &self.hosts[i].ns;
        let port = port_name(i);
        let mid = self.mid.as_str();
        // Created in the middle with the peer put straight into the host: no interface ever
        // appears in the machine's own namespace.
        ip(&[
            "-n", mid, "link", "add", &port, "type", "veth", "peer", "name", HOST_DEV, "netns",
            host,
        ])?;
        for (ns, dev) in [(mid, port.as_str()), (host.as_str(), HOST_DEV)] {
            // No IPv6 link-local address: no DAD or router solicitations on the links.
            ip(&["-n", ns, "link", "set", dev, "addrgenmode", "none"])?;
            in_ns(
                ns,
                "ethtool",
                &[
                    "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                ],
            )?;
            let t = self.tbf[i];
            in_ns(
                ns,
                "tc",
                &[
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    &format!("{}bit", t.rate_bit_s),
                    "burst",
                    &t.burst_bytes.to_string(),
                    "limit",
                    &t.limit_bytes.to_string(),
                ],
            )?;
        }
        let cidr = format!("{}/24", self.hosts[i].addr);
        ip(&["-n", host, "addr", "add", &cidr, "dev", HOST_DEV])?;
        ip(&["-n", host, "link", "set", HOST_DEV, "up"])?;
        ip(&["-n", mid, "link", "set", &port, "up"])?;
        Ok(())
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// All hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The links, host by host.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The tbf parameters of host i's link.
    pub fn tbf(&self, i: usize) -> Tbf {
        self.tbf[i]
    }

    /// The one-way delay the relay imposes from host i to host j.
    pub fn one_way(&self, i: usize, j: usize) -> Duration {
        self.links[i].delay + self.links[j].delay
    }

    /// The round trip the relay imposes between hosts i and j (a lower bound of any
    /// measurement; the hosts and the relay add a few hundred µs).
    pub fn rtt(&self, i: usize, j: usize) -> Duration {
        2 * self.one_way(i, j)
    }

    /// The rate in bit/s of Ethernet frames from host i to host j: min of both links.
    pub fn rate(&self, i: usize, j: usize) -> u64 {
        self.links[i].rate_bit_s.min(self.links[j].rate_bit_s)
    }

    /// The namespace of the relay.
    pub fn mid(&self) -> &str {
        &self.mid
    }

    /// The names of every namespace of this testbed.
    pub fn namespaces(&self) -> Vec<String> {
        self.created.clone()
    }

    /// The relay's counters so far (frames held, dropped, how late the sends were).
    pub fn relay_stats(&self) -> RelayStats {
        self.relay.as_ref().map(Relay::stats).unwrap_or_default()
    }

    /// Spawns `program args…` inside host i (stdin null, stdout and stderr piped: see
    /// [`wait_for`]). The testbed kills it on drop if the guard has not.
    pub fn spawn_in<I, S>(&self, i: usize, program: impl AsRef<OsStr>, args: I) -> Guard
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Guard::spawn(
            self.hosts[i]
                .exec(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Some(r) = self.relay.take() {
            r.stop();
        }
        for ns in self.created.iter().rev() {
            remove_ns(ns);
        }
    }
}

/// Kills what still runs in `ns` and deletes it (its veth ends go with it, and their peers).
fn remove_ns(ns: &str) {
    let me = std::process::id();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|&p| p != me)
        {
            // SAFETY: kill has no memory-safety preconditions; the process is in our namespace.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Deletes namespaces of testbeds whose process is gone (a test killed before its Drop ran),
/// once per process.
fn reap_stale() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove_ns(&name);
            }
        }
    });
}

/// The relay's port for host i.
fn port_name(i: usize) -> String {
    format!("p{i}")
}

/// Runs a command to completion; an error carries the command line and its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS…`.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

/// `ip netns exec NS PROGRAM ARGS…`.
fn in_ns(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args))
}

/// Reads `stream` line by line until one contains `needle` and returns it; the rest of the
/// stream is drained in the background so the writer never blocks. An error after `timeout`
/// or at end of stream quotes what was read.
pub fn wait_for(
    stream: impl Read + Send + 'static,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // The receiver may be gone: keep draining regardless.
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("no line with {needle:?} within {timeout:?}; read: {seen:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("stream ended without a line with {needle:?}; read: {seen:?}")
            }
        }
    }
}

/// The namespaces that `ip netns list` shows with `prefix`.
pub fn listed_namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
