//! A real guest under qemu, timed from the host: its CPU burn as the guest counts it and its
//! network bytes as the host receives them and the tap counts them. The base that the per-VM
//! host view (`vmmon record --vms`) is checked against.

use std::time::Duration;

use crate::util::{Guard, heavy, require_root, vmmon};
use crate::util_guest::{Scenario, can_boot, run_scenario};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn a_guest_burns_cpu_and_moves_bytes_as_scripted() {
    if !can_boot() || !require_root("the guest's network is a tap interface") {
        return;
    }
    let _quiet = heavy();
    let s = Scenario {
        // Two idle seconds before the burn: the baseline of the emulator's CPU.
        idle: Duration::from_secs(2),
        rest: Duration::from_secs(1),
        ..Scenario::default()
    };
    let mut seen = None;
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("host.csv");
    let (run, recorder) = run_scenario(&s, |pid, tap| {
        // qemu is the process, named by -name guest=…, and its tap exists with our MTU.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("qemu's cmdline");
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{tap}/mtu")).expect("tap mtu");
        seen = Some((String::from_utf8_lossy(&cmdline).replace('\0', " "), mtu));
        // The host's view of the VM, recorded for the whole life of the guest.
        let mut rec = vmmon();
        rec.args(["record", "--vms", "--rate", "10", "-o"])
            .arg(&trace);
        Guard::spawn(&mut rec)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let status = recorder.signal(libc::SIGINT).wait().expect("recorder");
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGINT),
        "recorder: {status:?}"
    );
    let (cmdline, mtu) = seen.expect("callback ran");
    assert!(
        cmdline.contains("guest=scenario,debug-threads=on"),
        "{cmdline}"
    );
    assert_eq!(mtu.trim(), "9000");

    let t = |a: std::time::SystemTime, b: std::time::SystemTime| {
        secs(b.duration_since(a).expect("order"))
    };
    eprintln!(
        "boot {:.1} s, burn {:.2} s, send {:.2} s, receive {:.2} s, power-off {:.2} s",
        t(run.booted, run.ready),
        t(run.burn.0, run.burn.1),
        t(run.sent.accepted, run.sent.done),
        t(run.received.accepted, run.received.done),
        t(run.end, run.exited)
    );

    // The guest's own count of its burn: USER_HZ ticks, within 20% of the burn's length.
    let busy = run.busy_ticks() as f64 / 100.0;
    assert!(
        (busy - secs(s.burn)).abs() <= 0.2 * secs(s.burn),
        "guest counted {busy:.2} busy CPU s for a {:?} burn: {:?} -> {:?}",
        s.burn,
        run.cpu.0,
        run.cpu.1
    );
    // And the host saw the burn take that long (markers before and after it).
    let wall = t(run.burn.0, run.burn.1);
    assert!(
        (wall - secs(s.burn)).abs() <= 0.2 * secs(s.burn),
        "burn took {wall:.2} s by the host's clock"
    );

    // Every byte, exactly, both ways.
    assert_eq!(run.sent.bytes, s.send);
    assert_eq!(run.guest_received, s.receive);
    // The tap carried the payload plus Ethernet, IP and TCP headers. The host writes 64 KiB
    // at a time and its segments are large (under 1% overhead at MTU 9000), but busybox nc
    // writes 4 KiB at a time and the guest sends them as they come (1.6–2.5% measured).
    let sent = (run.sent.tap.0, run.sent.tap.1);
    let received = (run.received.tap.0, run.received.tap.1);
    let rx = (sent.1.rx - sent.0.rx, sent.1.rx_packets - sent.0.rx_packets);
    let tx = (
        received.1.tx - received.0.tx,
        received.1.tx_packets - received.0.tx_packets,
    );
    for (what, (bytes, frames), payload, limit) in [
        ("guest to host", rx, s.send, 0.04),
        ("host to guest", tx, s.receive, 0.01),
    ] {
        let overhead = bytes as f64 / payload as f64 - 1.0;
        eprintln!(
            "{what}: {bytes} bytes in {frames} frames on the tap for {payload} of payload ({:.2}% more)",
            overhead * 100.0
        );
        assert!(
            (0.0..limit).contains(&overhead),
            "{what}: the tap counted {bytes} bytes for {payload} of payload ({:.2}% more)",
            overhead * 100.0
        );
    }

    check_host_view(&s, &run, &trace);

    // Phases in order on the host's clock, qemu gone with its tap.
    assert!(run.booted < run.ready && run.ready < run.burn.0 && run.burn.1 <= run.sent.done);
    assert!(
        run.sent.done <= run.received.accepted
            && run.received.done <= run.end
            && run.end <= run.exited
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", run.pid)).exists(),
        "qemu still runs"
    );
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{}", run.tap)).exists(),
        "tap {} left behind",
        run.tap
    );
}

/// Rows of a `record --vms` trace: each row's interval (start, end] in Unix seconds, and its
/// cells by column name (empty cells absent).
struct Trace {
    rows: Vec<(f64, f64, std::collections::HashMap<String, f64>)>,
}

impl Trace {
    fn read(path: &std::path::Path) -> Trace {
        let text = std::fs::read_to_string(path).expect("trace");
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .expect("header")
            .split(',')
            .map(String::from)
            .collect();
        let mut rows = Vec::new();
        let mut last_elapsed = 0.0;
        for line in lines {
            let cells: std::collections::HashMap<String, f64> = header
                .iter()
                .zip(line.split(','))
                .filter_map(|(h, c)| Some((h.clone(), c.parse().ok()?)))
                .collect();
            let (time, elapsed) = (cells["time"], cells["elapsed"]);
            rows.push((time - (elapsed - last_elapsed), time, cells));
            last_elapsed = elapsed;
        }
        Trace { rows }
    }

    /// ∫ column over (from, to] in the column's unit × s (rates are constant within a row).
    fn integral(&self, column: &str, from: f64, to: f64) -> f64 {
        self.rows
            .iter()
            .filter_map(|(a, b, c)| {
                let overlap = b.min(to) - a.max(from);
                Some(c.get(column)? * overlap.max(0.0))
            })
            .sum()
    }

    /// Mean of a column over the rows that lie inside [from, to].
    fn mean(&self, column: &str, from: f64, to: f64) -> f64 {
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|(a, b, _)| *a >= from && *b <= to)
            .filter_map(|(_, _, c)| c.get(column).copied())
            .collect();
        assert!(!v.is_empty(), "no rows of {column} in [{from}, {to}]");
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// What `record --vms` saw of the guest, against what the guest and the test know.
fn check_host_view(s: &Scenario, run: &crate::util_guest::GuestRun, trace: &std::path::Path) {
    let t = Trace::read(trace);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vmmon::trace::sidecar_path(trace)).expect("sidecar"))
            .expect("json");
    let vm = &meta["vms"][0];
    assert_eq!(vm["name"], "scenario", "{meta}");
    assert_eq!(vm["pid"], run.pid);
    assert_eq!(vm["vcpu_threads"], 1);
    assert_eq!(vm["taps"][0], run.tap.as_str());

    // vCPU threads against the guest's own count of its burn. Under TCG the guest's clock is
    // the host's, so a vCPU thread kept off a host CPU still counts as busy in the guest: the
    // margin of 0.2 s on each side covers the rows' edges, when the guest is idle.
    let guest_busy = run.busy_ticks() as f64 / 100.0;
    let (b0, b1) = (unix(run.burn.0), unix(run.burn.1));
    let vcpu = t.integral("scenario.vcpu_cpu_pct", b0 - 0.2, b1 + 0.2) / 100.0;
    let process = t.integral("scenario.process_cpu_pct", b0 - 0.2, b1 + 0.2) / 100.0;
    eprintln!(
        "burn: guest counted {guest_busy:.2} s busy; host saw vCPU threads {vcpu:.2} s \
         ({:.0}%), whole qemu {process:.2} s",
        100.0 * vcpu / guest_busy
    );
    assert!(
        vcpu >= 0.9 * guest_busy && vcpu <= 1.3 * guest_busy,
        "vCPU threads {vcpu:.3} s for {guest_busy:.3} s the guest counted busy"
    );

    // Every byte on the tap, from the per-interval rates: the rows telescope to the
    // counters' difference, which is the payload plus the frames' headers.
    let all = (f64::MIN, f64::MAX);
    let guest_tx = t.integral("scenario.net_guest_tx_bytes_per_s", all.0, all.1);
    let guest_rx = t.integral("scenario.net_guest_rx_bytes_per_s", all.0, all.1);
    for (what, bytes, payload) in [
        ("guest sent", guest_tx, s.send as f64),
        ("guest received", guest_rx, s.receive as f64),
    ] {
        eprintln!("{what}: {bytes:.0} bytes on the tap for {payload} of payload");
        assert!(
            (bytes / payload - 1.0).abs() < 0.05,
            "{what}: {bytes} tap bytes for {payload} of payload"
        );
    }
    let packets = t.integral("scenario.net_guest_tx_packets_per_s", all.0, all.1);
    let frames = (run.sent.tap.1.rx_packets - run.sent.tap.0.rx_packets) as f64;
    assert!(
        packets >= frames,
        "{packets} packets recorded, {frames} during the send"
    );

    // The emulator (qemu's main loop moves the tap's frames) works harder during the transfers
    // than while the guest sleeps.
    let idle = t.mean("scenario.emulator_cpu_pct", unix(run.ready), b0);
    let io = t.mean(
        "scenario.emulator_cpu_pct",
        unix(run.sent.accepted),
        unix(run.received.done),
    );
    eprintln!("emulator: {idle:.1}% of a CPU idle, {io:.1}% during the transfers");
    assert!(
        io > 2.0 * idle && io > idle + 5.0,
        "emulator {io:.1}% during I/O against {idle:.1}% idle"
    );

    // And the trace charges: every interval's shared pool is split, the VM is charged at
    // least its own CPU.
    let out = vmmon()
        .args(["charge", "--by", "bytes", "--summary", "-", "-o"])
        .arg(trace.with_extension("charge.csv"))
        .arg(trace)
        .output()
        .expect("charge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let line = summary
        .lines()
        .find(|l| l.starts_with("scenario,"))
        .unwrap_or_else(|| panic!("no scenario row in {summary}"));
    let f: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|c| c.parse().unwrap_or(0.0))
        .collect();
    // vcpu, emulator, vhost, shared, charged
    assert!((f[4] - (f[0] + f[1] + f[2] + f[3])).abs() < 1e-6, "{line}");
    assert!(f[0] >= 0.9 * guest_busy, "{line}");
}
