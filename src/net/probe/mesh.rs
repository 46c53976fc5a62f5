//! The orchestrator (`vmmon probe mesh`): every ordered pair of agents measured from its
//! source, latency of all pairs at once, bandwidth one pair at a time; tidy and matrix CSV.
//!
//! Latency runs in parallel because probes are tiny and sparse (32 bytes every 10 ms per
//! pair) and disturb nothing; bulk transfers would share links and CPUs, so each runs alone.
//! An agent that does not answer `hello` is left out: every pair it is part of is missing,
//! and the rest of the mesh is still measured.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::bulk::{BandwidthConfig, BandwidthResult};
use super::echo::{LatencyConfig, LatencyResult};
use super::{DEFAULT_PORT, ProbeError, hello, measure_bandwidth, measure_latency};
use super::{remote_bandwidth, remote_latency};
use crate::trace::{self, RowSink, TimeFormat};

/// An agent in the mesh: its name in the output and its HOST:PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Letters, digits, `_`, `.`, `-` (safe in CSV without quoting).
    pub name: String,
    /// HOST:PORT, as every agent and this machine reach it.
    pub addr: String,
}

impl Node {
    /// Parses `NAME=HOST[:PORT]` (port 12310 when left out; IPv6 as `::1`, `[::1]` or
    /// `[::1]:PORT`).
    pub fn parse(spec: &str) -> Result<Node, String> {
        let hint = format!("give NAME=HOST[:PORT], e.g. vm1=10.0.0.2:{DEFAULT_PORT}");
        let Some((name, addr)) = spec.split_once('=') else {
            return Err(format!("agent {spec:?}: no '=': {hint}"));
        };
        check_name(name).map_err(|e| format!("agent {spec:?}: {e}"))?;
        if addr.is_empty() || addr.contains(char::is_whitespace) {
            return Err(format!("agent {spec:?}: no address: {hint}"));
        }
        let addr = if addr.parse::<std::net::SocketAddr>().is_ok() {
            addr.to_string()
        } else if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
            // A bare IP, IPv6 included.
            std::net::SocketAddr::new(ip, DEFAULT_PORT).to_string()
        } else if let Some(Ok(ip)) = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .map(str::parse::<std::net::Ipv6Addr>)
        {
            // An IPv6 address in brackets, as it is written with a port, but without one.
            std::net::SocketAddr::new(ip.into(), DEFAULT_PORT).to_string()
        } else if addr.contains(['[', ']']) {
            // Brackets hold an IPv6 address only; no host name has them.
            return Err(format!("agent {spec:?}: bad address {addr:?}: {hint}"));
        } else {
            match addr.rsplit_once(':') {
                None => format!("{addr}:{DEFAULT_PORT}"),
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    addr.to_string()
                }
                Some(_) => return Err(format!("agent {spec:?}: bad address {addr:?}: {hint}")),
            }
        };
        Ok(Node {
            name: name.into(),
            addr,
        })
    }
}

/// Checks a node name: non-empty, at most 64 of `[A-Za-z0-9_.-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "name {name:?}: use up to 64 letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(())
}

/// One quantity of the output, with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Smallest round trip, s.
    RttMin,
    /// Median round trip (nearest rank), s.
    RttP50,
    /// 99th percentile round trip (nearest rank), s.
    RttP99,
    /// Share of probes lost, 0 to 1.
    Loss,
    /// Receiver-side rate after the warm-up, B/s.
    Bandwidth,
}

impl Metric {
    /// The name in the `metric` column.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RttMin => "rtt_min",
            Metric::RttP50 => "rtt_p50",
            Metric::RttP99 => "rtt_p99",
            Metric::Loss => "loss",
            Metric::Bandwidth => "bandwidth",
        }
    }

    /// The unit in the `unit` column.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RttMin | Metric::RttP50 | Metric::RttP99 => "s",
            Metric::Loss => "fraction",
            Metric::Bandwidth => "B/s",
        }
    }

    /// The value from a latency result, and the samples behind it.
    fn of_latency(self, r: &LatencyResult) -> (Option<f64>, u64) {
        let answered = u64::from(r.received);
        match self {
            Metric::RttMin => (r.rtt_min, answered),
            Metric::RttP50 => (r.rtt_p50, answered),
            Metric::RttP99 => (r.rtt_p99, answered),
            Metric::Loss => (Some(r.loss), u64::from(r.sent)),
            Metric::Bandwidth => (None, 0),
        }
    }

    /// The cell's text: seconds to the nanosecond, bytes/s to the byte.
    fn format(self, v: f64) -> String {
        match self {
            Metric::RttMin | Metric::RttP50 | Metric::RttP99 => format!("{v:.9}"),
            Metric::Loss => format!("{v}"),
            Metric::Bandwidth => format!("{v:.0}"),
        }
    }
}

/// The latency metrics, in output order.
pub const LATENCY_METRICS: [Metric; 4] =
    [Metric::RttMin, Metric::RttP50, Metric::RttP99, Metric::Loss];

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Round trips, or `None` to skip latency.
    pub latency: Option<LatencyConfig>,
    /// Bulk transfers, or `None` to skip bandwidth.
    pub bandwidth: Option<BandwidthConfig>,
    /// How long an agent may take to accept a connection and to reply, beyond the
    /// measurement's own length.
    pub timeout: Duration,
    /// Measure from this machine to each agent instead, naming it so in the output.
    pub from_here: Option<String>,
    /// Latency pairs measured at once, at most.
    pub parallel: usize,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            latency: Some(LatencyConfig::default()),
            bandwidth: Some(BandwidthConfig::default()),
            timeout: Duration::from_secs(2),
            from_here: None,
            parallel: 32,
        }
    }
}

/// One ordered pair's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell<T> {
    /// Source name (where the measurement ran).
    pub src: String,
    /// Destination name.
    pub dst: String,
    /// Wall clock (UTC, since the Unix epoch) when the measurement started.
    pub time: Duration,
    /// The result, or why there is none.
    pub result: Result<T, String>,
}

/// Where a mesh run is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Measurements finished.
    pub done: usize,
    /// Measurements in all.
    pub total: usize,
}

/// Everything a mesh run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshReport {
    /// Row names: where measurements ran from.
    pub sources: Vec<String>,
    /// Column names: what was measured to.
    pub destinations: Vec<String>,
    /// Agents that did not answer `hello`, with the reason.
    pub unreachable: Vec<(String, String)>,
    /// Latency of each ordered pair (when measured).
    pub latency: Vec<Cell<LatencyResult>>,
    /// Bandwidth of each ordered pair (when measured).
    pub bandwidth: Vec<Cell<BandwidthResult>>,
}

/// Measures the mesh of `nodes` (see [`MeshConfig`]); never fails as a whole: what cannot
/// be measured is a missing cell with its reason.
pub fn run(
    nodes: &[Node],
    config: &MeshConfig,
    progress: &(dyn Fn(Progress) + Sync),
) -> MeshReport {
    // Who answers? Asked all at once, so that dead agents cost one timeout, not one each.
    let hellos: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(move || hello(&n.addr, config.timeout).err().map(|e| e.to_string())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some("the hello thread panicked".into()))
            })
            .collect()
    });
    let unreachable: Vec<(String, String)> = nodes
        .iter()
        .zip(&hellos)
        .filter_map(|(n, e)| {
            e.as_ref()
                .map(|e| (n.name.clone(), format!("agent {}: {e}", n.name)))
        })
        .collect();
    let down = |name: &str| {
        unreachable
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, why)| why.clone())
    };
    // Ordered pairs (source index or None for here, destination index).
    let pairs: Vec<(Option<usize>, usize)> = match &config.from_here {
        Some(_) => (0..nodes.len()).map(|d| (None, d)).collect(),
        None => (0..nodes.len())
            .flat_map(|s| {
                (0..nodes.len())
                    .filter(move |&d| d != s)
                    .map(move |d| (Some(s), d))
            })
            .collect(),
    };
    let here = config.from_here.clone().unwrap_or_default();
    let src_name = |s: Option<usize>| s.map_or(here.clone(), |i| nodes[i].name.clone());
    let total = pairs.len()
        * (usize::from(config.latency.is_some()) + usize::from(config.bandwidth.is_some()));
    let done = AtomicUsize::new(0);
    let step = || {
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress { done: d, total });
    };
    progress(Progress { done: 0, total });
    // Why a pair cannot be measured before trying.
    let skip = |s: Option<usize>, d: usize| {
        s.and_then(|s| down(&nodes[s].name))
            .or_else(|| down(&nodes[d].name))
    };

    let mut latency = Vec::new();
    if let Some(cfg) = &config.latency {
        let slots: Mutex<Vec<Option<Cell<LatencyResult>>>> = Mutex::new(vec![None; pairs.len()]);
        let next = AtomicUsize::new(0);
        let workers = config.parallel.clamp(1, pairs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(src, dst)) = pairs.get(i) else {
                            break;
                        };
                        let time = crate::record::realtime();
                        let target = &nodes[dst].addr;
                        let result = match (skip(src, dst), src) {
                            (Some(why), _) => Err(why),
                            (None, None) => measure_latency(target, cfg).map_err(|e| e.to_string()),
                            (None, Some(s)) => {
                                remote_latency(&nodes[s].addr, target, cfg, config.timeout)
                                    .map_err(|e| from_agent(&nodes[s], e))
                            }
                        };
                        let cell = Cell {
                            src: src_name(src),
                            dst: nodes[dst].name.clone(),
                            time,
                            result,
                        };
                        if let Ok(mut v) = slots.lock() {
                            v[i] = Some(cell);
                        }
                        step();
                    }
                });
            }
        });
        latency = slots
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .flatten()
            .collect();
    }

    let mut bandwidth = Vec::new();
    if let Some(cfg) = &config.bandwidth {
        for &(src, dst) in &pairs {
            let time = crate::record::realtime();
            let target = &nodes[dst].addr;
            let result = match (skip(src, dst), src) {
                (Some(why), _) => Err(why),
                (None, None) => measure_bandwidth(target, cfg).map_err(|e| e.to_string()),
                (None, Some(s)) => remote_bandwidth(&nodes[s].addr, target, cfg)
                    .map_err(|e| from_agent(&nodes[s], e)),
            };
            bandwidth.push(Cell {
                src: src_name(src),
                dst: nodes[dst].name.clone(),
                time,
                result,
            });
            step();
        }
    }

    MeshReport {
        sources: match &config.from_here {
            Some(h) => vec![h.clone()],
            None => nodes.iter().map(|n| n.name.clone()).collect(),
        },
        destinations: nodes.iter().map(|n| n.name.clone()).collect(),
        unreachable,
        latency,
        bandwidth,
    }
}

/// An error from asking agent `n`, worded so that it says whose error it is.
fn from_agent(n: &Node, e: ProbeError) -> String {
    match e {
        // The agent's own report of its measurement: it names the target's address.
        ProbeError::Agent { message, .. } => format!("agent {} reports: {message}", n.name),
        other => format!("agent {}: {other}", n.name),
    }
}

impl MeshReport {
    /// Writes the tidy CSV `time,src,dst,metric,value,unit,n`: latency rows (`rtt_min`,
    /// `rtt_p50`, `rtt_p99`, `loss`) then `bandwidth` rows, pairs in input order. A missing
    /// value is an empty `value` with `n` 0.
    pub fn write_tidy(&self, out: &mut dyn RowSink) -> io::Result<()> {
        out.write_row(b"time,src,dst,metric,value,unit,n\n")?;
        let mut line = String::with_capacity(96);
        let mut row =
            |c_time: Duration, src: &str, dst: &str, m: Metric, v: Option<f64>, n: u64| {
                use std::fmt::Write as _;
                line.clear();
                trace::push_time(&mut line, c_time, TimeFormat::Unix);
                let value = v.map(|v| m.format(v)).unwrap_or_default();
                let n = if v.is_some() { n } else { 0 };
                let _ = writeln!(line, ",{src},{dst},{},{value},{},{n}", m.name(), m.unit());
                out.write_row(line.as_bytes())
            };
        for c in &self.latency {
            for m in LATENCY_METRICS {
                let (v, n) = c.result.as_ref().map_or((None, 0), |r| m.of_latency(r));
                row(c.time, &c.src, &c.dst, m, v, n)?;
            }
        }
        for c in &self.bandwidth {
            let (v, n) = c
                .result
                .as_ref()
                .map_or((None, 0), |r| (r.bytes_per_s(), r.received.window_bytes));
            row(c.time, &c.src, &c.dst, Metric::Bandwidth, v, n)?;
        }
        Ok(())
    }

    /// The value of `metric` from `src` to `dst`, if measured.
    pub fn value(&self, src: &str, dst: &str, metric: Metric) -> Option<f64> {
        if metric == Metric::Bandwidth {
            self.bandwidth
                .iter()
                .find(|c| c.src == src && c.dst == dst)
                .and_then(|c| c.result.as_ref().ok())
                .and_then(BandwidthResult::bytes_per_s)
        } else {
            self.latency
                .iter()
                .find(|c| c.src == src && c.dst == dst)
                .and_then(|c| c.result.as_ref().ok())
                .and_then(|r| metric.of_latency(r).0)
        }
    }

    /// Writes the matrix of `metric`: header `src\dst,<destinations>`, one row per source;
    /// the diagonal and missing cells are empty.
    pub fn write_matrix(&self, metric: Metric, out: &mut dyn RowSink) -> io::Result<()> {
        let mut line = String::from("src\\dst");
        for d in &self.destinations {
            line.push(',');
            line.push_str(d);
        }
        line.push('\n');
        out.write_row(line.as_bytes())?;
        for s in &self.sources {
            line.clear();
            line.push_str(s);
            for d in &self.destinations {
                line.push(',');
                if s != d
                    && let Some(v) = self.value(s, d, metric)
                {
                    line.push_str(&metric.format(v));
                }
            }
            line.push('\n');
            out.write_row(line.as_bytes())?;
        }
        Ok(())
    }

    /// One line for each measurement asked for that has no value, with the reason.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.latency {
            match &c.result {
                Err(why) => out.push(format!("{} → {} latency: {why}", c.src, c.dst)),
                Ok(r) if r.received == 0 => out.push(format!(
                    "{} → {} latency: none of {} probes answered",
                    c.src, c.dst, r.sent
                )),
                Ok(_) => {}
            }
        }
        for c in &self.bandwidth {
            match &c.result {
                Err(why) => out.push(format!("{} → {} bandwidth: {why}", c.src, c.dst)),
                Ok(r) if r.bytes_per_s().is_none() => out.push(format!(
                    "{} → {} bandwidth: too little data arrived for a rate ({} bytes)",
                    c.src, c.dst, r.received.bytes
                )),
                Ok(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs() {
        let n = Node::parse("vm1=10.0.0.2:9000").expect("ok");
        assert_eq!((n.name.as_str(), n.addr.as_str()), ("vm1", "10.0.0.2:9000"));
        assert_eq!(
            Node::parse("a=10.0.0.2").expect("ok").addr,
            "10.0.0.2:12310"
        );
        assert_eq!(Node::parse("a=::1").expect("ok").addr, "[::1]:12310");
        assert_eq!(Node::parse("a=[::1]:5").expect("ok").addr, "[::1]:5");
        assert_eq!(Node::parse("a=[::1]").expect("ok").addr, "[::1]:12310");
        assert_eq!(
            Node::parse("a=[fd00::2]").expect("ok").addr,
            "[fd00::2]:12310"
        );
        assert_eq!(
            Node::parse("a=host.lan").expect("ok").addr,
            "host.lan:12310"
        );
        for bad in [
            "novalue",
            "=1.2.3.4",
            "a b=1.2.3.4",
            "a=",
            "a=host:port",
            "a,b=h:1",
            "a=h:99999",
            "a=[1.2.3.4]",
            "a=[::1",
        ] {
            let e = Node::parse(bad).expect_err(bad);
            assert!(
                e.contains("NAME=HOST[:PORT]") || e.contains("name"),
                "{bad}: {e}"
            );
        }
    }

    fn latency(target: &str, rtts: &[f64], sent: u32) -> LatencyResult {
        LatencyResult::from_rtts(target, sent, rtts.to_vec())
    }

    #[test]
    fn tidy_and_matrix_output() {
        let t = Duration::from_micros(1_795_430_000_123_456);
        let cell = |s: &str, d: &str, r| Cell {
            src: s.into(),
            dst: d.into(),
            time: t,
            result: r,
        };
        let report = MeshReport {
            sources: vec!["a".into(), "b".into()],
            destinations: vec!["a".into(), "b".into()],
            unreachable: vec![],
            latency: vec![
                cell("a", "b", Ok(latency("b", &[0.002, 0.001, 0.003], 4))),
                cell("b", "a", Err("agent b: down".into())),
            ],
            bandwidth: vec![],
        };
        let mut out = Vec::new();
        report.write_tidy(&mut out).expect("tidy");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "time,src,dst,metric,value,unit,n\n\
             1795430000.123456,a,b,rtt_min,0.001000000,s,3\n\
             1795430000.123456,a,b,rtt_p50,0.002000000,s,3\n\
             1795430000.123456,a,b,rtt_p99,0.003000000,s,3\n\
             1795430000.123456,a,b,loss,0.25,fraction,4\n\
             1795430000.123456,b,a,rtt_min,,s,0\n\
             1795430000.123456,b,a,rtt_p50,,s,0\n\
             1795430000.123456,b,a,rtt_p99,,s,0\n\
             1795430000.123456,b,a,loss,,fraction,0\n"
        );
        let mut out = Vec::new();
        report
            .write_matrix(Metric::RttMin, &mut out)
            .expect("matrix");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "src\\dst,a,b\na,,0.001000000\nb,,\n"
        );
        assert_eq!(report.missing(), ["b → a latency: agent b: down"]);
    }
}
