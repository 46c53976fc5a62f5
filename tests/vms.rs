//! `vmmon record --vms`: per-VM columns from synthetic `/proc` trees (every value checked
//! against deltas set by hand), and discovery of real processes on the live `/proc`.

use std::collections::HashMap;
use std::time::Duration;

use vmmon::record::fixture::FakeProc;
use vmmon::record::{Cell, Layout, RecordConfig, Recorder, VmSelect};

use crate::util::{Guard, vmmon};

const S: u64 = 1_000_000_000;

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}

/// Two VMs as a KVM host shows them, at time A (`step` 0) and 2 s later (`step` 1):
/// `web` names its vCPU threads and runs vhost inside the process (kernels ≥ 6.4); `db` has
/// unnamed threads (found by guest time) and a `vhost-2000` kernel thread outside (older
/// kernels).
fn kvm_host(p: &FakeProc, step: u64) {
    let t = ticks_per_second();
    let s = step;
    // Host: 100 busy ticks and 10 softirq ticks more in the second sample.
    p.host_cpu([
        100 + 60 * s,
        0,
        50 + 30 * s,
        1000,
        0,
        0,
        10 + 10 * s,
        0,
        0,
        0,
    ])
    .unwrap();
    let web = [
        "qemu-system-x86_64",
        "-name",
        "guest=web,debug-threads=on",
        "-m",
        "1024",
    ];
    // Process totals in ticks: 1.5 s, then 2.5 s.
    p.vmm(1000, "qemu-system-x86", &web, (t + t * s, t / 2))
        .unwrap();
    p.stat(
        "1000",
        "qemu-system-x86",
        0,
        t + t * s,
        t / 2,
        100,
        8 * t / 10 + 7 * t / 10 * s,
    )
    .unwrap();
    p.thread(1000, 1000, "qemu-system-x86", 3 * S / 10, 0, 0)
        .unwrap();
    p.thread(
        1000,
        1001,
        "CPU 0/KVM",
        S + 6 * S / 10 * s,
        S / 10 + 2 * S / 10 * s,
        1,
    )
    .unwrap();
    p.thread(1000, 1002, "CPU 1/KVM", 2 * S / 10 + 2 * S / 10 * s, 0, 1)
        .unwrap();
    p.thread(1000, 1003, "vhost-1000", S / 10 + S / 10 * s, 0, 0)
        .unwrap();
    p.tun_fd(1000, 20, "tap0").unwrap();
    p.io(1000, 4096 + 4096 * s, 8192).unwrap();

    let db = ["qemu-system-x86_64", "-name", "db"];
    p.vmm(
        2000,
        "qemu-system-x86",
        &db,
        (6 * t / 10 + 12 * t / 10 * s, 0),
    )
    .unwrap();
    p.thread(2000, 2000, "qemu-system-x86", 0, 0, 0).unwrap();
    p.thread(2000, 2001, "qemu-system-x86", S / 2 + S * s, 0, 30)
        .unwrap();
    p.tun_fd(2000, 31, "vnet7").unwrap();
    p.kthread(2100, "vhost-2000", S / 10 + 3 * S / 10 * s)
        .unwrap();

    p.net_dev(&[
        ("eth0", [1, 1, 1, 1]),
        (
            "tap0",
            [1000 + 2000 * s, 10 + 4 * s, 5000 + 10000 * s, 20 + 8 * s],
        ),
        ("vnet7", [0, 0, 100 * s, s]),
    ])
    .unwrap();
    p.kthread(10, "ksoftirqd/0", 5 * S / 100 + 4 * S / 100 * s)
        .unwrap();
    p.kthread(11, "kworker/0:1-events", 2 * S / 100 + S / 10 * s)
        .unwrap();
    p.kthread(12, "rcu_preempt", 9 * S * s).unwrap();
    p.stat("500", "bash", 0, 5, 5, 50, 0).unwrap();
}

/// A recorder on `proc_root`, sampled at elapsed 1 s and 3 s: the derived row by name.
fn two_samples(
    p: &FakeProc,
    change: impl Fn(&FakeProc),
    layout: Layout,
) -> (Recorder, HashMap<String, Cell>, Vec<String>) {
    let config = RecordConfig {
        proc_root: p.root().to_path_buf(),
        sys_root: p.root().join("no-sys"),
        vms: Some(VmSelect::default()),
        layout,
        ..RecordConfig::default()
    };
    let mut rec = Recorder::new(config).unwrap();
    let mut a = rec.schema().new_sample();
    a.mono = Duration::from_secs(1);
    rec.read(&mut a);
    change(p);
    let mut b = rec.schema().new_sample();
    b.mono = Duration::from_secs(3);
    rec.read(&mut b);
    let mut cells = Vec::new();
    rec.schema().derive(&a, &b, &mut cells);
    let row = rec
        .schema()
        .columns
        .iter()
        .zip(&cells)
        .map(|(c, v)| (c.name.clone(), *v))
        .collect();
    let notes = rec.take_notes();
    (rec, row, notes)
}

fn num(row: &HashMap<String, Cell>, name: &str) -> f64 {
    match row.get(name) {
        Some(Cell::Num(v)) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn kvm_host_tree_every_column_from_known_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    kvm_host(&p, 0);
    let (rec, row, notes) = two_samples(&p, |p| kvm_host(p, 1), Layout::Wide);
    let expect = [
        // web: vCPU threads ran 0.6 + 0.2 s of the 2 s interval; the process 1 s; vhost 0.1 s.
        ("web.vcpu_cpu_pct", 40.0),
        ("web.vcpu_run_delay_pct", 10.0),
        ("web.vhost_cpu_pct", 5.0),
        ("web.process_cpu_pct", 50.0),
        ("web.emulator_cpu_pct", 5.0),
        ("web.guest_cpu_pct", 35.0),
        // The tap sent 10000 B to the guest and received 2000 B from it.
        ("web.net_guest_rx_bytes_per_s", 5000.0),
        ("web.net_guest_tx_bytes_per_s", 1000.0),
        ("web.net_guest_rx_packets_per_s", 4.0),
        ("web.net_guest_tx_packets_per_s", 2.0),
        ("web.disk_read_bytes_per_s", 2048.0),
        ("web.disk_write_bytes_per_s", 0.0),
        // db: the thread with guest time is its vCPU; vhost runs in a kernel thread.
        ("db.vcpu_cpu_pct", 50.0),
        ("db.vhost_cpu_pct", 15.0),
        ("db.process_cpu_pct", 60.0),
        ("db.emulator_cpu_pct", 10.0),
        ("db.net_guest_rx_bytes_per_s", 50.0),
        ("db.net_guest_rx_packets_per_s", 0.5),
        ("db.net_guest_tx_bytes_per_s", 0.0),
        // Host: 100 busy ticks and 10 softirq ticks in 2 s; ksoftirqd 0.04 s, kworker 0.1 s.
        ("busy_cpu_pct", 50.0),
        ("pool_softirq_cpu_pct", 5.0),
        ("pool_ksoftirqd_cpu_pct", 2.0),
        ("pool_iothreads_cpu_pct", 5.0),
    ];
    for (name, want) in expect {
        let got = num(&row, name);
        assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
    }
    // No run delay is known for db's vCPU (its schedstat says 0), guest time only via ticks.
    assert_eq!(num(&row, "db.vcpu_run_delay_pct"), 0.0);
    let info = rec.vms();
    assert_eq!(info.len(), 2);
    assert_eq!((info[0].name.as_str(), info[0].pid), ("web", 1000));
    assert_eq!(info[0].vcpu_threads, 2);
    assert_eq!(info[0].taps, vec!["tap0".to_string()]);
    assert_eq!((info[1].name.as_str(), info[1].vcpu_threads), ("db", 1));
    assert!(!notes.iter().any(|n| n.contains("--vms")), "{notes:?}");
}

#[test]
fn raw_mode_has_cumulative_nanoseconds_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    kvm_host(&p, 0);
    let config = RecordConfig {
        proc_root: p.root().to_path_buf(),
        sys_root: p.root().join("no-sys"),
        vms: Some(VmSelect::default()),
        raw: true,
        ..RecordConfig::default()
    };
    let mut rec = Recorder::new(config).unwrap();
    let mut a = rec.schema().new_sample();
    rec.read(&mut a);
    let mut cells = Vec::new();
    rec.schema().derive(&a, &a, &mut cells);
    let row: HashMap<_, _> = rec
        .schema()
        .columns
        .iter()
        .map(|c| c.name.clone())
        .zip(cells)
        .collect();
    assert_eq!(row["web.vcpu_cpu_ns_total"], Cell::Int(12 * S / 10));
    assert_eq!(row["web.vhost_cpu_ns_total"], Cell::Int(S / 10));
    assert_eq!(row["web.net_guest_rx_bytes_total"], Cell::Int(5000));
    assert_eq!(row["db.vhost_cpu_ns_total"], Cell::Int(S / 10));
    assert_eq!(row["pool_ksoftirqd_cpu_ns_total"], Cell::Int(5 * S / 100));
}

#[test]
fn exited_vm_gives_empty_cells_and_one_note_and_a_new_one_is_noted() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    kvm_host(&p, 0);
    let (_, row, notes) = two_samples(
        &p,
        |p| {
            kvm_host(p, 1);
            p.remove(2000).unwrap();
            p.vmm(3000, "qemu-system-x86", &["qemu", "-name", "late"], (1, 1))
                .unwrap();
        },
        Layout::Wide,
    );
    assert_eq!(row["db.vcpu_cpu_pct"], Cell::Empty);
    assert_eq!(row["db.net_guest_rx_bytes_per_s"], Cell::Empty);
    assert_eq!(num(&row, "web.vcpu_cpu_pct"), 40.0);
    assert!(!row.keys().any(|k| k.starts_with("late.")));
    let all = notes.join("\n");
    assert!(all.contains("VM db (pid 2000) exited"), "{all}");
    assert!(
        all.contains("started after the recording") && all.contains("--format long"),
        "{all}"
    );
}

#[test]
fn unreadable_file_degrades_its_columns_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    kvm_host(&p, 0);
    // A directory where /proc/PID/io should be: opening works, every read fails (as EACCES
    // would for another user's process; root cannot be denied in a test).
    std::fs::remove_file(dir.path().join("1000/io")).unwrap();
    std::fs::create_dir(dir.path().join("1000/io")).unwrap();
    let (mut rec, row, notes) = two_samples(&p, kvm_host_keep_io_dir, Layout::Wide);
    assert_eq!(row["web.disk_read_bytes_per_s"], Cell::Empty);
    assert_eq!(num(&row, "web.vcpu_cpu_pct"), 40.0);
    let warnings: Vec<_> = notes.iter().filter(|n| n.contains("1000/io")).collect();
    assert_eq!(warnings.len(), 1, "{notes:?}");
    let mut c = rec.schema().new_sample();
    c.mono = Duration::from_secs(5);
    rec.read(&mut c);
    assert!(rec.take_notes().is_empty());
}

fn kvm_host_keep_io_dir(p: &FakeProc) {
    let io = p.root().join("1000/io");
    std::fs::remove_dir(&io).unwrap();
    kvm_host(p, 1);
    std::fs::remove_file(&io).unwrap();
    std::fs::create_dir(&io).unwrap();
}

#[test]
fn long_layout_follows_vms_that_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    kvm_host(&p, 0);
    let (mut rec, row, _) = two_samples(&p, |p| kvm_host(p, 1), Layout::Long);
    // The wide schema holds only host columns; VMs are in the per-VM rows.
    assert!(row.contains_key("pool_softirq_cpu_pct"));
    assert!(!row.keys().any(|k| k.contains('.')));
    assert_eq!(rec.header(), "time,vm,metric,value\n");
    // A third sample after db exited and `late` started: late has no row yet (one sample).
    p.remove(2000).unwrap();
    p.vmm(
        3000,
        "qemu-system-x86",
        &["qemu", "-name", "guest=late"],
        (1, 1),
    )
    .unwrap();
    p.thread(3000, 3001, "CPU 0/TCG", S, 0, 0).unwrap();
    let rows = |rec: &mut Recorder, secs: u64| {
        let mut a = rec.schema().new_sample();
        a.mono = Duration::from_secs(secs);
        rec.read(&mut a);
        let mut cells = Vec::new();
        rec.schema().derive(&a, &a, &mut cells);
        let mut out = String::new();
        rec.format_row(&a, &cells, None, &mut out);
        out
    };
    let third = rows(&mut rec, 5);
    assert!(third.contains(",web,vcpu_cpu_pct,0\n"), "{third}");
    assert!(!third.contains(",db,") && !third.contains(",late,"));
    assert!(third.contains(",,pool_softirq_cpu_pct,"));
    p.thread(3000, 3001, "CPU 0/TCG", 3 * S, 0, 0).unwrap();
    let fourth = rows(&mut rec, 7);
    // 2 s of vCPU time in 2 s.
    assert!(fourth.contains(",late,vcpu_cpu_pct,100\n"), "{fourth}");
    for line in fourth.lines() {
        assert_eq!(line.split(',').count(), 4, "{line}");
    }
    let names: Vec<_> = rec.vms().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["web", "db", "late"]);
}

#[test]
fn live_proc_finds_processes_by_pid_and_by_name_and_notes_exit() {
    let mut sleeper = std::process::Command::new("sleep");
    sleeper.arg("1.2");
    let child = Guard::spawn(&mut sleeper);
    let pid = child.id();
    let out = vmmon()
        .args([
            "record",
            "--rate",
            "5",
            "-n",
            "8",
            "--vm-pid",
            &pid.to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == format!("pid{pid}.process_cpu_pct"))
        .expect("process column");
    let cells: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap())
        .collect();
    // sleep exits after 1.2 s of a 1.6 s recording: its last cells are empty.
    assert!(cells.first().is_some_and(|c| !c.is_empty()), "{cells:?}");
    assert_eq!(cells.last(), Some(&""), "{cells:?}");
    assert!(stderr.contains(&format!("(pid {pid}) exited")), "{stderr}");
    assert!(stderr.contains("no vCPU threads identified"), "{stderr}");

    // By name, in the long layout: one process running from the start, one started later.
    let mut first = std::process::Command::new("sleep");
    first.arg("3");
    let a = Guard::spawn(&mut first);
    let mut rec = std::process::Command::new(crate::util::vmmon_bin());
    rec.args([
        "record",
        "--rate",
        "5",
        "-n",
        "12",
        "--vm-match",
        "^sleep$",
        "--format",
        "long",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let recorder = rec.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let mut second = std::process::Command::new("sleep");
    second.arg("3");
    let b = Guard::spawn(&mut second);
    let out = recorder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for pid in [a.id(), b.id()] {
        let tag = format!(",pid{pid},process_cpu_pct,");
        assert!(text.contains(&tag), "{tag} missing");
    }
}

#[test]
fn errors_in_vm_options() {
    let out = vmmon()
        .args(["record", "-n", "1", "--vm-match", "(qemu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--vm-match '(qemu'"), "{err}");
    let out = vmmon()
        .args(["record", "-n", "1", "--vm-pid", "4000000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--vm-pid 4000000000: no such process"),
        "{err}"
    );
    let out = vmmon()
        .args(["record", "-n", "1", "--format", "wide"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The recorder's own output, sample by sample from a synthetic tree, charged by
/// `vmmon charge`: the pool is split by packets exactly as set up.
#[test]
fn recorded_trace_is_charged_by_packets() {
    let dir = tempfile::tempdir().unwrap();
    let p = FakeProc::new(dir.path()).unwrap();
    let t = ticks_per_second();
    // web sends 30 packets/s and db 10/s; softirq runs 20% of one CPU, kthreads not at all.
    let state = |k: u64| {
        p.host_cpu([50 * k, 0, 0, 100 * k, 0, 0, t / 5 * k, 0, 0, 0])
            .unwrap();
        for (pid, name) in [(1000, "web"), (2000, "db")] {
            let arg = format!("guest={name},debug-threads=on");
            p.vmm(
                pid,
                "qemu-system-x86",
                &["qemu-system-x86_64", "-name", &arg],
                (t * k, 0),
            )
            .unwrap();
            p.thread(pid, pid + 1, "CPU 0/TCG", S / 2 * k, 0, 0)
                .unwrap();
            p.tun_fd(pid, 9, &format!("tap{pid}")).unwrap();
        }
        p.net_dev(&[
            ("tap1000", [100 * k, 30 * k, 0, 0]),
            ("tap2000", [0, 0, 50 * k, 10 * k]),
        ])
        .unwrap();
    };
    state(0);
    let config = RecordConfig {
        proc_root: p.root().to_path_buf(),
        sys_root: p.root().join("no-sys"),
        vms: Some(VmSelect::default()),
        ..RecordConfig::default()
    };
    let mut rec = Recorder::new(config).unwrap();
    let mut csv = rec.header();
    let mut prev = rec.schema().new_sample();
    rec.read(&mut prev);
    let mut cells = Vec::new();
    let mut line = String::new();
    for k in 1..=12 {
        state(k);
        let mut cur = rec.schema().new_sample();
        cur.mono = Duration::from_secs(k);
        cur.wall = Duration::from_secs(1_700_000_000 + k);
        rec.read(&mut cur);
        rec.schema().derive(&prev, &cur, &mut cells);
        rec.format_row(&cur, &cells, None, &mut line);
        csv.push_str(&line);
        prev = cur;
    }
    let trace = dir.path().join("host.csv");
    std::fs::write(&trace, csv).unwrap();
    let out = vmmon()
        .args(["charge", trace.to_str().unwrap(), "--by", "packets"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut seen = 0;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let v = |n: &str| f[col(n)].parse::<f64>().unwrap();
        // 0.2 CPU-s of pool per 1 s interval: 3/4 to web, 1/4 to db; each vCPU 0.5 s,
        // emulator 0.5 s.
        let want = match f[col("vm")] {
            "web" => 0.15,
            "db" => 0.05,
            "(unattributed)" => {
                assert_eq!(v("charged_cpu_s"), 0.0, "{l}");
                continue;
            }
            other => panic!("unexpected row for {other}: {l}"),
        };
        assert!((v("shared_cpu_s") - want).abs() < 1e-9, "{l}");
        assert!((v("vcpu_cpu_s") - 0.5).abs() < 1e-9, "{l}");
        assert!((v("emulator_cpu_s") - 0.5).abs() < 1e-9, "{l}");
        assert!((v("charged_cpu_s") - 1.0 - want).abs() < 1e-9, "{l}");
        seen += 1;
    }
    assert_eq!(seen, 24);
}
