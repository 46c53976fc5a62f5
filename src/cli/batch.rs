//! `vmmon fit --batch`: many ARX models, listed in a PAIRS.csv or one model over a glob of
//! traces, fitted in parallel; one summary row and one model JSON each.
//!
//! Each trace is read once, for the union of the columns its models use; every model then
//! gets exactly the series a lone `vmmon fit` would read ([`Table::series`]) and is fitted by
//! the same code ([`batch::fit_one`]), so the numbers are the same bit for bit. Traces are
//! taken a pool's width at a time (as many as rayon has threads): their tables are read in
//! parallel, then all their models are fitted in parallel, then the tables are dropped. So at
//! most that many traces' selected columns are held at once (8 bytes per value, plus each
//! row's time and line number), besides one summary row per model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rayon::prelude::*;

use super::analyze::{TraceArgs, usage};
use super::model::parse_split;
use crate::sysid::arx::Orders;
use crate::sysid::batch::{self, FIGURES, Problem};
use crate::sysid::stats::Detrend;
use crate::trace::read::{self, ReadOptions, Table};

/// The columns a PAIRS.csv may have; the first three are required.
const PAIR_COLUMNS: [&str; 7] = ["trace", "output", "inputs", "na", "nb", "nk", "name"];

/// What `vmmon fit --batch` was asked for.
pub struct Request<'a> {
    /// DATA: the PAIRS.csv, or (with `output`) a glob of traces.
    pub trace: &'a TraceArgs,
    /// `-u`: the inputs of the glob form.
    pub inputs: &'a [String],
    /// `-y`: the output of the glob form; its presence selects that form.
    pub output: Option<&'a str>,
    /// `--poles`: na for the glob form, and for PAIRS.csv rows that leave it empty.
    pub poles: Option<usize>,
    /// `--zeros`, likewise.
    pub zeros: &'a [usize],
    /// `--delay`, likewise.
    pub delay: &'a [usize],
    /// `--estimate START:END`, for every trace.
    pub estimate: Option<&'a str>,
    /// `--validate START:END`: the rows the residuals are tested on (else the estimation rows).
    pub validate: Option<&'a str>,
    /// `-o`: the summary CSV (else standard output).
    pub out: Option<&'a Path>,
    /// `--models DIR`: where the model JSONs go.
    pub models: Option<&'a Path>,
}

/// One model to fit.
#[derive(Debug, Clone)]
struct Pair {
    name: String,
    trace: String,
    output: String,
    inputs: Vec<String>,
    orders: Orders,
}

/// A model's summary row: status, message, figures, model file.
struct Row {
    ok: bool,
    message: String,
    figures: Vec<String>,
    model: String,
}

/// A usage error at `file:line:column` of a PAIRS.csv cell (`file:line` when `col` is 0: the
/// row has no such column).
fn at(label: &str, line: u64, col: usize, msg: String) -> anyhow::Error {
    if col == 0 {
        usage(format!("{label}:{line}: {msg}"))
    } else {
        usage(format!("{label}:{line}:{col}: {msg}"))
    }
}

/// Whether `name` can be a model file's name as it stands.
fn safe_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Parses one order cell: `;`-separated whole numbers.
fn numbers(cell: &str) -> Result<Vec<usize>, String> {
    cell.split(';')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{}' is not a whole number", v.trim()))
        })
        .collect()
}

/// Reads PAIRS.csv (`label` for messages; relative trace paths are taken from `base`).
fn parse_pairs(label: &str, text: &str, base: &Path, r: &Request) -> anyhow::Result<Vec<Pair>> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = csv
        .headers()
        .map_err(|e| usage(format!("{label}:1:1: cannot read the header: {e}")))?
        .clone();
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        let h = h.trim();
        match PAIR_COLUMNS.iter().find(|c| **c == h) {
            Some(c) if col.insert(c, i).is_some() => {
                return Err(at(label, 1, i + 1, format!("column '{h}' appears twice")));
            }
            Some(_) => {}
            None => {
                return Err(at(
                    label,
                    1,
                    i + 1,
                    format!(
                        "unknown column '{h}'; PAIRS.csv has trace, output, inputs and optionally \
                         na, nb, nk, name"
                    ),
                ));
            }
        }
    }
    for need in &PAIR_COLUMNS[..3] {
        if !col.contains_key(need) {
            return Err(usage(format!(
                "{label}:1: no '{need}' column; PAIRS.csv has trace, output, inputs and \
                 optionally na, nb, nk, name"
            )));
        }
    }
    let mut pairs = Vec::new();
    let mut records = Vec::new();
    for rec in csv.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            usage(format!("{label}:{line}:1: {e}"))
        })?;
        records.push(rec);
    }
    let width = records.len().to_string().len();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (row, rec) in records.iter().enumerate() {
        let line = rec.position().map_or(0, |p| p.line());
        let get = |name: &str| col.get(name).map(|&i| (i + 1, rec[i].trim()));
        let (tc, trace) = get("trace").unwrap_or_default();
        if trace.is_empty() || trace == "-" {
            return Err(at(
                label,
                line,
                tc,
                "a trace file is needed (standard input cannot be shared by a batch)".into(),
            ));
        }
        let trace = if Path::new(trace).is_absolute() {
            trace.to_string()
        } else {
            base.join(trace).to_string_lossy().into_owned()
        };
        let (oc, output) = get("output").unwrap_or_default();
        if output.is_empty() {
            return Err(at(label, line, oc, "the output column is empty".into()));
        }
        let (ic, inputs) = get("inputs").unwrap_or_default();
        let inputs: Vec<String> = inputs.split(';').map(|s| s.trim().to_string()).collect();
        if inputs.iter().any(String::is_empty) {
            return Err(at(
                label,
                line,
                ic,
                "inputs are column names separated by ';', none empty".into(),
            ));
        }
        let k = inputs.len();
        let na = match get("na") {
            Some((c, v)) if !v.is_empty() => v
                .parse::<usize>()
                .map_err(|_| at(label, line, c, format!("na '{v}' is not a whole number")))?,
            other => r.poles.ok_or_else(|| {
                at(
                    label,
                    line,
                    other.map_or(0, |o| o.0),
                    "no na: fill the cell or give --poles".into(),
                )
            })?,
        };
        let per_input = |what: &str, flag: &str, default: &[usize]| -> anyhow::Result<_> {
            let (c, v) = match get(what) {
                Some((c, v)) if !v.is_empty() => (
                    c,
                    numbers(v).map_err(|e| at(label, line, c, format!("{what}: {e}")))?,
                ),
                other if !default.is_empty() => (other.map_or(0, |o| o.0), default.to_vec()),
                other => {
                    return Err(at(
                        label,
                        line,
                        other.map_or(0, |o| o.0),
                        format!("no {what}: fill the cell or give --{flag}"),
                    ));
                }
            };
            match v.len() {
                1 => Ok(vec![v[0]; k]),
                n if n == k => Ok(v),
                n => Err(at(
                    label,
                    line,
                    c,
                    format!(
                        "{what} has {n} values for {k} inputs: give one value, or one per input"
                    ),
                )),
            }
        };
        let nb = per_input("nb", "zeros", r.zeros)?;
        let nk = per_input("nk", "delay", r.delay)?;
        let name = match get("name") {
            Some((c, v)) if !v.is_empty() => {
                if !safe_name(v) {
                    return Err(at(
                        label,
                        line,
                        c,
                        format!(
                            "name '{v}' must be letters, digits, '.', '_' or '-' (it names the \
                             model file) and not start with '.'"
                        ),
                    ));
                }
                v.to_string()
            }
            _ => format!("{:0width$}", row + 1),
        };
        if let Some(first) = seen.insert(name.clone(), line) {
            return Err(at(
                label,
                line,
                get("name").map_or(0, |o| o.0),
                format!("name '{name}' is also the name of line {first}'s model"),
            ));
        }
        pairs.push(Pair {
            name,
            trace,
            output: output.to_string(),
            inputs,
            orders: Orders { na, nb, nk },
        });
    }
    if pairs.is_empty() {
        return Err(usage(format!("{label}: no models listed")));
    }
    Ok(pairs)
}

/// The files matching `pattern`, whose last component may hold `*` and `?` (sorted by name).
fn glob(pattern: &str) -> anyhow::Result<Vec<String>> {
    let path = Path::new(pattern);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let wild = |s: &str| s.contains(['*', '?']);
    if dir.is_some_and(|d| wild(&d.to_string_lossy())) {
        return Err(usage(format!(
            "'{pattern}': wildcards (* and ?) are allowed in the file name only"
        )));
    }
    if !wild(&file) {
        return Ok(vec![pattern.to_string()]);
    }
    let mut re = String::from("^");
    for c in file.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    let re = regex::Regex::new(&re).map_err(|e| usage(format!("'{pattern}': {e}")))?;
    let listing = dir.unwrap_or(Path::new("."));
    let mut found: Vec<String> = std::fs::read_dir(listing)
        .with_context(|| format!("cannot list {}", listing.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            re.is_match(&name).then(|| match dir {
                Some(d) => d.join(&name).to_string_lossy().into_owned(),
                None => name,
            })
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(usage(format!("no file matches '{pattern}'")));
    }
    Ok(found)
}

/// The glob form: the same model on every matching trace, named after the file.
fn glob_pairs(pattern: &str, output: &str, r: &Request) -> anyhow::Result<Vec<Pair>> {
    let k = r.inputs.len();
    let na = r
        .poles
        .ok_or_else(|| usage("--batch with -y needs --poles".into()))?;
    let per_input = |what: &str, v: &[usize]| -> anyhow::Result<Vec<usize>> {
        match v.len() {
            1 => Ok(vec![v[0]; k]),
            n if n == k => Ok(v.to_vec()),
            n => Err(usage(format!(
                "--{what} has {n} values for {k} inputs: give one value, or one per input"
            ))),
        }
    };
    let orders = Orders {
        na,
        nb: per_input("zeros", r.zeros)?,
        nk: per_input("delay", r.delay)?,
    };
    let files = glob(pattern)?;
    let stem = |f: &str| {
        Path::new(f)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let stems: Vec<String> = files.iter().map(|f| stem(f)).collect();
    let unique = {
        let mut s = stems.clone();
        s.sort();
        s.dedup();
        s.len() == stems.len() && stems.iter().all(|s| safe_name(s))
    };
    let width = files.len().to_string().len();
    Ok(files
        .iter()
        .zip(stems)
        .enumerate()
        .map(|(i, (f, s))| Pair {
            // File stems name the models unless two clash or one is unfit for a file name.
            name: if unique {
                s
            } else {
                format!("{:0width$}", i + 1)
            },
            trace: f.clone(),
            output: output.to_string(),
            inputs: r.inputs.to_vec(),
            orders: orders.clone(),
        })
        .collect())
}

/// The models of a batch request.
fn pairs(r: &Request) -> anyhow::Result<Vec<Pair>> {
    let data = r.trace.data.as_str();
    if let Some(output) = r.output {
        if data == "-" {
            return Err(usage(
                "--batch with -y takes a glob of trace files, not standard input".into(),
            ));
        }
        return glob_pairs(data, output, r);
    }
    let (text, label, base) = if data == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
            .context("cannot read the pairs from standard input")?;
        (s, "<stdin>".to_string(), PathBuf::new())
    } else {
        let text = std::fs::read_to_string(data)
            .with_context(|| format!("cannot read the pairs file {data}"))?;
        let base = Path::new(data)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        (text, data.to_string(), base)
    };
    parse_pairs(&label, &text, &base, r)
}

/// Fits one pair from its trace's table.
fn fit_pair(
    p: &Pair,
    table: &Result<Table, String>,
    opts: &ReadOptions,
    r: &Request,
) -> anyhow::Result<(batch::Fitted, Vec<String>)> {
    let table = table.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut names = p.inputs.clone();
    names.push(p.output.clone());
    let series = table.series(&names, opts)?;
    let mut notes = series.notes.clone();
    if series.segments.len() > 1 {
        notes.push(format!(
            "using the longest of {} clean segments",
            series.segments.len()
        ));
    }
    let seg = series
        .segments
        .iter()
        .max_by_key(|s| s.len())
        .context("no samples")?;
    let n = seg.len();
    let k = p.inputs.len();
    let est = r.estimate.map_or(Ok(0..n), |s| parse_split(s, n))?;
    let test = r.validate.map(|s| parse_split(s, n)).transpose()?;
    let slices = |rows: &std::ops::Range<usize>| -> (&[f64], Vec<&[f64]>) {
        (
            &seg.columns[k][rows.clone()],
            seg.columns[..k].iter().map(|c| &c[rows.clone()]).collect(),
        )
    };
    let (y, us) = slices(&est);
    let problem = Problem {
        output: &p.output,
        inputs: &p.inputs,
        orders: p.orders.clone(),
        sample_time: series.step,
        y,
        us,
        test: test.as_ref().map(slices),
    };
    let mut fitted = batch::fit_one(&problem)?;
    fitted.model.rates = r.trace.rates;
    if let Err(e) = &fitted.test {
        notes.push(format!("residual tests not run: {e}"));
    }
    Ok((fitted, notes))
}

/// One pair's row, its model written to `--models` if asked.
fn row(p: &Pair, table: &Result<Table, String>, opts: &ReadOptions, r: &Request) -> Row {
    let result = fit_pair(p, table, opts, r).and_then(|(fitted, notes)| {
        let model = match r.models {
            Some(dir) => {
                let path = dir.join(format!("{}.json", p.name));
                let text = serde_json::to_string_pretty(&fitted.model)? + "\n";
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write model {}", path.display()))?;
                path.to_string_lossy().into_owned()
            }
            None => String::new(),
        };
        Ok(Row {
            ok: true,
            message: notes.join("; "),
            figures: batch::figures(&fitted),
            model,
        })
    });
    result.unwrap_or_else(|e| Row {
        ok: false,
        message: format!("{e:#}"),
        figures: vec![String::new(); FIGURES.len()],
        model: String::new(),
    })
}

/// Runs `vmmon fit --batch`.
pub fn run(r: &Request) -> anyhow::Result<i32> {
    let pairs = pairs(r)?;
    // Malformed row specs are the user's to fix before anything runs; a spec that selects no
    // rows of a particular trace fails that model only.
    for s in [r.estimate, r.validate].into_iter().flatten() {
        parse_split(s, usize::MAX / 2)?;
    }
    let opts = r.trace.options(Detrend::None)?;
    if let Some(dir) = r.models {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the models folder {}", dir.display()))?;
    }
    // Pairs grouped by trace, traces in order of first use.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let g = *index.entry(&p.trace).or_insert_with(|| {
            groups.push((&p.trace, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let bar = super::stderr_is_terminal().then(|| {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} models  {elapsed}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(pairs.len() as u64).with_style(style)
    });
    let mut rows: Vec<Option<Row>> = (0..pairs.len()).map(|_| None).collect();
    let width = rayon::current_num_threads().max(1);
    for chunk in groups.chunks(width) {
        let tables: Vec<Result<Table, String>> = chunk
            .par_iter()
            .map(|(trace, members)| {
                let mut names: Vec<String> = Vec::new();
                for &i in members {
                    let p = &pairs[i];
                    for c in p.inputs.iter().chain(std::iter::once(&p.output)) {
                        if !names.contains(c) {
                            names.push(c.clone());
                        }
                    }
                }
                read::read_table(trace, &names, &opts).map_err(|e| format!("{e:#}"))
            })
            .collect();
        let jobs: Vec<(usize, usize)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(t, (_, members))| members.iter().map(move |&i| (t, i)))
            .collect();
        let done: Vec<(usize, Row)> = jobs
            .par_iter()
            .map(|&(t, i)| {
                let out = row(&pairs[i], &tables[t], &opts, r);
                if let Some(b) = &bar {
                    b.inc(1);
                }
                (i, out)
            })
            .collect();
        for (i, out) in done {
            rows[i] = Some(out);
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut header: Vec<&str> = vec![
        "name", "trace", "output", "inputs", "na", "nb", "nk", "status", "message",
    ];
    header.extend(FIGURES);
    header.push("model");
    let mut buf = csv::Writer::from_writer(Vec::new());
    buf.write_record(&header)?;
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(";");
    let mut failed = 0;
    for (p, out) in pairs.iter().zip(rows) {
        let out = out.context("a model was not run")?;
        failed += usize::from(!out.ok);
        let mut rec = vec![
            p.name.clone(),
            p.trace.clone(),
            p.output.clone(),
            p.inputs.join(";"),
            p.orders.na.to_string(),
            join(&p.orders.nb),
            join(&p.orders.nk),
            if out.ok { "ok" } else { "error" }.to_string(),
            out.message,
        ];
        rec.extend(out.figures);
        rec.push(out.model);
        buf.write_record(&rec)?;
    }
    let csv = buf.into_inner().context("cannot format the summary")?;
    match r.out {
        Some(p) => {
            std::fs::write(p, &csv).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), &csv)?,
    }
    if failed > 0 {
        eprintln!(
            "vmmon: error: {failed} of {} models failed (status 'error' in the summary, with \
             the reason in 'message')",
            pairs.len()
        );
        return Ok(super::EXIT_FAILURE);
    }
    eprintln!(
        "vmmon: fitted {} models from {} traces",
        pairs.len(),
        groups.len()
    );
    Ok(0)
}
