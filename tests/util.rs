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

/// The splitmix64 output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic standard normal samples: splitmix64 and Box–Muller.
///
/// The seed goes through the mixer before it sets the stream's position. Nearby seeds used
/// directly give overlapping streams (seed 2's stream is seed 1's one draw on), and xorshift
/// seeded with nearby integers gives correlated early draws. Both broke the statistical
/// tests' independence once, so the seed is mixed first.
pub fn gaussian(seed: u64, n: usize) -> Vec<f64> {
    let mut s = mix(seed ^ 0x5851_F42D_4C95_7F2D);
    let mut uniform = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        ((mix(s) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos())
        .collect()
}

/// Serialises the sysstat comparison with the tests that load the machine (recorders at
/// hundreds of Hz, a disk filled): sysstat only judges intervals where its load is steady.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it must not fail the others too.
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `text` to `name` in `dir` and returns the path as a string (for command lines).
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write test file");
    p.to_str().expect("utf-8 temp path").to_string()
}

/// A child process (and its process group, e.g. faketime and the program it runs) that is
/// killed if the test ends early, so a failed assertion leaves nothing running.
pub struct Guard(pub Option<std::process::Child>);

impl Guard {
    /// Spawns `cmd` in a process group of its own.
    pub fn spawn(cmd: &mut Command) -> Guard {
        use std::os::unix::process::CommandExt;
        Guard(Some(cmd.process_group(0).spawn().expect("spawn")))
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Sends `signal` to the whole group and returns the child for waiting.
    pub fn signal(mut self, signal: i32) -> std::process::Child {
        let child = self.0.take().expect("child");
        // SAFETY: kill has no memory-safety preconditions; the group is the child's own.
        unsafe { libc::kill(-(child.id() as i32), signal) };
        child
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: as above.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

/// A vmmon server (`clock serve`, `probe serve`) started on `127.0.0.1:0`, with the port it
/// reports on the first line of its stderr.
pub struct Server {
    /// The server process (its group is killed on drop).
    pub guard: Guard,
    /// The port it listens on.
    pub port: u16,
}

impl Server {
    /// Spawns `cmd` with stderr piped and reads `…127.0.0.1:PORT…` from its first line.
    pub fn spawn(cmd: &mut Command) -> Server {
        use std::io::BufRead;
        let mut guard = Guard::spawn(cmd.stderr(std::process::Stdio::piped()));
        let mut first = String::new();
        let stderr = guard
            .0
            .as_mut()
            .and_then(|c| c.stderr.as_mut())
            .expect("stderr");
        std::io::BufReader::new(stderr)
            .read_line(&mut first)
            .expect("read");
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .map(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Server { guard, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the exit code and the rest of stderr (the server's counters).
    pub fn stop(self) -> (Option<i32>, String) {
        let out = self
            .guard
            .signal(libc::SIGTERM)
            .wait_with_output()
            .expect("wait");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
