//! Reading one source row by row: the CSV layout, column kinds, times relative to an origin,
//! and the clock correction applied to each row's time.
//!
//! Times are kept as seconds since an integer origin (the reference's first whole second):
//! Unix times near 1.8e9 have an ulp of 0.24 µs as `f64`, so interval lengths computed from
//! them would lose 1e-7 relative; relative to the origin they are exact to ~1e-13 s, and the
//! `INT.FRACTION` cell is split before conversion so no precision is lost on parsing either.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::trace::Kind;
use crate::trace::read::parse_time;

/// Names of the clock-offset column, in order of preference: `vmmon record --clock-ref`
/// writes the first, `vmmon clock probe` the second.
pub const OFFSET_COLUMNS: [&str; 2] = ["clock_offset_s", "offset_s"];

/// Columns that describe the clock correction rather than the machine; not resampled.
pub const CLOCK_COLUMNS: [&str; 6] = [
    "clock_offset_s",
    "clock_rtt_s",
    "clock_bound_s",
    "offset_s",
    "rtt_s",
    "bound_s",
];

/// What a trace's sidecar says about it, when there is one.
#[derive(Debug, Clone, Default)]
pub struct Sidecar {
    /// `rate_hz`.
    pub rate_hz: Option<f64>,
    /// `columns[]`: name → (kind, unit).
    pub columns: Vec<(String, Option<Kind>, String)>,
}

/// Reads `FILE.meta.json` next to `path`; `None` if absent or not a sidecar we understand.
pub fn read_sidecar(path: &Path) -> Option<Sidecar> {
    let text = std::fs::read_to_string(crate::trace::sidecar_path(path)).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
    let rate_hz = meta
        .get("rate_hz")
        .and_then(serde_json::Value::as_f64)
        .filter(|r| *r > 0.0 && r.is_finite());
    let columns = meta
        .get("columns")
        .and_then(serde_json::Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    let name = c.get("name")?.as_str()?.to_string();
                    let kind = c.get("kind").and_then(|k| k.as_str()).and_then(parse_kind);
                    let unit = c
                        .get("unit")
                        .and_then(|u| u.as_str())
                        .unwrap_or("")
                        .to_string();
                    Some((name, kind, unit))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Sidecar { rate_hz, columns })
}

/// Parses a kind as the sidecar and `--kind` spell it.
pub fn parse_kind(s: &str) -> Option<Kind> {
    match s {
        "gauge" => Some(Kind::Gauge),
        "rate" => Some(Kind::Rate),
        "total" => Some(Kind::Total),
        "time" => Some(Kind::Time),
        _ => None,
    }
}

/// The kind a column has when no sidecar says: `*_total` counters, `*_per_s` and `*_pct`
/// interval averages, `time`/`elapsed` times, anything else a reading at the instant.
pub fn kind_from_name(name: &str) -> Kind {
    if name == "time" || name == "elapsed" {
        Kind::Time
    } else if name.ends_with("_total") {
        Kind::Total
    } else if name.ends_with("_per_s") || name.ends_with("_pct") {
        Kind::Rate
    } else {
        Kind::Gauge
    }
}

/// The unit a column's name implies, when no sidecar says.
pub fn unit_from_name(name: &str) -> &'static str {
    if name.ends_with("_pct") {
        "%"
    } else if name.ends_with("_bytes_per_s") {
        "B/s"
    } else if name.ends_with("_per_s") {
        "1/s"
    } else if name.ends_with("_bytes") {
        "B"
    } else if name.ends_with("_s") {
        "s"
    } else {
        ""
    }
}

/// Parses a number cell quickly: the common `[-]DIGITS[.DIGITS]` with at most 15 significant
/// digits is converted exactly (mantissa and power of ten are both exact `f64`, so one
/// division rounds correctly, as the standard parser would); anything else goes to the
/// standard parser. Returns `None` for text that is not a number.
pub fn parse_number(cell: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, digits) = match cell.first() {
        Some(b'-') => (true, &cell[1..]),
        _ => (false, cell),
    };
    let mut mantissa: u64 = 0;
    let mut significant = 0usize;
    let mut decimals = 0usize;
    let mut seen_point = false;
    let mut any = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                any = true;
                if mantissa != 0 || b != b'0' {
                    significant += 1;
                }
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                if seen_point {
                    decimals += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return slow_number(cell),
        }
    }
    if !any || significant > 15 || decimals > 15 {
        return slow_number(cell);
    }
    let v = mantissa as f64 / POW10[decimals];
    Some(if neg { -v } else { v })
}

fn slow_number(cell: &[u8]) -> Option<f64> {
    std::str::from_utf8(cell).ok()?.trim().parse::<f64>().ok()
}

/// A row's time as seconds since `origin` (whole Unix seconds), exactly for `INT.FRACTION`.
pub fn parse_rel_time(cell: &[u8], origin: i64) -> Option<f64> {
    let (int, frac) = match cell.iter().position(|&b| b == b'.') {
        Some(p) => (&cell[..p], &cell[p..]),
        None => (cell, &b""[..]),
    };
    if !int.is_empty() && int.len() <= 15 && int.iter().all(u8::is_ascii_digit) {
        let mut i: i64 = 0;
        for &b in int {
            i = i * 10 + i64::from(b - b'0');
        }
        let f = if frac.len() > 1 {
            if !frac[1..].iter().all(u8::is_ascii_digit) {
                return slow_time(cell, origin);
            }
            parse_number(frac)?
        } else {
            0.0
        };
        return Some((i - origin) as f64 + f);
    }
    slow_time(cell, origin)
}

fn slow_time(cell: &[u8], origin: i64) -> Option<f64> {
    let t = parse_time(std::str::from_utf8(cell).ok()?)?;
    Some(t - origin as f64)
}

/// Opens a CSV for streaming; the error names the file.
pub fn open_csv(path: &Path) -> anyhow::Result<csv::Reader<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(BufReader::with_capacity(1 << 17, f)))
}

/// The header of a CSV file, trimmed.
pub fn read_header(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut r = open_csv(path)?;
    let h = r
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?;
    Ok(h.iter().map(|s| s.trim().to_string()).collect())
}

/// Where a source's time-varying clock offset comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetColumn {
    /// The file holding it (the trace itself, or a `vmmon clock probe` CSV).
    pub path: PathBuf,
    /// Its name there (`clock_offset_s` or `offset_s`).
    pub column: String,
}

/// A clock probe: local time (relative to the origin) and the offset measured then.
type Probe = (f64, f64);

/// Follows the offset column through its file with a reader of its own, a probe ahead of the
/// rows asking, so that `offset(t)` can be interpolated between the probes around `t`
/// without holding the rows in between (probes are sparse: empty cells elsewhere).
pub struct ClockCursor {
    csv: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    label: String,
    time_idx: usize,
    offset_idx: usize,
    origin: i64,
    before: Option<Probe>,
    after: Option<Probe>,
    last_time: Option<(f64, u64)>,
    /// Probes read so far.
    pub probes: u64,
    /// The first probe.
    pub first: Option<Probe>,
}

impl ClockCursor {
    /// Opens the offset column; fails if the file has no probe at all.
    pub fn open(src: &OffsetColumn, origin: i64) -> anyhow::Result<Self> {
        let label = src.path.display().to_string();
        let header = read_header(&src.path)?;
        let find = |n: &str| header.iter().position(|h| h == n);
        let time_idx = find("time").with_context(|| format!("{label}: no column named 'time'"))?;
        let offset_idx = find(&src.column)
            .with_context(|| format!("{label}: no column named '{}'", src.column))?;
        let mut c = ClockCursor {
            csv: open_csv(&src.path)?,
            record: csv::ByteRecord::new(),
            label,
            time_idx,
            offset_idx,
            origin,
            before: None,
            after: None,
            last_time: None,
            probes: 0,
            first: None,
        };
        c.after = c.next_probe()?;
        c.first = c.after;
        if c.after.is_none() {
            bail!(
                "{}: column {} has no value: no clock probe succeeded; give the offset with \
                 --offset NAME=SECONDS",
                c.label,
                src.column
            );
        }
        Ok(c)
    }

    fn next_probe(&mut self) -> anyhow::Result<Option<Probe>> {
        loop {
            let more = self
                .csv
                .read_byte_record(&mut self.record)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.label))?;
            if !more {
                return Ok(None);
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let cell = self.record.get(self.offset_idx).unwrap_or(b"").trim_ascii();
            if cell.is_empty() {
                continue;
            }
            let tcell = self.record.get(self.time_idx).unwrap_or(b"").trim_ascii();
            let t = parse_rel_time(tcell, self.origin).with_context(|| {
                format!(
                    "{}:{line}:{}: time '{}' is not Unix seconds or RFC 3339",
                    self.label,
                    self.time_idx + 1,
                    String::from_utf8_lossy(tcell)
                )
            })?;
            if let Some((prev, pline)) = self.last_time
                && t <= prev
            {
                bail!(
                    "{}:{line}:{}: time goes backwards: {} after {} on line {pline}",
                    self.label,
                    self.time_idx + 1,
                    abs_time(t, self.origin),
                    abs_time(prev, self.origin)
                );
            }
            self.last_time = Some((t, line));
            let o = parse_number(cell)
                .filter(|v| v.is_finite())
                .with_context(|| {
                    format!(
                        "{}:{line}:{}: '{}' in column {} is not a number",
                        self.label,
                        self.offset_idx + 1,
                        String::from_utf8_lossy(cell),
                        OFFSET_COLUMNS[0]
                    )
                })?;
            self.probes += 1;
            return Ok(Some((t, o)));
        }
    }

    /// The offset at local time `t` (relative): linear between the probes around `t`, the
    /// first probe's value before it and the last probe's after it. `t` must not decrease.
    pub fn offset_at(&mut self, t: f64) -> anyhow::Result<f64> {
        while let Some(a) = self.after {
            if a.0 > t {
                break;
            }
            self.before = Some(a);
            self.after = self.next_probe()?;
        }
        Ok(match (self.before, self.after) {
            (Some((t0, o0)), Some((t1, o1))) => o0 + (o1 - o0) * ((t - t0) / (t1 - t0)),
            (Some((_, o)), None) | (None, Some((_, o))) => o,
            (None, None) => 0.0,
        })
    }

    /// The last probe read (for the summary).
    pub fn last(&self) -> Option<Probe> {
        self.after.or(self.before)
    }
}

/// Unix seconds of a relative time, for messages.
pub fn abs_time(t: f64, origin: i64) -> String {
    format!("{:.6}", origin as f64 + t)
}

/// How one source is read: which cells, and how its times are corrected.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    /// The trace.
    pub path: PathBuf,
    /// Index of `time`.
    pub time_idx: usize,
    /// Indices of the data columns wanted, in output order.
    pub columns: Vec<usize>,
    /// Their names in the file (for messages).
    pub names: Vec<String>,
    /// A time-varying offset, if any.
    pub offset_column: Option<OffsetColumn>,
    /// Seconds added to every corrected time (`--offset` or an estimated lag).
    pub constant: f64,
}

/// Streams one source: each call gives the next row's corrected time and values.
pub struct SourceReader {
    csv: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    /// The file, for messages.
    pub label: String,
    spec: ReadSpec,
    origin: i64,
    /// The clock correction, if the offset is time-varying.
    pub clock: Option<ClockCursor>,
    prev: Option<(f64, f64, u64)>,
    /// Data rows read.
    pub rows: u64,
}

impl SourceReader {
    /// Opens the source; times are returned relative to `origin`.
    pub fn open(spec: &ReadSpec, origin: i64) -> anyhow::Result<Self> {
        let clock = match &spec.offset_column {
            Some(oc) => Some(ClockCursor::open(oc, origin)?),
            None => None,
        };
        Ok(SourceReader {
            csv: open_csv(&spec.path)?,
            record: csv::ByteRecord::new(),
            label: spec.path.display().to_string(),
            spec: spec.clone(),
            origin,
            clock,
            prev: None,
            rows: 0,
        })
    }

    /// Reads the next row into `values` (NaN for an empty cell); returns its corrected time,
    /// or `None` at the end.
    pub fn next_row(&mut self, values: &mut [f64]) -> anyhow::Result<Option<f64>> {
        let more = self
            .csv
            .read_byte_record(&mut self.record)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.label))?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let ti = self.spec.time_idx;
        let tcell = self.record.get(ti).unwrap_or(b"").trim_ascii();
        let t = parse_rel_time(tcell, self.origin).with_context(|| {
            format!(
                "{}:{line}:{}: time '{}' is not Unix seconds or RFC 3339",
                self.label,
                ti + 1,
                String::from_utf8_lossy(tcell)
            )
        })?;
        let offset = match &mut self.clock {
            Some(c) => c.offset_at(t)?,
            None => 0.0,
        };
        let tau = t + offset + self.spec.constant;
        if let Some((pt, ptau, pline)) = self.prev {
            if t <= pt {
                bail!(
                    "{}:{line}:{}: time goes backwards: {} after {} on line {pline}",
                    self.label,
                    ti + 1,
                    abs_time(t, self.origin),
                    abs_time(pt, self.origin)
                );
            }
            if tau <= ptau {
                bail!(
                    "{}:{line}: corrected time goes backwards ({} after {} on line {pline}): \
                     the clock offset changes faster than time passes",
                    self.label,
                    abs_time(tau, self.origin),
                    abs_time(ptau, self.origin)
                );
            }
        }
        self.prev = Some((t, tau, line));
        for (k, (&ci, v)) in self.spec.columns.iter().zip(values.iter_mut()).enumerate() {
            let cell = self.record.get(ci).unwrap_or(b"");
            *v = if cell.is_empty() {
                f64::NAN
            } else {
                match parse_number(cell) {
                    Some(x) if x.is_finite() => x,
                    Some(_) => bail!(
                        "{}:{line}:{}: {} in column {}: leave the cell empty for a missing value",
                        self.label,
                        ci + 1,
                        String::from_utf8_lossy(cell),
                        self.spec.names[k]
                    ),
                    None if cell.trim_ascii().is_empty() => f64::NAN,
                    None => bail!(
                        "{}:{line}:{}: '{}' in column {} is not a number",
                        self.label,
                        ci + 1,
                        String::from_utf8_lossy(cell),
                        self.spec.names[k]
                    ),
                }
            };
        }
        self.rows += 1;
        Ok(Some(tau))
    }

    /// The line of the row read last.
    pub fn line(&self) -> u64 {
        self.prev.map_or(1, |p| p.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_numbers_equal_the_standard_parser() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut cases: Vec<String> = vec![
            "0",
            "-0",
            "1",
            "12",
            "0.1",
            "0.000001",
            "92.6829268292683",
            "27720.780168715006",
            "25276514304",
            "1e5",
            "-3.25",
            "123456789012345",
            "1234567890123456",
            ".5",
            "5.",
            "00012.50",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = (s >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((s % 14) as i32 - 4);
            cases.push(v.to_string());
            cases.push(format!("{v:.3}"));
        }
        for c in &cases {
            let want: f64 = c.parse().expect("a number");
            let got = parse_number(c.as_bytes()).expect("parsed");
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        for bad in ["", "-", ".", "x", "1.2.3", "1,5", "nan1"] {
            assert!(parse_number(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn relative_times_are_exact() {
        let t = parse_rel_time(b"1795438584.733245", 1_795_438_584).expect("time");
        assert_eq!(t, 0.733245);
        let t = parse_rel_time(b"1795438590", 1_795_438_584).expect("time");
        assert_eq!(t, 6.0);
        let t = parse_rel_time(b"2026-11-23T12:56:25.5Z", 1_795_438_584).expect("iso");
        assert!((t - 1.5).abs() < 1e-6, "{t}");
        assert!(parse_rel_time(b"soon", 0).is_none());
    }

    #[test]
    fn kinds_from_names() {
        assert_eq!(kind_from_name("ctxt_total"), Kind::Total);
        assert_eq!(kind_from_name("ctxt_per_s"), Kind::Rate);
        assert_eq!(kind_from_name("cpu_user_pct"), Kind::Rate);
        assert_eq!(kind_from_name("load_1m"), Kind::Gauge);
        assert_eq!(kind_from_name("elapsed"), Kind::Time);
    }

    #[test]
    fn offsets_interpolate_between_probes_and_hold_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("probe.csv");
        std::fs::write(
            &p,
            "time,offset_s\n100.0,\n101.0,0.5\n102.0,\n103.0,0.7\n104.0,\n",
        )
        .expect("write");
        let oc = OffsetColumn {
            path: p,
            column: "offset_s".into(),
        };
        let mut c = ClockCursor::open(&oc, 100).expect("open");
        let at = |c: &mut ClockCursor, t: f64| c.offset_at(t).expect("offset");
        assert_eq!(at(&mut c, 0.0), 0.5); // before the first probe: held
        assert_eq!(at(&mut c, 1.0), 0.5);
        assert!((at(&mut c, 2.0) - 0.6).abs() < 1e-15);
        assert!((at(&mut c, 2.5) - 0.65).abs() < 1e-15);
        assert_eq!(at(&mut c, 3.0), 0.7);
        assert_eq!(at(&mut c, 9.0), 0.7); // after the last: held
        assert_eq!(c.probes, 2);
    }

    #[test]
    fn a_column_without_probes_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "time,clock_offset_s\n1,\n2,\n").expect("write");
        let oc = OffsetColumn {
            path: p,
            column: "clock_offset_s".into(),
        };
        let e = ClockCursor::open(&oc, 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no clock probe succeeded"), "{e}");
    }
}
