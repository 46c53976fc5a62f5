//! sysstat as an independent oracle for `vmmon record`.
//!
//! # What is compared
//!
//! While a steady, self-generated load runs (busy loops on half the CPUs for user time, a paced
//! ping-pong between two threads over a Unix socket pair for context switches, a paced TCP
//! stream over 127.0.0.1 for the `lo` interface, and paced `write` + `fdatasync` to a file on a
//! real disk), sysstat's collector `sadc` and `vmmon record` sample side by side at 1 Hz for
//! 12 intervals. Each of the 8 middle sysstat intervals is paired with the vmmon interval whose
//! end is nearest, and these are compared, interval by interval and as means:
//!
//! | sysstat (`sadf -d`)                | vmmon column                                      |
//! |------------------------------------|---------------------------------------------------|
//! | `%usr` (`-u ALL`)                  | `cpu_user_pct` (both exclude guest time)          |
//! | `%nice` `%sys` `%iowait` `%steal` `%irq` `%soft` `%guest` `%gnice` `%idle` | `cpu_nice_pct` ... `cpu_idle_pct` |
//! | `cswch/s` (`-w`)                   | `ctxt_per_s`                                      |
//! | `lo` `rxkB/s` `txkB/s` (`-n DEV`)  | `net_lo_rx_bytes_per_s`, `net_lo_tx_bytes_per_s`  |
//! | DISK `rkB/s` `wkB/s` (`-d`)        | `disk_DISK_read_bytes_per_s`, `..._write_bytes_per_s` |
//!
//! Units, from sysstat's source (`rndr_stats.c`): `rxkB/s` is bytes/s / 1024 and disk `rkB/s`
//! is 512-byte sectors/s / 2, so sysstat's values are multiplied by 1024 to compare with
//! vmmon's bytes/s. `-u ALL` is used, not plain `-u`, because plain `%system` adds irq and
//! softirq time and plain `%user` includes guest time, while `-u ALL`'s `%sys` and `%usr`
//! (`user - guest`, and `%nice` is `nice - guest_nice`) match vmmon's columns.
//!
//! DISK is the whole disk holding the temp directory of the disk load, found from the
//! directory's `st_dev` through `/sys/dev/block/MAJ:MIN` (the parent disk of a partition).
//! `std::env::temp_dir()`, then `CARGO_TARGET_TMPDIR`, then `/var/tmp` are tried; when none is
//! on a block device vmmon reports (tmpfs, overlay and btrfs have anonymous devices; loop and
//! ram disks are excluded by vmmon), the disk comparison is skipped with a printed reason.
//! `sync` runs first so that writeback left by the build does not burst into the intervals.
//!
//! # How sysstat is invoked
//!
//! ```text
//! /usr/lib/sysstat/sadc -S XDISK 1 13 DIR/sa.data     # 13 samples = 12 intervals
//! LC_ALL=C sadf -d -U DIR/sa.data -- -u ALL -w -n DEV -d
//! ```
//!
//! `sadc` is started right after `vmmon record --rate 1 --max 12 -o DIR/vmmon.csv` (12 rows from
//! 13 samples). `sadf -d` prints `;`-separated rows, each report after a
//! `# hostname;interval;timestamp;...` header; `-U` makes the timestamp Unix seconds, truncated
//! to the second. `sadc` samples once at start, then every second (`alarm(1)` re-armed as each
//! sample starts), so its k-th sample is taken at about spawn time + k s; that estimate, clamped
//! into `[timestamp, timestamp + 1)`, is matched against vmmon's `time` column (each interval's
//! end, in microseconds). The first and last two of the 12 intervals are not compared (start-up
//! of the two tools; the end of the run).
//!
//! # Tolerances and why
//!
//! A sysstat value `s` and a vmmon value `v` agree when `|s - v| <= abs + rel * max(|s|, |v|)`,
//! with the `*_INTERVAL` tolerances per interval and the tighter `*_MEAN` ones for the means
//! over the steady intervals (see each constant for its numbers). Honest disagreement comes from:
//!
//! - phase: the two tools sample `Δ` apart (printed; a few ms here, at most 0.5 s by the
//!   pairing), so their intervals do not cover exactly the same time;
//! - sysstat measures each interval with `/proc/uptime` in centiseconds (up to ~1% on a 1 s
//!   rate), vmmon with the monotonic clock in microseconds;
//! - `sadc` reads `/proc/stat`, `/proc/net/dev` and `/proc/diskstats` a few ms apart, vmmon in
//!   its own order;
//! - `/proc/stat` CPU time is counted in ticks of USER_HZ = 100: a 2-CPU interval is ~200
//!   ticks, so one tick is 0.5 percentage points;
//! - a noisy 2-core VM: the other tests of this binary, `cargo` and the host (steal) add load
//!   that changes from second to second and falls differently into intervals `Δ` apart.
//!
//! The last one is handled by looking at sysstat's own series (see [`compare`]): an interval is
//! held to the tolerances only where sysstat shows the metric steady around it (CPU shares,
//! which cannot exceed 100%, are also compared elsewhere, with `100 * |Δ|` points more), and a
//! loaded metric must have at least [`MIN_CHECKED`] compared intervals. The test also fails
//! when sysstat does not see the generated load (e.g. a dead load thread), rather than passing
//! on all-zero columns. The tolerances are still far tighter than a unit or formula error:
//! bytes vs KiB is a factor 1024, sectors vs bytes 512, KiB of 1000 bytes 2.4% (caught by the
//! network means), a per-CPU denominator doubles shares, a missing `* 100` divides them by 100.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util;

/// Number of samples `sadc` takes (one more than its intervals).
const SADC_SAMPLES: usize = 13;
/// Rows `vmmon` writes (`--max`): one per interval, the same intervals as `sadc`.
const VMMON_ROWS: usize = SADC_SAMPLES - 1;
/// Intervals dropped at each end before comparing (ramp-up and shut-down are not steady).
const DROPPED_EACH_END: usize = 2;
/// A loaded metric needs this many of the compared intervals to be steady (see [`compare`]).
const MIN_CHECKED: usize = 4;
/// Let the load settle before the two collectors start.
const WARMUP: Duration = Duration::from_millis(500);
/// A collector still running this long after the start is killed and the test fails.
const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Loopback stream: `NET_CHUNK` bytes every `NET_TICK` = 8 MiB/s each way on `lo` (plus headers).
const NET_CHUNK: usize = 32 * 1024;
const NET_TICK: Duration = Duration::from_millis(4);
/// Disk: `DISK_CHUNK` bytes written and `fdatasync`ed every `DISK_TICK` = 4 MiB/s of writes.
const DISK_CHUNK: usize = 128 * 1024;
const DISK_TICK: Duration = Duration::from_millis(31);
/// The disk load cycles over a file this big (a rewrite, so the disk does not fill up).
const DISK_FILE_SPAN: u64 = 32 * 1024 * 1024;
/// Ping-pong: `PING_BATCH` round trips every `PING_TICK` = 10 000 round trips/s, each of which
/// blocks both threads once, i.e. at least ~20 000 context switches/s.
const PING_BATCH: usize = 50;
const PING_TICK: Duration = Duration::from_millis(5);

/// `|s - v| <= abs + rel * max(|s|, |v|)`, in vmmon's unit (percent, per second, bytes/s).
#[derive(Clone, Copy, Debug)]
struct Tolerance {
    abs: f64,
    rel: f64,
}

impl Tolerance {
    fn allows(self, s: f64, v: f64) -> bool {
        (s - v).abs() <= self.abs + self.rel * s.abs().max(v.abs())
    }

    /// "±(abs + rel%)" with `abs` divided by `div` like the table's values.
    fn describe(self, div: f64) -> String {
        format!("±({:.2} + {}%)", self.abs / div, self.rel * 100.0)
    }
}

/// CPU shares, per interval: 4 percentage points. Both tools read the same tick counters, so
/// with a steady load only the ticks in the Δ-long slivers and the read-order differences
/// separate them (observed: at most 1 point, usually 0.5 = one tick). 4 points still catches a
/// doubled or halved share of anything above 4% (user is ~50% here, system 1-50%).
const CPU_INTERVAL: Tolerance = Tolerance { abs: 4.0, rel: 0.0 };
/// CPU shares, mean over the steady intervals: 2 points; tick noise averages out, a formula
/// error does not.
const CPU_MEAN: Tolerance = Tolerance { abs: 2.0, rel: 0.0 };
/// Context switches/s, per interval: 5% + 500/s. The ping-pong is paced, but the other tests
/// and the scheduler move the total by thousands a second from one second to the next, which
/// falls into the Δ slivers differently; sysstat's centisecond interval adds up to 1%
/// (observed: at most 0.7%). 500/s is about an idle machine's own rate.
const CTXT_INTERVAL: Tolerance = Tolerance {
    abs: 500.0,
    rel: 0.05,
};
/// Context switches/s, mean: 2% + 200/s.
const CTXT_MEAN: Tolerance = Tolerance {
    abs: 200.0,
    rel: 0.02,
};
/// `lo` bytes/s, per interval: 5% + 16 KiB/s. The stream is paced by absolute deadlines in
/// 32 KiB chunks (256 a second): a late wakeup of the sender moves a chunk or two across an
/// interval boundary (a chunk is 0.4%; observed: at most 1.2%), and sysstat's centisecond
/// interval adds up to 1%.
const NET_INTERVAL: Tolerance = Tolerance {
    abs: 16.0 * 1024.0,
    rel: 0.05,
};
/// `lo` bytes/s, mean: 1.5% + 8 KiB/s. Chunk and rounding effects average out (observed:
/// within 0.1%), so this also catches a "kB" of 1000 bytes, 2.4% off.
const NET_MEAN: Tolerance = Tolerance {
    abs: 8.0 * 1024.0,
    rel: 0.015,
};
/// Disk bytes/s, per interval: 10% + 128 KiB/s. The writes are paced (128 KiB every 31 ms),
/// but a write counts when the device completes it, so one 128 KiB chunk (3% of the rate) can
/// fall on either side of a boundary, and the filesystem adds journal writes (ext4 commits
/// every 5 s); reads are not generated, so they are only the machine's background reads
/// (observed: agreement within one chunk).
const DISK_INTERVAL: Tolerance = Tolerance {
    abs: 128.0 * 1024.0,
    rel: 0.10,
};
/// Disk bytes/s, mean: 5% + 64 KiB/s.
const DISK_MEAN: Tolerance = Tolerance {
    abs: 64.0 * 1024.0,
    rel: 0.05,
};

/// One compared quantity.
struct Metric {
    /// Short name for the table and messages.
    label: String,
    /// Key into a [`SarRecord`]: `LABEL/COLUMN` for per-CPU/interface/device reports.
    sar_key: String,
    /// Multiplies the sysstat value into vmmon's unit (1024 for sysstat's kB).
    sar_scale: f64,
    /// vmmon CSV column.
    vm_column: String,
    /// Divides values for display in the table (1024: show KiB/s).
    display_div: f64,
    per_interval: Tolerance,
    mean: Tolerance,
    /// sysstat's median must reach this (vmmon unit), or the generated load did not happen and
    /// the comparison would prove nothing; such loaded metrics also need [`MIN_CHECKED`] checked
    /// intervals.
    min_sar_median: f64,
    /// The largest value the quantity can physically take (100 for a CPU share), when there is
    /// one: an interval that is not steady is then still compared, allowing `peak * |Δ|` more
    /// (everything in the Δ-long sliver one tool counts and the other does not). Without a
    /// peak, such an interval is not compared.
    peak: Option<f64>,
}

/// One `sadc` sample as printed by `sadf -d`: its timestamp (whole Unix seconds) and all values
/// of that record, keyed `COLUMN` (e.g. `cswch/s`) or `LABEL/COLUMN` when the report has a
/// CPU/IFACE/DEV column (`-1/%usr`, `lo/rxkB/s`, `vda/wkB/s`).
#[derive(Debug, Default)]
struct SarRecord {
    timestamp: i64,
    values: HashMap<String, f64>,
}

/// Parses `sadf -d -U` output (several reports, each after a `# hostname;interval;timestamp;...`
/// header) into one record per timestamp, in time order.
fn parse_sadf(text: &str) -> Result<Vec<SarRecord>, String> {
    let mut records: BTreeMap<i64, SarRecord> = BTreeMap::new();
    let mut header: Option<Vec<&str>> = None;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            header = Some(h.trim().split(';').collect());
            continue;
        }
        let header = header
            .as_ref()
            .ok_or_else(|| format!("sadf line {}: data before any header: {line}", lineno + 1))?;
        let fields: Vec<&str> = line.split(';').collect();
        if fields.len() != header.len() {
            // e.g. a LINUX-RESTART or COM line; never expected during one sadc run.
            return Err(format!(
                "sadf line {}: {} fields under a {}-field header: {line}",
                lineno + 1,
                fields.len(),
                header.len()
            ));
        }
        if header.get(2) != Some(&"timestamp") {
            return Err(format!("sadf header without timestamp column: {header:?}"));
        }
        let timestamp: i64 = fields[2].parse().map_err(|e| {
            format!(
                "sadf line {}: bad timestamp {:?}: {e}",
                lineno + 1,
                fields[2]
            )
        })?;
        let labelled = matches!(header.get(3), Some(&("CPU" | "IFACE" | "DEV")));
        let first_value = if labelled { 4 } else { 3 };
        let record = records.entry(timestamp).or_insert_with(|| SarRecord {
            timestamp,
            values: HashMap::new(),
        });
        for (name, value) in header.iter().zip(&fields).skip(first_value) {
            let value: f64 = value.parse().map_err(|e| {
                format!("sadf line {}: bad {name} value {value:?}: {e}", lineno + 1)
            })?;
            let key = if labelled {
                format!("{}/{name}", fields[3])
            } else {
                (*name).to_string()
            };
            record.values.insert(key, value);
        }
    }
    Ok(records.into_values().collect())
}

/// vmmon's CSV: header names and rows of raw cells.
struct VmCsv {
    columns: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl VmCsv {
    fn parse(text: &str) -> Result<VmCsv, String> {
        let mut records = parse_csv(text)?.into_iter();
        let header = records.next().ok_or("vmmon CSV is empty")?;
        let columns: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let rows: Vec<Vec<String>> = records.collect();
        for (i, row) in rows.iter().enumerate() {
            if row.len() != header.len() {
                return Err(format!(
                    "vmmon CSV row {} has {} cells, header has {}",
                    i + 1,
                    row.len(),
                    header.len()
                ));
            }
        }
        Ok(VmCsv { columns, rows })
    }

    fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The cell as a number: `Ok(None)` for an empty cell (no valid value), `Err` for a missing
    /// column or a cell that is not a number.
    fn value(&self, row: usize, column: &str) -> Result<Option<f64>, String> {
        let &i = self
            .columns
            .get(column)
            .ok_or_else(|| format!("vmmon CSV has no column {column:?}"))?;
        let cell = self.rows[row][i].trim();
        if cell.is_empty() {
            return Ok(None);
        }
        cell.parse()
            .map(Some)
            .map_err(|e| format!("vmmon CSV row {} {column}: {cell:?}: {e}", row + 1))
    }
}

/// Minimal RFC 4180 reader: quoted fields with `""` escapes, CRLF or LF line ends.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err("vmmon CSV ends inside a quoted field".into());
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// Finds sysstat's collector, which is not on PATH (Debian: /usr/lib/sysstat/sadc).
fn find_sadc() -> Option<PathBuf> {
    [
        "/usr/lib/sysstat/sadc",
        "/usr/lib64/sa/sadc",
        "/usr/lib/sa/sadc",
        "/usr/libexec/sa/sadc",
        "/usr/local/lib/sa/sadc",
        "/usr/local/lib64/sa/sadc",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The whole disk (kernel name, as in /proc/diskstats) holding `path`, or why there is none.
fn whole_disk_of(path: &Path) -> Result<String, String> {
    let dev = fs::metadata(path)
        .map_err(|e| format!("stat {}: {e}", path.display()))?
        .dev();
    // glibc's major()/minor() encoding of a 64-bit dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    if major == 0 {
        return Err(format!(
            "{} is on an anonymous device {major}:{minor} (tmpfs, overlay, btrfs...)",
            path.display()
        ));
    }
    let sys = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).map_err(|e| {
        format!(
            "{} is on {major}:{minor}, not a block device in /sys/dev/block: {e}",
            path.display()
        )
    })?;
    let disk_dir = if sys.join("partition").exists() {
        sys.parent()
            .ok_or_else(|| format!("partition {} has no parent disk", sys.display()))?
    } else {
        &sys
    };
    let uevent = fs::read_to_string(disk_dir.join("uevent"))
        .map_err(|e| format!("read {}/uevent: {e}", disk_dir.display()))?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .ok_or_else(|| format!("no DEVNAME in {}/uevent", disk_dir.display()))?
        .to_string();
    if name.starts_with("loop") || name.starts_with("ram") {
        return Err(format!(
            "{} is on {name}, which vmmon excludes",
            path.display()
        ));
    }
    let diskstats = fs::read_to_string("/proc/diskstats").map_err(|e| e.to_string())?;
    if !diskstats
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some(name.as_str()))
    {
        return Err(format!("{name} is not in /proc/diskstats"));
    }
    Ok(name)
}

/// A temp dir for the disk load and the disk holding it, or a temp dir and why disk
/// comparison is skipped.
fn disk_temp_dir() -> (tempfile::TempDir, Result<String, String>) {
    let candidates = [
        std::env::temp_dir(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/tmp"),
    ];
    let mut reasons = Vec::new();
    for dir in &candidates {
        let tmp = match tempfile::Builder::new()
            .prefix("vmmon-sar-")
            .tempdir_in(dir)
        {
            Ok(t) => t,
            Err(e) => {
                reasons.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        match whole_disk_of(tmp.path()) {
            Ok(disk) => return (tmp, Ok(disk)),
            Err(e) => reasons.push(e),
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("vmmon-sar-")
        .tempdir()
        .expect("create a temp dir");
    (tmp, Err(reasons.join("; ")))
}

/// Sleeps until `deadline`, or to the next tick if far behind (no catch-up bursts over 50 ms).
fn pace(deadline: &mut Instant, tick: Duration) {
    *deadline += tick;
    let now = Instant::now();
    if *deadline > now {
        std::thread::sleep(*deadline - now);
    } else if now - *deadline > Duration::from_millis(50) {
        *deadline = now;
    }
}

/// The generated load: threads stopped and joined by [`Load::stop`] (or on drop, e.g. when an
/// assertion fails mid-test).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    net_bytes: Arc<AtomicU64>,
    disk_bytes: Arc<AtomicU64>,
    round_trips: Arc<AtomicU64>,
}

impl Load {
    fn start(disk_file: Option<PathBuf>) -> std::io::Result<Load> {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            net_bytes: Arc::new(AtomicU64::new(0)),
            disk_bytes: Arc::new(AtomicU64::new(0)),
            round_trips: Arc::new(AtomicU64::new(0)),
        };

        for _ in 0..busy_threads() {
            let stop = load.stop.clone();
            load.spawn("busy loop", move || {
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
                Ok(())
            });
        }

        let (mut ping, mut pong) = UnixStream::pair()?;
        load.spawn("pong", move || {
            let mut b = [0u8; 1];
            loop {
                if pong.read(&mut b)? == 0 {
                    return Ok(());
                }
                pong.write_all(&b)?;
            }
        });
        let (stop, count) = (load.stop.clone(), load.round_trips.clone());
        load.spawn("ping", move || {
            let mut b = [0u8; 1];
            let mut deadline = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..PING_BATCH {
                    ping.write_all(&b)?;
                    ping.read_exact(&mut b)?;
                }
                count.fetch_add(PING_BATCH as u64, Ordering::Relaxed);
                pace(&mut deadline, PING_TICK);
            }
            Ok(()) // dropping `ping` ends `pong`
        });

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        load.spawn("tcp receiver", move || {
            let (mut conn, _) = listener.accept()?;
            let mut buf = vec![0u8; 256 * 1024];
            while conn.read(&mut buf)? > 0 {}
            Ok(())
        });
        let (stop, count) = (load.stop.clone(), load.net_bytes.clone());
        let mut sender = TcpStream::connect(addr)?;
        load.spawn("tcp sender", move || {
            sender.set_nodelay(true)?;
            let chunk = vec![0x5au8; NET_CHUNK];
            let mut deadline = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                sender.write_all(&chunk)?;
                count.fetch_add(NET_CHUNK as u64, Ordering::Relaxed);
                pace(&mut deadline, NET_TICK);
            }
            Ok(()) // dropping `sender` ends the receiver
        });

        if let Some(path) = disk_file {
            let (stop, count) = (load.stop.clone(), load.disk_bytes.clone());
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(path)?;
            load.spawn("disk writer", move || {
                // Non-constant data so no layer can shortcut zero pages.
                let chunk: Vec<u8> = (0..DISK_CHUNK).map(|i| (i * 7 + 3) as u8).collect();
                let mut offset = 0u64;
                let mut deadline = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if offset >= DISK_FILE_SPAN {
                        offset = 0;
                        file.seek(SeekFrom::Start(0))?;
                    }
                    file.write_all(&chunk)?;
                    file.sync_data()?;
                    offset += DISK_CHUNK as u64;
                    count.fetch_add(DISK_CHUNK as u64, Ordering::Relaxed);
                    pace(&mut deadline, DISK_TICK);
                }
                Ok(())
            });
        }
        Ok(load)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
    ) {
        let handle = std::thread::Builder::new()
            .name(format!("sar-load {name}"))
            .spawn(f)
            .expect("spawn a load thread");
        self.threads.push((name, handle));
    }

    /// Stops and joins every thread; errors of the load threads (e.g. a failed write) are
    /// returned so the test does not compare under a load that silently died.
    fn stop(mut self) -> Result<(), String> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for (name, handle) in self.threads.drain(..) {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("load thread {name}: {e}")),
                Err(_) => errors.push(format!("load thread {name} panicked")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Waits for `child` until `deadline`, killing it then.
fn wait_until(child: &mut Child, what: &str, deadline: Instant) -> Result<(), String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{what} failed: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} still running after {COLLECTOR_TIMEOUT:?}; killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// CPUs counted in /proc/stat's all-CPU line (the `cpuN` lines).
fn cpu_count() -> usize {
    fs::read_to_string("/proc/stat")
        .expect("read /proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
        .max(1)
}

/// Busy-loop threads: half the CPUs, so user time is ~50% of all CPU time whatever the machine
/// (one thread on the 2-CPU VM), leaving the other half for everything else.
fn busy_threads() -> usize {
    (cpu_count() / 2).max(1)
}

fn metrics(disk: Option<&str>) -> Vec<Metric> {
    // The busy loops alone give this user share; sysstat must see at least half of it.
    let busy_user_pct = 100.0 * busy_threads() as f64 / cpu_count() as f64;
    let mut m = Vec::new();
    // (sysstat -u ALL column, vmmon field, minimum sysstat median under the generated load)
    let cpu = [
        ("%usr", "user", 0.5 * busy_user_pct),
        ("%nice", "nice", 0.0),
        // The ping-pong makes system time, but its share shrinks to ~1% when other work
        // saturates the CPUs (seen while the other tests of this binary run), so no minimum.
        ("%sys", "system", 0.0),
        ("%iowait", "iowait", 0.0),
        ("%irq", "irq", 0.0),
        ("%soft", "softirq", 0.0),
        ("%steal", "steal", 0.0),
        ("%guest", "guest", 0.0),
        ("%gnice", "guest_nice", 0.0),
        ("%idle", "idle", 0.0),
    ];
    for (sar, vm, min) in cpu {
        m.push(Metric {
            label: format!("{vm}%"),
            sar_key: format!("-1/{sar}"),
            sar_scale: 1.0,
            vm_column: format!("cpu_{vm}_pct"),
            display_div: 1.0,
            per_interval: CPU_INTERVAL,
            mean: CPU_MEAN,
            min_sar_median: min,
            peak: Some(100.0),
        });
    }
    m.push(Metric {
        label: "ctxt/s".into(),
        sar_key: "cswch/s".into(),
        sar_scale: 1.0,
        vm_column: "ctxt_per_s".into(),
        display_div: 1.0,
        per_interval: CTXT_INTERVAL,
        mean: CTXT_MEAN,
        peak: None,
        // Half of the 2 switches per round trip the ping-pong is paced to.
        min_sar_median: PING_BATCH as f64 / PING_TICK.as_secs_f64(),
    });
    let net_rate = NET_CHUNK as f64 / NET_TICK.as_secs_f64();
    for dir in ["rx", "tx"] {
        m.push(Metric {
            label: format!("lo {dir} KiB/s"),
            sar_key: format!("lo/{dir}kB/s"),
            sar_scale: 1024.0,
            vm_column: format!("net_lo_{dir}_bytes_per_s"),
            display_div: 1024.0,
            per_interval: NET_INTERVAL,
            mean: NET_MEAN,
            peak: None,
            min_sar_median: 0.5 * net_rate,
        });
    }
    if let Some(disk) = disk {
        let disk_rate = DISK_CHUNK as f64 / DISK_TICK.as_secs_f64();
        for (sar, vm, min) in [("wkB/s", "write", 0.5 * disk_rate), ("rkB/s", "read", 0.0)] {
            m.push(Metric {
                label: format!("{disk} {vm} KiB/s"),
                sar_key: format!("{disk}/{sar}"),
                sar_scale: 1024.0,
                vm_column: format!("disk_{}_{vm}_bytes_per_s", sanitize(disk)),
                display_div: 1024.0,
                per_interval: DISK_INTERVAL,
                mean: DISK_MEAN,
                peak: None,
                min_sar_median: min,
            });
        }
    }
    m
}

/// vmmon's column-name mapping of interface (and device) names.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[test]
fn vmmon_agrees_with_sysstat() {
    let _heavy = util::heavy();
    if !util::require("sadf", "sysstat is the oracle for vmmon's rates") {
        return;
    }
    let Some(sadc) = find_sadc() else {
        if util::external_required() {
            panic!("sysstat's sadc not found; VMMON_REQUIRE_EXTERNAL=1");
        }
        eprintln!("SKIPPED: sadf is installed but sysstat's sadc was not found");
        return;
    };

    // A run under load the test did not generate (a build, another test of this binary) can
    // leave too few steady intervals to judge: that is retried, a disagreement never is.
    let mut report = one_run(&sadc);
    for attempt in 2..=ATTEMPTS {
        if !report.inconclusive() {
            break;
        }
        println!("{}", report.table);
        eprintln!(
            "NOTE: attempt {} of {ATTEMPTS} inconclusive ({}); running again",
            attempt - 1,
            report.failures.join("; ")
        );
        report = one_run(&sadc);
    }
    println!("{}", report.table);
    assert!(
        report.failures.is_empty(),
        "vmmon disagrees with sysstat:\n  {}\n(table above; vmmon stderr: {})",
        report.failures.join("\n  "),
        report.vm_stderr
    );
}

/// Side-by-side runs tried when sysstat saw too little steady load to judge.
const ATTEMPTS: usize = 3;

/// One side-by-side run of sadc and vmmon under the generated load, compared.
fn one_run(sadc: &Path) -> Comparison {
    let (dir, disk) = disk_temp_dir();
    let disk = match disk {
        Ok(disk) => Some(disk),
        Err(why) => {
            eprintln!("NOTE: disk comparison skipped: {why}");
            None
        }
    };
    let sa_file = dir.path().join("sa.data");
    let csv_file = dir.path().join("vmmon.csv");
    let vm_stderr = dir.path().join("vmmon.stderr");

    // Flush what earlier builds and tests left dirty, so its writeback does not burst into the
    // disk intervals compared below.
    match Command::new("sync").status() {
        Ok(status) if status.success() => {}
        other => eprintln!("NOTE: sync failed ({other:?}); disk intervals may be less steady"),
    }
    let load =
        Load::start(disk.as_ref().map(|_| dir.path().join("load.bin"))).expect("start the load");
    std::thread::sleep(WARMUP);

    let mut vm = util::vmmon()
        .args([
            "record",
            "--rate",
            "1",
            "--max",
            &VMMON_ROWS.to_string(),
            "-o",
        ])
        .arg(&csv_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&vm_stderr).expect("create vmmon stderr file"))
        .spawn()
        .expect("spawn vmmon record");
    let sadc_spawned_at = unix_now();
    let started = Instant::now();
    let mut sa = Command::new(sadc)
        .args(["-S", "XDISK", "1", &SADC_SAMPLES.to_string()])
        .arg(&sa_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sadc");

    let deadline = started + COLLECTOR_TIMEOUT;
    let sa_result = wait_until(&mut sa, "sadc", deadline);
    let vm_result = wait_until(&mut vm, "vmmon record", deadline);
    let generated = (
        load.round_trips.load(Ordering::Relaxed),
        load.net_bytes.load(Ordering::Relaxed),
        load.disk_bytes.load(Ordering::Relaxed),
    );
    let load_seconds = started.elapsed().as_secs_f64() + WARMUP.as_secs_f64();
    let load_result = load.stop();
    if let Err(e) = vm_result {
        panic!(
            "{e}\nvmmon stderr:\n{}",
            fs::read_to_string(&vm_stderr).unwrap_or_default()
        );
    }
    sa_result.expect("sadc ran");
    load_result.expect("the load threads ran without errors");
    println!(
        "generated over {load_seconds:.1} s: {:.0} ping-pong round trips/s, {:.0} KiB/s on lo, \
         {:.0} KiB/s written to disk",
        generated.0 as f64 / load_seconds,
        generated.1 as f64 / load_seconds / 1024.0,
        generated.2 as f64 / load_seconds / 1024.0,
    );

    let sadf = Command::new("sadf")
        .env("LC_ALL", "C")
        .args(["-d", "-U"])
        .arg(&sa_file)
        .args(["--", "-u", "ALL", "-w", "-n", "DEV", "-d"])
        .output()
        .expect("run sadf");
    assert!(
        sadf.status.success(),
        "sadf failed: {}\n{}",
        sadf.status,
        String::from_utf8_lossy(&sadf.stderr)
    );
    let sar = parse_sadf(&String::from_utf8_lossy(&sadf.stdout)).expect("parse sadf output");
    let csv_text = fs::read_to_string(&csv_file).expect("read vmmon's CSV");
    let vm = VmCsv::parse(&csv_text).expect("parse vmmon's CSV");

    assert_eq!(
        sar.len(),
        SADC_SAMPLES - 1,
        "sadf should print one record per sadc interval"
    );
    assert_eq!(vm.rows.len(), VMMON_ROWS, "vmmon --max {VMMON_ROWS} rows");
    assert!(vm.has("time"), "vmmon CSV has a time column");

    let mut report = compare(&metrics(disk.as_deref()), &sar, &vm, sadc_spawned_at);
    report.vm_stderr = fs::read_to_string(&vm_stderr).unwrap_or_default();
    report
}

/// Outcome of [`compare`]: the printable table and every disagreement found.
struct Comparison {
    table: String,
    failures: Vec<String>,
    vm_stderr: String,
}

impl Comparison {
    /// Every failure is "too few steady intervals": no evidence either way.
    fn inconclusive(&self) -> bool {
        !self.failures.is_empty()
            && self
                .failures
                .iter()
                .all(|f| f.contains("too few to compare"))
    }
}

/// Pairs the steady middle sysstat intervals with vmmon rows and checks every metric.
///
/// A compared interval counts as steady for a metric when sysstat's own values for it and for
/// the neighbouring interval that the phase difference reaches into (the next one when vmmon
/// samples later, the previous one when earlier) are within the per-interval tolerance of
/// sysstat's median over the compared intervals. Steady intervals are held to the per-interval
/// tolerance and enter the means. Elsewhere a change of load the test did not generate (the
/// other tests of this binary starting processes, another process's writeback, a journal
/// commit) falls differently into intervals shifted by Δ, so the two tools honestly disagree
/// there: CPU shares, bounded by 100%, are still compared with `100 * |Δ|` points more; rates
/// with no such bound are not compared in those intervals. A real unit or formula error shows
/// in every interval; and a loaded metric with fewer than [`MIN_CHECKED`] compared intervals
/// fails rather than passing on too little evidence.
fn compare(metrics: &[Metric], sar: &[SarRecord], vm: &VmCsv, sadc_spawned_at: f64) -> Comparison {
    let mut failures = Vec::new();
    let mut notes = Vec::new();

    // sysstat values of every interval, per metric, in vmmon's unit.
    let sar_values: Vec<Vec<f64>> = metrics
        .iter()
        .map(|metric| {
            sar.iter()
                .map(|rec| {
                    let value = rec.values.get(&metric.sar_key).unwrap_or_else(|| {
                        panic!(
                            "sadf record {} has no {} (has {:?})",
                            rec.timestamp,
                            metric.sar_key,
                            rec.values.keys().collect::<Vec<_>>()
                        )
                    });
                    value * metric.sar_scale
                })
                .collect()
        })
        .collect();

    // Pair each compared sysstat interval k with the vmmon row whose end is nearest.
    let vm_times: Vec<f64> = (0..vm.rows.len())
        .map(|r| {
            vm.value(r, "time")
                .expect("vmmon CSV has a numeric time column")
                .expect("vmmon time cell is never empty")
        })
        .collect();
    let mut pairs = Vec::new(); // (k, vmmon row, vmmon time - sysstat instant)
    let steady_part = sar.iter().enumerate().take(sar.len() - DROPPED_EACH_END);
    for (k, rec) in steady_part.skip(DROPPED_EACH_END) {
        let ts = rec.timestamp as f64;
        // sar[k] ends at sadc's sample k + 1 (sample 0 only starts the first interval).
        let instant = (sadc_spawned_at + (k + 1) as f64).clamp(ts, ts + 0.999_999);
        let (row, offset) = vm_times
            .iter()
            .enumerate()
            .map(|(r, &t)| (r, t - instant))
            .min_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("vmmon wrote rows");
        if offset.abs() > 0.5 {
            failures.push(format!(
                "sysstat interval ending ~{instant:.3} has no vmmon interval ending within 0.5 s \
                 (nearest: {:.3})",
                vm_times[row]
            ));
            continue;
        }
        pairs.push((k, row, offset));
    }

    // Cell marks for the table: ' ' steady and agreeing, '*' disagreeing, '^' not steady but
    // compared with the phase allowance, '~' not steady and not compared.
    let mut marks = vec![vec![' '; pairs.len()]; metrics.len()];
    let mut vm_values = vec![vec![None; pairs.len()]; metrics.len()];
    for (mi, metric) in metrics.iter().enumerate() {
        if !vm.has(&metric.vm_column) {
            failures.push(format!(
                "{}: vmmon's CSV has no column {}",
                metric.label, metric.vm_column
            ));
            continue;
        }
        let s = &sar_values[mi];
        let compared: Vec<f64> = pairs.iter().map(|&(k, _, _)| s[k]).collect();
        let median = median(&compared);
        let (mut checked, mut steady, mut s_sum, mut v_sum) = (0usize, 0usize, 0.0, 0.0);
        for (pi, &(k, row, offset)) in pairs.iter().enumerate() {
            let v = match vm.value(row, &metric.vm_column) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(e);
                    None
                }
            };
            vm_values[mi][pi] = v;
            let neighbour = if offset >= 0.0 { k + 1 } else { k - 1 };
            let steady_here = [k, neighbour]
                .iter()
                .all(|&j| metric.per_interval.allows(median, s[j]));
            let allowed = match (steady_here, metric.peak) {
                (true, _) => metric.per_interval,
                (false, Some(peak)) => {
                    marks[mi][pi] = '^';
                    Tolerance {
                        abs: metric.per_interval.abs + peak * offset.abs(),
                        ..metric.per_interval
                    }
                }
                (false, None) => {
                    marks[mi][pi] = '~';
                    continue;
                }
            };
            let ts = sar[k].timestamp;
            let Some(v) = v else {
                marks[mi][pi] = '*';
                failures.push(format!(
                    "{}: vmmon has no value for the interval matching sysstat's {ts}",
                    metric.label
                ));
                continue;
            };
            checked += 1;
            if steady_here {
                steady += 1;
                s_sum += s[k];
                v_sum += v;
            }
            if !allowed.allows(s[k], v) {
                marks[mi][pi] = '*';
                failures.push(format!(
                    "{}: interval {ts}{}: sysstat {:.2} vs vmmon {:.2}, allowed {}",
                    metric.label,
                    if steady_here { "" } else { " (not steady)" },
                    s[k] / metric.display_div,
                    v / metric.display_div,
                    allowed.describe(metric.display_div)
                ));
            }
        }
        if steady >= MIN_CHECKED {
            let (s_mean, v_mean) = (s_sum / steady as f64, v_sum / steady as f64);
            if !metric.mean.allows(s_mean, v_mean) {
                failures.push(format!(
                    "{}: mean over {steady} steady intervals: sysstat {:.2} vs vmmon {:.2}, \
                     allowed {}",
                    metric.label,
                    s_mean / metric.display_div,
                    v_mean / metric.display_div,
                    metric.mean.describe(metric.display_div)
                ));
            }
        } else {
            notes.push(format!(
                "{}: only {steady} steady intervals, mean not compared",
                metric.label
            ));
        }
        if metric.min_sar_median > 0.0 {
            if median < metric.min_sar_median {
                failures.push(format!(
                    "{}: sysstat saw a median of {:.2}, below the {:.2} the generated load \
                     should give; the comparison would prove nothing",
                    metric.label,
                    median / metric.display_div,
                    metric.min_sar_median / metric.display_div
                ));
            }
            if checked < MIN_CHECKED {
                failures.push(format!(
                    "{}: only {checked} of {} intervals were steady in sysstat's view (other load \
                     on the machine?); too few to compare",
                    metric.label,
                    pairs.len()
                ));
            }
        }
    }

    // The table: a sysstat line and a vmmon line per interval.
    let mut table = String::new();
    let _ = write!(table, "{:<12} {:<7} {:>7}", "interval", "tool", "Δ ms");
    let widths: Vec<usize> = metrics.iter().map(|m| m.label.len().max(9)).collect();
    for (metric, w) in metrics.iter().zip(&widths) {
        let _ = write!(table, " {:>w$}", metric.label);
    }
    table.push('\n');
    for (pi, &(k, _, offset)) in pairs.iter().enumerate() {
        let _ = write!(table, "{:<12} {:<7} {:>7}", sar[k].timestamp, "sysstat", "");
        for (mi, (metric, w)) in metrics.iter().zip(&widths).enumerate() {
            let cell = format!("{:.2}", sar_values[mi][k] / metric.display_div);
            let _ = write!(table, " {cell:>w$}");
        }
        table.push('\n');
        let _ = write!(table, "{:<12} {:<7} {:>+7.1}", "", "vmmon", offset * 1000.0);
        for (mi, (metric, w)) in metrics.iter().zip(&widths).enumerate() {
            let cell = match vm_values[mi][pi] {
                Some(v) => format!("{}{:.2}", marks[mi][pi], v / metric.display_div),
                None => format!("{}-", marks[mi][pi]),
            };
            let _ = write!(table, " {cell:>w$}");
        }
        table.push('\n');
    }
    table.push_str(
        "(Δ: vmmon sample time minus sysstat's. *: disagrees. ^: sysstat shows the load was not \
         steady there, compared with the phase allowance. ~: not steady, not compared.)",
    );
    for note in notes {
        let _ = write!(table, "\n{note}");
    }
    Comparison {
        table,
        failures,
        vm_stderr: String::new(),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
