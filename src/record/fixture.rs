//! Synthetic `/proc` trees of VM processes, for tests and benchmarks of `--vms`.
//!
//! Files are rewritten in place (same inode), as the kernel's are: the recorder keeps its
//! files open and re-reads them, so a test can change counters between two samples.

use std::io;
use std::path::{Path, PathBuf};

/// A `/proc` tree under a folder, written file by file.
#[derive(Debug, Clone)]
pub struct FakeProc {
    root: PathBuf,
}

/// Kernel-thread flag in the `flags` field of `stat`.
pub const KTHREAD: u64 = 0x0020_0000;

impl FakeProc {
    /// A tree under `root` with the host files the recorder needs (an idle `/proc/stat`, an
    /// empty `/proc/net/dev`, meminfo, vmstat, loadavg, diskstats).
    pub fn new(root: &Path) -> io::Result<Self> {
        let p = FakeProc {
            root: root.to_path_buf(),
        };
        std::fs::create_dir_all(root.join("net"))?;
        p.host_cpu([0; 10])?;
        p.net_dev(&[])?;
        p.write("meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\n")?;
        p.write("vmstat", "pgfault 0\n")?;
        p.write("loadavg", "0.00 0.00 0.00 1/100 1\n")?;
        p.write("diskstats", "")?;
        Ok(p)
    }

    /// The tree's root (the recorder's `proc_root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `text` to `rel` under the root, in place.
    pub fn write(&self, rel: &str, text: &str) -> io::Result<()> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)
    }

    /// `/proc/stat` with this aggregate `cpu` line (ticks: user … guest_nice) and one CPU.
    pub fn host_cpu(&self, t: [u64; 10]) -> io::Result<()> {
        let f: Vec<String> = t.iter().map(u64::to_string).collect();
        let line = f.join(" ");
        self.write(
            "stat",
            &format!(
                "cpu  {line}\ncpu0 {line}\nintr 0\nctxt 0\nbtime 0\nprocesses 1\n\
                 procs_running 1\nprocs_blocked 0\n"
            ),
        )
    }

    /// `/proc/net/dev` with these interfaces: (name, [rx bytes, rx packets, tx bytes, tx packets]).
    pub fn net_dev(&self, ifaces: &[(&str, [u64; 4])]) -> io::Result<()> {
        let mut text = String::from(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets \
             errs drop fifo colls carrier compressed\n",
        );
        for (name, c) in ifaces {
            text.push_str(&format!(
                "{name:>6}: {} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n",
                c[0], c[1], c[2], c[3]
            ));
        }
        self.write("net/dev", &text)
    }

    /// `stat` of a task (process or thread) at `rel` (`1234` or `1234/task/1235`).
    #[allow(clippy::too_many_arguments)]
    pub fn stat(
        &self,
        rel: &str,
        comm: &str,
        flags: u64,
        utime: u64,
        stime: u64,
        start: u64,
        guest: u64,
    ) -> io::Result<()> {
        let id = rel.rsplit('/').next().unwrap_or(rel);
        // Fields 3..=52 of proc(5); the ones the recorder reads are set, the rest are zero.
        let mut f = vec!["0".to_string(); 50];
        f[0] = "S".into();
        f[9 - 3] = flags.to_string();
        f[14 - 3] = utime.to_string();
        f[15 - 3] = stime.to_string();
        f[20 - 3] = "1".into();
        f[22 - 3] = start.to_string();
        f[43 - 3] = guest.to_string();
        self.write(
            &format!("{rel}/stat"),
            &format!("{id} ({comm}) {}\n", f.join(" ")),
        )?;
        self.write(&format!("{rel}/comm"), &format!("{comm}\n"))
    }

    /// `schedstat` of a task: run time and run-queue wait in nanoseconds.
    pub fn schedstat(&self, rel: &str, run_ns: u64, delay_ns: u64) -> io::Result<()> {
        self.write(
            &format!("{rel}/schedstat"),
            &format!("{run_ns} {delay_ns} 1\n"),
        )
    }

    /// A VMM process: its `stat`, `comm`, `cmdline` (NUL-separated) and an empty `io`.
    pub fn vmm(&self, pid: u32, comm: &str, args: &[&str], ticks: (u64, u64)) -> io::Result<()> {
        let rel = pid.to_string();
        self.stat(&rel, comm, 0, ticks.0, ticks.1, 100, 0)?;
        let mut cmd = args.join("\0");
        cmd.push('\0');
        self.write(&format!("{rel}/cmdline"), &cmd)?;
        self.io(pid, 0, 0)?;
        std::fs::create_dir_all(self.root.join(&rel).join("fd"))?;
        std::fs::create_dir_all(self.root.join(&rel).join("fdinfo"))
    }

    /// A thread of `pid` with its CPU time (`schedstat`) and guest ticks.
    pub fn thread(
        &self,
        pid: u32,
        tid: u32,
        comm: &str,
        run_ns: u64,
        delay_ns: u64,
        guest: u64,
    ) -> io::Result<()> {
        let rel = format!("{pid}/task/{tid}");
        self.stat(&rel, comm, 0, run_ns / 10_000_000, 0, 100, guest)?;
        self.schedstat(&rel, run_ns, delay_ns)
    }

    /// `/proc/PID/io` with these storage byte counts.
    pub fn io(&self, pid: u32, read: u64, write: u64) -> io::Result<()> {
        self.write(
            &format!("{pid}/io"),
            &format!(
                "rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: {read}\nwrite_bytes: \
                 {write}\ncancelled_write_bytes: 0\n"
            ),
        )
    }

    /// Descriptor `fd` of `pid` open on `/dev/net/tun` and attached to `tap`.
    pub fn tun_fd(&self, pid: u32, fd: u32, tap: &str) -> io::Result<()> {
        let link = self.root.join(format!("{pid}/fd/{fd}"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/net/tun", link)?;
        self.write(
            &format!("{pid}/fdinfo/{fd}"),
            &format!("pos:\t0\nflags:\t02004002\nmnt_id:\t25\nino:\t1042\niff:\t{tap}\n"),
        )
    }

    /// A kernel thread (`ksoftirqd/0`, `kworker/0:1`, `vhost-1234`) with its CPU time.
    pub fn kthread(&self, pid: u32, comm: &str, run_ns: u64) -> io::Result<()> {
        let rel = pid.to_string();
        self.stat(&rel, comm, KTHREAD, run_ns / 10_000_000, 0, 5, 0)?;
        self.schedstat(&rel, run_ns, 0)
    }

    /// Removes a process (it exited). Its files are emptied first: a reader holding one open
    /// then fails to parse it, as reading a dead process's `/proc` file fails.
    pub fn remove(&self, pid: u32) -> io::Result<()> {
        let dir = self.root.join(pid.to_string());
        empty_files(&dir)?;
        std::fs::remove_dir_all(dir)
    }
}

fn empty_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            empty_files(&entry.path())?;
        } else if kind.is_file() {
            std::fs::write(entry.path(), "")?;
        }
    }
    Ok(())
}
