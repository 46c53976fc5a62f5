//! `vmmon topo`: a traffic matrix in, the inferred topology out as JSON (standard output or
//! `--json`), a summary on standard error and, with `--svg`, a picture.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::analyze::usage;
use crate::net::topo::{self, Options, Symmetrize};

/// Options of `vmmon topo`.
#[derive(Debug, Args)]
pub struct TopoArgs {
    /// N×N matrix CSV (`vmmon traffic`, or any CSV whose header is a first cell then the
    /// names, and whose rows are a name then N values; empty cells are 0), or - for standard
    /// input.
    #[arg(value_name = "MATRIX")]
    matrix: String,

    /// Edges whose weight, after normalising by the largest, is below this are pruned.
    #[arg(short = 't', long, default_value_t = 0.1, value_name = "FRACTION")]
    threshold: f64,

    /// How a pair's two directions make one undirected weight: their sum, or the larger.
    #[arg(long, value_enum, default_value_t = Symmetrize::Sum)]
    symmetrize: Symmetrize,

    /// Below this best score the topology is reported as `unknown`.
    #[arg(long, default_value_t = 0.75, value_name = "SCORE")]
    min_score: f64,

    /// Write the JSON result to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Draw the kept graph as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// Runs `vmmon topo`.
pub fn run(a: TopoArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&a.threshold) {
        return Err(usage(format!(
            "--threshold {} must be between 0 and 1 (a share of the largest weight)",
            crate::trace::shown(a.threshold)
        )));
    }
    if !(0.0..=1.0).contains(&a.min_score) {
        return Err(usage(format!(
            "--min-score {} must be between 0 and 1",
            crate::trace::shown(a.min_score)
        )));
    }
    let matrix = topo::read_matrix(&a.matrix)?;
    let opts = Options {
        threshold: a.threshold,
        symmetrize: a.symmetrize,
        min_score: a.min_score,
    };
    let source = if a.matrix == "-" {
        "<stdin>"
    } else {
        &a.matrix
    };
    let t = topo::infer(&matrix, &opts).with_context(|| source.to_string())?;
    eprint!("{}", topo::describe(&t));
    if let Some(p) = &a.svg {
        let svg = topo::svg(&t)?;
        std::fs::write(p, svg).with_context(|| format!("cannot write {}", p.display()))?;
    }
    match &a.json {
        Some(p) if p.as_os_str() != "-" => super::write_json(p, &t)?,
        _ => {
            let text = serde_json::to_string_pretty(&t)? + "\n";
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(0)
}
