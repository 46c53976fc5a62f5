//! Workloads: CPU load that follows a played-back load trace or an identification input.
//!
//! A load trace records a machine's load average z; [`filter`] turns it back into the
//! run-queue length x that produced it (Dinda & O'Hallaron, "Realistic CPU workloads through
//! host load trace playback", LCR 2000). [`pattern`] gives x for synthetic inputs (PRBS,
//! steps, square and sine waves, constant). [`engine`] runs x as busy worker threads; [`io`]
//! runs it as a disk or network byte rate.

pub mod engine;
pub mod filter;
pub mod io;
pub mod pattern;
pub mod trace;

pub use engine::{IntervalLog, LoadConfig, LoadSummary, Mode, run};
pub use pattern::{Pattern, Prbs};
