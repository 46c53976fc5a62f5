//! Run a short experiment from Rust: one guest with load inside, recorded from the host and
//! from inside, then the analysis and its report.
//!
//! `cargo run --release --example experiment -- /tmp/run` (about a minute under TCG; needs
//! qemu-system-x86 and busybox-static, no root). The first run fetches Debian's kernel into
//! the cache (`$VMMON_CACHE`, else `~/.cache/vmmon`). This example is not the `vmmon`
//! binary, so it names the binary that the guests and the analysis run.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use vmmon::experiment::{analysis, run, scenario};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/vmmon-example-run".into()),
    );
    // target/release/examples/experiment → target/release/vmmon
    let exe = std::env::current_exe()?;
    let vmmon = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("vmmon"))
        .filter(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("build the binary first: cargo build --release"))?;

    let mut opts = run::Options::new(&out)?;
    opts.scenarios = scenario::select("guest-load")?;
    opts.duration = Duration::from_secs(30);
    opts.rate = 4.0;
    opts.accel = run::AccelChoice::Tcg;
    opts.vmmon = vmmon.clone();
    // Never set here: a signal handler would set it for a clean stop (see `vmmon experiment`).
    let stop = AtomicUsize::new(0);
    let recorded = run::record(&opts, &stop, &mut |line| eprintln!("{line}"))?;
    eprintln!("recorded {:?}", recorded.info.scenarios);

    let report = analysis::analyze_run(
        &out,
        &analysis::Options {
            vmmon,
            ..analysis::Options::default()
        },
    )?;
    for s in &report.scenarios {
        for g in &s.guests {
            println!(
                "{} {}: reconstruction of its CPU from the host's view: fit {:.1} %",
                s.name,
                g.name,
                g.reconstruction_fit_pct.unwrap_or(f64::NAN)
            );
        }
    }
    println!("report: {}", out.join("report.md").display());
    Ok(())
}
