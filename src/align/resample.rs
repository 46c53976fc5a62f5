//! Resampling one source onto the grid, one grid interval at a time, holding two rows.
//!
//! A source is seen as functions of corrected time. A gauge or total is known at its rows
//! and read between two of them on the chord. A rate row holds the average over the interval
//! since the previous row, so the rate is a step function, and a grid cell is its exact
//! average over (g − P, g]: every piece of a row's interval goes to exactly one cell, which
//! conserves the integral. Where a step is longer than the gap limit the data are unknown
//! and the cells touching the unknown part stay empty.

use crate::trace::Kind;

use super::source::SourceReader;

/// How a column is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Linear between the rows around the grid time (gauges).
    Interpolate,
    /// Linear, and empty across a decrease (counter reset or wrap): cumulative totals.
    Counter,
    /// Overlap-weighted average over the grid interval (rates).
    Average,
}

impl Method {
    /// The method for a column kind (`None` for times, which are not resampled).
    pub fn for_kind(kind: Kind) -> Option<Method> {
        match kind {
            Kind::Gauge => Some(Method::Interpolate),
            Kind::Total => Some(Method::Counter),
            Kind::Rate => Some(Method::Average),
            Kind::Time => None,
        }
    }
}

/// One source on its way onto the grid.
pub struct Track {
    reader: SourceReader,
    methods: Vec<Method>,
    /// The columns averaged (rates), with their state in `rates` at the same position.
    averaged: Vec<usize>,
    /// The columns read at a point (gauges, totals).
    pointwise: Vec<usize>,
    period: f64,
    max_gap: f64,
    /// Start of the first row's interval: before it, rates are unknown.
    start: f64,
    prev_t: f64,
    prev: Vec<f64>,
    cur_t: f64,
    cur: Vec<f64>,
    /// A real row waiting behind an inserted unknown stretch.
    pending: Option<f64>,
    next: Vec<f64>,
    rates: Vec<Rate>,
    /// Corrected time of the first row.
    pub first: f64,
    /// Empty cells written, per column.
    pub empty: Vec<u64>,
}

/// An averaged column's cell in the making.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    /// The first value met in the cell.
    base: f64,
    /// The overlap-weighted sum of the values.
    acc: f64,
    /// Every value met equals `base`.
    same: bool,
    /// Part of the cell has no value.
    unknown: bool,
}

impl Rate {
    /// A cell whose first piece has value `v` over `w` seconds.
    fn start(v: f64, w: f64) -> Rate {
        Rate {
            base: v,
            acc: v * w,
            same: true,
            unknown: v.is_nan(),
        }
    }

    /// Adds a later piece of known value `v` over `w` seconds.
    fn add(&mut self, v: f64, w: f64) {
        self.acc += v * w;
        self.same &= v == self.base;
    }
}

impl Track {
    /// Starts a track on a freshly opened reader; `period` is the source's own sampling
    /// period (the first row's interval), `max_gap` the longest step bridged.
    pub fn new(
        mut reader: SourceReader,
        methods: Vec<Method>,
        period: f64,
        max_gap: f64,
    ) -> anyhow::Result<Option<Track>> {
        let n = methods.len();
        let mut cur = vec![f64::NAN; n];
        let Some(t0) = reader.next_row(&mut cur)? else {
            return Ok(None);
        };
        let (averaged, pointwise): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&j| methods[j] == Method::Average);
        Ok(Some(Track {
            reader,
            rates: vec![Rate::default(); averaged.len()],
            averaged,
            pointwise,
            period,
            max_gap,
            start: t0 - period,
            prev_t: t0 - period,
            prev: vec![f64::NAN; n],
            cur_t: t0,
            cur,
            pending: None,
            next: vec![f64::NAN; n],
            first: t0,
            empty: vec![0; n],
            methods,
        }))
    }

    /// The reader (for its counts and clock summary).
    pub fn reader(&self) -> &SourceReader {
        &self.reader
    }

    /// Corrected time of the row read last.
    pub fn last_time(&self) -> f64 {
        self.pending.unwrap_or(self.cur_t)
    }

    /// Moves one row on; false at the end of the source (the state is then unchanged).
    fn step(&mut self) -> anyhow::Result<bool> {
        if let Some(t) = self.pending.take() {
            std::mem::swap(&mut self.prev, &mut self.cur);
            self.prev_t = self.cur_t;
            std::mem::swap(&mut self.cur, &mut self.next);
            self.cur_t = t;
            return Ok(true);
        }
        let Some(t) = self.reader.next_row(&mut self.next)? else {
            return Ok(false);
        };
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.prev_t = self.cur_t;
        if t - self.prev_t > self.max_gap && t - self.period > self.prev_t {
            // Too long a step: the row speaks for one period before it; what lies between is
            // unknown, stood for by a row of empty cells.
            self.cur.fill(f64::NAN);
            self.cur_t = t - self.period;
            self.pending = Some(t);
        } else {
            std::mem::swap(&mut self.cur, &mut self.next);
            self.cur_t = t;
        }
        Ok(true)
    }

    /// Computes the cell (lo, hi] into `out` (gauges at `hi`, rates averaged over the
    /// interval). False if the source ends before `hi`. Calls must come with increasing,
    /// contiguous intervals.
    ///
    /// A rate that is the same all over the cell is that value, exactly: the weighted sum
    /// over the width need not give it back (the weights need not add up to the width in
    /// floating point), and a steady 95.3 must not become 95.30000000000001. (Summing
    /// differences from the first value instead would lose digits where a large value has a
    /// sliver of the cell.)
    pub fn cell(&mut self, lo: f64, hi: f64, out: &mut [f64]) -> anyhow::Result<bool> {
        // The first piece of the cell sets each rate's base; no per-column branch for it.
        let mut first = true;
        loop {
            let a = self.prev_t.max(lo);
            let b = self.cur_t.min(hi);
            if b > a {
                let w = b - a;
                let cur = &self.cur;
                let rates = self.averaged.iter().zip(self.rates.iter_mut());
                if first {
                    first = false;
                    for (&j, r) in rates {
                        *r = Rate::start(cur[j], w);
                    }
                } else {
                    for (&j, r) in rates {
                        let v = cur[j];
                        if v.is_nan() {
                            r.unknown = true;
                        } else {
                            r.add(v, w);
                        }
                    }
                }
            }
            if self.cur_t >= hi {
                break;
            }
            if !self.step()? {
                // A last row a hair before the grid time still closes the cell: corrected
                // times carry rounding (t + 123.4 − 123.4 ≠ t), and times are written to
                // the microsecond, so a shortfall under 1 µs is not a missing row.
                if hi - self.cur_t < 1e-6 {
                    // The row stands for the interval up to hi: its value covers the sliver
                    // too.
                    let sliver = hi - self.cur_t;
                    for (&j, r) in self.averaged.iter().zip(self.rates.iter_mut()) {
                        let v = self.cur[j];
                        if first {
                            *r = Rate::start(v, sliver);
                        } else if !v.is_nan() {
                            r.add(v, sliver);
                        }
                    }
                    first = false;
                    self.cur_t = hi;
                    break;
                }
                return Ok(false);
            }
        }
        if first {
            // No piece at all (a cell narrower than time's rounding): nothing is known.
            for r in &mut self.rates {
                r.unknown = true;
            }
        }
        let exact = self.cur_t == hi;
        let span = self.cur_t - self.prev_t;
        let w = (hi - self.prev_t) / span;
        let before_start = lo < self.start;
        let width = hi - lo;
        for (&j, r) in self.averaged.iter().zip(&self.rates) {
            out[j] = if before_start || r.unknown {
                f64::NAN
            } else if r.same {
                r.base
            } else {
                r.acc / width
            };
        }
        for &j in &self.pointwise {
            let (p, c) = (self.prev[j], self.cur[j]);
            out[j] = match self.methods[j] {
                _ if exact => c,
                Method::Counter if c < p => f64::NAN,
                _ if span > self.max_gap => f64::NAN,
                // NaN in either row propagates: never invented.
                _ => p + (c - p) * w,
            };
        }
        for (o, e) in out.iter().zip(self.empty.iter_mut()) {
            *e += u64::from(o.is_nan());
        }
        Ok(true)
    }
}
