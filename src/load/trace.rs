//! Reading load traces: CSV `time,load`, or the classic binary traces (pairs of IEEE doubles,
//! timestamp and load average).

use std::path::Path;

use anyhow::{Context, bail};

/// Byte order of a binary trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ByteOrder {
    /// Least significant byte first (x86, and the Alpha machines of the 1997 CMU traces).
    #[default]
    Little,
    /// Most significant byte first (SPARC, network order).
    Big,
}

/// A load trace: load averages `load` sampled every `period` seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTrace {
    /// Seconds between samples.
    pub period: f64,
    /// Load-average values.
    pub load: Vec<f64>,
}

/// Whether a trace at `path` is read as CSV by default: its extension is `.csv` (any case);
/// anything else is the binary format.
pub fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Shortest sample period played back: below it a slice is shorter than a scheduling quantum.
pub const MIN_PERIOD: f64 = 0.01;
/// Longest sample period played back (one day).
pub const MAX_PERIOD: f64 = 86_400.0;

/// Relative spread of the time steps tolerated before a trace is called non-uniform.
const STEP_TOLERANCE: f64 = 0.01;

/// Checks values and builds the trace from `(time, load, where)` records; `where` names the
/// record in messages (`file:line`).
fn build(
    label: &str,
    records: Vec<(Option<f64>, f64, String)>,
    period: Option<f64>,
) -> anyhow::Result<LoadTrace> {
    if records.is_empty() {
        bail!("{label}: the trace is empty");
    }
    for (_, load, at) in &records {
        if !load.is_finite() {
            bail!("{at}: load '{load}' is not a finite number");
        }
        if *load < 0.0 {
            bail!("{at}: load {load} is negative");
        }
    }
    let period = match period {
        Some(p) => p,
        None => {
            let times: Vec<(f64, &String)> = records
                .iter()
                .map(|(t, _, at)| t.map(|t| (t, at)))
                .collect::<Option<_>>()
                .with_context(|| format!("{label}: no time column: give --period SECONDS"))?;
            if times.len() < 2 {
                bail!("{label}: one sample has no period: give --period SECONDS");
            }
            let first = times[1].0 - times[0].0;
            for w in times.windows(2) {
                let step = w[1].0 - w[0].0;
                if step.is_nan() || step <= 0.0 {
                    bail!(
                        "{}: time {} does not increase (previous {})",
                        w[1].1,
                        w[1].0,
                        w[0].0
                    );
                }
                if (step - first).abs() > STEP_TOLERANCE * first {
                    bail!(
                        "{}: time step {step} s differs from the first step {first} s: a load \
                         trace must be evenly sampled",
                        w[1].1
                    );
                }
            }
            (times[times.len() - 1].0 - times[0].0) / (times.len() - 1) as f64
        }
    };
    if !(period.is_finite() && (MIN_PERIOD..=MAX_PERIOD).contains(&period)) {
        bail!(
            "{label}: a sample period of {period} s is implausible (playback needs \
             {MIN_PERIOD} to {MAX_PERIOD} s)"
        );
    }
    Ok(LoadTrace {
        period,
        load: records.into_iter().map(|r| r.1).collect(),
    })
}

/// Reads a CSV trace: a header with a `load` column (and `time`, Unix or any seconds),
/// or with `period` given, only `load`.
pub fn read_csv(path: &Path, period: Option<f64>) -> anyhow::Result<LoadTrace> {
    let label = path.display().to_string();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot open load trace {label}"))?;
    let header = csv
        .headers()
        .with_context(|| format!("{label}: cannot read the header"))?
        .clone();
    let names = crate::trace::read::header_names(&header, &label)?;
    let find = |n: &str| names.iter().position(|h| h == n);
    let Some(li) = find("load") else {
        bail!(
            "{label}: no column named 'load'; the columns are: {}",
            names.join(", ")
        );
    };
    let ti = find("time");
    let mut records = Vec::new();
    for rec in csv.records() {
        let rec = rec.map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        let line = rec.position().map_or(0, |p| p.line());
        let cell = |i: usize| rec.get(i).unwrap_or("").trim();
        let num = |i: usize, what: &str| -> anyhow::Result<f64> {
            cell(i).parse::<f64>().map_err(|_| {
                anyhow::anyhow!(
                    "{label}:{line}:{}: {what} '{}' is not a number",
                    i + 1,
                    cell(i)
                )
            })
        };
        let t = match ti {
            Some(i) => Some(num(i, "time")?),
            None => None,
        };
        records.push((t, num(li, "load")?, format!("{label}:{line}")));
    }
    build(&label, records, period)
}

/// Reads a binary trace: records of two IEEE 754 doubles, timestamp then load.
pub fn read_binary(
    path: &Path,
    order: ByteOrder,
    period: Option<f64>,
) -> anyhow::Result<LoadTrace> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read load trace {label}"))?;
    if bytes.len() % 16 != 0 {
        bail!(
            "{label}: {} bytes is not a whole number of 16-byte records (timestamp, load); \
             is this a CSV trace (--format csv)?",
            bytes.len()
        );
    }
    let f = |b: &[u8]| {
        let a: [u8; 8] = b.try_into().unwrap_or([0; 8]);
        match order {
            ByteOrder::Little => f64::from_le_bytes(a),
            ByteOrder::Big => f64::from_be_bytes(a),
        }
    };
    let records = bytes
        .chunks_exact(16)
        .enumerate()
        .map(|(i, r)| {
            (
                Some(f(&r[..8])),
                f(&r[8..]),
                format!("{label}: record {} (byte {})", i + 1, i * 16),
            )
        })
        .collect();
    build(&label, records, period)
        .with_context(|| format!("reading {label} as {order:?}-endian binary (--byte-order)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_traces_in_both_byte_orders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recs = [(100.0f64, 0.5f64), (101.0, 1.25), (102.0, 0.0)];
        for (order, name) in [(ByteOrder::Little, "le"), (ByteOrder::Big, "be")] {
            let p = dir.path().join(name);
            let mut b = Vec::new();
            for (t, l) in recs {
                for v in [t, l] {
                    b.extend(match order {
                        ByteOrder::Little => v.to_le_bytes(),
                        ByteOrder::Big => v.to_be_bytes(),
                    });
                }
            }
            std::fs::write(&p, &b).expect("write");
            let tr = read_binary(&p, order, None).expect("read");
            assert_eq!(tr.period, 1.0);
            assert_eq!(tr.load, vec![0.5, 1.25, 0.0]);
        }
        // The wrong byte order gives nonsense times, which are refused.
        let err = read_binary(&dir.path().join("be"), ByteOrder::Little, None).unwrap_err();
        assert!(format!("{err:#}").contains("Little-endian"), "{err:#}");
    }
}
