//! `vmmon import`: a Prometheus range-query result (JSON) or a Parquet file as the wide CSV
//! the analyzer reads.
//!
//! Both become a [`Table`]: a `time` column on the union of every series' times and one
//! column per series, empty where that series has no point. Values the analyzer refuses
//! (NaN, ±Inf, Prometheus stale markers, which the HTTP API shows as `NaN`) become empty cells
//! and are counted in the notes, so nothing is dropped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use anyhow::{Context, bail};
use serde_json::Value;

/// One cell of an imported table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Datum {
    /// No value at this time (no point, NaN, infinite, or null).
    Empty,
    /// An exact signed integer (Parquet integer columns).
    Int(i64),
    /// An exact unsigned integer (Parquet `UInt64` columns).
    UInt(u64),
    /// A finite number.
    Num(f64),
}

/// A wide table: times and one column per series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names after `time`, in order.
    pub names: Vec<String>,
    /// Row times in microseconds since the Unix epoch, strictly increasing.
    pub times_us: Vec<i64>,
    /// One column per name, each as long as `times_us`.
    pub columns: Vec<Vec<Datum>>,
}

/// A table and what the user should know about how it was made.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The data.
    pub table: Table,
    /// Messages for stderr: renamed series, cells left empty, warnings in the response.
    pub notes: Vec<String>,
}

/// How imported series are named.
#[derive(Debug, Clone)]
pub struct NameOptions {
    /// The label whose value becomes the `VM.` prefix of a column (default `vm`).
    pub vm_label: String,
}

impl Default for NameOptions {
    fn default() -> Self {
        NameOptions {
            vm_label: "vm".into(),
        }
    }
}

/// Makes `s` column-safe: lower case, every run of characters other than ASCII letters,
/// digits and `_` becomes one `_`, and no `_` at either end.
pub fn column_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Short JSON rendering of a value for an error message (long values are cut).
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// A timestamp in seconds (a JSON number, or a string holding one) as microseconds.
fn parse_time(v: &Value, path: &dyn Fn() -> String) -> anyhow::Result<i64> {
    let t = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match t {
        // Beyond ±1e11 s (year 5138) a time is a unit mistake (ms or ns), not a time.
        Some(t) if t.is_finite() && t.abs() < 1e11 => Ok((t * 1e6).round() as i64),
        _ => bail!("{}: {} is not a time in Unix seconds", path(), show(v)),
    }
}

/// Counts of values written as empty cells.
#[derive(Debug, Default)]
struct Dropped {
    nan: usize,
    inf: usize,
    // Counted from inside the Parquet reader's cell closures, which only borrow.
    #[cfg(feature = "parquet")]
    nan_cell: std::cell::Cell<usize>,
    #[cfg(feature = "parquet")]
    inf_cell: std::cell::Cell<usize>,
}

/// A sample value: Prometheus writes it as a string (`"1.5"`, `"NaN"`, `"+Inf"`); a bare
/// number is accepted too.
fn parse_value(
    v: &Value,
    path: &dyn Fn() -> String,
    dropped: &mut Dropped,
) -> anyhow::Result<Datum> {
    let x = match v {
        Value::String(s) => match s.trim() {
            "NaN" => f64::NAN,
            "+Inf" | "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            t => t
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("{}: {} is not a number", path(), show(v)))?,
        },
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("{}: {} is not a number", path(), show(v)))?,
        _ => bail!("{}: {} is not a number", path(), show(v)),
    };
    Ok(if x.is_nan() {
        dropped.nan += 1;
        Datum::Empty
    } else if x.is_infinite() {
        dropped.inf += 1;
        Datum::Empty
    } else {
        Datum::Num(x)
    })
}

/// `[time, value]` at `path`.
fn parse_point(
    v: &Value,
    path: &dyn Fn() -> String,
    dropped: &mut Dropped,
) -> anyhow::Result<(i64, Datum)> {
    let Some(pair) = v.as_array().filter(|a| a.len() == 2) else {
        bail!("{}: {} is not a [time, \"value\"] pair", path(), show(v));
    };
    let t = parse_time(&pair[0], &|| format!("{}[0]", path()))?;
    let x = parse_value(&pair[1], &|| format!("{}[1]", path()), dropped)?;
    Ok((t, x))
}

/// One series as read: its labels, where it was, and its points in time order.
struct RawSeries {
    labels: BTreeMap<String, String>,
    path: String,
    points: Vec<(i64, Datum)>,
}

/// The labels of `data.result[i].metric` (absent: none).
fn parse_labels(v: Option<&Value>, path: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Some(s) = v.as_str() else {
                    bail!("{path}.metric.{k}: {} is not a string", show(v));
                };
                labels.insert(k.clone(), s.to_string());
            }
        }
        Some(other) => bail!("{path}.metric: {} is not an object of labels", show(other)),
    }
    Ok(labels)
}

/// Reads a Prometheus HTTP API response (`/api/v1/query_range`, or `/api/v1/query` for
/// `vector` and `scalar` results); `label` names the input in messages.
pub fn from_prometheus(text: &str, label: &str, opts: &NameOptions) -> anyhow::Result<Import> {
    // A byte-order mark (some editors and Windows tools write one) is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value =
        serde_json::from_str(text).with_context(|| format!("{label}: not a JSON document"))?;
    let Some(obj) = root.as_object() else {
        bail!(
            "{label}: the document is {}, not a Prometheus API response \
             ({{\"status\":\"success\",\"data\":{{…}}}})",
            show(&root)
        );
    };
    match obj.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            let field = |k: &str| obj.get(k).and_then(Value::as_str).map(str::escape_debug);
            match (field("errorType"), field("error")) {
                (Some(t), Some(e)) => bail!("{label}: status: the query failed ({t}: {e})"),
                (Some(t), None) => bail!("{label}: status: the query failed ({t})"),
                (None, Some(e)) => bail!("{label}: status: the query failed ({e})"),
                (None, None) => bail!("{label}: status: the query failed (no reason given)"),
            }
        }
        Some(other) => bail!("{label}: status: \"{other}\" is neither \"success\" nor \"error\""),
        None => bail!(
            "{label}: status: missing; expected a Prometheus API response \
             ({{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[…]}}}})"
        ),
    }
    let mut notes = Vec::new();
    if let Some(w) = obj.get("warnings").and_then(Value::as_array) {
        for w in w {
            notes.push(format!(
                "{label}: Prometheus warned: {}",
                // Escaped: a server's text must not drive the terminal (colour codes).
                w.as_str()
                    .map_or_else(|| w.to_string(), |s| s.escape_debug().to_string())
            ));
        }
    }
    let Some(data) = obj.get("data").and_then(Value::as_object) else {
        bail!("{label}: data: missing or not an object");
    };
    let kind = match data.get("resultType") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => bail!("{label}: data.resultType: {} is not a string", show(v)),
        None => bail!("{label}: data.resultType: missing"),
    };
    let result = data.get("result");
    let mut dropped = Dropped::default();
    let mut series = Vec::new();
    match kind {
        "matrix" | "vector" => {
            let Some(items) = result.and_then(Value::as_array) else {
                bail!("{label}: data.result: missing or not an array");
            };
            for (i, item) in items.iter().enumerate() {
                let path = format!("data.result[{i}]");
                let Some(item) = item.as_object() else {
                    bail!("{label}: {path}: {} is not an object", show(item));
                };
                let labels = parse_labels(item.get("metric"), &path)
                    .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
                let mut points = Vec::new();
                if kind == "vector" {
                    let Some(v) = item.get("value") else {
                        bail!("{label}: {path}.value: missing");
                    };
                    let at = || format!("{label}: {path}.value");
                    points.push(parse_point(v, &at, &mut dropped)?);
                } else {
                    let values = match item.get("values") {
                        Some(Value::Array(a)) => a,
                        Some(v) => bail!("{label}: {path}.values: {} is not an array", show(v)),
                        None if item.contains_key("histograms") => bail!(
                            "{label}: {path}: native histograms are not supported; query a \
                             float series (e.g. histogram_quantile or a _count/_sum series)"
                        ),
                        None => bail!("{label}: {path}.values: missing"),
                    };
                    if item.contains_key("histograms") {
                        notes.push(format!("{label}: {path}: native histogram points left out"));
                    }
                    for (j, v) in values.iter().enumerate() {
                        let at = || format!("{label}: {path}.values[{j}]");
                        let (t, x) = parse_point(v, &at, &mut dropped)?;
                        if let Some(&(prev, _)) = points.last()
                            && t <= prev
                        {
                            bail!(
                                "{label}: {path}.values[{j}][0]: time {} is not after the \
                                 previous point's ({})",
                                seconds(t),
                                seconds(prev)
                            );
                        }
                        points.push((t, x));
                    }
                }
                series.push(RawSeries {
                    labels,
                    path,
                    points,
                });
            }
        }
        "scalar" => {
            let Some(v) = result else {
                bail!("{label}: data.result: missing");
            };
            let at = || format!("{label}: data.result");
            let point = parse_point(v, &at, &mut dropped)?;
            let mut labels = BTreeMap::new();
            labels.insert("__name__".to_string(), "scalar".to_string());
            series.push(RawSeries {
                labels,
                path: "data.result".into(),
                points: vec![point],
            });
        }
        "string" => bail!("{label}: data.resultType: \"string\" results hold no series to import"),
        other => bail!("{label}: data.resultType: \"{other}\" is not matrix, vector or scalar"),
    }
    if series.is_empty() {
        bail!("{label}: data.result: the query returned no series");
    }
    if series.iter().all(|s| s.points.is_empty()) {
        bail!(
            "{label}: data.result: the query returned {} series but no points (a range with \
             no samples?)",
            series.len()
        );
    }
    let names = name_series(&series, opts, &mut notes, label);
    let table = align(&series, names);
    let empty_points = table
        .columns
        .iter()
        .flatten()
        .filter(|d| **d == Datum::Empty)
        .count()
        - dropped.nan
        - dropped.inf;
    if dropped.nan + dropped.inf > 0 {
        notes.push(format!(
            "{label}: {} NaN (or stale) and {} infinite values written as empty cells (the \
             analyzer reads no NaN)",
            dropped.nan, dropped.inf
        ));
    }
    if empty_points > 0 {
        notes.push(format!(
            "{label}: {empty_points} cells are empty where a series has no point at a time \
             another series has"
        ));
    }
    Ok(Import { table, notes })
}

/// Column names for `series`; see docs/fleet.md (`## Importing`) for the rule.
fn name_series(
    series: &[RawSeries],
    opts: &NameOptions,
    notes: &mut Vec<String>,
    label: &str,
) -> Vec<String> {
    // Labels with one value across every series (job, instance of a one-host query) tell the
    // columns nothing apart, so they stay out of the names; a label missing from some series
    // varies.
    let mut values: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
    for s in series {
        for k in s.labels.keys() {
            values.entry(k.as_str()).or_default();
        }
    }
    for (k, set) in values.iter_mut() {
        for s in series {
            set.insert(s.labels.get(*k).map(String::as_str));
        }
    }
    let varying: Vec<&str> = values
        .iter()
        .filter(|(k, set)| set.len() > 1 && **k != "__name__" && **k != opts.vm_label)
        .map(|(k, _)| *k)
        .collect();
    let mut used: HashMap<String, String> = HashMap::new();
    used.insert("time".into(), "the time column".into());
    let mut names = Vec::with_capacity(series.len());
    for s in series {
        let mut parts = Vec::new();
        if let Some(n) = s.labels.get("__name__") {
            parts.push(column_safe(n));
        }
        for k in &varying {
            if let Some(v) = s.labels.get(*k) {
                parts.push(column_safe(v));
            }
        }
        parts.retain(|p| !p.is_empty());
        let mut name = if parts.is_empty() {
            "value".to_string()
        } else {
            parts.join("_")
        };
        if let Some(vm) = s.labels.get(&opts.vm_label).map(|v| column_safe(v))
            && !vm.is_empty()
        {
            name = format!("{vm}.{name}");
        }
        if let Some(first) = used.get(&name) {
            let mut k = 2;
            while used.contains_key(&format!("{name}_{k}")) {
                k += 1;
            }
            let renamed = format!("{name}_{k}");
            notes.push(format!(
                "{label}: {} is named {renamed}: {name} is {first}",
                s.path
            ));
            name = renamed;
        }
        used.insert(name.clone(), s.path.clone());
        names.push(name);
    }
    names
}

/// Puts every series on the union of their times.
fn align(series: &[RawSeries], names: Vec<String>) -> Table {
    let times: BTreeSet<i64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let times_us: Vec<i64> = times.into_iter().collect();
    let columns = series
        .iter()
        .map(|s| {
            let mut col = vec![Datum::Empty; times_us.len()];
            for &(t, x) in &s.points {
                if let Ok(i) = times_us.binary_search(&t) {
                    col[i] = x;
                }
            }
            col
        })
        .collect();
    Table {
        names,
        times_us,
        columns,
    }
}

/// `t` microseconds as Unix seconds with six decimals, as `vmmon record` writes `time`.
pub fn seconds(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    let a = t.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

impl Table {
    /// Writes the table as CSV: `time` then the columns, one row per time, empty cells
    /// where there is no value.
    pub fn write_csv(&self, out: &mut dyn Write) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let mut line = String::from("time");
        for n in &self.names {
            line.push(',');
            line.push_str(&crate::trace::csv_field(n));
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        for (i, &t) in self.times_us.iter().enumerate() {
            line.clear();
            line.push_str(&seconds(t));
            for col in &self.columns {
                line.push(',');
                let _ = match col[i] {
                    Datum::Empty => Ok(()),
                    Datum::Int(v) => write!(line, "{v}"),
                    Datum::UInt(v) => write!(line, "{v}"),
                    Datum::Num(v) => write!(line, "{v}"),
                };
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        out.flush()
    }
}

/// Appends column `a` of primitive type `T` to `out`, nulls as empty cells.
#[cfg(feature = "parquet")]
fn push_primitive<T: arrow_array::ArrowPrimitiveType>(
    a: &dyn arrow_array::Array,
    f: impl Fn(T::Native) -> Datum,
    out: &mut Vec<Datum>,
) {
    use arrow_array::Array as _;
    use arrow_array::cast::AsArray;
    let a = a.as_primitive::<T>();
    out.extend((0..a.len()).map(|i| {
        if a.is_null(i) {
            Datum::Empty
        } else {
            f(a.value(i))
        }
    }));
}

/// A float as a cell: NaN and infinities are empty, counted in `dropped`.
#[cfg(feature = "parquet")]
fn float_datum(x: f64, dropped: &Dropped) -> Datum {
    if x.is_nan() {
        dropped.nan_cell.set(dropped.nan_cell.get() + 1);
        Datum::Empty
    } else if x.is_infinite() {
        dropped.inf_cell.set(dropped.inf_cell.get() + 1);
        Datum::Empty
    } else {
        Datum::Num(x)
    }
}

/// Reads a Parquet file with a `time` column (a timestamp of any unit, or Unix seconds as a
/// number) and numeric columns, such as a `vmmon record --format parquet` recording. Nulls,
/// NaN and infinities become empty cells; times must increase.
#[cfg(feature = "parquet")]
pub fn from_parquet(path: &std::path::Path) -> anyhow::Result<Import> {
    use arrow_array::types::{
        Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
    };
    use arrow_schema::{DataType, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let label = path.display().to_string();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {label}"))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| anyhow::anyhow!("{label}: not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    let fields = schema.fields();
    let Some(ti) = fields.iter().position(|f| f.name() == "time") else {
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        bail!(
            "{label}: no column named 'time'; the columns are: {}",
            names.join(", ")
        );
    };
    for (i, f) in fields.iter().enumerate() {
        let ok = if i == ti {
            matches!(
                f.data_type(),
                DataType::Timestamp(_, _) | DataType::Float64 | DataType::Int64
            )
        } else {
            // Float16 has no exact f64 path here and no vmmon writer makes it.
            let t = f.data_type();
            (t.is_integer() || t.is_floating()) && *t != DataType::Float16
        };
        if !ok {
            bail!(
                "{label}: column '{}' has type {}; import takes {}",
                f.name(),
                f.data_type(),
                if i == ti {
                    "a timestamp or Unix seconds for time"
                } else {
                    "integer and floating-point columns"
                }
            );
        }
    }
    let reader = builder
        .build()
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let dropped = Dropped::default();
    let mut table = Table {
        names: fields
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != ti)
            .map(|(_, f)| f.name().clone())
            .collect(),
        ..Table::default()
    };
    table.columns = vec![Vec::new(); fields.len() - 1];
    for batch in reader {
        let batch = batch.map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        let mut times = Vec::with_capacity(batch.num_rows());
        let tcol = batch.column(ti).as_ref();
        match fields[ti].data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => push_primitive::<TimestampSecondType>(
                tcol,
                |v| Datum::Int(v.saturating_mul(1_000_000)),
                &mut times,
            ),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                push_primitive::<TimestampMillisecondType>(
                    tcol,
                    |v| Datum::Int(v.saturating_mul(1000)),
                    &mut times,
                )
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                push_primitive::<TimestampMicrosecondType>(tcol, Datum::Int, &mut times)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                push_primitive::<TimestampNanosecondType>(
                    tcol,
                    |v| Datum::Int(v.div_euclid(1000)),
                    &mut times,
                )
            }
            DataType::Float64 => push_primitive::<Float64Type>(
                tcol,
                |v| {
                    if v.is_finite() && v.abs() < 1e11 {
                        Datum::Int((v * 1e6).round() as i64)
                    } else {
                        Datum::Empty
                    }
                },
                &mut times,
            ),
            _ => push_primitive::<Int64Type>(
                tcol,
                |v| Datum::Int(v.saturating_mul(1_000_000)),
                &mut times,
            ),
        }
        for t in times {
            let row = table.times_us.len();
            let Datum::Int(t) = t else {
                bail!("{label}: row {row}: time is null or not a time");
            };
            if let Some(&prev) = table.times_us.last()
                && t <= prev
            {
                bail!(
                    "{label}: row {row}: time {} is not after the previous row's ({})",
                    seconds(t),
                    seconds(prev)
                );
            }
            table.times_us.push(t);
        }
        let mut k = 0;
        for (i, f) in fields.iter().enumerate() {
            if i == ti {
                continue;
            }
            let a = batch.column(i).as_ref();
            let out = &mut table.columns[k];
            k += 1;
            match f.data_type() {
                DataType::Float64 => {
                    push_primitive::<Float64Type>(a, |v| float_datum(v, &dropped), out)
                }
                DataType::Float32 => {
                    push_primitive::<Float32Type>(a, |v| float_datum(f64::from(v), &dropped), out)
                }
                DataType::Int8 => push_primitive::<Int8Type>(a, |v| Datum::Int(v.into()), out),
                DataType::Int16 => push_primitive::<Int16Type>(a, |v| Datum::Int(v.into()), out),
                DataType::Int32 => push_primitive::<Int32Type>(a, |v| Datum::Int(v.into()), out),
                DataType::Int64 => push_primitive::<Int64Type>(a, Datum::Int, out),
                DataType::UInt8 => push_primitive::<UInt8Type>(a, |v| Datum::Int(v.into()), out),
                DataType::UInt16 => push_primitive::<UInt16Type>(a, |v| Datum::Int(v.into()), out),
                DataType::UInt32 => push_primitive::<UInt32Type>(a, |v| Datum::Int(v.into()), out),
                _ => push_primitive::<UInt64Type>(a, Datum::UInt, out),
            }
        }
    }
    let mut notes = Vec::new();
    let (nan, inf) = (dropped.nan_cell.get(), dropped.inf_cell.get());
    if nan + inf > 0 {
        notes.push(format!(
            "{label}: {nan} NaN and {inf} infinite values written as empty cells (the analyzer \
             reads no NaN)"
        ));
    }
    Ok(Import { table, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_safe_names() {
        assert_eq!(
            column_safe("node_cpu_seconds_total"),
            "node_cpu_seconds_total"
        );
        assert_eq!(column_safe("10.0.0.1:9100"), "10_0_0_1_9100");
        assert_eq!(column_safe("/dev/sda"), "dev_sda");
        assert_eq!(column_safe("Web-Server 1"), "web_server_1");
    }

    #[test]
    fn seconds_format() {
        assert_eq!(seconds(1_435_781_430_781_000), "1435781430.781000");
        assert_eq!(seconds(-1_500_000), "-1.500000");
    }
}
