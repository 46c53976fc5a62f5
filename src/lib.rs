//! vmmon: monitor virtual machines from the outside.
//!
//! Record timestamped `/proc` traces on a host and inside its guests ([`record`]), keep them
//! as CSV with a JSON sidecar ([`trace`]), and analyse them. The binary `vmmon` is a thin
//! layer over [`cli`]; everything it does is reachable from Rust through these modules.

#![warn(missing_docs)]

pub mod align;
pub mod charge;
pub mod cli;
pub mod clock;
pub mod experiment;
pub mod export;
pub mod guest;
pub mod load;
pub mod net;
pub mod plot;
pub mod record;
pub mod sysid;
pub mod trace;
