//! Basic statistics and detrending of evenly sampled series.

use serde::Serialize;

/// How a series is detrended before analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Detrend {
    /// Leave the series as it is.
    None,
    /// Remove the mean.
    #[default]
    Mean,
    /// Remove the least-squares straight line over the sample index.
    Linear,
}

/// Mean of `x` (0 for an empty slice).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    // Compensated (Kahan) sums, since long series of large counters lose digits otherwise;
    // four independent lanes so that the dependent additions overlap.
    let mut sum = [0.0f64; 4];
    let mut c = [0.0f64; 4];
    let chunks = x.chunks_exact(4);
    let rest = chunks.remainder();
    for v in chunks {
        for l in 0..4 {
            let y = v[l] - c[l];
            let t = sum[l] + y;
            c[l] = (t - sum[l]) - y;
            sum[l] = t;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        let y = v - c[l];
        let t = sum[l] + y;
        c[l] = (t - sum[l]) - y;
        sum[l] = t;
    }
    // The lanes' compensations are folded back before the lanes are added.
    let lanes: [f64; 4] = std::array::from_fn(|l| sum[l] - c[l]);
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) / x.len() as f64
}

/// Biased (divide by N) variance about the mean.
pub fn variance(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len().max(1) as f64
}

/// Removes the trend in place and returns what was removed: `(offset, slope per sample)`.
pub fn detrend(x: &mut [f64], how: Detrend) -> (f64, f64) {
    match how {
        Detrend::None => (0.0, 0.0),
        Detrend::Mean => {
            let m = mean(x);
            x.iter_mut().for_each(|v| *v -= m);
            (m, 0.0)
        }
        Detrend::Linear => {
            let n = x.len() as f64;
            if x.len() < 2 {
                return detrend(x, Detrend::Mean);
            }
            // Centred index keeps the 2×2 normal equations diagonal (exact, no cancellation).
            let tc = (n - 1.0) / 2.0;
            let m = mean(x);
            let (mut sxt, mut stt) = (0.0, 0.0);
            for (i, v) in x.iter().enumerate() {
                let t = i as f64 - tc;
                sxt += t * (v - m);
                stt += t * t;
            }
            let slope = sxt / stt;
            for (i, v) in x.iter_mut().enumerate() {
                *v -= m + slope * (i as f64 - tc);
            }
            (m - slope * tc, slope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_detrend_removes_a_line_exactly() {
        let mut x: Vec<f64> = (0..101).map(|i| 3.0 + 0.25 * i as f64).collect();
        let (a, b) = detrend(&mut x, Detrend::Linear);
        assert!(
            (a - 3.0).abs() < 1e-12 && (b - 0.25).abs() < 1e-14,
            "{a} {b}"
        );
        assert!(x.iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn mean_of_large_offsets_keeps_digits() {
        let x: Vec<f64> = (0..1_000_000).map(|i| 1e12 + (i % 2) as f64).collect();
        assert_eq!(mean(&x), 1e12 + 0.5);
        assert!((variance(&x) - 0.25).abs() < 1e-9);
    }
}
