//! The collector: samples `/proc` at a fixed rate and writes one CSV row per interval.
//!
//! Data flows one way: [`sources`] read raw counters into a [`Sample`], the [`Schema`]
//! derives a row of cells from two samples, and the row goes to a [`RowSink`] in one write.
//! Everything that depends on the machine is behind `proc_root`/`sys_root`, so tests point it
//! at captured trees, and the clock is read only in [`Recorder::run`].

#[doc(hidden)]
pub mod fixture;
pub mod procfile;
pub mod schedule;
pub mod schema;
pub mod select;
pub mod sources;
pub mod vms;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::trace::{self, ColumnInfo, Kind, Metadata, RowSink, TimeFormat};
pub use schedule::{Lateness, LatenessSummary, Schedule, monotonic, realtime, sleep_until};
pub use schema::{Cell, Sample, Schema};
pub use select::DeviceFilter;
pub use sources::{Notes, SourceOptions};
pub use vms::{VmInfo, VmSelect, VmView};

/// Lowest accepted sampling rate (one sample every 100 s).
pub const MIN_RATE_HZ: f64 = 0.01;
/// Highest accepted sampling rate: above it a sample's own cost fills the interval.
pub const MAX_RATE_HZ: f64 = 1000.0;

/// Columns added by `--clock-ref`: reference minus local clock, the round trip, and the bound
/// (±) on the offset; filled on the row after each burst's result arrives, empty otherwise.
pub const CLOCK_COLUMNS: [&str; 3] = ["clock_offset_s", "clock_rtt_s", "clock_bound_s"];

/// A mistake in what the user asked for (exit code 2), as opposed to a failure while running.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Everything that defines a recording.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Samples per second.
    pub rate_hz: f64,
    /// Total duration; `None`: until stopped.
    pub period: Option<Duration>,
    /// Stop after this many data rows.
    pub max_rows: Option<u64>,
    /// Source name (for the metadata and later `align`).
    pub name: Option<String>,
    /// Write cumulative counters instead of per-interval rates.
    pub raw: bool,
    /// Format of the `time` column.
    pub time_format: TimeFormat,
    /// Root of the proc tree (normally `/proc`).
    pub proc_root: PathBuf,
    /// Root of the sys tree (normally `/sys`).
    pub sys_root: PathBuf,
    /// Per-CPU columns and device selection.
    pub sources: SourceOptions,
    /// Reference clock (HOST:PORT of `vmmon clock serve` or NTP) probed in the background.
    pub clock_ref: Option<String>,
    /// Time between reference-clock bursts.
    pub clock_interval: Duration,
    /// The per-VM view (`--vms`): which processes are VMs.
    pub vms: Option<VmSelect>,
    /// Row layout: one wide row per sample, or (time, vm, metric, value) rows.
    pub layout: Layout,
}

/// How samples become CSV rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One row per sample, one column per metric (`vm1.vcpu_cpu_pct`, …).
    #[default]
    #[value(name = "csv")]
    #[serde(rename = "csv")]
    Wide,
    /// One row per sample, VM and metric: `time,vm,metric,value` (vm empty for the host), for
    /// VMs that come and go.
    Long,
    /// The Prometheus/OpenMetrics text exposition of the raw counters, one timestamped block
    /// per sample and `# EOF` at the end, for backfilling Prometheus from a file (implies raw).
    #[value(name = "openmetrics")]
    #[serde(rename = "openmetrics")]
    OpenMetrics,
    /// Apache Parquet (`-o FILE` only; needs the `parquet` cargo feature): the wide layout's
    /// columns, typed, written in row groups (docs/fleet.md).
    Parquet,
}

/// Header of the long layout.
pub const LONG_HEADER: &str = "time,vm,metric,value\n";

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            rate_hz: 1.0,
            period: None,
            max_rows: None,
            name: None,
            raw: false,
            time_format: TimeFormat::Unix,
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            sources: SourceOptions::default(),
            clock_ref: None,
            clock_interval: Duration::from_secs(10),
            vms: None,
            layout: Layout::Wide,
        }
    }
}

impl RecordConfig {
    /// Checks the rate and duration; the message says what is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), UsageError> {
        let r = self.rate_hz;
        if !r.is_finite() || !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&r) {
            return Err(UsageError(format!(
                "invalid rate {} Hz: it must be a number from {MIN_RATE_HZ} to {MAX_RATE_HZ}",
                crate::trace::shown(r)
            )));
        }
        if let Some(p) = self.period
            && p < self.interval()
        {
            return Err(UsageError(format!(
                "period {} s is shorter than one sampling interval ({} s at {r} Hz)",
                p.as_secs_f64(),
                self.interval().as_secs_f64()
            )));
        }
        if !(0.1..=3600.0).contains(&self.clock_interval.as_secs_f64()) {
            return Err(UsageError(format!(
                "--clock-interval {} s: give 0.1 to 3600 seconds",
                self.clock_interval.as_secs_f64()
            )));
        }
        if self.max_rows == Some(0) {
            return Err(UsageError("--max must be at least 1".into()));
        }
        Ok(())
    }

    /// Time between samples.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate_hz)
    }

    /// Data rows the run will write when bounded, for a progress bar.
    pub fn expected_rows(&self) -> Option<u64> {
        let by_period = self.period.map(|p| self.last_slot(p) + u64::from(self.raw));
        match (by_period, self.max_rows) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Index of the last slot within `period` (a tiny tolerance absorbs float error in 1/rate).
    fn last_slot(&self, period: Duration) -> u64 {
        (period.as_secs_f64() * self.rate_hz + 1e-9).floor() as u64
    }
}

/// How a run ended and how well it kept time.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Data rows written.
    pub rows: u64,
    /// Slots skipped because the recorder fell behind.
    pub missed_slots: u64,
    /// Sampling lateness.
    pub lateness: LatenessSummary,
    /// The signal that stopped the run, if any.
    pub signal: Option<i32>,
    /// Wall-clock end.
    pub end_wall: Duration,
    /// The write error that ended the run early, if any (the rows before it are intact).
    pub error: Option<std::io::Error>,
    /// What the reference-clock probing saw, with `--clock-ref`.
    pub clock_ref: Option<crate::clock::RefSummary>,
    /// Every VM seen during the run, with `--vms`.
    pub vms: Vec<VmInfo>,
}

/// A configured recorder: its sources are open and its columns fixed.
pub struct Recorder {
    config: RecordConfig,
    schema: Schema,
    sources: Vec<Box<dyn sources::Source>>,
    notes: Notes,
    buf: Vec<u8>,
    clock: Option<crate::clock::Prober>,
    vms: Option<VmView>,
    exposition: Option<crate::export::openmetrics::Exposition>,
}

impl Recorder {
    /// Opens every source; fails (naming the file) if a required `/proc` file is unreadable.
    pub fn new(mut config: RecordConfig) -> anyhow::Result<Self> {
        config.validate()?;
        // The exposition is of cumulative counters: Prometheus computes the rates.
        if config.layout == Layout::OpenMetrics {
            config.raw = true;
        }
        let mut builder = schema::SchemaBuilder::new(config.raw);
        let mut notes = Notes::default();
        let srcs = sources::build_sources(
            &config.proc_root,
            &config.sys_root,
            &config.sources,
            &mut builder,
            &mut notes,
        )?;
        let vms = match &config.vms {
            None => None,
            Some(select) => Some(VmView::new(
                &config.proc_root,
                select.clone(),
                // VMs that come and go: per-VM rows rather than columns fixed at the start
                // (Parquet has the wide layout's columns).
                matches!(config.layout, Layout::Long | Layout::OpenMetrics),
                config.rate_hz,
                &mut builder,
                &mut notes,
            )?),
        };
        let clock = match &config.clock_ref {
            None => None,
            Some(server) => {
                let probe = crate::clock::ProbeConfig {
                    burst: 8,
                    timeout: Duration::from_millis(250),
                };
                Some(
                    crate::clock::Prober::connect(server, probe).map_err(|e| match e {
                        crate::clock::probe::ProbeError::Resolve(_) => {
                            anyhow::Error::new(UsageError(format!("--clock-ref: {e}")))
                        }
                        other => anyhow::Error::new(other).context("--clock-ref"),
                    })?,
                )
            }
        };
        let schema = builder.finish();
        let exposition = (config.layout == Layout::OpenMetrics).then(|| {
            // SAFETY: sysconf has no preconditions.
            let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            let vm_columns: &[schema::Column] = match &vms {
                Some(v) => v.long_columns(),
                None => &[],
            };
            crate::export::openmetrics::Exposition::new(
                &schema.columns,
                vm_columns,
                &schema.devices,
                ticks,
            )
        });
        Ok(Recorder {
            config,
            schema,
            sources: srcs,
            notes,
            buf: Vec::with_capacity(16 * 1024),
            clock,
            vms,
            exposition,
        })
    }

    /// The exposition of this recording's metrics (with [`Layout::OpenMetrics`]).
    pub fn exposition(&self) -> Option<&crate::export::openmetrics::Exposition> {
        self.exposition.as_ref()
    }

    /// The host sources that could not be read in the latest sample (empty when it is whole).
    pub fn read_failures(&self) -> &[String] {
        self.notes.failures()
    }

    /// Each VM's cells for the latest sample, in the per-VM column order (not the wide layout).
    pub fn vm_rows(&self, out: &mut Vec<(String, Vec<Cell>)>) {
        match &self.vms {
            Some(v) => v.long_rows(out),
            None => out.clear(),
        }
    }

    /// The recording's columns.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The configuration in force.
    pub fn config(&self) -> &RecordConfig {
        &self.config
    }

    /// Every CSV column, `time` and `elapsed` first.
    pub fn columns(&self) -> Vec<ColumnInfo> {
        let time = |name: &str, unit: &str| ColumnInfo {
            name: name.into(),
            kind: Kind::Time,
            unit: unit.into(),
        };
        let mut cols = vec![time("time", "s"), time("elapsed", "s")];
        cols.extend(self.schema.columns.iter().map(|c| ColumnInfo {
            name: c.name.clone(),
            kind: c.kind,
            unit: c.unit.clone(),
        }));
        if self.config.clock_ref.is_some() {
            for name in CLOCK_COLUMNS {
                cols.push(ColumnInfo {
                    name: name.into(),
                    kind: Kind::Gauge,
                    unit: "s".into(),
                });
            }
        }
        cols
    }

    /// The CSV header line.
    pub fn header(&self) -> String {
        match self.config.layout {
            Layout::Long => return LONG_HEADER.to_string(),
            // Each block carries its own metadata lines.
            Layout::OpenMetrics => return String::new(),
            Layout::Wide | Layout::Parquet => {}
        }
        let names: Vec<String> = self.columns().into_iter().map(|c| c.name).collect();
        names.join(",") + "\n"
    }

    /// Reads every source into `sample` (its times are the caller's).
    pub fn read(&mut self, sample: &mut Sample) {
        self.notes.start_sample();
        for s in &mut self.sources {
            s.read(&mut self.buf, &mut sample.values, &mut self.notes);
        }
        if let Some(v) = &mut self.vms {
            v.read(
                &mut self.buf,
                sample.mono,
                &mut sample.values,
                &mut self.notes,
            );
        }
    }

    /// The VMs seen so far (with `--vms`).
    pub fn vms(&self) -> Vec<VmInfo> {
        self.vms.as_ref().map(VmView::info).unwrap_or_default()
    }

    /// Messages for the user queued since the last call (new devices, unreadable files).
    pub fn take_notes(&mut self) -> Vec<String> {
        self.notes.drain()
    }

    /// Metadata describing this recording before it runs (`status` = `running`).
    pub fn metadata(&self, start_wall: Duration, command: Vec<String>) -> Metadata {
        let read = |p: &str| procfile::read_trimmed(&self.config.proc_root.join(p));
        let mut start_iso = String::new();
        trace::push_time(&mut start_iso, start_wall, TimeFormat::Iso);
        Metadata {
            vmmon_version: env!("CARGO_PKG_VERSION").to_string(),
            name: self.config.name.clone(),
            host: read("sys/kernel/hostname"),
            kernel: read("sys/kernel/osrelease"),
            boot_id: read("sys/kernel/random/boot_id"),
            clock_source: procfile::read_trimmed(
                &self
                    .config
                    .sys_root
                    .join("devices/system/clocksource/clocksource0/current_clocksource"),
            ),
            // SAFETY: sysconf has no preconditions.
            ticks_per_second: unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64,
            cpus: self.schema.cpus,
            rate_hz: self.config.rate_hz,
            mode: if self.config.raw { "raw" } else { "rates" }.into(),
            time_format: self.config.time_format,
            start_unix: start_wall.as_secs_f64(),
            start_iso,
            end_unix: None,
            status: "running".into(),
            rows: 0,
            missed_slots: 0,
            lateness: LatenessSummary::default(),
            devices: self.schema.devices.clone(),
            columns: self.columns(),
            proc_root: self.config.proc_root.display().to_string(),
            command,
            clock_ref: None,
            vms: self.vms(),
            layout: self.config.layout,
        }
    }

    /// Formats one row (time, elapsed, cells, and with `--clock-ref` the burst result that
    /// arrived since the previous row, if any) into `out`.
    pub fn format_row(
        &self,
        sample: &Sample,
        cells: &[Cell],
        clock: Option<&crate::clock::Measurement>,
        out: &mut String,
    ) {
        use std::fmt::Write as _;
        out.clear();
        if let Some(exp) = &self.exposition {
            let mut vms = Vec::new();
            self.vm_rows(&mut vms);
            let format = crate::export::openmetrics::Format::OpenMetrics;
            exp.render(cells, &vms, format, Some(sample.wall), false, out);
            return;
        }
        trace::push_time(out, sample.wall, self.config.time_format);
        out.push(',');
        trace::push_seconds(out, sample.mono);
        if self.config.layout == Layout::Long {
            self.format_long(sample, cells, clock, out);
            return;
        }
        for cell in cells {
            out.push(',');
            push_cell(out, *cell);
        }
        if self.config.clock_ref.is_some() {
            let _ = match clock {
                Some(m) => write!(out, ",{:.9},{:.9},{:.9}", m.offset, m.rtt, m.bound),
                None => write!(out, ",,,"),
            };
        }
        out.push('\n');
    }

    /// The long layout: one `time,vm,metric,value` line per host column and per VM column.
    fn format_long(
        &self,
        sample: &Sample,
        cells: &[Cell],
        clock: Option<&crate::clock::Measurement>,
        out: &mut String,
    ) {
        let mut time = String::with_capacity(24);
        trace::push_time(&mut time, sample.wall, self.config.time_format);
        out.clear();
        let mut line = |vm: &str, metric: &str, cell: Cell| {
            out.push_str(&time);
            out.push(',');
            out.push_str(vm);
            out.push(',');
            out.push_str(metric);
            out.push(',');
            push_cell(out, cell);
            out.push('\n');
        };
        line("", "elapsed", Cell::Num(sample.mono.as_secs_f64()));
        for (col, cell) in self.schema.columns.iter().zip(cells) {
            line("", &col.name, *cell);
        }
        if let Some(m) = clock {
            for (name, v) in CLOCK_COLUMNS.iter().zip([m.offset, m.rtt, m.bound]) {
                line("", name, Cell::Num(v));
            }
        }
        if let Some(view) = &self.vms {
            let mut rows = Vec::new();
            view.long_rows(&mut rows);
            for (vm, vm_cells) in &rows {
                for (col, cell) in view.long_columns().iter().zip(vm_cells) {
                    line(vm, &col.name, *cell);
                }
            }
        }
    }

    /// Records until the period or row limit is reached or `stop` becomes non-zero (the
    /// signal number) or a write fails (returned in [`RunSummary::error`], so that how far
    /// the run got is still known). Writes the header first. `on_row` sees the row count after
    /// each row, `on_note` each message for the user.
    pub fn run(
        &mut self,
        sink: &mut dyn RowSink,
        stop: &AtomicUsize,
        on_row: &mut dyn FnMut(u64),
        on_note: &mut dyn FnMut(String),
    ) -> anyhow::Result<RunSummary> {
        for n in self.take_notes() {
            on_note(n);
        }
        // A typed sink (Parquet) has its schema already; it takes no header line.
        let header = self.header();
        let mut error = if sink.typed() || header.is_empty() {
            None
        } else {
            sink.write_row(header.as_bytes()).err()
        };
        schedule::tighten_timer_slack();
        let interval = self.config.interval();
        let start = monotonic();
        let mut schedule = Schedule::new(start, interval);
        let last_slot = self.config.period.map(|p| self.config.last_slot(p));
        let mut lateness = Lateness::default();
        let (mut prev, mut cur) = (self.schema.new_sample(), self.schema.new_sample());
        let mut cells = Vec::with_capacity(self.schema.columns.len());
        let mut line = String::with_capacity(4096);
        let mut rows = 0u64;
        let mut have_prev = false;
        let background = self
            .clock
            .take()
            .map(|p| crate::clock::Background::start(p, self.config.clock_interval));
        while error.is_none() {
            if self.config.max_rows.is_some_and(|m| rows >= m) {
                break;
            }
            let Some((slot, deadline)) = schedule.wait(stop) else {
                break;
            };
            if last_slot.is_some_and(|last| slot > last) {
                break;
            }
            let now = monotonic();
            lateness.record(now.saturating_sub(deadline));
            cur.mono = now - start;
            cur.wall = realtime();
            self.read(&mut cur);
            if self.config.raw || have_prev {
                self.schema.derive(&prev, &cur, &mut cells);
                let clock = background.as_ref().and_then(|b| b.take());
                let written = if sink.typed() {
                    sink.write_cells(&trace::CellRow {
                        wall: cur.wall,
                        elapsed: cur.mono,
                        cells: &cells,
                        clock: clock.as_ref(),
                    })
                } else {
                    self.format_row(&cur, &cells, clock.as_ref(), &mut line);
                    sink.write_row(line.as_bytes())
                };
                if let Err(e) = written {
                    error = Some(e);
                    break;
                }
                rows += 1;
                on_row(rows);
            }
            have_prev = true;
            std::mem::swap(&mut prev, &mut cur);
            for n in self.take_notes() {
                on_note(n);
            }
            if let Some(e) = background.as_ref().and_then(|b| b.take_error()) {
                on_note(format!("vmmon: --clock-ref: {e} (still trying)"));
            }
        }
        // OpenMetrics ends with `# EOF`: a file without it was cut short.
        if error.is_none() && self.config.layout == Layout::OpenMetrics {
            error = sink.write_row(b"# EOF\n").err();
        }
        let signal = match stop.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
        };
        Ok(RunSummary {
            rows,
            missed_slots: schedule.missed(),
            lateness: lateness.summary(),
            signal,
            end_wall: realtime(),
            error,
            clock_ref: background.map(crate::clock::Background::finish),
            vms: self.vms(),
        })
    }
}

/// Appends one cell: empty, an exact integer, or the shortest decimal that reads back exactly.
fn push_cell(out: &mut String, cell: Cell) {
    use std::fmt::Write as _;
    let _ = match cell {
        Cell::Empty => Ok(()),
        Cell::Int(v) => write!(out, "{v}"),
        Cell::Num(v) => write!(out, "{v}"),
    };
}

impl RunSummary {
    /// Copies how the run went into its metadata.
    pub fn apply(&self, meta: &mut Metadata, status: &str) {
        meta.status = status.into();
        meta.rows = self.rows;
        meta.missed_slots = self.missed_slots;
        meta.lateness = self.lateness;
        meta.end_unix = Some(self.end_wall.as_secs_f64());
        meta.clock_ref = self.clock_ref.clone();
        if !self.vms.is_empty() {
            meta.vms = self.vms.clone();
        }
    }
}
