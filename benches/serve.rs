//! What one scrape of `vmmon serve` costs against one sample of `vmmon record`, on the live
//! `/proc`. Run: `cargo bench --bench serve`. Figures go to docs/performance.md.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vmmon::export::http::{self, Limits, Request, Response};
use vmmon::export::openmetrics::{Format, Scraper};
use vmmon::record::{Cell, Layout, RecordConfig, Recorder};

/// One sample + derive + format, as the recorder's loop does it.
fn record_sample(c: &mut Criterion, g: &str, layout: Layout) {
    let config = RecordConfig {
        layout,
        ..RecordConfig::default()
    };
    let mut rec = Recorder::new(config).expect("recorder");
    let schema = rec.schema().clone();
    let (mut prev, mut cur) = (schema.new_sample(), schema.new_sample());
    rec.read(&mut prev);
    let mut cells: Vec<Cell> = Vec::new();
    let mut line = String::new();
    c.bench_function(g, |b| {
        b.iter(|| {
            cur.mono = prev.mono + Duration::from_millis(10);
            rec.read(&mut cur);
            schema.derive(&prev, &cur, &mut cells);
            rec.format_row(&cur, &cells, None, &mut line);
            black_box(&line);
            std::mem::swap(&mut prev, &mut cur);
        })
    });
}

fn scrape(c: &mut Criterion) {
    record_sample(c, "record_sample_csv_rates", Layout::Wide);
    record_sample(c, "record_sample_openmetrics_block", Layout::OpenMetrics);

    let mut s = Scraper::new(RecordConfig::default()).expect("scraper");
    c.bench_function("scrape_in_process_openmetrics", |b| {
        b.iter(|| black_box(s.scrape(Format::OpenMetrics).expect("scrape").len()))
    });
    c.bench_function("scrape_in_process_text_004", |b| {
        b.iter(|| black_box(s.scrape(Format::Text).expect("scrape").len()))
    });

    // The whole request over loopback: connect, parse, scrape, answer, read to EOF (client
    // and server both in this process, so this is their sum).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shared = Arc::new(Mutex::new(s));
    let handler = Arc::new(move |req: &Request| {
        let mut s = shared.lock().expect("lock");
        let format = Format::negotiate(req.accept.as_deref());
        let body = s.scrape(format).expect("scrape").as_bytes().to_vec();
        Response {
            status: 200,
            content_type: format.content_type().into(),
            headers: Vec::new(),
            body,
        }
    });
    std::thread::spawn(move || http::serve(listener, Limits::default(), handler));
    let request = b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n";
    let mut page = Vec::with_capacity(64 * 1024);
    c.bench_function("scrape_over_loopback_http", |b| {
        b.iter(|| {
            let mut conn = TcpStream::connect(addr).expect("connect");
            conn.write_all(request).expect("send");
            page.clear();
            conn.read_to_end(&mut page).expect("read");
            black_box(page.len())
        })
    });
}

criterion_group!(benches, scrape);
criterion_main!(benches);
