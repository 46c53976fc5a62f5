//! `vmmon record`: options → [`RecordConfig`], output file and sidecar, signals, progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::record::{
    DeviceFilter, Layout, RecordConfig, Recorder, SourceOptions, UsageError, VmSelect,
};
use crate::trace::{self, FileRows, RowSink, StdoutRows, TimeFormat};

/// Options of `vmmon record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Samples per second (0.01 to 1000); legacy `-rate`.
    #[arg(
        short = 'r',
        long,
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    rate: f64,

    /// Total duration: seconds, or with a unit (500ms, 10s, 5m, 2h); legacy `-period`.
    /// Default: until interrupted.
    #[arg(short = 'p', long, value_parser = parse_duration, allow_negative_numbers = true)]
    period: Option<Duration>,

    /// Stop after N data rows; legacy `-max`.
    #[arg(short = 'n', long, value_name = "N")]
    max: Option<u64>,

    /// Source name for the metadata (host, vm1, …); legacy `-name`.
    #[arg(long, allow_hyphen_values = true)]
    name: Option<String>,

    /// Format of the `time` column (always written); legacy `-timestamp` takes no value.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "unix", value_name = "FORMAT")]
    timestamp: Option<TimeFormat>,

    /// Write rows to FILE (and metadata to FILE.meta.json) instead of stdout; `-` is stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Write the JSON metadata here (default: next to -o FILE; none for stdout).
    #[arg(long, value_name = "FILE")]
    meta: Option<PathBuf>,

    /// Write cumulative kernel counters (`*_total`) instead of per-interval rates.
    #[arg(long)]
    raw: bool,

    /// Add CPU columns for each CPU (`cpu0_user_pct`, …).
    #[arg(long)]
    per_cpu: bool,

    /// Record partitions as well as whole disks.
    #[arg(long)]
    partitions: bool,

    /// Only these block devices and interfaces (comma-separated; `*` and `?` wildcards).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    devices: Vec<String>,

    /// Leave out these block devices and interfaces (comma-separated; wildcards).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    exclude: Vec<String>,

    /// Probe a reference clock (HOST:PORT of `vmmon clock serve` on the host, or any NTP
    /// server) in the background and add clock_offset_s, clock_rtt_s and clock_bound_s
    /// columns (reference − local; filled on the row after each burst), for `vmmon align`.
    #[arg(long, value_name = "HOST:PORT")]
    clock_ref: Option<String>,

    /// Time between reference-clock bursts (`10`, `500ms`, `1m`).
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    clock_interval: Duration,

    #[command(flatten)]
    vms: VmArgs,

    /// Row layout: `csv` (one wide row per sample), `long` (time,vm,metric,value rows, for
    /// VMs that come and go; the host's metrics have an empty vm), or `openmetrics` (the
    /// cumulative counters as timestamped OpenMetrics blocks, ending in `# EOF`, for
    /// `promtool tsdb create-blocks-from openmetrics`; implies --raw; see docs/fleet.md), or `parquet`
    /// (the wide columns, typed, in row groups; needs -o FILE).
    #[arg(long, value_enum, default_value = "csv")]
    format: Layout,

    /// With --format parquet: rows per row group (default: one minute of rows). A completed
    /// row group is on disk under a valid footer, so a SIGKILL loses at most the rows of the
    /// group in progress.
    #[arg(long, value_name = "N")]
    row_group: Option<usize>,

    /// Read proc files under this directory (for captured trees).
    #[arg(long, default_value = "/proc", hide = true)]
    proc_root: PathBuf,

    /// Read sys files under this directory.
    #[arg(long, default_value = "/sys", hide = true)]
    sys_root: PathBuf,
}

/// The per-VM view's options, shared by `record` and `serve`.
#[derive(Debug, Args)]
pub struct VmArgs {
    /// Add the host's view of each VM: vCPU, emulator and vhost CPU, vCPU run delay, tap
    /// traffic and disk bytes per VM (`vm1.vcpu_cpu_pct`, or series labelled `vm="vm1"`), and
    /// the host's shared I/O pool (softirq, ksoftirqd, kernel I/O threads) for `vmmon charge`.
    /// VMs are qemu processes unless --vm-pid or --vm-match say otherwise.
    #[arg(long)]
    vms: bool,

    /// These processes are the VMs (comma-separated pids; implies --vms).
    #[arg(long, value_delimiter = ',', value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    vm_pid: Vec<u32>,

    /// Processes whose name (`comm`) matches this regular expression are VMs (implies
    /// --vms), e.g. `^(firecracker|cloud-hyperviso)`.
    #[arg(long, value_name = "REGEX")]
    vm_match: Option<String>,
}

impl VmArgs {
    /// Which processes are VMs, or `None` without any VM option; a bad regex is a usage error.
    pub fn select(&self) -> Result<Option<VmSelect>, crate::record::UsageError> {
        let matcher = match &self.vm_match {
            None => None,
            Some(re) => Some(
                regex::Regex::new(re)
                    .map_err(|e| crate::record::UsageError(format!("--vm-match '{re}': {e}")))?,
            ),
        };
        Ok(
            (self.vms || !self.vm_pid.is_empty() || matcher.is_some()).then(|| VmSelect {
                pids: self.vm_pid.clone(),
                matcher,
            }),
        )
    }
}

/// Parses `10`, `2.5`, `500ms`, `10s`, `5m`, `2h` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs = parse_secs(s)?;
    if secs <= 0.0 {
        return Err(format!("'{}' must be a positive duration", s.trim()));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{}': {e}", s.trim()))
}

/// Like [`parse_duration`], and zero too: a place (an offset from a start), not a span.
pub fn parse_offset(s: &str) -> Result<Duration, String> {
    let secs = parse_secs(s)?;
    if secs < 0.0 {
        return Err(format!("'{}' must be a duration ≥ 0", s.trim()));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{}': {e}", s.trim()))
}

/// Seconds, of either sign, from a number with an optional unit.
fn parse_secs(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 600, 10s, 500ms, 5m, 2h)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{s}' (use ms, s, m or h)"
            ));
        }
    };
    let secs = v * scale;
    if !secs.is_finite() {
        return Err(format!("'{s}' must be a finite duration"));
    }
    Ok(secs)
}

impl RecordArgs {
    fn config(&self) -> Result<RecordConfig, crate::record::UsageError> {
        let vms = self.vms.select()?;
        Ok(RecordConfig {
            rate_hz: self.rate,
            period: self.period,
            max_rows: self.max,
            name: self.name.clone(),
            // The exposition is of cumulative counters (Prometheus computes rates).
            raw: self.raw || self.format == crate::record::Layout::OpenMetrics,
            time_format: self.timestamp.unwrap_or_default(),
            proc_root: self.proc_root.clone(),
            sys_root: self.sys_root.clone(),
            clock_ref: self.clock_ref.clone(),
            clock_interval: self.clock_interval,
            sources: SourceOptions {
                per_cpu: self.per_cpu,
                filter: DeviceFilter {
                    include: self.devices.clone(),
                    exclude: self.exclude.clone(),
                    partitions: self.partitions,
                },
            },
            vms,
            layout: self.format,
        })
    }
}

/// The Parquet sink for `path`, with `row_group` rows per group (default: a minute's worth).
#[cfg(feature = "parquet")]
fn parquet_sink(
    path: &std::path::Path,
    recorder: &Recorder,
    row_group: Option<usize>,
    meta: &trace::Metadata,
) -> anyhow::Result<Box<dyn RowSink>> {
    use crate::export::parquet::{ParquetRows, default_row_group};
    let n = row_group.unwrap_or_else(|| default_row_group(recorder.config().rate_hz));
    Ok(Box::new(ParquetRows::create(
        path,
        &recorder.columns(),
        n,
        meta,
    )?))
}

/// Without the `parquet` feature there is no Parquet sink (refused as a usage error earlier).
#[cfg(not(feature = "parquet"))]
fn parquet_sink(
    _path: &std::path::Path,
    _recorder: &Recorder,
    _row_group: Option<usize>,
    _meta: &trace::Metadata,
) -> anyhow::Result<Box<dyn RowSink>> {
    Err(UsageError("--format parquet: built without the `parquet` feature".into()).into())
}

/// Runs `vmmon record`; returns the exit code (128+signal after a clean stop).
pub fn run(args: RecordArgs, command: Vec<String>) -> anyhow::Result<i32> {
    let config = args.config()?;
    config.validate().map_err(anyhow::Error::new)?;
    let stop = super::stop_flag()?;
    let to_stdout = args.output.as_ref().is_none_or(|p| p.as_os_str() == "-");
    let parquet = args.format == Layout::Parquet;
    if parquet && to_stdout {
        return Err(UsageError(
            "--format parquet needs -o FILE: Parquet is binary and its footer is rewritten \
             after each row group"
                .into(),
        )
        .into());
    }
    if args.row_group.is_some() && !parquet {
        return Err(UsageError("--row-group applies to --format parquet only".into()).into());
    }
    if args.row_group == Some(0) {
        return Err(UsageError("--row-group must be at least 1".into()).into());
    }
    if parquet && !cfg!(feature = "parquet") {
        return Err(UsageError(
            "--format parquet: this vmmon was built without the `parquet` cargo feature \
             (build it with the default features, or with --features parquet)"
                .into(),
        )
        .into());
    }
    super::distinct_outputs(
        ("-o", args.output.as_deref()),
        ("--meta", args.meta.as_deref()),
    )?;
    let mut recorder = Recorder::new(config)?;
    let meta_path = args.meta.clone().or_else(|| {
        (!to_stdout)
            .then(|| args.output.as_deref().and_then(trace::default_sidecar))
            .flatten()
    });
    let start_wall = crate::record::realtime();
    let mut meta = recorder.metadata(start_wall, command);
    if !args.devices.is_empty() && meta.devices.values().all(Vec::is_empty) {
        // A typo would otherwise record no device at all, silently.
        eprintln!(
            "vmmon: warning: --devices {}: no block device or interface matches; the trace \
             has no disk or network columns",
            args.devices.join(",")
        );
    }
    let mut sink: Box<dyn RowSink> = if to_stdout {
        Box::new(StdoutRows)
    } else {
        let path = args.output.as_ref().expect("checked above");
        if parquet {
            parquet_sink(path, &recorder, args.row_group, &meta)?
        } else {
            Box::new(FileRows::create(path)?)
        }
    };
    if let Some(p) = &meta_path
        && let Err(e) = meta.write(p)
    {
        // Nothing was recorded: leave no empty trace behind (a full disk, a bad --meta).
        if let Some(out) = args.output.as_ref().filter(|_| !to_stdout) {
            drop(sink);
            if std::fs::metadata(out).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(out);
            }
        }
        return Err(e);
    }

    let bar = recorder
        .config()
        .expected_rows()
        .filter(|_| super::stderr_is_terminal())
        .map(|n| {
            let style = ProgressStyle::with_template(
                "{spinner} {bar:40} {pos}/{len} rows  {elapsed_precise} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(n).with_style(style)
        });
    let mut on_row = |rows: u64| {
        if let Some(b) = &bar {
            b.set_position(rows);
        }
    };
    let mut on_note = |msg: String| match &bar {
        Some(b) => b.println(&msg),
        None => eprintln!("{msg}"),
    };
    let result = recorder.run(sink.as_mut(), &stop, &mut on_row, &mut on_note);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut summary = result?;
    let mut error = summary.error.take();
    let closed = error
        .as_ref()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
    let status = match (&error, summary.signal) {
        // The reader went away (`| head`): the run ended because its output did.
        (Some(_), _) if closed => "output_closed",
        (Some(_), _) => "failed",
        (None, Some(_)) => "interrupted",
        (None, None) => "complete",
    };
    summary.apply(&mut meta, status);
    // The Parquet footer carries the final metadata; a text sink has nothing to finish.
    if let Err(e) = sink.finish(Some(&meta))
        && error.is_none()
    {
        meta.status = "failed".into();
        error = Some(e);
    }
    if let Some(p) = &meta_path {
        // On a full disk the sidecar may not fit either; the row error is the one to report.
        let written = meta.write(p);
        if error.is_none() {
            written?;
        }
    }
    if let Some(e) = error {
        if closed {
            return Ok(0);
        }
        return Err(e.into());
    }
    if summary.missed_slots > 0 {
        eprintln!(
            "vmmon: warning: {} sampling slot(s) missed: the recorder fell behind by a whole \
             interval (lateness p99 {:.0} µs, max {:.0} µs)",
            summary.missed_slots, summary.lateness.p99_us, summary.lateness.max_us
        );
    }
    Ok(summary.signal.map_or(0, |s| 128 + s))
}
