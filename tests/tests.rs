//! One integration-test binary (one link step), a module per area.

mod util;

mod align;
mod analysis;
mod arx;
mod charge;
mod cli;
mod clock;
mod fixtures;
mod load;
mod sar;
mod vms;
