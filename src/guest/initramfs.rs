//! The guest's whole user space as one initramfs: busybox, the programs the caller adds (with
//! their loader and shared libraries), kernel modules, files, and an `/init` script that
//! brings the machine up, runs the caller's script and powers off.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::cpio::{self, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};
use super::kernel::Kernel;
use super::{GuestNet, elf};

/// Where busybox goes in the image; `/init` installs its applets as links to it.
pub const BUSYBOX: &str = "/bin/busybox";
/// Where the caller's script goes in the image.
pub const SCRIPT: &str = "/etc/vmmon-guest/script";
/// Printed on the console by `/init` once the machine is up (modules loaded, network set),
/// just before the caller's script runs.
pub const READY_MARKER: &str = "vmmon-guest: ready";
/// Printed by `/init` after the caller's script, followed by its exit status; then the
/// machine powers off.
pub const EXIT_MARKER: &str = "vmmon-guest: exit ";
/// Printed by `/init` when bringing the machine up fails, followed by what failed; then the
/// machine powers off.
pub const ERROR_MARKER: &str = "vmmon-guest: error: ";

/// One entry of the image.
#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File { mode: u32, data: Vec<u8> },
    Link(String),
    CharDev(u32, u32),
}

/// An initramfs being put together; [`Initramfs::write`] makes the cpio archive.
#[derive(Debug, Clone)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
    modules: Vec<String>,
    lib_dirs: Vec<String>,
    net: Option<GuestNet>,
    hostname: Option<String>,
    script: String,
}

impl Initramfs {
    /// An image with the busybox at `busybox` (host path; usually `/bin/busybox` from
    /// Debian's `busybox-static`), which must be statically linked: the image has no C
    /// library of its own unless a program added with [`Initramfs::program`] brings one.
    pub fn new(busybox: &Path) -> anyhow::Result<Initramfs> {
        let data = std::fs::read(busybox).with_context(|| {
            format!(
                "cannot read busybox {} (install busybox-static)",
                busybox.display()
            )
        })?;
        if let Some(interp) = elf::interpreter(&data, &busybox.display().to_string())? {
            bail!(
                "{} is dynamically linked (loader {interp}); the guest needs a static busybox \
                 (Debian: busybox-static)",
                busybox.display()
            );
        }
        let mut image = Initramfs {
            entries: BTreeMap::new(),
            modules: Vec::new(),
            lib_dirs: Vec::new(),
            net: None,
            hostname: None,
            script: String::new(),
        };
        image.put(BUSYBOX, Entry::File { mode: 0o755, data })?;
        for dir in [
            "/proc",
            "/sys",
            "/dev",
            "/tmp",
            "/run",
            "/root",
            "/sbin",
            "/usr/bin",
            "/usr/sbin",
        ] {
            image.put(dir, Entry::Dir)?;
        }
        // The kernel opens /dev/console for init's stdin and stdout before /init runs, so
        // it must exist before devtmpfs is mounted; without it init's output goes nowhere.
        image.put("/dev/console", Entry::CharDev(5, 1))?;
        Ok(image)
    }

    /// Inserts `entry` at `path` and a directory for each missing parent.
    fn put(&mut self, path: &str, entry: Entry) -> anyhow::Result<()> {
        let path = normalise(path)?;
        if path == "init"
            || path.starts_with("etc/vmmon-guest")
            || (path == "etc" && !matches!(entry, Entry::Dir))
        {
            bail!("/{path} is written by the image itself; set the script with Initramfs::script");
        }
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Entry::Dir);
                }
                Some(Entry::Dir) => {}
                Some(_) => bail!("cannot add /{path} to the image: /{parent} is not a directory"),
            }
        }
        if matches!(self.entries.get(&path), Some(Entry::Dir)) && !matches!(entry, Entry::Dir) {
            bail!("cannot add /{path} to the image: it is already a directory");
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Adds a file with `data` and permission bits `mode` (`0o644`, `0o755`) at `guest`.
    pub fn file(
        &mut self,
        guest: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> anyhow::Result<&mut Self> {
        self.put(
            guest,
            Entry::File {
                mode: mode & 0o7777,
                data: data.into(),
            },
        )?;
        Ok(self)
    }

    /// Adds the host file `host` at `guest`, with its permission bits.
    pub fn host_file(&mut self, host: &Path, guest: &str) -> anyhow::Result<&mut Self> {
        let data =
            std::fs::read(host).with_context(|| format!("cannot read {}", host.display()))?;
        let mode = std::fs::metadata(host)
            .with_context(|| format!("cannot stat {}", host.display()))?
            .permissions()
            .mode();
        self.file(guest, data, mode)
    }

    /// Adds a symbolic link at `guest` pointing to `target`.
    pub fn symlink(&mut self, guest: &str, target: &str) -> anyhow::Result<&mut Self> {
        self.put(guest, Entry::Link(target.to_string()))?;
        Ok(self)
    }

    /// Adds the program `host` at `guest` so that it runs in the guest: a static program is
    /// copied alone; a dynamic one brings its ELF interpreter and the shared libraries `ldd`
    /// lists, each at the same path as on the host (their folders also go on
    /// `LD_LIBRARY_PATH`, for libraries found through the host's `ld.so.cache`).
    pub fn program(&mut self, host: &Path, guest: &str) -> anyhow::Result<&mut Self> {
        let data = std::fs::read(host)
            .with_context(|| format!("cannot read program {}", host.display()))?;
        let interp = elf::interpreter(&data, &host.display().to_string())?;
        self.put(guest, Entry::File { mode: 0o755, data })?;
        let Some(interp) = interp else {
            return Ok(self);
        };
        let mut libs = vec![PathBuf::from(&interp)];
        libs.extend(ldd(host)?);
        for lib in libs {
            let text = lib
                .to_str()
                .with_context(|| format!("library path {} is not UTF-8", lib.display()))?;
            if self.entries.contains_key(text.trim_start_matches('/')) {
                continue;
            }
            // Read through symlinks (`/lib64/ld-linux-x86-64.so.2`, merged /usr): the guest
            // gets a plain file where the program looks.
            let data = std::fs::read(&lib).with_context(|| {
                format!(
                    "cannot read {} (needed by {})",
                    lib.display(),
                    host.display()
                )
            })?;
            self.put(text, Entry::File { mode: 0o755, data })?;
            if let Some(dir) = lib.parent().and_then(|d| d.to_str())
                && !self.lib_dirs.iter().any(|d| d == dir)
            {
                self.lib_dirs.push(dir.to_string());
            }
        }
        Ok(self)
    }

    /// Adds kernel modules (and what they depend on, see [`Kernel::resolve_modules`]) under
    /// `/lib/modules/VERSION/`, to be loaded by `/init` in that order.
    pub fn modules(&mut self, kernel: &Kernel, wanted: &[&str]) -> anyhow::Result<&mut Self> {
        for m in kernel.resolve_modules(wanted)? {
            let path = format!("/lib/modules/{}/{}.ko", kernel.version, m.name);
            // Asked for twice (or a dependency of both calls): loaded once.
            if self.modules.contains(&path) {
                continue;
            }
            self.put(
                &path,
                Entry::File {
                    mode: 0o644,
                    data: m.data,
                },
            )?;
            self.modules.push(path);
        }
        Ok(self)
    }

    /// Configures `eth0` at boot: MTU, the guest's address, and a default route via the host.
    pub fn network(&mut self, net: &GuestNet) -> &mut Self {
        self.net = Some(*net);
        self
    }

    /// Sets the guest's host name.
    pub fn hostname(&mut self, name: &str) -> &mut Self {
        self.hostname = Some(name.to_string());
        self
    }

    /// The shell script (busybox `sh`) to run once the machine is up. Its exit status is
    /// printed after [`EXIT_MARKER`], then the machine powers off.
    pub fn script(&mut self, script: &str) -> &mut Self {
        self.script = script.to_string();
        self
    }

    /// The `/init` this image boots with.
    pub fn init(&self) -> String {
        let mut s = String::new();
        let q = shell_quote;
        s.push_str(INIT_PRELUDE);
        if let Some(h) = &self.hostname {
            let _ = writeln!(s, "hostname {}", q(h));
        }
        for m in &self.modules {
            let _ = writeln!(s, "insmod {m} || fail {}", q(&format!("insmod {m}")));
        }
        s.push_str("ip link set lo up || fail 'lo up'\n");
        if let Some(n) = &self.net {
            // virtio_net may register eth0 a moment after insmod returns.
            s.push_str(
                "i=0\nwhile [ ! -e /sys/class/net/eth0 ]; do\n  \
                 i=$((i+1)); [ $i -gt 100 ] && fail 'no eth0 after 10 s (virtio_net loaded?)'\n  \
                 usleep 100000\ndone\n",
            );
            let _ = writeln!(
                s,
                "ip link set eth0 mtu {} || fail 'eth0 mtu {}'",
                n.mtu, n.mtu
            );
            let _ = writeln!(
                s,
                "ip addr add {}/{} dev eth0 || fail 'eth0 address'",
                n.guest, n.prefix
            );
            s.push_str("ip link set eth0 up || fail 'eth0 up'\n");
            let _ = writeln!(
                s,
                "ip route add default via {} || fail 'default route'",
                n.host
            );
        }
        if !self.lib_dirs.is_empty() {
            let _ = writeln!(s, "export LD_LIBRARY_PATH={}", q(&self.lib_dirs.join(":")));
        }
        let _ = writeln!(s, "echo {}", q(READY_MARKER));
        let _ = writeln!(s, "sh {SCRIPT}");
        let _ = writeln!(s, "echo \"{EXIT_MARKER}$?\"");
        s.push_str("sync\npoweroff -f\n");
        s
    }

    /// Writes the image as an uncompressed newc cpio archive to `out`.
    pub fn write_to<W: Write>(&self, out: W) -> anyhow::Result<W> {
        let generated = [
            (
                "init",
                Entry::File {
                    mode: 0o755,
                    data: self.init().into_bytes(),
                },
            ),
            ("etc", Entry::Dir),
            ("etc/vmmon-guest", Entry::Dir),
            (
                &SCRIPT[1..],
                Entry::File {
                    mode: 0o755,
                    data: self.script.clone().into_bytes(),
                },
            ),
        ];
        let mut all: BTreeMap<&str, &Entry> =
            self.entries.iter().map(|(p, e)| (p.as_str(), e)).collect();
        for (path, entry) in &generated {
            all.entry(path).or_insert(entry);
        }
        let mut w = cpio::Writer::new(out);
        // Sorted paths put every folder before what it holds, as the kernel needs.
        for (path, entry) in all {
            match entry {
                Entry::Dir => w.entry(path, S_IFDIR | 0o755, (0, 0), &[]),
                Entry::File { mode, data } => w.entry(path, S_IFREG | mode, (0, 0), data),
                Entry::Link(target) => w.entry(path, S_IFLNK | 0o777, (0, 0), target.as_bytes()),
                Entry::CharDev(major, minor) => {
                    w.entry(path, S_IFCHR | 0o600, (*major, *minor), &[])
                }
            }?;
        }
        Ok(w.finish()?)
    }

    /// Writes the image to the file `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create initramfs {}", path.display()))?;
        self.write_to(BufWriter::new(file))
            .and_then(|w| w.into_inner().map_err(|e| e.into_error().into()))
            .and_then(|f| f.sync_all().map_err(Into::into))
            .with_context(|| format!("cannot write initramfs {}", path.display()))?;
        Ok(())
    }
}

/// `/init` up to the modules: busybox's applets, the kernel's file systems, and `fail`, which
/// reports and powers off (init must not exit: the kernel would panic).
const INIT_PRELUDE: &str = r#"#!/bin/busybox sh
# Generated by vmmon::guest::Initramfs.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
echo "vmmon-guest: init $(uname -r)"
fail() {
  echo "vmmon-guest: error: $*"
  poweroff -f
  sleep 60
}
"#;

/// `/x/y/` → `x/y`, refusing empty, relative and `..` paths.
fn normalise(path: &str) -> anyhow::Result<String> {
    if !path.starts_with('/') {
        bail!("image path {path:?} must be absolute");
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        bail!("image path {path:?} must name a file below / without ..");
    }
    Ok(parts.join("/"))
}

/// `'…'` with embedded quotes escaped, for the generated shell script.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shared libraries `ldd` lists for `program` (the vDSO left out).
fn ldd(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output().with_context(|| {
        format!(
            "cannot run ldd on {} (glibc's ldd, in libc-bin)",
            program.display()
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ldd {} failed: {}{}",
            program.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", program.display()))
}

fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let target = rest.split_whitespace().next().unwrap_or_default();
                if target == "not" {
                    bail!("shared library {} not found", name.trim());
                }
                target
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert_eq!(err.to_string(), "shared library libfoo.so.1 not found");
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(normalise("/a//b/./c/").unwrap(), "a/b/c");
        for bad in ["a/b", "/", "/a/../b", ""] {
            assert!(normalise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
