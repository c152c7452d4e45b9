//! `e2e`: the end-to-end driver. It talks to the stack only from outside: Envoy's listener and
//! admin port, and the backends' own `/admin/stats` (never through Envoy).
//!
//!   e2e before   checks + 1000 sessions × 20 requests; writes the sessions to $STATE_FILE
//!   e2e after    (after the runner has `docker stop`ped $VICTIM) every session goes on:
//!                only the victim's sessions move; prints the figures of both phases
//!   e2e check    `before` without the state file (what `docker compose up` runs)
//!   e2e scale-before [N], e2e scale-to N
//!                the scaling scenario of docker-compose.scale.yml (`--scale backend=N`): see
//!                e2e/scale.rs
//!   e2e bounded  the bounded-load scenario (Envoy with envoy-bounded.yaml): one backend made
//!                slow, new sessions steer around it, no pinned session moves: see e2e/bounded.rs
//!
//! Exit status 0 when every check passed, 1 otherwise, 2 on bad usage.
//!
//! Environment (defaults are the compose stack's): ENVOY (envoy:10000), ENVOY_ADMIN (envoy:9901),
//! BACKENDS (backend-1=10.213.87.11:8080,backend-2=…12:8080,backend-3=…13:8080), OUTSIDER
//! (outsider=10.213.87.19:8080), NOWHERE (10.213.87.99:8080, forged only, never contacted), STATE (memory|redis: what the backends must report), SESSIONS
//! (1000), REQUESTS (20), REQUESTS_AFTER (10), THREADS (32), VICTIM (backend-2), STATE_FILE
//! (/out/e2e-state.tsv), READY_TIMEOUT (90 s).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use session_router_harness::http::{self, Client, Response};
use session_router_harness::json::Value;
use session_router_harness::make_jwt;

#[path = "e2e/bounded.rs"]
mod bounded;
#[path = "e2e/scale.rs"]
mod scale;

const TIMEOUT: Duration = Duration::from_secs(20);
const TARGET_HEADER: &str = "x-gateway-destination-endpoint";
const STICKY: &str = "srv";
const APP_COOKIE: &str = "app_session";
const MAX_PRINTED_FAILURES: u64 = 25;

// ---------------------------------------------------------------------------------------------
// Configuration

struct Env {
    envoy: String,
    admin: String,
    /// (name, ip:port) of the backends in the filter's `hosts`.
    backends: Vec<(String, String)>,
    outsider: (String, String),
    /// An address on the test network where nothing listens (a forged target).
    nowhere: String,
    state: String,
    sessions: usize,
    requests: usize,
    requests_after: usize,
    threads: usize,
    victim: String,
    state_file: String,
    ready_timeout: Duration,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

fn number(name: &str, default: usize) -> Result<usize, String> {
    let text = var(name, &default.to_string());
    text.parse().map_err(|_| format!("{name}={text:?} is not a number"))
}

fn pairs(name: &str, default: &str) -> Result<Vec<(String, String)>, String> {
    var(name, default)
        .split(',')
        .map(|p| {
            let (n, a) =
                p.trim().split_once('=').ok_or_else(|| format!("{name}: {p:?} is not name=ip:port"))?;
            Ok((n.to_string(), a.to_string()))
        })
        .collect()
}

impl Env {
    fn load() -> Result<Env, String> {
        let env = Env {
            envoy: var("ENVOY", "envoy:10000"),
            admin: var("ENVOY_ADMIN", "envoy:9901"),
            backends: pairs(
                "BACKENDS",
                "backend-1=10.213.87.11:8080,backend-2=10.213.87.12:8080,backend-3=10.213.87.13:8080",
            )?,
            outsider: pairs("OUTSIDER", "outsider=10.213.87.19:8080")?
                .into_iter()
                .next()
                .ok_or("OUTSIDER is empty")?,
            nowhere: var("NOWHERE", "10.213.87.99:8080"),
            state: var("STATE", "memory"),
            sessions: number("SESSIONS", 1000)?.max(4),
            requests: number("REQUESTS", 20)?.max(2),
            requests_after: number("REQUESTS_AFTER", 10)?.max(1),
            threads: number("THREADS", 32)?.clamp(1, 512),
            victim: var("VICTIM", "backend-2"),
            state_file: var("STATE_FILE", "/out/e2e-state.tsv"),
            ready_timeout: Duration::from_secs(number("READY_TIMEOUT", 90)? as u64),
        };
        if env.state != "memory" && env.state != "redis" {
            return Err(format!("STATE={:?}: expected memory or redis", env.state));
        }
        if !env.backends.iter().any(|(n, _)| *n == env.victim) {
            return Err(format!("VICTIM={} is not one of BACKENDS", env.victim));
        }
        Ok(env)
    }

    fn backend_addr(&self, name: &str) -> Option<&str> {
        self.backends.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// What was sent, what Envoy must have counted

/// The decision the filter must take for a request, known from what the driver puts in it.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// No valid sticky cookie and no key: `decision.new`.
    New,
    /// A key from `sources`: `decision.hashed`.
    Hashed,
    /// A valid sticky cookie: `decision.pinned`, or `decision.failover` when its host is down.
    Pinned,
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    not_ok: AtomicU64,
    io_errors: AtomicU64,
    new: AtomicU64,
    hashed: AtomicU64,
    pinned: AtomicU64,
    bad_cookie: AtomicU64,
    srv_issued: AtomicU64,
    /// Sticky cookies received on requests that carried a valid one (a failover re-pins).
    srv_on_pinned: AtomicU64,
}

#[derive(Clone, Copy, Default, Debug)]
struct TallyNow {
    sent: u64,
    not_ok: u64,
    io_errors: u64,
    new: u64,
    hashed: u64,
    pinned: u64,
    bad_cookie: u64,
    srv_issued: u64,
    srv_on_pinned: u64,
}

impl Tally {
    fn now(&self) -> TallyNow {
        TallyNow {
            sent: self.sent.load(Relaxed),
            not_ok: self.not_ok.load(Relaxed),
            io_errors: self.io_errors.load(Relaxed),
            new: self.new.load(Relaxed),
            hashed: self.hashed.load(Relaxed),
            pinned: self.pinned.load(Relaxed),
            bad_cookie: self.bad_cookie.load(Relaxed),
            srv_issued: self.srv_issued.load(Relaxed),
            srv_on_pinned: self.srv_on_pinned.load(Relaxed),
        }
    }
}

/// One request's answer, as the backend described it.
#[derive(Debug, Default, Clone)]
struct Seen {
    status: u16,
    backend: String,
    address: String,
    count: u64,
    new_session: bool,
    target: String,
    srv: Option<String>,
    srv_line: Option<String>,
    app: Option<String>,
}

struct Ctx {
    env: Env,
    run: String,
    tally: Tally,
    failures: AtomicU64,
    configured: HashSet<String>,
    /// Addresses of backends stopped by the runner.
    down: HashSet<String>,
    log: Mutex<()>,
}

impl Ctx {
    fn fail(&self, msg: impl AsRef<str>) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n <= MAX_PRINTED_FAILURES {
            let _guard = self.log.lock();
            println!("FAIL {}", msg.as_ref());
        } else if n == MAX_PRINTED_FAILURES + 1 {
            println!("FAIL … (further failures counted, not printed)");
        }
    }

    fn check(&self, ok: bool, what: &str, detail: impl AsRef<str>) -> bool {
        if ok {
            println!("ok   {what}: {}", detail.as_ref());
        } else {
            self.fail(format!("{what}: {}", detail.as_ref()));
        }
        ok
    }

    /// One request through Envoy, tallied with the decision it must cause. Checks what holds
    /// for every answer: the target header the backend saw is one value, naming only configured
    /// hosts, the first being the backend that answered.
    fn send(
        &self,
        client: &mut Client,
        path: &str,
        headers: &[(String, String)],
        expect: Expect,
        bad_cookie: bool,
    ) -> Result<Seen, String> {
        let t = &self.tally;
        t.sent.fetch_add(1, Relaxed);
        match expect {
            Expect::New => t.new.fetch_add(1, Relaxed),
            Expect::Hashed => t.hashed.fetch_add(1, Relaxed),
            Expect::Pinned => t.pinned.fetch_add(1, Relaxed),
        };
        if bad_cookie {
            t.bad_cookie.fetch_add(1, Relaxed);
        }
        let response = client.request("GET", path, headers).map_err(|e| {
            t.io_errors.fetch_add(1, Relaxed);
            format!("GET {path} via Envoy: {e}")
        })?;
        let seen = self.read(&response);
        if seen.srv.is_some() {
            t.srv_issued.fetch_add(1, Relaxed);
            if expect == Expect::Pinned {
                t.srv_on_pinned.fetch_add(1, Relaxed);
            }
        }
        if seen.status != 200 {
            t.not_ok.fetch_add(1, Relaxed);
            return Ok(seen);
        }
        t.ok.fetch_add(1, Relaxed);
        // The answering host comes first, or after hosts that are down (Envoy retried the
        // request on the next address of the list).
        let listed: Vec<&str> = seen.target.split(',').collect();
        let position = listed.iter().position(|a| *a == seen.address);
        let skipped_only_down = position.is_some_and(|p| listed[..p].iter().all(|a| self.down.contains(*a)));
        if !skipped_only_down || listed.iter().any(|a| !self.configured.contains(*a)) {
            self.fail(format!(
                "{} at {} saw {TARGET_HEADER}: {:?} (must list configured hosts only, itself first \
                 or after down hosts)",
                seen.backend, seen.address, seen.target
            ));
        }
        Ok(seen)
    }

    fn read(&self, response: &Response) -> Seen {
        let body = response.json().unwrap_or(Value::Null);
        let mut seen = Seen {
            status: response.status,
            backend: body.str_of("backend").unwrap_or("").to_string(),
            address: body.str_of("address").unwrap_or("").to_string(),
            count: body.u64_of("count").unwrap_or(0),
            new_session: body.get("new_session").and_then(Value::as_bool).unwrap_or(false),
            target: body.str_of("target_header").unwrap_or("").to_string(),
            srv: response.set_cookie(STICKY),
            srv_line: response.set_cookie_line(STICKY).map(str::to_string),
            app: response.set_cookie(APP_COOKIE),
        };
        if response.status == 200 && body.u64_of("target_header_copies") != Some(1) {
            self.fail(format!(
                "{} saw {:?} copies of {TARGET_HEADER}",
                seen.backend,
                body.get("target_header_copies")
            ));
            seen.target.clear();
        }
        seen
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy's counters and the backends' stats

type Counters = BTreeMap<String, u64>;

fn scrape(ctx: &Ctx) -> Result<Counters, String> {
    let r =
        http::get(&ctx.env.admin, "/stats/prometheus", TIMEOUT).map_err(|e| format!("envoy admin: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    let mut counters = Counters::new();
    for line in text.lines().filter(|l| l.starts_with("session_router_")) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            counters.insert(name.to_string(), v as u64);
        }
    }
    if counters.is_empty() {
        return Err("no session_router_* counters in /stats/prometheus".into());
    }
    Ok(counters)
}

fn delta(before: &Counters, after: &Counters, name: &str) -> u64 {
    let full = format!("session_router_{name}");
    after.get(&full).copied().unwrap_or(0).saturating_sub(before.get(&full).copied().unwrap_or(0))
}

fn backend_stats(addr: &str) -> Result<Value, String> {
    let r = http::get(addr, "/admin/stats", Duration::from_secs(3)).map_err(|e| format!("{addr}: {e}"))?;
    r.json().map_err(|e| format!("{addr}: /admin/stats: {e}"))
}

/// Application requests each backend has answered (`None` for a backend that does not answer).
fn requests_by_backend(ctx: &Ctx) -> BTreeMap<String, Option<u64>> {
    let mut all = ctx.env.backends.clone();
    all.push(ctx.env.outsider.clone());
    all.into_iter()
        .map(|(name, addr)| (name, backend_stats(&addr).ok().and_then(|v| v.u64_of("requests"))))
        .collect()
}

/// The filter's counters moved exactly as the requests sent say they must.
fn check_counters(
    ctx: &Ctx,
    phase: &str,
    c0: &Counters,
    c1: &Counters,
    t0: TallyNow,
    t1: TallyNow,
    ejections_ok: &dyn Fn(u64) -> bool,
) {
    let d = |n| delta(c0, c1, n);
    let sent = |f: fn(&TallyNow) -> u64| f(&t1) - f(&t0);
    let (new, hashed, pinned, failover) =
        (d("decision_new"), d("decision_hashed"), d("decision_pinned"), d("decision_failover"));
    let expected_failover = sent(|t| t.srv_on_pinned);
    let rows = [
        ("decision_new", new, sent(|t| t.new)),
        ("decision_hashed", hashed, sent(|t| t.hashed)),
        ("decision_pinned + decision_failover", pinned + failover, sent(|t| t.pinned)),
        ("decision_failover", failover, expected_failover),
        ("cookie_issued", d("cookie_issued"), sent(|t| t.srv_issued)),
        ("cookie_rejected", d("cookie_rejected"), sent(|t| t.bad_cookie)),
        ("jwt_rejected", d("jwt_rejected"), 0),
        ("input_rejected", d("input_rejected"), 0),
    ];
    let mut detail = String::new();
    let mut ok = true;
    for (name, got, want) in rows {
        let _ = write!(
            detail,
            "{name} {got}{}",
            if got == want { String::new() } else { format!(" (sent {want})") }
        );
        detail.push_str(", ");
        ok &= got == want;
    }
    let ejections = d("health_ejections");
    let _ = write!(detail, "health_ejections {ejections}");
    ok &= ejections_ok(ejections);
    ctx.check(ok, &format!("{phase}: Envoy /stats/prometheus counters match the requests sent"), detail);
}

fn check_backend_requests(ctx: &Ctx, phase: &str, r0: &BTreeMap<String, Option<u64>>, sent: u64) {
    let r1 = requests_by_backend(ctx);
    let mut served = 0;
    let mut parts = Vec::new();
    for (name, before) in r0 {
        if name == &ctx.env.outsider.0 {
            continue;
        }
        match (before, r1.get(name).copied().flatten()) {
            (Some(b), Some(a)) => {
                served += a - b;
                parts.push(format!("{name} {}", a - b));
            }
            (None, None) => parts.push(format!("{name} stopped")),
            (b, a) => {
                ctx.fail(format!("{phase}: {name} stats {b:?} → {a:?}"));
            }
        }
    }
    ctx.check(
        served == sent,
        &format!("{phase}: every request reached exactly one backend, once"),
        format!("{served} served for {sent} sent ({})", parts.join(", ")),
    );
    check_outsider(ctx, phase);
}

fn check_outsider(ctx: &Ctx, phase: &str) {
    let (name, addr) = &ctx.env.outsider;
    match backend_stats(addr) {
        Ok(v) => {
            let requests = v.u64_of("requests");
            let healthz = v.u64_of("healthz");
            ctx.check(
                requests == Some(0) && healthz == Some(0),
                &format!("{phase}: the {name} at {addr}, not in the filter's hosts, was never reached"),
                format!(
                    "its own /admin/stats: requests {}, health checks {}",
                    requests.map_or("?".into(), |n| n.to_string()),
                    healthz.map_or("?".into(), |n| n.to_string())
                ),
            );
        }
        Err(e) => ctx.fail(format!("{phase}: {name} stats: {e}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness

fn wait_ready(ctx: &Ctx, skip: Option<&str>) -> bool {
    let deadline = Instant::now() + ctx.env.ready_timeout;
    let mut last = String::new();
    let mut backends: Vec<(String, String)> =
        ctx.env.backends.iter().filter(|(n, _)| Some(n.as_str()) != skip).cloned().collect();
    while Instant::now() < deadline {
        let envoy_live = match http::get(&ctx.env.admin, "/ready", Duration::from_secs(2)) {
            Ok(r) => String::from_utf8_lossy(&r.body).trim() == "LIVE",
            Err(e) => {
                last = format!("envoy admin {}: {e}", ctx.env.admin);
                false
            }
        };
        backends.retain(|(name, addr)| match http::get(addr, "/healthz", Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => {
                let state = r.json().ok().and_then(|v| v.str_of("state").map(str::to_string));
                if state.as_deref() != Some(ctx.env.state.as_str()) {
                    ctx.fail(format!(
                        "{name} keeps its state in {state:?}, expected STATE={}",
                        ctx.env.state
                    ));
                }
                false
            }
            Ok(r) => {
                last = format!("{name} /healthz: {} {}", r.status, String::from_utf8_lossy(&r.body));
                true
            }
            Err(e) => {
                last = format!("{name} {addr}: {e}");
                true
            }
        });
        let outsider_up = backend_stats(&ctx.env.outsider.1).is_ok();
        if envoy_live && backends.is_empty() && outsider_up {
            return true;
        }
        if !outsider_up {
            last = format!("{} {} not answering", ctx.env.outsider.0, ctx.env.outsider.1);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ctx.fail(format!("stack not ready after {:?}: {last}", ctx.env.ready_timeout));
    false
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// A browser: no key; keeps the cookies it is given (`srv` from the filter, `app_session`
    /// from the application). Routed by the sticky cookie.
    Cookie,
    /// An API client sending `x-user-id`, keeping no cookies. Routed by the header.
    Header,
    /// An API client sending a bearer JWT, keeping no cookies. Routed by its `sub`.
    Jwt,
    /// A client of an application with its own `JSESSIONID`, keeping no other cookie.
    JSession,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Cookie, Kind::Header, Kind::Jwt, Kind::JSession];

    fn name(self) -> &'static str {
        match self {
            Kind::Cookie => "cookie",
            Kind::Header => "header",
            Kind::Jwt => "jwt",
            Kind::JSession => "jsessionid",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

#[derive(Clone, Debug)]
struct Session {
    id: usize,
    kind: Kind,
    /// User id, JWT `sub` or JSESSIONID value; empty for `Cookie`.
    key: String,
    srv: Option<String>,
    app: Option<String>,
    /// The backend that served it before the stop.
    owner: String,
    count: u64,
    /// Requests whose counter was not the previous one plus one.
    lost: u64,
    /// After the stop: where a victim's session went.
    moved_to: Option<String>,
}

impl Session {
    fn new(run: &str, id: usize) -> Session {
        let kind = Kind::ALL[id % Kind::ALL.len()];
        let key = match kind {
            Kind::Cookie => String::new(),
            Kind::Header => format!("{run}-user-h{id}"),
            Kind::Jwt => format!("{run}-user-j{id}"),
            Kind::JSession => format!("{run}-js{id}"),
        };
        Session {
            id,
            kind,
            key,
            srv: None,
            app: None,
            owner: String::new(),
            count: 0,
            lost: 0,
            moved_to: None,
        }
    }

    fn request(&self, exp: u64) -> (Vec<(String, String)>, Expect) {
        match self.kind {
            Kind::Cookie => {
                let mut cookies = Vec::new();
                if let Some(v) = &self.srv {
                    cookies.push(format!("{STICKY}={v}"));
                }
                if let Some(v) = &self.app {
                    cookies.push(format!("{APP_COOKIE}={v}"));
                }
                let expect = if self.srv.is_some() { Expect::Pinned } else { Expect::New };
                let headers = if cookies.is_empty() {
                    vec![]
                } else {
                    vec![("cookie".to_string(), cookies.join("; "))]
                };
                (headers, expect)
            }
            Kind::Header => (vec![("x-user-id".into(), self.key.clone())], Expect::Hashed),
            Kind::Jwt => (
                vec![("authorization".into(), format!("Bearer {}", make_jwt(&self.key, exp)))],
                Expect::Hashed,
            ),
            Kind::JSession => (vec![("cookie".into(), format!("JSESSIONID={}", self.key))], Expect::Hashed),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Before,
    After,
}

/// Drives every session `rounds` times, interleaved, from `threads` keep-alive connections.
fn drive(ctx: &Ctx, sessions: Vec<Session>, rounds: usize, phase: Phase) -> Vec<Session> {
    let threads = ctx.env.threads.min(sessions.len());
    let mut shards: Vec<Vec<Session>> = vec![Vec::new(); threads];
    for s in sessions {
        shards[s.id % threads].push(s);
    }
    let exp = unix_now() + 86_400;
    let mut out: Vec<Session> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                scope.spawn(move || {
                    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
                    for round in 0..rounds {
                        for s in shard.iter_mut() {
                            step(ctx, &mut client, s, round, phase, exp);
                        }
                    }
                    shard
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    ctx.fail("a driver thread panicked");
                    Vec::new()
                })
            })
            .collect()
    });
    out.sort_by_key(|s| s.id);
    out
}

fn step(ctx: &Ctx, client: &mut Client, s: &mut Session, round: usize, phase: Phase, exp: u64) {
    let (headers, expect) = s.request(exp);
    let seen = match ctx.send(client, "/", &headers, expect, false) {
        Ok(seen) if seen.status == 200 => seen,
        Ok(seen) => {
            ctx.fail(format!(
                "session {} ({}): HTTP {} from {:?}",
                s.id,
                s.kind.name(),
                seen.status,
                seen.backend
            ));
            return;
        }
        Err(e) => {
            ctx.fail(format!("session {} ({}): {e}", s.id, s.kind.name()));
            return;
        }
    };
    if s.kind == Kind::Cookie {
        if expect == Expect::New && (seen.srv.is_none() || seen.app.is_none()) {
            ctx.fail(format!("session {}: a new visitor got no {STICKY} or {APP_COOKIE} cookie", s.id));
        }
        if seen.srv.is_some() {
            s.srv = seen.srv.clone();
        }
        if seen.app.is_some() {
            s.app = seen.app.clone();
        }
    }
    let expected = s.count + 1;
    let victim = &ctx.env.victim;
    match phase {
        Phase::Before if round == 0 => {
            s.owner = seen.backend.clone();
            stays(ctx, s, &seen, expected, "");
        }
        Phase::Before => stays(ctx, s, &seen, expected, "with every backend up"),
        Phase::After if s.owner != *victim => {
            stays(ctx, s, &seen, expected, &format!("though only {victim} was stopped"));
        }
        Phase::After => {
            if seen.backend == *victim || seen.backend.is_empty() {
                ctx.fail(format!("session {} served by {:?} after {victim} was stopped", s.id, seen.backend));
            }
            match &s.moved_to {
                None => s.moved_to = Some(seen.backend.clone()),
                Some(first) if *first != seen.backend => {
                    ctx.fail(format!(
                        "session {} of {victim} moved to {first}, then to {}",
                        s.id, seen.backend
                    ));
                }
                Some(_) => {}
            }
            if seen.count != expected {
                s.lost += 1;
                // Expected once per moved session with in-memory state (the new host never saw
                // it): the counter starts again at 1. With Redis nothing is lost.
                let explained = ctx.env.state == "memory" && seen.count == 1 && s.lost == 1;
                if !explained {
                    ctx.fail(format!(
                        "moved session {} ({}) on {}: count {} where {expected} was due",
                        s.id,
                        s.kind.name(),
                        seen.backend,
                        seen.count
                    ));
                }
            }
        }
    }
    s.count = seen.count;
}

/// A session that must stay on its owner with its state: `moved_why` explains why a move is wrong.
fn stays(ctx: &Ctx, s: &mut Session, seen: &Seen, expected: u64, moved_why: &str) {
    if seen.backend != s.owner {
        ctx.fail(format!(
            "session {} ({}) moved from {} to {} {moved_why}",
            s.id,
            s.kind.name(),
            s.owner,
            seen.backend
        ));
    }
    if seen.count != expected {
        s.lost += 1;
        ctx.fail(format!(
            "session {} ({}) on {}: count {} where {expected} was due: state lost",
            s.id,
            s.kind.name(),
            seen.backend,
            seen.count
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// The checks before the bulk run

fn h(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// Sends `headers` `n` times; returns the backends seen and the counters in order.
fn repeat(
    ctx: &Ctx,
    client: &mut Client,
    path: &str,
    headers: &[(String, String)],
    expect: Expect,
    n: usize,
) -> Result<(HashSet<String>, Vec<u64>), String> {
    let mut hosts = HashSet::new();
    let mut counts = Vec::new();
    for _ in 0..n {
        let seen = ctx.send(client, path, headers, expect, false)?;
        if seen.status != 200 {
            return Err(format!("HTTP {} from {:?}", seen.status, seen.backend));
        }
        hosts.insert(seen.backend);
        counts.push(seen.count);
    }
    Ok((hosts, counts))
}

fn one(hosts: &HashSet<String>) -> String {
    if hosts.len() == 1 { hosts.iter().next().cloned().unwrap_or_default() } else { format!("{hosts:?}") }
}

fn check_sources(ctx: &Ctx, client: &mut Client) -> Result<(), String> {
    let user = format!("{}-alice", ctx.run);
    let exp = unix_now() + 3600;
    let (by_header, c1) = repeat(ctx, client, "/", &[h("x-user-id", &user)], Expect::Hashed, 10)?;
    let bearer = format!("Bearer {}", make_jwt(&user, exp));
    let (by_jwt, c2) = repeat(ctx, client, "/", &[h("authorization", bearer)], Expect::Hashed, 10)?;
    let counts_continue = c1.iter().chain(&c2).copied().eq(1..=20);
    ctx.check(
        by_header.len() == 1 && by_jwt == by_header && counts_continue,
        "the header and JWT sub sources stick",
        format!(
            "x-user-id: {user} → {} (10×), a JWT with sub {user} → {} (10×); one session, counts {}",
            one(&by_header),
            one(&by_jwt),
            if counts_continue { "1..20".to_string() } else { format!("{c1:?} then {c2:?}") }
        ),
    );
    let jsid = format!("{}-js-probe", ctx.run);
    let variants = [
        vec![h("cookie", format!("theme=dark; JSESSIONID={jsid}; lang=en"))],
        vec![h("cookie", format!("JSESSIONID=\"{jsid}\""))],
        vec![h("cookie", "theme=dark"), h("cookie", format!("JSESSIONID={jsid}"))],
    ];
    let mut cookie_hosts = HashSet::new();
    let mut counts = Vec::new();
    for headers in &variants {
        let (hosts, c) = repeat(ctx, client, "/", headers, Expect::Hashed, 5)?;
        cookie_hosts.extend(hosts);
        counts.extend(c);
    }
    ctx.check(
        cookie_hosts.len() == 1 && counts.iter().copied().eq(1..=15),
        "the cookie source sticks",
        format!(
            "JSESSIONID={jsid} plain, quoted, in a second cookie header → {} (15×, one session)",
            one(&cookie_hosts)
        ),
    );
    let (by_query, _) = repeat(ctx, client, &format!("/search?q=1&sid={user}"), &[], Expect::Hashed, 5)?;
    ctx.check(
        by_query == by_header,
        "the query source hashes the same key to the same host",
        format!("?sid={user} → {}", one(&by_query)),
    );
    Ok(())
}

fn check_sticky_cookie(ctx: &Ctx, client: &mut Client) -> Result<Option<String>, String> {
    let first = ctx.send(client, "/", &[], Expect::New, false)?;
    let (Some(srv), Some(line), Some(app)) = (first.srv.clone(), first.srv_line.clone(), first.app.clone())
    else {
        ctx.fail(format!("a new visitor got no {STICKY} cookie (status {})", first.status));
        return Ok(None);
    };
    let attributes: Vec<&str> = line.split(';').skip(1).map(str::trim).collect();
    let wanted = ["Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"];
    ctx.check(
        first.status == 200 && wanted.iter().all(|w| attributes.contains(w)) && first.new_session,
        "a new session is issued a sticky cookie",
        format!("{STICKY}=<{} chars>; {} on {}", srv.len(), attributes.join("; "), first.backend),
    );
    let cookie = h("cookie", format!("{STICKY}={srv}; {APP_COOKIE}={app}"));
    let mut hosts = HashSet::new();
    let mut counts = Vec::new();
    let mut reissued = 0;
    for _ in 0..10 {
        let seen = ctx.send(client, "/", std::slice::from_ref(&cookie), Expect::Pinned, false)?;
        hosts.insert(seen.backend.clone());
        counts.push(seen.count);
        reissued += usize::from(seen.srv.is_some());
    }
    ctx.check(
        hosts.len() == 1
            && hosts.contains(&first.backend)
            && reissued == 0
            && counts.iter().copied().eq(2..=11),
        "the sticky cookie is honoured",
        format!("10 requests with it → {} (count 2..11), re-issued {reissued}×", one(&hosts)),
    );
    // One flipped character: the signature fails, the cookie is ignored and replaced.
    let mut tampered: Vec<char> = srv.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let seen = ctx.send(client, "/", &[h("cookie", format!("{STICKY}={tampered}"))], Expect::New, true)?;
    ctx.check(
        seen.status == 200 && seen.srv.as_ref().is_some_and(|v| *v != tampered && *v != srv),
        "a tampered sticky cookie is ignored and replaced",
        format!("HTTP {}, new cookie: {}", seen.status, seen.srv.is_some()),
    );
    Ok(Some(srv))
}

fn check_forged_target(ctx: &Ctx, client: &mut Client, pinned: Option<&str>) -> Result<(), String> {
    let outsider = &ctx.env.outsider.1;
    let user = format!("{}-mallory", ctx.run);
    let mut cases: Vec<(Vec<(String, String)>, Expect)> = vec![
        (vec![h(TARGET_HEADER, outsider), h("x-user-id", &user)], Expect::Hashed),
        (vec![h("X-Gateway-Destination-Endpoint", outsider), h("x-user-id", &user)], Expect::Hashed),
        (vec![h(TARGET_HEADER, format!("{outsider},{outsider}")), h("x-user-id", &user)], Expect::Hashed),
        (
            vec![h(TARGET_HEADER, outsider), h(TARGET_HEADER, &ctx.env.nowhere), h("x-user-id", &user)],
            Expect::Hashed,
        ),
        (vec![h(TARGET_HEADER, outsider)], Expect::New),
        (vec![h(TARGET_HEADER, &ctx.env.nowhere)], Expect::New),
    ];
    if let Some(srv) = pinned {
        cases
            .push((vec![h(TARGET_HEADER, outsider), h("cookie", format!("{STICKY}={srv}"))], Expect::Pinned));
    }
    let mut served = HashSet::new();
    let mut bad = Vec::new();
    for (headers, expect) in &cases {
        let seen = ctx.send(client, "/", headers, *expect, false)?;
        if seen.status != 200 || !ctx.configured.contains(&seen.address) {
            bad.push(format!("HTTP {} from {:?} at {:?}", seen.status, seen.backend, seen.address));
        }
        served.insert(seen.backend);
    }
    ctx.check(
        bad.is_empty(),
        "a client-supplied x-gateway-destination-endpoint is replaced, never followed",
        format!("{} forged requests (naming {outsider}, an endpoint of Envoy's cluster but not a filter host), served by {:?}", cases.len(), served),
    );
    check_outsider(ctx, "forged header");
    Ok(())
}

fn check_app_error_is_not_a_host_failure(ctx: &Ctx, client: &mut Client) -> Result<(), String> {
    let user = format!("{}-carol", ctx.run);
    let headers = [h("x-user-id", &user)];
    let first = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
    let addr = ctx
        .env
        .backend_addr(&first.backend)
        .ok_or(format!("unknown backend {:?}", first.backend))?
        .to_string();
    http::get(&addr, "/admin/fail", TIMEOUT).map_err(|e| format!("{addr}/admin/fail: {e}"))?;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let seen = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
        answers.push((seen.status, seen.backend));
    }
    http::get(&addr, "/admin/recover", TIMEOUT).map_err(|e| format!("{addr}/admin/recover: {e}"))?;
    let after = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
    let all_503_from_it = answers.iter().all(|(s, b)| *s == 503 && *b == first.backend);
    ctx.check(
        all_503_from_it && after.status == 200 && after.backend == first.backend && after.count == 2,
        "a 503 answered by the application is not a host failure",
        format!(
            "{} failing (/admin/fail): 5 × 503 from it, the session stayed; recovered: HTTP {} from {}, count {}",
            first.backend, after.status, after.backend, after.count
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The state file between the phases

fn save(ctx: &Ctx, sessions: &[Session], summary: &str) -> Result<(), String> {
    let mut text = format!("# session-router e2e state, run {}\n#summary\t{summary}\n", ctx.run);
    for s in sessions {
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.id,
            s.kind.name(),
            dash(&s.key),
            dash(s.srv.as_deref().unwrap_or("")),
            dash(s.app.as_deref().unwrap_or("")),
            dash(&s.owner),
            s.count,
            s.lost
        );
    }
    std::fs::write(&ctx.env.state_file, text).map_err(|e| format!("{}: {e}", ctx.env.state_file))
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn undash(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_string())
}

fn load(path: &str) -> Result<(String, String, Vec<Session>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e} (run `e2e before` first)"))?;
    let mut run = String::new();
    let mut summary = String::new();
    let mut sessions = Vec::new();
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# session-router e2e state, run ") {
            run = r.to_string();
            continue;
        }
        if let Some(s) = line.strip_prefix("#summary\t") {
            summary = s.to_string();
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [id, kind, key, srv, app, owner, count, lost] = f[..] else {
            return Err(format!("{path}: bad line {line:?}"));
        };
        let bad = || format!("{path}: bad line {line:?}");
        sessions.push(Session {
            id: id.parse().map_err(|_| bad())?,
            kind: Kind::parse(kind).ok_or_else(bad)?,
            key: undash(key).unwrap_or_default(),
            srv: undash(srv),
            app: undash(app),
            owner: undash(owner).unwrap_or_default(),
            count: count.parse().map_err(|_| bad())?,
            lost: lost.parse().map_err(|_| bad())?,
            moved_to: None,
        });
    }
    Ok((run, summary, sessions))
}

// ---------------------------------------------------------------------------------------------
// The phases

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn per_backend(sessions: &[Session], of: impl Fn(&Session) -> Option<&str>) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sessions {
        if let Some(b) = of(s) {
            *by.entry(b).or_default() += 1;
        }
    }
    by.iter().map(|(b, n)| format!("{b} {n}")).collect::<Vec<_>>().join(", ")
}

fn before(ctx: &Ctx, write_state: bool) -> Result<(), String> {
    println!("== e2e before (state {}, run {}) ==", ctx.env.state, ctx.run);
    if !wait_ready(ctx, None) {
        return Err("stack not ready".into());
    }
    ctx.check(
        true,
        "stack ready",
        format!(
            "Envoy LIVE at {}, {} backends with state in {}, outsider up",
            ctx.env.envoy,
            ctx.env.backends.len(),
            ctx.env.state
        ),
    );
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_by_backend(ctx);
    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
    check_sources(ctx, &mut client)?;
    let pinned = check_sticky_cookie(ctx, &mut client)?;
    check_forged_target(ctx, &mut client, pinned.as_deref())?;
    check_app_error_is_not_a_host_failure(ctx, &mut client)?;
    drop(client);

    let sessions: Vec<Session> = (0..ctx.env.sessions).map(|i| Session::new(&ctx.run, i)).collect();
    let tb = ctx.tally.now();
    let started = Instant::now();
    let sessions = drive(ctx, sessions, ctx.env.requests, Phase::Before);
    let elapsed = started.elapsed();
    let tb1 = ctx.tally.now();
    let requests = tb1.sent - tb.sent;
    let lost: u64 = sessions.iter().map(|s| s.lost).sum();
    let failed = (tb1.not_ok - tb.not_ok) + (tb1.io_errors - tb.io_errors);
    let kinds = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", sessions.iter().filter(|s| s.kind == *k).count(), k.name()))
        .collect::<Vec<_>>()
        .join(", ");
    ctx.check(
        lost == 0 && failed == 0,
        &format!("{} sessions × {} requests keep their state", sessions.len(), ctx.env.requests),
        format!(
            "{requests} requests in {:.1}s ({:.0}/s), failed {failed}, lost state {lost}; sessions: {kinds}",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64().max(0.001)
        ),
    );
    println!("     sessions per backend: {}", per_backend(&sessions, |s| Some(s.owner.as_str())));
    let c1 = scrape(ctx)?;
    let t1 = ctx.tally.now();
    check_counters(ctx, "before", &c0, &c1, t0, t1, &|e| e == 0);
    check_backend_requests(ctx, "before", &r0, t1.sent - t0.sent);
    let on_victim = sessions.iter().filter(|s| s.owner == ctx.env.victim).count();
    let summary = format!(
        "sessions={} requests={requests} seconds={:.1} lost={lost} failed={failed} on_victim={on_victim} per_backend={}",
        sessions.len(),
        elapsed.as_secs_f64(),
        per_backend(&sessions, |s| Some(s.owner.as_str())).replace(' ', ":").replace(",:", ",")
    );
    if write_state {
        save(ctx, &sessions, &summary)?;
        println!("     state of {} sessions saved to {}", sessions.len(), ctx.env.state_file);
    }
    Ok(())
}

fn after(ctx: &mut Ctx) -> Result<(), String> {
    let (run, summary, sessions) = load(&ctx.env.state_file)?;
    ctx.run = run;
    let victim = ctx.env.victim.clone();
    if let Some(addr) = ctx.env.backend_addr(&victim).map(str::to_string) {
        ctx.down.insert(addr);
    }
    println!("== e2e after {victim} was stopped (state {}, run {}) ==", ctx.env.state, ctx.run);
    let ctx = &*ctx;
    if !wait_ready(ctx, Some(&victim)) {
        return Err("stack not ready".into());
    }
    let victim_addr = ctx.env.backend_addr(&victim).unwrap_or_default().to_string();
    let down = http::get(&victim_addr, "/healthz", Duration::from_secs(2));
    ctx.check(
        down.is_err(),
        &format!("{victim} is stopped"),
        match &down {
            Err(e) => format!("{victim_addr}: {e}"),
            Ok(r) => format!(
                "{victim_addr} still answers HTTP {}: the runner must `docker stop` it first",
                r.status
            ),
        },
    );
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_by_backend(ctx);
    let started = Instant::now();
    let sessions = drive(ctx, sessions, ctx.env.requests_after, Phase::After);
    let elapsed = started.elapsed();
    let t1 = ctx.tally.now();
    let requests = t1.sent - t0.sent;
    let failed = (t1.not_ok - t0.not_ok) + (t1.io_errors - t0.io_errors);
    let (moved, stayed): (Vec<&Session>, Vec<&Session>) = sessions.iter().partition(|s| s.owner == victim);
    let stayed_lost = stayed.iter().filter(|s| s.lost > 0).count();
    let moved_lost = moved.iter().filter(|s| s.lost > 0).count();
    let moved_ok = moved.iter().all(|s| s.moved_to.as_deref().is_some_and(|b| b != victim));
    let stayed_ok = stayed.iter().all(|s| s.moved_to.is_none());
    ctx.check(
        failed == 0,
        &format!("{} sessions × {} requests after the stop", sessions.len(), ctx.env.requests_after),
        format!("{requests} requests in {:.1}s, failed {failed}", elapsed.as_secs_f64()),
    );
    ctx.check(
        stayed_ok && stayed_lost == 0,
        "sessions on the other backends stay where they are and keep their state",
        format!("{} sessions, lost state {stayed_lost}", stayed.len()),
    );
    ctx.check(
        moved_ok,
        &format!("only {victim}'s sessions move, each to one successor"),
        format!("{} moved: {}", moved.len(), per_backend(&sessions, |s| s.moved_to.as_deref())),
    );
    let memory = ctx.env.state == "memory";
    ctx.check(
        if memory { moved_lost == moved.len() } else { moved_lost == 0 },
        &if memory {
            "moved sessions lose their in-memory state (the new host never saw them)".to_string()
        } else {
            "moved sessions keep their state (Redis)".to_string()
        },
        format!("{moved_lost} of {} moved sessions lost state", moved.len()),
    );
    let c1 = scrape(ctx)?;
    check_counters(ctx, "after", &c0, &c1, t0, t1, &|e| e >= 1);
    check_backend_requests(ctx, "after", &r0, t1.sent - t0.sent);

    let field = |k: &str| {
        summary
            .split(' ')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("?")
            .to_string()
    };
    println!();
    println!("== figures (state {}) ==", ctx.env.state);
    println!(
        "sessions:                 {} ({} per kind: cookie, header, jwt, jsessionid)",
        sessions.len(),
        sessions.len() / 4
    );
    println!(
        "before the stop:          {} requests ({} per session) in {}s, failed {}, lost state {}, sessions moved 0",
        field("requests"),
        ctx.env.requests,
        field("seconds"),
        field("failed"),
        field("lost")
    );
    println!("sessions per backend:     {}", field("per_backend").replace(':', " ").replace(',', ", "));
    println!(
        "after `docker stop {victim}`: {requests} requests ({} per session) in {:.1}s, failed {failed}",
        ctx.env.requests_after,
        elapsed.as_secs_f64()
    );
    println!(
        "  sessions moved:         {} (all of {victim}'s; to {})",
        moved.len(),
        per_backend(&sessions, |s| s.moved_to.as_deref())
    );
    println!("  lost state, others:     {stayed_lost} of {} sessions", stayed.len());
    println!(
        "  lost state, moved:      {moved_lost} of {} sessions ({})",
        moved.len(),
        if memory { "in-memory state: expected" } else { "Redis-backed state" }
    );
    println!(
        "  Envoy counters:         failover {}, pinned {}, hashed {}, new {}, cookie_issued {}, ejections {}",
        delta(&c0, &c1, "decision_failover"),
        delta(&c0, &c1, "decision_pinned"),
        delta(&c0, &c1, "decision_hashed"),
        delta(&c0, &c1, "decision_new"),
        delta(&c0, &c1, "cookie_issued"),
        delta(&c0, &c1, "health_ejections")
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().cloned().unwrap_or_default();
    let hosts = match args.get(1).map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => {
            eprintln!("e2e {command}: {:?} is not a number of hosts", args[1]);
            std::process::exit(2);
        }
    };
    let known = match command.as_str() {
        "before" | "after" | "check" | "bounded" => args.len() == 1,
        "scale-before" => args.len() <= 2,
        "scale-to" => args.len() == 2,
        _ => false,
    };
    if !known {
        eprintln!(
            "usage: e2e before|after|check|bounded|scale-before [N]|scale-to N   (see the top of \
             integration/harness/src/bin/e2e.rs)"
        );
        std::process::exit(2);
    }
    let env = match Env::load() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    let random = RandomState::new();
    let run = format!("{:08x}", random.hash_one(unix_now()) as u32);
    let configured = env.backends.iter().map(|(_, a)| a.clone()).collect();
    let mut ctx = Ctx {
        env,
        run,
        tally: Tally::default(),
        failures: AtomicU64::new(0),
        configured,
        down: HashSet::new(),
        log: Mutex::new(()),
    };
    let result = match command.as_str() {
        "before" => before(&ctx, true),
        "check" => before(&ctx, false),
        "bounded" => bounded::run(&ctx),
        "scale-before" => scale::before(&mut ctx, hosts),
        "scale-to" => scale::to(&mut ctx, hosts.unwrap_or(1)),
        _ => after(&mut ctx),
    };
    if let Err(e) = result {
        ctx.fail(format!("e2e {command}: {e}"));
    }
    let failures = ctx.failures.load(Relaxed);
    if failures == 0 {
        println!("e2e {command}: PASSED");
    } else {
        println!("e2e {command}: FAILED ({failures} failures)");
        std::process::exit(1);
    }
}
