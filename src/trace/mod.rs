//! Traces on disk: the CSV layout, the row writer and the JSON metadata sidecar.
//!
//! Rows are written with one `write` each, straight to the file (no user-space buffer), so a
//! recorder killed with SIGKILL leaves only whole rows; if a write fails part-way (disk full)
//! the file is cut back to the last whole row.

pub mod read;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// How the `time` column is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    /// Unix seconds with microsecond decimals (UTC).
    #[default]
    Unix,
    /// RFC 3339 UTC with microseconds, e.g. 2026-11-23T11:47:17.123456Z.
    Iso,
}

/// Appends `t` (since the Unix epoch) to `out` in format `fmt`.
pub fn push_time(out: &mut String, t: Duration, fmt: TimeFormat) {
    use std::fmt::Write as _;
    match fmt {
        TimeFormat::Unix => push_seconds(out, t),
        TimeFormat::Iso => {
            let dt = chrono::DateTime::from_timestamp(t.as_secs() as i64, t.subsec_nanos())
                .unwrap_or_default();
            let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        }
    }
}

/// Appends `d` as seconds with exactly six decimals.
pub fn push_seconds(out: &mut String, d: Duration) {
    use std::fmt::Write as _;
    let _ = write!(out, "{}.{:06}", d.as_secs(), d.subsec_micros());
}

/// A number as a message shows it: as written for everyday sizes, in exponent form beyond
/// them (`1e-300`, not three hundred digits).
pub fn shown(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-5..1e16).contains(&a) {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}

/// Quotes a CSV field if RFC 4180 requires it.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// One row as typed values, for sinks that keep types (Parquet) instead of text.
#[derive(Debug, Clone, Copy)]
pub struct CellRow<'a> {
    /// Wall-clock time of the sample since the Unix epoch.
    pub wall: Duration,
    /// Monotonic time since the recording started.
    pub elapsed: Duration,
    /// The schema's cells, in column order.
    pub cells: &'a [crate::record::Cell],
    /// With `--clock-ref`, the burst result that arrived since the previous row, if any.
    pub clock: Option<&'a crate::clock::Measurement>,
}

/// Where rows go: each call receives exactly one complete line.
pub trait RowSink {
    /// Writes one complete row (ending in `\n`) or fails without leaving part of it.
    fn write_row(&mut self, row: &[u8]) -> io::Result<()>;

    /// Whether this sink takes typed rows ([`RowSink::write_cells`]) instead of text lines;
    /// a typed sink is sent no header line.
    fn typed(&self) -> bool {
        false
    }

    /// Writes one typed row; called instead of `write_row` when [`RowSink::typed`] is true.
    fn write_cells(&mut self, row: &CellRow<'_>) -> io::Result<()> {
        let _ = row;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this output takes text rows",
        ))
    }

    /// Ends the output once the run is over, with the run's final metadata (a Parquet file
    /// writes its last row group and its footer here); text sinks have nothing to do.
    fn finish(&mut self, meta: Option<&Metadata>) -> io::Result<()> {
        let _ = meta;
        Ok(())
    }
}

impl RowSink for Vec<u8> {
    fn write_row(&mut self, row: &[u8]) -> io::Result<()> {
        self.extend_from_slice(row);
        Ok(())
    }
}

/// Rows to standard output, flushed per row so pipelines see each sample at once.
#[derive(Debug, Default)]
pub struct StdoutRows;

impl RowSink for StdoutRows {
    fn write_row(&mut self, row: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(row)?;
        out.flush()
    }
}

/// Rows to a file with no user-space buffering; see the module docs.
#[derive(Debug)]
pub struct FileRows {
    file: File,
    path: PathBuf,
    complete: u64,
    rows: u64,
}

impl FileRows {
    /// Creates (truncates) `path`; the error names it.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create output file {}: {e}", path.display()))?;
        Ok(FileRows {
            file,
            path: path.to_path_buf(),
            complete: 0,
            rows: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RowSink for FileRows {
    fn write_row(&mut self, row: &[u8]) -> io::Result<()> {
        match self.file.write_all(row) {
            Ok(()) => {
                self.complete += row.len() as u64;
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                // Cut a partial row so that the file ends on a whole line.
                let _ = self.file.set_len(self.complete);
                let kept = self.rows.saturating_sub(1);
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "writing {}: {e}; the {kept} data rows written before are intact",
                        self.path.display()
                    ),
                ))
            }
        }
    }
}

/// What a column's value means over time (resampling in `align` depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An instantaneous reading at the row's time.
    Gauge,
    /// An average over the interval that ends at the row's time (rates and percentages).
    Rate,
    /// A cumulative counter as the kernel reports it.
    Total,
    /// A time stamp.
    Time,
}

/// Name, meaning and unit of one CSV column, as listed in the metadata.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnInfo {
    /// Header name.
    pub name: String,
    /// How the value relates to time.
    pub kind: Kind,
    /// Unit of the values.
    pub unit: String,
}

/// The JSON sidecar of a recording: where, how and what was recorded, and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// Version of vmmon that wrote the trace.
    pub vmmon_version: String,
    /// Source name given with `--name`.
    pub name: Option<String>,
    /// Host name of the recording machine.
    pub host: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Boot id (`/proc/sys/kernel/random/boot_id`): counters reset across boots.
    pub boot_id: Option<String>,
    /// Current clock source (`tsc`, `kvm-clock`, …).
    pub clock_source: Option<String>,
    /// Kernel clock ticks per second (the unit of the CPU `_ticks_total` counters).
    pub ticks_per_second: i64,
    /// Number of CPUs online at the start.
    pub cpus: usize,
    /// Sampling rate in Hz.
    pub rate_hz: f64,
    /// `rates` (derived per-interval values) or `raw` (cumulative counters).
    pub mode: String,
    /// Format of the `time` column.
    pub time_format: TimeFormat,
    /// Wall-clock start, Unix seconds.
    pub start_unix: f64,
    /// Wall-clock start, RFC 3339.
    pub start_iso: String,
    /// Wall-clock end, Unix seconds (absent while running).
    pub end_unix: Option<f64>,
    /// `running`, `complete`, `interrupted` or `failed`.
    pub status: String,
    /// Data rows written.
    pub rows: u64,
    /// Slots skipped because the recorder fell a whole interval or more behind.
    pub missed_slots: u64,
    /// |actual − scheduled| sample time.
    pub lateness: crate::record::LatenessSummary,
    /// Recorded devices by kind.
    pub devices: std::collections::BTreeMap<String, Vec<String>>,
    /// Every column of the CSV, in order.
    pub columns: Vec<ColumnInfo>,
    /// Root of the `/proc` tree read.
    pub proc_root: String,
    /// The command line.
    pub command: Vec<String>,
    /// Reference-clock probing (`--clock-ref`): server, bursts, drift over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_ref: Option<crate::clock::RefSummary>,
    /// Row layout (`csv`: wide, `long`: time, vm, metric, value).
    pub layout: crate::record::Layout,
    /// The VMs seen with `--vms` (at the start while running; all of them at the end).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<crate::record::VmInfo>,
}

/// The sidecar path of a trace: `FILE.meta.json` next to `FILE`.
pub fn sidecar_path(trace: &Path) -> PathBuf {
    let mut name = trace.as_os_str().to_owned();
    name.push(".meta.json");
    PathBuf::from(name)
}

/// The sidecar a trace written to `output` gets by default: none when `output` is not a
/// regular file (`-o /dev/null`, a FIFO), since `/dev/null.meta.json` is debris nobody asked
/// for; `--meta` still names one explicitly.
pub fn default_sidecar(output: &Path) -> Option<PathBuf> {
    match std::fs::metadata(output) {
        Ok(m) if !m.is_file() => None,
        _ => Some(sidecar_path(output)),
    }
}

/// Writes `text` as the content of `path` without a reader ever seeing half of it: to a
/// temporary file renamed over it. A symbolic link is followed (its target is replaced,
/// not the link), and a path that is not a regular file (`/dev/null`, `/dev/stdout`, a
/// FIFO) is written in place: renaming over a device would destroy it.
pub fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).or_else(|_| {
            // A dangling link: its target, relative to the link's folder.
            let to = std::fs::read_link(path)?;
            Ok::<_, std::io::Error>(path.parent().unwrap_or(Path::new(".")).join(to))
        })?,
        _ => path.to_path_buf(),
    };
    if let Ok(m) = std::fs::metadata(&target)
        && !m.is_file()
    {
        return std::fs::write(&target, text);
    }
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &target))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

impl Metadata {
    /// Writes the metadata to `path` atomically (a reader never sees half a file); see
    /// [`write_replacing`].
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        write_replacing(path, &text)
            .map_err(|e| anyhow::anyhow!("cannot write metadata {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_messages_are_short() {
        for (x, want) in [
            (0.0, "0"),
            (2.5, "2.5"),
            (0.001, "0.001"),
            (1e15, "1000000000000000"),
            (1e-30, "1e-30"),
            (-1e-300, "-1e-300"),
            (1e300, "1e300"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(shown(x), want);
        }
    }

    #[test]
    fn time_formats() {
        let t = Duration::new(1_795_437_237, 123_456_789);
        let mut s = String::new();
        push_time(&mut s, t, TimeFormat::Unix);
        assert_eq!(s, "1795437237.123456");
        s.clear();
        push_time(&mut s, t, TimeFormat::Iso);
        assert_eq!(s, "2026-11-23T12:33:57.123456Z");
    }

    #[test]
    fn quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn sidecar_name() {
        assert_eq!(
            sidecar_path(Path::new("/t/host.csv")),
            PathBuf::from("/t/host.csv.meta.json")
        );
    }
}
