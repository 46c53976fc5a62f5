//! Using the recorder from Rust: take ten samples at 10 Hz from the live /proc and print the
//! mean CPU busy share and context-switch rate. Run: `cargo run --example record`.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use vmmon::record::{RecordConfig, Recorder};

fn main() -> anyhow::Result<()> {
    let config = RecordConfig {
        rate_hz: 10.0,
        max_rows: Some(10),
        period: Some(Duration::from_secs(5)),
        ..RecordConfig::default()
    };
    let mut recorder = Recorder::new(config)?;
    let mut csv = Vec::new();
    let never = AtomicUsize::new(0);
    let summary = recorder.run(&mut csv, &never, &mut |_| {}, &mut |note| {
        eprintln!("{note}")
    })?;

    // The rows are plain CSV: read them back by column name.
    let text = String::from_utf8(csv)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (idle, ctxt) = (col("cpu_idle_pct"), col("ctxt_per_s"));
    let (mut busy_sum, mut ctxt_sum, mut n) = (0.0, 0.0, 0.0_f64);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let get = |i: Option<usize>| i.and_then(|i| cells.get(i)?.parse::<f64>().ok());
        if let (Some(idle), Some(ctxt)) = (get(idle), get(ctxt)) {
            busy_sum += 100.0 - idle;
            ctxt_sum += ctxt;
            n += 1.0;
        }
    }
    println!(
        "{} rows ({} missed slots, p99 lateness {} µs): mean CPU busy {:.1} %, {:.0} context switches/s",
        summary.rows,
        summary.missed_slots,
        summary.lateness.p99_us,
        busy_sum / n.max(1.0),
        ctxt_sum / n.max(1.0)
    );
    Ok(())
}
