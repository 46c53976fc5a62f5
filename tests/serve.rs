//! `vmmon serve` as a scraper sees it: status codes, content negotiation, limits, concurrent
//! scrapes, a scrape while /proc fails, bind errors; `record --format openmetrics`; and the
//! proof with a real Prometheus scraping it, checked against `vmmon record --raw`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Guard, require, vmmon};

fn fixture() -> [String; 4] {
    let base = format!("{}/testdata/proc/basic/t0", env!("CARGO_MANIFEST_DIR"));
    [
        "--proc-root".into(),
        format!("{base}/proc"),
        "--sys-root".into(),
        format!("{base}/sys"),
    ]
}

/// A running `vmmon serve`, its address, and everything it wrote to stderr so far.
struct Served {
    _guard: Guard,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

/// Starts `vmmon serve --listen 127.0.0.1:0 ARGS` and waits for its "listening on" line.
fn serve<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Served {
    let mut cmd = vmmon();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(&mut cmd);
    let stderr = guard
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let log2 = Arc::clone(&log);
    // Keep draining stderr for the server's whole life: a closed pipe would fail its notes.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_string());
            }
            log2.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("serve did not start: {}", log.lock().unwrap()));
    Served {
        _guard: guard,
        addr: addr.parse().expect("address"),
        stderr: log,
    }
}

/// Sends `request` as is and returns (status, head, body).
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (431) and close before it has read everything.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8(out).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert_eq!(len, body.len(), "Content-Length matches the body");
    assert!(head.contains("\r\nConnection: close"), "{head}");
    (status, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}\r\n");
    raw(addr, req.as_bytes())
}

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn serve_negotiates_the_format_and_answers_other_requests_with_the_right_status() {
    let s = serve(&fixture());
    let (status, head, body) = get(s.addr, "/metrics", Some(PROMETHEUS_ACCEPT));
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE vmmon_cpu_seconds counter\n"));
    assert!(body.contains("vmmon_cpu_seconds_total{mode=\"user\"} "));
    assert!(body.contains("vmmon_disk_read_bytes_total{device=\""));

    let (status, head, body) = get(s.addr, "/metrics?x=1", None);
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("# TYPE vmmon_cpu_seconds_total counter\n"));
    assert!(!body.contains("# EOF"));

    let (status, _, body) = get(s.addr, "/", None);
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");
    let (status, head, _) = raw(
        s.addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    // HEAD is GET without the body: the same status and type, the body's length, no body.
    let head_of = |path: &str| -> (u16, String, usize) {
        let mut c = TcpStream::connect(s.addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(format!("HEAD {path} HTTP/1.1\r\n\r\n").as_bytes())
            .expect("send");
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        let (head, body) = out.split_once("\r\n\r\n").expect("a head");
        assert!(body.is_empty(), "HEAD {path}: a body: {body}");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok());
        (
            status.expect("status"),
            head.to_string(),
            length.expect("a Content-Length"),
        )
    };
    let (status, head, length) = head_of("/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(length > 1000, "{head}");
    assert_eq!(head_of("/nothing").0, 404);
    let (status, _, body) = raw(s.addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, _, body) = raw(s.addr, big.as_bytes());
    assert_eq!(status, 431);
    assert!(body.contains("8192 bytes"), "{body}");
    // Still serving after all that.
    assert_eq!(get(s.addr, "/metrics", None).0, 200);
}

#[test]
fn concurrent_scrapes_each_get_a_whole_page() {
    let s = serve(&fixture());
    let addr = s.addr;
    let reference = get(addr, "/metrics", Some(PROMETHEUS_ACCEPT)).2;
    let shape = |page: &str| -> Vec<String> {
        page.lines()
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect()
    };
    let want = shape(&reference);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| get(addr, "/metrics", Some(PROMETHEUS_ACCEPT)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (status, _, body) in t.join().expect("thread") {
            assert_eq!(status, 200);
            assert!(body.ends_with("# EOF\n"));
            assert_eq!(shape(&body), want, "same series, in the same order");
        }
    }
}

/// `cp -r` of the fixture tree into a temp dir, so a test can change it.
fn copy_fixture(dir: &tempfile::TempDir) -> [String; 4] {
    let base = format!("{}/testdata/proc/basic/t0", env!("CARGO_MANIFEST_DIR"));
    for sub in ["proc", "sys"] {
        let ok = Command::new("cp")
            .args(["-r", &format!("{base}/{sub}")])
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(ok.success());
    }
    let p = |s: &str| dir.path().join(s).to_str().expect("utf-8").to_string();
    [
        "--proc-root".into(),
        p("proc"),
        "--sys-root".into(),
        p("sys"),
    ]
}

#[test]
fn a_scrape_while_a_proc_file_fails_is_a_500_with_the_reason() {
    // The seam: the tree's pressure/cpu is a process's /proc/PID/stat. Once that process is
    // reaped, reading the descriptor vmmon holds open fails with ESRCH, as a real /proc file
    // fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = copy_fixture(&dir);
    let mut child = Command::new("sleep").arg("60").spawn().expect("sleep");
    let psi = dir.path().join("proc/pressure/cpu");
    std::fs::remove_file(&psi).expect("rm");
    std::os::unix::fs::symlink(format!("/proc/{}/stat", child.id()), &psi).expect("symlink");
    let s = serve(&roots);
    assert_eq!(get(s.addr, "/metrics", None).0, 200);
    child.kill().expect("kill");
    child.wait().expect("wait");
    let (status, head, body) = get(s.addr, "/metrics", Some(PROMETHEUS_ACCEPT));
    assert_eq!(status, 500, "{body}");
    assert!(head.contains("Content-Type: text/plain"), "{head}");
    assert!(!body.contains("vmmon_"), "no partial page: {body}");
    assert!(
        body.contains("sampling failed: cannot read") && body.contains("pressure/cpu"),
        "{body}"
    );
    assert!(body.contains("No such process"), "{body}");
    // And again: a failure is reported on every scrape, not once.
    assert_eq!(get(s.addr, "/metrics", None).0, 500);
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("scrape failed"), "{log}");
}

#[test]
fn serve_reports_bind_and_address_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let out = vmmon()
        .args(["serve", "--listen", &addr])
        .args(fixture())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
    let out = vmmon()
        .args(["serve", "--listen", "no-such-host.invalid:x"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--listen 'no-such-host.invalid:x'"), "{err}");
    let out = vmmon()
        .args(["serve", "--proc-root", "/nonexistent"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/stat"), "{err}");
}

#[test]
fn record_writes_one_timestamped_openmetrics_block_per_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("host.om");
    let out = vmmon()
        .args([
            "record",
            "--rate",
            "20",
            "--max",
            "3",
            "--format",
            "openmetrics",
            "-o",
        ])
        .arg(&file)
        .args(fixture())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(text.matches("# EOF").count(), 1);
    assert_eq!(
        text.matches("# TYPE vmmon_cpu_seconds counter\n").count(),
        3
    );
    let stamps: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("vmmon_cpu_seconds_total{mode=\"user\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("timestamp"))
        .collect();
    assert_eq!(stamps.len(), 3);
    assert!(stamps.windows(2).all(|w| w[1] > w[0]), "{stamps:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - stamps[2]).abs() < 60.0,
        "wall-clock seconds: {stamps:?}"
    );

    // promtool's backfill reads it: the file-based use this format is for.
    if require(
        "promtool",
        "backfilling Prometheus from record --format openmetrics",
    ) {
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(dir.path().join("tsdb"))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A free loopback port (bound, then released for the program that will use it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET` on Prometheus's HTTP API: the parsed JSON of a 200 answer, `None` while it is not
/// ready. HTTP/1.0, so that Go answers without chunks and closes the connection.
fn try_api(port: u16, path_and_query: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| serde_json::from_str(body).ok())
        .flatten()
}

fn api(port: u16, path_and_query: &str) -> serde_json::Value {
    try_api(port, path_and_query).unwrap_or_else(|| panic!("Prometheus API {path_and_query}"))
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The raw samples (unix seconds, value) of a range selector.
fn samples(port: u16, selector: &str) -> Vec<(f64, f64)> {
    let v = api(port, &format!("/api/v1/query?query={}", encode(selector)));
    let result = &v["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{selector}: {v}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            (
                p[0].as_f64().expect("time"),
                p[1].as_str().and_then(|s| s.parse().ok()).expect("value"),
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_serve_and_agrees_with_record() {
    if !require("prometheus", "the real scraper of vmmon serve") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A VM without qemu: a process that burns CPU, so its counter moves.
    let vm = Guard::spawn(Command::new("sh").args(["-c", "while :; do :; done"]));
    let pid = vm.id().to_string();
    let csv = dir.path().join("raw.csv");
    let record = Guard::spawn(
        vmmon()
            .args(["record", "--raw", "--rate", "10", "--vm-pid", &pid, "-o"])
            .arg(&csv)
            .stderr(Stdio::null()),
    );
    let s = serve(&["--vm-pid", &pid]);
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - \
             job_name: vmmon\n    static_configs:\n      - targets: ['{}']\n",
            s.addr
        ),
    )
    .unwrap();
    let _prom = Guard::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let user = "vmmon_cpu_seconds_total{mode=\"user\"}";
    let vm_cpu = format!("vmmon_vm_process_seconds_total{{vm=\"pid{pid}\"}}");
    let start = Instant::now();
    // Wait for five scrapes.
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "Prometheus did not scrape 5 times"
        );
        std::thread::sleep(Duration::from_millis(500));
        let query = encode(&format!("count_over_time({user}[1m])"));
        let ready = try_api(port, &format!("/api/v1/query?query={query}")).is_some_and(|v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 5)
        });
        if ready {
            break;
        }
    }
    let targets = api(port, "/api/v1/targets");
    let active = &targets["data"]["activeTargets"];
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{targets}");
    assert_eq!(active[0]["health"], "up", "{targets}");
    assert_eq!(active[0]["lastError"], "", "{targets}");
    let up = api(
        port,
        &format!("/api/v1/query?query={}", encode("up{job=\"vmmon\"}")),
    );
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    let host = samples(port, &format!("{user}[1m]"));
    let guest = samples(port, &format!("{vm_cpu}[1m]"));
    // Let record pass the last scrape, then stop it cleanly.
    std::thread::sleep(Duration::from_millis(600));
    let mut rec = record.signal(libc::SIGINT);
    rec.wait().expect("record");
    drop(vm);
    let text = std::fs::read_to_string(&csv).expect("record's csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"))
    };
    let (t, u, p) = (
        col("time"),
        col("cpu_user_ticks_total"),
        col(&format!("pid{pid}.process_cpu_ns_total")),
    );
    let rows: Vec<(f64, f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |i: usize| f[i].parse::<f64>().expect("number");
            (n(t), n(u), n(p))
        })
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Prometheus stamps a sample when its scrape starts; vmmon reads /proc just after. So
    // the value lies between record's row at or before the stamp and its row a little after.
    let check = |what: &str, series: &[(f64, f64)], value: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let mut checked = 0;
        for &(ts, v) in series {
            // Prometheus may move a stamp by up to 2 ms to align it with the interval.
            let lo = rows.iter().rev().find(|r| r.0 <= ts - 0.01);
            let hi = rows.iter().find(|r| r.0 >= ts + 0.3);
            let (Some(lo), Some(hi)) = (lo, hi) else {
                continue;
            };
            let eps = 1e-9 * v.abs().max(1.0);
            assert!(
                value(lo) - eps <= v && v <= value(hi) + eps,
                "{what} at {ts}: Prometheus {v}, record {} at {} and {} at {}",
                value(lo),
                lo.0,
                value(hi),
                hi.0
            );
            checked += 1;
        }
        assert!(
            checked >= 3,
            "{what}: only {checked} scrapes inside the record run"
        );
    };
    check("host user CPU seconds", &host, &|r: &(f64, f64, f64)| {
        r.1 / tck
    });
    check("VM process CPU seconds", &guest, &|r: &(f64, f64, f64)| {
        r.2 * 1e-9
    });
    // The VM's counter moves (it burns a CPU), so the bracket is not trivially wide.
    let (first, last) = (guest[0], guest[guest.len() - 1]);
    let rate = (last.1 - first.1) / (last.0 - first.0);
    assert!(rate > 0.3, "VM CPU rate {rate} s/s");
    let log = s.stderr.lock().unwrap().clone();
    assert!(!log.contains("scrape failed"), "{log}");
}
