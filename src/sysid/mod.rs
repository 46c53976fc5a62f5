//! System identification on traces: statistics, correlation analysis, impulse responses.
//!
//! Nothing here knows about `/proc` or files: functions take evenly sampled series (`&[f64]`)
//! prepared by [`crate::trace::read`] and return plain results that the CLI prints.

pub mod arx;
pub mod batch;
pub mod impulse;
pub mod lsq;
pub mod order;
pub mod stats;
pub mod xcorr;
