//! `vmmon experiment`: the whole study with real guests. Boot guests under qemu, record the
//! host and every guest at the same time across a matrix of load scenarios
//! ([`scenario`], [`run`]), then align, correlate, fit, validate and reconstruct each
//! guest's CPU from the host's view, and write a report with its figures.

pub mod run;
pub mod scenario;

pub use run::{AccelChoice, Load, Options, RunInfo, Stopped};
pub use scenario::Scenario;
