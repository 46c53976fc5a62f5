//! A real guest for the tests: Debian's kernel from a cache shared by every test of a build
//! (`target/guest-cache`, or `$VMMON_CACHE`), and a scenario of known CPU and network work
//! whose phases the host times, so that what `vmmon record --vms` sees can be held against it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use vmmon::guest::{self, Config, ConsoleLine, Guest, GuestNet, Initramfs, Kernel, Network};

use crate::util::{require, vmmon_bin};

/// How long a TCG boot may take on a slow, shared CI machine (about 3 s here).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel cache for tests: `$VMMON_CACHE`, else `guest-cache` in the build's target
/// folder, so that one CI run downloads the kernel once for every test.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMMON_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // target/debug/vmmon → target
    let bin = vmmon_bin();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("vmmon binary is in target/PROFILE");
    target.join("guest-cache")
}

/// Whether this machine can boot a guest: qemu, busybox and (for the first fetch) apt. Prints
/// the reason and returns false where not (fails under `VMMON_REQUIRE_EXTERNAL=1`).
pub fn can_boot() -> bool {
    require(
        "qemu-system-x86_64",
        "boots the test guest (Debian: qemu-system-x86)",
    ) && require("busybox", "the guest's user space (Debian: busybox-static)")
        && (cache_dir().join("debian-kernel/current").exists()
            || require("apt-get", "fetches Debian's kernel for the guest"))
}

/// Debian's kernel, fetched into [`cache_dir`] by the first test that asks.
pub fn kernel() -> Kernel {
    guest::fetch_debian_kernel(&cache_dir()).expect("fetch Debian's kernel")
}

/// An image with busybox, the virtio modules and this build's `vmmon` at `/bin/vmmon`.
pub fn image(kernel: &Kernel) -> Initramfs {
    let mut image = Initramfs::new(Path::new("/bin/busybox")).expect("busybox-static");
    image
        .modules(kernel, guest::VIRTIO_MODULES)
        .expect("virtio modules");
    image
        .program(&vmmon_bin(), "/bin/vmmon")
        .expect("vmmon and its libraries");
    image
}

/// Guest memory for the image `initrd` (see [`guest::memory_for`]).
pub fn memory_mib(initrd: &Path) -> u32 {
    guest::memory_for(initrd)
}

/// The work the guest does, in order: idle, CPU burn, send to the host, receive from it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The guest's addresses and the link's MTU.
    pub net: GuestNet,
    /// Idle time in the guest before the burn (a baseline for a recorder on the host).
    pub idle: Duration,
    /// The busy shell loop's length (whole seconds: busybox `timeout` counts seconds).
    pub burn: Duration,
    /// Bytes the guest sends to the host.
    pub send: u64,
    /// Bytes the host sends to the guest.
    pub receive: u64,
    /// Idle time after the transfers, before the guest powers off (a recorder's last rows
    /// then cover all the traffic: the row in which qemu exits is empty).
    pub rest: Duration,
    /// TCG or KVM.
    pub accel: guest::Accel,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            // MTU 9000: Ethernet, IP and TCP headers are then under 1% of the bytes on the tap.
            net: GuestNet::slash24([10, 213, 77]).with_mtu(9000),
            idle: Duration::from_secs(1),
            burn: Duration::from_secs(3),
            send: 16 << 20,
            receive: 8 << 20,
            rest: Duration::ZERO,
            accel: guest::Accel::Tcg,
        }
    }
}

/// The tap's counters (host's view: rx = sent by the guest, tx = sent to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapBytes {
    /// Bytes the guest sent.
    pub rx: u64,
    /// Bytes sent to the guest.
    pub tx: u64,
    /// Frames the guest sent.
    pub rx_packets: u64,
    /// Frames sent to the guest.
    pub tx_packets: u64,
}

/// Reads the tap's counters from sysfs.
pub fn tap_bytes(tap: &str) -> TapBytes {
    let read = |which: &str| {
        let p = format!("/sys/class/net/{tap}/statistics/{which}");
        std::fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    TapBytes {
        rx: read("rx_bytes"),
        tx: read("tx_bytes"),
        rx_packets: read("rx_packets"),
        tx_packets: read("tx_packets"),
    }
}

/// One TCP transfer as the host saw it.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// When the guest's connection was accepted.
    pub accepted: SystemTime,
    /// When the last byte arrived (EOF) or was handed to the kernel and the socket closed.
    pub done: SystemTime,
    /// Bytes moved.
    pub bytes: u64,
    /// The tap's counters at `accepted` and at `done`.
    pub tap: (TapBytes, TapBytes),
}

/// Everything a scenario run observed, with host wall-clock times of each phase.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// qemu's pid (gone by now).
    pub pid: u32,
    /// The tap's name (gone by now).
    pub tap: String,
    /// When qemu was started.
    pub booted: SystemTime,
    /// When `/init` said the machine was up.
    pub ready: SystemTime,
    /// The burn's bounds: the console lines that carry `/proc/stat` before and after it.
    pub burn: (SystemTime, SystemTime),
    /// The guest's `/proc/stat` `cpu` line (ticks) before and after the burn.
    pub cpu: (Vec<u64>, Vec<u64>),
    /// The guest's send, as the host received it.
    pub sent: Transfer,
    /// The host's send to the guest.
    pub received: Transfer,
    /// Bytes the guest counted (`wc -c`) from the host's send.
    pub guest_received: u64,
    /// The scenario's end marker.
    pub end: SystemTime,
    /// When qemu had exited.
    pub exited: SystemTime,
    /// The whole console.
    pub console: Vec<ConsoleLine>,
}

impl GuestRun {
    /// Busy ticks (all but idle and iowait) the guest counted across the burn.
    pub fn busy_ticks(&self) -> u64 {
        let busy = |c: &[u64]| c.iter().sum::<u64>() - c[3] - c.get(4).copied().unwrap_or(0);
        busy(&self.cpu.1) - busy(&self.cpu.0)
    }
}

/// The guest's part of the scenario (the markers are prefixed `SCENARIO`).
fn script(s: &Scenario, send_port: u16, receive_port: u16) -> String {
    let host = s.net.host;
    format!(
        r#"echo SCENARIO start
vmmon --version || exit 10
sleep {idle}
echo "SCENARIO cpu0 $(head -n 1 /proc/stat)"
timeout {burn} sh -c 'while :; do :; done'
echo "SCENARIO cpu1 $(head -n 1 /proc/stat)"
head -c {send} /dev/zero | nc {host} {send_port} || exit 11
echo SCENARIO sent
n=$(nc {host} {receive_port} </dev/null | wc -c)
echo "SCENARIO received $n"
sleep {rest}
echo SCENARIO end
"#,
        idle = s.idle.as_secs_f64(),
        burn = s.burn.as_secs(),
        send = s.send,
        rest = s.rest.as_secs_f64(),
    )
}

/// Sets its flag when dropped: the listener threads stop waiting for a guest that failed.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Accepts one connection from `from` on `listener` (non-blocking, polled so that `stop`
/// is seen).
fn accept(listener: &TcpListener, from: Ipv4Addr, stop: &AtomicBool) -> anyhow::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + BOOT_TIMEOUT + Duration::from_secs(120);
    loop {
        match listener.accept() {
            Ok((s, SocketAddr::V4(peer))) if *peer.ip() == from => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                s.set_write_timeout(Some(Duration::from_secs(60)))?;
                return Ok(s);
            }
            // Listening on every address: anything but the guest is turned away.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    bail!("the guest did not connect");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
}

/// Receives everything the guest sends on one connection.
fn sink(
    listener: TcpListener,
    s: Scenario,
    tap: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<Transfer>> {
    std::thread::spawn(move || {
        let mut conn = accept(&listener, s.net.guest, &stop)?;
        let (accepted, before) = (SystemTime::now(), tap_bytes(&tap));
        let mut buf = vec![0u8; 1 << 16];
        let mut bytes = 0u64;
        loop {
            match conn.read(&mut buf).context("receiving from the guest")? {
                0 => break,
                n => bytes += n as u64,
            }
        }
        Ok(Transfer {
            accepted,
            done: SystemTime::now(),
            bytes,
            tap: (before, tap_bytes(&tap)),
        })
    })
}

/// Sends `s.receive` bytes to the guest on one connection, then closes it.
fn source(
    listener: TcpListener,
    s: Scenario,
    tap: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<Transfer>> {
    std::thread::spawn(move || {
        let mut conn = accept(&listener, s.net.guest, &stop)?;
        let (accepted, before) = (SystemTime::now(), tap_bytes(&tap));
        let block = vec![0x5au8; 1 << 16];
        let mut left = s.receive;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            conn.write_all(&block[..n])
                .context("sending to the guest")?;
            left -= n as u64;
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        // Done when the guest has acknowledged the last byte (nothing left in the socket's
        // send queue): only then has everything crossed the tap. The guest's own half-close
        // comes at once (its nc reads /dev/null) and says nothing about the data.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int, to which `queued` points.
            if unsafe { libc::ioctl(conn.as_raw_fd(), libc::TIOCOUTQ, &mut queued) } < 0 {
                return Err(std::io::Error::last_os_error()).context("TIOCOUTQ");
            }
            if queued == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the guest left {queued} bytes unacknowledged for 60 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Transfer {
            accepted,
            done: SystemTime::now(),
            bytes: s.receive,
            tap: (before, tap_bytes(&tap)),
        })
    })
}

fn stat_line(line: &ConsoleLine) -> anyhow::Result<Vec<u64>> {
    let fields = line
        .text
        .split_once("cpu ")
        .map(|(_, r)| r)
        .context("no cpu line")?;
    fields
        .split_whitespace()
        .map(|v| {
            v.parse()
                .with_context(|| format!("bad /proc/stat line {:?}", line.text))
        })
        .collect()
}

/// Boots a guest on a tap (root only) and runs the scenario. `running` is called with qemu's
/// pid and the tap's name as soon as qemu runs (before the guest is up); what it returns is
/// kept until the guest has powered off (a recorder, say) and handed back.
pub fn run_scenario<T>(
    s: &Scenario,
    running: impl FnOnce(u32, &str) -> T,
) -> anyhow::Result<(GuestRun, T)> {
    let kernel = kernel();
    // Every address, because the tap's address exists only once qemu is being started.
    let sink_l = TcpListener::bind("0.0.0.0:0")?;
    let source_l = TcpListener::bind("0.0.0.0:0")?;
    let mut image = image(&kernel);
    image.network(&s.net).hostname("scenario").script(&script(
        s,
        sink_l.local_addr()?.port(),
        source_l.local_addr()?.port(),
    ));
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initrd.cpio");
    image.write(&initrd)?;

    let tap = guest::qemu::unique_tap_name();
    let mut config = Config::new("scenario", &kernel, &initrd);
    config.memory_mib = memory_mib(&initrd);
    config.accel = s.accel;
    config.network = Network::Tap {
        ifname: tap.clone(),
        net: s.net,
        vhost: false,
    };
    config.echo = std::env::var_os("VMMON_GUEST_ECHO").is_some();

    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(Arc::clone(&stop));
    let booted = SystemTime::now();
    let mut vm = Guest::boot(&config)?;
    let sent = sink(sink_l, s.clone(), tap.clone(), Arc::clone(&stop));
    let received = source(source_l, s.clone(), tap.clone(), Arc::clone(&stop));
    let user = running(vm.pid(), &tap);

    let ready = vm.wait_for(guest::READY_MARKER, BOOT_TIMEOUT)?.time;
    let phase = Duration::from_secs(60);
    vm.wait_for(&format!("vmmon {}", env!("CARGO_PKG_VERSION")), phase)?;
    let cpu0 = vm.wait_for("SCENARIO cpu0", phase)?;
    let cpu1 = vm.wait_for("SCENARIO cpu1", s.burn + phase)?;
    vm.wait_for("SCENARIO sent", phase)?;
    let count = vm.wait_for("SCENARIO received", phase)?;
    let end = vm.wait_for("SCENARIO end", phase)?.time;
    vm.finish(phase)?;
    let exited = SystemTime::now();
    let join = |h: JoinHandle<anyhow::Result<Transfer>>| {
        h.join().map_err(|_| anyhow::anyhow!("listener panicked"))?
    };
    let run = GuestRun {
        pid: vm.pid(),
        tap,
        booted,
        ready,
        burn: (cpu0.time, cpu1.time),
        cpu: (stat_line(&cpu0)?, stat_line(&cpu1)?),
        sent: join(sent)?,
        received: join(received)?,
        guest_received: count
            .text
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim()
            .parse()?,
        end,
        exited,
        console: vm.console(),
    };
    Ok((run, user))
}
