//! The qemu process: its command line, its network, and its serial console read line by line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use super::initramfs::{ERROR_MARKER, EXIT_MARKER};
use super::{GuestNet, Kernel};

/// How many console lines an error message quotes.
const TAIL: usize = 30;

/// How the guest's CPUs are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// qemu's translator (works everywhere, about ten times slower than the host).
    Tcg,
    /// The host's KVM (needs `/dev/kvm`); the guest sees the host's CPU model.
    Kvm,
}

/// The guest's network card (a virtio NIC, `eth0` in the guest) and what it is joined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// No network card.
    None,
    /// A tap interface on the host, named `ifname`, with the host's address and the MTU of
    /// `net` (needs root or CAP_NET_ADMIN). It exists while the [`Guest`] does and is removed
    /// with it, also when this process dies: only qemu and the `Guest` hold it open.
    Tap {
        /// Interface name, at most 15 bytes (see [`unique_tap_name`]).
        ifname: String,
        /// Addresses and MTU; the host's address goes on the tap.
        net: GuestNet,
        /// Let the host kernel's vhost-net move the packets (a `vhost-PID` thread) instead of
        /// qemu's own threads.
        vhost: bool,
    },
    /// qemu's user-mode network (no privileges): the guest reaches the host's services at
    /// `net.host`, and `hostfwd` rules (qemu's syntax, `tcp:127.0.0.1:2222-:22`) let the host
    /// reach the guest's.
    User {
        /// Addresses (usually [`GuestNet::user`]).
        net: GuestNet,
        /// Port forwards from the host into the guest.
        hostfwd: Vec<String>,
    },
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The guest's name: qemu's `-name guest=NAME` (its process and thread names).
    pub name: String,
    /// The kernel image (a bzImage, or an ELF `vmlinux` with a PVH entry point).
    pub kernel: PathBuf,
    /// The initramfs (see [`super::Initramfs`]).
    pub initrd: PathBuf,
    /// Memory in MiB (default 256).
    pub memory_mib: u32,
    /// Virtual CPUs (default 1).
    pub cpus: u32,
    /// TCG (the default: works without `/dev/kvm`) or KVM.
    pub accel: Accel,
    /// qemu's `-cpu` model; by default qemu's own under TCG and `host` under KVM.
    pub cpu: Option<String>,
    /// The network card (default none).
    pub network: Network,
    /// More kernel command line, after `console=ttyS0 panic=-1`.
    pub append: String,
    /// More qemu arguments (`-device`, `-chardev`, …), after the ones made here.
    pub extra_args: Vec<OsString>,
    /// The qemu program (default `qemu-system-x86_64` from PATH).
    pub qemu: PathBuf,
    /// Copy each console line to this process's stderr as it arrives (for debugging).
    pub echo: bool,
}

/// Guest memory in MiB for the image `initrd`: the archive and its unpacked copy are both in
/// memory while the kernel unpacks it, and a debug `vmmon` alone is about 100 MB (256 MiB is
/// too little for it). 256 MiB plus three times the image leaves room for both and for user
/// space.
pub fn memory_for(initrd: &Path) -> u32 {
    let mib = std::fs::metadata(initrd).map_or(0, |m| m.len() >> 20);
    256 + 3 * u32::try_from(mib).unwrap_or(u32::MAX / 4)
}

impl Config {
    /// A guest with one CPU, 256 MiB, TCG and no network.
    pub fn new(name: &str, kernel: &Kernel, initrd: &Path) -> Config {
        Config {
            name: name.to_string(),
            kernel: kernel.boot_image().to_path_buf(),
            initrd: initrd.to_path_buf(),
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Tcg,
            cpu: None,
            network: Network::None,
            append: String::new(),
            extra_args: Vec::new(),
            qemu: PathBuf::from("qemu-system-x86_64"),
            echo: false,
        }
    }

    /// The qemu arguments for this configuration; `tap_fd` is the open tap's descriptor.
    pub fn args(&self, tap_fd: Option<i32>) -> anyhow::Result<Vec<OsString>> {
        if self.name.is_empty() || self.name.contains([',', '=']) {
            bail!(
                "guest name {:?} must be non-empty without ',' or '='",
                self.name
            );
        }
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        // debug-threads names the vCPU threads "CPU 0/TCG" ("CPU 0/KVM"), which is how the
        // host view tells vCPU time from emulator time.
        push(&["-name", &format!("guest={},debug-threads=on", self.name)]);
        match self.accel {
            Accel::Tcg => push(&["-accel", "tcg"]),
            Accel::Kvm => push(&["-accel", "kvm"]),
        }
        match (&self.cpu, self.accel) {
            (Some(cpu), _) => push(&["-cpu", cpu]),
            (None, Accel::Kvm) => push(&["-cpu", "host"]),
            (None, Accel::Tcg) => {}
        }
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        // Not -nographic: it also puts the qemu monitor on stdio and adds default devices.
        // Here the serial port alone is stdio, and nothing is there that was not asked for.
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
        ]);
        // A panic reboots at once (panic=-1) and a reboot ends qemu: no hung guest.
        push(&["-no-reboot"]);
        let append = format!("console=ttyS0 panic=-1 {}", self.append);
        push(&["-append", append.trim()]);
        a.push("-kernel".into());
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        // romfile= : no PXE option ROM (nothing boots from the network; one file less needed).
        let nic = |net: &GuestNet| {
            let [_, b, c, d] = net.guest.octets();
            format!("virtio-net-pci,netdev=net0,mac=52:54:00:{b:02x}:{c:02x}:{d:02x},romfile=")
        };
        match &self.network {
            Network::None => {}
            Network::Tap { net, vhost, .. } => {
                let fd = tap_fd.context("a tap network needs the tap's descriptor")?;
                let vhost = if *vhost { "on" } else { "off" };
                push(&[
                    "-netdev",
                    &format!("tap,id=net0,fd={fd},vhost={vhost}"),
                    "-device",
                    &nic(net),
                ]);
            }
            Network::User { net, hostfwd } => {
                let mut spec = format!(
                    "user,id=net0,net={}/{},host={}",
                    net.network(),
                    net.prefix,
                    net.host
                );
                for f in hostfwd {
                    spec.push_str(&format!(",hostfwd={f}"));
                }
                push(&["-netdev", &spec, "-device", &nic(net)]);
            }
        }
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }
}

/// Which of qemu's outputs a console line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's serial console (qemu's stdout).
    Serial,
    /// qemu's own messages (its stderr).
    Qemu,
}

/// One line of output, with the host's wall clock when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// When the line's end reached this process.
    pub time: SystemTime,
    /// The line, without its end (`\r\n` on a serial console).
    pub text: String,
    /// Where it came from.
    pub stream: Stream,
}

impl From<ConsoleLine> for (SystemTime, String) {
    fn from(l: ConsoleLine) -> Self {
        (l.time, l.text)
    }
}

/// Lines so far and how many of qemu's outputs are still open; readers wait on the condvar.
#[derive(Debug, Default)]
struct Console {
    state: Mutex<(Vec<ConsoleLine>, usize)>,
    changed: Condvar,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, (Vec<ConsoleLine>, usize)> {
        // A reader thread that panicked leaves whole lines behind; keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads `from` line by line into the console until it ends.
fn read_lines(from: impl Read, stream: Stream, console: Arc<Console>, echo: bool) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let time = SystemTime::now();
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        if echo {
            eprintln!(
                "[{}] {text}",
                if stream == Stream::Serial {
                    "guest"
                } else {
                    "qemu"
                }
            );
        }
        console.lock().0.push(ConsoleLine { time, text, stream });
        console.changed.notify_all();
    }
    console.lock().1 -= 1;
    console.changed.notify_all();
}

/// A tap interface this process opened; the kernel removes it when the last descriptor (this
/// one and qemu's copy) closes.
#[derive(Debug)]
struct Tap {
    fd: OwnedFd,
}

/// A tap name no other guest of this process uses: `vmmon` + pid + a counter, ≤ 15 bytes.
pub fn unique_tap_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("vmmon{}t{}", std::process::id() % 100_000, n % 1000)
}

/// Opens (creating) the tap `name` with the flags qemu wants (no packet info, virtio-net
/// headers), then gives it the host's address and MTU and brings it up.
fn open_tap(name: &str, net: &GuestNet) -> anyhow::Result<Tap> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        bail!("tap name {name:?} must be 1 to 15 bytes without '/', ':' or spaces");
    }
    check_free_subnet(net)?;
    // SAFETY: a constant NUL-terminated path; the result is checked.
    let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot open /dev/net/tun for a tap interface");
    }
    // SAFETY: raw is a descriptor just opened and owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // struct ifreq: the name in 16 bytes, then the flags (a short) at offset 16.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which ifr is sized and laid out as.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (needs root or CAP_NET_ADMIN)"
        } else {
            ""
        };
        return Err(e).with_context(|| format!("cannot create tap {name}{hint}"));
    }
    let tap = Tap { fd };
    let mtu = net.mtu.to_string();
    ip(&["link", "set", "dev", name, "mtu", &mtu])?;
    ip(&[
        "addr",
        "add",
        &format!("{}/{}", net.host, net.prefix),
        "dev",
        name,
    ])?;
    ip(&["link", "set", "dev", name, "up"])?;
    Ok(tap)
}

/// Runs `ip ARGS`, with its message in the error.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = match Command::new("ip").args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("ip is not installed (iproute2); a tap network needs it")
        }
        Err(e) => return Err(e).context("cannot run ip"),
    };
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Refuses a subnet that overlaps an address the host already has: the host's routes would
/// then send the guest's traffic elsewhere, and the test would measure the wrong link.
fn check_free_subnet(net: &GuestNet) -> anyhow::Result<()> {
    net.check()?;
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output();
    let Ok(out) = out else { return Ok(()) };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        let dev = words.nth(1).unwrap_or_default().to_string();
        let Some(cidr) = words.skip_while(|w| *w != "inet").nth(1) else {
            continue;
        };
        let Some((addr, prefix)) = cidr.split_once('/') else {
            continue;
        };
        let (Ok(addr), Ok(prefix)) = (addr.parse::<std::net::Ipv4Addr>(), prefix.parse::<u8>())
        else {
            continue;
        };
        let shorter = prefix.min(net.prefix);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        if u32::from(addr) & mask == u32::from(net.host) & mask {
            bail!(
                "the host already has {cidr} on {dev}, which overlaps the guest network {}/{}",
                net.network(),
                net.prefix
            );
        }
    }
    Ok(())
}

/// A running guest: the qemu process (in a process group of its own), its console and its
/// tap. Dropping it kills qemu and removes the tap.
#[derive(Debug)]
pub struct Guest {
    child: Option<Child>,
    pid: u32,
    console: Arc<Console>,
    readers: Vec<JoinHandle<()>>,
    cursor: usize,
    status: Option<ExitStatus>,
    tap: Option<(String, Tap)>,
    name: String,
    initrd_bytes: u64,
    memory_mib: u32,
}

impl Guest {
    /// Starts qemu as `config` says. Returns once the process runs; use
    /// [`Guest::wait_for`] to follow the boot.
    pub fn boot(config: &Config) -> anyhow::Result<Guest> {
        for (what, p) in [("kernel", &config.kernel), ("initramfs", &config.initrd)] {
            if !p.is_file() {
                bail!("{what} {} does not exist", p.display());
            }
        }
        if config.accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
            bail!("KVM asked for but /dev/kvm does not exist; use Accel::Tcg");
        }
        let tap = match &config.network {
            Network::Tap { ifname, net, .. } => Some((ifname.clone(), open_tap(ifname, net)?)),
            _ => None,
        };
        let tap_fd = tap.as_ref().map(|(_, t)| t.fd.as_raw_fd());
        let mut cmd = Command::new(&config.qemu);
        cmd.args(config.args(tap_fd)?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(fd) = tap_fd {
            // SAFETY: runs in the child between fork and exec and only calls fcntl, which is
            // async-signal-safe. It lets qemu inherit the tap (opened close-on-exec, so that
            // no other child of this process keeps the interface alive).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not installed (Debian: apt-get install qemu-system-x86)",
                config.qemu.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot start {}", config.qemu.display()));
            }
        };
        let console = Arc::new(Console::default());
        console.lock().1 = 2;
        let stdout = child.stdout.take().context("qemu stdout")?;
        let stderr = child.stderr.take().context("qemu stderr")?;
        let spawn = |name: &str, from: Box<dyn Read + Send>, stream| {
            let c = Arc::clone(&console);
            let echo = config.echo;
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || read_lines(from, stream, c, echo))
        };
        let readers = vec![
            spawn("guest-console", Box::new(stdout), Stream::Serial),
            spawn("guest-qemu-err", Box::new(stderr), Stream::Qemu),
        ];
        let pid = child.id();
        let mut guest = Guest {
            child: Some(child),
            pid,
            console: Arc::clone(&console),
            readers: Vec::new(),
            cursor: 0,
            status: None,
            tap,
            name: config.name.clone(),
            initrd_bytes: std::fs::metadata(&config.initrd).map_or(0, |m| m.len()),
            memory_mib: config.memory_mib,
        };
        for r in readers {
            guest
                .readers
                .push(r.context("cannot start a console reader thread")?);
        }
        Ok(guest)
    }

    /// The qemu process's id (also its process group's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tap interface's name, for a tap network.
    pub fn tap(&self) -> Option<&str> {
        self.tap.as_ref().map(|(n, _)| n.as_str())
    }

    /// Every line so far, serial and qemu's own, in order of arrival.
    pub fn console(&self) -> Vec<ConsoleLine> {
        self.console.lock().0.clone()
    }

    /// The last `n` lines, one string, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let state = self.console.lock();
        let lines = &state.0[state.0.len().saturating_sub(n)..];
        lines
            .iter()
            .map(|l| match l.stream {
                Stream::Serial => format!("  | {}", l.text),
                Stream::Qemu => format!("  qemu: {}", l.text),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The next serial line (after the one the previous call returned) that contains
    /// `pattern`, with the host's time of its arrival. Fails after `timeout`, when qemu has
    /// exited, or when `/init` reported an error; the message quotes the console's last
    /// lines.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> anyhow::Result<ConsoleLine> {
        let deadline = Instant::now() + timeout;
        let mut state = self.console.lock();
        loop {
            while self.cursor < state.0.len() {
                let line = &state.0[self.cursor];
                self.cursor += 1;
                if line.stream != Stream::Serial {
                    continue;
                }
                if line.text.contains(pattern) {
                    return Ok(line.clone());
                }
                if line.text.contains(ERROR_MARKER) && !pattern.contains(ERROR_MARKER) {
                    let text = line.text.clone();
                    drop(state);
                    bail!(
                        "guest {}: {text}, before {pattern:?}; console:\n{}",
                        self.name,
                        self.tail(TAIL)
                    );
                }
                if line.text.contains("Kernel panic") {
                    // The cause is often far above the panic's stack dump.
                    // Unpacking the image fails with a write error, or the kernel runs out of
                    // memory altogether, depending on how far short the memory is.
                    let short = state.0.iter().any(|l| {
                        l.text.contains("Initramfs unpacking failed")
                            || l.text.contains("Out of memory")
                    });
                    let hint = if short {
                        format!(
                            " (the initramfs, {} MiB, did not fit in the guest's {} MiB: raise Config::memory_mib)",
                            self.initrd_bytes >> 20,
                            self.memory_mib
                        )
                    } else {
                        String::new()
                    };
                    drop(state);
                    bail!(
                        "guest {}: kernel panic{hint}, before {pattern:?}; console:\n{}",
                        self.name,
                        self.tail(TAIL)
                    );
                }
            }
            if state.1 == 0 {
                let silent = !state.0.iter().any(|l| l.stream == Stream::Serial);
                drop(state);
                let status = self
                    .try_status()
                    .map_or("running".to_string(), |s| s.to_string());
                // An initramfs too large to load at all ends qemu before the kernel's first
                // line, with status 0 and no message (seen with PVH boot).
                let hint = match silent {
                    true if self.initrd_bytes >> 20 > u64::from(self.memory_mib) / 2 => format!(
                        " (the kernel never started; is the initramfs, {} MiB, too large for {} MiB? \
                         raise Config::memory_mib)",
                        self.initrd_bytes >> 20,
                        self.memory_mib
                    ),
                    true => " (the kernel never started)".to_string(),
                    false => String::new(),
                };
                bail!(
                    "guest {}: qemu closed its output ({status}){hint} before printing {pattern:?}; console:\n{}",
                    self.name,
                    self.tail(TAIL)
                );
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                bail!(
                    "guest {}: no console line with {pattern:?} within {:.0?}; last {TAIL} lines:\n{}",
                    self.name,
                    timeout,
                    self.tail(TAIL)
                );
            }
            state = self
                .console
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether qemu has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.try_status().is_some()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(c) = self.child.as_mut()
        {
            self.status = c.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for qemu to exit (the guest powered off) and for its last output
    /// to be read. On timeout qemu is killed and the error quotes the console.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.try_status() {
                break s;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "guest {}: qemu still running after {:.0?}, killed; last {TAIL} lines:\n{}",
                    self.name,
                    timeout,
                    self.tail(TAIL)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The readers end at EOF, which follows the exit (unless qemu left a child holding
        // its output; then do not wait for them).
        let state = self.console.lock();
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let (state, _) = self
            .console
            .changed
            .wait_timeout_while(state, left, |s| s.1 > 0)
            .unwrap_or_else(|e| e.into_inner());
        let closed = state.1 == 0;
        drop(state);
        if closed {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
        }
        Ok(status)
    }

    /// The exit status `/init` printed for the caller's script, once it has.
    pub fn script_status(&self) -> Option<i32> {
        let state = self.console.lock();
        state
            .0
            .iter()
            .filter(|l| l.stream == Stream::Serial)
            .find_map(|l| {
                l.text
                    .split_once(EXIT_MARKER)
                    .and_then(|(_, s)| s.trim().parse().ok())
            })
    }

    /// Waits for the guest to power off and checks that it ended well: the script exited 0
    /// and qemu exited 0. Errors quote the console.
    pub fn finish(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = self.wait(timeout)?;
        match self.script_status() {
            Some(0) if status.success() => Ok(()),
            Some(0) => bail!(
                "guest {}: qemu exited with {status}; console:\n{}",
                self.name,
                self.tail(TAIL)
            ),
            Some(s) => bail!(
                "guest {}: the script exited with {s}; console:\n{}",
                self.name,
                self.tail(TAIL)
            ),
            None => bail!(
                "guest {}: qemu exited ({status}) before the script ended; console:\n{}",
                self.name,
                self.tail(TAIL)
            ),
        }
    }

    /// Kills qemu (its whole process group) now and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.status.is_none() {
                // SAFETY: kill has no memory-safety preconditions; the group is qemu's own.
                unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
            }
            match c.wait() {
                Ok(s) if self.status.is_none() => self.status = Some(s),
                _ => {}
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        // Closing the last descriptor removes the tap; qemu's copy is gone with qemu.
        self.tap = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let kernel = Kernel {
            vmlinuz: "/k/vmlinuz".into(),
            vmlinux: Some("/k/vmlinux".into()),
            modules: "/k/modules".into(),
            version: "6.1".into(),
        };
        Config::new("vm1", &kernel, Path::new("/k/initrd"))
    }

    fn joined(c: &Config, fd: Option<i32>) -> String {
        let args = c.args(fd).unwrap();
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_command_line_says_what_the_config_says() {
        let mut c = config();
        let line = joined(&c, None);
        assert!(
            line.starts_with("-name guest=vm1,debug-threads=on -accel tcg -m 256 -smp 1 "),
            "{line}"
        );
        assert!(
            line.contains("-nodefaults -no-user-config -display none -serial stdio -no-reboot"),
            "{line}"
        );
        assert!(
            line.contains("-append console=ttyS0 panic=-1 -kernel /k/vmlinux -initrd /k/initrd"),
            "{line}"
        );
        assert!(
            !line.contains("-cpu") && !line.contains("-netdev"),
            "{line}"
        );

        c.accel = Accel::Kvm;
        c.append = "quiet".into();
        c.extra_args = vec!["-device".into(), "virtio-serial".into()];
        c.network = Network::Tap {
            ifname: "t0".into(),
            net: GuestNet::slash24([10, 1, 2]),
            vhost: true,
        };
        let line = joined(&c, Some(7));
        assert!(line.contains("-accel kvm -cpu host"), "{line}");
        assert!(
            line.contains("-append console=ttyS0 panic=-1 quiet"),
            "{line}"
        );
        assert!(line.contains("-netdev tap,id=net0,fd=7,vhost=on"), "{line}");
        assert!(
            line.contains("virtio-net-pci,netdev=net0,mac=52:54:00:01:02:02,romfile="),
            "{line}"
        );
        assert!(line.ends_with("-device virtio-serial"), "{line}");
        assert!(c.args(None).unwrap_err().to_string().contains("descriptor"));

        c.cpu = Some("max".into());
        c.network = Network::User {
            net: GuestNet::user(),
            hostfwd: vec!["tcp:127.0.0.1:2222-:22".into()],
        };
        let line = joined(&c, None);
        assert!(
            line.contains("-cpu max") && !line.contains("-cpu host"),
            "{line}"
        );
        assert!(
            line.contains(
                "-netdev user,id=net0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:2222-:22"
            ),
            "{line}"
        );
    }

    #[test]
    fn tap_names_are_short_and_distinct() {
        let (a, b) = (unique_tap_name(), unique_tap_name());
        assert!(a.len() <= 15 && b.len() <= 15 && a != b, "{a} {b}");
    }
}
