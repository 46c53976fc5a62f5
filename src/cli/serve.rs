//! `vmmon serve`: the current sample as a Prometheus/OpenMetrics page on `GET /metrics`.
//!
//! Sampling happens per scrape: a scrape reads `/proc` at that moment, under a mutex, so two
//! scrapes at once never interleave their reads and each gets a whole page. Exported values
//! are cumulative counters, so a sample taken when Prometheus asks is exact at the time
//! Prometheus stamps it, and no sampling thread runs between scrapes.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;

use crate::export::http::{self, Limits, Request, Response};
use crate::export::openmetrics::{Format, Scraper};
use crate::record::{DeviceFilter, RecordConfig, SourceOptions, UsageError};

/// Options of `vmmon serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT, HOST:PORT or :PORT (loopback). Give 0.0.0.0:PORT or
    /// [::]:PORT to be scraped from other machines. The default port is not node_exporter's
    /// 9100, so that both can run on one host.
    #[arg(long, default_value = "127.0.0.1:9797", value_name = "ADDR")]
    listen: String,

    /// Add CPU series for each CPU (`vmmon_percpu_seconds_total{cpu="0",…}`).
    #[arg(long)]
    per_cpu: bool,

    /// Partitions as well as whole disks.
    #[arg(long)]
    partitions: bool,

    /// Only these block devices and interfaces (comma-separated; `*` and `?` wildcards).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    devices: Vec<String>,

    /// Leave out these block devices and interfaces (comma-separated; wildcards).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    exclude: Vec<String>,

    #[command(flatten)]
    vms: super::record::VmArgs,

    /// Read proc files under this directory (for captured trees).
    #[arg(long, default_value = "/proc", hide = true)]
    proc_root: PathBuf,

    /// Read sys files under this directory.
    #[arg(long, default_value = "/sys", hide = true)]
    sys_root: PathBuf,
}

impl ServeArgs {
    fn config(&self) -> Result<RecordConfig, UsageError> {
        let vms = self.vms.select()?;
        Ok(RecordConfig {
            // Scrapes are seconds apart: a rate of 0.1 Hz makes the per-VM view re-scan
            // threads and taps at every scrape instead of every 10th.
            rate_hz: 0.1,
            proc_root: self.proc_root.clone(),
            sys_root: self.sys_root.clone(),
            sources: SourceOptions {
                per_cpu: self.per_cpu,
                filter: DeviceFilter {
                    include: self.devices.clone(),
                    exclude: self.exclude.clone(),
                    partitions: self.partitions,
                },
            },
            vms,
            ..RecordConfig::default()
        })
    }
}

/// Parses `--listen`: `IP:PORT`, `HOST:PORT`, or `:PORT` for loopback.
pub fn parse_listen(s: &str) -> Result<SocketAddr, UsageError> {
    let bad = |why: String| UsageError(format!("--listen '{s}': {why} (e.g. 127.0.0.1:9797)"));
    let spec = match s.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => s.to_string(),
    };
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(a);
    }
    let mut addrs = spec
        .to_socket_addrs()
        .map_err(|e| bad(format!("not an address: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// Answers one request: `GET /metrics` scrapes (the server answers HEAD as GET without the
/// body), anything else is 404 or 405.
pub fn handle(scraper: &Mutex<Scraper>, req: &Request) -> Response {
    if req.path != "/metrics" {
        return Response::text(404, &format!("no page {}: try /metrics", req.path));
    }
    if req.method != "GET" {
        let mut r = Response::text(
            405,
            &format!("method {} not allowed: use GET or HEAD", req.method),
        );
        r.headers.push("Allow: GET, HEAD".into());
        return r;
    }
    let format = Format::negotiate(req.accept.as_deref());
    // A scrape that panicked cannot have left the recorder half-updated in a way that
    // matters: the next scrape re-reads every slot.
    let mut s = scraper.lock().unwrap_or_else(|e| e.into_inner());
    let page = s.scrape(format).map(|p| p.as_bytes().to_vec());
    for note in s.take_notes() {
        eprintln!("vmmon serve: {note}");
    }
    drop(s);
    match page {
        Ok(body) => Response {
            status: 200,
            content_type: format.content_type().into(),
            headers: Vec::new(),
            body,
        },
        Err(reason) => {
            eprintln!("vmmon serve: scrape failed: {reason}");
            Response::text(500, &reason)
        }
    }
}

/// Runs `vmmon serve` until killed.
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let addr = parse_listen(&args.listen)?;
    let config = args.config()?;
    let mut scraper = Scraper::new(config)?;
    // One sample at start-up: a /proc that cannot be read fails now, not at the first scrape.
    if let Err(reason) = scraper.scrape(Format::Text) {
        anyhow::bail!("{reason}");
    }
    for note in scraper.take_notes() {
        eprintln!("vmmon serve: {note}");
    }
    let listener =
        TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    eprintln!("vmmon serve: listening on http://{local}/metrics");
    let scraper = Arc::new(Mutex::new(scraper));
    let handler = Arc::new(move |req: &Request| handle(&scraper, req));
    http::serve(listener, Limits::default(), handler)
        .map_err(|e| anyhow::anyhow!("accepting connections on {local}: {e}"))?;
    Ok(0)
}
