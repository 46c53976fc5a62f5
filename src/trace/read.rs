//! Reading traces for analysis: selected columns of a CSV file (or stdin) as evenly sampled
//! series, with missing values and time gaps handled by an explicit policy.
//!
//! Only the selected columns are kept (8 bytes a value), so memory does not depend on how
//! wide the file is; rows are streamed through one reused record. Internally a missing value
//! is NaN: a NaN written in the file is refused at parse time, so the two cannot mix.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::sysid::stats::{self, Detrend};

/// A bound of the analysed range: a time in the trace's own time, or a row index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A value of the `time` column (Unix seconds; RFC 3339 is accepted on the command line).
    Time(f64),
    /// A 0-based data row index, written `#N`.
    Row(usize),
}

impl std::str::FromStr for Bound {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(row) = s.strip_prefix('#') {
            return row
                .parse()
                .map(Bound::Row)
                .map_err(|_| format!("'{s}': a row index is written #N with N ≥ 0"));
        }
        parse_time(s).map(Bound::Time).ok_or_else(|| {
            format!("'{s}' is neither a time (Unix seconds or RFC 3339) nor a row (#N)")
        })
    }
}

/// Parses Unix seconds or an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9)
}

/// What to do with missing cells and time gaps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Gaps {
    /// Refuse, naming the rows.
    #[default]
    Error,
    /// Fill short gaps by linear interpolation (see `--max-gap`).
    Interpolate,
    /// Analyse every clean segment; lags never cross a gap.
    Split,
    /// Analyse only the longest clean segment.
    Longest,
}

/// How to read and prepare series.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// First row or time analysed.
    pub from: Option<Bound>,
    /// Last row or time analysed (inclusive).
    pub to: Option<Bound>,
    /// Turn `*_total` counters into per-second rates.
    pub rates: bool,
    /// Missing values and gaps.
    pub gaps: Gaps,
    /// Longest run of missing samples `Gaps::Interpolate` fills.
    pub max_gap: usize,
    /// A time step differing from the median by more than this fraction is non-uniform.
    pub tolerance: f64,
    /// Detrending applied to each segment.
    pub detrend: Detrend,
    /// Column holding each row's time (`elapsed` survives wall-clock steps).
    pub time_column: String,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            from: None,
            to: None,
            rates: false,
            gaps: Gaps::Error,
            max_gap: 5,
            tolerance: 0.1,
            detrend: Detrend::Mean,
            time_column: "time".into(),
        }
    }
}

/// A stretch of evenly sampled rows with no missing values.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    /// Index of the segment's first sample among the data rows read.
    pub first_row: usize,
    /// Time of the first sample.
    pub start_time: f64,
    /// One series per requested column.
    pub columns: Vec<Vec<f64>>,
    /// What detrending removed from each column: (offset, slope per sample).
    pub trend: Vec<(f64, f64)>,
}

impl Segment {
    /// Samples in the segment.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// Whether the segment has no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Series prepared for analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Requested column names, in order.
    pub names: Vec<String>,
    /// Clean segments (one unless `Gaps::Split`).
    pub segments: Vec<Segment>,
    /// Median time step in seconds (1 when the trace has no `time` column).
    pub step: f64,
    /// Rows read within the range.
    pub rows: usize,
    /// Things the user should know (interpolated gaps, non-uniform steps, rate conversion).
    pub notes: Vec<String>,
}

impl Series {
    /// Total samples over all segments.
    pub fn samples(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }
}

/// Raw columns as read: time and values, NaN where a cell was empty.
struct Raw {
    label: String,
    time: Vec<f64>,
    lines: Vec<u64>,
    values: Vec<Vec<f64>>,
    has_time: bool,
}

fn open(input: &str) -> anyhow::Result<(Box<dyn Read>, String)> {
    if input == "-" {
        return Ok((Box::new(std::io::stdin().lock()), "<stdin>".into()));
    }
    let f = std::fs::File::open(Path::new(input))
        .with_context(|| format!("cannot open trace {input}"))?;
    Ok((
        Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
        input.into(),
    ))
}

/// Cell `i` of `record`, trimmed; an error naming file, line and column if it is not UTF-8.
/// Cell `i` of a byte record as trimmed UTF-8; the error names `label:line:column`.
pub(crate) fn text<'r>(
    record: &'r csv::ByteRecord,
    i: usize,
    label: &str,
    line: u64,
) -> anyhow::Result<&'r str> {
    match std::str::from_utf8(record.get(i).unwrap_or(b"")) {
        Ok(s) => Ok(s.trim()),
        Err(_) => bail!("{label}:{line}:{}: the cell is not valid UTF-8", i + 1),
    }
}

/// The columns of one trace read in a single pass, so that many analyses of subsets of them
/// (`vmmon fit --batch`) parse the file once. [`Table::series`] gives, for any subset, exactly
/// the [`Series`] (or the error) that [`read_series`] gives for that subset alone: errors that
/// depend on the columns (a column missing from the header, a bad cell) are kept per column
/// and reported only to the analyses that use it, in the order a lone read would meet them.
///
/// Memory: every column read as `f64` per row in range, plus each row's time (`f64`) and line
/// number (`u64`): 8 × (columns + 2) bytes a row.
pub struct Table {
    raw: Raw,
    names: Vec<String>,
    /// The header's columns, for the message about a missing one.
    header: Vec<String>,
    /// Which of `names` the header lacks.
    absent: Vec<bool>,
    /// An error about the time column that every analysis meets after its own columns.
    time_column_error: Option<String>,
    /// Per column of `names`, the first bad cell: (row index, message).
    cell_errors: Vec<Option<(usize, String)>>,
    /// An error that ended the reading (malformed record, bad time): (row index, message).
    stop: Option<(usize, String)>,
    /// The sampling rate of the trace's metadata sidecar, if any.
    sidecar: Option<f64>,
}

/// Reads `names` from `input` (a path, or `-` for stdin) once, for [`Table::series`]. Fails
/// only for what no analysis of the trace could get past (the file, its header).
pub fn read_table(input: &str, names: &[String], opts: &ReadOptions) -> anyhow::Result<Table> {
    read_table_with(input, |_| Ok(names.to_vec()), opts)
}

/// A CSV header's names, trimmed; an error naming `label` if there is none (an empty file),
/// for every reader of a trace to say the same.
pub fn header_names(header: &csv::StringRecord, label: &str) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if names.iter().all(String::is_empty) {
        bail!("{label}: the file is empty: a trace starts with a header row naming its columns");
    }
    Ok(names)
}

/// [`read_table`] with the columns chosen from the header by `choose` (which may refuse it):
/// one pass even when the choice depends on what the file holds, as for standard input.
pub fn read_table_with(
    input: &str,
    choose: impl FnOnce(&[String]) -> anyhow::Result<Vec<String>>,
    opts: &ReadOptions,
) -> anyhow::Result<Table> {
    let (reader, label) = open(input)?;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let header = csv
        .headers()
        .with_context(|| format!("{label}: cannot read the header"))?
        .clone();
    let header_names = header_names(&header, &label)?;
    let names = &choose(&header_names)?[..];
    let find = |name: &str| header.iter().position(|h| h.trim() == name);
    for name in names.iter().chain([&opts.time_column]) {
        let at: Vec<usize> = (0..header_names.len())
            .filter(|&i| header_names[i] == *name)
            .collect();
        if at.len() > 1 {
            bail!(
                "{label}: column {name} appears {} times in the header (columns {}): which one \
                 is meant cannot be told; rename the others",
                at.len(),
                at.iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let idx: Vec<Option<usize>> = names.iter().map(|n| find(n)).collect();
    let time_idx = find(&opts.time_column);
    let time_column_error = (time_idx.is_none() && opts.time_column != "time").then(|| {
        format!(
            "{label}: no time column named '{}'; the columns are: {}",
            opts.time_column,
            header.iter().collect::<Vec<_>>().join(", ")
        )
    });
    let mut table = Table {
        raw: Raw {
            label: label.clone(),
            time: Vec::new(),
            lines: Vec::new(),
            values: vec![Vec::new(); names.len()],
            has_time: time_idx.is_some(),
        },
        names: names.to_vec(),
        header: header_names.clone(),
        absent: idx.iter().map(Option::is_none).collect(),
        time_column_error,
        cell_errors: vec![None; names.len()],
        stop: None,
        sidecar: sidecar_rate(input),
    };
    // A lone read stops at the header for these: nothing more to read for anyone.
    if idx.iter().all(Option::is_none) && !names.is_empty() || table.time_column_error.is_some() {
        return Ok(table);
    }
    let raw = &mut table.raw;
    // Byte records: only the cells asked for are checked as UTF-8 and parsed.
    let mut record = csv::ByteRecord::new();
    let mut row = 0usize;
    loop {
        let more = match csv.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                // The place first, as for a bad cell: a ragged record is the usual cause.
                let msg = match (e.kind(), e.position()) {
                    (
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        },
                        Some(p),
                    ) => format!(
                        "{label}:{}: the record has {len} fields, but the header has \
                         {expected_len}",
                        p.line()
                    ),
                    (_, Some(p)) => format!("{label}:{}: {e}", p.line()),
                    _ => format!("{label}: {e}"),
                };
                table.stop = Some((row, msg));
                break;
            }
        };
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let t = match time_idx {
            Some(ti) => {
                let parsed = text(&record, ti, &label, line).and_then(|cell| {
                    parse_time(cell).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{label}:{line}:{}: time '{cell}' is not Unix seconds or RFC 3339",
                            ti + 1
                        )
                    })
                });
                match parsed {
                    Ok(t) => t,
                    Err(e) => {
                        table.stop = Some((row, format!("{e:#}")));
                        break;
                    }
                }
            }
            None => row as f64,
        };
        let in_range_from = match opts.from {
            Some(Bound::Row(r)) => row >= r,
            Some(Bound::Time(f)) => t >= f,
            None => true,
        };
        let past_end = match opts.to {
            Some(Bound::Row(r)) => row > r,
            Some(Bound::Time(e)) => t > e,
            None => false,
        };
        let this_row = row;
        row += 1;
        if past_end {
            break;
        }
        if !in_range_from {
            continue;
        }
        for (k, ci) in idx.iter().enumerate() {
            let Some(ci) = *ci else { continue };
            // After a column's first bad cell its values no longer matter: no analysis that
            // uses the column gets past that cell.
            let v = if table.cell_errors[k].is_some() {
                f64::NAN
            } else {
                match cell_value(&record, ci, &label, line, &names[k]) {
                    Ok(v) => v,
                    Err(e) => {
                        table.cell_errors[k] = Some((this_row, format!("{e:#}")));
                        f64::NAN
                    }
                }
            };
            raw.values[k].push(v);
        }
        raw.time.push(t);
        raw.lines.push(line);
    }
    Ok(table)
}

/// The value of cell `ci` (column `name`): NaN when empty, an error naming the place when it
/// is not a finite number.
fn cell_value(
    record: &csv::ByteRecord,
    ci: usize,
    label: &str,
    line: u64,
    name: &str,
) -> anyhow::Result<f64> {
    let cell = text(record, ci, label, line)?;
    if cell.is_empty() {
        return Ok(f64::NAN);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => bail!(
            "{label}:{line}:{}: {cell} in column {name}: leave the cell empty for a missing value",
            ci + 1,
        ),
        Err(_) => bail!(
            "{label}:{line}:{}: '{}' in column {name} is not a number",
            ci + 1,
            cell.escape_debug()
        ),
    }
}

impl Table {
    /// Rows read within the range (before any analysis drops some).
    pub fn rows(&self) -> usize {
        self.raw.time.len()
    }

    /// The header's column names, trimmed.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Whether the trace has its time column (otherwise times are row indices).
    pub fn has_time(&self) -> bool {
        self.raw.has_time
    }

    /// Whether column `name` was read, is in the header, and holds only numbers and empty
    /// cells.
    pub fn is_numeric(&self, name: &str) -> bool {
        self.names
            .iter()
            .position(|n| n == name)
            .is_some_and(|k| !self.absent[k] && self.cell_errors[k].is_none())
    }

    /// Each row's time (its index without a time column) and the cells of `names` as read,
    /// NaN where empty: no gap policy, grid or detrending, so that a picture shows a gap as a
    /// gap. Errors as [`Table::series`] would give them for these columns.
    pub fn raw_columns(&self, names: &[String]) -> anyhow::Result<(&[f64], Vec<&[f64]>)> {
        let at = self.locate(names)?;
        Ok((
            &self.raw.time,
            at.iter().map(|&k| self.raw.values[k].as_slice()).collect(),
        ))
    }

    /// Positions in the table of `names`, or the error a lone read of them would give.
    fn locate(&self, names: &[String]) -> anyhow::Result<Vec<usize>> {
        let mut at = Vec::with_capacity(names.len());
        for name in names {
            let k =
                self.names.iter().position(|n| n == name).ok_or_else(|| {
                    anyhow::anyhow!("column '{name}' was not read from the trace")
                })?;
            if self.absent[k] {
                bail!(
                    "{}: no column named '{name}'; the columns are: {}",
                    self.raw.label,
                    self.header.join(", ")
                );
            }
            at.push(k);
        }
        if let Some(e) = &self.time_column_error {
            bail!("{e}");
        }
        // The first error in row order; within a row the record and its time come first,
        // then the cells in the order asked for.
        let cell = at
            .iter()
            .filter_map(|&k| self.cell_errors[k].as_ref())
            .min_by_key(|(row, _)| *row);
        match (cell, &self.stop) {
            (Some((row, msg)), Some((stop, _))) if row < stop => bail!("{msg}"),
            (_, Some((_, msg))) => bail!("{msg}"),
            (Some((_, msg)), None) => bail!("{msg}"),
            (None, None) => Ok(at),
        }
    }

    /// The series of `names` (all among the names read), exactly as [`read_series`] would
    /// read them on their own.
    pub fn series(&self, names: &[String], opts: &ReadOptions) -> anyhow::Result<Series> {
        let at = self.locate(names)?;
        let raw = Raw {
            label: self.raw.label.clone(),
            time: self.raw.time.clone(),
            lines: self.raw.lines.clone(),
            values: at.iter().map(|&k| self.raw.values[k].clone()).collect(),
            has_time: self.raw.has_time,
        };
        prepare(raw, names, opts, self.sidecar)
    }
}

/// Reads `names` from `input` (a path, or `-` for stdin) and prepares them per `opts`.
pub fn read_series(input: &str, names: &[String], opts: &ReadOptions) -> anyhow::Result<Series> {
    let mut table = read_table(input, names, opts)?;
    let at = table.locate(names)?;
    // A lone read asks for its own columns: move them out rather than copy.
    let mut values = std::mem::take(&mut table.raw.values);
    let mut columns: Vec<Vec<f64>> = Vec::with_capacity(at.len());
    for (j, &k) in at.iter().enumerate() {
        // A name asked for twice (`-u u -y u`) shares the column read once.
        let column = match at[..j].iter().position(|&e| e == k) {
            Some(i) => columns[i].clone(),
            None => std::mem::take(&mut values[k]),
        };
        columns.push(column);
    }
    let raw = Raw {
        values: columns,
        ..table.raw
    };
    prepare(raw, names, opts, table.sidecar)
}

/// Turns raw columns into evenly sampled, gap-handled, detrended series.
fn prepare(
    mut raw: Raw,
    names: &[String],
    opts: &ReadOptions,
    sidecar: Option<f64>,
) -> anyhow::Result<Series> {
    let label = raw.label.clone();
    let mut notes = Vec::new();
    if raw.time.is_empty() {
        bail!("{label}: no data rows in the range analysed");
    }
    for w in raw.time.windows(2).zip(raw.lines.windows(2)) {
        if w.0[1] <= w.0[0] {
            bail!(
                "{label}:{}: time {} does not increase (previous row, line {}, has {})",
                w.1[1],
                w.0[1],
                w.1[0],
                w.0[0]
            );
        }
    }
    if opts.rates && names.iter().any(|n| n.ends_with("_total")) {
        let unit = if raw.has_time {
            "per-second"
        } else {
            "per-row (no time column)"
        };
        for (k, name) in names.iter().enumerate() {
            if name.ends_with("_total") {
                to_rates(&mut raw.values[k], &raw.time);
                notes.push(format!(
                    "{name}: cumulative counter turned into a {unit} rate"
                ));
            }
        }
        // A rate needs two samples: the first row has none, so it leaves the analysis.
        raw.time.remove(0);
        raw.lines.remove(0);
        for col in &mut raw.values {
            col.remove(0);
        }
        if raw.time.is_empty() {
            bail!("{label}: --rates needs at least two rows");
        }
    }
    check_magnitudes(&raw, names, opts.rates)?;
    let step = median_step(&raw.time).unwrap_or(1.0);
    // Place every row on the grid of the median step; a step of 1.5 grid steps or more is a
    // gap of missing samples, anything else off the grid by more than the tolerance is
    // reported as non-uniform.
    let mut slots: Vec<usize> = Vec::with_capacity(raw.time.len());
    let mut off_grid = 0usize;
    for (i, t) in raw.time.iter().enumerate() {
        if i == 0 {
            slots.push(0);
            continue;
        }
        let dt = t - raw.time[i - 1];
        let k = (dt / step).round().max(1.0) as usize;
        if (dt - k as f64 * step).abs() > opts.tolerance * step {
            off_grid += 1;
        }
        slots.push(slots[i - 1].saturating_add(k));
    }
    if off_grid > 0 {
        notes.push(format!(
            "non-uniform sampling: {off_grid} of {} steps differ from the median step {step} s by \
             more than {}%; rows are placed on the nearest grid slot",
            raw.time.len() - 1,
            opts.tolerance * 100.0
        ));
    }
    let grid_len = slots.last().map_or(0, |s| s.saturating_add(1));
    // The grid's period: the median step placed the rows, but one step carries the sampling
    // jitter (tens of µs) and the first rows the start-up lateness (ms). The least-squares
    // slope of time over slot index averages both out; traces are written in microseconds.
    let step = match sidecar {
        // A trace written by `vmmon record` knows its schedule: rows are due every 1/rate.
        Some(rate) => 1.0 / rate,
        None => grid_period(&raw.time, &slots).map_or(step, |p| (p * 1e6).round() / 1e6),
    };
    // A jump of many times the trace's length is a clock step or a typo, not a gap to fill:
    // refuse it before allocating a grid for it.
    let limit = 10 * raw.time.len() + 10_000;
    if grid_len > limit
        && let Some(i) = (1..slots.len()).max_by_key(|&i| slots[i] - slots[i - 1])
    {
        bail!(
            "{label}:{}: time jumps by {} s ({} steps of {step} s) after line {}: a clock step \
             or a mistyped time? Analyse the parts on either side with --from/--to",
            raw.lines[i],
            raw.time[i] - raw.time[i - 1],
            slots[i] - slots[i - 1],
            raw.lines[i - 1]
        );
    }
    let mut grid: Vec<Vec<f64>> = vec![vec![f64::NAN; grid_len]; names.len()];
    for (k, col) in raw.values.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            grid[k][slots[i]] = *v;
        }
    }
    // Where a grid slot is in the file: `Ok(i)` the row read i-th, `Err(i)` a missing row
    // after it; said for `n` slots in a row.
    let place_of = |slot: usize| slots.binary_search(&slot).map_err(|i| i.saturating_sub(1));
    let say = |place: Result<usize, usize>, n: usize| match place {
        Ok(i) => format!("line {}", raw.lines[i]),
        Err(i) if n > 1 => format!("{n} missing rows after line {}", raw.lines[i]),
        Err(i) => format!("a missing row after line {}", raw.lines[i]),
    };
    let line_of = |slot: usize| say(place_of(slot), 1);
    let missing: Vec<usize> = (0..grid_len)
        .filter(|&s| grid.iter().any(|c| c[s].is_nan()))
        .collect();
    let t0 = raw.time[0];
    let mut segments = Vec::new();
    if missing.is_empty() {
        segments.push(Segment {
            first_row: 0,
            start_time: t0,
            columns: grid,
            trend: Vec::new(),
        });
    } else {
        match opts.gaps {
            Gaps::Error => {
                // One place per gap: the missing rows of one gap all sit after one line.
                let mut places: Vec<(Result<usize, usize>, usize)> = Vec::new();
                for &slot in &missing {
                    let place = place_of(slot);
                    match places.last_mut() {
                        Some((p, n)) if p.is_err() && *p == place => *n += 1,
                        _ => places.push((place, 1)),
                    }
                }
                let shown: Vec<String> = places.iter().take(5).map(|&(p, n)| say(p, n)).collect();
                let cols: Vec<&str> = names
                    .iter()
                    .zip(&grid)
                    .filter(|(_, c)| c.iter().any(|v| v.is_nan()))
                    .map(|(n, _)| n.as_str())
                    .collect();
                bail!(
                    "{label}: {} missing sample(s) in {} at {}{}; use --gaps interpolate, split \
                     or longest",
                    missing.len(),
                    cols.join(", "),
                    shown.join(", "),
                    if places.len() > 5 { ", …" } else { "" }
                );
            }
            Gaps::Interpolate => {
                for (k, col) in grid.iter_mut().enumerate() {
                    let total = col.len();
                    let filled = interpolate(col, opts.max_gap).map_err(|(at, len)| {
                        if at == 0 || at + len == total {
                            anyhow::anyhow!(
                                "{label}: column {} {} with {len} missing sample(s) (at {}): \
                                 interpolation only fills gaps between values; use --gaps \
                                 split or longest, or --from/--to",
                                names[k],
                                if at == 0 { "starts" } else { "ends" },
                                line_of(at)
                            )
                        } else {
                            anyhow::anyhow!(
                                "{label}: column {} has a gap of {len} samples at {}, longer \
                                 than --max-gap {}; use --gaps split or a larger --max-gap",
                                names[k],
                                line_of(at),
                                opts.max_gap
                            )
                        }
                    })?;
                    if filled > 0 {
                        notes.push(format!(
                            "{}: {filled} missing sample(s) filled by linear interpolation",
                            names[k]
                        ));
                    }
                }
                segments.push(Segment {
                    first_row: 0,
                    start_time: t0,
                    columns: grid,
                    trend: Vec::new(),
                });
            }
            Gaps::Split | Gaps::Longest => {
                let mut start = None;
                for s in 0..=grid_len {
                    let clean = s < grid_len && grid.iter().all(|c| !c[s].is_nan());
                    match (clean, start) {
                        (true, None) => start = Some(s),
                        (false, Some(a)) => {
                            segments.push(Segment {
                                first_row: a,
                                start_time: t0 + a as f64 * step,
                                columns: grid.iter().map(|c| c[a..s].to_vec()).collect(),
                                trend: Vec::new(),
                            });
                            start = None;
                        }
                        _ => {}
                    }
                }
                if opts.gaps == Gaps::Longest
                    && let Some(best) = segments.iter().map(Segment::len).max()
                {
                    let keep = segments.iter().position(|s| s.len() == best).unwrap_or(0);
                    segments = vec![segments.swap_remove(keep)];
                }
                notes.push(format!(
                    "{} missing sample(s): analysing {} clean segment(s) of {} samples",
                    missing.len(),
                    segments.len(),
                    segments.iter().map(Segment::len).sum::<usize>()
                ));
            }
        }
    }
    for seg in &mut segments {
        seg.trend = seg
            .columns
            .iter_mut()
            .map(|c| stats::detrend(c, opts.detrend))
            .collect();
    }
    segments.retain(|s| !s.is_empty());
    if segments.is_empty() {
        bail!("{label}: no clean samples left to analyse");
    }
    if !raw.has_time {
        notes.push(format!(
            "no '{}' column: rows are taken as evenly spaced samples",
            opts.time_column
        ));
    }
    Ok(Series {
        names: names.to_vec(),
        segments,
        step,
        rows: raw.time.len(),
        notes,
    })
}

/// Largest magnitude a value may have: the analyses square and sum values (variances, the
/// regressors' QR, correlations), and beyond this the sums of squares of even 10⁸ samples
/// would overflow `f64` and turn every result into inf or NaN.
pub const MAX_MAGNITUDE: f64 = 1e150;

/// Refuses a column whose values are too large or too small to square (see
/// [`MAX_MAGNITUDE`]); an all-zero column passes (it is constant, which the analyses name).
fn check_magnitudes(raw: &Raw, names: &[String], rates: bool) -> anyhow::Result<()> {
    for (col, name) in raw.values.iter().zip(names) {
        let Some((i, peak)) = col
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, v)| (i, v.abs()))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            continue;
        };
        let line = raw.lines[i];
        let what = if rates && name.ends_with("_total") {
            " (as a rate)"
        } else {
            ""
        };
        if peak > MAX_MAGNITUDE {
            bail!(
                "{}:{line}: column {name} reaches {peak:e}{what}: values above \
                 {MAX_MAGNITUDE:e} overflow when squared and summed; give the column in larger \
                 units",
                raw.label
            );
        }
        if peak > 0.0 && peak < 1.0 / MAX_MAGNITUDE {
            bail!(
                "{}:{line}: column {name} is at most {peak:e} in magnitude{what}: values this \
                 small underflow when squared; give the column in smaller units",
                raw.label
            );
        }
    }
    Ok(())
}

/// The sampling rate recorded in the trace's metadata sidecar (`FILE.meta.json`), if any.
fn sidecar_rate(input: &str) -> Option<f64> {
    if input == "-" {
        return None;
    }
    let text = std::fs::read_to_string(super::sidecar_path(Path::new(input))).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
    meta.get("rate_hz")?
        .as_f64()
        .filter(|r| *r > 0.0 && r.is_finite())
}

/// Least-squares slope of `time` over the grid slots (`None` with fewer than two slots).
fn grid_period(time: &[f64], slots: &[usize]) -> Option<f64> {
    let n = time.len() as f64;
    let (t0, k0) = (time[0], slots[0] as f64);
    // Offsets from the first row keep the sums small (Unix times are ~1.8e9).
    let km = slots.iter().map(|&k| k as f64 - k0).sum::<f64>() / n;
    let tm = time.iter().map(|t| t - t0).sum::<f64>() / n;
    let (mut skt, mut skk) = (0.0, 0.0);
    for (&k, &t) in slots.iter().zip(time) {
        let dk = k as f64 - k0 - km;
        skt += dk * (t - t0 - tm);
        skk += dk * dk;
    }
    (skk > 0.0 && skk.is_finite()).then(|| skt / skk)
}

/// Median of the time steps.
fn median_step(time: &[f64]) -> Option<f64> {
    let mut d: Vec<f64> = time.windows(2).map(|w| w[1] - w[0]).collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(f64::total_cmp);
    Some(d[d.len() / 2])
}

/// Per-second rates of a cumulative counter: first sample and decreases become missing.
fn to_rates(x: &mut [f64], time: &[f64]) {
    let mut prev = f64::NAN;
    for (i, v) in x.iter_mut().enumerate() {
        let cur = *v;
        *v = if i == 0 || prev.is_nan() || cur.is_nan() || cur < prev {
            f64::NAN
        } else {
            (cur - prev) / (time[i] - time[i - 1])
        };
        prev = cur;
    }
}

/// Fills interior runs of NaN up to `max` long by linear interpolation; returns how many were
/// filled, or the first slot and length of a run that is too long (or at an end).
fn interpolate(x: &mut [f64], max: usize) -> Result<usize, (usize, usize)> {
    let mut filled = 0;
    let mut i = 0;
    while i < x.len() {
        if !x[i].is_nan() {
            i += 1;
            continue;
        }
        let start = i;
        while i < x.len() && x[i].is_nan() {
            i += 1;
        }
        let len = i - start;
        if start == 0 || i == x.len() || len > max {
            return Err((start, len));
        }
        let (a, b) = (x[start - 1], x[i]);
        for (j, v) in x[start..i].iter_mut().enumerate() {
            *v = a + (b - a) * (j + 1) as f64 / (len + 1) as f64;
        }
        filled += len;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse() {
        assert_eq!("#12".parse::<Bound>(), Ok(Bound::Row(12)));
        assert_eq!(
            "1795430010.5".parse::<Bound>(),
            Ok(Bound::Time(1795430010.5))
        );
        assert_eq!(
            "2026-11-23T12:33:57Z".parse::<Bound>(),
            Ok(Bound::Time(1795437237.0))
        );
        assert!("soon".parse::<Bound>().is_err());
    }

    #[test]
    fn interpolation_limits() {
        let mut x = vec![0.0, f64::NAN, f64::NAN, 3.0, f64::NAN, 5.0];
        assert_eq!(interpolate(&mut x, 2), Ok(3));
        assert_eq!(x, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let mut y = vec![0.0, f64::NAN, f64::NAN, 3.0];
        assert_eq!(interpolate(&mut y, 1), Err((1, 2)));
        let mut z = vec![f64::NAN, 1.0];
        assert_eq!(interpolate(&mut z, 5), Err((0, 1)));
    }

    #[test]
    fn rates_from_totals() {
        let mut x = vec![10.0, 30.0, 60.0, 5.0, 15.0];
        to_rates(&mut x, &[0.0, 2.0, 3.0, 4.0, 6.0]);
        assert!(x[0].is_nan() && x[3].is_nan());
        assert_eq!(&x[1..3], &[10.0, 30.0]);
        assert_eq!(x[4], 5.0);
    }
}
