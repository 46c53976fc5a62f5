//! Shared helpers for the integration tests: temp dirs, the binary, and the policy for tests
//! that need an external program (skip locally with a reason, fail under CI).

use std::path::PathBuf;
use std::process::Command;

/// Path of the `vmmon` binary built for these tests.
pub fn vmmon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vmmon"))
}

/// A `vmmon` command ready for arguments.
pub fn vmmon() -> Command {
    Command::new(vmmon_bin())
}

/// True when the tests must not skip for a missing external program (set by `.ci/run`).
pub fn external_required() -> bool {
    std::env::var("VMMON_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1")
}

/// Whether `program` is on PATH. When it is missing the test should return early: this prints
/// the reason, or panics when `VMMON_REQUIRE_EXTERNAL=1` so that CI never silently skips.
pub fn require(program: &str, why: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !found {
        if external_required() {
            panic!("{program} is required ({why}) but is not installed; VMMON_REQUIRE_EXTERNAL=1");
        }
        eprintln!("SKIPPED: {program} not found ({why}); install it or run .ci/run");
    }
    found
}

/// Skip (or fail under CI) when not running as root, for tests that mount or use namespaces.
pub fn require_root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if external_required() {
            panic!("root is required ({why}); VMMON_REQUIRE_EXTERNAL=1");
        }
        eprintln!("SKIPPED: not root ({why})");
    }
    root
}
