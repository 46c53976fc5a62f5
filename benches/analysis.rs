//! Analysis speed on 10⁶ samples (ARX order search on 10⁵): `cargo bench --bench analysis`. The statsmodels baseline
//! for the same work is timed by testdata/sysid/time_statsmodels.py; figures in
//! docs/performance.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vmmon::sysid::arx::{self, Orders};
use vmmon::sysid::batch::{self as arx_batch, Problem};
use vmmon::sysid::impulse::{self, Method};
use vmmon::sysid::order::{self, Criterion as OrderCriterion, Grid};
use vmmon::sysid::xcorr::{cross_correlation, lagged_products_direct};

fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

fn analysis(c: &mut Criterion) {
    let n = 1_000_000;
    let u = noise(1, n);
    // y: u through a short FIR plus noise, so the impulse estimate has something to find.
    let e = noise(2, n);
    let y: Vec<f64> = (0..n)
        .map(|t| {
            let lag = |k: usize| if t >= k { u[t - k] } else { 0.0 };
            0.5 * lag(2) + lag(3) + 0.3 * lag(4) + 0.1 * e[t]
        })
        .collect();
    let mut g = c.benchmark_group("analysis_1e6");
    g.sample_size(10);
    g.bench_function("xcorr_fft_L1000", |b| {
        b.iter(|| black_box(cross_correlation(&[(&u, &y)], 1000, ("u", "y")).expect("xcorr")))
    });
    g.bench_function("xcorr_direct_L20", |b| {
        b.iter(|| {
            let mut out = vec![0.0; 41];
            lagged_products_direct(&u, &y, 20, &mut out);
            black_box(out)
        })
    });
    g.bench_function("impulse_cra_M100_ar10", |b| {
        b.iter(|| {
            black_box(
                impulse::estimate(&[("u", &u)], ("y", &y), 100, Method::Cra, 10).expect("cra"),
            )
        })
    });
    g.finish();

    // The original experiment's ARX(20,17,50) on 10⁶ samples, and the order grid
    // (24,400 candidates) on the first 10⁵.
    let mut g = c.benchmark_group("arx");
    g.sample_size(10);
    let orders = Orders {
        na: 20,
        nb: vec![17],
        nk: vec![50],
    };
    let names = ["u".to_string()];
    g.bench_function("fit_20_17_50_1e6", |b| {
        b.iter(|| black_box(arx::fit(&y, &[&u], &orders, ("y", &names), 1.0).expect("fit")))
    });
    let grid = Grid {
        na: 1..=20,
        nb: 1..=20,
        nk: 0..=60,
    };
    let (u5, y5) = (&u[..100_000], &y[..100_000]);
    g.bench_function("order_24400_1e5", |b| {
        b.iter(|| {
            black_box(order::search(y5, &[u5], &grid, OrderCriterion::Aic, None).expect("order"))
        })
    });
    g.finish();
}

/// The batch: 1,000 SISO ARX(4,4,1) models on 10⁴ samples each (fit and residual
/// tests, as `vmmon fit --batch` does per model), over 100 inputs and 10 outputs held in
/// memory, in parallel on every core.
fn batch(c: &mut Criterion) {
    let n = 10_000;
    let us: Vec<Vec<f64>> = (0..100).map(|i| noise(100 + i, n)).collect();
    let ys: Vec<Vec<f64>> = (0..10)
        .map(|j| {
            let e = noise(300 + j, n);
            let mut y = vec![0.0; n];
            for t in 4..n {
                y[t] = 0.5 * y[t - 1] - 0.2 * y[t - 2]
                    + us[j as usize][t - 1]
                    + 0.3 * us[j as usize][t - 2]
                    + 0.1 * e[t];
            }
            y
        })
        .collect();
    let names: Vec<[String; 1]> = (0..100).map(|i| [format!("u{i}")]).collect();
    let problems: Vec<Problem> = (0..1000)
        .map(|i| Problem {
            output: "y",
            inputs: &names[i % 100],
            orders: Orders {
                na: 4,
                nb: vec![4],
                nk: vec![1],
            },
            sample_time: 1.0,
            y: &ys[i / 100],
            us: vec![&us[i % 100]],
            test: None,
        })
        .collect();
    let mut g = c.benchmark_group("batch");
    g.sample_size(10);
    g.bench_function("fit_1000_arx441_1e4", |b| {
        b.iter(|| black_box(arx_batch::fit_all(&problems)))
    });
    g.finish();
}

criterion_group!(benches, analysis, batch);
criterion_main!(benches);
