//! `vmmon align` throughput: 4 sources × 10⁵ rows × 40 columns (three with clock columns) from
//! files, through the whole library path (plan, streaming resampling, CSV formatting) into
//! `io::sink()`. `cargo bench --bench align`; whole-command figures on 10⁶ rows are in
//! docs/performance.md (files from `cargo run --release --example align_traces`).

use std::hint::black_box;
use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vmmon::align::output::{CsvSink, Plain};
use vmmon::align::{Options, Plan};

const ROWS: u64 = 100_000;

fn align(c: &mut Criterion) {
    let mut g = c.benchmark_group("align");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4 * ROWS));
    // `real` replays the recorded trace (its runs of equal values); `shuffled` draws every
    // cell anew (examples/align_traces.rs).
    for mode in ["real", "shuffled"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf-8 path");
        let opts = traces(d, mode);
        g.bench_function(format!("4x1e5_rows_40_cols_{mode}"), |b| {
            b.iter(|| {
                let plan = Plan::new(&opts).expect("plan");
                let mut sink = CsvSink::new(Plain(std::io::sink()));
                black_box(plan.run(&mut sink).expect("run").rows)
            })
        });
    }
    g.finish();
}

/// Writes the benchmark's files into `d` and returns the options aligning them.
fn traces(d: &str, mode: &str) -> Options {
    // The example writes the same files the whole-command figures use.
    let status = Command::new(env!("CARGO"))
        .args([
            "run",
            "--release",
            "--quiet",
            "--example",
            "align_traces",
            "--",
        ])
        .args([d, &ROWS.to_string(), mode])
        .status()
        .expect("cargo run --example align_traces");
    assert!(status.success());
    Options {
        sources: ["host", "vm1", "vm2", "vm3"]
            .iter()
            .map(|n| format!("{n}={d}/{n}.csv").parse().expect("source"))
            .collect(),
        ..Options::default()
    }
}

criterion_group!(benches, align);
criterion_main!(benches);
