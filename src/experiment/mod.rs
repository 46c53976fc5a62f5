//! `vmmon experiment`: the reference experiment of issue #10, from recording to report.
//!
//! [`analysis`] takes a run folder (one sub-folder per scenario with the host's and each
//! guest's traces) and runs, per scenario and guest, the same `vmmon` commands a user would
//! type: align, xcorr, impulse, order or fit, validate, reconstruct and plot. [`report`] turns
//! the results into `report.md`, `summary.csv` and `summary.json` by pure functions.

pub mod analysis;
pub mod report;
