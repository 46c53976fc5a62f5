//! `vmmon import`: a Prometheus query result (JSON) or a Parquet file as the wide CSV the
//! analyzer reads.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::export::import::{self, NameOptions};

/// Options of `vmmon import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A Prometheus /api/v1/query_range (or /api/v1/query) JSON response, or a Parquet file
    /// (a `vmmon record --format parquet` recording or any table with a `time` column);
    /// `-` reads JSON from stdin.
    #[arg(value_name = "FILE")]
    input: String,

    /// Write the CSV to FILE instead of stdout (`-` is stdout).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// The label whose value prefixes a series' column (`vm="vm1"` gives `vm1.NAME`).
    #[arg(long, default_value = "vm", value_name = "LABEL")]
    vm_label: String,
}

/// Runs `vmmon import`.
pub fn run(args: ImportArgs) -> anyhow::Result<i32> {
    let mut bytes = Vec::new();
    if args.input == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes =
            std::fs::read(&args.input).with_context(|| format!("cannot read {}", args.input))?;
    }
    let label = if args.input == "-" {
        "<stdin>"
    } else {
        args.input.as_str()
    };
    let imported = if bytes.starts_with(b"PAR1") {
        if args.input == "-" {
            anyhow::bail!("<stdin>: Parquet is read from a file, not from standard input");
        }
        drop(bytes);
        from_parquet(&args.input)?
    } else {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| anyhow::anyhow!("{label}: neither Parquet nor UTF-8 JSON ({e})"))?;
        let opts = NameOptions {
            vm_label: args.vm_label.clone(),
        };
        import::from_prometheus(text, label, &opts)?
    };
    for n in &imported.notes {
        eprintln!("vmmon: {n}");
    }
    let table = &imported.table;
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        None => table.write_csv(&mut std::io::stdout().lock())?,
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create output file {}", path.display()))?;
            table
                .write_csv(&mut std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    eprintln!(
        "vmmon: imported {} series, {} rows",
        table.names.len(),
        table.times_us.len()
    );
    Ok(0)
}

#[cfg(feature = "parquet")]
fn from_parquet(path: &str) -> anyhow::Result<import::Import> {
    import::from_parquet(std::path::Path::new(path))
}

#[cfg(not(feature = "parquet"))]
fn from_parquet(path: &str) -> anyhow::Result<import::Import> {
    anyhow::bail!(
        "{path}: a Parquet file, but this vmmon was built without the `parquet` cargo feature"
    )
}
