//! `vmmon clock serve|probe` and `record --clock-ref` on loopback, with libfaketime as the
//! independent clock: a process whose clock is shifted (and sped up) by a known amount.

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{Guard, Server, require, vmmon, vmmon_bin};

/// `vmmon clock serve` on a free loopback port.
struct Serve;

impl Serve {
    fn start() -> Server {
        Serve::spawn(vmmon())
    }

    /// A server whose clock faketime shifts by `spec` (e.g. `+2.5s`).
    fn faked(spec: &str) -> Server {
        let mut cmd = std::process::Command::new("faketime");
        cmd.args(["-f", spec]).arg(vmmon_bin());
        Serve::spawn(cmd)
    }

    fn spawn(mut cmd: std::process::Command) -> Server {
        Server::spawn(cmd.args(["clock", "serve", "--listen", "127.0.0.1:0"]))
    }
}

/// `(time, offset, rtt, bound)` rows of a probe CSV.
fn rows(csv: &str) -> Vec<[f64; 4]> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,offset_s,rtt_s,bound_s"));
    lines
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().expect("number")).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect()
}

fn counter(stderr: &str, name: &str) -> u64 {
    let at = stderr
        .find(&format!("{name} "))
        .unwrap_or_else(|| panic!("no {name} in {stderr}"));
    stderr[at + name.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no count for {name} in {stderr}"))
}

#[test]
fn probe_of_the_same_clock_finds_zero_within_its_bound() {
    let server = Serve::start();
    let out = vmmon()
        .args(["clock", "probe", &server.addr(), "-n", "5", "-r", "20"])
        .output()
        .expect("probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 5);
    for [_, offset, rtt, bound] in &rows {
        assert!(rtt > &0.0 && rtt < &0.05, "loopback rtt {rtt}");
        assert!((bound - rtt / 2.0).abs() <= 1e-9, "{bound} {rtt}");
        // One clock: the true offset is 0, which causality puts within ±bound.
        assert!(
            offset.abs() <= bound + 1e-9,
            "offset {offset} bound {bound}"
        );
    }
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(143), "SIGTERM ends it cleanly: {stderr}");
    assert_eq!(counter(&stderr, "answered"), 40, "{stderr}");
    assert_eq!(counter(&stderr, "dropped"), 0, "{stderr}");
}

#[test]
fn faketime_offset_and_drift_are_recovered() {
    if !require("faketime", "an independently shifted clock for clock probe") {
        return;
    }
    let server = Serve::start();
    // A pure shift: the probe's clock is 2.5 s ahead at every instant, so the server's
    // offset from it is exactly −2.5 s, which must lie within each stated bound.
    let out = std::process::Command::new("faketime")
        .args(["-f", "+2.5s"])
        .arg(vmmon_bin())
        .args(["clock", "probe", &server.addr(), "-n", "10", "-r", "20"])
        .output()
        .expect("faketime probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for [_, offset, _, bound] in rows(&String::from_utf8_lossy(&out.stdout)) {
        assert!(
            (offset + 2.5).abs() <= bound + 2e-9,
            "offset {offset} not within {bound} of −2.5"
        );
    }
    // Shift and 100 ppm fast: the offset falls by 100 µs per second of the run.
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("p.json");
    let out = std::process::Command::new("faketime")
        .args(["-f", "+2.5s x1.0001"])
        .arg(vmmon_bin())
        .args([
            "clock",
            "probe",
            &server.addr(),
            "-n",
            "40",
            "-r",
            "10",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("faketime probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 40);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let ppm = summary["drift"]["ppm"].as_f64().expect("drift");
    assert!(
        (ppm + 100.0).abs() < 10.0,
        "drift {ppm} ppm, want −100 ± 10"
    );
    let (low, high) = (
        summary["drift"]["ppm_low"].as_f64().expect("low"),
        summary["drift"]["ppm_high"].as_f64().expect("high"),
    );
    assert!(low <= ppm && ppm <= high, "{low} {ppm} {high}");
    // The fake clock starts 2.5 s ahead when the process starts, a few ms before the first
    // burst; the line through the offsets goes back to −2.5 s there.
    let first = rows[0];
    assert!(
        (first[1] + 2.5).abs() <= first[3] + 1e-4 * 0.2,
        "first offset {} ± {}",
        first[1],
        first[3]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drift -"), "{stderr}");
    server.stop();
}

#[test]
fn the_server_survives_garbage_and_never_answers_it() {
    let server = Serve::start();
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood.connect(server.addr()).expect("connect");
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut short, mut oversized, mut malformed) = (0u64, 0u64, 0u64);
    let mut valid = [0u8; 48];
    valid[0] = 0x23;
    valid[40] = 1;
    for i in 0..6000u64 {
        let len = match i % 3 {
            0 => (next() % 48) as usize,
            1 => 49 + (next() % 1400) as usize,
            _ => 48,
        };
        let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len == 48 {
            // Random bytes, but never a client request (mode 3 with a transmit time).
            pkt[0] = (pkt[0] & !7) | [0u8, 1, 2, 4, 5, 6, 7][(next() % 7) as usize];
        }
        match len {
            l if l < 48 => short += 1,
            48 => malformed += 1,
            _ => oversized += 1,
        }
        flood.send(&pkt).expect("send");
        if i % 200 == 199 {
            // Paced, so that loopback does not drop what the test counts.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // Client requests with no transmit time are malformed too.
    let mut zero = valid;
    zero[40] = 0;
    flood.send(&zero).expect("send");
    malformed += 1;
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(flood.recv(&mut buf).is_err(), "garbage must get no reply");
    // Still serving.
    let out = vmmon()
        .args(["clock", "probe", &server.addr(), "-n", "2", "-r", "20"])
        .output()
        .expect("probe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(143), "{stderr}");
    // Loopback may drop a flood's datagrams when the socket buffer fills (the server counts
    // only what arrives), never more than were sent.
    for (name, sent) in [
        ("short", short),
        ("oversized", oversized),
        ("malformed", malformed),
    ] {
        let got = counter(&stderr, name);
        assert!(
            got <= sent && got * 10 >= sent * 9,
            "{name}: {got} of {sent}: {stderr}"
        );
    }
    assert_eq!(counter(&stderr, "answered"), 16, "{stderr}");
    assert_eq!(
        counter(&stderr, "received"),
        counter(&stderr, "dropped") + 16,
        "{stderr}"
    );
}

#[test]
fn record_with_a_clock_reference_adds_offset_columns() {
    if !require("faketime", "a recorder whose clock is shifted") {
        return;
    }
    let server = Serve::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("g.csv");
    let out = std::process::Command::new("faketime")
        .args(["-f", "+2.5s"])
        .arg(vmmon_bin())
        .args([
            "record",
            "--rate",
            "10",
            "--period",
            "2",
            "--clock-interval",
            "0.5",
        ])
        .args(["--clock-ref", &server.addr(), "-o"])
        .arg(&trace)
        .output()
        .expect("record");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).expect("trace");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).expect(n);
    let (o, b) = (col("clock_offset_s"), col("clock_bound_s"));
    let mut filled = 0;
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        if cells[o].is_empty() {
            assert!(cells[b].is_empty());
            continue;
        }
        filled += 1;
        let (offset, bound): (f64, f64) =
            (cells[o].parse().expect("o"), cells[b].parse().expect("b"));
        assert!((offset + 2.5).abs() <= bound + 2e-9, "{offset} ± {bound}");
    }
    assert!(
        (3..=6).contains(&filled),
        "{filled} probed rows in 2 s at 0.5 s:\n{text}"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("g.csv.meta.json")).expect("meta"),
    )
    .expect("json");
    assert_eq!(meta["clock_ref"]["server"], server.addr());
    assert!(meta["clock_ref"]["measured"].as_u64().expect("measured") >= 3);
    let kinds: Vec<&str> = meta["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("clock_")))
        .map(|c| c["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["gauge"; 3]);
    server.stop();
}

#[test]
fn clock_errors_name_the_problem() {
    // Nothing listens on this port: bind one, note it, close it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = vmmon()
        .args(["clock", "probe", &format!("127.0.0.1:{port}"), "-n", "1"])
        .output()
        .expect("probe");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "{err}");
    for (args, want) in [
        (vec!["probe", "no-port-here"], "cannot resolve no-port-here"),
        (vec!["probe", "127.0.0.1:1", "--rate", "0"], "--rate 0"),
        (vec!["probe", "127.0.0.1:1", "--burst", "0"], "--burst 0"),
        (vec!["serve", "--listen", "nonsense"], "--listen 'nonsense'"),
    ] {
        let out = vmmon().arg("clock").args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A port already taken is a runtime failure, and says which address.
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = vmmon()
        .args(["clock", "serve", "--listen", &addr])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// The issue's proof end to end: a host recorder on the real clock and a "guest" recorder
/// whose clock libfaketime puts 2.5 s ahead, probing the host's clock; a CPU burst that both
/// see; `vmmon align` puts the burst's onset on the same grid row for both, and without the
/// correction (`--offset vm1=0`) five rows (2.5 s at 2 Hz) apart.
#[test]
fn align_brings_a_shared_cpu_burst_to_the_same_row() {
    if !require("faketime", "a guest recorder with a shifted clock") {
        return;
    }
    let _quiet = crate::util::heavy();
    let server = Serve::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, guest) = (dir.path().join("host.csv"), dir.path().join("vm1.csv"));
    let recorder = |faked: bool, out: &std::path::Path| {
        let mut cmd = if faked {
            let mut c = std::process::Command::new("faketime");
            c.args(["-f", "+2.5s"]).arg(vmmon_bin());
            c
        } else {
            vmmon()
        };
        cmd.args([
            "record",
            "--rate",
            "2",
            "--period",
            "9",
            "--clock-interval",
            "1",
        ])
        .args(["--clock-ref", &server.addr(), "-o"])
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("record")
    };
    let (h, g) = (recorder(false, &host), recorder(true, &guest));
    std::thread::sleep(Duration::from_secs(4));
    let burst = vmmon()
        .args(["load", "const", "2", "-d", "2.5"])
        .output()
        .expect("burst");
    assert!(burst.status.success());
    for child in [h, g] {
        let out = child.wait_with_output().expect("recorder");
        assert!(out.status.success());
    }
    server.stop();
    let onset = |extra: &[&str]| -> (usize, usize) {
        let out = vmmon()
            .arg("align")
            .arg(format!("host={}", host.display()))
            .arg(format!("vm1={}", guest.display()))
            .args([
                "--rate",
                "2",
                "--columns",
                "host.cpu_idle_pct,vm1.cpu_idle_pct",
            ])
            .args(extra)
            .output()
            .expect("align");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        // The first row where the machine is mostly busy (idle below 40%).
        let first_busy = |c: usize| {
            rows.iter()
                .position(|r| r[c].parse::<f64>().is_ok_and(|v| v < 40.0))
                .unwrap_or_else(|| panic!("no burst in column {c}:\n{text}"))
        };
        (first_busy(1), first_busy(2))
    };
    let (h_row, g_row) = onset(&[]);
    assert_eq!(h_row, g_row, "corrected by the clock columns");
    let (h_raw, g_raw) = onset(&["--offset", "vm1=0"]);
    assert_eq!(
        g_raw,
        h_raw + 5,
        "uncorrected, the guest is 2.5 s (5 rows) late"
    );
}

/// Interoperation with an independent NTP implementation (chrony): chronyd as a client measures
/// a `vmmon clock serve` whose clock faketime puts 2.5 s ahead, and `vmmon clock probe`
/// measures a chronyd server whose clock is 2.5 s ahead.
#[test]
fn ntp_interoperates_with_chrony() {
    if !require("chronyd", "an independent NTP client and server")
        || !require("faketime", "a shifted clock")
        || !crate::util::require_root("chronyd runs as root")
    {
        return;
    }
    // chronyd -Q: query once, print the offset, never touch the system clock.
    let serve = Serve::faked("+2.5s");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("chronyd")
        .args(["-Q", "-t", "20", "-u", "root", "-f", "/dev/null"])
        .arg(format!(
            "server 127.0.0.1 port {} iburst maxsamples 4",
            serve.port
        ))
        .output()
        .expect("chronyd -Q");
    serve.stop();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let wrong: f64 = said
        .split("wrong by ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no offset from chronyd: {said}"));
    // chronyd reports how far the local clock is from the server: 2.5 s behind.
    assert!(
        (wrong - 2.5).abs() < 1e-3,
        "chronyd measured {wrong} s: {said}"
    );

    // chronyd as a server (its own clock 2.5 s ahead), vmmon clock probe as the client.
    let conf = dir.path().join("chrony.conf");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = udp.local_addr().expect("addr").port();
    drop(udp);
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nlocal stratum 8\nallow 127.0.0.1\ncmdport 0\n\
             pidfile {0}/chronyd.pid\ndriftfile {0}/drift\n",
            dir.path().display()
        ),
    )
    .expect("conf");
    let chronyd = Guard::spawn(
        std::process::Command::new("faketime")
            .args(["-f", "+2.5s", "chronyd", "-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .stderr(Stdio::null())
            .stdout(Stdio::null()),
    );
    let mut rows = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let out = vmmon()
            .args([
                "clock",
                "probe",
                &format!("127.0.0.1:{port}"),
                "-n",
                "3",
                "-r",
                "10",
            ])
            .output()
            .expect("probe");
        if out.status.success() {
            rows = self::rows(&String::from_utf8_lossy(&out.stdout));
            break;
        }
    }
    let _ = chronyd.signal(libc::SIGTERM).wait();
    assert_eq!(rows.len(), 3, "chronyd never answered");
    for [_, offset, _, bound] in rows {
        assert!((offset - 2.5).abs() <= bound + 2e-9, "{offset} ± {bound}");
    }
}
