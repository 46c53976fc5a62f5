//! Per-sample cost of `record --vms` with 50 VM processes of 4 threads each (plus 200 other
//! processes and 32 kernel threads) on a synthetic `/proc` tree, against the same recorder
//! without `--vms`. Run: `cargo bench --bench vms`. Figures go to docs/performance.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vmmon::record::fixture::FakeProc;
use vmmon::record::{Cell, Layout, RecordConfig, Recorder, VmSelect};

const VMS: u32 = 50;

fn tree(p: &FakeProc) {
    let mut nets = vec![("eth0".to_string(), [1u64, 1, 1, 1])];
    for i in 0..VMS {
        let pid = 10_000 + 10 * i;
        let name = format!("guest=vm{i},debug-threads=on");
        let args = ["qemu-system-x86_64", "-name", &name, "-m", "1024"];
        p.vmm(pid, "qemu-system-x86", &args, (100, 50)).unwrap();
        p.thread(pid, pid, "qemu-system-x86", 1_000_000, 0, 0)
            .unwrap();
        p.thread(pid, pid + 1, "CPU 0/KVM", 5_000_000, 1000, 3)
            .unwrap();
        p.thread(pid, pid + 2, "CPU 1/KVM", 5_000_000, 1000, 3)
            .unwrap();
        p.thread(pid, pid + 3, "vhost-1", 1_000_000, 0, 0).unwrap();
        // Descriptors a qemu holds besides its tap: disk image, eventfds, the monitor.
        for fd in 0..12 {
            p.write(&format!("{pid}/fdinfo/{fd}"), "pos:\t0\n").unwrap();
            let _ =
                std::os::unix::fs::symlink("/dev/null", p.root().join(format!("{pid}/fd/{fd}")));
        }
        p.tun_fd(pid, 20, &format!("tap{i}")).unwrap();
        nets.push((format!("tap{i}"), [i as u64, 1, 2, 3]));
    }
    let refs: Vec<(&str, [u64; 4])> = nets.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    p.net_dev(&refs).unwrap();
    for i in 0..200 {
        p.stat(&(2000 + i).to_string(), "bash", 0, 5, 5, 50, 0)
            .unwrap();
    }
    for i in 0..32 {
        let comm = if i < 2 {
            format!("ksoftirqd/{i}")
        } else {
            format!("kworker/{i}:1")
        };
        p.kthread(100 + i, &comm, 1_000_000).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    // On tmpfs where there is one: like procfs, it is served from memory; an ext4 folder
    // made a directory listing cost several times more than listing /proc does.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let p = FakeProc::new(dir.path()).unwrap();
    tree(&p);
    let mut g = c.benchmark_group("vms_50x4");
    g.measurement_time(Duration::from_secs(5));
    for (label, vms) in [("host_only", None), ("with_vms", Some(VmSelect::default()))] {
        let config = RecordConfig {
            proc_root: p.root().to_path_buf(),
            sys_root: p.root().join("no-sys"),
            vms,
            layout: Layout::Wide,
            ..RecordConfig::default()
        };
        let mut rec = Recorder::new(config).unwrap();
        let schema = rec.schema().clone();
        let mut prev = schema.new_sample();
        let mut cur = schema.new_sample();
        rec.read(&mut prev);
        let mut cells: Vec<Cell> = Vec::new();
        let mut line = String::new();
        g.bench_function(format!("{label}_sample"), |b| {
            b.iter(|| {
                rec.read(&mut cur);
                rec.schema().derive(&prev, &cur, &mut cells);
                rec.format_row(&cur, &cells, None, &mut line);
                black_box(&line);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
