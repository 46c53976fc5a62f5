//! Measurements among the hosts of a virtual LAN, for an adaptive overlay: see docs/network.md.

pub mod probe;
