//! The host's view of each VM from Rust: find the qemu processes on this host, take two samples
//! one second apart, and print each VM's vCPU, emulator and vhost CPU and its tap traffic.
//! Run: `cargo run --example vms` (start a qemu first; without one it says so).

use std::time::Duration;

use vmmon::record::{Cell, RecordConfig, Recorder, VmSelect, vms::vm_metric_names};

fn main() -> anyhow::Result<()> {
    let config = RecordConfig {
        vms: Some(VmSelect::default()),
        ..RecordConfig::default()
    };
    let mut rec = Recorder::new(config)?;
    for note in rec.take_notes() {
        eprintln!("{note}");
    }
    let vms = rec.vms();
    if vms.is_empty() {
        println!("no qemu process on this host");
        return Ok(());
    }
    let (mut a, mut b) = (rec.schema().new_sample(), rec.schema().new_sample());
    let start = std::time::Instant::now();
    rec.read(&mut a);
    std::thread::sleep(Duration::from_secs(1));
    b.mono = start.elapsed();
    rec.read(&mut b);
    let mut cells = Vec::new();
    rec.schema().derive(&a, &b, &mut cells);
    let value = |name: &str| {
        let i = rec.schema().columns.iter().position(|c| c.name == name)?;
        match cells[i] {
            Cell::Num(v) => Some(v),
            _ => None,
        }
    };
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!(
        "{:<12} {:>8} {:>9} {:>6} {:>12} {:>12}",
        "vm", "vcpu%", "emulator%", "vhost%", "guest rx B/s", "guest tx B/s"
    );
    for vm in &vms {
        let m = |metric: &str| value(&format!("{}.{metric}", vm.name));
        println!(
            "{:<12} {:>8} {:>9} {:>6} {:>12} {:>12}",
            vm.name,
            show(m("vcpu_cpu_pct")),
            show(m("emulator_cpu_pct")),
            show(m("vhost_cpu_pct")),
            show(m("net_guest_rx_bytes_per_s")),
            show(m("net_guest_tx_bytes_per_s")),
        );
    }
    println!(
        "per-VM metrics: {}",
        vm_metric_names().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
