//! Tests that measure CPU time and the load average. They are a test binary of their own
//! because cargo runs test binaries one after another: these then run while no other test
//! does, on a machine doing nothing else, and take turns among themselves (`util::heavy`).

#![allow(dead_code)]

mod util;

mod quiet_experiment;
mod quiet_guest;
mod quiet_load;
mod util_guest;
