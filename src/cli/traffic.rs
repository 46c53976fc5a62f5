//! `vmmon traffic`: options in, a packet capture on the chosen interfaces, the traffic
//! matrix (or tidy rows, per interval with `--interval`) out, with a summary on standard
//! error and a JSON sidecar next to `-o FILE`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::analyze::usage;
use super::record::parse_duration;
use crate::net::traffic::{
    self, Capture, CaptureConfig, CountOptions, IfaceSpec, Interface, InterfaceStats,
};

/// Output layout of `vmmon traffic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// N×N CSV: header `src\dst,NAME…`, one row per source, bytes/s per cell.
    Matrix,
    /// One row per (source, destination) with traffic: `src,dst,bytes,packets,bytes_per_s`.
    Tidy,
}

/// Options of `vmmon traffic`.
#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// Capture on interface IFACE and name its endpoint NAME (repeat for each). IFACE@NETNS
    /// captures in a network namespace (a name under /run/netns, or a path). Several
    /// interfaces may share a NAME.
    #[arg(long = "iface", value_name = "NAME=IFACE", required = true)]
    ifaces: Vec<IfaceSpec>,

    /// Name the endpoint of an address (repeat); wins over the interface's naming.
    #[arg(long = "name", value_name = "ADDR=NAME", value_parser = traffic::parse_hint)]
    names: Vec<(std::net::IpAddr, String)>,

    /// How long to capture: seconds, or with a unit (500ms, 10s, 5m). Default: until
    /// interrupted (SIGINT or SIGTERM), then the matrix is written.
    #[arg(short = 'd', long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,

    /// Write each interval's counts as it ends (tidy rows with `time,elapsed` first; needs
    /// --format tidy).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    interval: Option<Duration>,

    /// Output layout.
    #[arg(long, value_enum, default_value_t = Format::Matrix)]
    format: Format,

    /// Write the CSV to FILE (and a summary to FILE.meta.json) instead of standard output.
    #[arg(
        short = 'o',
        long = "out",
        visible_alias = "output",
        value_name = "FILE"
    )]
    out: Option<PathBuf>,

    /// Keep multicast and broadcast destinations as endpoints of the matrix (by default
    /// they are counted in the summary only).
    #[arg(long)]
    multicast: bool,

    /// Keep the addresses that send into a port (tap, bridge port) as addresses instead of
    /// naming them after the port's endpoint.
    #[arg(long)]
    no_learn: bool,

    /// Largest number of (source, destination) address pairs kept; the traffic of further
    /// pairs is counted apart and reported.
    #[arg(long, default_value_t = 65_536, value_name = "N")]
    max_pairs: usize,

    /// Receive buffer of each packet socket, in MiB.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    buffer: usize,
}

/// The sidecar written next to `-o FILE`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    vmmon_version: &'static str,
    command: &'a [String],
    start_unix_s: f64,
    seconds: f64,
    status: &'a str,
    counted: &'static str,
    interfaces: Vec<InterfaceSummary<'a>>,
    learned: std::collections::BTreeMap<String, Vec<String>>,
    endpoints: &'a [String],
    overflow_packets: u64,
    notes: &'a [String],
}

#[derive(Debug, Serialize)]
struct InterfaceSummary<'a> {
    #[serde(flatten)]
    interface: &'a Interface,
    #[serde(flatten)]
    stats: InterfaceStats,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `vmmon traffic`; returns 0, or 128+signal after a clean stop by a signal.
pub fn run(a: TrafficArgs, command: Vec<String>) -> anyhow::Result<i32> {
    if a.interval.is_some() && a.format != Format::Tidy {
        return Err(usage(
            "--interval needs --format tidy: a matrix CSV holds one matrix".into(),
        ));
    }
    if a.max_pairs == 0 {
        return Err(usage("--max-pairs must be at least 1".into()));
    }
    if a.buffer == 0 || a.buffer > 1024 {
        return Err(usage(format!(
            "--buffer {} must be between 1 and 1024 MiB",
            a.buffer
        )));
    }
    let out = a.out.clone().filter(|p| p.as_os_str() != "-");
    let config = CaptureConfig {
        ifaces: a.ifaces.clone(),
        count: CountOptions {
            learn: !a.no_learn,
            keep_groups: a.multicast,
            max_pairs: a.max_pairs,
            hints: a.names.clone(),
        },
        duration: a.duration,
        interval: a.interval,
        socket_buffer: a.buffer << 20,
    };
    let stop = super::stop_flag()?;
    let mut capture = Capture::open(config)?;
    let mut sink: Box<dyn std::io::Write> = match &out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let where_to = out
        .as_ref()
        .map_or("standard output".to_string(), |p| p.display().to_string());
    let start_unix = unix_now();
    eprintln!(
        "vmmon: traffic: capturing on {} {}",
        capture
            .counter
            .interfaces()
            .iter()
            .map(|i| {
                let role = match i.role {
                    traffic::Role::Own => "own",
                    traffic::Role::Port => "port",
                    traffic::Role::Loopback => "loopback",
                };
                format!("{} ({}, {role})", i.label(), i.name)
            })
            .collect::<Vec<_>>()
            .join(", "),
        a.duration
            .map_or("until interrupted".to_string(), |d| format!(
                "{} s",
                d.as_secs_f64()
            ))
    );
    if a.interval.is_some() {
        writeln!(sink, "time,elapsed,{}", traffic::TIDY_HEADER)?;
        sink.flush()?;
    }
    let mut on_interval = |iv: traffic::IntervalCounts| -> anyhow::Result<()> {
        let prefix = format!("{:.6},{:.6},", unix_now(), iv.elapsed);
        sink.write_all(iv.matrix.tidy_rows(&prefix).as_bytes())?;
        sink.flush()
            .with_context(|| format!("cannot write {where_to}"))?;
        Ok(())
    };
    let report = capture.run(&stop, &mut on_interval)?;
    if a.interval.is_none() {
        let text = match a.format {
            Format::Matrix => report.matrix.to_csv(),
            Format::Tidy => format!("{}\n{}", traffic::TIDY_HEADER, report.matrix.tidy_rows("")),
        };
        sink.write_all(text.as_bytes())?;
    }
    sink.flush()
        .with_context(|| format!("cannot write {where_to}"))?;
    drop(sink);

    let c = &capture.counter;
    for note in &report.notes {
        eprintln!("vmmon: note: {note}");
    }
    for (i, st) in c.interfaces().iter().zip(&c.stats) {
        eprintln!(
            "vmmon: traffic: {}: {} frames, {} counted here ({} bytes), {} counted elsewhere, \
             {} to multicast/broadcast, {} not IP, {} malformed, {} dropped by the kernel",
            i.label(),
            st.seen,
            st.counted,
            st.counted_bytes,
            st.counted_elsewhere,
            st.group,
            st.not_ip,
            st.malformed,
            st.kernel_drops
        );
        if st.kernel_drops > 0 {
            eprintln!(
                "vmmon: warning: the kernel dropped {} packets on {} (socket buffer full): the \
                 matrix undercounts; raise --buffer",
                st.kernel_drops,
                i.label()
            );
        }
    }
    let status = if report.signal.is_some() {
        "interrupted"
    } else {
        "complete"
    };
    if let Some(p) = &out {
        let interfaces = c
            .interfaces()
            .iter()
            .zip(&c.stats)
            .map(|(interface, st)| InterfaceSummary {
                interface,
                stats: *st,
            })
            .collect();
        let summary = Summary {
            vmmon_version: env!("CARGO_PKG_VERSION"),
            command: &command,
            start_unix_s: start_unix,
            seconds: report.seconds,
            status,
            counted: "IP packet length (IPv4 total length, IPv6 40 + payload length); no \
                      link-layer header",
            interfaces,
            learned: c.learned_names(),
            endpoints: &report.matrix.endpoints,
            overflow_packets: report.overflow.packets,
            notes: &report.notes,
        };
        if let Some(side) = crate::trace::default_sidecar(p) {
            super::write_json(&side, &summary)?;
        }
    }
    Ok(report.signal.map_or(0, |s| 128 + s as i32))
}
