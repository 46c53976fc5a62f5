//! Non-negative least squares, `min ‖A x − b‖₂ subject to x ≥ 0`, by the Lawson–Hanson
//! active-set method (Lawson & Hanson, *Solving Least Squares Problems*, 1974, ch. 23).
//!
//! Each unconstrained sub-problem on the passive set is solved by an SVD of the passive
//! columns (not by the normal equations), so accuracy is that of an orthogonal
//! factorisation. The problems `charge --calibrate` poses have a handful of columns and up to
//! millions of rows; the cost is a few thin SVDs of m × (≤ n) matrices.

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

/// A non-negative least-squares solution.
#[derive(Debug, Clone, Serialize)]
pub struct Nnls {
    /// The solution x ≥ 0.
    pub x: Vec<f64>,
    /// ‖A x − b‖₂.
    pub residual_norm: f64,
    /// Sub-problems solved (a measure of the work done).
    pub iterations: usize,
}

/// Why a non-negative least-squares problem was not solved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NnlsError {
    /// `b` does not have one entry per row of `A`.
    #[error("A has {rows} rows but b has {len} entries")]
    Shape {
        /// Rows of A.
        rows: usize,
        /// Entries of b.
        len: usize,
    },
    /// A or b holds a NaN or an infinity.
    #[error("A or b holds a value that is not finite")]
    NotFinite,
    /// The active-set loop did not settle within its iteration budget.
    #[error("no convergence after {0} sub-problems")]
    NoConvergence(usize),
}

/// Solves `min ‖A x − b‖₂` subject to `x ≥ 0`.
///
/// The stopping tolerance on the gradient `w = Aᵀ(b − A x)` is
/// `10 · ε · max(m, n) · max_j ‖a_j‖ · ‖b‖`, so it does not depend on how A and b are scaled.
/// The iteration budget is 30 sub-problems per column.
pub fn nnls(a: &DMatrix<f64>, b: &DVector<f64>) -> Result<Nnls, NnlsError> {
    let (m, n) = a.shape();
    if b.len() != m {
        return Err(NnlsError::Shape {
            rows: m,
            len: b.len(),
        });
    }
    if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(NnlsError::NotFinite);
    }
    let mut x = DVector::<f64>::zeros(n);
    if n == 0 || m == 0 {
        return Ok(Nnls {
            x: x.iter().copied().collect(),
            residual_norm: b.norm(),
            iterations: 0,
        });
    }
    let col_norm = (0..n).map(|j| a.column(j).norm()).fold(0.0f64, f64::max);
    let tol = 10.0 * f64::EPSILON * m.max(n) as f64 * col_norm * b.norm();
    let budget = 30 * n;
    let mut passive = vec![false; n];
    // A column whose sub-problem coefficient came out ≤ 0 right after it entered (rounding
    // at a degenerate optimum) is kept out until x changes, or the method would cycle.
    let mut blocked = vec![false; n];
    let mut iterations = 0usize;
    let mut w = a.tr_mul(&(b - a * &x));
    loop {
        let entering = (0..n)
            .filter(|&j| !passive[j] && !blocked[j])
            .max_by(|&i, &j| w[i].total_cmp(&w[j]));
        let Some(t) = entering.filter(|&t| w[t] > tol) else {
            break;
        };
        passive[t] = true;
        let mut first = true;
        loop {
            iterations += 1;
            if iterations > budget {
                return Err(NnlsError::NoConvergence(budget));
            }
            let s = solve_passive(a, b, &passive);
            if first && s[t] <= 0.0 {
                passive[t] = false;
                blocked[t] = true;
                break;
            }
            first = false;
            if (0..n).filter(|&j| passive[j]).all(|j| s[j] > 0.0) {
                x = s;
                blocked.iter_mut().for_each(|b| *b = false);
                break;
            }
            // Move from x towards s until the first passive coefficient reaches zero, and
            // make that one (and any other at or below zero) active.
            let (mut alpha, mut hit) = (f64::INFINITY, usize::MAX);
            for j in (0..n).filter(|&j| passive[j] && s[j] <= 0.0) {
                let step = x[j] / (x[j] - s[j]);
                if step < alpha {
                    (alpha, hit) = (step, j);
                }
            }
            for j in 0..n {
                x[j] += alpha * (s[j] - x[j]);
            }
            for j in 0..n {
                if passive[j] && (j == hit || x[j] <= 0.0) {
                    passive[j] = false;
                    x[j] = 0.0;
                }
            }
            blocked.iter_mut().for_each(|b| *b = false);
        }
        w = a.tr_mul(&(b - a * &x));
    }
    let residual_norm = (a * &x - b).norm();
    Ok(Nnls {
        x: x.iter().copied().collect(),
        residual_norm,
        iterations,
    })
}

/// The unconstrained least-squares solution on the passive columns (zero elsewhere), by SVD
/// with singular values below `ε · max(m, p) · σ_max` treated as zero.
fn solve_passive(a: &DMatrix<f64>, b: &DVector<f64>, passive: &[bool]) -> DVector<f64> {
    let cols: Vec<usize> = (0..passive.len()).filter(|&j| passive[j]).collect();
    let mut out = DVector::zeros(passive.len());
    if cols.is_empty() {
        return out;
    }
    let ap = a.select_columns(&cols);
    let svd = ap.svd(true, true);
    let smax = svd.singular_values.max();
    let eps = f64::EPSILON * a.nrows().max(cols.len()) as f64 * smax;
    // Both factors were asked for, so solve cannot fail; a failure leaves the zero vector.
    if let Ok(s) = svd.solve(b, eps) {
        for (k, &j) in cols.iter().enumerate() {
            out[j] = s[k];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconstrained_optimum_is_returned_when_feasible() {
        // b = 2 a0 + 3 a1 exactly: the unconstrained solution is non-negative.
        let a = DMatrix::from_row_slice(4, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0]);
        let b = DVector::from_vec(vec![2.0, 3.0, 5.0, 7.0]);
        let s = nnls(&a, &b).expect("solved");
        assert!((s.x[0] - 2.0).abs() < 1e-14 && (s.x[1] - 3.0).abs() < 1e-14);
        assert!(s.residual_norm < 1e-13);
    }

    #[test]
    fn a_negative_coefficient_is_clamped_by_hand() {
        // Columns e0 and e0 + e1 against b = (1, −1): the unconstrained solution is (2, −1).
        // With x1 = 0 the best x0 is 1, residual (0, −1); KKT: w1 = (1,1)·(0,−1) = −1 < 0.
        let a = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 0.0, 1.0]);
        let b = DVector::from_vec(vec![1.0, -1.0]);
        let s = nnls(&a, &b).expect("solved");
        assert_eq!(s.x, vec![1.0, 0.0]);
        assert!((s.residual_norm - 1.0).abs() < 1e-15);
    }

    #[test]
    fn all_negative_gives_zero() {
        let a = DMatrix::from_row_slice(3, 1, &[1.0, 2.0, 3.0]);
        let b = DVector::from_vec(vec![-1.0, -2.0, -3.0]);
        let s = nnls(&a, &b).expect("solved");
        assert_eq!(s.x, vec![0.0]);
    }

    #[test]
    fn duplicate_columns_do_not_cycle() {
        let a = DMatrix::from_row_slice(3, 2, &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let b = DVector::from_vec(vec![1.0, 2.0, 3.0]);
        let s = nnls(&a, &b).expect("solved");
        assert!((s.x[0] + s.x[1] - 1.0).abs() < 1e-12, "{:?}", s.x);
        assert!(s.x.iter().all(|v| *v >= 0.0));
    }

    #[test]
    fn bad_input_is_refused() {
        let a = DMatrix::from_row_slice(2, 1, &[1.0, f64::NAN]);
        let b = DVector::from_vec(vec![1.0, 2.0]);
        assert_eq!(nnls(&a, &b).err(), Some(NnlsError::NotFinite));
        let b3 = DVector::from_vec(vec![1.0, 2.0, 3.0]);
        assert!(matches!(
            nnls(&a, &b3),
            Err(NnlsError::Shape { rows: 2, len: 3 })
        ));
    }
}
