//! The recorder's raw counters in the Prometheus text exposition formats (OpenMetrics 1.0 and
//! the older text format 0.0.4), for `vmmon serve` and `vmmon record --format openmetrics`.
//!
//! Prometheus computes rates itself, so what is exported is the raw (`--raw`) schema: the
//! kernel's cumulative counters and the gauges. Each raw column maps to a metric family and
//! labels through one table ([`map_column`]): units become base units (ticks, ms, µs and ns
//! to seconds, sectors and KiB to bytes), counters end in `_total`, and the device, interface,
//! CPU and VM that vmmon glues into a column name become labels, as node_exporter does
//! (`disk_sda_read_sectors_total` → `vmmon_disk_read_bytes_total{device="sda"}`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use crate::record::Cell;
use crate::record::schema::Column;
use crate::record::sources::{CPU_FIELDS, column_safe};
use crate::trace::Kind;

/// Which text exposition format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: `# UNIT`, counter families named without `_total`, `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics.
    Text,
}

impl Format {
    /// The `Content-Type` of a page in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// Chooses the format from a request's `Accept` header: OpenMetrics when the client lists
    /// it (Prometheus since 2.5 asks for it first), else the 0.0.4 text every client reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_om = accept.is_some_and(|a| {
            a.split(',').any(|item| {
                let mut parts = item.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                // `q=0` means "not acceptable" (RFC 9110 §12.4.2).
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_om {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A cumulative count; its samples are named `<family>_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
}

/// Where one column goes: a family, its labels, and the factor to base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Family name (for a counter, without the `_total` its samples carry).
    pub family: String,
    /// Counter or gauge.
    pub kind: MetricType,
    /// Labels of this column's series, in order.
    pub labels: Vec<(String, String)>,
    /// Multiplier from the column's unit to the metric's base unit (1: exact integers).
    pub scale: f64,
    /// The family's `# HELP` text.
    pub help: String,
    /// False when no rule of the table matched and the name was derived mechanically.
    pub known: bool,
}

/// What stands between a rule's prefix and suffix in a column name.
#[derive(Debug, Clone, Copy)]
enum Var {
    /// Nothing: the column name is exactly prefix + suffix.
    None,
    /// A CPU number, which becomes this label.
    Digits(&'static str),
    /// A device of this kind in the schema's device list, which becomes this label.
    Device(&'static str, &'static str),
}

/// Multiplier to base units.
#[derive(Debug, Clone, Copy)]
enum Scale {
    Factor(f64),
    /// Clock ticks (`USER_HZ`) to seconds.
    PerTick,
}

/// One line of the mapping table.
#[derive(Debug, Clone)]
struct Rule {
    prefix: &'static str,
    suffix: String,
    var: Var,
    family: &'static str,
    kind: MetricType,
    labels: Vec<(&'static str, String)>,
    scale: Scale,
    help: &'static str,
}

fn rule(
    prefix: &'static str,
    suffix: &str,
    var: Var,
    family: &'static str,
    kind: MetricType,
    scale: Scale,
    help: &'static str,
) -> Rule {
    Rule {
        prefix,
        suffix: suffix.to_string(),
        var,
        family,
        kind,
        labels: Vec::new(),
        scale,
        help,
    }
}

use MetricType::{Counter, Gauge};
const ONE: Scale = Scale::Factor(1.0);

/// The host table: every column of the raw schema of `/proc` sources and of `--vms`.
static HOST_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let mut r = Vec::new();
    // Guest time is also counted in user and nice: like node_exporter, it goes in a family
    // of its own so that summing vmmon_cpu_seconds_total over modes gives the CPU time.
    for field in CPU_FIELDS {
        let (all, per, mode, help_all, help_per) = match field {
            "guest" | "guest_nice" => (
                "vmmon_cpu_guest_seconds",
                "vmmon_percpu_guest_seconds",
                if field == "guest" { "user" } else { "nice" },
                "Time all CPUs spent running guests (also counted in vmmon_cpu_seconds_total).",
                "Time each CPU spent running guests (also counted in vmmon_percpu_seconds_total).",
            ),
            _ => (
                "vmmon_cpu_seconds",
                "vmmon_percpu_seconds",
                field,
                "Time all CPUs together spent in each mode, from /proc/stat.",
                "Time each CPU spent in each mode, from /proc/stat (--per-cpu).",
            ),
        };
        let suffix = format!("_{field}_ticks_total");
        let mut a = rule(
            "cpu",
            &suffix,
            Var::None,
            all,
            Counter,
            Scale::PerTick,
            help_all,
        );
        a.labels.push(("mode", mode.to_string()));
        let mut p = rule(
            "cpu",
            &suffix,
            Var::Digits("cpu"),
            per,
            Counter,
            Scale::PerTick,
            help_per,
        );
        p.labels.push(("mode", mode.to_string()));
        r.push(a);
        r.push(p);
    }
    let exact = |name: &'static str, family, kind, scale, help| {
        rule(name, "", Var::None, family, kind, scale, help)
    };
    r.extend([
        exact(
            "ctxt_total",
            "vmmon_context_switches",
            Counter,
            ONE,
            "Context switches.",
        ),
        exact(
            "intr_total",
            "vmmon_interrupts",
            Counter,
            ONE,
            "Interrupts serviced.",
        ),
        exact(
            "forks_total",
            "vmmon_forks",
            Counter,
            ONE,
            "Processes and threads created.",
        ),
        exact(
            "procs_running",
            "vmmon_procs_running",
            Gauge,
            ONE,
            "Tasks runnable.",
        ),
        exact(
            "procs_blocked",
            "vmmon_procs_blocked",
            Gauge,
            ONE,
            "Tasks blocked on I/O.",
        ),
        exact(
            "procs_total",
            "vmmon_tasks",
            Gauge,
            ONE,
            "Scheduling entities (processes and threads), from /proc/loadavg.",
        ),
        exact(
            "load_1m",
            "vmmon_load1",
            Gauge,
            ONE,
            "1-minute load average.",
        ),
        exact(
            "load_5m",
            "vmmon_load5",
            Gauge,
            ONE,
            "5-minute load average.",
        ),
        exact(
            "load_15m",
            "vmmon_load15",
            Gauge,
            ONE,
            "15-minute load average.",
        ),
        exact(
            "swap_used_bytes",
            "vmmon_swap_used_bytes",
            Gauge,
            ONE,
            "Swap in use (SwapTotal - SwapFree).",
        ),
        exact(
            "faults_total",
            "vmmon_page_faults",
            Counter,
            ONE,
            "Page faults, minor and major (pgfault).",
        ),
        exact(
            "faults_major_total",
            "vmmon_major_page_faults",
            Counter,
            ONE,
            "Major page faults (pgmajfault).",
        ),
        exact(
            "paging_in_kib_total",
            "vmmon_paging_in_bytes",
            Counter,
            Scale::Factor(1024.0),
            "Bytes paged in from disk (pgpgin).",
        ),
        exact(
            "paging_out_kib_total",
            "vmmon_paging_out_bytes",
            Counter,
            Scale::Factor(1024.0),
            "Bytes paged out to disk (pgpgout).",
        ),
        exact(
            "swap_in_pages_total",
            "vmmon_swap_in_pages",
            Counter,
            ONE,
            "Pages swapped in (pswpin).",
        ),
        exact(
            "swap_out_pages_total",
            "vmmon_swap_out_pages",
            Counter,
            ONE,
            "Pages swapped out (pswpout).",
        ),
        exact(
            "busy_cpu_ns_total",
            "vmmon_host_busy_seconds",
            Counter,
            Scale::Factor(1e-9),
            "Non-idle host CPU time: user, nice, system, irq, softirq (--vms).",
        ),
        exact(
            "pool_softirq_cpu_ns_total",
            "vmmon_pool_softirq_seconds",
            Counter,
            Scale::Factor(1e-9),
            "Host softirq time from /proc/stat, part of the shared I/O pool (--vms).",
        ),
        exact(
            "pool_ksoftirqd_cpu_ns_total",
            "vmmon_pool_ksoftirqd_seconds",
            Counter,
            Scale::Factor(1e-9),
            "CPU time of the ksoftirqd threads, part of the shared I/O pool (--vms).",
        ),
        exact(
            "pool_iothreads_cpu_ns_total",
            "vmmon_pool_iothreads_seconds",
            Counter,
            Scale::Factor(1e-9),
            "CPU time of kworker and jbd2 threads, part of the shared I/O pool (--vms).",
        ),
    ]);
    for (field, help) in [
        ("total", "Memory usable by the kernel (MemTotal)."),
        ("free", "Memory unused (MemFree)."),
        (
            "available",
            "Memory available to start programs (MemAvailable).",
        ),
        ("buffers", "Block device buffers (Buffers)."),
        ("cached", "Page cache (Cached)."),
        ("dirty", "Memory waiting to be written back (Dirty)."),
    ] {
        let family: &'static str = match field {
            "total" => "vmmon_memory_total_bytes",
            "free" => "vmmon_memory_free_bytes",
            "available" => "vmmon_memory_available_bytes",
            "buffers" => "vmmon_memory_buffers_bytes",
            "cached" => "vmmon_memory_cached_bytes",
            _ => "vmmon_memory_dirty_bytes",
        };
        r.push(rule(
            "mem_",
            &format!("{field}_bytes"),
            Var::None,
            family,
            Gauge,
            ONE,
            help,
        ));
    }
    let disk = Var::Device("device", "disks");
    r.extend([
        rule(
            "disk_",
            "_read_sectors_total",
            disk,
            "vmmon_disk_read_bytes",
            Counter,
            Scale::Factor(512.0),
            "Bytes read from each disk.",
        ),
        rule(
            "disk_",
            "_write_sectors_total",
            disk,
            "vmmon_disk_written_bytes",
            Counter,
            Scale::Factor(512.0),
            "Bytes written to each disk.",
        ),
        rule(
            "disk_",
            "_reads_total",
            disk,
            "vmmon_disk_reads_completed",
            Counter,
            ONE,
            "Reads completed by each disk.",
        ),
        rule(
            "disk_",
            "_writes_total",
            disk,
            "vmmon_disk_writes_completed",
            Counter,
            ONE,
            "Writes completed by each disk.",
        ),
        rule(
            "disk_",
            "_busy_ms_total",
            disk,
            "vmmon_disk_io_time_seconds",
            Counter,
            Scale::Factor(1e-3),
            "Time each disk had I/O in flight.",
        ),
    ]);
    let nic = Var::Device("interface", "interfaces");
    for (dir, word) in [("rx", "receive"), ("tx", "transmit")] {
        for metric in ["bytes", "packets", "errors", "drops"] {
            let family: &'static str = match (word, metric) {
                ("receive", "bytes") => "vmmon_network_receive_bytes",
                ("receive", "packets") => "vmmon_network_receive_packets",
                ("receive", "errors") => "vmmon_network_receive_errors",
                ("receive", _) => "vmmon_network_receive_drops",
                (_, "bytes") => "vmmon_network_transmit_bytes",
                (_, "packets") => "vmmon_network_transmit_packets",
                (_, "errors") => "vmmon_network_transmit_errors",
                _ => "vmmon_network_transmit_drops",
            };
            r.push(rule(
                "net_",
                &format!("_{dir}_{metric}_total"),
                nic,
                family,
                Counter,
                ONE,
                "Traffic of each network interface, from /proc/net/dev.",
            ));
        }
    }
    for resource in ["cpu", "memory", "io"] {
        for scope in ["some", "full"] {
            let prefix: &'static str = match resource {
                "cpu" => "psi_cpu_",
                "memory" => "psi_memory_",
                _ => "psi_io_",
            };
            let mut p = rule(
                prefix,
                &format!("{scope}_us_total"),
                Var::None,
                "vmmon_pressure_stalled_seconds",
                Counter,
                Scale::Factor(1e-6),
                "Time some or all non-idle tasks stalled on a resource (/proc/pressure).",
            );
            p.labels.push(("resource", resource.to_string()));
            p.labels.push(("scope", scope.to_string()));
            r.push(p);
        }
    }
    r
});

/// The per-VM table (column names without their `vm.` prefix); each series gets a `vm` label.
static VM_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let ns = Scale::Factor(1e-9);
    let vm = |name: &'static str, family, scale, help| {
        rule(name, "", Var::None, family, Counter, scale, help)
    };
    vec![
        vm(
            "vcpu_cpu_ns_total",
            "vmmon_vm_vcpu_seconds",
            ns,
            "CPU time of each VM's vCPU threads (the guest running, plus exits).",
        ),
        vm(
            "emulator_cpu_ns_total",
            "vmmon_vm_emulator_seconds",
            ns,
            "CPU time of each VMM process outside its vCPU and vhost threads.",
        ),
        vm(
            "vhost_cpu_ns_total",
            "vmmon_vm_vhost_seconds",
            ns,
            "CPU time of each VM's vhost workers.",
        ),
        vm(
            "process_cpu_ns_total",
            "vmmon_vm_process_seconds",
            ns,
            "CPU time of each whole VMM process, exited threads included.",
        ),
        vm(
            "guest_cpu_ns_total",
            "vmmon_vm_guest_seconds",
            ns,
            "Time each VMM process spent in guest mode.",
        ),
        vm(
            "vcpu_run_delay_ns_total",
            "vmmon_vm_vcpu_run_delay_seconds",
            ns,
            "Time each VM's vCPU threads waited runnable for a host CPU.",
        ),
        vm(
            "net_guest_rx_bytes_total",
            "vmmon_vm_guest_receive_bytes",
            ONE,
            "Bytes each guest received through its taps (the taps' transmit side).",
        ),
        vm(
            "net_guest_tx_bytes_total",
            "vmmon_vm_guest_transmit_bytes",
            ONE,
            "Bytes each guest sent through its taps (the taps' receive side).",
        ),
        vm(
            "net_guest_rx_packets_total",
            "vmmon_vm_guest_receive_packets",
            ONE,
            "Packets each guest received through its taps.",
        ),
        vm(
            "net_guest_tx_packets_total",
            "vmmon_vm_guest_transmit_packets",
            ONE,
            "Packets each guest sent through its taps.",
        ),
        vm(
            "disk_read_bytes_total",
            "vmmon_vm_disk_read_bytes",
            ONE,
            "Storage bytes read by each VMM process (/proc/PID/io).",
        ),
        vm(
            "disk_write_bytes_total",
            "vmmon_vm_disk_written_bytes",
            ONE,
            "Storage bytes written by each VMM process (/proc/PID/io).",
        ),
    ]
});

/// Maps one raw-schema column to its metric. `devices` is the schema's device list (to turn
/// a column-safe name back into the kernel's); `ticks_per_second` converts CPU ticks.
/// Columns of the per-VM schema carry a `vm.` prefix, or none when `vm` is given.
pub fn map_column(
    name: &str,
    kind: Kind,
    vm: Option<&str>,
    devices: &BTreeMap<String, Vec<String>>,
    ticks_per_second: f64,
) -> Mapping {
    let (vm, rest, rules) = match (vm, name.split_once('.')) {
        (Some(v), _) => (Some(v), name, &*VM_RULES),
        (None, Some((v, rest))) => (Some(v), rest, &*VM_RULES),
        (None, None) => (None, name, &*HOST_RULES),
    };
    let mut labels: Vec<(String, String)> = vm
        .map(|v| ("vm".to_string(), v.to_string()))
        .into_iter()
        .collect();
    for r in rules.iter() {
        let Some(middle) = rest
            .strip_prefix(r.prefix)
            .and_then(|m| m.strip_suffix(r.suffix.as_str()))
        else {
            continue;
        };
        let var = match r.var {
            Var::None if middle.is_empty() => None,
            Var::Digits(label)
                if !middle.is_empty() && middle.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some((label, middle.to_string()))
            }
            Var::Device(label, list) if !middle.is_empty() => {
                // Columns carry the column-safe form (dm-0 → dm_0); the label has the
                // kernel's own name.
                let real = devices
                    .get(list)
                    .and_then(|names| names.iter().find(|n| column_safe(n) == middle))
                    .map_or_else(|| middle.to_string(), Clone::clone);
                Some((label, real))
            }
            _ => continue,
        };
        labels.extend(var.map(|(l, v)| (l.to_string(), v)));
        labels.extend(r.labels.iter().map(|(l, v)| (l.to_string(), v.clone())));
        return Mapping {
            family: r.family.to_string(),
            kind: r.kind,
            labels,
            scale: match r.scale {
                Scale::Factor(f) => f,
                Scale::PerTick => 1.0 / ticks_per_second,
            },
            help: r.help.to_string(),
            known: true,
        };
    }
    // A column this table does not know yet (a new source): exported as it is, so that
    // nothing is silently dropped; the unit test over the whole schema flags it.
    let counter = kind == Kind::Total;
    let stem = rest
        .strip_suffix("_total")
        .filter(|_| counter)
        .unwrap_or(rest);
    let family = format!(
        "vmmon_{}{}",
        if vm.is_some() { "vm_" } else { "" },
        sanitize_name(stem)
    );
    Mapping {
        family,
        kind: if counter { Counter } else { Gauge },
        labels,
        scale: 1.0,
        help: format!("vmmon column {rest}."),
        known: false,
    }
}

/// Replaces what a metric name may not hold (`[a-zA-Z_:][a-zA-Z0-9_:]*`) with `_`.
fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Appends `v` escaped for a label value: backslash, double quote and newline.
pub fn push_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders label pairs as `a="x",b="y"` (without braces).
fn render_labels(labels: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        push_label_value(&mut s, v);
        s.push('"');
    }
    s
}

/// One series of a family: a cell index and its rendered labels.
#[derive(Debug, Clone)]
struct Series {
    col: usize,
    labels: String,
    scale: f64,
}

/// A metric family and the cells that feed it.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: MetricType,
    help: String,
    /// Host (or wide per-VM) columns.
    series: Vec<Series>,
    /// Columns of the per-VM (long) schema, one series per VM at render time.
    vm_series: Vec<Series>,
}

/// The families of a recording, fixed when it starts; renders one page per sample.
#[derive(Debug, Clone)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    /// Groups the host schema's `columns` (and the per-VM schema's `vm_columns`, whose
    /// series are labelled by VM at render time) into families.
    pub fn new(
        columns: &[Column],
        vm_columns: &[Column],
        devices: &BTreeMap<String, Vec<String>>,
        ticks_per_second: f64,
    ) -> Self {
        let mut families: Vec<Family> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut add = |m: Mapping, col: usize, per_vm: bool| {
            let i = *index.entry(m.family.clone()).or_insert_with(|| {
                families.push(Family {
                    name: m.family.clone(),
                    kind: m.kind,
                    help: m.help.clone(),
                    series: Vec::new(),
                    vm_series: Vec::new(),
                });
                families.len() - 1
            });
            let s = Series {
                col,
                labels: render_labels(&m.labels),
                scale: m.scale,
            };
            if per_vm {
                families[i].vm_series.push(s);
            } else {
                families[i].series.push(s);
            }
        };
        for (i, c) in columns.iter().enumerate() {
            add(
                map_column(&c.name, c.kind, None, devices, ticks_per_second),
                i,
                false,
            );
        }
        for (i, c) in vm_columns.iter().enumerate() {
            // The VM label is added at render time; map as for a VM named "".
            let m = map_column(&c.name, c.kind, Some(""), devices, ticks_per_second);
            let m = Mapping {
                labels: m.labels.into_iter().filter(|(k, _)| k != "vm").collect(),
                ..m
            };
            add(m, i, true);
        }
        Exposition { families }
    }

    /// Appends the page for one sample to `out`: the host `cells` (in `columns` order) and
    /// each VM's cells (in `vm_columns` order). Empty cells are left out rather than sent as
    /// a made-up value. With `timestamp`, every sample carries it (for files; a scrape leaves
    /// it to the scraper). OpenMetrics pages end with `# EOF` when `eof` is set.
    pub fn render(
        &self,
        cells: &[Cell],
        vms: &[(String, Vec<Cell>)],
        format: Format,
        timestamp: Option<Duration>,
        eof: bool,
        out: &mut String,
    ) {
        let mut ts = String::new();
        match (timestamp, format) {
            (None, _) => {}
            (Some(t), Format::OpenMetrics) => {
                let _ = write!(ts, " {}.{:06}", t.as_secs(), t.subsec_micros());
            }
            (Some(t), Format::Text) => {
                let _ = write!(ts, " {}", t.as_millis());
            }
        }
        let mut vm_labels: Vec<String> = Vec::with_capacity(vms.len());
        for (name, _) in vms {
            let mut s = String::from("vm=\"");
            push_label_value(&mut s, name);
            s.push('"');
            vm_labels.push(s);
        }
        for f in &self.families {
            let sample_name = match f.kind {
                Counter => format!("{}_total", f.name),
                Gauge => f.name.clone(),
            };
            let type_word = match f.kind {
                Counter => "counter",
                Gauge => "gauge",
            };
            match format {
                Format::OpenMetrics => {
                    let _ = writeln!(out, "# TYPE {} {type_word}", f.name);
                    if let Some(unit) = unit_of(&f.name) {
                        let _ = writeln!(out, "# UNIT {} {unit}", f.name);
                    }
                    let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
                }
                Format::Text => {
                    let _ = writeln!(out, "# HELP {sample_name} {}", f.help);
                    let _ = writeln!(out, "# TYPE {sample_name} {type_word}");
                }
            }
            for s in &f.series {
                line(
                    out,
                    &sample_name,
                    "",
                    &s.labels,
                    cells.get(s.col),
                    s.scale,
                    &ts,
                );
            }
            for ((_, vm_cells), vm_label) in vms.iter().zip(&vm_labels) {
                for s in &f.vm_series {
                    line(
                        out,
                        &sample_name,
                        vm_label,
                        &s.labels,
                        vm_cells.get(s.col),
                        s.scale,
                        &ts,
                    );
                }
            }
        }
        if eof && format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
    }
}

/// The OpenMetrics unit of a family, which its name must end with.
fn unit_of(family: &str) -> Option<&'static str> {
    ["seconds", "bytes"]
        .into_iter()
        .find(|u| family.strip_suffix(u).is_some_and(|s| s.ends_with('_')))
}

/// One sample line; nothing for an empty or missing cell.
fn line(
    out: &mut String,
    name: &str,
    first: &str,
    labels: &str,
    cell: Option<&Cell>,
    scale: f64,
    ts: &str,
) {
    let value = match cell {
        None | Some(Cell::Empty) => return,
        Some(Cell::Int(v)) if scale == 1.0 => Value::Int(*v),
        Some(Cell::Int(v)) => Value::Float(*v as f64 * scale),
        Some(Cell::Num(v)) => Value::Float(v * scale),
    };
    out.push_str(name);
    if !first.is_empty() || !labels.is_empty() {
        out.push('{');
        out.push_str(first);
        if !first.is_empty() && !labels.is_empty() {
            out.push(',');
        }
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    let _ = match value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Float(v) if v.is_nan() => write!(out, "NaN"),
        Value::Float(v) if v.is_infinite() => {
            write!(out, "{}", if v > 0.0 { "+Inf" } else { "-Inf" })
        }
        // Rust prints the shortest decimal that reads back exactly, never an exponent.
        Value::Float(v) => write!(out, "{v}"),
    };
    out.push_str(ts);
    out.push('\n');
}

enum Value {
    Int(u64),
    Float(f64),
}

/// A recorder sampled on demand: each [`Scraper::scrape`] reads `/proc` afresh and renders the
/// page, so a counter's value is as of the scrape (what Prometheus's model expects).
pub struct Scraper {
    recorder: crate::record::Recorder,
    start: Duration,
    sample: crate::record::Sample,
    cells: Vec<Cell>,
    vms: Vec<(String, Vec<Cell>)>,
    page: String,
}

impl Scraper {
    /// Opens the sources of `config` (its layout and raw mode are set here).
    pub fn new(mut config: crate::record::RecordConfig) -> anyhow::Result<Self> {
        config.layout = crate::record::Layout::OpenMetrics;
        config.raw = true;
        let recorder = crate::record::Recorder::new(config)?;
        let sample = recorder.schema().new_sample();
        Ok(Scraper {
            recorder,
            start: crate::record::monotonic(),
            sample,
            cells: Vec::new(),
            vms: Vec::new(),
            page: String::with_capacity(16 * 1024),
        })
    }

    /// Samples now and renders the page; fails, naming the files, when a host source could
    /// not be read, so that a scraper never gets a partial page.
    pub fn scrape(&mut self, format: Format) -> Result<&str, String> {
        self.sample.mono = crate::record::monotonic().saturating_sub(self.start);
        self.sample.wall = crate::record::realtime();
        self.recorder.read(&mut self.sample);
        let failures = self.recorder.read_failures();
        if !failures.is_empty() {
            return Err(format!("sampling failed: {}", failures.join("; ")));
        }
        // Raw columns are the current sample's values: no previous sample is needed.
        self.recorder
            .schema()
            .derive(&self.sample, &self.sample, &mut self.cells);
        self.recorder.vm_rows(&mut self.vms);
        self.page.clear();
        let Some(exposition) = self.recorder.exposition() else {
            return Err("internal error: no exposition for this recorder".into());
        };
        exposition.render(&self.cells, &self.vms, format, None, true, &mut self.page);
        Ok(&self.page)
    }

    /// Messages for the user since the last call (new devices, VMs gone, unreadable files).
    pub fn take_notes(&mut self) -> Vec<String> {
        self.recorder.take_notes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture::FakeProc;
    use crate::record::{RecordConfig, VmSelect};

    fn ticks() -> f64 {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
    }

    /// A host with one disk, one interface and one VM (`vm1`) with a named vCPU thread.
    fn scraper() -> (tempfile::TempDir, Scraper) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = FakeProc::new(&dir.path().join("proc")).expect("tree");
        p.host_cpu([100, 2, 50, 1000, 3, 0, 4, 0, 10, 0]).unwrap();
        p.net_dev(&[("eth0", [1, 2, 3, 4])]).unwrap();
        p.write("diskstats", "   8       0 sda 10 0 80 0 5 0 40 0 0 7 0\n")
            .unwrap();
        p.vmm(
            4242,
            "qemu-system-x86",
            &["qemu-system-x86_64", "-name", "guest=vm1"],
            (5, 1),
        )
        .unwrap();
        p.thread(4242, 4243, "CPU 0/KVM", 2_000_000_000, 1000, 0)
            .unwrap();
        let config = RecordConfig {
            proc_root: p.root().to_path_buf(),
            sys_root: dir.path().join("sys"),
            vms: Some(VmSelect::default()),
            ..RecordConfig::default()
        };
        let s = Scraper::new(config).expect("scraper");
        (dir, s)
    }

    fn valid_name(n: &str) -> bool {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }

    /// Checks the structure of a page: every sample's family has a TYPE line before it, its
    /// families are contiguous, names are valid, counters end in `_total`, label values are
    /// quoted with escapes, values parse, and OpenMetrics ends with `# EOF`. Returns the
    /// samples as (name, labels text, value).
    fn check(page: &str, format: Format) -> Vec<(String, String, f64)> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut done: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut samples = Vec::new();
        let lines: Vec<&str> = page.lines().collect();
        assert!(page.ends_with('\n'));
        if format == Format::OpenMetrics {
            assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
            assert_eq!(page.matches("# EOF").count(), 1);
        } else {
            assert!(!page.contains("# EOF"));
        }
        for line in &lines {
            if *line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                let mut f = rest.splitn(3, ' ');
                let (word, name) = (f.next().unwrap(), f.next().unwrap());
                assert!(valid_name(name), "bad name in {line}");
                match word {
                    "TYPE" => {
                        let t = f.next().unwrap();
                        assert!(t == "counter" || t == "gauge", "{line}");
                        assert!(!types.contains_key(name), "family twice: {line}");
                        if !current.is_empty() {
                            done.push(current.clone());
                        }
                        current = name.to_string();
                        types.insert(name.to_string(), t.to_string());
                    }
                    "HELP" => assert!(f.next().is_some_and(|h| !h.is_empty())),
                    "UNIT" => {
                        assert_eq!(format, Format::OpenMetrics);
                        let u = f.next().unwrap();
                        assert!(name.ends_with(&format!("_{u}")), "{line}");
                    }
                    _ => panic!("unknown comment {line}"),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("name");
            let name = &line[..name_end];
            assert!(valid_name(name), "bad name: {line}");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                let close = line.rfind('}').expect("closing brace");
                (&line[name_end + 1..close], &line[close + 1..])
            } else {
                ("", &line[name_end..])
            };
            // label="value" pairs with \\, \" and \n escapes.
            let mut chars = labels.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert!(valid_name(&key), "bad label name in {line}");
                assert_eq!(chars.next(), Some('"'), "{line}");
                loop {
                    match chars.next().expect("unterminated label value") {
                        '\\' => assert!(matches!(chars.next(), Some('\\' | '"' | 'n'))),
                        '"' => break,
                        '\n' => panic!("raw newline"),
                        _ => {}
                    }
                }
                if chars.peek() == Some(&',') {
                    chars.next();
                }
            }
            let value: f64 = rest
                .trim()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .expect("value");
            let family = match format {
                Format::OpenMetrics
                    if types
                        .get(name.trim_end_matches("_total"))
                        .is_some_and(|t| t == "counter") =>
                {
                    name.trim_end_matches("_total")
                }
                _ => name,
            };
            let t = types
                .get(family)
                .unwrap_or_else(|| panic!("no TYPE for {line}"));
            assert_eq!(family, current, "family not contiguous: {line}");
            assert!(!done.contains(&family.to_string()));
            if t == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            samples.push((name.to_string(), labels.to_string(), value));
        }
        samples
    }

    fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
        samples
            .iter()
            .find(|s| s.0 == name && s.1 == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
            .2
    }

    #[test]
    fn both_formats_are_valid_and_hold_the_counters_in_base_units() {
        let (_dir, mut s) = scraper();
        for format in [Format::OpenMetrics, Format::Text] {
            let page = s.scrape(format).expect("scrape").to_string();
            assert!(!page.contains("vmmon column"), "unmapped column:\n{page}");
            let v = check(&page, format);
            let t = ticks();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            let user = value(&v, "vmmon_cpu_seconds_total", r#"mode="user""#);
            assert!(close(user, 100.0 / t), "{user}");
            let guest = value(&v, "vmmon_cpu_guest_seconds_total", r#"mode="user""#);
            assert!(close(guest, 10.0 / t));
            assert_eq!(
                value(&v, "vmmon_disk_read_bytes_total", r#"device="sda""#),
                80.0 * 512.0
            );
            assert_eq!(
                value(&v, "vmmon_disk_written_bytes_total", r#"device="sda""#),
                40.0 * 512.0
            );
            assert!(close(
                value(&v, "vmmon_disk_io_time_seconds_total", r#"device="sda""#),
                0.007
            ));
            assert_eq!(
                value(
                    &v,
                    "vmmon_network_transmit_bytes_total",
                    r#"interface="eth0""#
                ),
                3.0
            );
            assert_eq!(value(&v, "vmmon_memory_total_bytes", ""), 1000.0 * 1024.0);
            assert!(close(
                value(&v, "vmmon_vm_vcpu_seconds_total", r#"vm="vm1""#),
                2.0
            ));
            assert!(page.contains("# TYPE vmmon_cpu_seconds"));
            if format == Format::OpenMetrics {
                assert!(page.contains("# TYPE vmmon_cpu_seconds counter\n"));
                assert!(page.contains("# UNIT vmmon_cpu_seconds seconds\n"));
            } else {
                assert!(page.contains("# TYPE vmmon_cpu_seconds_total counter\n"));
                assert!(!page.contains("# UNIT"));
            }
        }
    }

    #[test]
    fn every_raw_column_of_the_table_maps_to_a_known_metric() {
        let devices = BTreeMap::from([
            ("disks".to_string(), vec!["dm-0".to_string()]),
            ("interfaces".to_string(), vec!["br-lan.5".to_string()]),
        ]);
        let m = map_column(
            "disk_dm_0_read_sectors_total",
            Kind::Total,
            None,
            &devices,
            100.0,
        );
        assert_eq!(m.family, "vmmon_disk_read_bytes");
        assert_eq!(m.labels, vec![("device".into(), "dm-0".into())]);
        assert_eq!(m.scale, 512.0);
        let m = map_column(
            "net_br_lan_5_tx_drops_total",
            Kind::Total,
            None,
            &devices,
            100.0,
        );
        assert_eq!(m.family, "vmmon_network_transmit_drops");
        assert_eq!(m.labels, vec![("interface".into(), "br-lan.5".into())]);
        let m = map_column(
            "cpu12_guest_nice_ticks_total",
            Kind::Total,
            None,
            &devices,
            100.0,
        );
        assert_eq!(m.family, "vmmon_percpu_guest_seconds");
        assert_eq!(
            m.labels,
            vec![("cpu".into(), "12".into()), ("mode".into(), "nice".into())]
        );
        assert_eq!(m.scale, 0.01);
        let m = map_column("cpu_nice_ticks_total", Kind::Total, None, &devices, 100.0);
        assert_eq!((m.family.as_str(), m.known), ("vmmon_cpu_seconds", true));
        let m = map_column(
            "web_1.disk_write_bytes_total",
            Kind::Total,
            None,
            &devices,
            100.0,
        );
        assert_eq!(m.family, "vmmon_vm_disk_written_bytes");
        assert_eq!(m.labels, vec![("vm".into(), "web_1".into())]);
        let m = map_column("psi_io_full_us_total", Kind::Total, None, &devices, 100.0);
        assert_eq!(m.family, "vmmon_pressure_stalled_seconds");
        assert_eq!(m.scale, 1e-6);
        // Something new is still exported, mechanically named, and flagged.
        let m = map_column("new_thing-x_total", Kind::Total, None, &devices, 100.0);
        assert_eq!((m.family.as_str(), m.known), ("vmmon_new_thing_x", false));
        assert_eq!(m.kind, MetricType::Counter);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        push_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
    }

    #[test]
    fn openmetrics_is_chosen_when_asked_for() {
        // What Prometheus 2.42 sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Text
        );
    }

    #[test]
    fn timestamps_are_seconds_in_openmetrics_and_milliseconds_in_text() {
        let cols = [Column {
            name: "ctxt_total".into(),
            kind: Kind::Total,
            unit: "switches".into(),
            derive: crate::record::schema::Derive::Total { slot: 0 },
        }];
        let e = Exposition::new(&cols, &[], &BTreeMap::new(), 100.0);
        let t = Duration::from_millis(1_700_000_000_123);
        let mut out = String::new();
        e.render(
            &[Cell::Int(7)],
            &[],
            Format::OpenMetrics,
            Some(t),
            false,
            &mut out,
        );
        assert!(
            out.ends_with("vmmon_context_switches_total 7 1700000000.123000\n"),
            "{out}"
        );
        out.clear();
        e.render(&[Cell::Int(7)], &[], Format::Text, Some(t), false, &mut out);
        assert!(
            out.ends_with("vmmon_context_switches_total 7 1700000000123\n"),
            "{out}"
        );
        out.clear();
        e.render(&[Cell::Empty], &[], Format::Text, None, false, &mut out);
        assert!(
            !out.lines().any(|l| l.starts_with("vmmon_")),
            "empty cells are left out: {out}"
        );
    }
}
