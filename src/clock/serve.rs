//! The host's side: answers NTP client requests with its wall clock.
//!
//! Only well-formed 48-byte client requests are answered, with a 48-byte reply, so the server
//! can never amplify traffic; anything else is dropped and counted by reason.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::now_ns;
use super::packet::{MODE_CLIENT, MODE_SERVER, Malformed, NtpTime, PACKET_LEN, Packet};

/// What the server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServeStats {
    /// Datagrams received.
    pub received: u64,
    /// Requests answered.
    pub answered: u64,
    /// Dropped: shorter than 48 bytes.
    pub short: u64,
    /// Dropped: longer than 48 bytes.
    pub oversized: u64,
    /// Dropped: 48 bytes but not an NTP client request (mode, version, no transmit time).
    pub malformed: u64,
    /// Replies the network refused to send.
    pub send_errors: u64,
}

impl ServeStats {
    /// Datagrams dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.short + self.oversized + self.malformed
    }
}

/// A bound server socket and its counters.
#[derive(Debug)]
pub struct Server {
    socket: UdpSocket,
    stats: ServeStats,
}

/// How long a receive waits before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(100);

impl Server {
    /// Binds `addr` (UDP).
    pub fn bind(addr: &str) -> io::Result<Server> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(POLL))?;
        set_receive_buffer(&socket, 1 << 20);
        Ok(Server {
            socket,
            stats: ServeStats::default(),
        })
    }

    /// The address actually bound (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The counters so far.
    pub fn stats(&self) -> ServeStats {
        self.stats
    }

    /// The reply to datagram `bytes` received at `t2_ns`, or `None` (counted) if it is not a
    /// request; `t3` gives the transmit time, read as late as possible.
    pub fn answer(
        &mut self,
        bytes: &[u8],
        t2_ns: i64,
        t3: impl FnOnce() -> i64,
    ) -> Option<[u8; PACKET_LEN]> {
        self.stats.received += 1;
        let request = match Packet::parse(bytes) {
            Ok(p) => p,
            Err(Malformed::Short) => {
                self.stats.short += 1;
                return None;
            }
            Err(Malformed::Oversized) => {
                self.stats.oversized += 1;
                return None;
            }
        };
        if request.mode != MODE_CLIENT
            || !(1..=4).contains(&request.version)
            || request.transmit.is_zero()
        {
            self.stats.malformed += 1;
            return None;
        }
        let receive = NtpTime::from_unix_ns(t2_ns);
        let mut reply = Packet {
            leap: 0,
            version: request.version,
            mode: MODE_SERVER,
            // Not a reference clock: the conventional stratum of an undisciplined local clock.
            stratum: 10,
            poll: request.poll,
            precision: -20,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: *b"LOCL",
            reference: receive,
            origin: request.transmit,
            receive,
            transmit: NtpTime::default(),
        };
        reply.transmit = NtpTime::from_unix_ns(t3());
        self.stats.answered += 1;
        Some(reply.encode())
    }

    /// Answers requests until `stop` becomes non-zero; returns the counters.
    pub fn run(&mut self, stop: &AtomicUsize) -> io::Result<ServeStats> {
        // Large enough for any UDP datagram, so an oversized one is seen whole and counted.
        let mut buf = vec![0u8; 65_536];
        while stop.load(Ordering::Relaxed) == 0 {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if super::is_timeout(&e) => continue,
                // An ICMP error from an earlier reply's destination: not ours to stop for.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let t2 = now_ns();
            if let Some(reply) = self.answer(&buf[..len], t2, now_ns)
                && self.socket.send_to(&reply, from).is_err()
            {
                self.stats.send_errors += 1;
            }
        }
        Ok(self.stats)
    }
}

/// Asks for a larger receive buffer, so that a burst of garbage does not crowd out the
/// requests behind it (here and in `probe serve`); the kernel caps it at
/// `net.core.rmem_max`, and failure is harmless.
pub(crate) fn set_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the stated length.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_requests_are_answered_and_replies_are_never_larger() {
        let mut s = Server::bind("127.0.0.1:0").expect("bind");
        let request = Packet::request(1_795_430_000_000_000_000).encode();
        let reply = s.answer(&request, 1_795_430_002_500_000_000, || {
            1_795_430_002_500_010_000
        });
        let reply = Packet::parse(&reply.expect("answered")).expect("parse");
        assert_eq!(reply.mode, MODE_SERVER);
        assert_eq!(reply.origin, Packet::parse(&request).expect("req").transmit);
        assert_eq!(
            reply.receive.to_unix_ns(1_795_430_000_000_000_000),
            1_795_430_002_500_000_000
        );
        let mut server_mode = request;
        server_mode[0] = 0x24;
        let mut no_time = request;
        no_time[40..48].fill(0);
        assert!(s.answer(&request[..20], 0, || 0).is_none());
        assert!(s.answer(&[0u8; 49], 0, || 0).is_none());
        assert!(s.answer(&server_mode, 0, || 0).is_none());
        assert!(s.answer(&no_time, 0, || 0).is_none());
        assert_eq!(
            s.stats(),
            ServeStats {
                received: 5,
                answered: 1,
                short: 1,
                oversized: 1,
                malformed: 2,
                send_errors: 0
            }
        );
    }
}
