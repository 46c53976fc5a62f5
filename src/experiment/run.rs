//! The recording half of `vmmon experiment`: for each scenario, boot its guests, record the
//! host and every guest at the same time while load plays, and leave a run folder that
//! [`super::analysis`] turns into a report.
//!
//! Why it is built this way:
//! - **One image for the whole run.** The guest's script reads what differs between guests
//!   and scenarios (load on or off, the load's seed) from the kernel command line, so the
//!   initramfs is written once.
//! - **Rows stream out over virtio-serial**, not the console: the console carries the
//!   kernel's and the script's messages, and a port of its own keeps the CSV clean. The host
//!   listens on a unix socket that qemu connects to, and every chunk is written to the
//!   guest's CSV as it arrives, so a killed run keeps every row that reached the host.
//! - **The guest's clock is measured, not assumed.** The guest's recorder runs with
//!   `--clock-ref` against a `vmmon clock serve` of this process, reached through qemu's
//!   user-mode network (the guest's 10.0.2.2 is the host's 127.0.0.1). Each row then carries
//!   the offset and its bound (± RTT/2), which `vmmon align` follows.
//! - **Everything is the user's own command.** The recorders and loads are this `vmmon`
//!   binary run as a user would run it, so their files are the formats every other command
//!   reads.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde::Serialize;

use super::folder::{RunInfo, ScenarioInfo, files};
use super::scenario::Scenario;
use crate::guest::{self, Accel, Config, Guest, GuestNet, Initramfs, Kernel, Network};
use crate::load::trace as load_trace;

/// How long a guest may take to reach user space (about 3 s under TCG here; CI is slower).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// The virtio-serial port the guest's recorder writes to.
const PORT_NAME: &str = "vmmon.rec";
/// Load seeds of the host, vm1 and vm2. A PRBS register starts from its seed, and a seed
/// with few bits set (1, 2, 3) begins with a long run of zeros: these have about half their
/// ten low bits set, so every load is busy about half the time from its first bits on.
const SEEDS: [u64; 3] = [0b10_1011_0101, 0b01_1101_0011, 0b11_0011_1010];
/// Rows a scenario needs for `vmmon validate` to judge a small model on its held-out third
/// (the residual tests take 25 lags past the model's first row).
const MIN_VALIDATED_ROWS: f64 = 90.0;
/// Seconds every recorder runs after the load ends, so that the last interval is whole.
const TAIL_S: u64 = 2;

/// The load played on the host and in the guests.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// `vmmon load prbs`: a pseudo-random binary sequence between two loads (CPUs), one bit
    /// lasting `bit`.
    Prbs {
        /// Load for a 0 bit.
        low: f64,
        /// Load for a 1 bit.
        high: f64,
        /// Length of one bit.
        bit: Duration,
    },
    /// `vmmon load play TRACE`: a host load trace played back (each guest from another
    /// phase of it).
    Play {
        /// The trace (CSV with a `load` column, or the binary format).
        trace: PathBuf,
    },
}

impl Load {
    /// The `vmmon load` arguments for `seconds` of this load; `trace` is where the trace is
    /// on the machine that plays it, `seed` tells the host's load from each guest's, `start`
    /// is where in the trace it begins (seconds; [`Load::starts`]).
    pub fn args(&self, seconds: u64, seed: &str, start: &str, trace: &str) -> Vec<String> {
        let mut a: Vec<String> = match self {
            Load::Prbs { low, high, bit } => {
                let mut a = vec![
                    "prbs".into(),
                    "--low".into(),
                    low.to_string(),
                    "--high".into(),
                    high.to_string(),
                    "--bit".into(),
                    format!("{}ms", bit.as_millis()),
                    "--seed".into(),
                    seed.into(),
                ];
                // vmmon load refuses a bit shorter than its slice (100 ms by default).
                if *bit < Duration::from_millis(100) {
                    a.extend(["--slice".into(), format!("{}ms", bit.as_millis())]);
                }
                a
            }
            // The copy in a guest has no extension, so the format is named.
            Load::Play { trace: host_trace } => vec![
                "play".into(),
                trace.into(),
                "--format".into(),
                if load_trace::is_csv(host_trace) {
                    "csv"
                } else {
                    "binary"
                }
                .into(),
                "--start".into(),
                format!("{start}s"),
                "--seed".into(),
                seed.into(),
            ],
        };
        a.extend(["--duration".into(), format!("{seconds}s")]);
        a
    }

    /// Where in the trace the host, vm1 and vm2 begin, seconds: a third of the trace apart,
    /// so that the machines are loaded alike but not in step (zeros for a PRBS, whose seeds
    /// differ). Reads the trace, so a bad one fails before any guest boots.
    pub fn starts(&self) -> anyhow::Result<[u64; 3]> {
        let Load::Play { trace } = self else {
            return Ok([0; 3]);
        };
        let t = if load_trace::is_csv(trace) {
            load_trace::read_csv(trace, None)?
        } else {
            load_trace::read_binary(trace, load_trace::ByteOrder::Little, None)?
        };
        let span = t.period * t.load.len() as f64;
        Ok([0.0, span / 3.0, 2.0 * span / 3.0].map(|s| s.floor() as u64))
    }

    /// In words, for the report (`prbs 0..1 CPU, 2 s bits`).
    pub fn describe(&self) -> String {
        match self {
            Load::Prbs { low, high, bit } => {
                format!("prbs {low}..{high} CPU, {} s bits", bit.as_secs_f64())
            }
            Load::Play { trace } => format!(
                "trace {}",
                trace.file_name().unwrap_or_default().to_string_lossy()
            ),
        }
    }
}

/// Which accelerator the guests run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when a test guest boots under it, else TCG.
    Auto,
    /// qemu's translator.
    Tcg,
    /// The host's KVM.
    Kvm,
}

/// Everything that defines a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run folder (created; must not hold a previous run).
    pub out: PathBuf,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// How long the load plays in each scenario.
    pub duration: Duration,
    /// Sampling rate of every recorder, Hz.
    pub rate: f64,
    /// Recording before the load starts (the clock probe's first exchanges, a baseline).
    pub warmup: Duration,
    /// The load.
    pub load: Load,
    /// KVM or TCG.
    pub accel: AccelChoice,
    /// The `vmmon` binary run on the host and copied into the guests.
    pub vmmon: PathBuf,
    /// A static busybox, the guests' user space.
    pub busybox: PathBuf,
    /// Where the kernel is fetched and kept.
    pub cache: PathBuf,
    /// Guest memory in MiB (default: enough for the image, see [`guest::memory_for`]).
    pub memory_mib: Option<u32>,
    /// Copy the guests' consoles to stderr.
    pub echo: bool,
}

impl Options {
    /// Defaults for a run into `out`: every scenario, 120 s each at 1 Hz, PRBS load between
    /// 0 and 1 CPU with 2 s bits, accelerator chosen by probing, this process's binary.
    pub fn new(out: &Path) -> anyhow::Result<Options> {
        Ok(Options {
            out: out.to_path_buf(),
            scenarios: super::scenario::matrix(),
            duration: Duration::from_secs(120),
            rate: 1.0,
            warmup: Duration::from_secs(3),
            load: Load::Prbs {
                low: 0.0,
                high: 1.0,
                bit: Duration::from_secs(2),
            },
            accel: AccelChoice::Auto,
            vmmon: std::env::current_exe().context("cannot find this program's binary")?,
            busybox: PathBuf::from("/bin/busybox"),
            cache: guest::default_cache_dir()?,
            memory_mib: None,
            echo: false,
        })
    }

    /// A warning when the scenarios are too short for a held-out validation.
    fn short_note(&self) -> Option<String> {
        let rows = self.duration.as_secs_f64() * self.rate;
        (rows < MIN_VALIDATED_ROWS).then(|| {
            format!(
                "note: {rows:.0} rows per scenario: the held-out third is too short for \
                 validate's residual tests (about {MIN_VALIDATED_ROWS} rows are needed), so \
                 the report will have no held-out fit; give a longer --duration or a higher \
                 --rate"
            )
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        use crate::record::UsageError;
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100.0) {
            return Err(UsageError(format!(
                "--rate {}: give 0 < Hz ≤ 100",
                crate::trace::shown(self.rate)
            ))
            .into());
        }
        let samples = self.duration.as_secs_f64() * self.rate;
        if samples < 10.0 {
            return Err(UsageError(format!(
                "--duration {:?} at {} Hz gives {samples:.0} samples; a model needs at least 10",
                self.duration, self.rate
            ))
            .into());
        }
        if let Load::Prbs { bit, .. } = &self.load
            && *bit < Duration::from_millis(10)
        {
            return Err(UsageError(format!(
                "--bit {bit:?}: at least 10ms (vmmon load's shortest slice)"
            ))
            .into());
        }
        if let Load::Play { trace } = &self.load
            && !trace.is_file()
        {
            return Err(
                UsageError(format!("load trace {} does not exist", trace.display())).into(),
            );
        }
        Ok(())
    }
}

/// Why a run ended early.
#[derive(Debug, thiserror::Error)]
#[error("stopped by signal {0}")]
pub struct Stopped(pub usize);

/// Records every scenario of `opts` into `opts.out`, calling `status` with a line at each
/// step. A scenario that fails is reported and the next one runs. Stops cleanly (every process ended, temporary files
/// removed, completed scenarios kept) when `stop` becomes non-zero, with [`Stopped`].
pub fn record(
    opts: &Options,
    stop: &AtomicUsize,
    status: &mut dyn FnMut(&str),
) -> anyhow::Result<Recorded> {
    opts.check()?;
    let starts = opts.load.starts()?;
    if let Some(note) = opts.short_note() {
        status(&note);
    }
    let mut failures = Vec::new();
    prepare_out(&opts.out)?;
    let work = WorkDir::new()?;
    let needs_guests = opts.scenarios.iter().any(|s| s.guests > 0);

    let mut info = RunInfo {
        vmmon_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        rate_hz: Some(opts.rate),
        duration_s: Some(opts.duration.as_secs_f64().ceil()),
        warmup_s: Some(opts.warmup.as_secs_f64().ceil()),
        accel: Some("none".into()),
        accel_note: Some("no scenario boots a guest".into()),
        host_cpus: std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok()),
        host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        guest_kernel: None,
        guest_memory_mib: None,
        load: Some(opts.load.describe()),
        started: Some(chrono::Local::now().to_rfc3339()),
        scenarios: Vec::new(),
        failed: Default::default(),
    };

    // The clock server the guests probe, for the whole run.
    let clock = ClockServer::start()?;
    let mut image = None;
    if needs_guests {
        status("fetching the guest kernel (once; cached)");
        // Ctrl-C reaches apt-get too (one process group), which then fails: a stop.
        let kernel = guest::fetch_debian_kernel(&opts.cache);
        check_stop(stop)?;
        let kernel = kernel?;
        status("writing the guest image");
        let initrd = work.path.join("initrd.cpio");
        write_image(opts, &kernel, clock.port, &initrd)?;
        let memory = opts
            .memory_mib
            .unwrap_or_else(|| guest::memory_for(&initrd));
        info.guest_kernel = Some(kernel.version.clone());
        info.guest_memory_mib = Some(memory);
        let (accel, note) = choose_accel(opts, &kernel, &initrd, memory, stop, status)?;
        info.accel = Some(
            match accel {
                Accel::Tcg => "tcg",
                Accel::Kvm => "kvm",
            }
            .into(),
        );
        info.accel_note = Some(note);
        image = Some(Image {
            kernel,
            initrd,
            memory,
            accel,
        });
    }
    write_json(&opts.out.join(files::EXPERIMENT), &info)?;

    for (i, sc) in opts.scenarios.iter().enumerate() {
        check_stop(stop)?;
        status(&format!(
            "scenario {}/{} {} ({}): {:.0} s",
            i + 1,
            opts.scenarios.len(),
            sc.name,
            sc.title,
            opts.warmup.as_secs_f64() + opts.duration.as_secs_f64() + TAIL_S as f64
        ));
        match run_scenario(opts, sc, image.as_ref(), &work, &starts, stop) {
            Ok(()) => {
                info.scenarios.push(sc.name.clone());
                write_json(&opts.out.join(files::EXPERIMENT), &info)?;
            }
            Err(e) if e.downcast_ref::<Stopped>().is_some() => return Err(e),
            // One scenario's failure (a guest that did not boot) must not cost the others.
            Err(e) => {
                let e = format!("{e:#}");
                status(&format!("scenario {} failed: {e}", sc.name));
                info.failed.insert(sc.name.clone(), e.clone());
                write_json(&opts.out.join(files::EXPERIMENT), &info)?;
                failures.push((sc.name.clone(), e));
            }
        }
    }
    drop(clock);
    Ok(Recorded { info, failures })
}

/// What [`record`] did: the run's facts (listing the scenarios recorded whole) and the
/// scenarios that failed, with why.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `experiment.json` as written.
    pub info: RunInfo,
    /// (scenario, error) for each scenario that failed.
    pub failures: Vec<(String, String)>,
}

/// The guest image of a run and how it boots.
#[derive(Debug)]
struct Image {
    kernel: Kernel,
    initrd: PathBuf,
    memory: u32,
    accel: Accel,
}

/// Creates the run folder, refusing one that already holds a run.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.join(files::EXPERIMENT).exists() {
        return Err(crate::record::UsageError(format!(
            "{} already holds a run (experiment.json); choose another folder, or use \
             --analyze {} to redo its report",
            out.display(),
            out.display()
        ))
        .into());
    }
    if out.exists() && !out.is_dir() {
        return Err(crate::record::UsageError(format!(
            "-o {}: a file, not a folder; the run writes a folder of traces and a report",
            out.display()
        ))
        .into());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// A private folder for the image and the sockets, removed when dropped (also on errors
/// and Ctrl-C, since the run returns through here).
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new() -> anyhow::Result<WorkDir> {
        // In the temporary folder, not the run folder: socket paths must stay under 108
        // bytes, and a run folder's path can be long.
        let path = std::env::temp_dir().join(format!(
            "vmmon-experiment-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `vmmon clock serve` on 127.0.0.1, in a thread of this process.
struct ClockServer {
    port: u16,
    stop: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ClockServer {
    fn start() -> anyhow::Result<ClockServer> {
        let mut server = crate::clock::serve::Server::bind("127.0.0.1:0")
            .context("cannot bind the clock server on 127.0.0.1")?;
        let port = server.local_addr()?.port();
        let stop = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let _ = server.run(&flag);
        });
        Ok(ClockServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ClockServer {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The guest's script: find the port, record, wait, play load or not, record a little more,
/// stop. What differs per guest comes from the kernel command line.
fn guest_script(opts: &Options, clock_port: u16) -> String {
    let seconds = opts.duration.as_secs_f64().ceil() as u64;
    let mut args = opts.load.args(seconds, "$seed", "${start}", "/load.trace");
    // A guest has one vCPU, and vmmon load's guard (at most twice the CPUs in threads) would
    // refuse there a load above 2 that the host plays; nothing outside the guest is at risk.
    args.extend(["--max-threads".into(), "64".into()]);
    let load = args
        .iter()
        .map(|a| {
            if a == "$seed" || a.starts_with("${start}") {
                a.clone()
            } else {
                sh_quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"set -u
load=0
seed=1
start=0
for w in $(cat /proc/cmdline); do
  case "$w" in
    vmmon.probe=1) echo "vmmon: accelerator probe"; exit 0 ;;
    vmmon.load=*) load=${{w#*=}} ;;
    vmmon.seed=*) seed=${{w#*=}} ;;
    vmmon.start=*) start=${{w#*=}} ;;
  esac
done
dev=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = {port} ] && dev=/dev/${{p##*/}}
done
[ -n "$dev" ] || {{ echo "vmmon: no virtio-serial port {port}"; exit 1; }}
vmmon record --vms --rate {rate} --clock-ref 10.0.2.2:{clock_port} > "$dev" 2> /tmp/record.err &
rec=$!
sleep {warmup}
load_st=0
if [ "$load" = 1 ]; then
  vmmon load {load} 2> /tmp/load.err || load_st=$?
else
  sleep {seconds}
fi
sleep {tail}
kill -TERM $rec
wait $rec
st=$?
cat /tmp/record.err
[ $load_st = 0 ] || {{ echo "vmmon: the guest's load exited with $load_st:"; cat /tmp/load.err; exit 1; }}
[ $st = 0 ] || [ $st = 143 ] || {{ echo "vmmon: the guest's recorder exited with $st"; exit 1; }}
"#,
        port = PORT_NAME,
        rate = opts.rate,
        warmup = opts.warmup.as_secs_f64().ceil() as u64,
        tail = TAIL_S,
    )
}

/// Quotes `s` for busybox sh.
fn sh_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Writes the run's initramfs: busybox, the virtio modules, `vmmon`, the load trace if any.
fn write_image(opts: &Options, kernel: &Kernel, clock_port: u16, out: &Path) -> anyhow::Result<()> {
    let mut image = Initramfs::new(&opts.busybox)?;
    image
        .modules(kernel, guest::VIRTIO_MODULES)?
        .program(&opts.vmmon, "/bin/vmmon")?
        .network(&GuestNet::user())
        .hostname("vmmon-guest")
        .script(&guest_script(opts, clock_port));
    if let Load::Play { trace } = &opts.load {
        image.host_file(trace, "/load.trace")?;
    }
    image.write(out)
}

/// The guest `name`'s qemu configuration: user-mode network (for the clock) and the
/// virtio-serial port joined to the unix socket `socket` that this process listens on.
fn guest_config(image: &Image, name: &str, socket: &Path, append: String, echo: bool) -> Config {
    let mut c = Config::new(name, &image.kernel, &image.initrd);
    c.memory_mib = image.memory;
    c.accel = image.accel;
    c.network = Network::User {
        net: GuestNet::user(),
        hostfwd: Vec::new(),
    };
    c.append = append;
    c.echo = echo;
    let chardev = format!("socket,id=rec,path={}", socket.display());
    for a in [
        "-device",
        "virtio-serial-pci,id=vser0",
        "-chardev",
        &chardev,
        "-device",
        &format!("virtserialport,bus=vser0.0,chardev=rec,name={PORT_NAME}"),
    ] {
        c.extra_args.push(a.into());
    }
    c
}

/// KVM if asked, or if `Auto` and a guest reaches user space under it within 60 s; else TCG.
fn choose_accel(
    opts: &Options,
    kernel: &Kernel,
    initrd: &Path,
    memory: u32,
    stop: &AtomicUsize,
    status: &mut dyn FnMut(&str),
) -> anyhow::Result<(Accel, String)> {
    match opts.accel {
        AccelChoice::Tcg => return Ok((Accel::Tcg, "TCG, as asked (--accel tcg)".into())),
        AccelChoice::Kvm => return Ok((Accel::Kvm, "KVM, as asked (--accel kvm)".into())),
        AccelChoice::Auto => {}
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Ok((Accel::Tcg, format!("TCG: /dev/kvm cannot be opened ({e})")));
    }
    status("probing KVM with a test guest");
    let mut c = Config::new("vmmon-kvm-probe", kernel, initrd);
    c.memory_mib = memory;
    c.accel = Accel::Kvm;
    c.append = "vmmon.probe=1".into();
    let result = Guest::boot(&c).and_then(|mut g| {
        wait_ready(&mut g, Duration::from_secs(60), stop)?;
        g.finish(Duration::from_secs(30))
    });
    match result {
        Ok(()) => Ok((Accel::Kvm, "KVM: a test guest booted under it".into())),
        Err(e) if e.downcast_ref::<Stopped>().is_some() => Err(e),
        Err(e) => {
            // The first line says what failed; qemu's own last words say why.
            let text = format!("{e:#}");
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let mut first = lines.next().unwrap_or_default().to_string();
            if let Some(last) = lines.next_back() {
                first = format!("{first} {last}");
            }
            status(&format!(
                "KVM does not boot the guest here; using TCG ({first})"
            ));
            Ok((
                Accel::Tcg,
                format!("TCG: a test guest did not boot under KVM ({first})"),
            ))
        }
    }
}

/// Waits for the guest's user space, looking at `stop` every 100 ms.
fn wait_ready(g: &mut Guest, timeout: Duration, stop: &AtomicUsize) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        check_stop(stop)?;
        let ready = g
            .console()
            .iter()
            .any(|l| l.stream == guest::Stream::Serial && l.text.contains(guest::READY_MARKER));
        if ready {
            return Ok(());
        }
        let failed = g
            .console()
            .iter()
            .any(|l| l.text.contains(guest::ERROR_MARKER) || l.text.contains("Kernel panic"));
        if failed || g.has_exited() || start.elapsed() >= timeout {
            // wait_for reads the console from the start and words the failure.
            g.wait_for(guest::READY_MARKER, Duration::ZERO)?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_stop(stop: &AtomicUsize) -> anyhow::Result<()> {
    match stop.load(Ordering::Relaxed) {
        0 => Ok(()),
        sig => Err(Stopped(sig).into()),
    }
}

/// Sleeps `d`, looking at `stop` every 100 ms.
fn sleep(d: Duration, stop: &AtomicUsize) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_stop(stop)?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Process {
    child: Child,
    what: String,
    /// Where its stderr goes, quoted in errors.
    log: PathBuf,
}

impl Process {
    fn spawn(cmd: &mut Command, what: &str, log: &Path) -> anyhow::Result<Process> {
        let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        Ok(Process {
            child,
            what: what.to_string(),
            log: log.to_path_buf(),
        })
    }

    /// That it exited with `status`, and what it said.
    fn failure(&self, status: std::process::ExitStatus) -> anyhow::Error {
        anyhow::anyhow!(
            "{} exited with {status}: {}",
            self.what,
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .trim()
        )
    }

    /// Asks it to finish (SIGTERM: recorders flush and exit) and waits up to 5 s.
    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let s = self.child.wait()?;
        bail!(
            "{} did not stop within 5 s of SIGTERM; killed ({s})",
            self.what
        )
    }

    /// An error (with its log) if it has already exited unsuccessfully: a load that fails
    /// at once should end the scenario at once, not after its whole duration.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(s) if !s.success() => Err(self.failure(s)),
            _ => Ok(()),
        }
    }

    /// Waits up to `timeout` for it to exit by itself, then terminates it.
    fn wait(
        &mut self,
        timeout: Duration,
        stop: &AtomicUsize,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            check_stop(stop)?;
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.terminate()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// Copies what the guest writes to its port into `csv`, chunk by chunk as it arrives.
fn stream_thread(
    listener: UnixListener,
    csv: PathBuf,
    stop: Arc<AtomicUsize>,
) -> JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        listener.set_nonblocking(true)?;
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) != 0 {
                        return Ok(0);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e).context("virtio-serial socket"),
            }
        };
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut out =
            File::create(&csv).with_context(|| format!("cannot create {}", csv.display()))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            use std::io::Read as _;
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // Straight to the file: a row that reached the host is on disk.
                    out.write_all(&buf[..n])?;
                    total += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) > 1 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", csv.display())),
            }
        }
        Ok(total)
    })
}

/// Boots the scenario's guests, records host and guests while the loads play, and writes
/// the scenario's folder.
fn run_scenario(
    opts: &Options,
    sc: &Scenario,
    image: Option<&Image>,
    work: &WorkDir,
    starts: &[u64; 3],
    stop: &AtomicUsize,
) -> anyhow::Result<()> {
    let dir = opts.out.join(&sc.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let names = sc.guest_names();
    let seconds = opts.duration.as_secs_f64().ceil() as u64;
    let warmup = Duration::from_secs(opts.warmup.as_secs_f64().ceil() as u64);
    let mut info = ScenarioInfo {
        name: sc.name.clone(),
        title: sc.title.clone(),
        guests: names.clone(),
        host_load: sc.host_load.then(|| opts.load.describe()),
        guest_load: Default::default(),
        rate_hz: Some(opts.rate),
        duration_s: Some(seconds as f64),
        start: None,
        end: None,
        boot_s: Default::default(),
        streamed_bytes: Default::default(),
    };

    // Stream readers stop on their own at EOF; this flag ends them if a guest never
    // connects or never closes.
    let stream_stop = Arc::new(AtomicUsize::new(0));
    let mut guests: Vec<Guest> = Vec::new();
    let mut booted: Vec<Instant> = Vec::new();
    let mut streams = Vec::new();
    let mut boot_error = None;
    for (i, name) in names.iter().enumerate() {
        let image = image.context("a scenario with guests needs the guest image")?;
        let socket = work.path.join(format!("{name}.sock"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        streams.push(stream_thread(
            listener,
            dir.join(format!("{name}.csv")),
            Arc::clone(&stream_stop),
        ));
        let load = u8::from(sc.guest_load);
        if sc.guest_load {
            info.guest_load.insert(name.clone(), opts.load.describe());
        }
        let append = format!(
            "vmmon.load={load} vmmon.seed={} vmmon.start={}",
            SEEDS[i + 1],
            starts[i + 1]
        );
        let config = guest_config(image, name, &socket, append, opts.echo);
        booted.push(Instant::now());
        match Guest::boot(&config) {
            Ok(g) => guests.push(g),
            Err(e) => {
                boot_error = Some(e.context(format!("cannot boot {name}")));
                break;
            }
        }
    }
    let result = match boot_error {
        Some(e) => Err(e),
        None => drive(
            opts,
            sc,
            &dir,
            &mut guests,
            &booted,
            &mut info,
            warmup,
            seconds,
            starts,
            stop,
        ),
    };
    // Whatever happened, no guest outlives the scenario, and the readers end.
    for g in &mut guests {
        if result.is_err() {
            g.kill();
        }
        let log: String = g
            .console()
            .iter()
            .map(|l| {
                let t = l
                    .time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                format!("{t:.3} {}\n", l.text)
            })
            .collect();
        let _ = std::fs::write(dir.join(format!("{}.console.log", g.name())), log);
    }
    stream_stop.store(if result.is_err() { 2 } else { 1 }, Ordering::Relaxed);
    for (name, s) in names.iter().zip(streams) {
        let bytes = match s.join() {
            Ok(r) => r?,
            Err(_) => bail!("the stream reader of {name} panicked"),
        };
        info.streamed_bytes.insert(name.clone(), bytes);
    }
    result?;
    for name in &names {
        if info.streamed_bytes.get(name).copied().unwrap_or(0) == 0 {
            bail!(
                "{name} streamed no rows; see {}",
                dir.join(format!("{name}.console.log")).display()
            );
        }
    }
    write_json(&dir.join(files::SCENARIO), &info)
}

/// The scenario's timeline once its guests are booting.
#[allow(clippy::too_many_arguments)]
fn drive(
    opts: &Options,
    sc: &Scenario,
    dir: &Path,
    guests: &mut [Guest],
    booted: &[Instant],
    info: &mut ScenarioInfo,
    warmup: Duration,
    seconds: u64,
    starts: &[u64; 3],
    stop: &AtomicUsize,
) -> anyhow::Result<()> {
    // The guests boot side by side; each one's time counts from its own start.
    for (g, t0) in guests.iter_mut().zip(booted) {
        wait_ready(g, BOOT_TIMEOUT, stop)?;
        info.boot_s
            .insert(g.name().to_string(), t0.elapsed().as_secs_f64());
    }
    let mut cmd = Command::new(&opts.vmmon);
    cmd.arg("record").arg("--rate").arg(opts.rate.to_string());
    if guests.is_empty() {
        // The host's pool columns (busy_cpu_pct …) without any VM: a name no process has.
        cmd.args(["--vm-match", "^$"]);
    } else {
        let pids: Vec<String> = guests.iter().map(|g| g.pid().to_string()).collect();
        cmd.arg("--vm-pid").arg(pids.join(","));
    }
    cmd.arg("-o").arg(dir.join(files::HOST));
    info.start = Some(unix_now());
    let mut recorder = Process::spawn(&mut cmd, "the host's recorder", &dir.join("host.log"))?;
    sleep(warmup, stop)?;
    let mut host_load = None;
    if sc.host_load {
        let trace = match &opts.load {
            Load::Play { trace } => trace.to_string_lossy().into_owned(),
            Load::Prbs { .. } => String::new(),
        };
        let mut cmd = Command::new(&opts.vmmon);
        cmd.arg("load").args(opts.load.args(
            seconds,
            &SEEDS[0].to_string(),
            &starts[0].to_string(),
            &trace,
        ));
        host_load = Some(Process::spawn(
            &mut cmd,
            "the host's load",
            &dir.join("host.load.log"),
        )?);
    }
    let span = Duration::from_secs(seconds + TAIL_S);
    if guests.is_empty() {
        let end = Instant::now() + span;
        while Instant::now() < end {
            if let Some(l) = host_load.as_mut() {
                l.check_alive()?;
            }
            sleep(
                end.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200)),
                stop,
            )?;
        }
    } else {
        // Guests power off when their script ends; allow TCG's slowness on top.
        let deadline = Instant::now() + span + Duration::from_secs(60);
        for g in guests.iter_mut() {
            while !g.has_exited() {
                check_stop(stop)?;
                if let Some(l) = host_load.as_mut() {
                    l.check_alive()?;
                }
                if Instant::now() >= deadline {
                    g.kill();
                    bail!(
                        "guest {} still running {} s after its recording should have ended; \
                         last lines:\n{}",
                        g.name(),
                        60,
                        g.tail(20)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            g.finish(Duration::from_secs(10))?;
        }
    }
    let status = recorder.terminate()?;
    info.end = Some(unix_now());
    if !(status.success() || status.code() == Some(143)) {
        return Err(recorder.failure(status));
    }
    if let Some(mut l) = host_load {
        let s = l.wait(Duration::from_secs(10), stop)?;
        if !s.success() {
            return Err(l.failure(s));
        }
    }
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_arguments_are_what_vmmon_load_takes() {
        let prbs = Load::Prbs {
            low: 0.0,
            high: 1.0,
            bit: Duration::from_millis(2000),
        };
        assert_eq!(
            prbs.args(60, "2", "0", "").join(" "),
            "prbs --low 0 --high 1 --bit 2000ms --seed 2 --duration 60s"
        );
        let fast = Load::Prbs {
            low: 0.0,
            high: 1.0,
            bit: Duration::from_millis(40),
        };
        assert!(
            fast.args(60, "2", "0", "")
                .join(" ")
                .contains("--bit 40ms --seed 2 --slice 40ms"),
            "a bit under vmmon load's 100 ms slice brings its own slice"
        );
        let play = Load::Play {
            trace: "/x/axp0.csv".into(),
        };
        assert_eq!(
            play.args(30, "3", "40", "/load.trace").join(" "),
            "play /load.trace --format csv --start 40s --seed 3 --duration 30s"
        );
        assert_eq!(play.describe(), "trace axp0.csv");
        let binary = Load::Play {
            trace: "/x/axp0".into(),
        };
        assert!(binary.args(30, "3", "0", "/load.trace")[3] == "binary");
    }

    #[test]
    fn the_guest_script_takes_load_and_seed_from_the_command_line() {
        let mut o = Options::new(Path::new("/tmp/x")).unwrap();
        o.duration = Duration::from_millis(20_500);
        let s = guest_script(&o, 4242);
        assert!(s.contains("--clock-ref 10.0.2.2:4242"), "{s}");
        assert!(
            s.contains("--seed $seed --duration 21s --max-threads 64 2> /tmp/load.err"),
            "{s}"
        );
        assert!(s.contains(r#"vmmon.start=*) start=${w#*=}"#), "{s}");
        // A load that fails makes the script fail, with the load's own message.
        assert!(s.contains("|| load_st=$?"), "{s}");
        assert!(s.contains("[ $load_st = 0 ] || {"), "{s}");
        o.load = Load::Play {
            trace: "/x/t.csv".into(),
        };
        let s = guest_script(&o, 4242);
        assert!(
            s.contains("play /load.trace --format csv --start ${start}s --seed $seed"),
            "{s}"
        );
        assert!(s.contains("sleep 21\n"), "{s}");
        assert!(s.contains(r#"vmmon.load=*) load=${w#*=}"#), "{s}");
    }

    #[test]
    fn options_refuse_too_few_samples() {
        let mut o = Options::new(Path::new("/tmp/x")).unwrap();
        o.duration = Duration::from_secs(5);
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("5 samples"), "{e}");
        o.duration = Duration::from_secs(60);
        o.rate = 0.0;
        assert!(o.check().is_err());
    }
}
