//! `vmmon::guest`: the image's contents read back by an independent cpio (busybox's), module
//! resolution on a tree with compressed and built-in modules, a guest on qemu's user-mode
//! network (no root), and the errors a user can cause.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vmmon::guest::{self, Config, GuestNet, Initramfs, Kernel, Network};

use crate::util::{heavy, require, vmmon_bin};
use crate::util_guest::{BOOT_TIMEOUT, can_boot, image, kernel, memory_mib};

fn busybox() -> &'static Path {
    Path::new("/bin/busybox")
}

#[test]
fn the_image_reads_back_with_busybox_cpio() {
    if !require(
        "busybox",
        "an independent cpio reader (Debian: busybox-static)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut image = Initramfs::new(busybox()).expect("image");
    image
        .file("/etc/hello", "hi\n", 0o640)
        .expect("file")
        .symlink("/usr/bin/hello", "/etc/hello")
        .expect("link")
        .program(&vmmon_bin(), "/bin/vmmon")
        .expect("vmmon")
        .script("echo the script");
    let archive = dir.path().join("initrd.cpio");
    image.write(&archive).expect("write");

    let list = Command::new("busybox")
        .args(["cpio", "-t", "-F"])
        .arg(&archive)
        .output()
        .expect("busybox cpio -t");
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let names = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = names.lines().collect();
    for want in [
        "init",
        "bin/busybox",
        "bin/vmmon",
        "dev/console",
        "etc/hello",
        "usr/bin/hello",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    // The loader the program asks for, at the same path as on the host.
    let exe = std::fs::read(vmmon_bin()).expect("vmmon");
    if exe.windows(b"ld-linux".len()).any(|w| w == b"ld-linux") {
        assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("libc.so.6")), "{names:?}");
    }
    // Every folder comes before what it holds, as the kernel needs.
    for (i, n) in names.iter().enumerate() {
        if let Some((parent, _)) = n.rsplit_once('/') {
            let at = names.iter().position(|m| *m == parent).expect(parent);
            assert!(at < i, "{parent} after {n}");
        }
    }

    // Unpacked by busybox (device nodes need root; the rest does not).
    let out = dir.path().join("root");
    std::fs::create_dir(&out).expect("mkdir");
    let archive_file = std::fs::File::open(&archive).expect("open");
    let unpack = Command::new("busybox")
        .args(["cpio", "-i", "-d", "-m"])
        .current_dir(&out)
        .stdin(archive_file)
        .output()
        .expect("busybox cpio -i");
    let err = String::from_utf8_lossy(&unpack.stderr);
    assert!(unpack.status.success() || err.contains("console"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(out.join("etc/hello")).expect("etc/hello");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hello")).expect("read"),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("usr/bin/hello")).expect("link"),
        Path::new("/etc/hello")
    );
    assert_eq!(std::fs::read(out.join("bin/vmmon")).expect("vmmon"), exe);
    let init = std::fs::read_to_string(out.join("init")).expect("init");
    assert!(init.starts_with("#!/bin/busybox sh\n"), "{init}");
    assert!(
        init.contains(guest::READY_MARKER) && init.ends_with("poweroff -f\n"),
        "{init}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("etc/vmmon-guest/script")).expect("script"),
        "echo the script"
    );
}

#[test]
fn image_errors_name_the_file() {
    let err = Initramfs::new(&vmmon_bin()).unwrap_err().to_string();
    assert!(
        err.contains("is dynamically linked") && err.contains("busybox-static"),
        "{err}"
    );
    let err = Initramfs::new(Path::new("/no/busybox")).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot read busybox /no/busybox"),
        "{err:#}"
    );
    if require("busybox", "the guest's user space") {
        let mut image = Initramfs::new(busybox()).expect("image");
        let err = image.file("init", "x", 0o755).unwrap_err().to_string();
        assert!(err.contains("must be absolute"), "{err}");
        let err = image.file("/init", "x", 0o755).unwrap_err().to_string();
        assert!(err.contains("written by the image itself"), "{err}");
        image.file("/a/b", "x", 0o644).expect("file");
        let err = image.file("/a/b/c", "x", 0o644).unwrap_err().to_string();
        assert!(err.contains("/a/b is not a directory"), "{err}");
        let err = image
            .program(Path::new("/etc/hostname"), "/bin/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/hostname is not an ELF file"), "{err}");
    }
}

#[test]
fn modules_come_with_their_dependencies_first_compressed_or_built_in() {
    if !can_boot() || !require("xz", "compresses test modules (Debian: xz-utils)") {
        return;
    }
    let real = kernel();
    // A module tree of the modules virtio_net needs, some xz-compressed, one built in.
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("6.0.0-test");
    let mut originals = std::collections::HashMap::new();
    for m in real.resolve_modules(&["virtio_net"]).expect("resolve") {
        let dest = tree.join("kernel").join(format!("{}.ko", m.name));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dest, &m.data).expect("write");
        if m.name.contains("failover") {
            let st = Command::new("xz").arg(&dest).status().expect("xz");
            assert!(st.success());
        }
        originals.insert(m.name.clone(), m.data);
    }
    std::fs::write(
        tree.join("modules.builtin"),
        "kernel/drivers/virtio/virtio_ring.ko\n",
    )
    .expect("builtin");
    let vmlinuz = dir.path().join("vmlinuz");
    std::fs::write(&vmlinuz, "not booted").expect("vmlinuz");
    let fake = Kernel::new(&vmlinuz, &tree).expect("kernel");
    assert_eq!(fake.version, "6.0.0-test");

    let mods = fake.resolve_modules(&["virtio-net"]).expect("resolve");
    let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
    // Debian's 6.1: virtio_net depends on virtio_ring, virtio, net_failover; net_failover on
    // failover; virtio on virtio_ring (built in here, so left out).
    assert_eq!(names, ["virtio", "failover", "net_failover", "virtio_net"]);
    for m in &mods {
        assert_eq!(m.data, originals[&m.name], "{} uncompressed", m.name);
    }
    assert!(mods[1].path.to_string_lossy().ends_with("failover.ko.xz"));

    // /init loads them in that order, each once however often it was asked for.
    let mut image = Initramfs::new(busybox()).expect("image");
    image.modules(&fake, &["virtio_net"]).expect("modules");
    image
        .modules(&fake, &["failover", "virtio_net"])
        .expect("modules again");
    let init = image.init();
    let loads: Vec<&str> = init.lines().filter(|l| l.starts_with("insmod ")).collect();
    assert_eq!(loads.len(), 4, "{init}");
    for (line, name) in loads.iter().zip(&names) {
        assert!(
            line.starts_with(&format!("insmod /lib/modules/6.0.0-test/{name}.ko ||")),
            "{line}"
        );
    }

    let err = fake
        .resolve_modules(&["no_such_module"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kernel 6.0.0-test has no module no_such_module"),
        "{err}"
    );
    std::fs::write(tree.join("kernel/virtio.ko"), "junk").expect("junk");
    let err = fake
        .resolve_modules(&["virtio_net"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("virtio.ko is not an ELF file"), "{err}");
}

#[test]
fn a_guest_on_user_networking_reaches_the_host_and_reports_its_script_status() {
    if !can_boot() {
        return;
    }
    let _heavy = heavy();
    let kernel = kernel();
    // qemu's user-mode network maps the guest's 10.0.2.2 to the host's loopback.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let net = GuestNet::user();
    let mut image = image(&kernel);
    image.network(&net).script(&format!(
        "vmmon --version\necho hello from the guest | nc {} {port}\nexit 3\n",
        net.host
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let initrd = dir.path().join("initrd.cpio");
    image.write(&initrd).expect("write");
    let mut config = Config::new("usernet", &kernel, &initrd);
    config.memory_mib = memory_mib(&initrd);
    config.network = Network::User {
        net,
        hostfwd: Vec::new(),
    };
    let mut vm = guest::Guest::boot(&config).expect("boot");

    // A timeout names the pattern and quotes the console.
    let err = vm
        .wait_for("never printed", Duration::from_millis(1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no console line with \"never printed\" within"),
        "{err}"
    );

    let ready = vm
        .wait_for(guest::READY_MARKER, BOOT_TIMEOUT)
        .expect("ready");
    let version = vm
        .wait_for("vmmon ", Duration::from_secs(60))
        .expect("vmmon runs");
    assert_eq!(version.text, format!("vmmon {}", env!("CARGO_PKG_VERSION")));
    assert!(ready.time <= version.time);
    let (mut conn, peer) = listener.accept().expect("the guest connects");
    assert!(peer.ip().is_loopback(), "{peer}");
    let mut said = String::new();
    conn.read_to_string(&mut said).expect("read");
    assert_eq!(said, "hello from the guest\n");
    // The guest's nc half-closed after its stdin; it ends when the host closes too.
    drop(conn);

    let err = vm.finish(Duration::from_secs(60)).unwrap_err().to_string();
    assert!(
        err.contains("guest usernet: the script exited with 3; console:"),
        "{err}"
    );
    assert!(
        err.contains(&format!("  | {}3", guest::EXIT_MARKER)),
        "{err}"
    );
    assert_eq!(vm.script_status(), Some(3));
    let console = vm.console();
    assert!(console.windows(2).all(|w| w[0].time <= w[1].time));
    assert!(console.iter().any(|l| l.text.contains("Linux version")));
}

#[test]
fn too_little_memory_for_the_image_is_explained() {
    if !can_boot() {
        return;
    }
    let _heavy = heavy();
    let kernel = kernel();
    let dir = tempfile::tempdir().expect("tempdir");
    // 120 MiB of image in a 192 MiB guest: the kernel starts and runs out of memory
    // unpacking it. 160 MiB: qemu cannot even load it and exits without a word.
    for (mib, want) in [
        (
            120,
            "kernel panic (the initramfs, {size} MiB, did not fit in the guest's 192 MiB: raise Config::memory_mib)",
        ),
        (
            160,
            "(the kernel never started; is the initramfs, {size} MiB, too large for 192 MiB? raise Config::memory_mib)",
        ),
    ] {
        let mut image = Initramfs::new(busybox()).expect("image");
        image
            .file("/big", vec![0u8; mib << 20], 0o644)
            .expect("file");
        let initrd = dir.path().join(format!("initrd-{mib}.cpio"));
        image.write(&initrd).expect("write");
        let mut config = Config::new("small", &kernel, &initrd);
        config.memory_mib = 192;
        let mut vm = guest::Guest::boot(&config).expect("boot");
        let err = vm
            .wait_for(guest::READY_MARKER, BOOT_TIMEOUT)
            .unwrap_err()
            .to_string();
        let size = std::fs::metadata(&initrd).expect("size").len() >> 20;
        let want = want.replace("{size}", &size.to_string());
        assert!(err.contains(&want), "{mib} MiB: {err}");
    }
}

#[test]
fn boot_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vmlinuz = dir.path().join("vmlinuz");
    std::fs::write(&vmlinuz, "x").expect("write");
    let kernel = Kernel::new(&vmlinuz, dir.path()).expect("kernel");
    let missing = dir.path().join("initrd.cpio");
    let err = guest::Guest::boot(&Config::new("a", &kernel, &missing))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("initramfs {} does not exist", missing.display())
    );

    std::fs::write(&missing, "x").expect("write");
    let err = guest::Guest::boot(&Config::new("a,b", &kernel, &missing))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be non-empty without ','"), "{err}");

    let mut config = Config::new("a", &kernel, &missing);
    config.qemu = "/no/qemu-system-x86_64".into();
    let err = guest::Guest::boot(&config).unwrap_err().to_string();
    assert!(
        err.contains("/no/qemu-system-x86_64 is not installed"),
        "{err}"
    );

    // A guest subnet the host already uses would route the guest's traffic elsewhere.
    config.qemu = "qemu-system-x86_64".into();
    let lo = GuestNet {
        host: [127, 0, 0, 1].into(),
        guest: [127, 0, 0, 2].into(),
        prefix: 8,
        mtu: 1500,
    };
    config.network = Network::Tap {
        ifname: "vmmon-test".into(),
        net: lo,
        vhost: false,
    };
    if require("ip", "lists the host's addresses (iproute2)") {
        let err = guest::Guest::boot(&config).unwrap_err().to_string();
        assert!(
            err.contains("the host already has 127.0.0.1/8 on lo"),
            "{err}"
        );
    }
    config.network = Network::Tap {
        ifname: "a-name-longer-than-15".into(),
        net: GuestNet::slash24([10, 213, 78]),
        vhost: false,
    };
    let err = guest::Guest::boot(&config).unwrap_err().to_string();
    assert!(err.contains("must be 1 to 15 bytes"), "{err}");
}
