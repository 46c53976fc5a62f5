//! Measure a clock offset from Rust: a `vmmon clock serve` equivalent in a thread, probed in
//! bursts, with the drift over the bursts.
//!
//! `cargo run --example clock`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vmmon::clock::{ProbeConfig, Prober, Server, theil_sen};

fn main() -> anyhow::Result<()> {
    let mut server = Server::bind("127.0.0.1:0")?;
    let addr = server.local_addr()?.to_string();
    let stop = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&stop);
    let serving = std::thread::spawn(move || server.run(&flag));

    let mut prober = Prober::connect(&addr, ProbeConfig::default())?;
    let mut points = Vec::new();
    for _ in 0..5 {
        if let Some(m) = prober.burst()? {
            println!(
                "offset {:+.9} s ± {:.9} s (rtt {:.9} s, {} of {} answered)",
                m.offset, m.bound, m.rtt, m.answered, m.sent
            );
            points.push((m.time_ns as f64 * 1e-9, m.offset));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if let Some(d) = theil_sen(&points) {
        println!(
            "drift {:+.2} ppm (95%: {:+.2} to {:+.2})",
            d.ppm, d.ppm_low, d.ppm_high
        );
    }
    stop.store(1, Ordering::Relaxed);
    let stats = serving
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    println!(
        "server answered {} of {} datagrams",
        stats.answered, stats.received
    );
    Ok(())
}
