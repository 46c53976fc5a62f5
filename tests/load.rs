//! `vmmon load`: the filter inversion, errors and stopping. The tests that measure CPU time
//! and the load average are in quiet_load.rs (their own test binary).

use std::process::Stdio;
use std::time::Duration;

use proptest::prelude::*;
use vmmon::load::filter;

use crate::util::vmmon;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, rng_seed: proptest::test_runner::RngSeed::Fixed(6), ..ProptestConfig::default() })]
    #[test]
    fn inversion_round_trips(
        x in proptest::collection::vec(0.0f64..8.0, 1..300),
        delta in 0.01f64..10.0,
        tau in 0.5f64..120.0,
        z0 in 0.0f64..4.0,
    ) {
        let a = filter::smoothing(delta, tau);
        let z = filter::forward(&x, a, z0);
        let back = filter::invert(&z, a, z0);
        for (p, q) in x.iter().zip(&back) {
            // The inversion divides by 1 − a: relative to the run queue's scale over that.
            let tol = 1e-12 * (1.0 + p.abs()) / (1.0 - a).max(1e-3);
            prop_assert!((p - q).abs() <= tol.max(1e-12), "{} vs {} (a = {})", p, q, a);
        }
        let again = filter::forward(&back, a, z0);
        for (p, q) in z.iter().zip(&again) {
            prop_assert!((p - q).abs() <= 1e-12 * (1.0 + p.abs()));
        }
    }
}

#[test]
fn load_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let cases = [
        (
            write("neg.csv", "time,load\n1,0.5\n2,-1\n"),
            "neg.csv:3: load -1 is negative",
        ),
        (
            write("nan.csv", "time,load\n1,0.5\n2,abc\n"),
            "nan.csv:3:2: load 'abc' is not a number",
        ),
        (write("empty.csv", "time,load\n"), "the trace is empty"),
        (
            write("back.csv", "time,load\n1,0.5\n2,0.5\n1.5,0.5\n"),
            "back.csv:4: time 1.5 does not increase",
        ),
        (
            write("noload.csv", "time,cpu\n1,0.5\n"),
            "no column named 'load'",
        ),
        (
            write("odd.bin", "0123456789"),
            "not a whole number of 16-byte records",
        ),
    ];
    for (path, want) in &cases {
        let out = vmmon()
            .args(["load", "play"])
            .arg(path)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{}: {err}", path.display());
    }
    for (args, want) in [
        (
            vec!["const", "9", "--max-threads", "4"],
            "more than --max-threads 4",
        ),
        (
            vec!["const", "1.5", "--threads", "1"],
            "needs at least 2 threads",
        ),
        (vec!["const", "-1"], "a load is a number ≥ 0"),
        (vec!["prbs", "--order", "40"], "--order 40: give 3 to 24"),
        (vec!["const", "1", "--slice", "1ms"], "--slice"),
    ] {
        let out = vmmon().arg("load").args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn sigterm_stops_every_worker_promptly() {
    let child = vmmon()
        .args(["load", "const", "2", "-d", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("load");
    std::thread::sleep(Duration::from_millis(700));
    let t = std::time::Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(143));
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivered"));
}

#[test]
fn disk_load_writes_at_its_rate_and_cleans_up_when_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = vmmon()
        .args([
            "load", "const", "1", "--kind", "disk", "--scale", "8M", "-d", "20",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("disk load");
    let io = format!("/proc/{}/io", child.id());
    let wchar = || -> f64 {
        std::fs::read_to_string(&io)
            .expect("proc io")
            .lines()
            .find_map(|l| l.strip_prefix("wchar: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("wchar")
    };
    std::thread::sleep(Duration::from_millis(500));
    let (w0, t0) = (wchar(), std::time::Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    let (w1, dt) = (wchar(), t0.elapsed().as_secs_f64());
    // The kernel's count of bytes the process wrote: 8 MB/s, to a slice (0.8 MB) or so.
    let rate = (w1 - w0) / dt;
    assert!((rate - 8e6).abs() < 0.15 * 8e6, "{rate} bytes/s");
    let files = || std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(files(), 1, "the load's file exists while it runs");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    assert_eq!(
        files(),
        0,
        "the file is removed, also when stopped by a signal"
    );
}

#[test]
fn net_load_sends_its_bytes() {
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sink.local_addr().expect("addr").port();
    // Nothing comes in the first second (load 0): wait longer for the first datagram.
    sink.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let child = vmmon()
        .args([
            "load", "step", "--from", "0", "--to", "2", "--at", "1s", "-d", "2",
        ])
        .args(["--kind", "net", "--scale", "1M", "--target"])
        .arg(format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("net load");
    let mut buf = [0u8; 2048];
    let mut bytes = 0usize;
    while let Ok(n) = sink.recv(&mut buf) {
        sink.set_read_timeout(Some(Duration::from_millis(800)))
            .expect("timeout");
        bytes += n;
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 1 s at 0, then 1 s at 2 × 1 MB/s; loopback may drop, never invent.
    assert!((1_980_000..=2_000_000).contains(&bytes), "{bytes} bytes");

    // Nothing listening: every datagram still goes out. (A connected socket lost about half:
    // each ICMP "port unreachable" failed the next send.)
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("net.json");
    let out = vmmon()
        .args([
            "load", "const", "1", "-d", "1", "--kind", "net", "--scale", "1M",
        ])
        .arg("--target")
        .arg(format!("127.0.0.1:{closed}"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("net load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("summary")).expect("json");
    let (target, done) = (
        summary["target_bytes"].as_u64().expect("target_bytes"),
        summary["done_bytes"].as_u64().expect("done_bytes"),
    );
    assert_eq!(target, 1_000_000);
    assert!(
        done >= 990_000,
        "{done} of {target} bytes sent to a closed port"
    );
    for (args, want) in [
        (vec!["--kind", "net"], "--kind net needs --target"),
        (
            vec!["--kind", "disk", "--threads", "2"],
            "--threads and --mode are for CPU",
        ),
        (vec!["--kind", "disk", "--scale", "10X"], "unknown unit 'X'"),
    ] {
        let out = vmmon()
            .args(["load", "const", "1", "-d", "1"])
            .args(&args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn play_start_rotates_the_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, "time,load\n0,0\n0.1,0.5\n0.2,1\n0.3,0.25\n").expect("write");
    let log = dir.path().join("log.csv");
    let out = vmmon()
        .args(["load", "play", "--no-invert", "--start", "200ms", "--log"])
        .arg(&log)
        .arg(&trace)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let targets: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).expect("target_load"))
        .collect();
    // Samples 2 and 3 first, then the two skipped.
    assert_eq!(targets, ["1", "0.25", "0", "0.5"], "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from sample 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The experiment's load arguments, run by the real `vmmon load`: a PRBS faster than the
/// default slice, and a trace copied to a name without an extension (as in a guest), each
/// machine from its own start.
#[test]
fn the_experiments_load_arguments_run() {
    use vmmon::experiment::run::Load;
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("t.csv");
    let mut text = String::from("time,load\n");
    for i in 0..30 {
        text.push_str(&format!("{},{}\n", i, (i % 3) as f64 * 0.1));
    }
    std::fs::write(&csv, text).expect("write");
    let copy = dir.path().join("load.trace");
    std::fs::copy(&csv, &copy).expect("copy");
    let play = Load::Play { trace: csv.clone() };
    let starts = play.starts().expect("starts");
    assert_eq!(starts, [0, 10, 20]);
    let fast = Load::Prbs {
        low: 0.0,
        high: 0.2,
        bit: Duration::from_millis(40),
    };
    for (load, start) in [(&fast, 0), (&play, 0), (&play, starts[2])] {
        let args = load.args(1, "693", &start.to_string(), &copy.to_string_lossy());
        let out = vmmon().arg("load").args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "vmmon load {args:?}: {err}");
        if start > 0 {
            assert!(err.contains("from sample 20"), "{err}");
        }
    }
}
