//! Clock offset and drift between machines, measured the way NTP does it.
//!
//! A guest's clock is not its host's: a guest booted under qemu starts a fraction of a second
//! behind, and drifts. `serve` answers timestamp requests on the host; `probe` sends bursts of
//! them from a guest and keeps, per burst, the exchange with the smallest round trip. From the
//! four timestamps of an exchange (client send T1, server receive T2, server send T3, client
//! receive T4) causality alone bounds the offset θ = server clock − client clock:
//! `T3 − T4 ≤ θ ≤ T2 − T1`. The estimate is the middle of that interval and the bound its
//! half-width, `rtt/2`, whatever the path's asymmetry.
//!
//! Packets are NTPv4 (RFC 5905) client/server packets of 48 bytes, so `vmmon clock probe` can
//! also ask a real NTP server, and NTP clients can ask `vmmon clock serve`.

pub mod drift;
pub mod packet;
pub mod probe;
pub mod serve;

pub use drift::{Drift, theil_sen};
pub use packet::{NtpTime, PACKET_LEN, Packet};
pub use probe::{Background, Measurement, ProbeConfig, Prober, RefSummary, Track};
pub use serve::{ServeStats, Server};

/// The wall clock (`CLOCK_REALTIME`) in nanoseconds since the Unix epoch, read through libc
/// so that a clock faked by `LD_PRELOAD` (libfaketime) is the clock measured.
pub fn now_ns() -> i64 {
    let d = crate::record::realtime();
    d.as_secs() as i64 * 1_000_000_000 + i64::from(d.subsec_nanos())
}

/// Whether a socket error only means that no datagram came in time (or a signal woke us).
fn is_timeout(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

/// One exchange's four timestamps in nanoseconds since the Unix epoch (T1, T4 on the
/// client's clock; T2, T3 on the server's). Integers, because f64 Unix seconds resolve only
/// 0.24 µs today and the differences that matter are microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Client transmit.
    pub t1: i64,
    /// Server receive.
    pub t2: i64,
    /// Server transmit.
    pub t3: i64,
    /// Client receive.
    pub t4: i64,
}

impl Exchange {
    /// Offset of the server's clock from the client's, seconds: `((T2 − T1) + (T3 − T4)) / 2`.
    pub fn offset(&self) -> f64 {
        ((self.t2 - self.t1) + (self.t3 - self.t4)) as f64 / 2e9
    }

    /// Round-trip delay in seconds, the server's holding time excluded:
    /// `(T4 − T1) − (T3 − T2)`.
    pub fn rtt(&self) -> f64 {
        ((self.t4 - self.t1) - (self.t3 - self.t2)).max(0) as f64 / 1e9
    }

    /// Half-width of the interval that must contain the true offset: `rtt / 2`, seconds.
    pub fn bound(&self) -> f64 {
        self.rtt() / 2.0
    }

    /// The client's time in the middle of the exchange (ns), to which the offset refers.
    pub fn midpoint(&self) -> i64 {
        self.t1 + (self.t4 - self.t1) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_bound_of_a_known_exchange() {
        // Server 2.5 s ahead; 100 µs out, 300 µs back, 50 µs in the server.
        let (theta, out, back, hold) = (2_500_000_000, 100_000, 300_000, 50_000);
        let t1 = 1_795_430_000_000_000_000;
        let t2 = t1 + out + theta;
        let t3 = t2 + hold;
        let t4 = t3 - theta + back;
        let e = Exchange { t1, t2, t3, t4 };
        assert_eq!(e.rtt(), 400e-6);
        // Asymmetry shifts the estimate by (out − back)/2, inside the bound.
        assert_eq!(e.offset(), 2.5 - 100e-6);
        assert!((e.offset() - 2.5).abs() <= e.bound());
    }
}
