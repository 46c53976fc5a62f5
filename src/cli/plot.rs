//! `vmmon plot`: arguments, then the library ([`crate::plot`]) reads the files and draws.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::plot::{self, Criterion, Kind};

/// The kind of picture, or `auto` to tell it from the first input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// From the CSV header or the JSON keys of the first input.
    Auto,
    /// Trace columns over time (any CSV with a time column).
    Trace,
    /// Cross-correlation with its 99% bound (vmmon xcorr -o).
    Xcorr,
    /// Impulse and step response with bounds (vmmon impulse -o, or its --json).
    Impulse,
    /// Measured vs simulated vs predicted, and with the --json the residual tests (vmmon
    /// validate -o [--json]).
    Validation,
    /// Criterion against model size (vmmon order -o).
    Order,
}

/// Options of `vmmon plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// What to draw.
    #[arg(long, value_enum, default_value_t = KindArg::Auto)]
    kind: KindArg,

    /// Files written by the other commands: one or more traces; or the CSV of xcorr,
    /// impulse (or its JSON), order; or the validate CSV followed by its JSON. - reads a CSV
    /// from standard input.
    #[arg(value_name = "INPUT", required = true)]
    inputs: Vec<String>,

    /// Picture to write: its extension, .svg or .png, chooses the format.
    #[arg(
        short = 'o',
        long = "out",
        value_name = "OUT.svg|OUT.png",
        required = true
    )]
    out: PathBuf,

    /// Trace columns to draw, comma-separated (default: every numeric column but time and
    /// elapsed, at most 8).
    #[arg(long, value_delimiter = ',', value_name = "COL,...")]
    columns: Option<Vec<String>>,

    /// Criterion of an order picture (default: validation loss when the grid has it, else
    /// AIC).
    #[arg(long, value_enum)]
    criterion: Option<Criterion>,

    /// Title instead of the one made from the data.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,

    /// Width in pixels [default: 900].
    #[arg(long, value_name = "PX")]
    width: Option<u32>,

    /// Height in pixels [default: 500, 760 with two rows of panels].
    #[arg(long, value_name = "PX")]
    height: Option<u32>,
}

/// Runs `vmmon plot`.
pub fn run(a: PlotArgs) -> anyhow::Result<i32> {
    // A wrong extension is a usage error: refuse it before reading anything.
    plot::Format::of(&a.out)?;
    let kind = match a.kind {
        KindArg::Auto => None,
        KindArg::Trace => Some(Kind::Trace),
        KindArg::Xcorr => Some(Kind::Xcorr),
        KindArg::Impulse => Some(Kind::Impulse),
        KindArg::Validation => Some(Kind::Validation),
        KindArg::Order => Some(Kind::Order),
    };
    if a.columns.is_some() && !matches!(kind, None | Some(Kind::Trace)) {
        return Err(super::analyze::usage(
            "--columns chooses trace columns: it applies to --kind trace only".into(),
        ));
    }
    let opts = plot::Options {
        kind,
        columns: a.columns,
        criterion: a.criterion,
        title: a.title,
        width: a.width,
        height: a.height,
    };
    let (fig, notes) = plot::figure_from_files(&a.inputs, &opts)?;
    for n in &notes {
        eprintln!("vmmon: note: {n}");
    }
    plot::render(&fig, &a.out)?;
    Ok(0)
}
