//! The load average as a filter of the run-queue length, and its inverse.
//!
//! A kernel's load average is an exponential smoothing of the number of runnable tasks x:
//! `z_i = a z_{i−1} + (1 − a) x_i` with `a = exp(−Δ/τ)` for samples Δ apart and time constant
//! τ. A load trace records z; playing it back means running the x that produced it.

/// The smoothing factor `a = exp(−Δ/τ)`.
pub fn smoothing(delta: f64, tau: f64) -> f64 {
    (-delta / tau).exp()
}

/// Applies the load-average filter to run-queue lengths `x`, starting from `z0`.
pub fn forward(x: &[f64], a: f64, z0: f64) -> Vec<f64> {
    let mut z = z0;
    x.iter()
        .map(|&xi| {
            z = a * z + (1.0 - a) * xi;
            z
        })
        .collect()
}

/// The run-queue lengths that produce load averages `z`: `x_i = (z_i − a z_{i−1}) / (1 − a)`,
/// with `z_{−1} = z0`. Not clamped (see [`invert_clamped`]).
pub fn invert(z: &[f64], a: f64, z0: f64) -> Vec<f64> {
    let mut prev = z0;
    z.iter()
        .map(|&zi| {
            let x = (zi - a * prev) / (1.0 - a);
            prev = zi;
            x
        })
        .collect()
}

/// [`invert`] with negative run queues (a trace falling faster than the filter allows, or
/// noise) clamped to 0, for playback. The trace is taken to start in steady state
/// (`z_{−1} = z_0`).
pub fn invert_clamped(z: &[f64], a: f64) -> Vec<f64> {
    let z0 = z.first().copied().unwrap_or(0.0);
    invert(z, a, z0).into_iter().map(|x| x.max(0.0)).collect()
}

/// Linux's 1-minute load average as the kernel computes it: every 5 s (`LOAD_FREQ`), in
/// fixed point with 11 fractional bits, `EXP_1 = 1884` (= 2048·e^(−5/60)); `x` holds the
/// run-queue length at each 5 s update. Returns the averages as the kernel would report them.
pub fn linux_load_1m(x: &[f64], z0: f64) -> Vec<f64> {
    const FSHIFT: u32 = 11;
    const FIXED_1: u64 = 1 << FSHIFT;
    const EXP_1: u64 = 1884;
    let mut load = (z0 * FIXED_1 as f64).round() as u64;
    x.iter()
        .map(|&xi| {
            let active = (xi.max(0.0) * FIXED_1 as f64).round() as u64;
            // calc_load(): load·exp + active·(1 − exp), rounded up when rising.
            let mut newload = load * EXP_1 + active * (FIXED_1 - EXP_1);
            if active >= load {
                newload += FIXED_1 - 1;
            }
            load = newload / FIXED_1;
            load as f64 / FIXED_1 as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversion_recovers_a_known_run_queue() {
        let a = smoothing(1.0, 5.0);
        let x = [0.0, 1.0, 1.0, 2.0, 0.5, 0.0, 3.0];
        let z = forward(&x, a, 0.0);
        let back = invert(&z, a, 0.0);
        for (p, q) in x.iter().zip(&back) {
            assert!((p - q).abs() < 1e-12, "{p} {q}");
        }
    }

    #[test]
    fn linux_filter_matches_the_kernel_constants() {
        // One runnable task forever: 1 − e^(−t/60) after t seconds, to fixed-point precision.
        let z = linux_load_1m(&[1.0; 12], 0.0);
        let want = 1.0 - (-60.0f64 / 60.0).exp();
        assert!((z[11] - want).abs() < 3e-3, "{} vs {want}", z[11]);
        // The kernel's constant is 2048·e^(−5/60), rounded.
        assert_eq!((2048.0 * smoothing(5.0, 60.0)).round(), 1884.0);
    }
}
