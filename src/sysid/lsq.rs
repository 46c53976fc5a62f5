//! Linear least squares by a streaming block QR of `[Φ | y]`.
//!
//! Rows are pushed one at a time and folded into an upper-triangular R in blocks, so memory
//! stays O(d²) however many rows there are, and accuracy is that of QR (no squared condition
//! number as with the normal equations). Columns are scaled by fixed factors given up front
//! (callers pass each regressor's standard deviation) so that raw counters do not make R
//! badly scaled; coefficients are scaled back when solved.

use nalgebra::DMatrix;
use serde::Serialize;

/// Rows folded into R at a time.
const BLOCK_ROWS: usize = 256;

/// Relative singular-value floor below which the problem is called numerically singular.
const SINGULAR_RCOND: f64 = 1e-12;

/// Streaming least-squares accumulator for `y ≈ Φ θ`.
#[derive(Debug, Clone)]
pub struct BlockQr {
    d: usize,
    scale: Vec<f64>,
    r: DMatrix<f64>,
    block: Vec<f64>,
    rows_in_block: usize,
    rows: usize,
}

/// A least-squares solution.
#[derive(Debug, Clone, Serialize)]
pub struct Solution {
    /// Coefficients θ.
    pub theta: Vec<f64>,
    /// Standard deviation of each coefficient: `sqrt(λ diag((ΦᵀΦ)⁻¹))`, λ = RSS/(N − d).
    pub sd: Vec<f64>,
    /// Residual sum of squares.
    pub rss: f64,
    /// Rows used.
    pub n: usize,
    /// Condition number of the scaled regressor matrix.
    pub condition: f64,
}

/// Why a least-squares problem has no reliable solution.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LsqError {
    /// Fewer rows than unknowns.
    #[error("{rows} rows are too few for {d} unknowns")]
    TooFewRows {
        /// Rows available.
        rows: usize,
        /// Unknowns.
        d: usize,
    },
    /// The regressors are (numerically) linearly dependent.
    #[error(
        "the regression is numerically singular (condition number {condition:.3e}): regressor \
         {column} is constant or a combination of the others"
    )]
    Singular {
        /// Index of the regressor most responsible.
        column: usize,
        /// Condition number of the scaled regressors.
        condition: f64,
    },
}

impl BlockQr {
    /// An accumulator for `d` regressors, each divided by `scale[j]` (1 if absent or ≤ 0), and
    /// the output divided by `y_scale`.
    pub fn new(d: usize, scale: &[f64], y_scale: f64) -> Self {
        let mut s: Vec<f64> = (0..d)
            .map(|j| {
                scale
                    .get(j)
                    .copied()
                    .filter(|v| *v > 0.0 && v.is_finite())
                    .unwrap_or(1.0)
            })
            .collect();
        s.push(if y_scale > 0.0 && y_scale.is_finite() {
            y_scale
        } else {
            1.0
        });
        BlockQr {
            d,
            scale: s,
            r: DMatrix::zeros(0, d + 1),
            block: Vec::with_capacity(BLOCK_ROWS * (d + 1)),
            rows_in_block: 0,
            rows: 0,
        }
    }

    /// Adds one row `phi` (length d) with output `y`.
    pub fn push(&mut self, phi: &[f64], y: f64) {
        debug_assert_eq!(phi.len(), self.d);
        for (v, s) in phi.iter().zip(&self.scale) {
            self.block.push(v / s);
        }
        self.block.push(y / self.scale[self.d]);
        self.rows_in_block += 1;
        self.rows += 1;
        if self.rows_in_block == BLOCK_ROWS {
            self.fold();
        }
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn fold(&mut self) {
        if self.rows_in_block == 0 {
            return;
        }
        let c = self.d + 1;
        let block = DMatrix::from_row_slice(self.rows_in_block, c, &self.block);
        let stacked = if self.r.nrows() == 0 {
            block
        } else {
            let mut m = DMatrix::zeros(self.r.nrows() + self.rows_in_block, c);
            m.rows_mut(0, self.r.nrows()).copy_from(&self.r);
            m.rows_mut(self.r.nrows(), self.rows_in_block)
                .copy_from(&block);
            m
        };
        self.r = stacked.qr().r();
        self.block.clear();
        self.rows_in_block = 0;
    }

    /// Solves for θ with standard deviations; refuses a singular problem, naming the column.
    pub fn solve(&mut self) -> Result<Solution, LsqError> {
        self.fold();
        let d = self.d;
        if d == 0 || self.rows < d || self.r.nrows() < d {
            return Err(LsqError::TooFewRows { rows: self.rows, d });
        }
        let r11 = self.r.view((0, 0), (d, d)).into_owned();
        let svd = r11.clone().svd(false, false);
        let smax = svd.singular_values.max();
        let smin = svd.singular_values.min();
        let condition = if smin > 0.0 {
            smax / smin
        } else {
            f64::INFINITY
        };
        // Written so that a NaN (from non-finite data) also counts as singular.
        let regular = smin > SINGULAR_RCOND * smax;
        if d > 0 && !regular {
            let column = (0..d)
                .min_by(|&a, &b| r11[(a, a)].abs().total_cmp(&r11[(b, b)].abs()))
                .unwrap_or(0);
            return Err(LsqError::Singular { column, condition });
        }
        let r12 = self.r.view((0, d), (d, 1)).into_owned();
        let rss_scaled = if self.r.nrows() > d {
            self.r[(d, d)].powi(2)
        } else {
            0.0
        };
        // R11 is triangular and, checked above, well conditioned enough to invert.
        let rinv =
            r11.solve_upper_triangular(&DMatrix::identity(d, d))
                .ok_or(LsqError::Singular {
                    column: 0,
                    condition,
                })?;
        let theta_s = &rinv * r12;
        let ys = self.scale[d];
        let rss = rss_scaled * ys * ys;
        let dof = self.rows.saturating_sub(d).max(1) as f64;
        let lambda_s = rss_scaled / dof;
        let mut theta = Vec::with_capacity(d);
        let mut sd = Vec::with_capacity(d);
        for j in 0..d {
            let row_norm2: f64 = (0..d).map(|k| rinv[(j, k)].powi(2)).sum();
            theta.push(theta_s[j] * ys / self.scale[j]);
            sd.push((lambda_s * row_norm2).sqrt() * ys / self.scale[j]);
        }
        Ok(Solution {
            theta,
            sd,
            rss,
            n: self.rows,
            condition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_fit_and_closed_form_sd() {
        // y = 2 + 3x + e with e = ±1 alternating; x = 0..9 (centred closed form below).
        let mut q = BlockQr::new(2, &[1.0, 3.0], 10.0);
        let n = 600;
        for i in 0..n {
            let x = (i % 10) as f64;
            let e = if i % 2 == 0 { 1.0 } else { -1.0 };
            q.push(&[1.0, x], 2.0 + 3.0 * x + e);
        }
        let s = q.solve().expect("regular");
        // e is orthogonal to 1 but not to x (even x get +1): solve the 2×2 exactly.
        let (sx, sxx) = (n as f64 * 4.5, n as f64 * 28.5);
        let sxe: f64 = (0..n)
            .map(|i| ((i % 10) as f64) * if i % 2 == 0 { 1.0 } else { -1.0 })
            .sum();
        let det = n as f64 * sxx - sx * sx;
        let b_err = (n as f64 * sxe - sx * 0.0) / det;
        let a_err = (sxx * 0.0 - sx * sxe) / det;
        assert!((s.theta[0] - (2.0 + a_err)).abs() < 1e-12, "{:?}", s.theta);
        assert!((s.theta[1] - (3.0 + b_err)).abs() < 1e-12, "{:?}", s.theta);
        assert_eq!(s.n, n);
        let lambda = s.rss / (n as f64 - 2.0);
        assert!((s.sd[1] - (lambda * n as f64 / det).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_constant_regressor_is_named() {
        let mut q = BlockQr::new(3, &[], 1.0);
        for i in 0..100 {
            let x = i as f64;
            q.push(&[x, 0.0, x * x], x);
        }
        match q.solve() {
            Err(LsqError::Singular { column, .. }) => assert_eq!(column, 1),
            other => panic!("{other:?}"),
        }
    }
}

/// One block of regressor columns: series `series` at lags `lo..=hi`, each multiplied by
/// `sign / scale` (ARX uses −y(t−i); every column of a series shares its deviation).
#[derive(Debug, Clone, Copy)]
pub struct LagBlock {
    /// Index of the series.
    pub series: usize,
    /// Smallest lag.
    pub lo: usize,
    /// Largest lag.
    pub hi: usize,
    /// ±1.
    pub sign: f64,
    /// Divisor of the series' values.
    pub scale: f64,
}

impl LagBlock {
    fn len(&self) -> usize {
        self.hi - self.lo + 1
    }
}

/// Gram matrix `XᵀX` over rows `t0..n` of columns that are lagged copies of a few series,
/// column c being `sign·x_s(t − lag)/scale`, built from O(blocks²·lags) dot products: within
/// a pair of blocks, `S(l1+1, l2+1) = S(l1, l2) + x1(t0−1−l1) x2(t0−1−l2) − x1(n−1−l1)
/// x2(n−1−l2)` (the window shifts by one row), so only a block pair's first row and column
/// are full dot products. Requires every lag ≤ t0.
pub fn lagged_gram(series: &[&[f64]], blocks: &[LagBlock], t0: usize, n: usize) -> DMatrix<f64> {
    let d: usize = blocks.iter().map(LagBlock::len).sum();
    let mut g = DMatrix::zeros(d, d);
    let offsets: Vec<usize> = blocks
        .iter()
        .scan(0, |o, b| {
            let start = *o;
            *o += b.len();
            Some(start)
        })
        .collect();
    for (bi, p) in blocks.iter().enumerate() {
        for (bj, q) in blocks.iter().enumerate().skip(bi) {
            let (x1, x2) = (series[p.series], series[q.series]);
            let raw = |l1: usize, l2: usize| {
                super::xcorr::dot(&x1[t0 - l1..n - l1], &x2[t0 - l2..n - l2])
            };
            let mut s = DMatrix::zeros(p.len(), q.len());
            for j in 0..q.len() {
                s[(0, j)] = raw(p.lo, q.lo + j);
            }
            for i in 1..p.len() {
                s[(i, 0)] = raw(p.lo + i, q.lo);
            }
            for i in 1..p.len() {
                for j in 1..q.len() {
                    let (l1, l2) = (p.lo + i - 1, q.lo + j - 1);
                    s[(i, j)] = s[(i - 1, j - 1)] + x1[t0 - 1 - l1] * x2[t0 - 1 - l2]
                        - x1[n - 1 - l1] * x2[n - 1 - l2];
                }
            }
            let f = p.sign * q.sign / (p.scale * q.scale);
            for i in 0..p.len() {
                for j in 0..q.len() {
                    let v = s[(i, j)] * f;
                    g[(offsets[bi] + i, offsets[bj] + j)] = v;
                    g[(offsets[bj] + j, offsets[bi] + i)] = v;
                }
            }
        }
    }
    g
}

#[cfg(test)]
mod gram_tests {
    use super::*;

    #[test]
    fn lagged_gram_equals_explicit_products() {
        let x: Vec<f64> = (0..300).map(|i| ((i * 37 % 101) as f64).sin()).collect();
        let y: Vec<f64> = (0..300).map(|i| ((i * 53 % 97) as f64).cos()).collect();
        let blocks = [
            LagBlock {
                series: 0,
                lo: 1,
                hi: 4,
                sign: -1.0,
                scale: 2.0,
            },
            LagBlock {
                series: 1,
                lo: 3,
                hi: 9,
                sign: 1.0,
                scale: 0.5,
            },
        ];
        let (t0, n) = (12, 300);
        let g = lagged_gram(&[&x, &y], &blocks, t0, n);
        let cols: Vec<(usize, usize, f64)> = blocks
            .iter()
            .flat_map(|b| (b.lo..=b.hi).map(move |l| (b.series, l, b.sign / b.scale)))
            .collect();
        let s = [&x, &y];
        for (i, a) in cols.iter().enumerate() {
            for (j, b) in cols.iter().enumerate() {
                let want: f64 = (t0..n)
                    .map(|t| s[a.0][t - a.1] * a.2 * s[b.0][t - b.1] * b.2)
                    .sum();
                assert!(
                    (g[(i, j)] - want).abs() < 1e-11 * want.abs().max(1.0),
                    "{i},{j}"
                );
            }
        }
    }
}
