//! End-to-end tests of `vmmon record` as a user runs it: spellings, row counts, signals,
//! kill -9, disk full, and every usage error a user can make, with its message.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{require_root, vmmon};

fn fixture_root(case: &str) -> [String; 4] {
    let base = format!("{}/testdata/proc/{case}/t0", env!("CARGO_MANIFEST_DIR"));
    [
        "--proc-root".into(),
        format!("{base}/proc"),
        "--sys-root".into(),
        format!("{base}/sys"),
    ]
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = vmmon().args(args).output().expect("run vmmon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn header(csv: &str) -> &str {
    csv.lines().next().expect("a header line")
}

/// Every line of a CSV has as many fields as the header and the text ends on a newline.
fn assert_whole_rows(csv: &str) -> usize {
    assert!(
        csv.is_empty() || csv.ends_with('\n'),
        "ends mid-row: {csv:?}"
    );
    let n = header(csv).split(',').count();
    for (i, line) in csv.lines().enumerate() {
        assert_eq!(
            line.split(',').count(),
            n,
            "line {} is not whole: {line}",
            i + 1
        );
    }
    csv.lines().count() - 1
}

#[test]
fn legacy_and_modern_spellings_give_identical_columns() {
    let (c1, legacy, e1) = run(&[
        "record",
        "-rate",
        "20",
        "-max",
        "2",
        "-name",
        "h",
        "-timestamp",
    ]);
    let (c2, modern, e2) = run(&[
        "record",
        "--rate",
        "20",
        "--max",
        "2",
        "--name",
        "h",
        "--timestamp",
    ]);
    let (c3, short, e3) = run(&["record", "-r", "20", "-n", "2"]);
    assert_eq!((c1, c2, c3), (0, 0, 0), "{e1}{e2}{e3}");
    assert_eq!(header(&legacy), header(&modern));
    assert_eq!(header(&legacy), header(&short));
    assert!(header(&legacy).starts_with("time,elapsed,cpu_user_pct,"));
}

#[test]
fn max_gives_exactly_that_many_rows() {
    let _heavy = crate::util::heavy();
    let (code, out, err) = run(&["record", "-rate", "50", "-max", "5"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(assert_whole_rows(&out), 5);
}

#[test]
fn period_bounds_the_run_and_rows_are_on_the_grid() {
    let _heavy = crate::util::heavy();
    let (code, out, err) = run(&["record", "--rate", "20", "--period", "500ms"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(assert_whole_rows(&out), 10);
    // elapsed of row k is k/20 s late by at most a few ms on an idle machine
    for (k, line) in out.lines().skip(1).enumerate() {
        let elapsed: f64 = line
            .split(',')
            .nth(1)
            .expect("elapsed")
            .parse()
            .expect("number");
        let due = (k + 1) as f64 / 20.0;
        assert!(
            elapsed >= due && elapsed < due + 0.04,
            "row {k}: {elapsed} vs {due}"
        );
    }
}

#[test]
fn a_hyphen_value_and_shorts_parse() {
    let (code, out, err) = run(&["record", "-r", "10", "-n", "1", "--name", "-vm-", "--raw"]);
    assert_eq!(code, 0, "{err}");
    assert!(header(&out).contains("ctxt_total"));
}

#[test]
fn invoked_as_ns_it_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = dir.path().join("ns");
    std::os::unix::fs::symlink(crate::util::vmmon_bin(), &ns).expect("symlink");
    let out = Command::new(&ns)
        .args(["-rate", "20", "-max", "3", "-timestamp"])
        .output()
        .expect("run ns");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_whole_rows(&String::from_utf8_lossy(&out.stdout)), 3);
}

#[test]
fn iso_timestamps() {
    let (code, out, err) = run(&["record", "-r", "20", "-n", "1", "--timestamp", "iso"]);
    assert_eq!(code, 0, "{err}");
    let t = out
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .next()
        .expect("time");
    assert!(
        t.len() == 27 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
}

#[test]
fn output_file_and_metadata_sidecar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("host.csv");
    let csv_s = csv.to_str().expect("utf-8 path");
    let (code, out, err) = run(&[
        "record", "-r", "20", "-n", "4", "-name", "host", "-o", csv_s,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(assert_whole_rows(&text), 4);
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("host.csv.meta.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["name"], "host");
    assert_eq!(meta["rows"], 4);
    assert_eq!(meta["rate_hz"], 20.0);
    assert_eq!(meta["missed_slots"], 0);
    let cols = meta["columns"].as_array().expect("columns");
    assert_eq!(cols.len(), header(&text).split(',').count());
    assert_eq!(cols[2]["name"], "cpu_user_pct");
    assert_eq!(cols[2]["kind"], "rate");
    assert!(meta["ticks_per_second"].as_i64().expect("ticks") > 0);
    // The CPU count, against this test's own reading of /proc/stat.
    let cpus = std::fs::read_to_string("/proc/stat")
        .expect("/proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    assert_eq!(meta["cpus"].as_u64(), Some(cpus as u64));
}

fn spawn_recorder(file: &std::path::Path, rate: &str) -> std::process::Child {
    vmmon()
        .args(["record", "--rate", rate, "-o"])
        .arg(file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn rows_in(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count().saturating_sub(1))
}

fn wait_for_rows(path: &std::path::Path, n: usize) {
    for _ in 0..200 {
        if rows_in(path) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("recorder wrote fewer than {n} rows in 5 s");
}

#[test]
fn kill_9_leaves_only_whole_rows() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..5 {
        let file = dir.path().join(format!("k{round}.csv"));
        let mut child = spawn_recorder(&file, "200");
        wait_for_rows(&file, 10 + round * 7);
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let text = std::fs::read_to_string(&file).expect("csv");
        assert!(assert_whole_rows(&text) >= 10);
        let meta = std::fs::read_to_string(vmmon_sidecar(&file)).expect("sidecar");
        assert!(
            meta.contains("\"running\""),
            "killed run's metadata says running"
        );
    }
}

fn vmmon_sidecar(file: &std::path::Path) -> std::path::PathBuf {
    vmmon::trace::sidecar_path(file)
}

fn stop_with(signal: i32, code: i32) {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.csv");
    let mut child = spawn_recorder(&file, "50");
    wait_for_rows(&file, 3);
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(code));
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let text = std::fs::read_to_string(&file).expect("csv");
    let rows = assert_whole_rows(&text);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vmmon_sidecar(&file)).expect("sidecar"))
            .expect("json");
    assert_eq!(meta["status"], "interrupted", "{err}");
    assert_eq!(meta["rows"].as_u64(), Some(rows as u64));
}

#[test]
fn sigint_stops_cleanly_with_130() {
    stop_with(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_cleanly_with_143() {
    stop_with(libc::SIGTERM, 143);
}

#[test]
fn a_closed_pipe_is_a_clean_exit() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = dir.path().join("m.json");
    let mut child = vmmon()
        .args(["record", "--rate", "100", "--meta"])
        .arg(&meta)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let status = child.wait().expect("wait");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("sidecar")).expect("json");
    assert_eq!(meta["status"], "output_closed");
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["record", "--rate", "0"], "invalid rate 0 Hz"),
        (&["record", "-rate", "-1"], "invalid rate -1 Hz"),
        (&["record", "--rate", "NaN"], "invalid rate NaN Hz"),
        (&["record", "--rate", "5000"], "from 0.01 to 1000"),
        (&["record", "--rate", "fast"], "invalid value 'fast'"),
        (
            &["record", "--rate", "1", "--period", "0.5"],
            "shorter than one sampling interval",
        ),
        (&["record", "--period", "10parsecs"], "unknown unit"),
        (&["record", "--period", "-3"], "positive duration"),
        (&["record", "--max", "0"], "--max must be at least 1"),
        (&["record", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["record", "--timestamp", "julian"],
            "invalid value 'julian'",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
        // Far out of range: refused, and shown as typed.
        (
            &["align", "a=a.csv", "b=b.csv", "--offset", "b=1e300"],
            "give an offset of at most 4e9 seconds either way",
        ),
        (
            &["align", "a=a.csv", "b=b.csv", "--max-gap=-1e-300"],
            "--max-gap -1e-300 must be a positive number of seconds",
        ),
        (
            &["load", "const", "1e300", "-d", "1s"],
            "worker threads asked for (the load reaches 1e300)",
        ),
        (
            &["topo", "--threshold", "1e300", "x.csv"],
            "--threshold 1e300 must be between 0 and 1",
        ),
    ];
    for (args, msg) in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(msg), "{args:?}: want {msg:?} in {err:?}");
    }
}

#[test]
fn runtime_errors_exit_1_and_name_the_file() {
    let (code, _, err) = run(&["record", "-n", "1", "-o", "/nonexistent-dir/x.csv"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot create output file /nonexistent-dir/x.csv"),
        "{err}"
    );

    let (code, _, err) = run(&["record", "-n", "1", "--proc-root", "/nonexistent-proc"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /nonexistent-proc/stat"), "{err}");

    let (code, _, err) = run(&["record", "-n", "1", "-o", "/dev/full"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("writing /dev/full: No space left on device"),
        "{err}"
    );
}

/// A small tmpfs on a temporary folder, unmounted (then removed) even when the test fails.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`64k`): the caller has checked it runs as root.
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs");
        Tmpfs(dir)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn disk_full_during_a_run_keeps_every_whole_row() {
    let _heavy = crate::util::heavy();
    if !require_root("mounts a 64 KiB tmpfs to fill it") {
        return;
    }
    let dir = Tmpfs::mount("64k");
    let file = dir.path().join("full.csv");
    let out = vmmon()
        .args(["record", "--rate", "1000", "--raw", "-o"])
        .arg(&file)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("data rows written before are intact"), "{err}");
    let text = std::fs::read_to_string(&file).expect("csv");
    let rows = assert_whole_rows(&text);
    assert!(rows > 10);
    // Review finding F5: the sidecar tells how far the run got, not "rows": 0. It may itself
    // not fit on the full disk; when it was written it must be right.
    if let Ok(meta) = std::fs::read_to_string(vmmon::trace::sidecar_path(&file)) {
        let meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
        if meta["status"] != "running" {
            assert_eq!(meta["status"], "failed");
            assert_eq!(meta["rows"].as_u64(), Some(rows as u64));
        }
    }
}

#[test]
fn a_summary_that_does_not_fit_leaves_no_file() {
    if !require_root("mounts an 8 KiB tmpfs to fill it") {
        return;
    }
    let dir = Tmpfs::mount("8k");
    // Fill it: writes stop at the size.
    let _ = std::fs::write(dir.path().join("fill"), vec![0u8; 64 * 1024]);
    let json = dir.path().join("s.json");
    let out = vmmon()
        .args(["load", "const", "0.1", "-d", "0.3", "--json"])
        .arg(&json)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    // It left an empty s.json before.
    assert!(!json.exists(), "an empty or partial summary was left");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["fill"], "no temporary file is left either");
}

#[test]
fn device_selection_on_a_captured_tree() {
    let root = fixture_root("basic");
    let mut args = vec!["record", "--raw", "-n", "1", "--devices", "lo,vda"];
    args.extend(root.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let h = header(&out);
    assert!(h.contains("net_lo_rx_bytes_total") && h.contains("disk_vda_reads_total"));
    assert!(!h.contains("eth0") && !h.contains("zram0"), "{h}");
    // The captured counters come through unchanged.
    let row: Vec<&str> = out.lines().nth(1).expect("row").split(',').collect();
    let col = |name: &str| h.split(',').position(|c| c == name).expect(name);
    assert_eq!(row[col("net_lo_rx_bytes_total")], "3193");

    let mut args = vec![
        "record",
        "--raw",
        "-n",
        "1",
        "--exclude",
        "eth*,zram*",
        "--partitions",
    ];
    args.extend(root.iter().map(String::as_str));
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(!header(&out).contains("eth0") && header(&out).contains("net_lo_"));
}

/// Regressions from the robustness sweep of the runtime commands (2026-12-07): a metadata
/// path that replaced devices and symbolic links, panics on tiny rates, outputs that
/// overwrote each other, and options refused only after the work (or never).
#[test]
fn runtime_sweep_regressions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let run = |args: &[&str]| {
        let out = vmmon().args(args).output().expect("run vmmon");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // An empty file says so, in load play and charge as in the analysis commands (they
    // said "no column named 'load'; the columns are: " and "has no per-VM columns").
    let empty = at("empty.csv");
    std::fs::write(&empty, "").expect("write");
    for args in [
        vec!["load", "play", empty.as_str(), "-d", "1s"],
        vec!["charge", empty.as_str()],
    ] {
        let (code, err) = run(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("empty.csv: the file is empty: a trace starts with a header row"),
            "{args:?}: {err}"
        );
    }

    // An option of another kind of load is refused, not ignored.
    for (args, want) in [
        (
            vec![
                "load",
                "const",
                "0.5",
                "-d",
                "1s",
                "--target",
                "127.0.0.1:9",
            ],
            "--target is where --kind net sends its datagrams; this load is --kind cpu",
        ),
        (
            vec![
                "load",
                "const",
                "0.5",
                "-d",
                "1s",
                "--kind",
                "net",
                "--target",
                "127.0.0.1:9",
                "--dir",
                "/tmp",
            ],
            "--dir is where --kind disk writes its file; this load is --kind net",
        ),
    ] {
        let (code, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // --meta through a symbolic link writes its target and keeps the link.
    let target = at("target.json");
    let link = at("link.json");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let (code, err) = run(&[
        "record",
        "-r",
        "100",
        "-n",
        "2",
        "-o",
        &at("a.csv"),
        "--meta",
        &link,
    ]);
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::symlink_metadata(&link).expect("link");
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    let text = std::fs::read_to_string(&target).expect("target written");
    assert!(text.contains("\"rate_hz\""), "{text}");

    // --meta on a device writes into it, never renames over it (that destroyed /dev/full).
    if require_root("mknod a character device") {
        let dev = at("mynull");
        let made = Command::new("mknod")
            .args([&dev, "c", "1", "3"])
            .status()
            .expect("mknod");
        assert!(made.success());
        let (code, err) = run(&[
            "record",
            "-r",
            "100",
            "-n",
            "2",
            "-o",
            &at("b.csv"),
            "--meta",
            &dev,
        ]);
        assert_eq!(code, 0, "{err}");
        use std::os::unix::fs::FileTypeExt;
        let ft = std::fs::symlink_metadata(&dev).expect("dev").file_type();
        assert!(ft.is_char_device(), "the device was replaced by a file");
    }

    let (same, log, vmmon_bin) = (at("s.csv"), at("l.csv"), env!("CARGO_BIN_EXE_vmmon"));
    let (x1, x2, x3) = (at("x1"), at("x2"), at("x3"));
    let cases: [(&[&str], i32, &str); 14] = [
        // One file named for two outputs: the rows were lost to the summary.
        (
            &["record", "-n", "2", "-o", &same, "--meta", &same],
            2,
            "-o and --meta both name",
        ),
        (
            &[
                "load", "const", "0.1", "-d", "1s", "--log", &log, "--json", &log,
            ],
            2,
            "--log and --json both name",
        ),
        // Durations, rates and shapes that cannot be honoured.
        (
            &["load", "const", "0.5", "--slice", "5s", "-d", "1s"],
            2,
            "is longer than -d",
        ),
        (
            &["load", "square", "--low", "2", "--high", "1", "-d", "1s"],
            2,
            "give low ≤ high",
        ),
        (
            &["load", "sine", "--amplitude=-1", "-d", "1s"],
            2,
            "--amplitude -1",
        ),
        (
            &["load", "square", "--period", "100ms", "-d", "1s"],
            2,
            "shorter than two slices",
        ),
        // A value far out of range is shown as typed, not as 300 digits.
        (
            &["record", "-r", "1e-300", "-n", "1"],
            2,
            "invalid rate 1e-300 Hz: it must be a number from 0.01 to 1000",
        ),
        (
            &["clock", "probe", "127.0.0.1:9", "-r", "1e-30", "-n", "2"],
            2,
            "--rate 1e-30: give bursts per second",
        ),
        (
            &[
                "clock",
                "probe",
                "127.0.0.1:9",
                "--timeout",
                "1e-9",
                "-n",
                "2",
            ],
            2,
            "give seconds from 0.001 to 60",
        ),
        (
            &["clock", "serve", "--listen", "999.1.1.1:1"],
            2,
            "--listen '999.1.1.1:1'",
        ),
        (
            &[
                "probe",
                "mesh",
                "a=127.0.0.1:22310",
                "b=127.0.0.1:22311",
                "--timeout",
                "1e-30",
            ],
            2,
            "give seconds from 0.001",
        ),
        // The experiment computed 2/rate before its checks, and panicked. Any existing
        // file stands for busybox: the rate is checked after it.
        (
            &[
                "experiment",
                "-o",
                &x1,
                "--rate",
                "1e-30",
                "--busybox",
                vmmon_bin,
            ],
            2,
            "gives 0 samples; a model needs at least 10",
        ),
        (
            &["experiment", "-o", &x2, "--memory", "0"],
            2,
            "--memory 0: a guest needs at least 64 MiB",
        ),
        (
            &["experiment", "-o", &x3, "--busybox", "/nonexistent/busybox"],
            2,
            "--busybox /nonexistent/busybox: no such file",
        ),
    ];
    for (args, want, msg) in cases {
        let (code, err) = run(args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(
            err.contains(msg) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }

    // Pid 0 is no process; an existing file is no run folder: usage errors.
    let (code, err) = run(&["record", "--vm-pid", "0", "-n", "1"]);
    assert_eq!(code, 2, "{err}");
    let file = at("a.csv");
    let (code, err) = run(&["experiment", "-o", &file, "--busybox", vmmon_bin]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a file, not a folder"), "{err}");
    // A zero load's error is an amount, not a percentage of zero (+314100000.0%).
    let (code, err) = run(&["load", "const", "0", "-d", "200ms"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("CPU s (+") || err.contains("CPU s (-"),
        "{err}"
    );
    assert!(!err.contains('%'), "{err}");

    // Metadata that cannot be written at the start leaves no empty trace behind.
    let left = at("left.csv");
    let (code, err) = run(&[
        "record",
        "-n",
        "2",
        "-o",
        &left,
        "--meta",
        "/nonexistent/dir/m.json",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot write metadata /nonexistent/dir/m.json"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&left).exists(),
        "an empty {left} was left behind"
    );

    // A --devices pattern that matches nothing is said, not silently an empty set.
    let (code, err) = run(&[
        "record",
        "-r",
        "100",
        "-n",
        "1",
        "--devices",
        "nosuchdevice0",
        "-o",
        &at("d.csv"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("--devices nosuchdevice0: no block device or interface matches"),
        "{err}"
    );
}
