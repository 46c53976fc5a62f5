//! ARX order search: every (na, nb, nk) of a grid fitted on the same samples, ranked by a
//! criterion.
//!
//! All candidates' regressors are lagged copies of the same few series, so one Gram matrix of
//! every lag any candidate uses is built once, over the rows from the grid's largest t0
//! (the same samples for every candidate, as the design brief requires), with centred and
//! scaled columns. Each candidate is then a sub-block, solved by Cholesky in parallel. These
//! normal equations only rank candidates; the chosen model is re-solved through the block QR
//! of [`super::arx::fit`].

use std::ops::RangeInclusive;

use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;
use serde::Serialize;

use super::arx::{ArxError, Criteria, Orders};
use super::lsq::{LagBlock, lagged_gram};
use super::stats;

/// The orders searched (every input gets the same nb and nk).
#[derive(Debug, Clone)]
pub struct Grid {
    /// Poles na.
    pub na: RangeInclusive<usize>,
    /// Zeros nb (at least 1).
    pub nb: RangeInclusive<usize>,
    /// Delays nk.
    pub nk: RangeInclusive<usize>,
}

impl Grid {
    /// The largest t0 of the grid: every candidate uses the rows from here.
    pub fn t0(&self) -> usize {
        (*self.na.end()).max(
            self.nk
                .end()
                .saturating_add(*self.nb.end())
                .saturating_sub(1),
        )
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        // Saturating: a range may span all of usize (its count would overflow).
        let n = |r: &RangeInclusive<usize>| {
            if r.is_empty() {
                0
            } else {
                (r.end() - r.start()).saturating_add(1)
            }
        };
        n(&self.na)
            .saturating_mul(n(&self.nb))
            .saturating_mul(n(&self.nk))
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How candidates are ranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Akaike's information criterion.
    #[default]
    Aic,
    /// The MDL-style V (1 + d ln N / N).
    Mdl,
    /// Final prediction error.
    Fpe,
    /// One-step prediction loss on validation data.
    Val,
}

/// One fitted candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Poles.
    pub na: usize,
    /// Zeros per input.
    pub nb: usize,
    /// Delay per input.
    pub nk: usize,
    /// Parameters.
    pub d: usize,
    /// Loss and criteria on the common samples.
    pub criteria: Criteria,
    /// One-step prediction loss on the validation data, if any.
    pub validation_loss: Option<f64>,
}

impl Candidate {
    /// The value `criterion` ranks by (smaller is better).
    pub fn score(&self, criterion: Criterion) -> f64 {
        match criterion {
            Criterion::Aic => self.criteria.aic,
            Criterion::Mdl => self.criteria.mdl,
            Criterion::Fpe => self.criteria.fpe,
            Criterion::Val => self.validation_loss.unwrap_or(f64::INFINITY),
        }
    }

    /// The candidate's orders for `inputs` inputs.
    pub fn orders(&self, inputs: usize) -> Orders {
        Orders {
            na: self.na,
            nb: vec![self.nb; inputs],
            nk: vec![self.nk; inputs],
        }
    }
}

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    /// First row of the common samples.
    pub t0: usize,
    /// Common samples used by every candidate.
    pub n_used: usize,
    /// Every candidate that could be solved, ranked best first.
    pub candidates: Vec<Candidate>,
    /// Candidates whose regression was numerically singular.
    pub singular: usize,
    /// The criterion used for the ranking.
    pub criterion: Criterion,
}

/// Gram matrix of lagged, centred, scaled series over rows `t0..n`, and the products with
/// the output. Column c is series `cols[c].0` lagged by `cols[c].1`.
struct Gram {
    g: DMatrix<f64>,
    b: DVector<f64>,
    yy: f64,
    rows: usize,
}

fn gram(series: &[Vec<f64>], cols: &[(usize, usize)], t0: usize) -> Gram {
    let n = series[0].len();
    // Runs of consecutive lags of one series are the blocks; the output at lag 0 goes last.
    let mut blocks: Vec<LagBlock> = Vec::new();
    for &(s, lag) in cols {
        match blocks.last_mut() {
            Some(b) if b.series == s && b.hi + 1 == lag => b.hi = lag,
            _ => blocks.push(LagBlock {
                series: s,
                lo: lag,
                hi: lag,
                sign: 1.0,
                scale: 1.0,
            }),
        }
    }
    blocks.push(LagBlock {
        series: 0,
        lo: 0,
        hi: 0,
        sign: 1.0,
        scale: 1.0,
    });
    let refs: Vec<&[f64]> = series.iter().map(Vec::as_slice).collect();
    let full = lagged_gram(&refs, &blocks, t0, n);
    let d = cols.len();
    Gram {
        g: full.view((0, 0), (d, d)).into_owned(),
        b: DVector::from_fn(d, |r, _| full[(r, d)]),
        yy: full[(d, d)],
        rows: n - t0,
    }
}

/// Searches `grid` for the ARX model of `y` on `us`. With `validation`, each candidate's
/// one-step prediction loss on those data is computed too (needed for `Criterion::Val`).
pub fn search(
    y: &[f64],
    us: &[&[f64]],
    grid: &Grid,
    criterion: Criterion,
    validation: Option<(&[f64], &[&[f64]])>,
) -> Result<Search, ArxError> {
    if grid.is_empty() || *grid.nb.start() == 0 {
        return Err(ArxError::Orders(
            "the grid is empty (ranges are low..high with low ≤ high, and nb ≥ 1)".into(),
        ));
    }
    if criterion == Criterion::Val && validation.is_none() {
        return Err(ArxError::Orders(
            "--criterion val needs validation data (--validate START:END)".into(),
        ));
    }
    let n = us.iter().map(|u| u.len()).fold(y.len(), usize::min);
    let t0 = grid.t0();
    let d_max = grid.na.end() + us.len() * grid.nb.end();
    if n <= t0 + d_max {
        return Err(ArxError::Orders(format!(
            "the largest candidate needs more than {} samples ({d_max} parameters after the \
             first {t0}); the data have {n}",
            t0 + d_max
        )));
    }
    // Centre with the estimation data's means and scale by each series' deviation; series 0
    // is y, then the inputs.
    let prep = |x: &[f64], m: f64, s: f64| -> Vec<f64> { x.iter().map(|v| (v - m) / s).collect() };
    let mut means = Vec::new();
    let mut sds = Vec::new();
    for (i, x) in std::iter::once(y).chain(us.iter().copied()).enumerate() {
        let m = stats::mean(&x[..n]);
        let sd = stats::variance(&x[..n]).sqrt();
        if sd == 0.0 {
            let which = match i {
                0 => "the output".to_string(),
                i => format!("input {i} (in the order given)"),
            };
            return Err(ArxError::Singular(format!(
                "{which} is constant over the rows searched: no order can be fitted"
            )));
        }
        means.push(m);
        sds.push(sd);
    }
    let series: Vec<Vec<f64>> = std::iter::once(y)
        .chain(us.iter().copied())
        .enumerate()
        .map(|(i, x)| prep(&x[..n], means[i], sds[i]))
        .collect();
    // Columns: y lags 1..=na_max, then per input lags nk_min ..= nk_max + nb_max − 1.
    let (na_max, nk_min) = (*grid.na.end(), *grid.nk.start());
    let lag_hi = grid.nk.end() + grid.nb.end() - 1;
    let mut cols: Vec<(usize, usize)> = (1..=na_max).map(|l| (0, l)).collect();
    for i in 0..us.len() {
        cols.extend((nk_min..=lag_hi).map(|l| (i + 1, l)));
    }
    let col_of = |input: usize, lag: usize| na_max + input * (lag_hi - nk_min + 1) + (lag - nk_min);
    let est = gram(&series, &cols, t0);
    if let Some((vy, vus)) = validation {
        let vn = vus.iter().map(|u| u.len()).fold(vy.len(), usize::min);
        if vn <= t0 {
            return Err(ArxError::Orders(format!(
                "the validation data have {vn} samples; the grid's largest lag needs more \
                 than {t0}"
            )));
        }
    }
    let val = validation.map(|(vy, vus)| {
        let vn = vus.iter().map(|u| u.len()).fold(vy.len(), usize::min);
        let vseries: Vec<Vec<f64>> = std::iter::once(vy)
            .chain(vus.iter().copied())
            .enumerate()
            .map(|(i, x)| prep(&x[..vn], means[i], sds[i]))
            .collect();
        gram(&vseries, &cols, t0)
    });
    let candidates: Vec<(usize, usize, usize)> = grid
        .na
        .clone()
        .flat_map(|na| {
            grid.nb
                .clone()
                .flat_map(move |nb| grid.nk.clone().map(move |nk| (na, nb, nk)))
        })
        .collect();
    let y_var = sds[0] * sds[0];
    let solved: Vec<Option<Candidate>> = candidates
        .par_iter()
        .map(|&(na, nb, nk)| {
            let mut idx: Vec<usize> = (0..na).collect();
            for i in 0..us.len() {
                idx.extend((nk..nk + nb).map(|l| col_of(i, l)));
            }
            let d = idx.len();
            let g = DMatrix::from_fn(d, d, |r, c| est.g[(idx[r], idx[c])]);
            let b = DVector::from_fn(d, |r, _| est.b[idx[r]]);
            let theta = g.cholesky()?.solve(&b);
            let rss = (est.yy - theta.dot(&b)).max(0.0) * y_var;
            let validation_loss = val.as_ref().map(|v| {
                let gv = DMatrix::from_fn(d, d, |r, c| v.g[(idx[r], idx[c])]);
                let bv = DVector::from_fn(d, |r, _| v.b[idx[r]]);
                let q = (&gv * &theta).dot(&theta) - 2.0 * theta.dot(&bv) + v.yy;
                q.max(0.0) * y_var / v.rows as f64
            });
            Some(Candidate {
                na,
                nb,
                nk,
                d,
                criteria: Criteria::new(rss, est.rows, d),
                validation_loss,
            })
        })
        .collect();
    let singular = solved.iter().filter(|c| c.is_none()).count();
    let mut ranked: Vec<Candidate> = solved.into_iter().flatten().collect();
    ranked.sort_by(|a, b| a.score(criterion).total_cmp(&b.score(criterion)));
    Ok(Search {
        t0,
        n_used: est.rows,
        candidates: ranked,
        singular,
        criterion,
    })
}
