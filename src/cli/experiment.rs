//! `vmmon experiment`: record the scenario matrix with real guests, then analyse it into a
//! report (docs/experiment.md).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::record::parse_duration;
use crate::experiment::analysis::{self, Orders};
use crate::experiment::run::{AccelChoice, Load, Options};
use crate::experiment::{self, Stopped};
use crate::record::UsageError;
use crate::sysid::order::Criterion;

/// Accelerator choice on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AccelArg {
    /// KVM if a test guest boots under it, else TCG.
    Auto,
    /// qemu's translator (slow, works everywhere).
    Tcg,
    /// The host's KVM.
    Kvm,
}

/// Options of `vmmon experiment`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The run folder: recordings, analysis and report.md (default: experiment-DATE-TIME).
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    out: Option<PathBuf>,

    /// Scenarios to run, comma-separated: host-idle, host-load, guest-idle,
    /// host-load-guest-idle, guest-load, both-load, two-guests-idle, two-guests-host-load,
    /// two-guests-load, two-guests-both-load; or all, one-guest, two-guests.
    #[arg(long, default_value = "all", value_name = "LIST")]
    scenarios: String,

    /// How long the load plays in each scenario (`60`, `90s`, `10m`). Validating a model
    /// on the held-out third needs about 90 rows: 90 s at 1 Hz.
    #[arg(short = 'd', long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    duration: Duration,

    /// Sampling rate of every recorder, Hz.
    #[arg(short = 'r', long, default_value_t = 1.0, value_name = "HZ")]
    rate: f64,

    /// Recording before the load starts in each scenario.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    warmup: Duration,

    /// The load: `prbs` (a pseudo-random binary sequence between --low and --high CPUs), or
    /// a load trace file played back with `vmmon load play` (each machine from another
    /// phase).
    #[arg(long, default_value = "prbs", value_name = "prbs|TRACE")]
    load: String,

    /// PRBS load of a 0 bit, CPUs.
    #[arg(long, default_value_t = 0.0, value_name = "CPUS")]
    low: f64,

    /// PRBS load of a 1 bit, CPUs.
    #[arg(long, default_value_t = 1.0, value_name = "CPUS")]
    high: f64,

    /// Length of one PRBS bit (default: two sampling periods; at least 10 ms; under 100 ms
    /// the load slices that finely).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    bit: Option<Duration>,

    /// Run the guests under KVM or qemu's translator.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    accel: AccelArg,

    /// Guest memory, MiB (default: enough for the image).
    #[arg(long, value_name = "MIB")]
    memory: Option<u32>,

    /// The busybox copied into the guests (a static one).
    #[arg(long, default_value = "/bin/busybox", value_name = "PATH")]
    busybox: PathBuf,

    /// Where the guest kernel is fetched and kept (default: $VMMON_CACHE, else
    /// ~/.cache/vmmon).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,

    /// Copy the guests' consoles to stderr.
    #[arg(long)]
    echo: bool,

    /// ARX poles of every model (with --zeros and --delay; default: chosen by `vmmon order`
    /// on the estimation rows).
    #[arg(long, value_name = "NA", requires_all = ["zeros", "delay"])]
    poles: Option<usize>,

    /// ARX zeros (B coefficients).
    #[arg(long, value_name = "NB", requires_all = ["poles", "delay"])]
    zeros: Option<usize>,

    /// ARX delay, samples.
    #[arg(long, value_name = "NK", requires_all = ["poles", "zeros"])]
    delay: Option<usize>,

    /// How `vmmon order` ranks the candidate orders: aic, mdl or fpe, all on the estimation
    /// rows (`val`, the loss on the held-out rows, is refused: those rows must stay unseen
    /// for the validation).
    #[arg(long, value_enum, default_value_t = Criterion::Mdl)]
    criterion: Criterion,

    /// Do not draw the figures.
    #[arg(long)]
    no_plots: bool,

    /// Do not record: analyse the run folder DIR again and rewrite its report (after
    /// changing orders, or to redraw the figures).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    analyze: Option<PathBuf>,
}

/// Runs `vmmon experiment`: records the run (unless --analyze), then analyses it.
pub fn run(a: ExperimentArgs) -> anyhow::Result<i32> {
    if a.criterion == Criterion::Val {
        return Err(UsageError(
            "--criterion val: the experiment validates every model on the held-out third, so \
             it cannot choose the model there too; give aic, mdl or fpe"
                .into(),
        )
        .into());
    }
    // Installed before anything runs, so a signal during the analysis stops it too.
    let stop = super::stop_flag()?;
    let analysis_opts = analysis::Options {
        orders: match (a.poles, a.zeros, a.delay) {
            (Some(na), Some(nb), Some(nk)) => Some(Orders { na, nb, nk }),
            _ => None,
        },
        criterion: a.criterion,
        plots: !a.no_plots,
        stop: Some(std::sync::Arc::clone(&stop)),
        ..analysis::Options::default()
    };
    let out = match &a.analyze {
        Some(dir) => dir.clone(),
        None => match record(&a, &stop)? {
            Ok(out) => out,
            Err(code) => return Ok(code),
        },
    };
    eprintln!("vmmon: analysing {}", out.display());
    let report = match analysis::analyze_run(&out, &analysis_opts) {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<Stopped>().is_some() => {
            let sig = stop.load(Ordering::Relaxed);
            eprintln!(
                "vmmon: stopped during the analysis; report.md covers the scenarios analysed \
                 before it; `vmmon experiment --analyze {}` does it all again",
                out.display()
            );
            return Ok(128 + sig as i32);
        }
        Err(e) => return Err(e),
    };
    for w in report.warnings() {
        eprintln!("vmmon: warning: {w}");
    }
    // Scenarios that failed to record are in experiment.json, so these include them.
    let errors = report.errors();
    for e in &errors {
        eprintln!("vmmon: error: {e}");
    }
    eprintln!(
        "vmmon: report: {}",
        out.join(crate::experiment::folder::files::REPORT).display()
    );
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// The least guest memory accepted: the kernel and the initramfs need this much to boot.
const MIN_MEMORY_MIB: u32 = 64;

/// Records the run: the folder, or the exit code when stopped by a signal.
fn record(a: &ExperimentArgs, stop: &AtomicUsize) -> anyhow::Result<Result<PathBuf, i32>> {
    let scenarios = experiment::scenario::select(&a.scenarios)?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "experiment-{}",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        ))
    });
    let mut opts = Options::new(&out)?;
    opts.scenarios = scenarios;
    opts.duration = a.duration;
    opts.rate = a.rate;
    opts.warmup = a.warmup;
    opts.load = if a.load == "prbs" {
        if !(a.low.is_finite() && a.high.is_finite() && 0.0 <= a.low && a.low < a.high) {
            return Err(UsageError(format!(
                "--low {} --high {}: give 0 ≤ low < high",
                crate::trace::shown(a.low),
                crate::trace::shown(a.high)
            ))
            .into());
        }
        // Two sampling periods; a rate no Duration can invert is refused by the checks below.
        let bit = a.bit.unwrap_or_else(|| {
            Duration::try_from_secs_f64(2.0 / a.rate).unwrap_or(Duration::from_secs(2))
        });
        Load::Prbs {
            low: a.low,
            high: a.high,
            bit,
        }
    } else {
        Load::Play {
            trace: PathBuf::from(&a.load),
        }
    };
    opts.accel = match a.accel {
        AccelArg::Auto => AccelChoice::Auto,
        AccelArg::Tcg => AccelChoice::Tcg,
        AccelArg::Kvm => AccelChoice::Kvm,
    };
    if let Some(m) = a.memory
        && m < MIN_MEMORY_MIB
    {
        return Err(UsageError(format!(
            "--memory {m}: a guest needs at least {MIN_MEMORY_MIB} MiB"
        ))
        .into());
    }
    opts.memory_mib = a.memory;
    if !a.busybox.is_file() {
        return Err(UsageError(format!(
            "--busybox {}: no such file (a static busybox: Debian's busybox-static)",
            a.busybox.display()
        ))
        .into());
    }
    opts.busybox = a.busybox.clone();
    if let Some(c) = &a.cache {
        if c.exists() && !c.is_dir() {
            return Err(UsageError(format!("--cache {}: not a folder", c.display())).into());
        }
        opts.cache = c.clone();
    }
    opts.echo = a.echo;

    let bar = progress(&opts);
    let mut status = |line: &str| match &bar {
        Some(b) => {
            // "scenario 3/10 …" starts one; "scenario NAME failed: …" is not another.
            if line
                .strip_prefix("scenario ")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            {
                b.inc(1);
            }
            b.set_message(line.to_string());
        }
        None => eprintln!("vmmon: {line}"),
    };
    let result = experiment::run::record(&opts, stop, &mut status);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(_) => {
            eprintln!("vmmon: recorded {}", out.display());
            Ok(Ok(out))
        }
        Err(e) if e.downcast_ref::<Stopped>().is_some() => {
            let sig = stop.load(Ordering::Relaxed);
            eprintln!(
                "vmmon: stopped; the completed scenarios, and the rows so far of the one \
                 interrupted (it has no scenario.json), are in {}; `vmmon experiment \
                 --analyze {}` reports on the completed ones",
                out.display(),
                out.display()
            );
            Ok(Err(128 + sig as i32))
        }
        Err(e) => Err(e),
    }
}

/// A bar over the scenarios when stderr is a terminal.
fn progress(opts: &Options) -> Option<indicatif::ProgressBar> {
    if !super::stderr_is_terminal() {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let b = indicatif::ProgressBar::new(opts.scenarios.len() as u64).with_style(style);
    b.enable_steady_tick(Duration::from_millis(500));
    Some(b)
}
