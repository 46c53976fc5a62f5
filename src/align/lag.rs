//! The lag between two series on one grid, to a fraction of a sample: the peak of their
//! cross-correlation, refined by the parabola through the peak and its two neighbours, with
//! a standard error from the spread of the same estimate over 8 consecutive blocks (batch
//! means: no assumption about the shape of the peak or the noise).
//!
//! Sign: the estimate is the number of seconds to add to the second series' times to line it
//! up with the first, the sign of `--offset` and of `clock_offset_s`. If the second series
//! shows an event `d` seconds after the first, the estimate is `−d`.

use anyhow::bail;
use serde::Serialize;

use crate::sysid::xcorr::{cross_correlation, white_bound};

/// Blocks used for the standard error.
pub const BLOCKS: usize = 8;

/// What `--lag-from` found.
#[derive(Debug, Clone, Serialize)]
pub struct LagEstimate {
    /// Seconds to add to the second series' times (the correction).
    pub offset_s: f64,
    /// Standard error of `offset_s` from the block estimates (`None` with fewer than two).
    pub stderr_s: Option<f64>,
    /// Peak correlation.
    pub peak_r: f64,
    /// 99% bound of a correlation between independent white series at this length.
    pub bound: f64,
    /// Lag of the peak in grid samples, refined (positive: the first series leads).
    pub lag_samples: f64,
    /// Grid period, seconds.
    pub period_s: f64,
    /// Samples used (both values present).
    pub samples: usize,
    /// Largest lag searched, samples, each side.
    pub max_lag: usize,
    /// Blocks that gave an estimate.
    pub blocks: usize,
}

/// Runs of samples where both series have values, means removed.
fn segments(u: &[f64], y: &[f64]) -> Vec<(Vec<f64>, Vec<f64>)> {
    let n = u.len().min(y.len());
    let ok = |i: usize| u[i].is_finite() && y[i].is_finite();
    let (mut su, mut sy, mut m) = (0.0, 0.0, 0usize);
    for i in (0..n).filter(|&i| ok(i)) {
        su += u[i];
        sy += y[i];
        m += 1;
    }
    if m == 0 {
        return Vec::new();
    }
    let (mu, my) = (su / m as f64, sy / m as f64);
    let mut segs = Vec::new();
    let mut i = 0;
    while i < n {
        if !ok(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && ok(i) {
            i += 1;
        }
        segs.push((
            u[start..i].iter().map(|v| v - mu).collect(),
            y[start..i].iter().map(|v| v - my).collect(),
        ));
    }
    segs
}

/// Largest correlation within lags `lo..=hi` of `c` (index L + k): (lag refined by a
/// parabola, peak value, integer lag). The refinement needs both neighbours: at ±L the
/// integer lag is returned as is.
fn refined_peak(c: &[f64], max_lag: usize, lo: i64, hi: i64) -> Option<(f64, f64, i64)> {
    let l = max_lag as i64;
    let (mut best, mut at) = (f64::NEG_INFINITY, 0i64);
    for k in lo.max(-l)..=hi.min(l) {
        let v = c[(l + k) as usize];
        if v > best {
            best = v;
            at = k;
        }
    }
    if !best.is_finite() {
        return None;
    }
    if at <= -l || at >= l {
        return Some((at as f64, best, at));
    }
    let i = (l + at) as usize;
    let (a, b, d) = (c[i - 1], c[i], c[i + 1]);
    let curvature = a - 2.0 * b + d;
    let delta = if curvature < 0.0 {
        (0.5 * (a - d) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    Some((at as f64 + delta, b, at))
}

/// Estimates the lag of `y` behind `u` (both on one grid of `period` seconds), searching
/// `max_lag` samples each side. `names` label the series in errors.
pub fn estimate(
    u: &[f64],
    y: &[f64],
    period: f64,
    max_lag: usize,
    names: (&str, &str),
) -> anyhow::Result<LagEstimate> {
    let segs = segments(u, y);
    let pairs: Vec<(&[f64], &[f64])> = segs
        .iter()
        .map(|(a, b)| (a.as_slice(), b.as_slice()))
        .collect();
    let n: usize = segs.iter().map(|s| s.0.len()).sum();
    let cc = cross_correlation(&pairs, max_lag, names)?;
    let l = max_lag as i64;
    let Some((lag, peak, k)) = refined_peak(&cc.xcorr, max_lag, -l, l) else {
        bail!("{} and {} have no finite correlation", names.0, names.1);
    };
    if peak <= cc.bound {
        bail!(
            "{} and {} are not correlated enough to estimate a lag: peak r = {peak:.4} at lag \
             {k}, not above the 99% bound {:.4} of independent series",
            names.0,
            names.1,
            cc.bound
        );
    }
    if k.abs() == l {
        bail!(
            "the correlation of {} and {} peaks at the edge of the lags searched (±{max_lag} \
             samples): give a larger --max-lag",
            names.0,
            names.1
        );
    }
    // Batch means over consecutive blocks of the grid, each searched near the overall peak.
    let len = u.len().min(y.len());
    let mut lags = Vec::new();
    let reach = (k.unsigned_abs() as usize + 2).min(max_lag);
    for b in 0..BLOCKS {
        let (s, e) = (b * len / BLOCKS, (b + 1) * len / BLOCKS);
        let segs = segments(&u[s..e], &y[s..e]);
        let pairs: Vec<(&[f64], &[f64])> = segs
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        let Ok(c) = cross_correlation(&pairs, reach, names) else {
            continue;
        };
        if let Some((lb, _, kb)) = refined_peak(&c.xcorr, reach, k - 1, k + 1)
            && kb.abs() < reach as i64
        {
            lags.push(lb);
        }
    }
    let stderr = (lags.len() >= 2).then(|| {
        let m = lags.iter().sum::<f64>() / lags.len() as f64;
        let var = lags.iter().map(|l| (l - m).powi(2)).sum::<f64>() / (lags.len() - 1) as f64;
        (var / lags.len() as f64).sqrt() * period
    });
    Ok(LagEstimate {
        offset_s: -lag * period,
        stderr_s: stderr,
        peak_r: peak,
        bound: white_bound(n),
        lag_samples: lag,
        period_s: period,
        samples: n,
        max_lag,
        blocks: lags.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth random signal at continuous time t (sum of sinusoids of 4 to 40 samples).
    fn signal(t: f64) -> f64 {
        (0..12)
            .map(|i| {
                let f = 1.0 / (4.0 + 3.3 * i as f64);
                (std::f64::consts::TAU * f * t + i as f64 * 1.7).sin() / (1.0 + i as f64 * 0.2)
            })
            .sum()
    }

    #[test]
    fn recovers_a_fractional_lag_with_its_sign() {
        for d in [0.37, -2.61, 5.0, 0.0] {
            // y shows each event d samples after u.
            let u: Vec<f64> = (0..4000).map(|i| signal(i as f64)).collect();
            let y: Vec<f64> = (0..4000).map(|i| signal(i as f64 - d)).collect();
            let e = estimate(&u, &y, 0.5, 20, ("u", "y")).expect("estimate");
            assert!((e.lag_samples - d).abs() < 0.1, "{d}: {e:?}");
            assert!((e.offset_s + d * 0.5).abs() < 0.05, "{d}: {e:?}");
            assert!(e.peak_r > 0.9);
        }
    }

    #[test]
    fn uncorrelated_series_are_refused() {
        let mut s = 99u64;
        let mut noise = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let u: Vec<f64> = (0..2000).map(|_| noise()).collect();
        let y: Vec<f64> = (0..2000).map(|_| noise()).collect();
        let e = estimate(&u, &y, 1.0, 10, ("u", "y")).expect_err("no lag in noise");
        assert!(e.to_string().contains("not correlated enough"), "{e}");
    }
}
