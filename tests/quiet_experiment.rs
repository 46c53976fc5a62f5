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

/// The children of `parent` (pid, start time in ticks, command line), from /proc.
fn children_of(parent: u32) -> Vec<(u32, u64, String)> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, start)) = ppid_and_start(pid)
            && ppid == parent
        {
            let c = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push((pid, start, String::from_utf8_lossy(&c).replace('\0', " ")));
        }
    }
    found
}

/// A process's parent and start time, from /proc/PID/stat.
fn ppid_and_start(pid: u32) -> Option<(u32, u64)> {
    use procfs_core::FromRead as _;
    let stat = procfs_core::process::Stat::from_file(format!("/proc/{pid}/stat")).ok()?;
    Some((u32::try_from(stat.ppid).ok()?, stat.starttime))
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
    // Every process the experiment started (qemu, the host's recorder and load), to check
    // by pid and start time after it has gone: a child outliving it is reparented, and
    // the host's load names neither the run folder nor the work folder.
    let children = children_of(pid);
    assert!(
        children.iter().any(|c| c.2.contains("load prbs")),
        "the host's load is among the children: {children:?}"
    );
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
    let left: Vec<_> = children
        .iter()
        .filter(|(p, start, _)| ppid_and_start(*p).is_some_and(|(_, s)| s == *start))
        .collect();
    assert!(left.is_empty(), "children left running: {left:?}");
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

/// The fit % that the reconstruction of the guest's CPU from the host's view of its vCPU
/// threads must reach on the held-out rows, with ARX(1,2,0). Measured on this 2-core machine
/// under TCG at 4 Hz, with the debug binaries this test runs, three runs: 78.2–93.0 % with
/// load in the guest alone, 81.7–91.7 % with load on the host too. With orders chosen
/// by MDL on these 67 estimation rows it ranged from 69.6 to 91.7 %, once with an unstable
/// model, which is why the test gives the orders. The vCPU threads' CPU and the guest's busy
/// time agree to r = 0.98–0.995 with the guest alone. With the host loaded, the vCPU thread
/// waits for a CPU while the guest, whose clock runs on, counts the wait as busy time: a
/// loss that depends on how the host schedules the two loads, and the reason for the margin
/// below the lowest figure measured.
const RECONSTRUCTION_FIT_PCT: f64 = 70.0;

#[test]
fn a_short_experiment_records_aligns_fits_and_reports() {
    if !can_boot() {
        return;
    }
    let _quiet = heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let started = Instant::now();
    let o = vmmon()
        .env("VMMON_CACHE", cache_dir())
        .args([
            "experiment",
            "--scenarios",
            "guest-load,both-load",
            "--duration",
            "25s",
            "--rate",
            "4",
            "--accel",
            "tcg",
            // Given orders: on 67 estimation rows MDL's choice swings from run to run
            // (ARX(0,1,0) to (3,2,0), once unstable), and the larger ones overfit the
            // window's mean error; the order search has its own tests.
            "--poles",
            "1",
            "--zeros",
            "2",
            "--delay",
            "0",
            "-o",
        ])
        .arg(&out)
        .output()
        .expect("vmmon experiment");
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("{err}");
    assert!(o.status.success(), "{:?}\n{err}", o.status);
    eprintln!("experiment took {:.0?}", started.elapsed());

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for s in ["## guest-load", "## both-load", "### vm1", "```sh"] {
        assert!(report.contains(s), "report.md lacks {s:?}:\n{report}");
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("summary.json is JSON");
    assert_eq!(summary["ok"], true, "{summary:#}");
    let table = summary["rows"].as_array().expect("rows");
    assert_eq!(table.len(), 2, "{summary:#}");
    for row in table {
        let fit = row["reconstruction_fit_pct"].as_f64().expect("a fit %");
        eprintln!(
            "{}: orders {} {} {}, reconstruction fit {fit:.1} %",
            row["scenario"], row["na"], row["nb"], row["nk"]
        );
        assert!(fit >= RECONSTRUCTION_FIT_PCT, "{row:#}");
        assert!(row["fit_simulated_pct"].as_f64().is_some(), "{row:#}");
    }

    for scenario in ["guest-load", "both-load"] {
        let sdir = out.join(scenario);
        // The aligned trace has both sources, and the guest's clock was corrected from
        // its own probes of the host's clock.
        let aligned = std::fs::read_to_string(sdir.join("aligned.csv")).expect("aligned.csv");
        let header = aligned.lines().next().unwrap_or_default();
        for col in [
            "host.busy_cpu_pct",
            "host.vm1.vcpu_cpu_pct",
            "vm1.busy_cpu_pct",
        ] {
            assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
        }
        assert!(aligned.lines().count() > 80, "{scenario}: too few rows");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sdir.join("aligned.csv.meta.json")).expect("sidecar"),
        )
        .expect("sidecar JSON");
        let vm1 = &meta["sources"][1];
        assert_eq!(vm1["name"], "vm1");
        assert_eq!(vm1["correction"]["method"], "clock columns", "{meta:#}");
        // The offset's error bound (RTT/2 through qemu's user-mode network) is small
        // against a sampling period of 250 ms.
        let (_, lines) = rows(&sdir.join("vm1.csv"));
        let bounds = column(&lines, "clock_bound_s");
        assert!(!bounds.is_empty(), "no clock probes in vm1.csv");
        assert!(bounds.iter().all(|b| *b < 0.005), "clock bounds {bounds:?}");
        // Every figure was drawn, with its labels as text.
        for fig in [
            "trace.svg",
            "vm1.xcorr.svg",
            "vm1.impulse.svg",
            "vm1.validate.svg",
            "vm1.reconstruct.svg",
        ] {
            let svg = std::fs::read_to_string(sdir.join(fig))
                .unwrap_or_else(|e| panic!("{scenario}/{fig}: {e}"));
            assert!(svg.contains("<text"), "{scenario}/{fig} has no text");
            assert!(
                report.contains(&format!("{scenario}/{fig}")),
                "{fig} not in report"
            );
        }
    }
    // Nothing of the run is left behind.
    assert!(processes_mentioning(&out.to_string_lossy()).is_empty());
}

/// The non-empty values of `name` in CSV `lines` (header first).
fn column(lines: &[String], name: &str) -> Vec<f64> {
    let Some(i) = lines
        .first()
        .and_then(|h| h.split(',').position(|c| c == name))
    else {
        return Vec::new();
    };
    lines[1..]
        .iter()
        .filter_map(|l| l.split(',').nth(i))
        .filter_map(|v| v.parse().ok())
        .collect()
}
