//! The run folder: its file names and the JSON that describes the run and each scenario.
//! [`super::run`] writes them and [`super::analysis`] reads them, through these definitions
//! alone. Every field is optional on reading, so a partial folder (a run stopped early, or
//! one written by hand) still gives a report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The files of a run folder and of each scenario folder (one definition for the analysis,
/// the report and the docs).
pub mod files {
    /// Run facts, in the run folder.
    pub const EXPERIMENT: &str = "experiment.json";
    /// The scenario's description, in its folder.
    pub const SCENARIO: &str = "scenario.json";
    /// The host's trace.
    pub const HOST: &str = "host.csv";
    /// The aligned trace.
    pub const ALIGNED: &str = "aligned.csv";
    /// Every command's output, in the scenario folder.
    pub const LOG: &str = "analysis.log";
    /// The report, in the run folder.
    pub const REPORT: &str = "report.md";
    /// The summary table as CSV.
    pub const SUMMARY_CSV: &str = "summary.csv";
    /// The summary table as JSON.
    pub const SUMMARY_JSON: &str = "summary.json";
    /// The host-only figure.
    pub const TRACE_SVG: &str = "trace.svg";
}

/// `experiment.json`: facts of the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// Version of the vmmon that recorded.
    pub vmmon_version: Option<String>,
    /// Sampling rate of every recorder, Hz.
    pub rate_hz: Option<f64>,
    /// Length of each scenario's load, seconds.
    pub duration_s: Option<f64>,
    /// Recording before the load, seconds.
    pub warmup_s: Option<f64>,
    /// qemu's accelerator (`kvm`, `tcg`; `none` when no scenario boots a guest).
    pub accel: Option<String>,
    /// Why that accelerator (the KVM probe's result).
    pub accel_note: Option<String>,
    /// CPUs of the host.
    pub host_cpus: Option<u32>,
    /// The host's kernel release.
    pub host_kernel: Option<String>,
    /// The guests' kernel release.
    pub guest_kernel: Option<String>,
    /// Guest memory, MiB.
    pub guest_memory_mib: Option<u32>,
    /// The load, in words.
    pub load: Option<String>,
    /// When the run started (RFC 3339).
    pub started: Option<String>,
    /// Scenario folders recorded, in order.
    pub scenarios: Vec<String>,
    /// Scenarios whose recording failed, with why (their folders hold what was recorded).
    pub failed: BTreeMap<String, String>,
}

/// `SCENARIO/scenario.json`, written once the scenario has been recorded whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioInfo {
    /// Folder name.
    pub name: String,
    /// One line for people.
    pub title: String,
    /// Guests running (`vm1`, `vm2`); empty for host-only scenarios.
    pub guests: Vec<String>,
    /// Load run on the host, if any.
    pub host_load: Option<String>,
    /// Load run in each loaded guest.
    pub guest_load: BTreeMap<String, String>,
    /// Sampling rate, Hz.
    pub rate_hz: Option<f64>,
    /// Length of the load, seconds.
    pub duration_s: Option<f64>,
    /// When the host's recorder started, Unix seconds (host clock).
    pub start: Option<f64>,
    /// When it stopped.
    pub end: Option<f64>,
    /// Per guest: seconds from qemu's start to the guest's user space.
    pub boot_s: BTreeMap<String, f64>,
    /// Per guest: bytes of rows streamed over virtio-serial.
    pub streamed_bytes: BTreeMap<String, u64>,
}
