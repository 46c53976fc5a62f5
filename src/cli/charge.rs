//! `vmmon charge`: options in, the library's charge, the per-interval CSV, the summary CSV,
//! the JSON report and a table on stderr out.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::analyze::usage;
use crate::charge::{self, By, Options, PoolPart, output};

/// Options of `vmmon charge`.
#[derive(Debug, Args)]
pub struct ChargeArgs {
    /// Host trace written by `vmmon record --vms` (wide or `--format long`, or aligned from
    /// one), or - for standard input.
    #[arg(value_name = "HOSTTRACE")]
    trace: String,

    /// What the shared pool is split by: packets or bytes through each VM's tap (rx + tx),
    /// disk bytes of its qemu process (read + write), or mixed (network and disk count
    /// equally; packets and bytes equally within the network).
    #[arg(long, value_enum, default_value_t = By::Packets, conflicts_with = "calibrate")]
    by: By,

    /// Pool parts added up as the shared pool (default: every part the trace has). Softirq
    /// and ksoftirqd time can overlap, depending on the kernel's irq-time accounting.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PARTS")]
    pool: Vec<PoolPart>,

    /// Fit the pool's cost per packet, per network byte and per disk byte, plus a base
    /// overhead, by non-negative least squares over the trace, and split by the fitted cost
    /// of each VM's I/O (the base overhead stays unattributed).
    #[arg(long)]
    calibrate: bool,

    /// Write the per-interval CSV to FILE instead of standard output (- is standard output).
    #[arg(
        short = 'o',
        long = "out",
        visible_alias = "output",
        value_name = "FILE"
    )]
    out: Option<PathBuf>,

    /// Write the per-VM summary CSV to FILE (- for standard output, with --out).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,

    /// Write the summary and the calibration as JSON to FILE (- for standard output, with
    /// --out).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn is_stdout(p: &Option<PathBuf>) -> bool {
    p.as_ref().is_some_and(|p| p.as_os_str() == "-")
}

/// Writes `text` to `path`, or to standard output for `-`.
fn write_to(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    } else {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Runs `vmmon charge`.
pub fn run(mut a: ChargeArgs) -> anyhow::Result<i32> {
    // `-o -` is standard output, as no --out is.
    a.out = a.out.filter(|p| p.as_os_str() != "-");
    let to_stdout = [is_stdout(&a.summary), is_stdout(&a.json)];
    if to_stdout.iter().any(|s| *s) && a.out.is_none() {
        return Err(usage(
            "--summary - and --json - need --out FILE: standard output already carries the \
             per-interval CSV"
                .into(),
        ));
    }
    if to_stdout.iter().all(|s| *s) {
        return Err(usage(
            "only one of --summary and --json can go to standard output".into(),
        ));
    }
    let trace = charge::read_trace(&a.trace)?;
    let opts = Options {
        by: a.by,
        pool: a.pool,
        calibrate: a.calibrate,
    };
    let report = charge::charge(&trace, &opts)?;
    for note in &report.notes {
        eprintln!("vmmon: note: {note}");
    }
    eprint!("{}", output::describe(&report));
    // The files first: a reader of standard output that stops early (`| head`) must not
    // keep the summary from being written.
    if let Some(p) = &a.out {
        let f =
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        output::write_intervals(&report, &mut std::io::BufWriter::new(f))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.summary {
        write_to(p, &output::summary_csv(&report))?;
    }
    match &a.json {
        Some(p) if p.as_os_str() == "-" => {
            write_to(p, &(serde_json::to_string_pretty(&report)? + "\n"))?
        }
        Some(p) => super::write_json(p, &report)?,
        None => {}
    }
    if a.out.is_none() {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        output::write_intervals(&report, &mut w)?;
    }
    Ok(0)
}
