//! A delaying Ethernet switch for network-namespace testbeds (this kernel has no `netem`).
//!
//! It reads every frame arriving on its ports with AF_PACKET raw sockets, learns which port
//! each source MAC address lives behind, holds each frame for a fixed time and then sends it
//! out of the port of its destination (broadcast, multicast and unknown destinations go out
//! of every other port). Each port has a one-way link delay; a frame from port A to port B is
//! held for `delay(A) + delay(B)`, so `--delay-ms D` (each port's link D/2) puts every pair
//! of ports D apart one way.
//!
//! ```text
//! ip netns exec MID target/debug/examples/delay_relay --delay-ms 10 p0 p1 p2
//! ip netns exec MID target/debug/examples/delay_relay p0=2 p1=5 p2=8   # link delays in ms
//! ```
//!
//! It prints `READY` on standard output once every socket is bound, and on SIGTERM or
//! SIGINT a `STATS` line (`key=value` counters) on standard output and a sentence on standard
//! error. The tests' testbed (`tests/util_netns.rs`) includes this file as a module and runs
//! the same relay on threads of the test process.
//!
//! Frames must reach it whole: a frame aggregated by GRO, or left unsegmented by TSO/GSO on
//! the sending veth, is bigger than the MTU and cannot be sent out again (counted as
//! `oversize`). Turn `tx`, `tso`, `gso` and `gro` off on both ends of each link (`ethtool -K`);
//! `tx off` also makes the senders fill in their checksums, which a frame forwarded verbatim
//! would otherwise carry only partially.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// One port of the relay: an interface and the one-way delay of the link behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The interface's name in the relay's network namespace.
    pub name: String,
    /// The link's one-way delay; a frame from A to B waits `delay(A) + delay(B)`.
    pub delay: Duration,
}

/// Everything the relay needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ports, at least two.
    pub ports: Vec<Port>,
    /// Most bytes held at once (every copy of a flooded frame counts); more are dropped.
    pub queue_bytes: usize,
    /// Most frames held at once.
    pub queue_frames: usize,
    /// SO_RCVBUF and SO_SNDBUF of each socket (forced past `net.core.rmem_max` as root).
    pub socket_buffer: usize,
    /// Run the relay's threads as SCHED_FIFO so that a busy machine does not delay the
    /// frames (ignored when not permitted).
    pub realtime: bool,
}

impl Config {
    /// Ports with their delays and defaults sized for tens of Mbit/s over tens of ms.
    pub fn new(ports: Vec<Port>) -> Config {
        Config {
            ports,
            // 64 MiB is over 10 s of 50 Mbit/s: only a runaway sender fills it.
            queue_bytes: 64 << 20,
            queue_frames: 1 << 17,
            socket_buffer: 8 << 20,
            realtime: true,
        }
    }
}

/// The relay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames read from the ports (the relay's own sends excluded).
    pub received: u64,
    /// Copies sent out of a port.
    pub forwarded: u64,
    /// Frames sent to every other port (broadcast, multicast, unknown destination).
    pub flooded: u64,
    /// Frames whose destination lives behind the port they came from (not sent back).
    pub filtered: u64,
    /// Copies dropped because the queue was full.
    pub queue_full: u64,
    /// Copies the kernel refused to send (a full egress qdisc: ENOBUFS), oversize excluded.
    pub send_failed: u64,
    /// Frames too big to send again (EMSGSIZE, or larger than the receive buffer): GRO, TSO
    /// or GSO left on somewhere.
    pub oversize: u64,
    /// Frames shorter than an Ethernet header.
    pub runt: u64,
    /// Frames without a plausible kernel receive stamp, stamped when read instead.
    pub user_stamped: u64,
    /// Latest send after its deadline, in nanoseconds.
    pub late_max_ns: u64,
    /// Sum of the lateness of every send, in nanoseconds (mean = this / sends attempted).
    pub late_sum_ns: u64,
}

impl Stats {
    /// Mean lateness of a send after its deadline.
    pub fn late_mean(&self) -> Duration {
        let sends = self.forwarded + self.send_failed + self.oversize;
        Duration::from_nanos(self.late_sum_ns.checked_div(sends).unwrap_or(0))
    }

    /// Copies dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.queue_full + self.send_failed + self.oversize
    }
}

impl std::fmt::Display for Stats {
    /// The `key=value` form of the `STATS` line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "received={} forwarded={} flooded={} filtered={} queue_full={} send_failed={} \
             oversize={} runt={} user_stamped={} late_max_us={} late_mean_us={}",
            self.received,
            self.forwarded,
            self.flooded,
            self.filtered,
            self.queue_full,
            self.send_failed,
            self.oversize,
            self.runt,
            self.user_stamped,
            self.late_max_ns / 1000,
            self.late_mean().as_micros()
        )
    }
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    flooded: AtomicU64,
    filtered: AtomicU64,
    queue_full: AtomicU64,
    send_failed: AtomicU64,
    oversize: AtomicU64,
    runt: AtomicU64,
    user_stamped: AtomicU64,
    late_max_ns: AtomicU64,
    late_sum_ns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            received: get(&self.received),
            forwarded: get(&self.forwarded),
            flooded: get(&self.flooded),
            filtered: get(&self.filtered),
            queue_full: get(&self.queue_full),
            send_failed: get(&self.send_failed),
            oversize: get(&self.oversize),
            runt: get(&self.runt),
            user_stamped: get(&self.user_stamped),
            late_max_ns: get(&self.late_max_ns),
            late_sum_ns: get(&self.late_sum_ns),
        }
    }
}

/// A copy of a frame waiting for its deadline; ordered by deadline, then arrival, so frames
/// between the same two ports (one constant delay) leave in the order they came.
struct Entry {
    deadline_ns: u64,
    seq: u64,
    port: usize,
    frame: Arc<[u8]>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.seq) == (other.deadline_ns, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.seq).cmp(&(other.deadline_ns, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    bytes: usize,
    seq: u64,
}

struct Shared {
    stop: AtomicBool,
    queue: Mutex<Queue>,
    wake: Condvar,
    macs: RwLock<HashMap<[u8; 6], usize>>,
    sockets: Vec<OwnedFd>,
    delay_ns: Vec<u64>,
    /// The shortest hold of any pair: no frame still to come can be due sooner than that.
    min_hold_ns: u64,
    queue_bytes: usize,
    queue_frames: usize,
    realtime: bool,
    counters: Counters,
}

/// A running relay: its threads stop when it is stopped or dropped.
pub struct Relay {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// The largest frame read: far above any MTU, so a GRO or GSO frame is seen and counted.
const FRAME_BUF: usize = 1 << 16;

/// Most MAC addresses remembered.
const MAX_MACS: usize = 4096;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

impl Relay {
    /// Opens a socket on every port (in the calling thread's network namespace) and starts
    /// forwarding. Errors name the port.
    pub fn start(config: Config) -> io::Result<Relay> {
        if config.ports.len() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a relay needs at least two ports",
            ));
        }
        let mut sockets = Vec::with_capacity(config.ports.len());
        for p in &config.ports {
            let fd = open_port(&p.name, config.socket_buffer)
                .map_err(|e| io::Error::new(e.kind(), format!("port {}: {e}", p.name)))?;
            sockets.push(fd);
        }
        let delay_ns: Vec<u64> = config
            .ports
            .iter()
            .map(|p| u64::try_from(p.delay.as_nanos()).unwrap_or(u64::MAX / 4))
            .collect();
        let mut sorted = delay_ns.clone();
        sorted.sort_unstable();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            macs: RwLock::new(HashMap::new()),
            sockets,
            min_hold_ns: sorted[0].saturating_add(sorted[1]),
            delay_ns,
            queue_bytes: config.queue_bytes,
            queue_frames: config.queue_frames,
            realtime: config.realtime,
            counters: Counters::default(),
        });
        let mut threads = Vec::new();
        let sender = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("relay-send".into())
                .spawn(move || send_loop(&sender))?,
        );
        for port in 0..config.ports.len() {
            let reader = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("relay-recv-{port}"))
                .spawn(move || receive_loop(&reader, port));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let relay = Relay { shared, threads };
                    relay.stop();
                    return Err(e);
                }
            }
        }
        Ok(Relay { shared, threads })
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops the threads (frames still held are dropped) and returns the final counters.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.halt();
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// A clock's reading in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute: no drift from the time
/// spent computing the wait).
fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: ts is a valid timespec; no remainder is asked for with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Makes the calling thread wake on time: 1 ns timer slack (the default 50 µs would be added
/// to every deadline) and, if asked and permitted, SCHED_FIFO above every ordinary process.
fn prepare_thread(realtime: bool) {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes an integer and affects this thread only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    if realtime {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: pid 0 is the calling thread; param is valid. Failure (not root) is fine.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    }
}

fn setsockopt_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: value lives across the call and its size is given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// A raw socket that sees every frame arriving on `name` and sends frames out of it.
fn open_port(name: &str, buffer: usize) -> io::Result<OwnedFd> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the name"))?;
    // SAFETY: cname is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no such interface in this network namespace",
        ));
    }
    // Protocol 0: the socket receives nothing until bind names the interface, so no frame
    // of another interface slips in between socket() and bind().
    // SAFETY: plain socket call; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = libc::c_int::try_from(buffer).unwrap_or(libc::c_int::MAX);
    // A burst of a bulk transfer must not overflow the socket while the reader is descheduled;
    // FORCE passes net.core.rmem_max (root only), the plain option is the fallback.
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if !setsockopt_int(&fd, libc::SOL_SOCKET, force, size) {
            setsockopt_int(&fd, libc::SOL_SOCKET, plain, size);
        }
    }
    // Our own sends appear on the port as PACKET_OUTGOING; skipping them in the kernel saves
    // a copy (the reader also checks sll_pkttype, for kernels before 4.20).
    setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll and its size is given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // A switch port takes frames for any MAC address. The membership ends with the socket.
    // SAFETY: packet_mreq is plain data.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    // SAFETY: mreq is valid and its size is given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel's receive time of each frame (CLOCK_REALTIME), so the hold starts when the
    // frame arrived rather than when the reader woke.
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    // Readers wake this often to see the stop flag.
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: POLL.as_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is valid and its size is given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

/// Reads the frames of one port, stamps them on arrival and queues a copy for each port
/// they go to.
fn receive_loop(shared: &Shared, port: usize) {
    prepare_thread(shared.realtime);
    let fd = shared.sockets[port].as_raw_fd();
    let mut buf = vec![0u8; FRAME_BUF];
    let n_ports = shared.sockets.len();
    let mut targets = Vec::with_capacity(n_ports);
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, pkttype, arrival) = match receive(fd, &mut buf, &shared.counters) {
            Ok(r) => r,
            Err(e) => {
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                    // The interface went away or down (a testbed being torn down): no spinning.
                    _ => std::thread::sleep(POLL),
                }
                continue;
            }
        };
        if pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let c = &shared.counters;
        if n > buf.len() {
            c.oversize.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if n < 14 {
            c.runt.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.received.fetch_add(1, Ordering::Relaxed);
        let frame = &buf[..n];
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        src.copy_from_slice(&frame[6..12]);
        if src[0] & 1 == 0 {
            learn(shared, src, port);
        }
        targets.clear();
        let known = if dst[0] & 1 == 0 {
            shared
                .macs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&dst)
                .copied()
        } else {
            None
        };
        match known {
            Some(p) if p == port => {
                c.filtered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Some(p) => targets.push(p),
            None => {
                c.flooded.fetch_add(1, Ordering::Relaxed);
                targets.extend((0..n_ports).filter(|&p| p != port));
            }
        }
        let frame: Arc<[u8]> = Arc::from(frame);
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        let head = q.heap.peek().map(|Reverse(e)| e.deadline_ns);
        let mut earliest = u64::MAX;
        for &out in &targets {
            if q.bytes + n > shared.queue_bytes || q.heap.len() >= shared.queue_frames {
                c.queue_full.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let deadline_ns = arrival + shared.delay_ns[port] + shared.delay_ns[out];
            earliest = earliest.min(deadline_ns);
            q.seq += 1;
            let seq = q.seq;
            q.bytes += n;
            q.heap.push(Reverse(Entry {
                deadline_ns,
                seq,
                port: out,
                frame: Arc::clone(&frame),
            }));
        }
        drop(q);
        // The sender only needs waking when this frame is now the first due.
        if head.is_none_or(|h| earliest < h) {
            shared.wake.notify_one();
        }
    }
}

/// The oldest kernel receive stamp believed: older means the clock was stepped or the stamp
/// is not a receive time (a sender's departure time carried across namespaces).
const MAX_STAMP_AGE_NS: u64 = 20_000_000;

/// Reads one frame: its real length (more than `buf` when truncated), its packet type and its
/// arrival on CLOCK_MONOTONIC. The arrival is the kernel's receive stamp when it has a
/// plausible one, so that the time this thread took to wake (tens of µs, more from an idle
/// CPU) is not added to the delay.
fn receive(fd: libc::c_int, buf: &mut [u8], c: &Counters) -> io::Result<(usize, u8, u64)> {
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    // u64 elements: cmsg headers need their alignment.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // MSG_TRUNC: the return value is the frame's real length even when it did not fit.
    // SAFETY: every pointer in msg is valid for the length given with it.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC) };
    let mono = now_ns();
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let real = clock_ns(libc::CLOCK_REALTIME);
    let mut stamp = None;
    // SAFETY: msg was filled by recvmsg; the CMSG macros stay within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // The stamp is on CLOCK_REALTIME: its age, taken now on that clock, moves it to ours.
    let arrival = match stamp.and_then(|k| real.checked_sub(k)) {
        Some(age) if age <= MAX_STAMP_AGE_NS => mono - age,
        _ => {
            c.user_stamped.fetch_add(1, Ordering::Relaxed);
            mono
        }
    };
    Ok((n as usize, sll.sll_pkttype, arrival))
}

fn learn(shared: &Shared, mac: [u8; 6], port: usize) {
    let known = shared
        .macs
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&mac)
        .copied();
    if known != Some(port) {
        let mut macs = shared.macs.write().unwrap_or_else(|e| e.into_inner());
        // A flood of made-up source addresses must not grow the table without bound; after a
        // reset the hosts' addresses are learnt again from their next frames.
        if macs.len() >= MAX_MACS {
            macs.clear();
        }
        macs.insert(mac, port);
    }
}

/// Sends each queued copy at its deadline.
fn send_loop(shared: &Shared) {
    prepare_thread(shared.realtime);
    let c = &shared.counters;
    let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(Reverse(head)) = q.heap.peek() else {
            q = shared
                .wake
                .wait_timeout(q, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        };
        let deadline = head.deadline_ns;
        let now = now_ns();
        if deadline > now {
            if deadline <= now.saturating_add(shared.min_hold_ns) {
                // No frame still to come can be due before this one: sleep on the absolute
                // deadline, the precise clock, without holding the lock (in steps of at
                // most POLL, to see the stop flag).
                drop(q);
                sleep_until(deadline.min(now + POLL.as_nanos() as u64));
            } else {
                // A frame between closer ports may still come and be due first (different
                // link delays): wait until this one is within that horizon, or a wake-up.
                let wait = Duration::from_nanos(deadline - now - shared.min_hold_ns);
                q = shared
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let Some(Reverse(entry)) = q.heap.pop() else {
            continue;
        };
        q.bytes -= entry.frame.len();
        drop(q);
        let late = now.saturating_sub(entry.deadline_ns);
        c.late_sum_ns.fetch_add(late, Ordering::Relaxed);
        c.late_max_ns.fetch_max(late, Ordering::Relaxed);
        // The socket is bound to the port, so send() needs no address.
        // SAFETY: the frame is valid for its length.
        let rc = unsafe {
            libc::send(
                shared.sockets[entry.port].as_raw_fd(),
                entry.frame.as_ptr().cast(),
                entry.frame.len(),
                0,
            )
        };
        if rc >= 0 {
            c.forwarded.fetch_add(1, Ordering::Relaxed);
        } else if io::Error::last_os_error().raw_os_error() == Some(libc::EMSGSIZE) {
            c.oversize.fetch_add(1, Ordering::Relaxed);
        } else {
            c.send_failed.fetch_add(1, Ordering::Relaxed);
        }
        q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// Parses `NAME` or `NAME=MS` (the link's one-way delay in milliseconds).
pub fn parse_port(arg: &str, default: Duration) -> Result<Port, String> {
    let (name, delay) = match arg.split_once('=') {
        None => (arg, default),
        Some((name, ms)) => {
            let ms: f64 = ms
                .parse()
                .map_err(|_| format!("{arg}: the delay after = must be milliseconds"))?;
            if !(ms.is_finite() && (0.0..=10_000.0).contains(&ms)) {
                return Err(format!("{arg}: give a delay of 0 to 10000 ms"));
            }
            (name, Duration::from_secs_f64(ms / 1000.0))
        }
    };
    if name.is_empty() || name.len() > 15 || name.contains('/') {
        return Err(format!("{arg}: not an interface name"));
    }
    Ok(Port {
        name: name.to_string(),
        delay,
    })
}

const USAGE: &str = "\
usage: delay_relay [--delay-ms D] [--queue-mib N] [--no-realtime] PORT[=LINK_MS]...
  --delay-ms D   one-way delay between any two ports given without =LINK_MS (default 10)
  PORT=LINK_MS   this port's link delay; a frame from A to B waits LINK(A) + LINK(B)
  --queue-mib N  most MiB held at once (default 64); frames beyond are dropped and counted
  --no-realtime  do not ask for SCHED_FIFO";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut delay_ms = 10.0;
    let mut queue_mib = 64usize;
    let mut realtime = true;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--delay-ms" => {
                let v = it.next().ok_or("--delay-ms needs a value")?;
                delay_ms = v
                    .parse()
                    .ok()
                    .filter(|d: &f64| d.is_finite() && (0.0..=20_000.0).contains(d))
                    .ok_or_else(|| format!("--delay-ms {v}: give 0 to 20000"))?;
            }
            "--queue-mib" => {
                let v = it.next().ok_or("--queue-mib needs a value")?;
                queue_mib = v
                    .parse()
                    .ok()
                    .filter(|&m| (1..=4096).contains(&m))
                    .ok_or_else(|| format!("--queue-mib {v}: give 1 to 4096"))?;
            }
            "--no-realtime" => realtime = false,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => names.push(s.to_string()),
        }
    }
    let half = Duration::from_secs_f64(delay_ms / 2000.0);
    let ports = names
        .iter()
        .map(|n| parse_port(n, half))
        .collect::<Result<Vec<_>, _>>()?;
    if ports.len() < 2 {
        return Err("give at least two ports".into());
    }
    let mut config = Config::new(ports);
    config.queue_bytes = queue_mib << 20;
    config.realtime = realtime;
    Ok(config)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("delay_relay: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("delay_relay: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    }
    let names: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
    let relay = match Relay::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("delay_relay: {e}");
            std::process::exit(1);
        }
    };
    println!("READY {}", names.join(" "));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = relay.stop();
    println!("STATS {s}");
    eprintln!(
        "delay_relay: received {} frames, forwarded {} copies, dropped {} (queue full {}, \
         send failed {}, oversize {}); sends late by {} µs at most, {} µs on average",
        s.received,
        s.forwarded,
        s.dropped(),
        s.queue_full,
        s.send_failed,
        s.oversize,
        s.late_max_ns / 1000,
        s.late_mean().as_micros()
    );
}
