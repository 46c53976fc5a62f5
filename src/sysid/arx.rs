//! ARX models: `A(q) y(t) = Σ_i B_i(q) u_i(t − nk_i) + e(t)`, in the MATLAB System
//! Identification Toolbox form.
//!
//! `A = 1 + a1 q⁻¹ + … + a_na q⁻ⁿᵃ`, `B_i = b_i1 + … + b_i,nb q⁻⁽ⁿᵇ⁻¹⁾`. The regression form of
//! the original experiment, `y(t) = α1 y(t−1) + … + β1 u(t−nk) + …`, has α = −a and β = b;
//! both are reported. Rows run from `t0 = max(na, max_i(nk_i + nb_i − 1))`, with no intercept
//! (the data are detrended first), and the least squares go through the block QR of
//! [`crate::sysid::lsq`].

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use nalgebra::DVector;

use super::lsq::{
    BlockQr, LagBlock, LsqError, Solution, lagged_combination, lagged_combination_into,
    lagged_gram, multi_lag_dots,
};
use super::stats;

/// Serialises a non-finite float as `null` and reads `null` back as NaN: JSON has no NaN or
/// infinity, and a perfect fit (V = 0, ln V = −∞) or a diverging simulation must still
/// round-trip through the model file.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Orders of a (MISO) ARX model: `na` poles, and per input `nb` zeros and `nk` delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// Number of poles (order of A).
    pub na: usize,
    /// Number of B coefficients per input.
    pub nb: Vec<usize>,
    /// Delay in samples per input.
    pub nk: Vec<usize>,
}

impl Orders {
    /// Number of parameters d = na + Σ nb.
    pub fn params(&self) -> usize {
        self.nb.iter().fold(self.na, |s, b| s.saturating_add(*b))
    }

    /// First regression row: `max(na, max_i(nk_i + nb_i − 1))`.
    pub fn t0(&self) -> usize {
        self.nb
            .iter()
            .zip(&self.nk)
            // An input with no B coefficients has no delay to wait for (as in MATLAB).
            .filter(|(b, _)| **b > 0)
            .map(|(b, k)| k.saturating_add(*b).saturating_sub(1))
            .fold(self.na, usize::max)
    }

    /// Fills `phi` with the regressors of row `t`: −y(t−1)…−y(t−na), then each input's lags.
    pub fn regressors(&self, y: &[f64], us: &[&[f64]], t: usize, phi: &mut [f64]) {
        let mut j = 0;
        for i in 1..=self.na {
            phi[j] = -y[t - i];
            j += 1;
        }
        for ((u, &nb), &nk) in us.iter().zip(&self.nb).zip(&self.nk) {
            for l in 0..nb {
                phi[j] = u[t - nk - l];
                j += 1;
            }
        }
    }
}

impl Orders {
    /// `(series, lag, coefficient)` of each regressor for `theta` in regression order
    /// (series 0 is y, i+1 is input i), the regressors' signs folded into the coefficients:
    /// ŷ(t) = Σ coef · x_series(t − lag), for [`lagged_combination`].
    pub fn terms(&self, theta: &[f64]) -> Vec<(usize, usize, f64)> {
        let mut out: Vec<(usize, usize, f64)> =
            (1..=self.na).map(|i| (0, i, -theta[i - 1])).collect();
        let mut j = self.na;
        for (i, (&nb, &nk)) in self.nb.iter().zip(&self.nk).enumerate() {
            out.extend((0..nb).map(|l| (i + 1, nk + l, theta[j + l])));
            j += nb;
        }
        out
    }
}

/// Information criteria of a fit (N = rows used, d = parameters, V = RSS/N).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Criteria {
    /// Loss V = RSS / N.
    #[serde(with = "nan_as_null")]
    pub loss: f64,
    /// Final prediction error V (1 + d/N) / (1 − d/N).
    #[serde(with = "nan_as_null")]
    pub fpe: f64,
    /// Normalised AIC: ln V + 2d/N.
    #[serde(with = "nan_as_null")]
    pub naic: f64,
    /// AIC: N ln V + 2d + N (ln 2π + 1).
    #[serde(with = "nan_as_null")]
    pub aic: f64,
    /// BIC: N ln V + N (ln 2π + 1) + d ln N.
    #[serde(with = "nan_as_null")]
    pub bic: f64,
    /// MDL-style criterion V (1 + d ln N / N).
    #[serde(with = "nan_as_null")]
    pub mdl: f64,
}

impl Criteria {
    /// The criteria for residual sum of squares `rss` over `n` rows with `d` parameters.
    pub fn new(rss: f64, n: usize, d: usize) -> Self {
        let (nf, df) = (n as f64, d as f64);
        let v = rss / nf;
        let c = nf * ((2.0 * std::f64::consts::PI).ln() + 1.0);
        Criteria {
            loss: v,
            fpe: v * (1.0 + df / nf) / (1.0 - df / nf),
            naic: v.ln() + 2.0 * df / nf,
            aic: nf * v.ln() + 2.0 * df + c,
            bic: nf * v.ln() + c + df * nf.ln(),
            mdl: v * (1.0 + df * nf.ln() / nf),
        }
    }
}

/// Format version of the model JSON; `reconstruct` refuses newer ones.
pub const MODEL_FORMAT: u32 = 1;

/// A fitted ARX model with everything needed to use and judge it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    /// Model file format version.
    pub format: u32,
    /// vmmon version that fitted it.
    pub vmmon_version: String,
    /// Output column.
    pub output: String,
    /// Input columns.
    pub inputs: Vec<String>,
    /// Orders.
    pub orders: Orders,
    /// A coefficients a1..a_na (MATLAB convention).
    pub a: Vec<f64>,
    /// Standard deviations of a.
    pub a_sd: Vec<f64>,
    /// B coefficients per input, b1..b_nb.
    pub b: Vec<Vec<f64>>,
    /// Standard deviations of b.
    pub b_sd: Vec<Vec<f64>>,
    /// Regression-form coefficients α = −a.
    pub alpha: Vec<f64>,
    /// Sample time in seconds.
    pub sample_time: f64,
    /// Means removed from the output and each input before fitting (added back to outputs).
    pub offsets: Offsets,
    /// Whether `*_total` columns were turned into rates before fitting (`--rates`): the same
    /// is done again when the model is used.
    #[serde(default)]
    pub rates: bool,
    /// Rows used (N − t0) and the first row t0.
    pub n_used: usize,
    /// First regression row.
    pub t0: usize,
    /// Residual sum of squares.
    pub rss: f64,
    /// Noise variance estimate λ = RSS / (N − d).
    #[serde(with = "nan_as_null")]
    pub lambda: f64,
    /// Loss and information criteria.
    pub criteria: Criteria,
    /// Fit % of one-step-ahead prediction on the estimation data.
    #[serde(with = "nan_as_null")]
    pub fit_prediction_pct: f64,
    /// Fit % of free-run simulation on the estimation data (the honest figure).
    #[serde(with = "nan_as_null")]
    pub fit_simulation_pct: f64,
    /// Magnitudes of the poles (roots of z^na + a1 z^(na−1) + … + a_na).
    pub pole_magnitudes: Vec<f64>,
    /// Whether every pole lies strictly inside the unit circle.
    pub stable: bool,
    /// Condition number of the scaled regressor matrix.
    #[serde(with = "nan_as_null")]
    pub condition: f64,
}

/// Means removed before fitting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Offsets {
    /// Output mean.
    pub output: f64,
    /// Input means.
    pub inputs: Vec<f64>,
}

/// Why a model cannot be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArxError {
    /// Orders that need more samples than exist.
    #[error(
        "orders na={na} nb={nb:?} nk={nk:?} need more than {need} samples ({d} parameters after \
         the first {t0} samples); the data have {n}"
    )]
    TooShort {
        /// na.
        na: usize,
        /// nb.
        nb: Vec<usize>,
        /// nk.
        nk: Vec<usize>,
        /// Samples needed.
        need: usize,
        /// Parameters.
        d: usize,
        /// First row.
        t0: usize,
        /// Samples available.
        n: usize,
    },
    /// Inconsistent orders.
    #[error("{0}")]
    Orders(String),
    /// A constant or dependent regressor.
    #[error("{0}")]
    Singular(String),
}

/// Fit % = 100 (1 − ‖y − ŷ‖ / ‖y − mean(y)‖) over the samples where ŷ is defined (not NaN);
/// NaN when y is constant there.
pub fn fit_percent(y: &[f64], yhat: &[f64]) -> f64 {
    let pairs = || y.iter().zip(yhat).filter(|(_, h)| !h.is_nan());
    // Over a constant stretch of y the fit is 0/0: undefined, not a huge negative number
    // made of the mean's rounding error.
    let mut judged = pairs().map(|(a, _)| *a);
    let Some(first) = judged.next() else {
        return f64::NAN;
    };
    if judged.all(|a| a == first) {
        return f64::NAN;
    }
    let (sum, count) = pairs().fold((0.0, 0usize), |(s, c), (a, _)| (s + a, c + 1));
    let m = sum / count.max(1) as f64;
    let (err, var) = pairs().fold((0.0, 0.0), |(e, v), (a, b)| {
        (e + (a - b) * (a - b), v + (a - m) * (a - m))
    });
    100.0 * (1.0 - (err / var).sqrt())
}

/// Poles of `A`: the eigenvalues of its companion matrix.
pub fn poles(a: &[f64]) -> Vec<nalgebra::Complex<f64>> {
    let n = a.len();
    if n == 0 {
        return Vec::new();
    }
    let mut c = DMatrix::zeros(n, n);
    for j in 0..n {
        c[(0, j)] = -a[j];
    }
    for i in 1..n {
        c[(i, i - 1)] = 1.0;
    }
    c.complex_eigenvalues().iter().copied().collect()
}

impl Model {
    /// Checks that the parts of a model read from a file agree with each other.
    pub fn check(&self) -> Result<(), String> {
        let k = self.inputs.len();
        let o = &self.orders;
        if k == 0 {
            return Err("no inputs: a model needs at least one".into());
        }
        if o.nb.len() != k || o.nk.len() != k || self.b.len() != k || self.offsets.inputs.len() != k
        {
            return Err(format!(
                "{k} inputs but {} nb, {} nk, {} B polynomials and {} input offsets",
                o.nb.len(),
                o.nk.len(),
                self.b.len(),
                self.offsets.inputs.len()
            ));
        }
        if self.a.len() != o.na {
            return Err(format!("na = {} but {} a coefficients", o.na, self.a.len()));
        }
        for (i, (b, nb)) in self.b.iter().zip(&o.nb).enumerate() {
            if b.len() != *nb {
                return Err(format!(
                    "input {i}: nb = {nb} but {} b coefficients",
                    b.len()
                ));
            }
        }
        if o.params() == 0 || o.t0() > 1_000_000_000 {
            return Err(format!("orders out of range: {o:?}"));
        }
        Ok(())
    }

    /// One-step-ahead prediction of (detrended) `y` from (detrended) data; NaN before t0.
    pub fn predict(&self, y: &[f64], us: &[&[f64]]) -> Vec<f64> {
        let n = us.iter().map(|u| u.len()).fold(y.len(), usize::min);
        let t0 = self.orders.t0().min(n);
        let mut series = vec![y];
        series.extend(us.iter().copied());
        let mut out = vec![f64::NAN; t0];
        out.extend(lagged_combination(
            &series,
            &self.orders.terms(&self.theta()),
            t0,
            n,
        ));
        out
    }

    /// Free-run simulation from the (detrended) inputs alone. Samples before t0 are taken
    /// from `y_init` where given (the measured output), else 0; NaN is returned before t0.
    pub fn simulate(&self, us: &[&[f64]], y_init: Option<&[f64]>) -> Vec<f64> {
        let n = us.iter().map(|u| u.len()).min().unwrap_or(0);
        let t0 = self.orders.t0().min(n);
        // The inputs' part is a lagged combination done in one vectorised pass; only the
        // autoregression has to run sample by sample.
        let mut series: Vec<&[f64]> = vec![&[]];
        series.extend(us.iter().copied());
        let terms: Vec<(usize, usize, f64)> = self
            .orders
            .terms(&self.theta())
            .into_iter()
            .filter(|term| term.0 > 0)
            .collect();
        let mut ys = vec![0.0; n];
        lagged_combination_into(&series, &terms, t0, &mut ys[t0..]);
        if let Some(init) = y_init {
            ys[..t0].copy_from_slice(&init[..t0]);
        }
        let na = self.orders.na;
        let a_rev: Vec<f64> = self.a.iter().rev().copied().collect();
        for t in t0..n {
            ys[t] -= super::xcorr::dot(&a_rev, &ys[t - na..t]);
        }
        ys[..t0].iter_mut().for_each(|v| *v = f64::NAN);
        ys
    }

    /// Parameters in regression order: a, then each input's b.
    pub fn theta(&self) -> Vec<f64> {
        let mut t = self.a.clone();
        for b in &self.b {
            t.extend_from_slice(b);
        }
        t
    }
}

/// Fits an ARX model of `y` (named `names.0`) on `us` (named `names.1`): data are detrended by
/// their means, which the model keeps.
pub fn fit(
    y: &[f64],
    us: &[&[f64]],
    orders: &Orders,
    names: (&str, &[String]),
    sample_time: f64,
) -> Result<Model, ArxError> {
    if orders.nb.len() != us.len() || orders.nk.len() != us.len() {
        return Err(ArxError::Orders(format!(
            "{} input(s) but {} nb and {} nk value(s): give one per input, or one for all",
            us.len(),
            orders.nb.len(),
            orders.nk.len()
        )));
    }
    let n = us.iter().map(|u| u.len()).fold(y.len(), usize::min);
    let (d, t0) = (orders.params(), orders.t0());
    if d == 0 {
        return Err(ArxError::Orders(
            "the model has no parameters: --poles or --zeros must be at least 1".into(),
        ));
    }
    if names.1.iter().any(|i| i == names.0) {
        return Err(ArxError::Orders(format!(
            "{} is both an input and the output",
            names.0
        )));
    }
    if n <= t0.saturating_add(d) {
        return Err(ArxError::TooShort {
            na: orders.na,
            nb: orders.nb.clone(),
            nk: orders.nk.clone(),
            need: t0.saturating_add(d),
            d,
            t0,
            n,
        });
    }
    let centre = |x: &[f64]| -> (Vec<f64>, f64) {
        let mut v = x[..n].to_vec();
        let (m, _) = stats::detrend(&mut v, stats::Detrend::Mean);
        (v, m)
    };
    let (yc, ym) = centre(y);
    if yc.iter().all(|v| *v == 0.0) {
        return Err(ArxError::Singular(format!(
            "the output {} is constant: there is nothing to model",
            names.0
        )));
    }
    let (ucs, ums): (Vec<Vec<f64>>, Vec<f64>) = us.iter().map(|u| centre(u)).unzip();
    let uref: Vec<&[f64]> = ucs.iter().map(Vec::as_slice).collect();
    for (i, u) in uref.iter().enumerate() {
        if orders.nb[i] > 0 && u.iter().all(|v| *v == 0.0) {
            return Err(ArxError::Singular(format!(
                "input {} is constant: its B coefficients cannot be estimated",
                names.1[i]
            )));
        }
    }
    // Every regressor is a shifted copy of one centred series: scale by its deviation.
    let ysd = stats::variance(&yc).sqrt();
    let mut scale = vec![ysd; orders.na];
    for (u, &nb) in uref.iter().zip(&orders.nb) {
        scale.extend(std::iter::repeat_n(stats::variance(u).sqrt(), nb));
    }
    let sol = match semi_normal(&yc, &uref, orders, &scale, ysd, t0) {
        Some(sol) => sol,
        None => {
            let mut qr = BlockQr::new(d, &scale, ysd);
            let mut phi = vec![0.0; d];
            for t in t0..n {
                orders.regressors(&yc, &uref, t, &mut phi);
                qr.push(&phi, yc[t]);
            }
            qr.solve().map_err(|e| match e {
                LsqError::Singular { column, condition } => ArxError::Singular(format!(
                    "the ARX regression is numerically singular (condition number \
                     {condition:.3e}): {} is constant or a combination of the other regressors",
                    regressor_name(orders, names, column)
                )),
                other => ArxError::Singular(other.to_string()),
            })?
        }
    };
    let na = orders.na;
    let a = sol.theta[..na].to_vec();
    let a_sd = sol.sd[..na].to_vec();
    let (mut b, mut b_sd, mut j) = (Vec::new(), Vec::new(), na);
    for &nb in &orders.nb {
        b.push(sol.theta[j..j + nb].to_vec());
        b_sd.push(sol.sd[j..j + nb].to_vec());
        j += nb;
    }
    let n_used = n - t0;
    let pole_list = poles(&a);
    let pole_magnitudes: Vec<f64> = pole_list.iter().map(|p| p.norm()).collect();
    let mut model = Model {
        format: MODEL_FORMAT,
        vmmon_version: env!("CARGO_PKG_VERSION").into(),
        output: names.0.into(),
        inputs: names.1.to_vec(),
        orders: orders.clone(),
        alpha: a.iter().map(|v| -v).collect(),
        a,
        a_sd,
        b,
        b_sd,
        sample_time,
        offsets: Offsets {
            output: ym,
            inputs: ums,
        },
        rates: false,
        n_used,
        t0,
        rss: sol.rss,
        lambda: sol.rss / (n_used - d) as f64,
        criteria: Criteria::new(sol.rss, n_used, d),
        fit_prediction_pct: f64::NAN,
        fit_simulation_pct: f64::NAN,
        stable: pole_magnitudes.iter().all(|m| *m < 1.0),
        pole_magnitudes,
        condition: sol.condition,
    };
    model.fit_prediction_pct = fit_percent(&yc, &model.predict(&yc, &uref));
    model.fit_simulation_pct = fit_percent(&yc, &model.simulate(&uref, Some(&yc)));
    Ok(model)
}

/// Condition number of the scaled regressors above which the semi-normal equations hand
/// over to the block QR (their error grows with κ², QR's with κ).
const SEMI_NORMAL_MAX_CONDITION: f64 = 1e6;

/// Least squares by the corrected semi-normal equations (Björck): R from the Cholesky factor
/// of the structured Gram of the centred, scaled lagged series (O(N·(na+nb)) work instead of
/// QR's O(N·d²)), θ from RᵀR θ = Φᵀy, then one refinement with the true residuals, which
/// brings the error to QR's level for well-conditioned problems. `None` when the problem is
/// ill-conditioned or singular: the caller then uses the block QR, which also names the
/// column at fault.
fn semi_normal(
    yc: &[f64],
    us: &[&[f64]],
    orders: &Orders,
    scale: &[f64],
    ysd: f64,
    t0: usize,
) -> Option<Solution> {
    let n = us.iter().map(|u| u.len()).fold(yc.len(), usize::min);
    let d = orders.params();
    let mut series: Vec<&[f64]> = vec![yc];
    series.extend(us.iter().copied());
    let mut blocks = Vec::new();
    if orders.na > 0 {
        blocks.push(LagBlock {
            series: 0,
            lo: 1,
            hi: orders.na,
            sign: -1.0,
            scale: ysd,
        });
    }
    let mut j = orders.na;
    for (i, (&nb, &nk)) in orders.nb.iter().zip(&orders.nk).enumerate() {
        if nb > 0 {
            blocks.push(LagBlock {
                series: i + 1,
                lo: nk,
                hi: nk + nb - 1,
                sign: 1.0,
                scale: scale[j],
            });
        }
        j += nb;
    }
    blocks.push(LagBlock {
        series: 0,
        lo: 0,
        hi: 0,
        sign: 1.0,
        scale: ysd,
    });
    let g = lagged_gram(&series, &blocks, t0, n);
    let gpp = g.view((0, 0), (d, d)).into_owned();
    let chol = gpp.clone().cholesky()?;
    let r = chol.l().transpose();
    let sv = r.clone().svd(false, false).singular_values;
    let condition = sv.max() / sv.min();
    // Written so that a NaN condition also hands over to the QR.
    let well_conditioned = condition < SEMI_NORMAL_MAX_CONDITION;
    if !well_conditioned {
        return None;
    }
    // Column j of the scaled regressors is raw_j / scale_j; the scaled output is y / ysd.
    let residuals = |theta: &DVector<f64>| -> Vec<f64> {
        let c: Vec<f64> = (0..d).map(|k| theta[k] / scale[k]).collect();
        let mut r = lagged_combination(&series, &orders.terms(&c), t0, n);
        for (r, y) in r.iter_mut().zip(&yc[t0..n]) {
            *r = y / ysd - *r;
        }
        r
    };
    let b = DVector::from_fn(d, |k, _| g[(k, d)]);
    let mut theta = chol.solve(&b);
    // Refinement: δ from Φᵀr through the same factor.
    let r1 = residuals(&theta);
    let mut phit_r = DVector::zeros(d);
    let mut col = 0;
    for blk in &blocks[..blocks.len() - 1] {
        // Σ_i r1(i) x(t0 + i − lag): lagged products of r1 with the series at k = lag − t0.
        let ks: Vec<isize> = (blk.lo..=blk.hi)
            .map(|lag| lag as isize - t0 as isize)
            .collect();
        for v in multi_lag_dots(&r1, series[blk.series], &ks, 0, n - t0) {
            phit_r[col] = blk.sign / blk.scale * v;
            col += 1;
        }
    }
    theta += chol.solve(&phit_r);
    let r2 = residuals(&theta);
    let rss_scaled = super::xcorr::dot(&r2, &r2);
    let rinv = r.solve_upper_triangular(&DMatrix::identity(d, d))?;
    let lambda_s = rss_scaled / (n - t0).saturating_sub(d).max(1) as f64;
    let mut out_theta = Vec::with_capacity(d);
    let mut sd = Vec::with_capacity(d);
    for k in 0..d {
        let row: f64 = (0..d).map(|m| rinv[(k, m)].powi(2)).sum();
        out_theta.push(theta[k] * ysd / scale[k]);
        sd.push((lambda_s * row).sqrt() * ysd / scale[k]);
    }
    Some(Solution {
        theta: out_theta,
        sd,
        rss: rss_scaled * ysd * ysd,
        n: n - t0,
        condition,
    })
}

/// A readable name for regressor `column`: `y(t-2)` or `cpu_user_pct(t-3)`.
fn regressor_name(orders: &Orders, names: (&str, &[String]), column: usize) -> String {
    if column < orders.na {
        return format!("{}(t-{})", names.0, column + 1);
    }
    let mut j = orders.na;
    for (i, (&nb, &nk)) in orders.nb.iter().zip(&orders.nk).enumerate() {
        if column < j + nb {
            return format!("{}(t-{})", names.1[i], nk + column - j);
        }
        j += nb;
    }
    format!("regressor {column}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn fit_percent_closed_forms_and_a_constant_output() {
        // ŷ = mean gives 0 %, ŷ = y gives 100 %, ŷ = 2y − mean gives 0 % again (the error's
        // norm equals the deviation's); rows where ŷ is NaN are not judged.
        let y = [1.0, 3.0, 5.0, 7.0];
        assert_eq!(fit_percent(&y, &[4.0; 4]), 0.0);
        assert_eq!(fit_percent(&y, &y), 100.0);
        assert_eq!(fit_percent(&y, &[-2.0, 2.0, 6.0, 10.0]), 0.0);
        assert_eq!(fit_percent(&[9.0, 1.0, 3.0], &[f64::NAN, 1.0, 3.0]), 100.0);
        // Constant where judged (the 9 is not): undefined, not −4e16 from rounding.
        let y = [9.0, 0.1, 0.1, 0.1];
        assert!(fit_percent(&y, &[f64::NAN, 0.2, 0.1, 0.1]).is_nan());
        assert!(fit_percent(&[], &[]).is_nan());
    }

    #[test]
    fn window_start_and_parameters() {
        let o = Orders {
            na: 20,
            nb: vec![17],
            nk: vec![50],
        };
        assert_eq!(o.t0(), 66);
        assert_eq!(o.params(), 37);
        let o = Orders {
            na: 2,
            nb: vec![2, 1],
            nk: vec![1, 4],
        };
        assert_eq!(o.t0(), 4);
    }

    #[test]
    fn poles_of_a_known_polynomial() {
        // (1 − 0.5 q⁻¹)(1 + 0.25 q⁻¹) = 1 − 0.25 q⁻¹ − 0.125 q⁻²: poles 0.5 and −0.25.
        let mut m: Vec<f64> = poles(&[-0.25, -0.125]).iter().map(|p| p.re).collect();
        m.sort_by(f64::total_cmp);
        assert!(
            (m[0] + 0.25).abs() < 1e-12 && (m[1] - 0.5).abs() < 1e-12,
            "{m:?}"
        );
    }

    /// Uniform noise in [−0.5, 0.5) from xorshift, for tests here and in `sysid::batch`.
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// The semi-normal path is taken for a well-conditioned problem and agrees with the
    /// block QR; an ill-conditioned one is handed to the QR.
    #[test]
    fn semi_normal_equations_agree_with_qr_and_hand_over() {
        let n = 3000;
        let u = noise(3, n);
        let e = noise(4, n);
        let mut y = vec![0.0; n];
        for t in 3..n {
            y[t] = 1.2 * y[t - 1] - 0.5 * y[t - 2] + u[t - 2] + 0.3 * u[t - 3] + 0.05 * e[t];
        }
        let o = Orders {
            na: 2,
            nb: vec![2],
            nk: vec![2],
        };
        let (ym, um) = (stats::mean(&y), stats::mean(&u));
        let yc: Vec<f64> = y.iter().map(|v| v - ym).collect();
        let uc: Vec<f64> = u.iter().map(|v| v - um).collect();
        let (ysd, usd) = (stats::variance(&yc).sqrt(), stats::variance(&uc).sqrt());
        let scale = [ysd, ysd, usd, usd];
        let fast = semi_normal(&yc, &[&uc], &o, &scale, ysd, o.t0()).expect("well conditioned");
        let mut qr = BlockQr::new(4, &scale, ysd);
        let mut phi = [0.0; 4];
        for t in o.t0()..n {
            o.regressors(&yc, &[&uc], t, &mut phi);
            qr.push(&phi, yc[t]);
        }
        let slow = qr.solve().expect("qr");
        for (a, b) in fast.theta.iter().zip(&slow.theta) {
            assert!((a - b).abs() < 1e-10 * b.abs().max(1e-3), "{a} vs {b}");
        }
        for (a, b) in fast.sd.iter().zip(&slow.sd) {
            assert!((a - b).abs() < 1e-8 * b, "{a} vs {b}");
        }
        assert!((fast.rss - slow.rss).abs() < 1e-10 * slow.rss);
        // Two inputs that differ by 1e-9: κ far beyond 1e6, so no semi-normal answer.
        let u2: Vec<f64> = uc.iter().zip(&e).map(|(a, b)| a + 1e-9 * b).collect();
        let o2 = Orders {
            na: 0,
            nb: vec![1, 1],
            nk: vec![1, 1],
        };
        assert!(semi_normal(&yc, &[&uc, &u2], &o2, &[usd, usd], ysd, 1).is_none());
    }

    #[test]
    fn criteria_formulas() {
        let c = Criteria::new(50.0, 100, 5);
        assert!((c.loss - 0.5).abs() < 1e-15);
        assert!((c.fpe - 0.5 * 1.05 / 0.95).abs() < 1e-15);
        assert!((c.naic - (0.5f64.ln() + 0.1)).abs() < 1e-15);
    }
}

/// Lags of the residual tests (design brief: up to 25).
pub const RESIDUAL_LAGS: usize = 25;

/// How a model does on a data set: fit figures and the residual tests.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Samples in the data set.
    pub n: usize,
    /// First sample judged (the model's t0).
    pub t0: usize,
    /// Fit % of the free-run simulation (started from the measured outputs before t0).
    pub fit_simulation_pct: f64,
    /// Prediction horizon K of `fit_prediction_pct` (1: one step ahead).
    pub horizon: usize,
    /// Fit % of the K-step-ahead prediction.
    pub fit_prediction_pct: f64,
    /// Mean of the one-step residuals.
    pub residual_mean: f64,
    /// Residual autocorrelation at lags 0..=25.
    pub residual_acf: Vec<f64>,
    /// Input–residual cross-correlation per input at lags −25..=25 (input leads residual).
    pub input_residual_xcorr: Vec<Vec<f64>>,
    /// 99% bound ±2.58/√n.
    pub bound: f64,
    /// Lags (≥ 1) whose residual autocorrelation is outside the bound.
    pub acf_outside: Vec<usize>,
    /// Per input, lags whose cross-correlation is outside the bound.
    pub xcorr_outside: Vec<Vec<i64>>,
    /// Exceedances allowed per test before it fails (chance at the 5% level).
    pub allowed_acf: usize,
    /// Exceedances allowed per input's cross-correlation test.
    pub allowed_xcorr: usize,
    /// Whether every simulated and predicted value, residual and correlation is finite (false:
    /// the model's output overflowed on these data, and nothing could be judged).
    pub finite: bool,
    /// Whether the residuals look white and independent of the inputs.
    pub pass: bool,
    /// Simulated output, in the data's units (NaN before t0).
    #[serde(skip)]
    pub simulated: Vec<f64>,
    /// K-step prediction, in the data's units (NaN before t0).
    #[serde(skip)]
    pub predicted: Vec<f64>,
    /// One-step residual y − ŷ (NaN before t0).
    #[serde(skip)]
    pub residual: Vec<f64>,
}

/// The smallest m with P(Binomial(trials, 0.01) > m) ≤ 0.05: how many of `trials`
/// correlations may exceed a 99% bound by chance before a test fails.
pub fn allowed_exceedances(trials: usize) -> usize {
    let (n, p) = (trials as f64, 0.01f64);
    let mut pmf = (1.0 - p).powf(n);
    let mut cdf = pmf;
    let mut m = 0;
    while 1.0 - cdf > 0.05 && m < trials {
        pmf *= (n - m as f64) / (m as f64 + 1.0) * p / (1.0 - p);
        cdf += pmf;
        m += 1;
    }
    m
}

impl Model {
    /// K-step-ahead prediction of detrended `y`: measured outputs up to t−K, then the model.
    pub fn predict_k(&self, y: &[f64], us: &[&[f64]], k: usize) -> Vec<f64> {
        if k <= 1 {
            return self.predict(y, us);
        }
        let n = us.iter().map(|u| u.len()).fold(y.len(), usize::min);
        let t0 = self.orders.t0();
        let theta = self.theta();
        let mut phi = vec![0.0; theta.len()];
        let mut buf = y[..n].to_vec();
        let mut out = vec![f64::NAN; n];
        for t in t0..n {
            // Predictions replace the outputs of the last K−1 steps before t.
            let start = t.saturating_sub(k - 1).max(t0);
            for j in start..=t {
                self.orders.regressors(&buf, us, j, &mut phi);
                buf[j] = phi.iter().zip(&theta).map(|(p, c)| p * c).sum();
            }
            out[t] = buf[t];
            buf[start..=t].copy_from_slice(&y[start..=t]);
        }
        out
    }

    /// Validates the model on raw (not detrended) data: the model's offsets are removed.
    pub fn validate(
        &self,
        y: &[f64],
        us: &[&[f64]],
        horizon: usize,
    ) -> Result<Validation, ArxError> {
        let n = us.iter().map(|u| u.len()).fold(y.len(), usize::min);
        let t0 = self.orders.t0();
        if n <= t0 + RESIDUAL_LAGS + 1 {
            return Err(ArxError::Orders(format!(
                "{n} samples are too few to validate a model that starts at sample {t0}: need \
                 more than {}",
                t0 + RESIDUAL_LAGS + 1
            )));
        }
        let yc: Vec<f64> = y[..n].iter().map(|v| v - self.offsets.output).collect();
        let ucs: Vec<Vec<f64>> = us
            .iter()
            .zip(&self.offsets.inputs)
            .map(|(u, m)| u[..n].iter().map(|v| v - m).collect())
            .collect();
        let uref: Vec<&[f64]> = ucs.iter().map(Vec::as_slice).collect();
        let sim = self.simulate(&uref, Some(&yc));
        let pred1 = self.predict(&yc, &uref);
        // Beyond the data a longer horizon changes nothing (it is the simulation) but costs
        // O(N·K): cap it.
        let horizon = horizon.clamp(1, n - t0);
        let pred_k = if horizon == 1 {
            pred1.clone()
        } else {
            self.predict_k(&yc, &uref, horizon)
        };
        let mut resid: Vec<f64> = (t0..n).map(|t| yc[t] - pred1[t]).collect();
        let residual_mean = stats::mean(&resid);
        stats::detrend(&mut resid, stats::Detrend::Mean);
        let name = |i: usize| self.inputs.get(i).cloned().unwrap_or_default();
        let acf = super::xcorr::cross_correlation(
            &[(&resid, &resid)],
            RESIDUAL_LAGS,
            ("residual", "residual"),
        )
        .map_err(|e| ArxError::Singular(e.to_string()))?;
        let bound = acf.bound;
        let residual_acf = acf.xcorr[RESIDUAL_LAGS..].to_vec();
        let mut input_residual_xcorr = Vec::new();
        let mut xcorr_outside = Vec::new();
        for (i, u) in uref.iter().enumerate() {
            let mut ui = u[t0..].to_vec();
            stats::detrend(&mut ui, stats::Detrend::Mean);
            let cc = super::xcorr::cross_correlation(
                &[(&ui, &resid)],
                RESIDUAL_LAGS,
                (&name(i), "residual"),
            )
            .map_err(|e| ArxError::Singular(e.to_string()))?;
            xcorr_outside.push(
                cc.lags
                    .iter()
                    .zip(&cc.xcorr)
                    .filter(|(_, r)| r.abs() > bound)
                    .map(|(l, _)| *l)
                    .collect::<Vec<i64>>(),
            );
            input_residual_xcorr.push(cc.xcorr);
        }
        let acf_outside: Vec<usize> = (1..=RESIDUAL_LAGS)
            .filter(|&k| residual_acf[k].abs() > bound)
            .collect();
        let allowed_acf = allowed_exceedances(RESIDUAL_LAGS);
        let allowed_xcorr = allowed_exceedances(2 * RESIDUAL_LAGS + 1);
        // A simulation or prediction that overflowed leaves nothing to judge: never a pass.
        let finite = (t0..n).all(|t| sim[t].is_finite() && pred_k[t].is_finite())
            && resid.iter().all(|r| r.is_finite())
            && residual_acf.iter().all(|r| r.is_finite())
            && input_residual_xcorr.iter().flatten().all(|r| r.is_finite());
        let pass = finite
            && acf_outside.len() <= allowed_acf
            && xcorr_outside.iter().all(|o| o.len() <= allowed_xcorr);
        let level = |v: &[f64]| {
            v.iter()
                .map(|x| x + self.offsets.output)
                .collect::<Vec<f64>>()
        };
        let residual = (0..n).map(|t| yc[t] - pred1[t]).collect();
        Ok(Validation {
            simulated: level(&sim),
            predicted: level(&pred_k),
            residual,
            n,
            t0,
            fit_simulation_pct: fit_percent(&yc, &sim),
            horizon,
            fit_prediction_pct: fit_percent(&yc, &pred_k),
            residual_mean,
            residual_acf,
            input_residual_xcorr,
            bound,
            acf_outside,
            xcorr_outside,
            allowed_acf,
            allowed_xcorr,
            finite,
            pass,
        })
    }
}
