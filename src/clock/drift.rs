//! Clock drift: a robust straight line through offsets over time (Theil–Sen).
//!
//! The median of pairwise slopes ignores the few exchanges a busy host delays (up to 29% of
//! outliers), where least squares would follow them. Its confidence interval is Sen's (1968),
//! from the distribution of Kendall's τ: no assumption about the noise beyond independence.

use serde::Serialize;

/// A fitted drift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    /// Slope of offset over time, parts per million (µs of offset gained per second).
    pub ppm: f64,
    /// Lower end of the 95% confidence interval, ppm.
    pub ppm_low: f64,
    /// Upper end of the 95% confidence interval, ppm.
    pub ppm_high: f64,
    /// The line's offset at time `t_ref`, seconds.
    pub offset_at_ref: f64,
    /// Reference time of the line (the first point's time), seconds.
    pub t_ref: f64,
    /// Points used (after thinning: at most [`MAX_POINTS`]).
    pub points: usize,
}

/// Points beyond which every k-th is taken (the pairwise slopes grow as n²).
pub const MAX_POINTS: usize = 2000;

/// Theil–Sen line through `(t, offset)` points (seconds); `None` with fewer than 3 points or
/// no spread in time.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<Drift> {
    let step = points.len().div_ceil(MAX_POINTS).max(1);
    let pts: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    let n = pts.len();
    if n < 3 {
        return None;
    }
    let t_ref = pts[0].0;
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dt = pts[j].0 - pts[i].0;
            if dt != 0.0 {
                slopes.push((pts[j].1 - pts[i].1) / dt);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let m = slopes.len();
    let median = |v: &[f64]| {
        let k = v.len();
        if k % 2 == 1 {
            v[k / 2]
        } else {
            (v[k / 2 - 1] + v[k / 2]) / 2.0
        }
    };
    let slope = median(&slopes);
    // Sen: C = z·sqrt(var S), var S = n(n−1)(2n+5)/18; the interval is the slopes of rank
    // (m − C)/2 and (m + C)/2 + 1 (1-based).
    let nf = n as f64;
    let c = 1.959_963_984_540_054 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let lo = (((m as f64 - c) / 2.0).round() as isize - 1).clamp(0, m as isize - 1) as usize;
    let hi = (((m as f64 + c) / 2.0).round() as isize).clamp(0, m as isize - 1) as usize;
    let mut residuals: Vec<f64> = pts.iter().map(|(t, o)| o - slope * (t - t_ref)).collect();
    residuals.sort_by(f64::total_cmp);
    Some(Drift {
        ppm: slope * 1e6,
        ppm_low: slopes[lo] * 1e6,
        ppm_high: slopes[hi] * 1e6,
        offset_at_ref: median(&residuals),
        t_ref,
        points: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_outliers_is_recovered() {
        // 100 ppm and 2.5 s, with every tenth point delayed by 5 ms.
        let pts: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                let t = 1000.0 + i as f64 * 0.5;
                let bump = if i % 10 == 3 { 5e-3 } else { 0.0 };
                let wiggle = ((i * 7919 % 13) as f64 - 6.0) * 1e-6;
                (t, 2.5 + 100e-6 * (t - 1000.0) + bump + wiggle)
            })
            .collect();
        let d = theil_sen(&pts).expect("fit");
        assert!((d.ppm - 100.0).abs() < 0.5, "{d:?}");
        assert!(d.ppm_low <= d.ppm && d.ppm <= d.ppm_high, "{d:?}");
        assert!(d.ppm_low < 100.0 && 100.0 < d.ppm_high, "{d:?}");
        assert!((d.offset_at_ref - 2.5).abs() < 1e-5, "{d:?}");
    }

    #[test]
    fn too_few_points_give_no_drift() {
        assert!(theil_sen(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(theil_sen(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
