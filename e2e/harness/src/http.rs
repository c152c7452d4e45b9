//! Just enough HTTP/1.1 for the harness: a bounded request reader and response writer for the
//! backend, and a keep-alive client for the driver. Bad input is an `Err`, never a panic.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Request line plus headers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 128;
/// Request bodies are read and dropped; larger ones are refused.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub version: String,
    /// Names lowercased, values trimmed, in arrival order (a name may repeat).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    /// Malformed or oversized request: answer `status` and close.
    Bad(u16, String),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl Request {
    /// Every value of header `name` (lowercase).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The raw (not percent-decoded) value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }

    /// The value of cookie `name` across every `cookie` header, `"quoted"` values unwrapped.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        cookie_value(self.header_values("cookie"), name)
    }

    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// The first non-empty value of cookie `name` in these `cookie` header values.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.flat_map(|h| h.split(';')).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        (!v.is_empty()).then_some(v)
    })
}

/// Reads one line of at most `*budget` bytes (CRLF or LF), charging the budget.
/// `Ok(None)`: end of stream before any byte.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, ReadError> {
    let mut line = Vec::new();
    let n = r.by_ref().take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(ReadError::Bad(431, "request head too large".into()));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Bad(400, "truncated request".into()));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Reads a request head and drops its body. `ReadError::Closed` at a clean end of stream.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    // Tolerate empty lines before a request (RFC 9112 §2.2).
    let line = loop {
        match read_line(r, &mut budget)? {
            None => return Err(ReadError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line".into()));
    };
    if method.is_empty() || !target.starts_with('/') && target != "*" || !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(400, "malformed request line".into()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers: Vec::new(),
    };
    loop {
        let Some(line) = read_line(r, &mut budget)? else {
            return Err(ReadError::Bad(400, "truncated request".into()));
        };
        if line.is_empty() {
            break;
        }
        if req.headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad(431, "too many headers".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header".into()));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ReadError::Bad(400, "malformed header name".into()));
        }
        req.headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let chunked = req.header_values("transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        discard_chunked(r)?;
    } else if let Some(len) = req.header("content-length") {
        let len: u64 = len.parse().map_err(|_| ReadError::Bad(400, "bad content-length".into()))?;
        if len > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "body too large".into()));
        }
        let copied = io::copy(&mut r.by_ref().take(len), &mut io::sink())?;
        if copied != len {
            return Err(ReadError::Bad(400, "truncated body".into()));
        }
    }
    Ok(req)
}

fn discard_chunked(r: &mut impl BufRead) -> Result<(), ReadError> {
    let mut total = 0u64;
    loop {
        let mut budget = 1024;
        let Some(line) = read_line(r, &mut budget)? else {
            return Err(ReadError::Bad(400, "truncated chunked body".into()));
        };
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad(400, "bad chunk size".into()))?;
        total = total.saturating_add(size);
        if total > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "body too large".into()));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD_BYTES;
            while let Some(l) = read_line(r, &mut budget)? {
                if l.is_empty() {
                    return Ok(());
                }
            }
            return Err(ReadError::Bad(400, "truncated chunked body".into()));
        }
        let copied = io::copy(&mut r.by_ref().take(size + 2), &mut io::sink())?;
        if copied != size + 2 {
            return Err(ReadError::Bad(400, "truncated chunk".into()));
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Writes a complete response with a JSON body.
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    extra_headers: &[(&str, String)],
    body: &str,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in order; `set-cookie` may repeat.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The value of the `Set-Cookie` for cookie `name`, without attributes.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookie_line(name).and_then(|l| {
            let first = l.split(';').next()?;
            first.split_once('=').map(|(_, v)| v.trim().to_string())
        })
    }

    /// The whole `Set-Cookie` line for cookie `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.header_values("set-cookie").find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == name))
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("not JSON: {e}"))
    }
}

/// A keep-alive HTTP/1.1 client for one server address.
pub struct Client {
    addr: String,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: &str, timeout: Duration) -> Client {
        Client { addr: addr.to_string(), timeout, conn: None }
    }

    fn connect(&self) -> io::Result<BufReader<TcpStream>> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{}: no address", self.addr));
        for sa in self.addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, self.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.timeout))?;
                    s.set_write_timeout(Some(self.timeout))?;
                    s.set_nodelay(true)?;
                    return Ok(BufReader::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one request (no body). A reused connection that the server had already closed
    /// (nothing at all came back) is replaced and the request sent once more; any other
    /// failure is returned, so a request is never sent twice after the server saw it.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> io::Result<Response> {
        let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let reused = self.conn.is_some();
        match self.exchange(&head, method == "HEAD") {
            Err(Stale) if reused => {
                self.conn = None;
                self.exchange(&head, method == "HEAD").map_err(Failure::into_io)
            }
            r => r.map_err(Failure::into_io),
        }
    }

    fn exchange(&mut self, head: &str, head_only: bool) -> Result<Response, Failure> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(Failure::Io)?,
        };
        if conn.get_mut().write_all(head.as_bytes()).is_err() {
            return Err(Stale);
        }
        let mut budget = MAX_HEAD_BYTES;
        let status_line = match read_line(&mut conn, &mut budget) {
            Ok(Some(l)) => l,
            Ok(None) => return Err(Stale),
            Err(ReadError::Io(e))
                if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
            {
                return Err(Stale);
            }
            Err(e) => return Err(Failure::Io(read_error(e))),
        };
        let response = read_response(&mut conn, &status_line, &mut budget, head_only).map_err(Failure::Io)?;
        let close = response.header_values("connection").any(|v| v.eq_ignore_ascii_case("close"));
        if !close {
            self.conn = Some(conn);
        }
        Ok(response)
    }
}

enum Failure {
    /// The connection was closed before any byte of an answer: safe to resend.
    Stale,
    Io(io::Error),
}
use Failure::Stale;

impl Failure {
    fn into_io(self) -> io::Error {
        match self {
            Stale => io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed without an answer"),
            Failure::Io(e) => e,
        }
    }
}

fn read_error(e: ReadError) -> io::Error {
    match e {
        ReadError::Io(e) => e,
        ReadError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
        ReadError::Bad(_, why) => io::Error::new(io::ErrorKind::InvalidData, why),
    }
}

fn read_response(
    conn: &mut BufReader<TcpStream>,
    status_line: &str,
    budget: &mut usize,
    head_only: bool,
) -> io::Result<Response> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn, budget).map_err(read_error)?.ok_or_else(|| bad("truncated response"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad("malformed response header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked =
        response.header_values("transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked"));
    let content_length = response.header_values("content-length").next().map(str::to_string);
    if chunked {
        loop {
            let mut b = 1024;
            let line = read_line(conn, &mut b).map_err(read_error)?.ok_or_else(|| bad("truncated chunk"))?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if response.body.len() + size > 16 * 1024 * 1024 {
                return Err(bad("response too large"));
            }
            if size == 0 {
                let mut b = MAX_HEAD_BYTES;
                while let Some(l) = read_line(conn, &mut b).map_err(read_error)? {
                    if l.is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            conn.read_exact(&mut response.body[start..])?;
            let mut crlf = [0u8; 2];
            conn.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = content_length {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if len > 16 * 1024 * 1024 {
            return Err(bad("response too large"));
        }
        response.body.resize(len, 0);
        conn.read_exact(&mut response.body)?;
    } else {
        conn.by_ref().take(16 * 1024 * 1024).read_to_end(&mut response.body)?;
        response.headers.push(("connection".into(), "close".into()));
    }
    Ok(response)
}

/// One GET on a fresh connection.
pub fn get(addr: &str, target: &str, timeout: Duration) -> io::Result<Response> {
    Client::new(addr, timeout).request("GET", target, &[("connection".into(), "close".into())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut BufReader::new(raw))
    }

    #[test]
    fn reads_a_request_with_cookies_and_a_body() {
        let raw = b"POST /p?a=1&sid=x HTTP/1.1\r\nCookie: a=b; JSESSIONID=\"q\"\r\ncookie: srv=z\r\n\
                    Content-Length: 3\r\n\r\nabc";
        let req = parse(raw).unwrap();
        assert_eq!((req.method.as_str(), req.path(), req.query("sid")), ("POST", "/p", Some("x")));
        assert_eq!(req.cookie("JSESSIONID"), Some("q"));
        assert_eq!(req.cookie("srv"), Some("z"));
        assert!(req.keep_alive());
    }

    #[test]
    fn bad_requests_are_errors() {
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(MAX_HEADERS + 1));
        let cases: [&[u8]; 9] = [
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nhost: x",
            big.as_bytes(),
            many.as_bytes(),
        ];
        for raw in cases {
            assert!(matches!(parse(raw), Err(ReadError::Bad(..))), "{:?}", String::from_utf8_lossy(raw));
        }
        assert!(matches!(parse(b""), Err(ReadError::Closed)));
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(parse(chunked).is_ok());
    }
}
