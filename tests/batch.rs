//! `vmmon fit --batch`: the summary and model files against one `vmmon fit` (and `vmmon
//! validate`) per model, and the errors a user can cause.

use std::collections::HashMap;
use std::path::Path;

use crate::util::{gaussian, vmmon, write_file};

/// A trace `time,COL…` at 1 s, cells written as given (so a test can leave one empty or bad).
fn trace(dir: &tempfile::TempDir, name: &str, cols: &[(&str, Vec<String>)]) -> String {
    let n = cols[0].1.len();
    let mut text = String::from("time");
    for (c, _) in cols {
        text += &format!(",{c}");
    }
    text.push('\n');
    for t in 0..n {
        text += &format!("{}.000000", 1_795_430_000 + t);
        for (_, v) in cols {
            text += &format!(",{}", v[t]);
        }
        text.push('\n');
    }
    write_file(dir, name, &text)
}

fn cells(v: &[f64]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// y driven by u1 (delay 1) and u2 (delay 2) through one pole, plus noise.
fn system(seed: u64, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (u1, u2, e) = (
        gaussian(seed, n),
        gaussian(seed + 1, n),
        gaussian(seed + 2, n),
    );
    let mut y = vec![0.0; n];
    for t in 2..n {
        y[t] = 0.7 * y[t - 1] + u1[t - 1] + 0.4 * u2[t - 2] + 0.1 * e[t];
    }
    let y = y.iter().map(|v| v + 50.0).collect();
    let u1 = u1.iter().map(|v| v + 1e6).collect();
    (u1, u2, y)
}

/// The summary CSV as rows of column → cell.
fn summary(text: &str) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

/// A summary cell read back as f64 (empty → NaN).
fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    let c = &row[col];
    if c.is_empty() {
        f64::NAN
    } else {
        c.parse().unwrap_or_else(|_| panic!("{col} = '{c}'"))
    }
}

/// Asserts a summary figure equals a JSON number bit for bit (null ↔ empty).
fn same(row: &HashMap<String, String>, col: &str, v: &serde_json::Value) {
    let got = num(row, col);
    match v.as_f64() {
        Some(want) => assert_eq!(got.to_bits(), want.to_bits(), "{col}: {got} vs {want}"),
        None => assert!(got.is_nan(), "{col}: {got} vs null"),
    }
}

/// Runs one `vmmon fit` as the batch row describes it; (exit code, stderr, model JSON text).
fn fit_alone(
    dir: &Path,
    row: &HashMap<String, String>,
    extra: &[&str],
) -> (i32, String, Option<String>) {
    let model = dir.join(format!("alone-{}.json", row["name"]));
    let out = vmmon()
        .args(["fit", &row["trace"], "-y", &row["output"], "-u"])
        .arg(row["inputs"].replace(';', ","))
        .args(["--poles", &row["na"], "--zeros"])
        .arg(row["nb"].replace(';', ","))
        .arg("--delay")
        .arg(row["nk"].replace(';', ","))
        .args(extra)
        .arg("-o")
        .arg(&model)
        .output()
        .expect("run fit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&model).ok(),
    )
}

#[test]
fn a_batch_equals_one_fit_per_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 1500;
    let (u1, u2, y) = system(31, n);
    let (v1, v2, w) = system(41, n);
    let mut gap = cells(&v2);
    gap[700] = String::new();
    let mut bad = cells(&v1);
    bad[900] = "oops".into();
    trace(
        &dir,
        "a.csv",
        &[
            ("u1", cells(&u1)),
            ("u2", cells(&u2)),
            ("y", cells(&y)),
            ("flat", vec!["3".into(); n]),
        ],
    );
    trace(
        &dir,
        "b.csv",
        &[
            ("v1", cells(&v1)),
            ("v2_gappy", gap),
            ("w", cells(&w)),
            ("v1_bad", bad),
        ],
    );
    let pairs = "trace,output,inputs,na,nb,nk,name\n\
                 a.csv,y,u1,1,1,1,siso\n\
                 a.csv,y,u1;u2,1,1;2,1;2,miso\n\
                 b.csv,w,v1,,,,defaults\n\
                 b.csv,w,v1;v2_gappy,1,1,1,gappy\n\
                 a.csv,y,flat,1,1,1,constant\n\
                 b.csv,w,v1_bad,1,1,1,badcell\n\
                 a.csv,y,missing,1,1,1,nocolumn\n\
                 b.csv,w,v1,3,4,0,\n";
    let list = write_file(&dir, "pairs.csv", pairs);
    let models = dir.path().join("models");
    let out = vmmon()
        .args(["fit", "--batch", &list, "--poles", "2", "--zeros", "2"])
        .args(["--delay", "1", "--models"])
        .arg(&models)
        .output()
        .expect("run batch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("4 of 8 models failed"), "{stderr}");
    let rows = summary(&String::from_utf8(out.stdout).expect("utf-8"));
    assert_eq!(rows.len(), 8);
    let status: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(
        status,
        ["ok", "ok", "ok", "error", "error", "error", "error", "ok"]
    );
    assert_eq!(rows[2]["na"], "2", "--poles fills an empty na");
    assert_eq!(
        rows[7]["name"], "8",
        "a row without a name is named by its number"
    );
    for row in &rows {
        let (code, stderr, alone) = fit_alone(dir.path(), row, &[]);
        if row["status"] == "error" {
            // The same refusal, word for word, as the model fitted alone.
            assert_eq!(code, 1, "{stderr}");
            assert_eq!(
                stderr.trim(),
                format!("vmmon: error: {}", row["message"]),
                "{}",
                row["name"]
            );
            assert!(row["model"].is_empty() && row["V"].is_empty());
            continue;
        }
        assert_eq!(code, 0, "{stderr}");
        let alone = alone.expect("model written");
        let file = models.join(format!("{}.json", row["name"]));
        assert_eq!(Path::new(&row["model"]), file);
        let batch = std::fs::read_to_string(&file).expect("batch model");
        assert_eq!(batch, alone, "{}: model JSON differs", row["name"]);
        let m: serde_json::Value = serde_json::from_str(&batch).expect("json");
        let c = &m["criteria"];
        for (col, v) in [
            ("V", &c["loss"]),
            ("FPE", &c["fpe"]),
            ("nAIC", &c["naic"]),
            ("AIC", &c["aic"]),
            ("BIC", &c["bic"]),
            ("MDL", &c["mdl"]),
            ("lambda", &m["lambda"]),
            ("fit_prediction_pct", &m["fit_prediction_pct"]),
            ("fit_simulation_pct", &m["fit_simulation_pct"]),
            ("condition", &m["condition"]),
        ] {
            same(row, col, v);
        }
        assert_eq!(row["n_used"], m["n_used"].to_string());
        assert_eq!(row["stable"], m["stable"].to_string());
        // The residual verdicts: what `vmmon validate` says of the model on the same rows.
        let vjson = dir.path().join(format!("v-{}.json", row["name"]));
        let v = vmmon()
            .arg("validate")
            .arg(&file)
            .arg(&row["trace"])
            .args(["-o", "/dev/null", "--json"])
            .arg(&vjson)
            .output()
            .expect("run validate");
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&vjson).expect("v")).expect("json");
        same(row, "test_fit_simulation_pct", &v["fit_simulation_pct"]);
        same(row, "test_fit_prediction_pct", &v["fit_prediction_pct"]);
        let len = |x: &serde_json::Value| x.as_array().expect("array").len();
        assert_eq!(row["acf_outside"], len(&v["acf_outside"]).to_string());
        let xc: Vec<String> = v["xcorr_outside"]
            .as_array()
            .expect("array")
            .iter()
            .map(|o| len(o).to_string())
            .collect();
        assert_eq!(row["xcorr_outside"], xc.join(";"));
        let verdict = if v["pass"] == true { "PASS" } else { "FAIL" };
        assert_eq!(row["residual_test"], verdict);
    }
    assert!(
        rows[3]["message"].contains("missing sample"),
        "{:?}",
        rows[3]
    );
    assert!(
        rows[5]["message"].contains(":902:5: 'oops'"),
        "{:?}",
        rows[5]
    );
}

#[test]
fn the_glob_form_fits_one_model_on_every_trace_with_its_splits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 1000;
    for (i, seed) in [51, 61, 71].iter().enumerate() {
        let (u1, u2, y) = system(*seed, n);
        trace(
            &dir,
            &format!("vm{i}.csv"),
            &[("u1", cells(&u1)), ("u2", cells(&u2)), ("y", cells(&y))],
        );
    }
    write_file(&dir, "other.txt", "not a trace\n");
    let pattern = dir.path().join("vm?.csv");
    let summary_path = dir.path().join("summary.csv");
    let models = dir.path().join("m");
    let out = vmmon()
        .args(["fit", "--batch"])
        .arg(&pattern)
        .args(["-u", "u1,u2", "-y", "y", "--poles", "1", "--zeros", "1,1"])
        .args([
            "--delay",
            "1,2",
            "--estimate",
            "0:70%",
            "--validate",
            "70%:",
        ])
        .arg("-o")
        .arg(&summary_path)
        .arg("--models")
        .arg(&models)
        .output()
        .expect("run batch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = summary(&std::fs::read_to_string(&summary_path).expect("summary"));
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["vm0", "vm1", "vm2"]);
    for row in &rows {
        let (code, stderr, alone) = fit_alone(
            dir.path(),
            row,
            &["--estimate", "0:70%", "--validate", "70%:"],
        );
        assert_eq!(code, 0, "{stderr}");
        let batch = std::fs::read_to_string(&row["model"]).expect("model");
        assert_eq!(batch, alone.expect("alone"));
        // The residual tests ran on rows 700.. (30 % of 1000).
        assert_eq!(row["test_samples"], (300 - 2).to_string());
        let vjson = dir.path().join("v.json");
        let v = vmmon()
            .arg("validate")
            .arg(&row["model"])
            .arg(&row["trace"])
            .args(["--from", "#700", "-o", "/dev/null", "--json"])
            .arg(&vjson)
            .output()
            .expect("run validate");
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
        let vtext = std::fs::read_to_string(&vjson).expect("v");
        let v: serde_json::Value = serde_json::from_str(&vtext).expect("json");
        same(row, "test_fit_simulation_pct", &v["fit_simulation_pct"]);
        let verdict = if v["pass"] == true { "PASS" } else { "FAIL" };
        assert_eq!(row["residual_test"], verdict);
    }
    // reconstruct reads a batch model.
    let out = vmmon()
        .arg("reconstruct")
        .arg(&rows[0]["model"])
        .arg(&rows[0]["trace"])
        .output()
        .expect("run reconstruct");
    assert!(out.status.success());
}

#[test]
fn a_malformed_pairs_file_is_a_usage_error_naming_the_cell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, want) in [
        (
            "trace,output,inputs,nx\na.csv,y,u,1\n",
            "pairs.csv:1:4: unknown column 'nx'",
        ),
        ("trace,inputs\na.csv,u\n", "pairs.csv:1: no 'output' column"),
        (
            "trace,output,inputs,na,nb,nk\na.csv,y,u,two,1,1\n",
            "pairs.csv:2:4: na 'two' is not a whole number",
        ),
        (
            "trace,output,inputs,na,nb,nk\na.csv,y,u1;u2,1,1;1;1,1\n",
            "pairs.csv:2:5: nb has 3 values for 2 inputs",
        ),
        (
            "trace,output,inputs,na,nb\na.csv,y,u,1,1\n",
            "pairs.csv:2: no nk: fill the cell or give --delay",
        ),
        (
            "trace,output,inputs,na,nb,nk,name\na.csv,y,u,1,1,1,m\nb.csv,y,u,1,1,1,m\n",
            "pairs.csv:3:7: name 'm' is also the name of line 2's model",
        ),
        (
            "trace,output,inputs,na,nb,nk,name\na.csv,y,u,1,1,1,../x\n",
            "pairs.csv:2:7: name '../x' must be",
        ),
        (
            "trace,output,inputs,na,nb,nk\na.csv,y,u;,1,1,1\n",
            "pairs.csv:2:3: inputs are column names",
        ),
        (
            "trace,output,inputs,na,nb,nk\na.csv,y,u,1,1\n",
            "pairs.csv:2:1: CSV error",
        ),
        ("trace,output,inputs\n", "pairs.csv: no models listed"),
    ] {
        let list = write_file(&dir, "pairs.csv", text);
        let out = vmmon()
            .args(["fit", "--batch", &list])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(want), "{text}: {stderr}");
    }
    let out = vmmon()
        .args(["fit", "--batch", "/nonexistent/*.csv", "-y", "y", "-u", "u"])
        .args(["--poles", "1", "--zeros", "1", "--delay", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let out = vmmon()
        .args([
            "fit",
            "--batch",
            "x/*/a.csv",
            "-y",
            "y",
            "-u",
            "u",
            "--poles",
            "1",
        ])
        .args(["--zeros", "1", "--delay", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the file name only"));
    let out = vmmon()
        .args(["fit", "a.csv", "-y", "y", "--models", "d", "--poles", "1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "--models needs --batch");
}
