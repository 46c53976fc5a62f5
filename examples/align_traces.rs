//! Writes the synthetic traces of the `vmmon align` benchmark (docs/performance.md):
//! a host and three guests at 10 Hz, each with 40 data columns, the guests with clock columns
//! (a probe every 60 rows, drifting clocks), each with a sidecar.
//!
//! `cargo run --release --example align_traces -- DIR ROWS [real|dense]`
//!
//! `real` mimics the value mix of testdata/traces/host-5hz.csv (64% zeros, 15% integers,
//! 21% fractions); `dense` makes every cell a full-precision fraction (the worst case for
//! parsing and formatting).

use std::io::Write;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(rows)) = (args.get(1), args.get(2).and_then(|r| r.parse::<u64>().ok()))
    else {
        eprintln!("usage: align_traces DIR ROWS [real|dense]");
        std::process::exit(2);
    };
    let dense = args.get(3).is_some_and(|m| m == "dense");
    std::fs::create_dir_all(dir)?;
    for (s, name) in ["host", "vm1", "vm2", "vm3"].iter().enumerate() {
        write_source(dir, name, s as u64, rows, dense)?;
    }
    Ok(())
}

fn names() -> Vec<(String, &'static str)> {
    let mut cols = Vec::new();
    for i in 0..10 {
        cols.push((format!("cpu{i}_pct"), "rate"));
    }
    for i in 10..16 {
        cols.push((format!("mem{i}_bytes"), "gauge"));
    }
    for i in 16..20 {
        cols.push((format!("ctr{i}_total"), "total"));
    }
    for i in 20..40 {
        cols.push((format!("dev{i}_per_s"), "rate"));
    }
    cols
}

fn write_source(dir: &str, name: &str, seed: u64, rows: u64, dense: bool) -> std::io::Result<()> {
    let path = format!("{dir}/{name}.csv");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let cols = names();
    let clock = name != "host";
    let mut header = String::from("time,elapsed");
    for (c, _) in &cols {
        header += ",";
        header += c;
    }
    if clock {
        header += ",clock_offset_s,clock_rtt_s,clock_bound_s";
    }
    writeln!(out, "{header}")?;
    let mut s = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(seed + 1) | 1;
    let mut u = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut num = zmij::Buffer::new();
    let mut line = Vec::with_capacity(1024);
    let mut totals = [0u64; 4];
    // Guests: up to 0.3 s off, clocks 50 ppm fast or slow.
    let (off0, drift) = if clock {
        (0.1 * seed as f64, (seed as f64 - 2.0) * 50e-6)
    } else {
        (0.0, 0.0)
    };
    let start_us: i64 = 1_795_400_000_000_000 + seed as i64 * 13_000;
    for r in 0..rows {
        line.clear();
        let true_us = start_us + r as i64 * 100_000 + (u() * 100.0) as i64;
        let local_us = true_us - ((off0 + drift * r as f64 * 0.1) * 1e6) as i64;
        let _ = write!(
            line,
            "{}.{:06},{}.{:06}",
            local_us / 1_000_000,
            local_us % 1_000_000,
            r / 10,
            (r % 10) * 100_000
        );
        for (i, (_, kind)) in cols.iter().enumerate() {
            line.push(b',');
            let x = u();
            if *kind == "total" {
                totals[i - 16] += (x * 1000.0) as u64;
                let _ = write!(line, "{}", totals[i - 16]);
                continue;
            }
            let v = if dense {
                x * 1000.0
            } else if x < 0.64 {
                0.0
            } else if x < 0.79 {
                (u() * 1e6).floor()
            } else {
                u() * 100.0
            };
            let t = num.format_finite(v).as_bytes();
            line.extend_from_slice(t.strip_suffix(b".0").unwrap_or(t));
        }
        if clock {
            if r % 60 == 30 {
                let off = -(off0 + drift * r as f64 * 0.1);
                let _ = write!(line, ",{off:.9},0.000400,0.000200");
            } else {
                line.extend_from_slice(b",,,");
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    let columns: Vec<String> = [("time", "time"), ("elapsed", "time")]
        .iter()
        .map(|(n, k)| (n.to_string(), *k))
        .chain(cols)
        .map(|(n, k)| format!("{{\"name\":\"{n}\",\"kind\":\"{k}\",\"unit\":\"\"}}"))
        .collect();
    std::fs::write(
        format!("{path}.meta.json"),
        format!(
            "{{\"name\":\"{name}\",\"rate_hz\":10.0,\"columns\":[{}]}}\n",
            columns.join(",")
        ),
    )
}
