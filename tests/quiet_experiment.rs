//! `vmmon experiment` with real guests under qemu: a short run end to end, and Ctrl-C in the
//! middle of a scenario. In the quiet binary: the guests' CPU is what the models are fitted
//! to, and a machine busy with other tests would blur it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{Guard, heavy, vmmon};
use crate::util_guest::{cache_dir, can_boot};

/// Lines of `path` (all of them whole rows) and the header's field count.
fn rows(path: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if !text.ends_with('\n') {
        // A row cut short by the kill is not a completed row.
        lines.pop();
    }
    let fields = lines.first().map_or(0, |h| h.split(',').count());
    (fields, lines)
}

/// Processes whose command line mentions `needle` (other than this test's).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(format!("{pid}: {c}"));
            }
        }
    }
    found
}

#[test]
fn ctrl_c_mid_scenario_stops_everything_and_keeps_the_rows() {
    if !can_boot() {
        return;
    }
    let _quiet = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let mut cmd = vmmon();
    cmd.env("VMMON_CACHE", cache_dir())
        .args([
            "experiment",
            "--scenarios",
            "both-load",
            "--duration",
            "120s",
            "--rate",
            "2",
            "--accel",
            "tcg",
            "-o",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped());
    let run = Guard::spawn(&mut cmd);
    let pid = run.id();
    // Wait until the guest streams rows and the host's load plays (after the warm-up).
    let vm_csv = out.join("both-load/vm1.csv");
    let start = Instant::now();
    loop {
        let (_, lines) = rows(&vm_csv);
        let loading = !processes_mentioning("load prbs --low").is_empty();
        if lines.len() >= 12 && loading {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no rows from the guest after 240 s; {} lines",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut child = run.signal(libc::SIGINT);
    let stopped = Instant::now();
    let status = child.wait().expect("wait");
    let mut err = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "took {:?} to stop",
        stopped.elapsed()
    );
    assert!(err.contains("stopped"), "{err}");
    // Nothing of the run is left: no qemu, recorder or load, no work folder.
    let work = format!("vmmon-experiment-{pid}-");
    let left = processes_mentioning(&work);
    assert!(left.is_empty(), "left running: {left:?}");
    let left = processes_mentioning(&out.to_string_lossy());
    assert!(left.is_empty(), "left running: {left:?}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&work))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Every completed row that reached the host is there, whole, in both traces.
    for name in ["vm1.csv", "host.csv"] {
        let (fields, lines) = rows(&out.join("both-load").join(name));
        assert!(lines.len() >= 12, "{name}: {} lines", lines.len());
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.split(',').count(), fields, "{name}:{}: {l}", i + 1);
        }
    }
    // The interrupted scenario is not listed as recorded.
    let info = std::fs::read_to_string(out.join("experiment.json")).expect("experiment.json");
    let info: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert_eq!(info["scenarios"], serde_json::json!([]));
    assert!(!out.join("both-load/scenario.json").exists());
}
