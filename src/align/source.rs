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

use super::records::Records;
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

/// Parses a number cell quickly: the common `[-]DIGITS[.DIGITS]` with at most 19 digits
/// (leading zeros count) is converted exactly; anything else goes to the standard parser.
/// Returns `None` for text that is not a number. A mantissa below 2^53 over a power of ten
/// up to 10^22 is one correctly rounded division of two exact `f64`s (as the standard
/// parser's fast path); a larger one (the 16–19 digits of a full-precision fraction) goes
/// through [`lemire_quotient`], with no division.
#[inline(always)]
pub fn parse_number(cell: &[u8]) -> Option<f64> {
    parse_with(cell, Some, slow_number)
}

/// What is wrong with a data cell.
enum BadCell {
    /// A number, but infinite or NaN (`inf`, `1e999`).
    NotFinite,
    /// Not a number at all.
    NotANumber,
}

/// A data cell's value (NaN for an empty or all-padding cell). Only the standard parser's
/// results need checking for being finite: the fast way's always are.
#[inline(always)]
fn cell_value(cell: &[u8]) -> Result<f64, BadCell> {
    if cell.is_empty() {
        return Ok(f64::NAN);
    }
    parse_with(cell, Ok, |cell| match slow_number(cell) {
        Some(x) if x.is_finite() => Ok(x),
        Some(_) => Err(BadCell::NotFinite),
        None if cell.trim_ascii().is_empty() => Ok(f64::NAN),
        None => Err(BadCell::NotANumber),
    })
}

/// `parse_number`'s fast way, giving `done(value)`, or `slow(cell)` where it does not apply.
#[inline(always)]
fn parse_with<R>(cell: &[u8], done: impl Fn(f64) -> R, slow: impl Fn(&[u8]) -> R) -> R {
    if cell == b"0" {
        return done(0.0);
    }
    let (neg, digits) = match cell.first() {
        Some(b'-') => (true, &cell[1..]),
        _ => (false, cell),
    };
    // The integer digits, then (after a `.`) the fraction's: two loops with one exit each,
    // counting an index up to a length held in a register.
    let mut mantissa: u64 = 0;
    let n = digits.len();
    let mut i = 0;
    while i < n {
        let d = digits[i].wrapping_sub(b'0');
        if d >= 10 {
            break;
        }
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let has_point = i < n;
    let decimals = if !has_point {
        0
    } else if digits[i] == b'.' {
        let start = i + 1;
        let mut j = start;
        while j < n {
            let d = digits[j].wrapping_sub(b'0');
            if d >= 10 {
                return slow(cell);
            }
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            j += 1;
        }
        n - start
    } else {
        return slow(cell);
    };
    let count = digits.len() - usize::from(has_point);
    match digits_value(mantissa, count, decimals) {
        Some(v) => done(if neg { -v } else { v }),
        None => slow(cell),
    }
}

/// The value of `count` digits read as `mantissa` with `decimals` of them after the point,
/// correctly rounded; `None` where the fast way does not apply (no digit, or more than 19).
#[inline(always)]
fn digits_value(mantissa: u64, count: usize, decimals: usize) -> Option<f64> {
    // Up to 19 digits (leading zeros included, which is stricter than 19 significant
    // ones) fit the mantissa exactly.
    if count == 0 || count > 19 {
        return None;
    }
    Some(if decimals == 0 {
        // An integer: `as` rounds to nearest, ties to even, as the standard parser does
        // (through `i64` where it fits, which converts in one instruction).
        if mantissa < 1 << 63 {
            mantissa as i64 as f64
        } else {
            mantissa as f64
        }
    } else if mantissa < 1 << 53 {
        mantissa as f64 / POW10[decimals]
    } else {
        lemire_quotient(mantissa, decimals)
    })
}

/// A number cell read straight from a record's bytes at `buf[i..]`: its value (NaN for an
/// empty cell, one that ends at once in `,` or `\n`) and where it stops, at the first byte
/// that is not part of `[-]DIGITS[.DIGITS]`; `None` where the fast way does not apply.
/// `buf` must end in a byte that is none of those (the reader's sentinel), so the loops
/// need no length. The digits are read as [`parse_number`] reads them.
#[inline(always)]
fn number_at(buf: &[u8], i: usize) -> Option<(f64, usize)> {
    let first = buf[i];
    // A lone `0` (the commonest cell) before a comma; `first` is not the sentinel, so
    // there is a byte after it.
    if first == b'0' && buf[i + 1] == b',' {
        return Some((0.0, i + 1));
    }
    let neg = first == b'-';
    let start = i + usize::from(neg);
    let (mut mantissa, mut i) = digits_at(buf, start, 0);
    // Counts capped (a no-op for any count that is used) so that the compiler does not
    // carry pointers derived from them through the loops.
    let mut count = (i - start).min(255);
    let mut decimals = 0;
    if buf[i] == b'.' {
        i += 1;
        let point = i;
        (mantissa, i) = digits_at(buf, i, mantissa);
        decimals = (i - point).min(255);
        count += decimals;
    }
    match digits_value(mantissa, count, decimals) {
        Some(v) => Some((if neg { -v } else { v }, i)),
        // No digit: an empty cell if it ends at once (looked at only here, off the
        // common path).
        None if first == b',' || first == b'\n' => Some((f64::NAN, i)),
        None => None,
    }
}

/// A time cell `INT[.FRACTION]` (up to 15 digits each) read straight from a record's bytes
/// at `buf[i..]`, as [`parse_rel_time`] reads it: the time since `origin` and where it
/// stops; `None` for anything else. `buf` ends as for [`number_at`].
#[inline(always)]
fn time_at(buf: &[u8], start: usize, origin: i64) -> Option<(f64, usize)> {
    let (int, mut i) = digits_at(buf, start, 0);
    if i == start || i - start > 15 {
        return None;
    }
    let mut f = 0.0;
    if buf[i] == b'.' {
        let point = i + 1;
        let m;
        (m, i) = digits_at(buf, point, 0);
        if i - point > 15 {
            return None;
        }
        f = rel_fraction(m, i - point);
    }
    // At most 15 digits: `int` < 10^15 fits an `i64`.
    Some(((int as i64 - origin) as f64 + f, i))
}

/// Decimal digits read from `buf[i..]` onto `acc` (wrapping) up to the first other byte:
/// the value and where it stopped. `buf` ends as for [`number_at`], whose sentinel stops
/// the loop.
#[inline(always)]
fn digits_at(buf: &[u8], mut i: usize, mut acc: u64) -> (u64, usize) {
    loop {
        let d = buf[i].wrapping_sub(b'0');
        if d >= 10 {
            return (acc, i);
        }
        acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
}

/// A time's fraction of `n` ≤ 15 digits read as `m`: below 10^15 < 2^53 over an exact power
/// of ten, one correct rounding, as `parse_number` gives.
#[inline(always)]
fn rel_fraction(m: u64, n: usize) -> f64 {
    if n == 0 { 0.0 } else { m as f64 / POW10[n] }
}

/// A field that is not a number wanted, read straight from a record's bytes at `buf[i..]`:
/// where it stops (`,` or `\n`); `None` at a quote (the RFC 4180 parser's case) or the
/// sentinel. `buf` ends as for [`number_at`].
#[inline(always)]
fn skip_at(buf: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match buf[i] {
            b',' | b'\n' => return Some(i),
            b'"' | 0 => return None,
            _ => i += 1,
        }
    }
}

/// Powers of ten exact as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `5^-d` for `d` in 1..=19 (entry 0 unused) as the 128-bit constants of the Eisel–Lemire algorithm:
/// `⌊2^(127 + z) / 5^d⌋ + 1` with `2^z` the least power of two ≥ `5^d` (the scaling of
/// the standard library's table, whose entries for these `d` they equal), as (high, low).
const NEG_POW5: [(u64, u64); 20] = {
    let mut t = [(0u64, 0u64); 20];
    let mut d = 1;
    while d < 20 {
        let p = 5u128.pow(d as u32);
        let mut z = 0;
        while (1u128 << z) < p {
            z += 1;
        }
        // Long division of 2^(127 + z) by p, one bit at a time (compile time only).
        let (mut q, mut r) = (0u128, 0u128);
        let mut bit = 127 + z;
        loop {
            r = (r << 1) | if bit == 127 + z { 1 } else { 0 };
            q <<= 1;
            if r >= p {
                r -= p;
                q |= 1;
            }
            if bit == 0 {
                break;
            }
            bit -= 1;
        }
        let c = q + 1;
        t[d] = ((c >> 64) as u64, c as u64);
        d += 1;
    }
    t
};

/// The biased binary exponent that goes with `NEG_POW5[d]`: `⌊log2(10^-d)⌋ + 63` (the
/// algorithm's fixed-point `log2(10)`) plus the bias 1023. A table, not the multiply, so
/// that the compiler does not thread the multiply through the digit loops.
const NEG_POW5_EXP: [i32; 20] = {
    let mut t = [0i32; 20];
    let mut d = 0;
    while d < 20 {
        t[d] = ((-(d as i32) * (152_170 + 65_536)) >> 16) + 63 + 1023;
        d += 1;
    }
    t
};

/// `m / 10^d` correctly rounded, for `2^53 ≤ m < 2^64` and `1 ≤ d ≤ 19`, by the
/// Eisel–Lemire algorithm (Lemire, "Number parsing at a gigabyte per second", 2021): `m`
/// times a 128-bit `5^-d`, rounded from the top 55 bits. For these exponents the product
/// is never ambiguous (the paper's §8–9; ties only arise for `d ≤ 4`, where they are
/// exact and rounded to even below), so unlike the general algorithm this needs no
/// fall-back.
#[inline(always)]
fn lemire_quotient(m: u64, d: usize) -> f64 {
    let lz = m.leading_zeros();
    let w = m << lz;
    let (hi5, lo5) = NEG_POW5[d];
    let first = u128::from(w) * u128::from(hi5);
    let (mut hi, mut lo) = ((first >> 64) as u64, first as u64);
    // Nine bits below the 55 kept: all ones means the low word's product could carry in.
    const MASK: u64 = (1 << 9) - 1;
    if hi & MASK == MASK {
        let second = ((u128::from(w) * u128::from(lo5)) >> 64) as u64;
        lo = lo.wrapping_add(second);
        if second > lo {
            hi += 1;
        }
    }
    let upper = (hi >> 63) as i32;
    let mut mantissa = hi >> (upper + 9);
    let mut power2 = NEG_POW5_EXP[d] + upper - lz as i32;
    if lo <= 1 && d <= 4 && mantissa & 3 == 1 && (mantissa << (upper + 9)) == hi {
        // Exactly halfway: round to even (down).
        mantissa &= !1;
    }
    mantissa += mantissa & 1;
    mantissa >>= 1;
    if mantissa >= 2 << 52 {
        mantissa = 1 << 52;
        power2 += 1;
    }
    f64::from_bits((mantissa & !(1 << 52)) | (power2 as u64) << 52)
}

/// The standard parser, after ASCII padding (as the time and probe cells are trimmed; other
/// whitespace is not padding).
fn slow_number(cell: &[u8]) -> Option<f64> {
    std::str::from_utf8(cell.trim_ascii())
        .ok()?
        .parse::<f64>()
        .ok()
}

/// A row's time as seconds since `origin` (whole Unix seconds), exactly for `INT.FRACTION`.
pub fn parse_rel_time(cell: &[u8], origin: i64) -> Option<f64> {
    // One pass over the common `INT[.FRACTION]` (up to 15 digits each); anything else, and
    // longer fractions, go the long way.
    let mut int: i64 = 0;
    let mut k = 0;
    while let Some(&b) = cell.get(k)
        && b.is_ascii_digit()
        && k < 16
    {
        int = int * 10 + i64::from(b - b'0');
        k += 1;
    }
    if k == 0 || k > 15 {
        return slow_time(cell, origin);
    }
    let f = match &cell[k..] {
        [] | [b'.'] => 0.0,
        [b'.', digits @ ..] if digits.len() <= 15 => {
            let mut m: u64 = 0;
            for &b in digits {
                if !b.is_ascii_digit() {
                    return slow_time(cell, origin);
                }
                m = m * 10 + u64::from(b - b'0');
            }
            rel_fraction(m, digits.len())
        }
        frac @ [b'.', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => parse_number(frac)?,
        _ => return slow_time(cell, origin),
    };
    Some((int - origin) as f64 + f)
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

/// Bytes of parsed rows a source may hold while it looks ahead for its next clock probe.
const LOOKAHEAD_BYTES: usize = 1 << 19;

/// The probe in an offset cell (`None` if empty); the error names file:line:column.
fn probe_cell(rec: &Records, label: &str, offset_idx: usize) -> anyhow::Result<Option<f64>> {
    let cell = rec.get(offset_idx).trim_ascii();
    if cell.is_empty() {
        return Ok(None);
    }
    let o = parse_number(cell)
        .filter(|v| v.is_finite())
        .with_context(|| {
            format!(
                "{label}:{}:{}: '{}' in column {} is not a number",
                rec.line(),
                offset_idx + 1,
                String::from_utf8_lossy(cell).escape_debug(),
                OFFSET_COLUMNS[0]
            )
        })?;
    Ok(Some(o))
}

/// A row's time cell, relative to `origin`; the error names file:line:column.
fn time_cell(rec: &Records, label: &str, time_idx: usize, origin: i64) -> anyhow::Result<f64> {
    let tcell = rec.get(time_idx).trim_ascii();
    parse_rel_time(tcell, origin).with_context(|| {
        format!(
            "{label}:{}:{}: time '{}' is not Unix seconds or RFC 3339",
            rec.line(),
            time_idx + 1,
            String::from_utf8_lossy(tcell).escape_debug()
        )
    })
}

/// Interpolates the offset at `t` between the probes around it.
fn interpolate(before: Option<Probe>, after: Option<Probe>, t: f64) -> f64 {
    match (before, after) {
        (Some((t0, o0)), Some((t1, o1))) => o0 + (o1 - o0) * ((t - t0) / (t1 - t0)),
        (Some((_, o)), None) | (None, Some((_, o))) => o,
        (None, None) => 0.0,
    }
}

/// Follows the offset column through its file with a reader of its own, a probe ahead of the
/// rows asking, so that `offset(t)` can be interpolated between the probes around `t`
/// without holding the rows in between (probes are sparse: empty cells elsewhere). Used for
/// a separate probe file, and for a trace whose probes are further apart than the look-ahead
/// of [`SourceReader`].
pub struct ClockCursor {
    rec: Records,
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

/// Where the columns `time` and `column` are in `path`.
fn clock_indices(path: &Path, column: &str) -> anyhow::Result<(usize, usize)> {
    let label = path.display();
    let header = read_header(path)?;
    let find = |n: &str| header.iter().position(|h| h == n);
    let time_idx = find("time").with_context(|| format!("{label}: no column named 'time'"))?;
    let offset_idx =
        find(column).with_context(|| format!("{label}: no column named '{column}'"))?;
    Ok((time_idx, offset_idx))
}

fn no_probe(label: &str, column: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{label}: column {column} has no value: no clock probe succeeded; give the offset with \
         --offset NAME=SECONDS"
    )
}

impl ClockCursor {
    /// Opens the offset column; fails if the file has no probe at all.
    pub fn open(src: &OffsetColumn, origin: i64) -> anyhow::Result<Self> {
        let label = src.path.display().to_string();
        let (time_idx, offset_idx) = clock_indices(&src.path, &src.column)?;
        let mut rec = Records::open(&src.path)?;
        rec.next_record()?; // the header
        let mut c = ClockCursor {
            rec,
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
            return Err(no_probe(&c.label, &src.column));
        }
        Ok(c)
    }

    fn next_probe(&mut self) -> anyhow::Result<Option<Probe>> {
        while self.rec.next_record()? {
            if self.rec.get(self.offset_idx).trim_ascii().is_empty() {
                continue;
            }
            let line = self.rec.line();
            let t = time_cell(&self.rec, &self.label, self.time_idx, self.origin)?;
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
            let o = probe_cell(&self.rec, &self.label, self.offset_idx)?;
            if let Some(o) = o {
                self.probes += 1;
                return Ok(Some((t, o)));
            }
        }
        Ok(None)
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
        Ok(interpolate(self.before, self.after, t))
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

/// Parses rows of one file: time, values, and the probe in its offset column if any.
struct RowParser {
    rec: Records,
    label: String,
    time_idx: usize,
    columns: Vec<usize>,
    names: Vec<String>,
    /// The offset column, when it is in this file and followed inline.
    offset_idx: Option<usize>,
    origin: i64,
    /// Local time and line of the row read last.
    last: Option<(f64, u64)>,
    /// What each field of a record is, for reading plain records in one pass (empty: every
    /// record goes through the splitter).
    roles: Vec<Role>,
}

/// What a field is to [`RowParser::read_plain`]: below [`SKIP`], the index of the data
/// value it holds. A number, not an enum, so that the test for a data value is one
/// compare (an enum's `match` compiles to a jump table, which predicts worse).
type Role = u32;
/// A field not read.
const SKIP: Role = u32::MAX - 2;
/// The inline clock offset.
const OFFSET: Role = u32::MAX - 1;
/// The time.
const TIME: Role = u32::MAX;

/// [`RowParser::read_plain`]'s record: its bytes, and the time and probe read so far.
struct PlainCell<'a> {
    buf: &'a [u8],
    origin: i64,
    t: f64,
    probe: Option<f64>,
}

impl PlainCell<'_> {
    /// Reads the cell at `i` by its role; where it stops.
    #[inline(always)]
    fn read(&mut self, role: Role, i: usize, values: &mut [f64]) -> Option<usize> {
        if role < SKIP {
            let (v, end) = number_at(self.buf, i)?;
            *values.get_mut(role as usize)? = v;
            Some(end)
        } else if role == TIME {
            let (t, end) = time_at(self.buf, i, self.origin)?;
            self.t = t;
            Some(end)
        } else if role == OFFSET {
            let (v, end) = number_at(self.buf, i)?;
            self.probe = (!v.is_nan()).then_some(v);
            Some(end)
        } else {
            skip_at(self.buf, i)
        }
    }
}

/// A parsed row.
#[derive(Clone, Copy)]
struct Row {
    t: f64,
    line: u64,
    probe: Option<f64>,
}

impl RowParser {
    /// A parser for the records after the header `rec` has just read.
    fn new(rec: Records, spec: &ReadSpec, offset_idx: Option<usize>, origin: i64) -> Self {
        let mut p = RowParser {
            rec,
            label: spec.path.display().to_string(),
            time_idx: spec.time_idx,
            columns: spec.columns.clone(),
            names: spec.names.clone(),
            offset_idx,
            origin,
            last: None,
            roles: Vec::new(),
        };
        p.roles = p.plan_roles().unwrap_or_default();
        p
    }

    /// Each field's role, from the header's width; `None` if a field would have two (the
    /// one-pass reader then stays off).
    fn plan_roles(&self) -> Option<Vec<Role>> {
        let mut roles = vec![SKIP; self.rec.len()];
        let mut give = |i: usize, role: Role| match roles.get_mut(i) {
            Some(r) if *r == SKIP => {
                *r = role;
                Some(())
            }
            _ => None,
        };
        give(self.time_idx, TIME)?;
        if let Some(oi) = self.offset_idx {
            give(oi, OFFSET)?;
        }
        for (k, &ci) in self.columns.iter().enumerate() {
            give(ci, u32::try_from(k).ok().filter(|&k| k < SKIP)?)?;
        }
        Some(roles)
    }

    /// Reads the next record in one pass over its bytes, without splitting it first, when it
    /// is the common case: complete in the buffer, one line, no quote, the header's width,
    /// and every cell read in the fast numbers' form. Gives the time and the probe, the
    /// values in `values`; `None` (having consumed nothing) leaves the record to the
    /// splitter and the general cell readers, which give the same values or the errors.
    #[inline(always)]
    fn read_plain(&mut self, values: &mut [f64]) -> Option<(f64, Option<f64>)> {
        let (&last, body) = self.roles.split_last()?;
        let buf = self.rec.unread();
        let mut cell = PlainCell {
            buf,
            origin: self.origin,
            t: 0.0,
            probe: None,
        };
        // Each cell must end where the splitter ends it: at a comma, and the last at the
        // line break (a `\r` before it dropped).
        let mut i = 0;
        for &role in body {
            let end = cell.read(role, i, values)?;
            if buf[end] != b',' {
                return None;
            }
            i = end + 1;
        }
        let end = cell.read(last, i, values)?;
        let len = match buf[end] {
            b'\n' => end + 1,
            b'\r' if buf[end + 1] == b'\n' => end + 2,
            _ => return None,
        };
        let (t, probe) = (cell.t, cell.probe);
        self.rec.consume_line(len);
        Some((t, probe))
    }

    /// Refuses a time not after the last row's.
    fn check_order(&mut self, t: f64, line: u64) -> anyhow::Result<()> {
        if let Some((pt, pline)) = self.last
            && t <= pt
        {
            bail!(
                "{}:{line}:{}: time goes backwards: {} after {} on line {pline}",
                self.label,
                self.time_idx + 1,
                abs_time(t, self.origin),
                abs_time(pt, self.origin)
            );
        }
        self.last = Some((t, line));
        Ok(())
    }

    /// Reads the next row's values into `values`; `None` at the end.
    fn read(&mut self, values: &mut [f64]) -> anyhow::Result<Option<Row>> {
        if let Some((t, probe)) = self.read_plain(values) {
            let line = self.rec.line();
            self.check_order(t, line)?;
            return Ok(Some(Row { t, line, probe }));
        }
        if !self.rec.next_record()? {
            return Ok(None);
        }
        let line = self.rec.line();
        let t = time_cell(&self.rec, &self.label, self.time_idx, self.origin)?;
        self.check_order(t, line)?;
        let rec = &self.rec;
        let probe = match self.offset_idx {
            Some(oi) => probe_cell(rec, &self.label, oi)?,
            None => None,
        };
        let fields = rec.fields();
        for (k, (&ci, v)) in self.columns.iter().zip(values.iter_mut()).enumerate() {
            let cell = fields.get(ci);
            *v = match cell_value(cell) {
                Ok(x) => x,
                Err(bad) => {
                    let (text, name) = (String::from_utf8_lossy(cell), &self.names[k]);
                    let text = text.escape_debug();
                    let what = match bad {
                        BadCell::NotFinite => format!(
                            "{text} in column {name}: leave the cell empty for a missing value"
                        ),
                        BadCell::NotANumber => format!("'{text}' in column {name} is not a number"),
                    };
                    bail!("{}:{line}:{}: {what}", self.label, ci + 1)
                }
            };
        }
        Ok(Some(Row { t, line, probe }))
    }
}

/// Rows read ahead of the consumer while it waits for the next clock probe: a ring of at
/// most `cap` rows, each with its own buffer of values, which `pop` trades for the
/// consumer's (no copy).
struct Lookahead {
    rows: Vec<Row>,
    values: Vec<Vec<f64>>,
    width: usize,
    cap: usize,
    head: usize,
    len: usize,
}

impl Lookahead {
    fn new(width: usize) -> Self {
        let cap = (LOOKAHEAD_BYTES / (8 * width + 32)).max(64);
        Lookahead {
            rows: Vec::with_capacity(cap),
            values: Vec::with_capacity(cap),
            width,
            cap,
            head: 0,
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == self.cap
    }

    fn front(&self) -> Option<Row> {
        (self.len > 0).then(|| self.rows[self.head])
    }

    /// Reads one row from `p` into the back; `None` at the end.
    fn push_from(&mut self, p: &mut RowParser) -> anyhow::Result<Option<Row>> {
        let slot = (self.head + self.len) % self.cap;
        if slot == self.values.len() {
            self.values.push(vec![0.0; self.width]);
        }
        let Some(row) = p.read(&mut self.values[slot])? else {
            return Ok(None);
        };
        if slot == self.rows.len() {
            self.rows.push(row);
        } else {
            self.rows[slot] = row;
        }
        self.len += 1;
        Ok(Some(row))
    }

    /// Takes the front row, its values into `values` (whose buffer takes the row's place).
    fn pop(&mut self, values: &mut Vec<f64>) -> Option<Row> {
        let row = self.front()?;
        let slot = &mut self.values[self.head];
        if values.len() == slot.len() {
            std::mem::swap(values, slot);
        } else {
            values.clone_from(slot);
        }
        self.head = (self.head + 1) % self.cap;
        self.len -= 1;
        Some(row)
    }
}

/// How a source's time-varying offset is followed.
enum Clock {
    /// No time-varying offset.
    None,
    /// Probes in the trace's own rows, read with them: rows wait in the look-ahead until the
    /// probe after them has been read.
    Inline {
        column: OffsetColumn,
        ahead: Lookahead,
        before: Option<Probe>,
        after: Option<Probe>,
        probes: u64,
        first: Option<Probe>,
    },
    /// A second reader over the probes (a probe file, or probes too sparse for the look-ahead).
    Cursor(ClockCursor, Option<Lookahead>),
}

/// Streams one source: each call gives the next row's corrected time and values.
pub struct SourceReader {
    parser: RowParser,
    /// The file, for messages.
    pub label: String,
    constant: f64,
    origin: i64,
    clock: Clock,
    eof: bool,
    prev: Option<(f64, u64)>,
    /// Data rows read.
    pub rows: u64,
}

impl SourceReader {
    /// Opens the source; times are returned relative to `origin`.
    pub fn open(spec: &ReadSpec, origin: i64) -> anyhow::Result<Self> {
        let label = spec.path.display().to_string();
        let mut rec = Records::open(&spec.path)?;
        if !rec.next_record()? {
            bail!("{label}: cannot read the header: the file is empty");
        }
        let mut offset_idx = None;
        let clock = match &spec.offset_column {
            None => Clock::None,
            Some(oc) if oc.path == spec.path => {
                let (_, oi) = clock_indices(&oc.path, &oc.column)?;
                offset_idx = Some(oi);
                Clock::Inline {
                    column: oc.clone(),
                    ahead: Lookahead::new(spec.columns.len()),
                    before: None,
                    after: None,
                    probes: 0,
                    first: None,
                }
            }
            Some(oc) => Clock::Cursor(ClockCursor::open(oc, origin)?, None),
        };
        let parser = RowParser::new(rec, spec, offset_idx, origin);
        let mut r = SourceReader {
            parser,
            label,
            constant: spec.constant,
            origin,
            clock,
            eof: false,
            prev: None,
            rows: 0,
        };
        r.find_first_probe()?;
        Ok(r)
    }

    /// Inline clock: reads ahead to the first probe (a trace without any is refused).
    fn find_first_probe(&mut self) -> anyhow::Result<()> {
        let Clock::Inline {
            column,
            ahead,
            after,
            probes,
            first,
            ..
        } = &mut self.clock
        else {
            return Ok(());
        };
        while after.is_none() {
            if ahead.is_full() {
                return self.fall_back();
            }
            match ahead.push_from(&mut self.parser)? {
                None => {
                    self.eof = true;
                    return Err(no_probe(&self.label, &column.column));
                }
                Some(row) => {
                    if let Some(o) = row.probe {
                        *after = Some((row.t, o));
                        *first = *after;
                        *probes += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Probes too far apart for the look-ahead: follow them with a second reader instead.
    fn fall_back(&mut self) -> anyhow::Result<()> {
        let old = std::mem::replace(&mut self.clock, Clock::None);
        if let Clock::Inline { column, ahead, .. } = old {
            self.parser.offset_idx = None;
            let cursor = ClockCursor::open(&column, self.origin)?;
            self.clock = Clock::Cursor(cursor, Some(ahead));
        }
        Ok(())
    }

    /// The next row in local time with its offset, values in `values`.
    fn next_local(&mut self, values: &mut Vec<f64>) -> anyhow::Result<Option<(Row, f64)>> {
        loop {
            match &mut self.clock {
                Clock::None => {
                    return Ok(self.parser.read(values)?.map(|r| (r, 0.0)));
                }
                Clock::Cursor(c, ahead) => {
                    let row = match ahead.as_mut().and_then(|a| a.pop(values)) {
                        Some(r) => Some(r),
                        None => self.parser.read(values)?,
                    };
                    return match row {
                        Some(r) => Ok(Some((r, c.offset_at(r.t)?))),
                        None => Ok(None),
                    };
                }
                Clock::Inline {
                    ahead,
                    before,
                    after,
                    probes,
                    first,
                    ..
                } => {
                    if let Some(front) = ahead.front() {
                        while let Some(a) = *after {
                            if a.0 > front.t {
                                break;
                            }
                            *before = Some(a);
                            *after = None;
                        }
                        if after.is_some() || self.eof {
                            let r = ahead.pop(values).unwrap_or(front);
                            return Ok(Some((r, interpolate(*before, *after, r.t))));
                        }
                    } else if self.eof {
                        return Ok(None);
                    }
                    if ahead.is_full() {
                        self.fall_back()?;
                        continue;
                    }
                    match ahead.push_from(&mut self.parser)? {
                        None => self.eof = true,
                        Some(row) => {
                            if let Some(o) = row.probe {
                                *after = Some((row.t, o));
                                *probes += 1;
                                if first.is_none() {
                                    *first = *after;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads the next row into `values` (NaN for an empty cell); returns its corrected time,
    /// or `None` at the end.
    pub fn next_row(&mut self, values: &mut Vec<f64>) -> anyhow::Result<Option<f64>> {
        let Some((row, offset)) = self.next_local(values)? else {
            return Ok(None);
        };
        let tau = row.t + offset + self.constant;
        if let Some((ptau, pline)) = self.prev
            && tau <= ptau
        {
            bail!(
                "{}:{}: corrected time goes backwards ({} after {} on line {pline}): \
                 the clock offset changes faster than time passes",
                self.label,
                row.line,
                abs_time(tau, self.origin),
                abs_time(ptau, self.origin)
            );
        }
        self.prev = Some((tau, row.line));
        self.rows += 1;
        Ok(Some(tau))
    }

    /// The line of the row read last.
    pub fn line(&self) -> u64 {
        self.prev.map_or(1, |p| p.1)
    }

    /// Clock probes read: how many, the first and the last.
    pub fn clock_summary(&self) -> Option<(u64, Probe, Probe)> {
        match &self.clock {
            Clock::None => None,
            Clock::Cursor(c, _) => Some((c.probes, c.first?, c.last()?)),
            Clock::Inline {
                before,
                after,
                probes,
                first,
                ..
            } => Some((*probes, (*first)?, after.or(*before)?)),
        }
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
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Mantissas of 16–19 digits with 0–19 decimals, and halfway cases.
            let m = (s >> 1) % 9_999_999_999_999_999_999 + 1;
            let d = (s % 20) as usize;
            let mut text = m.to_string();
            if d > 0 {
                while text.len() <= d {
                    text.insert(0, '0');
                }
                text.insert(text.len() - d, '.');
            }
            cases.push(text);
            let v = f64::from_bits(s >> 2 & !(1 << 62));
            if v.is_finite() {
                cases.push(format!("{v:.60}").trim_end_matches('0').to_string());
                let half = (v + f64::from_bits(v.to_bits() + 1)) / 2.0;
                cases.push(format!("{:.20}", f64::from_bits(v.to_bits())));
                cases.push(format!("{half:.17}"));
            }
        }
        cases.push("9007199254740993".into()); // 2^53 + 1: a tie, to even
        cases.push("9007199254740995".into());
        cases.push("4503599627370496.5".into()); // 2^52 + ½: a binade's edge
        cases.push("0.30000000000000004".into());
        cases.push("18014398509481985".into());
        for c in &cases {
            let want: f64 = c.parse().expect("a number");
            let got = parse_number(c.as_bytes()).expect("parsed");
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        // ASCII padding is padding; other whitespace is not part of a number.
        assert_eq!(parse_number(b" 5 "), Some(5.0));
        assert_eq!(parse_number(b"\t-2.5\r"), Some(-2.5));
        for bad in [
            "",
            "-",
            ".",
            "x",
            "1.2.3",
            "1,5",
            "nan1",
            "5\u{a0}",
            "\u{3000}5",
        ] {
            assert!(parse_number(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn long_mantissas_round_like_the_standard_parser_at_and_beside_ties() {
        // The standard library's Eisel–Lemire table has these entries for 5^-1 and 5^-2.
        assert_eq!(NEG_POW5[1], (0xcccc_cccc_cccc_cccc, 0xcccc_cccc_cccc_cccd));
        assert_eq!(NEG_POW5[2], (0xa3d7_0a3d_70a3_d70a, 0x3d70_a3d7_0a3d_70a4));
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut checked = 0;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let f = (1u64 << 52) | (s >> 12);
            // The midpoint (2f + 1)·2^(e − 1) between two neighbours 2^e apart, exactly in
            // decimal; with trailing zeros up to 19 digits; one unit of the last digit off.
            for e in -4i32..=2 {
                let odd = u128::from(2 * f + 1);
                let (digits, decimals) = if e >= 1 {
                    (odd << (e - 1), 0)
                } else {
                    (odd * 5u128.pow((1 - e) as u32), (1 - e) as usize)
                };
                for zeros in 0..4 {
                    for delta in [0i128, -1, 1] {
                        let m = (digits * 10u128.pow(zeros)) as i128 + delta;
                        let d = decimals + zeros as usize;
                        let mut text = m.to_string();
                        if d > 0 {
                            text.insert(text.len() - d, '.');
                        }
                        let want: f64 = text.parse().expect("a number");
                        let got = parse_number(text.as_bytes()).expect("parsed");
                        assert_eq!(got.to_bits(), want.to_bits(), "{text}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 20_000 * 7 * 4 * 3);
    }

    /// Every row of `path` read by the one-pass reader (where it applies) and by the
    /// splitter alone, as text (bits of the values, the line, the probe; or the error);
    /// and how many rows the one-pass reader took.
    fn rows_both_ways(
        path: &Path,
        spec: &ReadSpec,
        offset_idx: Option<usize>,
    ) -> (Vec<String>, Vec<String>, usize) {
        let open = || {
            let mut rec = Records::open(path).expect("open");
            assert!(rec.next_record().expect("header"));
            RowParser::new(rec, spec, offset_idx, 1000)
        };
        let (mut fast, mut slow) = (open(), open());
        assert!(!fast.roles.is_empty(), "the one-pass reader is on");
        slow.roles.clear();
        let mut out = (Vec::new(), Vec::new(), 0);
        let show = |r: anyhow::Result<Option<Row>>, v: &[f64]| match r {
            Ok(Some(row)) => format!(
                "{} {} {:?} {:?}",
                row.t.to_bits(),
                row.line,
                row.probe.map(f64::to_bits),
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            ),
            Ok(None) => "end".into(),
            Err(e) => format!("{e:#}"),
        };
        let n = spec.columns.len();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        loop {
            let ra = fast.read(&mut a);
            // A record the one-pass reader took leaves no fields behind.
            let took = matches!(ra, Ok(Some(_))) && fast.rec.is_empty();
            out.2 += usize::from(took);
            let (sa, sb) = (show(ra, &a), show(slow.read(&mut b), &b));
            let done = sa == "end" || sa.contains(": ");
            out.0.push(sa);
            out.1.push(sb);
            if done {
                return out;
            }
        }
    }

    #[test]
    fn one_pass_rows_equal_the_splitters() {
        let mut s = 0x0123_4567_89ab_cdefu64;
        let mut rnd = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        // Common cells first, then the rarer forms the one-pass reader leaves to the
        // splitter, then (from `VALID` on) cells that are errors.
        let values = [
            "0",
            "0",
            "0",
            "5",
            "-12",
            "3.25",
            "0.1",
            "92.6829268292683",
            "27720.780168715006",
            "",
            "-0",
            "5.",
            ".5",
            "-.5",
            "1234567890123456789",
            "12345678901234567890",
            "0.0000000000000000001",
            "1e5",
            " 7",
            "7 ",
            "\"8\"",
            "00012.50",
            "5\r",
            "\t3",
            "-",
            "x",
            "inf",
            "1.2.3",
            "0,",
        ];
        const VALID: u64 = 24;
        // `"q,x"` spans two fields to a reader blind to quotes: `note` and `b`, which some
        // files do not read.
        let skips = ["abc", "", "a b", "\"q,x\"", "1\r", "0", "\"\"", "x\u{0}y"];
        let probes = ["", "", "", "0.25", "-0.5", " 0.1 ", "0", "x"];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut took = 0;
        let mut rows = 0;
        for file in 0..120 {
            let p = dir.path().join(format!("t{file}.csv"));
            let big = file < 4;
            let n = if big { 12_000 } else { 1 + rnd(300) as usize };
            // Rare oddities in the big files (so that they are read to their end), common
            // ones in the small.
            let odd = if big { 400 } else { 12 };
            let mut text = String::from("time,a,note,b,clock_offset_s,c\n");
            for i in 0..n {
                let t = 1000.0 + i as f64 * 0.1;
                // Times that go back (errors) are rarer still.
                let time = match rnd(odd) {
                    0 => format!(" {t:.3}"),
                    1 => format!("{t:.6} "),
                    2 => format!("{t:.17}"),
                    // 19 decimals, still after the row before.
                    3 => format!("{t:.6}{:013}", rnd(10_000_000_000_000)),
                    4 if !big && rnd(8) == 0 => "2026-01-01T00:00:00Z".to_string(),
                    5 if !big && rnd(8) == 0 => format!("{:.6}", t - 1.0),
                    6 if !big && rnd(8) == 0 => format!("99999999999999999{t:.3}"),
                    _ => format!("{t:.6}"),
                };
                // Errors only in the small files, so that the big are read to their end.
                let forms = if big { VALID } else { values.len() as u64 };
                let mut cell = || {
                    let k = if rnd(odd) == 0 { rnd(forms) } else { rnd(9) };
                    values[k as usize].to_string()
                };
                let (a, b, c) = (cell(), cell(), cell());
                let note = skips[if rnd(odd) == 0 { rnd(8) as usize } else { 0 }];
                let kinds = match rnd(odd) {
                    0 if big => 7,
                    0 => 8,
                    _ => 3,
                };
                let probe = probes[rnd(kinds) as usize];
                if !big && rnd(odd * 4) == 0 {
                    // A field short, with a quoted comma: as many commas as a full row.
                    text += &format!("{time},{a},\"q,x\",{b},{c}");
                } else {
                    text += &format!("{time},{a},{note},{b},{probe},{c}");
                }
                text += match rnd(odd) {
                    0 => "\r\n",
                    1 => "\n\n",
                    2 => "\r\r\n",
                    3 if i + 1 == n => "",
                    _ => "\n",
                };
            }
            std::fs::write(&p, text).expect("write");
            let (columns, names) = if file % 3 == 0 {
                (vec![5, 1], vec!["c".into(), "a".into()])
            } else {
                (vec![5, 1, 3], vec!["c".into(), "a".into(), "b".into()])
            };
            let spec = ReadSpec {
                path: p.clone(),
                time_idx: 0,
                columns,
                names,
                offset_column: None,
                constant: 0.0,
            };
            let (fast, slow, n) = rows_both_ways(&p, &spec, Some(4));
            assert_eq!(fast, slow, "{}", p.display());
            took += n;
            rows += fast.len();
            if big {
                assert!(fast.len() > 11_000, "{} rows of 12,000", fast.len());
            }
        }
        // Most rows went the one way, and the other way still had work.
        assert!(
            took > rows * 3 / 4,
            "{took} of {rows} rows read in one pass"
        );
        assert!(
            took < rows * 99 / 100,
            "{took} of {rows} rows read in one pass"
        );
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
    fn relative_times_match_the_standard_parser() {
        // Integer part minus the origin, plus the fraction read by the standard parser:
        // one correct rounding each, whatever the lengths.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let origin = 1_795_400_000;
        for _ in 0..20_000 {
            let int = origin + next(100_000) as i64;
            let digits = next(22) as usize;
            let frac: String = (0..digits)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let cell = if digits == 0 && next(2) == 0 {
                format!("{int}")
            } else {
                format!("{int}.{frac}")
            };
            let want = (int - origin) as f64 + format!("0.{frac}0").parse::<f64>().unwrap();
            let got = parse_rel_time(cell.as_bytes(), origin).expect("a time");
            assert_eq!(got.to_bits(), want.to_bits(), "{cell}");
        }
        for bad in [
            "",
            ".5x",
            "12.3.4",
            "12a",
            "1234567890123456789012.5",
            "-5.0",
        ] {
            let got = parse_rel_time(bad.as_bytes(), 0);
            let want = parse_time(bad);
            assert_eq!(got, want, "{bad}");
        }
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
    fn inline_probes_match_the_cursor_near_and_sparse() {
        // Probes every 7 rows stay in the look-ahead; every 20,000 rows (more than it holds
        // for one column) the reader falls back to a second cursor. Both must give the
        // cursor's times.
        for every in [7usize, 20_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let p = dir.path().join("t.csv");
            let mut text = String::from("time,x,clock_offset_s\n");
            for i in 0..50_000usize {
                let probe = if i % every == 3 {
                    format!("{:.6}", 0.5 + (i as f64 * 1e-5).sin())
                } else {
                    String::new()
                };
                text += &format!("{}.{:03},{i},{probe}\n", 1000 + i / 10, (i % 10) * 100);
            }
            std::fs::write(&p, text).expect("write");
            let oc = OffsetColumn {
                path: p.clone(),
                column: "clock_offset_s".into(),
            };
            let spec = ReadSpec {
                path: p,
                time_idx: 0,
                columns: vec![1],
                names: vec!["x".into()],
                offset_column: Some(oc.clone()),
                constant: 0.25,
            };
            let mut r = SourceReader::open(&spec, 1000).expect("open");
            let mut c = ClockCursor::open(&oc, 1000).expect("cursor");
            let mut v = vec![0.0];
            for i in 0..50_000usize {
                let t = r.next_row(&mut v).expect("row").expect("a row");
                let local = i as f64 / 10.0;
                let want = local + c.offset_at(local).expect("offset") + 0.25;
                assert_eq!(t.to_bits(), want.to_bits(), "row {i}, probes every {every}");
                assert_eq!(v[0], i as f64);
            }
            assert!(r.next_row(&mut v).expect("end").is_none());
            let (n, first, last) = r.clock_summary().expect("clock");
            assert_eq!(n, c.probes);
            assert_eq!(first, c.first.expect("first"));
            assert_eq!(Some(last), c.last());
        }
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
