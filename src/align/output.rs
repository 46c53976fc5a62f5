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

/// The aligned CSV: `time` as Unix seconds with six decimals, values in the shortest form
/// that reads back to the same `f64` (integers without `.0`, as the recorder writes them),
/// and an empty cell for no value.
pub struct CsvSink<B: Blocks> {
    out: B,
    buf: Vec<u8>,
    rows: u64,
    num: zmij::Buffer,
}

impl<B: Blocks> CsvSink<B> {
    /// A sink writing to `out`.
    pub fn new(out: B) -> Self {
        CsvSink {
            out,
            buf: Vec::with_capacity(BLOCK + 4096),
            rows: 0,
            num: zmij::Buffer::new(),
        }
    }

    fn flush_block(&mut self) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_block(&self.buf, self.rows)?;
            self.buf.clear();
            self.rows = 0;
        }
        Ok(())
    }
}

/// Appends `us` microseconds as seconds with six decimals.
pub fn push_micros(buf: &mut Vec<u8>, us: i64) {
    let (s, f) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    if s < 0 {
        let _ = write!(buf, "{s}.{f:06}");
        return;
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
    buf.extend_from_slice(&digits[i..]);
}

impl<B: Blocks> GridSink for CsvSink<B> {
    fn begin(&mut self, columns: &[String]) -> anyhow::Result<()> {
        self.buf.extend_from_slice(b"time");
        for c in columns {
            self.buf.push(b',');
            self.buf.extend_from_slice(csv_field(c).as_bytes());
        }
        self.buf.push(b'\n');
        self.rows += 1;
        Ok(())
    }

    fn row(&mut self, time_us: i64, values: &[f64]) -> anyhow::Result<()> {
        push_micros(&mut self.buf, time_us);
        for v in values {
            if v.to_bits() == 0 {
                // +0 (the commonest value), as the formatter would write it.
                self.buf.extend_from_slice(b",0");
                continue;
            }
            self.buf.push(b',');
            if v.is_finite() {
                let s = self.num.format_finite(*v).as_bytes();
                self.buf
                    .extend_from_slice(s.strip_suffix(b".0").unwrap_or(s));
            }
        }
        self.buf.push(b'\n');
        self.rows += 1;
        if self.buf.len() >= BLOCK {
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
    fn micros_are_written_as_display_would() {
        for us in [
            0i64,
            1,
            999_999,
            1_000_000,
            1_795_438_584_733_245,
            -1,
            -1_500_000,
        ] {
            let mut b = Vec::new();
            push_micros(&mut b, us);
            let (s, f) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
            assert_eq!(String::from_utf8(b).expect("utf-8"), format!("{s}.{f:06}"));
        }
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
