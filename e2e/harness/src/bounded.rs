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

mod session;
mod view;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::ctx::{Ctx, TIMEOUT};
use crate::drive::{count, show};
use crate::env::{number, var};
use crate::http::Client;
use crate::observe::{
    Counters, backend_stats, check_backend_requests, check_counters, filter_stats, requests_by_backend,
    scrape, stat_delta, wait_ready,
};
use session::{Session, again, arrive, batch, once_more};
use view::{bounded_factor, connections_per_worker, metric_id, set_slow, wait_in_flight, workers};

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

/// The filter's own stats (`session_router.*`).
fn stats(ctx: &Ctx) -> Result<Counters, String> {
    filter_stats(ctx, "session_router")
}

/// New sessions per backend (every backend listed, 0 included).
fn landed(ctx: &Ctx, sessions: &[Session]) -> BTreeMap<String, usize> {
    let mut by = count(sessions.iter().filter(|s| !s.home.is_empty()).map(|s| s.home.as_str()));
    for (name, _) in &ctx.env.backends {
        by.entry(name.clone()).or_default();
    }
    by
}

fn show_spilled(ctx: &Ctx, a: &Counters, b: &Counters) -> String {
    let per: Vec<String> = ctx
        .env
        .backends
        .iter()
        .map(|(n, _)| format!("{n} {}", stat_delta(a, b, &format!("host.{}.spilled", metric_id(n)))))
        .collect();
    format!("{} (off {})", stat_delta(a, b, "bounded_load.spilled"), per.join(", "))
}

/// One phase of new sessions: where they landed, and the filter's stats around it.
struct Phase {
    sessions: Vec<Session>,
    by: BTreeMap<String, usize>,
    secs: Option<f64>,
    stats: (Counters, Counters),
}

impl Phase {
    /// `n` new sessions from `first_id` arrive, paced.
    fn arrive(ctx: &Ctx, st: &Settings, first_id: usize, when: &str) -> Result<Phase, String> {
        let s0 = stats(ctx)?;
        let started = Instant::now();
        let sessions = arrive(ctx, batch(ctx, first_id, st.new), st.threads, st.pace, when);
        let secs = Some(started.elapsed().as_secs_f64());
        Ok(Phase { by: landed(ctx, &sessions), sessions, secs, stats: (s0, stats(ctx)?) })
    }

    fn on(&self, backend: &str) -> usize {
        self.by.get(backend).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.by.values().sum()
    }
}

/// The sessions that exist before the new ones arrive.
struct Existing {
    /// Those on $SLOW.
    pinned_slow: Vec<Session>,
    others: Vec<Session>,
    by: BTreeMap<String, usize>,
}

/// Step 1: cookie sessions with every backend fast, until at least BOUNDED_BUSY live on $SLOW.
fn existing(ctx: &Ctx, st: &Settings) -> Result<Existing, String> {
    let fresh = |ids: std::ops::Range<usize>| ids.map(|id| Session::new(ctx, id, false)).collect();
    let when = "with every backend fast";
    let mut existing = arrive(ctx, fresh(0..st.existing), st.threads, Duration::ZERO, when);
    let mut next_id = st.existing;
    while existing.iter().filter(|s| s.home == st.slow).count() < st.busy && next_id < st.existing * 5 {
        existing.extend(arrive(ctx, fresh(next_id..next_id + st.busy), st.threads, Duration::ZERO, when));
        next_id += st.busy;
    }
    let by = landed(ctx, &existing);
    let (pinned_slow, others): (Vec<Session>, Vec<Session>) =
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
        format!("{} sessions, per backend: {}", pinned_slow.len() + others.len(), show(&by)),
    );
    Ok(Existing { pinned_slow, others, by })
}

/// Step 3 as it went: the new sessions, and the load kept on $SLOW meanwhile.
struct Slow {
    phase: Phase,
    peak_in_flight: u64,
    busy_requests: u64,
}

/// Step 3: $SLOW is made slow; BOUNDED_BUSY connections keep its pinned sessions busy while
/// BOUNDED_NEW new sessions arrive.
fn while_slow(ctx: &Ctx, st: &Settings, pinned_slow: &mut Vec<Session>) -> Result<Slow, String> {
    let s2 = stats(ctx)?;
    set_slow(st, st.slow_ms)?;
    let stop = AtomicBool::new(false);
    let busy_requests = AtomicU64::new(0);
    let when = format!("while {} is slow and kept busy", st.slow);
    let arrived = std::thread::scope(|scope| {
        let mut shards: Vec<Vec<Session>> = vec![Vec::new(); st.busy];
        for (i, s) in pinned_slow.drain(..).enumerate() {
            shards[i % st.busy].push(s);
        }
        let loaders: Vec<_> = shards
            .into_iter()
            .map(|mut shard| {
                let (stop, busy_requests, when) = (&stop, &busy_requests, when.as_str());
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
        let arrived = wait_in_flight(st, |n| n >= st.busy as u64, Duration::from_secs(10)).map(|n| {
            let started = Instant::now();
            let sessions = arrive(ctx, batch(ctx, 200_000, st.new), st.threads, st.pace, &when);
            let secs = started.elapsed().as_secs_f64();
            let now = backend_stats(&st.slow_addr).ok().and_then(|v| v["in_flight"].as_u64()).unwrap_or(0);
            (sessions, secs, n.max(now))
        });
        stop.store(true, Relaxed);
        for l in loaders {
            match l.join() {
                Ok(shard) => pinned_slow.extend(shard),
                Err(_) => ctx.fail("a loader thread panicked"),
            }
        }
        arrived
    });
    let (sessions, secs, peak_in_flight) = match arrived {
        Ok(v) => v,
        Err(e) => {
            set_slow(st, 0)?;
            return Err(format!("the loaders did not keep {} busy: {e}", st.slow));
        }
    };
    let phase = Phase { by: landed(ctx, &sessions), sessions, secs: Some(secs), stats: (s2, stats(ctx)?) };
    Ok(Slow { phase, peak_in_flight, busy_requests: busy_requests.load(Relaxed) })
}

/// `e2e bounded`.
pub fn run(ctx: &Ctx) -> Result<(), String> {
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
    ctx.check(
        true,
        "stack ready, bounded load on",
        format!(
            "Envoy LIVE at {} with {workers} workers, the filter's bounded_load factor {factor}, {} backends",
            ctx.env.envoy,
            ctx.env.backends.len()
        ),
    );
    let c0 = scrape(ctx)?;
    let t0 = ctx.tally.now();
    let r0 = requests_by_backend(ctx);
    let s0 = stats(ctx)?;

    // 1. Existing sessions; 2. new sessions, every backend fast; 3. slow and busy.
    let Existing { mut pinned_slow, others, by: existing_by } = existing(ctx, &st)?;
    let before = Phase::arrive(ctx, &st, 100_000, "with every backend fast")?;
    let slow = while_slow(ctx, &st, &mut pinned_slow)?;
    let spill_gauge = slow.phase.stats.1.get("bounded_load.in_flight").copied().unwrap_or(0);

    // 4. Fast and idle again.
    set_slow(&st, 0)?;
    wait_in_flight(&st, |n| n == 0, Duration::from_secs(10))?;
    let mut after = Phase::arrive(ctx, &st, 300_000, "after the backend recovered")?;
    after.secs = None;

    // 5. Every session once more.
    let existing = once_more(ctx, pinned_slow.into_iter().chain(others).collect(), st.threads * 2);
    let new_sessions: Vec<Session> =
        [&before.sessions, &slow.phase.sessions, &after.sessions].into_iter().flatten().cloned().collect();
    let new_sessions = once_more(ctx, new_sessions, st.threads * 2);

    // The checks.
    let n_backends = ctx.env.backends.len();
    let fair = |n: usize| n as f64 / n_backends as f64;
    let during = &slow.phase;
    ctx.check(
        during.on(&st.slow) as f64 * 2.0 < fair(during.total()),
        &format!("new sessions stop landing on {} while it is over the bound", st.slow),
        format!(
            "{} of {} landed on it (fair share {:.0}; must be under half of it); per backend: {}",
            during.on(&st.slow),
            during.total(),
            fair(during.total()),
            show(&during.by)
        ),
    );
    ctx.check(
        before.on(&st.slow) as f64 * 2.0 >= fair(before.total())
            && after.on(&st.slow) as f64 * 2.0 >= fair(after.total()),
        &format!("{} takes its share of new sessions while fast", st.slow),
        format!(
            "before: {} of {}, after it recovered: {} of {} (fair share {:.0}; at least half of it)",
            before.on(&st.slow),
            before.total(),
            after.on(&st.slow),
            after.total(),
            fair(st.new)
        ),
    );
    let slow_metric = format!("host.{}.spilled", metric_id(&st.slow));
    let spilled_off_slow = stat_delta(&during.stats.0, &during.stats.1, &slow_metric);
    ctx.check(
        spilled_off_slow > 0,
        &format!("Envoy counted new bindings spilled off {}", st.slow),
        format!(
            "session_router.{slow_metric} +{spilled_off_slow} while slow; bounded_load.in_flight (load the bound saw) {spill_gauge}"
        ),
    );
    let s4 = &after.stats.1;
    let per_host_sum: u64 = ctx
        .env
        .backends
        .iter()
        .map(|(n, _)| stat_delta(&s0, s4, &format!("host.{}.spilled", metric_id(n))))
        .sum();
    let total_spilled = stat_delta(&s0, s4, "bounded_load.spilled");
    ctx.check(
        per_host_sum == total_spilled,
        "bounded_load.spilled is the sum of the per-host counters",
        format!("{total_spilled} = {per_host_sum}"),
    );
    let existing_moved = existing.iter().filter(|s| s.moved > 0 || s.lost > 0).count();
    ctx.check(
        existing_moved == 0,
        "no existing session moves",
        format!(
            "0 expected, {existing_moved} of {} moved or lost state ({} requests pinned to {} while it was slow)",
            existing.len(),
            slow.busy_requests,
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
    let failed = t1.failed_since(&t0);
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
    for (label, phase) in [
        ("all fast:".to_string(), &before),
        (format!("{} slow:", st.slow), during),
        (format!("{} fast again:", st.slow), &after),
    ] {
        println!(
            "  {:<24}{}{}; spilled {}",
            label,
            show(&phase.by),
            phase.secs.map_or(String::new(), |s| format!(" (in {s:.1}s)")),
            show_spilled(ctx, &phase.stats.0, &phase.stats.1)
        );
    }
    println!(
        "while slow:               {} answered after {} ms; {} connections kept its pinned sessions busy ({} in flight at it, {} requests, none may move)",
        st.slow, st.slow_ms, st.busy, slow.peak_in_flight, slow.busy_requests
    );
    println!(
        "sessions moved:           existing {existing_moved} of {} (0 expected); new {new_moved} of {} (spilled ones included)",
        existing.len(),
        new_sessions.len()
    );
    println!("requests:                 {}, failed {failed}", t1.sent - t0.sent);
    Ok(())
}
