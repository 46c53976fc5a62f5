//! The guest's kernel: Debian's own, fetched with apt and unpacked into a cache (never
//! installed), or one the caller names; and its modules, resolved in load order.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

use super::elf;

/// The meta-package whose dependency names the current Debian kernel image package.
const META_PACKAGE: &str = "linux-image-amd64";

/// The virtio drivers a guest needs for the devices [`super::Guest`] gives it (network, disk,
/// console). Their dependencies (`virtio`, `virtio_ring`, `virtio_pci_modern_dev`,
/// `net_failover`, …) are found from the modules themselves.
pub const VIRTIO_MODULES: &[&str] = &["virtio_pci", "virtio_net", "virtio_blk", "virtio_console"];

/// A kernel image and the modules built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The bootable image (`vmlinuz-VERSION`, compressed).
    pub vmlinuz: PathBuf,
    /// The same kernel uncompressed, when it has a PVH entry point: qemu boots it directly,
    /// without the decompression that takes the guest about 3.5 s under TCG. Preferred
    /// over `vmlinuz` when present ([`fetch_debian_kernel`] makes it with `xz`).
    pub vmlinux: Option<PathBuf>,
    /// The module tree for that kernel (`…/lib/modules/VERSION`).
    pub modules: PathBuf,
    /// The kernel release (`6.1.0-56-amd64`): the module tree's name.
    pub version: String,
}

/// One kernel module's code, ready to be `insmod`ed.
#[derive(Debug, Clone)]
pub struct Module {
    /// The module's name (underscores, as `lsmod` shows it).
    pub name: String,
    /// The file it came from (possibly compressed).
    pub path: PathBuf,
    /// The uncompressed `.ko`.
    pub data: Vec<u8>,
}

impl Kernel {
    /// A kernel the caller provides: its image and its module tree (`/lib/modules/VERSION`,
    /// whose last component is the version).
    pub fn new(vmlinuz: &Path, modules: &Path) -> anyhow::Result<Kernel> {
        if !vmlinuz.is_file() {
            bail!("kernel image {} does not exist", vmlinuz.display());
        }
        if !modules.is_dir() {
            bail!(
                "kernel module directory {} does not exist",
                modules.display()
            );
        }
        let version = modules
            .file_name()
            .and_then(|v| v.to_str())
            .with_context(|| format!("module directory {} has no name", modules.display()))?;
        Ok(Kernel {
            vmlinuz: vmlinuz.to_path_buf(),
            vmlinux: None,
            modules: modules.to_path_buf(),
            version: version.to_string(),
        })
    }

    /// The kernel in an unpacked package tree `root` (`root/boot/vmlinuz-V` and
    /// `root/lib/modules/V` or `root/usr/lib/modules/V`).
    pub fn in_tree(root: &Path) -> anyhow::Result<Kernel> {
        let boot = root.join("boot");
        let entries =
            std::fs::read_dir(&boot).with_context(|| format!("cannot read {}", boot.display()))?;
        let mut images = Vec::new();
        for e in entries {
            let name = e
                .with_context(|| format!("cannot read {}", boot.display()))?
                .file_name();
            if let Some(v) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) {
                images.push(v.to_string());
            }
        }
        let [version] = images.as_slice() else {
            bail!(
                "{} holds {} kernel images, expected one",
                boot.display(),
                images.len()
            );
        };
        let modules = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|d| root.join(d).join(version))
            .find(|d| d.is_dir())
            .with_context(|| format!("{} has no lib/modules/{version}", root.display()))?;
        let mut kernel = Kernel::new(&boot.join(format!("vmlinuz-{version}")), &modules)?;
        let vmlinux = boot.join(format!("vmlinux-{version}"));
        kernel.vmlinux = vmlinux.is_file().then_some(vmlinux);
        Ok(kernel)
    }

    /// The image qemu should boot: `vmlinux` if there is one, else `vmlinuz`.
    pub fn boot_image(&self) -> &Path {
        self.vmlinux.as_deref().unwrap_or(&self.vmlinuz)
    }

    /// The modules `wanted` and everything they depend on, each once, dependencies first (the
    /// order to `insmod` them). Modules built into the kernel (`modules.builtin`) are left
    /// out. Dependencies come from each module's own `.modinfo` (`depends=`), so no
    /// `modules.dep` (which `depmod` writes at install time, and a package does not carry)
    /// is needed. Compressed modules (`.ko.xz`, `.ko.gz`, `.ko.zst`) are uncompressed: the
    /// guest's busybox `insmod` hands the file to the kernel as it is.
    pub fn resolve_modules(&self, wanted: &[&str]) -> anyhow::Result<Vec<Module>> {
        let files = self.module_files()?;
        let builtin = self.builtin()?;
        let mut order = Vec::new();
        let mut done = HashSet::new();
        let mut visiting = Vec::new();
        for w in wanted {
            self.visit(
                &canonical(w),
                &files,
                &builtin,
                &mut done,
                &mut visiting,
                &mut order,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        files: &HashMap<String, PathBuf>,
        builtin: &HashSet<String>,
        done: &mut HashSet<String>,
        visiting: &mut Vec<String>,
        order: &mut Vec<Module>,
    ) -> anyhow::Result<()> {
        if done.contains(name) || builtin.contains(name) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == name) {
            bail!(
                "kernel modules depend on each other in a cycle: {} -> {name}",
                visiting.join(" -> ")
            );
        }
        let Some(path) = files.get(name) else {
            bail!(
                "kernel {} has no module {name} (neither a file under {} nor in modules.builtin)",
                self.version,
                self.modules.display()
            );
        };
        let data = read_module(path)?;
        let what = path.display().to_string();
        let deps: Vec<String> = elf::modinfo(&data, &what)?
            .into_iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| {
                v.split(',')
                    .filter(|d| !d.is_empty())
                    .map(canonical)
                    .collect::<Vec<_>>()
            })
            .collect();
        visiting.push(name.to_string());
        for d in deps {
            self.visit(&d, files, builtin, done, visiting, order)?;
        }
        visiting.pop();
        done.insert(name.to_string());
        order.push(Module {
            name: name.to_string(),
            path: path.clone(),
            data,
        });
        Ok(())
    }

    /// Every module file under the tree, by module name.
    fn module_files(&self) -> anyhow::Result<HashMap<String, PathBuf>> {
        let mut files = HashMap::new();
        let mut dirs = vec![self.modules.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            for e in entries {
                let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
                let path = e.path();
                let kind = e
                    .file_type()
                    .with_context(|| format!("cannot stat {}", path.display()))?;
                if kind.is_dir() {
                    dirs.push(path);
                } else if let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(module_name)
                {
                    files.insert(name, path);
                }
            }
        }
        Ok(files)
    }

    /// Names of the modules built into the image, from `modules.builtin` (absent: none).
    fn builtin(&self) -> anyhow::Result<HashSet<String>> {
        let path = self.modules.join("modules.builtin");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|l| l.rsplit('/').next().and_then(module_name))
            .collect())
    }
}

/// Module names use underscores; file names may use dashes (`virtio-gpu.ko`).
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a file name ending in `.ko` (possibly compressed), else `None`.
fn module_name(file: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.gz", ".ko.zst"]
        .iter()
        .find_map(|s| file.strip_suffix(s))?;
    Some(canonical(stem))
}

/// A module file's uncompressed contents. Decompressors are run as programs: `xz` (or
/// busybox's `xzcat`), `gzip`, `zstd`, whichever the suffix asks for.
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tools: &[&[&str]] = if name.ends_with(".ko.xz") {
        &[&["xz", "-dc"], &["busybox", "xzcat"]]
    } else if name.ends_with(".ko.gz") {
        &[&["gzip", "-dc"], &["busybox", "zcat"]]
    } else if name.ends_with(".ko.zst") {
        &[&["zstd", "-dc"]]
    } else {
        return std::fs::read(path)
            .with_context(|| format!("cannot read module {}", path.display()));
    };
    for tool in tools {
        match Command::new(tool[0]).args(&tool[1..]).arg(path).output() {
            Ok(out) if out.status.success() => return Ok(out.stdout),
            Ok(out) => bail!(
                "{} could not uncompress {}: {}",
                tool.join(" "),
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot run {}", tool[0])),
        }
    }
    let names: Vec<&str> = tools.iter().map(|t| t[0]).collect();
    bail!(
        "module {} is compressed and none of {} is installed to uncompress it",
        path.display(),
        names.join(", ")
    )
}

/// Runs a host program, with an error that says which program is missing or what it said.
fn run(cmd: &mut Command, need: &str) -> anyhow::Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("{program} is not installed; {need}")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    if !out.status.success() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The package `linux-image-amd64` depends on (`linux-image-6.1.0-56-amd64`), by apt-cache.
pub fn debian_kernel_package() -> anyhow::Result<String> {
    let need =
        "fetching Debian's kernel needs apt (Debian or Ubuntu); or give a kernel with Kernel::new";
    let out = run(
        Command::new("apt-cache").args(["depends", META_PACKAGE]),
        need,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| {
            format!("`apt-cache depends {META_PACKAGE}` names no linux-image package (run apt-get update?): {text}")
        })
}

/// Debian's current kernel (the package `linux-image-amd64` depends on), downloaded with
/// `apt-get download` and unpacked with `dpkg -x` under `cache/debian-kernel/`; nothing is
/// installed and `/boot` is not touched. Once there, later calls return it without running
/// apt at all (delete the folder to pick up a newer kernel). Concurrent first calls, from
/// threads or processes, take turns on a lock file, so only one downloads.
pub fn fetch_debian_kernel(cache: &Path) -> anyhow::Result<Kernel> {
    let base = cache.join("debian-kernel");
    if let Some(k) = cached(&base)? {
        return Ok(k);
    }
    std::fs::create_dir_all(&base)
        .with_context(|| format!("cannot create cache {}", base.display()))?;
    let _lock = lock(&base.join(".lock"))?;
    // Another caller may have finished while this one waited.
    if let Some(k) = cached(&base)? {
        return Ok(k);
    }
    let package = debian_kernel_package()?;
    let work = base.join(format!(".work-{}", std::process::id()));
    remove_dir_if_exists(&work)?;
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = download_and_unpack(&package, &work, &base);
    // The work folder holds the .deb and, after a failure, a partial tree.
    let _ = std::fs::remove_dir_all(&work);
    result?;
    cached(&base)?
        .with_context(|| format!("{} unpacked but not found in {}", package, base.display()))
}

fn download_and_unpack(package: &str, work: &Path, base: &Path) -> anyhow::Result<()> {
    let need = "fetching Debian's kernel needs apt and dpkg (Debian or Ubuntu); or give a kernel with Kernel::new";
    run(
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(work),
        need,
    )?;
    let deb = std::fs::read_dir(work)
        .with_context(|| format!("cannot read {}", work.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| {
            format!(
                "apt-get download {package} left no .deb in {}",
                work.display()
            )
        })?;
    let tree = work.join("tree");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree), need)?;
    // Check the tree before it is published.
    let kernel = Kernel::in_tree(&tree)?;
    let vmlinux = kernel
        .vmlinuz
        .with_file_name(format!("vmlinux-{}", kernel.version));
    // Only an optimisation: without xz, or for a kernel without a PVH entry, boot vmlinuz.
    let _ = extract_vmlinux(&kernel.vmlinuz, &vmlinux, work);
    let dest = base.join(package);
    remove_dir_if_exists(&dest)?;
    std::fs::rename(&tree, &dest)
        .with_context(|| format!("cannot move {} to {}", tree.display(), dest.display()))?;
    // Written last and renamed into place: a reader sees no pointer or a complete tree.
    let tmp = work.join("current");
    std::fs::write(&tmp, format!("{package}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let current = base.join("current");
    std::fs::rename(&tmp, &current).with_context(|| format!("cannot write {}", current.display()))
}

/// Uncompresses the kernel inside the bzImage `vmlinuz` to `out`, if it is xz-compressed (as
/// Debian's are), `xz` is installed, and the result has a PVH entry point that qemu can boot.
/// Like the kernel's `scripts/extract-vmlinux`: the payload starts at the first xz stream
/// header; `--single-stream` ignores the bytes the bzImage has after it.
pub fn extract_vmlinux(vmlinuz: &Path, out: &Path, scratch: &Path) -> anyhow::Result<()> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    let image =
        std::fs::read(vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    let start = image
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .with_context(|| format!("{} holds no xz stream", vmlinuz.display()))?;
    let payload = scratch.join("vmlinux.xz");
    std::fs::write(&payload, &image[start..])
        .with_context(|| format!("cannot write {}", payload.display()))?;
    let input =
        File::open(&payload).with_context(|| format!("cannot open {}", payload.display()))?;
    let out_tmp = scratch.join("vmlinux");
    let output =
        File::create(&out_tmp).with_context(|| format!("cannot create {}", out_tmp.display()))?;
    let status = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(input)
        .stdout(output)
        .status()
        .context("cannot run xz (xz-utils)")?;
    let _ = std::fs::remove_file(&payload);
    if !status.success() {
        bail!(
            "xz could not uncompress the kernel in {}",
            vmlinuz.display()
        );
    }
    let data =
        std::fs::read(&out_tmp).with_context(|| format!("cannot read {}", out_tmp.display()))?;
    if !elf::has_pvh_entry(&data, &out_tmp.display().to_string())? {
        let _ = std::fs::remove_file(&out_tmp);
        bail!(
            "the kernel in {} has no PVH entry point (CONFIG_PVH)",
            vmlinuz.display()
        );
    }
    std::fs::rename(&out_tmp, out)
        .with_context(|| format!("cannot move {} to {}", out_tmp.display(), out.display()))
}

/// The kernel the cache's `current` file points at, if any.
fn cached(base: &Path) -> anyhow::Result<Option<Kernel>> {
    let current = base.join("current");
    let package = match std::fs::read_to_string(&current) {
        Ok(p) => p.trim().to_string(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", current.display())),
    };
    if package.is_empty() || package.contains('/') {
        bail!("{} does not name a package; delete it", current.display());
    }
    let tree = base.join(&package);
    // A tree removed by hand is fetched again.
    if !tree.exists() {
        return Ok(None);
    }
    Kernel::in_tree(&tree).map(Some)
}

fn remove_dir_if_exists(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Waits for the exclusive lock on `path` (created if missing).
pub fn lock(path: &Path) -> anyhow::Result<CacheLock> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(CacheLock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_from_files() {
        assert_eq!(module_name("virtio-gpu.ko").as_deref(), Some("virtio_gpu"));
        assert_eq!(
            module_name("virtio_net.ko.xz").as_deref(),
            Some("virtio_net")
        );
        assert_eq!(module_name("modules.dep"), None);
    }

    #[test]
    fn missing_kernel_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Kernel::new(&dir.path().join("vmlinuz"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("vmlinuz does not exist"), "{err}");
        let err = Kernel::in_tree(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("/boot"), "{err:#}");
    }

    #[test]
    fn the_cache_lock_makes_a_second_taker_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = lock(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = lock(&p).unwrap();
            tx.send(()).unwrap();
        });
        let wait = std::time::Duration::from_millis(200);
        assert!(rx.recv_timeout(wait).is_err(), "taken twice");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("taken after release");
        waiter.join().unwrap();
        let err = lock(&dir.path().join("no/such/dir/.lock")).unwrap_err();
        assert!(err.to_string().contains("cannot open lock file"), "{err}");
    }

    #[test]
    fn a_bad_cache_pointer_is_an_error_not_a_download() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("debian-kernel");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("current"), "../../etc\n").unwrap();
        let err = fetch_debian_kernel(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not name a package"), "{err}");
    }
}
