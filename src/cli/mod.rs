//! Command-line edge: argument definitions (their doc comments are the help text), the
//! legacy `ns` spelling, and turning results into output and exit codes.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error, 128+N when stopped by signal N
//! after a clean finish. Errors are printed once, here, with their whole cause chain.

mod align;
mod analyze;
mod batch;
mod charge;
mod clock;
mod experiment;
mod import;
pub mod legacy;
mod load;
mod model;
mod plot;
mod probe;
mod record;
mod serve;
mod topo;
mod traffic;

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::{Parser, Subcommand};

/// Monitor virtual machines from the outside: record /proc traces on hosts and guests, then
/// analyse how they move together.
#[derive(Debug, Parser)]
#[command(
    name = "vmmon",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample /proc at a fixed rate and write one CSV row per interval.
    ///
    /// The legacy spelling of the original `ns` tool works too:
    /// `vmmon record -rate 1 -period 600 -max 10 -name host -timestamp`, and a copy or link
    /// of this binary named `ns` behaves as `vmmon record`.
    Record(record::RecordArgs),
    /// Measure clock offset and drift between machines: `serve` on the host, `probe` from a
    /// guest (NTP exchanges, offset ± RTT/2 per burst, drift by a robust line).
    #[command(subcommand)]
    Clock(clock::ClockCommand),
    /// Generate CPU load: play back a load trace, or an identification input (PRBS, step,
    /// square, sine, constant), as busy worker threads.
    #[command(subcommand)]
    Load(load::LoadCommand),
    /// Cross-correlation of two columns of a trace (or autocorrelation of one), with the
    /// 99% bound for independent white series. Positive lags: the input leads the output.
    Xcorr(analyze::XcorrArgs),
    /// Impulse and step response of an output column to one or more input columns: by
    /// correlation analysis with AR prewhitening, or by FIR least squares.
    Impulse(analyze::ImpulseArgs),
    /// Fit an ARX model A(q) y(t) = B(q) u(t-nk) + e(t) of an output column on input
    /// columns, and print its coefficients (both conventions), criteria, fit and poles.
    Fit(model::FitArgs),
    /// Estimate a model's output from a trace of its inputs alone (free-run simulation):
    /// what a host-only monitor runs.
    Reconstruct(model::ReconstructArgs),
    /// Judge a model on data: simulation and k-step fit, residual whiteness and
    /// input–residual independence with 99% bounds, and a pass/fail verdict.
    Validate(model::ValidateArgs),
    /// Search ARX orders: every (na, nb, nk) of a grid on the same samples, ranked by AIC,
    /// MDL, FPE or validation loss; the full grid as CSV and the best model as JSON.
    Order(model::OrderArgs),
    /// Draw what the other commands wrote, as SVG or PNG (by the output's extension):
    /// trace columns over time, a cross-correlation, impulse and step responses, a
    /// validation, an order search (docs/plot.md). Redraws from the files alone.
    Plot(plot::PlotArgs),
    /// Put traces from several machines on one corrected time grid: one wide CSV whose
    /// columns carry their source's name (host.cpu_user_pct, vm1.cpu_user_pct).
    Align(align::AlignArgs),
    /// Charge host CPU spent on each VM's behalf to that VM: its vCPU, emulator and vhost
    /// time plus a share of the host's softirq and kernel I/O threads, split by its I/O.
    Charge(charge::ChargeArgs),
    /// Latency and bandwidth matrices among VM hosts: `serve` an agent on each host, then
    /// `mesh` asks every agent to measure every other one (docs/network.md).
    #[command(subcommand)]
    Probe(probe::ProbeCommand),
    /// The traffic matrix among endpoints, in bytes/s, counted from the packets seen on
    /// the given interfaces (AF_PACKET; needs CAP_NET_RAW). Each packet counts once, where
    /// it enters the watched interfaces.
    Traffic(traffic::TrafficArgs),
    /// The communication topology of a traffic matrix: symmetrise, normalise by the
    /// largest entry, prune below a threshold, and score ring, mesh, torus, star, tree,
    /// line and all-to-all patterns (Jaccard similarity under the best node mapping).
    Topo(topo::TopoArgs),
    /// Serve the current sample on `GET /metrics` for Prometheus: the raw counters (and,
    /// with --vms, per-VM series labelled vm="NAME") in the OpenMetrics or 0.0.4 text
    /// format, sampled afresh at each scrape (docs/fleet.md).
    Serve(serve::ServeArgs),
    /// Turn a Prometheus range-query result (JSON) or a Parquet file into the wide CSV the
    /// analyzer reads: a `time` column and one column per series, aligned on the union of
    /// their times (docs/fleet.md).
    Import(import::ImportArgs),
    /// The whole study with real guests: boot guests under qemu, record the host and each
    /// guest (streamed over virtio-serial, clocks probed) across the scenario matrix of host
    /// and guest load, then align, correlate, fit, validate and reconstruct each guest's CPU
    /// from the host's view, into a report folder (docs/experiment.md).
    Experiment(experiment::ExperimentArgs),
}

/// Exit code for a usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: i32 = 1;

/// Runs the command line `args` (argv including the program name) and returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = legacy::rewrite(args);
    let cli = match Cli::try_parse_from(args.clone()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let command: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let result = match cli.command {
        Command::Record(a) => record::run(a, command),
        Command::Clock(c) => clock::run(c),
        Command::Load(c) => load::run(c),
        Command::Xcorr(a) => analyze::xcorr(a),
        Command::Impulse(a) => analyze::impulse(a),
        Command::Fit(a) => model::fit(a),
        Command::Reconstruct(a) => model::reconstruct(a),
        Command::Validate(a) => model::validate(a),
        Command::Order(a) => model::order(a),
        Command::Plot(a) => plot::run(a),
        Command::Align(a) => align::run(a, command),
        Command::Charge(a) => charge::run(a),
        Command::Probe(c) => probe::run(c),
        Command::Traffic(a) => traffic::run(a, command),
        Command::Topo(a) => topo::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Import(a) => import::run(a),
        Command::Experiment(a) => experiment::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Prints an error chain once and maps it to an exit code.
fn report(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        // The reader went away (`| head`): not an error for a pipeline.
        return 0;
    }
    eprintln!("vmmon: error: {e:#}");
    if e.downcast_ref::<crate::record::UsageError>().is_some() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// A flag that SIGINT or SIGTERM sets to the signal's number, for a clean stop (exit
/// 128+signal).
fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    use anyhow::Context as _;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(sig, std::sync::Arc::clone(&stop), sig as usize)
            .context("cannot install signal handlers")?;
    }
    Ok(stop)
}

/// Refuses (usage error) two outputs of one command that name the same file: the second
/// write would replace the first (a recording's rows by its summary).
fn distinct_outputs(
    a: (&str, Option<&std::path::Path>),
    b: (&str, Option<&std::path::Path>),
) -> anyhow::Result<()> {
    let (Some(pa), Some(pb)) = (a.1, b.1) else {
        return Ok(());
    };
    let same = pa == pb
        || matches!(
            (std::fs::canonicalize(pa), std::fs::canonicalize(pb)),
            (Ok(x), Ok(y)) if x == y
        );
    // Devices (/dev/null) may take both.
    let special = std::fs::metadata(pa).is_ok_and(|m| !m.is_file());
    if same && !special {
        return Err(analyze::usage(format!(
            "{} and {} both name {}: the second would overwrite the first",
            a.0,
            b.0,
            pa.display()
        )));
    }
    Ok(())
}

/// Writes `value` to `path` as pretty JSON with a final newline.
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = serde_json::to_string_pretty(value)? + "\n";
    // Whole or not at all: a failed write (a full disk) leaves no empty or half summary.
    crate::trace::write_replacing(path, &text)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether progress should be drawn (stderr is a terminal).
fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
