//! `vmmon probe serve|mesh`: latency and bandwidth matrices among VM hosts.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::net::probe::{
    self, Agent, BandwidthConfig, BindError, LatencyConfig, Limits, MeshConfig, Metric, Node,
    Progress,
};
use crate::trace::{FileRows, RowSink, StdoutRows};

use super::analyze::usage;
use super::load::parse_byte_count;

/// `vmmon probe` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Run an agent on this host: a UDP echo (latency) and a TCP service (bandwidth sink and
    /// measurement requests from `probe mesh`) on one port, 127.0.0.1:12310 by default.
    ///
    /// Bounded: transfers are cut to --max-seconds and --max-bytes, one bulk test runs at a
    /// time (a second gets a "busy" reply), request lines are at most 4 KiB and must arrive
    /// within --request-timeout, and anything malformed is dropped and counted. Counts are
    /// printed when it stops (SIGINT/SIGTERM).
    Serve(ServeArgs),
    /// Measure latency (all pairs at once) and bandwidth (one pair at a time) among agents,
    /// each pair from its source agent; tidy CSV `time,src,dst,metric,value,unit,n` or a
    /// matrix.
    Mesh(MeshArgs),
}

/// Options of `vmmon probe serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, TCP and UDP (IP:PORT; port 0 picks a free one). Give 0.0.0.0 or
    /// the host's address on the VM network to let other hosts reach it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:12310")]
    listen: String,

    /// Longest transfer or latency run a request may ask for, seconds (longer ones are cut).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    max_seconds: f64,

    /// Most bytes one bandwidth test may deliver to this agent (`32Gi`, `500M`, `4096`).
    #[arg(long, value_name = "BYTES", value_parser = parse_byte_count, default_value = "32Gi")]
    max_bytes: u64,

    /// Seconds a client has to send its request line.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    request_timeout: f64,
}

/// Which matrix to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatrixKind {
    /// Round-trip time in seconds (the statistic of --latency-stat, min by default).
    Latency,
    /// Receiver-side bandwidth in bytes/s.
    Bandwidth,
    /// Share of probes lost.
    Loss,
}

/// Which round-trip statistic a latency matrix shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatencyStat {
    /// The smallest round trip: the path's propagation and transmission, without queueing.
    Min,
    /// The median (nearest rank).
    P50,
    /// The 99th percentile (nearest rank).
    P99,
}

/// Options of `vmmon probe mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Agents as NAME=HOST[:PORT] (port 12310 if left out), at least two; each must reach
    /// the others at these addresses.
    #[arg(value_name = "NAME=ADDR", required = true)]
    agents: Vec<String>,

    /// Measure from this machine to each agent instead of among the agents.
    #[arg(long)]
    from_here: bool,

    /// This machine's name in the output with --from-here.
    #[arg(long, value_name = "NAME", default_value = "here")]
    here_name: String,

    /// Round trips per pair.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    count: u32,

    /// Seconds between round-trip probes (low, so that probes never queue behind each other).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.01)]
    interval: f64,

    /// Seconds a probe's reply may take before the probe counts as lost.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    probe_timeout: f64,

    /// Seconds of bulk transfer per pair (agents cut it to their --max-seconds, 60 s).
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 5.0)]
    seconds: f64,

    /// Seconds after the first byte left out of the rate (slow start, shaper bursts);
    /// default min(1, SECONDS/5).
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,

    /// Seconds an agent may take to accept a connection and to reply, beyond the
    /// measurement itself; an agent that does not answer in time is left out.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    timeout: f64,

    /// Do not measure latency.
    #[arg(long)]
    no_latency: bool,

    /// Do not measure bandwidth.
    #[arg(long)]
    no_bandwidth: bool,

    /// Write an N×N matrix (row = source, column = destination) instead of the tidy CSV;
    /// only what it shows is measured.
    #[arg(long, value_name = "KIND")]
    matrix: Option<MatrixKind>,

    /// The round-trip statistic of a latency matrix.
    #[arg(long, value_name = "STAT", default_value = "min")]
    latency_stat: LatencyStat,

    /// Latency pairs measured at once, at most.
    #[arg(long, value_name = "N", default_value_t = 32)]
    parallel: usize,

    /// Write the CSV to FILE instead of standard output.
    #[arg(
        short = 'o',
        long = "out",
        visible_alias = "output",
        value_name = "FILE"
    )]
    out: Option<PathBuf>,
}

/// Runs `vmmon probe …`.
pub fn run(cmd: ProbeCommand) -> anyhow::Result<i32> {
    match cmd {
        ProbeCommand::Serve(a) => serve(a),
        ProbeCommand::Mesh(a) => mesh(a),
    }
}

/// A time option in seconds, from a millisecond (what sockets and the agents' protocol
/// resolve; less rounds to a zero timeout) to `max`.
fn seconds(option: &str, v: f64, max: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && (1e-3..=max).contains(&v)) {
        return Err(usage(format!(
            "{option} {}: give seconds from 0.001 to {max}",
            crate::trace::shown(v)
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

fn serve(a: ServeArgs) -> anyhow::Result<i32> {
    seconds("--max-seconds", a.max_seconds, 3600.0)?;
    seconds("--request-timeout", a.request_timeout, 60.0)?;
    let limits = Limits {
        max_seconds: a.max_seconds,
        max_bytes: a.max_bytes,
        request_timeout: a.request_timeout,
        ..Limits::default()
    };
    let stop = super::stop_flag()?;
    let agent = Agent::bind(&a.listen, limits).map_err(|e| match e {
        BindError::Address(_) => usage(e.to_string()),
        other => anyhow::Error::new(other),
    })?;
    eprintln!(
        "vmmon probe serve: listening on {} (TCP and UDP)",
        agent.local_addr()?
    );
    let stats = agent.run(&stop)?;
    eprintln!("vmmon probe serve: {stats}");
    Ok(match stop.load(Ordering::Relaxed) {
        0 => 0,
        s => 128 + s as i32,
    })
}

fn mesh(a: MeshArgs) -> anyhow::Result<i32> {
    let mut nodes: Vec<Node> = Vec::with_capacity(a.agents.len());
    for spec in &a.agents {
        let node = Node::parse(spec).map_err(usage)?;
        if let Some(prev) = nodes.iter().find(|n| n.name == node.name) {
            return Err(usage(format!(
                "duplicate agent name {:?} ({} and {}): names must differ",
                node.name, prev.addr, node.addr
            )));
        }
        probe::resolve(&node.addr).map_err(|e| usage(format!("agent {}: {e}", node.name)))?;
        nodes.push(node);
    }
    if a.from_here {
        probe::mesh::check_name(&a.here_name).map_err(|e| usage(format!("--here-name: {e}")))?;
        if nodes.iter().any(|n| n.name == a.here_name) {
            return Err(usage(format!(
                "duplicate agent name {:?}: it is this machine's name with --from-here \
                 (change it with --here-name)",
                a.here_name
            )));
        }
    } else if nodes.len() < 2 {
        return Err(usage(format!(
            "{} agent given: a mesh needs at least 2 (or measure from this machine with \
             --from-here)",
            nodes.len()
        )));
    }
    let (mut want_latency, mut want_bandwidth) = (!a.no_latency, !a.no_bandwidth);
    match a.matrix {
        Some(MatrixKind::Latency | MatrixKind::Loss) if a.no_latency => {
            return Err(usage(
                "--matrix latency/loss needs latency: drop --no-latency".into(),
            ));
        }
        Some(MatrixKind::Bandwidth) if a.no_bandwidth => {
            return Err(usage(
                "--matrix bandwidth needs bandwidth: drop --no-bandwidth".into(),
            ));
        }
        Some(MatrixKind::Latency | MatrixKind::Loss) => want_bandwidth = false,
        Some(MatrixKind::Bandwidth) => want_latency = false,
        None => {}
    }
    if !want_latency && !want_bandwidth {
        return Err(usage(
            "--no-latency and --no-bandwidth together leave nothing to measure".into(),
        ));
    }
    if a.count == 0 || a.count > 10_000 {
        return Err(usage(format!("--count {}: give 1 to 10000", a.count)));
    }
    let interval = seconds("--interval", a.interval, 10.0)?;
    if interval < Duration::from_millis(1) {
        return Err(usage(format!(
            "--interval {}: give at least 0.001 s (agents send at most 1000 probes/s)",
            crate::trace::shown(a.interval)
        )));
    }
    let probe_timeout = seconds("--probe-timeout", a.probe_timeout, 10.0)?;
    let transfer = seconds("--seconds", a.seconds, 3600.0)?;
    let warmup = match a.warmup {
        None => None,
        Some(w) if w.is_finite() && w >= 0.0 && w < a.seconds => Some(Duration::from_secs_f64(w)),
        Some(w) => {
            return Err(usage(format!(
                "--warmup {}: give seconds ≥ 0 and shorter than --seconds {}",
                crate::trace::shown(w),
                crate::trace::shown(a.seconds)
            )));
        }
    };
    let timeout = seconds("--timeout", a.timeout, 60.0)?;
    if a.parallel == 0 {
        return Err(usage("--parallel 0: give at least 1".into()));
    }
    let config = MeshConfig {
        latency: want_latency.then_some(LatencyConfig {
            count: a.count,
            interval,
            timeout: probe_timeout,
        }),
        bandwidth: want_bandwidth.then_some(BandwidthConfig {
            seconds: transfer,
            warmup,
            timeout,
        }),
        timeout,
        from_here: a.from_here.then(|| a.here_name.clone()),
        parallel: a.parallel,
    };
    // Open the output first: an unwritable file should not cost a whole mesh run.
    let mut sink: Box<dyn RowSink> = match &a.out {
        Some(p) if p.as_os_str() != "-" => Box::new(FileRows::create(p)?),
        _ => Box::new(StdoutRows),
    };
    let bar = super::stderr_is_terminal().then(|| {
        let style = ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} measurements")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(0).with_style(style)
    });
    let progress = |p: Progress| {
        if let Some(b) = &bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
        }
    };
    let report = probe::mesh::run(&nodes, &config, &progress);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match a.matrix {
        None => report.write_tidy(sink.as_mut())?,
        Some(kind) => {
            let metric = match (kind, a.latency_stat) {
                (MatrixKind::Bandwidth, _) => Metric::Bandwidth,
                (MatrixKind::Loss, _) => Metric::Loss,
                (MatrixKind::Latency, LatencyStat::Min) => Metric::RttMin,
                (MatrixKind::Latency, LatencyStat::P50) => Metric::RttP50,
                (MatrixKind::Latency, LatencyStat::P99) => Metric::RttP99,
            };
            report.write_matrix(metric, sink.as_mut())?;
        }
    }
    for c in &report.bandwidth {
        if let Ok(r) = &c.result
            && r.seconds_granted < r.seconds_requested
        {
            eprintln!(
                "vmmon probe mesh: note: {} → {}: the agent cut the transfer to {} s",
                c.src, c.dst, r.seconds_granted
            );
        }
    }
    for (_, why) in &report.unreachable {
        eprintln!("vmmon probe mesh: {why}; its pairs are left empty");
    }
    let missing = report.missing();
    let asked = report.latency.len() + report.bandwidth.len();
    for m in &missing {
        // Pairs of an unreachable agent were named once above.
        if !report
            .unreachable
            .iter()
            .any(|(_, why)| m.ends_with(why.as_str()))
        {
            eprintln!("vmmon probe mesh: missing {m}");
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "{} of {asked} measurements missing (empty cells in the output)",
            missing.len()
        );
    }
    eprintln!(
        "vmmon probe mesh: {} agents, {} measurements, all complete",
        nodes.len(),
        asked
    );
    Ok(0)
}
