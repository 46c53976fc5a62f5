//! Many ARX models at once (`vmmon fit --batch`): each problem is fitted exactly as
//! [`arx::fit`] fits it alone, then its residuals are tested as [`Model::validate`] tests
//! them, and the problems run in parallel over all cores.
//!
//! Nothing is shared between problems but the read-only data, so the numbers do not depend on
//! how many run at once or in which order: a batch gives, bit for bit, what one `vmmon fit`
//! per model gives.

use rayon::prelude::*;

use super::arx::{self, ArxError, Model, Orders, Validation};

/// One model to fit: the data of its estimation rows, and of the rows its residuals are
/// tested on.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    /// Output column name.
    pub output: &'a str,
    /// Input column names.
    pub inputs: &'a [String],
    /// Orders.
    pub orders: Orders,
    /// Sample time in seconds.
    pub sample_time: f64,
    /// Estimation rows of the output (raw, not detrended).
    pub y: &'a [f64],
    /// Estimation rows of each input.
    pub us: Vec<&'a [f64]>,
    /// Rows for the residual tests (output, inputs); `None`: the estimation rows.
    pub test: Option<(&'a [f64], Vec<&'a [f64]>)>,
}

/// A fitted model and its residual tests.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The model, as `vmmon fit` writes it.
    pub model: Model,
    /// The residual tests and fit figures on the test rows, as `vmmon validate` reports
    /// them; `Err` says why they could not be run (too few rows), which does not make the
    /// model fail.
    pub test: Result<Validation, String>,
}

/// Fits one problem: [`arx::fit`] on the estimation rows, then [`Model::validate`] (one-step
/// horizon) on the test rows.
pub fn fit_one(p: &Problem) -> Result<Fitted, ArxError> {
    let model = arx::fit(p.y, &p.us, &p.orders, (p.output, p.inputs), p.sample_time)?;
    let (ty, tus) = match &p.test {
        Some((y, us)) => (*y, us.as_slice()),
        None => (p.y, p.us.as_slice()),
    };
    let test = model.validate(ty, tus, 1).map_err(|e| e.to_string());
    Ok(Fitted { model, test })
}

/// Fits every problem in parallel (rayon's pool: all cores unless `RAYON_NUM_THREADS` says
/// otherwise); results in the problems' order.
pub fn fit_all(problems: &[Problem]) -> Vec<Result<Fitted, ArxError>> {
    problems.par_iter().map(fit_one).collect()
}

/// Names of the figures [`figures`] gives, as CSV column names.
pub const FIGURES: [&str; 20] = [
    "n_used",
    "t0",
    "d",
    "V",
    "lambda",
    "FPE",
    "nAIC",
    "AIC",
    "BIC",
    "MDL",
    "fit_prediction_pct",
    "fit_simulation_pct",
    "stable",
    "condition",
    "test_samples",
    "test_fit_simulation_pct",
    "test_fit_prediction_pct",
    "acf_outside",
    "xcorr_outside",
    "residual_test",
];

/// A float as a CSV cell: the shortest text that reads back to the same bits; empty for NaN
/// or infinity (as the model JSON writes `null`).
pub fn cell(x: f64) -> String {
    if x.is_finite() {
        x.to_string()
    } else {
        String::new()
    }
}

/// The figures of a fitted model, in the order of [`FIGURES`]: those `vmmon fit` prints
/// (criteria, fit %, stability) and the residual verdicts `vmmon validate` prints (per-input
/// counts `;`-separated; empty when the tests could not be run).
pub fn figures(f: &Fitted) -> Vec<String> {
    let m = &f.model;
    let c = &m.criteria;
    let mut out = vec![
        m.n_used.to_string(),
        m.t0.to_string(),
        m.orders.params().to_string(),
        cell(c.loss),
        cell(m.lambda),
        cell(c.fpe),
        cell(c.naic),
        cell(c.aic),
        cell(c.bic),
        cell(c.mdl),
        cell(m.fit_prediction_pct),
        cell(m.fit_simulation_pct),
        m.stable.to_string(),
        cell(m.condition),
    ];
    match &f.test {
        Ok(v) => out.extend([
            (v.n - v.t0).to_string(),
            cell(v.fit_simulation_pct),
            cell(v.fit_prediction_pct),
            v.acf_outside.len().to_string(),
            v.xcorr_outside
                .iter()
                .map(|o| o.len().to_string())
                .collect::<Vec<_>>()
                .join(";"),
            if v.pass { "PASS" } else { "FAIL" }.to_string(),
        ]),
        Err(_) => out.extend(std::iter::repeat_n(String::new(), 6)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysid::arx::tests::noise;

    /// The parallel batch gives bit-identical models to fitting one at a time, whatever the
    /// order the pool runs them in; a failing problem fails alone.
    #[test]
    fn batch_equals_one_at_a_time() {
        let n = 2000;
        let us: Vec<Vec<f64>> = (0..6).map(|i| noise(10 + i, n)).collect();
        let e = noise(99, n);
        let mut y = vec![0.0; n];
        for t in 2..n {
            y[t] = 0.6 * y[t - 1] + us[0][t - 1] + 0.5 * us[1][t - 2] + 0.1 * e[t];
        }
        let names: Vec<String> = (0..6).map(|i| format!("u{i}")).collect();
        let constant = vec![1.0; n];
        let cname = vec!["c".to_string()];
        let mut problems: Vec<Problem> = (0..6)
            .map(|i| Problem {
                output: "y",
                inputs: &names[i..=i],
                orders: Orders {
                    na: 1 + i % 3,
                    nb: vec![2],
                    nk: vec![1],
                },
                sample_time: 1.0,
                y: &y,
                us: vec![&us[i]],
                test: None,
            })
            .collect();
        problems.push(Problem {
            output: "y",
            inputs: &cname,
            orders: Orders {
                na: 1,
                nb: vec![1],
                nk: vec![1],
            },
            sample_time: 1.0,
            y: &y,
            us: vec![&constant],
            test: None,
        });
        let all = fit_all(&problems);
        for (p, got) in problems.iter().zip(&all) {
            let alone = arx::fit(p.y, &p.us, &p.orders, (p.output, p.inputs), 1.0);
            match (got, alone) {
                (Ok(f), Ok(m)) => {
                    assert_eq!(
                        serde_json::to_string(&f.model).expect("json"),
                        serde_json::to_string(&m).expect("json")
                    );
                    let v = m.validate(p.y, &p.us, 1).expect("validate");
                    let t = f.test.as_ref().expect("tested");
                    assert_eq!(t.pass, v.pass);
                    assert_eq!(t.residual_acf, v.residual_acf);
                }
                (Err(a), Err(b)) => assert_eq!(*a, b),
                (a, b) => panic!("{a:?} vs {b:?}"),
            }
        }
        assert!(matches!(all[6], Err(ArxError::Singular(_))));
        assert_eq!(figures(all[0].as_ref().expect("ok")).len(), FIGURES.len());
    }
}
