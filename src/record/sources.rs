//! One source per `/proc` file: each knows its file, the raw values it yields and the columns
//! derived from them, declared once for both the rate and the `--raw` schema.
//!
//! Parsing is by hand on the hot path, with `procfs-core` only for diskstats lines. Measured
//! with callgrind: `procfs-core`'s `Meminfo` builds a HashMap of every field on each call
//! (138k instructions a sample, more than all other parsing together), its net/dev and
//! pressure parsers allocate per line, and its `KernelStats` drops the `intr` line and the
//! CPU ids (a CPU taken offline would shift every later CPU's columns). `/proc/loadavg` is
//! read as f64 here because `procfs-core` reads it as `f32` (0.05 would print as
//! 0.05000000074505806).

use std::collections::BTreeSet;
use std::path::Path;

use super::procfile::ProcFile;
use super::schema::{Derive, Kind, SchemaBuilder};
use super::select::DeviceFilter;

/// Raw values of one sample in fixed slots: cumulative counters and instantaneous gauges.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// Cumulative kernel counters (`None`: not readable this time).
    pub counters: Vec<Option<u64>>,
    /// Instantaneous readings (`None`: not readable this time).
    pub gauges: Vec<Option<f64>>,
}

impl Values {
    fn clear_slots(&mut self, counters: &[usize], gauges: &[usize]) {
        for &c in counters {
            self.counters[c] = None;
        }
        for &g in gauges {
            self.gauges[g] = None;
        }
    }
}

/// Messages a source wants the user to see once (new devices, a file that stopped reading).
#[derive(Debug, Default)]
pub struct Notes {
    seen: BTreeSet<String>,
    pending: Vec<String>,
    /// Files that failed to read during the current sample, every time (not once): a
    /// scrape must fail on each sample that is incomplete, not only the first.
    failures: Vec<String>,
}

impl Notes {
    /// Queues `msg` unless the same key was noted before.
    pub fn once(&mut self, key: &str, msg: String) {
        if self.seen.insert(key.to_string()) {
            self.pending.push(msg);
        }
    }

    /// Takes the messages queued since the last call.
    pub fn drain(&mut self) -> Vec<String> {
        std::mem::take(&mut self.pending)
    }

    /// Records that a host source could not be read in the current sample.
    pub fn failed(&mut self, msg: String) {
        self.failures.push(msg);
    }

    /// The read failures of the current sample (cleared by [`Notes::start_sample`]).
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Forgets the previous sample's read failures.
    pub fn start_sample(&mut self) {
        self.failures.clear();
    }
}

/// A source of raw values: one `/proc` file and the slots it fills.
pub trait Source: Send {
    /// Reads the file and fills this source's slots in `out` (clearing them on failure).
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes);
}

/// Options that shape which sources and columns exist.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// One group of CPU columns per CPU as well as the total.
    pub per_cpu: bool,
    /// Which block devices and network interfaces to record.
    pub filter: DeviceFilter,
}

/// Builds every available source under `proc_root`/`sys_root`, declaring their columns.
pub fn build_sources(
    proc_root: &Path,
    sys_root: &Path,
    opts: &SourceOptions,
    schema: &mut SchemaBuilder,
    notes: &mut Notes,
) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let mut buf = Vec::new();
    let open = |name: &str| ProcFile::open(&proc_root.join(name));
    let mut sources: Vec<Box<dyn Source>> = vec![
        Box::new(Stat::new(open("stat")?, opts.per_cpu, schema, &mut buf)?),
        Box::new(LoadAvg::new(open("loadavg")?, schema)),
        Box::new(Mem::new(open("meminfo")?, schema, &mut buf)?),
        Box::new(VmStat::new(open("vmstat")?, schema)),
    ];
    let whole = whole_disks(sys_root);
    if whole.is_none() {
        notes.once(
            "sysblock",
            format!(
                "note: cannot list {}; treating every block device as a whole disk",
                sys_root.join("block").display()
            ),
        );
    }
    sources.push(Box::new(Disks::new(
        open("diskstats")?,
        &opts.filter,
        whole.as_ref(),
        schema,
        &mut buf,
    )?));
    sources.push(Box::new(Nets::new(
        open("net/dev")?,
        &opts.filter,
        schema,
        &mut buf,
    )?));
    for resource in ["cpu", "memory", "io"] {
        let path = proc_root.join("pressure").join(resource);
        if !path.exists() {
            continue;
        }
        match Pressure::new(&path, resource, schema, &mut buf) {
            Ok(p) => sources.push(Box::new(p)),
            Err(e) => notes.once(
                &format!("psi-{resource}"),
                format!("note: pressure stall columns for {resource} left out: {e:#}"),
            ),
        }
    }
    Ok(sources)
}

/// Names of whole disks (entries of `/sys/block`), or `None` when that cannot be listed.
fn whole_disks(sys_root: &Path) -> Option<BTreeSet<String>> {
    let dir = std::fs::read_dir(sys_root.join("block")).ok()?;
    Some(
        dir.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
    )
}

/// Maps a device name to the snake_case form used in column names.
pub fn column_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn read_or_note<'a>(
    file: &ProcFile,
    buf: &'a mut Vec<u8>,
    notes: &mut Notes,
) -> Option<&'a [u8]> {
    match file.read(buf) {
        Ok(text) => Some(text),
        Err(e) => {
            let p = file.path().display().to_string();
            notes.failed(format!("cannot read {p}: {e}"));
            notes.once(
                &p,
                format!("warning: cannot read {p}: {e}; its cells stay empty"),
            );
            None
        }
    }
}

/// First read of a source's file at start-up, where failure stops the recorder.
fn first_read<'a>(file: &ProcFile, buf: &'a mut Vec<u8>) -> anyhow::Result<&'a [u8]> {
    file.read(buf)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.path().display()))
}

/// `key value` or `Key: value kB` lines: the key (without a colon) and the value, with a
/// `kB` unit turned into bytes.
fn key_value(line: &[u8]) -> Option<(&[u8], u64)> {
    let mut f = fields(line);
    let key = f.next()?;
    let key = key.strip_suffix(b":").unwrap_or(key);
    let v = parse_u64(f.next()?)?;
    match f.next() {
        Some(b"kB") => v.checked_mul(1024).map(|v| (key, v)),
        _ => Some((key, v)),
    }
}

/// Whitespace-separated fields of an ASCII line.
pub(super) fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

/// Parses an unsigned decimal integer without allocating.
pub(super) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn parse_f64(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

pub(super) fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// CPU time fields of `/proc/stat`, in kernel order.
pub const CPU_FIELDS: [&str; 10] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
];

/// `/proc/stat`: CPU time, context switches, interrupts, forks, runnable and blocked tasks.
struct Stat {
    file: ProcFile,
    /// Number of CPU time fields this kernel reports (4 on 2.4, 10 since 2.6.33).
    nfields: usize,
    /// First counter slot of each CPU group: the total, then each recorded CPU.
    groups: Vec<usize>,
    /// CPU id of each per-CPU group (index i+1 in `groups`).
    cpu_ids: Vec<u32>,
    ctxt: usize,
    intr: usize,
    forks: usize,
    running: usize,
    blocked: usize,
    all_counters: Vec<usize>,
}

impl Stat {
    fn new(
        file: ProcFile,
        per_cpu: bool,
        schema: &mut SchemaBuilder,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<Self> {
        let text = first_read(&file, buf)?;
        let mut nfields = None;
        let mut cpu_ids = Vec::new();
        for line in lines(text) {
            let mut f = fields(line);
            let Some(key) = f.next() else { continue };
            if key == b"cpu" {
                nfields = Some(f.take(CPU_FIELDS.len()).count());
            } else if let Some(id) = key.strip_prefix(b"cpu").and_then(parse_u64) {
                cpu_ids.push(id as u32);
            }
        }
        let nfields = match nfields {
            Some(n) if n >= 4 => n,
            _ => anyhow::bail!(
                "{}: no aggregate 'cpu' line with at least 4 fields",
                file.path().display()
            ),
        };
        schema.cpus(cpu_ids.len());
        if !per_cpu {
            cpu_ids.clear();
        }
        cpu_ids.sort_unstable();
        let mut groups = Vec::new();
        let mut all_counters = Vec::new();
        let prefixes: Vec<String> = std::iter::once("cpu".to_string())
            .chain(cpu_ids.iter().map(|id| format!("cpu{id}")))
            .collect();
        for prefix in &prefixes {
            let base = schema.counters_len();
            groups.push(base);
            all_counters.extend((0..nfields).map(|_| schema.counter()));
            for (i, field) in CPU_FIELDS.iter().enumerate().take(nfields) {
                schema.column_pair(
                    format!("{prefix}_{field}_pct"),
                    Kind::Rate,
                    "%",
                    Derive::CpuPct {
                        base,
                        field: i,
                        nfields,
                    },
                    format!("{prefix}_{field}_ticks"),
                    "ticks",
                    base + i,
                );
            }
        }
        let ctxt = schema.counter();
        let intr = schema.counter();
        let forks = schema.counter();
        all_counters.extend([ctxt, intr, forks]);
        let running = schema.gauge();
        let blocked = schema.gauge();
        schema.gauge_column("procs_running", "tasks", running);
        schema.gauge_column("procs_blocked", "tasks", blocked);
        schema.counter_column("forks", "forks", forks, 1.0, "forks_per_s", "1/s");
        schema.counter_column("ctxt", "switches", ctxt, 1.0, "ctxt_per_s", "1/s");
        schema.counter_column("intr", "interrupts", intr, 1.0, "intr_per_s", "1/s");
        Ok(Stat {
            file,
            nfields,
            groups,
            cpu_ids,
            ctxt,
            intr,
            forks,
            running,
            blocked,
            all_counters,
        })
    }
}

impl Source for Stat {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&self.all_counters, &[self.running, self.blocked]);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        for line in lines(text) {
            let mut f = fields(line);
            let Some(key) = f.next() else { continue };
            let group = if key == b"cpu" {
                Some(0)
            } else if let Some(rest) = key.strip_prefix(b"cpu") {
                parse_u64(rest)
                    .and_then(|id| self.cpu_ids.binary_search(&(id as u32)).ok())
                    .map(|i| i + 1)
            } else {
                None
            };
            if let Some(g) = group {
                let base = self.groups[g];
                for (i, v) in f.take(self.nfields).enumerate() {
                    out.counters[base + i] = parse_u64(v);
                }
                continue;
            }
            if key.starts_with(b"cpu") {
                continue;
            }
            let first = f.next().and_then(parse_u64);
            match key {
                b"ctxt" => out.counters[self.ctxt] = first,
                b"intr" => out.counters[self.intr] = first,
                b"processes" => out.counters[self.forks] = first,
                b"procs_running" => out.gauges[self.running] = first.map(|v| v as f64),
                b"procs_blocked" => out.gauges[self.blocked] = first.map(|v| v as f64),
                _ => {}
            }
        }
    }
}

/// `/proc/loadavg`: load averages and the number of tasks.
struct LoadAvg {
    file: ProcFile,
    slots: [usize; 4],
}

impl LoadAvg {
    fn new(file: ProcFile, schema: &mut SchemaBuilder) -> Self {
        let slots = [
            schema.gauge(),
            schema.gauge(),
            schema.gauge(),
            schema.gauge(),
        ];
        schema.gauge_column("load_1m", "tasks", slots[0]);
        schema.gauge_column("load_5m", "tasks", slots[1]);
        schema.gauge_column("load_15m", "tasks", slots[2]);
        schema.gauge_column("procs_total", "tasks", slots[3]);
        LoadAvg { file, slots }
    }
}

impl Source for LoadAvg {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&[], &self.slots);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        let mut f = fields(text);
        for &slot in &self.slots[..3] {
            out.gauges[slot] = f.next().and_then(parse_f64);
        }
        // "running/total": the total number of scheduling entities.
        out.gauges[self.slots[3]] = f
            .next()
            .and_then(|rt| rt.split(|&b| b == b'/').nth(1))
            .and_then(parse_u64)
            .map(|v| v as f64);
    }
}

/// `/proc/meminfo`: memory and swap gauges in bytes.
struct Mem {
    file: ProcFile,
    /// Gauge slots of `MEM_COLUMNS`.
    slots: Vec<usize>,
}

/// Column and the meminfo key it comes from; swap used is SwapTotal − SwapFree.
const MEM_COLUMNS: [(&str, &[u8]); 7] = [
    ("mem_total_bytes", b"MemTotal"),
    ("mem_free_bytes", b"MemFree"),
    ("mem_available_bytes", b"MemAvailable"),
    ("mem_buffers_bytes", b"Buffers"),
    ("mem_cached_bytes", b"Cached"),
    ("mem_dirty_bytes", b"Dirty"),
    ("swap_used_bytes", b"SwapTotal"),
];

impl Mem {
    fn new(file: ProcFile, schema: &mut SchemaBuilder, buf: &mut Vec<u8>) -> anyhow::Result<Self> {
        let text = first_read(&file, buf)?;
        let present = |key: &[u8]| lines(text).any(|l| key_value(l).is_some_and(|(k, _)| k == key));
        if !present(b"MemTotal") {
            anyhow::bail!("{}: no MemTotal line", file.path().display());
        }
        let mut slots = Vec::new();
        for (name, key) in MEM_COLUMNS {
            let slot = schema.gauge();
            slots.push(slot);
            // MemAvailable exists since Linux 3.14: no column on older kernels.
            if present(key) {
                schema.gauge_column(name, "bytes", slot);
            }
        }
        Ok(Mem { file, slots })
    }
}

impl Source for Mem {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&[], &self.slots);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        let mut swap_free = None;
        for (key, v) in lines(text).filter_map(key_value) {
            if key == b"SwapFree" {
                swap_free = Some(v);
            } else if let Some(i) = MEM_COLUMNS.iter().position(|(_, k)| *k == key) {
                out.gauges[self.slots[i]] = Some(v as f64);
            }
        }
        let swap = &mut out.gauges[self.slots[6]];
        *swap = swap
            .zip(swap_free)
            .and_then(|(total, free)| (total as u64).checked_sub(free))
            .map(|used| used as f64);
    }
}

/// `/proc/vmstat`: page faults, paging and swapping.
struct VmStat {
    file: ProcFile,
    /// Slots for pgfault, pgmajfault, pgpgin, pgpgout, pswpin, pswpout.
    slots: [usize; 6],
}

const VMSTAT_KEYS: [&[u8]; 6] = [
    b"pgfault",
    b"pgmajfault",
    b"pgpgin",
    b"pgpgout",
    b"pswpin",
    b"pswpout",
];

impl VmStat {
    fn new(file: ProcFile, schema: &mut SchemaBuilder) -> Self {
        let s: [usize; 6] = std::array::from_fn(|_| schema.counter());
        // Minor faults are all faults less the major ones (the kernel counts both in pgfault).
        schema.column_pair(
            "faults_minor_per_s".to_string(),
            Kind::Rate,
            "1/s",
            Derive::Rate {
                slot: s[0],
                minus: Some(s[1]),
                scale: 1.0,
                cap: None,
            },
            "faults".to_string(),
            "faults",
            s[0],
        );
        schema.counter_column(
            "faults_major",
            "faults",
            s[1],
            1.0,
            "faults_major_per_s",
            "1/s",
        );
        schema.counter_column(
            "paging_in_kib",
            "KiB",
            s[2],
            1.0,
            "paging_in_kib_per_s",
            "KiB/s",
        );
        schema.counter_column(
            "paging_out_kib",
            "KiB",
            s[3],
            1.0,
            "paging_out_kib_per_s",
            "KiB/s",
        );
        schema.counter_column(
            "swap_in_pages",
            "pages",
            s[4],
            1.0,
            "swap_in_pages_per_s",
            "1/s",
        );
        schema.counter_column(
            "swap_out_pages",
            "pages",
            s[5],
            1.0,
            "swap_out_pages_per_s",
            "1/s",
        );
        VmStat { file, slots: s }
    }
}

impl Source for VmStat {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&self.slots, &[]);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        // Every wanted key starts with 'p': skip the other ~170 lines on their first byte.
        for line in lines(text).filter(|l| l.first() == Some(&b'p')) {
            if let Some((key, v)) = key_value(line)
                && let Some(i) = VMSTAT_KEYS.iter().position(|k| *k == key)
            {
                out.counters[self.slots[i]] = Some(v);
            }
        }
    }
}

/// `/proc/diskstats`: bytes, operations and busy time of the chosen block devices.
struct Disks {
    file: ProcFile,
    names: Vec<String>,
    /// Per device: read sectors, write sectors, reads, writes, busy ms.
    slots: Vec<[usize; 5]>,
    filter: DeviceFilter,
    whole: Option<BTreeSet<String>>,
    all: Vec<usize>,
}

/// Bytes per sector in `/proc/diskstats`: always 512, whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;

impl Disks {
    fn new(
        file: ProcFile,
        filter: &DeviceFilter,
        whole: Option<&BTreeSet<String>>,
        schema: &mut SchemaBuilder,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<Self> {
        let text = first_read(&file, buf)?;
        let mut names: Vec<String> = Vec::new();
        for line in lines(text) {
            if let Some(name) = fields(line).nth(2) {
                let name = String::from_utf8_lossy(name).into_owned();
                let is_whole = whole.is_none_or(|w| w.contains(&name));
                if filter.wants_disk(&name, is_whole) {
                    names.push(name);
                }
            }
        }
        names.sort();
        names.dedup();
        let mut slots = Vec::new();
        let mut all = Vec::new();
        for name in &names {
            let s: [usize; 5] = std::array::from_fn(|_| schema.counter());
            all.extend(s);
            let d = format!("disk_{}", column_safe(name));
            schema.counter_column(
                &format!("{d}_read_sectors"),
                "sectors",
                s[0],
                SECTOR_BYTES,
                &format!("{d}_read_bytes_per_s"),
                "B/s",
            );
            schema.counter_column(
                &format!("{d}_write_sectors"),
                "sectors",
                s[1],
                SECTOR_BYTES,
                &format!("{d}_write_bytes_per_s"),
                "B/s",
            );
            schema.counter_column(
                &format!("{d}_reads"),
                "ops",
                s[2],
                1.0,
                &format!("{d}_reads_per_s"),
                "1/s",
            );
            schema.counter_column(
                &format!("{d}_writes"),
                "ops",
                s[3],
                1.0,
                &format!("{d}_writes_per_s"),
                "1/s",
            );
            // Milliseconds busy per second of wall time, as a percentage: ms/s × 0.1. Capped
            // at 100: kernels since 5.0 stamp io_ticks per jiffy and can count part of an
            // idle stretch as busy when a request completes (seen here: 348% over 0.25 s).
            // The raw counter (`--raw`) stays as the kernel reports it.
            schema.column_pair(
                format!("{d}_busy_pct"),
                Kind::Rate,
                "%",
                Derive::Rate {
                    slot: s[4],
                    minus: None,
                    scale: 0.1,
                    cap: Some(100.0),
                },
                format!("{d}_busy_ms"),
                "ms",
                s[4],
            );
            slots.push(s);
        }
        schema.devices("disks", &names);
        Ok(Disks {
            file,
            names,
            slots,
            filter: filter.clone(),
            whole: whole.cloned(),
            all,
        })
    }
}

impl Source for Disks {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&self.all, &[]);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        for line in lines(text) {
            let Some(name) = fields(line).nth(2) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let Some(i) = self.names.iter().position(|n| n == name) else {
                let is_whole = self.whole.as_ref().is_none_or(|w| w.contains(name));
                if self.filter.wants_disk(name, is_whole) {
                    notes.once(
                        &format!("disk-{name}"),
                        format!("note: block device {name} appeared after the start; not recorded"),
                    );
                }
                continue;
            };
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            if let Ok(d) = procfs_core::DiskStat::from_line(line) {
                let s = self.slots[i];
                out.counters[s[0]] = Some(d.sectors_read);
                out.counters[s[1]] = Some(d.sectors_written);
                out.counters[s[2]] = Some(d.reads);
                out.counters[s[3]] = Some(d.writes);
                out.counters[s[4]] = Some(d.time_in_progress);
            }
        }
    }
}

/// `/proc/net/dev`: traffic, errors and drops of the chosen network interfaces.
struct Nets {
    file: ProcFile,
    names: Vec<String>,
    /// Per interface: rx bytes, packets, errors, drops, then the same for tx.
    slots: Vec<[usize; 8]>,
    filter: DeviceFilter,
    all: Vec<usize>,
}

const NET_METRICS: [&str; 4] = ["bytes", "packets", "errors", "drops"];

impl Nets {
    fn new(
        file: ProcFile,
        filter: &DeviceFilter,
        schema: &mut SchemaBuilder,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<Self> {
        let text = first_read(&file, buf)?;
        let mut names: Vec<String> = lines(text)
            .filter_map(net_line)
            .filter_map(|(name, _)| std::str::from_utf8(name).ok())
            .filter(|n| filter.wants_interface(n))
            .map(str::to_string)
            .collect();
        names.sort();
        let mut slots = Vec::new();
        let mut all = Vec::new();
        for name in &names {
            let s: [usize; 8] = std::array::from_fn(|_| schema.counter());
            all.extend(s);
            let n = format!("net_{}", column_safe(name));
            for (dir, offset) in [("rx", 0), ("tx", 4)] {
                for (m, metric) in NET_METRICS.iter().enumerate() {
                    let unit = if *metric == "bytes" { "B/s" } else { "1/s" };
                    schema.counter_column(
                        &format!("{n}_{dir}_{metric}"),
                        if *metric == "bytes" {
                            "bytes"
                        } else {
                            "packets"
                        },
                        s[offset + m],
                        1.0,
                        &format!("{n}_{dir}_{metric}_per_s"),
                        unit,
                    );
                }
            }
            slots.push(s);
        }
        schema.devices("interfaces", &names);
        Ok(Nets {
            file,
            names,
            slots,
            filter: filter.clone(),
            all,
        })
    }
}

impl Source for Nets {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.clear_slots(&self.all, &[]);
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        for (name, mut values) in lines(text).filter_map(net_line) {
            let Some(i) = self.names.iter().position(|n| n.as_bytes() == name) else {
                let name = String::from_utf8_lossy(name);
                if self.filter.wants_interface(&name) {
                    notes.once(
                        &format!("net-{name}"),
                        format!(
                            "note: network interface {name} appeared after the start; not recorded"
                        ),
                    );
                }
                continue;
            };
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets
            // errs drop ... — we keep the first four of each direction.
            let s = self.slots[i];
            for (k, v) in (0..16).map(|_| values.next()).enumerate() {
                let slot = match k {
                    0..4 => s[k],
                    8..12 => s[k - 4],
                    _ => continue,
                };
                out.counters[slot] = v.and_then(parse_u64);
            }
        }
    }
}

/// A `/proc/net/dev` interface line: its name and its counter fields (header lines: `None`).
pub(super) fn net_line(line: &[u8]) -> Option<(&[u8], impl Iterator<Item = &[u8]>)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii();
    if name.is_empty() || name.contains(&b'|') {
        return None;
    }
    Some((name, fields(&line[colon + 1..])))
}

/// `/proc/pressure/RESOURCE`: cumulative stall time, as % of the interval.
struct Pressure {
    file: ProcFile,
    some: usize,
    full: Option<usize>,
}

impl Pressure {
    fn new(
        path: &Path,
        resource: &str,
        schema: &mut SchemaBuilder,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<Self> {
        let file = ProcFile::open(path)?;
        let has_full = lines(first_read(&file, buf)?).any(|l| l.starts_with(b"full "));
        let mut add = |kind: &str| {
            let slot = schema.counter();
            // Microseconds stalled per second, as a percentage: us/s × 1e-4.
            schema.counter_column(
                &format!("psi_{resource}_{kind}_us"),
                "us",
                slot,
                1e-4,
                &format!("psi_{resource}_{kind}_pct"),
                "%",
            );
            slot
        };
        let some = add("some");
        let full = has_full.then(|| add("full"));
        Ok(Pressure { file, some, full })
    }
}

impl Source for Pressure {
    fn read(&mut self, buf: &mut Vec<u8>, out: &mut Values, notes: &mut Notes) {
        out.counters[self.some] = None;
        if let Some(f) = self.full {
            out.counters[f] = None;
        }
        let Some(text) = read_or_note(&self.file, buf, notes) else {
            return;
        };
        for line in lines(text) {
            let slot = if line.starts_with(b"some ") {
                Some(self.some)
            } else if line.starts_with(b"full ") {
                self.full
            } else {
                None
            };
            if let Some(slot) = slot {
                out.counters[slot] = fields(line)
                    .find_map(|f| f.strip_prefix(b"total="))
                    .and_then(parse_u64);
            }
        }
    }
}
