//! Charging host CPU to VMs from Rust. Run: `cargo run --example charge`.
//!
//! First a host trace in memory (two VMs, one second each of three intervals), split by
//! packets; then the simulated host of `testdata/charge/host3.csv`, calibrated: the fitted
//! cost per packet and per MB, and each VM's charge with it.

use vmmon::charge::{self, By, Feature, HostTrace, Options, PoolPart, VmSeries, output};

fn main() -> anyhow::Result<()> {
    // A trace built in memory: the pool is 10 % of a CPU in every interval; VM a sends 300
    // packets a second and b 100, except in the last interval where nobody does.
    let n = 3;
    let mut a = VmSeries::zeros("a", n);
    let mut b = VmSeries::zeros("b", n);
    for t in 0..2 {
        a.tx_packets[t] = 300.0;
        b.rx_packets[t] = 100.0;
    }
    a.vcpu_pct = vec![50.0; n];
    b.vcpu_pct = vec![20.0; n];
    let trace = HostTrace {
        label: "in memory".into(),
        time: (1..=n).map(|t| t.to_string()).collect(),
        dt: vec![1.0; n],
        vms: vec![a, b],
        pool: vec![(PoolPart::Softirq, vec![10.0; n])],
        ..HostTrace::default()
    };
    let report = charge::charge(
        &trace,
        &Options {
            by: By::Packets,
            ..Options::default()
        },
    )?;
    // a gets ¾ of 0.1 CPU-s in the first two intervals, b ¼; the third goes unattributed.
    print!("{}", output::intervals_csv(&report));

    // A recorded (here: simulated) host trace, with the pool's costs fitted.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/charge/host3.csv");
    let trace = charge::read_trace(path)?;
    let report = charge::charge(
        &trace,
        &Options {
            calibrate: true,
            ..Options::default()
        },
    )?;
    if let Some(c) = &report.calibration {
        println!(
            "\nfitted: base {:.2} % of a CPU, {:.2} µs per packet, {:.3} ms per disk MB \
             (true: 3 %, 4 µs, 1.5 ms); R² {:.4}",
            c.base_cpu_pct,
            c.beta(Feature::Packets) * 1e6,
            c.beta(Feature::Disk) * 1e9,
            c.r2
        );
    }
    for t in &report.summary {
        println!(
            "{:<15} charged {:8.3} CPU-s, of which shared {:6.3}",
            t.vm, t.charged_cpu_s, t.shared_cpu_s
        );
    }
    Ok(())
}
