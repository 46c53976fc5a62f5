//! One integration-test binary (one link step), a module per area.

mod util;

mod align;
mod analysis;
mod arx;
mod batch;
mod charge;
mod cli;
mod clock;
mod experiment_analysis;
mod fixtures;
mod guest;
mod import;
mod load;
mod netns;
mod network;
mod plot;
mod probe;
mod sar;
mod serve;
mod traffic;
mod vms;
// Shared with the quiet tests, which use all of it.
#[allow(dead_code)]
mod util_guest;
// The network testbed; the netns tests use part of it, the probe tests the rest.
#[allow(dead_code)]
mod util_netns;
