//! `vmmon experiment`: the whole study with real guests, from recording to report.
//!
//! [`run`] boots guests under qemu and records the host and every guest at the same time
//! across the matrix of load scenarios ([`scenario`]), into a run folder: one sub-folder per
//! scenario with the host's and each guest's traces. [`analysis`] then runs, per scenario
//! and guest, the same `vmmon` commands a user would type: align, xcorr, impulse, order or
//! fit, validate, reconstruct and plot. [`report`] turns the results into `report.md`,
//! `summary.csv` and `summary.json` by pure functions.

pub mod analysis;
pub mod folder;
pub mod report;
pub mod run;
pub mod scenario;

pub use run::Stopped;
pub use scenario::Scenario;
