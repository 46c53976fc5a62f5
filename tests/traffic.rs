//! `vmmon traffic` and `vmmon topo`: pattern recognition on synthetic matrices (every
//! pattern, several sizes, shuffled labels, weak noise), thresholds, the example matrices of
//! testdata/topo, every input error, the frame parser on captured bytes, and a real capture
//! among four network namespaces on a bridge (root only) whose matrix `topo` calls a ring.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use vmmon::net::topo::{self, Graph, Matrix, Options, Pattern};
use vmmon::net::traffic::{Frame, IpPacket, Link, parse_frame};

use crate::util::{self, vmmon};

/// splitmix64: deterministic draws for the synthetic matrices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

/// A matrix whose strong pairs are `g`'s edges (0.5 to 1 MB/s, split at random between the
/// directions) and whose other pairs carry, half of them, under 1% of that each way.
fn matrix_of(g: &Graph, rng: &mut Rng, noise: bool) -> Matrix {
    let n = g.n();
    let mut values = vec![0.0; n * n];
    for (a, b) in g.edges() {
        let w = 0.5e6 + 0.5e6 * rng.unit();
        let f = rng.unit();
        values[a * n + b] = w * f;
        values[b * n + a] = w * (1.0 - f);
    }
    if noise {
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    // Self traffic is ignored whatever its size.
                    values[a * n + b] = 2e6 * rng.unit();
                } else if !g.has_edge(a, b) && rng.unit() < 0.5 {
                    values[a * n + b] = 0.01e6 * rng.unit();
                }
            }
        }
    }
    Matrix {
        names: (0..n).map(|k| format!("n{k}")).collect(),
        values,
    }
}

fn random_tree(n: usize, rng: &mut Rng) -> Graph {
    let mut g = Graph::new(n);
    for v in 1..n {
        g.add_edge(rng.below(v), v);
    }
    g
}

/// Rows × columns of a mesh or torus.
type Shape = Option<(usize, usize)>;

#[test]
fn every_pattern_is_recognised_whatever_the_labels() {
    let mut rng = Rng(8);
    let mut cases: Vec<(Pattern, usize, Shape)> = Vec::new();
    for n in [3, 4, 5, 8, 13, 24] {
        cases.push((Pattern::Ring, n, None));
    }
    for n in [2, 3, 5, 8] {
        cases.push((Pattern::AllToAll, n, None));
    }
    for n in [3, 5, 9, 17] {
        cases.push((Pattern::Star, n, None));
    }
    for n in [2, 4, 7, 16] {
        cases.push((Pattern::Line, n, None));
    }
    for n in [5, 7, 10, 15] {
        cases.push((Pattern::BinaryTree, n, None));
    }
    for (r, c) in [(2, 2), (2, 3), (3, 4), (4, 4), (5, 6)] {
        cases.push((Pattern::Mesh, r * c, Some((r, c))));
    }
    for (r, c) in [(3, 3), (3, 4), (4, 4), (4, 5)] {
        cases.push((Pattern::Torus, r * c, Some((r, c))));
    }
    for n in [6, 9, 20] {
        cases.push((Pattern::Tree, n, None));
    }
    for (pattern, n, shape) in cases {
        for trial in 0..2 {
            let g = match pattern {
                Pattern::Tree => random_tree(n, &mut rng),
                p => p.graph(n, shape).expect("pattern graph"),
            };
            let g = g.permuted(&rng.permutation(n));
            let m = matrix_of(&g, &mut rng, true);
            let t = topo::infer(&m, &Options::default()).expect("infer");
            let what = format!(
                "{} n={n} trial {trial}: {}",
                pattern.name(),
                topo::describe(&t)
            );
            assert_eq!(t.edges.len(), g.edge_count(), "{what}");
            assert_eq!(t.score, 1.0, "{what}");
            assert!(t.ties.contains(&pattern), "{what}");
            // The most specific of the equal patterns is the verdict.
            assert_eq!(t.pattern, t.ties[0].name(), "{what}");
            let c = t
                .candidates
                .iter()
                .find(|c| c.pattern == pattern)
                .expect("candidate");
            assert!(c.optimal, "{what}");
            assert!((c.weight_covered - 1.0).abs() < 1e-12, "{what}");
            if let Some((r, cols)) = shape {
                assert_eq!(
                    c.shape.as_deref(),
                    Some(format!("{r}x{cols}").as_str()),
                    "{what}"
                );
            }
            // From 5 nodes on, only the family "any tree" also fits a tree-shaped pattern;
            // everything else scores lower.
            if n >= 5 && pattern != Pattern::Tree {
                for other in &t.candidates {
                    if other.pattern != pattern && other.pattern != Pattern::Tree {
                        assert!(
                            other.score < 1.0,
                            "{} also scores 1: {what}",
                            other.pattern.name()
                        );
                    }
                }
            }
            // The mapping found really lays the pattern onto the kept edges.
            if let (Some(map), Some(pg)) = (&c.mapping, pattern.graph(n, shape)) {
                let index = |s: &str| m.names.iter().position(|x| x == s).expect("node");
                for (a, b) in pg.edges() {
                    assert!(g.has_edge(index(&map[a]), index(&map[b])), "{what}");
                }
            }
        }
    }
}

#[test]
fn extra_and_missing_edges_lower_the_score() {
    let mut rng = Rng(3);
    // A ring of 10 with one chord as strong as the ring: 10 of 11 edges agree.
    let mut g = Pattern::Ring.graph(10, None).expect("ring");
    g.add_edge(0, 5);
    let t = topo::infer(&matrix_of(&g, &mut rng, true), &Options::default()).expect("infer");
    assert_eq!(t.pattern, "ring", "{}", topo::describe(&t));
    assert!((t.score - 10.0 / 11.0).abs() < 1e-12, "{}", t.score);
    // A 4x4 mesh with one link gone: 23 of 24 pattern edges are there.
    let mesh = Pattern::Mesh.graph(16, Some((4, 4))).expect("mesh");
    let mut g = Graph::new(16);
    for (a, b) in mesh.edges().into_iter().skip(1) {
        g.add_edge(a, b);
    }
    let g = g.permuted(&rng.permutation(16));
    let t = topo::infer(&matrix_of(&g, &mut rng, true), &Options::default()).expect("infer");
    assert_eq!(t.pattern, "mesh", "{}", topo::describe(&t));
    assert!((t.score - 23.0 / 24.0).abs() < 1e-12, "{}", t.score);
    // A dense random graph is no pattern: below the minimum score it is unknown.
    let mut g = Graph::new(9);
    for a in 0..9 {
        for b in a + 1..9 {
            if rng.unit() < 0.5 {
                g.add_edge(a, b);
            }
        }
    }
    let t = topo::infer(&matrix_of(&g, &mut rng, false), &Options::default()).expect("infer");
    assert_eq!(t.pattern, "unknown", "{}", topo::describe(&t));
    assert!(t.score < 0.75);
}

/// Large patterns with strong extra and missing edges: the search finds a mapping at least as
/// good as the planted one.
#[test]
fn noisy_large_patterns_are_found() {
    let mut rng = Rng(21);
    let cases: [(Pattern, usize, Shape, usize, usize); 4] = [
        (Pattern::Mesh, 64, Some((8, 8)), 3, 3),
        (Pattern::Torus, 36, Some((6, 6)), 2, 2),
        // A ring or a tree missing an edge is another pattern (a line, a forest): extra
        // edges only.
        (Pattern::Ring, 40, None, 0, 2),
        (Pattern::BinaryTree, 31, None, 0, 2),
    ];
    for (pattern, n, shape, missing, extra) in cases {
        let pg = pattern.graph(n, shape).expect("pattern");
        let mut edges = pg.edges();
        for _ in 0..missing {
            let k = rng.below(edges.len());
            edges.swap_remove(k);
        }
        let mut g = Graph::new(n);
        for (a, b) in &edges {
            g.add_edge(*a, *b);
        }
        let mut added = 0;
        while added < extra {
            let (a, b) = (rng.below(n), rng.below(n));
            if a != b && !pg.has_edge(a, b) && !g.has_edge(a, b) {
                g.add_edge(a, b);
                added += 1;
            }
        }
        let g = g.permuted(&rng.permutation(n));
        let m = matrix_of(&g, &mut rng, true);
        if let Ok(dir) = std::env::var("VMMON_DUMP") {
            let mut text = format!("x,{}\n", m.names.join(","));
            for i in 0..n {
                text.push_str(&m.names[i]);
                for j in 0..n {
                    text.push_str(&format!(",{}", m.get(i, j)));
                }
                text.push('\n');
            }
            std::fs::write(format!("{dir}/{}{n}.csv", pattern.name()), text).expect("dump");
        }
        let t = topo::infer(&m, &Options::default()).expect("infer");
        let planted = (pg.edge_count() - missing) as f64
            / (g.edge_count() + pg.edge_count() - (pg.edge_count() - missing)) as f64;
        let c = t
            .candidates
            .iter()
            .find(|c| c.pattern == pattern)
            .expect("candidate");
        assert!(
            c.score >= planted - 1e-12,
            "{} n={n}: {} < planted {planted}\n{}",
            pattern.name(),
            c.score,
            topo::describe(&t)
        );
        assert_eq!(t.pattern, pattern.name(), "{}", topo::describe(&t));
    }
}

#[test]
fn the_threshold_decides_which_edges_count() {
    // Six nodes: a ring at weight 1 and the chords i–(i+2) at weight 0.3.
    let n = 6;
    let mut values = vec![0.0; n * n];
    for i in 0..n {
        values[i * n + (i + 1) % n] = 1000.0;
        values[i * n + (i + 2) % n] = 300.0;
    }
    let m = Matrix {
        names: (0..n).map(|k| format!("v{k}")).collect(),
        values,
    };
    let at = |threshold: f64| {
        let opts = Options {
            threshold,
            ..Options::default()
        };
        topo::infer(&m, &opts).expect("infer")
    };
    let t = at(0.5);
    assert_eq!(
        (t.pattern.as_str(), t.score, t.edges.len()),
        ("ring", 1.0, 6)
    );
    assert_eq!(t.pruned_edges, 6);
    // At exactly the chords' weight they are kept (≥ threshold): a circulant, not a ring.
    let t = at(0.3);
    assert_eq!(t.edges.len(), 12);
    assert!(t.score < 1.0);
    let ring = t
        .candidates
        .iter()
        .find(|c| c.pattern == Pattern::Ring)
        .expect("ring");
    assert_eq!(ring.score, 0.5);
    // Threshold 1 keeps only the heaviest pairs (all ring edges weigh the same here).
    assert_eq!(at(1.0).edges.len(), 6);
    // Max instead of sum: the same here, since each pair has one direction only.
    let opts = Options {
        threshold: 0.5,
        symmetrize: topo::Symmetrize::Max,
        ..Options::default()
    };
    assert_eq!(topo::infer(&m, &opts).expect("infer").pattern, "ring");
    // A node whose every pair falls below the threshold is isolated and left out.
    let mut m2 = m.clone();
    m2.names.push("quiet".into());
    let n2 = n + 1;
    let mut v = vec![0.0; n2 * n2];
    for i in 0..n {
        for j in 0..n {
            v[i * n2 + j] = m.values[i * n + j];
        }
    }
    v[n2 + n] = 5.0;
    m2.values = v;
    let t = topo::infer(
        &m2,
        &Options {
            threshold: 0.5,
            ..Options::default()
        },
    )
    .expect("infer");
    assert_eq!(t.isolated, vec!["quiet"]);
    assert_eq!((t.pattern.as_str(), t.score), ("ring", 1.0));
}

#[test]
fn the_example_matrices_give_the_recorded_results() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/topo");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/topo")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    entries.sort();
    for csv in entries {
        let stem = csv
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let json = tmp.path().join(format!("{stem}.json"));
        let svg = tmp.path().join(format!("{stem}.svg"));
        let out = vmmon()
            .arg("topo")
            .arg(&csv)
            .arg("--json")
            .arg(&json)
            .arg("--svg")
            .arg(&svg)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
        let want_path = dir.join(format!("{stem}.json"));
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&want_path).expect("expected json"))
                .expect("parse expected");
        assert_eq!(
            got,
            want,
            "{stem}: vmmon topo differs from {}",
            want_path.display()
        );
        // The verdict is the one the file is named after.
        let verdict = got["pattern"].as_str().expect("pattern");
        assert!(stem.starts_with(verdict), "{stem}: {verdict}");
        let picture = std::fs::read_to_string(&svg).expect("svg");
        assert!(picture.starts_with("<svg"), "{stem}");
        for node in got["nodes"].as_array().expect("nodes") {
            let name = node.as_str().expect("name");
            assert!(
                picture.contains(&format!(">\n{name}\n<")),
                "{stem}: label {name}"
            );
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} example matrices");
    // Standard input, and JSON on standard output by default.
    let ring = std::fs::read(dir.join("ring8.csv")).expect("ring8");
    let out = run_with_stdin(vmmon().args(["topo", "-"]), &ring);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["pattern"], "ring");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("topo: best: ring (score 1.000)"), "{err}");
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn topo_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "rows.csv",
            "src\\dst,a,b,c\na,0,1,2\nb,1,0,2\n",
            "rows.csv: not square: the header names 3 columns but there are 2 rows (no row for c)",
        ),
        (
            "cells.csv",
            "src\\dst,a,b\na,0,1\nb,1\n",
            "cells.csv:3: not square: row 'b' has 1 value(s), the header names 2 columns",
        ),
        (
            "name.csv",
            "src\\dst,a,b\na,0,1\nx,1,0\n",
            "name.csv:3: row 'x' is not one of the header's names (a, b)",
        ),
        (
            "twice.csv",
            "src\\dst,a,b\na,0,1\na,1,0\n",
            "twice.csv:3: row 'a' appears twice (first on line 2)",
        ),
        (
            "dupcol.csv",
            "src\\dst,a,a\na,0,1\n",
            "dupcol.csv:1:3: column 'a' appears twice",
        ),
        (
            "text.csv",
            "src\\dst,a,b\na,0,1\nb,fast,0\n",
            "text.csv:3:2: 'fast' is not a number",
        ),
        (
            "neg.csv",
            "src\\dst,a,b\na,0,-5\nb,1,0\n",
            "neg.csv:2:3: -5 is negative",
        ),
        (
            "nan.csv",
            "src\\dst,a,b\na,0,NaN\nb,1,0\n",
            "nan.csv:2:3: NaN is not a finite number",
        ),
        (
            "zero.csv",
            "src\\dst,a,b\na,7,0\nb,,0\n",
            "every entry off the diagonal is zero",
        ),
        (
            "one.csv",
            "src\\dst,a\na,1\n",
            "one.csv:1: the header names 1 node(s); a topology needs at least 2",
        ),
        ("empty.csv", "", "empty.csv: empty: no header row"),
    ];
    for (name, text, want) in cases {
        let path = util::write_file(&dir, name, text);
        let out = vmmon().args(["topo", &path]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    let ok = util::write_file(&dir, "ok.csv", "src\\dst,a,b\na,0,1\nb,1,0\n");
    for (args, want) in [
        (
            vec!["--threshold", "1.5"],
            "--threshold 1.5 must be between 0 and 1",
        ),
        (
            vec!["--min-score", "2"],
            "--min-score 2 must be between 0 and 1",
        ),
    ] {
        let out = vmmon()
            .args(["topo", &ok])
            .args(&args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{err}");
    }
    let out = vmmon()
        .args(["topo", "/nonexistent/m.csv"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/m.csv"));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Frames captured on the loopback with an AF_PACKET socket (UDP "vmmon" to 127.0.0.1 and
/// to ::1, port 41999), and variations of them.
#[test]
fn the_header_parser_reads_captured_frames() {
    let v4 = hex(
        "000000000000000000000000080045000021996840004011a3617f0000017f000001871ea40f000dfe20766d6d6f6e",
    );
    let v6 = hex(
        "00000000000000000000000086dd600241e5000d11400000000000000000000000000000000100000000000000000000000000000001a265a40f000d0020766d6d6f6e",
    );
    let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
    let want4 = Frame::Ip(IpPacket {
        src: ip("127.0.0.1"),
        dst: ip("127.0.0.1"),
        len: 33,
    });
    let want6 = Frame::Ip(IpPacket {
        src: ip("::1"),
        dst: ip("::1"),
        len: 53,
    });
    assert_eq!(parse_frame(&v4, v4.len(), Link::Ethernet), want4);
    assert_eq!(parse_frame(&v6, v6.len(), Link::Ethernet), want6);
    // Only the headers are needed: a 60-byte prefix of the frame gives the same answer.
    assert_eq!(parse_frame(&v6[..60], v6.len(), Link::Ethernet), want6);
    // An 802.1Q tag, then 802.1ad + 802.1Q.
    let mut tagged = v4[..12].to_vec();
    tagged.extend(hex("81000064"));
    tagged.extend(&v4[12..]);
    assert_eq!(parse_frame(&tagged, tagged.len(), Link::Ethernet), want4);
    let mut qinq = v4[..12].to_vec();
    qinq.extend(hex("88a8000a81000064"));
    qinq.extend(&v4[12..]);
    assert_eq!(parse_frame(&qinq, qinq.len(), Link::Ethernet), want4);
    // A tun device: no link header.
    assert_eq!(parse_frame(&v4[14..], v4.len() - 14, Link::RawIp), want4);
    assert_eq!(parse_frame(&v6[14..], v6.len() - 14, Link::RawIp), want6);
    // Ethernet padding to 60 bytes does not count: the IP length does.
    let mut padded = v4.clone();
    padded.resize(60, 0);
    assert_eq!(parse_frame(&padded, 60, Link::Ethernet), want4);
    // A GSO super-packet over 64 KiB has total length 0: the frame's length counts.
    let mut big = v4.clone();
    big[16] = 0;
    big[17] = 0;
    let Frame::Ip(p) = parse_frame(&big, 100_014, Link::Ethernet) else {
        panic!("not IP");
    };
    assert_eq!(p.len, 100_000);
    // ARP is not IP; truncated IP headers are malformed.
    let arp = hex(concat!(
        "ffffffffffff",
        "020000000001",
        "0806",
        "0001",
        "0800",
        "06",
        "04",
        "0001",
        "020000000001",
        "0a0a0001",
        "000000000000",
        "0a0a0002"
    ));
    assert_eq!(parse_frame(&arp, arp.len(), Link::Ethernet), Frame::NotIp);
    assert_eq!(
        parse_frame(&v4[..30], v4.len(), Link::Ethernet),
        Frame::Malformed
    );
    assert_eq!(
        parse_frame(&v6[..50], v6.len(), Link::Ethernet),
        Frame::Malformed
    );
    assert_eq!(parse_frame(&v4[..10], 10, Link::Ethernet), Frame::NotIp);
    assert_eq!(parse_frame(&v4, v4.len(), Link::Other), Frame::NotIp);
}

#[test]
fn traffic_usage_errors() {
    for (args, want, code) in [
        (vec!["--iface", "lo"], "'lo' is not NAME=IFACE", 2),
        (
            vec!["--iface", "a=lo", "--name", "10.0.0=x"],
            "is not an IP address",
            2,
        ),
        (
            vec!["--iface", "a=lo", "--interval", "1"],
            "--interval needs --format tidy",
            2,
        ),
        (
            vec!["--iface", "a=lo", "--iface", "b=lo", "-d", "0.1"],
            "interface lo is given twice",
            2,
        ),
        (
            vec!["--iface", "a=vmmon-none0", "-d", "0.1"],
            "no network interface named 'vmmon-none0' (there are: ",
            1,
        ),
        (
            vec!["--iface", "a=lo@vmmon-no-such-ns", "-d", "0.1"],
            "cannot open network namespace /run/netns/vmmon-no-such-ns",
            1,
        ),
    ] {
        let out = vmmon().arg("traffic").args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn traffic_without_cap_net_raw_says_so() {
    // As root, drop CAP_NET_RAW from the bounding set (root regains only what is in it);
    // as anyone else the capability is missing anyway.
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        if !util::require("setpriv", "drops CAP_NET_RAW for the permission test") {
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw"])
            .arg(util::vmmon_bin());
        c
    } else {
        vmmon()
    };
    let out = cmd
        .args(["traffic", "--iface", "host=lo", "-d", "0.1"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("capturing needs CAP_NET_RAW"), "{err}");
}

/// Network namespaces, a bridge and its ports made for one test, removed on drop (also when
/// the test fails half-way).
struct Testbed {
    netns: Vec<String>,
    links: Vec<String>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends inside it, and so their peers.
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on a valid descriptor changes only this thread's namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Sends `count` UDP datagrams of `payload` bytes from namespace `ns` to `to`, in bursts
/// small enough that no queue on the way drops any.
fn send_udp(ns: &str, to: SocketAddr, count: usize, payload: usize) {
    in_netns(ns, || {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("addr")
        } else {
            "[::]:0".parse().expect("addr")
        };
        let s = std::net::UdpSocket::bind(bind).expect("bind");
        let buf = vec![0x5Au8; payload];
        for k in 0..count {
            s.send_to(&buf, to).expect("send");
            if k % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
}

#[test]
fn traffic_among_four_namespaces_counts_each_packet_once_and_is_a_ring() {
    if !util::require_root("creates network namespaces and captures packets")
        || !util::require(
            "ip",
            "creates the namespaces, veth pairs and bridge (iproute2)",
        )
    {
        return;
    }
    let tag = std::process::id() % 100_000;
    let bridge = format!("vtb{tag}");
    let mut bed = Testbed {
        netns: Vec::new(),
        links: vec![bridge.clone()],
    };
    ip(&["link", "add", &bridge, "type", "bridge"]);
    ip(&["link", "set", &bridge, "addrgenmode", "none"]);
    ip(&["link", "set", &bridge, "up"]);
    let mac = |i: usize| format!("02:76:6d:00:00:{i:02x}");
    let v4 = |i: usize| format!("10.213.0.{i}");
    let v6 = |i: usize| format!("fd00:213::{i}");
    for i in 1..=4 {
        let ns = format!("vmmon-tr{tag}-{i}");
        let port = format!("vt{tag}h{i}");
        ip(&["netns", "add", &ns]);
        bed.netns.push(ns.clone());
        bed.links.push(port.clone());
        ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "e0",
            "address",
            &mac(i),
            "netns",
            &ns,
        ]);
        ip(&["link", "set", &port, "addrgenmode", "none"]);
        ip(&["link", "set", &port, "master", &bridge]);
        ip(&["link", "set", &port, "up"]);
        ip(&["-n", &ns, "link", "set", "e0", "addrgenmode", "none"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", v4(i)),
            "dev",
            "e0",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/64", v6(i)),
            "dev",
            "e0",
            "nodad",
        ]);
        ip(&["-n", &ns, "link", "set", "e0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }
    // Static neighbours: no ARP or neighbour discovery packets in the counts.
    for i in 1..=4 {
        let ns = format!("vmmon-tr{tag}-{i}");
        for j in (1..=4).filter(|&j| j != i) {
            for addr in [v4(j), v6(j)] {
                ip(&[
                    "-n",
                    &ns,
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    &mac(j),
                    "dev",
                    "e0",
                    "nud",
                    "permanent",
                ]);
            }
        }
    }
    let ns = |i: usize| format!("vmmon-tr{tag}-{i}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out_csv = dir.path().join("m.csv");
    // ns1 and ns2 are watched twice: on their own e0 (inside) and on their bridge port, under
    // the same endpoint names. ns3 and ns4 only on their ports.
    let mut cmd = vmmon();
    cmd.arg("traffic");
    for i in 1..=4 {
        cmd.args(["--iface", &format!("n{i}=vt{tag}h{i}")]);
    }
    for i in 1..=2 {
        cmd.args(["--iface", &format!("n{i}=e0@{}", ns(i))]);
    }
    cmd.args(["-d", "3", "-o"])
        .arg(&out_csv)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut guard = util::Guard::spawn(&mut cmd);
    let stderr = guard
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("capturing on") {
            break;
        }
    }
    assert!(log.contains("capturing on"), "{log}");

    // Receivers, so that no port-unreachable errors come back.
    let port = 47_000u16;
    let receivers: Vec<_> = (1..=4)
        .map(|i| {
            in_netns(&ns(i), || {
                let a = std::net::UdpSocket::bind((v4(i).parse::<IpAddr>().expect("v4"), port))
                    .expect("bind v4");
                let b = std::net::UdpSocket::bind((v6(i).parse::<IpAddr>().expect("v6"), port))
                    .expect("bind v6");
                (a, b)
            })
        })
        .collect();
    let at = |i: usize| SocketAddr::new(v4(i).parse().expect("v4"), port);
    // The ring, one direction: 300 datagrams of 1000 bytes = 300 × 1028 IP bytes.
    for i in 1..=3 {
        send_udp(&ns(i), at(i + 1), 300, 1000);
    }
    // n4 → n1 over IPv6: 300 × (1000 + 8 + 40).
    send_udp(
        &ns(4),
        SocketAddr::new(v6(1).parse().expect("v6"), port),
        300,
        1000,
    );
    // Weak chords.
    send_udp(&ns(1), at(3), 10, 200);
    send_udp(&ns(2), at(4), 10, 200);
    // TCP on n3 → n4: 200 KiB of payload, plus headers and the handshake.
    let listener = in_netns(&ns(4), || {
        std::net::TcpListener::bind((v4(4).parse::<IpAddr>().expect("v4"), port)).expect("listen")
    });
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            use std::io::Read as _;
            let (mut c, _) = listener.accept().expect("accept");
            let mut sink = Vec::new();
            c.read_to_end(&mut sink).expect("read");
            sink.len()
        });
        in_netns(&ns(3), || {
            use std::io::Write as _;
            let mut c =
                std::net::TcpStream::connect(SocketAddr::new(v4(4).parse().expect("v4"), port))
                    .expect("connect");
            c.write_all(&vec![7u8; 200 * 1024]).expect("write");
        });
        assert_eq!(reader.join().expect("reader"), 200 * 1024);
    });
    let status = guard.0.as_mut().expect("child").wait().expect("wait");
    for line in lines {
        log.push_str(&line.expect("stderr line"));
        log.push('\n');
    }
    drop(receivers);
    assert!(status.success(), "{log}");

    let text = std::fs::read_to_string(&out_csv).expect("matrix");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("m.csv.meta.json")).expect("sidecar"),
    )
    .expect("sidecar json");
    let seconds = meta["seconds"].as_f64().expect("seconds");
    let m = topo::parse_matrix(&text, "m.csv").expect("parse the matrix");
    assert_eq!(m.names, vec!["n1", "n2", "n3", "n4"], "{text}");
    let bytes = |a: usize, b: usize| (m.get(a - 1, b - 1) * seconds).round() as i64;
    let exact = [
        ((1, 2), 300 * 1028),
        ((2, 3), 300 * 1028),
        ((4, 1), 300 * 1048),
        ((1, 3), 10 * 228),
        ((2, 4), 10 * 228),
        ((1, 4), 0),
        ((2, 1), 0),
        ((3, 1), 0),
        ((3, 2), 0),
        ((4, 2), 0),
        ((1, 1), 0),
    ];
    for ((a, b), want) in exact {
        // A rate rounded to 0.001 B/s over ~3 s: within 1 byte.
        assert!(
            (bytes(a, b) - want).abs() <= 1,
            "n{a} → n{b}: {} bytes, sent {want} (each packet once)\n{text}{log}",
            bytes(a, b)
        );
    }
    // TCP: the payload plus 40–52 header bytes per segment (fewer with segmentation
    // offload, which counts a super-packet's header once), within 10%.
    let tcp = bytes(3, 4) - 300 * 1028;
    assert!(
        (200 * 1024..=200 * 1024 * 11 / 10).contains(&tcp),
        "n3 → n4 TCP: {tcp} bytes for 204800 of payload\n{text}"
    );
    let acks = bytes(4, 3);
    assert!(
        (100..20_000).contains(&acks),
        "n4 → n3 acks: {acks}\n{text}"
    );
    // Every packet of ns1 was seen on e0 (counted) and on its port (not counted again).
    let ifaces = meta["interfaces"].as_array().expect("interfaces");
    for i in ifaces {
        assert_eq!(i["kernel_drops"], 0, "{meta}");
    }
    let by_label = |ifname: &str, netns: Option<String>| {
        ifaces
            .iter()
            .find(|i| i["ifname"] == ifname && i["netns"].as_str() == netns.as_deref())
            .unwrap_or_else(|| panic!("{ifname} in {meta}"))
    };
    let counted = |i: &serde_json::Value| {
        i["counted"].as_u64().expect("counted") - i["group"].as_u64().expect("group")
    };
    let e1 = by_label("e0", Some(ns(1)));
    let h1 = by_label(&format!("vt{tag}h1"), None);
    assert_eq!(e1["role"], "own");
    assert_eq!(h1["role"], "port");
    // Multicast (MLD reports of the new addresses) is counted apart: subtracted.
    assert_eq!(counted(e1), 310, "{meta}");
    assert_eq!(counted(h1), 0, "{meta}");
    assert!(
        h1["counted_elsewhere"].as_u64().expect("n") >= 310,
        "{meta}"
    );
    assert_eq!(
        meta["learned"]["n3"],
        serde_json::json!(["10.213.0.3"]),
        "{meta}"
    );

    // The topology of this matrix: a ring, the chords pruned.
    let json = dir.path().join("t.json");
    let out = vmmon()
        .arg("topo")
        .arg(&out_csv)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("topo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("t.json")).expect("json");
    assert_eq!(t["pattern"], "ring", "{t}");
    assert_eq!(t["score"], 1.0, "{t}");
    assert_eq!(t["pruned_edges"], 2, "{t}");
    drop(guard);
    drop(bed);
}

#[test]
fn traffic_streams_tidy_intervals_on_the_loopback() {
    if !util::require_root("captures packets on the loopback") {
        return;
    }
    let mut cmd = vmmon();
    cmd.args([
        "traffic",
        "--iface",
        "host=lo",
        "-d",
        "1.2",
        "--interval",
        "0.5",
        "--format",
        "tidy",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut guard = util::Guard::spawn(&mut cmd);
    let stdout = guard
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let header = lines.next().expect("header").expect("line");
    assert_eq!(header, "time,elapsed,src,dst,bytes,packets,bytes_per_s");
    // A datagram to ourselves in each interval, from a port of our own choosing.
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for _ in 0..3 {
        tx.send_to(&[1u8; 72], rx.local_addr().expect("addr"))
            .expect("send");
        std::thread::sleep(Duration::from_millis(400));
    }
    let child = guard.0.as_mut().expect("child");
    let status = child.wait().expect("wait");
    assert!(status.success());
    let rows: Vec<String> = lines.map(|l| l.expect("line")).collect();
    // Other traffic on the loopback may share the rows: only their shape is checked, and
    // that our 100-byte packets are in them.
    let mut last_elapsed = 0.0;
    let mut total = 0u64;
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f.len(), 7, "{r}");
        assert_eq!((f[2], f[3]), ("host", "host"), "{r}");
        let elapsed: f64 = f[1].parse().expect("elapsed");
        assert!(elapsed >= last_elapsed, "{r}");
        last_elapsed = elapsed;
        total += f[4].parse::<u64>().expect("bytes");
    }
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(total >= 300, "{rows:?}");
}
