//! The host's view of each virtual machine (`vmmon record --vms`).
//!
//! A VM is a process: qemu by default, or any VMM chosen by pid or by a pattern on its name.
//! Its CPU time splits into vCPU threads (the guest running), vhost work (the kernel moving
//! its packets) and the rest, the emulator (device models, the main loop, I/O helpers). Its
//! I/O shows as bytes and packets on its tap devices and as bytes in `/proc/PID/io`. The
//! host's own work on behalf of all guests (softirq, ksoftirqd, kernel I/O threads) is the
//! shared pool that `vmmon charge` splits among the VMs.
//!
//! Every value here is kept as a cumulative counter, so the schema derives rates exactly as
//! for the host's own counters. Counters that come from a set of threads are accumulated by
//! this module rather than summed afresh each sample: threads come and go, and a sum over the
//! live ones would drop when one exits. The process total comes from `/proc/PID/stat`, which
//! keeps the time of exited threads; the emulator's share is that total minus the vCPU and
//! in-process vhost threads.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::procfile::ProcFile;
use super::schema::{Cell, Column, Sample, Schema, SchemaBuilder};
use super::sources::{Notes, Values, column_safe, fields, lines, net_line, parse_u64};

/// Which processes are VMs: qemu by default, else the listed pids and name pattern.
#[derive(Debug, Clone, Default)]
pub struct VmSelect {
    /// Exactly these processes (`--vm-pid`).
    pub pids: Vec<u32>,
    /// Processes whose `comm` matches (`--vm-match`, for firecracker, cloud-hypervisor, …).
    pub matcher: Option<regex::Regex>,
}

impl VmSelect {
    fn is_vm(&self, pid: u32, comm: &str) -> bool {
        if self.pids.is_empty() && self.matcher.is_none() {
            return comm.starts_with("qemu-system");
        }
        self.pids.contains(&pid) || self.matcher.as_ref().is_some_and(|m| m.is_match(comm))
    }
}

/// One per-VM or host metric: its rate column and its raw (`_total`) form.
struct Metric {
    rate: &'static str,
    unit: &'static str,
    raw: &'static str,
    raw_unit: &'static str,
    scale: f64,
}

/// Nanoseconds per second of interval to percent of one CPU.
const NS_PCT: f64 = 1e-7;

const fn cpu(rate: &'static str, raw: &'static str) -> Metric {
    Metric {
        rate,
        unit: "% of one CPU",
        raw,
        raw_unit: "ns",
        scale: NS_PCT,
    }
}

const fn per_s(
    rate: &'static str,
    unit: &'static str,
    raw: &'static str,
    raw_unit: &'static str,
) -> Metric {
    Metric {
        rate,
        unit,
        raw,
        raw_unit,
        scale: 1.0,
    }
}

const VCPU: usize = 0;
const EMULATOR: usize = 1;
const VHOST: usize = 2;
const PROCESS: usize = 3;
const GUEST: usize = 4;
const DELAY: usize = 5;
const NET: usize = 6;
const DISK_READ: usize = 10;
const DISK_WRITE: usize = 11;

/// Per-VM columns in slot order. The guest's receive direction is its tap's transmit side.
const VM_METRICS: [Metric; 12] = [
    cpu("vcpu_cpu_pct", "vcpu_cpu_ns"),
    cpu("emulator_cpu_pct", "emulator_cpu_ns"),
    cpu("vhost_cpu_pct", "vhost_cpu_ns"),
    cpu("process_cpu_pct", "process_cpu_ns"),
    cpu("guest_cpu_pct", "guest_cpu_ns"),
    cpu("vcpu_run_delay_pct", "vcpu_run_delay_ns"),
    per_s("net_guest_rx_bytes_per_s", "B/s", "net_guest_rx_bytes", "B"),
    per_s("net_guest_tx_bytes_per_s", "B/s", "net_guest_tx_bytes", "B"),
    per_s(
        "net_guest_rx_packets_per_s",
        "1/s",
        "net_guest_rx_packets",
        "packets",
    ),
    per_s(
        "net_guest_tx_packets_per_s",
        "1/s",
        "net_guest_tx_packets",
        "packets",
    ),
    per_s("disk_read_bytes_per_s", "B/s", "disk_read_bytes", "B"),
    per_s("disk_write_bytes_per_s", "B/s", "disk_write_bytes", "B"),
];

/// Host columns added by `--vms`: busy time and the parts of the shared pool, in CPU units
/// comparable with the per-VM ones.
const HOST_METRICS: [Metric; 4] = [
    cpu("busy_cpu_pct", "busy_cpu_ns"),
    cpu("pool_softirq_cpu_pct", "pool_softirq_cpu_ns"),
    cpu("pool_ksoftirqd_cpu_pct", "pool_ksoftirqd_cpu_ns"),
    cpu("pool_iothreads_cpu_pct", "pool_iothreads_cpu_ns"),
];

/// Names of the per-VM metrics (rate form), in column order.
pub fn vm_metric_names() -> impl Iterator<Item = &'static str> {
    VM_METRICS.iter().map(|m| m.rate)
}

/// Declares `metrics` under `prefix` and returns the first of their consecutive counter slots.
fn declare(builder: &mut SchemaBuilder, prefix: &str, metrics: &[Metric]) -> usize {
    let base = builder.counters_len();
    for m in metrics {
        let slot = builder.counter();
        builder.counter_column(
            &format!("{prefix}{}", m.raw),
            m.raw_unit,
            slot,
            m.scale,
            &format!("{prefix}{}", m.rate),
            m.unit,
        );
    }
    base
}

/// Kernel task flag of kernel threads (`PF_KTHREAD`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// What a `/proc` entry is to this module, decided once per pid.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Other,
    Vm,
    Ksoftirqd,
    IoThread,
    /// A `vhost-<owner>` kernel thread (kernels before 6.4 run vhost work outside the VMM).
    Vhost(u32),
}

/// The fields of `/proc/PID/stat` this module uses.
#[derive(Debug, Clone, Default, PartialEq)]
struct ProcStat {
    comm: String,
    state: u8,
    flags: u64,
    utime: u64,
    stime: u64,
    start: u64,
    guest: u64,
}

/// Parses `/proc/PID/stat`; `comm` is found by the last `)` since it may hold spaces.
fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    // Fields after the comm, numbered from 3 (state) as in proc(5).
    let rest: Vec<&[u8]> = fields(text.get(close + 1..)?).collect();
    let field = |n: usize| rest.get(n - 3).and_then(|f| parse_u64(f));
    Some(ProcStat {
        comm,
        state: rest.first()?.first().copied()?,
        flags: field(9)?,
        utime: field(14)?,
        stime: field(15)?,
        start: field(22)?,
        // Kernels before 2.6.24 have no guest time.
        guest: field(43).unwrap_or(0),
    })
}

/// A thread's CPU time source: nanosecond schedstat where the kernel has it, else ticks.
#[derive(Debug)]
enum TaskCpu {
    Schedstat(ProcFile),
    Ticks(ProcFile),
}

/// Role of a thread inside a VM process.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Vcpu,
    Vhost,
    /// Not (yet) known to run guest code; checked for guest time when threads are unnamed.
    Other,
}

/// A thread whose CPU time is accumulated, with its last reading.
#[derive(Debug)]
struct Task {
    cpu: TaskCpu,
    run: Option<u64>,
    delay: Option<u64>,
}

impl Task {
    fn open(dir: &Path) -> Option<Task> {
        let cpu = match ProcFile::open(&dir.join("schedstat")) {
            Ok(f) => TaskCpu::Schedstat(f),
            Err(_) => TaskCpu::Ticks(ProcFile::open(&dir.join("stat")).ok()?),
        };
        Some(Task {
            cpu,
            run: None,
            delay: None,
        })
    }

    /// Reads the thread and returns the run and run-delay nanoseconds since the last reading
    /// (all of them on the first, so a thread born between samples counts whole); `None`
    /// when the thread is gone.
    fn advance(&mut self, buf: &mut Vec<u8>, tick_ns: u64) -> Option<(u64, Option<u64>)> {
        let (run, delay) = match &self.cpu {
            TaskCpu::Schedstat(f) => {
                let text = f.read(buf).ok()?;
                let mut it = fields(text);
                let run = parse_u64(it.next()?)?;
                (run, it.next().and_then(parse_u64))
            }
            TaskCpu::Ticks(f) => {
                let s = parse_stat(f.read(buf).ok()?)?;
                ((s.utime + s.stime).saturating_mul(tick_ns), None)
            }
        };
        let d_run = run.saturating_sub(self.run.unwrap_or(0));
        let d_delay = delay.map(|d| d.saturating_sub(self.delay.unwrap_or(0)));
        self.run = Some(run);
        self.delay = delay;
        Some((d_run, d_delay))
    }
}

/// A thread of a VM process.
#[derive(Debug)]
struct Thread {
    role: Role,
    task: Option<Task>,
}

/// Per-VM state between samples.
#[derive(Debug)]
struct Vm {
    pid: u32,
    start: u64,
    name: String,
    command: Vec<String>,
    dir: PathBuf,
    stat: ProcFile,
    io: Option<ProcFile>,
    threads: HashMap<u32, Thread>,
    /// qemu names its vCPU threads `CPU n/KVM` (with `debug-threads=on`).
    named: bool,
    vcpu_ns: u64,
    delay_ns: Option<u64>,
    vhost_in_ns: u64,
    vhost_out_ns: u64,
    emulator_max: Option<i128>,
    /// Taps found in its `/dev/net/tun` descriptors; `None` until a scan succeeded.
    taps: Option<Vec<String>>,
    since_fd_scan: u64,
    /// List the threads again at the next sample (they are listed at the fd-scan period, or
    /// each sample while no vCPU is known).
    relist: bool,
    alive: bool,
    /// Cumulative raw values in [`VM_METRICS`] order.
    raw: [Option<u64>; 12],
    /// The long format's samples of the per-VM schema.
    long: Option<Box<LongPair>>,
}

/// The last two samples of one VM in the long format.
#[derive(Debug)]
struct LongPair {
    prev: Sample,
    cur: Sample,
    /// Samples taken so far (a row needs two, or one in raw mode).
    filled: u64,
}

/// What the metadata says about a VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmInfo {
    /// Name used as column prefix (`vm1` in `vm1.vcpu_cpu_pct`).
    pub name: String,
    /// Process id of the VMM.
    pub pid: u32,
    /// Its command line.
    pub command: Vec<String>,
    /// vCPU threads identified at the last sample.
    pub vcpu_threads: usize,
    /// Tap devices found in its `/dev/net/tun` descriptors.
    pub taps: Vec<String>,
    /// Whether it had columns in the wide CSV (it was running when the recording started).
    pub columns: bool,
}

/// Seconds between re-scans of each VM's file descriptors for taps added later.
const FD_RESCAN_SECONDS: f64 = 10.0;

/// The per-VM view: discovery, per-VM counters, host pool counters; see the module docs.
#[derive(Debug)]
pub struct VmView {
    proc_root: PathBuf,
    select: VmSelect,
    tick_ns: u64,
    classes: HashMap<u32, Class>,
    vms: Vec<Vm>,
    /// VM indices with wide columns and their first slot.
    wide: Vec<(usize, usize)>,
    /// Per-VM schema of the long format.
    template: Option<Schema>,
    kthreads: HashMap<u32, (Class, Task)>,
    pool: [u64; 2],
    stat: ProcFile,
    net_dev: ProcFile,
    nets: Vec<(Vec<u8>, [u64; 4])>,
    host_base: usize,
    host: [Option<u64>; 4],
    fd_rescan: u64,
    listing: HashSet<u32>,
    first: bool,
    /// Reading the live `/proc`, whose processes the kernel's CPU clocks can also measure.
    real_proc: bool,
}

impl VmView {
    /// Finds the VMs running now and declares the host pool columns and, unless `long`, each
    /// VM's columns (prefixed with its name) in `builder`.
    pub fn new(
        proc_root: &Path,
        select: VmSelect,
        long: bool,
        rate_hz: f64,
        builder: &mut SchemaBuilder,
        notes: &mut Notes,
    ) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let mut view = VmView {
            proc_root: proc_root.to_path_buf(),
            select,
            tick_ns: 1_000_000_000 / ticks,
            classes: HashMap::new(),
            vms: Vec::new(),
            wide: Vec::new(),
            template: None,
            kthreads: HashMap::new(),
            pool: [0; 2],
            stat: ProcFile::open(&proc_root.join("stat"))?,
            net_dev: ProcFile::open(&proc_root.join("net/dev"))?,
            nets: Vec::new(),
            host_base: 0,
            host: [None; 4],
            fd_rescan: (FD_RESCAN_SECONDS * rate_hz).round().max(1.0) as u64,
            listing: HashSet::new(),
            first: true,
            real_proc: proc_root
                .canonicalize()
                .is_ok_and(|p| p == Path::new("/proc")),
        };
        view.host_base = declare(builder, "", &HOST_METRICS);
        let mut buf = Vec::new();
        view.discover(&mut buf, notes)?;
        for pid in &view.select.pids {
            if !view.vms.iter().any(|v| v.pid == *pid) {
                anyhow::bail!(
                    "--vm-pid {pid}: no such process under {}",
                    proc_root.display()
                );
            }
        }
        if long {
            let mut b = SchemaBuilder::new(builder.is_raw());
            declare(&mut b, "", &VM_METRICS);
            view.template = Some(b.finish());
        } else {
            for i in 0..view.vms.len() {
                let base = declare(builder, &format!("{}.", view.vms[i].name), &VM_METRICS);
                view.wide.push((i, base));
            }
        }
        if view.vms.is_empty() {
            notes.once(
                "novms",
                "note: --vms: no VM process found at the start".to_string(),
            );
        }
        Ok(view)
    }

    /// The VMs seen so far.
    pub fn info(&self) -> Vec<VmInfo> {
        let wide: HashSet<usize> = self.wide.iter().map(|w| w.0).collect();
        self.vms
            .iter()
            .enumerate()
            .map(|(i, v)| VmInfo {
                name: v.name.clone(),
                pid: v.pid,
                command: v.command.clone(),
                vcpu_threads: v.threads.values().filter(|t| t.role == Role::Vcpu).count(),
                taps: v.taps.clone().unwrap_or_default(),
                columns: wide.contains(&i),
            })
            .collect()
    }

    /// Columns of one VM in the long format (names without a prefix).
    pub fn long_columns(&self) -> &[Column] {
        self.template.as_ref().map_or(&[], |s| &s.columns)
    }

    /// The long format's cells of each VM for the latest sample: (name, cells).
    pub fn long_rows(&self, out: &mut Vec<(String, Vec<Cell>)>) {
        out.clear();
        let Some(schema) = &self.template else { return };
        for v in &self.vms {
            let Some(pair) = &v.long else { continue };
            if !v.alive || !(schema.raw || pair.filled >= 2) {
                continue;
            }
            let mut cells = Vec::with_capacity(schema.columns.len());
            schema.derive(&pair.prev, &pair.cur, &mut cells);
            out.push((v.name.clone(), cells));
        }
    }

    /// Reads everything for one sample taken at `mono` and fills the slots in `values`.
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        mono: Duration,
        values: &mut Values,
        notes: &mut Notes,
    ) {
        self.read_host(buf);
        if !self.first
            && let Err(e) = self.discover(buf, notes)
        {
            notes.once("vmscan", format!("warning: --vms: {e:#}"));
        }
        self.first = false;
        self.read_kthreads(buf);
        for vm in self.vms.iter_mut().filter(|v| v.alive) {
            vm.scan_taps(self.fd_rescan, buf, notes);
        }
        if self
            .vms
            .iter()
            .any(|v| v.alive && v.taps.as_ref().is_some_and(|t| !t.is_empty()))
        {
            self.read_nets(buf);
        }
        for i in 0..self.vms.len() {
            if self.vms[i].alive {
                self.read_vm(i, buf, notes);
            }
        }
        for (k, v) in self.host.iter().enumerate() {
            values.counters[self.host_base + k] = *v;
        }
        for &(i, base) in &self.wide {
            let vm = &self.vms[i];
            for k in 0..VM_METRICS.len() {
                values.counters[base + k] = if vm.alive { vm.raw[k] } else { None };
            }
        }
        if let Some(schema) = &self.template {
            for v in self.vms.iter_mut().filter(|v| v.alive) {
                let pair = v.long.get_or_insert_with(|| {
                    Box::new(LongPair {
                        prev: schema.new_sample(),
                        cur: schema.new_sample(),
                        filled: 0,
                    })
                });
                if pair.filled > 0 {
                    std::mem::swap(&mut pair.prev, &mut pair.cur);
                }
                pair.cur.mono = mono;
                pair.cur.values.counters.copy_from_slice(&v.raw);
                pair.filled += 1;
            }
        }
    }

    /// Host busy and softirq time from the aggregate `cpu` line of `/proc/stat`.
    fn read_host(&mut self, buf: &mut Vec<u8>) {
        let ticks = self.stat.read(buf).ok().and_then(|text| {
            let line = lines(text).next()?;
            let mut f = fields(line);
            (f.next()? == b"cpu").then_some(())?;
            let v: Vec<u64> = f.take(7).map_while(parse_u64).collect();
            (v.len() == 7).then_some(v)
        });
        match ticks {
            Some(v) => {
                // user + nice + system + irq + softirq; guest time is inside user and nice.
                let busy = v[0] + v[1] + v[2] + v[5] + v[6];
                self.host[0] = Some(busy.saturating_mul(self.tick_ns));
                self.host[1] = Some(v[6].saturating_mul(self.tick_ns));
            }
            None => {
                self.host[0] = None;
                self.host[1] = None;
            }
        }
    }

    /// Lists the process directory: classifies new pids, forgets gone ones, adds new VMs.
    fn discover(&mut self, buf: &mut Vec<u8>, notes: &mut Notes) -> anyhow::Result<()> {
        let dir = std::fs::read_dir(&self.proc_root)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", self.proc_root.display()))?;
        self.listing.clear();
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            self.listing.insert(pid);
            if self.classes.contains_key(&pid) {
                continue;
            }
            let class = self.classify(pid, buf, notes);
            self.classes.insert(pid, class);
        }
        let listing = &self.listing;
        self.classes.retain(|pid, _| listing.contains(pid));
        self.kthreads.retain(|pid, _| listing.contains(pid));
        Ok(())
    }

    fn classify(&mut self, pid: u32, buf: &mut Vec<u8>, notes: &mut Notes) -> Class {
        let dir = self.proc_root.join(pid.to_string());
        let Ok(stat) = ProcFile::open(&dir.join("stat")) else {
            return Class::Other;
        };
        let Some(s) = stat.read(buf).ok().and_then(parse_stat) else {
            return Class::Other;
        };
        if s.flags & PF_KTHREAD != 0 {
            let class = if s.comm.starts_with("ksoftirqd/") {
                Class::Ksoftirqd
            } else if s.comm.starts_with("kworker/") || s.comm.starts_with("jbd2/") {
                Class::IoThread
            } else if let Some(owner) = s.comm.strip_prefix("vhost-").and_then(|o| o.parse().ok()) {
                Class::Vhost(owner)
            } else {
                Class::Other
            };
            if class != Class::Other
                && let Some(task) = Task::open(&dir)
            {
                self.kthreads.insert(pid, (class, task));
            }
            return class;
        }
        if !self.select.is_vm(pid, &s.comm) {
            return Class::Other;
        }
        if !self.first && self.template.is_none() {
            notes.once(
                &format!("newvm-{pid}"),
                format!(
                    "note: --vms: VM process {pid} ({}) started after the recording; the wide \
                     CSV has columns only for VMs running at the start (use --format long)",
                    s.comm
                ),
            );
            return Class::Other;
        }
        let command = read_cmdline(&dir.join("cmdline"));
        let mut name = vm_name(&command).map_or_else(|| format!("pid{pid}"), |n| column_safe(&n));
        if self.vms.iter().any(|v| v.name == name) {
            name = format!("{name}_{pid}");
        }
        let io = match ProcFile::open(&dir.join("io")) {
            Ok(f) => Some(f),
            Err(e) => {
                notes.once(
                    &format!("io-{pid}"),
                    format!("warning: --vms: {e}; disk columns of {name} stay empty"),
                );
                None
            }
        };
        self.vms.push(Vm {
            pid,
            start: s.start,
            name,
            command,
            dir,
            stat,
            io,
            threads: HashMap::new(),
            named: false,
            vcpu_ns: 0,
            delay_ns: None,
            vhost_in_ns: 0,
            vhost_out_ns: 0,
            emulator_max: None,
            taps: None,
            // Spread the VMs' periodic scans over the period instead of all in one sample.
            since_fd_scan: self.vms.len() as u64 % self.fd_rescan,
            relist: true,
            alive: true,
            raw: [None; 12],
            long: None,
        });
        Class::Vm
    }

    /// Accumulates the CPU time of the pool's and the vhost kernel threads.
    fn read_kthreads(&mut self, buf: &mut Vec<u8>) {
        let mut gone = Vec::new();
        for (pid, (class, task)) in &mut self.kthreads {
            let Some((run, _)) = task.advance(buf, self.tick_ns) else {
                gone.push(*pid);
                continue;
            };
            match class {
                Class::Ksoftirqd => self.pool[0] += run,
                Class::IoThread => self.pool[1] += run,
                Class::Vhost(owner) => {
                    if let Some(vm) = self.vms.iter_mut().find(|v| v.alive && v.pid == *owner) {
                        vm.vhost_out_ns += run;
                    }
                }
                Class::Other | Class::Vm => {}
            }
        }
        for pid in gone {
            self.kthreads.remove(&pid);
        }
        self.host[2] = Some(self.pool[0]);
        self.host[3] = Some(self.pool[1]);
    }

    /// Reads `/proc/net/dev` into (name, [rx bytes, rx packets, tx bytes, tx packets]).
    fn read_nets(&mut self, buf: &mut Vec<u8>) {
        self.nets.clear();
        let Ok(text) = self.net_dev.read(buf) else {
            return;
        };
        for line in lines(text) {
            let Some((name, mut f)) = net_line(line) else {
                continue;
            };
            let mut v = [0u64; 16];
            let mut n = 0;
            for (slot, field) in v.iter_mut().zip(&mut f) {
                let Some(x) = parse_u64(field) else { break };
                *slot = x;
                n += 1;
            }
            if n >= 10 {
                self.nets.push((name.to_vec(), [v[0], v[1], v[8], v[9]]));
            }
        }
    }

    fn read_vm(&mut self, i: usize, buf: &mut Vec<u8>, notes: &mut Notes) {
        let tick_ns = self.tick_ns;
        let real_proc = self.real_proc;
        let vm = &mut self.vms[i];
        let stat = vm.stat.read(buf).ok().and_then(parse_stat);
        // A zombie (exited, not yet reaped by its parent) has no threads left to measure.
        let Some(stat) = stat.filter(|s| s.start == vm.start && !matches!(s.state, b'Z' | b'X'))
        else {
            vm.alive = false;
            vm.raw = [None; 12];
            notes.once(
                &format!("vmgone-{}-{}", vm.pid, vm.start),
                format!(
                    "note: --vms: VM {} (pid {}) exited; its cells stay empty",
                    vm.name, vm.pid
                ),
            );
            return;
        };
        vm.update_threads(buf, tick_ns);
        let mut raw = [None; 12];
        // The kernel's CPU clock of the process has nanoseconds and, like the ticks in
        // `stat`, includes exited threads; a captured tree has only the ticks.
        let process = real_proc
            .then(|| process_cpu_ns(vm.pid))
            .flatten()
            .unwrap_or((stat.utime + stat.stime).saturating_mul(tick_ns));
        raw[PROCESS] = Some(process);
        raw[GUEST] = Some(stat.guest.saturating_mul(tick_ns));
        raw[VHOST] = Some(vm.vhost_in_ns + vm.vhost_out_ns);
        let vcpus = vm.threads.values().filter(|t| t.role == Role::Vcpu).count();
        if vcpus > 0 {
            raw[VCPU] = Some(vm.vcpu_ns);
            raw[DELAY] = vm.delay_ns;
            // The process total has tick resolution while the threads have nanoseconds: the
            // difference can dip by up to a tick. A running maximum keeps the counter
            // monotonic without the upward bias that clamping each interval at zero has.
            let diff = i128::from(process) - i128::from(vm.vcpu_ns) - i128::from(vm.vhost_in_ns);
            let max = vm.emulator_max.map_or(diff, |m| m.max(diff));
            vm.emulator_max = Some(max);
            raw[EMULATOR] = Some(max.max(0) as u64);
        } else {
            notes.once(
                &format!("novcpu-{}", vm.pid),
                format!(
                    "note: --vms: no vCPU threads identified in {} (pid {}) yet: they are \
                     found by the names qemu gives them with `-name …,debug-threads=on`, or by \
                     guest time under KVM; its vCPU and emulator cells stay empty until then",
                    vm.name, vm.pid
                ),
            );
        }
        if let Some(io) = &vm.io {
            match io.read(buf) {
                Ok(text) => {
                    for line in lines(text) {
                        let mut f = fields(line);
                        let slot = match f.next() {
                            Some(b"read_bytes:") => DISK_READ,
                            Some(b"write_bytes:") => DISK_WRITE,
                            _ => continue,
                        };
                        raw[slot] = f.next().and_then(parse_u64);
                    }
                }
                Err(e) => notes.once(
                    &format!("io-{}", vm.pid),
                    format!(
                        "warning: --vms: cannot read {}: {e}; disk columns of {} stay empty",
                        vm.dir.join("io").display(),
                        vm.name
                    ),
                ),
            }
        }
        if let Some(taps) = vm.taps.as_ref().filter(|t| !t.is_empty()) {
            let mut sum = [0u64; 4];
            let mut found = 0;
            for tap in taps {
                if let Some((_, c)) = self.nets.iter().find(|(n, _)| n == tap.as_bytes()) {
                    found += 1;
                    for k in 0..4 {
                        sum[k] += c[k];
                    }
                }
            }
            if found == taps.len() {
                // The tap's receive side is what the guest sent, and the other way round.
                raw[NET] = Some(sum[2]);
                raw[NET + 1] = Some(sum[0]);
                raw[NET + 2] = Some(sum[3]);
                raw[NET + 3] = Some(sum[1]);
            }
        }
        vm.raw = raw;
    }
}

impl Vm {
    /// Finds the VM's taps at its first sample and every `every` samples after (taps can be
    /// hot-plugged; listing every descriptor each sample would cost more than the rest).
    fn scan_taps(&mut self, every: u64, buf: &mut Vec<u8>, notes: &mut Notes) {
        let vm = self;
        if vm.taps.is_none() || vm.since_fd_scan >= every {
            vm.since_fd_scan = 0;
            vm.relist = true;
            match find_taps(&vm.dir, buf) {
                Ok(taps) => {
                    if taps.is_empty() {
                        notes.once(
                            &format!("notap-{}", vm.pid),
                            format!(
                                "note: --vms: {} (pid {}) has no tap device (user-mode \
                                 networking?); its net columns stay empty",
                                vm.name, vm.pid
                            ),
                        );
                    }
                    vm.taps = Some(taps);
                }
                Err(e) => notes.once(
                    &format!("fd-{}", vm.pid),
                    format!(
                        "warning: --vms: cannot list {}: {e}; net columns of {} stay empty",
                        vm.dir.join("fd").display(),
                        vm.name
                    ),
                ),
            }
        }
        vm.since_fd_scan += 1;
    }

    /// Lists the process's threads when due and classifies new ones, then accumulates vCPU and
    /// vhost time. Between listings only the known vCPU and vhost threads are read: listing
    /// and classifying every thread of every VM each sample was most of the cost.
    fn update_threads(&mut self, buf: &mut Vec<u8>, tick_ns: u64) {
        let task_dir = self.dir.join("task");
        let vcpus = self
            .threads
            .values()
            .filter(|t| t.role == Role::Vcpu)
            .count();
        let relist = std::mem::take(&mut self.relist) || vcpus == 0;
        if relist {
            self.list_threads(&task_dir);
        }
        let mut delay_seen = false;
        let mut delay_sum = 0u64;
        let mut gone = Vec::new();
        for (tid, t) in &mut self.threads {
            if t.role == Role::Other {
                if self.named || !relist {
                    continue;
                }
                // Without thread names, a thread that has run guest code is a vCPU (KVM).
                let path = task_dir.join(tid.to_string()).join("stat");
                let guest = std::fs::read(&path).ok().and_then(|b| parse_stat(&b));
                if guest.is_none_or(|s| s.guest == 0) {
                    continue;
                }
                t.role = Role::Vcpu;
            }
            if t.task.is_none() {
                t.task = Task::open(&task_dir.join(tid.to_string()));
            }
            let Some(task) = &mut t.task else { continue };
            let Some((run, delay)) = task.advance(buf, tick_ns) else {
                gone.push(*tid);
                continue;
            };
            match t.role {
                Role::Vcpu => {
                    self.vcpu_ns += run;
                    if let Some(d) = delay {
                        delay_seen = true;
                        delay_sum += d;
                    }
                }
                Role::Vhost => self.vhost_in_ns += run,
                Role::Other => {}
            }
        }
        for tid in gone {
            self.threads.remove(&tid);
        }
        if delay_seen {
            self.delay_ns = Some(self.delay_ns.unwrap_or(0) + delay_sum);
        }
    }

    /// Lists `task/`: new threads are classified by name, gone ones forgotten.
    fn list_threads(&mut self, task_dir: &Path) {
        let mut live = HashSet::new();
        if let Ok(dir) = std::fs::read_dir(task_dir) {
            for entry in dir.flatten() {
                let Some(tid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                live.insert(tid);
                if self.threads.contains_key(&tid) {
                    continue;
                }
                let comm = std::fs::read(task_dir.join(tid.to_string()).join("comm"))
                    .map(|c| String::from_utf8_lossy(c.trim_ascii()).into_owned())
                    .unwrap_or_default();
                let role = if comm.starts_with("CPU ") && comm.contains('/') {
                    self.named = true;
                    Role::Vcpu
                } else if comm.starts_with("vhost-") {
                    Role::Vhost
                } else {
                    Role::Other
                };
                self.threads.insert(tid, Thread { role, task: None });
            }
        }
        self.threads.retain(|tid, _| live.contains(tid));
    }
}

/// CPU time of a whole process in nanoseconds from its kernel CPU clock (exited threads
/// included); `None` when the process is gone.
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both pointers are to live locals of the right types.
    unsafe {
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) != 0
            || libc::clock_gettime(clock, &mut ts) != 0
        {
            return None;
        }
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The command line of a process, split at its NUL separators.
fn read_cmdline(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The guest name in a qemu command line: `-name guest=NAME,…` or `-name NAME[,…]`.
pub fn vm_name(command: &[String]) -> Option<String> {
    let i = command.iter().position(|a| a == "-name" || a == "--name")?;
    let value = command.get(i + 1)?;
    let mut first = None;
    for part in value.split(',') {
        if let Some(n) = part.strip_prefix("guest=") {
            return Some(n.to_string()).filter(|n| !n.is_empty());
        }
        if first.is_none() && !part.contains('=') {
            first = Some(part.to_string());
        }
    }
    first.filter(|n| !n.is_empty())
}

/// Tap devices behind a process's `/dev/net/tun` descriptors (fdinfo line `iff:`).
fn find_taps(dir: &Path, buf: &mut Vec<u8>) -> std::io::Result<Vec<String>> {
    let mut taps = Vec::new();
    for entry in std::fs::read_dir(dir.join("fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target != Path::new("/dev/net/tun") {
            continue;
        }
        let info = dir.join("fdinfo").join(entry.file_name());
        let Ok(f) = ProcFile::open(&info) else {
            continue;
        };
        let Ok(text) = f.read(buf) else { continue };
        for line in lines(text) {
            if let Some(rest) = line.strip_prefix(b"iff:") {
                let name = String::from_utf8_lossy(rest.trim_ascii()).into_owned();
                if !name.is_empty() && !taps.contains(&name) {
                    taps.push(name);
                }
            }
        }
    }
    taps.sort();
    Ok(taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn names_from_qemu_command_lines() {
        let n = |s: &str| vm_name(&args(s));
        assert_eq!(
            n("qemu -name guest=vm1,debug-threads=on -m 256").as_deref(),
            Some("vm1")
        );
        assert_eq!(
            n("qemu -name debug-threads=on,guest=web").as_deref(),
            Some("web")
        );
        assert_eq!(n("qemu -name db,debug-threads=on").as_deref(), Some("db"));
        assert_eq!(n("qemu -name plain").as_deref(), Some("plain"));
        assert_eq!(n("qemu -m 256"), None);
        assert_eq!(n("qemu -name"), None);
        assert_eq!(n("qemu -name debug-threads=on"), None);
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let mut line = b"42 (CPU 0/KVM) (x) S 1 42 42 0 -1 4194368 0 0 0 0 ".to_vec();
        // utime 700, stime 300, then fields 16..21, starttime 555 at field 22.
        line.extend_from_slice(b"700 300 0 0 20 0 3 0 555 1000 10");
        line.extend_from_slice(&b" 0".repeat(18));
        line.extend_from_slice(b" 250 0\n");
        let s = parse_stat(&line).expect("parses");
        assert_eq!(s.comm, "CPU 0/KVM) (x");
        assert_eq!((s.utime, s.stime, s.start), (700, 300, 555));
        assert_eq!(s.flags, 4194368);
        assert_eq!(s.guest, 250);
    }
}
