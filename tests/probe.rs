//! `vmmon probe serve|mesh` on loopback with real sockets: three agents on free ports, the
//! mesh's tidy CSV and matrices, measuring from here, parallel latency, the agent's bounds,
//! and every error a user can cause.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::util::{Server, vmmon};

/// `vmmon probe serve` on a free loopback port.
struct Agent;

impl Agent {
    fn start(extra: &[&str]) -> Server {
        Server::spawn(
            vmmon()
                .args(["probe", "serve", "--listen", "127.0.0.1:0"])
                .args(extra),
        )
    }
}

/// The number after `name ` (a whole word) in the agent's counters line.
fn counter(stats: &str, name: &str) -> u64 {
    let key = format!("{name} ");
    let at = stats
        .match_indices(&key)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || !stats.as_bytes()[i - 1].is_ascii_alphabetic())
        .unwrap_or_else(|| panic!("no {name} in {stats}"));
    stats[at + key.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no count for {name} in {stats}"))
}

fn three() -> [Server; 3] {
    [Agent::start(&[]), Agent::start(&[]), Agent::start(&[])]
}

fn specs(agents: &[Server]) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .zip(agents)
        .map(|(n, a)| format!("{n}={}", a.addr()))
        .collect()
}

fn mesh(args: &[String], extra: &[&str]) -> Output {
    vmmon()
        .args(["probe", "mesh"])
        .args(args)
        .args(extra)
        .output()
        .expect("mesh")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One tidy row.
#[derive(Debug)]
struct Row {
    time: f64,
    src: String,
    dst: String,
    metric: String,
    value: Option<f64>,
    unit: String,
    n: u64,
}

fn tidy(csv: &str) -> Vec<Row> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,src,dst,metric,value,unit,n"));
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 7, "{l}");
            Row {
                time: c[0].parse().expect("time"),
                src: c[1].into(),
                dst: c[2].into(),
                metric: c[3].into(),
                value: (!c[4].is_empty()).then(|| c[4].parse().expect("value")),
                unit: c[5].into(),
                n: c[6].parse().expect("n"),
            }
        })
        .collect()
}

/// A matrix row: the source's name and its cells.
type MatrixRow = (String, Vec<Option<f64>>);

/// The cells of a matrix CSV: the destinations' names and the rows.
fn matrix(csv: &str) -> (Vec<String>, Vec<MatrixRow>) {
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(header[0], "src\\dst");
    let rows = lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), header.len(), "{l}");
            (
                c[0].to_string(),
                c[1..]
                    .iter()
                    .map(|x| (!x.is_empty()).then(|| x.parse().expect("number")))
                    .collect(),
            )
        })
        .collect();
    (header[1..].to_vec(), rows)
}

#[test]
fn a_mesh_of_three_agents_is_complete_and_sane() {
    let _quiet = crate::util::heavy();
    let agents = three();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let out = mesh(
        &specs(&agents),
        &["-n", "10", "--interval", "0.005", "-t", "0.3"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = tidy(&String::from_utf8_lossy(&out.stdout));
    // 6 ordered pairs × (4 latency metrics + bandwidth).
    assert_eq!(rows.len(), 30);
    let mut pairs = std::collections::BTreeSet::new();
    for r in &rows {
        assert!(r.src != r.dst, "{r:?}");
        assert!((r.time - wall).abs() < 30.0, "time {r:?}");
        pairs.insert((r.src.clone(), r.dst.clone()));
        let v = r.value.unwrap_or_else(|| panic!("missing {r:?}"));
        match r.metric.as_str() {
            "rtt_min" | "rtt_p50" => {
                assert_eq!((r.unit.as_str(), r.n), ("s", 10), "{r:?}");
                assert!(v > 0.0 && v < 5e-3, "loopback RTT {r:?}");
            }
            "rtt_p99" => {
                assert_eq!((r.unit.as_str(), r.n), ("s", 10), "{r:?}");
                assert!(v > 0.0 && v < 0.1, "{r:?}");
            }
            "loss" => assert_eq!((v, r.unit.as_str(), r.n), (0.0, "fraction", 10)),
            "bandwidth" => {
                assert_eq!(r.unit, "B/s");
                assert!(v > 20e6, "loopback bandwidth {r:?}");
                // n: the bytes counted; at most 0.3 s at the rate.
                assert!(r.n as f64 <= v * 0.3 * 1.05 && r.n > 0, "{r:?}");
            }
            m => panic!("unknown metric {m}"),
        }
    }
    assert_eq!(pairs.len(), 6);
    // Per pair, min ≤ p50 ≤ p99.
    for (s, d) in &pairs {
        let get = |m: &str| {
            rows.iter()
                .find(|r| &r.src == s && &r.dst == d && r.metric == m)
                .and_then(|r| r.value)
                .expect(m)
        };
        assert!(get("rtt_min") <= get("rtt_p50") && get("rtt_p50") <= get("rtt_p99"));
    }
    // Each agent was the source of 2 latency and 2 bandwidth runs, the sink of 2 transfers,
    // the echo of 2 × (10 probes + 1 uncounted warm-up), and never refused a bulk test: one
    // ran at a time.
    for a in agents {
        let (code, stats) = a.stop();
        assert_eq!(code, Some(143), "{stats}");
        for (name, want) in [
            ("latency", 2),
            ("bandwidth", 2),
            ("sink", 2),
            ("echoed", 22),
            ("busy", 0),
            ("failed", 0),
            ("capped", 0),
        ] {
            assert_eq!(counter(&stats, name), want, "{name}: {stats}");
        }
    }
}

#[test]
fn matrices_have_sources_as_rows_and_an_empty_diagonal() {
    let _quiet = crate::util::heavy();
    let agents = three();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bw.csv");
    let out = mesh(
        &specs(&agents),
        &[
            "--matrix",
            "bandwidth",
            "-t",
            "0.2",
            "-o",
            file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "-o: nothing on stdout");
    let (cols, rows) = matrix(&std::fs::read_to_string(&file).expect("written"));
    assert_eq!(cols, ["a", "b", "c"]);
    assert_eq!(rows.len(), 3);
    for (i, (name, cells)) in rows.iter().enumerate() {
        assert_eq!(name, &cols[i]);
        for (j, v) in cells.iter().enumerate() {
            if i == j {
                assert_eq!(*v, None, "diagonal");
            } else {
                assert!(v.expect("measured") > 20e6, "{name} → {}: {v:?}", cols[j]);
            }
        }
    }
    // A latency matrix measures no bandwidth at all.
    let out = mesh(&specs(&agents), &["--matrix", "latency", "-n", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, rows) = matrix(&String::from_utf8_lossy(&out.stdout));
    for (i, (_, cells)) in rows.iter().enumerate() {
        for (j, v) in cells.iter().enumerate() {
            assert_eq!(v.is_none(), i == j);
            if let Some(v) = v {
                assert!(*v > 0.0 && *v < 5e-3, "{v}");
            }
        }
    }
    for a in agents {
        let (_, stats) = a.stop();
        // Only the bandwidth matrix moved bulk data: 2 transfers into each agent.
        assert_eq!(counter(&stats, "sink"), 2, "{stats}");
        assert_eq!(counter(&stats, "latency"), 2, "{stats}");
    }
}

#[test]
fn from_here_measures_this_machine_to_each_agent() {
    let _quiet = crate::util::heavy();
    let agent = Agent::start(&[]);
    let out = mesh(
        &[format!("solo={}", agent.addr())],
        &["--from-here", "--here-name", "me", "-n", "5", "-t", "0.2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = tidy(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.src == "me" && r.dst == "solo"));
    assert!(rows.iter().all(|r| r.value.is_some()));
    let out = mesh(
        &[format!("solo={}", agent.addr())],
        &["--from-here", "--matrix", "loss", "-n", "5"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "src\\dst,solo\nhere,0\n"
    );
    let (_, stats) = agent.stop();
    // Measured from here: the agent only echoed and sank.
    assert_eq!(counter(&stats, "latency"), 0, "{stats}");
    assert_eq!(counter(&stats, "sink"), 1, "{stats}");
    assert_eq!(
        counter(&stats, "echoed"),
        12,
        "two runs of 5 and a warm-up: {stats}"
    );
}

#[test]
fn latency_pairs_are_measured_in_parallel() {
    let agents = three();
    // 40 probes 10 ms apart: at least 0.39 s per pair, 2.34 s for six pairs in a row.
    let t0 = Instant::now();
    let out = mesh(
        &specs(&agents),
        &["--no-bandwidth", "-n", "40", "--interval", "0.01"],
    );
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(tidy(&String::from_utf8_lossy(&out.stdout)).len(), 24);
    assert!(elapsed < 1.5, "six pairs took {elapsed} s: not in parallel");
    assert!(elapsed >= 0.39, "{elapsed}");
}

/// A control connection with one request line sent; the first reply as JSON.
fn ask(addr: &str, line: &str) -> (TcpStream, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(line.as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("reply");
    (s, serde_json::from_str(&reply).expect("json reply"))
}

#[test]
fn bulk_tests_run_one_at_a_time_and_long_ones_are_cut() {
    let _quiet = crate::util::heavy();
    let agent = Agent::start(&["--max-seconds", "0.5"]);
    // Hold the agent's sink (granted, no data sent yet).
    let (held, grant) = ask(&agent.addr(), "{\"op\":\"sink\",\"seconds\":3600}\n");
    assert_eq!(grant["ok"], true, "{grant}");
    assert_eq!(
        grant["sink"]["seconds"], 0.5,
        "cut to --max-seconds: {grant}"
    );
    let (_, busy) = ask(&agent.addr(), "{\"op\":\"sink\",\"seconds\":1}\n");
    assert_eq!(busy["ok"], false);
    assert_eq!(busy["code"], "busy", "{busy}");
    // A mesh meanwhile gets the busy reply as a missing cell, and says so.
    let spec = format!("x={}", agent.addr());
    let out = mesh(
        std::slice::from_ref(&spec),
        &["--from-here", "--no-latency", "-t", "0.2"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("missing here → x bandwidth"), "{err}");
    assert!(
        err.contains("busy: a bandwidth test is already running"),
        "{err}"
    );
    assert!(err.contains("1 of 1 measurements missing"), "{err}");
    let rows = tidy(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((rows.len(), rows[0].value, rows[0].n), (1, None, 0));
    drop(held);
    // Free again once the holder is gone (the sink sees the close at once); 30 s asked,
    // cut to 0.5 s.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let out = mesh(&[spec], &["--from-here", "--no-latency", "-t", "30"]);
    let elapsed = t0.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(elapsed < 3.0, "30 s asked, 0.5 s allowed, took {elapsed} s");
    assert!(
        stderr(&out).contains("cut the transfer to 0.5 s"),
        "{}",
        stderr(&out)
    );
    let (_, stats) = agent.stop();
    assert_eq!(counter(&stats, "busy"), 2, "{stats}");
    assert_eq!(counter(&stats, "sink"), 2, "{stats}");
}

#[test]
fn garbage_is_dropped_and_counted_and_the_agent_keeps_serving() {
    let agent = Agent::start(&["--request-timeout", "0.3"]);
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood.connect(agent.addr()).expect("connect");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut short, mut oversized, mut malformed) = (0u64, 0u64, 0u64);
    for i in 0..3000u64 {
        let len = match i % 3 {
            0 => (next() % 32) as usize,
            1 => 33 + (next() % 1400) as usize,
            _ => 32,
        };
        let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match len {
            l if l < 32 => short += 1,
            32 => {
                // Half right: the magic and version, but a reply or an unknown kind.
                if i % 2 == 0 {
                    pkt[..6].copy_from_slice(b"VMPE\x01\x02");
                    pkt[6..8].fill(0);
                }
                malformed += 1;
            }
            _ => oversized += 1,
        }
        flood.send(&pkt).expect("send");
        if i % 200 == 199 {
            // Paced, so that loopback does not drop what the test counts.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    flood
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    assert!(
        flood.recv(&mut [0u8; 64]).is_err(),
        "garbage must get no reply"
    );
    // Control garbage: one of each kind per connection.
    let garbage: [&[u8]; 5] = [
        b"GET / HTTP/1.0\r\n\r\n",
        b"\x00\xff\xfe binary\n",
        b"{\"op\":\"sink\",\"seconds\":\"forever\"}\n",
        b"{\"op\":\"latency\",\"target\":\"127.0.0.1:1\",\"count\":5,\"interval\":-1,\"timeout\":1}\n",
        b"[1,2,3]\n",
    ];
    for g in garbage {
        let mut s = TcpStream::connect(agent.addr()).expect("connect");
        s.write_all(g).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.contains("\"code\":\"malformed\""), "{g:?}: {reply}");
    }
    // Longer than 4 KiB without a newline, and a line never finished.
    let mut long = TcpStream::connect(agent.addr()).expect("connect");
    let _ = long.write_all(&[b'x'; 5000]);
    let mut slow = TcpStream::connect(agent.addr()).expect("connect");
    slow.write_all(b"{\"op\":").expect("write");
    let mut reply = String::new();
    slow.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = slow.read_to_string(&mut reply);
    assert!(reply.contains("\"code\":\"timeout\""), "{reply}");
    // A flood of connections that say nothing and close.
    for _ in 0..50 {
        drop(TcpStream::connect(agent.addr()).expect("connect"));
    }
    // Still serving.
    let out = mesh(
        &[format!("x={}", agent.addr())],
        &["--from-here", "-n", "3", "-t", "0.1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    drop(long);
    std::thread::sleep(Duration::from_millis(100));
    let (code, stats) = agent.stop();
    assert_eq!(code, Some(143), "{stats}");
    for (name, sent) in [
        ("short", short),
        ("oversized", oversized),
        ("malformed", malformed),
    ] {
        let got = counter(&stats, name);
        // Loopback may drop datagrams of a flood when the buffer fills, never add any.
        assert!(
            got <= sent && got * 10 >= sent * 9,
            "{name}: {got} of {sent}: {stats}"
        );
    }
    assert_eq!(counter(&stats, "bad requests"), 5, "{stats}");
    assert_eq!(counter(&stats, "too long"), 1, "{stats}");
    assert_eq!(counter(&stats, "timed out"), 1, "{stats}");
    assert_eq!(counter(&stats, "echoed"), 4, "3 and a warm-up: {stats}");
    assert!(counter(&stats, "empty") >= 50, "{stats}");
}

#[test]
fn an_unreachable_agent_is_named_and_the_rest_is_measured() {
    let [a, b] = [Agent::start(&[]), Agent::start(&[])];
    // Refused: nothing listens. Timeout: a listener that never accepts (the kernel completes
    // the handshake, nobody answers).
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let t0 = Instant::now();
    let out = mesh(
        &[
            format!("a={}", a.addr()),
            format!("b={}", b.addr()),
            format!("dead={closed}"),
            format!("mute={silent_addr}"),
        ],
        &["--timeout", "0.5", "-n", "3", "-t", "0.1"],
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "agent mute: {silent_addr}: no answer within 0.500 s (hello)"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("agent dead: cannot connect to {closed}")),
        "{err}"
    );
    // 12 ordered pairs × 2 kinds, of which only a ↔ b (4) were measured.
    assert!(err.contains("20 of 24 measurements missing"), "{err}");
    let rows = tidy(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 12 * 5);
    for r in &rows {
        let measured = matches!((r.src.as_str(), r.dst.as_str()), ("a", "b") | ("b", "a"));
        assert_eq!(r.value.is_some(), measured, "{r:?}");
        if !measured {
            assert_eq!(r.n, 0);
        }
    }
    // The matrix: empty cells for the missing pairs.
    let out = mesh(
        &[format!("a={}", a.addr()), format!("dead={closed}")],
        &["--timeout", "0.5", "--matrix", "latency", "-n", "3"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(2),
        Some("dead,,")
    );
    drop(silent);
}

#[test]
fn usage_errors_name_the_problem() {
    let one = "a=127.0.0.1:1".to_string();
    for (args, want) in [
        (
            vec![one.clone(), "a=127.0.0.1:2".into()],
            "duplicate agent name \"a\"",
        ),
        (vec![one.clone(), "b:127.0.0.1:2".into()], "no '='"),
        (vec![one.clone(), "b=127.0.0.1:port".into()], "bad address"),
        (vec![one.clone(), "b c=127.0.0.1:2".into()], "name \"b c\""),
        (vec![one.clone()], "a mesh needs at least 2"),
        (
            vec![one.clone(), "here=127.0.0.1:2".into(), "--from-here".into()],
            "duplicate agent name \"here\"",
        ),
        (
            vec![
                one.clone(),
                "b=127.0.0.1:2".into(),
                "--no-latency".into(),
                "--no-bandwidth".into(),
            ],
            "nothing to measure",
        ),
        (
            vec![one.clone(), "b=127.0.0.1:2".into(), "-n".into(), "0".into()],
            "--count 0",
        ),
        (
            vec![one.clone(), "b=127.0.0.1:2".into(), "-t".into(), "0".into()],
            "--seconds 0",
        ),
        (
            vec![
                one.clone(),
                "b=127.0.0.1:2".into(),
                "--warmup".into(),
                "9".into(),
            ],
            "--warmup 9",
        ),
        (
            vec![one.clone(), "b=no.such.host.invalid:1".into()],
            "agent b: cannot resolve no.such.host.invalid:1",
        ),
    ] {
        let out = mesh(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let out = vmmon()
        .args(["probe", "serve", "--listen", "nonsense"])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--listen nonsense: give IP:PORT"));
}

#[test]
fn serve_on_an_address_in_use_says_which() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = tcp.local_addr().expect("addr").to_string();
    let out = vmmon()
        .args(["probe", "serve", "--listen", &addr])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "cannot listen on {addr} (TCP): Address already in use"
        )),
        "{}",
        stderr(&out)
    );
    // The reason once, not repeated by the error chain.
    assert_eq!(
        stderr(&out).matches("Address already in use").count(),
        1,
        "{}",
        stderr(&out)
    );
    drop(tcp);
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = udp.local_addr().expect("addr").to_string();
    let out = vmmon()
        .args(["probe", "serve", "--listen", &addr])
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "cannot listen on {addr} (UDP): Address already in use"
        )),
        "{}",
        stderr(&out)
    );
}
