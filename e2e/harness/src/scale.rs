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

mod membership;
mod moves;
mod session;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, TallyNow};
use crate::drive::{count, show};
use crate::env::{number, var};
use crate::observe::{Counters, Served, check_counters, check_served, requests_at, scrape};
use crate::state;
use membership::{Followed, Members, filter_membership, follow, members_ready, unix_ms, wait_live};
use moves::Moves;
use session::{Change, Session, drive};

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

/// What one step hands to the next.
#[derive(Serialize, Deserialize)]
struct Saved {
    run: String,
    members: Members,
    /// The figures of every finished step, a line each.
    steps: Vec<Vec<String>>,
    sessions: Vec<Session>,
}

fn load(path: &str) -> Result<Saved, String> {
    let saved: Saved = state::load(path, "e2e scale-before")?;
    if saved.run.is_empty() || saved.sessions.is_empty() {
        return Err(format!("{path}: no scale state in it"));
    }
    Ok(saved)
}

/// `name:` padded to the column of the figures.
fn label(name: &str) -> String {
    format!("{:<25}", format!("{name}:"))
}

fn list(members: &Members) -> String {
    if members.is_empty() {
        "none".to_string()
    } else {
        members.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn per_host(sessions: &[Session]) -> String {
    show(&count(sessions.iter().map(|s| s.owner.as_str())))
}

fn requests_of(members: &Members) -> Served {
    requests_at(members.iter().map(|a| (a.as_str(), a.as_str())))
}

/// Counters, tally and backend counts at the start of a step, checked against its end.
struct Mark {
    counters: Counters,
    tally: TallyNow,
    requests: Served,
}

impl Mark {
    fn take(ctx: &Ctx, members: &Members) -> Result<Mark, String> {
        Ok(Mark { counters: scrape(ctx)?, tally: ctx.tally.now(), requests: requests_of(members) })
    }

    /// Envoy counted what was sent since, without an ejection; every request reached one member.
    fn check(&self, ctx: &Ctx, step: &str, members: &Members) -> Result<(), String> {
        let t1 = ctx.tally.now();
        check_counters(ctx, step, &self.counters, &scrape(ctx)?, self.tally, t1, &|e| e == 0);
        let sent = t1.sent - self.tally.sent;
        check_served(ctx, step, (&self.requests, &requests_of(members)), sent, None, false);
        Ok(())
    }
}

/// `e2e scale-before [N]`.
pub fn before(ctx: &mut Ctx, want: Option<usize>) -> Result<(), String> {
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
    let mark = Mark::take(ctx, &followed.members)?;
    let sessions: Vec<Session> = (0..s.sessions).map(|i| Session::new(&ctx.run, i)).collect();
    let clock = Instant::now();
    let mut sessions = drive(ctx, sessions, s.requests, None);
    let elapsed = clock.elapsed();
    let t1 = ctx.tally.now();
    for x in &mut sessions {
        x.settle();
    }
    let failed = t1.failed_since(&mark.tally);
    let lost: u64 = sessions.iter().map(|x| x.lost).sum();
    let cookies = sessions.iter().filter(|x| x.cookie).count();
    ctx.check(
        failed == 0 && lost == 0,
        &format!("{} sessions × {} requests stick and keep their state", sessions.len(), s.requests),
        format!(
            "{} requests in {:.1}s, failed {failed}, lost state {lost}; {cookies} with the sticky cookie, {} hashed by x-user-id",
            t1.sent - mark.tally.sent,
            elapsed.as_secs_f64(),
            sessions.len() - cookies
        ),
    );
    println!("     sessions per backend: {}", per_host(&sessions));
    mark.check(ctx, "scale-before", &followed.members)?;
    let step = vec![
        format!(
            "{} {} requests in {:.1}s, failed {failed}, lost state {lost}",
            label(&format!("start, {} backends", followed.members.len())),
            t1.sent - mark.tally.sent,
            elapsed.as_secs_f64()
        ),
        format!("{} {}", label("  sessions per backend"), per_host(&sessions)),
    ];
    let saved = Saved { run: ctx.run.clone(), members: followed.members, steps: vec![step], sessions };
    state::save(&ctx.env.state_file, &saved)?;
    println!("     state of {} sessions saved to {}", saved.sessions.len(), ctx.env.state_file);
    Ok(())
}

/// A membership change as the filter followed it.
struct Step {
    name: String,
    up: bool,
    followed: Followed,
    previous: Members,
    remaining: Members,
    added: Members,
    removed: Members,
}

/// Watches Envoy and the filter until both show `want` hosts (the runner scales meanwhile).
fn watch(ctx: &Ctx, s: &Settings, previous: Members, want: usize) -> Result<Step, String> {
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
    let followed = follow(ctx, s, Some(want), generation0, started)?;
    let now = &followed.members;
    let up = want >= previous.len();
    let step = Step {
        name: format!("{} {} → {want}", if up { "scale-up" } else { "scale-down" }, previous.len()),
        up,
        remaining: previous.intersection(now).cloned().collect(),
        added: now.difference(&previous).cloned().collect(),
        removed: previous.difference(now).cloned().collect(),
        previous,
        followed,
    };
    println!("== e2e {} (state {}, run {}) ==", step.name, ctx.env.state, ctx.run);
    members_ready(ctx, &step.followed.members, ctx.env.ready_timeout)?;
    ctx.check(
        true,
        &format!("{}: the filter follows the membership", step.name),
        format!(
            "Envoy's cluster had {want} endpoints {:.2}s after the watch began, the filter's ring {:.2}s \
             (generation {}); added [{}], removed [{}]",
            step.followed.envoy_after.as_secs_f64(),
            step.followed.filter_after.as_secs_f64(),
            step.followed.generation,
            list(&step.added),
            list(&step.removed)
        ),
    );
    ctx.check(
        if up { step.removed.is_empty() } else { step.added.is_empty() },
        &format!("{}: existing replicas kept their addresses", step.name),
        format!("{} remain of {}", step.remaining.len(), step.previous.len()),
    );
    println!(
        "#follow\twatch={watch_unix_ms}\tenvoy={}\tfilter={}",
        step.followed.envoy_unix_ms, step.followed.filter_unix_ms
    );
    Ok(step)
}

/// New visitors and users arrive after a scale-up: the next step then has sessions with the
/// sticky cookie on every host, the added ones included. Returns the figures' line.
fn arrivals(ctx: &Ctx, s: &Settings, step: &Step, sessions: &mut Vec<Session>) -> Option<String> {
    if !step.up || s.new_sessions == 0 {
        return None;
    }
    let first = sessions.iter().map(|x| x.id + 1).max().unwrap_or(0);
    let fresh: Vec<Session> = (first..first + s.new_sessions).map(|i| Session::new(&ctx.run, i)).collect();
    let ta = ctx.tally.now();
    let mut fresh = drive(ctx, fresh, s.requests, None);
    let tb = ctx.tally.now();
    for x in &mut fresh {
        x.owner = x.now_on.take().unwrap_or_default();
    }
    let failed = tb.failed_since(&ta);
    let lost: u64 = fresh.iter().map(|x| x.lost).sum();
    let on_added =
        |cookie: bool| fresh.iter().filter(|x| x.cookie == cookie && step.added.contains(&x.owner)).count();
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
        &format!("{}: new sessions after the change stick and keep their state", step.name),
        &detail,
    );
    sessions.extend(fresh);
    Some(format!("{} {detail}", label("  new sessions")))
}

/// `e2e scale-to N`.
pub fn to(ctx: &mut Ctx, want: usize) -> Result<(), String> {
    let s = Settings::load()?;
    let mut saved = load(&ctx.env.state_file)?;
    ctx.run = saved.run.clone();
    let step = watch(ctx, &s, std::mem::take(&mut saved.members), want)?;
    let now = &step.followed.members;
    ctx.configured = now.iter().cloned().collect();
    let ctx = &*ctx;
    let mark = Mark::take(ctx, now)?;
    let change = Change { remaining: &step.remaining, added: &step.added, now };
    let clock = Instant::now();
    let mut sessions = drive(ctx, std::mem::take(&mut saved.sessions), s.requests, Some(&change));
    let elapsed = clock.elapsed();
    let t1 = ctx.tally.now();
    let failed = t1.failed_since(&mark.tally);
    ctx.check(
        failed == 0,
        &format!("{}: {} sessions × {} requests", step.name, sessions.len(), s.requests),
        format!("{} requests in {:.1}s, failed {failed}", t1.sent - mark.tally.sent, elapsed.as_secs_f64()),
    );
    let (ck, hk) = (Moves::of(&sessions, true, &step), Moves::of(&sessions, false, &step));
    let memory = ctx.env.state == "memory";
    moves::check(ctx, &step, &ck, &hk, memory);
    for x in &mut sessions {
        x.settle();
    }
    let arrived = arrivals(ctx, &s, &step, &mut sessions);
    mark.check(ctx, &step.name, now)?;

    let mut lines = vec![
        format!("{} added [{}], removed [{}]", label(&step.name), list(&step.added), list(&step.removed)),
        format!(
            "{} Envoy's cluster had {want} endpoints after {:.2}s, the filter's ring after {:.2}s \
             (from a watch started just before `up --scale`)",
            label("  time to follow"),
            step.followed.envoy_after.as_secs_f64(),
            step.followed.filter_after.as_secs_f64()
        ),
        format!(
            "{} {} in {:.1}s (the sessions so far), failed {failed}",
            label("  requests"),
            t1.sent - mark.tally.sent,
            elapsed.as_secs_f64()
        ),
    ];
    lines.extend(moves::figures(&step, &ck, &hk, memory));
    lines.extend(arrived);
    lines.push(format!("{} {}", label("  sessions per backend"), per_host(&sessions)));
    saved.steps.push(lines);
    saved.members = step.followed.members;
    saved.sessions = sessions;
    state::save(&ctx.env.state_file, &saved)?;

    println!();
    println!("== figures (scale, state {}) ==", ctx.env.state);
    println!(
        "{} half keep the sticky cookie (and the application's app_session), half are hashed by \
         x-user-id and keep no cookie; {} requests per session per step; {} new after a scale-up",
        label("sessions"),
        s.requests,
        s.new_sessions
    );
    for line in saved.steps.iter().flatten() {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_state_round_trips() {
        let mut a = Session::new("r1", 0);
        a.jar.srv = Some("abc".into());
        a.jar.app = Some("def".into());
        a.owner = "10.0.0.2:8080".into();
        a.count = 7;
        a.total = 9;
        a.seen.insert("10.0.0.2:8080".into(), 7);
        a.seen.insert("10.0.0.3:8080".into(), 2);
        a.now_on = Some("10.0.0.3:8080".into());
        let mut b = Session::new("r1", 1);
        b.owner = "10.0.0.3:8080".into();
        b.count = 3;
        let saved = Saved {
            run: "r1".into(),
            members: ["10.0.0.2:8080", "10.0.0.3:8080"].iter().map(|s| s.to_string()).collect(),
            steps: vec![vec!["start".into(), "  more".into()], vec!["scale-up 2 → 3".into()]],
            sessions: vec![a, b],
        };
        let back: Saved = state::decode(&state::encode(&saved).unwrap()).unwrap();
        assert_eq!((back.run.as_str(), &back.members, &back.steps), ("r1", &saved.members, &saved.steps));
        assert_eq!(back.sessions.len(), 2);
        let (a, b) = (&back.sessions[0], &back.sessions[1]);
        assert!(a.cookie && !b.cookie);
        assert_eq!((a.jar.srv.as_deref(), a.jar.app.as_deref(), a.count), (Some("abc"), Some("def"), 7));
        assert_eq!((a.total, a.now_on.as_deref()), (9, None));
        assert_eq!(a.seen, saved.sessions[0].seen);
        assert_eq!(
            (b.key.as_str(), b.jar.srv.as_deref(), b.owner.as_str()),
            ("r1-scale-u1", None, "10.0.0.3:8080")
        );
        assert!(b.seen.is_empty());
        assert!(state::decode::<Saved>("# session-router e2e scale state, run r\n1\tcookie\n").is_err());
        assert!(state::decode::<Saved>("").is_err());
    }
}
