//! The analysis of a run folder: per scenario, per guest, align → xcorr → impulse → order (or
//! fit) → validate → reconstruct → figures.
//!
//! Every step is the `vmmon` command a user would type, spawned with the scenario folder as
//! its working directory and relative paths. So each file is exactly what that command writes,
//! the report can list the commands that reproduce it, and the command line (its defaults,
//! sidecars and messages) is what gets exercised. A process per step costs a few milliseconds
//! next to the minutes a scenario records.
//!
//! Error policy: a step that fails fails its guest, never the run. Steps that need its output
//! are skipped (saying why), independent ones still run, other guests and scenarios go on, and
//! [`Report::errors`] lists what failed. Figures are best-effort: a plot that cannot be drawn
//! is a warning ([`Report::warnings`]), not an error. The report is rewritten after every
//! scenario, so a crash keeps what was analysed.
//!
//! The run folder (written by the recording stage):
//!
//! ```text
//! OUT/experiment.json          run facts ([`RunInfo`])
//! OUT/SCENARIO/scenario.json   the scenario ([`ScenarioInfo`])
//! OUT/SCENARIO/host.csv        the host's `vmmon record --vms`
//! OUT/SCENARIO/vm1.csv         each guest's own `vmmon record --vms --clock-ref …`
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sysid::arx::{self, Model, RESIDUAL_LAGS};

pub use super::folder::{RunInfo, ScenarioInfo, files};
pub use crate::sysid::order::Criterion;

/// The share of each scenario's rows the model is estimated on; the rest is held out.
pub const ESTIMATE_FRACTION: f64 = 2.0 / 3.0;

/// ARX orders given by the user (one input: the host's view of the guest's vCPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    /// Poles.
    pub na: usize,
    /// Zeros (B coefficients).
    pub nb: usize,
    /// Delay in samples.
    pub nk: usize,
}

/// How the analysis runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `vmmon` binary each step runs (default: the running executable).
    pub vmmon: PathBuf,
    /// ARX orders to fit with `vmmon fit`; `None`: chosen by `vmmon order` on the estimation
    /// rows.
    pub orders: Option<Orders>,
    /// How `vmmon order` ranks the candidates (default MDL). MDL and not the held-out loss
    /// (`Val`), for two reasons: rows that chose the model would no longer be held out, so
    /// its validation figures would flatter it; and on a nested grid the held-out one-step
    /// loss has no penalty for size, so it picks a larger model that contains the true one
    /// (on the synthetic ARX(1,1,1) of the tests it chose (3,4,0); AIC, MDL and FPE chose
    /// (1,1,1)). The held-out loss of every candidate is still in `G.order.csv`.
    pub criterion: Criterion,
    /// Draw the figures with `vmmon plot`.
    pub plots: bool,
    /// Set non-zero (by a signal handler, to the signal's number) to stop between steps;
    /// the analysis then ends with [`super::Stopped`].
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

impl Options {
    /// The signal that stopped the analysis, if one did.
    fn stopped(&self) -> Option<usize> {
        self.stop
            .as_ref()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|&s| s != 0)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vmmon: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vmmon")),
            orders: None,
            criterion: Criterion::Mdl,
            plots: true,
            stop: None,
        }
    }
}

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "message", rename_all = "lowercase")]
pub enum Outcome {
    /// It ran and succeeded.
    Done,
    /// It ran and failed, or its output could not be read: why.
    Failed(String),
    /// It did not run: why.
    Skipped(String),
}

/// One `vmmon` command of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// What it does (`align`, `xcorr`, …).
    pub name: String,
    /// Its arguments after `vmmon`, run from the scenario folder.
    pub args: Vec<String>,
    /// What became of it.
    pub outcome: Outcome,
}

/// A figure drawn by `vmmon plot`, in the scenario folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// The guest it belongs to (`None`: the scenario's).
    pub guest: Option<String>,
    /// File name (SVG).
    pub file: String,
    /// Caption.
    pub caption: String,
    /// The plot command.
    pub step: Step,
}

/// How `vmmon align` corrected a source's clock (from aligned.csv.meta.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correction {
    /// Source name (`host`, `vm1`).
    pub source: String,
    /// `none`, `clock columns`, `constant`, …, as align names it.
    pub method: String,
    /// Clock probes read.
    pub probes: Option<u64>,
    /// Offset at the first and the last probe, seconds (added to the source's times).
    pub probe_offsets_s: Option<(f64, f64)>,
    /// Drift between them, ppm.
    pub drift_ppm: Option<f64>,
    /// Constant added, seconds.
    pub constant_s: f64,
}

/// The rows analysed, shared by every guest of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// Data rows in aligned.csv.
    pub total_rows: usize,
    /// First row analysed (0-based data row of aligned.csv).
    pub first_row: usize,
    /// Rows analysed, from `first_row`.
    pub rows: usize,
    /// Estimation rows (the first of the analysed rows); the rest are held out.
    pub estimate_rows: usize,
    /// Whether empty cells inside the analysed rows are filled (`--gaps interpolate`).
    pub interpolate: bool,
}

impl Split {
    /// Held-out rows.
    pub fn validation_rows(&self) -> usize {
        self.rows - self.estimate_rows
    }

    /// The reading options every analysis command gets: `--from`/`--to` when empty cells at
    /// either end are left out, `--gaps interpolate` when some inside are filled.
    fn trace_flags(&self, from: usize) -> Vec<String> {
        let mut v = Vec::new();
        if from > 0 {
            v.extend(["--from".to_string(), format!("#{from}")]);
        }
        let last = self.first_row + self.rows - 1;
        if last + 1 < self.total_rows {
            v.extend(["--to".to_string(), format!("#{last}")]);
        }
        if self.interpolate {
            v.extend(["--gaps".to_string(), "interpolate".to_string()]);
        }
        v
    }
}

/// Mean and largest value of the host's busy CPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BusyStats {
    /// Mean, % of one CPU.
    pub mean_pct: f64,
    /// Largest, % of one CPU.
    pub max_pct: f64,
    /// Samples.
    pub samples: usize,
}

/// The peak of `vmmon xcorr`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct XcorrPeak {
    /// Correlation at the peak.
    pub r: f64,
    /// Lag of the peak, samples (positive: the host's vCPU leads the guest).
    pub lag: i64,
    /// Lag of the peak, seconds.
    pub lag_s: f64,
    /// 99% bound of independent white series.
    pub bound: f64,
}

/// What `vmmon validate` reports on the held-out rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationFigures {
    /// Samples validated on.
    pub n: usize,
    /// One-step prediction fit %.
    pub fit_prediction_pct: f64,
    /// Free-run simulation fit %.
    pub fit_simulation_pct: f64,
    /// Residual autocorrelation lags outside the 99% bound.
    pub acf_outside: Vec<usize>,
    /// How many are allowed by chance.
    pub allowed_acf: usize,
    /// Input–residual cross-correlation lags outside the bound, per input.
    pub xcorr_outside: Vec<Vec<i64>>,
    /// How many are allowed by chance.
    pub allowed_xcorr: usize,
    /// The verdict.
    pub pass: bool,
}

/// One guest of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestResult {
    /// Name (`vm1`).
    pub name: String,
    /// The input column: the host's view of the guest's vCPUs.
    pub input: String,
    /// The output column: the guest's own busy CPU.
    pub output: String,
    /// The load run in it, if any.
    pub load: Option<String>,
    /// The first failure, if any.
    pub error: Option<String>,
    /// The commands, in order.
    pub steps: Vec<Step>,
    /// Peak of the cross-correlation.
    pub xcorr: Option<XcorrPeak>,
    /// Orders of the model.
    pub orders: Option<Orders>,
    /// Whether `vmmon order` chose them (else the user gave them).
    pub orders_searched: bool,
    /// Figures on the held-out rows.
    pub validation: Option<ValidationFigures>,
    /// Fit % of the reconstruction from host data alone, on the held-out rows.
    pub reconstruction_fit_pct: Option<f64>,
    /// Remarks that are not failures (a step skipped for short data).
    pub notes: Vec<String>,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// Folder name.
    pub name: String,
    /// Its scenario.json (name only when it could not be read).
    pub info: ScenarioInfo,
    /// A failure of the scenario as a whole (unreadable description, align failed).
    pub error: Option<String>,
    /// The host's busy CPU over the scenario (from host.csv).
    pub host_busy: Option<BusyStats>,
    /// The rows analysed.
    pub split: Option<Split>,
    /// How align corrected each source's clock.
    pub corrections: Vec<Correction>,
    /// Scenario-wide commands (align).
    pub steps: Vec<Step>,
    /// Each guest.
    pub guests: Vec<GuestResult>,
    /// Figures.
    pub figures: Vec<Figure>,
    /// Remarks that are not failures.
    pub notes: Vec<String>,
}

/// The analysis of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// experiment.json.
    pub run: RunInfo,
    /// The orders the user gave, if any.
    pub orders: Option<Orders>,
    /// How `vmmon order` ranked candidates (when no orders were given).
    pub criterion: Criterion,
    /// Each scenario, in order.
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    /// Every failure, one line each (`scenario: …` or `scenario/guest: …`).
    pub fn errors(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .run
            .failed
            .iter()
            .map(|(name, e)| format!("{name}: recording failed: {e}"))
            .collect();
        for s in &self.scenarios {
            if let Some(e) = &s.error {
                v.push(format!("{}: {e}", s.name));
            }
            for g in &s.guests {
                if let Some(e) = &g.error {
                    v.push(format!("{}/{}: {e}", s.name, g.name));
                }
            }
        }
        v
    }

    /// Figures not drawn, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut v = Vec::new();
        for s in &self.scenarios {
            for f in &s.figures {
                if let Outcome::Failed(e) = &f.step.outcome {
                    v.push(format!("{}: figure {} not drawn: {e}", s.name, f.file));
                }
            }
        }
        v
    }

    /// Whether every step that matters succeeded.
    pub fn ok(&self) -> bool {
        self.errors().is_empty()
    }
}

/// Analyses every scenario of the run folder `dir` and writes `report.md`, `summary.csv` and
/// `summary.json` there, rewritten after each scenario. Fails only when the folder is not a
/// run folder or the report cannot be written; failures of steps are in the report.
pub fn analyze_run(dir: &Path, opts: &Options) -> Result<Report> {
    let path = dir.join(files::EXPERIMENT);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let run: RunInfo = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid experiment.json", path.display()))?;
    let names = if run.scenarios.is_empty() {
        scenario_folders(dir)?
    } else {
        run.scenarios.clone()
    };
    let mut report = Report {
        run,
        orders: opts.orders,
        criterion: opts.criterion,
        scenarios: Vec::new(),
    };
    for name in names {
        let result = analyze_scenario(&dir.join(&name), &report.run, opts);
        if let Some(sig) = opts.stopped() {
            // The interrupted scenario's steps were cut short: it is left out, not reported
            // with failures that were only the signal.
            super::report::write(dir, &report)?;
            return Err(super::Stopped(sig).into());
        }
        report.scenarios.push(result);
        super::report::write(dir, &report)?;
    }
    if report.scenarios.is_empty() {
        super::report::write(dir, &report)?;
    }
    Ok(report)
}

/// Sub-folders holding a scenario.json, by name (when experiment.json lists none).
fn scenario_folders(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        if e.path().join(files::SCENARIO).is_file() {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// Analyses one scenario folder. Never fails: failures are recorded in the result.
pub fn analyze_scenario(dir: &Path, run: &RunInfo, opts: &Options) -> ScenarioResult {
    let name = dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut r = ScenarioResult {
        name: name.clone(),
        info: ScenarioInfo {
            name,
            ..ScenarioInfo::default()
        },
        error: None,
        host_busy: None,
        split: None,
        corrections: Vec::new(),
        steps: Vec::new(),
        guests: Vec::new(),
        figures: Vec::new(),
        notes: Vec::new(),
    };
    let mut log = Log::new(dir);
    match read_info(dir) {
        Ok(info) => r.info = info,
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            return r;
        }
    }
    match busy_stats(&dir.join(files::HOST)) {
        Ok(b) => r.host_busy = b,
        Err(e) => r.notes.push(format!("host busy CPU not summarised: {e:#}")),
    }
    if !r.info.guests.is_empty() {
        analyze_guests(dir, run, opts, &mut r, &mut log);
    }
    if opts.plots {
        draw_figures(dir, opts, &mut r, &mut log);
    }
    log.save(&mut r.notes);
    r
}

fn read_info(dir: &Path) -> Result<ScenarioInfo> {
    let path = dir.join(files::SCENARIO);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut info: ScenarioInfo = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid scenario.json", path.display()))?;
    if let Some(bad) = info.guests.iter().find(|g| !safe_name(g)) {
        anyhow::bail!(
            "{}: guest name '{bad}' is not a column-safe name (letters, digits, _ and -)",
            path.display()
        );
    }
    if info.name.is_empty() {
        info.name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    }
    Ok(info)
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The host's `busy_cpu_pct` over host.csv; `None` when the column is absent.
fn busy_stats(path: &Path) -> Result<Option<BusyStats>> {
    let t = Table::read(path, &["busy_cpu_pct"])?;
    let Some(col) = t.column("busy_cpu_pct") else {
        return Ok(None);
    };
    let v: Vec<f64> = col.iter().flatten().copied().collect();
    if v.is_empty() {
        return Ok(None);
    }
    Ok(Some(BusyStats {
        mean_pct: v.iter().sum::<f64>() / v.len() as f64,
        max_pct: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        samples: v.len(),
    }))
}

/// The columns a guest is analysed on.
fn columns_of(guest: &str) -> (String, String) {
    (
        format!("host.{guest}.vcpu_cpu_pct"),
        format!("{guest}.busy_cpu_pct"),
    )
}

/// Fewest rows a scenario needs: an order search of (1, 1, 1) with something held out.
const MIN_ROWS: usize = 12;

fn analyze_guests(
    dir: &Path,
    run: &RunInfo,
    opts: &Options,
    r: &mut ScenarioResult,
    log: &mut Log,
) {
    // 1. align
    let mut args = vec!["align".to_string(), format!("host={}", files::HOST)];
    for g in &r.info.guests {
        args.push(format!("{g}={g}.csv"));
    }
    if let Some(rate) = r.info.rate_hz.or(run.rate_hz) {
        args.extend(["--rate".to_string(), rate.to_string()]);
    }
    args.extend(["-o".to_string(), files::ALIGNED.to_string()]);
    let aligned = run_step(opts, dir, "align", args, log);
    let ok = aligned.outcome == Outcome::Done;
    let message = match &aligned.outcome {
        Outcome::Failed(e) => Some(e.clone()),
        _ => None,
    };
    r.steps.push(aligned);
    let mut guests: Vec<GuestResult> = r
        .info
        .guests
        .iter()
        .map(|g| {
            let (input, output) = columns_of(g);
            GuestResult {
                name: g.clone(),
                input,
                output,
                load: r.info.guest_load.get(g).cloned(),
                error: None,
                steps: Vec::new(),
                xcorr: None,
                orders: None,
                orders_searched: false,
                validation: None,
                reconstruction_fit_pct: None,
                notes: Vec::new(),
            }
        })
        .collect();
    if !ok {
        r.error = Some(format!("align failed: {}", message.unwrap_or_default()));
        r.guests = guests;
        return;
    }
    match read_corrections(&dir.join(format!("{}.meta.json", files::ALIGNED))) {
        Ok(c) => r.corrections = c,
        Err(e) => r.notes.push(format!("clock corrections not read: {e:#}")),
    }
    // 2. the aligned trace has both sides' columns, and rows to analyse
    let wanted: Vec<String> = guests
        .iter()
        .flat_map(|g| [g.input.clone(), g.output.clone()])
        .collect();
    let wanted_ref: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let table = match Table::read(&dir.join(files::ALIGNED), &wanted_ref) {
        Ok(t) => t,
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            r.guests = guests;
            return;
        }
    };
    for g in &mut guests {
        for col in [&g.input, &g.output] {
            if g.error.is_none() && table.column(col).is_none() {
                let prefix = format!("{}.", col.split('.').next().unwrap_or(""));
                let similar: Vec<&str> = table
                    .header
                    .iter()
                    .filter(|h| h.starts_with(&prefix) && h.contains(&g.name))
                    .map(String::as_str)
                    .collect();
                g.error = Some(format!(
                    "aligned.csv has no column {col} (columns of {prefix}* naming {}: {})",
                    g.name,
                    if similar.is_empty() {
                        "none".to_string()
                    } else {
                        similar.join(", ")
                    }
                ));
            }
        }
    }
    let used: Vec<&[Option<f64>]> = guests
        .iter()
        .filter(|g| g.error.is_none())
        .flat_map(|g| [table.column(&g.input), table.column(&g.output)])
        .flatten()
        .collect();
    let split = match split_rows(&used, table.rows()) {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(e);
            r.guests = guests;
            return;
        }
    };
    r.split = Some(split.clone());
    for g in &mut guests {
        if g.error.is_none() {
            analyze_guest(dir, opts, &split, &table, g, log);
        }
    }
    r.guests = guests;
}

/// The analysed rows: from the first to the last row where every used column has a value,
/// the first [`ESTIMATE_FRACTION`] for estimation.
fn split_rows(columns: &[&[Option<f64>]], total: usize) -> std::result::Result<Split, String> {
    let clean = |i: usize| columns.iter().all(|c| c[i].is_some());
    let first = (0..total).find(|&i| clean(i));
    let last = (0..total).rev().find(|&i| clean(i));
    let (Some(first), Some(last)) = (first, last) else {
        return Err(format!(
            "aligned.csv has no row where the analysed columns all have values ({total} rows)"
        ));
    };
    let rows = last - first + 1;
    if rows < MIN_ROWS {
        return Err(format!(
            "aligned.csv has {rows} usable rows; the analysis needs at least {MIN_ROWS}"
        ));
    }
    let estimate_rows = ((rows as f64) * ESTIMATE_FRACTION).round() as usize;
    Ok(Split {
        total_rows: total,
        first_row: first,
        rows,
        estimate_rows,
        interpolate: (first..=last).any(|i| !clean(i)),
    })
}

/// The largest lag of xcorr and impulse: 20 samples, or a quarter of the rows.
pub fn max_lag(rows: usize) -> usize {
    (rows / 4).clamp(1, 20)
}

/// The default order grid (highest na, nb, nk searched; na and nk from 0, nb from 1): the
/// largest of a few that leaves the estimation rows at least three per parameter of its
/// largest candidate, counting the rows its lags use up.
pub fn default_grid(estimate_rows: usize) -> Orders {
    const GRIDS: [(usize, usize, usize); 5] =
        [(4, 4, 3), (3, 3, 2), (2, 2, 2), (1, 2, 1), (1, 1, 1)];
    let need = |(na, nb, nk): (usize, usize, usize)| 3 * (na.max(nk + nb - 1) + na + nb);
    let (na, nb, nk) = GRIDS
        .into_iter()
        .find(|&g| estimate_rows >= need(g))
        .unwrap_or(GRIDS[GRIDS.len() - 1]);
    Orders { na, nb, nk }
}

fn analyze_guest(
    dir: &Path,
    opts: &Options,
    split: &Split,
    table: &Table,
    g: &mut GuestResult,
    log: &mut Log,
) {
    let name = g.name.clone();
    let flags = split.trace_flags(split.first_row);
    let (input, output) = (g.input.clone(), g.output.clone());
    let cols = || {
        vec![
            "-u".to_string(),
            input.clone(),
            "-y".to_string(),
            output.clone(),
        ]
    };
    let lag = max_lag(split.rows).to_string();
    let k = split.estimate_rows;
    let file = |what: &str| format!("{name}.{what}");

    // 2. cross-correlation
    let mut args = vec!["xcorr".to_string(), files::ALIGNED.to_string()];
    args.extend(flags.clone());
    args.extend(cols());
    args.extend(["--max-lag".into(), lag.clone()]);
    args.extend([
        "-o".into(),
        file("xcorr.csv"),
        "--json".into(),
        file("xcorr.json"),
    ]);
    let mut step = run_step(opts, dir, "xcorr", args, log);
    if step.outcome == Outcome::Done {
        match read_xcorr(&dir.join(file("xcorr.json"))) {
            Ok(x) => g.xcorr = Some(x),
            Err(e) => step.outcome = Outcome::Failed(format!("{e:#}")),
        }
    }
    g.record(step);

    // 3. impulse response
    let mut args = vec!["impulse".to_string(), files::ALIGNED.to_string()];
    args.extend(flags.clone());
    args.extend(cols());
    args.extend(["--lags".into(), lag]);
    args.extend([
        "-o".into(),
        file("impulse.csv"),
        "--json".into(),
        file("impulse.json"),
    ]);
    let step = run_step(opts, dir, "impulse", args, log);
    g.record(step);

    // 4. the model: orders searched, or the user's
    let estimate = format!("0:{k}");
    let mut step = match opts.orders {
        None => {
            let grid = default_grid(k);
            let mut args = vec!["order".to_string(), files::ALIGNED.to_string()];
            args.extend(flags.clone());
            args.extend(cols());
            args.extend([
                "--poles".into(),
                format!("0..{}", grid.na),
                "--zeros".into(),
                format!("1..{}", grid.nb),
                "--delay".into(),
                format!("0..{}", grid.nk),
                "--criterion".into(),
                criterion_name(opts.criterion),
                "--estimate".into(),
                estimate,
                "--validate".into(),
                format!("{k}:"),
                "-o".into(),
                file("order.csv"),
                "--model".into(),
                file("model.json"),
                // The model is simulated (validate, reconstruct): an unstable one diverges
                // even when its one-step fit is good, as MDL's (3,2,0) did once in CI.
                "--stable".into(),
            ]);
            g.orders_searched = true;
            run_step(opts, dir, "order", args, log)
        }
        Some(o) => {
            let mut args = vec!["fit".to_string(), files::ALIGNED.to_string()];
            args.extend(flags.clone());
            args.extend(cols());
            args.extend([
                "--poles".into(),
                o.na.to_string(),
                "--zeros".into(),
                o.nb.to_string(),
                "--delay".into(),
                o.nk.to_string(),
                "--estimate".into(),
                estimate,
                "-o".into(),
                file("model.json"),
            ]);
            run_step(opts, dir, "fit", args, log)
        }
    };
    let mut model = None;
    if step.outcome == Outcome::Done {
        match read_model(&dir.join(file("model.json"))) {
            Ok(m) => {
                g.orders = Some(Orders {
                    na: m.orders.na,
                    nb: m.orders.nb.first().copied().unwrap_or(0),
                    nk: m.orders.nk.first().copied().unwrap_or(0),
                });
                model = Some(m);
            }
            Err(e) => step.outcome = Outcome::Failed(format!("{e:#}")),
        }
    }
    let model_step = step.name.clone();
    g.record(step);
    let Some(model) = model else {
        for s in ["validate", "reconstruct"] {
            g.skip(s, &format!("no model: {model_step} failed"));
        }
        return;
    };

    // 5. validation on the held-out rows
    let t0 = model.orders.t0();
    let held_out = split.validation_rows();
    if held_out <= t0 + RESIDUAL_LAGS + 1 {
        let why = format!(
            "the {held_out} held-out rows are too few for vmmon validate, whose residual tests \
             need more than {} (the model's first {t0} rows plus lags 1..{RESIDUAL_LAGS}): \
             record a longer scenario",
            t0 + RESIDUAL_LAGS + 1
        );
        g.notes.push(format!("not validated: {why}"));
        g.skip("validate", &why);
    } else {
        let mut args = vec![
            "validate".to_string(),
            file("model.json"),
            files::ALIGNED.to_string(),
        ];
        args.extend(split.trace_flags(split.first_row + k));
        args.extend([
            "-o".into(),
            file("validate.csv"),
            "--json".into(),
            file("validate.json"),
        ]);
        let mut step = run_step(opts, dir, "validate", args, log);
        if step.outcome == Outcome::Done {
            match read_validation(&dir.join(file("validate.json"))) {
                Ok(v) => g.validation = Some(v),
                Err(e) => step.outcome = Outcome::Failed(format!("{e:#}")),
            }
        }
        g.record(step);
    }

    // 6. reconstruction from host data alone, judged on the held-out rows
    let mut args = vec![
        "reconstruct".to_string(),
        file("model.json"),
        files::ALIGNED.to_string(),
    ];
    args.extend(flags);
    args.extend(["-o".into(), file("reconstruct.csv")]);
    let mut step = run_step(opts, dir, "reconstruct", args, log);
    if step.outcome == Outcome::Done {
        match reconstruction_fit(dir, split, table, g) {
            Ok(f) => g.reconstruction_fit_pct = Some(f),
            Err(e) => step.outcome = Outcome::Failed(format!("{e:#}")),
        }
    }
    g.record(step);
}

/// A criterion as `vmmon order --criterion` spells it.
pub fn criterion_name(c: Criterion) -> String {
    use clap::ValueEnum as _;
    c.to_possible_value().map_or_else(
        || format!("{c:?}").to_lowercase(),
        |v| v.get_name().to_string(),
    )
}

impl GuestResult {
    /// Keeps a step; its failure is the guest's error if it is the first.
    fn record(&mut self, step: Step) {
        if let Outcome::Failed(e) = &step.outcome
            && self.error.is_none()
        {
            self.error = Some(format!("{}: {e}", step.name));
        }
        self.steps.push(step);
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.steps.push(Step {
            name: name.to_string(),
            args: Vec::new(),
            outcome: Outcome::Skipped(why.to_string()),
        });
    }
}

/// Joins the reconstruction with the measured output (writes `G.reconstruct_vs_measured.csv`)
/// and returns its fit % on the held-out rows.
fn reconstruction_fit(dir: &Path, split: &Split, table: &Table, g: &GuestResult) -> Result<f64> {
    let file = format!("{}.reconstruct.csv", g.name);
    let rec = Table::read(&dir.join(&file), &[g.output.as_str()])?;
    let sim = rec
        .column(&g.output)
        .with_context(|| format!("{file} has no column {}", g.output))?;
    let measured = table.column(&g.output).context("no output column")?;
    if sim.len() != split.rows {
        anyhow::bail!(
            "{file} has {} rows where {} were analysed: cannot pair them with the measured rows",
            sim.len(),
            split.rows
        );
    }
    let mut csv = String::from("time,measured,reconstructed\n");
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let (mut y, mut yhat) = (Vec::new(), Vec::new());
    for (i, s) in sim.iter().enumerate() {
        let row = split.first_row + i;
        let m = measured[row];
        let _ = writeln!(csv, "{},{},{}", table.time[row], cell(m), cell(*s));
        if i >= split.estimate_rows
            && let (Some(m), Some(s)) = (m, s)
        {
            y.push(m);
            yhat.push(*s);
        }
    }
    let out = dir.join(format!("{}.reconstruct_vs_measured.csv", g.name));
    std::fs::write(&out, csv).with_context(|| format!("cannot write {}", out.display()))?;
    if y.len() < 2 {
        anyhow::bail!("fewer than 2 held-out rows with both a measured and a reconstructed value");
    }
    Ok(arx::fit_percent(&y, &yhat))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

fn read_xcorr(path: &Path) -> Result<XcorrPeak> {
    #[derive(Deserialize)]
    struct J {
        step_s: f64,
        peak_lag: i64,
        peak_value: f64,
        bound: f64,
    }
    let j: J = read_json(path)?;
    Ok(XcorrPeak {
        r: j.peak_value,
        lag: j.peak_lag,
        lag_s: j.peak_lag as f64 * j.step_s,
        bound: j.bound,
    })
}

fn read_corrections(path: &Path) -> Result<Vec<Correction>> {
    #[derive(Deserialize)]
    struct Meta {
        sources: Vec<Source>,
    }
    #[derive(Deserialize)]
    struct Source {
        name: String,
        correction: C,
    }
    #[derive(Deserialize)]
    struct C {
        method: String,
        #[serde(default)]
        constant_s: f64,
        probes: Option<u64>,
        probe_offsets_s: Option<(f64, f64)>,
        drift_ppm: Option<f64>,
    }
    let m: Meta = read_json(path)?;
    Ok(m.sources
        .into_iter()
        .map(|s| Correction {
            source: s.name,
            method: s.correction.method,
            probes: s.correction.probes,
            probe_offsets_s: s.correction.probe_offsets_s,
            drift_ppm: s.correction.drift_ppm,
            constant_s: s.correction.constant_s,
        })
        .collect())
}

fn read_model(path: &Path) -> Result<Model> {
    let m: Model = read_json(path)?;
    m.check()
        .map_err(|e| anyhow::anyhow!("{}: model inconsistent: {e}", path.display()))?;
    Ok(m)
}

fn read_validation(path: &Path) -> Result<ValidationFigures> {
    read_json(path)
}

/// Runs `vmmon ARGS` in `dir`; a non-zero exit is a failure with vmmon's error message.
fn run_step(opts: &Options, dir: &Path, name: &str, args: Vec<String>, log: &mut Log) -> Step {
    if let Some(sig) = opts.stopped() {
        return Step {
            name: name.to_string(),
            args,
            outcome: Outcome::Skipped(format!("stopped by signal {sig}")),
        };
    }
    let outcome = match std::process::Command::new(&opts.vmmon)
        .args(&args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Err(e) => Outcome::Failed(format!("cannot run {}: {e}", opts.vmmon.display())),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            log.command(&args, &stdout, &stderr, out.status.code());
            if out.status.success() {
                Outcome::Done
            } else {
                Outcome::Failed(error_message(&stderr, out.status))
            }
        }
    };
    Step {
        name: name.to_string(),
        args,
        outcome,
    }
}

/// vmmon's `vmmon: error: …` lines, else a usage error's `error: …` line, else the last line
/// of stderr, else the exit status.
fn error_message(stderr: &str, status: std::process::ExitStatus) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("vmmon: error: "))
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    if let Some(usage) = stderr.lines().find_map(|l| l.strip_prefix("error: ")) {
        return usage.trim().to_string();
    }
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) => l.trim().to_string(),
        None => format!("vmmon exited with {status}"),
    }
}

/// Every command and what it printed, kept in `SCENARIO/analysis.log`.
struct Log {
    path: PathBuf,
    text: String,
}

impl Log {
    fn new(dir: &Path) -> Self {
        Log {
            path: dir.join(files::LOG),
            text: String::new(),
        }
    }

    fn command(&mut self, args: &[String], stdout: &str, stderr: &str, code: Option<i32>) {
        let _ = writeln!(self.text, "$ {}", super::report::shell_line(args));
        self.text += stdout;
        self.text += stderr;
        let _ = writeln!(
            self.text,
            "[exit {}]\n",
            code.map_or("by signal".to_string(), |c| c.to_string())
        );
    }

    fn save(self, notes: &mut Vec<String>) {
        if self.text.is_empty() {
            return;
        }
        if let Err(e) = std::fs::write(&self.path, self.text) {
            notes.push(format!("cannot write {}: {e}", self.path.display()));
        }
    }
}

/// Every figure of a scenario: one place for every `vmmon plot` invocation. A figure whose
/// data were not made (its step failed) is left out; one that cannot be drawn is a warning.
fn draw_figures(dir: &Path, opts: &Options, r: &mut ScenarioResult, log: &mut Log) {
    struct Spec {
        guest: Option<String>,
        file: String,
        caption: String,
        kind: &'static str,
        inputs: Vec<String>,
        columns: Vec<String>,
        /// Extra arguments (the order picture's criterion).
        extra: Vec<String>,
    }
    let mut specs = Vec::new();
    let s = &r.info.name;
    if r.info.guests.is_empty() {
        specs.push(Spec {
            guest: None,
            file: files::TRACE_SVG.into(),
            caption: format!("{s}: the host's CPU"),
            kind: "trace",
            inputs: vec![files::HOST.into()],
            columns: vec![
                "busy_cpu_pct".into(),
                "cpu_user_pct".into(),
                "cpu_system_pct".into(),
            ],
            extra: Vec::new(),
        });
    } else if r.split.is_some() {
        let mut columns = vec!["host.busy_cpu_pct".to_string()];
        // Guests analysed: their columns are in aligned.csv.
        for g in r.guests.iter().filter(|g| !g.steps.is_empty()) {
            columns.extend([g.input.clone(), g.output.clone()]);
        }
        specs.push(Spec {
            guest: None,
            file: files::TRACE_SVG.into(),
            caption: format!("{s}: host busy CPU, each guest's vCPUs seen by the host, and each guest's own busy CPU"),
            kind: "trace",
            inputs: vec![files::ALIGNED.into()],
            columns,
            extra: Vec::new(),
        });
    }
    for g in &r.guests {
        let done = |step: &str| {
            g.steps
                .iter()
                .any(|x| x.name == step && x.outcome == Outcome::Done)
        };
        let n = &g.name;
        let mut add = |file: &str,
                       caption: String,
                       kind: &'static str,
                       inputs: Vec<String>,
                       extra: Vec<String>| {
            specs.push(Spec {
                guest: Some(n.clone()),
                file: format!("{n}.{file}"),
                caption,
                kind,
                inputs,
                columns: Vec::new(),
                extra,
            });
        };
        if done("xcorr") {
            add(
                "xcorr.svg",
                format!("{s}: cross-correlation {} → {}", g.input, g.output),
                "xcorr",
                vec![format!("{n}.xcorr.csv")],
                Vec::new(),
            );
        }
        if done("impulse") {
            add(
                "impulse.svg",
                format!("{s}: impulse response {} → {}", g.input, g.output),
                "impulse",
                vec![format!("{n}.impulse.csv")],
                Vec::new(),
            );
        }
        if done("order") {
            add(
                "order.svg",
                format!("{s}: {n} order search"),
                "order",
                vec![format!("{n}.order.csv")],
                // The picture ranks as the search did.
                vec!["--criterion".into(), criterion_name(opts.criterion)],
            );
        }
        if done("validate") {
            add(
                "validate.svg",
                format!("{s}: {n} model on the held-out rows"),
                "validation",
                vec![format!("{n}.validate.csv"), format!("{n}.validate.json")],
                Vec::new(),
            );
        }
        if g.reconstruction_fit_pct.is_some() {
            add(
                "reconstruct.svg",
                format!("{s}: {n} busy CPU measured in the guest and reconstructed from the host"),
                "trace",
                vec![format!("{n}.reconstruct_vs_measured.csv")],
                Vec::new(),
            );
        }
    }
    for spec in specs {
        let mut args = vec![
            "plot".to_string(),
            "--kind".to_string(),
            spec.kind.to_string(),
        ];
        args.extend(spec.inputs);
        if !spec.columns.is_empty() {
            args.extend(["--columns".to_string(), spec.columns.join(",")]);
        }
        args.extend(spec.extra);
        args.extend([
            "--title".to_string(),
            spec.caption.clone(),
            "-o".to_string(),
            spec.file.clone(),
        ]);
        let step = run_step(opts, dir, "plot", args, log);
        r.figures.push(Figure {
            guest: spec.guest,
            file: spec.file,
            caption: spec.caption,
            step,
        });
    }
}

/// A CSV's header, its `time` cells as written, and chosen columns (empty cell: `None`).
struct Table {
    header: Vec<String>,
    time: Vec<String>,
    columns: BTreeMap<String, Vec<Option<f64>>>,
}

impl Table {
    /// Reads `path`, keeping the `time` column and those of `wanted` that exist.
    fn read(path: &Path, wanted: &[&str]) -> Result<Table> {
        let mut rdr = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header: Vec<String> = rdr
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let time_at = header.iter().position(|h| h == "time");
        let picked: Vec<(usize, String)> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| wanted.contains(&h.as_str()))
            .map(|(i, h)| (i, h.clone()))
            .collect();
        let mut t = Table {
            header,
            time: Vec::new(),
            columns: picked
                .iter()
                .map(|(_, h)| (h.clone(), Vec::new()))
                .collect(),
        };
        for (line, rec) in rdr.records().enumerate() {
            let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
            t.time
                .push(time_at.and_then(|i| rec.get(i)).unwrap_or("").to_string());
            for (i, name) in &picked {
                let cell = rec.get(*i).unwrap_or("").trim();
                let v = if cell.is_empty() {
                    None
                } else {
                    Some(cell.parse::<f64>().map_err(|_| {
                        anyhow::anyhow!(
                            "{}:{}: column {name}: '{cell}' is not a number",
                            path.display(),
                            line + 2
                        )
                    })?)
                };
                if let Some(c) = t.columns.get_mut(name) {
                    c.push(v);
                }
            }
        }
        Ok(t)
    }

    fn column(&self, name: &str) -> Option<&[Option<f64>]> {
        self.columns.get(name).map(Vec::as_slice)
    }

    fn rows(&self) -> usize {
        self.time.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_fit_the_rows() {
        assert_eq!(
            default_grid(400),
            Orders {
                na: 4,
                nb: 4,
                nk: 3
            }
        );
        assert_eq!(
            default_grid(42),
            Orders {
                na: 4,
                nb: 4,
                nk: 3
            }
        );
        assert_eq!(
            default_grid(33),
            Orders {
                na: 3,
                nb: 3,
                nk: 2
            }
        );
        assert_eq!(
            default_grid(17),
            Orders {
                na: 1,
                nb: 2,
                nk: 1
            }
        );
        assert_eq!(
            default_grid(3),
            Orders {
                na: 1,
                nb: 1,
                nk: 1
            }
        );
        assert_eq!(max_lag(600), 20);
        assert_eq!(max_lag(50), 12);
        assert_eq!(max_lag(2), 1);
    }

    #[test]
    fn split_skips_empty_ends_and_flags_inner_gaps() {
        let mut a: Vec<Option<f64>> = vec![Some(1.0); 30];
        a[0] = None;
        a[29] = None;
        a[10] = None;
        let s = split_rows(&[&a], 30).expect("split");
        assert_eq!((s.first_row, s.rows, s.estimate_rows), (1, 28, 19));
        assert!(s.interpolate);
        assert_eq!(
            s.trace_flags(1),
            ["--from", "#1", "--to", "#28", "--gaps", "interpolate"]
        );
        assert_eq!(s.trace_flags(20)[..2], ["--from", "#20"]);
        let b: Vec<Option<f64>> = vec![Some(1.0); 30];
        let s = split_rows(&[&b], 30).expect("split");
        assert!(s.trace_flags(0).is_empty());
        assert!(split_rows(&[&b[..5]], 5).unwrap_err().contains("at least"));
    }
}
