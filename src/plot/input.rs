//! Reading what the commands wrote: which kind of result a file holds (from its CSV header
//! or JSON keys), and its columns, through the trace reader so that a bad cell is reported
//! as `file:line:column` like everywhere else.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::Figure;
use super::kinds::{self, ImpulseData, OrderGrid, Response, TraceSet, ValidationData, XcorrData};
use crate::trace::read::{self, ReadOptions, Table};

/// What a picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Trace columns over time (any CSV with a `time` column).
    Trace,
    /// A cross-correlation with its 99% bound (`vmmon xcorr -o`).
    Xcorr,
    /// Impulse and step responses with their bounds (`vmmon impulse -o` or `--json`).
    Impulse,
    /// Measured, simulated and predicted output, and the residual tests (`vmmon validate -o`,
    /// optionally with its `--json`).
    Validation,
    /// An order search: a criterion against the number of parameters (`vmmon order -o`).
    Order,
}

/// The criterion an order-search picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Criterion {
    /// Akaike's information criterion (`AIC`).
    Aic,
    /// Bayesian information criterion (`BIC`).
    Bic,
    /// Final prediction error (`FPE`).
    Fpe,
    /// The MDL-style `V (1 + d ln N / N)` (`MDL`).
    Mdl,
    /// The loss V on the estimation data (`V`).
    V,
    /// One-step prediction loss on the validation rows (`validation_loss`).
    Validation,
}

impl Criterion {
    /// The column of `vmmon order -o` that holds it.
    pub fn column(self) -> &'static str {
        match self {
            Criterion::Aic => "AIC",
            Criterion::Bic => "BIC",
            Criterion::Fpe => "FPE",
            Criterion::Mdl => "MDL",
            Criterion::V => "V",
            Criterion::Validation => "validation_loss",
        }
    }
}

/// How files become a figure.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The kind; `None` detects it from the first input.
    pub kind: Option<Kind>,
    /// Trace columns to draw; `None`: every numeric column but time and elapsed (up to 8).
    pub columns: Option<Vec<String>>,
    /// Order criterion; `None`: validation loss when the column has values, else AIC.
    pub criterion: Option<Criterion>,
    /// Title instead of the kind's own.
    pub title: Option<String>,
    /// Width in pixels instead of the default.
    pub width: Option<u32>,
    /// Height in pixels instead of the default.
    pub height: Option<u32>,
}

/// Most trace columns drawn by default: more lines than this cannot be told apart.
pub const MAX_DEFAULT_COLUMNS: usize = 8;

/// The kind of result a CSV header belongs to, if any.
pub fn detect_csv(header: &[String]) -> Option<Kind> {
    let has = |n: &str| header.iter().any(|h| h == n);
    let has_prefix = |p: &str| header.iter().any(|h| h.starts_with(p));
    if has("lag") && has("xcorr") && has("bound") {
        Some(Kind::Xcorr)
    } else if has("lag") && (has("g") || has_prefix("g.")) {
        Some(Kind::Impulse)
    } else if ["measured", "simulated", "predicted", "residual"]
        .iter()
        .all(|n| has(n))
    {
        Some(Kind::Validation)
    } else if ["rank", "na", "nb", "nk", "d"].iter().all(|n| has(n)) {
        Some(Kind::Order)
    } else if has("time") {
        Some(Kind::Trace)
    } else {
        None
    }
}

/// What a JSON file of the commands holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// `vmmon validate --json`.
    Validation,
    /// `vmmon impulse --json`.
    Impulse,
    /// `vmmon xcorr --json` (the summary only).
    Xcorr,
}

/// The kind of a JSON result, by its keys.
pub fn detect_json(v: &Value) -> Option<JsonKind> {
    let has = |k: &str| v.get(k).is_some();
    if has("residual_acf") && has("input_residual_xcorr") {
        Some(JsonKind::Validation)
    } else if has("responses") {
        Some(JsonKind::Impulse)
    } else if has("peak_lag") && has("bound") {
        Some(JsonKind::Xcorr)
    } else {
        None
    }
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::record::UsageError(msg))
}

/// Whether `path` is a JSON file: by extension, else by its first non-blank byte.
fn is_json(path: &str) -> bool {
    if path == "-" {
        return false;
    }
    let p = Path::new(path);
    if p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return true;
    }
    use std::io::Read as _;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// Reads a JSON result; a syntax error names `file:line:column`.
fn read_json(path: &str) -> anyhow::Result<(Value, JsonKind)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{path}:{}:{}: not valid JSON: {e}", e.line(), e.column()))?;
    let kind = detect_json(&v).ok_or_else(|| {
        usage(format!(
            "{path}: not a JSON file of vmmon validate, impulse or xcorr (no residual_acf, \
             responses or peak_lag key)"
        ))
    })?;
    Ok((v, kind))
}

/// A number array under `key`, with null as NaN; an error names the file and key.
fn numbers(v: &Value, key: &str, path: &str) -> anyhow::Result<Vec<f64>> {
    let arr = v
        .get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("{path}: \"{key}\" is missing or not an array"))?;
    arr.iter()
        .map(|x| match x {
            Value::Null => Ok(f64::NAN),
            x => x
                .as_f64()
                .with_context(|| format!("{path}: \"{key}\" holds {x}, not a number")),
        })
        .collect()
}

fn number(v: &Value, key: &str, path: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("{path}: \"{key}\" is missing or not a number"))
}

/// Reads a CSV result once, its columns chosen from the header by `choose` given the kind
/// (detected from the header when `kind` is `None`).
fn read_csv(
    path: &str,
    kind: Option<Kind>,
    choose: impl FnOnce(Kind, &[String]) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<(Kind, Table)> {
    let mut found = kind;
    let table = read::read_table_with(
        path,
        |header| {
            let k = match kind {
                Some(k) => k,
                None => detect_csv(header).ok_or_else(|| {
                    usage(format!(
                        "cannot tell what {path} holds from its header ({}): give --kind",
                        header.join(",")
                    ))
                })?,
            };
            found = Some(k);
            choose(k, header)
        },
        &ReadOptions::default(),
    )?;
    Ok((found.expect("set by the chooser"), table))
}

/// The columns a kind reads from its CSV (besides a trace's, which the user chooses).
fn kind_columns(kind: Kind, header: &[String]) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    match kind {
        Kind::Trace => Vec::new(),
        Kind::Xcorr => s(&["lag_s", "xcorr", "bound"]),
        Kind::Impulse => {
            let mut cols = s(&["lag_s"]);
            for h in header {
                if ["g", "sd", "bound", "step"].contains(&h.as_str())
                    || ["g.", "sd.", "bound.", "step."]
                        .iter()
                        .any(|p| h.starts_with(p))
                {
                    cols.push(h.clone());
                }
            }
            if !cols.iter().any(|c| c == "g" || c.starts_with("g.")) {
                cols.push("g".into());
            }
            cols
        }
        Kind::Validation => s(&["time", "measured", "simulated", "predicted", "residual"]),
        Kind::Order => s(&[
            "na",
            "nb",
            "nk",
            "d",
            "V",
            "FPE",
            "AIC",
            "BIC",
            "MDL",
            "validation_loss",
        ]),
    }
}

/// The named columns of a table, owned.
fn columns(table: &Table, names: &[String]) -> anyhow::Result<Vec<Vec<f64>>> {
    let (_, cols) = table.raw_columns(names)?;
    Ok(cols.into_iter().map(<[f64]>::to_vec).collect())
}

/// Reads `inputs` (CSV or JSON files the commands wrote; `-` is standard input, CSV) and
/// builds their figure. Also returns notes for the user (columns left out, for instance).
pub fn figure_from_files(
    inputs: &[String],
    opts: &Options,
) -> anyhow::Result<(Figure, Vec<String>)> {
    if inputs.is_empty() {
        return Err(usage("no input file given".into()));
    }
    if inputs.iter().filter(|i| *i == "-").count() > 1 {
        return Err(usage("standard input (-) can be read only once".into()));
    }
    let mut notes = Vec::new();
    let mut jsons = Vec::new();
    let mut csvs = Vec::new();
    for i in inputs {
        if is_json(i) {
            let (v, k) = read_json(i)?;
            jsons.push((i.as_str(), v, k));
        } else {
            csvs.push(i.as_str());
        }
    }
    let mut fig = match (csvs.first(), opts.kind) {
        (None, Some(k)) if k != Kind::Impulse => {
            return Err(usage(format!(
                "a {} picture needs its CSV; only JSON was given",
                format!("{k:?}").to_lowercase()
            )));
        }
        (None, _) => impulse_from_json(&jsons)?,
        (Some(first), kind) => {
            let kind = match kind {
                Some(k) => k,
                None => {
                    // Detect from the first CSV's header, reading the file only once.
                    let (k, table) = read_csv(first, None, |k, header| {
                        Ok(match k {
                            Kind::Trace => {
                                trace_columns(header, opts.columns.as_deref(), csvs.len())
                            }
                            _ => kind_columns(k, header),
                        })
                    })?;
                    return finish(
                        build(k, Some((first, table)), &csvs, &jsons, opts, &mut notes)?,
                        opts,
                        notes,
                    );
                }
            };
            build(kind, None, &csvs, &jsons, opts, &mut notes)?
        }
    };
    if let Some(t) = &opts.title {
        fig.title = t.clone();
    }
    finish(fig, opts, notes)
}

fn finish(
    mut fig: Figure,
    opts: &Options,
    notes: Vec<String>,
) -> anyhow::Result<(Figure, Vec<String>)> {
    if let Some(t) = &opts.title {
        fig.title = t.clone();
    }
    if let Some(w) = opts.width {
        fig.width = w;
    }
    if let Some(h) = opts.height {
        fig.height = h;
    }
    Ok((fig, notes))
}

/// The trace columns to read from a header: the chosen ones it has (all of them for a lone
/// file, so that a missing one is reported with the header), or every column but time and
/// elapsed.
fn trace_columns(header: &[String], chosen: Option<&[String]>, files: usize) -> Vec<String> {
    match chosen {
        Some(c) if files == 1 => c.to_vec(),
        Some(c) => c.iter().filter(|n| header.contains(n)).cloned().collect(),
        None => header
            .iter()
            .filter(|h| *h != "time" && *h != "elapsed")
            .cloned()
            .collect(),
    }
}

/// Builds the figure of `kind`; `first` is the first CSV when detection already read it.
fn build(
    kind: Kind,
    first: Option<(&str, Table)>,
    csvs: &[&str],
    jsons: &[(&str, Value, JsonKind)],
    opts: &Options,
    notes: &mut Vec<String>,
) -> anyhow::Result<Figure> {
    let want_json =
        |allowed: Option<JsonKind>| -> anyhow::Result<Option<&(&str, Value, JsonKind)>> {
            match (jsons, allowed) {
                ([], _) => Ok(None),
                ([j], Some(a)) if j.2 == a => Ok(Some(j)),
                _ => Err(usage(format!(
                    "a {} picture takes {}; got JSON {}",
                    format!("{kind:?}").to_lowercase(),
                    match allowed {
                        Some(JsonKind::Validation) => "the validate CSV and optionally its --json",
                        Some(JsonKind::Xcorr) => "the xcorr CSV and optionally its --json",
                        _ => "CSV only",
                    },
                    jsons.iter().map(|j| j.0).collect::<Vec<_>>().join(", ")
                ))),
            }
        };
    if kind != Kind::Trace && csvs.len() > 1 {
        return Err(usage(format!(
            "a {} picture reads one CSV; got {}",
            format!("{kind:?}").to_lowercase(),
            csvs.join(", ")
        )));
    }
    let mut first = first;
    let mut table_of = |path: &str, kind: Kind| -> anyhow::Result<Table> {
        if let Some((p, t)) = first.take()
            && p == path
        {
            return Ok(t);
        }
        let files = csvs.len();
        let cols = opts.columns.clone();
        read_csv(path, Some(kind), |k, header| {
            Ok(match k {
                Kind::Trace => {
                    if !header.iter().any(|h| h == "time") {
                        anyhow::bail!(
                            "{path}: a trace needs a time column; the columns are: {}",
                            header.join(", ")
                        );
                    }
                    trace_columns(header, cols.as_deref(), files)
                }
                _ => kind_columns(k, header),
            })
        })
        .map(|(_, t)| t)
    };
    match kind {
        Kind::Trace => {
            want_json(None)?;
            let mut sets = Vec::new();
            for path in csvs {
                let table = table_of(path, kind)?;
                sets.push(trace_set(path, &table, opts, csvs.len(), notes)?);
            }
            if let Some(chosen) = &opts.columns {
                for c in chosen {
                    if !sets.iter().any(|s| s.columns.iter().any(|(n, _)| n == c)) {
                        anyhow::bail!(
                            "no column named '{c}' in {}; their columns are: {}",
                            csvs.join(", "),
                            sets.iter()
                                .flat_map(|s| s.available.iter().cloned())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
            }
            let total: usize = sets.iter().map(|s| s.columns.len()).sum();
            if total > MAX_DEFAULT_COLUMNS && opts.columns.is_none() {
                notes.push(format!(
                    "{total} numeric columns; drawing the first {MAX_DEFAULT_COLUMNS} (choose \
                     with --columns)"
                ));
                let mut left = MAX_DEFAULT_COLUMNS;
                for s in &mut sets {
                    s.columns.truncate(left);
                    left -= s.columns.len();
                }
            }
            Ok(kinds::trace(&sets))
        }
        Kind::Xcorr => {
            let path = csvs[0];
            let table = table_of(path, kind)?;
            let c = columns(&table, &kind_columns(kind, table.header()))?;
            let json = want_json(Some(JsonKind::Xcorr))?;
            let name = |k: &str| {
                json.and_then(|j| j.1.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            Ok(kinds::xcorr(&XcorrData {
                lag_s: c[0].clone(),
                xcorr: c[1].clone(),
                bound: c[2]
                    .iter()
                    .copied()
                    .find(|b| b.is_finite())
                    .unwrap_or(f64::NAN),
                input: name("input"),
                output: name("output"),
                source: path.to_string(),
            }))
        }
        Kind::Impulse => {
            if csvs.is_empty() {
                return impulse_from_json(jsons);
            }
            // The CSV and the JSON hold the same estimate: one of them is enough.
            want_json(None)?;
            let path = csvs[0];
            let table = table_of(path, kind)?;
            let names = kind_columns(kind, table.header());
            let c = columns(&table, &names)?;
            let col = |n: &str| names.iter().position(|x| x == n).map(|i| c[i].clone());
            let mut responses = Vec::new();
            for n in &names {
                let input = match n.as_str() {
                    "g" => None,
                    n if n.starts_with("g.") => Some(&n[2..]),
                    _ => continue,
                };
                let key = |what: &str| match input {
                    Some(i) => format!("{what}.{i}"),
                    None => what.to_string(),
                };
                responses.push(Response {
                    input: input.map(str::to_string),
                    g: col(&key("g")).unwrap_or_default(),
                    sd: col(&key("sd")),
                    bound: col(&key("bound")),
                    step: col(&key("step")),
                });
            }
            Ok(kinds::impulse(&ImpulseData {
                lag_s: c[0].clone(),
                output: None,
                responses,
                source: path.to_string(),
            }))
        }
        Kind::Validation => {
            let path = csvs[0];
            let table = table_of(path, kind)?;
            let c = columns(&table, &kind_columns(kind, table.header()))?;
            let json = want_json(Some(JsonKind::Validation))?;
            let summary = match json {
                Some((p, v, _)) => Some(validation_summary(v, p)?),
                None => None,
            };
            Ok(kinds::validation(&ValidationData {
                time: c[0].clone(),
                measured: c[1].clone(),
                simulated: c[2].clone(),
                predicted: c[3].clone(),
                summary,
                source: path.to_string(),
            }))
        }
        Kind::Order => {
            want_json(None)?;
            let path = csvs[0];
            let table = table_of(path, kind)?;
            let names = kind_columns(kind, table.header());
            let c = columns(&table, &names)?;
            let col = |n: &str| c[names.iter().position(|x| x == n).expect("read")].clone();
            let criterion = match opts.criterion {
                Some(k) => k,
                None if col("validation_loss").iter().any(|v| v.is_finite()) => {
                    Criterion::Validation
                }
                None => Criterion::Aic,
            };
            let values = col(criterion.column());
            if !values.iter().any(|v| v.is_finite()) {
                anyhow::bail!(
                    "{path}: column {} has no values{}",
                    criterion.column(),
                    if criterion == Criterion::Validation {
                        " (run vmmon order with --validate START:END)"
                    } else {
                        ""
                    }
                );
            }
            Ok(kinds::order(&OrderGrid {
                na: col("na"),
                nb: col("nb"),
                nk: col("nk"),
                d: col("d"),
                values,
                criterion,
                source: path.to_string(),
            }))
        }
    }
}

/// A trace file's chosen numeric columns.
fn trace_set(
    path: &str,
    table: &Table,
    opts: &Options,
    files: usize,
    notes: &mut Vec<String>,
) -> anyhow::Result<TraceSet> {
    if !table.has_time() {
        anyhow::bail!(
            "{path}: a trace needs a time column; the columns are: {}",
            table.header().join(", ")
        );
    }
    let available: Vec<String> = table
        .header()
        .iter()
        .filter(|h| *h != "time" && *h != "elapsed")
        .cloned()
        .collect();
    let names: Vec<String> = match &opts.columns {
        Some(c) => trace_columns(table.header(), Some(c), files),
        None => {
            let (numeric, other): (Vec<String>, Vec<String>) =
                available.iter().cloned().partition(|n| table.is_numeric(n));
            if !other.is_empty() {
                notes.push(format!(
                    "{path}: left out column(s) that are not numbers: {}",
                    other.join(", ")
                ));
            }
            numeric
        }
    };
    let (time, cols) = table.raw_columns(&names)?;
    Ok(TraceSet {
        source: path.to_string(),
        time: time.to_vec(),
        columns: names
            .into_iter()
            .zip(cols.into_iter().map(<[f64]>::to_vec))
            .collect(),
        available,
    })
}

/// The figures of `vmmon validate --json` a picture uses.
fn validation_summary(v: &Value, path: &str) -> anyhow::Result<kinds::ValidationSummary> {
    let xcorr = v
        .get("input_residual_xcorr")
        .and_then(Value::as_array)
        .with_context(|| format!("{path}: \"input_residual_xcorr\" is missing or not an array"))?
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let row = &v["input_residual_xcorr"][i];
            let wrapped = serde_json::json!({ "x": row });
            numbers(&wrapped, "x", path)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(kinds::ValidationSummary {
        fit_simulation_pct: number(v, "fit_simulation_pct", path)?,
        fit_prediction_pct: number(v, "fit_prediction_pct", path)?,
        horizon: number(v, "horizon", path)? as usize,
        residual_acf: numbers(v, "residual_acf", path)?,
        input_residual_xcorr: xcorr,
        bound: number(v, "bound", path)?,
        pass: v.get("pass").and_then(Value::as_bool),
    })
}

/// The figure of an impulse JSON (`vmmon impulse --json`), which holds the whole estimate.
fn impulse_from_json(jsons: &[(&str, Value, JsonKind)]) -> anyhow::Result<Figure> {
    let [(path, v, kind)] = jsons else {
        return Err(usage(format!(
            "give one impulse JSON, or the CSV of the result; got {}",
            jsons.iter().map(|j| j.0).collect::<Vec<_>>().join(", ")
        )));
    };
    match kind {
        JsonKind::Impulse => {}
        JsonKind::Validation => {
            return Err(usage(format!(
                "{path} is the JSON of vmmon validate: give the validate CSV (-o) first, then it"
            )));
        }
        JsonKind::Xcorr => {
            return Err(usage(format!(
                "{path} is the summary of vmmon xcorr: the picture needs the xcorr CSV (-o)"
            )));
        }
    }
    let step = v.get("step_s").and_then(Value::as_f64).unwrap_or(1.0);
    let responses = v["responses"]
        .as_array()
        .with_context(|| format!("{path}: \"responses\" is not an array"))?
        .iter()
        .map(|r| {
            Ok(Response {
                input: r.get("input").and_then(Value::as_str).map(str::to_string),
                g: numbers(r, "g", path)?,
                sd: match r.get("sd") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(numbers(r, "sd", path)?),
                },
                bound: Some(numbers(r, "bound", path)?),
                step: Some(numbers(r, "step", path)?),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, r) in responses.iter().enumerate() {
        for (name, v) in [("sd", &r.sd), ("bound", &r.bound), ("step", &r.step)] {
            if let Some(v) = v
                && v.len() != r.g.len()
            {
                anyhow::bail!(
                    "{path}: response {}: \"{name}\" has {} values but \"g\" has {}",
                    i + 1,
                    v.len(),
                    r.g.len()
                );
            }
        }
    }
    let lags = responses.iter().map(|r| r.g.len()).max().unwrap_or(0);
    Ok(kinds::impulse(&ImpulseData {
        lag_s: (0..lags).map(|k| k as f64 * step).collect(),
        output: v.get("output").and_then(Value::as_str).map(str::to_string),
        responses,
        source: path.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn kinds_from_the_headers_the_commands_write() {
        assert_eq!(
            detect_csv(&h("lag,lag_s,xcov,xcorr,bound")),
            Some(Kind::Xcorr)
        );
        assert_eq!(
            detect_csv(&h("lag,lag_s,g,bound,step")),
            Some(Kind::Impulse)
        );
        assert_eq!(
            detect_csv(&h("lag,lag_s,g,sd,bound,step")),
            Some(Kind::Impulse)
        );
        assert_eq!(
            detect_csv(&h("lag,lag_s,g.a,bound.a,step.a,g.b,bound.b,step.b")),
            Some(Kind::Impulse)
        );
        assert_eq!(
            detect_csv(&h("time,measured,simulated,predicted,residual")),
            Some(Kind::Validation)
        );
        assert_eq!(
            detect_csv(&h("rank,na,nb,nk,d,V,FPE,nAIC,AIC,BIC,MDL,validation_loss")),
            Some(Kind::Order)
        );
        assert_eq!(
            detect_csv(&h("time,elapsed,cpu_user_pct,load_1m")),
            Some(Kind::Trace)
        );
        assert_eq!(detect_csv(&h("time,host.cpu_user_pct")), Some(Kind::Trace));
        assert_eq!(detect_csv(&h("a,b,c")), None);
        // A trace may have a column called lag without being a correlation.
        assert_eq!(detect_csv(&h("time,lag")), Some(Kind::Trace));
    }

    #[test]
    fn kinds_from_json_keys() {
        let v =
            serde_json::json!({"n": 10, "residual_acf": [1.0], "input_residual_xcorr": [[0.0]]});
        assert_eq!(detect_json(&v), Some(JsonKind::Validation));
        let v = serde_json::json!({"output": "y", "responses": []});
        assert_eq!(detect_json(&v), Some(JsonKind::Impulse));
        let v = serde_json::json!({"input": "u", "peak_lag": 3, "bound": 0.1});
        assert_eq!(detect_json(&v), Some(JsonKind::Xcorr));
        assert_eq!(detect_json(&serde_json::json!({"format": 1})), None);
    }

    #[test]
    fn criterion_columns_are_the_order_header() {
        let header = h("rank,na,nb,nk,d,V,FPE,nAIC,AIC,BIC,MDL,validation_loss");
        use clap::ValueEnum as _;
        for c in Criterion::value_variants() {
            assert!(header.iter().any(|x| x == c.column()), "{c:?}");
        }
    }
}
