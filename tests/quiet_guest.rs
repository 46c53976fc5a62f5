//! A real guest under qemu, timed from the host: its CPU burn as the guest counts it and its
//! network bytes as the host receives them and the tap counts them. The base that the per-VM
//! host view (`vmmon record --vms`) is checked against.

use std::time::Duration;

use crate::util::{heavy, require_root};
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
    let s = Scenario::default();
    let mut seen = None;
    let (run, ()) = run_scenario(&s, |pid, tap| {
        // qemu is the process, named by -name guest=…, and its tap exists with our MTU.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("qemu's cmdline");
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{tap}/mtu")).expect("tap mtu");
        seen = Some((String::from_utf8_lossy(&cmdline).replace('\0', " "), mtu));
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
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
