//! Running a load pattern as busy worker threads.
//!
//! A target run-queue length x is carried by the workers in turn: thread i is busy for the part
//! of x between i and i + 1 of every slice (1.6: one thread always, one 60% of the time). The
//! partial thread's busy phase is placed at random in each 20 ms sub-slice (`phase`), so a
//! kernel sampling its run queue (the load average, every 5 s on Linux) sees x on average. Time mode is busy for a wall-clock fraction; work mode is busy for an amount
//! of the thread's own CPU time, so competing load stretches it as it would a real job.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::pattern::Pattern;
use crate::record::{monotonic, realtime, sleep_until};

/// How a worker measures its share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Busy for a fraction of each slice of wall-clock time.
    #[default]
    Time,
    /// An amount of the thread's CPU time per slice; stretched when the CPU is shared.
    Work,
}

/// How to run a pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Length of a slice (a trace's sample period).
    pub slice: Duration,
    /// Number of slices to run.
    pub slices: usize,
    /// Worker threads.
    pub threads: usize,
    /// Time or work mode.
    pub mode: Mode,
    /// Seed of the busy phases' placement.
    pub seed: u64,
    /// Length of the sub-slices in which each busy phase is placed at random (at most the
    /// slice).
    pub phase: Duration,
}

/// One logged interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntervalLog {
    /// Wall-clock time at the end of the interval, Unix seconds.
    pub time: f64,
    /// Target run-queue length (time mode; in work mode the mean over the work done).
    pub target: f64,
    /// CPU seconds the target asks for in the interval.
    pub target_cpu_s: f64,
    /// CPU seconds the process used in the interval (getrusage).
    pub delivered_cpu_s: f64,
}

/// How a run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadSummary {
    /// CPU seconds asked for by the slices run.
    pub target_cpu_s: f64,
    /// CPU seconds used (getrusage of the process).
    pub delivered_cpu_s: f64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Wall-clock seconds the pattern lasts.
    pub nominal_s: f64,
    /// The signal that stopped the run, if any.
    pub signal: Option<i32>,
}

/// Iterations of the busy loop between looks at the clock or the stop flag.
const CHUNK: u64 = 2048;

fn work(n: u64, mut x: u64) -> u64 {
    for _ in 0..n {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    x
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU seconds used by the process so far (user + system, every thread).
pub fn process_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Spins until `end` (monotonic) or a stop; returns false when stopped.
fn spin_until(end: Duration, stop: &AtomicUsize) -> bool {
    let mut x = 1u64;
    while monotonic() < end {
        if stop.load(Ordering::Relaxed) != 0 {
            return false;
        }
        x = work(CHUNK / 8, x);
    }
    black_box(x);
    true
}

struct Shared {
    /// Work mode: planned CPU nanoseconds of the busy phases completed.
    planned_ns: AtomicU64,
    /// Work mode: Σ target × planned ns, for the mean target of an interval.
    weighted: AtomicU64,
    /// Workers still running.
    running: AtomicUsize,
}

fn worker(
    i: usize,
    pattern: &Pattern,
    cfg: &LoadConfig,
    start: Duration,
    shared: &Shared,
    stop: &AtomicUsize,
) {
    crate::record::schedule::tighten_timer_slack();
    let mut rng = Rng((cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    let slice_ns = cfg.slice.as_nanos() as u64;
    let subs = (cfg.slice.as_nanos() / cfg.phase.as_nanos().max(1)).max(1) as u64;
    let sub_ns = slice_ns / subs;
    'slices: for k in 0..cfg.slices {
        let x = pattern.at(k as f64 * cfg.slice.as_secs_f64(), k);
        // Thread i carries the part of x between i and i + 1: whole CPUs on the first threads,
        // the fraction on one. Spreading x evenly (each busy x/threads) makes several threads
        // sleep and wake at once, and Linux's load average then counts them high (measured:
        // 0.6 on two threads read as 0.82 where one thread read 0.72, baseline 0.1).
        let duty = (x - i as f64).clamp(0.0, 1.0);
        let busy_ns = (duty * sub_ns as f64) as u64;
        let slice_start = start + Duration::from_nanos(k as u64 * slice_ns);
        for j in 0..subs {
            if stop.load(Ordering::Relaxed) != 0 {
                break 'slices;
            }
            let idle_ns = sub_ns - busy_ns;
            let lead = Duration::from_nanos((rng.uniform() * idle_ns as f64) as u64);
            match cfg.mode {
                Mode::Time => {
                    let s0 = slice_start + Duration::from_nanos(j * sub_ns) + lead;
                    sleep_until(s0);
                    // Busy for the whole share from the moment the thread actually woke: a
                    // late wake-up (timer latency, a busy host) must not shorten it.
                    let begin = monotonic().max(s0);
                    if busy_ns > 0 && !spin_until(begin + Duration::from_nanos(busy_ns), stop) {
                        break 'slices;
                    }
                }
                Mode::Work => {
                    std::thread::sleep(lead);
                    // The work is counted in this thread's CPU time, which competing load
                    // does not advance: the phase stretches in wall time instead.
                    let c0 = thread_cpu();
                    let mut v = 1u64;
                    while thread_cpu() - c0 < Duration::from_nanos(busy_ns) {
                        if stop.load(Ordering::Relaxed) != 0 {
                            break 'slices;
                        }
                        v = work(CHUNK / 8, v);
                    }
                    black_box(v);
                    shared.planned_ns.fetch_add(busy_ns, Ordering::Relaxed);
                    shared
                        .weighted
                        .fetch_add((busy_ns as f64 * x) as u64, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_nanos(idle_ns) - lead);
                }
            }
        }
        if cfg.mode == Mode::Time {
            sleep_until(slice_start + cfg.slice);
        }
    }
    shared.running.fetch_sub(1, Ordering::Relaxed);
}

/// Runs `pattern` until its slices are done or `stop` becomes non-zero (every worker is
/// joined before returning); `on_interval` sees each slice (time mode) or each slice-long
/// interval of wall time (work mode).
pub fn run(
    pattern: &Pattern,
    cfg: &LoadConfig,
    stop: &AtomicUsize,
    on_interval: &mut dyn FnMut(&IntervalLog),
) -> LoadSummary {
    let shared = Arc::new(Shared {
        planned_ns: AtomicU64::new(0),
        weighted: AtomicU64::new(0),
        running: AtomicUsize::new(cfg.threads),
    });
    let cpu0 = process_cpu();
    // Workers start on the next whole 10 ms, after all are spawned.
    let start = monotonic() + Duration::from_millis(10);
    let mut summary = LoadSummary {
        nominal_s: cfg.slice.as_secs_f64() * cfg.slices as f64,
        ..LoadSummary::default()
    };
    std::thread::scope(|scope| {
        for i in 0..cfg.threads {
            let shared = &shared;
            scope.spawn(move || worker(i, pattern, cfg, start, shared, stop));
        }
        let mut cpu_prev = process_cpu();
        let (mut planned_prev, mut weighted_prev) = (0u64, 0u64);
        for k in 0.. {
            let end = start + cfg.slice * (k as u32 + 1);
            // Short naps so that a stop or the workers' end is noticed promptly.
            while monotonic() < end
                && stop.load(Ordering::Relaxed) == 0
                && shared.running.load(Ordering::Relaxed) > 0
            {
                sleep_until(end.min(monotonic() + Duration::from_millis(50)));
            }
            let finished = shared.running.load(Ordering::Relaxed) == 0;
            let cpu = process_cpu();
            let wall = realtime().as_secs_f64();
            let log = match cfg.mode {
                Mode::Time if k < cfg.slices => {
                    let target = pattern.at(k as f64 * cfg.slice.as_secs_f64(), k);
                    Some(IntervalLog {
                        time: wall,
                        target,
                        target_cpu_s: target.min(cfg.threads as f64) * cfg.slice.as_secs_f64(),
                        delivered_cpu_s: cpu - cpu_prev,
                    })
                }
                Mode::Time => None,
                Mode::Work => {
                    let planned = shared.planned_ns.load(Ordering::Relaxed);
                    let weighted = shared.weighted.load(Ordering::Relaxed);
                    let dp = planned - planned_prev;
                    let target_cpu_s = dp as f64 * 1e-9;
                    let target = if dp > 0 {
                        (weighted - weighted_prev) as f64 / dp as f64
                    } else {
                        0.0
                    };
                    (planned_prev, weighted_prev) = (planned, weighted);
                    Some(IntervalLog {
                        time: wall,
                        target,
                        target_cpu_s,
                        delivered_cpu_s: cpu - cpu_prev,
                    })
                }
            };
            if let Some(l) = log {
                summary.target_cpu_s += l.target_cpu_s;
                on_interval(&l);
            }
            cpu_prev = cpu;
            if finished || stop.load(Ordering::Relaxed) != 0 {
                break;
            }
        }
    });
    summary.delivered_cpu_s = process_cpu() - cpu0;
    summary.wall_s = (monotonic().saturating_sub(start)).as_secs_f64();
    summary.signal = match stop.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    };
    summary
}
