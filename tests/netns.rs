//! The network-namespace testbed against ground truth: round trips measured by an independent
//! program (`vmmon clock probe`, already tested against chrony) are the relay's delay, bulk
//! TCP between two hosts runs at the tbf rate, and nothing is left behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::util::{heavy, vmmon_bin};
use crate::util_netns::{
    Link, Relay, RelayConfig, RelayPort, Testbed, listed_namespaces, parse_port, wait_for,
};

/// What the hosts and the relay may add to a round trip on top of the imposed delays.
const RTT_SLACK: Duration = Duration::from_micros(1500);

/// The TCP payload of a full 1514-byte frame (MSS 1448 with timestamps): the most of a tbf
/// rate that a transfer can show as payload.
const PAYLOAD_SHARE: f64 = 1448.0 / 1514.0;

/// The smallest round trip (seconds) of `vmmon clock probe` from host `from` to a
/// `vmmon clock serve` on host `to`, with every burst's round trip.
fn probe_rtt(tb: &Testbed, from: usize, to: usize) -> (f64, Vec<f64>) {
    let server = format!("{}:12300", tb.host(to).addr());
    let mut serve = tb.spawn_in(to, vmmon_bin(), ["clock", "serve", "--listen", &server]);
    let stderr = serve
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    wait_for(stderr, "listening on", Duration::from_secs(10)).expect("server ready");
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("probe.json");
    let out = tb
        .host(from)
        .exec(vmmon_bin())
        .args([
            "clock", "probe", &server, "-n", "5", "-r", "4", "--burst", "8",
        ])
        .args(["--timeout", "1", "--json"])
        .arg(&json)
        .output()
        .expect("run vmmon clock probe");
    assert!(
        out.status.success(),
        "probe {from}→{to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("probe JSON")).expect("JSON");
    let min = summary["min_rtt_s"].as_f64().expect("min_rtt_s");
    let bursts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(2)
                .and_then(|r| r.parse().ok())
                .expect("rtt")
        })
        .collect();
    (min, bursts)
}

/// Checks the round trip between two hosts against the delay the relay imposes.
fn assert_rtt(tb: &Testbed, from: usize, to: usize) {
    let want = tb.rtt(from, to).as_secs_f64();
    let (min, bursts) = probe_rtt(tb, from, to);
    eprintln!(
        "rtt {from}→{to}: min {:.3} ms over {} bursts, imposed {:.3} ms (+{:.0} µs)",
        min * 1e3,
        bursts.len(),
        want * 1e3,
        (min - want) * 1e6
    );
    assert!(bursts.len() >= 4, "bursts answered: {bursts:?}");
    // The relay holds each frame at least its delay: no round trip can be shorter.
    for r in &bursts {
        assert!(*r >= want, "a round trip {r} s under the imposed {want} s");
    }
    assert!(
        min <= want + RTT_SLACK.as_secs_f64(),
        "min rtt {min} s over the imposed {want} s + {RTT_SLACK:?}"
    );
}

/// Bulk TCP from host `from` to host `to` for `secs`: payload bits per second at the receiver,
/// from the first read to the last.
fn bulk_tcp(tb: &Testbed, from: usize, to: usize, secs: Duration) -> f64 {
    let addr = SocketAddr::new(tb.host(to).addr().into(), 5001);
    let listener = tb.host(to).run(|| TcpListener::bind(addr)).expect("listen");
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        let (mut first, mut last, mut bytes) = (None, Instant::now(), 0u64);
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            last = Instant::now();
            // The first read starts the clock: its bytes arrived before it.
            if first.is_none() {
                first = Some(last);
            } else {
                bytes += n as u64;
            }
        }
        (bytes, last - first.expect("some data"))
    });
    let mut stream = tb
        .host(from)
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .expect("connect");
    let chunk = vec![0x5au8; 1 << 16];
    let end = Instant::now() + secs;
    while Instant::now() < end {
        stream.write_all(&chunk).expect("send");
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let (bytes, took) = sink.join().expect("sink");
    drop(stream);
    bytes as f64 * 8.0 / took.as_secs_f64()
}

/// Checks bulk TCP from one host to another against the tbf rate of the pair.
fn assert_rate(tb: &Testbed, from: usize, to: usize) {
    let rate = tb.rate(from, to) as f64;
    let got = bulk_tcp(tb, from, to, Duration::from_secs(3));
    eprintln!(
        "tcp {from}→{to}: {:.2} Mbit/s payload ({:.1}% of the {:.0} Mbit/s tbf rate; frames \
         {:.1}%)",
        got / 1e6,
        100.0 * got / rate,
        rate / 1e6,
        100.0 * got / rate / PAYLOAD_SHARE
    );
    assert!(
        (0.85 * rate..=rate).contains(&got),
        "{from}→{to}: {got} bit/s against a rate of {rate}"
    );
}

/// Checks that the relay saw no frame it could not forward, and how late it sent.
fn assert_relay_clean(tb: &Testbed) {
    let s = tb.relay_stats();
    eprintln!("relay: {s}");
    assert!(s.received > 0, "{s}");
    assert_eq!(
        s.oversize, 0,
        "frames over the MTU (offloads left on?): {s}"
    );
    assert_eq!(s.queue_full, 0, "{s}");
    assert_eq!(s.runt, 0, "{s}");
}

#[test]
fn round_trips_are_twice_the_delay_and_tcp_runs_at_the_rate() {
    if !Testbed::available() {
        return;
    }
    let delay = Duration::from_millis(10);
    let tb = Testbed::new(3, 30_000_000, delay).expect("testbed");
    assert_eq!(tb.rtt(0, 2), 2 * delay);
    let _quiet = heavy();
    assert_rtt(&tb, 0, 1);
    assert_rtt(&tb, 2, 0);
    assert_rate(&tb, 0, 1);
    assert_relay_clean(&tb);
}

#[test]
fn unequal_links_give_each_pair_its_delay_and_rate() {
    if !Testbed::available() {
        return;
    }
    let link = |mbit: u64, ms: u64| Link {
        rate_bit_s: mbit * 1_000_000,
        delay: Duration::from_millis(ms),
    };
    // Round trips 2(ℓi + ℓj): 8, 14 and 18 ms; rates min(ri, rj).
    let tb = Testbed::with_links(&[link(40, 1), link(20, 3), link(30, 6)]).expect("testbed");
    let _quiet = heavy();
    assert_rtt(&tb, 0, 1);
    assert_rtt(&tb, 0, 2);
    assert_rtt(&tb, 2, 1);
    // Host 1's downlink (the relay's port) is the bottleneck one way, its uplink the other.
    assert_rate(&tb, 0, 1);
    assert_rate(&tb, 1, 2);
    assert_relay_clean(&tb);
}

#[test]
fn a_full_relay_queue_drops_and_counts() {
    if !Testbed::available() {
        return;
    }
    let link = Link {
        rate_bit_s: 20_000_000,
        delay: Duration::from_millis(10),
    };
    // 20 ms hold at 20 Mbit/s is 50 kB in flight; the queue takes 30 kB.
    let tb = Testbed::with_relay(&[link, link], |c| c.queue_bytes = 30_000).expect("testbed");
    let to = SocketAddr::new(tb.host(1).addr().into(), 5002);
    let sink = tb.host(1).run(|| UdpSocket::bind(to)).expect("bind");
    sink.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let source = tb
        .host(0)
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("bind");
    let payload = [7u8; 1400];
    let sent = (0..600)
        .filter(|_| source.send_to(&payload, to).is_ok())
        .count() as u64;
    let mut arrived = 0u64;
    let mut buf = [0u8; 2048];
    while sink.recv(&mut buf).is_ok() {
        arrived += 1;
    }
    let s = tb.relay_stats();
    eprintln!("udp: {sent} sent, {arrived} arrived; relay: {s}");
    assert!(s.queue_full > 0, "{s}");
    // Two ports: every frame has one copy, forwarded or dropped (none held after 500 ms).
    assert_eq!(s.received, s.forwarded + s.dropped() + s.filtered, "{s}");
    // The datagrams that arrived are the relay's forwarded frames but ARP's. (Most of the
    // 600 never reach the relay: host 0's own tbf queue drops them, and UDP is not told.)
    assert!(
        arrived > 0 && arrived <= s.forwarded,
        "{arrived} arrived; {s}"
    );
    assert!(s.forwarded - arrived <= 4, "{arrived} arrived; {s}");
}

#[test]
fn a_testbed_leaves_nothing_behind_even_on_panic() {
    if !Testbed::available() {
        return;
    }
    let mut names = Vec::new();
    let mut pid = 0;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let tb = Testbed::new(3, 20_000_000, Duration::from_millis(2)).expect("testbed");
        names = tb.namespaces();
        assert_eq!(names.len(), 4);
        assert_eq!(listed_namespaces(tb.mid()), [tb.mid()]);
        // A process left running inside: the testbed, not its guard, must end it.
        let g = tb.spawn_in(1, "sleep", ["60"]);
        pid = g.id();
        std::mem::forget(g);
        // Until `ip netns exec` has entered the namespace, the testbed cannot see it there.
        let ns = tb.host(1).ns().to_string();
        let inside = || {
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .expect("ip netns pids");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .any(|p| p == pid.to_string())
        };
        let end = Instant::now() + Duration::from_secs(5);
        while !inside() {
            assert!(Instant::now() < end, "sleep never entered {ns}");
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("a test fails with its testbed up");
    }));
    assert!(caught.is_err());
    for n in &names {
        assert!(listed_namespaces(n).is_empty(), "{n} is still listed");
        assert!(!std::path::Path::new("/run/netns").join(n).exists(), "{n}");
    }
    // Killed; reap it so it does not stay a zombie.
    let mut status = 0;
    // SAFETY: waitpid on our own child, status is a valid int.
    let rc = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(rc, pid as i32);
    assert!(libc::WIFSIGNALED(status), "status {status}");
}

#[test]
fn a_testbed_rejects_fewer_than_two_hosts() {
    let e = Testbed::new(1, 20_000_000, Duration::from_millis(1))
        .err()
        .expect("one host");
    assert!(e.to_string().contains("at least two hosts"), "{e:#}");
}

#[test]
fn the_relay_names_a_missing_port() {
    let port = |name: &str| RelayPort {
        name: name.into(),
        delay: Duration::ZERO,
    };
    let e = Relay::start(RelayConfig::new(vec![port("vmmon-none0"), port("lo")]))
        .err()
        .expect("no such port");
    assert!(
        e.to_string()
            .contains("port vmmon-none0: no such interface"),
        "{e}"
    );
    let e = Relay::start(RelayConfig::new(vec![port("lo")]))
        .err()
        .expect("one port");
    assert!(e.to_string().contains("at least two ports"), "{e}");
}

#[test]
fn relay_ports_parse_with_their_link_delays() {
    let d = Duration::from_millis(5);
    let p = parse_port("p0", d).expect("plain");
    assert_eq!((p.name.as_str(), p.delay), ("p0", d));
    let p = parse_port("p1=2.5", d).expect("with delay");
    assert_eq!(
        (p.name.as_str(), p.delay),
        ("p1", Duration::from_micros(2500))
    );
    for (arg, msg) in [
        ("p0=x", "p0=x: the delay after = must be milliseconds"),
        ("p0=-1", "p0=-1: give a delay of 0 to 10000 ms"),
        ("p0=inf", "p0=inf: give a delay of 0 to 10000 ms"),
        ("=3", "=3: not an interface name"),
        (
            "a-very-long-name0",
            "a-very-long-name0: not an interface name",
        ),
    ] {
        assert_eq!(parse_port(arg, d).err().as_deref(), Some(msg), "{arg}");
    }
}
