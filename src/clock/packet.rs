//! NTPv4 packets (RFC 5905, 48 bytes, no extension fields) and NTP timestamps.

/// Length of a packet: requests and replies are exactly this long.
pub const PACKET_LEN: usize = 48;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
const UNIX_TO_NTP: i64 = 2_208_988_800;

/// Client mode (a request).
pub const MODE_CLIENT: u8 = 3;
/// Server mode (a reply).
pub const MODE_SERVER: u8 = 4;

/// An NTP timestamp: seconds since 1900 modulo 2³² (the era is implied) and a 2⁻³² s
/// fraction, as the raw 64 bits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// From nanoseconds since the Unix epoch.
    pub fn from_unix_ns(ns: i64) -> Self {
        let secs = ns.div_euclid(1_000_000_000) + UNIX_TO_NTP;
        let sub = ns.rem_euclid(1_000_000_000) as u64;
        // Rounded to the nearest 2⁻³² s; sub < 10⁹ so the shift cannot overflow.
        let frac = ((sub << 32) + 500_000_000) / 1_000_000_000;
        NtpTime(((secs as u64) << 32).wrapping_add(frac))
    }

    /// To nanoseconds since the Unix epoch, taking the era that puts the result nearest to
    /// `pivot_ns` (a clock reading of the receiver): correct across the 2036 era rollover as
    /// long as the clocks are within 68 years.
    pub fn to_unix_ns(self, pivot_ns: i64) -> i64 {
        let secs32 = (self.0 >> 32) as i64;
        let frac = self.0 & 0xffff_ffff;
        let sub = ((frac * 1_000_000_000) >> 32) as i64;
        let pivot_ntp = pivot_ns.div_euclid(1_000_000_000) + UNIX_TO_NTP;
        let era = pivot_ntp.div_euclid(1 << 32);
        let best = [era - 1, era, era + 1]
            .into_iter()
            .map(|e| e * (1 << 32) + secs32)
            .min_by_key(|s| (s - pivot_ntp).abs())
            .unwrap_or(secs32);
        (best - UNIX_TO_NTP) * 1_000_000_000 + sub
    }

    /// Whether the timestamp is unset (all zero bits, "unknown" in NTP).
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// An NTP packet's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    /// Leap indicator (2 bits): 3 means the sender's clock is not synchronised.
    pub leap: u8,
    /// Version (3 bits).
    pub version: u8,
    /// Mode (3 bits): 3 client, 4 server.
    pub mode: u8,
    /// Stratum: 0 means a kiss-o'-death reply, whose reference id says why.
    pub stratum: u8,
    /// Poll interval, log₂ seconds.
    pub poll: i8,
    /// Clock precision, log₂ seconds.
    pub precision: i8,
    /// Root delay (NTP short format).
    pub root_delay: u32,
    /// Root dispersion (NTP short format).
    pub root_dispersion: u32,
    /// Reference id (four ASCII characters for stratum 0 and 1).
    pub reference_id: [u8; 4],
    /// When the sender's clock was last set.
    pub reference: NtpTime,
    /// In a reply: the request's transmit timestamp (T1).
    pub origin: NtpTime,
    /// In a reply: when the server received the request (T2).
    pub receive: NtpTime,
    /// When the packet was sent (T1 in a request, T3 in a reply).
    pub transmit: NtpTime,
}

/// Why bytes are not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than 48 bytes.
    Short,
    /// More than 48 bytes (extension fields and MACs are not supported).
    Oversized,
}

impl Packet {
    /// Decodes exactly [`PACKET_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Packet, Malformed> {
        if b.len() < PACKET_LEN {
            return Err(Malformed::Short);
        }
        if b.len() > PACKET_LEN {
            return Err(Malformed::Oversized);
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let time_at = |i: usize| NtpTime((u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4)));
        Ok(Packet {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: time_at(16),
            origin: time_at(24),
            receive: time_at(32),
            transmit: time_at(40),
        })
    }

    /// Encodes to the 48 bytes on the wire.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (self.leap & 3) << 6 | (self.version & 7) << 3 | (self.mode & 7);
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        for (i, t) in [self.reference, self.origin, self.receive, self.transmit]
            .into_iter()
            .enumerate()
        {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&t.0.to_be_bytes());
        }
        b
    }

    /// A client request sent at `t1_ns`.
    pub fn request(t1_ns: i64) -> Packet {
        Packet {
            version: 4,
            mode: MODE_CLIENT,
            transmit: NtpTime::from_unix_ns(t1_ns),
            ..Packet::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        for ns in [
            0,
            1_795_430_000_123_456_789,
            1_795_430_000_999_999_999,
            // After the 2036 rollover (era 1).
            2_085_978_496_000_000_001,
        ] {
            let t = NtpTime::from_unix_ns(ns);
            assert!(
                (t.to_unix_ns(ns + 3_600_000_000_000) - ns).abs() <= 1,
                "{ns}"
            );
        }
        // The Unix epoch is 2208988800 s after the NTP epoch.
        assert_eq!(NtpTime::from_unix_ns(0).0 >> 32, 2_208_988_800);
    }

    #[test]
    fn packets_round_trip_and_lengths_are_checked() {
        let mut p = Packet::request(1_795_430_000_000_000_000);
        p.stratum = 2;
        p.poll = -3;
        p.reference_id = *b"LOCL";
        p.receive = NtpTime(42);
        let b = p.encode();
        assert_eq!(b[0], 0x23, "LI 0, version 4, mode 3");
        assert_eq!(Packet::parse(&b), Ok(p));
        assert_eq!(Packet::parse(&b[..47]), Err(Malformed::Short));
        assert_eq!(Packet::parse(&[0u8; 49]), Err(Malformed::Oversized));
    }
}
