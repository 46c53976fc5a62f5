//! Charging the host CPU spent on a VM's behalf to that VM (`vmmon charge`).
//!
//! Per interval of a host trace recorded with `vmmon record --vms`, each VM is charged its
//! own vCPU time, its emulator and vhost threads' time, and a share of the host's shared
//! pool (softirq time, ksoftirqd and kernel I/O threads), split in proportion to the I/O it
//! did: packets, bytes, disk bytes, a mix of them, or weights fitted by non-negative least
//! squares ([`calibrate`]). When no VM did the chosen I/O, the pool goes to an explicit
//! `(unattributed)` row, so that the charges of every interval add up to its pool.
//!
//! docs/charge.md has the method, the formulas and the limits.

pub mod calibrate;
pub mod input;
pub mod nnls;
pub mod output;
pub mod split;

use std::collections::BTreeMap;

use serde::Serialize;

pub use calibrate::{Calibration, FeatureFit, TermStatus};
pub use input::{HostTrace, VmSeries, read_trace};

/// Name of the row that receives the pool no VM's I/O explains.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// Name of the summary row that adds up every other row.
pub const TOTAL: &str = "total";

/// What the shared pool is split by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Packets through the VM's tap, received + sent.
    #[default]
    Packets,
    /// Bytes through the VM's tap, received + sent.
    Bytes,
    /// Bytes the VM's qemu process read and wrote on storage.
    Disk,
    /// Network and disk count equally; within the network, packets and bytes equally.
    Mixed,
}

/// One kind of I/O a VM causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    /// Network packets, received + sent.
    Packets,
    /// Network bytes, received + sent.
    Bytes,
    /// Disk bytes, read + written.
    Disk,
}

impl Feature {
    /// Every feature, in the order of the calibration's columns.
    pub const ALL: [Feature; 3] = [Feature::Packets, Feature::Bytes, Feature::Disk];

    /// Short name (`packets`, `bytes`, `disk`).
    pub fn name(self) -> &'static str {
        match self {
            Feature::Packets => "packets",
            Feature::Bytes => "bytes",
            Feature::Disk => "disk",
        }
    }

    /// The per-VM columns the feature adds up, for messages.
    pub fn columns(self) -> &'static str {
        match self {
            Feature::Packets => "<vm>.net_guest_rx_packets_per_s + <vm>.net_guest_tx_packets_per_s",
            Feature::Bytes => "<vm>.net_guest_rx_bytes_per_s + <vm>.net_guest_tx_bytes_per_s",
            Feature::Disk => "<vm>.disk_read_bytes_per_s + <vm>.disk_write_bytes_per_s",
        }
    }

    /// The two per-second series of `vm` the feature adds up.
    pub fn series(self, vm: &VmSeries) -> [&[f64]; 2] {
        match self {
            Feature::Packets => [&vm.rx_packets, &vm.tx_packets],
            Feature::Bytes => [&vm.rx_bytes, &vm.tx_bytes],
            Feature::Disk => [&vm.disk_read_bytes, &vm.disk_write_bytes],
        }
    }

    /// The VM's rate in interval `t` (per second); NaN if a cell is empty.
    pub fn rate(self, vm: &VmSeries, t: usize) -> f64 {
        let [a, b] = self.series(vm);
        a[t] + b[t]
    }

    /// Unit of a calibrated β.
    pub fn beta_unit(self) -> &'static str {
        match self {
            Feature::Packets => "CPU-s per packet",
            Feature::Bytes | Feature::Disk => "CPU-s per byte",
        }
    }

    /// Factor from β to the cost in [`Feature::cost_unit`].
    pub fn cost_per(self) -> f64 {
        match self {
            Feature::Packets => 1e3,
            Feature::Bytes | Feature::Disk => 1e6,
        }
    }

    /// Unit of a cost per 1000 packets or per MB.
    pub fn cost_unit(self) -> &'static str {
        match self {
            Feature::Packets => "CPU-s per 1000 packets",
            Feature::Bytes | Feature::Disk => "CPU-s per MB",
        }
    }
}

/// A part of the host's shared pool of I/O work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolPart {
    /// Softirq time from /proc/stat (`pool_softirq_cpu_pct`).
    Softirq,
    /// The ksoftirqd/N threads (`pool_ksoftirqd_cpu_pct`).
    Ksoftirqd,
    /// Kernel I/O threads: kworker, jbd2 (`pool_iothreads_cpu_pct`).
    Iothreads,
}

impl PoolPart {
    /// Every part, in column order.
    pub const ALL: [PoolPart; 3] = [PoolPart::Softirq, PoolPart::Ksoftirqd, PoolPart::Iothreads];

    /// The host column holding this part, percent of one CPU.
    pub fn column(self) -> &'static str {
        match self {
            PoolPart::Softirq => "pool_softirq_cpu_pct",
            PoolPart::Ksoftirqd => "pool_ksoftirqd_cpu_pct",
            PoolPart::Iothreads => "pool_iothreads_cpu_pct",
        }
    }

    /// Short name (`softirq`, `ksoftirqd`, `iothreads`).
    pub fn name(self) -> &'static str {
        match self {
            PoolPart::Softirq => "softirq",
            PoolPart::Ksoftirqd => "ksoftirqd",
            PoolPart::Iothreads => "iothreads",
        }
    }
}

/// How to charge.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// What the pool is split by (ignored with `calibrate`).
    pub by: By,
    /// Pool parts to add up; empty: every part the trace has.
    pub pool: Vec<PoolPart>,
    /// Split by weights fitted by non-negative least squares instead of `by`.
    pub calibrate: bool,
}

/// One VM's charge in one interval, in CPU-seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VmCharge {
    /// vCPU threads (`None`: the cell was empty, nothing charged for it).
    pub vcpu_s: Option<f64>,
    /// Emulator threads (`None`: unknown).
    pub emulator_s: Option<f64>,
    /// vhost threads (`None`: unknown).
    pub vhost_s: Option<f64>,
    /// The VM's part of the shared pool.
    pub shared_s: f64,
    /// The VM's fraction of the interval's pool (how a pool would be split when it is 0).
    pub share: f64,
}

impl VmCharge {
    /// Everything charged: the known own-CPU parts plus the shared part.
    pub fn charged_s(&self) -> f64 {
        self.vcpu_s.unwrap_or(0.0)
            + self.emulator_s.unwrap_or(0.0)
            + self.vhost_s.unwrap_or(0.0)
            + self.shared_s
    }

    /// What the VM's I/O cost outside its vCPUs: emulator + vhost + shared.
    pub fn overhead_s(&self) -> f64 {
        self.emulator_s.unwrap_or(0.0) + self.vhost_s.unwrap_or(0.0) + self.shared_s
    }
}

/// One interval's charges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    /// The row's `time` cell (the interval ends then).
    pub time: String,
    /// Length, seconds.
    pub dt: f64,
    /// The shared pool, CPU-seconds (the known parts).
    pub pool_s: f64,
    /// One charge per VM, in the order of [`Report::vms`].
    pub vms: Vec<VmCharge>,
    /// The pool left to `(unattributed)`, CPU-seconds.
    pub unattributed_s: f64,
    /// Its fraction of the pool.
    pub unattributed_share: f64,
}

/// Totals of one row of the summary (a VM, `(unattributed)` or `total`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// VM name, `(unattributed)` or `total`.
    pub vm: String,
    /// vCPU CPU-seconds.
    pub vcpu_cpu_s: f64,
    /// Emulator CPU-seconds.
    pub emulator_cpu_s: f64,
    /// vhost CPU-seconds.
    pub vhost_cpu_s: f64,
    /// Shared-pool CPU-seconds.
    pub shared_cpu_s: f64,
    /// All charged CPU-seconds.
    pub charged_cpu_s: f64,
    /// Charged ÷ the host's busy CPU-seconds, percent (`None` without `busy_cpu_pct`).
    pub busy_share_pct: Option<f64>,
    /// Network bytes moved (rx + tx), MB (10⁶ bytes).
    pub net_mb: Option<f64>,
    /// Disk bytes moved (read + write), MB.
    pub disk_mb: Option<f64>,
    /// Network + disk, MB.
    pub mb_moved: Option<f64>,
    /// Network packets (rx + tx).
    pub packets: Option<f64>,
    /// Emulator + vhost + shared CPU-seconds: what the VM cost outside its vCPUs.
    pub overhead_cpu_s: f64,
    /// Overhead per MB moved (`None` when nothing moved).
    pub overhead_cpu_s_per_mb: Option<f64>,
    /// Overhead per 1000 packets (`None` without packets).
    pub overhead_cpu_s_per_1000_packets: Option<f64>,
    /// Empty cells among the row's input columns.
    pub empty_cells: u64,
}

/// Everything `vmmon charge` computes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The trace's name.
    pub input: String,
    /// `packets`, `bytes`, `disk`, `mixed` or `calibrated`.
    pub method: String,
    /// Pool parts added up.
    pub pool_parts: Vec<PoolPart>,
    /// VM names, in column order.
    pub vms: Vec<String>,
    /// Intervals charged.
    pub intervals: usize,
    /// Sum of the interval lengths, seconds.
    pub duration_s: f64,
    /// The host's busy CPU-seconds over known cells (`None` without `busy_cpu_pct`).
    pub busy_cpu_s: Option<f64>,
    /// The pool's CPU-seconds.
    pub pool_cpu_s: f64,
    /// CPU-seconds of each pool part.
    pub pool_parts_cpu_s: BTreeMap<&'static str, f64>,
    /// One row per VM, then `(unattributed)` and `total`.
    pub summary: Vec<Totals>,
    /// The fit, with `--calibrate`.
    pub calibration: Option<Calibration>,
    /// Empty cells per input column (only columns with some).
    pub empty_cells: BTreeMap<String, u64>,
    /// Things the user should know: how the trace was read, how empty cells were handled.
    pub notes: Vec<String>,
    /// Per-interval charges (the long CSV; not in the JSON).
    #[serde(skip)]
    pub rows: Vec<Interval>,
}

/// Whether `v` is known (not NaN), as an `Option`.
fn known(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Charges every interval of `trace` per `opts`.
///
/// Empty cells: an empty own-CPU cell charges nothing for that part; an empty I/O cell
/// counts as 0; an empty pool cell counts as 0 in the pool. Each is counted in
/// [`Report::empty_cells`] and summed up in a note. A trace built in memory is checked first
/// ([`HostTrace::check`]).
pub fn charge(trace: &HostTrace, opts: &Options) -> anyhow::Result<Report> {
    trace.check()?;
    let label = &trace.label;
    let parts: Vec<usize> = if opts.pool.is_empty() {
        (0..trace.pool.len()).collect()
    } else {
        let mut idx = Vec::new();
        for want in &opts.pool {
            match trace.pool.iter().position(|(p, _)| p == want) {
                Some(i) if !idx.contains(&i) => idx.push(i),
                Some(_) => {}
                None => {
                    return Err(anyhow::Error::new(crate::record::UsageError(format!(
                        "{label} has no column {} for --pool {}; it has: {}",
                        want.column(),
                        want.name(),
                        trace
                            .pool
                            .iter()
                            .map(|(p, _)| p.column())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))));
                }
            }
        }
        idx
    };
    if parts.is_empty() {
        return Err(anyhow::Error::new(crate::record::UsageError(format!(
            "{label} has no pool columns"
        ))));
    }
    let calibration = if opts.calibrate {
        Some(calibrate::calibrate(trace, &parts)?)
    } else {
        None
    };
    let nvm = trace.vms.len();
    let mut rows = Vec::with_capacity(trace.len());
    for t in 0..trace.len() {
        let dt = trace.dt[t];
        let pool_s: f64 = parts
            .iter()
            .filter_map(|&p| known(trace.pool[p].1[t]))
            .sum::<f64>()
            / 100.0
            * dt;
        // Each VM's amount of each feature (rate × dt), empty cells as 0.
        let amount = |f: Feature| -> Vec<f64> {
            trace
                .vms
                .iter()
                .map(|vm| {
                    let [a, b] = f.series(vm);
                    (known(a[t]).unwrap_or(0.0) + known(b[t]).unwrap_or(0.0)) * dt
                })
                .collect()
        };
        let (shares, base) = match &calibration {
            Some(c) => {
                let mut w = vec![0.0; nvm];
                for f in Feature::ALL {
                    let beta = c.beta(f);
                    if beta > 0.0 {
                        for (wi, a) in w.iter_mut().zip(amount(f)) {
                            *wi += beta * a;
                        }
                    }
                }
                (split::proportional(&w), c.base_cpu_s_per_s * dt)
            }
            None => {
                let s = match opts.by {
                    By::Packets => split::proportional(&amount(Feature::Packets)),
                    By::Bytes => split::proportional(&amount(Feature::Bytes)),
                    By::Disk => split::proportional(&amount(Feature::Disk)),
                    By::Mixed => split::mixed(
                        &amount(Feature::Packets),
                        &amount(Feature::Bytes),
                        &amount(Feature::Disk),
                    ),
                };
                (s, 0.0)
            }
        };
        let (fractions, unattributed) = split::fractions(pool_s, base, shares.as_deref(), nvm);
        let vms = trace
            .vms
            .iter()
            .zip(&fractions)
            .map(|(vm, &f)| VmCharge {
                vcpu_s: known(vm.vcpu_pct[t]).map(|v| v / 100.0 * dt),
                emulator_s: known(vm.emulator_pct[t]).map(|v| v / 100.0 * dt),
                vhost_s: known(vm.vhost_pct[t]).map(|v| v / 100.0 * dt),
                shared_s: f * pool_s,
                share: f,
            })
            .collect();
        rows.push(Interval {
            time: trace.time[t].clone(),
            dt,
            pool_s,
            vms,
            unattributed_s: unattributed * pool_s,
            unattributed_share: unattributed,
        });
    }
    Ok(summarise(trace, opts, &parts, calibration, rows))
}

/// Adds up the intervals into the report's summary rows, and counts the empty cells.
fn summarise(
    trace: &HostTrace,
    opts: &Options,
    parts: &[usize],
    calibration: Option<Calibration>,
    rows: Vec<Interval>,
) -> Report {
    let mut empty_cells = BTreeMap::new();
    let mut count = |name: String, col: &[f64]| -> u64 {
        let n = col.iter().filter(|v| v.is_nan()).count() as u64;
        if n > 0 {
            empty_cells.insert(name, n);
        }
        n
    };
    let busy_cpu_s = trace.busy_pct.as_ref().map(|b| {
        count(input::BUSY_COLUMN.to_string(), b);
        b.iter()
            .zip(&trace.dt)
            .filter_map(|(v, dt)| known(*v).map(|v| v / 100.0 * dt))
            .sum::<f64>()
    });
    let mut pool_parts_cpu_s = BTreeMap::new();
    let mut pool_empty = 0;
    for &p in parts {
        let (part, col) = &trace.pool[p];
        pool_empty += count(part.column().to_string(), col);
        let s: f64 = col
            .iter()
            .zip(&trace.dt)
            .filter_map(|(v, dt)| known(*v).map(|v| v / 100.0 * dt))
            .sum();
        pool_parts_cpu_s.insert(part.name(), s);
    }
    let busy_share = |charged: f64| busy_cpu_s.map(|b| charged / b * 100.0);
    let per = |x: f64, n: Option<f64>| n.filter(|n| *n > 0.0).map(|n| x / n);
    let mut summary = Vec::with_capacity(trace.vms.len() + 2);
    let (mut own_empty, mut io_empty) = (0u64, 0u64);
    for (i, vm) in trace.vms.iter().enumerate() {
        let mut empty = 0;
        for (k, (metric, col)) in input::VM_COLUMNS.iter().zip(vm.columns()).enumerate() {
            let n = count(format!("{}.{metric}", vm.name), col);
            empty += n;
            if k < 3 {
                own_empty += n;
            } else {
                io_empty += n;
            }
        }
        let sum = |f: fn(&VmCharge) -> f64| rows.iter().map(|r| f(&r.vms[i])).sum::<f64>();
        let moved = |f: Feature| -> f64 {
            let [a, b] = f.series(vm);
            (0..trace.len())
                .map(|t| (known(a[t]).unwrap_or(0.0) + known(b[t]).unwrap_or(0.0)) * trace.dt[t])
                .sum()
        };
        let (net_mb, disk_mb) = (moved(Feature::Bytes) / 1e6, moved(Feature::Disk) / 1e6);
        let packets = moved(Feature::Packets);
        let charged = sum(VmCharge::charged_s);
        let overhead = sum(VmCharge::overhead_s);
        summary.push(Totals {
            vm: vm.name.clone(),
            vcpu_cpu_s: sum(|c| c.vcpu_s.unwrap_or(0.0)),
            emulator_cpu_s: sum(|c| c.emulator_s.unwrap_or(0.0)),
            vhost_cpu_s: sum(|c| c.vhost_s.unwrap_or(0.0)),
            shared_cpu_s: sum(|c| c.shared_s),
            charged_cpu_s: charged,
            busy_share_pct: busy_share(charged),
            net_mb: Some(net_mb),
            disk_mb: Some(disk_mb),
            mb_moved: Some(net_mb + disk_mb),
            packets: Some(packets),
            overhead_cpu_s: overhead,
            overhead_cpu_s_per_mb: per(overhead, Some(net_mb + disk_mb)),
            overhead_cpu_s_per_1000_packets: per(overhead, Some(packets / 1e3)),
            empty_cells: empty,
        });
    }
    let unattributed: f64 = rows.iter().map(|r| r.unattributed_s).sum();
    summary.push(Totals {
        vm: UNATTRIBUTED.to_string(),
        vcpu_cpu_s: 0.0,
        emulator_cpu_s: 0.0,
        vhost_cpu_s: 0.0,
        shared_cpu_s: unattributed,
        charged_cpu_s: unattributed,
        busy_share_pct: busy_share(unattributed),
        net_mb: None,
        disk_mb: None,
        mb_moved: None,
        packets: None,
        overhead_cpu_s: unattributed,
        overhead_cpu_s_per_mb: None,
        overhead_cpu_s_per_1000_packets: None,
        empty_cells: pool_empty,
    });
    let add = |f: fn(&Totals) -> f64| summary.iter().map(f).sum::<f64>();
    let add_opt = |f: fn(&Totals) -> Option<f64>| summary.iter().filter_map(f).sum::<f64>();
    let (net, disk, packets) = (
        add_opt(|s| s.net_mb),
        add_opt(|s| s.disk_mb),
        add_opt(|s| s.packets),
    );
    let charged = add(|s| s.charged_cpu_s);
    let overhead = add(|s| s.overhead_cpu_s);
    let total = Totals {
        vm: TOTAL.to_string(),
        vcpu_cpu_s: add(|s| s.vcpu_cpu_s),
        emulator_cpu_s: add(|s| s.emulator_cpu_s),
        vhost_cpu_s: add(|s| s.vhost_cpu_s),
        shared_cpu_s: add(|s| s.shared_cpu_s),
        charged_cpu_s: charged,
        busy_share_pct: busy_share(charged),
        net_mb: Some(net),
        disk_mb: Some(disk),
        mb_moved: Some(net + disk),
        packets: Some(packets),
        overhead_cpu_s: overhead,
        overhead_cpu_s_per_mb: per(overhead, Some(net + disk)),
        overhead_cpu_s_per_1000_packets: per(overhead, Some(packets / 1e3)),
        empty_cells: add(|s| s.empty_cells as f64) as u64,
    };
    summary.push(total);

    let mut notes = trace.notes.clone();
    if own_empty > 0 {
        notes.push(format!(
            "{own_empty} empty vCPU/emulator/vhost cell(s): nothing charged for those parts"
        ));
    }
    if io_empty > 0 {
        notes.push(format!(
            "{io_empty} empty I/O cell(s) counted as 0{}",
            if calibration.is_some() {
                " (and their intervals left out of the fit)"
            } else {
                ""
            }
        ));
    }
    if pool_empty > 0 {
        notes.push(format!("{pool_empty} empty pool cell(s) counted as 0"));
    }
    if trace.busy_pct.is_none() {
        notes.push(format!(
            "no {} column: shares of the host's busy time are left empty",
            input::BUSY_COLUMN
        ));
    }
    if let Some(c) = &calibration
        && !c.dropped.is_empty()
    {
        notes.push(format!(
            "calibration: no {} I/O in the intervals used; left out of the fit",
            c.dropped.join(", ")
        ));
    }
    let pool_cpu_s = rows.iter().map(|r| r.pool_s).sum();
    Report {
        input: trace.label.clone(),
        method: match (&calibration, opts.by) {
            (Some(_), _) => "calibrated".to_string(),
            (None, By::Packets) => "packets".to_string(),
            (None, By::Bytes) => "bytes".to_string(),
            (None, By::Disk) => "disk".to_string(),
            (None, By::Mixed) => "mixed".to_string(),
        },
        pool_parts: parts.iter().map(|&p| trace.pool[p].0).collect(),
        vms: trace.vms.iter().map(|v| v.name.clone()).collect(),
        intervals: rows.len(),
        duration_s: trace.dt.iter().sum(),
        busy_cpu_s,
        pool_cpu_s,
        pool_parts_cpu_s,
        summary,
        calibration,
        empty_cells,
        notes,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_trace_in_memory_is_refused_not_a_panic() {
        let mut trace = HostTrace {
            label: "mem".into(),
            time: vec!["1".into(), "2".into()],
            dt: vec![1.0, 1.0],
            vms: vec![VmSeries::zeros("a", 2)],
            pool: vec![(PoolPart::Softirq, vec![1.0, 2.0])],
            ..HostTrace::default()
        };
        assert!(charge(&trace, &Options::default()).is_ok());
        trace.vms[0].rx_packets.pop();
        let e = charge(&trace, &Options::default()).expect_err("short series");
        assert_eq!(
            e.to_string(),
            "mem: a.net_guest_rx_packets_per_s has 1 values for 2 intervals"
        );
        trace.vms[0].rx_packets.push(-1.0);
        let e = charge(&trace, &Options::default()).expect_err("negative");
        assert_eq!(
            e.to_string(),
            "mem: a.net_guest_rx_packets_per_s is -1 in interval 1"
        );
        trace.vms[0].rx_packets[1] = 0.0;
        trace.dt[0] = 0.0;
        let e = charge(&trace, &Options::default()).expect_err("zero interval");
        assert_eq!(e.to_string(), "mem: interval 0 has length 0");
    }
}
