//! Generate load from Rust: a played-back load trace (the filter inverted) as busy threads.
//!
//! `cargo run --release --example load`

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use vmmon::load::{self, LoadConfig, Mode, Pattern, filter};

fn main() {
    // A load average (τ = 5 s) that rises from 0.2 to 0.8 over four seconds, sampled at 1 Hz.
    let z = [0.2, 0.35, 0.5, 0.65, 0.8];
    let x = filter::invert_clamped(&z, filter::smoothing(1.0, 5.0));
    println!("run queue to play: {x:.3?}");
    let cfg = LoadConfig {
        slice: Duration::from_secs(1),
        slices: x.len(),
        threads: x.iter().fold(1.0f64, |m, v| m.max(v.ceil())) as usize,
        mode: Mode::Time,
        seed: 1,
        phase: Duration::from_millis(20),
    };
    let stop = AtomicUsize::new(0);
    let summary = load::run(&Pattern::Values(x), &cfg, &stop, &mut |l| {
        println!(
            "target {:.3}: asked {:.3} CPU s, got {:.3}",
            l.target, l.target_cpu_s, l.delivered_cpu_s
        );
    });
    println!(
        "total: asked {:.3} CPU s, got {:.3} in {:.3} s",
        summary.target_cpu_s, summary.delivered_cpu_s, summary.wall_s
    );
}
