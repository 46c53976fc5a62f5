//! Networks among VMs: the traffic matrix counted from packets ([`traffic`]) and the
//! communication topology inferred from it ([`topo`]).

pub mod topo;
pub mod traffic;
