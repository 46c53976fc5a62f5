//! Traces from several machines on one corrected time grid: one wide table whose columns
//! carry their source's name (`host.cpu_user_pct`, `vm1.cpu_user_pct`).
//!
//! Each source's time is corrected to the reference clock (`t + offset(t)`, from its clock
//! columns, a constant `--offset`, or a lag estimated from two columns), then every column
//! is resampled onto the grid as its kind requires (see [`resample`]). The main pass streams:
//! each source is read once, row by row, and only the two rows around the current grid time
//! are held (plus a bounded look-ahead to the next clock probe), so memory depends on the
//! number of columns, never on the length of the traces.
//! The design and every decision are in docs/align.md.

pub mod lag;
pub mod output;
pub mod records;
pub mod resample;
pub mod source;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::record::UsageError;
use crate::trace::Kind;
use lag::LagEstimate;
use output::{Collect, GridSink};
use resample::{Method, Track};
use source::{OffsetColumn, ReadSpec, SourceReader};

/// Rows read at the start of each source to learn its first time, period and phase.
const PEEK_ROWS: usize = 64;
/// Default `--max-gap`, in periods of the source: one missed sample is bridged, two are not.
pub const MAX_GAP_PERIODS: f64 = 2.5;
/// Default window of the `--lag-from` pre-pass, in samples.
pub const LAG_WINDOW_SAMPLES: usize = 1 << 16;

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg))
}

/// A source on the command line: `NAME=FILE`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceArg {
    /// The prefix of its columns.
    pub name: String,
    /// Its trace.
    pub path: PathBuf,
}

/// Checks a source name: it becomes a column prefix, so no `.`, `,`, `=` or quotes.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['.', ',', '=', '"', ' ', '\n']) {
        return Err(format!(
            "'{name}' cannot name a source: use letters, digits, '_' or '-' (no '.', ',', '=' \
             or spaces), e.g. host=host.csv"
        ));
    }
    Ok(())
}

impl FromStr for SourceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, path) = s.split_once('=').ok_or_else(|| {
            format!("'{s}': a source is written NAME=FILE, e.g. host=host.csv vm1=vm1.csv")
        })?;
        check_name(name)?;
        if path.is_empty() || path == "-" {
            return Err(format!(
                "'{s}': give a file: align reads each source more than once (its start, its \
                 clock column, the lag pre-pass), which standard input cannot do"
            ));
        }
        Ok(SourceArg {
            name: name.to_string(),
            path: PathBuf::from(path),
        })
    }
}

/// A column of a source: `NAME.COLUMN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// The source's name.
    pub source: String,
    /// The column's name in that source's file.
    pub column: String,
}

impl FromStr for ColumnRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('.') {
            Some((src, col)) if !src.is_empty() && !col.is_empty() => Ok(ColumnRef {
                source: src.to_string(),
                column: col.to_string(),
            }),
            _ => Err(format!(
                "'{s}': a column is written SOURCE.COLUMN, e.g. vm1.cpu_user_pct"
            )),
        }
    }
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.source, self.column)
    }
}

/// `--offset NAME=SECONDS|FILE`: a constant, or the offsets of a `vmmon clock probe` CSV.
#[derive(Debug, Clone, PartialEq)]
pub enum OffsetValue {
    /// Seconds added to every time of the source.
    Seconds(f64),
    /// A CSV with `time` and `offset_s` (or `clock_offset_s`), interpolated like clock columns.
    File(PathBuf),
}

/// The largest `--offset` taken, seconds.
const MAX_OFFSET_S: f64 = 4e9;

/// One `--offset` argument.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetArg {
    /// The source corrected.
    pub source: String,
    /// By what.
    pub value: OffsetValue,
}

impl FromStr for OffsetArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, v) = s.split_once('=').ok_or_else(|| {
            format!("'{s}': an offset is written NAME=SECONDS (or NAME=FILE), e.g. vm1=0.25")
        })?;
        let value = match v.trim().parse::<f64>() {
            // Up to 4e9 s either way: a guest whose clock started at 1970 is 1.8e9 s
            // behind, and from 2^33 s (8.6e9) on f64 times are 1.9 µs apart, coarser than the
            // microseconds times are written in.
            Ok(x) if x.abs() <= MAX_OFFSET_S => OffsetValue::Seconds(x),
            Ok(_) => {
                return Err(format!(
                    "'{s}': give an offset of at most {MAX_OFFSET_S:e} seconds either way"
                ));
            }
            Err(_) if Path::new(v).is_file() => OffsetValue::File(PathBuf::from(v)),
            Err(_) => {
                return Err(format!(
                    "'{s}': '{v}' is neither seconds nor an existing file of clock probes"
                ));
            }
        };
        Ok(OffsetArg {
            source: name.to_string(),
            value,
        })
    }
}

/// One `--kind SOURCE.COLUMN=KIND`.
#[derive(Debug, Clone, PartialEq)]
pub struct KindArg {
    /// The column.
    pub column: ColumnRef,
    /// Its kind (`time` drops it).
    pub kind: Kind,
}

impl FromStr for KindArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (c, k) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}': write SOURCE.COLUMN=KIND, e.g. vm1.load=gauge"))?;
        let kind = source::parse_kind(k).ok_or_else(|| {
            format!("'{s}': the kind must be gauge, rate, total or time (not resampled)")
        })?;
        Ok(KindArg {
            column: c.parse()?,
            kind,
        })
    }
}

/// One `--lag-from A.COL,B.COL`: estimate B's correction from these two columns.
#[derive(Debug, Clone, PartialEq)]
pub struct LagArg {
    /// The column that stays put.
    pub fixed: ColumnRef,
    /// The column whose source is corrected.
    pub moved: ColumnRef,
}

impl FromStr for LagArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once(',').ok_or_else(|| {
            format!(
                "'{s}': write --lag-from A.COLUMN,B.COLUMN, e.g. host.cpu_user_pct,vm1.cpu_user_pct"
            )
        })?;
        Ok(LagArg {
            fixed: a.parse()?,
            moved: b.parse()?,
        })
    }
}

/// Everything `align` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The sources; the first owns the grid's phase and, by default, its rate.
    pub sources: Vec<SourceArg>,
    /// Grid rate (default: the first source's).
    pub rate_hz: Option<f64>,
    /// Longest step between rows bridged (default: 2.5 periods of each source).
    pub max_gap_s: Option<f64>,
    /// Constant or file offsets.
    pub offsets: Vec<OffsetArg>,
    /// Lags to estimate.
    pub lag_from: Vec<LagArg>,
    /// Largest lag searched, seconds (default: a quarter of the window).
    pub max_lag_s: Option<f64>,
    /// Length of the lag pre-pass, seconds (default: 65,536 samples).
    pub lag_window_s: Option<f64>,
    /// Kind overrides.
    pub kinds: Vec<KindArg>,
    /// Output only these columns (default: every data column).
    pub columns: Option<Vec<ColumnRef>>,
}

/// An output column.
#[derive(Debug, Clone, Serialize)]
pub struct OutColumn {
    /// `SOURCE.COLUMN`.
    pub name: String,
    /// Its kind (what the resampled value means: the same as the source's).
    pub kind: Kind,
    /// Its unit.
    pub unit: String,
    /// `interpolated`, `interpolated (counter)` or `interval average`.
    pub resampling: &'static str,
}

/// How a source's times are corrected.
#[derive(Debug, Clone, Serialize)]
pub struct Correction {
    /// `none`, `offset`, `clock columns`, `probe file`, plus `+ lag` when a lag was estimated.
    pub method: String,
    /// The time-varying part: where it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_column: Option<String>,
    /// Seconds added on top (`--offset`, or the lag estimate).
    pub constant_s: f64,
    /// Clock probes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<u64>,
    /// Offset at the first and last probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_offsets_s: Option<(f64, f64)>,
    /// Drift between the first and last probe, parts per million (local clock fast: < 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_ppm: Option<f64>,
}

/// A source as planned.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    spec: ReadSpec,
    columns: Vec<OutColumn>,
    methods: Vec<Method>,
    dropped: Vec<String>,
    period: f64,
    period_from: &'static str,
    max_gap: f64,
    lagged: bool,
    first: f64,
}

/// A source in the sidecar.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSummary {
    /// Its name.
    pub name: String,
    /// Its file.
    pub path: String,
    /// Its own period, seconds.
    pub period_s: f64,
    /// `sidecar rate_hz` or `median step`.
    pub period_from: &'static str,
    /// Longest step bridged, seconds.
    pub max_gap_s: f64,
    /// Time correction.
    pub correction: Correction,
    /// Rows read.
    pub rows_read: u64,
    /// Corrected time of its first row, Unix seconds.
    pub first_unix: f64,
    /// Columns read but not resampled (times, clock columns).
    pub dropped_columns: Vec<String>,
    /// Empty cells written for this source.
    pub empty_cells: u64,
}

/// A `--lag-from` estimate in the sidecar.
#[derive(Debug, Clone, Serialize)]
pub struct LagSummary {
    /// The column that stayed put.
    pub fixed: String,
    /// The column whose source was corrected.
    pub moved: String,
    /// The estimate.
    #[serde(flatten)]
    pub estimate: LagEstimate,
    /// Pre-pass window, seconds from its start.
    pub window_s: f64,
}

/// The sidecar of an aligned file: what was done.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// Version of vmmon.
    pub vmmon_version: String,
    /// `complete` or `failed`.
    pub status: String,
    /// The grid's rate.
    pub rate_hz: f64,
    /// Format of `time`.
    pub time_format: &'static str,
    /// The source owning the grid's phase.
    pub reference: String,
    /// First grid time, Unix seconds.
    pub start_unix: Option<f64>,
    /// Last grid time, Unix seconds.
    pub end_unix: Option<f64>,
    /// Data rows written.
    pub rows: u64,
    /// Sources, in order.
    pub sources: Vec<SourceSummary>,
    /// `--lag-from` estimates.
    pub lag_estimates: Vec<LagSummary>,
    /// Every column of the CSV, in order.
    pub columns: Vec<OutColumn>,
    /// The command line.
    pub command: Vec<String>,
}

/// A validated plan: sources opened and understood, corrections and grid fixed.
#[derive(Debug, Clone)]
pub struct Plan {
    origin: i64,
    sources: Vec<Planned>,
    rate_hz: f64,
    phase: f64,
    k0: i64,
    lags: Vec<LagSummary>,
}

/// What the main pass did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Rows written.
    pub rows: u64,
    /// First and last grid time, Unix microseconds.
    pub span_us: Option<(i64, i64)>,
    /// Per source, in order.
    pub sources: Vec<SourceRun>,
}

/// What the main pass read from one source.
#[derive(Debug, Clone, Copy)]
pub struct SourceRun {
    /// Rows read.
    pub rows: u64,
    /// Empty cells written.
    pub empty: u64,
    /// Clock probes: how many, and the first and last.
    pub clock: Option<(u64, Probe, Probe)>,
}

/// A clock probe: local time (seconds since the origin) and the offset measured then.
pub type Probe = (f64, f64);

/// The first row's time of a file, Unix seconds.
fn first_time(path: &Path) -> anyhow::Result<f64> {
    let header = source::read_header(path)?;
    let ti = header
        .iter()
        .position(|h| h == "time")
        .with_context(|| no_time(path, &header))?;
    let mut r = source::open_csv(path)?;
    let mut rec = csv::ByteRecord::new();
    let label = path.display();
    if !r
        .read_byte_record(&mut rec)
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?
    {
        bail!("{label}: no data rows");
    }
    let cell = rec.get(ti).unwrap_or(b"");
    let text = String::from_utf8_lossy(cell);
    crate::trace::read::parse_time(&text).with_context(|| {
        format!(
            "{label}:2:{}: time '{}' is not Unix seconds",
            ti + 1,
            text.escape_debug()
        )
    })
}

fn no_time(path: &Path, header: &[String]) -> String {
    format!(
        "{}: no column named 'time'; the columns are: {}",
        path.display(),
        header.join(", ")
    )
}

/// First corrected times of a source: its first time, median step and the phase of its
/// rows on `period` (median of each row's time moved back to the first row's slot).
struct Peek {
    first: f64,
    step: Option<f64>,
    times: Vec<f64>,
}

fn peek(spec: &ReadSpec, origin: i64) -> anyhow::Result<Peek> {
    let spec = ReadSpec {
        columns: Vec::new(),
        names: Vec::new(),
        ..spec.clone()
    };
    let mut r = SourceReader::open(&spec, origin)?;
    let mut times = Vec::new();
    while times.len() < PEEK_ROWS {
        match r.next_row(&mut Vec::new())? {
            Some(t) => times.push(t),
            None => break,
        }
    }
    let Some(&first) = times.first() else {
        bail!("{}: no data rows", spec.path.display());
    };
    let mut steps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    // To the nanosecond: times are written to the microsecond (at most the nanosecond), and
    // a difference of two of them carries the rounding of their f64 (0.1 s comes out as
    // 0.10000000000000009 s, a grid of 9.999999999999991 Hz).
    let step = steps.get(steps.len() / 2).map(|&st| {
        let ns = (st * 1e9).round() / 1e9;
        if ns > 0.0 { ns } else { st }
    });
    Ok(Peek { first, step, times })
}

impl Peek {
    fn phase(&self, period: f64) -> f64 {
        let mut p: Vec<f64> = self
            .times
            .iter()
            .map(|t| t - ((t - self.first) / period).round() * period)
            .collect();
        p.sort_by(f64::total_cmp);
        p[p.len() / 2]
    }
}

impl Plan {
    /// Checks the options against the files, estimates the lags asked for and fixes the grid.
    pub fn new(opts: &Options) -> anyhow::Result<Plan> {
        if opts.sources.is_empty() {
            return Err(usage("give at least one source NAME=FILE".into()));
        }
        for (i, s) in opts.sources.iter().enumerate() {
            check_name(&s.name).map_err(usage)?;
            if let Some(p) = opts.sources[..i].iter().find(|p| p.name == s.name) {
                return Err(usage(format!(
                    "source name {} is used twice ({} and {}): each source needs its own name",
                    s.name,
                    p.path.display(),
                    s.path.display()
                )));
            }
        }
        if let Some(r) = opts.rate_hz
            && !(r > 0.0 && r.is_finite() && r <= 1e6)
        {
            return Err(usage(format!(
                "--rate {} must be a positive number of Hz",
                crate::trace::shown(r)
            )));
        }
        if let Some(g) = opts.max_gap_s
            && !(g > 0.0 && g.is_finite())
        {
            return Err(usage(format!(
                "--max-gap {} must be a positive number of seconds",
                crate::trace::shown(g)
            )));
        }
        let index = |name: &str, what: &str| -> anyhow::Result<usize> {
            opts.sources
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| {
                    usage(format!(
                        "{what}: no source named {name}; the sources are {}",
                        opts.sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        };
        // Every name the options use must exist before any file is read.
        for o in &opts.offsets {
            index(&o.source, &format!("--offset {}", o.source))?;
        }
        for k in &opts.kinds {
            index(&k.column.source, &format!("--kind {}", k.column))?;
        }
        for c in opts.columns.iter().flatten() {
            index(&c.source, &format!("--columns {c}"))?;
        }
        let mut moved = Vec::new();
        for l in &opts.lag_from {
            let what = format!("--lag-from {},{}", l.fixed, l.moved);
            let a = index(&l.fixed.source, &what)?;
            let b = index(&l.moved.source, &what)?;
            if a == b {
                return Err(usage(format!(
                    "{what}: both columns are of source {}",
                    l.fixed.source
                )));
            }
            if moved.contains(&b) {
                return Err(usage(format!(
                    "{what}: the correction of {} is already estimated by an earlier --lag-from",
                    l.moved.source
                )));
            }
            if opts.offsets.iter().any(|o| o.source == l.moved.source) {
                return Err(usage(format!(
                    "{what}: {} also has --offset; give the offset or estimate it, not both",
                    l.moved.source
                )));
            }
            moved.push(b);
        }
        for (i, o) in opts.offsets.iter().enumerate() {
            if opts.offsets[..i].iter().any(|p| p.source == o.source) {
                return Err(usage(format!("--offset {} is given twice", o.source)));
            }
        }

        let origin = first_time(&opts.sources[0].path)?.floor() as i64;
        let mut planned = Vec::new();
        for s in &opts.sources {
            planned.push(plan_source(s, opts)?);
        }
        for (p, s) in planned.iter_mut().zip(&opts.sources) {
            if let Some(o) = opts.offsets.iter().find(|o| o.source == s.name) {
                match &o.value {
                    OffsetValue::Seconds(x) => {
                        p.spec.offset_column = None;
                        p.spec.constant = *x;
                    }
                    OffsetValue::File(f) => {
                        let header = source::read_header(f)?;
                        let col = source::OFFSET_COLUMNS
                            .iter()
                            .find(|c| header.iter().any(|h| h == *c))
                            .with_context(|| {
                                format!(
                                    "{}: no offset_s or clock_offset_s column; the columns are: {}",
                                    f.display(),
                                    header.join(", ")
                                )
                            })?;
                        p.spec.offset_column = Some(OffsetColumn {
                            path: f.clone(),
                            column: col.to_string(),
                        });
                    }
                }
            }
        }
        for (p, s) in planned.iter_mut().zip(&opts.sources) {
            let pk = peek(&p.spec, origin)?;
            let sidecar = source::read_sidecar(&s.path);
            (p.period, p.period_from) = match (sidecar.and_then(|s| s.rate_hz), pk.step) {
                (Some(r), _) => (1.0 / r, "sidecar rate_hz"),
                (None, Some(st)) => (st, "median step"),
                (None, None) => bail!(
                    "{}: one row and no sidecar: the sampling period is unknown",
                    s.path.display()
                ),
            };
            p.max_gap = opts.max_gap_s.unwrap_or(MAX_GAP_PERIODS * p.period);
            if p.max_gap < p.period {
                return Err(usage(format!(
                    "--max-gap {} s is shorter than the sampling period of {} ({} s): every \
                     cell would be empty",
                    crate::trace::shown(p.max_gap),
                    s.name,
                    p.period
                )));
            }
        }
        // Lag pre-passes, in order: each moves its second source by what it finds.
        let mut lags = Vec::new();
        for l in &opts.lag_from {
            let a = index(&l.fixed.source, "")?;
            let b = index(&l.moved.source, "")?;
            let est = estimate_lag(&planned[a], &planned[b], l, opts, origin)?;
            planned[b].spec.constant += est.estimate.offset_s;
            planned[b].lagged = true;
            lags.push(est);
        }
        let mut reference_peek = None;
        for (i, p) in planned.iter_mut().enumerate() {
            let pk = peek(&p.spec, origin)?;
            p.first = pk.first;
            if i == 0 {
                reference_peek = Some(pk);
            }
        }
        let rate_hz = opts.rate_hz.unwrap_or(1.0 / planned[0].period);
        let phase = match &reference_peek {
            Some(pk) => (pk.phase(planned[0].period) * 1e6).round() / 1e6,
            None => 0.0,
        };
        let start = planned
            .iter()
            .map(|p| p.first)
            .fold(f64::NEG_INFINITY, f64::max);
        let k0 = ((start - phase) * rate_hz - 1e-9).ceil() as i64;
        Ok(Plan {
            origin,
            sources: planned,
            rate_hz,
            phase,
            k0,
            lags,
        })
    }

    /// The output columns after `time`, in order.
    pub fn columns(&self) -> Vec<OutColumn> {
        self.sources
            .iter()
            .flat_map(|s| s.columns.iter().cloned())
            .collect()
    }

    /// The grid's rate.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// The lag estimates made while planning.
    pub fn lags(&self) -> &[LagSummary] {
        &self.lags
    }

    /// Streams every source onto the grid into `sink`.
    pub fn run(&self, sink: &mut dyn GridSink) -> anyhow::Result<RunSummary> {
        run_grid(
            &self.sources,
            self.origin,
            self.rate_hz,
            self.phase,
            self.k0,
            None,
            sink,
        )
    }

    /// The sidecar for a run.
    pub fn metadata(&self, run: &RunSummary, command: Vec<String>) -> Metadata {
        let mut columns = vec![OutColumn {
            name: "time".into(),
            kind: Kind::Time,
            unit: "s".into(),
            resampling: "grid",
        }];
        columns.extend(self.columns());
        let sources = self
            .sources
            .iter()
            .zip(&run.sources)
            .map(|(p, r)| {
                let (rows, empty, clock) = (&r.rows, &r.empty, r.clock);
                let mut parts = Vec::new();
                match &p.spec.offset_column {
                    Some(oc) if oc.path == p.spec.path => parts.push("clock columns"),
                    Some(_) => parts.push("probe file"),
                    None if p.spec.constant != 0.0 && !p.lagged => parts.push("offset"),
                    None => {}
                }
                if p.lagged {
                    parts.push("lag estimate");
                }
                let method = if parts.is_empty() {
                    "none".to_string()
                } else {
                    parts.join(" + ")
                };
                SourceSummary {
                    name: p.name.clone(),
                    path: p.spec.path.display().to_string(),
                    period_s: p.period,
                    period_from: p.period_from,
                    max_gap_s: p.max_gap,
                    correction: Correction {
                        method,
                        offset_column: p
                            .spec
                            .offset_column
                            .as_ref()
                            .map(|o| format!("{} in {}", o.column, o.path.display())),
                        constant_s: p.spec.constant,
                        probes: clock.map(|c| c.0),
                        probe_offsets_s: clock.map(|c| ((c.1).1, (c.2).1)),
                        drift_ppm: clock.and_then(|(_, a, b)| {
                            (b.0 > a.0).then(|| (b.1 - a.1) / (b.0 - a.0) * 1e6)
                        }),
                    },
                    rows_read: *rows,
                    first_unix: self.origin as f64 + p.first,
                    dropped_columns: p.dropped.clone(),
                    empty_cells: *empty,
                }
            })
            .collect();
        Metadata {
            vmmon_version: env!("CARGO_PKG_VERSION").into(),
            status: "complete".into(),
            rate_hz: self.rate_hz,
            time_format: "unix",
            reference: self.sources[0].name.clone(),
            start_unix: run.span_us.map(|s| s.0 as f64 / 1e6),
            end_unix: run.span_us.map(|s| s.1 as f64 / 1e6),
            rows: run.rows,
            sources,
            lag_estimates: self.lags.clone(),
            columns,
            command,
        }
    }
}

/// Opens one source's header and sidecar and decides its columns and kinds.
fn plan_source(s: &SourceArg, opts: &Options) -> anyhow::Result<Planned> {
    let header = source::read_header(&s.path)?;
    // Output columns are named SOURCE.COLUMN: two columns of one name would be two output
    // columns no one could tell apart.
    for (i, h) in header.iter().enumerate() {
        if let Some(j) = header[..i].iter().position(|x| x == h) {
            bail!(
                "{}: column {h} appears twice in the header (columns {} and {}); rename one",
                s.path.display(),
                j + 1,
                i + 1
            );
        }
    }
    let time_idx = header
        .iter()
        .position(|h| h == "time")
        .with_context(|| no_time(&s.path, &header))?;
    let sidecar = source::read_sidecar(&s.path).unwrap_or_default();
    let missing = |col: &str, what: &str| {
        anyhow::anyhow!(
            "{what}: source {} ({}) has no column {col}; its columns are: {}",
            s.name,
            s.path.display(),
            header.join(", ")
        )
    };
    for k in opts.kinds.iter().filter(|k| k.column.source == s.name) {
        if !header.contains(&k.column.column) {
            return Err(missing(&k.column.column, &format!("--kind {}", k.column)));
        }
    }
    let wanted: Option<Vec<&str>> = opts.columns.as_ref().map(|cs| {
        cs.iter()
            .filter(|c| c.source == s.name)
            .map(|c| c.column.as_str())
            .collect()
    });
    if let Some(w) = &wanted {
        for c in w {
            if !header.iter().any(|h| h == c) {
                return Err(missing(c, &format!("--columns {}.{c}", s.name)));
            }
        }
    }
    let offset_column = source::OFFSET_COLUMNS
        .iter()
        .find(|c| header.iter().any(|h| h == *c))
        .map(|c| OffsetColumn {
            path: s.path.clone(),
            column: c.to_string(),
        });
    let mut spec = ReadSpec {
        path: s.path.clone(),
        time_idx,
        columns: Vec::new(),
        names: Vec::new(),
        offset_column,
        constant: 0.0,
    };
    let mut columns = Vec::new();
    let mut methods = Vec::new();
    let mut dropped = Vec::new();
    for (i, name) in header.iter().enumerate() {
        if i == time_idx {
            continue;
        }
        let from_sidecar = sidecar.columns.iter().find(|c| &c.0 == name);
        let override_kind = opts
            .kinds
            .iter()
            .find(|k| k.column.source == s.name && &k.column.column == name)
            .map(|k| k.kind);
        let kind = override_kind
            .or(from_sidecar.and_then(|c| c.1))
            .unwrap_or_else(|| source::kind_from_name(name));
        let method = Method::for_kind(kind);
        let clock = override_kind.is_none() && source::CLOCK_COLUMNS.contains(&name.as_str());
        let selected = wanted.as_ref().is_none_or(|w| w.contains(&name.as_str()));
        match method {
            Some(m) if !clock && selected => {
                spec.columns.push(i);
                spec.names.push(name.clone());
                methods.push(m);
                let unit = from_sidecar
                    .map(|c| c.2.clone())
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| source::unit_from_name(name).to_string());
                columns.push(OutColumn {
                    name: format!("{}.{name}", s.name),
                    kind,
                    unit,
                    resampling: match m {
                        Method::Interpolate => "interpolated",
                        Method::Counter => "interpolated (counter)",
                        Method::Average => "interval average",
                    },
                });
            }
            _ if selected => dropped.push(name.clone()),
            _ => {}
        }
    }
    Ok(Planned {
        name: s.name.clone(),
        spec,
        columns,
        methods,
        dropped,
        period: 1.0,
        period_from: "",
        max_gap: 0.0,
        lagged: false,
        first: 0.0,
    })
}

/// Restricts a planned source to one column (for the lag pre-pass).
fn only_column(p: &Planned, col: &ColumnRef, what: &str) -> anyhow::Result<Planned> {
    let header = source::read_header(&p.spec.path)?;
    let Some(j) = p.spec.names.iter().position(|n| n == &col.column) else {
        let why = if header.contains(&col.column) {
            "is not a data column (a time or clock column)".to_string()
        } else {
            format!("does not exist; its columns are: {}", header.join(", "))
        };
        bail!(
            "{what}: column {} of source {} ({}) {why}",
            col.column,
            p.name,
            p.spec.path.display()
        );
    };
    let mut q = p.clone();
    q.spec.columns = vec![p.spec.columns[j]];
    q.spec.names = vec![p.spec.names[j].clone()];
    q.methods = vec![p.methods[j]];
    q.columns = vec![p.columns[j].clone()];
    Ok(q)
}

/// The `--lag-from` pre-pass: both columns on the fixed source's own grid over a bounded
/// window from the start of their common span, then [`lag::estimate`].
fn estimate_lag(
    a: &Planned,
    b: &Planned,
    l: &LagArg,
    opts: &Options,
    origin: i64,
) -> anyhow::Result<LagSummary> {
    let what = format!("--lag-from {},{}", l.fixed, l.moved);
    let (a, b) = (
        only_column(a, &l.fixed, &what)?,
        only_column(b, &l.moved, &what)?,
    );
    let pa = peek(&a.spec, origin)?;
    let pb = peek(&b.spec, origin)?;
    let period = a.period;
    let phase = pa.phase(period);
    let window = match opts.lag_window_s {
        Some(w) if w > 0.0 && w.is_finite() => (w / period).round().max(8.0) as usize,
        Some(w) => return Err(usage(format!("--lag-window {w} must be positive seconds"))),
        None => LAG_WINDOW_SAMPLES,
    };
    let start = pa.first.max(pb.first);
    let k0 = ((start - phase) / period - 1e-9).ceil() as i64;
    let mut sink = Collect::default();
    let sources = [a, b];
    run_grid(
        &sources,
        origin,
        1.0 / period,
        phase,
        k0,
        Some(window as u64),
        &mut sink,
    )
    .with_context(|| format!("--lag-from {},{}", l.fixed, l.moved))?;
    let n = sink.times.len();
    let max_lag = match opts.max_lag_s {
        Some(m) if m > 0.0 && m.is_finite() => (m / period).ceil() as usize,
        Some(m) => return Err(usage(format!("--max-lag {m} must be positive seconds"))),
        None => n / 4,
    };
    if n < 16 || max_lag + 2 > n {
        bail!(
            "--lag-from {},{}: only {n} common samples of {} s: too few to estimate a lag of \
             up to {max_lag} samples",
            l.fixed,
            l.moved,
            period
        );
    }
    let (fixed, moved) = (l.fixed.to_string(), l.moved.to_string());
    let estimate = lag::estimate(
        &sink.values[0],
        &sink.values[1],
        period,
        max_lag,
        (&fixed, &moved),
    )
    .with_context(|| format!("--lag-from {fixed},{moved}"))?;
    Ok(LagSummary {
        fixed,
        moved,
        estimate,
        window_s: n as f64 * period,
    })
}

/// The grid loop: cells (g − P, g] for g = phase + k/rate, k = k0, k0 + 1, … until a source
/// ends (or `limit` rows).
fn run_grid(
    sources: &[Planned],
    origin: i64,
    rate_hz: f64,
    phase: f64,
    k0: i64,
    limit: Option<u64>,
    sink: &mut dyn GridSink,
) -> anyhow::Result<RunSummary> {
    let period = 1.0 / rate_hz;
    let mut tracks = Vec::with_capacity(sources.len());
    let mut ranges = Vec::with_capacity(sources.len());
    let mut width = 0;
    for s in sources {
        let reader = SourceReader::open(&s.spec, origin)?;
        let track = Track::new(reader, s.methods.clone(), s.period, s.max_gap)?
            .with_context(|| format!("{}: no data rows", s.spec.path.display()))?;
        ranges.push(width..width + s.methods.len());
        width += s.methods.len();
        tracks.push(track);
    }
    let names: Vec<String> = sources
        .iter()
        .flat_map(|s| s.columns.iter().map(|c| c.name.clone()))
        .collect();
    let mut out = vec![f64::NAN; width];
    let mut rows = 0u64;
    let mut span: Option<(i64, i64)> = None;
    let at = |k: i64| phase + k as f64 * period;
    let mut k = k0;
    'grid: loop {
        if limit.is_some_and(|l| rows >= l) {
            break;
        }
        let (lo, hi) = (at(k - 1), at(k));
        for (i, t) in tracks.iter_mut().enumerate() {
            if !t.cell(lo, hi, &mut out[ranges[i].clone()])? {
                if rows == 0 {
                    return Err(no_overlap(sources, &tracks, i, origin, rate_hz));
                }
                break 'grid;
            }
        }
        let us = origin * 1_000_000 + (hi * 1e6).round() as i64;
        if rows == 0 {
            sink.begin(&names)?;
        }
        sink.row(us, &out)?;
        span = Some((span.map_or(us, |s| s.0), us));
        rows += 1;
        k += 1;
    }
    sink.finish()?;
    Ok(RunSummary {
        rows,
        span_us: span,
        sources: tracks
            .iter()
            .map(|t| {
                let r = t.reader();
                let clock = r.clock_summary();
                SourceRun {
                    rows: r.rows,
                    empty: t.empty.iter().sum(),
                    clock,
                }
            })
            .collect(),
    })
}

fn no_overlap(
    sources: &[Planned],
    tracks: &[Track],
    ended: usize,
    origin: i64,
    rate_hz: f64,
) -> anyhow::Error {
    let late = (0..tracks.len())
        .max_by(|&a, &b| tracks[a].first.total_cmp(&tracks[b].first))
        .unwrap_or(0);
    let fmt = |t: f64| source::abs_time(t, origin);
    let (from, to) = (tracks[late].first, tracks[ended].last_time());
    if to > from {
        // They overlap, but for less than one grid interval.
        return anyhow::anyhow!(
            "the traces overlap only from {} to {} ({:.6} s, after clock correction), and no \
             whole grid interval of {} s (--rate {rate_hz} Hz) fits in it: use a higher rate",
            fmt(from),
            fmt(to),
            to - from,
            1.0 / rate_hz
        );
    }
    anyhow::anyhow!(
        "the traces do not overlap in time (after clock correction): {} ({}) ends at {} but \
         {} ({}) starts at {}",
        sources[ended].name,
        sources[ended].spec.path.display(),
        fmt(tracks[ended].last_time()),
        sources[late].name,
        sources[late].spec.path.display(),
        fmt(tracks[late].first)
    )
}
