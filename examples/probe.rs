//! Latency and bandwidth matrices from Rust: three agents in threads on loopback, a mesh
//! measured among them, and the tidy CSV and the min-RTT matrix on stdout.
//!
//! `cargo run --release --example probe`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vmmon::net::probe::{Agent, BandwidthConfig, Limits, MeshConfig, Metric, Node, mesh};

fn main() -> anyhow::Result<()> {
    let stop = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    let mut threads = Vec::new();
    for name in ["a", "b", "c"] {
        let agent = Agent::bind("127.0.0.1:0", Limits::default())?;
        nodes.push(Node {
            name: name.into(),
            addr: agent.local_addr()?.to_string(),
        });
        let flag = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || agent.run(&flag)));
    }
    let config = MeshConfig {
        bandwidth: Some(BandwidthConfig {
            seconds: Duration::from_millis(500),
            ..BandwidthConfig::default()
        }),
        ..MeshConfig::default()
    };
    let report = mesh::run(&nodes, &config, &|p| eprint!("\r{}/{}", p.done, p.total));
    eprintln!();
    let mut out = Vec::new();
    report.write_tidy(&mut out)?;
    report.write_matrix(Metric::RttMin, &mut out)?;
    print!("{}", String::from_utf8_lossy(&out));
    for m in report.missing() {
        eprintln!("missing {m}");
    }
    stop.store(1, Ordering::Relaxed);
    for t in threads {
        let stats = t
            .join()
            .map_err(|_| anyhow::anyhow!("agent thread panicked"))??;
        eprintln!("agent: {stats}");
    }
    Ok(())
}
