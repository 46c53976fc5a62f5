//! `vmmon load`: CPU load from a played-back load trace or an identification input.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::load::trace::{self, ByteOrder};
use crate::load::{self, LoadConfig, Mode, Pattern, Prbs, filter};
use crate::trace::{FileRows, RowSink};

use super::analyze::usage;
use super::record::{parse_duration, parse_offset};

/// `vmmon load` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Play back a load trace: invert the load-average filter to the run-queue length that
    /// produced it, and run that many busy threads' worth of work, slice by slice.
    Play(PlayArgs),
    /// A pseudo-random binary sequence (maximal-length LFSR) between two load levels.
    Prbs(PrbsArgs),
    /// A step from one load level to another.
    Step(StepArgs),
    /// A square wave between two load levels.
    Square(SquareArgs),
    /// A sine wave of load (clamped at 0).
    Sine(SineArgs),
    /// A constant load (e.g. 0.5: half a CPU; 1.5: one and a half).
    Const(ConstArgs),
}

/// Options every load shares.
#[derive(Debug, Args)]
pub struct Common {
    /// Worker threads (default: the largest load rounded up; at least 1).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Refuse more worker threads than this (default: twice the CPUs).
    #[arg(long, value_name = "N")]
    max_threads: Option<usize>,

    /// time: busy for a fraction of wall-clock time; work: busy for an amount of the thread's
    /// own CPU time per slice, stretched by competing load as a real job would be.
    #[arg(long, value_enum, default_value_t = Mode::Time)]
    mode: Mode,

    /// Per interval: time, target load, target and delivered CPU seconds, and the error.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Also write a JSON summary to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Seed of the random placement of busy phases (and of the PRBS register).
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Length of the sub-slices in which each thread's busy phase is placed at random.
    #[arg(long, value_parser = parse_duration, default_value = "20ms", value_name = "DURATION")]
    phase: Duration,

    /// What to load: CPU (busy threads), disk (writes to a file in --dir, removed at the end)
    /// or net (UDP datagrams to --target); for disk and net a load of 1 is --scale bytes/s.
    #[arg(long, value_enum, default_value_t = Kind::Cpu)]
    kind: Kind,

    /// Bytes per second for a load of 1 (disk and net): `10M`, `512k`, `1Gi`.
    #[arg(long, value_parser = parse_bytes, default_value = "10M", value_name = "BYTES")]
    scale: f64,

    /// Directory of the disk load's file (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Largest size of the disk load's file; it is rewritten from the start beyond.
    #[arg(long, value_parser = parse_bytes, default_value = "256Mi", value_name = "BYTES")]
    file_size: f64,

    /// Destination of the network load, HOST:PORT (UDP).
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
}

/// What a load exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Busy worker threads.
    Cpu,
    /// Writes to a file, synced to the device.
    Disk,
    /// UDP datagrams.
    Net,
}

/// Parses `10M`, `512k`, `1Gi`, `4096` (SI or binary suffixes) into bytes.
pub fn parse_bytes(s: &str) -> Result<f64, String> {
    let (num, scale) = split_bytes(s)?;
    let v: f64 = num.parse().map_err(|_| not_bytes(s))?;
    let bytes = v * scale as f64;
    if bytes.is_finite() && bytes > 0.0 {
        Ok(bytes)
    } else {
        Err(format!("'{s}' must be a positive byte count"))
    }
}

/// `parse_bytes` for a whole number of bytes (`32Gi`, `2.01M`, `4096`), read exactly from
/// the digits (in binary floating point `2.01M` is 2009999.9999999998 bytes).
pub fn parse_byte_count(s: &str) -> Result<u64, String> {
    let (num, scale) = split_bytes(s)?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !(digits(int) || (int.is_empty() && digits(frac))) || !(frac.is_empty() || digits(frac)) {
        return Err(not_bytes(s));
    }
    // The fraction's digits beyond 28 are past any unit's resolution (a GiB is 10 digits):
    // if they are not all zero, the count is not whole. 28 digits times a GiB fit a u128.
    let too_fine = frac.len() > 28 && frac[28..].bytes().any(|b| b != b'0');
    let frac = &frac[..frac.len().min(28)];
    let big = |d: &str| d.parse::<u128>().map_err(|_| too_big(s));
    let whole = if int.is_empty() { 0 } else { big(int)? };
    let part = if frac.is_empty() { 0 } else { big(frac)? };
    let den = 10u128.pow(frac.len() as u32);
    let scale = u128::from(scale);
    let fraction = part.checked_mul(scale).ok_or_else(|| too_big(s))?;
    if too_fine || fraction % den != 0 {
        return Err(format!("'{s}' is not a whole number of bytes"));
    }
    let bytes = whole
        .checked_mul(scale)
        .and_then(|b| b.checked_add(fraction / den))
        .ok_or_else(|| too_big(s))?;
    match u64::try_from(bytes) {
        Ok(0) => Err(format!("'{s}' must be a positive byte count")),
        Ok(b) => Ok(b),
        Err(_) => Err(too_big(s)),
    }
}

/// A byte count's number and its unit's bytes.
fn split_bytes(s: &str) -> Result<(&str, u64), String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (k, M, G, Ki, Mi, Gi)"
            ));
        }
    };
    Ok((num.trim(), scale))
}

fn not_bytes(s: &str) -> String {
    format!("'{s}' is not a byte count (e.g. 10M, 512k, 1Gi)")
}

fn too_big(s: &str) -> String {
    format!("'{s}' is more bytes than 2^64 - 1")
}

/// Options of the synthetic inputs.
#[derive(Debug, Args)]
pub struct Timing {
    /// How long to run (`60`, `90s`, `5m`).
    #[arg(short = 'd', long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,

    /// Granularity of the target (`100ms`, `1s`).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    slice: Duration,
}

/// Trace file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// CSV with a `load` column (and `time`).
    Csv,
    /// Pairs of IEEE doubles: timestamp, load.
    Binary,
}

/// Options of `vmmon load play`.
#[derive(Debug, Args)]
pub struct PlayArgs {
    /// The load trace.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,

    /// Trace format (default: csv for a .csv file, binary otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,

    /// Byte order of a binary trace.
    #[arg(long, value_enum, default_value_t = ByteOrder::Little)]
    byte_order: ByteOrder,

    /// Time constant of the load average the trace recorded, seconds: 5 for the classic
    /// Digital Unix traces, 60 for Linux's 1-minute average.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    tau: f64,

    /// Seconds between samples (for a trace without timestamps, or to override them).
    #[arg(long, value_name = "SECONDS")]
    period: Option<f64>,

    /// Play the values as run-queue lengths, without inverting the filter.
    #[arg(long)]
    no_invert: bool,

    /// Stop after this long (default: the whole trace).
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Begin this far into the trace (`90s`, `10m`); the part skipped is played after the
    /// end, so the whole trace still plays. Machines playing one trace from different
    /// starts are loaded alike but not in step.
    #[arg(long, value_parser = parse_offset, value_name = "DURATION")]
    start: Option<Duration>,

    #[command(flatten)]
    common: Common,
}

/// Options of `vmmon load prbs`.
#[derive(Debug, Args)]
pub struct PrbsArgs {
    /// Load for a 0 bit.
    #[arg(long, default_value_t = 0.0)]
    low: f64,
    /// Load for a 1 bit.
    #[arg(long, default_value_t = 1.0)]
    high: f64,
    /// Duration of one bit (`1s`, `500ms`).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    bit: Duration,
    /// Register length n: the sequence repeats after 2^n − 1 bits (3 to 24).
    #[arg(long, default_value_t = 10)]
    order: u32,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    common: Common,
}

/// Options of `vmmon load step`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// Load before the step.
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    /// Load after the step.
    #[arg(long, default_value_t = 1.0)]
    to: f64,
    /// When the step happens (`10s`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    at: Duration,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    common: Common,
}

/// Options of `vmmon load square`.
#[derive(Debug, Args)]
pub struct SquareArgs {
    /// Low level.
    #[arg(long, default_value_t = 0.0)]
    low: f64,
    /// High level.
    #[arg(long, default_value_t = 1.0)]
    high: f64,
    /// Period (`20s`).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    period: Duration,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    common: Common,
}

/// Options of `vmmon load sine`.
#[derive(Debug, Args)]
pub struct SineArgs {
    /// Mean load.
    #[arg(long, default_value_t = 0.5)]
    mean: f64,
    /// Amplitude.
    #[arg(long, default_value_t = 0.5)]
    amplitude: f64,
    /// Period (`30s`).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    period: Duration,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    common: Common,
}

/// Options of `vmmon load const`.
#[derive(Debug, Args)]
pub struct ConstArgs {
    /// The load: busy CPUs' worth of work.
    #[arg(value_name = "LOAD", allow_negative_numbers = true)]
    level: f64,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    common: Common,
}

/// Refuses a low level above the high one (the shape would be inverted, not what was asked).
fn ordered_levels(low: f64, high: f64) -> anyhow::Result<()> {
    if low > high {
        return Err(usage(format!("--low {low} --high {high}: give low ≤ high")));
    }
    Ok(())
}

/// Refuses a wave period the slices cannot draw: under two slices a period, a square wave
/// aliases to a constant.
fn resolved(name: &str, period: Duration, slice: Duration) -> anyhow::Result<()> {
    if period < 2 * slice {
        return Err(usage(format!(
            "{name} {period:?} is shorter than two slices ({:?}): the wave cannot be drawn; \
             give a longer period or a shorter --slice",
            2 * slice
        )));
    }
    Ok(())
}

fn level(name: &str, v: f64) -> anyhow::Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(usage(format!("--{name} {v}: a load is a number ≥ 0")))
    }
}

fn slices(timing: &Timing) -> anyhow::Result<(Duration, usize)> {
    if timing.slice < Duration::from_millis(10) {
        return Err(usage(format!(
            "--slice {:?}: at least 10ms (a scheduling quantum)",
            timing.slice
        )));
    }
    if timing.slice > timing.duration {
        return Err(usage(format!(
            "--slice {:?} is longer than -d {:?}: the load runs whole slices",
            timing.slice, timing.duration
        )));
    }
    let n = (timing.duration.as_secs_f64() / timing.slice.as_secs_f64()).round() as usize;
    Ok((timing.slice, n.max(1)))
}

/// The `--log` file with its header, if asked for.
fn open_log(path: Option<&std::path::Path>, header: &[u8]) -> anyhow::Result<Option<FileRows>> {
    path.map(|p| {
        let mut f = FileRows::create(p)?;
        f.write_row(header)?;
        Ok(f)
    })
    .transpose()
}

/// Runs `vmmon load …`.
pub fn run(cmd: LoadCommand) -> anyhow::Result<i32> {
    let (pattern, slice, n, common, what) = match cmd {
        LoadCommand::Play(a) => {
            let format = a.format.unwrap_or(if trace::is_csv(&a.trace) {
                Format::Csv
            } else {
                Format::Binary
            });
            if let Some(p) = a.period
                && !(p.is_finite() && (trace::MIN_PERIOD..=trace::MAX_PERIOD).contains(&p))
            {
                return Err(usage(format!(
                    "--period {}: give seconds from {} to {}",
                    crate::trace::shown(p),
                    trace::MIN_PERIOD,
                    trace::MAX_PERIOD
                )));
            }
            if !(a.tau.is_finite() && a.tau > 0.0) {
                return Err(usage(format!("--tau {}: give seconds > 0", a.tau)));
            }
            let tr = match format {
                Format::Csv => trace::read_csv(&a.trace, a.period)?,
                Format::Binary => trace::read_binary(&a.trace, a.byte_order, a.period)?,
            };
            let mut x = if a.no_invert {
                tr.load.clone()
            } else {
                filter::invert_clamped(&tr.load, filter::smoothing(tr.period, a.tau))
            };
            // Inverted in the trace's own order, then rotated: the filter's state is right
            // at every sample, and only the wrap joins two stretches of the trace.
            let skip = a.start.map_or(0, |d| {
                (d.as_secs_f64() / tr.period).round() as usize % x.len().max(1)
            });
            x.rotate_left(skip);
            let slice = Duration::from_secs_f64(tr.period);
            let mut n = x.len();
            if let Some(d) = a.duration {
                if d.as_secs_f64() < tr.period {
                    return Err(usage(format!(
                        "-d {d:?} is shorter than one sample of the trace ({} s): the load \
                         plays whole samples",
                        tr.period
                    )));
                }
                n = n.min((d.as_secs_f64() / tr.period).round().max(1.0) as usize);
            }
            let what = format!(
                "{} ({} samples every {} s, tau {} s{}{})",
                a.trace.display(),
                tr.load.len(),
                tr.period,
                a.tau,
                if a.no_invert { ", not inverted" } else { "" },
                if skip > 0 {
                    format!(", from sample {skip}")
                } else {
                    String::new()
                }
            );
            (Pattern::Values(x), slice, n, a.common, what)
        }
        LoadCommand::Prbs(a) => {
            let (slice, n) = slices(&a.timing)?;
            ordered_levels(a.low, a.high)?;
            let bit = a.bit.as_secs_f64();
            if bit < slice.as_secs_f64() {
                return Err(usage(format!(
                    "--bit {:?} is shorter than --slice {slice:?}",
                    a.bit
                )));
            }
            let bits = (a.timing.duration.as_secs_f64() / bit).ceil() as usize + 1;
            let p = Prbs::new(
                a.order,
                a.common.seed,
                level("low", a.low)?,
                level("high", a.high)?,
                bit,
                bits,
            )
            .ok_or_else(|| usage(format!("--order {}: give 3 to 24", a.order)))?;
            let what = format!(
                "PRBS order {} ({} or {}, {} s bits)",
                a.order, a.low, a.high, bit
            );
            (Pattern::Prbs(p), slice, n, a.common, what)
        }
        LoadCommand::Step(a) => {
            let (slice, n) = slices(&a.timing)?;
            let p = Pattern::Step {
                from: level("from", a.from)?,
                to: level("to", a.to)?,
                at: a.at.as_secs_f64(),
            };
            let what = format!("step {} → {} at {} s", a.from, a.to, a.at.as_secs_f64());
            (p, slice, n, a.common, what)
        }
        LoadCommand::Square(a) => {
            let (slice, n) = slices(&a.timing)?;
            ordered_levels(a.low, a.high)?;
            resolved("--period", a.period, slice)?;
            let p = Pattern::Square {
                low: level("low", a.low)?,
                high: level("high", a.high)?,
                period: a.period.as_secs_f64(),
            };
            let what = format!(
                "square {}/{} every {} s",
                a.high,
                a.low,
                a.period.as_secs_f64()
            );
            (p, slice, n, a.common, what)
        }
        LoadCommand::Sine(a) => {
            let (slice, n) = slices(&a.timing)?;
            level("mean", a.mean)?;
            if !(a.amplitude.is_finite() && a.amplitude >= 0.0) {
                return Err(usage(format!(
                    "--amplitude {}: give a number ≥ 0 (the wave swings mean ± amplitude)",
                    crate::trace::shown(a.amplitude)
                )));
            }
            resolved("--period", a.period, slice)?;
            let p = Pattern::Sine {
                mean: a.mean,
                amplitude: a.amplitude,
                period: a.period.as_secs_f64(),
            };
            let what = format!(
                "sine {} ± {} every {} s",
                crate::trace::shown(a.mean),
                crate::trace::shown(a.amplitude),
                a.period.as_secs_f64()
            );
            (p, slice, n, a.common, what)
        }
        LoadCommand::Const(a) => {
            let (slice, n) = slices(&a.timing)?;
            let p = Pattern::Const(level("load", a.level)?);
            (p, slice, n, a.common, format!("constant {}", a.level))
        }
    };
    play(pattern, slice, n, common, what)
}

fn play(
    pattern: Pattern,
    slice: Duration,
    n: usize,
    common: Common,
    what: String,
) -> anyhow::Result<i32> {
    super::distinct_outputs(
        ("--log", common.log.as_deref()),
        ("--json", common.json.as_deref()),
    )?;
    // An option of another kind of load would be silently ignored.
    let kind = match common.kind {
        Kind::Cpu => "cpu",
        Kind::Disk => "disk",
        Kind::Net => "net",
    };
    if common.target.is_some() && common.kind != Kind::Net {
        return Err(usage(format!(
            "--target is where --kind net sends its datagrams; this load is --kind {kind}"
        )));
    }
    if common.dir.is_some() && common.kind != Kind::Disk {
        return Err(usage(format!(
            "--dir is where --kind disk writes its file; this load is --kind {kind}"
        )));
    }
    if common.kind != Kind::Cpu {
        return play_io(pattern, slice, n, common, what);
    }
    let peak = pattern.max(slice, n);
    let need = (peak.ceil() as usize).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max_threads = common.max_threads.unwrap_or(2 * cpus);
    let threads = common.threads.unwrap_or(need);
    if threads == 0 {
        return Err(usage("--threads must be at least 1".into()));
    }
    let peak = crate::trace::shown(peak);
    if threads < need {
        return Err(usage(format!(
            "the load reaches {peak}, which needs at least {need} threads (each is busy at \
             most all of the time); --threads {threads} is too few"
        )));
    }
    if threads > max_threads {
        return Err(usage(format!(
            "{threads} worker threads asked for (the load reaches {peak}), more than \
             --max-threads {max_threads} (default: twice the {cpus} CPUs); raise --max-threads \
             if you mean it"
        )));
    }
    let stop = super::stop_flag()?;
    let mut log = open_log(
        common.log.as_deref(),
        b"time,target_load,target_cpu_s,delivered_cpu_s,error_cpu_s\n",
    )?;
    let cfg = LoadConfig {
        slice,
        slices: n,
        threads,
        mode: common.mode,
        seed: common.seed,
        phase: common.phase,
    };
    eprintln!(
        "vmmon load: {what}: {n} slices of {} s on {threads} thread(s), {:?} mode",
        slice.as_secs_f64(),
        common.mode
    );
    let bar = super::stderr_is_terminal().then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} slices  target {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(n as u64).with_style(style)
    });
    let mut log_error = None;
    let mut line = String::new();
    let summary = load::run(&pattern, &cfg, &stop, &mut |l| {
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(format!("{:.2}", l.target));
        }
        if let Some(f) = log.as_mut()
            && log_error.is_none()
        {
            use std::fmt::Write as _;
            line.clear();
            let _ = writeln!(
                line,
                "{:.6},{},{:.6},{:.6},{:.6}",
                l.time,
                l.target,
                l.target_cpu_s,
                l.delivered_cpu_s,
                l.delivered_cpu_s - l.target_cpu_s
            );
            log_error = f.write_row(line.as_bytes()).err();
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // A relative error means nothing for a zero target: the difference is given instead.
    let off = if summary.target_cpu_s > 0.0 {
        format!(
            "{:+.1}%",
            100.0 * (summary.delivered_cpu_s - summary.target_cpu_s) / summary.target_cpu_s
        )
    } else {
        format!(
            "{:+.3} CPU s",
            summary.delivered_cpu_s - summary.target_cpu_s
        )
    };
    eprintln!(
        "vmmon load: target {:.3} CPU s, delivered {:.3} CPU s ({off}), wall {:.3} s \
         (nominal {:.3} s)",
        summary.target_cpu_s, summary.delivered_cpu_s, summary.wall_s, summary.nominal_s
    );
    if let Some(p) = &common.json {
        super::write_json(p, &summary)?;
    }
    if let Some(e) = log_error {
        return Err(anyhow::Error::new(e).context("cannot write the --log file"));
    }
    Ok(summary.signal.map_or(0, |s| 128 + s))
}

fn play_io(
    pattern: Pattern,
    slice: Duration,
    n: usize,
    common: Common,
    what: String,
) -> anyhow::Result<i32> {
    if common.threads.is_some() || common.mode != Mode::Time {
        return Err(usage(
            "--threads and --mode are for CPU load; disk and net load is one paced writer".into(),
        ));
    }
    let mut sink = match common.kind {
        Kind::Disk => {
            let dir = common.dir.clone().unwrap_or_else(std::env::temp_dir);
            load::io::Sink::disk(&dir, common.file_size as u64).with_context(|| {
                format!("cannot create the disk load's file in {}", dir.display())
            })?
        }
        _ => {
            let target = common.target.as_deref().ok_or_else(|| {
                usage("--kind net needs --target HOST:PORT (where the UDP datagrams go)".into())
            })?;
            load::io::Sink::net(target).map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    usage(format!("--target {target}: give HOST:PORT"))
                } else {
                    anyhow::Error::new(e).context(format!("cannot send to {target}"))
                }
            })?
        }
    };
    let stop = super::stop_flag()?;
    let mut log = open_log(
        common.log.as_deref(),
        b"time,target_load,target_bytes,done_bytes,error_bytes\n",
    )?;
    eprintln!(
        "vmmon load: {what} as {:?} load, {} bytes/s per unit: {n} slices of {} s",
        common.kind,
        common.scale,
        slice.as_secs_f64()
    );
    let mut log_error = None;
    let summary = load::io::run(
        &pattern,
        slice,
        n,
        common.scale,
        &mut sink,
        &stop,
        &mut |l| {
            if let Some(f) = log.as_mut()
                && log_error.is_none()
            {
                let line = format!(
                    "{:.6},{},{},{},{}\n",
                    l.time,
                    l.target,
                    l.target_bytes,
                    l.done_bytes,
                    l.done_bytes as i64 - l.target_bytes as i64
                );
                log_error = f.write_row(line.as_bytes()).err();
            }
        },
    )
    .context("the I/O load failed")?;
    drop(sink);
    eprintln!(
        "vmmon load: target {} bytes, done {} bytes, wall {:.3} s",
        summary.target_bytes, summary.done_bytes, summary.wall_s
    );
    if let Some(p) = &common.json {
        super::write_json(p, &summary)?;
    }
    if let Some(e) = log_error {
        return Err(anyhow::Error::new(e).context("cannot write the --log file"));
    }
    Ok(summary.signal.map_or(0, |s| 128 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_si_and_binary_units() {
        for (text, want) in [
            ("4096", 4096.0),
            ("10M", 1e7),
            ("512k", 512e3),
            ("1.5KB", 1500.0),
            ("1Gi", 1073741824.0),
            ("256MiB", 268435456.0),
            (" 7 B ", 7.0),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        for bad in ["", "x", "10Q", "0", "-5M", "1e400k"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        // Past f64's range: a number, but not a finite count.
        assert!(parse_bytes(&format!("1{}", "0".repeat(400))).is_err());
        assert_eq!(parse_byte_count("32Gi"), Ok(32 << 30));
        assert_eq!(parse_byte_count("500M"), Ok(500_000_000));
        // Whole counts written with decimals, which f64 would miss by a hair.
        for (text, want) in [
            ("2.01M", 2_010_000),
            ("1.07G", 1_070_000_000),
            ("2.01k", 2010),
            ("0.5Ki", 512),
            (".5k", 500),
            ("7.", 7),
            ("1.500000000000000000000000000000000000M", 1_500_000),
        ] {
            assert_eq!(parse_byte_count(text), Ok(want), "{text}");
        }
        assert_eq!(
            parse_byte_count("18446744073709551615"),
            Ok(u64::MAX),
            "a plain integer is read exactly"
        );
        for (bad, why) in [
            ("0", "positive"),
            ("0.0k", "positive"),
            ("0.5", "whole"),
            ("1.0001k", "whole"),
            ("1.0000000000000000000000000000001", "whole"),
            ("0.99999999999999999999999999999999Gi", "whole"),
            ("18446744073709551616", "2^64"),
            ("20000000000000000000B", "2^64"),
            ("17179869184Gi", "2^64"),
            ("1e3", "unknown unit"),
            ("16Gi Gi", "unknown unit"),
            ("-5M", "not a byte count"),
            ("1.2.3k", "not a byte count"),
            (".", "not a byte count"),
            ("", "not a byte count"),
        ] {
            let e = parse_byte_count(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
