//! `vmmon import` (Prometheus JSON and Parquet to CSV) and `record --format parquet`: exact
//! output, errors that name the field at fault, the row-for-row match of Parquet and CSV, and
//! what a stopped or killed recorder leaves.

use serde_json::{Value, json};

use crate::util::{gaussian, vmmon};

fn testdata(name: &str) -> String {
    format!("{}/testdata/import/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = vmmon().args(args).output().expect("run vmmon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_range_query_becomes_the_exact_wide_csv() {
    let (code, out, err) = run(&["import", &testdata("range.json")]);
    assert_eq!(code, 0, "{err}");
    let want = std::fs::read_to_string(testdata("range.csv")).expect("range.csv");
    assert_eq!(out, want);
    assert!(
        err.contains("1 NaN (or stale) and 1 infinite values written as empty cells"),
        "{err}"
    );
    assert!(err.contains("imported 6 series, 6 rows"), "{err}");
}

#[test]
fn import_writes_to_a_file_with_o() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.csv");
    let (code, stdout, err) = run(&[
        "import",
        &testdata("range.json"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        std::fs::read_to_string(testdata("range.csv")).expect("range.csv")
    );
}

#[test]
fn the_vm_label_is_chosen_and_name_clashes_are_numbered() {
    let doc = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "cpu", "domain": "a"}, "values": [[10, "1"]]},
        {"metric": {"__name__": "cpu", "domain": "b", "x": "p.q"}, "values": [[10, "2"]]},
        {"metric": {"__name__": "cpu", "domain": "b", "x": "p-q"}, "values": [[10, "3"]]},
        {"metric": {}, "values": [[10, "4"]]},
    ]}});
    let dir = tempfile::tempdir().expect("tempdir");
    let f = crate::util::write_file(&dir, "q.json", &doc.to_string());
    let (code, out, err) = run(&["import", &f, "--vm-label", "domain"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "time,a.cpu,b.cpu_p_q,b.cpu_p_q_2,value\n10.000000,1,2,3,4\n"
    );
    assert!(
        err.contains("data.result[2] is named b.cpu_p_q_2: b.cpu_p_q is data.result[1]"),
        "{err}"
    );
}

#[test]
fn vector_and_scalar_results_are_one_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vector = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "job": "a"}, "value": [1700000000.123, "1"]},
        {"metric": {"__name__": "up", "job": "b"}, "value": [1700000000.123, "0"]},
    ]}});
    let f = crate::util::write_file(&dir, "v.json", &vector.to_string());
    let (code, out, err) = run(&["import", &f]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "time,up_a,up_b\n1700000000.123000,1,0\n");
    let scalar = json!({"status": "success", "data": {"resultType": "scalar",
        "result": [1700000000, "42"]}});
    let f = crate::util::write_file(&dir, "s.json", &scalar.to_string());
    let (code, out, err) = run(&["import", &f]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "time,scalar\n1700000000.000000,42\n");
}

/// The fixture with one change made by `edit`, imported: exit code and stderr.
fn import_edited(edit: impl FnOnce(&mut Value)) -> (i32, String) {
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("range.json")).expect("range.json"))
            .expect("json");
    edit(&mut doc);
    let dir = tempfile::tempdir().expect("tempdir");
    let f = crate::util::write_file(&dir, "bad.json", &doc.to_string());
    let (code, out, err) = run(&["import", &f]);
    assert!(out.is_empty(), "no CSV on error: {out}");
    (code, err)
}

/// A change to the fixture.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn errors_name_the_field_at_fault() {
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|d| d["data"]["result"][3]["values"][2][1] = json!("abc")),
            "data.result[3].values[2][1]: \"abc\" is not a number",
        ),
        (
            Box::new(|d| d["data"]["result"][0]["values"][1][0] = json!("soon")),
            "data.result[0].values[1][0]: \"soon\" is not a time in Unix seconds",
        ),
        (
            Box::new(|d| d["data"]["result"][1]["values"][4][0] = json!(1700000015)),
            "data.result[1].values[4][0]: time 1700000015.000000 is not after the previous \
             point's (1700000045.000000)",
        ),
        (
            Box::new(|d| d["data"]["result"][2]["values"][0] = json!([1700000000])),
            "data.result[2].values[0]: [1700000000] is not a [time, \"value\"] pair",
        ),
        (
            Box::new(|d| d["data"]["result"][4]["metric"]["vm"] = json!(7)),
            "data.result[4].metric.vm: 7 is not a string",
        ),
        (
            Box::new(|d| d["data"]["result"][5]["values"] = json!({})),
            "data.result[5].values: {} is not an array",
        ),
        (
            Box::new(|d| d["data"]["resultType"] = json!("string")),
            "data.resultType: \"string\" results hold no series to import",
        ),
        (
            Box::new(|d| d["data"]["result"] = json!([])),
            "data.result: the query returned no series",
        ),
        (
            Box::new(|d| {
                *d = json!({"status": "error", "errorType": "bad_data",
                    "error": "parse error at char 4"})
            }),
            "status: the query failed (bad_data: parse error at char 4)",
        ),
        (
            Box::new(|d| *d = json!([1, 2])),
            "not a Prometheus API response",
        ),
        (
            Box::new(|d| *d = json!({"status": "error"})),
            "status: the query failed (no reason given)",
        ),
        (
            Box::new(|d| {
                for s in d["data"]["result"].as_array_mut().expect("result") {
                    s["values"] = json!([]);
                }
            }),
            "series but no points",
        ),
    ];
    for (edit, want) in cases {
        let (code, err) = import_edited(edit);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("bad.json: "), "names the file: {err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}

#[test]
fn a_byte_order_mark_is_skipped_and_warnings_are_escaped() {
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("range.json")).expect("range.json"))
            .expect("json");
    doc["warnings"] = json!(["\u{1b}[31mred\u{1b}[0m"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let f = crate::util::write_file(&dir, "bom.json", &format!("\u{feff}{doc}"));
    let (code, out, err) = run(&["import", &f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("time,"), "{out}");
    assert!(
        !err.contains('\u{1b}'),
        "a raw escape reached the terminal: {err:?}"
    );
    assert!(err.contains("\\u{1b}[31mred"), "{err}");
}

#[test]
fn a_file_that_is_not_json_is_refused_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = crate::util::write_file(&dir, "t.json", "{\"status\": \"success\",\n  \"data\": [}");
    let (code, _, err) = run(&["import", &f]);
    assert_eq!(code, 1);
    assert!(
        err.contains("t.json: not a JSON document") && err.contains("line 2"),
        "{err}"
    );
    let (code, _, err) = run(&["import", "/nonexistent/q.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /nonexistent/q.json"), "{err}");
}

#[test]
fn an_imported_range_query_is_fitted() {
    // y(t) = 0.5 y(t-1) + 2 u(t-1) + e(t): an ARX(1,1,1) the fit must find from the import.
    let n = 400;
    let u = gaussian(31, n);
    let e = gaussian(32, n);
    let mut y = vec![0.0; n];
    for t in 1..n {
        y[t] = 0.5 * y[t - 1] + 2.0 * u[t - 1] + 0.05 * e[t];
    }
    let points = |s: &[f64]| -> Vec<Value> {
        s.iter()
            .enumerate()
            .map(|(k, v)| json!([1_700_000_000.0 + k as f64, format!("{v}")]))
            .collect()
    };
    let doc = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "host_cpu_pct", "instance": "h:9100"}, "values": points(&u)},
        {"metric": {"__name__": "cpu_pct", "instance": "h:9100", "vm": "vm1"},
         "values": points(&y)},
    ]}});
    let dir = tempfile::tempdir().expect("tempdir");
    let f = crate::util::write_file(&dir, "q.json", &doc.to_string());
    let csv = dir.path().join("q.csv");
    let model = dir.path().join("m.json");
    let (code, _, err) = run(&["import", &f, "-o", csv.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let out = vmmon()
        .arg("fit")
        .arg(&csv)
        .args(["-u", "host_cpu_pct", "-y", "vm1.cpu_pct", "--poles", "1"])
        .args(["--zeros", "1", "--delay", "1", "-o"])
        .arg(&model)
        .output()
        .expect("run fit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    let a = m["a"][0].as_f64().expect("a1");
    let b = m["b"][0][0].as_f64().expect("b1");
    assert!(
        (a + 0.5).abs() < 0.01 && (b - 2.0).abs() < 0.01,
        "a1 {a}, b1 {b}"
    );
}

#[cfg(not(feature = "parquet"))]
#[test]
fn without_the_feature_parquet_is_refused_as_a_usage_error() {
    let (code, _, err) = run(&["record", "--format", "parquet", "-o", "/tmp/x.parquet"]);
    assert_eq!(code, 2);
    assert!(err.contains("without the `parquet` cargo feature"), "{err}");
}

#[cfg(feature = "parquet")]
mod parquet {
    use std::fs::File;
    use std::process::Command;
    use std::time::Duration;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::{Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use vmmon::export::import::{Datum, from_parquet};
    use vmmon::export::parquet::{META_KEY, ParquetRows};
    use vmmon::record::fixture::FakeProc;
    use vmmon::record::{Layout, RecordConfig, Recorder};
    use vmmon::trace::{CellRow, RowSink};

    use super::run;
    use crate::util::{Guard, vmmon};

    /// Every batch of a Parquet file and its key/value metadata.
    fn read(path: &std::path::Path) -> (Vec<RecordBatch>, Vec<(String, String)>) {
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
            .expect("a valid Parquet file");
        let kv = b
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let batches = b
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
            .collect();
        (batches, kv)
    }

    fn rows(batches: &[RecordBatch]) -> usize {
        batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// A cell of a batch as the CSV writes it (time as `s.uuuuuu`, floats shortest).
    fn cell(batch: &RecordBatch, col: usize, row: usize) -> String {
        let a = batch.column(col);
        if a.is_null(row) {
            return String::new();
        }
        match a.data_type() {
            arrow_schema::DataType::Timestamp(_, _) => {
                let us = a.as_primitive::<TimestampMicrosecondType>().value(row);
                format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
            }
            arrow_schema::DataType::Int64 => a.as_primitive::<Int64Type>().value(row).to_string(),
            _ => a.as_primitive::<Float64Type>().value(row).to_string(),
        }
    }

    /// A fake host whose counters move with `step`.
    fn host(p: &FakeProc, step: u64) {
        let s = step;
        p.host_cpu([
            100 + 7 * s,
            3 * s,
            50 + 11 * s,
            1000 + 40 * s,
            s % 3,
            0,
            2 * s,
            0,
            0,
            0,
        ])
        .expect("stat");
        p.net_dev(&[
            ("eth0", [1000 * s * s, 10 * s, 333 * s, 3 * s]),
            ("tap0", [if s == 3 { 0 } else { 77 * s }, s, 5, 1]),
        ])
        .expect("net/dev");
        p.write(
            "meminfo",
            &format!("MemTotal: 1000 kB\nMemFree: {} kB\n", 500 - s),
        )
        .expect("meminfo");
    }

    /// Records `n` samples of the fake host both ways, 1.25 s apart: the CSV text and the
    /// Parquet file at `path` with row groups of `group` (left open when `close` is false).
    fn both_ways(
        dir: &std::path::Path,
        raw: bool,
        n: u64,
        group: usize,
        close: bool,
    ) -> (String, std::path::PathBuf, Option<ParquetRows>) {
        let p = FakeProc::new(&dir.join("proc")).expect("fake proc");
        host(&p, 0);
        let config = RecordConfig {
            proc_root: p.root().to_path_buf(),
            sys_root: p.root().join("no-sys"),
            raw,
            layout: Layout::Parquet,
            ..RecordConfig::default()
        };
        let mut rec = Recorder::new(config).expect("recorder");
        let path = dir.join("t.parquet");
        let meta = rec.metadata(Duration::from_secs(1_700_000_000), vec!["test".into()]);
        let mut sink = ParquetRows::create(&path, &rec.columns(), group, &meta).expect("create");
        let mut csv = rec.header();
        let mut line = String::new();
        let mut prev = rec.schema().new_sample();
        let mut cells = Vec::new();
        for k in 0..=n {
            host(&p, k);
            let mut cur = rec.schema().new_sample();
            cur.mono = Duration::from_micros(1_250_000 * k + 17);
            cur.wall = Duration::from_micros(1_700_000_000_000_000 + 1_250_000 * k + 3);
            rec.read(&mut cur);
            if raw || k > 0 {
                rec.schema().derive(&prev, &cur, &mut cells);
                rec.format_row(&cur, &cells, None, &mut line);
                csv.push_str(&line);
                sink.write_cells(&CellRow {
                    wall: cur.wall,
                    elapsed: cur.mono,
                    cells: &cells,
                    clock: None,
                })
                .expect("write");
            }
            prev = cur;
        }
        if close {
            let mut meta = meta;
            meta.status = "complete".into();
            sink.finish(Some(&meta)).expect("finish");
            return (csv, path, None);
        }
        (csv, path, Some(sink))
    }

    fn assert_same_rows(csv: &str, batches: &[RecordBatch]) {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, header);
        let mut csv_rows = lines;
        for b in batches {
            for r in 0..b.num_rows() {
                let want = csv_rows.next().expect("as many CSV rows");
                let want: Vec<&str> = want.split(',').collect();
                for (c, w) in want.iter().enumerate() {
                    let got = cell(b, c, r);
                    if header[c] == "elapsed" {
                        // The CSV writes six decimals, Parquet the same number as a float.
                        let w: f64 = w.parse().expect("elapsed");
                        assert_eq!(got.parse::<f64>().expect("float"), w, "elapsed row {r}");
                    } else {
                        assert_eq!(&got, w, "column {} row {r}", header[c]);
                    }
                }
            }
        }
        assert!(csv_rows.next().is_none(), "more CSV rows than Parquet rows");
    }

    #[test]
    fn parquet_matches_the_csv_row_for_row_in_both_modes() {
        for raw in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (csv, path, _) = both_ways(dir.path(), raw, 7, 3, true);
            let (batches, kv) = read(&path);
            assert_eq!(rows(&batches), 7 + usize::from(raw));
            assert!(
                csv.contains(",,") || raw,
                "the fixture has an empty cell: {csv}"
            );
            assert_same_rows(&csv, &batches);
            let meta: serde_json::Value = serde_json::from_str(
                &kv.iter()
                    .find(|(k, _)| k == META_KEY)
                    .expect("vmmon.meta")
                    .1,
            )
            .expect("meta json");
            assert_eq!(meta["status"], "complete");
            assert_eq!(meta["layout"], "parquet");
            let schema = batches[0].schema();
            let kind = |name: &str| {
                schema.field_with_name(name).expect("field").metadata()["kind"].clone()
            };
            if raw {
                assert_eq!(kind("cpu_user_ticks_total"), "total");
                assert_eq!(
                    schema.field_with_name("ctxt_total").expect("f").data_type(),
                    &arrow_schema::DataType::Int64
                );
            } else {
                assert_eq!(kind("cpu_user_pct"), "rate");
            }
        }
    }

    #[test]
    fn completed_row_groups_survive_an_unclosed_file() {
        // What SIGKILL leaves: the file as it is before close. 7 rows in groups of 3: the
        // two completed groups are readable under their provisional footer.
        let dir = tempfile::tempdir().expect("tempdir");
        let (csv, path, open) = both_ways(dir.path(), false, 7, 3, false);
        let copy = dir.path().join("killed.parquet");
        std::fs::copy(&path, &copy).expect("copy");
        std::mem::forget(open); // no Drop: nothing more reaches the file, as after kill -9
        let (batches, kv) = read(&copy);
        assert_eq!(rows(&batches), 6);
        let first_six: String = csv.lines().take(7).map(|l| format!("{l}\n")).collect();
        assert_same_rows(&first_six, &batches);
        assert!(
            kv.iter()
                .any(|(k, v)| k == META_KEY && v.contains("\"running\""))
        );
    }

    #[test]
    fn import_turns_parquet_back_into_the_csv() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (csv, path, _) = both_ways(dir.path(), true, 5, 4, true);
        let table = from_parquet(&path).expect("import").table;
        let mut lines = csv.lines();
        let header = lines.next().expect("header");
        assert_eq!(format!("time,{}", table.names.join(",")), header);
        for (i, line) in lines.enumerate() {
            let want: Vec<&str> = line.split(',').collect();
            assert_eq!(vmmon::export::import::seconds(table.times_us[i]), want[0]);
            for (c, col) in table.columns.iter().enumerate() {
                let w = want[c + 1];
                match col[i] {
                    Datum::Empty => assert_eq!(w, ""),
                    Datum::Int(v) => assert_eq!(v.to_string(), w),
                    Datum::UInt(v) => assert_eq!(v.to_string(), w),
                    Datum::Num(v) => assert_eq!(v, w.parse::<f64>().expect("number")),
                }
            }
        }
        // The command line: the same table as CSV, which the analyzer reads.
        let (code, out, err) = run(&["import", path.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().next(), Some(header));
        assert_eq!(out.lines().count(), csv.lines().count());
    }

    #[test]
    fn a_parquet_file_without_time_or_with_text_is_refused() {
        use arrow_array::{ArrayRef, Float64Array, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, cols: Vec<(&str, ArrayRef)>| {
            let path = dir.path().join(name);
            let batch = RecordBatch::try_from_iter(cols).expect("batch");
            let mut w = parquet::arrow::ArrowWriter::try_new(
                File::create(&path).expect("create"),
                batch.schema(),
                None,
            )
            .expect("writer");
            w.write(&batch).expect("write");
            w.close().expect("close");
            path
        };
        let t: ArrayRef = Arc::new(Float64Array::from(vec![1.0, 2.0]));
        let host: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let no_time = write("n.parquet", vec![("t", Arc::clone(&t))]);
        let text = write("s.parquet", vec![("time", t), ("host", host)]);
        let (code, _, err) = run(&["import", no_time.to_str().expect("utf-8")]);
        assert_eq!(code, 1);
        assert!(
            err.contains("n.parquet: no column named 'time'; the columns are: t"),
            "{err}"
        );
        let (code, _, err) = run(&["import", text.to_str().expect("utf-8")]);
        assert_eq!(code, 1);
        assert!(
            err.contains(
                "s.parquet: column 'host' has type Utf8; import takes integer and \
                          floating-point columns"
            ),
            "{err}"
        );
    }

    #[test]
    fn sigterm_closes_the_file_with_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.parquet");
        let child = Guard::spawn(
            vmmon()
                .args([
                    "record",
                    "--format",
                    "parquet",
                    "--rate",
                    "20",
                    "--row-group",
                    "7",
                ])
                .arg("-o")
                .arg(&path),
        );
        std::thread::sleep(Duration::from_millis(1200));
        let out = child
            .signal(libc::SIGTERM)
            .wait_with_output()
            .expect("wait");
        assert_eq!(out.status.code(), Some(143));
        let (batches, kv) = read(&path);
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("parquet.meta.json")).expect("sidecar"),
        )
        .expect("json");
        assert_eq!(meta["status"], "interrupted");
        assert!(rows(&batches) >= 10, "{} rows", rows(&batches));
        assert_eq!(meta["rows"].as_u64(), Some(rows(&batches) as u64));
        let footer: serde_json::Value =
            serde_json::from_str(&kv.iter().find(|(k, _)| k == META_KEY).expect("meta").1)
                .expect("json");
        assert_eq!(footer["status"], "interrupted");
        assert_eq!(footer["rows"], meta["rows"]);
    }

    #[test]
    fn sigkill_keeps_the_completed_row_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.parquet");
        let child = Guard::spawn(
            vmmon()
                .args([
                    "record",
                    "--format",
                    "parquet",
                    "--rate",
                    "20",
                    "--row-group",
                    "4",
                ])
                .arg("-o")
                .arg(&path),
        );
        std::thread::sleep(Duration::from_millis(1100));
        let _ = child.signal(libc::SIGKILL).wait();
        let (batches, _) = read(&path);
        let n = rows(&batches);
        assert!(n >= 12 && n.is_multiple_of(4), "{n} rows");
    }

    #[test]
    fn parquet_usage_errors() {
        let (code, _, err) = run(&["record", "--format", "parquet", "-n", "1"]);
        assert_eq!(code, 2);
        assert!(err.contains("--format parquet needs -o FILE"), "{err}");
        let (code, _, err) = run(&["record", "--row-group", "5", "-n", "1"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("--row-group applies to --format parquet only"),
            "{err}"
        );
        let (code, _, err) = run(&[
            "record",
            "--format",
            "parquet",
            "--row-group",
            "0",
            "-o",
            "/tmp/never.parquet",
        ]);
        assert_eq!(code, 2);
        assert!(err.contains("--row-group must be at least 1"), "{err}");
    }

    #[test]
    fn pyarrow_reads_the_file_when_installed() {
        let have = Command::new("python3")
            .args(["-c", "import pyarrow.parquet"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            eprintln!(
                "SKIPPED: python3 with pyarrow not found (an optional independent reader; pip install pyarrow)"
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (csv, path, _) = both_ways(dir.path(), false, 6, 4, true);
        let script = "import sys, pyarrow.parquet as pq\n\
                      t = pq.read_table(sys.argv[1])\n\
                      print(t.num_rows, t.schema.field('time').type, t.column('cpu_user_pct').to_pylist()[1])";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = csv.lines().nth(2).expect("second row");
        let header: Vec<&str> = csv.lines().next().expect("h").split(',').collect();
        let col = header
            .iter()
            .position(|h| *h == "cpu_user_pct")
            .expect("col");
        let want: f64 = line
            .split(',')
            .nth(col)
            .expect("cell")
            .parse()
            .expect("number");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("6 timestamp[us, tz=UTC] {want}")
        );
    }
}
