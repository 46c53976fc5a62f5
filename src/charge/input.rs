//! Reading a host trace written by `vmmon record --vms`, in the wide layout (`<vm>.<metric>`
//! columns) or the long one (`--format long`: `time,vm,metric,value` rows): the VMs and the
//! host's pool columns found by name, every row's cells kept with empty cells as NaN
//! (unknown), and each row's interval length.
//!
//! `trace::read::read_series` is not used for the cells: it places rows on an even grid and
//! either refuses, interpolates or drops a row with an empty cell, while charging needs each
//! row as it was written, with an empty cell meaning "unknown in this interval" (a VM that
//! exited, a file that could not be read). The messages follow that reader's
//! (`file:line:column: …`), and times are parsed by its `parse_time`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};

use super::PoolPart;
use crate::trace::read::parse_time;

/// The per-VM metrics that are read (the column is `<vm>.<metric>`).
pub const VM_COLUMNS: [&str; 9] = [
    "vcpu_cpu_pct",
    "emulator_cpu_pct",
    "vhost_cpu_pct",
    "net_guest_rx_packets_per_s",
    "net_guest_tx_packets_per_s",
    "net_guest_rx_bytes_per_s",
    "net_guest_tx_bytes_per_s",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
];

/// The column whose presence makes a VM: `<vm>.vcpu_cpu_pct`.
pub const VM_MARKER: &str = "vcpu_cpu_pct";

/// The host's non-idle CPU time, percent of one CPU.
pub const BUSY_COLUMN: &str = "busy_cpu_pct";

/// One VM's columns: CPU in percent of one CPU, I/O per second; NaN where a cell was empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmSeries {
    /// The VM's name: everything before `.vcpu_cpu_pct` (`vm1`, or `host.vm1` after align).
    pub name: String,
    /// CPU time of the vCPU threads.
    pub vcpu_pct: Vec<f64>,
    /// CPU time of qemu's other threads (main loop, I/O threads).
    pub emulator_pct: Vec<f64>,
    /// CPU time of the VM's vhost worker threads.
    pub vhost_pct: Vec<f64>,
    /// Packets received by the guest on its tap, per second.
    pub rx_packets: Vec<f64>,
    /// Packets sent by the guest, per second.
    pub tx_packets: Vec<f64>,
    /// Bytes received by the guest, per second.
    pub rx_bytes: Vec<f64>,
    /// Bytes sent by the guest, per second.
    pub tx_bytes: Vec<f64>,
    /// Bytes the qemu process read from storage, per second.
    pub disk_read_bytes: Vec<f64>,
    /// Bytes the qemu process wrote to storage, per second.
    pub disk_write_bytes: Vec<f64>,
}

impl VmSeries {
    /// A VM named `name` with `rows` intervals of zeros (for building traces in memory).
    pub fn zeros(name: &str, rows: usize) -> VmSeries {
        let z = vec![0.0; rows];
        VmSeries {
            name: name.to_string(),
            vcpu_pct: z.clone(),
            emulator_pct: z.clone(),
            vhost_pct: z.clone(),
            rx_packets: z.clone(),
            tx_packets: z.clone(),
            rx_bytes: z.clone(),
            tx_bytes: z.clone(),
            disk_read_bytes: z.clone(),
            disk_write_bytes: z,
        }
    }

    /// The series in the order of [`VM_COLUMNS`].
    pub fn columns(&self) -> [&Vec<f64>; 9] {
        [
            &self.vcpu_pct,
            &self.emulator_pct,
            &self.vhost_pct,
            &self.rx_packets,
            &self.tx_packets,
            &self.rx_bytes,
            &self.tx_bytes,
            &self.disk_read_bytes,
            &self.disk_write_bytes,
        ]
    }

    fn columns_mut(&mut self) -> [&mut Vec<f64>; 9] {
        [
            &mut self.vcpu_pct,
            &mut self.emulator_pct,
            &mut self.vhost_pct,
            &mut self.rx_packets,
            &mut self.tx_packets,
            &mut self.rx_bytes,
            &mut self.tx_bytes,
            &mut self.disk_read_bytes,
            &mut self.disk_write_bytes,
        ]
    }
}

/// A host trace ready for charging: one entry per row (interval) in every series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostTrace {
    /// The file name (or `<stdin>`) for messages.
    pub label: String,
    /// Each row's `time` cell as written (the interval ends then).
    pub time: Vec<String>,
    /// Each interval's length in seconds.
    pub dt: Vec<f64>,
    /// The VMs, in the order of their columns.
    pub vms: Vec<VmSeries>,
    /// The pool parts present in the trace, percent of one CPU.
    pub pool: Vec<(PoolPart, Vec<f64>)>,
    /// The host's busy CPU (`busy_cpu_pct`), if the trace has it.
    pub busy_pct: Option<Vec<f64>>,
    /// How the trace was read (interval of the first row, time source).
    pub notes: Vec<String>,
}

impl HostTrace {
    /// Rows (intervals).
    pub fn len(&self) -> usize {
        self.dt.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.dt.is_empty()
    }

    /// Checks a trace built in memory: every series as long as `dt`, intervals positive, and
    /// values finite and ≥ 0 or NaN (unknown). Traces from [`read_trace`] always pass.
    pub fn check(&self) -> anyhow::Result<()> {
        let n = self.dt.len();
        let label = &self.label;
        if self.time.len() != n {
            bail!("{label}: {} times for {n} intervals", self.time.len());
        }
        if let Some(t) = self.dt.iter().position(|d| !(d.is_finite() && *d > 0.0)) {
            bail!("{label}: interval {t} has length {}", self.dt[t]);
        }
        let mut series: Vec<(String, &[f64])> = Vec::new();
        for vm in &self.vms {
            for (metric, col) in VM_COLUMNS.iter().zip(vm.columns()) {
                series.push((format!("{}.{metric}", vm.name), col));
            }
        }
        for (part, col) in &self.pool {
            series.push((part.column().to_string(), col));
        }
        if let Some(b) = &self.busy_pct {
            series.push((BUSY_COLUMN.to_string(), b));
        }
        for (name, col) in series {
            if col.len() != n {
                bail!("{label}: {name} has {} values for {n} intervals", col.len());
            }
            if let Some(t) = col
                .iter()
                .position(|v| !(v.is_nan() || (v.is_finite() && *v >= 0.0)))
            {
                bail!("{label}: {name} is {} in interval {t}", col[t]);
            }
        }
        Ok(())
    }
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(crate::record::UsageError(msg))
}

/// Finds a host column: the exact name, or else the one column ending in `.NAME` (an aligned
/// trace's `host.NAME`).
fn host_column(header: &[String], name: &str, label: &str) -> anyhow::Result<Option<usize>> {
    if let Some(i) = header.iter().position(|h| h == name) {
        return Ok(Some(i));
    }
    let suffix = format!(".{name}");
    let found: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].ends_with(&suffix))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [i] => Ok(Some(*i)),
        many => Err(usage(format!(
            "{label}: several columns could be the host's {name}: {}; keep one (vmmon align \
             --columns)",
            many.iter()
                .map(|&i| header[i].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The `mode` of the trace's sidecar (`rates` or `raw`), if it has one.
fn sidecar_mode(label: &str) -> Option<String> {
    let path = crate::trace::sidecar_path(Path::new(label));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    meta.get("mode")?.as_str().map(str::to_string)
}

/// Reads a host trace from `input` (a path, or `-` for standard input), in the wide layout
/// (`vmmon record --vms`) or the long one (`--format long`: `time,vm,metric,value`).
///
/// Usage errors (exit code 2): no per-VM columns (a trace recorded without `--vms`), a raw
/// trace (`--raw`, cumulative counters), a VM missing one of [`VM_COLUMNS`] (wide layout),
/// no pool column. Other errors name the file, line and column of the bad cell.
pub fn read_trace(input: &str) -> anyhow::Result<HostTrace> {
    let (reader, label): (Box<dyn Read>, String) = if input == "-" {
        (Box::new(std::io::stdin().lock()), "<stdin>".into())
    } else {
        let f = std::fs::File::open(Path::new(input))
            .with_context(|| format!("cannot open trace {input}"))?;
        (
            Box::new(std::io::BufReader::with_capacity(1 << 16, f)),
            input.into(),
        )
    };
    read_from(reader, &label)
}

/// The header of the long layout.
const LONG_HEADER: [&str; 4] = ["time", "vm", "metric", "value"];

/// Reads a host trace from any reader; `label` names it in messages.
pub fn read_from(reader: impl Read, label: &str) -> anyhow::Result<HostTrace> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let header = crate::trace::read::header_names(
        csv.headers()
            .with_context(|| format!("{label}: cannot read the header"))?,
        label,
    )?;
    if header == LONG_HEADER {
        read_long(csv, label)
    } else {
        read_wide(csv, header, label)
    }
}

/// A cell's value: empty is NaN (unknown); anything but a finite number ≥ 0 is an error
/// naming `label:line:col` and the column.
fn value(text: &str, label: &str, line: u64, col: usize, name: &str) -> anyhow::Result<f64> {
    if text.is_empty() {
        return Ok(f64::NAN);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) if v.is_finite() => bail!(
            "{label}:{line}:{col}: {text} in column {name} is negative: CPU shares and I/O \
             rates cannot be"
        ),
        Ok(_) => bail!(
            "{label}:{line}:{col}: {text} in column {name}: leave the cell empty for a missing \
             value"
        ),
        Err(_) => bail!("{label}:{line}:{col}: '{text}' in column {name} is not a number"),
    }
}

/// Where each column `charge` needs is, found by name in a (wide) header.
struct Layout {
    names: Vec<String>,
    vm_idx: Vec<[Option<usize>; 9]>,
    pool_idx: Vec<(PoolPart, usize)>,
    busy_idx: Option<usize>,
    elapsed_idx: Option<usize>,
}

impl Layout {
    /// Finds the VMs and host columns; `strict` refuses a VM that lacks a column (the wide
    /// layout has every column on every row, the long one only the metrics a VM had).
    fn new(header: &[String], label: &str, strict: bool) -> anyhow::Result<Layout> {
        let suffix = format!(".{VM_MARKER}");
        let names: Vec<String> = header
            .iter()
            .filter_map(|h| h.strip_suffix(&suffix))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            // A raw trace has cumulative counters: `cpu_user_ticks_total`, a VM's
            // `vm1.vcpu_cpu_ns_total`, and says `"mode": "raw"` in its sidecar. (`procs_total`
            // is a gauge in either mode, so `_total` alone does not tell.)
            let raw: Vec<&str> = header
                .iter()
                .filter(|h| {
                    h.ends_with("_ticks_total") || (h.ends_with("_total") && h.contains(".vcpu_"))
                })
                .map(String::as_str)
                .take(3)
                .collect();
            if !raw.is_empty() || sidecar_mode(label).as_deref() == Some("raw") {
                let what = if raw.is_empty() {
                    "its sidecar says mode raw".to_string()
                } else {
                    format!("cumulative counters such as {}", raw.join(", "))
                };
                return Err(usage(format!(
                    "{label} is a raw trace ({what}): charge needs per-interval rates; record \
                     without --raw (vmmon record --vms)"
                )));
            }
            return Err(usage(format!(
                "{label} has no per-VM columns (<vm>.vcpu_cpu_pct, \
                 <vm>.net_guest_rx_packets_per_s, …): record the host with vmmon record --vms"
            )));
        }
        let find = |name: &str| header.iter().position(|h| h == name);
        let mut vm_idx = Vec::with_capacity(names.len());
        for vm in &names {
            let idx = VM_COLUMNS.map(|metric| find(&format!("{vm}.{metric}")));
            let missing: Vec<String> = VM_COLUMNS
                .iter()
                .zip(&idx)
                .filter(|(_, i)| i.is_none())
                .map(|(m, _)| format!("{vm}.{m}"))
                .collect();
            if strict && !missing.is_empty() {
                return Err(usage(format!(
                    "{label}: VM {vm} lacks column(s) {}: charge needs every per-VM column of \
                     vmmon record --vms",
                    missing.join(", ")
                )));
            }
            vm_idx.push(idx);
        }
        let mut pool_idx = Vec::new();
        for part in PoolPart::ALL {
            if let Some(i) = host_column(header, part.column(), label)? {
                pool_idx.push((part, i));
            }
        }
        if pool_idx.is_empty() {
            return Err(usage(format!(
                "{label} has no pool columns ({}): record the host with vmmon record --vms",
                PoolPart::ALL.map(PoolPart::column).join(", ")
            )));
        }
        Ok(Layout {
            vm_idx,
            pool_idx,
            busy_idx: host_column(header, BUSY_COLUMN, label)?,
            // Only the recorder's own `elapsed`: after align, a prefixed one is a source's
            // clock, not the grid's, and the grid's `time` is the better measure.
            elapsed_idx: find("elapsed"),
            names,
        })
    }
}

/// A trace being filled row by row.
struct Builder {
    trace: HostTrace,
    layout: Layout,
    /// The clock of each row's end: elapsed (monotonic) when present, else the time column.
    ends: Vec<f64>,
    lines: Vec<u64>,
    /// Whether the ends come from `elapsed` (else from `time`).
    by_elapsed: bool,
}

impl Builder {
    fn new(label: &str, layout: Layout, by_elapsed: bool) -> Builder {
        let trace = HostTrace {
            label: label.to_string(),
            vms: layout
                .names
                .iter()
                .map(|n| VmSeries {
                    name: n.clone(),
                    ..VmSeries::default()
                })
                .collect(),
            pool: layout
                .pool_idx
                .iter()
                .map(|(p, _)| (*p, Vec::new()))
                .collect(),
            busy_pct: layout.busy_idx.map(|_| Vec::new()),
            ..HostTrace::default()
        };
        Builder {
            trace,
            layout,
            ends: Vec::new(),
            lines: Vec::new(),
            by_elapsed,
        }
    }

    /// Adds a row ending at `end` (line `line`), whose column i has `cell(i)`.
    fn push(
        &mut self,
        time: &str,
        end: f64,
        line: u64,
        cell: &mut dyn FnMut(usize) -> anyhow::Result<f64>,
    ) -> anyhow::Result<()> {
        if let (Some(prev), Some(prev_line)) = (self.ends.last(), self.lines.last())
            && end <= *prev
        {
            bail!(
                "{}:{line}: {} {end} does not increase (previous row, line {prev_line}, has \
                 {prev})",
                self.trace.label,
                if self.by_elapsed { "elapsed" } else { "time" }
            );
        }
        self.ends.push(end);
        self.lines.push(line);
        self.trace.time.push(time.to_string());
        for (vm, idx) in self.trace.vms.iter_mut().zip(&self.layout.vm_idx) {
            for (col, i) in vm.columns_mut().into_iter().zip(idx) {
                col.push(match i {
                    Some(i) => cell(*i)?,
                    None => f64::NAN,
                });
            }
        }
        for ((_, col), (_, i)) in self.trace.pool.iter_mut().zip(&self.layout.pool_idx) {
            col.push(cell(*i)?);
        }
        if let (Some(col), Some(i)) = (self.trace.busy_pct.as_mut(), self.layout.busy_idx) {
            col.push(cell(i)?);
        }
        Ok(())
    }

    /// The trace, with each row's interval length.
    fn finish(mut self) -> anyhow::Result<HostTrace> {
        let label = &self.trace.label;
        if self.ends.len() < 2 {
            bail!(
                "{label}: {} data row(s): at least two are needed to know the interval length",
                self.ends.len()
            );
        }
        let mut dt: Vec<f64> = self.ends.windows(2).map(|w| w[1] - w[0]).collect();
        let mut sorted = dt.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        dt.insert(0, median);
        self.trace.dt = dt;
        self.trace.notes.push(format!(
            "the first row's interval is taken as the median interval, {median} s"
        ));
        if !self.by_elapsed {
            self.trace.notes.push(
                "no 'elapsed' column: interval lengths come from the time column".to_string(),
            );
        }
        Ok(self.trace)
    }
}

/// The end of an interval from its elapsed cell, or else its time cell.
fn row_end(
    elapsed: Option<(&str, usize)>,
    time: (&str, usize),
    label: &str,
    line: u64,
) -> anyhow::Result<f64> {
    match elapsed {
        Some((text, col)) => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| {
                format!("{label}:{line}:{col}: elapsed '{text}' is not a number of seconds")
            }),
        None => parse_time(time.0).with_context(|| {
            format!(
                "{label}:{line}:{}: time '{}' is not Unix seconds or RFC 3339",
                time.1, time.0
            )
        }),
    }
}

fn read_wide<R: Read>(
    mut csv: csv::Reader<R>,
    header: Vec<String>,
    label: &str,
) -> anyhow::Result<HostTrace> {
    let layout = Layout::new(&header, label, true)?;
    let time_idx = header.iter().position(|h| h == "time").with_context(|| {
        usage(format!(
            "{label} has no 'time' column; the columns are: {}",
            header.join(", ")
        ))
    })?;
    let elapsed_idx = layout.elapsed_idx;
    let mut builder = Builder::new(label, layout, elapsed_idx.is_some());
    let mut record = csv::ByteRecord::new();
    loop {
        let more = csv
            .read_byte_record(&mut record)
            .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let text = |i: usize| crate::trace::read::text(&record, i, label, line);
        let time = text(time_idx)?;
        let elapsed = match elapsed_idx {
            Some(i) => Some((text(i)?, i + 1)),
            None => None,
        };
        let end = row_end(elapsed, (time, time_idx + 1), label, line)?;
        let mut cell = |i: usize| value(text(i)?, label, line, i + 1, &header[i]);
        builder.push(time, end, line, &mut cell)?;
    }
    builder.finish()
}

/// The long layout: consecutive rows with the same `time` are one sample; host metrics have
/// an empty `vm`. Only the values `charge` needs are kept (checked as they are read), so
/// memory grows with the VMs, not with every host metric.
fn read_long<R: Read>(mut csv: csv::Reader<R>, label: &str) -> anyhow::Result<HostTrace> {
    /// One sample: its time, first line, elapsed cell, and the kept values by column.
    struct Sample {
        time: String,
        line: u64,
        elapsed: Option<(String, u64)>,
        values: Vec<(usize, f64)>,
    }
    let needed_host: Vec<&str> = PoolPart::ALL
        .iter()
        .map(|p| p.column())
        .chain([BUSY_COLUMN])
        .collect();
    // The wide names of every (vm, metric) seen, in order: the header Layout reads.
    let mut header: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    let mut samples: Vec<Sample> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = csv
            .read_record(&mut record)
            .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let [time, vm, metric, text] = [0, 1, 2, 3].map(|i| record.get(i).unwrap_or("").trim());
        if samples.last().is_none_or(|s| s.time != time) {
            samples.push(Sample {
                time: time.to_string(),
                line,
                elapsed: None,
                values: Vec::new(),
            });
        }
        let Some(sample) = samples.last_mut() else {
            continue;
        };
        if vm.is_empty() && metric == "elapsed" {
            sample.elapsed = Some((text.to_string(), line));
            continue;
        }
        let name = if vm.is_empty() {
            metric.to_string()
        } else {
            format!("{vm}.{metric}")
        };
        let col = match index.get(&name) {
            Some(&c) => c,
            None => {
                index.insert(name.clone(), header.len());
                header.push(name.clone());
                header.len() - 1
            }
        };
        let needed = if vm.is_empty() {
            needed_host.contains(&metric)
        } else {
            VM_COLUMNS.contains(&metric)
        };
        if needed {
            sample
                .values
                .push((col, value(text, label, line, 4, &name)?));
        }
    }
    let layout = Layout::new(&header, label, false)?;
    // The host's elapsed is a metric of its own in this layout, kept apart from the columns.
    let has_elapsed = samples.iter().any(|s| s.elapsed.is_some());
    let mut builder = Builder::new(label, layout, has_elapsed);
    let mut row = vec![f64::NAN; header.len()];
    for s in &samples {
        row.iter_mut().for_each(|v| *v = f64::NAN);
        for &(c, v) in &s.values {
            row[c] = v;
        }
        let (elapsed, line) = match (&s.elapsed, has_elapsed) {
            (Some((text, line)), _) => (Some((text.as_str(), 4)), *line),
            (None, true) => bail!(
                "{label}:{}: the sample at time {} has no elapsed row",
                s.line,
                s.time
            ),
            (None, false) => (None, s.line),
        };
        let end = row_end(elapsed, (&s.time, 1), label, line)?;
        builder.push(&s.time, end, s.line, &mut |i| Ok(row[i]))?;
    }
    builder.finish()
}
