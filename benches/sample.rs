//! Per-sample CPU cost of `vmmon record` against the bare cost of reading the same `/proc`
//! files. Run: `cargo bench --bench sample`. Figures go to docs/performance.md.

use std::hint::black_box;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use vmmon::record::{Cell, RecordConfig, Recorder};

/// The files the default recorder reads.
fn files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "stat",
        "loadavg",
        "meminfo",
        "vmstat",
        "diskstats",
        "net/dev",
    ]
    .iter()
    .map(|f| PathBuf::from("/proc").join(f))
    .collect();
    for r in ["cpu", "memory", "io"] {
        let p = PathBuf::from("/proc/pressure").join(r);
        if p.exists() {
            v.push(p);
        }
    }
    v
}

fn per_sample(c: &mut Criterion) {
    let paths = files();
    let mut g = c.benchmark_group("per_sample");
    let mut buf = Vec::with_capacity(64 * 1024);
    g.bench_function("bare_open_read_close", |b| {
        b.iter(|| {
            for p in &paths {
                buf.clear();
                let mut f = std::fs::File::open(p).expect("open");
                f.read_to_end(&mut buf).expect("read");
                black_box(&buf);
            }
        })
    });
    let open: Vec<std::fs::File> = paths
        .iter()
        .map(|p| std::fs::File::open(p).expect("open"))
        .collect();
    let mut chunk = vec![0u8; 64 * 1024];
    g.bench_function("bare_pread_held_open", |b| {
        b.iter(|| {
            for f in &open {
                let mut off = 0;
                loop {
                    let n = f.read_at(&mut chunk[off..], off as u64).expect("pread");
                    if n == 0 {
                        break;
                    }
                    off += n;
                }
                black_box(&chunk[..off]);
            }
        })
    });
    let mut rec = Recorder::new(RecordConfig::default()).expect("recorder");
    let schema = rec.schema().clone();
    let mut prev = schema.new_sample();
    let mut cur = schema.new_sample();
    rec.read(&mut prev);
    g.bench_function("vmmon_read_parse", |b| {
        b.iter(|| {
            rec.read(&mut cur);
            black_box(&cur);
        })
    });
    let mut cells: Vec<Cell> = Vec::new();
    let mut line = String::new();
    g.bench_function("vmmon_full_sample_row", |b| {
        b.iter(|| {
            cur.mono = prev.mono + std::time::Duration::from_millis(10);
            rec.read(&mut cur);
            schema.derive(&prev, &cur, &mut cells);
            rec.format_row(&cur, &cells, None, &mut line);
            black_box(&line);
            std::mem::swap(&mut prev, &mut cur);
        })
    });
    g.finish();
}

criterion_group!(benches, per_sample);
criterion_main!(benches);
