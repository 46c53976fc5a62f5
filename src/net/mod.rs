//! Networks among VMs: latency and bandwidth measured between hosts ([`probe`]), the traffic
//! matrix counted from packets ([`traffic`]) and the communication topology inferred from it
//! ([`topo`]). See docs/network.md.

pub mod probe;
pub mod topo;
pub mod traffic;
