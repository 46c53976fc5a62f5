//! `vmmon load` measured from outside: delivered CPU by wait4's rusage and by `vmmon
//! record`, the machine's own load average during playback, and work mode under competition.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmmon::load::filter;

use crate::util::{Guard, heavy, require, vmmon, vmmon_bin};

/// Waits for `child` and returns its exit code and CPU seconds (user + system) from wait4.
fn wait_rusage(child: Child) -> (i32, f64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    std::mem::forget(child);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (libc::WEXITSTATUS(status), tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Rows of a trace: `(time, busy CPUs)` from its CPU percentages (100 − idle − iowait, of all
/// CPUs) and the number of CPUs in its sidecar.
fn busy_cpus(trace: &Path) -> Vec<(f64, f64)> {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.meta.json", trace.display())).expect("meta"),
    )
    .expect("json");
    let cpus = meta["cpus"].as_f64().expect("cpus");
    let text = std::fs::read_to_string(trace).expect("trace");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect(n);
    let (t, idle, iowait) = (col("time"), col("cpu_idle_pct"), col("cpu_iowait_pct"));
    lines
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let idle: f64 = c[idle].parse().ok()?;
            let iowait: f64 = c[iowait].parse().unwrap_or(0.0);
            Some((c[t].parse().ok()?, (100.0 - idle - iowait) * cpus / 100.0))
        })
        .collect()
}

fn mean_between(rows: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let v: Vec<f64> = rows
        .iter()
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|r| r.1)
        .collect();
    assert!(v.len() >= 3, "too few rows between {from} and {to}");
    v.iter().sum::<f64>() / v.len() as f64
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

fn stop(guard: Guard) {
    let out = guard.signal(libc::SIGINT).wait_with_output().expect("wait");
    assert!(
        matches!(out.status.code(), Some(0 | 130)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn delivered_cpu_is_on_target_by_rusage_and_by_record() {
    let _quiet = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("host.csv");
    let recorder = Guard::spawn(
        vmmon()
            .args(["record", "--rate", "2", "-o"])
            .arg(&trace)
            .stderr(Stdio::null()),
    );
    // The idle baseline is measured before and after the loads (5 s each) and averaged: one
    // short window can catch a passing daemon.
    std::thread::sleep(Duration::from_secs(6));
    let mut windows = Vec::new();
    let idle_before = now() - 5.0;
    for load in [0.25, 0.5, 1.0, 1.5] {
        let json = dir.path().join(format!("{load}.json"));
        let t0 = now();
        let child = vmmon()
            .args(["load", "const", &load.to_string(), "-d", "10", "--json"])
            .arg(&json)
            .stderr(Stdio::null())
            .spawn()
            .expect("load");
        let (code, cpu) = wait_rusage(child);
        let t1 = now();
        assert_eq!(code, 0);
        // The process's own CPU, measured by the kernel for its parent: ±10% of load × 10 s.
        let target = load * 10.0;
        assert!(
            (cpu - target).abs() <= 0.1 * target,
            "load {load}: {cpu:.3} CPU s by rusage, target {target}"
        );
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
        assert!((s["target_cpu_s"].as_f64().expect("target") - target).abs() < 1e-9);
        windows.push((load, t0, t1));
    }
    let idle_after = now() + 1.0;
    std::thread::sleep(Duration::from_secs(7));
    stop(recorder);
    let rows = busy_cpus(&trace);
    let base = (mean_between(&rows, idle_before, idle_before + 5.0)
        + mean_between(&rows, idle_after, idle_after + 5.0))
        / 2.0;
    for (load, t0, t1) in windows {
        // Steady part of each run, seen machine-wide by the recorder, less the idle baseline.
        let seen = mean_between(&rows, t0 + 1.0, t1 - 0.5) - base;
        assert!(
            (seen - load).abs() <= 0.1 * load + 0.02,
            "load {load}: record saw {seen:.3} busy CPUs above a baseline of {base:.3}"
        );
    }
}

#[test]
fn the_load_average_follows_a_played_back_trace() {
    let _quiet = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    // A Dinda-style trace: the 5 s-τ load average of a run queue that steps between levels.
    // A fractional level is a thread busy part of the time, which the kernel's 5 s samples
    // see as 0 or 1 at random: whole levels and one fractional one keep that sampling noise
    // (not the playback) from deciding the correlation (with 0.2/1.6/0.6/1.3/0.1 it ranged
    // 0.85–0.95 over runs).
    let levels = [(0.0, 30), (2.0, 50), (1.0, 45), (1.5, 45), (0.0, 40)];
    let x: Vec<f64> = levels
        .iter()
        .flat_map(|&(l, n)| std::iter::repeat_n(l, n))
        .collect();
    let z = filter::forward(&x, filter::smoothing(1.0, 5.0), x[0]);
    let load_trace = dir.path().join("trace.csv");
    let mut csv = String::from("time,load\n");
    for (i, v) in z.iter().enumerate() {
        csv += &format!("{},{v}\n", 1000 + i);
    }
    std::fs::write(&load_trace, csv).expect("write");
    let rec = dir.path().join("rec.csv");
    let recorder = Guard::spawn(
        vmmon()
            .args(["record", "--rate", "1", "-o"])
            .arg(&rec)
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let log = dir.path().join("log.csv");
    let t0 = now();
    let out = vmmon()
        .args(["load", "play"])
        .arg(&load_trace)
        .args(["--tau", "5", "--log"])
        .arg(&log)
        .output()
        .expect("play");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(recorder);
    // The machine's own 1-minute load average, against the played run queue passed through
    // Linux's filter (5 s updates, fixed point) from the average's value at the start.
    let text = std::fs::read_to_string(&rec).expect("trace");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let (ti, li) = (
        header.iter().position(|h| *h == "time").expect("time"),
        header
            .iter()
            .position(|h| *h == "load_1m")
            .expect("load_1m"),
    );
    let rows: Vec<(f64, f64)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[ti].parse().expect("t"), c[li].parse().expect("load"))
        })
        .collect();
    let z0 = rows.iter().rfind(|r| r.0 <= t0).map_or(rows[0].1, |r| r.1);
    let updates: Vec<f64> = (0..x.len() / 5).map(|k| x[k * 5 + 2]).collect();
    let expected = filter::linux_load_1m(&updates, z0);
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter(|(t, _)| *t >= t0 + 5.0 && *t < t0 + x.len() as f64)
        .map(|&(t, seen)| {
            (
                seen,
                expected[(((t - t0) / 5.0) as usize).min(expected.len() - 1)],
            )
        })
        .collect();
    let n = pairs.len() as f64;
    let (ma, mb) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum();
    let va: f64 = pairs.iter().map(|p| (p.0 - ma).powi(2)).sum();
    let vb: f64 = pairs.iter().map(|p| (p.1 - mb).powi(2)).sum();
    let r = cov / (va * vb).sqrt();
    assert!(
        r >= 0.9,
        "correlation {r:.3} of load_1m with the filtered trace over {n} rows"
    );
    // The log has one row per trace sample with the target inverted from it.
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(logged.lines().count(), x.len() + 1);
    let second: Vec<f64> = logged
        .lines()
        .nth(40)
        .expect("row")
        .split(',')
        .map(|v| v.parse().expect("number"))
        .collect();
    assert!(
        (second[1] - 2.0).abs() < 1e-9,
        "target {} at row 40",
        second[1]
    );
}

#[test]
fn work_mode_keeps_its_cpu_and_stretches_under_competition() {
    if !require("taskset", "both loads pinned to one CPU") {
        return;
    }
    let _quiet = heavy();
    let competitor = Guard::spawn(
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(vmmon_bin())
            .args(["load", "const", "1", "-d", "30"])
            .stderr(Stdio::null()),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("w.json");
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(vmmon_bin())
        .args([
            "load", "const", "0.8", "-d", "4", "--mode", "work", "--json",
        ])
        .arg(&json)
        .output()
        .expect("work load");
    stop(competitor);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let (target, delivered, wall) = (
        s["target_cpu_s"].as_f64().expect("t"),
        s["delivered_cpu_s"].as_f64().expect("d"),
        s["wall_s"].as_f64().expect("w"),
    );
    assert!((target - 3.2).abs() < 0.05, "{s}");
    assert!(
        (delivered - target).abs() <= 0.1 * target + 0.2,
        "work mode delivered {delivered} of {target} CPU s"
    );
    assert!(
        wall > 1.4 * 4.0,
        "a shared CPU must stretch the run: {wall} s for 4 s"
    );
}
