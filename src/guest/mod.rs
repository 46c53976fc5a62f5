//! Boot a real small Linux guest under qemu, from Rust: for tests that compare what the host
//! sees of a VM with what the VM does, and for experiments that run `vmmon record` inside.
//!
//! A guest is Debian's own kernel ([`fetch_debian_kernel`], downloaded once into a cache and
//! never installed), an initramfs that holds the whole user space ([`Initramfs`]: a static
//! busybox, programs such as `vmmon` with their shared libraries, the virtio modules, and an
//! `/init` that brings the machine up, runs the caller's script and powers off), and a qemu
//! process ([`Guest`]) whose serial console is read line by line with the host's time of
//! arrival. Networking is a tap interface on the host (root) or qemu's user-mode network.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmmon::guest::{self, Config, Initramfs};
//!
//! let kernel = guest::fetch_debian_kernel(&guest::default_cache_dir()?)?;
//! let mut image = Initramfs::new("/bin/busybox".as_ref())?;
//! image.modules(&kernel, guest::VIRTIO_MODULES)?.script("echo hello from $(uname -r)");
//! image.write("/tmp/initrd.cpio".as_ref())?;
//! let mut vm = guest::Guest::boot(&Config::new("demo", &kernel, "/tmp/initrd.cpio".as_ref()))?;
//! let (time, line) = vm.wait_for("hello from", Duration::from_secs(60))?.into();
//! println!("{line} (at {time:?}); qemu pid {}", vm.pid());
//! vm.finish(Duration::from_secs(30))?;
//! # anyhow::Ok(())
//! ```

pub mod cpio;
mod elf;
pub mod initramfs;
pub mod kernel;
pub mod qemu;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::bail;

pub use initramfs::{ERROR_MARKER, EXIT_MARKER, Initramfs, READY_MARKER};
pub use kernel::{Kernel, Module, VIRTIO_MODULES, fetch_debian_kernel};
pub use qemu::{Accel, Config, ConsoleLine, Guest, Network, Stream, memory_for};

/// The guest's side of a point-to-point IPv4 network with the host: the two addresses on one
/// subnet and the link's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestNet {
    /// The host's address (the tap's, or qemu's user-mode gateway), the guest's default route.
    pub host: Ipv4Addr,
    /// The guest's address on `eth0`.
    pub guest: Ipv4Addr,
    /// Prefix length of the subnet (24 for a /24).
    pub prefix: u8,
    /// MTU of the link on both sides (tap and `eth0`).
    pub mtu: u32,
}

impl GuestNet {
    /// Host and guest on `subnet`.1 and .2 of a /24 (`GuestNet::slash24([10, 213, 7])`), MTU
    /// 1500.
    pub fn slash24(subnet: [u8; 3]) -> GuestNet {
        let [a, b, c] = subnet;
        GuestNet {
            host: Ipv4Addr::new(a, b, c, 1),
            guest: Ipv4Addr::new(a, b, c, 2),
            prefix: 24,
            mtu: 1500,
        }
    }

    /// qemu's user-mode network as it is by default: guest 10.0.2.15, host 10.0.2.2.
    pub fn user() -> GuestNet {
        GuestNet {
            host: Ipv4Addr::new(10, 0, 2, 2),
            guest: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            mtu: 1500,
        }
    }

    /// The same network with another MTU.
    pub fn with_mtu(self, mtu: u32) -> GuestNet {
        GuestNet { mtu, ..self }
    }

    /// The subnet mask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        }
    }

    /// The subnet's address (`10.213.7.0`).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.host) & self.mask())
    }

    /// Checks that the two addresses differ and share the subnet, and that the MTU is one
    /// Linux accepts on a virtio and a tap interface.
    pub fn check(&self) -> anyhow::Result<()> {
        if !(8..=30).contains(&self.prefix) {
            bail!("prefix /{} is not between /8 and /30", self.prefix);
        }
        if self.host == self.guest
            || u32::from(self.guest) & self.mask() != u32::from(self.network())
        {
            bail!(
                "host {} and guest {} are not two addresses of one /{} subnet",
                self.host,
                self.guest,
                self.prefix
            );
        }
        if !(68..=65535).contains(&self.mtu) {
            bail!("MTU {} is not between 68 and 65535", self.mtu);
        }
        Ok(())
    }
}

/// Where fetched kernels are kept: `$VMMON_CACHE`, else `$XDG_CACHE_HOME/vmmon`, else
/// `~/.cache/vmmon`.
pub fn default_cache_dir() -> anyhow::Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("VMMON_CACHE") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Ok(d.join("vmmon"));
    }
    match var("HOME") {
        Some(h) => Ok(h.join(".cache").join("vmmon")),
        None => bail!("no cache folder: set VMMON_CACHE (or XDG_CACHE_HOME or HOME)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_checked() {
        let n = GuestNet::slash24([10, 213, 7]).with_mtu(9000);
        n.check().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(10, 213, 7, 0));
        let other = GuestNet {
            guest: Ipv4Addr::new(10, 213, 8, 2),
            ..n
        };
        assert!(
            other
                .check()
                .unwrap_err()
                .to_string()
                .contains("one /24 subnet")
        );
        assert!(n.with_mtu(70000).check().is_err());
        GuestNet::user().check().unwrap();
    }
}
