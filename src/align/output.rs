//! Where aligned rows go: a CSV writer that formats a block of rows at a time and hands
//! whole rows to the file, so a failed write leaves the file ending on a whole row.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::trace::csv_field;

/// Receives the aligned grid: the column names once, then one row per grid time.
pub trait GridSink {
    /// The output columns, after `time`.
    fn begin(&mut self, columns: &[String]) -> anyhow::Result<()>;
    /// One grid row: its time in Unix microseconds and a value per column (NaN: empty).
    fn row(&mut self, time_us: i64, values: &[f64]) -> anyhow::Result<()>;
    /// After the last row.
    fn finish(&mut self) -> anyhow::Result<()>;
}

/// Destinations that take whole rows only.
pub trait Blocks {
    /// Writes `bytes` (holding `rows` whole rows) or fails leaving no partial row.
    fn write_block(&mut self, bytes: &[u8], rows: u64) -> io::Result<()>;
}

/// Standard output: a closed pipe comes back as `BrokenPipe`, which the CLI treats as a
/// normal end.
#[derive(Debug, Default)]
pub struct Stdout;

impl Blocks for Stdout {
    fn write_block(&mut self, bytes: &[u8], _rows: u64) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }
}

/// Any `Write` (benchmarks write to `io::sink()`).
#[derive(Debug)]
pub struct Plain<W: Write>(pub W);

impl<W: Write> Blocks for Plain<W> {
    fn write_block(&mut self, bytes: &[u8], _rows: u64) -> io::Result<()> {
        self.0.write_all(bytes)
    }
}

/// A file cut back to its last whole row if a write fails (disk full).
#[derive(Debug)]
pub struct BlockFile {
    file: File,
    path: PathBuf,
    complete: u64,
    rows: u64,
}

impl BlockFile {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path)
            .map_err(|e| anyhow::anyhow!("cannot create output file {}: {e}", path.display()))?;
        Ok(BlockFile {
            file,
            path: path.to_path_buf(),
            complete: 0,
            rows: 0,
        })
    }
}

impl Blocks for BlockFile {
    fn write_block(&mut self, bytes: &[u8], rows: u64) -> io::Result<()> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.complete += bytes.len() as u64;
                self.rows += rows;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.complete);
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "writing {}: {e}; the {} data rows written before are intact",
                        self.path.display(),
                        self.rows.saturating_sub(1)
                    ),
                ))
            }
        }
    }
}

/// Rows formatted into a buffer this large before a write.
const BLOCK: usize = 1 << 18;

/// The longest text of a finite `f64` (`-1.2345678901234567e-100`: a sign, 17 digits, the
/// point and a four-character exponent); a repeat copies this many bytes at once.
const LONGEST_NUMBER: usize = 24;

/// Room kept free after the block's end: a row is formatted only while this much is left
/// per cell, so no write inside a row needs to check for space (the longest cell, a comma
/// and a [`LONGEST_NUMBER`], is 25 bytes; a time 28).
const CELL_ROOM: usize = 32;

/// The aligned CSV: `time` as Unix seconds with six decimals, values in the shortest form
/// that reads back to the same `f64` (integers without `.0`, as the recorder writes them),
/// and an empty cell for no value.
pub struct CsvSink<B: Blocks> {
    out: B,
    /// The block: `buf[..len]` is formatted, the rest scratch (kept at its full size so
    /// cells are copied in with fixed-size moves rather than a call per cell).
    buf: Vec<u8>,
    len: usize,
    rows: u64,
    num: zmij::Buffer,
    /// Per column, the last value formatted and where its text is in the block: a value that
    /// repeats it (a steady gauge, an idle device's rate) is copied from there, not formatted
    /// again.
    memo: Vec<Memo>,
}

/// A column's last formatted value (`bits` 0, +0.0, is never looked up: it has its own
/// path, and it marks an entry whose text has left the block).
#[derive(Clone, Copy, Default)]
struct Memo {
    bits: u64,
    /// Where the text starts in the block, and its length.
    at: usize,
    len: usize,
}

impl<B: Blocks> CsvSink<B> {
    /// A sink writing to `out`.
    pub fn new(out: B) -> Self {
        CsvSink {
            out,
            buf: vec![0; BLOCK + CELL_ROOM],
            len: 0,
            rows: 0,
            num: zmij::Buffer::new(),
            memo: Vec::new(),
        }
    }

    fn flush_block(&mut self) -> anyhow::Result<()> {
        if self.len > 0 {
            self.out.write_block(&self.buf[..self.len], self.rows)?;
            self.len = 0;
            self.rows = 0;
            for m in &mut self.memo {
                m.bits = 0;
            }
        }
        Ok(())
    }

    /// Makes room for a row of `cells` cells after the block's formatted part.
    fn reserve_row(&mut self, cells: usize) -> anyhow::Result<()> {
        let need = (cells + 1) * CELL_ROOM;
        if self.len + need > self.buf.len() {
            self.flush_block()?;
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            }
        }
        Ok(())
    }
}

/// Copies `s` (at most 32 bytes) to `dst` with at most two fixed-size moves, possibly
/// overlapping; `dst` must have 32 bytes of room.
#[inline(always)]
fn put(dst: &mut [u8], s: &[u8]) {
    let n = s.len();
    if n >= 16 {
        dst[..16].copy_from_slice(&s[..16]);
        dst[n - 16..n].copy_from_slice(&s[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&s[..8]);
        dst[n - 8..n].copy_from_slice(&s[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&s[..4]);
        dst[n - 4..n].copy_from_slice(&s[n - 4..]);
    } else {
        dst[..n].copy_from_slice(s);
    }
}

/// Writes `us` microseconds as seconds with six decimals to the front of `out`; returns
/// its length.
fn micros(out: &mut [u8; 28], us: i64) -> usize {
    let (s, f) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    if s < 0 {
        // Before 1970 (or before a relative trace's zero): the sign, then the magnitude, so
        // that −1 µs reads −0.000001 and not a floored −1.999999.
        let m = us.unsigned_abs();
        let mut c = io::Cursor::new(&mut out[..]);
        let _ = write!(c, "-{}.{:06}", m / 1_000_000, m % 1_000_000);
        return c.position() as usize;
    }
    let mut digits = [0u8; 28];
    let mut i = digits.len();
    let mut f = f as u64;
    for _ in 0..6 {
        i -= 1;
        digits[i] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    i -= 1;
    digits[i] = b'.';
    let mut s = s as u64;
    loop {
        i -= 1;
        digits[i] = b'0' + (s % 10) as u8;
        s /= 10;
        if s == 0 {
            break;
        }
    }
    let n = digits.len() - i;
    out[..n].copy_from_slice(&digits[i..]);
    n
}

impl<B: Blocks> GridSink for CsvSink<B> {
    fn begin(&mut self, columns: &[String]) -> anyhow::Result<()> {
        let mut header = b"time".to_vec();
        for c in columns {
            header.push(b',');
            header.extend_from_slice(csv_field(c).as_bytes());
        }
        header.push(b'\n');
        if self.len + header.len() > self.buf.len() {
            self.buf.resize(self.len + header.len(), 0);
        }
        self.buf[self.len..self.len + header.len()].copy_from_slice(&header);
        self.len += header.len();
        self.rows += 1;
        Ok(())
    }

    fn row(&mut self, time_us: i64, values: &[f64]) -> anyhow::Result<()> {
        self.reserve_row(values.len())?;
        let mut at = self.len;
        let mut cell = [0u8; 28];
        let n = micros(&mut cell, time_us);
        self.buf[at..at + 28].copy_from_slice(&cell);
        at += n;
        if self.memo.len() != values.len() {
            self.memo = vec![Memo::default(); values.len()];
        }
        // The block as a local slice: its start and length stay in registers, where stores
        // of bytes through `self.buf` would make the compiler reload them for every cell.
        let buf = &mut self.buf[..];
        let num = &mut self.num;
        for (v, m) in values.iter().zip(self.memo.iter_mut()) {
            let bits = v.to_bits();
            if bits == 0 {
                // +0 (the commonest value), as the formatter would write it.
                buf[at..at + 2].copy_from_slice(b",0");
                at += 2;
                continue;
            }
            buf[at] = b',';
            at += 1;
            if bits == m.bits && m.at + LONGEST_NUMBER <= at {
                // Copied from a row written a while ago: a fixed-size move, and no wide load
                // of bytes just stored narrowly (which stalls).
                let (head, tail) = buf.split_at_mut(at);
                tail[..LONGEST_NUMBER].copy_from_slice(&head[m.at..m.at + LONGEST_NUMBER]);
                at += m.len;
            } else if v.is_finite() {
                let s = num.format_finite(*v).as_bytes();
                let s = s.strip_suffix(b".0").unwrap_or(s);
                put(&mut buf[at..at + CELL_ROOM], s);
                *m = Memo {
                    bits,
                    at,
                    len: s.len(),
                };
                at += s.len();
            }
        }
        self.buf[at] = b'\n';
        self.len = at + 1;
        self.rows += 1;
        if self.len >= BLOCK {
            self.flush_block()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_block()
    }
}

/// Collects the grid in memory (the lag pre-pass; tests).
#[derive(Debug, Default)]
pub struct Collect {
    /// Column names.
    pub columns: Vec<String>,
    /// Grid times, Unix microseconds.
    pub times: Vec<i64>,
    /// One series per column.
    pub values: Vec<Vec<f64>>,
}

impl GridSink for Collect {
    fn begin(&mut self, columns: &[String]) -> anyhow::Result<()> {
        self.columns = columns.to_vec();
        self.values = vec![Vec::new(); columns.len()];
        Ok(())
    }

    fn row(&mut self, time_us: i64, values: &[f64]) -> anyhow::Result<()> {
        self.times.push(time_us);
        for (c, v) in self.values.iter_mut().zip(values) {
            c.push(*v);
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_are_written_as_seconds_with_six_decimals() {
        for (us, want) in [
            (0i64, "0.000000"),
            (1, "0.000001"),
            (999_999, "0.999999"),
            (1_000_000, "1.000000"),
            (1_795_438_584_733_245, "1795438584.733245"),
            (-1, "-0.000001"),
            (-999_999, "-0.999999"),
            (-1_500_000, "-1.500000"),
            (i64::MIN, "-9223372036854.775808"),
            (i64::MAX, "9223372036854.775807"),
        ] {
            let mut cell = [0u8; 28];
            let n = micros(&mut cell, us);
            let text = String::from_utf8(cell[..n].to_vec()).expect("utf-8");
            assert_eq!(text, want);
            // What it says is the time: parsed back, within the f64 rounding of its digits.
            let back: f64 = text.parse().expect("a number");
            assert!(
                (back - us as f64 / 1e6).abs() <= 1e-6 * (1.0 + back.abs() * 1e-9),
                "{text}"
            );
        }
    }

    #[test]
    fn every_cell_length_and_block_boundaries_match_plain_formatting() {
        // Cells of every length the formatter makes (1 to 24 bytes: the copies into the
        // block are fixed-size and overlap), over enough rows to cross several blocks.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (mut out, mut want) = (Vec::new(), String::from("time,a,b\n"));
        let cols = 60;
        {
            let mut sink = CsvSink::new(Plain(&mut out));
            sink.begin(&["a".into(), "b".into()]).expect("begin");
            let mut sink2: Vec<(i64, Vec<f64>)> = Vec::new();
            for r in 0..6000i64 {
                // A third of the cells repeat the cell above (the sink copies those).
                let above = sink2.last().map(|(_, v)| v.clone());
                let vals: Vec<f64> = (0..cols)
                    .map(|c| match next() % 7 {
                        _ if next() % 3 == 0 && above.as_ref().is_some_and(|a| c < a.len()) => {
                            above.as_ref().map_or(0.0, |a| a[c])
                        }
                        0 => 0.0,
                        6 => {
                            let digits = 1 + next() % 12;
                            (next() % 10u64.pow(digits as u32)) as f64
                                / 10f64.powi((next() % 4) as i32)
                        }
                        1 => f64::NAN,
                        2 => (next() % 100_000) as f64,
                        3 => f64::from_bits(next() >> 1) * if next() % 2 == 0 { 1.0 } else { -1.0 },
                        _ => (next() >> 11) as f64 / (1u64 << 53) as f64 * 1e3,
                    })
                    .filter(|v| !v.is_infinite())
                    .collect();
                let us = 1_795_438_584_000_000 + r * 100_000;
                sink.row(us, &vals).expect("row");
                sink2.push((us, vals));
            }
            sink.finish().expect("finish");
            let mut lens = std::collections::BTreeSet::new();
            for (us, vals) in sink2 {
                want += &format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
                for v in vals {
                    want.push(',');
                    if !v.is_nan() {
                        let t = if v == 0.0 && v.is_sign_positive() {
                            "0".to_string()
                        } else {
                            let t = zmij::Buffer::new().format_finite(v).to_string();
                            t.strip_suffix(".0").map(str::to_string).unwrap_or(t)
                        };
                        lens.insert(t.len());
                        want += &t;
                    }
                }
                want.push('\n');
            }
            assert!((1..=24).all(|n| lens.contains(&n)), "lengths {lens:?}");
            assert!(
                lens.iter().all(|&n| n <= LONGEST_NUMBER),
                "lengths {lens:?}"
            );
        }
        assert!(out.len() > 3 * BLOCK);
        assert!(String::from_utf8(out).expect("utf-8") == want);
    }

    #[test]
    fn a_repeat_is_never_copied_from_a_block_already_written() {
        // A value steady for whole blocks, behind cells that grew since it was formatted:
        // its text's old place in the block is passed again by the next block, which must
        // not be copied from.
        let mut out = Vec::new();
        let mut want = String::from("time,a,b,c,d\n");
        {
            let mut sink = CsvSink::new(Plain(&mut out));
            sink.begin(&["a".into(), "b".into(), "c".into(), "d".into()])
                .expect("begin");
            for r in 0..10_000i64 {
                let wide = if r == 0 {
                    1.0
                } else {
                    -1.2345678901234567e-100
                };
                let vals = [wide, wide, wide, 1.2345];
                sink.row(r * 100_000, &vals).expect("row");
                want += &format!("{}.{:06}", r / 10, (r % 10) * 100_000);
                for v in vals {
                    let t = zmij::Buffer::new().format_finite(v).to_string();
                    want.push(',');
                    want += t.strip_suffix(".0").unwrap_or(&t);
                }
                want.push('\n');
            }
            sink.finish().expect("finish");
        }
        assert!(out.len() > 3 * BLOCK);
        assert!(String::from_utf8(out).expect("utf-8") == want);
    }

    #[test]
    fn rows_are_formatted_as_the_recorder_writes_them() {
        let mut out = Vec::new();
        {
            let mut s = CsvSink::new(Plain(&mut out));
            s.begin(&["a.x".into(), "b.y".into()]).expect("begin");
            s.row(1_795_438_584_733_245, &[92.6829268292683, f64::NAN])
                .expect("row");
            s.row(1_795_438_585_000_001, &[0.0, 25276514304.0])
                .expect("row");
            s.row(1_795_438_585_100_001, &[-0.0, 1e-7]).expect("row");
            s.finish().expect("finish");
        }
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "time,a.x,b.y\n1795438584.733245,92.6829268292683,\n\
             1795438585.000001,0,25276514304\n1795438585.100001,-0,1e-7\n"
        );
    }
}
