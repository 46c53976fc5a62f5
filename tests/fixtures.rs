//! Replays captured `/proc` trees (testdata/proc, see make_fixtures.py there) through the
//! recorder with injected sample times. Expected figures were worked out by hand from the
//! fixture text (`Δcounter / Δt`), not by running vmmon; the vda write bytes are also the
//! 20 MiB that `dd oflag=direct` wrote between the two captures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmmon::record::{Cell, DeviceFilter, RecordConfig, Recorder, SourceOptions};

fn fixture(case: &str, t: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/proc/{case}/t{t}"))
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("fixture dir") {
        let entry = entry.expect("dir entry");
        let dst = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&dst).expect("mkdir");
            copy_tree(&entry.path(), &dst);
        } else {
            // Overwrite in place (same inode), as the kernel does: the recorder keeps files open.
            std::fs::write(&dst, std::fs::read(entry.path()).expect("read")).expect("write");
        }
    }
}

/// A recorder over a copy of `case`/t0, and a function that turns the copy into t1.
struct Replay {
    dir: tempfile::TempDir,
    rec: Recorder,
    case: String,
}

impl Replay {
    fn new(case: &str, raw: bool, per_cpu: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_tree(&fixture(case, 0), dir.path());
        let config = RecordConfig {
            raw,
            proc_root: dir.path().join("proc"),
            sys_root: dir.path().join("sys"),
            sources: SourceOptions {
                per_cpu,
                filter: DeviceFilter::default(),
            },
            ..RecordConfig::default()
        };
        let rec = Recorder::new(config).expect("recorder over fixture");
        Replay {
            dir,
            rec,
            case: case.into(),
        }
    }

    /// Samples t0 at 0 s and t1 at `dt`, returning the derived row by column name.
    fn row(&mut self, dt: f64) -> HashMap<String, Cell> {
        let schema = self.rec.schema().clone();
        let mut s0 = schema.new_sample();
        self.rec.read(&mut s0);
        copy_tree(&fixture(&self.case, 1), self.dir.path());
        let mut s1 = schema.new_sample();
        s1.mono = Duration::from_secs_f64(dt);
        self.rec.read(&mut s1);
        let mut cells = Vec::new();
        schema.derive(&s0, &s1, &mut cells);
        schema
            .columns
            .iter()
            .map(|c| c.name.clone())
            .zip(cells)
            .collect()
    }
}

fn num(row: &HashMap<String, Cell>, col: &str) -> f64 {
    match row.get(col) {
        Some(Cell::Num(v)) => *v,
        Some(Cell::Int(v)) => *v as f64,
        other => panic!("{col}: expected a number, got {other:?}"),
    }
}

fn close(row: &HashMap<String, Cell>, col: &str, want: f64) {
    let got = num(row, col);
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{col}: got {got}, want {want}"
    );
}

#[test]
fn basic_rates_match_hand_computed_deltas() {
    let mut r = Replay::new("basic", false, false);
    let row = r.row(2.0);
    // CPU: Δ user 87, system 28, idle 115, iowait 1 of 231 ticks (guest 0).
    close(&row, "cpu_user_pct", 100.0 * 87.0 / 231.0);
    close(&row, "cpu_system_pct", 100.0 * 28.0 / 231.0);
    close(&row, "cpu_idle_pct", 100.0 * 115.0 / 231.0);
    close(&row, "cpu_iowait_pct", 100.0 * 1.0 / 231.0);
    close(&row, "cpu_steal_pct", 0.0);
    close(&row, "ctxt_per_s", (285881.0 - 284174.0) / 2.0);
    close(&row, "intr_per_s", (161003.0 - 160206.0) / 2.0);
    close(&row, "forks_per_s", 50.0);
    close(&row, "faults_major_per_s", 3.5);
    close(
        &row,
        "faults_minor_per_s",
        ((2517816.0 - 2490650.0) - 7.0) / 2.0,
    );
    close(&row, "mem_total_bytes", 24684096.0 * 1024.0);
    close(&row, "mem_dirty_bytes", 45820.0 * 1024.0);
    close(&row, "load_1m", 0.32);
    close(&row, "procs_total", 82.0);
    close(&row, "psi_io_some_pct", 100.0 * 2693e-6 / 2.0);
    close(&row, "psi_io_full_pct", 100.0 * 2675e-6 / 2.0);
    // 20 MiB written by dd between the captures, over 2 s.
    close(
        &row,
        "disk_vda_write_bytes_per_s",
        20.0 * 1024.0 * 1024.0 / 2.0,
    );
    close(&row, "disk_vda_writes_per_s", 10.0);
    close(&row, "net_lo_rx_bytes_per_s", (2876310.0 - 3193.0) / 2.0);
    close(&row, "net_lo_tx_packets_per_s", (117.0 - 29.0) / 2.0);
    // Loop devices and partitions are not recorded by default.
    assert!(!row.keys().any(|k| k.starts_with("disk_loop")));
}

#[test]
fn per_cpu_columns_follow_cpu_ids() {
    let mut r = Replay::new("basic", false, true);
    let row = r.row(1.0);
    // cpu0: Δ user 1595-1549 ... read from the fixture's cpu0 lines.
    let stat0 = std::fs::read_to_string(fixture("basic", 0).join("proc/stat")).expect("stat");
    let stat1 = std::fs::read_to_string(fixture("basic", 1).join("proc/stat")).expect("stat");
    let cpu0 = |s: &str| -> Vec<f64> {
        s.lines()
            .find(|l| l.starts_with("cpu0 "))
            .expect("cpu0 line")
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().expect("number"))
            .collect()
    };
    let (a, b) = (cpu0(&stat0), cpu0(&stat1));
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    let total: f64 = d[..8].iter().sum();
    close(&row, "cpu0_user_pct", 100.0 * (d[0] - d[8]) / total);
    close(&row, "cpu0_idle_pct", 100.0 * d[3] / total);
    assert!(row.contains_key("cpu1_system_pct"));
}

#[test]
fn raw_mode_keeps_the_kernel_counters() {
    let mut r = Replay::new("basic", true, false);
    let row = r.row(1.0);
    assert_eq!(row["net_lo_rx_bytes_total"], Cell::Int(2876310));
    assert_eq!(row["disk_vda_write_sectors_total"], Cell::Int(1483336));
    assert_eq!(row["cpu_user_ticks_total"], Cell::Int(3870));
    assert_eq!(row["ctxt_total"], Cell::Int(285881));
    assert_eq!(row["faults_total"], Cell::Int(2517816));
    assert!(!row.keys().any(|k| k.ends_with("_per_s")));
}

#[test]
fn counters_that_go_backwards_give_empty_cells() {
    let mut r = Replay::new("wrap", false, false);
    let row = r.row(2.0);
    assert_eq!(row["net_eth0_rx_bytes_per_s"], Cell::Empty, "32-bit wrap");
    close(&row, "net_eth0_rx_packets_per_s", 0.0);
    assert_eq!(
        row["disk_vda_writes_per_s"],
        Cell::Empty,
        "re-attached disk"
    );
    close(
        &row,
        "disk_vda_write_bytes_per_s",
        20.0 * 1024.0 * 1024.0 / 2.0,
    );
}

#[test]
fn a_vanished_interface_gives_empty_cells_and_a_new_one_is_noted_once() {
    let mut r = Replay::new("vanished", false, false);
    let _ = r.rec.take_notes();
    let row = r.row(1.0);
    for m in ["rx_bytes", "tx_packets", "rx_drops"] {
        assert_eq!(row[&format!("net_eth0_{m}_per_s")], Cell::Empty);
    }
    close(&row, "net_lo_rx_bytes_per_s", 2876310.0 - 3193.0);
    assert!(!row.keys().any(|k| k.contains("veth7")));
    let notes = r.rec.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("veth7"), "{notes:?}");
    let mut again = r.rec.schema().new_sample();
    r.rec.read(&mut again);
    assert!(r.rec.take_notes().is_empty(), "noted only once");
}

#[test]
fn an_old_kernel_without_steal_guest_psi_or_memavailable() {
    let mut r = Replay::new("oldkernel", false, false);
    let row = r.row(1.0);
    for absent in [
        "cpu_steal_pct",
        "cpu_guest_pct",
        "cpu_guest_nice_pct",
        "mem_available_bytes",
        "psi_cpu_some_pct",
    ] {
        assert!(!row.contains_key(absent), "{absent} should not be a column");
    }
    // Total of the 7 fields: steal was 0, so the same shares as on the full kernel.
    close(&row, "cpu_user_pct", 100.0 * 87.0 / 231.0);
    close(&row, "cpu_softirq_pct", 0.0);
}

#[test]
fn an_unreadable_proc_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("basic", 0), dir.path());
    std::fs::remove_file(dir.path().join("proc/meminfo")).expect("rm");
    let config = RecordConfig {
        proc_root: dir.path().join("proc"),
        sys_root: dir.path().join("sys"),
        ..RecordConfig::default()
    };
    let err = Recorder::new(config).err().expect("must fail").to_string();
    assert!(err.contains("proc/meminfo"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}
