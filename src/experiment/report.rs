//! The report of an experiment: `report.md`, `summary.csv` and `summary.json`.
//!
//! Pure functions from a [`Report`] to text, as hyperfine's exporters are, so their tests
//! compare strings; [`write`] is the only part that touches files.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::sysid::arx::RESIDUAL_LAGS;

use super::analysis::{
    BusyStats, GuestResult, Outcome, Report, ScenarioResult, Step, XcorrPeak, files,
};

/// One row of the summary table: a (scenario, guest) pair, or a host-only scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// Scenario folder.
    pub scenario: String,
    /// Scenario title.
    pub title: String,
    /// Guest (`None` for a host-only scenario).
    pub guest: Option<String>,
    /// Load on the host.
    pub host_load: Option<String>,
    /// Load in this guest.
    pub guest_load: Option<String>,
    /// Mean busy CPU of the host, % of one CPU.
    pub host_busy_mean_pct: Option<f64>,
    /// Largest busy CPU of the host, % of one CPU.
    pub host_busy_max_pct: Option<f64>,
    /// Cross-correlation at its peak.
    pub xcorr_peak_r: Option<f64>,
    /// Lag of the peak, seconds (positive: the host's vCPU view leads the guest).
    pub xcorr_peak_lag_s: Option<f64>,
    /// Poles.
    pub na: Option<usize>,
    /// Zeros.
    pub nb: Option<usize>,
    /// Delay.
    pub nk: Option<usize>,
    /// `searched` (vmmon order) or `given`.
    pub orders: Option<String>,
    /// One-step prediction fit % on the held-out rows.
    pub fit_one_step_pct: Option<f64>,
    /// Simulation fit % on the held-out rows.
    pub fit_simulated_pct: Option<f64>,
    /// Residual autocorrelation lags outside the 99% bound.
    pub residual_acf_outside: Option<usize>,
    /// How many are allowed.
    pub residual_acf_allowed: Option<usize>,
    /// Input–residual cross-correlation lags outside the bound.
    pub residual_xcorr_outside: Option<usize>,
    /// How many are allowed.
    pub residual_xcorr_allowed: Option<usize>,
    /// `PASS` or `FAIL`.
    pub residual_test: Option<String>,
    /// Fit % of the reconstruction from host data, on the held-out rows.
    pub reconstruction_fit_pct: Option<f64>,
    /// `ok` or `error`.
    pub status: String,
    /// The error, or notes.
    pub message: String,
}

/// The summary rows of a report, in scenario and guest order.
pub fn summary_rows(report: &Report) -> Vec<SummaryRow> {
    let mut rows = Vec::new();
    for s in &report.scenarios {
        let base = |guest: Option<&GuestResult>| SummaryRow {
            scenario: s.name.clone(),
            title: s.info.title.clone(),
            guest: guest.map(|g| g.name.clone()),
            host_load: s.info.host_load.clone(),
            guest_load: guest.and_then(|g| g.load.clone()),
            host_busy_mean_pct: s.host_busy.map(|b| b.mean_pct),
            host_busy_max_pct: s.host_busy.map(|b| b.max_pct),
            xcorr_peak_r: None,
            xcorr_peak_lag_s: None,
            na: None,
            nb: None,
            nk: None,
            orders: None,
            fit_one_step_pct: None,
            fit_simulated_pct: None,
            residual_acf_outside: None,
            residual_acf_allowed: None,
            residual_xcorr_outside: None,
            residual_xcorr_allowed: None,
            residual_test: None,
            reconstruction_fit_pct: None,
            status: "ok".into(),
            message: String::new(),
        };
        if s.guests.is_empty() {
            let mut row = base(None);
            if let Some(e) = &s.error {
                row.status = "error".into();
                row.message.clone_from(e);
            } else {
                row.message = s.notes.join("; ");
            }
            rows.push(row);
        }
        for g in &s.guests {
            let mut row = base(Some(g));
            row.xcorr_peak_r = g.xcorr.map(|x| x.r);
            row.xcorr_peak_lag_s = g.xcorr.map(|x| x.lag_s);
            if let Some(o) = g.orders {
                (row.na, row.nb, row.nk) = (Some(o.na), Some(o.nb), Some(o.nk));
                row.orders = Some(
                    if g.orders_searched {
                        "searched"
                    } else {
                        "given"
                    }
                    .into(),
                );
            }
            if let Some(v) = &g.validation {
                row.fit_one_step_pct = Some(v.fit_prediction_pct);
                row.fit_simulated_pct = Some(v.fit_simulation_pct);
                row.residual_acf_outside = Some(v.acf_outside.len());
                row.residual_acf_allowed = Some(v.allowed_acf);
                row.residual_xcorr_outside = v.xcorr_outside.iter().map(Vec::len).max();
                row.residual_xcorr_allowed = Some(v.allowed_xcorr);
                row.residual_test = Some(if v.pass { "PASS" } else { "FAIL" }.into());
            }
            row.reconstruction_fit_pct = g.reconstruction_fit_pct;
            if let Some(e) = g.error.as_ref().or(s.error.as_ref()) {
                row.status = "error".into();
                row.message.clone_from(e);
            } else {
                row.message = g.notes.join("; ");
            }
            rows.push(row);
        }
    }
    rows
}

/// summary.csv: the summary rows, RFC 4180, numbers in their shortest exact form, empty cells
/// for what was not measured.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "scenario",
        "title",
        "guest",
        "host_load",
        "guest_load",
        "host_busy_mean_pct",
        "host_busy_max_pct",
        "xcorr_peak_r",
        "xcorr_peak_lag_s",
        "na",
        "nb",
        "nk",
        "orders",
        "fit_one_step_pct",
        "fit_simulated_pct",
        "residual_acf_outside",
        "residual_acf_allowed",
        "residual_xcorr_outside",
        "residual_xcorr_allowed",
        "residual_test",
        "reconstruction_fit_pct",
        "status",
        "message",
    ]);
    let f = |v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or(String::new(), |x| x.to_string())
    };
    let n = |v: Option<usize>| v.map_or(String::new(), |x| x.to_string());
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    for r in rows {
        let _ = w.write_record([
            r.scenario.clone(),
            r.title.clone(),
            s(&r.guest),
            s(&r.host_load),
            s(&r.guest_load),
            f(r.host_busy_mean_pct),
            f(r.host_busy_max_pct),
            f(r.xcorr_peak_r),
            f(r.xcorr_peak_lag_s),
            n(r.na),
            n(r.nb),
            n(r.nk),
            s(&r.orders),
            f(r.fit_one_step_pct),
            f(r.fit_simulated_pct),
            n(r.residual_acf_outside),
            n(r.residual_acf_allowed),
            n(r.residual_xcorr_outside),
            n(r.residual_xcorr_allowed),
            s(&r.residual_test),
            f(r.reconstruction_fit_pct),
            r.status.clone(),
            r.message.clone(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// summary.json: the run facts, the summary rows, errors and warnings.
pub fn summary_json(report: &Report) -> String {
    #[derive(Serialize)]
    struct Summary<'a> {
        run: &'a super::analysis::RunInfo,
        orders: Option<super::analysis::Orders>,
        criterion: String,
        ok: bool,
        errors: Vec<String>,
        warnings: Vec<String>,
        rows: Vec<SummaryRow>,
    }
    let s = Summary {
        run: &report.run,
        orders: report.orders,
        criterion: super::analysis::criterion_name(report.criterion),
        ok: report.ok(),
        errors: report.errors(),
        warnings: report.warnings(),
        rows: summary_rows(report),
    };
    serde_json::to_string_pretty(&s).unwrap_or_default() + "\n"
}

/// Writes report.md, summary.csv and summary.json into the run folder `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<()> {
    let rows = summary_rows(report);
    for (name, text) in [
        (files::REPORT, markdown(report)),
        (files::SUMMARY_CSV, summary_csv(&rows)),
        (files::SUMMARY_JSON, summary_json(report)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// `vmmon ARGS` as one shell line, each argument quoted when the shell would change it.
pub fn shell_line(args: &[String]) -> String {
    let mut s = String::from("vmmon");
    for a in args {
        s.push(' ');
        s += &quote(a);
    }
    s
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+%@".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// A Markdown table cell: pipes escaped, one line.
fn cell(s: &str) -> String {
    s.replace('|', r"\|").replace(['\n', '\r'], " ")
}

const DASH: &str = "—";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| DASH.to_string(), f)
}

fn pct(x: f64) -> String {
    format!("{x:.1}")
}

/// Seconds with a sign, at most three decimals, no trailing zeros.
fn seconds(x: f64) -> String {
    let s = format!("{x:+.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "+0" || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn peak(x: XcorrPeak) -> String {
    format!("{:.3} at {} s", x.r, seconds(x.lag_s))
}

fn busy(b: BusyStats) -> String {
    format!("{:.1} / {:.1}", b.mean_pct, b.max_pct)
}

/// report.md.
pub fn markdown(report: &Report) -> String {
    let mut md = String::from("# vmmon experiment report\n\n");
    let run = &report.run;
    let text = |v: &Option<String>| v.as_deref().map_or(DASH.to_string(), cell);
    md += "| run | |\n| --- | --- |\n";
    let _ = writeln!(md, "| started | {} |", text(&run.started));
    let _ = writeln!(md, "| vmmon version | {} |", text(&run.vmmon_version));
    let _ = writeln!(md, "| rate | {} |", opt(run.rate_hz, |r| format!("{r} Hz")));
    let _ = writeln!(
        md,
        "| duration of each scenario | {} |",
        opt(run.duration_s, |d| format!("{d} s"))
    );
    // Facts an older or hand-written experiment.json may lack are left out, not dashed.
    if let Some(w) = run.warmup_s {
        let _ = writeln!(md, "| warm-up before the load | {w} s |");
    }
    if run.load.is_some() {
        let _ = writeln!(md, "| load | {} |", text(&run.load));
    }
    let _ = writeln!(md, "| accelerator | {} |", text(&run.accel));
    if run.accel_note.is_some() {
        let _ = writeln!(md, "| why | {} |", text(&run.accel_note));
    }
    let _ = writeln!(
        md,
        "| host CPUs | {} |",
        opt(run.host_cpus, |n| n.to_string())
    );
    if run.host_kernel.is_some() {
        let _ = writeln!(md, "| host kernel | {} |", text(&run.host_kernel));
    }
    if run.guest_kernel.is_some() {
        let _ = writeln!(
            md,
            "| guest kernel, memory | {}, {} |",
            text(&run.guest_kernel),
            opt(run.guest_memory_mib, |m| format!("{m} MiB"))
        );
    }
    let _ = writeln!(
        md,
        "| ARX orders | {} |",
        match report.orders {
            Some(o) => format!("given: na = {}, nb = {}, nk = {}", o.na, o.nb, o.nk),
            None => format!(
                "chosen per guest by `vmmon order --criterion {}` on the estimation rows",
                super::analysis::criterion_name(report.criterion)
            ),
        }
    );
    md += "\n";
    md += &summary_table(report);
    let errors = report.errors();
    let warnings = report.warnings();
    if !errors.is_empty() || !warnings.is_empty() {
        md += "\n## Problems\n\n";
        for e in &errors {
            let _ = writeln!(md, "- **failed**: {}", cell(e));
        }
        for w in &warnings {
            let _ = writeln!(md, "- {}", cell(w));
        }
    }
    for s in &report.scenarios {
        md += "\n";
        md += &scenario_section(s);
    }
    md
}

/// The summary table and how to read it.
fn summary_table(report: &Report) -> String {
    let mut md = String::from("## Summary\n\n");
    md += "| scenario | guest | host load | guest load | host busy % mean / max | xcorr peak r at lag \
           | na nb nk | fit % one-step | fit % simulated | residual ACF out / allowed \
           | input–residual out / allowed | residual test | reconstruction fit % | status |\n";
    md += "| --- | --- | --- | --- | ---: | ---: | :---: | ---: | ---: | :---: | :---: | :---: | ---: \
           | --- |\n";
    for s in &report.scenarios {
        let host_load = s.info.host_load.as_deref().map_or("none".into(), cell);
        let host_busy = opt(s.host_busy, busy);
        if s.guests.is_empty() {
            let _ = writeln!(
                md,
                "| {} | {DASH} | {host_load} | {DASH} | {host_busy} | {DASH} | {DASH} | {DASH} \
                 | {DASH} | {DASH} | {DASH} | {DASH} | {DASH} | {} |",
                cell(&s.name),
                if s.error.is_some() { "FAILED" } else { "ok" }
            );
        }
        for g in &s.guests {
            let v = g.validation.as_ref();
            let _ = writeln!(
                md,
                "| {} | {} | {host_load} | {} | {host_busy} | {} | {} | {} | {} | {} | {} | {} | {} \
                 | {} |",
                cell(&s.name),
                cell(&g.name),
                g.load.as_deref().map_or("none".into(), cell),
                opt(g.xcorr, peak),
                opt(g.orders, |o| format!("{} {} {}", o.na, o.nb, o.nk)),
                opt(v, |v| pct(v.fit_prediction_pct)),
                opt(v, |v| pct(v.fit_simulation_pct)),
                opt(v, |v| format!(
                    "{} / {}",
                    v.acf_outside.len(),
                    v.allowed_acf
                )),
                opt(v, |v| format!(
                    "{} / {}",
                    v.xcorr_outside.iter().map(Vec::len).max().unwrap_or(0),
                    v.allowed_xcorr
                )),
                opt(v, |v| if v.pass { "PASS" } else { "FAIL" }.to_string()),
                opt(g.reconstruction_fit_pct, pct),
                if g.error.is_some() || s.error.is_some() {
                    "FAILED"
                } else {
                    "ok"
                }
            );
        }
    }
    md += "\nThe model maps the host's view of a guest (`host.G.vcpu_cpu_pct`, its vCPU threads' \
           CPU) to the guest's own busy CPU (`G.busy_cpu_pct`). It is estimated on the first \
           two thirds of each scenario's rows; every fit % here is on the last third, held out. \
           Fit % = 100 (1 − ‖y − ŷ‖ / ‖y − ȳ‖): 100 is perfect, 0 is no better than the mean. \
           One-step prediction uses the guest's measured past; the simulation and the \
           reconstruction use host data alone (the simulation starts from measured values, the \
           reconstruction from rest), so they are the honest figures. A positive xcorr lag \
           means the host's view leads the guest. The residual tests count lags whose \
           correlation is outside the 99% bound and the number chance allows; the test passes \
           when both are within it. A dash: not measured (see the scenario's section).\n";
    md
}

fn scenario_section(s: &ScenarioResult) -> String {
    let mut md = format!("## {}", cell(&s.name));
    if !s.info.title.is_empty() {
        let _ = write!(md, ": {}", cell(&s.info.title));
    }
    md += "\n\n";
    let _ = writeln!(
        md,
        "- host load: {}",
        s.info.host_load.as_deref().map_or("none".into(), cell)
    );
    if !s.info.guests.is_empty() {
        let loads: Vec<String> = s
            .info
            .guests
            .iter()
            .map(|g| {
                format!(
                    "{}: {}",
                    cell(g),
                    s.info.guest_load.get(g).map_or("idle".into(), |l| cell(l))
                )
            })
            .collect();
        let _ = writeln!(md, "- guests: {}", loads.join("; "));
    } else {
        md += "- guests: none (host only: nothing to fit)\n";
    }
    if let Some(b) = s.host_busy {
        let _ = writeln!(
            md,
            "- host busy CPU: mean {:.1} %, max {:.1} % of one CPU ({} samples of host.csv)",
            b.mean_pct, b.max_pct, b.samples
        );
    }
    if let Some(sp) = &s.split {
        let _ = writeln!(
            md,
            "- rows analysed: {} of the {} of {}{}: the first {} for estimation, the last {} \
             held out{}",
            sp.rows,
            sp.total_rows,
            files::ALIGNED,
            if sp.rows < sp.total_rows {
                format!(
                    " (rows {}..{}; the others have empty cells)",
                    sp.first_row,
                    sp.first_row + sp.rows - 1
                )
            } else {
                String::new()
            },
            sp.estimate_rows,
            sp.validation_rows(),
            if sp.interpolate {
                "; empty cells among them filled by linear interpolation"
            } else {
                ""
            }
        );
    }
    for c in s.corrections.iter().filter(|c| c.source != "host") {
        let _ = writeln!(md, "- clock of {}: {}", cell(&c.source), correction(c));
    }
    if let Some(e) = &s.error {
        let _ = writeln!(md, "- **failed**: {}", cell(e));
    }
    for n in &s.notes {
        let _ = writeln!(md, "- note: {}", cell(n));
    }
    md += "\n";
    for f in s.figures.iter().filter(|f| f.guest.is_none()) {
        md += &figure(&s.name, f);
    }
    for g in &s.guests {
        md += &guest_section(s, g);
    }
    md += &commands(s);
    md
}

/// How align moved a source's times, in words.
fn correction(c: &super::analysis::Correction) -> String {
    let mut s = cell(&c.method);
    if let (Some(n), Some((a, b))) = (c.probes, c.probe_offsets_s) {
        let _ = write!(s, " ({n} probes, offset {a:+.6} s → {b:+.6} s");
        if let Some(d) = c.drift_ppm {
            let _ = write!(s, ", drift {d:+.1} ppm");
        }
        s += ")";
    }
    if c.constant_s != 0.0 {
        let _ = write!(s, ", {:+.6} s", c.constant_s);
    }
    s
}

fn guest_section(s: &ScenarioResult, g: &GuestResult) -> String {
    let mut md = format!("### {}\n\n| | |\n| --- | --- |\n", cell(&g.name));
    let _ = writeln!(
        md,
        "| input → output | `{}` → `{}` |",
        cell(&g.input),
        cell(&g.output)
    );
    let _ = writeln!(
        md,
        "| cross-correlation peak | {} |",
        opt(g.xcorr, |x| format!(
            "r = {:.3} at lag {:+} ({} s); 99% bound ±{:.3}",
            x.r,
            x.lag,
            seconds(x.lag_s),
            x.bound
        ))
    );
    let _ = writeln!(
        md,
        "| orders | {} |",
        opt(g.orders, |o| format!(
            "na = {}, nb = {}, nk = {} ({})",
            o.na,
            o.nb,
            o.nk,
            if g.orders_searched {
                "chosen by vmmon order"
            } else {
                "given"
            }
        ))
    );
    let v = g.validation.as_ref();
    let _ = writeln!(
        md,
        "| fit on the held-out rows | {} |",
        opt(v, |v| format!(
            "one-step {} %, simulated {} % ({} samples)",
            pct(v.fit_prediction_pct),
            pct(v.fit_simulation_pct),
            v.n
        ))
    );
    let _ = writeln!(
        md,
        "| residual tests | {} |",
        opt(v, |v| format!(
            "autocorrelation outside the 99% bound at {} of lags 1..{} (chance allows {}); \
             input–residual cross-correlation at {} of lags ±{} (chance allows {}): {}",
            v.acf_outside.len(),
            RESIDUAL_LAGS,
            v.allowed_acf,
            v.xcorr_outside.iter().map(Vec::len).max().unwrap_or(0),
            RESIDUAL_LAGS,
            v.allowed_xcorr,
            if v.pass { "PASS" } else { "FAIL" }
        ))
    );
    let _ = writeln!(
        md,
        "| reconstruction from host data, held-out rows | {} |",
        opt(g.reconstruction_fit_pct, |f| format!("fit {} %", pct(f)))
    );
    md += "\n";
    if let Some(e) = &g.error {
        let _ = writeln!(md, "**Failed**: {}\n", cell(e));
    }
    for st in &g.steps {
        if let Outcome::Skipped(why) = &st.outcome {
            let _ = writeln!(md, "- {} not run: {}", st.name, cell(why));
        }
    }
    if g.steps
        .iter()
        .any(|st| matches!(st.outcome, Outcome::Skipped(_)))
    {
        md += "\n";
    }
    for f in s
        .figures
        .iter()
        .filter(|f| f.guest.as_deref() == Some(&g.name))
    {
        md += &figure(&s.name, f);
    }
    md
}

fn figure(scenario: &str, f: &super::analysis::Figure) -> String {
    match &f.step.outcome {
        Outcome::Done => format!("![{}]({scenario}/{})\n\n", cell(&f.caption), f.file),
        Outcome::Failed(e) | Outcome::Skipped(e) => {
            format!("*Figure {} not drawn: {}*\n\n", f.file, cell(e))
        }
    }
}

/// The commands that reproduce the scenario's files, run from its folder.
fn commands(s: &ScenarioResult) -> String {
    let ran = |st: &&Step| !st.args.is_empty();
    let mut lines: Vec<String> = s
        .steps
        .iter()
        .filter(ran)
        .map(|st| shell_line(&st.args))
        .collect();
    for g in &s.guests {
        lines.extend(g.steps.iter().filter(ran).map(|st| shell_line(&st.args)));
        if g.reconstruction_fit_pct.is_some() {
            lines.push(format!(
                "# {0}.reconstruct_vs_measured.csv: time, the measured {1} and {0}.reconstruct.csv \
                 side by side (written by the analysis)",
                g.name, g.output
            ));
        }
    }
    lines.extend(s.figures.iter().map(|f| shell_line(&f.step.args)));
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "Commands (run from `{}/`; every command's output is in `{}/{}`):\n\n```sh\n{}\n```\n",
        s.name,
        s.name,
        files::LOG,
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let args: Vec<String> = [
            "validate",
            "m.json",
            "--from",
            "#12",
            "--title",
            "it's a: b",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_line(&args),
            r"vmmon validate m.json --from '#12' --title 'it'\''s a: b'"
        );
        assert_eq!(seconds(1.0), "+1");
        assert_eq!(seconds(-0.5), "-0.5");
        assert_eq!(seconds(0.0), "0");
        assert_eq!(seconds(2.25), "+2.25");
    }
}

#[cfg(test)]
mod format_tests {
    use super::super::analysis::*;
    use super::*;

    fn step(name: &str, args: &[&str], outcome: Outcome) -> Step {
        Step {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            outcome,
        }
    }

    /// A host-only scenario whose figure failed, and a scenario with one guest analysed and
    /// one whose model failed.
    pub(super) fn sample() -> Report {
        let idle = ScenarioResult {
            name: "host-idle".into(),
            info: ScenarioInfo {
                name: "host-idle".into(),
                title: "host idle".into(),
                ..ScenarioInfo::default()
            },
            error: None,
            host_busy: Some(BusyStats {
                mean_pct: 2.04,
                max_pct: 9.96,
                samples: 60,
            }),
            split: None,
            corrections: Vec::new(),
            steps: Vec::new(),
            guests: Vec::new(),
            figures: vec![Figure {
                guest: None,
                file: "trace.svg".into(),
                caption: "host-idle: the host's CPU".into(),
                step: step(
                    "plot",
                    &["plot", "--kind", "trace", "host.csv", "-o", "trace.svg"],
                    Outcome::Failed("unrecognized subcommand 'plot'".into()),
                ),
            }],
            notes: Vec::new(),
        };
        let good = GuestResult {
            name: "vm1".into(),
            input: "host.vm1.vcpu_cpu_pct".into(),
            output: "vm1.busy_cpu_pct".into(),
            load: Some("prbs 0..1 CPU".into()),
            error: None,
            steps: vec![
                step(
                    "xcorr",
                    &["xcorr", "aligned.csv", "-o", "vm1.xcorr.csv"],
                    Outcome::Done,
                ),
                step(
                    "fit",
                    &["fit", "aligned.csv", "--from", "#1"],
                    Outcome::Done,
                ),
            ],
            xcorr: Some(XcorrPeak {
                r: 0.8765,
                lag: 1,
                lag_s: 0.5,
                bound: 0.2,
            }),
            orders: Some(Orders {
                na: 1,
                nb: 2,
                nk: 1,
            }),
            orders_searched: false,
            validation: Some(ValidationFigures {
                n: 40,
                fit_prediction_pct: 97.25,
                fit_simulation_pct: 95.04,
                acf_outside: vec![3],
                allowed_acf: 1,
                xcorr_outside: vec![vec![-2, 5]],
                allowed_xcorr: 2,
                pass: true,
            }),
            reconstruction_fit_pct: Some(94.96),
            notes: Vec::new(),
        };
        let bad = GuestResult {
            name: "vm2".into(),
            input: "host.vm2.vcpu_cpu_pct".into(),
            output: "vm2.busy_cpu_pct".into(),
            load: None,
            error: Some("fit: the output vm2.busy_cpu_pct is constant | flat".into()),
            steps: vec![
                step(
                    "fit",
                    &["fit", "aligned.csv"],
                    Outcome::Failed("the output vm2.busy_cpu_pct is constant | flat".into()),
                ),
                step(
                    "validate",
                    &[],
                    Outcome::Skipped("no model: fit failed".into()),
                ),
            ],
            xcorr: None,
            orders: None,
            orders_searched: false,
            validation: None,
            reconstruction_fit_pct: None,
            notes: Vec::new(),
        };
        let load = ScenarioResult {
            name: "guest-load".into(),
            info: ScenarioInfo {
                name: "guest-load".into(),
                title: "load in the guest".into(),
                guests: vec!["vm1".into(), "vm2".into()],
                host_load: Some("prbs 0..1 CPU".into()),
                guest_load: [("vm1".to_string(), "prbs 0..1 CPU".to_string())].into(),
                ..ScenarioInfo::default()
            },
            error: None,
            host_busy: None,
            split: Some(Split {
                total_rows: 121,
                first_row: 1,
                rows: 120,
                estimate_rows: 80,
                interpolate: false,
            }),
            corrections: vec![Correction {
                source: "vm1".into(),
                method: "clock columns".into(),
                probes: Some(119),
                probe_offsets_s: Some((-0.25, -0.2499)),
                drift_ppm: Some(0.8),
                constant_s: 0.0,
            }],
            steps: vec![step(
                "align",
                &["align", "host=host.csv", "vm1=vm1.csv"],
                Outcome::Done,
            )],
            guests: vec![good, bad],
            figures: vec![Figure {
                guest: Some("vm1".into()),
                file: "vm1.xcorr.svg".into(),
                caption: "guest-load: cross-correlation".into(),
                step: step(
                    "plot",
                    &["plot", "vm1.xcorr.csv", "-o", "vm1.xcorr.svg"],
                    Outcome::Done,
                ),
            }],
            notes: vec!["host busy CPU not summarised: no host.csv".into()],
        };
        Report {
            run: RunInfo {
                vmmon_version: Some("0.1.0".into()),
                rate_hz: Some(2.0),
                duration_s: Some(60.0),
                accel: Some("tcg".into()),
                host_cpus: Some(2),
                started: Some("2026-11-23T12:00:00Z".into()),
                scenarios: vec!["host-idle".into(), "guest-load".into()],
                ..RunInfo::default()
            },
            orders: None,
            criterion: Criterion::Mdl,
            scenarios: vec![idle, load],
        }
    }

    #[test]
    fn markdown_of_a_sample_report() {
        let md = markdown(&sample());
        assert_eq!(md, EXPECTED_MD);
    }

    const EXPECTED_MD: &str = r##"# vmmon experiment report

| run | |
| --- | --- |
| started | 2026-11-23T12:00:00Z |
| vmmon version | 0.1.0 |
| rate | 2 Hz |
| duration of each scenario | 60 s |
| accelerator | tcg |
| host CPUs | 2 |
| ARX orders | chosen per guest by `vmmon order --criterion mdl` on the estimation rows |

## Summary

| scenario | guest | host load | guest load | host busy % mean / max | xcorr peak r at lag | na nb nk | fit % one-step | fit % simulated | residual ACF out / allowed | input–residual out / allowed | residual test | reconstruction fit % | status |
| --- | --- | --- | --- | ---: | ---: | :---: | ---: | ---: | :---: | :---: | :---: | ---: | --- |
| host-idle | — | none | — | 2.0 / 10.0 | — | — | — | — | — | — | — | — | ok |
| guest-load | vm1 | prbs 0..1 CPU | prbs 0..1 CPU | — | 0.876 at +0.5 s | 1 2 1 | 97.2 | 95.0 | 1 / 1 | 2 / 2 | PASS | 95.0 | ok |
| guest-load | vm2 | prbs 0..1 CPU | none | — | — | — | — | — | — | — | — | — | FAILED |

The model maps the host's view of a guest (`host.G.vcpu_cpu_pct`, its vCPU threads' CPU) to the guest's own busy CPU (`G.busy_cpu_pct`). It is estimated on the first two thirds of each scenario's rows; every fit % here is on the last third, held out. Fit % = 100 (1 − ‖y − ŷ‖ / ‖y − ȳ‖): 100 is perfect, 0 is no better than the mean. One-step prediction uses the guest's measured past; the simulation and the reconstruction use host data alone (the simulation starts from measured values, the reconstruction from rest), so they are the honest figures. A positive xcorr lag means the host's view leads the guest. The residual tests count lags whose correlation is outside the 99% bound and the number chance allows; the test passes when both are within it. A dash: not measured (see the scenario's section).

## Problems

- **failed**: guest-load/vm2: fit: the output vm2.busy_cpu_pct is constant \| flat
- host-idle: figure trace.svg not drawn: unrecognized subcommand 'plot'

## host-idle: host idle

- host load: none
- guests: none (host only: nothing to fit)
- host busy CPU: mean 2.0 %, max 10.0 % of one CPU (60 samples of host.csv)

*Figure trace.svg not drawn: unrecognized subcommand 'plot'*

Commands (run from `host-idle/`; every command's output is in `host-idle/analysis.log`):

```sh
vmmon plot --kind trace host.csv -o trace.svg
```

## guest-load: load in the guest

- host load: prbs 0..1 CPU
- guests: vm1: prbs 0..1 CPU; vm2: idle
- rows analysed: 120 of the 121 of aligned.csv (rows 1..120; the others have empty cells): the first 80 for estimation, the last 40 held out
- clock of vm1: clock columns (119 probes, offset -0.250000 s → -0.249900 s, drift +0.8 ppm)
- note: host busy CPU not summarised: no host.csv

### vm1

| | |
| --- | --- |
| input → output | `host.vm1.vcpu_cpu_pct` → `vm1.busy_cpu_pct` |
| cross-correlation peak | r = 0.876 at lag +1 (+0.5 s); 99% bound ±0.200 |
| orders | na = 1, nb = 2, nk = 1 (given) |
| fit on the held-out rows | one-step 97.2 %, simulated 95.0 % (40 samples) |
| residual tests | autocorrelation outside the 99% bound at 1 of lags 1..25 (chance allows 1); input–residual cross-correlation at 2 of lags ±25 (chance allows 2): PASS |
| reconstruction from host data, held-out rows | fit 95.0 % |

![guest-load: cross-correlation](guest-load/vm1.xcorr.svg)

### vm2

| | |
| --- | --- |
| input → output | `host.vm2.vcpu_cpu_pct` → `vm2.busy_cpu_pct` |
| cross-correlation peak | — |
| orders | — |
| fit on the held-out rows | — |
| residual tests | — |
| reconstruction from host data, held-out rows | — |

**Failed**: fit: the output vm2.busy_cpu_pct is constant \| flat

- validate not run: no model: fit failed

Commands (run from `guest-load/`; every command's output is in `guest-load/analysis.log`):

```sh
vmmon align host=host.csv vm1=vm1.csv
vmmon xcorr aligned.csv -o vm1.xcorr.csv
vmmon fit aligned.csv --from '#1'
# vm1.reconstruct_vs_measured.csv: time, the measured vm1.busy_cpu_pct and vm1.reconstruct.csv side by side (written by the analysis)
vmmon fit aligned.csv
vmmon plot vm1.xcorr.csv -o vm1.xcorr.svg
```
"##;
}
