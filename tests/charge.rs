//! `vmmon charge` against independent oracles: numpy/scipy figures for a simulated host
//! (testdata/charge, made by make_refs.py there) for every split and for `--calibrate`,
//! scipy's NNLS on its own problems, closed forms checked by hand, a simulated system whose
//! costs are known, properties of the split for arbitrary inputs; and every error a user can
//! cause, with its message and exit code.

use proptest::prelude::*;
use serde_json::Value;
use vmmon::charge::{self, By, Feature, HostTrace, Options, PoolPart, VmSeries, nnls};

use crate::util::{gaussian, vmmon, write_file};

fn data(file: &str) -> String {
    format!("{}/testdata/charge/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> Value {
    let text = std::fs::read_to_string(data("host3_ref.json")).expect("host3_ref.json");
    serde_json::from_str(&text).expect("reference JSON")
}

fn run_ok(args: &[&str]) -> (String, String) {
    let out = vmmon().args(args).output().expect("run vmmon");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_err(args: &[&str]) -> (i32, String) {
    let out = vmmon().args(args).output().expect("run vmmon");
    assert!(!out.status.success(), "{args:?} should fail");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One row of the per-interval CSV.
#[derive(Debug)]
struct Row {
    time: String,
    vm: String,
    /// vcpu, emulator, vhost, shared, charged, share; NaN for an empty cell.
    v: [f64; 6],
}

fn long_rows(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time,vm,vcpu_cpu_s,emulator_cpu_s,vhost_cpu_s,shared_cpu_s,charged_cpu_s,share")
    );
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 8, "{l}");
            let mut v = [0.0; 6];
            for k in 0..6 {
                v[k] = if c[k + 2].is_empty() {
                    f64::NAN
                } else {
                    c[k + 2].parse().expect("number")
                };
            }
            Row {
                time: c[0].to_string(),
                vm: c[1].to_string(),
                v,
            }
        })
        .collect()
}

/// Largest absolute and relative differences seen, for the report of a comparison.
#[derive(Debug, Default)]
struct Worst {
    abs: f64,
    rel: f64,
}

impl Worst {
    /// Checks |got − want| ≤ tol · max(|want|, floor) (NaN only against NaN).
    fn check(&mut self, what: &str, got: f64, want: f64, tol: f64, floor: f64) {
        if want.is_nan() {
            assert!(got.is_nan(), "{what}: vmmon {got}, reference empty");
            return;
        }
        let d = (got - want).abs();
        assert!(
            d <= tol * want.abs().max(floor),
            "{what}: vmmon {got} vs reference {want} (difference {d:e})"
        );
        self.abs = self.abs.max(d);
        if want != 0.0 {
            self.rel = self.rel.max(d / want.abs());
        }
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Compares `vmmon charge host3.csv ARGS` with the reference figures of `method`.
fn against_reference(method: &str, args: &[&str], tol: f64) -> Worst {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = dir.path().join("s.csv");
    let json = dir.path().join("s.json");
    let trace = data("host3.csv");
    let mut all = vec!["charge", trace.as_str()];
    all.extend_from_slice(args);
    let (s, j) = (
        summary.to_str().expect("path"),
        json.to_str().expect("path"),
    );
    all.extend_from_slice(&["--summary", s, "--json", j]);
    let (out, _) = run_ok(&all);
    let rows = long_rows(&out);
    let r = reference();
    let m = &r[method];
    let vms: Vec<&str> = r["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    let times = r["time"].as_array().expect("times");
    let per = vms.len() + 1;
    assert_eq!(rows.len(), times.len() * per);
    let pool_scale = 1.0; // CPU-seconds: a floor of 1 CPU-s × tol for values near 0
    let mut worst = Worst::default();
    for (t, chunk) in rows.chunks(per).enumerate() {
        for (i, row) in chunk.iter().enumerate() {
            assert_eq!(row.time, times[t].as_str().expect("time"));
            let at = format!("{method} interval {t} {}", row.vm);
            if i < vms.len() {
                assert_eq!(row.vm, vms[i]);
                let shared = num(&m["shared_cpu_s"][t][i]);
                worst.check(&format!("{at} shared"), row.v[3], shared, tol, pool_scale);
                worst.check(
                    &format!("{at} charged"),
                    row.v[4],
                    num(&m["charged_cpu_s"][t][i]),
                    tol,
                    pool_scale,
                );
                worst.check(
                    &format!("{at} share"),
                    row.v[5],
                    num(&m["share"][t][i]),
                    tol,
                    1.0,
                );
            } else {
                assert_eq!(row.vm, "(unattributed)");
                worst.check(
                    &format!("{at} unattributed"),
                    row.v[3],
                    num(&m["unattributed_cpu_s"][t]),
                    tol,
                    pool_scale,
                );
            }
        }
    }
    // The summary CSV and the JSON hold the same figures.
    let text = std::fs::read_to_string(&summary).expect("summary written");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("json");
    let want = m["summary"].as_array().expect("summary");
    let mut n = 0;
    for (k, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], want[k]["vm"].as_str().expect("vm"));
        for (h, c) in head.iter().zip(&cells).skip(1) {
            let Some(w) = want[k].get(*h) else {
                continue;
            };
            let got: f64 = c.parse().expect("a number where the reference has one");
            worst.check(
                &format!("{method} summary {} {h}", cells[0]),
                got,
                num(w),
                tol,
                0.0,
            );
            // serde_json's default float parser may be an ulp off: compare to 2 ulps.
            let in_json = num(&report["summary"][k][*h]);
            assert!(
                (in_json - got).abs() <= 4.5e-16 * got.abs(),
                "{h}: JSON {in_json} and CSV {got} differ"
            );
        }
        n += 1;
    }
    assert_eq!(n, want.len());
    worst.check(
        &format!("{method} pool"),
        num(&report["pool_cpu_s"]),
        num(&m["pool_cpu_s"]),
        tol,
        0.0,
    );
    worst.check(
        &format!("{method} busy"),
        num(&report["busy_cpu_s"]),
        num(&m["busy_cpu_s"]),
        tol,
        0.0,
    );
    worst
}

#[test]
fn proportional_splits_match_numpy() {
    for method in ["packets", "bytes", "disk", "mixed"] {
        let w = against_reference(method, &["--by", method], 1e-12);
        eprintln!(
            "--by {method}: max abs difference {:e} (any unit), max rel {:e}",
            w.abs, w.rel
        );
    }
}

#[test]
fn calibration_matches_scipy_nnls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("c.json");
    let j = json.to_str().expect("path");
    run_ok(&[
        "charge",
        &data("host3.csv"),
        "--calibrate",
        "--json",
        j,
        "-o",
        "/dev/null",
    ]);
    let got: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("json");
    let c = &got["calibration"];
    let r = reference();
    let want = &r["calibration"];
    let mut worst = Worst::default();
    let beta = want["beta"].as_array().expect("beta");
    worst.check(
        "base",
        num(&c["base_cpu_s_per_s"]),
        num(&beta[0]),
        1e-9,
        0.0,
    );
    for (k, f) in c["features"]
        .as_array()
        .expect("features")
        .iter()
        .enumerate()
    {
        let name = f["feature"].as_str().expect("name");
        worst.check(name, num(&f["beta"]), num(&beta[k + 1]), 1e-9, 0.0);
    }
    eprintln!(
        "calibrated β against scipy.optimize.nnls: max abs {:e}, max rel {:e}",
        worst.abs, worst.rel
    );
    // The simulated host's network bytes cost nothing; the unconstrained fit makes that
    // cost negative, and the constraint holds it at zero.
    assert!(num(&want["unconstrained_beta"][2]) < 0.0);
    assert_eq!(c["features"][1]["status"], "at_zero");
    assert_eq!(c["at_zero"], serde_json::json!(["bytes"]));
    assert_eq!(c["features"][0]["beta_unit"], "CPU-s per packet");
    assert_eq!(c["features"][2]["cost_unit"], "CPU-s per MB");
    for key in [
        "r2",
        "fit_pct",
        "residual_rms_cpu_s",
        "residual_rms_pct",
        "base_share_pct",
    ] {
        worst.check(key, num(&c[key]), num(&want[key]), 1e-9, 0.0);
    }
    worst.check(
        "condition",
        num(&c["condition"]),
        num(&want["condition"]),
        1e-9,
        0.0,
    );
    assert_eq!(c["intervals_used"], want["intervals_used"]);
    assert_eq!(c["intervals_skipped"], want["intervals_skipped"]);
    // The attribution with the fitted costs (β from vmmon, differing from scipy's by the
    // figures above, hence the looser tolerance).
    let w = against_reference("calibrated", &["--calibrate"], 1e-8);
    eprintln!(
        "--calibrate charges: max abs difference {:e} (any unit), max rel {:e}",
        w.abs, w.rel
    );
}

#[test]
fn nnls_matches_scipy_on_its_own_problems() {
    let text = std::fs::read_to_string(data("nnls_cases.json")).expect("nnls_cases.json");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("json");
    let (mut worst_abs, mut worst_rel) = (0.0f64, 0.0f64);
    for (k, c) in cases.iter().enumerate() {
        let (m, n) = (
            c["m"].as_u64().expect("m") as usize,
            c["n"].as_u64().expect("n") as usize,
        );
        let vals =
            |key: &str| -> Vec<f64> { c[key].as_array().expect(key).iter().map(num).collect() };
        let a = nalgebra::DMatrix::from_row_slice(m, n, &vals("a"));
        let b = nalgebra::DVector::from_vec(vals("b"));
        let s = nnls::nnls(&a, &b).expect("solved");
        let want = vals("x");
        // The same active set, and the same coefficients to what the passive columns'
        // condition number κ allows (one case has κ ≈ 2e9 on purpose: there two correct
        // solvers differ by κ·ε ≈ 1e-7).
        let passive: Vec<usize> = (0..n).filter(|&j| want[j] > 0.0).collect();
        let sv = a.select_columns(&passive).svd(false, false).singular_values;
        let kappa = sv.max() / sv.min();
        let tol = (10.0 * kappa * f64::EPSILON).max(1e-12);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut case_rel = 0.0f64;
        for (j, (&got, &w)) in s.x.iter().zip(&want).enumerate() {
            assert_eq!(got == 0.0, w == 0.0, "case {k} x[{j}]: {got} vs {w}");
            let d = (got - w).abs();
            assert!(
                d <= tol * scale,
                "case {k} (κ {kappa:e}) x[{j}]: {got} vs scipy {w}"
            );
            worst_abs = worst_abs.max(d / scale);
            if w != 0.0 {
                case_rel = case_rel.max(d / w.abs());
            }
        }
        worst_rel = worst_rel.max(case_rel);
        eprintln!(
            "NNLS case {k} ({m}×{n}, {} at zero, κ {kappa:.3e}): max |Δx|/|x| {case_rel:.3e}",
            n - passive.len()
        );
        let rn = num(&c["rnorm"]);
        assert!(
            (s.residual_norm - rn).abs() <= 1e-12 * rn,
            "case {k}: residual {} vs scipy {rn}",
            s.residual_norm
        );
        // vmmon's residual is never larger than scipy's (both are optima).
        assert!(s.residual_norm <= rn * (1.0 + 1e-13));
    }
    eprintln!(
        "NNLS vs scipy on {} problems: max |Δx|/max|x| {worst_abs:e}, max relative {worst_rel:e}",
        cases.len()
    );
}

/// The small trace of the hand-checked cases: two VMs, three 2-second intervals.
///
/// | row | pool (soft+ksoft+io) | a: pkts rx/tx, bytes, disk | b: pkts rx/tx, bytes, disk |
/// | 1   | 10 + 5 + 5 = 20 %    | 200/100, 1000, 4000        | 50/50, 1000, 0             |
/// | 2   | 10 % (softirq only)  | nothing                    | nothing                    |
/// | 3   | 30 %                 | nothing, vCPU cell empty   | 10/0, 500, 0               |
const SMALL: &str = "\
time,elapsed,busy_cpu_pct,pool_softirq_cpu_pct,pool_ksoftirqd_cpu_pct,pool_iothreads_cpu_pct,\
a.vcpu_cpu_pct,a.emulator_cpu_pct,a.vhost_cpu_pct,a.net_guest_rx_packets_per_s,\
a.net_guest_tx_packets_per_s,a.net_guest_rx_bytes_per_s,a.net_guest_tx_bytes_per_s,\
a.disk_read_bytes_per_s,a.disk_write_bytes_per_s,\
b.vcpu_cpu_pct,b.emulator_cpu_pct,b.vhost_cpu_pct,b.net_guest_rx_packets_per_s,\
b.net_guest_tx_packets_per_s,b.net_guest_rx_bytes_per_s,b.net_guest_tx_bytes_per_s,\
b.disk_read_bytes_per_s,b.disk_write_bytes_per_s
100.5,2,200,10,5,5,50,10,5,200,100,600,400,4000,0,25,0,0,50,50,500,500,0,0
102.5,4,100,10,0,0,50,10,5,0,0,0,0,0,0,25,0,0,0,0,0,0,0,0
104.5,6,150,20,5,5,,10,5,0,0,0,0,0,0,25,0,0,10,0,500,0,0,0
";

fn rows_of(args: &[&str]) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_file(&dir, "small.csv", SMALL);
    let mut all = vec!["charge", f.as_str()];
    all.extend_from_slice(args);
    long_rows(&run_ok(&all).0)
}

fn near(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-15 * want.abs().max(1.0)
}

#[test]
fn proportional_split_by_hand() {
    let rows = rows_of(&["--by", "packets"]);
    assert_eq!(rows.len(), 9);
    // Row 1: dt = 2 s (the median of 2, 2 for the first row), pool 20 % × 2 s = 0.4 CPU-s;
    // packets a 300/s, b 100/s: shares ¾ and ¼, so a 0.3 and b 0.1 CPU-s. a's own CPU:
    // 50 %, 10 %, 5 % of 2 s = 1, 0.2, 0.1; charged 1.6. b: 0.5 + 0.1 = 0.6.
    let want = [
        ("a", [1.0, 0.2, 0.1, 0.3, 1.6, 0.75]),
        ("b", [0.5, 0.0, 0.0, 0.1, 0.6, 0.25]),
        ("(unattributed)", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        // Row 2: nobody sent a packet; the pool, 10 % of 2 s, is unattributed.
        ("a", [1.0, 0.2, 0.1, 0.0, 1.3, 0.0]),
        ("b", [0.5, 0.0, 0.0, 0.0, 0.5, 0.0]),
        ("(unattributed)", [0.0, 0.0, 0.0, 0.2, 0.2, 1.0]),
        // Row 3: only b sent packets: all of 30 % of 2 s is b's; a's vCPU is unknown and
        // charges nothing.
        ("a", [f64::NAN, 0.2, 0.1, 0.0, 0.3, 0.0]),
        ("b", [0.5, 0.0, 0.0, 0.6, 1.1, 1.0]),
        ("(unattributed)", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ];
    for (row, (vm, v)) in rows.iter().zip(want) {
        assert_eq!(row.vm, vm);
        for (k, (&got, &w)) in row.v.iter().zip(&v).enumerate() {
            assert!(
                (w.is_nan() && got.is_nan()) || near(got, w),
                "{} {vm} column {k}: {got} vs {w}",
                row.time
            );
        }
    }
    assert_eq!(rows[0].time, "100.5");
    // Bytes: row 1 has 1000 B/s each: half each, 0.2 CPU-s. Disk: a alone, all 0.4.
    // Mixed: network = mean(packets ¾/¼, bytes ½/½) = ⅝/⅜; disk = 1/0; mixed = 13/16, 3/16
    // of 0.4 = 0.325 and 0.075.
    for (by, a, b) in [
        ("bytes", 0.2, 0.2),
        ("disk", 0.4, 0.0),
        ("mixed", 0.325, 0.075),
    ] {
        let r = rows_of(&["--by", by]);
        assert!(
            near(r[0].v[3], a) && near(r[1].v[3], b),
            "{by}: {:?}",
            &r[..2]
        );
    }
    // --pool softirq: row 1's pool is 10 % × 2 s = 0.2 CPU-s.
    let r = rows_of(&["--pool", "softirq"]);
    assert!(
        near(r[0].v[3], 0.15) && near(r[1].v[3], 0.05),
        "{:?}",
        &r[..2]
    );
}

#[test]
fn summary_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_file(&dir, "small.csv", SMALL);
    let s = dir.path().join("s.csv");
    run_ok(&[
        "charge",
        &f,
        "--summary",
        s.to_str().expect("path"),
        "-o",
        "/dev/null",
    ]);
    let text = std::fs::read_to_string(&s).expect("summary");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "vm,vcpu_cpu_s,emulator_cpu_s,vhost_cpu_s,shared_cpu_s,charged_cpu_s,busy_share_pct,\
         net_mb,disk_mb,mb_moved,packets,overhead_cpu_s,overhead_cpu_s_per_mb,\
         overhead_cpu_s_per_1000_packets,empty_cells"
    );
    let cells = |k: usize| -> Vec<f64> {
        lines[k]
            .split(',')
            .skip(1)
            .map(|c| c.parse().unwrap_or(f64::NAN))
            .collect()
    };
    // a: vCPU 1 + 1 (row 3 unknown) = 2; emulator 0.6; vhost 0.3; shared 0.3; charged 3.2.
    // Busy: (200 + 100 + 150) % × 2 s = 9 CPU-s, so a's share is 3.2/9. Moved: 2000 B/s
    // × 2 s = 4000 B network... a's network bytes: 1000 B/s in row 1 only = 2000 B; disk
    // 4000 B/s × 2 s = 8000 B: 0.002 + 0.008 = 0.01 MB. Packets 300/s × 2 s = 600.
    // Overhead 0.6 + 0.3 + 0.3 = 1.2: 120 CPU-s per MB, 2 CPU-s per 1000 packets.
    let a = cells(1);
    let want_a = [
        2.0,
        0.6000000000000001,
        0.30000000000000004,
        0.3,
        3.2,
        3.2 / 9.0 * 100.0,
        0.002,
        0.008,
        0.01,
        600.0,
        1.2,
        120.0,
        2.0,
        1.0,
    ];
    for (k, (g, w)) in a.iter().zip(want_a).enumerate() {
        assert!(
            (g - w).abs() <= 1e-14 * w.abs().max(1.0),
            "a column {k}: {g} vs {w}"
        );
    }
    assert!(lines[3].starts_with("(unattributed),0,0,0,0.2,0.2,"));
    assert!(lines[4].starts_with("total,"));
    // Everything charged adds up: a 3.2, b 0.6 + 0.5 + 1.1 = 2.2, unattributed 0.2.
    let total = cells(4);
    assert!((total[4] - 5.6).abs() < 1e-14, "{total:?}");
}

#[test]
fn an_aligned_trace_and_stdin_give_the_same_charges() {
    // After `vmmon align host=…` every column carries the source's prefix, and there is no
    // elapsed column: VMs become host.vm1 and intervals come from the time column.
    let text = std::fs::read_to_string(data("host3.csv")).expect("trace");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let keep: Vec<usize> = (0..head.len()).filter(|&i| head[i] != "elapsed").collect();
    let mut aligned = keep
        .iter()
        .map(|&i| {
            if head[i] == "time" {
                "time".to_string()
            } else {
                format!("host.{}", head[i])
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    aligned.push('\n');
    for l in lines {
        let c: Vec<&str> = l.split(',').collect();
        aligned += &keep.iter().map(|&i| c[i]).collect::<Vec<_>>().join(",");
        aligned.push('\n');
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_file(&dir, "aligned.csv", &aligned);
    let (out, err) = run_ok(&["charge", &f, "--by", "mixed"]);
    assert!(err.contains("no 'elapsed' column"), "{err}");
    let got = long_rows(&out);
    let want = long_rows(&run_ok(&["charge", &data("host3.csv"), "--by", "mixed"]).0);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        let name = if w.vm == "(unattributed)" {
            w.vm.clone()
        } else {
            format!("host.{}", w.vm)
        };
        assert_eq!(g.vm, name);
        for k in 0..6 {
            // time and elapsed are each rounded to the microsecond, independently: the
            // interval lengths from the two differ by up to 2 µs in 1 s.
            assert!(
                (g.v[k].is_nan() && w.v[k].is_nan())
                    || (g.v[k] - w.v[k]).abs() <= 4e-6 * w.v[k].abs().max(1e-3),
                "{} {}: {} vs {}",
                g.time,
                g.vm,
                g.v[k],
                w.v[k]
            );
        }
    }
    // Standard input reads the same as the file.
    let mut child = vmmon()
        .args(["charge", "-", "--by", "mixed"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let from_stdin = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        from_stdin,
        run_ok(&["charge", &data("host3.csv"), "--by", "mixed"]).0
    );
}

/// A uniform number in [0, 1) from the deterministic normal samples (Φ by erf-free means:
/// the fractional part of a scaled |z| is uniform enough for traffic patterns).
fn uniform(seed: u64, n: usize) -> Vec<f64> {
    gaussian(seed, n)
        .iter()
        .map(|z| (z.abs() * 1e4).fract())
        .collect()
}

#[test]
fn calibrate_recovers_a_simulated_host() {
    // pool = 2 % base + 6 µs per packet + 0 per network byte + 1 ms per disk MB, noise
    // 0.3 % of a CPU; 600 one-second intervals, three VMs with independent traffic.
    let n = 600;
    let (base, bp, bd) = (0.02, 6e-6, 1e-9);
    let mut trace = HostTrace {
        label: "simulated".into(),
        time: (0..n).map(|t| t.to_string()).collect(),
        dt: vec![1.0; n],
        ..HostTrace::default()
    };
    let mut true_cost = [0.0; 3];
    let mut pool = vec![base * 100.0; n];
    for (k, name) in ["a", "b", "c"].iter().enumerate() {
        let mut vm = VmSeries::zeros(name, n);
        let (u1, u2, u3) = (
            uniform(10 + k as u64, n),
            uniform(20 + k as u64, n),
            uniform(30 + k as u64, n),
        );
        for t in 0..n {
            let pps = [15000.0, 2000.0, 8000.0][k] * u1[t];
            let size = 100.0 + 1400.0 * u2[t];
            let disk = [2e6, 80e6, 10e6][k] * u3[t];
            vm.rx_packets[t] = pps / 2.0;
            vm.tx_packets[t] = pps / 2.0;
            vm.rx_bytes[t] = pps * size / 2.0;
            vm.tx_bytes[t] = pps * size / 2.0;
            vm.disk_read_bytes[t] = disk;
            let cost = bp * pps + bd * disk;
            true_cost[k] += cost;
            pool[t] += cost * 100.0;
        }
        trace.vms.push(vm);
    }
    let noise = gaussian(99, n);
    for (p, e) in pool.iter_mut().zip(noise) {
        *p = (*p + 0.3 * e).max(0.0);
    }
    trace.pool.push((PoolPart::Softirq, pool));
    let opts = Options {
        calibrate: true,
        ..Options::default()
    };
    let report = charge::charge(&trace, &opts).expect("calibrated");
    let c = report.calibration.as_ref().expect("calibration");
    let rel = |got: f64, want: f64| (got - want).abs() / want;
    assert!(
        rel(c.base_cpu_s_per_s, base) < 0.05,
        "base {}",
        c.base_cpu_s_per_s
    );
    assert!(rel(c.beta(Feature::Packets), bp) < 0.02, "{c:?}");
    assert!(rel(c.beta(Feature::Disk), bd) < 0.02, "{c:?}");
    // Network bytes cost nothing: whatever is fitted is below 1 % of the packets' cost.
    let bytes_cost = c.beta(Feature::Bytes) * c.features[1].total;
    assert!(bytes_cost < 0.01 * bp * c.features[0].total, "{c:?}");
    assert!(c.r2 > 0.99, "{c:?}");
    // Each VM's shared charge is its true I/O cost (the noise is split too: 1 %).
    for (k, t) in report.summary.iter().take(3).enumerate() {
        assert!(
            rel(t.shared_cpu_s, true_cost[k]) < 0.01,
            "{}: {} vs true {}",
            t.vm,
            t.shared_cpu_s,
            true_cost[k]
        );
    }
    // The base overhead stays unattributed: 2 % of 600 s = 12 CPU-s.
    assert!(rel(report.summary[3].shared_cpu_s, 12.0) < 0.05);
}

/// Any finite non-negative value, often exactly 0, sometimes (with `empty`) an empty cell.
fn cell(empty: u32) -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => Just(0.0),
        5 => 0.0f64..1e9,
        1 => 0.0f64..1e-6,
        empty => Just(f64::NAN),
    ]
}

/// A trace of 1–4 VMs over `rows` intervals of arbitrary lengths; empty cells with weight
/// `empty` (of 9 + `empty`).
fn arbitrary_trace(rows: std::ops::Range<usize>, empty: u32) -> impl Strategy<Value = HostTrace> {
    (1usize..5, rows).prop_flat_map(move |(nvm, n)| {
        (
            proptest::collection::vec(0.001f64..100.0, n),
            proptest::collection::vec(proptest::collection::vec(cell(empty), 9 * n), nvm),
            proptest::collection::vec(proptest::collection::vec(cell(empty), n), 3),
        )
            .prop_map(move |(dt, vms, pool)| {
                let mut trace = HostTrace {
                    label: "arbitrary".into(),
                    time: (0..n).map(|t| t.to_string()).collect(),
                    dt,
                    ..HostTrace::default()
                };
                for (k, cells) in vms.iter().enumerate() {
                    let mut vm = VmSeries::zeros(&format!("vm{k}"), n);
                    let cols = [
                        &mut vm.vcpu_pct,
                        &mut vm.emulator_pct,
                        &mut vm.vhost_pct,
                        &mut vm.rx_packets,
                        &mut vm.tx_packets,
                        &mut vm.rx_bytes,
                        &mut vm.tx_bytes,
                        &mut vm.disk_read_bytes,
                        &mut vm.disk_write_bytes,
                    ];
                    for (j, col) in cols.into_iter().enumerate() {
                        col.copy_from_slice(&cells[j * n..(j + 1) * n]);
                    }
                    trace.vms.push(vm);
                }
                trace.pool = PoolPart::ALL.into_iter().zip(pool).collect();
                trace
            })
    })
}

/// Whether VM `vm` did any of the I/O `features` in interval `t` (empty cells are 0).
fn did_io(trace: &HostTrace, vm: usize, t: usize, features: &[Feature]) -> bool {
    features.iter().any(|f| {
        f.series(&trace.vms[vm])
            .iter()
            .any(|s| s[t] > 0.0 && !s[t].is_nan())
    })
}

/// The properties every report holds: per interval the charges sum to the pool to 1e-12
/// relative (a handful of roundings per VM), every charge is ≥ 0, and a VM that did none of
/// the I/O `features` gets nothing; the summary's shared total is the pool.
fn check_report(
    trace: &HostTrace,
    report: &charge::Report,
    features: &[Feature],
) -> Result<(), TestCaseError> {
    for (t, row) in report.rows.iter().enumerate() {
        let sum: f64 = row.vms.iter().map(|c| c.shared_s).sum::<f64>() + row.unattributed_s;
        prop_assert!(
            (sum - row.pool_s).abs() <= 1e-12 * row.pool_s,
            "interval {t}: charges {sum} vs pool {}",
            row.pool_s
        );
        prop_assert!(row.unattributed_s >= 0.0);
        let shares: f64 = row.vms.iter().map(|c| c.share).sum::<f64>() + row.unattributed_share;
        prop_assert!((shares - 1.0).abs() <= 1e-12, "shares sum to {shares}");
        for (i, c) in row.vms.iter().enumerate() {
            prop_assert!(c.shared_s >= 0.0 && c.share >= 0.0);
            prop_assert!(c.charged_s() >= 0.0);
            if !did_io(trace, i, t, features) {
                prop_assert_eq!(c.shared_s, 0.0);
                prop_assert_eq!(c.share, 0.0);
            }
        }
    }
    let total = report.summary.last().expect("total row");
    prop_assert!(
        (total.shared_cpu_s - report.pool_cpu_s).abs() <= 1e-12 * report.pool_cpu_s,
        "summary {} vs pool {}",
        total.shared_cpu_s,
        report.pool_cpu_s
    );
    Ok(())
}

proptest! {
    // Fixed seed: the same cases on every run (CI must not differ from a local run).
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn proportional_charges_sum_to_the_pool(trace in arbitrary_trace(1..24, 1)) {
        for (by, features) in [
            (By::Packets, &[Feature::Packets][..]),
            (By::Bytes, &[Feature::Bytes][..]),
            (By::Disk, &[Feature::Disk][..]),
            (By::Mixed, &Feature::ALL[..]),
        ] {
            let opts = Options { by, ..Options::default() };
            let report = charge::charge(&trace, &opts)
                .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            check_report(&trace, &report, features)?;
        }
    }

    /// The same with calibrated weights (no empty cells, enough rows to fit; a trace that
    /// cannot be fitted must say why).
    #[test]
    fn calibrated_charges_sum_to_the_pool(trace in arbitrary_trace(10..40, 0)) {
        let opts = Options { calibrate: true, ..Options::default() };
        match charge::charge(&trace, &opts) {
            Ok(report) => check_report(&trace, &report, &Feature::ALL)?,
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    msg.contains("nothing to calibrate") || msg.contains("is constant"),
                    "{msg}"
                );
            }
        }
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = data("host3.csv");
    let text = std::fs::read_to_string(&host).expect("trace");
    let head = text.lines().next().expect("header");
    let row = |k: usize| text.lines().nth(k).expect("row").to_string();

    let (code, err) = run_err(&["charge", "/nonexistent/host.csv"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot open trace /nonexistent/host.csv"),
        "{err}"
    );

    // A cell that is not a number: file, line and column, and the column's name.
    let bad = row(2).replacen(",", ",x", 2).replacen(",x", ",", 1);
    let f = write_file(&dir, "bad.csv", &format!("{head}\n{}\n{bad}\n", row(1)));
    let (code, err) = run_err(&["charge", &f]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv:3:3: 'x"), "{err}");
    assert!(
        err.contains("in column busy_cpu_pct is not a number"),
        "{err}"
    );
    let neg = format!(
        "{head}\n{}\n{}\n",
        row(1),
        row(2).replacen(",", ",-", 3).replacen(",-", ",", 2)
    );
    let f = write_file(&dir, "neg.csv", &neg);
    let (_, err) = run_err(&["charge", &f]);
    assert!(
        err.contains("neg.csv:3:4: -") && err.contains("is negative"),
        "{err}"
    );
    let f = write_file(&dir, "ragged.csv", &format!("{head}\n{}\n1,2,3\n", row(1)));
    let (code, err) = run_err(&["charge", &f]);
    assert_eq!(code, 1);
    assert!(
        err.contains("ragged.csv: CSV error: record 2 (line: 3"),
        "{err}"
    );
    let f = write_file(
        &dir,
        "back.csv",
        &format!("{head}\n{}\n{}\n", row(2), row(1)),
    );
    let (_, err) = run_err(&["charge", &f]);
    assert!(
        err.contains("back.csv:3: elapsed") && err.contains("does not increase"),
        "{err}"
    );
    let f = write_file(&dir, "one.csv", &format!("{head}\n{}\n", row(1)));
    let (_, err) = run_err(&["charge", &f]);
    assert!(
        err.contains("1 data row(s): at least two are needed"),
        "{err}"
    );

    // A host trace without --vms, and a raw one.
    let plain = format!(
        "{}/testdata/traces/host-5hz.csv",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, err) = run_err(&["charge", &plain]);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no per-VM columns (<vm>.vcpu_cpu_pct")
            && err.contains("record the host with vmmon record --vms"),
        "{err}"
    );
    let raw = write_file(
        &dir,
        "raw.csv",
        "time,elapsed,cpu_user_ticks_total,vm1.vcpu_cpu_ticks_total\n1,0,5,7\n2,1,6,8\n",
    );
    let (code, err) = run_err(&["charge", &raw]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is a raw trace (cumulative counters such as cpu_user_ticks_total")
            && err.contains("record without --raw"),
        "{err}"
    );
    // A VM missing a column; a trace with no pool.
    let f = write_file(
        &dir,
        "partial.csv",
        "time,elapsed,pool_softirq_cpu_pct,vm1.vcpu_cpu_pct\n1,1,0,5\n2,2,0,5\n",
    );
    let (code, err) = run_err(&["charge", &f]);
    assert_eq!(code, 2);
    assert!(
        err.contains("VM vm1 lacks column(s) vm1.emulator_cpu_pct, vm1.vhost_cpu_pct"),
        "{err}"
    );
    let nopool: String = SMALL
        .replace("pool_softirq_cpu_pct", "x1")
        .replace("pool_ksoftirqd_cpu_pct", "x2")
        .replace("pool_iothreads_cpu_pct", "x3");
    let f = write_file(&dir, "nopool.csv", &nopool);
    let (code, err) = run_err(&["charge", &f]);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no pool columns (pool_softirq_cpu_pct"),
        "{err}"
    );

    // Options.
    let (code, err) = run_err(&["charge", &host, "--by", "frames"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value 'frames' for '--by <BY>'")
            && err.contains("[possible values: packets, bytes, disk, mixed]"),
        "{err}"
    );
    let (code, err) = run_err(&["charge", &host, "--pool", "softirq,irq"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("invalid value 'irq' for '--pool <PARTS>'")
            && err.contains("[possible values: softirq, ksoftirqd, iothreads]"),
        "{err}"
    );
    let soft_only = SMALL
        .replace("pool_ksoftirqd_cpu_pct", "x2")
        .replace("pool_iothreads_cpu_pct", "x3");
    let f = write_file(&dir, "soft.csv", &soft_only);
    let (code, err) = run_err(&["charge", &f, "--pool", "softirq,iothreads"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "has no column pool_iothreads_cpu_pct for --pool iothreads; it has: \
                      pool_softirq_cpu_pct"
        ),
        "{err}"
    );
    let (code, err) = run_err(&["charge", &host, "--by", "disk", "--calibrate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("'--by <BY>' cannot be used with '--calibrate'"),
        "{err}"
    );
    let (code, err) = run_err(&["charge", &host, "--json", "-"]);
    assert_eq!(code, 2);
    assert!(err.contains("--json - need --out FILE"), "{err}");

    // Calibration that cannot work.
    let short: String = text.lines().take(7).map(|l| format!("{l}\n")).collect();
    let f = write_file(&dir, "short.csv", &short);
    let (code, err) = run_err(&["charge", &f, "--calibrate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--calibrate needs at least 10 intervals with every pool and I/O cell known; there are 6"),
        "{err}"
    );
    // SMALL repeated: too few again, then with more rows: no I/O, a constant one, no pool.
    let rows = |io: &dyn Fn(usize) -> String, pool: &str| -> String {
        let mut s = String::from(SMALL.lines().next().expect("header"));
        s.push('\n');
        for t in 0..12 {
            s += &format!(
                "{t},{t},100,{pool},0,0,50,10,5,{},25,0,0,0,0,0,0,0,0\n",
                io(t)
            );
        }
        s
    };
    let f = write_file(&dir, "quiet.csv", &rows(&|_| "0,0,0,0,0,0".into(), "10"));
    let (code, err) = run_err(&["charge", &f, "--calibrate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "no VM did any I/O in the intervals used (every <vm>.net_guest_rx_packets_per_s"
        ),
        "{err}"
    );
    let f = write_file(
        &dir,
        "flat.csv",
        &rows(&|t| format!("{},0,{},0,500,0", t * 10, t * 7000), "10"),
    );
    let (code, err) = run_err(&["charge", &f, "--calibrate"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the disk feature (<vm>.disk_read_bytes_per_s + <vm>.disk_write_bytes_per_s, summed over the VMs) is constant at 500 per second"),
        "{err}"
    );
    let f = write_file(
        &dir,
        "nopoolload.csv",
        &rows(&|t| format!("{t},0,{t},0,0,0"), "0"),
    );
    let (code, err) = run_err(&["charge", &f, "--calibrate"]);
    assert_eq!(code, 1);
    assert!(err.contains("the pool is zero in every interval"), "{err}");
}

#[test]
fn notes_and_the_table_on_stderr() {
    let (_, err) = run_ok(&["charge", &data("host3.csv"), "--calibrate"]);
    for want in [
        "the first row's interval is taken as the median interval",
        "18 empty vCPU/emulator/vhost cell(s): nothing charged for those parts",
        "37 empty I/O cell(s) counted as 0 (and their intervals left out of the fit)",
        "1 empty pool cell(s) counted as 0",
        "calibration (112 intervals, 8 skipped)",
        "bytes    0.000000e0 CPU-s per byte",
        "(at zero)",
        "(unattributed)",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

#[test]
fn outputs_go_where_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = data("host3.csv");
    let csv = dir.path().join("i.csv");
    let c = csv.to_str().expect("path");
    // The summary on standard output, the intervals in a file; `-o -` is standard output.
    let (out, _) = run_ok(&["charge", &host, "-o", c, "--summary", "-"]);
    assert!(out.starts_with("vm,vcpu_cpu_s,"), "{out}");
    assert_eq!(out.lines().count(), 1 + 3 + 2);
    let intervals = std::fs::read_to_string(&csv).expect("intervals written");
    assert_eq!(run_ok(&["charge", &host, "-o", "-"]).0, intervals);
    let (out, _) = run_ok(&["charge", &host, "--calibrate", "-o", c, "--json", "-"]);
    let v: Value = serde_json::from_str(&out).expect("JSON on standard output");
    assert_eq!(v["method"], "calibrated");
    assert_eq!(v["vms"], serde_json::json!(["vm1", "db_2", "web3"]));
    assert_eq!(v["empty_cells"]["web3.vcpu_cpu_pct"], 6);
    let (code, err) = run_err(&["charge", &host, "-o", c, "--json", "-", "--summary", "-"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("only one of --summary and --json can go to standard output"),
        "{err}"
    );
    // A reader that stops early does not keep the summary from being written.
    let summary = dir.path().join("s.csv");
    let mut child = vmmon()
        .args([
            "charge",
            &host,
            "--summary",
            summary.to_str().expect("path"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&summary)
            .expect("summary")
            .starts_with("vm,")
    );
}

/// host3.csv in the long layout of `vmmon record --vms --format long`: `time,vm,metric,value`,
/// host metrics (elapsed among them) with an empty vm, and no rows for a VM whose cells are
/// all empty (it is not running).
fn long_layout(wide: &str) -> String {
    let mut lines = wide.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let mut out = String::from("time,vm,metric,value\n");
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let running = |vm: &str| {
            head.iter()
                .zip(&cells)
                .any(|(h, c)| h.starts_with(&format!("{vm}.")) && !c.is_empty())
        };
        for (h, c) in head.iter().zip(&cells).skip(1) {
            let (vm, metric) = h.split_once('.').unwrap_or(("", h));
            if vm.is_empty() || running(vm) {
                out += &format!("{},{vm},{metric},{c}\n", cells[0]);
            }
        }
    }
    out
}

#[test]
fn the_long_layout_gives_the_same_charges() {
    let text = std::fs::read_to_string(data("host3.csv")).expect("trace");
    let long = long_layout(&text);
    // web3 exits for the last 6 of 120 rows.
    assert_eq!(long.matches(",web3,vcpu_cpu_pct,").count(), 114);
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write_file(&dir, "long.csv", &long);
    for args in [&["--by", "mixed"][..], &["--calibrate"][..]] {
        let mut a = vec!["charge", f.as_str()];
        a.extend_from_slice(args);
        let (got, _) = run_ok(&a);
        let host = data("host3.csv");
        let mut w = vec!["charge", host.as_str()];
        w.extend_from_slice(args);
        assert_eq!(got, run_ok(&w).0, "{args:?}");
    }
    // A raw trace in the long layout is refused as raw.
    let raw = write_file(
        &dir,
        "rawlong.csv",
        "time,vm,metric,value\n1,,elapsed,0\n1,vm1,vcpu_cpu_ns_total,5\n2,,elapsed,1\n",
    );
    let (code, err) = run_err(&["charge", &raw]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is a raw trace (cumulative counters such as vm1.vcpu_cpu_ns_total)"),
        "{err}"
    );
    // A bad value names its line and the value column.
    let bad = long.replacen(",vm1,vhost_cpu_pct,", ",vm1,vhost_cpu_pct,x", 1);
    let f = write_file(&dir, "badlong.csv", &bad);
    let (code, err) = run_err(&["charge", &f]);
    assert_eq!(code, 1);
    let line = bad
        .lines()
        .position(|l| l.contains(",vm1,vhost_cpu_pct,x"))
        .expect("the bad line")
        + 1;
    assert!(
        err.contains(&format!("badlong.csv:{line}:4: 'x"))
            && err.contains("in column vm1.vhost_cpu_pct is not a number"),
        "{err}"
    );
}
