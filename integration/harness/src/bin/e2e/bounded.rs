//! The bounded-load scenario (`docker-compose.yml` with `ENVOY_CONFIG=./envoy/envoy-bounded.yaml`:
//! the filter's `"bounded_load": {"factor": 1.25}`, sticky cookies, Envoy's 2 workers).
//!
//!   e2e bounded   1. BOUNDED_EXISTING cookie sessions (browsers keeping `srv` and `app_session`)
//!                    start with every backend fast, and more until at least BOUNDED_BUSY of them
//!                    live on $SLOW;
//!                 2. BOUNDED_NEW new sessions arrive, every backend fast: where they land;
//!                 3. $SLOW is made slow (`/admin/slow?ms=SLOW_MS` on its own address, never
//!                    through Envoy); BOUNDED_BUSY connections keep its pinned sessions busy (the
//!                    driver waits until the backend itself reports that many requests in flight)
//!                    while BOUNDED_NEW more new sessions arrive, steadily: where they land;
//!                 4. $SLOW is fast again (and idle): BOUNDED_NEW more new sessions;
//!                 5. every session, old and new, once more.
//!
//! New sessions are half browsers (no key: `decision.new`) and half API clients sending
//! `x-user-id` and keeping the sticky cookie they get (`decision.hashed`, then pinned); each sends
//! two more requests with its cookie right after the first.
//!
//! It fails unless: while $SLOW is over the bound, fewer than half its fair share of the new
//! sessions land on it (and before and after, at least half do, so the difference is the bound's);
//! Envoy counted bindings spilled off $SLOW; no existing session moves (each keeps its in-memory
//! count); every new session stays where it landed, spilled ones included; no request fails; and
//! Envoy's counters and the backends' own counts match what was sent, with no ejection.
//!
//! Environment: SLOW (backend-2), SLOW_MS (500), BOUNDED_EXISTING (60), BOUNDED_NEW (150),
//! BOUNDED_BUSY (8), BOUNDED_THREADS (4: connections the new sessions arrive on), BOUNDED_PACE_MS
//! (60: pause between two new sessions on one connection), plus ENVOY, ENVOY_ADMIN, BACKENDS,
//! OUTSIDER, STATE, READY_TIMEOUT.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use session_router_harness::http::{self, Client};
use session_router_harness::json;

use super::{
    APP_COOKIE, Ctx, Expect, STICKY, TIMEOUT, backend_stats, check_backend_requests, check_counters, h,
    number, requests_by_backend, scrape, var, wait_ready,
};

struct Settings {
    slow: String,
    slow_addr: String,
    slow_ms: u64,
    existing: usize,
    new: usize,
    busy: usize,
    threads: usize,
    pace: Duration,
}

impl Settings {
    fn load(ctx: &Ctx) -> Result<Settings, String> {
        let slow = var("SLOW", "backend-2");
        let slow_addr = ctx
            .env
            .backend_addr(&slow)
            .ok_or_else(|| format!("SLOW={slow} is not one of BACKENDS"))?
            .to_string();
        Ok(Settings {
            slow,
            slow_addr,
            slow_ms: number("SLOW_MS", 500)?.clamp(50, 10_000) as u64,
            existing: number("BOUNDED_EXISTING", 60)?.max(3),
            new: number("BOUNDED_NEW", 150)?.max(12),
            busy: number("BOUNDED_BUSY", 8)?.clamp(1, 64),
            threads: number("BOUNDED_THREADS", 4)?.clamp(1, 64),
            pace: Duration::from_millis(number("BOUNDED_PACE_MS", 60)? as u64),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[derive(Clone, Debug, Default)]
struct Session {
    id: usize,
    /// `x-user-id` of an API client; `None` for a browser.
    user: Option<String>,
    srv: Option<String>,
    app: Option<String>,
    /// Where its first request landed.
    home: String,
    count: u64,
    /// Requests answered by another host than `home`.
    moved: u64,
    /// Requests whose counter was not the previous one plus one.
    lost: u64,
    /// Requests that did not answer 200.
    failed: u64,
}

impl Session {
    fn new(ctx: &Ctx, id: usize, api: bool) -> Session {
        let user = api.then(|| format!("{}-bl-user{id}", ctx.run));
        Session { id, user, ..Session::default() }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut cookies = Vec::new();
        if let Some(v) = &self.srv {
            cookies.push(format!("{STICKY}={v}"));
        }
        if let Some(v) = &self.app {
            cookies.push(format!("{APP_COOKIE}={v}"));
        }
        let mut headers = Vec::new();
        if !cookies.is_empty() {
            headers.push(h("cookie", cookies.join("; ")));
        }
        if let Some(u) = &self.user {
            headers.push(h("x-user-id", u));
        }
        headers
    }
}

/// The first request of a new session: where it lands is the binding under test.
fn start(ctx: &Ctx, client: &mut Client, s: &mut Session) {
    let expect = if s.user.is_some() { Expect::Hashed } else { Expect::New };
    match ctx.send(client, "/", &s.headers(), expect, false) {
        Ok(seen) if seen.status == 200 => {
            if seen.srv.is_none() || (s.user.is_none() && seen.app.is_none()) || seen.count != 1 {
                ctx.fail(format!(
                    "new session {} on {}: sticky cookie {}, app cookie {}, count {} (want a cookie and 1)",
                    s.id,
                    seen.backend,
                    seen.srv.is_some(),
                    seen.app.is_some(),
                    seen.count
                ));
            }
            s.srv = seen.srv;
            s.app = seen.app.or(s.app.take());
            s.home = seen.backend;
            s.count = seen.count;
        }
        Ok(seen) => {
            s.failed += 1;
            ctx.fail(format!("new session {}: HTTP {} from {:?}", s.id, seen.status, seen.backend));
        }
        Err(e) => {
            s.failed += 1;
            ctx.fail(format!("new session {}: {e}", s.id));
        }
    }
}

/// One more request with the session's cookie: it must land on `home` with the next count.
fn again(ctx: &Ctx, client: &mut Client, s: &mut Session, when: &str) {
    if s.srv.is_none() {
        return;
    }
    match ctx.send(client, "/", &s.headers(), Expect::Pinned, false) {
        Ok(seen) if seen.status == 200 => {
            if seen.backend != s.home {
                s.moved += 1;
                ctx.fail(format!("session {} moved from {} to {} {when}", s.id, s.home, seen.backend));
            } else if seen.count != s.count + 1 {
                s.lost += 1;
                ctx.fail(format!(
                    "session {} on {}: count {} where {} was due {when}",
                    s.id,
                    s.home,
                    seen.count,
                    s.count + 1
                ));
            }
            if seen.srv.is_some() {
                s.srv = seen.srv;
            }
            s.count = seen.count;
        }
        Ok(seen) => {
            s.failed += 1;
            ctx.fail(format!("session {} {when}: HTTP {} from {:?}", s.id, seen.status, seen.backend));
        }
        Err(e) => {
            s.failed += 1;
            ctx.fail(format!("session {} {when}: {e}", s.id));
        }
    }
}

/// Runs `f` over the sessions from `threads` connections, `pace` between two sessions of one.
fn spread(
    ctx: &Ctx,
    sessions: Vec<Session>,
    threads: usize,
    pace: Duration,
    f: &(dyn Fn(&Ctx, &mut Client, &mut Session) + Sync),
) -> Vec<Session> {
    let threads = threads.min(sessions.len()).max(1);
    let mut shards: Vec<Vec<Session>> = vec![Vec::new(); threads];
    for (i, s) in sessions.into_iter().enumerate() {
        shards[i % threads].push(s);
    }
    let mut out: Vec<Session> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                scope.spawn(move || {
                    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
                    for (i, s) in shard.iter_mut().enumerate() {
                        if i > 0 && !pace.is_zero() {
                            std::thread::sleep(pace);
                        }
                        f(ctx, &mut client, s);
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

/// New sessions: their first request, then two more with the cookie they got.
fn arrive(ctx: &Ctx, sessions: Vec<Session>, threads: usize, pace: Duration, when: &str) -> Vec<Session> {
    spread(ctx, sessions, threads, pace, &|ctx, client, s| {
        start(ctx, client, s);
        for _ in 0..2 {
            again(ctx, client, s, when);
        }
    })
}

fn batch(ctx: &Ctx, first_id: usize, n: usize) -> Vec<Session> {
    (first_id..first_id + n).map(|id| Session::new(ctx, id, id % 2 == 1)).collect()
}

// ---------------------------------------------------------------------------------------------
// Envoy's and the backends' view

/// `wasmcustom.session_router.*` from Envoy's `/stats`, names without that prefix.
fn filter_stats(ctx: &Ctx) -> Result<BTreeMap<String, u64>, String> {
    let r = http::get(&ctx.env.admin, "/stats?filter=session_router", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /stats: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, value) = l.strip_prefix("wasmcustom.session_router.")?.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect())
}

fn stat_delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, name: &str) -> u64 {
    b.get(name).copied().unwrap_or(0).saturating_sub(a.get(name).copied().unwrap_or(0))
}

/// The filter's host metric name: every character outside `[A-Za-z0-9_-]` becomes `_`.
fn metric_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// Envoy's worker count (`--concurrency`, from `/server_info`).
fn workers(ctx: &Ctx) -> Result<u64, String> {
    let r = http::get(&ctx.env.admin, "/server_info", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /server_info: {e}"))?;
    let v = json::parse(&r.body)?;
    v.get("command_line_options")
        .and_then(|o| o.u64_of("concurrency"))
        .ok_or_else(|| "no command_line_options.concurrency in /server_info".into())
}

/// The `factor` of the filter's `bounded_load`, as Envoy runs it (`/config_dump`).
fn bounded_factor(ctx: &Ctx) -> Result<String, String> {
    let r = http::get(&ctx.env.admin, "/config_dump", Duration::from_secs(5))
        .map_err(|e| format!("envoy admin /config_dump: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    let rest = text
        .split_once("bounded_load")
        .map(|(_, rest)| rest)
        .ok_or("Envoy runs the filter without bounded_load (ENVOY_CONFIG=./envoy/envoy-bounded.yaml?)")?;
    let after = rest.split_once("factor").map(|(_, r)| r).ok_or("bounded_load without a factor")?;
    let factor: String = after
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if factor.is_empty() { Err("bounded_load: no factor value".into()) } else { Ok(factor) }
}

/// Connections each Envoy worker has accepted on the listener.
fn connections_per_worker(ctx: &Ctx) -> String {
    let Ok(r) = http::get(&ctx.env.admin, "/stats?filter=downstream_cx_total", Duration::from_secs(3)) else {
        return "?".into();
    };
    let text = String::from_utf8_lossy(&r.body);
    let per: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("listener.0.0.0.0_10000.worker_"))
        .filter_map(|l| {
            let (name, v) = l.split_once(": ")?;
            let worker =
                name.strip_prefix("listener.0.0.0.0_10000.")?.strip_suffix(".downstream_cx_total")?;
            Some(format!("{worker} {}", v.trim()))
        })
        .collect();
    if per.is_empty() { "?".into() } else { per.join(", ") }
}

fn set_slow(s: &Settings, ms: u64) -> Result<(), String> {
    let r = http::get(&s.slow_addr, &format!("/admin/slow?ms={ms}"), Duration::from_secs(3))
        .map_err(|e| format!("{} /admin/slow: {e}", s.slow))?;
    let v = r.json()?;
    if r.status != 200 || v.u64_of("slow_ms") != Some(ms) {
        return Err(format!("{} /admin/slow?ms={ms}: HTTP {} {:?}", s.slow, r.status, v.u64_of("slow_ms")));
    }
    Ok(())
}

/// Polls the slow backend's own `in_flight` until `ok` holds; returns the last value seen.
fn wait_in_flight(s: &Settings, ok: impl Fn(u64) -> bool, within: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    loop {
        let n = backend_stats(&s.slow_addr)?.u64_of("in_flight").ok_or("no in_flight in /admin/stats")?;
        if ok(n) {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(format!("{} has {n} requests in flight after {within:?}", s.slow));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn landed(ctx: &Ctx, sessions: &[Session]) -> BTreeMap<String, usize> {
    let mut by: BTreeMap<String, usize> = ctx.env.backends.iter().map(|(n, _)| (n.clone(), 0)).collect();
    for s in sessions.iter().filter(|s| !s.home.is_empty()) {
        *by.entry(s.home.clone()).or_default() += 1;
    }
    by
}

fn show(by: &BTreeMap<String, usize>) -> String {
    by.iter().map(|(b, n)| format!("{b} {n}")).collect::<Vec<_>>().join(", ")
}

fn show_spilled(ctx: &Ctx, a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> String {
    let per: Vec<String> = ctx
        .env
        .backends
        .iter()
        .map(|(n, _)| format!("{n} {}", stat_delta(a, b, &format!("host.{}.spilled", metric_id(n)))))
        .collect();
    format!("{} (off {})", stat_delta(a, b, "bounded_load.spilled"), per.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The scenario

pub(super) fn run(ctx: &Ctx) -> Result<(), String> {
    let st = Settings::load(ctx)?;
    println!(
        "== e2e bounded ({} made slow by {} ms; state {}, run {}) ==",
        st.slow, st.slow_ms, ctx.env.state, ctx.run
    );
    if !wait_ready(ctx, None) {
        return Err("stack not ready".into());
    }
    set_slow(&st, 0)?;
    let factor = bounded_factor(ctx)?;
    let workers = workers(ctx)?;
    let n_backends = ctx.env.backends.len();
    ctx.check(
        true,
        "stack ready, bounded load on",
        format!(
            "Envoy LIVE at {} with {workers} workers, the filter's bounded_load factor {factor}, {n_backends} backends",
            ctx.env.envoy
        ),
    );
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_by_backend(ctx);
    let s0 = filter_stats(ctx)?;

    // 1. Existing sessions, every backend fast; enough of them on the backend about to turn slow.
    let mut existing = arrive(
        ctx,
        (0..st.existing).map(|id| Session::new(ctx, id, false)).collect(),
        st.threads,
        Duration::ZERO,
        "with every backend fast",
    );
    let mut next_id = st.existing;
    while existing.iter().filter(|s| s.home == st.slow).count() < st.busy && next_id < st.existing * 5 {
        let more = arrive(
            ctx,
            (next_id..next_id + st.busy).map(|id| Session::new(ctx, id, false)).collect(),
            st.threads,
            Duration::ZERO,
            "with every backend fast",
        );
        next_id += st.busy;
        existing.extend(more);
    }
    let existing_by = landed(ctx, &existing);
    let (mut pinned_slow, others): (Vec<Session>, Vec<Session>) =
        existing.into_iter().partition(|s| s.home == st.slow);
    if pinned_slow.len() < st.busy {
        return Err(format!(
            "only {} existing sessions on {} (want {})",
            pinned_slow.len(),
            st.slow,
            st.busy
        ));
    }
    ctx.check(
        true,
        "existing cookie sessions",
        format!("{} sessions, per backend: {}", pinned_slow.len() + others.len(), show(&existing_by)),
    );

    // 2. New sessions, every backend fast.
    let s1 = filter_stats(ctx)?;
    let started = Instant::now();
    let before = arrive(ctx, batch(ctx, 100_000, st.new), st.threads, st.pace, "with every backend fast");
    let before_secs = started.elapsed().as_secs_f64();
    let before_by = landed(ctx, &before);
    let s2 = filter_stats(ctx)?;

    // 3. Slow: its pinned sessions kept busy while new sessions arrive.
    set_slow(&st, st.slow_ms)?;
    let stop = AtomicBool::new(false);
    let busy_requests = AtomicU64::new(0);
    let mut peak_in_flight = 0;
    let mut during = Vec::new();
    let mut during_secs = 0.0;
    let mut wait_error = None;
    let when_busy = format!("while {} is slow and kept busy", st.slow);
    std::thread::scope(|scope| {
        let mut shards: Vec<Vec<Session>> = vec![Vec::new(); st.busy];
        for (i, s) in pinned_slow.drain(..).enumerate() {
            shards[i % st.busy].push(s);
        }
        let loaders: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                let (stop, busy_requests, when) = (&stop, &busy_requests, when_busy.as_str());
                scope.spawn(move || {
                    let mut client = Client::new(&ctx.env.envoy, TIMEOUT);
                    'run: loop {
                        for s in shard.iter_mut() {
                            if stop.load(Relaxed) {
                                break 'run;
                            }
                            again(ctx, &mut client, s, when);
                            busy_requests.fetch_add(1, Relaxed);
                        }
                    }
                    shard
                })
            })
            .collect();
        let busy = st.busy as u64;
        match wait_in_flight(&st, |n| n >= busy, Duration::from_secs(10)) {
            Ok(n) => {
                peak_in_flight = n;
                let started = Instant::now();
                during = arrive(ctx, batch(ctx, 200_000, st.new), st.threads, st.pace, &when_busy);
                during_secs = started.elapsed().as_secs_f64();
                if let Ok(v) = backend_stats(&st.slow_addr) {
                    peak_in_flight = peak_in_flight.max(v.u64_of("in_flight").unwrap_or(0));
                }
            }
            Err(e) => wait_error = Some(e),
        }
        stop.store(true, Relaxed);
        for l in loaders {
            match l.join() {
                Ok(shard) => pinned_slow.extend(shard),
                Err(_) => ctx.fail("a loader thread panicked"),
            }
        }
    });
    if let Some(e) = wait_error {
        set_slow(&st, 0)?;
        return Err(format!("the loaders did not keep {} busy: {e}", st.slow));
    }
    let during_by = landed(ctx, &during);
    let s3 = filter_stats(ctx)?;
    let spill_gauge = s3.get("bounded_load.in_flight").copied().unwrap_or(0);

    // 4. Fast and idle again.
    set_slow(&st, 0)?;
    wait_in_flight(&st, |n| n == 0, Duration::from_secs(10))?;
    let after = arrive(ctx, batch(ctx, 300_000, st.new), st.threads, st.pace, "after the backend recovered");
    let after_by = landed(ctx, &after);
    let s4 = filter_stats(ctx)?;

    // 5. Every session once more.
    let mut existing: Vec<Session> = pinned_slow.into_iter().chain(others).collect();
    existing = spread(ctx, existing, st.threads * 2, Duration::ZERO, &|ctx, client, s| {
        again(ctx, client, s, "at the end")
    });
    let mut new_sessions: Vec<Session> = before.into_iter().chain(during).chain(after).collect();
    new_sessions = spread(ctx, new_sessions, st.threads * 2, Duration::ZERO, &|ctx, client, s| {
        again(ctx, client, s, "at the end")
    });

    // The checks.
    let fair = |n: usize| n as f64 / n_backends as f64;
    let on_slow = |by: &BTreeMap<String, usize>| by.get(&st.slow).copied().unwrap_or(0);
    let n_before = before_by.values().sum::<usize>();
    let n_during = during_by.values().sum::<usize>();
    let n_after = after_by.values().sum::<usize>();
    let slow_metric = format!("host.{}.spilled", metric_id(&st.slow));
    let spilled_off_slow = stat_delta(&s2, &s3, &slow_metric);
    ctx.check(
        on_slow(&during_by) as f64 * 2.0 < fair(n_during),
        &format!("new sessions stop landing on {} while it is over the bound", st.slow),
        format!(
            "{} of {n_during} landed on it (fair share {:.0}; must be under half of it); per backend: {}",
            on_slow(&during_by),
            fair(n_during),
            show(&during_by)
        ),
    );
    ctx.check(
        on_slow(&before_by) as f64 * 2.0 >= fair(n_before) && on_slow(&after_by) as f64 * 2.0 >= fair(n_after),
        &format!("{} takes its share of new sessions while fast", st.slow),
        format!(
            "before: {} of {n_before}, after it recovered: {} of {n_after} (fair share {:.0}; at least half of it)",
            on_slow(&before_by),
            on_slow(&after_by),
            fair(st.new)
        ),
    );
    ctx.check(
        spilled_off_slow > 0,
        &format!("Envoy counted new bindings spilled off {}", st.slow),
        format!(
            "session_router.{slow_metric} +{spilled_off_slow} while slow; bounded_load.in_flight (load the bound saw) {spill_gauge}"
        ),
    );
    let per_host_sum: u64 = ctx
        .env
        .backends
        .iter()
        .map(|(n, _)| stat_delta(&s0, &s4, &format!("host.{}.spilled", metric_id(n))))
        .sum();
    let total_spilled = stat_delta(&s0, &s4, "bounded_load.spilled");
    ctx.check(
        per_host_sum == total_spilled,
        "bounded_load.spilled is the sum of the per-host counters",
        format!("{total_spilled} = {per_host_sum}"),
    );
    let existing_moved = existing.iter().filter(|s| s.moved > 0 || s.lost > 0).count();
    let busy_n = busy_requests.load(Relaxed);
    ctx.check(
        existing_moved == 0,
        "no existing session moves",
        format!(
            "0 expected, {existing_moved} of {} moved or lost state ({} requests pinned to {} while it was slow)",
            existing.len(),
            busy_n,
            st.slow
        ),
    );
    let new_moved = new_sessions.iter().filter(|s| s.moved > 0 || s.lost > 0).count();
    ctx.check(
        new_moved == 0,
        "every new session stays where it landed, spilled ones included",
        format!("{new_moved} of {} moved (4 requests each)", new_sessions.len()),
    );
    let t1 = ctx.tally.now();
    let failed = (t1.not_ok - t0.not_ok) + (t1.io_errors - t0.io_errors);
    ctx.check(failed == 0, "no request failed", format!("{} requests, failed {failed}", t1.sent - t0.sent));
    let c1 = scrape(ctx)?;
    check_counters(ctx, "bounded", &c0, &c1, t0, t1, &|e| e == 0);
    check_backend_requests(ctx, "bounded", &r0, t1.sent - t0.sent);

    println!();
    println!("== figures (bounded load) ==");
    println!(
        "Envoy:                    {workers} workers, bounded_load factor {factor} (the bound is per worker; connections per worker: {})",
        connections_per_worker(ctx)
    );
    println!(
        "existing sessions:        {} with the sticky cookie, per backend: {}",
        existing.len(),
        show(&existing_by)
    );
    println!(
        "new sessions per backend: {} per phase (half keyless browsers, half x-user-id clients keeping the cookie; fair share {:.0})",
        st.new,
        fair(st.new)
    );
    let row = |label: String, by: &BTreeMap<String, usize>, secs: Option<f64>, a, b| {
        println!(
            "  {:<24}{}{}; spilled {}",
            label,
            show(by),
            secs.map_or(String::new(), |s| format!(" (in {s:.1}s)")),
            show_spilled(ctx, a, b)
        );
    };
    row("all fast:".into(), &before_by, Some(before_secs), &s1, &s2);
    row(format!("{} slow:", st.slow), &during_by, Some(during_secs), &s2, &s3);
    row(format!("{} fast again:", st.slow), &after_by, None, &s3, &s4);
    println!(
        "while slow:               {} answered after {} ms; {} connections kept its pinned sessions busy ({peak_in_flight} in flight at it, {busy_n} requests, none may move)",
        st.slow, st.slow_ms, st.busy
    );
    println!(
        "sessions moved:           existing {existing_moved} of {} (0 expected); new {new_moved} of {} (spilled ones included)",
        existing.len(),
        new_sessions.len()
    );
    println!("requests:                 {}, failed {failed}", t1.sent - t0.sent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_ids_follow_the_filter() {
        assert_eq!(metric_id("backend-2"), "backend-2");
        assert_eq!(metric_id("10.0.0.1:8080"), "10_0_0_1_8080");
    }

    #[test]
    fn stat_deltas_never_underflow() {
        let a: BTreeMap<String, u64> = [("x".to_string(), 5)].into();
        let b: BTreeMap<String, u64> = [("x".to_string(), 7)].into();
        assert_eq!(stat_delta(&a, &b, "x"), 2);
        assert_eq!(stat_delta(&b, &a, "x"), 0);
        assert_eq!(stat_delta(&a, &b, "missing"), 0);
    }
}
