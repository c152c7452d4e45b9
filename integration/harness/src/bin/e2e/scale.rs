//! The scaling scenario (`docker-compose.scale.yml`): one `backend` service scaled by compose, an
//! Envoy whose `backends` cluster is STRICT_DNS on the service name, and the filter following it
//! through its `envoy_admin` discovery source.
//!
//!   e2e scale-before [N]  waits until Envoy's cluster and the filter's membership both have N
//!                         hosts (any number ≥ 1 without N), then starts SCALE_SESSIONS sessions —
//!                         half browsers keeping the sticky cookie (and the application's own
//!                         `app_session`), half API clients hashed by `x-user-id` and keeping no
//!                         cookie — SCALE_REQUESTS requests each; saves them to $STATE_FILE
//!   e2e scale-to N        run by the runner just BEFORE `up --scale backend=N`: prints
//!                         `watching …`, times how long Envoy's cluster and then the filter take
//!                         to show N hosts, lets every worker switch, then sends every session
//!                         SCALE_REQUESTS more requests and checks where each went (below); prints
//!                         the figures of every step so far
//!
//! What must hold after a change from membership P to M (added A = M − P, removed R = P − M):
//!   - a session with the sticky cookie whose host remains stays there, its state intact; one
//!     whose host was removed moves to one host of M and is re-pinned there (one failover);
//!   - a hashed session whose host remains stays there or moves to a host of A (the ring's
//!     minimal movement), one whose host was removed moves to a host of M;
//!   - a session answers from one host for the whole step;
//!   - the counter continues (+1) unless the session moved with in-memory state: then it is what
//!     that host last counted for the session plus one (1 for a host that never saw it). With
//!     Redis nothing is ever lost;
//!   - every request answers 200, the target header lists hosts of M only, Envoy's counters match
//!     what was sent (no ejection), and the backends' own counts add up to the requests sent.
//!
//! Figures: sessions moved with and without the cookie, against the optimum (scale-up: none
//! with a cookie, |A|/|M| of the hashed ones; scale-down: exactly the sessions on R), state lost,
//! and how long the membership took to follow.
//!
//! After a scale-up, SCALE_NEW new sessions start (new visitors and users arriving), so that the
//! scale-down that follows has sessions with the sticky cookie on the added hosts too.
//!
//! Environment: SCALE_SESSIONS (600), SCALE_NEW (half of it), SCALE_REQUESTS (5),
//! FOLLOW_TIMEOUT (90 s, compose creating the containers included), POLL_MS (500: the filter's
//! discovery interval, for the settle wait), TARGET_CLUSTER (backends), plus ENVOY, ENVOY_ADMIN,
//! STATE, THREADS, STATE_FILE, READY_TIMEOUT.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use session_router_harness::http::{self, Client};
use session_router_harness::json::{self, Value};

use super::{APP_COOKIE, Ctx, Expect, STICKY, TIMEOUT, check_counters, dash, number, scrape, undash, var};

type Members = BTreeSet<String>;

struct Settings {
    sessions: usize,
    requests: usize,
    new_sessions: usize,
    follow_timeout: Duration,
    poll_ms: u64,
    cluster: String,
}

impl Settings {
    fn load() -> Result<Settings, String> {
        let sessions = number("SCALE_SESSIONS", 600)?.max(2);
        Ok(Settings {
            sessions,
            new_sessions: number("SCALE_NEW", sessions / 2)?,
            requests: number("SCALE_REQUESTS", 5)?.max(2),
            follow_timeout: Duration::from_secs(number("FOLLOW_TIMEOUT", 90)? as u64),
            poll_ms: number("POLL_MS", 500)? as u64,
            cluster: var("TARGET_CLUSTER", "backends"),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy's view and the filter's

/// The endpoints (ip:port) of the target cluster in Envoy's `/clusters?format=json`.
fn envoy_members(ctx: &Ctx, cluster: &str) -> Result<Members, String> {
    let r = http::get(&ctx.env.admin, "/clusters?format=json", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /clusters: {e}"))?;
    parse_members(&r.body, cluster).map_err(|e| format!("envoy admin /clusters: {e}"))
}

fn parse_members(body: &[u8], cluster: &str) -> Result<Members, String> {
    let doc = json::parse(body)?;
    let Some(Value::Arr(clusters)) = doc.get("cluster_statuses") else {
        return Err("no cluster_statuses".into());
    };
    let Some(c) = clusters.iter().find(|c| c.str_of("name") == Some(cluster)) else {
        return Err(format!("no cluster {cluster:?}"));
    };
    let mut members = Members::new();
    if let Some(Value::Arr(hosts)) = c.get("host_statuses") {
        for h in hosts {
            let sa = h.get("address").and_then(|a| a.get("socket_address"));
            let ip = sa.and_then(|s| s.str_of("address"));
            let port = sa.and_then(|s| s.u64_of("port_value"));
            if let (Some(ip), Some(port)) = (ip, port) {
                members.insert(format!("{ip}:{port}"));
            }
        }
    }
    Ok(members)
}

/// The filter's `membership.generation` and `membership.hosts` gauges.
fn filter_membership(ctx: &Ctx) -> Result<(u64, u64), String> {
    let r = http::get(&ctx.env.admin, "/stats?filter=session_router.membership", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /stats: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("wasmcustom.session_router.membership.{name}: ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (gauge("generation"), gauge("hosts")) {
        (Some(g), Some(h)) => Ok((g, h)),
        _ => Err(format!("no session_router.membership gauges in /stats: {:?}", text.trim())),
    }
}

struct Followed {
    members: Members,
    generation: u64,
    /// Since the watch began: Envoy's cluster first had N endpoints; the filter had them too.
    envoy_after: Duration,
    filter_after: Duration,
    /// The same moments, Unix milliseconds (the runner relates them to `up --scale`).
    envoy_unix_ms: u128,
    filter_unix_ms: u128,
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Waits until Envoy's cluster has `want` endpoints (any number ≥ 1 for `None`) and the filter's
/// membership has as many hosts at a generation above `after_generation`; then waits two poll
/// intervals more (every worker picks a new membership up within half a poll interval) and
/// checks that nothing changed meanwhile, else goes on waiting.
fn follow(
    ctx: &Ctx,
    s: &Settings,
    want: Option<usize>,
    after_generation: u64,
    started: Instant,
) -> Result<Followed, String> {
    let deadline = started + s.follow_timeout;
    let mut last_envoy: Option<usize> = None;
    let mut last_filter = (u64::MAX, u64::MAX);
    let mut envoy_at: Option<(Duration, u128)> = None;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        let state = envoy_members(ctx, &s.cluster).and_then(|m| Ok((m, filter_membership(ctx)?)));
        let (members, (generation, hosts)) = match state {
            Ok(v) => v,
            Err(e) => {
                last_error = e;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let target = want.unwrap_or(members.len()).max(1);
        if last_envoy != Some(members.len()) {
            println!(
                "     +{:.2}s Envoy's {} cluster: {} endpoints",
                started.elapsed().as_secs_f64(),
                s.cluster,
                members.len()
            );
            last_envoy = Some(members.len());
        }
        if last_filter != (generation, hosts) {
            println!(
                "     +{:.2}s the filter: membership generation {generation}, {hosts} hosts",
                started.elapsed().as_secs_f64()
            );
            last_filter = (generation, hosts);
        }
        if members.len() == target {
            envoy_at.get_or_insert((started.elapsed(), unix_ms()));
        } else {
            envoy_at = None;
        }
        if let Some((envoy_after, envoy_unix_ms)) = envoy_at
            && hosts == target as u64
            && generation > after_generation
        {
            let (filter_after, filter_unix_ms) = (started.elapsed(), unix_ms());
            std::thread::sleep(Duration::from_millis(2 * s.poll_ms.max(100)));
            let again = envoy_members(ctx, &s.cluster)?;
            let (g2, h2) = filter_membership(ctx)?;
            if again == members && (g2, h2) == (generation, hosts) {
                return Ok(Followed {
                    members,
                    generation,
                    envoy_after,
                    filter_after,
                    envoy_unix_ms,
                    filter_unix_ms,
                });
            }
            println!("     membership changed while settling (generation {g2}, {h2} hosts): waiting on");
            continue;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "the membership did not reach {} hosts within {:?} (last seen: Envoy {last_envoy:?} endpoints, \
         filter generation/hosts {last_filter:?}{})",
        want.map_or("a stable number of".to_string(), |n| n.to_string()),
        s.follow_timeout,
        if last_error.is_empty() { String::new() } else { format!("; {last_error}") }
    ))
}

/// Every member answers its own `/healthz` with the expected state store.
fn members_ready(
    ctx: &Ctx,
    members: &Members,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, String> {
    let deadline = Instant::now() + timeout;
    let mut names = BTreeMap::new();
    let mut last = String::new();
    while Instant::now() < deadline {
        let waiting: Vec<&String> = members.iter().filter(|a| !names.contains_key(*a)).collect();
        for addr in waiting {
            match http::get(addr, "/healthz", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => {
                    let body = r.json().unwrap_or(Value::Null);
                    let state = body.str_of("state").unwrap_or("?");
                    if state != ctx.env.state {
                        return Err(format!(
                            "{addr} keeps its state in {state:?}, expected {}",
                            ctx.env.state
                        ));
                    }
                    names.insert(addr.clone(), body.str_of("backend").unwrap_or("?").to_string());
                }
                Ok(r) => last = format!("{addr} /healthz: HTTP {}", r.status),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        if names.len() == members.len() {
            return Ok(names);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("backends not ready: {last}"))
}

fn requests_of(members: &Members) -> BTreeMap<String, Option<u64>> {
    members
        .iter()
        .map(|a| (a.clone(), super::backend_stats(a).ok().and_then(|v| v.u64_of("requests"))))
        .collect()
}

fn check_served(ctx: &Ctx, step: &str, r0: &BTreeMap<String, Option<u64>>, members: &Members, sent: u64) {
    let r1 = requests_of(members);
    let mut served = 0;
    let mut parts = Vec::new();
    for (addr, before) in r0 {
        match (before, r1.get(addr).copied().flatten()) {
            (Some(b), Some(a)) => {
                served += a - b;
                parts.push(format!("{addr} {}", a - b));
            }
            (b, a) => ctx.fail(format!("{step}: {addr} /admin/stats {b:?} → {a:?}")),
        }
    }
    ctx.check(
        served == sent,
        &format!("{step}: every request reached exactly one backend, once"),
        format!("{served} served for {sent} sent ({})", parts.join(", ")),
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[derive(Clone, Debug, Default)]
struct Session {
    id: usize,
    /// A browser keeping the sticky cookie (and `app_session`); else an API client hashed by
    /// `x-user-id`, keeping no cookie.
    cookie: bool,
    key: String,
    srv: Option<String>,
    app: Option<String>,
    /// The backend (ip:port) that served it at the end of the last step.
    owner: String,
    count: u64,
    /// Requests the session made (answered), all steps: what the counter is with its state intact.
    total: u64,
    /// With in-memory state: the last count each backend gave this session.
    seen: BTreeMap<String, u64>,
    /// During a step: where it is served, how often the counter did not continue, sticky
    /// cookies received.
    now_on: Option<String>,
    lost: u64,
    reissued: u64,
}

impl Session {
    fn new(run: &str, id: usize) -> Session {
        let cookie = id.is_multiple_of(2);
        let key = if cookie { String::new() } else { format!("{run}-scale-u{id}") };
        Session { id, cookie, key, ..Session::default() }
    }

    fn request(&self) -> (Vec<(String, String)>, Expect) {
        if !self.cookie {
            return (vec![("x-user-id".into(), self.key.clone())], Expect::Hashed);
        }
        let mut cookies = Vec::new();
        if let Some(v) = &self.srv {
            cookies.push(format!("{STICKY}={v}"));
        }
        if let Some(v) = &self.app {
            cookies.push(format!("{APP_COOKIE}={v}"));
        }
        let expect = if self.srv.is_some() { Expect::Pinned } else { Expect::New };
        if cookies.is_empty() {
            (vec![], expect)
        } else {
            (vec![("cookie".into(), cookies.join("; "))], expect)
        }
    }

    fn kind(&self) -> &'static str {
        if self.cookie { "cookie" } else { "hashed" }
    }
}

/// The membership change a step checks against (`None`: the first step, nothing changed).
struct Change<'a> {
    remaining: &'a Members,
    added: &'a Members,
    now: &'a Members,
}

fn step(ctx: &Ctx, client: &mut Client, s: &mut Session, round: usize, change: Option<&Change>) {
    let (headers, expect) = s.request();
    let seen = match ctx.send(client, "/", &headers, expect, false) {
        Ok(seen) if seen.status == 200 => seen,
        Ok(seen) => {
            ctx.fail(format!(
                "session {} ({}): HTTP {} from {:?}",
                s.id,
                s.kind(),
                seen.status,
                seen.backend
            ));
            return;
        }
        Err(e) => {
            ctx.fail(format!("session {} ({}): {e}", s.id, s.kind()));
            return;
        }
    };
    let host = seen.address.clone();
    if s.cookie {
        if expect == Expect::New && (seen.srv.is_none() || seen.app.is_none()) {
            ctx.fail(format!("session {}: a new visitor got no {STICKY} or {APP_COOKIE} cookie", s.id));
        }
        if expect == Expect::Pinned && seen.srv.is_some() {
            s.reissued += 1;
        }
        if seen.srv.is_some() {
            s.srv = seen.srv.clone();
        }
        if seen.app.is_some() {
            s.app = seen.app.clone();
        }
    }
    match (&s.now_on, change) {
        (None, None) if round == 0 => s.now_on = Some(host.clone()),
        (None, Some(c)) => {
            let allowed = if c.remaining.contains(&s.owner) {
                host == s.owner || (!s.cookie && c.added.contains(&host))
            } else {
                c.now.contains(&host)
            };
            if !allowed {
                ctx.fail(format!(
                    "session {} ({}) went from {} to {host}: {}",
                    s.id,
                    s.kind(),
                    s.owner,
                    if c.remaining.contains(&s.owner) {
                        if s.cookie {
                            "its host remains, a session with the sticky cookie must stay"
                        } else {
                            "its host remains, a hashed session may only move to an added host"
                        }
                    } else {
                        "its host was removed, it must move to a current member"
                    }
                ));
            }
            s.now_on = Some(host.clone());
        }
        (Some(first), _) if *first != host => {
            ctx.fail(format!("session {} ({}) answered from {first}, then from {host}", s.id, s.kind()));
        }
        _ => {}
    }
    let due =
        if ctx.env.state == "redis" { s.count + 1 } else { s.seen.get(&host).copied().unwrap_or(0) + 1 };
    if seen.count != due {
        ctx.fail(format!(
            "session {} ({}) on {host}: count {} where {due} was due ({} state)",
            s.id,
            s.kind(),
            seen.count,
            ctx.env.state
        ));
    }
    // State intact: a session that stays continues its counter; one that moved in this step must
    // find on its new host everything it did so far (with in-memory state it finds what that host
    // last had: nothing, or a stale count from before an earlier move).
    let moved_now = change.is_some() && host != s.owner;
    if seen.count != if moved_now { s.total + 1 } else { s.count + 1 } {
        s.lost += 1;
    }
    s.total += 1;
    s.count = seen.count;
    s.seen.insert(host, seen.count);
}

/// Sends every session `rounds` requests, interleaved, over THREADS keep-alive connections.
fn drive(ctx: &Ctx, sessions: Vec<Session>, rounds: usize, change: Option<&Change>) -> Vec<Session> {
    let threads = ctx.env.threads.min(sessions.len()).max(1);
    let mut shards: Vec<Vec<Session>> = vec![Vec::new(); threads];
    for mut s in sessions {
        s.now_on = None;
        s.lost = 0;
        s.reissued = 0;
        shards[s.id % threads].push(s);
    }
    let mut out: Vec<Session> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                scope.spawn(move || {
                    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
                    for round in 0..rounds {
                        for s in shard.iter_mut() {
                            step(ctx, &mut client, s, round, change);
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

// ---------------------------------------------------------------------------------------------
// The state file between the steps

struct Saved {
    run: String,
    members: Members,
    /// One line of figures per finished step.
    steps: Vec<String>,
    sessions: Vec<Session>,
}

fn encode(saved: &Saved) -> String {
    let mut text = format!("# session-router e2e scale state, run {}\n", saved.run);
    let _ = writeln!(text, "#members\t{}", saved.members.iter().cloned().collect::<Vec<_>>().join(","));
    for line in &saved.steps {
        let _ = writeln!(text, "#step\t{line}");
    }
    for s in &saved.sessions {
        let seen = s.seen.iter().map(|(a, n)| format!("{a}={n}")).collect::<Vec<_>>().join(",");
        let _ = writeln!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.id,
            s.kind(),
            dash(&s.key),
            dash(s.srv.as_deref().unwrap_or("")),
            dash(s.app.as_deref().unwrap_or("")),
            dash(&s.owner),
            s.count,
            s.total,
            dash(&seen)
        );
    }
    text
}

fn decode(text: &str) -> Result<Saved, String> {
    let mut saved =
        Saved { run: String::new(), members: Members::new(), steps: Vec::new(), sessions: Vec::new() };
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# session-router e2e scale state, run ") {
            saved.run = r.to_string();
        } else if let Some(m) = line.strip_prefix("#members\t") {
            saved.members = m.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect();
        } else if let Some(s) = line.strip_prefix("#step\t") {
            saved.steps.push(s.to_string());
        } else {
            let bad = || format!("bad line {line:?}");
            let f: Vec<&str> = line.split('\t').collect();
            let [id, kind, key, srv, app, owner, count, total, seen] = f[..] else { return Err(bad()) };
            let mut by_host = BTreeMap::new();
            for pair in undash(seen).unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
                let (a, n) = pair.rsplit_once('=').ok_or_else(bad)?;
                by_host.insert(a.to_string(), n.parse().map_err(|_| bad())?);
            }
            saved.sessions.push(Session {
                id: id.parse().map_err(|_| bad())?,
                cookie: kind == "cookie",
                key: undash(key).unwrap_or_default(),
                srv: undash(srv),
                app: undash(app),
                owner: undash(owner).unwrap_or_default(),
                count: count.parse().map_err(|_| bad())?,
                total: total.parse().map_err(|_| bad())?,
                seen: by_host,
                ..Session::default()
            });
        }
    }
    if saved.run.is_empty() || saved.sessions.is_empty() {
        return Err("no scale state in it".into());
    }
    Ok(saved)
}

fn save(ctx: &Ctx, saved: &Saved) -> Result<(), String> {
    std::fs::write(&ctx.env.state_file, encode(saved)).map_err(|e| format!("{}: {e}", ctx.env.state_file))
}

fn load(path: &str) -> Result<Saved, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e} (run `e2e scale-before` first)"))?;
    decode(&text).map_err(|e| format!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The steps

fn list(members: &Members) -> String {
    if members.is_empty() {
        "none".to_string()
    } else {
        members.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn per_host(sessions: &[Session]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sessions {
        *by.entry(s.owner.as_str()).or_default() += 1;
    }
    by.iter().map(|(h, n)| format!("{h} {n}")).collect::<Vec<_>>().join(", ")
}

fn wait_live(ctx: &Ctx, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http::get(&ctx.env.admin, "/ready", Duration::from_secs(2)) {
            Ok(r) if String::from_utf8_lossy(&r.body).trim() == "LIVE" => return Ok(()),
            Ok(r) => last = format!("/ready: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body).trim()),
            Err(e) => last = format!("envoy admin {}: {e}", ctx.env.admin),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("Envoy not LIVE after {timeout:?}: {last}"))
}

pub(super) fn before(ctx: &mut Ctx, want: Option<usize>) -> Result<(), String> {
    let s = Settings::load()?;
    println!("== e2e scale-before (state {}, run {}) ==", ctx.env.state, ctx.run);
    let started = Instant::now();
    wait_live(ctx, ctx.env.ready_timeout)?;
    let followed = follow(ctx, &s, want, 0, started)?;
    let names = members_ready(ctx, &followed.members, ctx.env.ready_timeout)?;
    ctx.check(
        true,
        "the filter follows Envoy's STRICT_DNS view of the backend service",
        format!(
            "{} backends at generation {} ({}), {:.1}s after the driver started; state in {}",
            followed.members.len(),
            followed.generation,
            names.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", "),
            followed.filter_after.as_secs_f64(),
            ctx.env.state
        ),
    );
    ctx.configured = followed.members.iter().cloned().collect();
    let ctx = &*ctx;
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_of(&followed.members);
    let sessions: Vec<Session> = (0..s.sessions).map(|i| Session::new(&ctx.run, i)).collect();
    let clock = Instant::now();
    let mut sessions = drive(ctx, sessions, s.requests, None);
    let elapsed = clock.elapsed();
    let t1 = ctx.tally.now();
    for x in &mut sessions {
        x.owner = x.now_on.take().unwrap_or_default();
    }
    let failed = (t1.not_ok - t0.not_ok) + (t1.io_errors - t0.io_errors);
    let lost: u64 = sessions.iter().map(|x| x.lost).sum();
    let cookies = sessions.iter().filter(|x| x.cookie).count();
    ctx.check(
        failed == 0 && lost == 0,
        &format!("{} sessions × {} requests stick and keep their state", sessions.len(), s.requests),
        format!(
            "{} requests in {:.1}s, failed {failed}, lost state {lost}; {cookies} with the sticky cookie, {} hashed by x-user-id",
            t1.sent - t0.sent,
            elapsed.as_secs_f64(),
            sessions.len() - cookies
        ),
    );
    println!("     sessions per backend: {}", per_host(&sessions));
    let c1 = scrape(ctx)?;
    check_counters(ctx, "scale-before", &c0, &c1, t0, t1, &|e| e == 0);
    check_served(ctx, "scale-before", &r0, &followed.members, t1.sent - t0.sent);
    let step = [
        format!(
            "{} {} requests in {:.1}s, failed {failed}, lost state {lost}",
            label(&format!("start, {} backends", followed.members.len())),
            t1.sent - t0.sent,
            elapsed.as_secs_f64()
        ),
        format!("{} {}", label("  sessions per backend"), per_host(&sessions)),
    ]
    .join(SEP);
    let saved = Saved { run: ctx.run.clone(), members: followed.members, steps: vec![step], sessions };
    save(ctx, &saved)?;
    println!("     state of {} sessions saved to {}", saved.sessions.len(), ctx.env.state_file);
    Ok(())
}

/// Separates the lines of one step's figures in the state file.
const SEP: &str = "\x1f";

/// `name:` padded to the column of the figures.
fn label(name: &str) -> String {
    format!("{:<25}", format!("{name}:"))
}

fn fraction(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

pub(super) fn to(ctx: &mut Ctx, want: usize) -> Result<(), String> {
    let s = Settings::load()?;
    let mut saved = load(&ctx.env.state_file)?;
    ctx.run = saved.run.clone();
    let previous = saved.members.clone();
    let (generation0, _) = filter_membership(ctx)?;
    let started = Instant::now();
    let watch_unix_ms = unix_ms();
    // The runner starts `up --scale` once it reads this line.
    println!(
        "     watching: {} backends at generation {generation0}, waiting for {want} (state {}, run {})",
        previous.len(),
        ctx.env.state,
        ctx.run
    );
    let followed = follow(ctx, &s, Some(want), generation0, started)?;
    let now = followed.members.clone();
    let remaining: Members = previous.intersection(&now).cloned().collect();
    let added: Members = now.difference(&previous).cloned().collect();
    let removed: Members = previous.difference(&now).cloned().collect();
    let (verb, arrow) = if want >= previous.len() { ("scale-up", "up") } else { ("scale-down", "down") };
    let step_name = format!("{verb} {} → {want}", previous.len());
    println!("== e2e {step_name} (state {}, run {}) ==", ctx.env.state, ctx.run);
    members_ready(ctx, &now, ctx.env.ready_timeout)?;
    ctx.check(
        true,
        &format!("{step_name}: the filter follows the membership"),
        format!(
            "Envoy's cluster had {want} endpoints {:.2}s after the watch began, the filter's ring {:.2}s \
             (generation {}); added [{}], removed [{}]",
            followed.envoy_after.as_secs_f64(),
            followed.filter_after.as_secs_f64(),
            followed.generation,
            list(&added),
            list(&removed)
        ),
    );
    ctx.check(
        if arrow == "up" { removed.is_empty() } else { added.is_empty() },
        &format!("{step_name}: existing replicas kept their addresses"),
        format!("{} remain of {}", remaining.len(), previous.len()),
    );
    println!(
        "#follow\twatch={watch_unix_ms}\tenvoy={}\tfilter={}",
        followed.envoy_unix_ms, followed.filter_unix_ms
    );
    ctx.configured = now.iter().cloned().collect();
    let ctx = &*ctx;
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_of(&now);
    let change = Change { remaining: &remaining, added: &added, now: &now };
    let clock = Instant::now();
    let sessions = drive(ctx, std::mem::take(&mut saved.sessions), s.requests, Some(&change));
    let elapsed = clock.elapsed();
    let t1 = ctx.tally.now();
    let failed = (t1.not_ok - t0.not_ok) + (t1.io_errors - t0.io_errors);
    ctx.check(
        failed == 0,
        &format!("{step_name}: {} sessions × {} requests", sessions.len(), s.requests),
        format!("{} requests in {:.1}s, failed {failed}", t1.sent - t0.sent, elapsed.as_secs_f64()),
    );

    struct Kind {
        total: usize,
        on_removed: usize,
        moved: usize,
        moved_to_added: usize,
        lost_moved: usize,
        lost_stayed: usize,
        reissued_stayed: usize,
        reissued_moved_once: usize,
    }
    let tally = |cookie: bool| {
        let mut k = Kind {
            total: 0,
            on_removed: 0,
            moved: 0,
            moved_to_added: 0,
            lost_moved: 0,
            lost_stayed: 0,
            reissued_stayed: 0,
            reissued_moved_once: 0,
        };
        for x in sessions.iter().filter(|x| x.cookie == cookie) {
            k.total += 1;
            k.on_removed += usize::from(removed.contains(&x.owner));
            let moved = x.now_on.as_deref().is_some_and(|h| h != x.owner);
            if moved {
                k.moved += 1;
                k.moved_to_added += usize::from(x.now_on.as_ref().is_some_and(|h| added.contains(h)));
                k.lost_moved += usize::from(x.lost > 0);
                k.reissued_moved_once += usize::from(x.reissued == 1);
            } else {
                k.lost_stayed += usize::from(x.lost > 0);
                k.reissued_stayed += usize::from(x.reissued > 0);
            }
        }
        k
    };
    let (ck, hk) = (tally(true), tally(false));
    let memory = ctx.env.state == "memory";
    let optimum_hashed =
        if arrow == "up" { fraction(added.len(), now.len()) } else { fraction(hk.on_removed, hk.total) };
    let moved_hashed = fraction(hk.moved, hk.total);
    ctx.check(
        ck.moved == ck.on_removed && ck.lost_stayed == 0 && ck.reissued_stayed == 0,
        &format!("{step_name}: sessions with the sticky cookie whose host remains stay, state intact"),
        format!(
            "{} of {} stayed, lost state {}, cookie re-issued {}",
            ck.total - ck.moved,
            ck.total,
            ck.lost_stayed,
            ck.reissued_stayed
        ),
    );
    if ck.on_removed > 0 {
        ctx.check(
            ck.reissued_moved_once == ck.moved && (memory || ck.lost_moved == 0),
            &format!("{step_name}: sessions with the sticky cookie on removed hosts move to one successor each, re-pinned once"),
            format!(
                "{} moved, {} re-pinned once; lost state {} ({})",
                ck.moved,
                ck.reissued_moved_once,
                ck.lost_moved,
                if memory { "in-memory state: expected" } else { "Redis-backed state" }
            ),
        );
    }
    let tolerance = 0.10 + 3.0 * (optimum_hashed * (1.0 - optimum_hashed) / hk.total.max(1) as f64).sqrt();
    let hashed_ok = if arrow == "up" {
        hk.moved == hk.moved_to_added && (moved_hashed - optimum_hashed).abs() <= tolerance
    } else {
        hk.moved == hk.on_removed
    };
    ctx.check(
        hashed_ok && hk.lost_stayed == 0 && (memory || hk.lost_moved == 0),
        &format!("{step_name}: hashed sessions move only as the ring requires"),
        format!(
            "{} of {} moved ({moved_hashed:.3}; optimum {optimum_hashed:.3}{}), {}; lost state: {} moved ({}), {} others",
            hk.moved,
            hk.total,
            if arrow == "up" { format!(" = {}/{}, tolerance ±{tolerance:.2}", added.len(), now.len()) } else { String::new() },
            if arrow == "up" {
                format!("{} of them to the added hosts", hk.moved_to_added)
            } else {
                format!("{} were on removed hosts", hk.on_removed)
            },
            hk.lost_moved,
            if memory { "in-memory state: expected" } else { "Redis-backed state" },
            hk.lost_stayed
        ),
    );

    // New visitors and users arrive after a scale-up: the next step then has sessions with the
    // sticky cookie on every host, the added ones included.
    let mut sessions = sessions;
    for x in &mut sessions {
        if let Some(h) = x.now_on.take() {
            x.owner = h;
        }
    }
    let arrivals = if arrow == "up" { s.new_sessions } else { 0 };
    let mut arrived_line = None;
    if arrivals > 0 {
        let first = sessions.iter().map(|x| x.id + 1).max().unwrap_or(0);
        let fresh: Vec<Session> = (first..first + arrivals).map(|i| Session::new(&ctx.run, i)).collect();
        let ta = ctx.tally.now();
        let mut fresh = drive(ctx, fresh, s.requests, None);
        let tb = ctx.tally.now();
        for x in &mut fresh {
            x.owner = x.now_on.take().unwrap_or_default();
        }
        let failed = (tb.not_ok - ta.not_ok) + (tb.io_errors - ta.io_errors);
        let lost: u64 = fresh.iter().map(|x| x.lost).sum();
        let on_added =
            |cookie: bool| fresh.iter().filter(|x| x.cookie == cookie && added.contains(&x.owner)).count();
        let detail = format!(
            "{} started ({} with the sticky cookie, {} hashed), {} requests, failed {failed}, lost state {lost}; \
             on the added hosts: {} with the cookie, {} hashed",
            fresh.len(),
            fresh.iter().filter(|x| x.cookie).count(),
            fresh.iter().filter(|x| !x.cookie).count(),
            tb.sent - ta.sent,
            on_added(true),
            on_added(false)
        );
        ctx.check(
            failed == 0 && lost == 0,
            &format!("{step_name}: new sessions after the change stick and keep their state"),
            &detail,
        );
        arrived_line = Some(format!("{} {detail}", label("  new sessions")));
        sessions.extend(fresh);
    }
    let t2 = ctx.tally.now();
    let c1 = scrape(ctx)?;
    check_counters(ctx, &step_name, &c0, &c1, t0, t2, &|e| e == 0);
    check_served(ctx, &step_name, &r0, &now, t2.sent - t0.sent);

    let state_note = |lost: usize| match (memory, lost) {
        (false, _) => " (Redis)",
        (true, 0) => "",
        (true, _) => " (in-memory state: expected)",
    };
    let mut lines = vec![
        format!("{} added [{}], removed [{}]", label(&step_name), list(&added), list(&removed)),
        format!(
            "{} Envoy's cluster had {want} endpoints after {:.2}s, the filter's ring after {:.2}s \
             (from a watch started just before `up --scale`)",
            label("  time to follow"),
            followed.envoy_after.as_secs_f64(),
            followed.filter_after.as_secs_f64()
        ),
        format!(
            "{} {} in {:.1}s (the sessions so far), failed {failed}",
            label("  requests"),
            t1.sent - t0.sent,
            elapsed.as_secs_f64()
        ),
        format!(
            "{} {} of {} = {:.3} (optimum {}); lost state: {} moved{}, {} others",
            label("  cookie sessions moved"),
            ck.moved,
            ck.total,
            fraction(ck.moved, ck.total),
            if arrow == "up" {
                "0".to_string()
            } else {
                format!(
                    "{:.3}: the {} on removed hosts, each to one successor",
                    fraction(ck.on_removed, ck.total),
                    ck.on_removed
                )
            },
            ck.lost_moved,
            state_note(ck.lost_moved),
            ck.lost_stayed
        ),
        format!(
            "{} {} of {} = {moved_hashed:.3} (optimum {}); lost state: {} moved{}, {} others",
            label("  hashed sessions moved"),
            hk.moved,
            hk.total,
            if arrow == "up" {
                format!(
                    "{}/{} = {optimum_hashed:.3}; all {} to the added hosts",
                    added.len(),
                    now.len(),
                    hk.moved_to_added
                )
            } else {
                format!("{optimum_hashed:.3}: the {} on removed hosts", hk.on_removed)
            },
            hk.lost_moved,
            state_note(hk.lost_moved),
            hk.lost_stayed
        ),
    ];
    lines.extend(arrived_line);
    lines.push(format!("{} {}", label("  sessions per backend"), per_host(&sessions)));
    saved.steps.push(lines.join(SEP));
    saved.members = now;
    saved.sessions = sessions;
    save(ctx, &saved)?;

    println!();
    println!("== figures (scale, state {}) ==", ctx.env.state);
    println!(
        "{} half keep the sticky cookie (and the application's app_session), half are hashed by \
         x-user-id and keep no cookie; {} requests per session per step; {} new after a scale-up",
        label("sessions"),
        s.requests,
        s.new_sessions
    );
    for step in &saved.steps {
        for part in step.split(SEP) {
            println!("{part}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_state_round_trips() {
        let mut a = Session::new("r1", 0);
        a.srv = Some("abc".into());
        a.app = Some("def".into());
        a.owner = "10.0.0.2:8080".into();
        a.count = 7;
        a.total = 9;
        a.seen.insert("10.0.0.2:8080".into(), 7);
        a.seen.insert("10.0.0.3:8080".into(), 2);
        let mut b = Session::new("r1", 1);
        b.owner = "10.0.0.3:8080".into();
        b.count = 3;
        let saved = Saved {
            run: "r1".into(),
            members: ["10.0.0.2:8080", "10.0.0.3:8080"].iter().map(|s| s.to_string()).collect(),
            steps: vec!["start\x1f  more".into(), "scale-up 2 → 3".into()],
            sessions: vec![a, b],
        };
        let back = decode(&encode(&saved)).unwrap();
        assert_eq!((back.run.as_str(), &back.members, &back.steps), ("r1", &saved.members, &saved.steps));
        assert_eq!(back.sessions.len(), 2);
        let (a, b) = (&back.sessions[0], &back.sessions[1]);
        assert!(a.cookie && !b.cookie);
        assert_eq!((a.srv.as_deref(), a.app.as_deref(), a.count), (Some("abc"), Some("def"), 7));
        assert_eq!(a.total, 9);
        assert_eq!(a.seen, saved.sessions[0].seen);
        assert_eq!(
            (b.key.as_str(), b.srv.as_deref(), b.owner.as_str()),
            ("r1-scale-u1", None, "10.0.0.3:8080")
        );
        assert!(b.seen.is_empty());
        assert!(decode("# session-router e2e scale state, run r\n1\tcookie\n").is_err());
        assert!(decode("").is_err());
    }

    #[test]
    fn envoy_clusters_json_gives_the_target_clusters_endpoints() {
        let body = br#"{"cluster_statuses":[{"name":"envoy_admin","host_statuses":[
              {"address":{"socket_address":{"address":"127.0.0.1","port_value":9901}}}]},
            {"name":"backends","host_statuses":[
              {"address":{"socket_address":{"address":"172.18.0.4","port_value":8080}},"hostname":"backend"},
              {"address":{"pipe":{"path":"/x"}}},
              {"address":{"socket_address":{"address":"172.18.0.3","port_value":8080}}}]}]}"#;
        let m = parse_members(body, "backends").unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), ["172.18.0.3:8080", "172.18.0.4:8080"]);
        assert!(parse_members(body, "nope").is_err());
        assert!(parse_members(b"{}", "backends").is_err());
        assert!(parse_members(b"{not json", "backends").is_err());
    }
}
