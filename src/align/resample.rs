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
    /// The columns averaged (rates), with their state in `rates` at the same position.
    averaged: Vec<usize>,
    /// The columns read at a point: gauges, then totals (`gauges` of them gauges).
    pointwise: Vec<usize>,
    /// How many of `pointwise` are gauges.
    gauges: usize,
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

    /// Adds a later piece of value `v` over `w` seconds (NaN: unknown).
    fn add_known(&mut self, v: f64, w: f64) {
        if v.is_nan() {
            self.unknown = true;
        } else {
            self.add(v, w);
        }
    }

    /// Adds a later piece of known value `v` over `w` seconds.
    fn add(&mut self, v: f64, w: f64) {
        self.acc += v * w;
        self.same &= v == self.base;
    }
}

/// The pieces of a cell met so far: up to two are only their weights (the rows are `prev`
/// and `cur`); from the third on they are summed per column in the track's `rates`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pieces {
    None,
    One(f64),
    Two(f64, f64),
    Summed,
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
        let (averaged, mut pointwise): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&j| methods[j] == Method::Average);
        pointwise.sort_by_key(|&j| methods[j] == Method::Counter);
        let gauges = pointwise
            .iter()
            .filter(|&&j| methods[j] == Method::Interpolate)
            .count();
        Ok(Some(Track {
            reader,
            rates: vec![Rate::default(); averaged.len()],
            averaged,
            pointwise,
            gauges,
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

    /// Starts every averaged column's sums with the previous row over `w` seconds.
    fn start_sums(&mut self, w: f64) {
        let prev = &self.prev;
        for (&j, r) in self.averaged.iter().zip(self.rates.iter_mut()) {
            *r = Rate::start(prev[j], w);
        }
    }

    /// Adds the current row over `w` seconds to every averaged column's sums.
    fn add_piece(&mut self, w: f64) {
        let cur = &self.cur;
        for (&j, r) in self.averaged.iter().zip(self.rates.iter_mut()) {
            r.add_known(cur[j], w);
        }
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
    ///
    /// Most cells take one or two rows (a source at the grid's rate, off its phase): those
    /// rows are still `cur` and `prev` when the cell closes, so their average is computed
    /// there, column by column, from two weights. Only a third row makes the per-column
    /// sums (in `rates`), just before the step that would drop the first.
    pub fn cell(&mut self, lo: f64, hi: f64, out: &mut [f64]) -> anyhow::Result<bool> {
        let mut pieces = Pieces::None;
        loop {
            let a = self.prev_t.max(lo);
            let b = self.cur_t.min(hi);
            if b > a {
                let w = b - a;
                // A cell at `Two` was summed before its step: a piece finds None, One or
                // Summed.
                match pieces {
                    Pieces::None => pieces = Pieces::One(w),
                    Pieces::One(w1) => pieces = Pieces::Two(w1, w),
                    Pieces::Two(..) | Pieces::Summed => self.add_piece(w),
                }
            } else if let Pieces::One(w1) = pieces {
                // A step (this pass comes after one) gave no piece: a row at the very time
                // of the one before, as a gap's row one period before a real one is when
                // the period is below the time's resolution. The lone piece's row is `prev`
                // now and would not be at the next piece: sum it.
                self.start_sums(w1);
                pieces = Pieces::Summed;
            }
            if self.cur_t >= hi {
                break;
            }
            if let Pieces::Two(w1, w2) = pieces {
                // The step drops the first row: sum the two pieces now.
                self.start_sums(w1);
                self.add_piece(w2);
                pieces = Pieces::Summed;
            }
            if !self.step()? {
                // A last row a hair before the grid time still closes the cell: corrected
                // times carry rounding (t + 123.4 − 123.4 ≠ t), and times are written to
                // the microsecond, so a shortfall under 1 µs is not a missing row.
                if hi - self.cur_t < 1e-6 {
                    // The row stands for the interval up to hi: its value covers the sliver
                    // too. A known value joins the sums (an empty one adds nothing: the row's
                    // own piece already made the cell unknown); a lone piece is of this row
                    // and already has its value.
                    let sliver = hi - self.cur_t;
                    match pieces {
                        Pieces::None => pieces = Pieces::One(sliver),
                        Pieces::Summed => {
                            let cur = &self.cur;
                            for (&j, r) in self.averaged.iter().zip(self.rates.iter_mut()) {
                                if !cur[j].is_nan() {
                                    r.add(cur[j], sliver);
                                }
                            }
                        }
                        Pieces::One(_) | Pieces::Two(..) => {}
                    }
                    self.cur_t = hi;
                    break;
                }
                return Ok(false);
            }
        }
        let width = hi - lo;
        let (prev, cur) = (&self.prev, &self.cur);
        let averaged = self.averaged.iter();
        if lo < self.start {
            // Before the first row's interval: nothing is known.
            for &j in averaged {
                out[j] = f64::NAN;
            }
        } else {
            match pieces {
                // No piece at all (a cell narrower than time's rounding): nothing is known.
                Pieces::None => averaged.for_each(|&j| out[j] = f64::NAN),
                Pieces::One(_) => averaged.for_each(|&j| out[j] = cur[j]),
                Pieces::Two(w1, w2) => {
                    for &j in averaged {
                        let (p, c) = (prev[j], cur[j]);
                        // NaN in either piece leaves the cell unknown: NaN ≠ NaN, and the
                        // sum is NaN.
                        out[j] = if p == c { p } else { (p * w1 + c * w2) / width };
                    }
                }
                Pieces::Summed => {
                    for (&j, r) in averaged.zip(&self.rates) {
                        out[j] = if r.unknown {
                            f64::NAN
                        } else if r.same {
                            r.base
                        } else {
                            r.acc / width
                        };
                    }
                }
            }
        }
        let exact = self.cur_t == hi;
        let span = self.cur_t - self.prev_t;
        let w = (hi - self.prev_t) / span;
        let (gauges, counters) = self.pointwise.split_at(self.gauges);
        if exact {
            for &j in &self.pointwise {
                out[j] = cur[j];
            }
        } else if span > self.max_gap {
            for &j in &self.pointwise {
                out[j] = f64::NAN;
            }
        } else {
            // NaN in either row propagates: never invented.
            for &j in gauges {
                let (p, c) = (prev[j], cur[j]);
                out[j] = p + (c - p) * w;
            }
            for &j in counters {
                let (p, c) = (prev[j], cur[j]);
                out[j] = if c < p { f64::NAN } else { p + (c - p) * w };
            }
        }
        for (o, e) in out.iter().zip(self.empty.iter_mut()) {
            *e += u64::from(o.is_nan());
        }
        Ok(true)
    }
}
