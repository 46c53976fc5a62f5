//! The report as CSV (per interval, long form; the summary) and as text for a person.
//!
//! Numbers are written as the shortest text that reads back as the same `f64`; an unknown
//! value is an empty cell.

use std::fmt::Write as _;
use std::io::Write;

use super::{Report, Totals, UNATTRIBUTED};
use crate::trace::csv_field;

/// Header of the per-interval CSV.
pub const INTERVALS_HEADER: &str =
    "time,vm,vcpu_cpu_s,emulator_cpu_s,vhost_cpu_s,shared_cpu_s,charged_cpu_s,share";

/// Header of the summary CSV.
pub const SUMMARY_HEADER: &str = "vm,vcpu_cpu_s,emulator_cpu_s,vhost_cpu_s,shared_cpu_s,\
charged_cpu_s,busy_share_pct,net_mb,disk_mb,mb_moved,packets,overhead_cpu_s,\
overhead_cpu_s_per_mb,overhead_cpu_s_per_1000_packets,empty_cells";

/// Appends `,v` (or `,` when unknown or not finite).
fn cell(out: &mut String, v: Option<f64>) {
    out.push(',');
    if let Some(v) = v.filter(|v| v.is_finite()) {
        // +0 for −0: a charge is never negative, and "-0" would puzzle a reader.
        let _ = write!(out, "{}", v + 0.0);
    }
}

/// Writes the per-interval CSV: for every interval one row per VM, then `(unattributed)`.
pub fn write_intervals(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let mut line = String::with_capacity(256);
    writeln!(out, "{INTERVALS_HEADER}")?;
    let names: Vec<String> = report
        .vms
        .iter()
        .map(|v| csv_field(v).into_owned())
        .collect();
    for row in &report.rows {
        let time = csv_field(&row.time);
        for (name, c) in names.iter().zip(&row.vms) {
            line.clear();
            let _ = write!(line, "{time},{name}");
            cell(&mut line, c.vcpu_s);
            cell(&mut line, c.emulator_s);
            cell(&mut line, c.vhost_s);
            cell(&mut line, Some(c.shared_s));
            cell(&mut line, Some(c.charged_s()));
            cell(&mut line, Some(c.share));
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        line.clear();
        let _ = write!(line, "{time},{UNATTRIBUTED},0,0,0");
        cell(&mut line, Some(row.unattributed_s));
        cell(&mut line, Some(row.unattributed_s));
        cell(&mut line, Some(row.unattributed_share));
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

/// The per-interval CSV as a string.
pub fn intervals_csv(report: &Report) -> String {
    let mut buf = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_intervals(report, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The summary CSV: one row per VM, `(unattributed)`, and `total`.
pub fn summary_csv(report: &Report) -> String {
    let mut s = String::from(SUMMARY_HEADER);
    s.push('\n');
    for t in &report.summary {
        s.push_str(&csv_field(&t.vm));
        for v in [
            Some(t.vcpu_cpu_s),
            Some(t.emulator_cpu_s),
            Some(t.vhost_cpu_s),
            Some(t.shared_cpu_s),
            Some(t.charged_cpu_s),
            t.busy_share_pct,
            t.net_mb,
            t.disk_mb,
            t.mb_moved,
            t.packets,
            Some(t.overhead_cpu_s),
            t.overhead_cpu_s_per_mb,
            t.overhead_cpu_s_per_1000_packets,
        ] {
            cell(&mut s, v);
        }
        let _ = writeln!(s, ",{}", t.empty_cells);
    }
    s
}

fn opt(v: Option<f64>, width: usize, prec: usize) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("{v:>width$.prec$}"),
        None => format!("{:>width$}", "-"),
    }
}

/// A table and the calibration for a person to read (stderr).
pub fn describe(report: &Report) -> String {
    let mut s = String::new();
    let parts: Vec<&str> = report.pool_parts.iter().map(|p| p.name()).collect();
    let _ = writeln!(
        s,
        "charge {}: {} VM(s), {} intervals over {:.1} s; pool = {} = {:.3} CPU-s; split by {}",
        report.input,
        report.vms.len(),
        report.intervals,
        report.duration_s,
        parts.join(" + "),
        report.pool_cpu_s,
        report.method
    );
    if let Some(c) = &report.calibration {
        let _ = writeln!(
            s,
            "calibration ({} intervals{}): base {:.3} % of a CPU ({:.1} % of the pool), \
             R² {:.4}, fit {:.1} %, residual RMS {:.3} % of a CPU, condition {:.3e}",
            c.intervals_used,
            if c.intervals_skipped > 0 {
                format!(", {} skipped", c.intervals_skipped)
            } else {
                String::new()
            },
            c.base_cpu_pct,
            c.base_share_pct,
            c.r2,
            c.fit_pct,
            c.residual_rms_pct,
            c.condition
        );
        for f in &c.features {
            let _ = writeln!(
                s,
                "  {:<8} {:.6e} {} = {:.6} {} ({})",
                f.feature.name(),
                f.beta,
                f.beta_unit,
                f.cost,
                f.cost_unit,
                match f.status {
                    super::TermStatus::Fitted => "fitted",
                    super::TermStatus::AtZero => "at zero",
                    super::TermStatus::Dropped => "no such I/O: left out",
                }
            );
        }
    }
    let _ = writeln!(
        s,
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>10} {:>10} {:>9} {:>9}",
        "vm",
        "vcpu_s",
        "emul_s",
        "vhost_s",
        "shared_s",
        "charged_s",
        "busy%",
        "MB",
        "packets",
        "ovh_s/MB",
        "ovh_s/kp"
    );
    for t in &report.summary {
        let _ = writeln!(s, "{}", row(t));
    }
    s
}

fn row(t: &Totals) -> String {
    format!(
        "{:<16} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {} {} {} {} {}",
        t.vm,
        t.vcpu_cpu_s,
        t.emulator_cpu_s,
        t.vhost_cpu_s,
        t.shared_cpu_s,
        t.charged_cpu_s,
        opt(t.busy_share_pct, 7, 2),
        opt(t.mb_moved, 10, 3),
        opt(t.packets, 10, 0),
        opt(t.overhead_cpu_s_per_mb, 9, 5),
        opt(t.overhead_cpu_s_per_1000_packets, 9, 5)
    )
}
