//! Sampling on absolute deadlines.
//!
//! Slot k is due at `start + k × interval` on `CLOCK_MONOTONIC`, so sleep overshoot never
//! accumulates into drift. When the recorder falls behind by a whole slot it does not burst to
//! catch up: it samples once, for the latest slot that is due, and counts the skipped ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Longest single sleep. A signal interrupts the sleep at once; this bound is for a library
/// caller that sets the stop flag from another thread. It was 100 ms, but in a VM every timer
/// wakeup costs system time: at 1 Hz the ten naps per sample cost more CPU than the sample.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Asks the kernel to wake this thread as close to its deadlines as it can (timer slack
/// 1 ns instead of the default 50 µs, which otherwise shows directly in the lateness).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; these clock ids always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time on `CLOCK_MONOTONIC` (immune to wall-clock steps).
pub fn monotonic() -> Duration {
    clock(libc::CLOCK_MONOTONIC)
}

/// Wall-clock time since the Unix epoch (`CLOCK_REALTIME`).
pub fn realtime() -> Duration {
    clock(libc::CLOCK_REALTIME)
}

/// Sleeps until `deadline` on `CLOCK_MONOTONIC`; returns early if a signal arrives.
pub fn sleep_until(deadline: Duration) {
    let ts = libc::timespec {
        tv_sec: deadline.as_secs() as libc::time_t,
        tv_nsec: deadline.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid timespec; a null remainder pointer is allowed with TIMER_ABSTIME.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// The deadlines of a fixed-rate recording.
#[derive(Debug)]
pub struct Schedule {
    start: Duration,
    interval_ns: u128,
    next: u64,
    missed: u64,
}

impl Schedule {
    /// A schedule whose slot 0 is due at `start` (a `monotonic()` time).
    pub fn new(start: Duration, interval: Duration) -> Self {
        Schedule {
            start,
            interval_ns: interval.as_nanos().max(1),
            next: 0,
            missed: 0,
        }
    }

    /// When slot `k` is due.
    pub fn deadline(&self, k: u64) -> Duration {
        let ns = self.start.as_nanos() + self.interval_ns * u128::from(k);
        Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    /// Slots skipped so far because the recorder was a whole interval or more behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Waits for the next slot and returns its index and deadline; `None` once `stop` is set.
    pub fn wait(&mut self, stop: &AtomicUsize) -> Option<(u64, Duration)> {
        let mut k = self.next;
        let now = monotonic();
        if self.deadline(k) <= now {
            let due = ((now - self.start).as_nanos() / self.interval_ns) as u64;
            if due > k {
                self.missed += due - k;
                k = due;
            }
        } else {
            let deadline = self.deadline(k);
            loop {
                if stop.load(Ordering::Relaxed) != 0 {
                    return None;
                }
                let now = monotonic();
                if now >= deadline {
                    break;
                }
                sleep_until(deadline.min(now + MAX_NAP));
            }
        }
        if stop.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.next = k + 1;
        Some((k, self.deadline(k)))
    }
}

/// Distribution of |actual − scheduled| sample times, in fixed memory.
///
/// 1 µs buckets up to 10 ms and 1 ms buckets up to 10 s: a percentile is exact to the bucket
/// width, and memory does not grow with the length of the run.
#[derive(Debug, Clone)]
pub struct Lateness {
    fine: Vec<u64>,
    coarse: Vec<u64>,
    count: u64,
    max: Duration,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness {
            fine: vec![0; 10_000],
            coarse: vec![0; 10_000],
            count: 0,
            max: Duration::ZERO,
        }
    }
}

/// Summary of sampling lateness, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatenessSummary {
    /// Samples measured.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Lateness {
    /// Adds one measurement.
    pub fn record(&mut self, late: Duration) {
        let us = late.as_micros();
        if us < 10_000 {
            self.fine[us as usize] += 1;
        } else {
            let ms = (us / 1000).min(9_999) as usize;
            self.coarse[ms] += 1;
        }
        self.count += 1;
        self.max = self.max.max(late);
    }

    /// The `q` quantile (0..=1) in microseconds, at bucket resolution (the bucket's lower
    /// edge: 1 µs below 10 ms, 1 ms above).
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (us, n) in self.fine.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return us as f64;
            }
        }
        for (ms, n) in self.coarse.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (ms as f64 * 1000.0).max(10_000.0);
            }
        }
        self.max.as_secs_f64() * 1e6
    }

    /// p50, p99 and max.
    pub fn summary(&self) -> LatenessSummary {
        LatenessSummary {
            samples: self.count,
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            max_us: self.max.as_secs_f64() * 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_absolute() {
        let s = Schedule::new(Duration::from_secs(100), Duration::from_millis(10));
        assert_eq!(s.deadline(0), Duration::from_secs(100));
        assert_eq!(s.deadline(250), Duration::from_millis(102_500));
        // Deadlines are integer nanoseconds: a 1/3 s interval never accumulates float error.
        let s = Schedule::new(Duration::ZERO, Duration::from_nanos(333_333_333));
        assert_eq!(s.deadline(3), Duration::from_nanos(999_999_999));
    }

    #[test]
    fn a_late_recorder_skips_and_counts() {
        let stop = AtomicUsize::new(0);
        let interval = Duration::from_millis(10);
        // Started 55 ms ago: slots 0..=5 are due, 0..=4 are missed.
        let mut s = Schedule::new(monotonic() - Duration::from_millis(55), interval);
        let (k, _) = s.wait(&stop).expect("not stopped");
        assert_eq!(k, 5);
        assert_eq!(s.missed(), 5);
        let (k, _) = s.wait(&stop).expect("not stopped");
        assert_eq!(k, 6);
        stop.store(2, Ordering::Relaxed);
        assert!(s.wait(&stop).is_none());
    }

    #[test]
    fn lateness_quantiles() {
        let mut l = Lateness::default();
        for us in 1..=100u64 {
            l.record(Duration::from_micros(us));
        }
        l.record(Duration::from_millis(250));
        let s = l.summary();
        assert_eq!(s.samples, 101);
        assert_eq!(s.p50_us, 51.0);
        assert_eq!(s.p99_us, 100.0);
        assert_eq!(s.max_us, 250_000.0);
    }
}
