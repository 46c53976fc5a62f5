//! CSV records straight from a large read buffer: one pass over the bytes per record, no
//! allocation per record or cell.
//!
//! vmmon writes its traces without quotes in data rows, so the common record is split on
//! `,` and `\n` with field bounds pointing into the buffer. A record holding a `"` is parsed
//! by an RFC 4180 state machine instead (quoted fields, `""` escapes, line breaks inside
//! quotes), its fields unescaped into a scratch buffer. Like the `csv` crate with its defaults
//! (which align used before): `\r\n` ends a record as `\n` does, blank lines are skipped, a
//! UTF-8 byte-order mark at the start is dropped, and every record must have as many fields
//! as the first (the header). Unlike it, a `\r` alone (old Mac line ends) does not end a
//! record: it stays in its field, where a number cell is refused with file:line:column unless
//! the `\r` is at the cell's edge (ASCII padding, trimmed).
//!
//! A caller that can read the common record faster itself (align's one-pass reader) takes
//! the unread bytes, which always end in a 0 sentinel, and steps over the record it read;
//! it leaves every other record to `next_record`.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// Initial size of the read buffer; it grows only for a record longer than it.
const BUF: usize = 1 << 18;

/// Reads one CSV file record by record.
pub struct Records {
    file: File,
    label: String,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    started: bool,
    next_line: u64,
    line: u64,
    /// End (exclusive) of each field of the current record; a field starts `gap` bytes
    /// after the previous one ends (the `,` in the buffer; nothing in the scratch buffer),
    /// the first at `first`. Longer than `fields`: the splitter writes ahead.
    ends: Vec<usize>,
    fields: usize,
    first: usize,
    gap: usize,
    quoted: bool,
    scratch: Vec<u8>,
    width: Option<usize>,
    /// The CPU counts bits in one instruction (the baseline x86-64 target does not assume
    /// it, and the splitter counts a block's commas).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    popcnt: bool,
}

/// A record's fields (from [`Records::fields`]).
pub struct Fields<'a> {
    text: &'a [u8],
    ends: &'a [usize],
    first: usize,
    gap: usize,
}

impl<'a> Fields<'a> {
    /// Field `i` (empty if there is no such field).
    #[inline(always)]
    pub fn get(&self, i: usize) -> &'a [u8] {
        let Some(&b) = self.ends.get(i) else {
            return b"";
        };
        let a = if i == 0 {
            self.first
        } else {
            self.ends[i - 1] + self.gap
        };
        &self.text[a..b]
    }
}

/// Whether the CPU has POPCNT.
fn has_popcnt() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("popcnt");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// What a scan of the buffered bytes found.
enum Scan {
    /// A record ending at this offset (exclusive), spanning this many line breaks.
    Record(usize, u64),
    /// A blank line ending here.
    Blank(usize),
    /// The record contains a quote: use the RFC 4180 parser.
    Quoted,
    /// The record is not complete in the buffer.
    More,
}

impl Records {
    /// Opens `path`; the first record read is the header.
    pub fn open(path: &Path) -> anyhow::Result<Records> {
        let file =
            File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
        Ok(Records {
            file,
            label: path.display().to_string(),
            buf: vec![0; BUF],
            pos: 0,
            end: 0,
            eof: false,
            started: false,
            next_line: 1,
            line: 0,
            ends: vec![0; 64],
            fields: 0,
            first: 0,
            gap: 1,
            quoted: false,
            scratch: Vec::new(),
            width: None,
            popcnt: has_popcnt(),
        })
    }

    /// Number of fields of the current record.
    pub fn len(&self) -> usize {
        self.fields
    }

    /// Whether the current record has no field (before the first read).
    pub fn is_empty(&self) -> bool {
        self.fields == 0
    }

    /// The bytes not yet read, for a caller that reads a plain record itself, followed by
    /// one 0 byte (a sentinel: it is no digit, separator or quote, so the caller's loops
    /// stop at it without counting). What follows the sentinel is not data.
    #[inline(always)]
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..=self.end]
    }

    /// Steps over one record of one line, `len` bytes with its line break, that the caller
    /// read itself from [`Records::unread`] (and found to have the header's width). Its
    /// fields are not served: [`Records::get`] gives empty cells until the next record.
    #[inline(always)]
    pub fn consume_line(&mut self, len: usize) {
        debug_assert!(self.pos + len <= self.end);
        self.pos += len;
        self.line = self.next_line;
        self.next_line += 1;
        self.fields = 0;
    }

    /// Line (1-based) where the current record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Field `i` of the current record (empty if there is no such field).
    #[inline(always)]
    pub fn get(&self, i: usize) -> &[u8] {
        self.fields().get(i)
    }

    /// The current record's fields, for reading many: the record's kind (plain or quoted)
    /// and its field count are looked at once, not per field.
    #[inline(always)]
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            text: if self.quoted {
                &self.scratch
            } else {
                &self.buf
            },
            ends: &self.ends[..self.fields],
            first: self.first,
            gap: self.gap,
        }
    }

    /// Reads the next record; false at the end of the file.
    pub fn next_record(&mut self) -> anyhow::Result<bool> {
        loop {
            let scan = self.scan();
            let scan = match scan {
                Scan::Quoted => self.scan_quoted(),
                s => s,
            };
            match scan {
                Scan::Record(next, breaks) => {
                    self.pos = next;
                    self.line = self.next_line;
                    self.next_line += breaks;
                    let n = self.fields;
                    match self.width {
                        None => self.width = Some(n),
                        Some(w) if w != n => bail!(
                            "{}:{}: found a record with {n} fields, but the header has {w}",
                            self.label,
                            self.line
                        ),
                        Some(_) => {}
                    }
                    return Ok(true);
                }
                Scan::Blank(next) => {
                    self.pos = next;
                    self.next_line += 1;
                }
                Scan::Quoted => unreachable!("handled above"),
                Scan::More => {
                    if self.eof {
                        self.fields = 0;
                        return Ok(false);
                    }
                    self.fill()?;
                }
            }
        }
    }

    /// Moves the unread bytes to the front and reads more (growing the buffer for a record
    /// longer than it).
    fn fill(&mut self) -> anyhow::Result<()> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        // The last byte is kept for the sentinel after the data.
        if self.end + 1 >= self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let room = self.buf.len() - 1;
        loop {
            match self.file.read(&mut self.buf[self.end..room]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => bail!("{}: {e}", self.label),
            }
        }
        self.buf[self.end] = 0;
        if !self.started && (self.end >= 3 || self.eof) {
            self.started = true;
            if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.pos = 3;
            }
        }
        Ok(())
    }

    /// `scan_plain`, compiled with POPCNT where the CPU has it.
    #[inline(always)]
    fn scan(&mut self) -> Scan {
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            // SAFETY: `popcnt` is set only where the CPU was found to have POPCNT.
            return unsafe { self.scan_plain_popcnt() };
        }
        self.scan_plain()
    }

    /// `scan_plain` with `count_ones` as one instruction.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn scan_plain_popcnt(&mut self) -> Scan {
        self.scan_plain()
    }

    /// Splits a record without quotes; `Quoted` if it has one.
    #[inline(always)]
    fn scan_plain(&mut self) -> Scan {
        if !self.started {
            return Scan::More;
        }
        self.quoted = false;
        self.gap = 1;
        let base = self.pos;
        let end = self.end;
        self.first = base;
        let buf = &self.buf[..end];
        let ends = &mut self.ends;
        let mut n = 0;
        let mut i = base;
        // Sixteen bytes at a time: masks of the bytes that are `,` and of those that end the
        // plain scan (`\n`, `"`), exact (no false positives). The commas of a block are
        // written out without a branch per comma (four stores, more only if a block holds
        // more), so the cost does not depend on where the commas fall.
        while i + 16 <= end {
            let mut block = [0u8; 16];
            block.copy_from_slice(&buf[i..i + 16]);
            let (mut commas, stop) = masks(&block);
            if stop != 0 {
                // Only the commas before the first stop belong to this record.
                commas &= (stop & stop.wrapping_neg()) - 1;
            }
            if n + 16 > ends.len() {
                let grown = (n + 16).max(ends.len() * 2);
                ends.resize(grown, 0);
            }
            let count = commas.count_ones() as usize;
            let dst = &mut ends[n..n + 16];
            for d in dst.iter_mut().take(4) {
                *d = i + commas.trailing_zeros() as usize;
                commas &= commas.wrapping_sub(1);
            }
            if count > 4 {
                for d in dst.iter_mut().skip(4).take(count - 4) {
                    *d = i + commas.trailing_zeros() as usize;
                    commas &= commas.wrapping_sub(1);
                }
            }
            n += count;
            if stop != 0 {
                let at = i + stop.trailing_zeros() as usize;
                return self.stop_at(at, n);
            }
            i += 16;
        }
        while i < end {
            match buf[i] {
                b',' => {
                    if n == ends.len() {
                        ends.push(i);
                    } else {
                        ends[n] = i;
                    }
                    n += 1;
                }
                b'\n' | b'"' => return self.stop_at(i, n),
                _ => {}
            }
            i += 1;
        }
        if self.eof && end > base {
            // The last record, without a line break.
            return self.end_record(n, end, end, 0);
        }
        Scan::More
    }

    /// The plain scan met a `\n` or `"` at `at`, after `n` commas of the record.
    #[inline]
    fn stop_at(&mut self, at: usize, n: usize) -> Scan {
        if self.buf[at] == b'"' {
            return Scan::Quoted;
        }
        self.end_record(n, at, at + 1, 1)
    }

    /// Ends the record whose last field (after `n` commas) runs to `at` (a `\r` before it
    /// dropped); the next record starts at `next`, `breaks` lines on. A record of one empty
    /// field is a blank line.
    fn end_record(&mut self, n: usize, at: usize, next: usize, breaks: u64) -> Scan {
        let start = if n == 0 {
            self.first
        } else {
            self.ends[n - 1] + 1
        };
        let e = if at > start && self.buf[at - 1] == b'\r' {
            at - 1
        } else {
            at
        };
        if n == 0 && e == start {
            return Scan::Blank(next);
        }
        if n == self.ends.len() {
            self.ends.push(e);
        } else {
            self.ends[n] = e;
        }
        self.fields = n + 1;
        Scan::Record(next, breaks)
    }

    /// Parses a record with quotes (RFC 4180, lenient as the `csv` crate: a quote inside an
    /// unquoted field, or text after a closing quote, is kept as it is).
    fn scan_quoted(&mut self) -> Scan {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        self.quoted = true;
        self.gap = 0;
        self.first = 0;
        self.fields = 0;
        self.ends.clear();
        self.scratch.clear();
        let s = &self.buf[self.pos..self.end];
        let mut st = St::FieldStart;
        let mut breaks = 0;
        for (i, &b) in s.iter().enumerate() {
            match (st, b) {
                (St::FieldStart, b'"') => st = St::Quoted,
                (St::Quoted, b'"') => st = St::QuoteInQuoted,
                (St::QuoteInQuoted, b'"') => {
                    self.scratch.push(b'"');
                    st = St::Quoted;
                }
                (St::Quoted, _) => {
                    if b == b'\n' {
                        breaks += 1;
                    }
                    self.scratch.push(b);
                }
                (_, b',') => {
                    self.ends.push(self.scratch.len());
                    st = St::FieldStart;
                }
                (_, b'\n') => {
                    if st == St::Unquoted && self.scratch.last() == Some(&b'\r') {
                        self.scratch.pop();
                    }
                    self.ends.push(self.scratch.len());
                    self.fields = self.ends.len();
                    return Scan::Record(self.pos + i + 1, breaks + 1);
                }
                (_, _) => {
                    self.scratch.push(b);
                    st = St::Unquoted;
                }
            }
        }
        if self.eof && !s.is_empty() {
            if st == St::Unquoted && self.scratch.last() == Some(&b'\r') {
                self.scratch.pop();
            }
            self.ends.push(self.scratch.len());
            self.fields = self.ends.len();
            return Scan::Record(self.end, breaks);
        }
        Scan::More
    }
}

/// Bit masks (bit k for byte k) of the bytes of `block` that are `,` and of those that are
/// `\n` or `"`: SSE2, which every x86-64 has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of x86-64 itself (every x86_64 target enables it), and the load
    // reads the 16 bytes of `block` with no alignment required.
    let (commas, stop) = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let comma = _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8));
        let line = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        (
            _mm_movemask_epi8(comma) as u32,
            _mm_movemask_epi8(_mm_or_si128(line, quote)) as u32,
        )
    };
    (commas, stop)
}

#[cfg(not(target_arch = "x86_64"))]
use masks_words as masks;

/// `masks` with two eight-byte words, where SSE2 is not at hand (tested against it on
/// x86-64).
#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline(always)]
fn masks_words(block: &[u8; 16]) -> (u32, u32) {
    let word = |k: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&block[8 * k..8 * k + 8]);
        u64::from_le_bytes(w)
    };
    // The high bit of each byte gathered into the low eight bits.
    let bits = |m: u64| ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    let (lo, hi) = (word(0), word(1));
    let commas = bits(eq(lo, b',')) | bits(eq(hi, b',')) << 8;
    let stop = bits(eq(lo, b'\n') | eq(lo, b'"')) | bits(eq(hi, b'\n') | eq(hi, b'"')) << 8;
    (commas, stop)
}

/// High bit of every byte of `x` that is `c`.
#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline(always)]
fn eq(x: u64, c: u8) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let y = x ^ (u64::from(c) * 0x0101_0101_0101_0101);
    !(((y & LO7) + LO7) | y | LO7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of `text`, read with and without POPCNT (which must agree).
    fn all(text: &[u8]) -> anyhow::Result<Vec<(u64, Vec<String>)>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).expect("write");
        let read = |popcnt: bool| -> anyhow::Result<Vec<(u64, Vec<String>)>> {
            let mut r = Records::open(&p)?;
            r.popcnt = popcnt;
            let mut out = Vec::new();
            while r.next_record()? {
                let f = (0..r.len())
                    .map(|i| String::from_utf8_lossy(r.get(i)).into_owned())
                    .collect();
                out.push((r.line(), f));
            }
            Ok(out)
        };
        let plain = read(false);
        let fast = read(has_popcnt());
        match (&plain, &fast) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "with and without POPCNT"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("with and without POPCNT: {plain:?} against {fast:?}"),
        }
        fast
    }

    fn csv_crate(text: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while r.read_byte_record(&mut rec).expect("csv") {
            let line = rec.position().map_or(0, |p| p.line());
            let f = rec
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            out.push((line, f));
        }
        out
    }

    #[test]
    fn records_match_the_csv_crate() {
        let cases: [&[u8]; 9] = [
            b"time,x\n1,2\n3,\n",
            b"time,x\r\n1,2\r\n3,4",
            b"time,x\n\n1,2\n\n\n3,4\n",
            b"\xEF\xBB\xBFtime,x\n1,2\n",
            b"time,\"a \"\"b\"\"\"\n1,\"2\"\n\"3\",\"x\ny\"\n5,6\n",
            b"time,\"a,b\"\r\n1,\"\"\r\n2,\"q\"\r\n",
            b"time,x\n1,a\"b\n2,\"c\"d\n",
            b"time,x\n1,2\n3,4\r",
            b"",
        ];
        for c in cases {
            let (mine, theirs) = (all(c).expect("read"), csv_crate(c));
            if c.contains(&b'\r') || c.windows(2).any(|w| w == b"\n\n") {
                // The csv crate counts lines of CRLF files from the second record on one
                // short, and does not count blank lines; ours are the lines an editor shows.
                let fields = |v: &[(u64, Vec<String>)]| v.iter().map(|r| r.1.clone()).collect();
                let f: Vec<Vec<String>> = fields(&mine);
                assert_eq!(f, fields(&theirs), "{}", c.escape_ascii());
                let want = if c.contains(&b'\r') { 3 } else { 6 };
                assert_eq!(mine.last().map(|r| r.0), Some(want), "{}", c.escape_ascii());
            } else {
                assert_eq!(mine, theirs, "{}", c.escape_ascii());
            }
        }
    }

    #[test]
    fn random_records_match_the_csv_crate() {
        // Fields that put commas, line ends and quotes at every offset of the 16-byte
        // blocks the splitter reads: empty runs (more than four, eight or twelve commas in a
        // block: every fourth round is mostly empty cells), long cells, quoted cells between
        // plain ones, CRLF, and records wider than the splitter's first table of field ends.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for round in 0..300 {
            let width = [1, 2, 7, 9, 40, 70, 200][round % 7];
            let mut text = String::new();
            for _ in 0..(1 + next(30)) {
                for f in 0..width {
                    if f > 0 {
                        text.push(',');
                    }
                    match next(10) {
                        _ if round % 4 == 3 && next(10) < 8 => {}
                        0..=2 => {}
                        3..=5 => text += &next(1000).to_string(),
                        6 => text += &"7".repeat(next(40) as usize),
                        7 => text += &format!("{}.{}", next(100), next(1 << 40)),
                        8 if round % 3 == 0 => text += "\"a,\"\"b\nc\"",
                        _ => text += "x-y",
                    }
                }
                text += if next(4) == 0 { "\r\n" } else { "\n" };
            }
            let fields = |v: Vec<(u64, Vec<String>)>| -> Vec<Vec<String>> {
                v.into_iter().map(|r| r.1).collect()
            };
            assert_eq!(
                fields(all(text.as_bytes()).expect("read")),
                fields(csv_crate(text.as_bytes())),
                "{}",
                text.escape_debug()
            );
        }
    }

    #[test]
    fn both_ways_of_finding_the_separators_agree() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            let mut block = [0u8; 16];
            for b in &mut block {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *b =
                    [b',', b'\n', b'"', b'0', b'.', 0x80 | b',', (s >> 32) as u8][(s % 7) as usize];
            }
            let want = |c: &[u8]| -> u32 {
                (0..16)
                    .filter(|&k| c.contains(&block[k]))
                    .map(|k| 1 << k)
                    .sum()
            };
            assert_eq!(masks(&block), (want(b","), want(b"\n\"")), "{block:?}");
            assert_eq!(masks_words(&block), masks(&block), "{block:?}");
        }
    }

    #[test]
    fn long_records_and_many_refills() {
        let mut text = String::from("time,x\n");
        for i in 0..50_000 {
            text += &format!("{i},{}\n", "7".repeat(i % 97));
        }
        text += &format!("1,{}\n", "8".repeat(3 * BUF));
        text += "2,\"a\nb\"\n";
        assert_eq!(
            all(text.as_bytes()).expect("read"),
            csv_crate(text.as_bytes())
        );
    }

    #[test]
    fn a_short_record_is_refused_with_its_line() {
        let e = all(b"time,x,y\n1,2,3\n\n4,5\n")
            .expect_err("short")
            .to_string();
        assert!(
            e.ends_with("t.csv:4: found a record with 2 fields, but the header has 3"),
            "{e}"
        );
    }
}
