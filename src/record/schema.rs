//! The columns of a recording and how each is derived from raw samples.
//!
//! Sources allocate slots for the raw values they read and declare their columns here once;
//! the builder keeps either the derived (rate/percentage) form or, with `--raw`, the kernel's
//! cumulative counters. Derivation is a pure function of two samples, so it is tested without
//! a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::sources::Values;
pub use crate::trace::Kind;

/// How a column's cell is computed from the previous and the current sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Derive {
    /// The gauge slot's current value.
    Gauge {
        /// Gauge slot.
        slot: usize,
    },
    /// The counter slot's current value.
    Total {
        /// Counter slot.
        slot: usize,
    },
    /// `(Δslot − Δminus) × scale / Δt`, at most `cap`; empty if a counter went backwards.
    Rate {
        /// Counter slot.
        slot: usize,
        /// Counter slot whose delta is subtracted (clamped at 0).
        minus: Option<usize>,
        /// Unit conversion applied to the delta (512 for sectors to bytes).
        scale: f64,
        /// Largest value the rate may take.
        cap: Option<f64>,
    },
    /// One CPU time field as % of the group's total ticks in the interval.
    CpuPct {
        /// Counter slot of the group's first field (`user`).
        base: usize,
        /// Index of the field in [`crate::record::sources::CPU_FIELDS`].
        field: usize,
        /// How many fields this kernel reports.
        nfields: usize,
    },
}

/// One output column.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// Header name (snake_case with unit).
    pub name: String,
    /// Gauge, interval rate, or cumulative total.
    pub kind: Kind,
    /// Unit of the values.
    pub unit: String,
    /// Derivation from raw samples.
    #[serde(skip)]
    pub derive: Derive,
}

/// A sample: raw values and when they were read.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Monotonic time since the recording started.
    pub mono: Duration,
    /// Wall-clock time since the Unix epoch.
    pub wall: Duration,
    /// The raw values.
    pub values: Values,
}

/// One computed cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// No valid value (counter went backwards, device gone, no time elapsed).
    Empty,
    /// An exact integer (raw counters).
    Int(u64),
    /// A measured or derived number.
    Num(f64),
}

/// Declares slots and columns; see the module docs.
#[derive(Debug)]
pub struct SchemaBuilder {
    raw: bool,
    counters: usize,
    gauges: usize,
    columns: Vec<Column>,
    devices: BTreeMap<String, Vec<String>>,
    cpus: usize,
}

impl SchemaBuilder {
    /// A builder for the derived (`raw == false`) or the raw-counter schema.
    pub fn new(raw: bool) -> Self {
        SchemaBuilder {
            raw,
            counters: 0,
            gauges: 0,
            columns: Vec::new(),
            devices: BTreeMap::new(),
            cpus: 0,
        }
    }

    /// Whether this is the raw-counter schema.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Number of counter slots allocated so far (the index the next one gets).
    pub fn counters_len(&self) -> usize {
        self.counters
    }

    /// Allocates a counter slot.
    pub fn counter(&mut self) -> usize {
        self.counters += 1;
        self.counters - 1
    }

    /// Allocates a gauge slot.
    pub fn gauge(&mut self) -> usize {
        self.gauges += 1;
        self.gauges - 1
    }

    /// A gauge column (the same in both schemas).
    pub fn gauge_column(&mut self, name: &str, unit: &str, slot: usize) {
        self.push(name.to_string(), Kind::Gauge, unit, Derive::Gauge { slot });
    }

    /// A counter: `{raw_stem}_total` in raw mode, else `rate_name` = Δ × scale / Δt.
    pub fn counter_column(
        &mut self,
        raw_stem: &str,
        raw_unit: &str,
        slot: usize,
        scale: f64,
        rate_name: &str,
        rate_unit: &str,
    ) {
        let derive = Derive::Rate {
            slot,
            minus: None,
            scale,
            cap: None,
        };
        self.column_pair(
            rate_name.to_string(),
            Kind::Rate,
            rate_unit,
            derive,
            raw_stem.to_string(),
            raw_unit,
            slot,
        );
    }

    /// A column with an explicit derivation, or `{raw_stem}_total` of `raw_slot` in raw mode.
    #[allow(clippy::too_many_arguments)]
    pub fn column_pair(
        &mut self,
        name: String,
        kind: Kind,
        unit: &str,
        derive: Derive,
        raw_stem: String,
        raw_unit: &str,
        raw_slot: usize,
    ) {
        if self.raw {
            let name = format!("{raw_stem}_total");
            self.push(
                name,
                Kind::Total,
                raw_unit,
                Derive::Total { slot: raw_slot },
            );
        } else {
            self.push(name, kind, unit, derive);
        }
    }

    /// Records how many CPUs the kernel lists (for the metadata).
    pub fn cpus(&mut self, n: usize) {
        self.cpus = n;
    }

    /// Records the device names of one kind (for the metadata).
    pub fn devices(&mut self, kind: &str, names: &[String]) {
        self.devices.insert(kind.to_string(), names.to_vec());
    }

    fn push(&mut self, name: String, kind: Kind, unit: &str, derive: Derive) {
        self.columns.push(Column {
            name,
            kind,
            unit: unit.to_string(),
            derive,
        });
    }

    /// The finished schema.
    pub fn finish(self) -> Schema {
        Schema {
            raw: self.raw,
            counters: self.counters,
            gauges: self.gauges,
            columns: self.columns,
            devices: self.devices,
            cpus: self.cpus,
        }
    }
}

/// The columns of a recording and the slot layout of its samples.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Raw-counter schema (rows from the first sample on) or derived (from the second).
    pub raw: bool,
    counters: usize,
    gauges: usize,
    /// Data columns, in output order (after `time` and `elapsed`).
    pub columns: Vec<Column>,
    /// Recorded devices by kind (`disks`, `interfaces`).
    pub devices: BTreeMap<String, Vec<String>>,
    /// CPUs listed in `/proc/stat` at the start.
    pub cpus: usize,
}

impl Schema {
    /// An empty sample with every slot of this schema.
    pub fn new_sample(&self) -> Sample {
        Sample {
            mono: Duration::ZERO,
            wall: Duration::ZERO,
            values: Values {
                counters: vec![None; self.counters],
                gauges: vec![None; self.gauges],
            },
        }
    }

    /// Computes the cells of the row ending at `cur` (`prev` is ignored for gauges and totals).
    pub fn derive(&self, prev: &Sample, cur: &Sample, out: &mut Vec<Cell>) {
        out.clear();
        let dt = cur.mono.saturating_sub(prev.mono).as_secs_f64();
        let delta = |slot: usize| -> Option<u64> {
            let (c, p) = (cur.values.counters[slot]?, prev.values.counters[slot]?);
            c.checked_sub(p)
        };
        for col in &self.columns {
            let cell = match col.derive {
                Derive::Gauge { slot } => cur.values.gauges[slot].map_or(Cell::Empty, Cell::Num),
                Derive::Total { slot } => cur.values.counters[slot].map_or(Cell::Empty, Cell::Int),
                Derive::Rate {
                    slot,
                    minus,
                    scale,
                    cap,
                } => {
                    let d = match minus {
                        None => delta(slot),
                        // A difference of two counters read at slightly different instants
                        // can dip below zero by a count or two: clamp, as sar does.
                        Some(m) => delta(slot).zip(delta(m)).map(|(a, b)| a.saturating_sub(b)),
                    };
                    match d {
                        Some(d) if dt > 0.0 => {
                            let v = d as f64 * scale / dt;
                            Cell::Num(cap.map_or(v, |c| v.min(c)))
                        }
                        _ => Cell::Empty,
                    }
                }
                Derive::CpuPct {
                    base,
                    field,
                    nfields,
                } => cpu_pct(&delta, base, field, nfields),
            };
            out.push(cell);
        }
    }
}

/// `field` of the CPU group at `base` as % of the group's busy+idle ticks; user and nice
/// exclude the guest time the kernel also counts in them.
fn cpu_pct(delta: &impl Fn(usize) -> Option<u64>, base: usize, field: usize, n: usize) -> Cell {
    // The first 8 fields make up the busy+idle total; guest time is already inside user and
    // nice, so it is subtracted from them rather than added to the total.
    const GUEST: usize = 8;
    const GUEST_NICE: usize = 9;
    // A field that went backwards (iowait may, on NO_HZ kernels) leaves the total unknown:
    // dropping it would inflate every other share, so the whole group is empty.
    let Some(total) = (0..n.min(GUEST))
        .map(|f| delta(base + f))
        .sum::<Option<u64>>()
    else {
        return Cell::Empty;
    };
    if total == 0 {
        return Cell::Empty;
    }
    let own = match field {
        0 if n > GUEST => delta(base)
            .zip(delta(base + GUEST))
            .map(|(u, g)| u.saturating_sub(g)),
        1 if n > GUEST_NICE => delta(base + 1)
            .zip(delta(base + GUEST_NICE))
            .map(|(u, g)| u.saturating_sub(g)),
        _ => delta(base + field),
    };
    own.map_or(Cell::Empty, |v| Cell::Num(100.0 * v as f64 / total as f64))
}
