//! `--calibrate`: how much pool CPU each unit of I/O costs, fitted over the trace by
//! non-negative least squares.
//!
//! Model, per interval t of length dt_t (all in CPU-seconds over the interval):
//!
//! `pool_t ≈ β0 · dt_t + β_packets · P_t + β_bytes · B_t + β_disk · D_t`, with β ≥ 0,
//!
//! where P_t, B_t, D_t are the packets, network bytes and disk bytes of all VMs together in
//! the interval (rate × dt, rx + tx and read + write). β0 is the host's base overhead in
//! CPU-seconds per second (the pool's level when no VM does I/O). Columns are scaled to unit
//! root mean square before the fit (bytes and packets differ by 10³–10⁶), and the
//! coefficients scaled back.

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use super::input::HostTrace;
use super::{Feature, nnls};

/// Fewest intervals `--calibrate` accepts: below this R² and the residual say little.
pub const MIN_INTERVALS: usize = 10;

/// How a fitted term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TermStatus {
    /// Fitted with a positive coefficient.
    Fitted,
    /// The constraint β ≥ 0 is active: the coefficient is 0.
    AtZero,
    /// Left out of the fit: the feature is zero in every interval used.
    Dropped,
}

/// One feature's fitted cost.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureFit {
    /// The feature.
    pub feature: Feature,
    /// Pool CPU-seconds per packet or per byte.
    pub beta: f64,
    /// Unit of `beta`.
    pub beta_unit: &'static str,
    /// The same cost per 1000 packets or per MB (10⁶ bytes).
    pub cost: f64,
    /// Unit of `cost`.
    pub cost_unit: &'static str,
    /// Whether it was fitted, ended at zero, or was left out.
    pub status: TermStatus,
    /// The feature's total over the intervals used (packets or bytes).
    pub total: f64,
}

/// The result of `--calibrate`: the fitted costs and how well they explain the pool.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Intervals in the fit.
    pub intervals_used: usize,
    /// Intervals left out because a pool or I/O cell was empty.
    pub intervals_skipped: usize,
    /// β0: the host's base overhead, CPU-seconds per second.
    pub base_cpu_s_per_s: f64,
    /// β0 as percent of one CPU.
    pub base_cpu_pct: f64,
    /// Whether β0 ended at zero.
    pub base_status: TermStatus,
    /// The base overhead's part of the pool over the intervals used, percent.
    pub base_share_pct: f64,
    /// One entry per feature: packets, bytes, disk.
    pub features: Vec<FeatureFit>,
    /// Coefficient of determination, 1 − RSS/TSS (TSS about the mean pool).
    pub r2: f64,
    /// Fit % = 100 (1 − ‖pool − fitted‖ / ‖pool − mean(pool)‖).
    pub fit_pct: f64,
    /// Root mean square of the residual, CPU-seconds per interval.
    pub residual_rms_cpu_s: f64,
    /// Root mean square of the residual ÷ dt, percent of one CPU.
    pub residual_rms_pct: f64,
    /// Condition number of the scaled regressor matrix (columns kept).
    pub condition: f64,
    /// Terms whose coefficient ended at 0 (`base`, `packets`, `bytes`, `disk`).
    pub at_zero: Vec<String>,
    /// Features left out because they are zero throughout.
    pub dropped: Vec<String>,
}

impl Calibration {
    /// β of `f` in CPU-seconds per packet or byte (0 when at zero or dropped).
    pub fn beta(&self, f: Feature) -> f64 {
        self.features
            .iter()
            .find(|x| x.feature == f)
            .map_or(0.0, |x| x.beta)
    }
}

/// Fits the pool (the sum of the `parts` series of `trace.pool`, by index) on the VMs' I/O.
///
/// Intervals with an empty pool or I/O cell are left out. Errors: fewer than
/// [`MIN_INTERVALS`] intervals, a pool that is zero throughout, no I/O at all, or a feature
/// that is constant per second (it cannot be told from β0).
pub fn calibrate(trace: &HostTrace, parts: &[usize]) -> anyhow::Result<Calibration> {
    let label = &trace.label;
    let mut y = Vec::new();
    let mut dts = Vec::new();
    let mut amounts: [Vec<f64>; 3] = Default::default();
    for t in 0..trace.len() {
        let pool: Vec<f64> = parts.iter().map(|&p| trace.pool[p].1[t]).collect();
        let io: Vec<[f64; 3]> = trace
            .vms
            .iter()
            .map(|vm| Feature::ALL.map(|f| f.rate(vm, t)))
            .collect();
        if pool.iter().any(|v| v.is_nan()) || io.iter().flatten().any(|v| v.is_nan()) {
            continue;
        }
        let dt = trace.dt[t];
        y.push(pool.iter().sum::<f64>() / 100.0 * dt);
        dts.push(dt);
        for (k, a) in amounts.iter_mut().enumerate() {
            a.push(io.iter().map(|x| x[k]).sum::<f64>() * dt);
        }
    }
    let n = y.len();
    let skipped = trace.len() - n;
    if n < MIN_INTERVALS {
        anyhow::bail!(
            "{label}: --calibrate needs at least {MIN_INTERVALS} intervals with every pool and \
             I/O cell known; there are {n}{}",
            if skipped > 0 {
                format!(" ({skipped} left out for empty cells)")
            } else {
                String::new()
            }
        );
    }
    if y.iter().all(|v| *v == 0.0) {
        anyhow::bail!("{label}: the pool is zero in every interval: there is nothing to calibrate");
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for f in Feature::ALL {
        let a = &amounts[f as usize];
        if a.iter().all(|v| *v == 0.0) {
            dropped.push(f);
            continue;
        }
        let rates: Vec<f64> = a.iter().zip(&dts).map(|(v, dt)| v / dt).collect();
        let (lo, hi) = rates
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
        if hi - lo <= 1e-9 * hi {
            anyhow::bail!(
                "{label}: the {} feature ({}, summed over the VMs) is constant at {hi} per \
                 second in every interval used: its cost cannot be told apart from the base \
                 overhead; calibrate on a trace where it varies",
                f.name(),
                f.columns()
            );
        }
        kept.push(f);
    }
    if kept.is_empty() {
        anyhow::bail!(
            "{label}: no VM did any I/O in the intervals used (every {} column is zero): \
             there is nothing to calibrate on",
            Feature::ALL.map(Feature::columns).join(", ")
        );
    }
    // Columns: dt (for β0), then the kept features; each scaled to unit RMS.
    let mut cols: Vec<&[f64]> = vec![&dts];
    cols.extend(kept.iter().map(|f| amounts[*f as usize].as_slice()));
    let rms = |x: &[f64]| (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
    let scale: Vec<f64> = cols.iter().map(|c| rms(c)).collect();
    let ys = rms(&y);
    let p = cols.len();
    let a = DMatrix::from_fn(n, p, |i, j| cols[j][i] / scale[j]);
    let b = DVector::from_iterator(n, y.iter().map(|v| v / ys));
    let sol = nnls::nnls(&a, &b)?;
    let beta: Vec<f64> = (0..p).map(|j| sol.x[j] * ys / scale[j]).collect();
    let sv = a.clone().svd(false, false).singular_values;
    let condition = if sv.min() > 0.0 {
        sv.max() / sv.min()
    } else {
        f64::INFINITY
    };

    let fitted: Vec<f64> = (0..n)
        .map(|i| (0..p).map(|j| beta[j] * cols[j][i]).sum())
        .collect();
    let mean = y.iter().sum::<f64>() / n as f64;
    let rss: f64 = y.iter().zip(&fitted).map(|(a, b)| (a - b).powi(2)).sum();
    let tss: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let (r2, fit_pct) = if tss > 0.0 {
        (1.0 - rss / tss, 100.0 * (1.0 - (rss / tss).sqrt()))
    } else {
        (f64::NAN, f64::NAN)
    };
    let rel_rms = (y
        .iter()
        .zip(&fitted)
        .zip(&dts)
        .map(|((a, b), dt)| ((a - b) / dt * 100.0).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt();
    let status = |b: f64| {
        if b > 0.0 {
            TermStatus::Fitted
        } else {
            TermStatus::AtZero
        }
    };
    let mut at_zero = Vec::new();
    if beta[0] <= 0.0 {
        at_zero.push("base".to_string());
    }
    let features = Feature::ALL
        .iter()
        .map(|&f| {
            let (b, st) = match kept.iter().position(|k| *k == f) {
                Some(j) => (beta[j + 1], status(beta[j + 1])),
                None => (0.0, TermStatus::Dropped),
            };
            if st == TermStatus::AtZero {
                at_zero.push(f.name().to_string());
            }
            FeatureFit {
                feature: f,
                beta: b,
                beta_unit: f.beta_unit(),
                cost: b * f.cost_per(),
                cost_unit: f.cost_unit(),
                status: st,
                total: amounts[f as usize].iter().sum(),
            }
        })
        .collect();
    let total_dt: f64 = dts.iter().sum();
    Ok(Calibration {
        intervals_used: n,
        intervals_skipped: skipped,
        base_cpu_s_per_s: beta[0],
        base_cpu_pct: beta[0] * 100.0,
        base_status: status(beta[0]),
        base_share_pct: beta[0] * total_dt / y.iter().sum::<f64>() * 100.0,
        features,
        r2,
        fit_pct,
        residual_rms_cpu_s: (rss / n as f64).sqrt(),
        residual_rms_pct: rel_rms,
        condition,
        at_zero,
        dropped: dropped.iter().map(|f| f.name().to_string()).collect(),
    })
}
