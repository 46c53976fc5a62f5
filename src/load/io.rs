//! Disk and network load: a byte rate that follows the pattern, for I/O experiments.
//!
//! A pattern value x asks for `x × scale` bytes per second. Each slice's bytes are written in
//! 64 KiB blocks spread evenly over the slice on absolute deadlines, so the rate is smooth at
//! the slice's scale and no backlog builds up when the device is slow (the shortfall is
//! logged, not caught up).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::pattern::Pattern;
use crate::record::{monotonic, realtime, sleep_until};

/// Bytes per write (and the largest UDP payload sent is [`DATAGRAM`]).
const BLOCK: usize = 64 * 1024;
/// UDP payload size: under a 1500-byte MTU, so one datagram is one packet on a real link.
pub const DATAGRAM: usize = 1400;

/// Where the bytes go.
#[derive(Debug)]
pub enum Sink {
    /// A file, rewritten from its start when it reaches `limit` bytes, and removed at the end.
    Disk {
        /// The open file.
        file: File,
        /// Its path, removed when the sink is dropped.
        path: PathBuf,
        /// Largest size the file reaches.
        limit: u64,
        /// Next write position.
        pos: u64,
        /// `fdatasync` after every this many bytes, so the bytes reach the device.
        sync_every: u64,
        /// Bytes since the last sync.
        unsynced: u64,
    },
    /// UDP datagrams to one destination.
    Net {
        /// The sending socket (not connected).
        socket: UdpSocket,
        /// Where the datagrams go.
        to: SocketAddr,
    },
}

impl Sink {
    /// A disk sink: a new file in `dir` (removed when dropped, also after an error).
    pub fn disk(dir: &Path, limit: u64) -> io::Result<Sink> {
        let path = dir.join(format!("vmmon-load-{}.tmp", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Sink::Disk {
            file,
            path,
            limit: limit.max(BLOCK as u64),
            pos: 0,
            sync_every: 4 * 1024 * 1024,
            unsynced: 0,
        })
    }

    /// A network sink sending to `target` (HOST:PORT).
    pub fn net(target: &str) -> io::Result<Sink> {
        let to = target.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the name has no address")
        })?;
        let socket = UdpSocket::bind(if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })?;
        // Not connected: a connected socket reports the ICMP "port unreachable" of one
        // datagram by failing the next send, which then never leaves, so with nothing
        // listening about half the load was lost. Unconnected, every datagram goes out.
        Ok(Sink::Net { socket, to })
    }

    /// Sends or writes `n ≤ 64 KiB` bytes of `buf`; returns how many went out.
    fn put(&mut self, buf: &[u8], n: usize) -> io::Result<usize> {
        match self {
            Sink::Disk {
                file,
                limit,
                pos,
                sync_every,
                unsynced,
                ..
            } => {
                if *pos + n as u64 > *limit {
                    *pos = 0;
                }
                file.write_all_at(&buf[..n], *pos)?;
                *pos += n as u64;
                *unsynced += n as u64;
                if *unsynced >= *sync_every {
                    file.sync_data()?;
                    *unsynced = 0;
                }
                Ok(n)
            }
            Sink::Net { socket, to } => {
                let mut sent = 0;
                for chunk in buf[..n].chunks(DATAGRAM) {
                    match socket.send_to(chunk, *to) {
                        Ok(k) => sent += k,
                        // A full queue (or an ICMP error, where a system reports one on an
                        // unconnected socket): the bytes are not delivered, which the log
                        // shows; the load goes on.
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(sent)
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Sink::Disk { file, .. } = self {
            file.sync_data()?;
            file.seek(SeekFrom::Start(0))?;
            file.flush()?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Disk { path, .. } = self {
            let _ = std::fs::remove_file(path.as_path());
        }
    }
}

/// One logged slice of I/O load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IoLog {
    /// Wall-clock time at the end of the slice, Unix seconds.
    pub time: f64,
    /// Target load (pattern value).
    pub target: f64,
    /// Bytes the slice asked for.
    pub target_bytes: u64,
    /// Bytes written or sent.
    pub done_bytes: u64,
}

/// Totals of an I/O load run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct IoSummary {
    /// Bytes asked for.
    pub target_bytes: u64,
    /// Bytes written or sent.
    pub done_bytes: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// The signal that stopped the run, if any.
    pub signal: Option<i32>,
}

/// Runs `pattern` as bytes per second (`x × scale`) into `sink` for `slices` slices.
pub fn run(
    pattern: &Pattern,
    slice: Duration,
    slices: usize,
    scale: f64,
    sink: &mut Sink,
    stop: &AtomicUsize,
    on_slice: &mut dyn FnMut(&IoLog),
) -> io::Result<IoSummary> {
    let buf: Vec<u8> = (0..BLOCK).map(|i| (i * 131 % 251) as u8).collect();
    let start = monotonic();
    let mut summary = IoSummary::default();
    for k in 0..slices {
        if stop.load(Ordering::Relaxed) != 0 {
            break;
        }
        let x = pattern.at(k as f64 * slice.as_secs_f64(), k);
        let target = (x * scale * slice.as_secs_f64()).round() as u64;
        let blocks = target.div_ceil(BLOCK as u64);
        let slice_start = start + slice * k as u32;
        let mut done = 0u64;
        for b in 0..blocks {
            if stop.load(Ordering::Relaxed) != 0 {
                break;
            }
            sleep_until(slice_start + slice.mul_f64(b as f64 / blocks as f64));
            let n = (target - b * BLOCK as u64).min(BLOCK as u64) as usize;
            done += sink.put(&buf, n)? as u64;
        }
        sleep_until(slice_start + slice);
        summary.target_bytes += target;
        summary.done_bytes += done;
        on_slice(&IoLog {
            time: realtime().as_secs_f64(),
            target: x,
            target_bytes: target,
            done_bytes: done,
        });
    }
    sink.finish()?;
    summary.wall_s = (monotonic() - start).as_secs_f64();
    summary.signal = match stop.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    };
    Ok(summary)
}
