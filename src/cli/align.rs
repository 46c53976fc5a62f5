//! `vmmon align`: options in, the library's plan and run, a summary on stderr, the CSV and
//! its sidecar out.

use std::path::PathBuf;

use clap::Args;

use crate::align::output::{BlockFile, CsvSink, Stdout};
use crate::align::{
    ColumnRef, KindArg, LagArg, Metadata, OffsetArg, Options, Plan, RunSummary, SourceArg,
};

/// Options of `vmmon align`.
#[derive(Debug, Args)]
pub struct AlignArgs {
    /// Sources as NAME=FILE; NAME prefixes the columns (host.cpu_user_pct). The first source
    /// is the reference: it sets the grid's phase and, by default, its rate.
    #[arg(value_name = "NAME=FILE", required = true)]
    sources: Vec<SourceArg>,

    /// Grid rate in Hz (default: the first source's rate, from its sidecar or its rows).
    #[arg(short, long, value_name = "HZ")]
    rate: Option<f64>,

    /// Write the CSV to FILE and the sidecar to FILE.meta.json (default: standard output).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "out",
        value_name = "FILE"
    )]
    output: Option<PathBuf>,

    /// Write the sidecar here (also when the CSV goes to standard output).
    #[arg(long, value_name = "FILE")]
    meta: Option<PathBuf>,

    /// Longest step between a source's rows that is bridged; longer gaps give empty cells
    /// (default: 2.5 periods of each source).
    #[arg(long, value_name = "SECONDS")]
    max_gap: Option<f64>,

    /// Seconds to add to a source's times (reference clock minus its clock), replacing its
    /// clock columns; or a `vmmon clock probe` CSV whose offsets are interpolated.
    #[arg(long, value_name = "NAME=SECONDS|FILE", value_delimiter = ',')]
    offset: Vec<OffsetArg>,

    /// Estimate B's correction from the cross-correlation of A.COL and B.COL (repeatable).
    #[arg(long, value_name = "A.COL,B.COL")]
    lag_from: Vec<LagArg>,

    /// Largest lag searched by --lag-from, seconds (default: a quarter of the window).
    #[arg(long, value_name = "SECONDS")]
    max_lag: Option<f64>,

    /// Length of the --lag-from pre-pass from the start of the common span, seconds
    /// (default: 65,536 samples).
    #[arg(long, value_name = "SECONDS")]
    lag_window: Option<f64>,

    /// A column's kind, overriding its sidecar and name: gauge, rate, total, or time (not
    /// resampled).
    #[arg(long, value_name = "SRC.COL=KIND", value_delimiter = ',')]
    kind: Vec<KindArg>,

    /// Output only these columns (default: every data column of every source).
    #[arg(long, value_name = "SRC.COL,...", value_delimiter = ',')]
    columns: Option<Vec<ColumnRef>>,
}

/// Runs `vmmon align`.
pub fn run(a: AlignArgs, command: Vec<String>) -> anyhow::Result<i32> {
    let opts = Options {
        sources: a.sources,
        rate_hz: a.rate,
        max_gap_s: a.max_gap,
        offsets: a.offset,
        lag_from: a.lag_from,
        max_lag_s: a.max_lag,
        lag_window_s: a.lag_window,
        kinds: a.kind,
        columns: a.columns,
    };
    let plan = Plan::new(&opts)?;
    for l in plan.lags() {
        let e = &l.estimate;
        eprintln!(
            "vmmon: lag {} → {}: {} corrected by {:+.6} s ± {} (standard error over {} \
             blocks), peak r = {:.4} at {:+.3} samples of {} s; {} samples",
            l.fixed,
            l.moved,
            l.moved.split('.').next().unwrap_or(""),
            e.offset_s,
            e.stderr_s
                .map_or("n/a".to_string(), |s| format!("{s:.6} s")),
            e.blocks,
            e.peak_r,
            e.lag_samples,
            e.period_s,
            e.samples
        );
    }
    let summary = match &a.output {
        Some(p) => plan.run(&mut CsvSink::new(BlockFile::create(p)?))?,
        None => plan.run(&mut CsvSink::new(Stdout))?,
    };
    let meta = plan.metadata(&summary, command);
    describe(&meta, &summary);
    let meta_path = a
        .meta
        .or_else(|| a.output.as_deref().and_then(crate::trace::default_sidecar));
    if let Some(p) = meta_path {
        write_meta(&meta, &p)?;
    }
    Ok(0)
}

fn write_meta(meta: &Metadata, path: &std::path::Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(meta)? + "\n";
    crate::trace::write_replacing(path, &text)
        .map_err(|e| anyhow::anyhow!("cannot write metadata {}: {e}", path.display()))
}

fn describe(meta: &Metadata, run: &RunSummary) {
    let span = match (meta.start_unix, meta.end_unix) {
        (Some(a), Some(b)) => format!("{a:.6} to {b:.6}"),
        _ => "nothing".into(),
    };
    let n = meta.sources.len();
    eprintln!(
        "vmmon: aligned {n} source{} on {} rows at {} Hz ({span}), {} columns",
        if n == 1 { "" } else { "s" },
        run.rows,
        meta.rate_hz,
        meta.columns.len() - 1
    );
    for s in &meta.sources {
        let c = &s.correction;
        let mut how = c.method.clone();
        if let (Some(n), Some((a, b))) = (c.probes, c.probe_offsets_s) {
            how += &format!(" ({n} probes, offset {a:+.6} → {b:+.6} s");
            if let Some(d) = c.drift_ppm {
                how += &format!(", drift {d:+.1} ppm");
            }
            how += ")";
        }
        if c.constant_s != 0.0 {
            how += &format!(", {:+.6} s", c.constant_s);
        }
        eprintln!(
            "vmmon:   {}: {} rows read, period {} s ({}), correction {how}, {} empty cells",
            s.name, s.rows_read, s.period_s, s.period_from, s.empty_cells
        );
    }
}
