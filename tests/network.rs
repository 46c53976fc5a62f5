//! #8 end to end on the namespace testbed: `vmmon probe serve` in every host, `vmmon probe
//! mesh` from one of them, each matrix entry checked against the rates and delays imposed
//! (tbf on every link, the delaying relay in the middle).

use std::collections::HashMap;
use std::time::Duration;

use crate::util::{Guard, heavy, vmmon_bin};
use crate::util_netns::{Link, Testbed, wait_for};

/// Starts an agent in every host, listening on its address.
fn agents(tb: &Testbed) -> Vec<Guard> {
    (0..tb.hosts().len())
        .map(|i| {
            let listen = format!("{}:12310", tb.host(i).addr());
            let mut g = tb.spawn_in(i, vmmon_bin(), ["probe", "serve", "--listen", &listen]);
            let stderr = g.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
            wait_for(stderr, "listening on", Duration::from_secs(10)).expect("agent ready");
            g
        })
        .collect()
}

fn specs(tb: &Testbed) -> Vec<String> {
    (0..tb.hosts().len())
        .map(|i| format!("h{i}={}:12310", tb.host(i).addr()))
        .collect()
}

#[test]
fn mesh_matrices_match_the_imposed_rates_and_delays() {
    if !Testbed::available() {
        return;
    }
    let link = |mbit: u64, ms: u64| Link {
        rate_bit_s: mbit * 1_000_000,
        delay: Duration::from_millis(ms),
    };
    // Unequal links, so that every pair has its own delay and some share a bottleneck.
    let tb = Testbed::with_links(&[link(40, 2), link(20, 4), link(30, 6)]).expect("testbed");
    let _quiet = heavy();
    let _agents = agents(&tb);
    let out = tb
        .host(0)
        .exec(vmmon_bin())
        .args(["probe", "mesh"])
        .args(specs(&tb))
        .args(["-n", "50", "--seconds", "2"])
        .output()
        .expect("mesh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let mut seen: HashMap<(usize, usize, String), f64> = HashMap::new();
    for line in csv.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        let host = |s: &str| s.trim_start_matches('h').parse::<usize>().expect("hN");
        let value: f64 = c[4].parse().unwrap_or_else(|_| panic!("no value: {line}"));
        seen.insert((host(c[1]), host(c[2]), c[3].to_string()), value);
    }
    for s in 0..3 {
        for d in (0..3).filter(|&d| d != s) {
            let get = |m: &str| seen[&(s, d, m.to_string())];
            // Minimum RTT: each way crosses the relay once, held ℓ(s) + ℓ(d).
            let want = tb.rtt(s, d).as_secs_f64();
            let rtt = get("rtt_min");
            eprintln!(
                "h{s}→h{d}: rtt_min {:.3} ms for 2D = {:.3} ms",
                rtt * 1e3,
                want * 1e3
            );
            assert!(
                (want..=want + 1.5e-3).contains(&rtt),
                "h{s}→h{d}: min RTT {rtt} s outside [{want}, {want} + 1.5 ms]"
            );
            assert_eq!(get("loss"), 0.0, "h{s}→h{d}");
            // Bandwidth: the TCP payload rate against the tbf rate of the pair's bottleneck.
            let rate = tb.rate(s, d) as f64 / 8.0;
            let bw = get("bandwidth");
            eprintln!(
                "h{s}→h{d}: {:.2} Mbit/s = {:.1}% of the rate",
                bw * 8e-6,
                100.0 * bw / rate
            );
            assert!(
                (0.85..=1.0).contains(&(bw / rate)),
                "h{s}→h{d}: {bw} B/s for a rate of {rate} B/s"
            );
        }
    }

    // The same as an N×N latency matrix: rows are sources, columns destinations.
    let out = tb
        .host(1)
        .exec(vmmon_bin())
        .args(["probe", "mesh"])
        .args(specs(&tb))
        .args(["-n", "20", "--no-bandwidth", "--matrix", "latency"])
        .output()
        .expect("mesh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0][1..], ["h0", "h1", "h2"], "{text}");
    for (s, row) in rows[1..].iter().enumerate() {
        assert_eq!(row[0], format!("h{s}"));
        for (d, cell) in row[1..].iter().enumerate() {
            if s == d {
                assert_eq!(*cell, "", "diagonal");
                continue;
            }
            let v: f64 = cell.parse().expect("number");
            let want = tb.rtt(s, d).as_secs_f64();
            assert!(
                (want..=want + 1.5e-3).contains(&v),
                "h{s}→h{d}: {v} in {text}"
            );
        }
    }
}
