//! The failover scenario (`docker-compose.yml`: fixed backend-1..3).
//!
//!   e2e before   the single-request checks ([`crate::probes`]), then SESSIONS sessions ×
//!                REQUESTS requests; writes the sessions to $STATE_FILE
//!   e2e after    (after the runner has `docker stop`ped $VICTIM) every session goes on:
//!                only the victim's sessions move; prints the figures of both phases
//!   e2e check    `before` without the state file (what `docker compose up` runs)

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::ctx::{APP_COOKIE, Ctx, Expect, Jar, STICKY, Seen, h, unix_now};
use crate::drive::{self, Numbered, count, show};
use crate::http::{self, Client};
use crate::jwt::make_jwt;
use crate::observe::{
    check_backend_requests, check_counters, delta, requests_by_backend, scrape, wait_ready,
};
use crate::{probes, state};

#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    id: usize,
    kind: Kind,
    /// User id, JWT `sub` or JSESSIONID value; empty for `Cookie`.
    key: String,
    jar: Jar,
    /// The backend that served it before the stop.
    owner: String,
    count: u64,
    /// Requests whose counter was not the previous one plus one.
    lost: u64,
    /// After the stop: where a victim's session went.
    #[serde(skip)]
    moved_to: Option<String>,
}

impl Numbered for Session {
    fn id(&self) -> usize {
        self.id
    }
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
            jar: Jar::default(),
            owner: String::new(),
            count: 0,
            lost: 0,
            moved_to: None,
        }
    }

    fn request(&self, exp: u64) -> (Vec<(String, String)>, Expect) {
        match self.kind {
            Kind::Cookie => self.jar.request(),
            Kind::Header => (vec![h("x-user-id", &self.key)], Expect::Hashed),
            Kind::Jwt => {
                (vec![h("authorization", format!("Bearer {}", make_jwt(&self.key, exp)))], Expect::Hashed)
            }
            Kind::JSession => (vec![h("cookie", format!("JSESSIONID={}", self.key))], Expect::Hashed),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Before,
    After,
}

/// Drives every session `rounds` times, interleaved, from THREADS keep-alive connections.
fn drive(ctx: &Ctx, sessions: Vec<Session>, rounds: usize, phase: Phase) -> Vec<Session> {
    let exp = unix_now() + 86_400;
    drive::rounds(ctx, sessions, rounds, &|client, s, round| step(ctx, client, s, round, phase, exp))
}

fn step(ctx: &Ctx, client: &mut Client, s: &mut Session, round: usize, phase: Phase, exp: u64) {
    let (headers, expect) = s.request(exp);
    let Some(seen) = ctx.answer(client, &headers, expect, || format!("session {} ({})", s.id, s.kind.name()))
    else {
        return;
    };
    if s.kind == Kind::Cookie {
        if expect == Expect::New && (seen.srv.is_none() || seen.app.is_none()) {
            ctx.fail(format!("session {}: a new visitor got no {STICKY} or {APP_COOKIE} cookie", s.id));
        }
        s.jar.keep(&seen);
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
        Phase::After => moves(ctx, s, &seen, expected),
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

/// A session of the stopped victim: it must move to one successor, for good.
fn moves(ctx: &Ctx, s: &mut Session, seen: &Seen, expected: u64) {
    let victim = &ctx.env.victim;
    if seen.backend == *victim || seen.backend.is_empty() {
        ctx.fail(format!("session {} served by {:?} after {victim} was stopped", s.id, seen.backend));
    }
    match &s.moved_to {
        None => s.moved_to = Some(seen.backend.clone()),
        Some(first) if *first != seen.backend => {
            ctx.fail(format!("session {} of {victim} moved to {first}, then to {}", s.id, seen.backend));
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

/// The `before` phase's figures, printed by `after`.
#[derive(Serialize, Deserialize)]
struct Figures {
    requests: u64,
    seconds: f64,
    lost: u64,
    failed: u64,
    per_backend: String,
}

/// What `before` hands to `after`.
#[derive(Serialize, Deserialize)]
struct Saved {
    run: String,
    before: Figures,
    sessions: Vec<Session>,
}

fn per_backend<'a>(sessions: &'a [Session], of: impl Fn(&'a Session) -> Option<&'a str>) -> String {
    show(&count(sessions.iter().filter_map(of)))
}

/// `e2e before` (`write_state`) and `e2e check`.
pub fn before(ctx: &Ctx, write_state: bool) -> Result<(), String> {
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
    let mut client = Client::new(&ctx.env.envoy, crate::ctx::TIMEOUT);
    probes::check_sources(ctx, &mut client)?;
    let pinned = probes::check_sticky_cookie(ctx, &mut client)?;
    probes::check_forged_target(ctx, &mut client, pinned.as_deref())?;
    probes::check_app_error_is_not_a_host_failure(ctx, &mut client)?;
    drop(client);

    let sessions: Vec<Session> = (0..ctx.env.sessions).map(|i| Session::new(&ctx.run, i)).collect();
    let tb = ctx.tally.now();
    let started = Instant::now();
    let sessions = drive(ctx, sessions, ctx.env.requests, Phase::Before);
    let elapsed = started.elapsed();
    let tb1 = ctx.tally.now();
    let requests = tb1.sent - tb.sent;
    let lost: u64 = sessions.iter().map(|s| s.lost).sum();
    let failed = tb1.failed_since(&tb);
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
    let owners = per_backend(&sessions, |s| Some(s.owner.as_str()));
    println!("     sessions per backend: {owners}");
    let c1 = scrape(ctx)?;
    let t1 = ctx.tally.now();
    check_counters(ctx, "before", &c0, &c1, t0, t1, &|e| e == 0);
    check_backend_requests(ctx, "before", &r0, t1.sent - t0.sent);
    if write_state {
        let figures = Figures { requests, seconds: elapsed.as_secs_f64(), lost, failed, per_backend: owners };
        state::save(&ctx.env.state_file, &Saved { run: ctx.run.clone(), before: figures, sessions })?;
        println!("     state of {} sessions saved to {}", ctx.env.sessions, ctx.env.state_file);
    }
    Ok(())
}

/// `e2e after`: every session goes on after the runner stopped $VICTIM.
pub fn after(ctx: &mut Ctx) -> Result<(), String> {
    let saved: Saved = state::load(&ctx.env.state_file, "e2e before")?;
    ctx.run = saved.run;
    let victim = ctx.env.victim.clone();
    let victim_addr = ctx.env.backend_addr(&victim).unwrap_or_default().to_string();
    ctx.down.insert(victim_addr.clone());
    println!("== e2e after {victim} was stopped (state {}, run {}) ==", ctx.env.state, ctx.run);
    let ctx = &*ctx;
    if !wait_ready(ctx, Some(&victim)) {
        return Err("stack not ready".into());
    }
    let down = http::get(&victim_addr, "/healthz", std::time::Duration::from_secs(2));
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
    let sessions = drive(ctx, saved.sessions, ctx.env.requests_after, Phase::After);
    let elapsed = started.elapsed();
    let t1 = ctx.tally.now();
    let requests = t1.sent - t0.sent;
    let failed = t1.failed_since(&t0);
    let (moved, stayed): (Vec<&Session>, Vec<&Session>) = sessions.iter().partition(|s| s.owner == victim);
    let stayed_lost = stayed.iter().filter(|s| s.lost > 0).count();
    let moved_lost = moved.iter().filter(|s| s.lost > 0).count();
    let moved_ok = moved.iter().all(|s| s.moved_to.as_deref().is_some_and(|b| b != victim));
    let stayed_ok = stayed.iter().all(|s| s.moved_to.is_none());
    let moved_to = per_backend(&sessions, |s| s.moved_to.as_deref());
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
        format!("{} moved: {moved_to}", moved.len()),
    );
    let memory = ctx.env.state == "memory";
    ctx.check(
        if memory { moved_lost == moved.len() } else { moved_lost == 0 },
        if memory {
            "moved sessions lose their in-memory state (the new host never saw them)"
        } else {
            "moved sessions keep their state (Redis)"
        },
        format!("{moved_lost} of {} moved sessions lost state", moved.len()),
    );
    let c1 = scrape(ctx)?;
    check_counters(ctx, "after", &c0, &c1, t0, t1, &|e| e >= 1);
    check_backend_requests(ctx, "after", &r0, t1.sent - t0.sent);

    let b = &saved.before;
    println!();
    println!("== figures (state {}) ==", ctx.env.state);
    println!(
        "sessions:                 {} ({} per kind: cookie, header, jwt, jsessionid)",
        sessions.len(),
        sessions.len() / 4
    );
    println!(
        "before the stop:          {} requests ({} per session) in {:.1}s, failed {}, lost state {}, sessions moved 0",
        b.requests, ctx.env.requests, b.seconds, b.failed, b.lost
    );
    println!("sessions per backend:     {}", b.per_backend);
    println!(
        "after `docker stop {victim}`: {requests} requests ({} per session) in {:.1}s, failed {failed}",
        ctx.env.requests_after,
        elapsed.as_secs_f64()
    );
    println!("  sessions moved:         {} (all of {victim}'s; to {moved_to})", moved.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_state_round_trips() {
        let mut a = Session::new("r1", 0);
        a.jar = Jar { srv: Some("abc".into()), app: Some("def".into()) };
        a.owner = "backend-2".into();
        a.count = 20;
        a.moved_to = Some("backend-1".into());
        let b = Session::new("r1", 3);
        let figures =
            Figures { requests: 9, seconds: 1.5, lost: 0, failed: 0, per_backend: "backend-2 1".into() };
        let saved = Saved { run: "r1".into(), before: figures, sessions: vec![a, b] };
        let back: Saved = state::decode(&state::encode(&saved).unwrap()).unwrap();
        assert_eq!((back.run.as_str(), back.before.per_backend.as_str()), ("r1", "backend-2 1"));
        let (a, b) = (&back.sessions[0], &back.sessions[1]);
        assert_eq!(
            (a.kind, a.jar.srv.as_deref(), a.jar.app.as_deref()),
            (Kind::Cookie, Some("abc"), Some("def"))
        );
        assert_eq!((a.owner.as_str(), a.count, a.moved_to.as_deref()), ("backend-2", 20, None));
        assert_eq!((b.kind, b.key.as_str()), (Kind::JSession, "r1-js3"));
        assert!(state::decode::<Saved>("# session-router e2e state, run r\n").is_err());
    }
}
