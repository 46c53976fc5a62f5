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

/// Gram matrix `XᵀX` over rows `t0..n` of columns that are lagged copies of a few series,
/// column c being `sign·x_s(t − lag)/scale`. An entry `Σ_t x_p(t−l1) x_q(t−l2)` is the sum
/// of `x_p(s) x_q(s − k)`, `k = l2 − l1`, over a window that slides with `l1`. So each pair
/// of series needs only its lagged products over one common window, computed in a single
/// pass over the rows (cache-sized blocks, in parallel), and every entry is one of those
/// with the window's ends corrected by O(t0) products. Requires every lag ≤ t0 < n.
pub fn lagged_gram(series: &[&[f64]], blocks: &[LagBlock], t0: usize, n: usize) -> DMatrix<f64> {
    use std::collections::BTreeMap;
    let cols: Vec<(usize, usize, f64)> = blocks
        .iter()
        .flat_map(|b| (b.lo..=b.hi).map(move |l| (b.series, l, b.sign / b.scale)))
        .collect();
    let d = cols.len();
    // Entry (i, j) in canonical order (p, l1) ≤ (q, l2).
    let canonical = |i: usize, j: usize| {
        let (a, b) = ((cols[i].0, cols[i].1), (cols[j].0, cols[j].1));
        let ((p, l1), (q, l2)) = if a <= b { (a, b) } else { (b, a) };
        (p, q, l1, l2 as isize - l1 as isize)
    };
    let mut lags: BTreeMap<(usize, usize), Vec<isize>> = BTreeMap::new();
    for i in 0..d {
        for j in i..d {
            let (p, q, _, k) = canonical(i, j);
            lags.entry((p, q)).or_default().push(k);
        }
    }
    // Per pair: the window [a, b), its lag differences (sorted) and their sums.
    struct Window {
        a: usize,
        b: usize,
        ks: Vec<isize>,
        sums: Vec<f64>,
    }
    let mut common: BTreeMap<(usize, usize), Window> = BTreeMap::new();
    for ((p, q), mut ks) in lags {
        ks.sort_unstable();
        ks.dedup();
        let (kmin, kmax) = (ks[0], ks[ks.len() - 1]);
        // The widest window valid for every k: s ≥ 0, s − k ≥ 0, s < n, s − k < n.
        let a = kmax.max(0) as usize;
        let b = (n as isize + kmin.min(0)).max(a as isize) as usize;
        let sums = multi_lag_dots(series[p], series[q], &ks, a, b);
        common.insert((p, q), Window { a, b, ks, sums });
    }
    // Σ x_p(s) x_q(s − k) over [from, to), negated when to < from.
    let partial = |p: usize, q: usize, k: isize, from: usize, to: usize| -> f64 {
        let (x1, x2) = (series[p], series[q]);
        let (lo, hi, sign) = if from <= to {
            (from, to, 1.0)
        } else {
            (to, from, -1.0)
        };
        sign * (lo..hi)
            .map(|s| x1[s] * x2[(s as isize - k) as usize])
            .sum::<f64>()
    };
    let mut g = DMatrix::zeros(d, d);
    for i in 0..d {
        for j in i..d {
            let (p, q, l1, k) = canonical(i, j);
            let w = &common[&(p, q)];
            let reference = w.ks.binary_search(&k).map_or(0.0, |at| w.sums[at]);
            // Σ over [t0 − l1, n − l1) = Σ over [a, b) + Σ [b, n − l1) − Σ [a, t0 − l1).
            let v = reference + partial(p, q, k, w.b, n - l1) - partial(p, q, k, w.a, t0 - l1);
            let v = v * cols[i].2 * cols[j].2;
            g[(i, j)] = v;
            g[(j, i)] = v;
        }
    }
    g
}

/// `Σ_{s ∈ [a, b)} x(s)·y(s − k)` for each k of `ks` (every index in range), in one pass over the rows: a block of
/// rows stays in cache while every lag is summed over it, blocks run in parallel.
pub fn multi_lag_dots(x: &[f64], y: &[f64], ks: &[isize], a: usize, b: usize) -> Vec<f64> {
    use rayon::prelude::*;
    const ROWS: usize = 1024;
    const TASK_ROWS: usize = 256 * ROWS;
    let task = |from: usize| -> Vec<f64> {
        let to = (from + TASK_ROWS).min(b);
        let mut out = vec![0.0; ks.len()];
        let mut s0 = from;
        while s0 < to {
            let s1 = (s0 + ROWS).min(to);
            for (o, &k) in out.iter_mut().zip(ks) {
                let y = &y[(s0 as isize - k) as usize..(s1 as isize - k) as usize];
                *o += super::xcorr::dot(&x[s0..s1], y);
            }
            s0 = s1;
        }
        out
    };
    (a..b).into_par_iter().step_by(TASK_ROWS).map(task).reduce(
        || vec![0.0; ks.len()],
        |mut acc, part| {
            acc.iter_mut().zip(&part).for_each(|(a, p)| *a += p);
            acc
        },
    )
}

/// `Σ_c coef_c · x_{s_c}(t − lag_c)` for t in `t0..n`, `terms` being `(s, lag, coef)`: a
/// lagged regression's rows times its coefficients (one-step predictions, residuals). Rows
/// are done a block at a time, four columns per pass over the block, so the work is
/// contiguous and vectorises. Requires every lag ≤ t0.
pub fn lagged_combination(
    series: &[&[f64]],
    terms: &[(usize, usize, f64)],
    t0: usize,
    n: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; n.saturating_sub(t0)];
    lagged_combination_into(series, terms, t0, &mut out);
    out
}

/// [`lagged_combination`] for rows `t0..t0 + out.len()` into `out`, which it overwrites.
pub fn lagged_combination_into(
    series: &[&[f64]],
    terms: &[(usize, usize, f64)],
    t0: usize,
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { lagged_combination_avx2(series, terms, t0, out) };
    }
    lagged_combination_body(series, terms, t0, out)
}

/// [`lagged_combination_into`] compiled for AVX2, bit-identical to the portable build (no
/// FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lagged_combination_avx2(
    series: &[&[f64]],
    terms: &[(usize, usize, f64)],
    t0: usize,
    out: &mut [f64],
) {
    lagged_combination_body(series, terms, t0, out)
}

#[inline(always)]
fn lagged_combination_body(
    series: &[&[f64]],
    terms: &[(usize, usize, f64)],
    t0: usize,
    out: &mut [f64],
) {
    const ROWS: usize = 1024;
    out.fill(0.0);
    for (block, chunk) in out.chunks_mut(ROWS).enumerate() {
        let (t, m) = (t0 + block * ROWS, chunk.len());
        let x = |&(s, lag, _): &(usize, usize, f64)| &series[s][t - lag..t - lag + m];
        for group in terms.chunks(4) {
            match group {
                [a, b, c, e] => {
                    let (xa, xb, xc, xe) = (x(a), x(b), x(c), x(e));
                    for r in 0..m {
                        chunk[r] += a.2 * xa[r] + b.2 * xb[r] + c.2 * xc[r] + e.2 * xe[r];
                    }
                }
                rest => {
                    for term in rest {
                        let xa = x(term);
                        for r in 0..m {
                            chunk[r] += term.2 * xa[r];
                        }
                    }
                }
            }
        }
    }
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

    #[test]
    fn lagged_gram_of_one_series_with_lag_zero() {
        // Same-series keys with both signs of k and the output column at lag 0.
        let x: Vec<f64> = (0..200).map(|i| ((i * 29 % 89) as f64).sin()).collect();
        let blocks = [
            LagBlock {
                series: 0,
                lo: 1,
                hi: 5,
                sign: -1.0,
                scale: 1.0,
            },
            LagBlock {
                series: 0,
                lo: 0,
                hi: 0,
                sign: 1.0,
                scale: 1.0,
            },
        ];
        let g = lagged_gram(&[&x], &blocks, 7, 200);
        let lags = [1, 2, 3, 4, 5, 0];
        for (i, &l1) in lags.iter().enumerate() {
            for (j, &l2) in lags.iter().enumerate() {
                let sign = if (i < 5) ^ (j < 5) { -1.0 } else { 1.0 };
                let want: f64 = (7..200).map(|t| x[t - l1] * x[t - l2]).sum::<f64>() * sign;
                assert!(
                    (g[(i, j)] - want).abs() < 1e-11 * want.abs().max(1.0),
                    "{i},{j}"
                );
            }
        }
    }

    #[test]
    fn lagged_combination_equals_row_sums() {
        let x: Vec<f64> = (0..3000).map(|i| ((i * 37 % 101) as f64).sin()).collect();
        let y: Vec<f64> = (0..3000).map(|i| ((i * 53 % 97) as f64).cos()).collect();
        let terms = [
            (0, 1, 0.5),
            (0, 2, -0.25),
            (1, 0, 2.0),
            (1, 3, 1.5),
            (1, 4, -1.0),
            (0, 9, 0.125),
        ];
        let (t0, n) = (9, 3000);
        let got = lagged_combination(&[&x, &y], &terms, t0, n);
        let s = [&x, &y];
        assert_eq!(got.len(), n - t0);
        for t in t0..n {
            let want: f64 = terms.iter().map(|&(k, l, c)| c * s[k][t - l]).sum();
            assert!((got[t - t0] - want).abs() < 1e-12, "row {t}");
        }
    }
}
