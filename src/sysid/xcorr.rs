//! Cross-covariance and cross-correlation of two evenly sampled series.
//!
//! Convention (design brief): biased estimator (divide by N for every lag), series as given
//! (the caller detrends), and a positive lag k means the first series leads the second:
//! `c_uy(k) = (1/N) Σ_t u(t) y(t+k)`. The correlation divides by the biased standard deviations.

use realfft::RealFftPlanner;
use serde::Serialize;

/// Two-sided 99% bound for the correlation of independent white series: ±2.58/√N.
pub fn white_bound(n: usize) -> f64 {
    2.58 / (n as f64).sqrt()
}

/// Above this many lags (each side) the FFT is cheaper than the direct sums.
const FFT_FROM_LAGS: usize = 32;

/// `Σ a_i b_i` with eight independent accumulators (vectorises, and rounds less than one).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

/// [`dot`] with AVX2 intrinsics: lanes 0–3 and 4–7 of the eight accumulators in two
/// registers, reduced in the same order as the portable code (no FMA), so results are
/// bit-identical on every machine. (The compiler does not find this for the portable loop.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[f64], b: &[f64]) -> f64 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lo = _mm256_setzero_pd();
    let mut hi = _mm256_setzero_pd();
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        // SAFETY: x and y hold 8 f64 each, and loadu has no alignment requirement.
        unsafe {
            let (x0, x1) = (
                _mm256_loadu_pd(x.as_ptr()),
                _mm256_loadu_pd(x.as_ptr().add(4)),
            );
            let (y0, y1) = (
                _mm256_loadu_pd(y.as_ptr()),
                _mm256_loadu_pd(y.as_ptr().add(4)),
            );
            lo = _mm256_add_pd(lo, _mm256_mul_pd(x0, y0));
            hi = _mm256_add_pd(hi, _mm256_mul_pd(x1, y1));
        }
    }
    let mut c = [0.0f64; 4];
    // SAFETY: c holds 4 f64.
    unsafe { _mm256_storeu_pd(c.as_mut_ptr(), _mm256_add_pd(lo, hi)) };
    let tail: f64 = a[n / 8 * 8..]
        .iter()
        .zip(&b[n / 8 * 8..])
        .fold(0.0, |t, (x, y)| t + x * y);
    ((c[0] + c[1]) + (c[2] + c[3])) + tail
}

#[inline(always)]
fn dot_body(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for i in chunks * 8..n {
        tail += a[i] * b[i];
    }
    // The AVX2 version relies on this order.
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Adds the unnormalised lagged products `Σ_t u(t) y(t+k)` for k = −L..=L into `out`
/// (length 2L+1, index L+k), by direct sums.
pub fn lagged_products_direct(u: &[f64], y: &[f64], max_lag: usize, out: &mut [f64]) {
    let n = u.len().min(y.len());
    for k in 0..=max_lag.min(n.saturating_sub(1)) {
        out[max_lag + k] += dot(&u[..n - k], &y[k..n]);
        if k > 0 {
            out[max_lag - k] += dot(&u[k..n], &y[..n - k]);
        }
    }
}

/// As [`lagged_products_direct`], by FFT in blocks: O(N log L).
///
/// Overlap-save: u is cut into blocks of B samples, each correlated with the window of y that
/// its lags reach (B + 2L samples) by a circular correlation of size F ≥ B + 2L, so nothing
/// wraps. The block spectra `conj(U_b) Y_b` are summed and inverted once at the end, so a
/// block costs two forward transforms of size F ≈ 8(L+1) instead of one huge transform of the
/// whole series: 10⁶ samples and 1000 lags take a few milliseconds.
pub fn lagged_products_fft(u: &[f64], y: &[f64], max_lag: usize, out: &mut [f64]) {
    let n = u.len().min(y.len());
    if n == 0 {
        return;
    }
    let l = max_lag.min(n - 1);
    let size = (8 * (l + 1)).max(256).next_power_of_two();
    let block = size - 2 * l;
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(size);
    let inv = planner.plan_fft_inverse(size);
    let mut a = fwd.make_input_vec();
    let mut w = fwd.make_input_vec();
    let mut fa = fwd.make_output_vec();
    let mut fw = fwd.make_output_vec();
    let mut acc = fwd.make_output_vec();
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        a.fill(0.0);
        a[..end - start].copy_from_slice(&u[start..end]);
        // w(j) = y(start − l + j) for j < (end − start) + 2l, zero outside y.
        w.fill(0.0);
        let lo = start.saturating_sub(l);
        let hi = (end + l).min(n);
        let offset = lo + l - start;
        w[offset..offset + (hi - lo)].copy_from_slice(&y[lo..hi]);
        // Lengths match the plan by construction, so these cannot fail.
        fwd.process(&mut a, &mut fa)
            .expect("fft sizes from the plan");
        fwd.process(&mut w, &mut fw)
            .expect("fft sizes from the plan");
        for ((s, x), z) in acc.iter_mut().zip(&fa).zip(&fw) {
            *s += x.conj() * z;
        }
        start = end;
    }
    // The inverse of a Hermitian spectrum needs exactly real first and last bins.
    if let Some(first) = acc.first_mut() {
        first.im = 0.0;
    }
    if let Some(last) = acc.last_mut() {
        last.im = 0.0;
    }
    let mut c = inv.make_output_vec();
    inv.process(&mut acc, &mut c)
        .expect("fft sizes from the plan");
    let scale = 1.0 / size as f64;
    // c(m) holds lag m − l.
    for m in 0..=2 * l {
        out[max_lag + m - l] += c[m] * scale;
    }
}

/// Adds lagged products by whichever method is cheaper for `max_lag`.
pub fn lagged_products(u: &[f64], y: &[f64], max_lag: usize, out: &mut [f64]) {
    if max_lag > FFT_FROM_LAGS {
        lagged_products_fft(u, y, max_lag, out);
    } else {
        lagged_products_direct(u, y, max_lag, out);
    }
}

/// Cross-covariance and cross-correlation for lags −L..=L.
#[derive(Debug, Clone, Serialize)]
pub struct CrossCorrelation {
    /// The lags, −L..=L.
    pub lags: Vec<i64>,
    /// Biased cross-covariance at each lag.
    pub xcov: Vec<f64>,
    /// Cross-correlation at each lag.
    pub xcorr: Vec<f64>,
    /// 99% bound for white, independent series (±2.58/√N).
    pub bound: f64,
    /// Samples used.
    pub n: usize,
}

/// Why a correlation cannot be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum XcorrError {
    /// A series has zero variance, so its correlation is undefined.
    #[error("column {0} is constant over the samples used: its correlation is undefined")]
    Constant(String),
    /// Fewer samples than lags.
    #[error("{n} samples are too few for {lags} lags: need at least {need}")]
    TooShort {
        /// Samples available.
        n: usize,
        /// Lags asked for.
        lags: usize,
        /// Samples needed.
        need: usize,
    },
}

/// Cross-correlation of `u` and `y` over one or more segments (lags never cross a segment
/// boundary; N is the total sample count). `names` label the series in errors.
pub fn cross_correlation(
    segments: &[(&[f64], &[f64])],
    max_lag: usize,
    names: (&str, &str),
) -> Result<CrossCorrelation, XcorrError> {
    let n: usize = segments.iter().map(|(u, y)| u.len().min(y.len())).sum();
    if n <= max_lag {
        return Err(XcorrError::TooShort {
            n,
            lags: max_lag,
            need: max_lag.saturating_add(1),
        });
    }
    let mut sums = vec![0.0; 2 * max_lag + 1];
    let (mut uu, mut yy) = (0.0, 0.0);
    for (u, y) in segments {
        lagged_products(u, y, max_lag, &mut sums);
        uu += dot(u, u);
        yy += dot(y, y);
    }
    let nf = n as f64;
    let (cu, cy) = (uu / nf, yy / nf);
    if cu <= 0.0 {
        return Err(XcorrError::Constant(names.0.into()));
    }
    if cy <= 0.0 {
        return Err(XcorrError::Constant(names.1.into()));
    }
    let norm = (cu * cy).sqrt();
    let xcov: Vec<f64> = sums.iter().map(|s| s / nf).collect();
    Ok(CrossCorrelation {
        lags: (-(max_lag as i64)..=max_lag as i64).collect(),
        xcorr: xcov.iter().map(|c| c / norm).collect(),
        xcov,
        bound: white_bound(n),
        n,
    })
}

/// Peak and significant lags of a correlation, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Lag of the largest |correlation|.
    pub peak_lag: i64,
    /// Correlation at that lag.
    pub peak_value: f64,
    /// The 99% bound used.
    pub bound: f64,
    /// Lags whose |correlation| exceeds the bound.
    pub significant_lags: Vec<i64>,
    /// Samples used.
    pub n: usize,
}

impl CrossCorrelation {
    /// Peak and significant lags (`skip_zero` for autocorrelation, where lag 0 is always 1).
    pub fn summary(&self, skip_zero: bool) -> Summary {
        let mut best = (0i64, 0.0f64);
        let mut significant = Vec::new();
        for (&lag, &r) in self.lags.iter().zip(&self.xcorr) {
            if skip_zero && lag == 0 {
                continue;
            }
            if r.abs() > best.1.abs() || significant.is_empty() && best.1 == 0.0 {
                best = (lag, r);
            }
            if r.abs() > self.bound {
                significant.push(lag);
            }
        }
        Summary {
            peak_lag: best.0,
            peak_value: best.1,
            bound: self.bound,
            significant_lags: significant,
            n: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_is_the_same_on_every_code_path() {
        let mut seed = 7;
        for n in [0, 1, 7, 8, 9, 31, 1000, 1003] {
            let a: Vec<f64> = (0..n).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f64> = (0..n).map(|_| lcg(&mut seed)).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - want).abs() < 1e-12 * n.max(1) as f64,
                "n = {n}"
            );
            // Bit-identical, so results do not depend on the machine.
            assert_eq!(dot(&a, &b).to_bits(), dot_body(&a, &b).to_bits(), "n = {n}");
        }
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn fft_equals_direct() {
        let mut s = 7;
        let u: Vec<f64> = (0..3001).map(|_| lcg(&mut s)).collect();
        let y: Vec<f64> = (0..3001).map(|_| lcg(&mut s) + 0.3).collect();
        for lags in [0, 1, 5, 200, 3000] {
            let (mut a, mut b) = (vec![0.0; 2 * lags + 1], vec![0.0; 2 * lags + 1]);
            lagged_products_direct(&u, &y, lags, &mut a);
            lagged_products_fft(&u, &y, lags, &mut b);
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (x, z) in a.iter().zip(&b) {
                assert!((x - z).abs() <= 1e-12 * scale, "{lags}: {x} vs {z}");
            }
        }
    }

    #[test]
    fn errors() {
        // Series arrive detrended: a constant column is all zeros by then.
        let c = [0.0; 10];
        let v: Vec<f64> = (0..10).map(f64::from).collect();
        let e = cross_correlation(&[(&v, &c)], 3, ("u", "y")).unwrap_err();
        assert_eq!(e, XcorrError::Constant("y".into()));
        let e = cross_correlation(&[(&v, &v)], 10, ("u", "y")).unwrap_err();
        assert!(e.to_string().contains("10 samples are too few for 10 lags"));
    }
}
