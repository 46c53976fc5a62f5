//! A minimal HTTP/1.1 server for one read-only endpoint: a thread per connection, one
//! request per connection (`Connection: close`), bounded in header size, time and number of
//! connections.
//!
//! A scrape endpoint needs none of an async stack: Prometheus opens a connection every few
//! seconds. `httparse` (the parser under hyper) does the parsing; the rest is `std::net`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Limits that keep a slow or hostile client from holding the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers) accepted; larger gets 431.
    pub max_head_bytes: usize,
    /// Time allowed to receive the whole request head; a slower client is dropped with 408.
    pub read_timeout: Duration,
    /// Time allowed to send the response.
    pub write_timeout: Duration,
    /// Connections served at once; more get 503 at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// The parts of a request the handler needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
}

/// A complete response; sent with `Content-Length` and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// Extra header lines (`Allow: GET`), without CRLF.
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text response (for errors): the body is `text` and a newline.
    pub fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: format!("{text}\n").into_bytes(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes `resp` to `w` in one write.
pub fn write_response(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    let mut all = head_of(resp).into_bytes();
    all.extend_from_slice(&resp.body);
    w.write_all(&all)?;
    w.flush()
}

/// Writes only the head of `resp` (the answer to HEAD), `Content-Length` still the body's.
pub fn write_head(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    w.write_all(head_of(resp).as_bytes())?;
    w.flush()
}

/// The status line and headers of `resp`, ending with the blank line.
fn head_of(resp: &Response) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for h in &resp.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Reads one request head from `stream` within `limits`; `Err` is the response to send.
pub fn read_request(stream: &mut impl Read, limits: &Limits) -> Result<Request, Response> {
    let mut buf = vec![0u8; limits.max_head_bytes];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(Response::text(
                431,
                &format!("request head larger than {} bytes", limits.max_head_bytes),
            ));
        }
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(Response::text(400, "connection closed mid-request")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Response::text(408, "request not received in time"));
            }
            Err(e) => return Err(Response::text(400, &format!("read error: {e}"))),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("/");
                // The absolute form (`GET http://host:9797/metrics`, from a proxy) names the
                // same page as its path (RFC 9112 3.2.2: a server must accept it).
                let path = ["http://", "https://"]
                    .iter()
                    .find_map(|scheme| path.strip_prefix(scheme))
                    .map_or(path, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
                let path = path.split_once('?').map_or(path, |(p, _)| p).to_string();
                let accept = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("accept"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return Ok(Request {
                    method: req.method.unwrap_or("").to_string(),
                    path,
                    accept,
                });
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Response::text(431, "more than 64 request headers"));
            }
            Err(e) => return Err(Response::text(400, &format!("malformed request: {e}"))),
        }
    }
}

/// Serves one connection: reads the request within the limits, answers, closes.
fn connection(
    mut stream: TcpStream,
    limits: &Limits,
    handler: &(dyn Fn(&Request) -> Response + Send + Sync),
) {
    let deadline = Instant::now() + limits.read_timeout;
    // A read timeout per `read` alone would let a client trickle a byte at a time forever:
    // the reader below shortens each read's timeout to what is left of the whole budget.
    let mut reader = Deadline {
        stream: &stream,
        deadline,
    };
    let (resp, head) = match read_request(&mut reader, limits) {
        // HEAD is GET without the body (RFC 9110 9.3.2): the handler answers the GET, and
        // only the head, with the body's length, is sent.
        Ok(req) if req.method == "HEAD" => {
            let get = Request {
                method: "GET".into(),
                ..req
            };
            (handler(&get), true)
        }
        Ok(req) => (handler(&req), false),
        Err(resp) => (resp, false),
    };
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let _ = if head {
        write_head(&mut stream, &resp)
    } else {
        write_response(&mut stream, &resp)
    };
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// A reader that fails with `TimedOut` once `deadline` has passed.
struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Accepts connections on `listener` forever, each on a thread of its own, and answers each
/// with `handler`. Returns only if accepting fails for good.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let mut failures = 0u32;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => {
                failures = 0;
                s
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait and go on,
                // unless it never recovers.
                failures += 1;
                if failures > 100 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            active.fetch_sub(1, Ordering::AcqRel);
            let mut s = stream;
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = write_response(&mut s, &Response::text(503, "too many connections"));
            continue;
        }
        let (slot, handler) = (Arc::clone(&active), Arc::clone(&handler));
        let spawned = std::thread::Builder::new()
            .name("vmmon-http".into())
            .spawn(move || {
                connection(stream, &limits, handler.as_ref());
                slot.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            // The closure (and so the stream) is dropped unrun: the client sees the
            // connection close, and the slot it took is given back here.
            active.fetch_sub(1, Ordering::AcqRel);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler = Arc::new(|req: &Request| Response::text(200, &req.path));
        std::thread::spawn(move || serve(listener, limits, handler));
        addr
    }

    fn answer(mut s: TcpStream) -> String {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn a_client_that_trickles_its_request_is_cut_off_at_the_deadline() {
        let limits = Limits {
            read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let addr = server(limits);
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        // A byte every 100 ms: each read is quick, the whole is too slow.
        for b in b"GET /metrics HTTP/1.1\r\n" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if t.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        let out = answer(s);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn the_absolute_form_names_its_path() {
        let limits = Limits::default();
        for (line, want) in [
            ("GET http://127.0.0.1:9797/metrics HTTP/1.1", "/metrics"),
            ("GET https://host/metrics?x=1 HTTP/1.1", "/metrics"),
            ("GET http://host HTTP/1.1", "/"),
            ("GET /metrics HTTP/1.1", "/metrics"),
        ] {
            let text = format!("{line}\r\n\r\n");
            let req = read_request(&mut text.as_bytes(), &limits).expect("parsed");
            assert_eq!(req.path, want, "{line}");
        }
    }

    #[test]
    fn requests_are_parsed_and_limited() {
        let limits = Limits::default();
        let req = read_request(
            &mut &b"GET /metrics?a=b HTTP/1.1\r\nACCEPT: text/plain\r\n\r\n"[..],
            &limits,
        )
        .expect("parsed");
        assert_eq!(req.path, "/metrics");
        assert_eq!(req.accept.as_deref(), Some("text/plain"));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
        let r = read_request(&mut big.as_bytes(), &limits).expect_err("too big");
        assert_eq!(r.status, 431);
        let r = read_request(&mut &b"GET / HT"[..], &limits).expect_err("cut");
        assert_eq!(r.status, 400);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..70 {
            many.push_str(&format!("X{i}: y\r\n"));
        }
        many.push_str("\r\n");
        let r = read_request(&mut many.as_bytes(), &limits).expect_err("many");
        assert_eq!(r.status, 431);
        let addr = server(limits);
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        let out = answer(s);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("Content-Length: 3\r\nConnection: close\r\n\r\n/x\n"),
            "{out}"
        );
    }

    #[test]
    fn connections_beyond_the_limit_get_503() {
        let limits = Limits {
            max_connections: 1,
            read_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let addr = server(limits);
        // The first holds the only slot by sending nothing.
        let _idle = TcpStream::connect(addr).expect("connect");
        std::thread::sleep(Duration::from_millis(200));
        let mut s = TcpStream::connect(addr).expect("connect");
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let out = answer(s);
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    }
}
