//! Splitting one interval's shared pool among VMs: proportional shares of one I/O feature,
//! the mixed shares of several, and the calibrated split.
//!
//! Every function returns fractions that are ≥ 0 and, with what is left unattributed, sum to
//! 1 up to rounding (a few ulps per VM); VMs with zero weight get exactly zero.

/// Shares of non-negative `weights` (each ÷ their sum), or `None` when no weight is positive.
///
/// The weights are divided by the largest first, so the sum cannot overflow whatever their
/// magnitude (bytes per second and packets per second are both accepted as they are).
pub fn proportional(weights: &[f64]) -> Option<Vec<f64>> {
    let max = weights.iter().copied().fold(0.0f64, f64::max);
    if max.is_nan() || max <= 0.0 {
        return None;
    }
    let scaled: Vec<f64> = weights.iter().map(|w| w.max(0.0) / max).collect();
    let sum: f64 = scaled.iter().sum();
    Some(scaled.iter().map(|w| w / sum).collect())
}

/// Mixed shares: network and disk count equally, and within the network packets and bytes
/// count equally; a kind (or a feature) with no I/O in the interval is left out of its mean.
///
/// `packets`, `bytes` and `disk` hold each VM's amount of that feature. `None` when no VM
/// did any of them.
pub fn mixed(packets: &[f64], bytes: &[f64], disk: &[f64]) -> Option<Vec<f64>> {
    let net = mean_of(&[proportional(packets), proportional(bytes)]);
    mean_of(&[net, proportional(disk)])
}

/// The element-wise mean of the share vectors that exist; `None` when none does.
fn mean_of(parts: &[Option<Vec<f64>>]) -> Option<Vec<f64>> {
    let present: Vec<&Vec<f64>> = parts.iter().flatten().collect();
    let first = present.first()?;
    let k = present.len() as f64;
    Some(
        (0..first.len())
            .map(|i| present.iter().map(|p| p[i]).sum::<f64>() / k)
            .collect(),
    )
}

/// Fractions of an interval's pool: one per VM and the unattributed rest, in that order.
///
/// `base` is the part of the pool that no VM caused (the calibrated base overhead for the
/// interval, 0 without calibration): `min(base, pool)` stays unattributed, and the rest is
/// split by `shares` (all of it stays unattributed when `shares` is `None`). When the pool is
/// 0 the fractions say how a pool would have been split.
pub fn fractions(pool: f64, base: f64, shares: Option<&[f64]>, vms: usize) -> (Vec<f64>, f64) {
    let unattributed = if pool > 0.0 {
        (base.max(0.0) / pool).min(1.0)
    } else {
        0.0
    };
    match shares {
        Some(s) => {
            let rest = 1.0 - unattributed;
            (s.iter().map(|f| f * rest).collect(), unattributed)
        }
        None => (vec![0.0; vms], 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_by_hand() {
        assert_eq!(proportional(&[1.0, 3.0, 0.0]), Some(vec![0.25, 0.75, 0.0]));
        assert_eq!(proportional(&[0.0, 0.0]), None);
        assert_eq!(proportional(&[]), None);
        // Magnitudes whose sum would overflow.
        assert_eq!(proportional(&[f64::MAX, f64::MAX]), Some(vec![0.5, 0.5]));
    }

    #[test]
    fn mixed_by_hand() {
        // Network: packets 1:3 → (¼, ¾), bytes 1:1 → (½, ½), mean (⅜, ⅝); disk only VM 0 →
        // (1, 0); mixed = mean of network and disk = (11/16, 5/16).
        let m = mixed(&[1.0, 3.0], &[5.0, 5.0], &[7.0, 0.0]).expect("some I/O");
        assert_eq!(m, vec![11.0 / 16.0, 5.0 / 16.0]);
        // No disk: the network alone decides.
        let n = mixed(&[1.0, 3.0], &[1.0, 3.0], &[0.0, 0.0]).expect("some I/O");
        assert_eq!(n, vec![0.25, 0.75]);
        assert_eq!(mixed(&[0.0], &[0.0], &[0.0]), None);
    }

    #[test]
    fn base_stays_unattributed() {
        let (f, u) = fractions(4.0, 1.0, Some(&[0.5, 0.5]), 2);
        assert_eq!((f, u), (vec![0.375, 0.375], 0.25));
        // A base larger than the pool takes all of it.
        let (f, u) = fractions(1.0, 3.0, Some(&[1.0]), 1);
        assert_eq!((f, u), (vec![0.0], 1.0));
        let (f, u) = fractions(1.0, 0.0, None, 2);
        assert_eq!((f, u), (vec![0.0, 0.0], 1.0));
    }
}
