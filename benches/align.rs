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
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
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
        .args([d, &ROWS.to_string(), "real"])
        .status()
        .expect("cargo run --example align_traces");
    assert!(status.success());
    let opts = Options {
        sources: ["host", "vm1", "vm2", "vm3"]
            .iter()
            .map(|n| format!("{n}={d}/{n}.csv").parse().expect("source"))
            .collect(),
        ..Options::default()
    };
    let mut g = c.benchmark_group("align");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4 * ROWS));
    g.bench_function("4x1e5_rows_40_cols", |b| {
        b.iter(|| {
            let plan = Plan::new(&opts).expect("plan");
            let mut sink = CsvSink::new(Plain(std::io::sink()));
            black_box(plan.run(&mut sink).expect("run").rows)
        })
    });
    g.finish();
}

criterion_group!(benches, align);
criterion_main!(benches);
