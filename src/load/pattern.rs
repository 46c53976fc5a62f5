//! What to run: a run-queue length (number of busy CPUs' worth of work) for every time slice.

use std::time::Duration;

/// A target run-queue length over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// One value per slice (a played-back trace, already inverted).
    Values(Vec<f64>),
    /// A constant load.
    Const(f64),
    /// `from` until `at` seconds, then `to`.
    Step {
        /// Load before the step.
        from: f64,
        /// Load after the step.
        to: f64,
        /// Time of the step, seconds from the start.
        at: f64,
    },
    /// `high` for the first half of every period, `low` for the second.
    Square {
        /// Low level.
        low: f64,
        /// High level.
        high: f64,
        /// Period, seconds.
        period: f64,
    },
    /// `mean + amplitude·sin(2πt/period)`, clamped at 0.
    Sine {
        /// Mean level.
        mean: f64,
        /// Amplitude.
        amplitude: f64,
        /// Period, seconds.
        period: f64,
    },
    /// A maximal-length pseudo-random binary sequence between two levels.
    Prbs(Prbs),
}

/// A pseudo-random binary sequence from a maximal-length linear feedback shift register:
/// period 2ⁿ − 1 bits, flat spectrum up to 1/(2·bit), the classic identification input.
#[derive(Debug, Clone, PartialEq)]
pub struct Prbs {
    /// Level for a 0 bit.
    pub low: f64,
    /// Level for a 1 bit.
    pub high: f64,
    /// Duration of one bit, seconds.
    pub bit: f64,
    /// The bits of one period.
    bits: Vec<bool>,
}

/// Feedback taps (1-based bit positions) of maximal-length Fibonacci LFSRs, n = 3..=24
/// (Xilinx XAPP052, Table 3); a unit test checks that each has period 2ⁿ − 1.
const TAPS: [&[u32]; 22] = [
    &[3, 2],
    &[4, 3],
    &[5, 3],
    &[6, 5],
    &[7, 6],
    &[8, 6, 5, 4],
    &[9, 5],
    &[10, 7],
    &[11, 9],
    &[12, 6, 4, 1],
    &[13, 4, 3, 1],
    &[14, 5, 3, 1],
    &[15, 14],
    &[16, 15, 13, 4],
    &[17, 14],
    &[18, 11],
    &[19, 6, 2, 1],
    &[20, 17],
    &[21, 19],
    &[22, 21],
    &[23, 18],
    &[24, 23, 22, 17],
];

impl Prbs {
    /// The sequence of an `order`-bit register (3..=24) started from `seed` (any value; 0 is
    /// mapped to a non-zero state). Only as many bits as `max_bits` are kept.
    pub fn new(
        order: u32,
        seed: u64,
        low: f64,
        high: f64,
        bit: f64,
        max_bits: usize,
    ) -> Option<Prbs> {
        let taps = TAPS.get(order.checked_sub(3)? as usize)?;
        let mask = (1u64 << order) - 1;
        let mut state = (seed & mask).max(1);
        let period = (1usize << order) - 1;
        let bits = (0..period.min(max_bits.max(1)))
            .map(|_| {
                let out = state & 1 == 1;
                let fb = taps
                    .iter()
                    .fold(0, |acc, &t| acc ^ ((state >> (order - t)) & 1));
                state = (state >> 1) | (fb << (order - 1));
                out
            })
            .collect();
        Some(Prbs {
            low,
            high,
            bit,
            bits,
        })
    }

    /// The level at `t` seconds.
    pub fn at(&self, t: f64) -> f64 {
        let i = (t / self.bit).floor().max(0.0) as usize % self.bits.len().max(1);
        if self.bits.get(i).copied().unwrap_or(false) {
            self.high
        } else {
            self.low
        }
    }

    /// The bits of (the kept part of) one period.
    pub fn bits(&self) -> &[bool] {
        &self.bits
    }
}

impl Pattern {
    /// The target at `t` seconds from the start, for slice `k`.
    pub fn at(&self, t: f64, k: usize) -> f64 {
        let v = match self {
            Pattern::Values(v) => v.get(k).copied().unwrap_or(0.0),
            Pattern::Const(c) => *c,
            Pattern::Step { from, to, at } => {
                if t < *at {
                    *from
                } else {
                    *to
                }
            }
            Pattern::Square { low, high, period } => {
                if (t / period).fract() < 0.5 {
                    *high
                } else {
                    *low
                }
            }
            Pattern::Sine {
                mean,
                amplitude,
                period,
            } => mean + amplitude * (std::f64::consts::TAU * t / period).sin(),
            Pattern::Prbs(p) => p.at(t),
        };
        v.max(0.0)
    }

    /// The largest target over `slices` slices of `slice`.
    pub fn max(&self, slice: Duration, slices: usize) -> f64 {
        (0..slices)
            .map(|k| self.at(k as f64 * slice.as_secs_f64(), k))
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_register_has_the_maximal_period() {
        for order in 3..=24u32 {
            let p = Prbs::new(order, 1, 0.0, 1.0, 1.0, usize::MAX).expect("order");
            let period = (1usize << order) - 1;
            assert_eq!(p.bits().len(), period);
            // A maximal-length sequence has 2^(n−1) ones and 2^(n−1) − 1 zeros per period,
            // and the register returns to its start only after the whole period.
            let ones = p.bits().iter().filter(|b| **b).count();
            assert_eq!(ones, 1 << (order - 1), "order {order}");
            let mut state = 1u64;
            let taps = TAPS[(order - 3) as usize];
            for step in 1..=period {
                let fb = taps
                    .iter()
                    .fold(0, |acc, &t| acc ^ ((state >> (order - t)) & 1));
                state = (state >> 1) | (fb << (order - 1));
                assert!(
                    state != 1 || step == period,
                    "order {order} repeats at {step}"
                );
            }
            assert_eq!(state, 1, "order {order}");
        }
        assert!(Prbs::new(2, 1, 0.0, 1.0, 1.0, 10).is_none());
        assert!(Prbs::new(25, 1, 0.0, 1.0, 1.0, 10).is_none());
    }

    #[test]
    fn shapes_take_their_levels() {
        let sq = Pattern::Square {
            low: 0.2,
            high: 1.0,
            period: 10.0,
        };
        assert_eq!(
            (sq.at(1.0, 0), sq.at(6.0, 0), sq.at(11.0, 0)),
            (1.0, 0.2, 1.0)
        );
        let st = Pattern::Step {
            from: 0.0,
            to: 1.5,
            at: 3.0,
        };
        assert_eq!((st.at(2.9, 0), st.at(3.0, 0)), (0.0, 1.5));
        let sine = Pattern::Sine {
            mean: 0.5,
            amplitude: 1.0,
            period: 4.0,
        };
        assert!((sine.at(1.0, 0) - 1.5).abs() < 1e-12);
        assert_eq!(sine.at(3.0, 0), 0.0, "clamped at 0");
    }
}
