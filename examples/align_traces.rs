//! Writes the synthetic traces of the `vmmon align` benchmark (docs/performance.md):
//! a host and three guests at 10 Hz, each with 40 data columns, the guests with clock columns
//! (a probe every 60 rows, drifting clocks), each with a sidecar.
//!
//! `cargo run --release --example align_traces -- DIR ROWS [real|shuffled|dense]`
//!
//! `real` (the default) replays the recorded trace testdata/traces/host-5hz.csv: each data
//! column is one of its columns of the same kind, cell for cell, looped, every source starting
//! at a different row. So it has the recorded value mix (about two thirds zeros, whole columns
//! of them) and the recorded runs of equal values (three quarters of the cells equal the one
//! above). `shuffled` has a similar mix (64% zeros, 15% integers, 21% fractions) drawn anew
//! for every cell, so runs are rare: harder than any recorded trace. `dense` makes every cell
//! a full-precision fraction (the worst case for parsing and formatting). The generator
//! prints the mix it wrote.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(rows)) = (args.get(1), args.get(2).and_then(|r| r.parse::<u64>().ok()))
    else {
        eprintln!("usage: align_traces DIR ROWS [real|shuffled|dense]");
        std::process::exit(2);
    };
    let mode = match args.get(3).map(String::as_str) {
        None | Some("real") => Mode::Real(recorded()?),
        Some("shuffled") => Mode::Shuffled,
        Some("dense") => Mode::Dense,
        Some(m) => {
            eprintln!("align_traces: unknown mode {m} (real, shuffled or dense)");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(dir)?;
    let mut mix = Mix::default();
    for (s, name) in ["host", "vm1", "vm2", "vm3"].iter().enumerate() {
        write_source(dir, name, s as u64, rows, &mode, &mut mix)?;
    }
    let pct = |n: u64| 100.0 * n as f64 / mix.cells.max(1) as f64;
    eprintln!(
        "align_traces: {} data cells: {:.1}% zeros, {:.1}% integers, {:.1}% fractions; \
         {:.1}% equal to the cell above",
        mix.cells,
        pct(mix.zeros),
        pct(mix.integers),
        pct(mix.cells - mix.zeros - mix.integers),
        pct(mix.repeats)
    );
    Ok(())
}

/// What the data cells hold.
enum Mode {
    /// The recorded trace's cells: per column kind, the recorded columns' texts.
    Real(Recorded),
    Shuffled,
    Dense,
}

/// The recorded trace's data columns by kind, as text, one `Vec` per column.
struct Recorded {
    pct: Vec<Vec<String>>,
    per_s: Vec<Vec<String>>,
    gauges: Vec<Vec<String>>,
    /// Four rates summed into the `_total` columns (their values per 0.1 s).
    summed: Vec<Vec<f64>>,
    rows: usize,
}

fn recorded() -> std::io::Result<Recorded> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/traces/host-5hz.csv");
    let mut r = csv::Reader::from_path(path).map_err(std::io::Error::other)?;
    let header: Vec<String> = r
        .headers()
        .map_err(std::io::Error::other)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for rec in r.records() {
        let rec = rec.map_err(std::io::Error::other)?;
        for (c, v) in cols.iter_mut().zip(rec.iter()) {
            c.push(v.to_string());
        }
    }
    let rows = cols[0].len();
    let named = |pred: &dyn Fn(&str) -> bool| -> Vec<Vec<String>> {
        header
            .iter()
            .zip(&cols)
            .filter(|(h, _)| *h != "time" && *h != "elapsed" && pred(h))
            .map(|(_, c)| c.clone())
            .collect()
    };
    // Spread picks over the recorded columns of a kind, in their order.
    let spread = |all: Vec<Vec<String>>, n: usize| -> Vec<Vec<String>> {
        (0..n).map(|i| all[i * all.len() / n].clone()).collect()
    };
    let pct = named(&|h| h.ends_with("_pct"));
    let per_s = named(&|h| h.ends_with("_per_s"));
    let gauges = named(&|h| !h.ends_with("_pct") && !h.ends_with("_per_s"));
    let summed = [
        "ctxt_per_s",
        "intr_per_s",
        "forks_per_s",
        "faults_minor_per_s",
    ]
    .iter()
    .map(|n| {
        let j = header.iter().position(|h| h == n).expect("recorded column");
        cols[j]
            .iter()
            .map(|v| v.parse::<f64>().unwrap_or(0.0) * 0.1)
            .collect()
    })
    .collect();
    Ok(Recorded {
        pct: spread(pct, 10),
        per_s: spread(per_s, 20),
        gauges: spread(gauges, 6),
        summed,
        rows,
    })
}

/// Counts of what the data cells hold.
#[derive(Default)]
struct Mix {
    cells: u64,
    zeros: u64,
    integers: u64,
    repeats: u64,
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

fn write_source(
    dir: &str,
    name: &str,
    seed: u64,
    rows: u64,
    mode: &Mode,
    mix: &mut Mix,
) -> std::io::Result<()> {
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
    let mut above: Vec<Vec<u8>> = vec![Vec::new(); cols.len()];
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
            let start = line.len();
            if let Mode::Real(rec) = mode {
                // Each source replays the recording from its own row.
                let k = (r as usize + seed as usize * rec.rows / 4) % rec.rows;
                match i {
                    0..10 => line.extend_from_slice(rec.pct[i][k].as_bytes()),
                    10..16 => line.extend_from_slice(rec.gauges[i - 10][k].as_bytes()),
                    16..20 => {
                        totals[i - 16] += rec.summed[i - 16][k].round() as u64;
                        let _ = write!(line, "{}", totals[i - 16]);
                    }
                    _ => line.extend_from_slice(rec.per_s[i - 20][k].as_bytes()),
                }
            } else {
                let x = u();
                if *kind == "total" {
                    totals[i - 16] += (x * 1000.0) as u64;
                    let _ = write!(line, "{}", totals[i - 16]);
                } else {
                    let v = if matches!(mode, Mode::Dense) {
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
            }
            let cell = &line[start..];
            mix.cells += 1;
            if cell == b"0" {
                mix.zeros += 1;
            } else if !cell.contains(&b'.') && !cell.contains(&b'e') {
                mix.integers += 1;
            }
            if r > 0 && above[i] == cell {
                mix.repeats += 1;
            }
            above[i].clear();
            above[i].extend_from_slice(cell);
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
