//! `vmmon clock serve|probe`: measure a guest's clock against its host's.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::clock::{self, Drift, Measurement, ProbeConfig, Prober, ServeStats, Server, Track};
use crate::record::{Schedule, monotonic};
use crate::trace::{self, FileRows, RowSink, StdoutRows, TimeFormat};

use super::analyze::usage;

/// The default port: unprivileged, unlike NTP's 123.
pub const DEFAULT_PORT: u16 = 12300;

/// `vmmon clock` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Answer NTP timestamp requests with this machine's clock (run it on the host).
    ///
    /// Replies are never larger than requests; anything but a 48-byte NTP client request is
    /// dropped and counted. Counts are printed when it stops (SIGINT/SIGTERM).
    Serve(ServeArgs),
    /// Measure this machine's clock against a server: bursts of exchanges, the one with the
    /// smallest round trip per burst, its offset (server − local) with its error bound
    /// (±RTT/2), and the drift over the run.
    Probe(ProbeArgs),
}

/// Options of `vmmon clock serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and UDP port to listen on (IP:PORT; port 0 picks a free one). Give 0.0.0.0 or
    /// the host's bridge address to let guests reach it.
    #[arg(long, value_name = "ADDR", default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    listen: String,
}

/// Options of `vmmon clock probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The server, HOST:PORT (`vmmon clock serve`, or any NTP server).
    #[arg(value_name = "HOST:PORT")]
    server: String,

    /// Bursts to make (0: until interrupted).
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
    count: u64,

    /// Bursts per second.
    #[arg(short = 'r', long, default_value_t = 1.0, value_name = "HZ")]
    rate: f64,

    /// Exchanges per burst; the one with the smallest round trip is kept.
    #[arg(long, default_value_t = 8, value_name = "N")]
    burst: usize,

    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    timeout: f64,

    /// Write the CSV (time, offset_s, rtt_s, bound_s) to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,

    /// Also write a JSON summary (offsets, drift with its 95% interval) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `vmmon clock …`.
pub fn run(cmd: ClockCommand) -> anyhow::Result<i32> {
    match cmd {
        ClockCommand::Serve(a) => serve(a),
        ClockCommand::Probe(a) => probe(a),
    }
}

fn describe_stats(s: &ServeStats) -> String {
    format!(
        "received {}, answered {}, dropped {} (short {}, oversized {}, malformed {}), send \
         errors {}",
        s.received,
        s.answered,
        s.dropped(),
        s.short,
        s.oversized,
        s.malformed,
        s.send_errors
    )
}

fn serve(a: ServeArgs) -> anyhow::Result<i32> {
    let stop = super::stop_flag()?;
    // The address is checked as `vmmon serve` checks its own (a usage error, exit 2).
    let addr = super::serve::parse_listen(&a.listen)?.to_string();
    let mut server = Server::bind(&addr)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot listen on {}", a.listen)))?;
    eprintln!(
        "vmmon clock serve: listening on {} (UDP)",
        server.local_addr()?
    );
    let stats = server.run(&stop)?;
    eprintln!("vmmon clock serve: {}", describe_stats(&stats));
    Ok(match stop.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 0,
        s => 128 + s as i32,
    })
}

/// The JSON summary of a probe run.
#[derive(Debug, Serialize)]
struct ProbeSummary {
    server: String,
    bursts: u64,
    measured: usize,
    lost_bursts: u64,
    exchanges_sent: usize,
    exchanges_answered: usize,
    last: Option<Measurement>,
    median_offset_s: Option<f64>,
    min_rtt_s: Option<f64>,
    drift: Option<Drift>,
}

fn probe(a: ProbeArgs) -> anyhow::Result<i32> {
    // At least a burst a day (1/rate must be a time the clock can wait).
    if !(a.rate.is_finite() && a.rate >= 1.0 / 86_400.0 && a.rate <= 1000.0) {
        return Err(usage(format!(
            "--rate {}: give bursts per second from 1/86400 (one a day) to 1000",
            trace::shown(a.rate)
        )));
    }
    if !(a.timeout.is_finite() && a.timeout >= 1e-3 && a.timeout <= 60.0) {
        return Err(usage(format!(
            "--timeout {}: give seconds from 0.001 to 60",
            trace::shown(a.timeout)
        )));
    }
    super::distinct_outputs(("-o", a.out.as_deref()), ("--json", a.json.as_deref()))?;
    if a.burst == 0 || a.burst > 1000 {
        return Err(usage(format!("--burst {}: give 1 to 1000", a.burst)));
    }
    let config = ProbeConfig {
        burst: a.burst,
        timeout: Duration::from_secs_f64(a.timeout),
    };
    let mut prober = Prober::connect(&a.server, config).map_err(|e| match e {
        clock::probe::ProbeError::Resolve(_) => usage(e.to_string()),
        other => anyhow::Error::new(other),
    })?;
    let stop = super::stop_flag()?;
    let mut sink: Box<dyn RowSink> = match &a.out {
        Some(p) if p.as_os_str() != "-" => Box::new(FileRows::create(p)?),
        _ => Box::new(StdoutRows),
    };
    sink.write_row(b"time,offset_s,rtt_s,bound_s\n")?;
    let bar = (a.count > 0 && super::stderr_is_terminal()).then(|| {
        let style = ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} bursts {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(a.count).with_style(style)
    });
    let mut schedule = Schedule::new(monotonic(), Duration::from_secs_f64(1.0 / a.rate));
    let (mut done, mut lost, mut sent, mut answered) = (0u64, 0u64, 0usize, 0usize);
    let mut track = Track::default();
    let mut line = String::with_capacity(96);
    while a.count == 0 || done < a.count {
        if schedule.wait(&stop).is_none() {
            break;
        }
        let m = prober.burst()?;
        done += 1;
        sent += a.burst;
        let Some(m) = m else {
            lost += 1;
            continue;
        };
        answered += m.answered;
        line.clear();
        let t = Duration::from_nanos(m.time_ns.max(0) as u64);
        trace::push_time(&mut line, t, TimeFormat::Unix);
        use std::fmt::Write as _;
        let _ = writeln!(line, ",{:.9},{:.9},{:.9}", m.offset, m.rtt, m.bound);
        sink.write_row(line.as_bytes())?;
        track.0.push(m);
        if let Some(b) = &bar {
            b.set_position(done);
            b.set_message(format!(
                "offset {:+.6} s ±{:.0} µs",
                m.offset,
                m.bound * 1e6
            ));
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = ProbeSummary {
        server: a.server.clone(),
        bursts: done,
        measured: track.0.len(),
        lost_bursts: lost,
        exchanges_sent: sent,
        exchanges_answered: answered,
        last: track.0.last().copied(),
        median_offset_s: track.median_offset(),
        min_rtt_s: track.min_rtt(),
        drift: track.drift(),
    };
    eprintln!("{}", describe_probe(&summary));
    if let Some(p) = &a.json {
        super::write_json(p, &summary)?;
    }
    if track.0.is_empty() && done > 0 {
        anyhow::bail!(
            "no reply from {} in {done} burst(s) of {} (timeout {} s each)",
            a.server,
            a.burst,
            a.timeout
        );
    }
    Ok(match stop.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 0,
        s => 128 + s as i32,
    })
}

fn describe_probe(s: &ProbeSummary) -> String {
    let mut out = format!(
        "{}: {} of {} bursts answered ({} of {} exchanges)",
        s.server, s.measured, s.bursts, s.exchanges_answered, s.exchanges_sent
    );
    if let Some(m) = &s.last {
        out += &format!(
            "\nlast offset {:+.6} s ± {:.6} s (rtt {:.6} s)",
            m.offset, m.bound, m.rtt
        );
    }
    match &s.drift {
        Some(d) => {
            out += &format!(
                "\ndrift {:+.2} ppm (95%: {:+.2} to {:+.2}) over {} bursts",
                d.ppm, d.ppm_low, d.ppm_high, d.points
            )
        }
        None => out += "\ndrift: needs at least 3 bursts at different times",
    }
    out
}
