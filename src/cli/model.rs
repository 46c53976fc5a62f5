//! `vmmon fit` and `vmmon reconstruct`: ARX models from traces, and the guest series
//! estimated from host inputs alone.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::analyze::{ModelColumns, TraceArgs, usage};
use crate::sysid::arx::{self, MODEL_FORMAT, Model, Orders};
use crate::sysid::order;
use crate::sysid::stats::Detrend;

/// Options of `vmmon fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    trace: TraceArgs,

    /// Input column(s), comma-separated.
    #[arg(
        short = 'u',
        long,
        value_delimiter = ',',
        required_unless_present = "batch",
        value_name = "COLUMNS"
    )]
    input: Vec<String>,

    /// Output column.
    #[arg(
        short = 'y',
        long,
        value_name = "COLUMN",
        required_unless_present = "batch"
    )]
    output: Option<String>,

    /// Number of poles na (order of A).
    #[arg(
        long,
        value_name = "NA",
        allow_negative_numbers = true,
        required_unless_present = "batch"
    )]
    poles: Option<usize>,

    /// Number of zeros nb (B coefficients) per input: one value, or one per input.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NB",
        allow_negative_numbers = true
    )]
    zeros: Vec<usize>,

    /// Delay nk in samples per input: one value, or one per input.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "NK",
        allow_negative_numbers = true
    )]
    delay: Vec<usize>,

    /// Write the model as JSON to FILE (for `vmmon reconstruct`); with --batch, the summary
    /// CSV.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,

    /// Fit many models in parallel. DATA is a PAIRS.csv listing them (columns trace, output,
    /// inputs, and optionally na, nb, nk, name); or, with -y, a quoted glob of traces
    /// ('traces/*.csv') that each get the model of -u, -y and the orders. One summary row
    /// per model (docs/analysis.md).
    #[arg(long)]
    batch: bool,

    /// With --batch: write each model's JSON to DIR/NAME.json.
    #[arg(long, value_name = "DIR", requires = "batch")]
    models: Option<PathBuf>,

    /// Rows to estimate on, START:END of the rows read: row numbers or percentages, either
    /// end may be empty (`0:70%`, `:1400`).
    #[arg(long, value_name = "START:END")]
    estimate: Option<String>,

    /// Rows to validate on (same form, e.g. `70%:`): prints the validation figures.
    #[arg(long, value_name = "START:END")]
    validate: Option<String>,
}

/// Parses `START:END` over `n` rows: row numbers or percentages, empty ends open.
pub fn parse_split(s: &str, n: usize) -> anyhow::Result<std::ops::Range<usize>> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| usage(format!("'{s}' is not START:END (e.g. 0:70% or 70%:)")))?;
    let end = |v: &str, default: usize| -> anyhow::Result<usize> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(default);
        }
        let bad = || {
            usage(format!(
                "'{v}' in '{s}' is neither a row number nor a percentage"
            ))
        };
        match v.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad());
                }
                Ok(((p / 100.0) * n as f64).round() as usize)
            }
            None => v.parse::<usize>().map(|r| r.min(n)).map_err(|_| bad()),
        }
    };
    let (lo, hi) = (end(a, 0)?, end(b, n)?);
    if lo >= hi {
        return Err(usage(format!("'{s}' selects no rows of the {n} read")));
    }
    Ok(lo..hi)
}

/// The longest clean segment, with a note when there are several (models need one
/// contiguous stretch).
fn longest(series: &crate::trace::read::Series) -> anyhow::Result<&crate::trace::read::Segment> {
    if series.segments.len() > 1 {
        eprintln!(
            "vmmon: note: using the longest of {} clean segments",
            series.segments.len()
        );
    }
    series
        .segments
        .iter()
        .max_by_key(|s| s.len())
        .context("no samples")
}

/// Reads a model's inputs and output (in that column order), without detrending: the model
/// keeps its own offsets.
fn read_model_columns(
    trace: &TraceArgs,
    inputs: &[String],
    output: &str,
) -> anyhow::Result<crate::trace::read::Series> {
    let mut names = inputs.to_vec();
    names.push(output.to_string());
    trace.read(&names, Detrend::None)
}

/// The rows of a `START:END` option, or all `n` rows when it is absent.
fn rows(spec: Option<&str>, n: usize) -> anyhow::Result<std::ops::Range<usize>> {
    spec.map_or(Ok(0..n), |s| parse_split(s, n))
}

/// Refuses `--detrend` where a model's own offsets decide the level.
fn no_detrend(trace: &TraceArgs, what: &str) -> anyhow::Result<()> {
    match trace.detrend {
        None | Some(Detrend::None) | Some(Detrend::Mean) if what == "fit" => Ok(()),
        None => Ok(()),
        Some(d) => Err(usage(format!(
            "--detrend {d:?} does not apply to {what}: the model removes the estimation data's \
             means itself and keeps them to restore the level"
        ))),
    }
}

/// One value for every input, or exactly one per input.
fn per_input(what: &str, v: &[usize], inputs: usize) -> anyhow::Result<Vec<usize>> {
    match v.len() {
        1 => Ok(vec![v[0]; inputs]),
        n if n == inputs => Ok(v.to_vec()),
        n => Err(usage(format!(
            "--{what} has {n} values for {inputs} inputs: give one value, or one per input"
        ))),
    }
}

/// Runs `vmmon fit`.
pub fn fit(a: FitArgs) -> anyhow::Result<i32> {
    if a.batch {
        no_detrend(&a.trace, "fit")?;
        return super::batch::run(&super::batch::Request {
            trace: &a.trace,
            inputs: &a.input,
            output: a.output.as_deref(),
            poles: a.poles,
            zeros: &a.zeros,
            delay: &a.delay,
            estimate: a.estimate.as_deref(),
            validate: a.validate.as_deref(),
            out: a.out.as_deref(),
            models: a.models.as_deref(),
        });
    }
    // clap requires these without --batch.
    let (Some(output), Some(poles)) = (a.output.as_deref(), a.poles) else {
        return Err(usage("fit needs -y and --poles".into()));
    };
    let k = a.input.len();
    let orders = Orders {
        na: poles,
        nb: per_input("zeros", &a.zeros, k)?,
        nk: per_input("delay", &a.delay, k)?,
    };
    no_detrend(&a.trace, "fit")?;
    check_orders(&[
        ("--poles", poles),
        ("--zeros", orders.nb.iter().copied().max().unwrap_or(0)),
        ("--delay", orders.nk.iter().copied().max().unwrap_or(0)),
    ])?;
    super::analyze::check_model_columns(&a.input, output, true)?;
    let series = read_model_columns(&a.trace, &a.input, output)?;
    let seg = longest(&series)?;
    let n = seg.len();
    let est = rows(a.estimate.as_deref(), n)?;
    // Checked before the work, so that a bad option prints nothing else.
    let val = a
        .validate
        .as_deref()
        .map(|v| parse_split(v, n))
        .transpose()?;
    let us: Vec<&[f64]> = seg.columns[..k].iter().map(|c| &c[est.clone()]).collect();
    let mut model = arx::fit(
        &seg.columns[k][est.clone()],
        &us,
        &orders,
        (output, &a.input),
        series.step,
    )?;
    model.rates = a.trace.rates;
    let mut out = std::io::stdout().lock();
    out.write_all(describe(&model).as_bytes())?;
    if let Some(val) = val {
        let us: Vec<&[f64]> = seg.columns[..k].iter().map(|c| &c[val.clone()]).collect();
        let report = model.validate(&seg.columns[k][val.clone()], &us, 1)?;
        writeln!(out, "validation on rows {}..{}:", val.start, val.end - 1)?;
        out.write_all(describe_validation(&report, &model.inputs).as_bytes())?;
    }
    if let Some(p) = &a.out {
        let text = serde_json::to_string_pretty(&model)? + "\n";
        std::fs::write(p, text).with_context(|| format!("cannot write model {}", p.display()))?;
    }
    Ok(0)
}

/// The readable summary of a model: coefficients in both conventions, criteria, fit, poles.
pub fn describe(m: &Model) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ARX model of {} on {} — na={} nb={:?} nk={:?}; {} samples used (from sample {}), \
         sample time {} s",
        m.output,
        m.inputs.join(", "),
        m.orders.na,
        m.orders.nb,
        m.orders.nk,
        m.n_used,
        m.t0,
        m.sample_time
    );
    let _ = writeln!(
        s,
        "{:<28} {:>24}   {:>24}",
        "coefficient", "A(q), B(q) form (± sd)", "y(t) = α y(t-i) + β u form"
    );
    for (i, (a, sd)) in m.a.iter().zip(&m.a_sd).enumerate() {
        let _ = writeln!(
            s,
            "{:<28} {:>24}   {:>24}",
            format!("a{}  [{}(t-{})]", i + 1, m.output, i + 1),
            format!("{a:.6} ± {sd:.6}"),
            format!("α{} = {:.6}", i + 1, -a)
        );
    }
    for (input, ((b, sd), nk)) in m
        .inputs
        .iter()
        .zip(m.b.iter().zip(&m.b_sd).zip(&m.orders.nk))
    {
        for (j, (v, e)) in b.iter().zip(sd).enumerate() {
            let _ = writeln!(
                s,
                "{:<28} {:>24}   {:>24}",
                format!("b{}  [{}(t-{})]", j + 1, input, nk + j),
                format!("{v:.6} ± {e:.6}"),
                format!("β{} = {v:.6}", j + 1)
            );
        }
    }
    let c = &m.criteria;
    let _ = writeln!(
        s,
        "loss V {:.6e}  noise variance λ {:.6e}  FPE {:.6e}  nAIC {:.6}  AIC {:.4}  BIC {:.4}",
        c.loss, m.lambda, c.fpe, c.naic, c.aic, c.bic
    );
    let _ = writeln!(
        s,
        "fit: one-step prediction {}, free-run simulation {} (the honest figure)",
        pct(m.fit_prediction_pct),
        pct(m.fit_simulation_pct)
    );
    let mags: Vec<String> = m
        .pole_magnitudes
        .iter()
        .map(|p| format!("{p:.4}"))
        .collect();
    let _ = writeln!(
        s,
        "pole magnitudes: {} → {}; condition number {:.3e}",
        if mags.is_empty() {
            "none".into()
        } else {
            mags.join(", ")
        },
        if m.stable {
            "stable"
        } else {
            "UNSTABLE: simulation will diverge"
        },
        m.condition
    );
    s
}

/// A fit % for people; NaN (a constant output over the rows judged) says so.
fn pct(x: f64) -> String {
    if x.is_nan() {
        "undefined (the output is constant over the rows judged)".into()
    } else {
        format!("{x:.2} %")
    }
}

/// The readable summary of a validation.
pub fn describe_validation(v: &arx::Validation, inputs: &[String]) -> String {
    let mut s = format!(
        "  fit: free-run simulation {}, {}-step prediction {} ({} samples from {})\n",
        pct(v.fit_simulation_pct),
        v.horizon,
        pct(v.fit_prediction_pct),
        v.n - v.t0,
        v.t0
    );
    let _ = writeln!(
        s,
        "  residual autocorrelation, lags 1..{}: {} outside ±{:.4} (chance allows {}) {:?}",
        arx::RESIDUAL_LAGS,
        v.acf_outside.len(),
        v.bound,
        v.allowed_acf,
        v.acf_outside
    );
    for (name, out) in inputs.iter().zip(&v.xcorr_outside) {
        let _ = writeln!(
            s,
            "  {name} → residual cross-correlation, lags ±{}: {} outside (chance allows {}) {:?}",
            arx::RESIDUAL_LAGS,
            out.len(),
            v.allowed_xcorr,
            out
        );
    }
    let _ = writeln!(
        s,
        "  verdict: {}",
        if v.pass {
            "PASS: residuals look white and independent of the inputs"
        } else if !v.finite {
            "FAIL: the model's output overflows on these data (an unstable model, or data far \
             from those it was fitted on): nothing could be judged"
        } else {
            "FAIL: the residuals keep structure the model misses (try other orders or delays)"
        }
    );
    s
}

/// Options of `vmmon validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Model written by `vmmon fit -o`.
    #[arg(value_name = "MODEL")]
    model: PathBuf,

    #[command(flatten)]
    trace: TraceArgs,

    /// Also report the K-step-ahead prediction fit (1: one step).
    #[arg(long, default_value_t = 1, value_name = "K")]
    horizon: usize,

    /// Write the CSV (time, measured, simulated, predicted, residual) to FILE instead of
    /// standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,

    /// Write the validation figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `vmmon validate`: the model on new data, summary on stderr, CSV out.
pub fn validate(mut a: ValidateArgs) -> anyhow::Result<i32> {
    let model = load_model(&a.model)?;
    no_detrend(&a.trace, "validate")?;
    a.trace.rates |= model.rates;
    if a.horizon == 0 {
        return Err(usage("--horizon must be at least 1".into()));
    }
    let series = read_model_columns(&a.trace, &model.inputs, &model.output)?;
    let seg = longest(&series)?;
    let k = model.inputs.len();
    let us: Vec<&[f64]> = seg.columns[..k].iter().map(Vec::as_slice).collect();
    if !model.stable {
        eprintln!("vmmon: warning: the model is unstable: its free-run simulation diverges");
    }
    let v = model.validate(&seg.columns[k], &us, a.horizon)?;
    if v.horizon < a.horizon {
        eprintln!(
            "vmmon: note: --horizon {} is beyond the {} samples judged; {} steps ahead is \
             already the free-run simulation",
            a.horizon,
            v.n - v.t0,
            v.horizon
        );
    }
    eprint!("{}", describe_validation(&v, &model.inputs));
    let cell = |x: f64| {
        if x.is_nan() {
            String::new()
        } else {
            x.to_string()
        }
    };
    let mut csv = String::from("time,measured,simulated,predicted,residual\n");
    for i in 0..v.n {
        let _ = writeln!(
            csv,
            "{:.6},{},{},{},{}",
            seg.start_time + i as f64 * series.step,
            seg.columns[k][i],
            cell(v.simulated[i]),
            cell(v.predicted[i]),
            cell(v.residual[i])
        );
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, csv).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::stdout().lock().write_all(csv.as_bytes())?,
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&v)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(0)
}

/// The largest order (na, nb or nk) a model may have: beyond it the regressor matrix (its
/// Gram matrix for an order search) would not fit in memory, and no trace a recorder makes
/// is long enough to estimate it.
pub const MAX_ORDER: usize = 1000;

/// The most candidates an order search takes at once.
pub const MAX_CANDIDATES: usize = 100_000;

/// Refuses (usage error) an order above [`MAX_ORDER`].
fn check_orders(orders: &[(&str, usize)]) -> anyhow::Result<()> {
    for (name, v) in orders {
        if *v > MAX_ORDER {
            return Err(usage(format!(
                "{name} {v}: orders above {MAX_ORDER} are not estimated"
            )));
        }
    }
    Ok(())
}

/// Parses `A..B` (inclusive) or a single `N`.
fn parse_range(s: &str) -> Result<std::ops::RangeInclusive<usize>, String> {
    let bad = || format!("'{s}' is not a range: write LOW..HIGH (e.g. 1..20) or one number");
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let (a, b): (usize, usize) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(format!("'{s}': the low end is above the high end"));
    }
    Ok(a..=b)
}

/// Options of `vmmon order`.
#[derive(Debug, Args)]
pub struct OrderArgs {
    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    cols: ModelColumns,

    /// Poles na searched: LOW..HIGH or one value.
    #[arg(long, value_parser = parse_range, value_name = "RANGE")]
    poles: std::ops::RangeInclusive<usize>,

    /// Zeros nb searched (≥ 1): LOW..HIGH or one value.
    #[arg(long, value_parser = parse_range, value_name = "RANGE")]
    zeros: std::ops::RangeInclusive<usize>,

    /// Delays nk searched: LOW..HIGH or one value.
    #[arg(long, value_parser = parse_range, value_name = "RANGE")]
    delay: std::ops::RangeInclusive<usize>,

    /// Ranking criterion (val: one-step prediction loss on --validate rows).
    #[arg(long, value_enum, default_value_t = order::Criterion::Aic)]
    criterion: order::Criterion,

    /// Rows to estimate on (START:END, as for fit).
    #[arg(long, value_name = "START:END")]
    estimate: Option<String>,

    /// Rows to validate on, for --criterion val.
    #[arg(long, value_name = "START:END")]
    validate: Option<String>,

    /// Write the ranked grid CSV to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,

    /// Write the best model, re-solved by QR, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,

    /// With --model: write the best candidate whose fitted A(q) is stable (every pole
    /// inside the unit circle), passing over better-ranked unstable ones. A model that is
    /// to be simulated (`vmmon reconstruct`) needs it: an unstable one's free run diverges
    /// even when its one-step fit is good.
    #[arg(long, requires = "model")]
    stable: bool,

    /// How many of the best candidates to list on stderr.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,
}

/// Runs `vmmon order`.
pub fn order(a: OrderArgs) -> anyhow::Result<i32> {
    no_detrend(&a.trace, "fit")?;
    let grid = order::Grid {
        na: a.poles.clone(),
        nb: a.zeros.clone(),
        nk: a.delay.clone(),
    };
    if *grid.nb.start() == 0 {
        return Err(usage("--zeros must start at 1 or more".into()));
    }
    check_orders(&[
        ("--poles", *grid.na.end()),
        ("--zeros", *grid.nb.end()),
        ("--delay", *grid.nk.end()),
    ])?;
    if grid.len() > MAX_CANDIDATES {
        return Err(usage(format!(
            "the grid has {} candidates; at most {MAX_CANDIDATES} are searched at once: narrow \
             the ranges",
            grid.len()
        )));
    }
    if a.criterion == order::Criterion::Val && a.validate.is_none() {
        return Err(usage(
            "--criterion val ranks on validation data: give them with --validate START:END".into(),
        ));
    }
    // Every input gets the same nb and nk here, so a repeated one is always singular.
    super::analyze::check_model_columns(&a.cols.input, &a.cols.output, false)?;
    let k = a.cols.input.len();
    let series = read_model_columns(&a.trace, &a.cols.input, &a.cols.output)?;
    let seg = longest(&series)?;
    let n = seg.len();
    let est = rows(a.estimate.as_deref(), n)?;
    let val = a
        .validate
        .as_deref()
        .map(|s| parse_split(s, n))
        .transpose()?;
    let slice = |r: &std::ops::Range<usize>| -> (Vec<&[f64]>, &[f64]) {
        (
            seg.columns[..k].iter().map(|c| &c[r.clone()]).collect(),
            &seg.columns[k][r.clone()],
        )
    };
    let (eu, ey) = slice(&est);
    for (name, x) in a.cols.input.iter().zip(&eu).chain([(&a.cols.output, &ey)]) {
        if x.windows(2).all(|w| w[0] == w[1]) {
            anyhow::bail!(
                "column {name} is constant over the rows searched: no order can be fitted"
            );
        }
    }
    let vdata = val.as_ref().map(&slice);
    let search = order::search(
        ey,
        &eu,
        &grid,
        a.criterion,
        vdata.as_ref().map(|(u, y)| (*y, u.as_slice())),
    )?;
    if search.candidates.is_empty() {
        anyhow::bail!(
            "none of the {} candidates could be fitted: every regression was numerically \
             singular (an input is constant, or a combination of the others or of the output's \
             past)",
            grid.len()
        );
    }
    let mut csv = String::from("rank,na,nb,nk,d,V,FPE,nAIC,AIC,BIC,MDL,validation_loss\n");
    for (i, c) in search.candidates.iter().enumerate() {
        let k = &c.criteria;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            i + 1,
            c.na,
            c.nb,
            c.nk,
            c.d,
            k.loss,
            k.fpe,
            k.naic,
            k.aic,
            k.bic,
            k.mdl,
            c.validation_loss.map_or(String::new(), |v| v.to_string())
        );
    }
    eprintln!(
        "order search: {} candidates on the same {} samples (from sample {}), ranked by {:?}{}",
        grid.len(),
        search.n_used,
        search.t0,
        a.criterion,
        if search.singular > 0 {
            format!("; {} numerically singular, left out", search.singular)
        } else {
            String::new()
        }
    );
    eprintln!(
        "{:>4} {:>4} {:>4} {:>4} {:>14} {:>14} {:>14}",
        "rank", "na", "nb", "nk", "V", "AIC", "score"
    );
    for (i, c) in search.candidates.iter().take(a.top).enumerate() {
        eprintln!(
            "{:>4} {:>4} {:>4} {:>4} {:>14.6e} {:>14.4} {:>14.6e}",
            i + 1,
            c.na,
            c.nb,
            c.nk,
            c.criteria.loss,
            c.criteria.aic,
            c.score(a.criterion)
        );
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, &csv).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::stdout().lock().write_all(csv.as_bytes())?,
    }
    if let Some(path) = &a.model {
        let mut chosen = None;
        for (rank, c) in search.candidates.iter().enumerate() {
            let model = arx::fit(
                ey,
                &eu,
                &c.orders(k),
                (&a.cols.output, &a.cols.input),
                series.step,
            )?;
            if !a.stable || model.stable {
                chosen = Some((rank, model));
                break;
            }
            let largest = model.pole_magnitudes.iter().copied().fold(0.0, f64::max);
            eprintln!(
                "vmmon: note: rank {} (na {}, nb {}, nk {}) is unstable (largest pole \
                 magnitude {largest:.4}); passed over (--stable)",
                rank + 1,
                c.na,
                c.nb,
                c.nk
            );
        }
        let Some((rank, mut model)) = chosen else {
            anyhow::bail!(
                "no candidate of the grid has a stable A(q); widen the grid or drop --stable"
            );
        };
        model.rates = a.trace.rates;
        eprint!(
            "best {}model (rank {}), re-solved by QR on its own window:\n{}",
            if a.stable { "stable " } else { "" },
            rank + 1,
            describe(&model)
        );
        std::fs::write(path, serde_json::to_string_pretty(&model)? + "\n")
            .with_context(|| format!("cannot write model {}", path.display()))?;
    }
    Ok(0)
}

/// Options of `vmmon reconstruct`.
#[derive(Debug, Args)]
pub struct ReconstructArgs {
    /// Model written by `vmmon fit -o`.
    #[arg(value_name = "MODEL")]
    model: PathBuf,

    #[command(flatten)]
    trace: TraceArgs,

    /// Write the CSV to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Reads and checks a model file.
pub fn load_model(path: &std::path::Path) -> anyhow::Result<Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    // A byte-order mark (an editor's) is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let probe: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{} is not JSON", path.display()))?;
    match probe.get("format") {
        None => anyhow::bail!(
            "{}: not a vmmon model (no \"format\" field)",
            path.display()
        ),
        Some(f) => match f.as_u64() {
            Some(f) if f > u64::from(MODEL_FORMAT) => anyhow::bail!(
                "{}: model format {f} is newer than this vmmon reads ({MODEL_FORMAT}); upgrade \
                 vmmon",
                path.display()
            ),
            Some(f) if f >= 1 => {}
            _ => anyhow::bail!(
                "{}: \"format\": {f} is not a model format (a whole number from 1 to \
                 {MODEL_FORMAT})",
                path.display()
            ),
        },
    }
    let mut model: Model = serde_json::from_value(probe)
        .with_context(|| format!("{}: not a valid vmmon model", path.display()))?;
    model
        .check()
        .map_err(|e| anyhow::anyhow!("{}: model file inconsistent: {e}", path.display()))?;
    // Stability follows from the coefficients, whatever the file says of it (it may have
    // been edited): recompute it.
    model.pole_magnitudes = arx::poles(&model.a).iter().map(|p| p.norm()).collect();
    model.stable = model.pole_magnitudes.iter().all(|m| *m < 1.0);
    Ok(model)
}

/// Runs `vmmon reconstruct`: simulates the model's output from the inputs of a trace.
pub fn reconstruct(mut a: ReconstructArgs) -> anyhow::Result<i32> {
    let model = load_model(&a.model)?;
    no_detrend(&a.trace, "reconstruct")?;
    a.trace.rates |= model.rates;
    let series = a.trace.read(&model.inputs, Detrend::None)?;
    if (series.step - model.sample_time).abs() > 1e-6 * model.sample_time.max(1e-9) {
        eprintln!(
            "vmmon: warning: the trace's step {} s differs from the model's sample time {} s",
            series.step, model.sample_time
        );
    }
    if !model.stable {
        eprintln!("vmmon: warning: the model is unstable: its simulation diverges");
    }
    let mut csv = format!("time,{}\n", model.output);
    let (mut estimated, mut overflowed) = (0usize, 0usize);
    let t0 = model.orders.t0();
    for seg in &series.segments {
        let centred: Vec<Vec<f64>> = seg
            .columns
            .iter()
            .zip(&model.offsets.inputs)
            .map(|(c, m)| c.iter().map(|v| v - m).collect())
            .collect();
        let us: Vec<&[f64]> = centred.iter().map(Vec::as_slice).collect();
        let sim = model.simulate(&us, None);
        for (i, v) in sim.iter().enumerate() {
            let t = seg.start_time + i as f64 * series.step;
            let level = v + model.offsets.output;
            if level.is_finite() {
                estimated += 1;
                let _ = writeln!(csv, "{t:.6},{level}");
            } else {
                // Before the model's first estimate (NaN), or diverged past f64 (±inf): no
                // value, which a CSV says with an empty cell.
                overflowed += usize::from(i >= t0);
                let _ = writeln!(csv, "{t:.6},");
            }
        }
    }
    if estimated == 0 && overflowed == 0 {
        let longest = series.segments.iter().map(|s| s.len()).max().unwrap_or(0);
        anyhow::bail!(
            "{}: no row can be reconstructed: the model needs {} rows before its first \
             estimate, and the longest run of rows without a gap has {longest}",
            a.trace.data,
            t0
        );
    }
    if overflowed > 0 {
        eprintln!(
            "vmmon: warning: {overflowed} simulated values overflowed (the simulation diverged) \
             and are left empty"
        );
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, csv).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::stdout().lock().write_all(csv.as_bytes())?,
    }
    Ok(0)
}
