//! `backend`: a fake application server that keeps per-session state, so a request that lands on
//! the wrong host shows up as lost state (its counter starts again at 1).
//!
//! Every request other than `/healthz` and `/admin/*` increments the counter of its session and
//! answers JSON: `{"backend", "address", "state", "session", "count", "new_session", "method",
//! "path", "target_header", "target_header_copies"}`.
//!
//! Session key, first that is present:
//!   1. cookie `JSESSIONID`                       -> `jsid:<value>`
//!   2. `authorization: Bearer <JWT>`, claim `sub` -> `user:<sub>` (decoded, not verified)
//!   3. header `x-user-id`                         -> `user:<value>` (same user as the JWT `sub`)
//!   4. cookie `app_session`                       -> `app:<value>`
//!   5. none: a new session; the answer sets `app_session` (a random id), like an application's
//!      own session cookie. The router's sticky cookie (`srv`) is deliberately not a key: it is
//!      re-signed when a session moves to another host, while the application's session id stays.
//!
//! State: `STATE=memory` (default; a map in this process) or `STATE=redis` (`INCR` on
//! `REDIS_ADDR`, default `redis:6379`, spoken in RESP over TCP).
//!
//! Admin: `/healthz` (200, or 503 when failing or Redis does not answer), `/admin/fail` (then 503
//! on everything but `/admin/*`), `/admin/recover`, `/admin/slow?ms=N` (delay every application
//! request by N ms, 0 to stop), `/admin/stats` (request counts, and `in_flight`: application
//! requests being answered right now).
//!
//! Environment: `BACKEND_NAME` (default `$HOSTNAME`), `LISTEN` (default `0.0.0.0:8080`), `STATE`,
//! `REDIS_ADDR`.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use session_router_harness::http::{self, ReadError, Request};
use session_router_harness::jwt::jwt_claim;

const MAX_KEY_BYTES: usize = 1024;
const MAX_MEMORY_SESSIONS: usize = 1_000_000;
const MAX_SLOW_MS: u64 = 60_000;
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

enum Store {
    Memory(Mutex<HashMap<String, u64>>),
    Redis(String),
}

struct Backend {
    name: String,
    store: Store,
    failing: AtomicBool,
    slow_ms: AtomicU64,
    requests: AtomicU64,
    /// Application requests being answered right now (a slow backend's queue, as it sees it).
    in_flight: AtomicU64,
    healthz: AtomicU64,
    errors: AtomicU64,
    started: Instant,
    ids: AtomicU64,
    random: RandomState,
}

impl Backend {
    fn state_name(&self) -> &'static str {
        match self.store {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    fn new_session_id(&self) -> String {
        let n = self.ids.fetch_add(1, Relaxed);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let a = self.random.hash_one((n, nanos, 1u8));
        let b = self.random.hash_one((n, nanos, 2u8));
        format!("{a:016x}{b:016x}")
    }
}

/// One Redis connection, owned by one client connection's thread.
struct Redis {
    conn: BufReader<TcpStream>,
}

enum Reply {
    Int(i64),
    Simple(String),
    Bulk(Option<Vec<u8>>),
}

impl Redis {
    fn connect(addr: &str) -> io::Result<Redis> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
        for sa in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, REDIS_TIMEOUT) {
                Ok(s) => {
                    s.set_read_timeout(Some(REDIS_TIMEOUT))?;
                    s.set_write_timeout(Some(REDIS_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    return Ok(Redis { conn: BufReader::new(s) });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn command(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&out)?;
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let mut line = String::new();
        if (&mut self.conn).take(4096).read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed the connection"));
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply".into()))?;
        match kind {
            ":" => rest.parse().map(Reply::Int).map_err(|_| bad(format!("bad integer {rest:?}"))),
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Err(io::Error::other(format!("redis: {rest}"))),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| bad(format!("bad bulk length {rest:?}")))?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len).map_err(|_| bad("bulk too large".into()))?;
                if len > 1 << 20 {
                    return Err(bad("bulk too large".into()));
                }
                let mut data = vec![0; len + 2];
                self.conn.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(bad(format!("unexpected reply {line:?}"))),
        }
    }
}

/// Per client connection: the lazily opened Redis connection.
struct Conn<'a> {
    backend: &'a Backend,
    local: String,
    redis: Option<Redis>,
}

impl Conn<'_> {
    /// `command` on this connection's Redis link, opened on first use and dropped on error
    /// (the next request reconnects; a failed request is never retried, INCR is not idempotent).
    fn redis(&mut self, addr: &str, args: &[&[u8]]) -> io::Result<Reply> {
        if self.redis.is_none() {
            self.redis = Some(Redis::connect(addr)?);
        }
        let Some(r) = self.redis.as_mut() else { return Err(io::Error::other("no redis connection")) };
        let reply = r.command(args);
        if reply.is_err() {
            self.redis = None;
        }
        reply
    }

    fn increment(&mut self, key: &str) -> Result<u64, (u16, String)> {
        match &self.backend.store {
            Store::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if map.len() >= MAX_MEMORY_SESSIONS && !map.contains_key(key) {
                    return Err((507, "too many sessions in memory".into()));
                }
                let n = map.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                Ok(*n)
            }
            Store::Redis(addr) => {
                let addr = addr.clone();
                let redis_key = format!("session:{key}");
                match self.redis(&addr, &[b"INCR", redis_key.as_bytes()]) {
                    Ok(Reply::Int(n)) => u64::try_from(n).map_err(|_| (500, format!("INCR gave {n}"))),
                    Ok(_) => Err((503, "state store: unexpected reply to INCR".into())),
                    Err(e) => Err((503, format!("state store: {e}"))),
                }
            }
        }
    }

    fn store_healthy(&mut self) -> Result<(), String> {
        match &self.backend.store {
            Store::Memory(_) => Ok(()),
            Store::Redis(addr) => match self.redis(&addr.clone(), &[b"PING"]) {
                Ok(Reply::Simple(s)) if s == "PONG" => Ok(()),
                Ok(Reply::Bulk(Some(b))) if b == b"PONG" => Ok(()),
                Ok(_) => Err("redis: unexpected reply to PING".into()),
                Err(e) => Err(format!("redis: {e}")),
            },
        }
    }

    fn sessions(&self) -> Option<usize> {
        match &self.backend.store {
            Store::Memory(map) => Some(map.lock().unwrap_or_else(|p| p.into_inner()).len()),
            Store::Redis(_) => None,
        }
    }

    fn error(&self, status: u16, why: &str) -> Answer {
        self.backend.errors.fetch_add(1, Relaxed);
        Answer::json(status, json!({"backend": self.backend.name, "error": why}))
    }

    fn handle(&mut self, req: &Request) -> Answer {
        let b = self.backend;
        let path = req.path();
        if path == "/healthz" {
            b.healthz.fetch_add(1, Relaxed);
            if b.failing.load(Relaxed) {
                return self.error(503, "failing (/admin/fail)");
            }
            return match self.store_healthy() {
                Ok(()) => {
                    Answer::json(200, json!({"backend": b.name, "status": "ok", "state": b.state_name()}))
                }
                Err(e) => self.error(503, &e),
            };
        }
        if let Some(action) = path.strip_prefix("/admin/") {
            return self.admin(action, req);
        }
        b.requests.fetch_add(1, Relaxed);
        let _in_flight = InFlight::start(&b.in_flight);
        if b.failing.load(Relaxed) {
            return self.error(503, "failing (/admin/fail)");
        }
        let slow = b.slow_ms.load(Relaxed);
        if slow > 0 {
            std::thread::sleep(Duration::from_millis(slow));
        }
        let (key, new_id) = match session_key(req) {
            Some(key) => (key, None),
            None => {
                let id = b.new_session_id();
                (format!("app:{id}"), Some(id))
            }
        };
        if key.len() > MAX_KEY_BYTES {
            return self.error(400, "session key too long");
        }
        let count = match self.increment(&key) {
            Ok(n) => n,
            Err((status, why)) => {
                eprintln!("{}: {why}", b.name);
                return self.error(status, &why);
            }
        };
        let targets: Vec<&str> = req.header_values("x-gateway-destination-endpoint").collect();
        let body = json!({
            "backend": b.name,
            "address": self.local,
            "state": b.state_name(),
            "session": key,
            "count": count,
            "new_session": new_id.is_some(),
            "method": req.method,
            "path": path,
            "target_header": targets.first(),
            "target_header_copies": targets.len(),
        });
        let mut answer = Answer::json(200, body);
        if let Some(id) = new_id {
            answer.headers.push(("set-cookie", format!("app_session={id}; Path=/; HttpOnly; SameSite=Lax")));
        }
        answer
    }

    fn admin(&mut self, action: &str, req: &Request) -> Answer {
        let b = self.backend;
        match action {
            "fail" => {
                b.failing.store(true, Relaxed);
                eprintln!("{}: failing on request (/admin/fail)", b.name);
            }
            "recover" => {
                b.failing.store(false, Relaxed);
                eprintln!("{}: recovered (/admin/recover)", b.name);
            }
            "slow" => {
                let Some(ms) = req.query("ms").and_then(|v| v.parse::<u64>().ok()) else {
                    return self.error(400, "usage: /admin/slow?ms=N");
                };
                b.slow_ms.store(ms.min(MAX_SLOW_MS), Relaxed);
                eprintln!("{}: answering after {} ms (/admin/slow)", b.name, ms.min(MAX_SLOW_MS));
            }
            "stats" => {}
            _ => return self.error(404, "unknown admin action (fail, recover, slow?ms=N, stats)"),
        }
        Answer::json(
            200,
            json!({
                "backend": b.name,
                "address": self.local,
                "state": b.state_name(),
                "requests": b.requests.load(Relaxed),
                "healthz": b.healthz.load(Relaxed),
                "errors": b.errors.load(Relaxed),
                "sessions": self.sessions(),
                "failing": b.failing.load(Relaxed),
                "slow_ms": b.slow_ms.load(Relaxed),
                "in_flight": b.in_flight.load(Relaxed),
                "uptime_s": b.started.elapsed().as_secs(),
            }),
        )
    }
}

/// Counts one application request in flight until dropped.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn start(counter: &'a AtomicU64) -> InFlight<'a> {
        counter.fetch_add(1, Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer { status, headers: Vec::new(), body: body.to_string() }
    }
}

/// The session key (see the module documentation), or `None` for a new session.
fn session_key(req: &Request) -> Option<String> {
    if let Some(v) = req.cookie("JSESSIONID") {
        return Some(format!("jsid:{v}"));
    }
    let bearer = req.header_values("authorization").find_map(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    if let Some(sub) = bearer.and_then(|t| jwt_claim(t, "sub")).filter(|s| !s.is_empty()) {
        return Some(format!("user:{sub}"));
    }
    if let Some(v) = req.header("x-user-id").filter(|v| !v.is_empty()) {
        return Some(format!("user:{v}"));
    }
    req.cookie("app_session").map(|v| format!("app:{v}"))
}

fn serve(stream: TcpStream, backend: &Backend) {
    let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut conn = Conn { backend, local, redis: None };
    loop {
        match http::read_request(&mut reader) {
            Ok(req) => {
                let keep_alive = req.keep_alive();
                let answer = conn.handle(&req);
                let head_only = req.method == "HEAD";
                let sent = http::write_response(
                    &mut writer,
                    answer.status,
                    &answer.headers,
                    &answer.body,
                    keep_alive,
                    head_only,
                );
                if sent.is_err() || !keep_alive {
                    return;
                }
            }
            Err(ReadError::Bad(status, why)) => {
                backend.errors.fetch_add(1, Relaxed);
                let body = json!({"backend": backend.name, "error": why}).to_string();
                let _ = http::write_response(&mut writer, status, &[], &body, false, false);
                return;
            }
            Err(ReadError::Closed | ReadError::Io(_)) => return,
        }
    }
}

fn main() {
    let name = std::env::var("BACKEND_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "backend".to_string());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".to_string());
    let store = match std::env::var("STATE").as_deref() {
        Ok("memory") | Ok("") | Err(_) => Store::Memory(Mutex::new(HashMap::new())),
        Ok("redis") => Store::Redis(std::env::var("REDIS_ADDR").unwrap_or_else(|_| "redis:6379".to_string())),
        Ok(other) => {
            eprintln!("backend: STATE={other:?}: expected memory or redis");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backend {name}: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let backend: &'static Backend = Box::leak(Box::new(Backend {
        name,
        store,
        failing: AtomicBool::new(false),
        slow_ms: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        healthz: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        started: Instant::now(),
        ids: AtomicU64::new(0),
        random: RandomState::new(),
    }));
    let where_state = match &backend.store {
        Store::Memory(_) => "in memory".to_string(),
        Store::Redis(addr) => format!("in redis at {addr}"),
    };
    eprintln!("backend {} listening on {listen}, session state {where_state}", backend.name);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let spawned =
            std::thread::Builder::new().stack_size(256 * 1024).spawn(move || serve(stream, backend));
        if let Err(e) = spawned {
            eprintln!("{}: cannot start a connection thread: {e}", backend.name);
        }
    }
}
