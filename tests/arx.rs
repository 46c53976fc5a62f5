//! ARX fitting and reconstruction against simulated systems whose true parameters the test
//! knows, and the errors a user can cause.

use vmmon::sysid::arx::{self, Orders};

use crate::util::{gaussian, vmmon};

/// Simulates `A(q) y = Σ B_i(q) u_i(t − nk_i) + e` with zero initial conditions.
fn simulate(a: &[f64], b: &[Vec<f64>], nk: &[usize], us: &[Vec<f64>], e: &[f64]) -> Vec<f64> {
    let n = e.len();
    let mut y = vec![0.0; n];
    for t in 0..n {
        let mut v = e[t];
        for (i, ai) in a.iter().enumerate() {
            if t > i {
                v -= ai * y[t - 1 - i];
            }
        }
        for ((bi, &k), u) in b.iter().zip(nk).zip(us) {
            for (j, bj) in bi.iter().enumerate() {
                if t >= k + j {
                    v += bj * u[t - k - j];
                }
            }
        }
        y[t] = v;
    }
    y
}

#[test]
fn a_simulated_miso_system_is_recovered_within_4_sd() {
    let n = 4000;
    let (a, b, nk) = (
        vec![-1.5, 0.7],
        vec![vec![1.0, 0.5], vec![-0.8]],
        vec![3usize, 1],
    );
    let us = vec![gaussian(11, n), gaussian(12, n)];
    let e: Vec<f64> = gaussian(13, n).iter().map(|v| 0.2 * v).collect();
    // Offsets: the fit removes means and must keep them in the model.
    let y: Vec<f64> = simulate(&a, &b, &nk, &us, &e)
        .iter()
        .map(|v| v + 40.0)
        .collect();
    let us_off: Vec<Vec<f64>> = us
        .iter()
        .map(|u| u.iter().map(|v| v + 1e6).collect())
        .collect();
    let refs: Vec<&[f64]> = us_off.iter().map(Vec::as_slice).collect();
    let orders = Orders {
        na: 2,
        nb: vec![2, 1],
        nk: nk.clone(),
    };
    let names = ["u1".to_string(), "u2".to_string()];
    let m = arx::fit(&y, &refs, &orders, ("y", &names), 1.0).expect("fit");
    for (est, (sd, truth)) in m.a.iter().zip(m.a_sd.iter().zip(&a)) {
        assert!(
            (est - truth).abs() < 4.0 * sd,
            "a: {est} vs {truth} (sd {sd})"
        );
    }
    for (i, ((est_b, sd_b), true_b)) in m.b.iter().zip(&m.b_sd).zip(&b).enumerate() {
        for (est, (sd, truth)) in est_b.iter().zip(sd_b.iter().zip(true_b)) {
            assert!(
                (est - truth).abs() < 4.0 * sd,
                "b{i}: {est} vs {truth} (sd {sd})"
            );
        }
    }
    // λ estimates the noise variance 0.04; its 99% interval for N−d ≈ 4000 dof is ±5.8%.
    assert!((m.lambda / 0.04 - 1.0).abs() < 0.058, "λ = {}", m.lambda);
    assert_eq!(m.t0, 4);
    assert_eq!(m.n_used, n - 4);
    assert!(m.stable && m.fit_simulation_pct > 80.0, "{m:?}");
    assert_eq!(m.alpha, vec![-m.a[0], -m.a[1]]);
    assert!((m.offsets.output - 40.0).abs() < 0.5);
    assert!((m.offsets.inputs[0] - 1e6).abs() < 0.1);
}

fn write_trace(dir: &tempfile::TempDir, name: &str, cols: &[(&str, &[f64])]) -> String {
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
    crate::util::write_file(dir, name, &text)
}

#[test]
fn fit_then_reconstruct_from_the_host_inputs_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3000;
    let u = gaussian(21, n);
    let e: Vec<f64> = gaussian(22, n).iter().map(|v| 0.05 * v).collect();
    let y: Vec<f64> = simulate(
        &[-0.8],
        &[vec![2.0, 1.0]],
        &[2],
        std::slice::from_ref(&u),
        &e,
    )
    .iter()
    .map(|v| v + 10.0)
    .collect();
    let data = write_trace(&dir, "train.csv", &[("host_cpu", &u), ("vm_cpu", &y)]);
    let model = dir.path().join("m.json");
    let out = vmmon()
        .args([
            "fit", &data, "-u", "host_cpu", "-y", "vm_cpu", "--poles", "1",
        ])
        .args(["--zeros", "2", "--delay", "2", "-o"])
        .arg(&model)
        .output()
        .expect("run fit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("a1  [vm_cpu(t-1)]") && text.contains("α1 = 0."),
        "{text}"
    );
    assert!(
        text.contains("b2  [host_cpu(t-3)]") && text.contains("→ stable"),
        "{text}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    let within = |v: &serde_json::Value, sd: &serde_json::Value, truth: f64| {
        let (v, sd) = (v.as_f64().expect("number"), sd.as_f64().expect("number"));
        assert!((v - truth).abs() < 4.0 * sd, "{v} vs {truth} (sd {sd})");
    };
    within(&m["a"][0], &m["a_sd"][0], -0.8);
    within(&m["b"][0][0], &m["b_sd"][0][0], 2.0);
    within(&m["b"][0][1], &m["b_sd"][0][1], 1.0);
    assert_eq!(m["format"], 1);
    // Reconstruct on the host-only part of the trace: no vm_cpu column at all.
    let host = write_trace(&dir, "host.csv", &[("host_cpu", &u)]);
    let out = vmmon()
        .arg("reconstruct")
        .arg(&model)
        .arg(&host)
        .output()
        .expect("run reconstruct");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "time,vm_cpu");
    assert_eq!(rows.len(), n + 1);
    assert_eq!(rows[1], "1795430000.000000,", "no estimate before t0");
    // Simulation error ≈ the noise filtered by 1/A: sd 0.05/√(1−0.64) ≈ 0.083.
    let est: Vec<f64> = rows[4..]
        .iter()
        .map(|r| r.split(',').nth(1).expect("cell").parse().expect("number"))
        .collect();
    let rms = (est
        .iter()
        .zip(&y[3..])
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / est.len() as f64)
        .sqrt();
    assert!(rms < 0.1, "reconstruction rms error {rms}");
}

#[test]
fn arx_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = gaussian(31, 50);
    let flat = vec![3.0; 50];
    let y = gaussian(32, 50);
    let data = write_trace(&dir, "d.csv", &[("u", &u), ("flat", &flat), ("y", &y)]);
    let run = |args: &[&str]| {
        let out = vmmon().args(args).output().expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[
        "fit", &data, "-u", "u", "-y", "y", "--poles", "20", "--zeros", "17", "--delay", "50",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("need more than 103 samples (37 parameters after the first 66 samples); the data have 50"), "{err}");
    let (code, err) = run(&[
        "fit", &data, "-u", "u", "-y", "y", "--poles", "-1", "--zeros", "1", "--delay", "0",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value '-1' for '--poles <NA>'"),
        "{err}"
    );
    let (code, err) = run(&[
        "fit", &data, "-u", "u,flat", "-y", "y", "--poles", "1", "--zeros", "1,1,1", "--delay", "1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--zeros has 3 values for 2 inputs"), "{err}");
    let (code, err) = run(&[
        "fit", &data, "-u", "u,flat", "-y", "y", "--poles", "1", "--zeros", "1", "--delay", "1",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("input flat is constant: its B coefficients cannot be estimated"),
        "{err}"
    );
    let (_, err) = run(&[
        "fit", &data, "-u", "u,u", "-y", "y", "--poles", "1", "--zeros", "1", "--delay", "1,1",
    ]);
    assert!(
        err.contains("numerically singular") && err.contains("u(t-1) is constant or a combination"),
        "{err}"
    );

    let newer = dir.path().join("newer.json");
    std::fs::write(&newer, r#"{"format": 99}"#).expect("write");
    let (code, err) = run(&["reconstruct", newer.to_str().expect("utf-8"), &data]);
    assert_eq!(code, 1);
    assert!(
        err.contains("model format 99 is newer than this vmmon reads (1)"),
        "{err}"
    );
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{not json").expect("write");
    let (_, err) = run(&["reconstruct", junk.to_str().expect("utf-8"), &data]);
    assert!(err.contains("junk.json is not JSON"), "{err}");
}

fn arx_ref(file: &str) -> serde_json::Value {
    let p = format!("{}/testdata/arx/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("reference")).expect("json")
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(inner) => inner.iter().map(|y| y.as_f64().expect("number")).collect(),
            None => vec![x.as_f64().expect("number")],
        })
        .collect()
}

/// `got` within `rel` of `want`, relative to the largest |want| of the group.
fn close_all(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale,
            "{what}[{i}]: vmmon {g} vs reference {w}"
        );
    }
}

/// Each `got` within `rel` of its own `want`.
fn each_close(what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs(),
            "{what}[{i}]: vmmon {g} vs reference {w}"
        );
    }
}

/// `vmmon fit` against numpy/statsmodels least squares (testdata/arx/make_reference.py):
/// parameters, their sd, loss, criteria and fit % to 1e-8 relative; and against GNU Octave's
/// `arx` for the datasets where its regression window is ours (arx221, arx_ill, ice_river).
/// `ice_river` is measured data (daily river flow from precipitation and temperature, shipped
/// by the R package tseries; provenance in testdata/arx/README.md).
#[test]
fn fit_matches_the_numpy_statsmodels_reference() {
    for case in ["arx221", "arx_miso", "arx_big", "arx_ill", "ice_river"] {
        let r = arx_ref(&format!("{case}_ref.json"));
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("m.json");
        let join = |v: &serde_json::Value| {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| x.to_string().trim_matches('"').to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let data = format!("{}/testdata/arx/{case}.csv", env!("CARGO_MANIFEST_DIR"));
        let out = vmmon()
            .args(["fit", &data, "-u", &join(&r["inputs"]), "-y"])
            .arg(r["output"].as_str().expect("output"))
            .args(["--poles", &r["na"].to_string()])
            .args(["--zeros", &join(&r["nb"]), "--delay", &join(&r["nk"]), "-o"])
            .arg(&model)
            .output()
            .expect("run fit");
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
        let mut theta = floats(&m["a"]);
        theta.extend(floats(&m["b"]));
        let mut sd = floats(&m["a_sd"]);
        sd.extend(floats(&m["b_sd"]));
        // Elementwise: arx_ill's b is 5e-5 beside an a of −0.8.
        each_close(&format!("{case} theta"), &theta, &floats(&r["theta"]), 1e-8);
        each_close(&format!("{case} sd"), &sd, &floats(&r["sd"]), 1e-8);
        // GNU Octave's `arx` (control 3.4.0), where its regression window equals ours.
        let oct = arx_ref(&format!("{case}_octave.json"));
        if oct["t0_octave"] == oct["t0_vmmon"] {
            let mut want = floats(&oct["A"])[1..].to_vec();
            want.extend(floats(&oct["B"]));
            each_close(&format!("{case} theta vs Octave arx"), &theta, &want, 1e-8);
        }
        assert_eq!(m["t0"], r["t0"], "{case} t0");
        assert_eq!(m["n_used"], r["N_used"], "{case} N used");
        for (mine, theirs) in [
            (&m["rss"], &r["RSS"]),
            (&m["lambda"], &r["lambda"]),
            (&m["criteria"]["loss"], &r["V"]),
            (&m["criteria"]["fpe"], &r["FPE"]),
            (&m["criteria"]["naic"], &r["nAIC"]),
            (&m["criteria"]["aic"], &r["AIC"]),
            (&m["criteria"]["bic"], &r["BIC"]),
            (&m["criteria"]["mdl"], &r["MDL"]),
            (&m["fit_prediction_pct"], &r["fit_pred_pct"]),
            (&m["fit_simulation_pct"], &r["fit_sim_pct"]),
        ] {
            let (a, b) = (
                mine.as_f64().expect("number"),
                theirs.as_f64().expect("number"),
            );
            assert!((a - b).abs() <= 1e-8 * b.abs(), "{case}: {a} vs {b}");
        }
        let mut poles = floats(&m["pole_magnitudes"]);
        let mut want = floats(&r["pole_abs"]);
        poles.sort_by(f64::total_cmp);
        want.sort_by(f64::total_cmp);
        close_all(&format!("{case} |poles|"), &poles, &want, 1e-8);
        assert_eq!(m["stable"], r["stable"]);
    }
}

/// `vmmon validate` against validate_arx221.json: estimate on rows 0..1399, validate on
/// 1400..1999 with the estimation means.
#[test]
fn validate_matches_the_reference() {
    let r = arx_ref("validate_arx221.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.json");
    let json = dir.path().join("v.json");
    let data = format!("{}/testdata/arx/arx221.csv", env!("CARGO_MANIFEST_DIR"));
    let fit = vmmon()
        .args([
            "fit", &data, "-u", "u", "-y", "y", "--poles", "2", "--zeros", "2",
        ])
        .args(["--delay", "3", "--to", "#1399", "-o"])
        .arg(&model)
        .output()
        .expect("fit");
    assert!(
        fit.status.success(),
        "{}",
        String::from_utf8_lossy(&fit.stderr)
    );
    let out = vmmon()
        .arg("validate")
        .arg(&model)
        .args([&data, "--from", "#1400", "--json"])
        .arg(&json)
        .output()
        .expect("validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verdict: PASS"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let want = &r["validation"];
    for (mine, theirs) in [
        ("fit_simulation_pct", "fit_sim_pct"),
        ("fit_prediction_pct", "fit_pred_pct"),
        ("bound", "bound99"),
    ] {
        let (a, b) = (
            v[mine].as_f64().expect(mine),
            want[theirs].as_f64().expect(theirs),
        );
        assert!((a - b).abs() <= 1e-8 * b.abs(), "{mine}: {a} vs {b}");
    }
    close_all(
        "residual acf",
        &floats(&v["residual_acf"]),
        &floats(&want["resid_acf"]),
        1e-9,
    );
    close_all(
        "input-residual xcorr",
        &floats(&v["input_residual_xcorr"][0]),
        &floats(&want["xcorr_u_resid"]),
        1e-9,
    );
    // The CSV: one row per sample, empty before t0, residual = measured − predicted.
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 600);
    assert_eq!(rows[3][2], "", "nothing simulated before t0");
    let num = |s: &str| s.parse::<f64>().expect("number");
    for row in &rows[4..] {
        assert!((num(row[1]) - num(row[3]) - num(row[4])).abs() < 1e-9);
    }
}

#[test]
fn k_step_prediction_spans_one_step_to_simulation() {
    let n = 800;
    let u = gaussian(41, n);
    let e: Vec<f64> = gaussian(42, n).iter().map(|v| 0.1 * v).collect();
    let y = simulate(&[-0.9], &[vec![1.0]], &[1], std::slice::from_ref(&u), &e);
    let names = ["u".to_string()];
    let orders = Orders {
        na: 1,
        nb: vec![1],
        nk: vec![1],
    };
    let m = arx::fit(&y, &[&u], &orders, ("y", &names), 1.0).expect("fit");
    let one = m.validate(&y, &[&u], 1).expect("k=1");
    let five = m.validate(&y, &[&u], 5).expect("k=5");
    let all = m.validate(&y, &[&u], n).expect("k=n");
    assert!((one.fit_prediction_pct - m.fit_prediction_pct).abs() < 1e-9);
    assert!((all.fit_prediction_pct - all.fit_simulation_pct).abs() < 1e-9);
    assert!(one.fit_prediction_pct > five.fit_prediction_pct);
    assert!(five.fit_prediction_pct > all.fit_prediction_pct);
}

#[test]
fn chance_exceedances_follow_the_binomial() {
    // P(Bin(25, .01) > 1) = 0.0258 ≤ 0.05 < P(> 0) = 0.222;
    // P(Bin(51, .01) > 2) = 0.0145 ≤ 0.05 < P(> 1) = 0.0924.
    assert_eq!(arx::allowed_exceedances(25), 1);
    assert_eq!(arx::allowed_exceedances(51), 2);
    assert_eq!(arx::allowed_exceedances(0), 0);
}

#[test]
fn a_wrong_model_fails_validation_and_splits_are_checked() {
    let data = format!("{}/testdata/arx/arx221.csv", env!("CARGO_MANIFEST_DIR"));
    let out = vmmon()
        .args([
            "fit", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1",
        ])
        .args(["--delay", "1", "--estimate", "0:70%", "--validate", "70%:"])
        .output()
        .expect("fit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("validation on rows 1400..1999"), "{text}");
    assert!(text.contains("verdict: FAIL"), "{text}");
    for (split, msg) in [
        ("80%:70%", "selects no rows of the 2000 read"),
        ("half", "is not START:END"),
        ("0:150%", "neither a row number nor a percentage"),
    ] {
        let out = vmmon()
            .args([
                "fit", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1",
            ])
            .args(["--delay", "1", "--estimate", split])
            .output()
            .expect("fit");
        assert_eq!(out.status.code(), Some(2), "{split}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{split}"
        );
    }
}

/// `vmmon order` against order_arx221.csv: all 80 candidates on the same 1992 samples, every
/// criterion to 1e-8; AIC, FPE and MDL pick the true orders.
#[test]
fn order_search_matches_the_reference_grid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grid = dir.path().join("grid.csv");
    let best = dir.path().join("best.json");
    let data = format!("{}/testdata/arx/arx221.csv", env!("CARGO_MANIFEST_DIR"));
    for criterion in ["aic", "fpe", "mdl"] {
        let out = vmmon()
            .args([
                "order", &data, "-u", "u", "-y", "y", "--poles", "1..4", "--zeros", "1..4",
            ])
            .args(["--delay", "1..5", "--criterion", criterion, "-o"])
            .arg(&grid)
            .arg("--model")
            .arg(&best)
            .output()
            .expect("order");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine = std::fs::read_to_string(&grid).expect("grid");
        let first: Vec<&str> = mine.lines().nth(1).expect("rank 1").split(',').collect();
        assert_eq!(
            &first[1..4],
            &["2", "2", "3"],
            "{criterion} picks the true orders"
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&best).expect("model")).expect("json");
        assert_eq!(m["orders"]["na"], 2);
    }
    let mine = std::fs::read_to_string(&grid).expect("grid");
    let head: Vec<&str> = mine.lines().next().expect("header").split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).expect(n);
    let want = std::fs::read_to_string(format!(
        "{}/testdata/arx/order_arx221.csv",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("reference");
    let mut rows = 0;
    for line in want.lines().skip(1) {
        let w: Vec<&str> = line.split(',').collect();
        let got: Vec<&str> = mine
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|g| g[1] == w[0] && g[2] == w[1] && g[3] == w[2])
            .expect("candidate in grid")
            .clone();
        for (i, name) in ["V", "FPE", "nAIC", "AIC", "BIC", "MDL"].iter().enumerate() {
            let (a, b): (f64, f64) = (
                got[col(name)].parse().expect("number"),
                w[3 + i].parse().expect("number"),
            );
            assert!((a - b).abs() <= 1e-8 * b.abs(), "{line}: {name} {a} vs {b}");
        }
        rows += 1;
    }
    assert_eq!(rows, 80);
}

/// Regressions from the code review of 2026-11-23 (findings F1–F4, F8): every one of these
/// panicked, aborted, or misled before.
#[test]
fn review_regressions_no_panics_and_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = gaussian(51, 100);
    let y = gaussian(52, 100);
    let flat = vec![5.0; 100];
    let data = write_trace(&dir, "d.csv", &[("u", &u), ("y", &y), ("c", &flat)]);
    let run = |args: &[&str]| {
        let out = vmmon().args(args).output().expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let huge = "18446744073709551615";
    for (args, want, msg) in [
        // F2: no parameters; lags and delays that overflow.
        (
            vec![
                "fit", &data, "-u", "u", "-y", "y", "--poles", "0", "--zeros", "0", "--delay", "0",
            ],
            1,
            "the model has no parameters",
        ),
        (
            vec!["impulse", &data, "-u", "u", "-y", "y", "-M", huge],
            1,
            "too few for",
        ),
        (
            vec![
                "impulse", &data, "-u", "u", "-y", "y", "-M", huge, "--method", "fir",
            ],
            1,
            "too few for",
        ),
        (
            vec![
                "fit", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1", "--delay", huge,
            ],
            2,
            "--delay 18446744073709551615: orders above 1000 are not estimated",
        ),
        (
            vec!["xcorr", &data, "-u", "u", "-y", "y", "-L", huge],
            1,
            "too few for",
        ),
        // F3: a constant output, an output that is also an input.
        (
            vec![
                "fit", &data, "-u", "u", "-y", "c", "--poles", "0", "--zeros", "1", "--delay", "0",
            ],
            1,
            "the output c is constant",
        ),
        (
            vec![
                "fit", &data, "-u", "u", "-y", "u", "--poles", "1", "--zeros", "1", "--delay", "0",
            ],
            2,
            "u is both an input and the output",
        ),
    ] {
        let (code, err) = run(&args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(
            err.contains(msg) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // F2: a mistyped time (ms instead of s) is refused before a 13 TB grid is allocated.
    let jump = dir.path().join("jump.csv");
    std::fs::write(
        &jump,
        "time,u,y\n1700000000,1,2\n1700000001,2,3\n1700000002,3,1\n1700000004000,4,5\n",
    )
    .expect("write");
    let (code, err) = run(&[
        "xcorr",
        jump.to_str().expect("utf-8"),
        "-u",
        "u",
        "-y",
        "y",
        "-L",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("jump.csv:5: time jumps by 1698300003998 s"),
        "{err}"
    );

    // F4: an inconsistent model file is refused with the reason, not a panic.
    let model = dir.path().join("m.json");
    let out = vmmon()
        .args([
            "fit", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1", "--delay", "1",
            "-o",
        ])
        .arg(&model)
        .output()
        .expect("fit");
    assert!(out.status.success());
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("m")).expect("json");
    m["orders"]["na"] = 2.into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, m.to_string()).expect("write");
    let (code, err) = run(&["reconstruct", bad.to_str().expect("utf-8"), &data]);
    assert_eq!(code, 1);
    assert!(
        err.contains("model file inconsistent: na = 2 but 1 a coefficients"),
        "{err}"
    );

    // F3: a perfect fit (V = 0, nAIC = −∞) writes null and still loads.
    let mut yp = vec![0.0; 100];
    for t in 1..100 {
        yp[t] = 0.5 * yp[t - 1] + u[t - 1];
    }
    let perfect = write_trace(&dir, "p.csv", &[("u", &u), ("y", &yp)]);
    let pm = dir.path().join("p.json");
    let out = vmmon()
        .args([
            "fit", &perfect, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1", "--delay", "1",
            "-o",
        ])
        .arg(&pm)
        .output()
        .expect("fit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = run(&["reconstruct", pm.to_str().expect("utf-8"), &perfect]);
    assert_eq!(code, 0, "{err}");

    // F8: an input with no B coefficients does not delay the start.
    let o = Orders {
        na: 1,
        nb: vec![1, 0],
        nk: vec![1, 50],
    };
    assert_eq!(o.t0(), 1);
}

/// Review findings F4, F6, F7: a model fitted with --rates applies them again when used;
/// --detrend cannot override a model's own offsets; another time column can be chosen.
#[test]
fn models_remember_rates_and_keep_their_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 400;
    let u = gaussian(61, n);
    let e: Vec<f64> = gaussian(62, n).iter().map(|v| 0.01 * v).collect();
    let y = simulate(&[-0.5], &[vec![1.0]], &[1], std::slice::from_ref(&u), &e);
    // The input as a cumulative counter (integrated rate + 5 per sample, never decreasing).
    let mut total = vec![1e9; n];
    for t in 1..n {
        total[t] = total[t - 1] + 5.0 + u[t];
    }
    let elapsed: Vec<f64> = (0..n).map(|t| t as f64).collect();
    let data = write_trace(
        &dir,
        "c.csv",
        &[("elapsed", &elapsed), ("bytes_total", &total), ("y", &y)],
    );
    let model = dir.path().join("m.json");
    let out = vmmon()
        .args([
            "fit",
            &data,
            "--rates",
            "--time-column",
            "elapsed",
            "-u",
            "bytes_total",
        ])
        .args([
            "-y", "y", "--poles", "1", "--zeros", "1", "--delay", "1", "-o",
        ])
        .arg(&model)
        .output()
        .expect("fit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("m")).expect("json");
    assert_eq!(m["rates"], true);
    assert!(
        (m["a"][0].as_f64().expect("a1") + 0.5).abs() < 0.01,
        "{}",
        m["a"]
    );
    // reconstruct turns the counter into rates again without being told.
    let out = vmmon()
        .arg("reconstruct")
        .arg(&model)
        .arg(&data)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let last: f64 = csv
        .lines()
        .last()
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a value");
    assert!((last - y[n - 1]).abs() < 0.1, "{last} vs {}", y[n - 1]);
    let out = vmmon()
        .arg("reconstruct")
        .arg(&model)
        .args([&data, "--detrend", "linear"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not apply to reconstruct"));
}

/// Issue 4: the ARX(20,17,50) of the original experiment runs end to end on a trace recorded
/// by `vmmon record` (testdata/traces/record.sh: 120 s at 5 Hz under a varying load):
/// estimate on 70 %, validate on the rest, reconstruct from the input alone.
#[test]
fn the_original_experiment_order_on_a_recorded_trace() {
    let data = format!(
        "{}/testdata/traces/host-5hz.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.json");
    let out = vmmon()
        .args(["fit", &data, "-u", "cpu_user_pct", "-y", "cpu_system_pct"])
        .args(["--poles", "20", "--zeros", "17", "--delay", "50"])
        .args(["--estimate", "0:70%", "--validate", "70%:", "-o"])
        .arg(&model)
        .output()
        .expect("fit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "na=20 nb=[17] nk=[50]; 354 samples used (from sample 66), sample time 0.2 s"
        ),
        "{text}"
    );
    assert!(text.contains("b17  [cpu_user_pct(t-66)]"), "{text}");
    assert!(
        text.contains("validation on rows 420..599") && text.contains("verdict:"),
        "{text}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    assert_eq!(m["a"].as_array().map(Vec::len), Some(20));
    assert_eq!(m["b"][0].as_array().map(Vec::len), Some(17));
    let out = vmmon()
        .arg("reconstruct")
        .arg(&model)
        .arg(&data)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 601);
}

/// A(q) = Π (1 − p_i q⁻¹) for real poles p_i: the coefficients a1..a_na.
fn a_from_poles(poles: &[f64]) -> Vec<f64> {
    let mut a = vec![1.0];
    for p in poles {
        let mut next = vec![0.0; a.len() + 1];
        for (i, c) in a.iter().enumerate() {
            next[i] += c;
            next[i + 1] -= p * c;
        }
        a = next;
    }
    a[1..].to_vec()
}

proptest::proptest! {
    // Fixed seed: the same systems on every run, so a rare 4-sd excursion cannot make CI flaky.
    #![proptest_config(proptest::test_runner::Config {
        cases: 40,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Issue 4: random stable SISO and MISO ARX systems (real poles inside ±0.85, B
    /// coefficients in ±2, delays 0..4) are recovered within 4 standard deviations, and λ
    /// within the confidence interval of a noise variance estimate, ±z·√(2/(N−d)) relative
    /// (z for 99% over all the cases together).
    #[test]
    fn random_stable_systems_are_recovered(
        poles in proptest::collection::vec(-0.85f64..0.85, 1..4),
        b1 in proptest::collection::vec(-2.0f64..2.0, 1..4),
        b2 in proptest::collection::vec(-2.0f64..2.0, 0..3),
        nk1 in 0usize..5,
        nk2 in 0usize..5,
        seed in 1u64..1_000_000,
    ) {
        let n = 3000;
        let a = a_from_poles(&poles);
        let mut b = vec![b1.clone()];
        let mut nk = vec![nk1];
        let mut us = vec![gaussian(seed, n)];
        if !b2.is_empty() {
            b.push(b2.clone());
            nk.push(nk2);
            us.push(gaussian(seed + 1, n));
        }
        let sigma = 0.1;
        let e: Vec<f64> = gaussian(seed + 2, n).iter().map(|v| sigma * v).collect();
        let y = simulate(&a, &b, &nk, &us, &e);
        let orders = Orders { na: a.len(), nb: b.iter().map(Vec::len).collect(), nk: nk.clone() };
        let names: Vec<String> = (0..us.len()).map(|i| format!("u{i}")).collect();
        let refs: Vec<&[f64]> = us.iter().map(Vec::as_slice).collect();
        let m = arx::fit(&y, &refs, &orders, ("y", &names), 1.0).expect("fit");
        let mut truth = a.clone();
        truth.extend(b.iter().flatten());
        let mut est = m.a.clone();
        est.extend(m.b.iter().flatten());
        let mut sd = m.a_sd.clone();
        sd.extend(m.b_sd.iter().flatten());
        for ((t, e), s) in truth.iter().zip(&est).zip(&sd) {
            proptest::prop_assert!((t - e).abs() < 4.0 * s, "{} vs {} (sd {})", e, t, s);
        }
        let dof = (m.n_used - orders.params()) as f64;
        let rel = m.lambda / (sigma * sigma) - 1.0;
        // Each of the 40 systems is a separate test: at 99% one in three runs would see a miss
        // somewhere. Bonferroni: 99.99% per system (z = 3.89) keeps the whole run at 99.6%.
        proptest::prop_assert!(rel.abs() < 3.89 * (2.0 / dof).sqrt(), "λ = {}", m.lambda);
    }
}

/// `order --model --stable` passes over unstable candidates: on a growing system the true
/// ARX(1,1,1), with its pole at 1.02, ranks first, and --stable writes the best na = 0 model
/// instead (A = 1 has no poles); with only unstable candidates it refuses.
#[test]
fn order_stable_passes_over_unstable_candidates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 150;
    let u = gaussian(71, n);
    let e = gaussian(72, n);
    let y = simulate(
        &[-1.02],
        &[vec![1.0]],
        &[1],
        std::slice::from_ref(&u),
        &e.iter().map(|x| 0.01 * x).collect::<Vec<_>>(),
    );
    let data = write_trace(&dir, "grow.csv", &[("u", &u), ("y", &y)]);
    let order = |poles: &str, stable: bool| {
        let model = dir.path().join(format!("m{poles}{stable}.json"));
        let mut cmd = vmmon();
        cmd.args([
            "order", &data, "-u", "u", "-y", "y", "--poles", poles, "--zeros", "1..2",
        ])
        .args([
            "--delay",
            "1",
            "--criterion",
            "mdl",
            "-o",
            "/dev/null",
            "--model",
        ])
        .arg(&model);
        if stable {
            cmd.arg("--stable");
        }
        let out = cmd.output().expect("order");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let m: Option<serde_json::Value> = std::fs::read_to_string(&model)
            .ok()
            .map(|t| serde_json::from_str(&t).expect("model JSON"));
        (out.status.code(), err, m)
    };
    let (code, err, m) = order("0..1", false);
    assert_eq!(code, Some(0), "{err}");
    let m = m.expect("model");
    assert_eq!(m["orders"]["na"], 1, "{m}");
    assert_eq!(m["stable"], false, "{m}");

    let (code, err, m) = order("0..1", true);
    assert_eq!(code, Some(0), "{err}");
    let m = m.expect("model");
    assert_eq!(m["orders"]["na"], 0, "{m}");
    assert_eq!(m["stable"], true, "{m}");
    assert!(
        err.contains("is unstable") && err.contains("passed over"),
        "{err}"
    );

    let (code, err, m) = order("1", true);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no candidate of the grid has a stable A(q)"),
        "{err}"
    );
    assert!(m.is_none());
    // --stable means nothing without --model: a usage error.
    let out = vmmon()
        .args([
            "order", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "1",
        ])
        .args(["--delay", "1", "--stable"])
        .output()
        .expect("order");
    assert_eq!(out.status.code(), Some(2));
}

/// `CMD FILE -u u -y y` with ARX(1, 1, 1) and `extra` options.
fn arx1<'a>(cmd: &'a str, file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![cmd, file, "-u", "u", "-y", "y"];
    a.extend(["--poles", "1", "--zeros", "1", "--delay", "1"]);
    a.extend_from_slice(extra);
    a
}

/// Regressions from the robustness sweep of 2026-12-07: each of these panicked, hung, exited
/// with the wrong code, or gave a result that could not be trusted (NaN, inf, a false pass).
#[test]
fn robustness_sweep_no_panics_hangs_or_false_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 300;
    let u = gaussian(61, n);
    let e = gaussian(62, n);
    let y = simulate(
        &[-0.5],
        &[vec![1.0, 0.5]],
        &[1],
        std::slice::from_ref(&u),
        &e,
    );
    let data = write_trace(&dir, "d.csv", &[("u", &u), ("y", &y)]);
    let huge: Vec<f64> = u.iter().map(|v| v * 1e200).collect();
    let big = write_trace(&dir, "big.csv", &[("u", &huge), ("y", &y)]);
    let tiny: Vec<f64> = u.iter().map(|v| v * 1e-300).collect();
    let small = write_trace(&dir, "small.csv", &[("u", &tiny), ("y", &y)]);
    let flat = vec![2.0; n];
    let constant = write_trace(&dir, "c.csv", &[("u", &u), ("y", &flat)]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmmon"))
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let model = dir.path().join("m.json");
    let m = model.to_str().expect("utf-8");
    let (code, _, err) = run(&[
        "fit", &data, "-u", "u", "-y", "y", "--poles", "1", "--zeros", "2", "--delay", "1", "-o", m,
    ]);
    assert_eq!(code, 0, "{err}");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        // Values whose squares overflow or underflow: fit panicked in the SVD, FIR least
        // squares spun for ever, xcorr wrote NaN with exit 0.
        (arx1("fit", &big, &[]), 1, "column u reaches"),
        (
            vec![
                "impulse", &big, "-u", "u", "-y", "y", "-M", "2", "--method", "fir",
            ],
            1,
            "overflow when squared and summed",
        ),
        (
            vec!["xcorr", &big, "-u", "u", "--auto", "-L", "2"],
            1,
            "column u reaches",
        ),
        (
            vec!["xcorr", &small, "-u", "u", "-y", "y", "-L", "2"],
            1,
            "underflow when squared",
        ),
        // Orders and grids out of range are usage errors, before any work.
        (
            vec![
                "order",
                &data,
                "-u",
                "u",
                "-y",
                "y",
                "--poles",
                "0..18446744073709551615",
                "--zeros",
                "1",
                "--delay",
                "0",
            ],
            2,
            "--poles 18446744073709551615: orders above 1000 are not estimated",
        ),
        (
            vec![
                "order", &data, "-u", "u", "-y", "y", "--poles", "0..1000", "--zeros", "1..1000",
                "--delay", "0..10",
            ],
            2,
            "at most 100000 are searched at once",
        ),
        (
            vec![
                "order", &data, "-u", "y", "-y", "y", "--poles", "1", "--zeros", "1", "--delay",
                "1",
            ],
            2,
            "y is both an input and the output",
        ),
        (
            vec![
                "order", &data, "-u", "u,u", "-y", "y", "--poles", "1", "--zeros", "1", "--delay",
                "1",
            ],
            2,
            "input column u is given twice",
        ),
        (
            arx1("order", &data, &["--criterion", "val"]),
            2,
            "--criterion val ranks on validation data",
        ),
        (
            arx1("order", &constant, &[]),
            1,
            "column y is constant over the rows searched",
        ),
        (
            vec!["impulse", &data, "-u", "u,", "-y", "y"],
            2,
            "a column name is empty",
        ),
        // FIR gave all-zero responses with zero-width bounds for a constant output.
        (
            vec![
                "impulse", &constant, "-u", "u", "-y", "y", "-M", "3", "--method", "fir",
            ],
            1,
            "column y is constant",
        ),
    ];
    for (args, want, msg) in &cases {
        let (code, _, err) = run(args);
        assert_eq!(code, *want, "{args:?}: {err}");
        assert!(
            err.contains(msg) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }

    // A horizon beyond the data is said to be capped.
    let (code, _, err) = run(&["validate", m, &data, "--horizon", "100000"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--horizon 100000 is beyond the"), "{err}");

    // A bad --validate is refused before the model is printed.
    let (code, out, err) = run(&arx1("fit", &data, &["--validate", "100%:"]));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");

    // A model file's stability is recomputed from its coefficients: an edited, unstable A
    // that still says "stable": true is warned about, and its diverging simulation leaves
    // empty cells instead of inf, which no CSV reader of this project accepts.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).expect("model")).expect("json");
    json["a"] = serde_json::json!([-3.0]);
    json["stable"] = serde_json::json!(true);
    let edited = dir.path().join("unstable.json");
    std::fs::write(&edited, json.to_string()).expect("write");
    let ed = edited.to_str().expect("utf-8");
    let long_u = gaussian(63, 2000);
    let long = write_trace(
        &dir,
        "long.csv",
        &[("u", &long_u), ("y", &gaussian(64, 2000))],
    );
    let (code, out, err) = run(&["reconstruct", ed, &long]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the model is unstable"), "{err}");
    assert!(err.contains("simulated values overflowed"), "{err}");
    assert!(
        !out.contains("inf") && !out.contains("NaN"),
        "non-finite cells written"
    );
    // Validation of it never passes, and says why.
    let (code, _, err) = run(&["validate", ed, &long]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the model is unstable"), "{err}");
    assert!(
        err.contains("verdict: FAIL: the model's output overflows"),
        "{err}"
    );

    // A model file with a byte-order mark loads; a "format" that is not a whole number is
    // named as such (it was called missing).
    let bom = dir.path().join("bom.json");
    std::fs::write(
        &bom,
        format!(
            "\u{feff}{}",
            std::fs::read_to_string(&model).expect("model")
        ),
    )
    .expect("write");
    let (code, _, err) = run(&["reconstruct", bom.to_str().expect("utf-8"), &data]);
    assert_eq!(code, 0, "{err}");
    let mut odd = json.clone();
    odd["format"] = serde_json::json!("1");
    let oddf = dir.path().join("odd.json");
    std::fs::write(&oddf, odd.to_string()).expect("write");
    let (code, _, err) = run(&["reconstruct", oddf.to_str().expect("utf-8"), &data]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("\"format\": \"1\" is not a model format"),
        "{err}"
    );

    // A model with no inputs is refused on loading (validate indexed past its inputs).
    json["a"] = serde_json::json!([-0.5]);
    for k in ["inputs", "b", "b_sd"] {
        json[k] = serde_json::json!([]);
    }
    json["orders"]["nb"] = serde_json::json!([]);
    json["orders"]["nk"] = serde_json::json!([]);
    json["offsets"]["inputs"] = serde_json::json!([]);
    let noin = dir.path().join("noin.json");
    std::fs::write(&noin, json.to_string()).expect("write");
    let (code, _, err) = run(&["validate", noin.to_str().expect("utf-8"), &data]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no inputs: a model needs at least one"),
        "{err}"
    );

    // A trace shorter than the model's start reconstructs nothing: an error, not a column
    // of empty cells with exit 0.
    let short = write_trace(&dir, "short.csv", &[("u", &u[..2]), ("y", &y[..2])]);
    let (code, _, err) = run(&["reconstruct", m, &short]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no row can be reconstructed"), "{err}");

    // Duplicate column names: which one is meant cannot be told.
    let dup = dir.path().join("dup.csv");
    std::fs::write(&dup, "time,u,u,y\n1,1,2,3\n2,2,3,4\n3,5,1,2\n").expect("write");
    let (code, _, err) = run(&["xcorr", dup.to_str().expect("utf-8"), "-u", "u", "-y", "y"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("column u appears 2 times in the header (columns 2, 3)"),
        "{err}"
    );
    // An empty file says so.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").expect("write");
    let (code, _, err) = run(&[
        "xcorr",
        empty.to_str().expect("utf-8"),
        "-u",
        "u",
        "-y",
        "y",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the file is empty"), "{err}");

    // topo: two directions summing past f64 indexed out of bounds.
    let m2 = dir.path().join("m2.csv");
    std::fs::write(&m2, "src\\dst,a,b\na,0,1e308\nb,1e308,0\n").expect("write");
    let (code, _, err) = run(&["topo", m2.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sum past the largest number"), "{err}");

    // plot: a y range near the largest f64 made plotters loop for ever.
    let wide = dir.path().join("wide.csv");
    std::fs::write(&wide, "time,u\n1,1e308\n2,-1e308\n").expect("write");
    let svg = dir.path().join("wide.svg");
    let (code, _, err) = run(&[
        "plot",
        wide.to_str().expect("utf-8"),
        "-o",
        svg.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("too close to the largest number"), "{err}");
}
