//! The figure of each kind of result, from its data: what is drawn, in which panel, with
//! which labels. Pure functions from data to [`Figure`], so they can be tested and reused
//! without files.

use super::input::Criterion;
use super::{BOUND_GREY, Figure, Layer, Mark, PALETTE, Panel, Rgb};

/// One trace file's columns over time.
#[derive(Debug, Clone)]
pub struct TraceSet {
    /// Where it came from (named in the legend when several files are drawn).
    pub source: String,
    /// Unix seconds of each row.
    pub time: Vec<f64>,
    /// (name, values with NaN for empty cells) per column drawn.
    pub columns: Vec<(String, Vec<f64>)>,
    /// Every column of the file but time and elapsed, for error messages.
    pub available: Vec<String>,
}

/// `t` as RFC 3339 UTC, to the second (or the number itself if it is no plausible time).
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9).round().min(999_999_999.0) as u32;
    chrono::DateTime::from_timestamp(secs as i64, nanos).map_or_else(
        || format!("{t}"),
        |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The file name of a path, for legends and captions.
fn base(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |f| f.to_string_lossy().into_owned())
}

/// Trace columns over time: x is seconds since the earliest first row; an empty cell breaks
/// the line.
pub fn trace(sets: &[TraceSet]) -> Figure {
    let t0 = sets
        .iter()
        .filter_map(|s| s.time.iter().copied().find(|t| t.is_finite()))
        .fold(f64::INFINITY, f64::min);
    let several = sets.len() > 1;
    let mut panel = Panel::new("time since the first row (s)", "value");
    let mut names = Vec::new();
    for s in sets {
        let x: Vec<f64> = s.time.iter().map(|t| t - t0).collect();
        for (name, y) in &s.columns {
            let label = if several {
                format!("{} ({})", name, base(&s.source))
            } else {
                name.clone()
            };
            names.push(name.clone());
            panel.push(Layer::line(label, x.clone(), y.clone()));
        }
    }
    if names.len() == 1 {
        panel.y_label = names[0].clone();
    }
    let sources: Vec<String> = sets.iter().map(|s| base(&s.source)).collect();
    let title = match names.len() {
        1 => format!("{} over time", names[0]),
        n => format!("{n} columns over time"),
    };
    let caption = if t0.is_finite() {
        format!(
            "time 0 = {} (first row); {}; empty cells are gaps",
            rfc3339(t0),
            sources.join(", ")
        )
    } else {
        sources.join(", ")
    };
    Figure::new(title, vec![vec![panel]]).caption(caption)
}

/// A cross-correlation as written by `vmmon xcorr -o`.
#[derive(Debug, Clone)]
pub struct XcorrData {
    /// Lag of each value, in seconds (positive: the input leads).
    pub lag_s: Vec<f64>,
    /// Normalised cross-correlation at each lag.
    pub xcorr: Vec<f64>,
    /// The 99% bound for independent white series.
    pub bound: f64,
    /// Input column, if known (from the JSON summary).
    pub input: Option<String>,
    /// Output column, if known.
    pub output: Option<String>,
    /// Where it came from.
    pub source: String,
}

/// Stems of the correlation at each lag, the ±bound band, and the peak marked.
pub fn xcorr(d: &XcorrData) -> Figure {
    let auto = d.input.is_some() && d.input == d.output;
    let title = match (&d.input, &d.output) {
        (Some(u), _) if auto => format!("Autocorrelation of {u}"),
        (Some(u), Some(y)) => format!("Cross-correlation {u} → {y}"),
        _ => format!("Cross-correlation ({})", base(&d.source)),
    };
    let mut p = Panel::new(
        if auto {
            "lag (s)"
        } else {
            "lag (s); positive: the input leads"
        },
        "correlation",
    );
    p.push(bound_band(&d.lag_s, |_| d.bound, "99% bound"));
    p.push(Layer::stems(
        "correlation",
        d.lag_s.clone(),
        d.xcorr.clone(),
    ));
    // The peak, leaving out lag 0 of an autocorrelation (always 1).
    let peak = d
        .lag_s
        .iter()
        .zip(&d.xcorr)
        .filter(|(l, r)| r.is_finite() && !(auto && **l == 0.0))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    if let Some((&l, &r)) = peak {
        p.push(
            Layer::new(
                Some(format!("peak r = {r:.3} at {l} s")),
                Mark::Highlight,
                vec![l],
                vec![r],
            )
            .color(PALETTE[3]),
        );
    }
    Figure::new(title, vec![vec![p]]).caption(format!(
        "99% bound ±{:.4} for independent white series; {}",
        d.bound,
        base(&d.source)
    ))
}

/// A shaded ±bound band around zero over `x`.
fn bound_band(x: &[f64], bound: impl Fn(usize) -> f64, label: &str) -> Layer {
    let hi: Vec<f64> = (0..x.len()).map(&bound).collect();
    let lo = hi.iter().map(|b| -b).collect();
    Layer::band(label, x.to_vec(), lo, hi).color(BOUND_GREY)
}

/// One input's impulse response as written by `vmmon impulse`.
#[derive(Debug, Clone)]
pub struct Response {
    /// Input column, if known.
    pub input: Option<String>,
    /// Impulse response at each lag.
    pub g: Vec<f64>,
    /// Standard deviation of each g (FIR least squares).
    pub sd: Option<Vec<f64>>,
    /// 99% bound of each g.
    pub bound: Option<Vec<f64>>,
    /// Step response (cumulative sum of g).
    pub step: Option<Vec<f64>>,
}

/// An impulse estimate: lags and one response per input.
#[derive(Debug, Clone)]
pub struct ImpulseData {
    /// Lag of each value, in seconds.
    pub lag_s: Vec<f64>,
    /// Output column, if known.
    pub output: Option<String>,
    /// One response per input.
    pub responses: Vec<Response>,
    /// Where it came from.
    pub source: String,
}

/// Impulse response (stems, ±bound band, ±sd band) over the step response.
pub fn impulse(d: &ImpulseData) -> Figure {
    let many = d.responses.len() > 1;
    let mut gp = Panel::new("lag (s)", "impulse response g").titled("Impulse response");
    let mut sp = Panel::new("lag (s)", "step response").titled("Step response");
    for (i, r) in d.responses.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let name = r.input.clone().unwrap_or_else(|| "g".into());
        let suffix = if many {
            format!(" ({name})")
        } else {
            String::new()
        };
        if let Some(b) = &r.bound {
            let band = bound_band(&d.lag_s, |k| b.get(k).copied().unwrap_or(f64::NAN), "");
            let band = Layer {
                label: Some(format!("99% bound{suffix}")),
                color: Some(if many { lighter(c) } else { BOUND_GREY }),
                ..band
            };
            gp.push(band);
        }
        if let Some(sd) = &r.sd {
            let lo = r.g.iter().zip(sd).map(|(g, s)| g - s).collect();
            let hi = r.g.iter().zip(sd).map(|(g, s)| g + s).collect();
            gp.push(
                Layer::new(
                    Some(format!("g ± sd{suffix}")),
                    Mark::Whiskers(hi),
                    d.lag_s.clone(),
                    lo,
                )
                .color(c),
            );
        }
        let label = match &r.input {
            Some(u) => format!("g from {u}"),
            None => "g".into(),
        };
        gp.push(Layer::stems(label, d.lag_s.clone(), r.g.clone()).color(c));
        let step = r.step.clone().unwrap_or_else(|| {
            r.g.iter()
                .scan(0.0, |acc, g| {
                    *acc += g;
                    Some(*acc)
                })
                .collect()
        });
        let label = match &r.input {
            Some(u) => format!("step from {u}"),
            None => "step".into(),
        };
        sp.push(Layer::line(label, d.lag_s.clone(), step).color(c));
    }
    let inputs: Vec<String> = d.responses.iter().filter_map(|r| r.input.clone()).collect();
    let title = match (&d.output, inputs.is_empty()) {
        (Some(y), false) => format!("Impulse response {} → {y}", inputs.join(", ")),
        _ => format!("Impulse response ({})", base(&d.source)),
    };
    Figure::new(title, vec![vec![gp], vec![sp]]).caption(format!(
        "shaded: 99% significance bound around zero{}; {}",
        if d.responses.iter().any(|r| r.sd.is_some()) {
            "; bars: ±1 sd of g"
        } else {
            ""
        },
        base(&d.source)
    ))
}

/// A paler shade of `c` (for a per-input bound band).
fn lighter(c: Rgb) -> Rgb {
    let f = |v: u8| (v as f64 + (255.0 - v as f64) * 0.4) as u8;
    Rgb(f(c.0), f(c.1), f(c.2))
}

/// The figures of `vmmon validate --json` that a picture shows.
#[derive(Debug, Clone)]
pub struct ValidationSummary {
    /// Fit % of the free-run simulation.
    pub fit_simulation_pct: f64,
    /// Fit % of the K-step prediction.
    pub fit_prediction_pct: f64,
    /// K.
    pub horizon: usize,
    /// Residual autocorrelation at lags 0..=M.
    pub residual_acf: Vec<f64>,
    /// Input–residual cross-correlation per input at lags −M..=M.
    pub input_residual_xcorr: Vec<Vec<f64>>,
    /// 99% bound.
    pub bound: f64,
    /// The verdict, if given.
    pub pass: Option<bool>,
}

/// A validation as written by `vmmon validate -o` (and `--json`).
#[derive(Debug, Clone)]
pub struct ValidationData {
    /// Unix seconds of each row.
    pub time: Vec<f64>,
    /// Measured output.
    pub measured: Vec<f64>,
    /// Free-run simulation (NaN before t0).
    pub simulated: Vec<f64>,
    /// K-step prediction (NaN before t0).
    pub predicted: Vec<f64>,
    /// The JSON figures, when given.
    pub summary: Option<ValidationSummary>,
    /// Where it came from.
    pub source: String,
}

/// Measured, simulated and predicted output over time; with the JSON, the residual
/// autocorrelation and the input–residual cross-correlations with their ±bound below.
pub fn validation(d: &ValidationData) -> Figure {
    let t0 = d
        .time
        .iter()
        .copied()
        .find(|t| t.is_finite())
        .unwrap_or(0.0);
    let x: Vec<f64> = d.time.iter().map(|t| t - t0).collect();
    let k = d.summary.as_ref().map_or(1, |s| s.horizon);
    let mut top = Panel::new("time since the first row (s)", "output");
    top.push(Layer::line("measured", x.clone(), d.measured.clone()).color(Rgb(40, 40, 40)));
    top.push(Layer::line("simulated (free run)", x.clone(), d.simulated.clone()).color(PALETTE[0]));
    let predicted = if k == 1 {
        "predicted (one step)".to_string()
    } else {
        format!("predicted ({k} steps)")
    };
    top.push(Layer::line(predicted, x, d.predicted.clone()).color(PALETTE[1]));
    let mut rows = vec![vec![top]];
    let title = match &d.summary {
        Some(s) => {
            let m = s.residual_acf.len().saturating_sub(1);
            let lags: Vec<f64> = (0..=m).map(|l| l as f64).collect();
            let mut acf =
                Panel::new("lag (samples)", "autocorrelation").titled("Residual autocorrelation");
            acf.push(bound_band(&lags, |_| s.bound, "99% bound"));
            acf.push(Layer::stems("residual", lags, s.residual_acf.clone()).color(PALETTE[0]));
            let mut xc = Panel::new("lag (samples); positive: input leads", "correlation")
                .titled("Input–residual cross-correlation");
            let m = s
                .input_residual_xcorr
                .first()
                .map_or(0, |v| v.len().saturating_sub(1) / 2) as i64;
            let lags: Vec<f64> = (-m..=m).map(|l| l as f64).collect();
            xc.push(bound_band(&lags, |_| s.bound, "99% bound"));
            for (i, v) in s.input_residual_xcorr.iter().enumerate() {
                xc.push(
                    Layer::stems(format!("input {}", i + 1), lags.clone(), v.clone())
                        .color(PALETTE[(i + 2) % PALETTE.len()]),
                );
            }
            rows.push(vec![acf, xc]);
            format!(
                "Validation: fit {:.1} % simulated, {:.1} % predicted{}",
                s.fit_simulation_pct,
                s.fit_prediction_pct,
                match s.pass {
                    Some(true) => " — PASS",
                    Some(false) => " — FAIL",
                    None => "",
                }
            )
        }
        None => "Validation: measured, simulated and predicted output".into(),
    };
    let caption = match &d.summary {
        Some(s) => format!(
            "time 0 = {}; 99% bound ±{:.4}; {}",
            rfc3339(t0),
            s.bound,
            base(&d.source)
        ),
        None => format!(
            "time 0 = {}; {} (add the validate --json file for the residual tests)",
            rfc3339(t0),
            base(&d.source)
        ),
    };
    Figure::new(title, rows).caption(caption)
}

/// An order search as written by `vmmon order -o`: one row per candidate.
#[derive(Debug, Clone)]
pub struct OrderGrid {
    /// Poles of each candidate.
    pub na: Vec<f64>,
    /// Zeros of each candidate.
    pub nb: Vec<f64>,
    /// Delay of each candidate.
    pub nk: Vec<f64>,
    /// Parameters of each candidate.
    pub d: Vec<f64>,
    /// The criterion's value for each candidate.
    pub values: Vec<f64>,
    /// Which criterion.
    pub criterion: Criterion,
    /// Where it came from.
    pub source: String,
}

/// The criterion against d, one colour per delay, the best of each size joined by a line,
/// and the best candidate ringed.
pub fn order(g: &OrderGrid) -> Figure {
    let name = match g.criterion {
        Criterion::Validation => "validation loss",
        c => c.column(),
    };
    let mut p = Panel::new("parameters d = na + Σ nb", name);
    // Losses are positive and a bad delay can cost decades: a log axis keeps the good
    // candidates apart (the renderer keeps it linear for AIC's signed values).
    p.y_log = true;
    let mut delays: Vec<f64> = g.nk.iter().copied().filter(|v| v.is_finite()).collect();
    delays.sort_by(f64::total_cmp);
    delays.dedup();
    let ok = |i: usize| g.values[i].is_finite() && g.d[i].is_finite();
    // The best of each size, as a line: where adding parameters stops paying.
    let mut sizes: Vec<f64> = (0..g.d.len()).filter(|&i| ok(i)).map(|i| g.d[i]).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    let best_of: Vec<f64> = sizes
        .iter()
        .map(|&s| {
            (0..g.d.len())
                .filter(|&i| ok(i) && g.d[i] == s)
                .map(|i| g.values[i])
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    p.push(Layer::line("best of each size", sizes, best_of).color(Rgb(160, 160, 160)));
    // Each delay's points sit side by side around their d, so that equal values stay visible.
    let shift = |i: usize| -> f64 {
        match delays.iter().position(|&k| k == g.nk[i]) {
            Some(j) if delays.len() <= PALETTE.len() => {
                (j as f64 - (delays.len() as f64 - 1.0) / 2.0) * 0.1
            }
            _ => 0.0,
        }
    };
    if delays.len() <= PALETTE.len() {
        for (j, &nk) in delays.iter().enumerate() {
            let idx: Vec<usize> = (0..g.d.len()).filter(|&i| ok(i) && g.nk[i] == nk).collect();
            p.push(
                Layer::new(
                    Some(format!("nk = {nk}")),
                    Mark::Points,
                    idx.iter().map(|&i| g.d[i] + shift(i)).collect(),
                    idx.iter().map(|&i| g.values[i]).collect(),
                )
                .color(PALETTE[j]),
            );
        }
    } else {
        let idx: Vec<usize> = (0..g.d.len()).filter(|&i| ok(i)).collect();
        p.push(
            Layer::new(
                Some("candidates".into()),
                Mark::Points,
                idx.iter().map(|&i| g.d[i]).collect(),
                idx.iter().map(|&i| g.values[i]).collect(),
            )
            .color(PALETTE[0]),
        );
    }
    let best = (0..g.d.len())
        .filter(|&i| ok(i))
        .min_by(|&a, &b| g.values[a].total_cmp(&g.values[b]));
    let mut title = format!("Order search: {name} against model size");
    if let Some(b) = best {
        let desc = format!(
            "na={} nb={} nk={} (d={})",
            g.na[b], g.nb[b], g.nk[b], g.d[b]
        );
        p.push(
            Layer::new(
                Some(format!("best: {desc}")),
                Mark::Highlight,
                vec![g.d[b] + shift(b)],
                vec![g.values[b]],
            )
            .color(PALETTE[3]),
        );
        title = format!("Order search by {name}: best {desc}");
    }
    let n = (0..g.d.len()).filter(|&i| ok(i)).count();
    Figure::new(title, vec![vec![p]]).caption(format!(
        "{n} candidates, smaller is better; each delay's points are side by side at their d; {}",
        base(&g.source)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_unix_seconds() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000.25), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn order_marks_the_smallest_value() {
        let g = OrderGrid {
            na: vec![1.0, 2.0, 3.0],
            nb: vec![1.0, 2.0, 3.0],
            nk: vec![1.0, 1.0, 2.0],
            d: vec![2.0, 4.0, 6.0],
            values: vec![5.0, 3.0, f64::NAN],
            criterion: Criterion::Aic,
            source: "o.csv".into(),
        };
        let f = order(&g);
        assert!(f.title.contains("na=2 nb=2 nk=1 (d=4)"), "{}", f.title);
        let best = f.rows[0][0]
            .layers
            .iter()
            .find(|l| l.mark == Mark::Highlight)
            .expect("best marked");
        // Two delays: nk = 1 sits just left of its d.
        assert_eq!((best.x[0], best.y[0]), (3.95, 3.0));
    }
}
