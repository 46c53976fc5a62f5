//! Fitting an ARX model from Rust and reconstructing the output from the input alone.
//! Run: `cargo run --example fit`.
//!
//! A known system `y(t) = 0.8 y(t−1) + 2 u(t−2) + u(t−3) + e(t)` is simulated, fitted with
//! na = 1, nb = 2, nk = 2, and then simulated from the input alone, as a host-only monitor
//! would estimate a guest's metric.

use vmmon::sysid::arx::{self, Orders};

fn main() -> anyhow::Result<()> {
    // A deterministic pseudo-random input and noise (splitmix64).
    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let n = 2000;
    let u: Vec<f64> = (0..n).map(|_| next()).collect();
    let mut y = vec![0.0; n];
    for t in 3..n {
        y[t] = 0.8 * y[t - 1] + 2.0 * u[t - 2] + u[t - 3] + 0.01 * next();
    }

    let orders = Orders {
        na: 1,
        nb: vec![2],
        nk: vec![2],
    };
    let inputs = ["host_cpu".to_string()];
    let model = arx::fit(&y, &[&u], &orders, ("guest_cpu", &inputs), 1.0)?;
    println!(
        "a1 = {:.4} ± {:.4} (true −0.8), b = {:.4?} (true [2, 1]); simulation fit {:.1} %",
        model.a[0], model.a_sd[0], model.b[0], model.fit_simulation_pct
    );

    // Reconstruction: centre the input with the model's offsets, simulate, add the level back.
    let centred: Vec<f64> = u.iter().map(|v| v - model.offsets.inputs[0]).collect();
    let estimate: Vec<f64> = model
        .simulate(&[&centred], None)
        .iter()
        .map(|v| v + model.offsets.output)
        .collect();
    let rms = (estimate[10..]
        .iter()
        .zip(&y[10..])
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / (n - 10) as f64)
        .sqrt();
    println!("reconstruction from the input alone: rms error {rms:.4}");
    Ok(())
}
