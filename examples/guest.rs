//! Boot a small Linux guest under qemu, run a shell command in it, and print its console.
//!
//! `cargo run --example guest -- 'head -3 /proc/cpuinfo'` (TCG), or with `--kvm` first to
//! use `/dev/kvm`. The first run fetches Debian's kernel into the cache (`$VMMON_CACHE`, else
//! `~/.cache/vmmon`). Needs qemu-system-x86 and busybox-static; no root (user-mode network).

use std::time::{Duration, Instant};

use vmmon::guest::{self, Accel, Config, GuestNet, Initramfs, Network};

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let kvm = args.first().is_some_and(|a| a == "--kvm");
    if kvm {
        args.remove(0);
    }
    let command = args
        .first()
        .cloned()
        .unwrap_or_else(|| "uname -a; ip -4 addr show eth0".into());

    let kernel = guest::fetch_debian_kernel(&guest::default_cache_dir()?)?;
    let net = GuestNet::user();
    let mut image = Initramfs::new("/bin/busybox".as_ref())?;
    image
        .modules(&kernel, guest::VIRTIO_MODULES)?
        .network(&net)
        .hostname("demo")
        .script(&command);
    let dir = tempfile::tempdir()?;
    let initrd = dir.path().join("initrd.cpio");
    image.write(&initrd)?;

    let mut config = Config::new("demo", &kernel, &initrd);
    config.network = Network::User {
        net,
        hostfwd: Vec::new(),
    };
    config.accel = if kvm { Accel::Kvm } else { Accel::Tcg };
    config.echo = true;
    let start = Instant::now();
    let mut vm = guest::Guest::boot(&config)?;
    eprintln!("qemu pid {}", vm.pid());
    vm.wait_for(guest::READY_MARKER, Duration::from_secs(120))?;
    let ready = start.elapsed();
    vm.finish(Duration::from_secs(120))?;
    eprintln!(
        "user space up after {ready:.1?}, powered off after {:.1?}",
        start.elapsed()
    );
    Ok(())
}
