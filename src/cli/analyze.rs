//! `vmmon xcorr` and `vmmon impulse`: trace options shared by the analysis commands, and the
//! CSV/JSON/stderr output of their results.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::sysid::impulse::{self, ImpulseEstimate, Method};
use crate::sysid::stats::Detrend;
use crate::sysid::xcorr::{self, CrossCorrelation};
use crate::trace::read::{self, Bound, Gaps, ReadOptions, Series};

/// How a trace is read and prepared (shared by the analysis commands).
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace to analyse (CSV with a header), or - for standard input.
    #[arg(value_name = "DATA")]
    pub(crate) data: String,

    /// First sample analysed: a time (Unix seconds or RFC 3339) or a row index #N.
    #[arg(long, value_name = "TIME|#ROW")]
    from: Option<Bound>,

    /// Last sample analysed (inclusive): a time or a row index #N.
    #[arg(long, value_name = "TIME|#ROW")]
    to: Option<Bound>,

    /// Turn cumulative `*_total` columns into per-second rates first.
    #[arg(long)]
    pub(crate) rates: bool,

    /// Trend removed from each series before analysis (default: mean; for `fit`, the means
    /// are removed by the fit itself and kept in the model).
    #[arg(long, value_enum)]
    pub(crate) detrend: Option<Detrend>,

    /// Missing cells and time gaps: refuse, interpolate short gaps, use every clean segment
    /// (lags never cross a gap), or only the longest one.
    #[arg(long, value_enum, default_value_t = Gaps::Error)]
    gaps: Gaps,

    /// Longest run of missing samples that `--gaps interpolate` fills.
    #[arg(long, default_value_t = 5, value_name = "SAMPLES")]
    max_gap: usize,

    /// Column holding each row's time (`elapsed`, the monotonic one, survives wall-clock
    /// steps).
    #[arg(long, default_value = "time", value_name = "COLUMN")]
    time_column: String,

    /// Relative deviation from the median time step reported as non-uniform sampling.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    tolerance: f64,
}

impl TraceArgs {
    /// The detrending in force: the user's, or the command's default.
    pub fn detrend_or(&self, default: Detrend) -> Detrend {
        self.detrend.unwrap_or(default)
    }

    pub(crate) fn options(&self, detrend: Detrend) -> anyhow::Result<ReadOptions> {
        if !(self.tolerance > 0.0 && self.tolerance < 0.5) {
            return Err(usage(format!(
                "--tolerance {} must be between 0 and 0.5",
                crate::trace::shown(self.tolerance)
            )));
        }
        Ok(ReadOptions {
            from: self.from,
            to: self.to,
            rates: self.rates,
            gaps: self.gaps,
            max_gap: self.max_gap,
            tolerance: self.tolerance,
            detrend,
            time_column: self.time_column.clone(),
        })
    }

    /// Reads `names`, detrended by `detrend`, printing the reader's notes on stderr.
    pub fn read(&self, names: &[String], detrend: Detrend) -> anyhow::Result<Series> {
        let series = read::read_series(&self.data, names, &self.options(detrend)?)?;
        for note in &series.notes {
            eprintln!("vmmon: note: {note}");
        }
        Ok(series)
    }
}

/// Where a result CSV and its JSON summary go.
#[derive(Debug, Args)]
pub struct OutArgs {
    /// Write the result CSV to FILE instead of standard output.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,

    /// Also write a JSON summary to FILE (- for standard output, with --out).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl OutArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.json.as_ref().is_some_and(|j| j.as_os_str() == "-") && self.out.is_none() {
            return Err(usage(
                "--json - needs --out FILE: standard output already carries the CSV".into(),
            ));
        }
        Ok(())
    }

    fn write(&self, csv: &str, summary: &impl serde::Serialize) -> anyhow::Result<()> {
        match &self.out {
            Some(p) => {
                std::fs::write(p, csv).with_context(|| format!("cannot write {}", p.display()))?
            }
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(csv.as_bytes())?;
                out.flush()?;
            }
        }
        if let Some(p) = &self.json {
            let text = serde_json::to_string_pretty(summary)? + "\n";
            if p.as_os_str() == "-" {
                std::io::stdout().lock().write_all(text.as_bytes())?;
            } else {
                std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
            }
        }
        Ok(())
    }
}

/// Refuses (usage error) inputs and an output that cannot make a model: an empty name, the
/// output among the inputs, or (unless `repeats`) an input given twice. `fit` allows a
/// repeat, since one input at two delays is a structure of its own; with the same orders the
/// regression is singular, and says which term.
pub(crate) fn check_model_columns(
    inputs: &[String],
    output: &str,
    repeats: bool,
) -> anyhow::Result<()> {
    if output.trim().is_empty() || inputs.iter().any(|n| n.trim().is_empty()) {
        return Err(usage(
            "a column name is empty: give names separated by commas, as -u a,b".into(),
        ));
    }
    for (i, n) in inputs.iter().enumerate() {
        if !repeats && inputs[..i].contains(n) {
            return Err(usage(format!("input column {n} is given twice")));
        }
    }
    if inputs.iter().any(|n| n == output) {
        return Err(usage(format!("{output} is both an input and the output")));
    }
    Ok(())
}

/// A usage error (exit code 2) with this message.
pub fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::record::UsageError(msg))
}

/// The input and output columns of a model or response (one definition for every command).
#[derive(Debug, Args)]
pub struct ModelColumns {
    /// Input column(s), comma-separated.
    #[arg(
        short = 'u',
        long,
        value_delimiter = ',',
        required = true,
        value_name = "COLUMNS"
    )]
    pub input: Vec<String>,

    /// Output column.
    #[arg(short = 'y', long, value_name = "COLUMN")]
    pub output: String,
}

/// Options of `vmmon xcorr`.
#[derive(Debug, Args)]
pub struct XcorrArgs {
    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    out: OutArgs,

    /// Input column (the series that leads at positive lags).
    #[arg(short = 'u', long, value_name = "COLUMN")]
    input: String,

    /// Output column (not needed with --auto).
    #[arg(
        short = 'y',
        long,
        value_name = "COLUMN",
        required_unless_present = "auto"
    )]
    output: Option<String>,

    /// Largest lag, in samples, on each side.
    #[arg(short = 'L', long, default_value_t = 50, value_name = "SAMPLES")]
    max_lag: usize,

    /// Autocorrelation of the input column.
    #[arg(long, conflicts_with = "output")]
    auto: bool,
}

/// Summary of a cross-correlation, for stderr and `--json`.
#[derive(Debug, serde::Serialize)]
struct XcorrReport<'a> {
    input: &'a str,
    output: &'a str,
    detrend: Detrend,
    step_s: f64,
    segments: usize,
    #[serde(flatten)]
    summary: xcorr::Summary,
    notes: &'a [String],
}

/// Runs `vmmon xcorr`.
pub fn xcorr(a: XcorrArgs) -> anyhow::Result<i32> {
    let output = if a.auto {
        a.input.clone()
    } else {
        a.output.clone().unwrap_or_default()
    };
    let mut names = vec![a.input.clone()];
    if output != a.input {
        names.push(output.clone());
    }
    a.out.check()?;
    let detrend = a.trace.detrend_or(Detrend::Mean);
    let series = a.trace.read(&names, detrend)?;
    let yi = names.len() - 1;
    let pairs: Vec<(&[f64], &[f64])> = series
        .segments
        .iter()
        .map(|s| (s.columns[0].as_slice(), s.columns[yi].as_slice()))
        .collect();
    let cc = xcorr::cross_correlation(&pairs, a.max_lag, (&a.input, &output))?;
    let summary = cc.summary(a.auto);
    let mut csv = String::from("lag,lag_s,xcov,xcorr,bound\n");
    for i in 0..cc.lags.len() {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            cc.lags[i],
            cc.lags[i] as f64 * series.step,
            cc.xcov[i],
            cc.xcorr[i],
            cc.bound
        );
    }
    eprintln!(
        "{}",
        describe_xcorr(&a.input, &output, &cc, &summary, series.step)
    );
    let report = XcorrReport {
        input: &a.input,
        output: &output,
        detrend,
        step_s: series.step,
        segments: series.segments.len(),
        summary,
        notes: &series.notes,
    };
    a.out.write(&csv, &report)?;
    Ok(0)
}

fn describe_xcorr(
    u: &str,
    y: &str,
    cc: &CrossCorrelation,
    s: &xcorr::Summary,
    step: f64,
) -> String {
    let lead = match s.peak_lag {
        0 => "at lag 0".to_string(),
        k if k > 0 => format!("at lag +{k} ({u} leads {y} by {} s)", k as f64 * step),
        k => format!("at lag {k} ({y} leads {u} by {} s)", -k as f64 * step),
    };
    format!(
        "xcorr {u} → {y}: {} samples, peak r = {:.4} {lead}; 99% bound ±{:.4}; {} of {} lags \
         significant",
        cc.n,
        s.peak_value,
        s.bound,
        s.significant_lags.len(),
        cc.lags.len()
    )
}

/// Options of `vmmon impulse`.
#[derive(Debug, Args)]
pub struct ImpulseArgs {
    #[command(flatten)]
    trace: TraceArgs,

    #[command(flatten)]
    out: OutArgs,

    #[command(flatten)]
    cols: ModelColumns,

    /// Largest lag M of the impulse response, in samples.
    #[arg(short = 'M', long, default_value_t = 20, value_name = "SAMPLES")]
    lags: usize,

    /// Estimation method.
    #[arg(long, value_enum, default_value_t = Method::Cra)]
    method: Method,

    /// Order of the AR prewhitening filter fitted on each input (0: none; correlation
    /// analysis only).
    #[arg(long, default_value_t = 10, value_name = "ORDER")]
    prewhiten: usize,
}

/// The JSON of `vmmon impulse`: the estimate and how the data were prepared.
#[derive(Debug, serde::Serialize)]
struct ImpulseReport<'a> {
    output: &'a str,
    detrend: Detrend,
    step_s: f64,
    notes: &'a [String],
    #[serde(flatten)]
    estimate: &'a ImpulseEstimate,
}

/// Runs `vmmon impulse`.
pub fn impulse(a: ImpulseArgs) -> anyhow::Result<i32> {
    let mut names = a.cols.input.clone();
    check_model_columns(&names, &a.cols.output, false)?;
    names.push(a.cols.output.clone());
    a.out.check()?;
    let detrend = a.trace.detrend_or(Detrend::Mean);
    let series = a.trace.read(&names, detrend)?;
    if series.segments.len() > 1 {
        eprintln!(
            "vmmon: note: impulse responses use the longest of {} segments",
            series.segments.len()
        );
    }
    let seg = series
        .segments
        .iter()
        .max_by_key(|s| s.len())
        .context("no samples")?;
    let k = a.cols.input.len();
    let inputs: Vec<(&str, &[f64])> = a
        .cols
        .input
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), seg.columns[i].as_slice()))
        .collect();
    let est = impulse::estimate(
        &inputs,
        (&a.cols.output, &seg.columns[k]),
        a.lags,
        a.method,
        a.prewhiten,
    )?;
    eprint!("{}", describe_impulse(&est, &a.cols.output, series.step));
    let report = ImpulseReport {
        output: &a.cols.output,
        detrend,
        step_s: series.step,
        notes: &series.notes,
        estimate: &est,
    };
    a.out.write(&impulse_csv(&est, series.step), &report)?;
    Ok(0)
}

/// The CSV of an impulse estimate: one row per lag; per input g, sd (FIR), bound and step.
pub fn impulse_csv(est: &ImpulseEstimate, step: f64) -> String {
    let single = est.responses.len() == 1;
    let name = |what: &str, input: &str| {
        if single {
            what.to_string()
        } else {
            format!("{what}.{input}")
        }
    };
    let mut head = vec!["lag".to_string(), "lag_s".to_string()];
    for r in &est.responses {
        head.push(name("g", &r.input));
        if r.sd.is_some() {
            head.push(name("sd", &r.input));
        }
        head.push(name("bound", &r.input));
        head.push(name("step", &r.input));
    }
    let mut csv = head.join(",") + "\n";
    for lag in 0..=est.lags {
        let _ = write!(csv, "{lag},{}", lag as f64 * step);
        for r in &est.responses {
            let _ = write!(csv, ",{}", r.g[lag]);
            if let Some(sd) = &r.sd {
                let _ = write!(csv, ",{}", sd[lag]);
            }
            let _ = write!(csv, ",{},{}", r.bound[lag], r.step[lag]);
        }
        csv.push('\n');
    }
    csv
}

fn describe_impulse(est: &ImpulseEstimate, output: &str, step: f64) -> String {
    let mut s = String::new();
    for r in &est.responses {
        let (peak, g) =
            r.g.iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map_or((0, 0.0), |(i, v)| (i, *v));
        let delay = r.g.iter().zip(&r.bound).position(|(g, b)| g.abs() > *b);
        let _ = writeln!(
            s,
            "impulse {} → {output} ({}, {} samples): peak g = {g:.4} at lag {peak} ({} s); \
             first significant lag {}; static gain (step at lag {}) {:.4}",
            r.input,
            match est.method {
                Method::Cra => format!(
                    "correlation analysis, AR({}) prewhitening",
                    r.prewhitening.len()
                ),
                Method::Fir => "FIR least squares".into(),
            },
            est.n,
            peak as f64 * step,
            delay.map_or("none".into(), |d| d.to_string()),
            est.lags,
            r.step.last().copied().unwrap_or(0.0)
        );
    }
    s
}
