//! `vmmon align` against closed forms and synthetic traces with known clock errors: lag
//! recovery to a tenth of a sample, conservation of rate integrals, interpolation of gauges
//! and totals, gaps, clock columns with drift, `--offset`, kinds, and every error a user can
//! cause, with its message and exit code.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::util::{vmmon, write_file};

/// Whole second all synthetic traces start near.
const T0: i64 = 1_795_400_000;

/// A trace: `time` (T0 + t, six decimals) and columns; `None` is an empty cell.
fn trace(header: &[&str], rows: &[(f64, Vec<Option<f64>>)]) -> String {
    let mut s = format!("time,{}\n", header.join(","));
    for (t, vals) in rows {
        s += &stamp(*t);
        for v in vals {
            s.push(',');
            if let Some(v) = v {
                s += &v.to_string();
            }
        }
        s.push('\n');
    }
    s
}

/// T0 + t as the recorder writes it (t rounded to the microsecond).
fn stamp(t: f64) -> String {
    let us = (t * 1e6).round() as i64;
    format!(
        "{}.{:06}",
        T0 + us.div_euclid(1_000_000),
        us.rem_euclid(1_000_000)
    )
}

/// Seconds since T0 of a time cell, exactly.
fn rel(cell: &str) -> f64 {
    let (i, f) = cell.split_once('.').unwrap_or((cell, "0"));
    (i.parse::<i64>().expect("seconds") - T0) as f64
        + format!("0.{f}").parse::<f64>().expect("frac")
}

/// An output CSV: times (relative) and columns by name (empty: NaN).
struct Table {
    time: Vec<f64>,
    cols: HashMap<String, Vec<f64>>,
    header: Vec<String>,
}

fn table(text: &str) -> Table {
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(String::from)
        .collect();
    let mut t = Table {
        time: Vec::new(),
        cols: header[1..]
            .iter()
            .map(|h| (h.clone(), Vec::new()))
            .collect(),
        header: header.clone(),
    };
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        t.time.push(rel(cells[0]));
        for (h, c) in header[1..].iter().zip(&cells[1..]) {
            let v = if c.is_empty() {
                f64::NAN
            } else {
                c.parse().expect("number")
            };
            t.cols.get_mut(h).expect("column").push(v);
        }
    }
    t
}

impl Table {
    fn col(&self, name: &str) -> &[f64] {
        self.cols
            .get(name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }
}

/// Runs align, expecting success: (output table, stderr).
fn align_ok(args: &[&str]) -> (Table, String) {
    let out = vmmon().arg("align").args(args).output().expect("run vmmon");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    (table(&String::from_utf8(out.stdout).expect("utf-8")), err)
}

/// Runs align, expecting failure: (exit code, stderr).
fn align_err(args: &[&str]) -> (i32, String) {
    let out = vmmon().arg("align").args(args).output().expect("run vmmon");
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing written on failure");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deterministic uniform numbers in [0, 1).
fn uniforms(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A smooth random signal of continuous time (sinusoids of 5 to 60 s).
fn smooth(t: f64) -> f64 {
    (0..10)
        .map(|i| {
            let period = 5.0 + 6.0 * i as f64;
            (std::f64::consts::TAU * t / period + 1.3 * i as f64).sin() / (1.0 + 0.3 * i as f64)
        })
        .sum::<f64>()
        + 10.0
}

fn sidecar(dir: &tempfile::TempDir, file: &str, rate: f64, cols: &[(&str, &str)]) {
    let columns: Vec<serde_json::Value> = cols
        .iter()
        .map(|(n, k)| serde_json::json!({"name": n, "kind": k, "unit": ""}))
        .collect();
    let meta = serde_json::json!({"rate_hz": rate, "columns": columns});
    write_file(dir, &format!("{file}.meta.json"), &meta.to_string());
}

fn lag_estimate(dir: &tempfile::TempDir, args: &[&str]) -> (f64, Table) {
    let out = dir.path().join("lag.csv");
    let out = out.to_str().expect("utf-8");
    let mut all = args.to_vec();
    all.extend(["-o", out]);
    let o = vmmon().arg("align").args(&all).output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("corrected by"), "{err}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{out}.meta.json")).expect("sidecar"),
    )
    .expect("json");
    let est = meta["lag_estimates"][0]["offset_s"]
        .as_f64()
        .expect("offset");
    assert!(meta["lag_estimates"][0]["stderr_s"].as_f64().is_some());
    (est, table(&std::fs::read_to_string(out).expect("csv")))
}

#[test]
fn lag_from_recovers_a_fractional_clock_error_with_its_sign() {
    // vm1's clock is behind the host's by d (vm1 local = true − d), so its row stamped l
    // holds the signal at true time l + d, and the correction to add to its times is +d.
    // vm1 also samples half a period out of phase with the host.
    for d in [2.37, -1.63, 0.41] {
        let dir = tempfile::tempdir().expect("tempdir");
        let host: Vec<_> = (0..3000)
            .map(|i| (i as f64, vec![Some(smooth(i as f64))]))
            .collect();
        let vm: Vec<_> = (0..3000)
            .map(|i| {
                let l = i as f64 + 0.5;
                (l, vec![Some(smooth(l + d))])
            })
            .collect();
        let h = write_file(&dir, "host.csv", &trace(&["load"], &host));
        let v = write_file(&dir, "vm1.csv", &trace(&["load"], &vm));
        let (est, out) = lag_estimate(
            &dir,
            &[
                &format!("host={h}"),
                &format!("vm1={v}"),
                "--lag-from",
                "host.load,vm1.load",
            ],
        );
        eprintln!("lag: true {d}, estimated {est}");
        assert!((est - d).abs() < 0.1, "d = {d}: estimated {est}");
        // Applied: the two columns now agree on the grid.
        let (a, b) = (out.col("host.load"), out.col("vm1.load"));
        let worst = a
            .iter()
            .zip(b)
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 0.15, "d = {d}: largest difference {worst}");
    }
}

#[test]
fn lag_from_recovers_a_shift_of_bursty_rate_columns() {
    // A CPU-like activity of random bursts; each row is the exact average over the interval
    // since the previous row, as the recorder writes it.
    let mut u = uniforms(11);
    let mut edges = vec![(-50.0, 0.0)];
    let mut t = -50.0;
    while t < 2100.0 {
        t += 1.0 + 9.0 * u();
        edges.push((t, if u() < 0.5 { 0.0 } else { 100.0 * u() }));
    }
    // Integral of the activity from −50 to x.
    let integral = |x: f64| {
        let mut s = 0.0;
        for w in edges.windows(2) {
            let (a, b) = (w[0].0, w[1].0.min(x));
            if b > a {
                s += w[1].1 * (b - a);
            }
        }
        s
    };
    let avg = |a: f64, b: f64| (integral(b) - integral(a)) / (b - a);
    let d = 3.3;
    let dir = tempfile::tempdir().expect("tempdir");
    let host: Vec<_> = (1..2000)
        .map(|i| (i as f64, vec![Some(avg(i as f64 - 1.0, i as f64))]))
        .collect();
    let vm: Vec<_> = (1..2000)
        .map(|i| {
            let l = i as f64 + 0.25;
            (l, vec![Some(avg(l - 1.0 + d, l + d))])
        })
        .collect();
    let h = write_file(&dir, "host.csv", &trace(&["cpu_pct"], &host));
    let v = write_file(&dir, "vm1.csv", &trace(&["cpu_pct"], &vm));
    let (est, _) = lag_estimate(
        &dir,
        &[
            &format!("host={h}"),
            &format!("vm1={v}"),
            "--lag-from",
            "host.cpu_pct,vm1.cpu_pct",
            "--max-lag",
            "20",
        ],
    );
    eprintln!("lag of bursts: true {d}, estimated {est}");
    assert!((est - d).abs() < 0.1, "estimated {est}, true {d}");
}

#[test]
fn rate_resampling_conserves_the_integral() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut u = uniforms(5);
    // 10 Hz with ±20 ms jitter and one missed slot (bridged: 2 periods < 2.5).
    let mut rows = Vec::new();
    for i in 0..3000 {
        if i == 1234 {
            continue;
        }
        let t = 0.1 * i as f64 + 0.04 * (u() - 0.5);
        rows.push((t, vec![Some(1000.0 * u() * u())]));
    }
    let src = write_file(&dir, "a.csv", &trace(&["x_per_s"], &rows));
    sidecar(&dir, "a.csv", 10.0, &[("x_per_s", "rate")]);
    // The step function the rows define: row i holds the average over (t_{i−1}, t_i],
    // the first row over one period before it (the sidecar's rate).
    let times: Vec<f64> = rows.iter().map(|r| rel(&stamp(r.0))).collect();
    let vals: Vec<f64> = rows.iter().map(|r| r.1[0].expect("value")).collect();
    let integral = |a: f64, b: f64| {
        let mut s = 0.0;
        for i in 0..times.len() {
            let lo = if i == 0 { times[0] - 0.1 } else { times[i - 1] };
            let (x, y) = (lo.max(a), times[i].min(b));
            if y > x {
                s += vals[i] * (y - x);
            }
        }
        s
    };
    for rate in ["4", "2.5", "25"] {
        let (out, _) = align_ok(&[&format!("a={src}"), "--rate", rate]);
        let p = 1.0 / rate.parse::<f64>().expect("rate");
        let x = out.col("a.x_per_s");
        // The first cell may start before the first row's interval: empty, never invented.
        let first = usize::from(x[0].is_nan());
        assert!(x[first..].iter().all(|v| v.is_finite()), "rate {rate}");
        let got: f64 = x[first..].iter().sum::<f64>() * p;
        let want = integral(out.time[first] - p, *out.time.last().expect("rows"));
        assert!(
            ((got - want) / want).abs() < 1e-9,
            "rate {rate}: {got} vs {want}, relative {}",
            (got - want) / want
        );
    }
}

#[test]
fn a_row_on_the_time_of_the_one_before_adds_nothing_to_a_cell() {
    // Regression (review of f7f8e96): a sidecar claiming 1e17 Hz makes the gap row that
    // stands one period before a late row round onto that row's own time. The late row then
    // adds no piece, and a cell of one earlier piece must not average that row in as its
    // second: (4, 6] holds an unknown second and stays empty, as it always did.
    let dir = tempfile::tempdir().expect("tempdir");
    let a: String = std::iter::once("time,x_per_s\n".to_string())
        .chain((0..=12).map(|k| format!("{},{}\n", stamp(k as f64), 1 + 10 * k)))
        .collect();
    let b: String = std::iter::once("time,y_per_s\n".to_string())
        .chain(
            [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12]
                .iter()
                .map(|&k| format!("{},{}\n", stamp(k as f64), 3 + 100 * k)),
        )
        .collect();
    let a = write_file(&dir, "a.csv", &a);
    let b = write_file(&dir, "b.csv", &b);
    write_file(
        &dir,
        "b.csv.meta.json",
        r#"{"rate_hz": 1e17, "columns": [{"name": "y_per_s", "kind": "rate", "unit": ""}]}"#,
    );
    let out = vmmon()
        .args(["align", &format!("a={a}"), &format!("b={b}")])
        .args(["--rate", "0.5", "--max-gap", "1.5"])
        .output()
        .expect("run vmmon");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "time,a.x_per_s,b.y_per_s\n\
         1795400000.000000,,\n\
         1795400002.000000,16,153\n\
         1795400004.000000,36,\n\
         1795400006.000000,56,\n\
         1795400008.000000,76,753\n\
         1795400010.000000,96,953\n\
         1795400012.000000,116,1153\n"
    );
}

#[test]
fn constant_columns_stay_exactly_constant() {
    // A rate or gauge that does not change is the same number in every cell, at any grid
    // rate and phase: overlap weights that do not add up to the width exactly must not turn
    // 95.3 into 95.30000000000001.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut u = uniforms(17);
    let consts = [
        95.3,
        0.1,
        7.77,
        1234.5678,
        33.333333333333336,
        25276514304.0,
    ];
    let rows: Vec<_> = (0..1000)
        .map(|i| {
            let t = 0.1 * i as f64 + 0.0337 + 1e-4 * u();
            (t, consts.iter().map(|&c| Some(c)).collect())
        })
        .collect();
    let names = [
        "a_pct",
        "b_per_s",
        "c_per_s",
        "d_per_s",
        "e_pct",
        "mem_bytes",
    ];
    let src = write_file(&dir, "c.csv", &trace(&names, &rows));
    for rate in ["10", "4", "2.5", "25", "7"] {
        let (out, _) = align_ok(&[&format!("c={src}"), "--rate", rate]);
        for (name, want) in names.iter().zip(consts) {
            let col = out.col(&format!("c.{name}"));
            let cells = col.iter().filter(|v| !v.is_nan()).count();
            assert!(cells + 1 >= col.len(), "rate {rate} {name}: empty cells");
            for v in col.iter().filter(|v| !v.is_nan()) {
                assert!(*v == want, "rate {rate} {name}: {v:?}, not {want:?}");
            }
        }
    }
}

#[test]
fn a_period_from_the_rows_is_read_to_the_nanosecond() {
    // No sidecar: the period is the median step of times written to the microsecond, whose
    // f64 difference is not 0.1 exactly; the summary and the grid say 0.1 s and 10 Hz.
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<_> = (0..300)
        .map(|i| (0.1 * i as f64, vec![Some(1.0)]))
        .collect();
    let src = write_file(&dir, "p.csv", &trace(&["x_per_s"], &rows));
    let (out, err) = align_ok(&[&format!("p={src}")]);
    assert!(
        err.contains("aligned 1 source on 300 rows at 10 Hz ("),
        "{err}"
    );
    assert!(err.contains("period 0.1 s (median step)"), "{err}");
    for w in out.time.windows(2) {
        assert!((w[1] - w[0] - 0.1).abs() < 1e-9, "{w:?}");
    }
}

#[test]
fn gauges_and_totals_interpolate_to_closed_forms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut u = uniforms(9);
    let times: Vec<f64> = (0..500)
        .map(|i| rel(&stamp(0.5 * i as f64 + 0.1 * (u() - 0.5))))
        .collect();
    let lin = |t: f64| 3.0 + 0.5 * t;
    let tot = |t: f64| 1000.0 * t + 7.0;
    let rows: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            // The counter resets once, between rows 300 and 301.
            let c = if i > 300 {
                tot(t) - tot(times[301])
            } else {
                tot(t)
            };
            (t, vec![Some(lin(t)), Some(t * t), Some(c)])
        })
        .collect();
    let src = write_file(&dir, "g.csv", &trace(&["level", "sq", "ctxt_total"], &rows));
    // A period of whole microseconds, so the printed grid times are the exact ones.
    let (out, _) = align_ok(&[&format!("g={src}"), "--rate", "2"]);
    let (level, sq, total) = (out.col("g.level"), out.col("g.sq"), out.col("g.ctxt_total"));
    assert!(out.time.len() > 450);
    let mut checked_reset = false;
    for (k, &g) in out.time.iter().enumerate() {
        let b = times.iter().position(|&t| t >= g).expect("bracketed");
        let a = b.saturating_sub(1);
        assert!(
            (level[k] - lin(g)).abs() < 1e-9 * lin(g),
            "{g}: {}",
            level[k]
        );
        // The chord of t² between the rows around g.
        let chord = if times[b] == g {
            g * g
        } else {
            (times[a] + times[b]) * g - times[a] * times[b]
        };
        assert!((sq[k] - chord).abs() < 1e-9 * chord.max(1.0), "{g}");
        if a == 300 && times[b] != g {
            assert!(total[k].is_nan(), "a reset is not interpolated across");
            checked_reset = true;
        } else if b <= 300 {
            assert!(
                (total[k] - tot(g)).abs() < 1e-9 * tot(g),
                "{g}: {}",
                total[k]
            );
        }
    }
    assert!(checked_reset, "the grid fell between the reset rows");
}

#[test]
fn gaps_longer_than_max_gap_give_empty_cells() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 Hz; rows 50..=59 missing; row 80 has empty cells.
    let rows: Vec<_> = (0..120)
        .filter(|i| !(50..60).contains(i))
        .map(|i| {
            let v = if i == 80 { None } else { Some(i as f64) };
            (i as f64, vec![v, v.map(|x| 2.0 * x)])
        })
        .collect();
    let src = write_file(&dir, "s.csv", &trace(&["level", "busy_pct"], &rows));
    let (out, _) = align_ok(&[&format!("s={src}")]);
    let (level, busy) = (out.col("s.level"), out.col("s.busy_pct"));
    for (k, &g) in out.time.iter().enumerate() {
        let level_empty = (g > 49.0 && g < 60.0) || (g > 79.0 && g < 81.0);
        // Rate cells (g − 1, g] touching the unknown (49, 59] or row 80's interval.
        let busy_empty = (50.0..=59.0).contains(&g) || g == 80.0;
        assert_eq!(level[k].is_nan(), level_empty, "level at {g}");
        assert_eq!(busy[k].is_nan(), busy_empty, "busy at {g}");
        if !level_empty {
            assert_eq!(level[k], g);
        }
        if !busy_empty {
            assert_eq!(busy[k], 2.0 * g);
        }
    }
    // A larger --max-gap bridges it: gauges on the chord, the rate row covering it all.
    let (out, _) = align_ok(&[&format!("s={src}"), "--max-gap", "20"]);
    let k = out.time.iter().position(|&g| g == 55.0).expect("row at 55");
    assert_eq!(out.col("s.level")[k], 55.0);
    assert_eq!(out.col("s.busy_pct")[k], 120.0);
}

/// Host and vm1 see one event at true time 7000 s; vm1's clock starts 0.5 s ahead and runs
/// 100 ppm fast, so uncorrected its event is stamped 1.2 s late.
fn drifting_pair(dir: &tempfile::TempDir, probes: bool) -> (String, String) {
    let local = |s: f64| s + 0.5 + 1e-4 * s;
    let host: Vec<_> = (0..10000)
        .map(|i| (i as f64, vec![Some(if i == 7000 { 1.0 } else { 0.0 })]))
        .collect();
    let vm: Vec<_> = (0..10000)
        .map(|i| {
            let s = i as f64;
            let off = (i % 60 == 30).then(|| s - local(s));
            let mut v = vec![Some(if i == 7000 { 1.0 } else { 0.0 })];
            if probes {
                v.push(off);
                v.push(off.map(|_| 0.002));
            }
            (local(s), v)
        })
        .collect();
    let h = write_file(dir, "host.csv", &trace(&["event"], &host));
    let cols: &[&str] = if probes {
        &["event", "clock_offset_s", "clock_rtt_s"]
    } else {
        &["event"]
    };
    let v = write_file(dir, "vm1.csv", &trace(cols, &vm));
    (format!("host={h}"), format!("vm1={v}"))
}

fn peak_row(x: &[f64]) -> usize {
    (0..x.len())
        .max_by(|&a, &b| x[a].total_cmp(&x[b]))
        .expect("rows")
}

#[test]
fn clock_columns_follow_a_drifting_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, v) = drifting_pair(&dir, true);
    let (out, err) = align_ok(&[&h, &v]);
    assert!(
        !out.cols.contains_key("vm1.clock_offset_s"),
        "clock columns are not data"
    );
    let (a, b) = (out.col("host.event"), out.col("vm1.event"));
    assert_eq!(peak_row(a), peak_row(b));
    assert!(b[peak_row(b)] > 0.999, "{}", b[peak_row(b)]);
    assert!(err.contains("clock columns (167 probes"), "{err}");
    assert!(err.contains("drift -100.0 ppm"), "{err}");
    // Without the correction the event lands a row late: the test can tell.
    let (out, _) = align_ok(&[&h, &v, "--offset", "vm1=0"]);
    assert_eq!(
        peak_row(out.col("vm1.event")),
        peak_row(out.col("host.event")) + 1
    );
}

#[test]
fn offset_option_moves_a_source_by_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host: Vec<_> = (0..100)
        .map(|i| (i as f64, vec![Some(f64::from(u8::from(i == 40)))]))
        .collect();
    // vm1's clock is 2.5 s ahead: its event (true 40 s) is stamped 42.5.
    let vm: Vec<_> = (0..100)
        .map(|i| (i as f64 + 2.5, vec![Some(f64::from(u8::from(i == 40)))]))
        .collect();
    let h = format!(
        "host={}",
        write_file(&dir, "h.csv", &trace(&["event"], &host))
    );
    let v = format!("vm1={}", write_file(&dir, "v.csv", &trace(&["event"], &vm)));
    let (out, _) = align_ok(&[&h, &v, "--offset", "vm1=-2.5"]);
    let (a, b) = (out.col("host.event"), out.col("vm1.event"));
    assert_eq!(peak_row(a), peak_row(b));
    assert_eq!(b[peak_row(b)], 1.0);
    // The other sign moves it the other way: 5 s late.
    let (out, _) = align_ok(&[&h, &v, "--offset", "vm1=2.5"]);
    assert_eq!(
        peak_row(out.col("vm1.event")),
        peak_row(out.col("host.event")) + 5
    );
}

/// Regression (found by the experiment's analysis): a corrected time a rounding error short
/// of the host's last grid time (t + 123.4 − 123.4 < t) dropped the last grid row.
#[test]
fn a_rounding_shortfall_of_a_corrected_time_keeps_the_last_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = |shift: f64| -> Vec<_> {
        (0..150)
            .map(|i| (i as f64 + shift, vec![Some(i as f64)]))
            .collect()
    };
    let h = format!(
        "host={}",
        write_file(&dir, "h.csv", &trace(&["gauge"], &rows(0.0)))
    );
    let v = format!(
        "vm1={}",
        write_file(&dir, "v.csv", &trace(&["gauge"], &rows(123.4)))
    );
    // Times are read relative to a whole second near the first, and in floating point
    // (149 + 123.4) − 123.4 is 2.8e-14 short of 149.
    let (out, _) = align_ok(&[&h, &v, "--offset", "vm1=-123.4"]);
    assert_eq!(out.time.len(), 150, "grid rows");
    let g = out.col("vm1.gauge");
    assert!((g[149] - 149.0).abs() < 1e-6, "last value {}", g[149]);
}

#[test]
fn kinds_come_from_the_sidecar_and_kind_overrides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<_> = (0..40)
        .map(|i| (i as f64, vec![Some(if i % 2 == 0 { 0.0 } else { 10.0 })]))
        .collect();
    let src = write_file(&dir, "k.csv", &trace(&["busy"], &rows));
    // By name `busy` is a gauge: read at the grid times, all even seconds.
    let (out, _) = align_ok(&[&format!("k={src}"), "--rate", "0.5"]);
    assert!(out.col("k.busy").iter().all(|&v| v == 0.0));
    // The sidecar says it is a rate: averaged over each 2 s cell.
    sidecar(&dir, "k.csv", 1.0, &[("busy", "rate")]);
    let (out, _) = align_ok(&[&format!("k={src}"), "--rate", "0.5"]);
    // (The first cell, (−2, 0], starts before the first row's interval (−1, 0]: empty.)
    let busy = out.col("k.busy");
    assert!(busy[0].is_nan());
    assert!(busy[1..].iter().all(|&v| v == 5.0), "{busy:?}");
    let (out, _) = align_ok(&[
        &format!("k={src}"),
        "--rate",
        "0.5",
        "--kind",
        "k.busy=gauge",
    ]);
    assert!(out.col("k.busy").iter().all(|&v| v == 0.0));
}

#[test]
fn output_file_sidecar_and_reading_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<_> = (0..200)
        .map(|i| {
            (
                i as f64,
                vec![Some(smooth(i as f64)), Some(smooth(i as f64 - 3.0))],
            )
        })
        .collect();
    let src = write_file(&dir, "s.csv", &trace(&["u", "y"], &rows));
    let out = dir.path().join("al.csv");
    let out = out.to_str().expect("utf-8");
    let o = vmmon()
        .args(["align", &format!("s={src}"), "-o", out])
        .output()
        .expect("run");
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{out}.meta.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(meta["rate_hz"], 1.0);
    assert_eq!(meta["rows"], 200);
    assert_eq!(meta["columns"][1]["name"], "s.u");
    assert_eq!(meta["columns"][1]["kind"], "gauge");
    assert_eq!(meta["sources"][0]["correction"]["method"], "none");
    // The analysis commands read it (and its period from the sidecar).
    let x = vmmon()
        .args(["xcorr", out, "-u", "s.u", "-y", "s.y", "-L", "5"])
        .output()
        .expect("run");
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    assert!(String::from_utf8_lossy(&x.stderr).contains("at lag +3"));
}

#[test]
fn a_closed_pipe_is_a_clean_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<_> = (0..50000)
        .map(|i| (i as f64, vec![Some(i as f64 * 1.5)]))
        .collect();
    let src = write_file(&dir, "p.csv", &trace(&["v"], &rows));
    let mut child = vmmon()
        .args(["align", &format!("p={src}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "time,p.v\n");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("error"));
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a: Vec<_> = (0..100).map(|i| (i as f64, vec![Some(1.0)])).collect();
    let late: Vec<_> = (200..300).map(|i| (i as f64, vec![Some(1.0)])).collect();
    let h = write_file(&dir, "host.csv", &trace(&["x"], &a));
    let far = write_file(&dir, "far.csv", &trace(&["x"], &late));
    let mut back = trace(&["x"], &a);
    back = back.replacen(
        &format!("{},1\n", stamp(4.0)),
        &format!("{},1\n", stamp(2.5)),
        1,
    );
    let back = write_file(&dir, "back.csv", &back);
    let (hs, fs, bs) = (
        format!("host={h}"),
        format!("vm1={far}"),
        format!("vm1={back}"),
    );

    let (code, err) = align_err(&[&hs, &fs]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "the traces do not overlap in time (after clock correction): host ({h}) ends at \
             {} but vm1 ({far}) starts at {}",
            stamp(99.0),
            stamp(200.0)
        )),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, &bs]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{back}:6:1: time goes backwards: {} after {} on line 5",
            stamp(2.5),
            stamp(3.0)
        )),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, &format!("host={far}")]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "source name host is used twice ({h} and {far}): each source needs its own name"
        )),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, &fs, "--lag-from", "host.x,vm1.nosuch"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "--lag-from host.x,vm1.nosuch: column nosuch of source vm1 ({far}) does not exist; \
             its columns are: time, x"
        )),
        "{err}"
    );

    // Files a user can get wrong, each with the message naming it (FILE: its path).
    let half: Vec<_> = a.iter().map(|(t, v)| (t + 0.5, v.clone())).collect();
    for (name, text, extra, want) in [
        // A lone `\r` (old Mac line ends) does not end a record: the row it joins has a
        // field too many, and the error names the line.
        (
            "cr.csv",
            format!("time,x\n{},1\r{},2\n", stamp(0.0), stamp(1.0)),
            &[][..],
            "FILE:2: found a record with 3 fields, but the header has 2",
        ),
        // Inside a cell, the cell is not a number.
        (
            "cr2.csv",
            format!("time,x\n{},1\r2\n{},3\r\n", stamp(0.0), stamp(1.0)),
            &[],
            "FILE:2:2: '1\\r2' in column x is not a number",
        ),
        // A number past f64's range is no value: the cell should be empty.
        (
            "inf.csv",
            format!("time,x\n{},1\n{},1e999\n", stamp(0.0), stamp(1.0)),
            &[],
            "FILE:3:2: 1e999 in column x: leave the cell empty for a missing value",
        ),
        // Traces that overlap, but for less than one interval of the grid asked for.
        (
            "shifted.csv",
            trace(&["x"], &half),
            &["--rate", "0.0001"],
            "no whole grid interval of 10000 s (--rate 0.0001 Hz) fits in it",
        ),
        // Two columns of one name would be two output columns no one could tell apart.
        (
            "dup.csv",
            format!("time,x,x\n{},1,2\n{},3,4\n", stamp(0.0), stamp(1.0)),
            &[],
            "FILE: column x appears twice in the header (columns 2 and 3); rename one",
        ),
    ] {
        let path = write_file(&dir, name, &text);
        let mut args = vec![hs.clone(), format!("vm1={path}")];
        args.extend(extra.iter().map(|x| x.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = align_err(&args);
        assert_eq!(code, 1, "{name}: {err}");
        let want = want.replace("FILE", &path);
        assert!(err.contains(&want), "{name}: {err}");
    }

    let (code, err) = align_err(&[&hs, &fs, "--lag-from", "host.x,vm2.x"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--lag-from host.x,vm2.x: no source named vm2; the sources are host, vm1"),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, "--columns", "host.y"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "--columns host.y: source host ({h}) has no column y; its columns are: time, x"
        )),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, "--offset", "vm9=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--offset vm9: no source named vm9"), "{err}");

    let (code, err) = align_err(&[&h]);
    assert_eq!(code, 2);
    assert!(err.contains("a source is written NAME=FILE"), "{err}");

    let (code, err) = align_err(&[&hs, "--max-gap", "0.5"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--max-gap 0.5 s is shorter than the sampling period of host (1 s)"),
        "{err}"
    );

    let (code, err) = align_err(&[&hs, &format!("vm1={h}"), "--lag-from", "host.x,vm1.x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("has no finite correlation") || err.contains("constant"),
        "{err}"
    );
}
