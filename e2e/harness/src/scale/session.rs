//! The scaling scenario's sessions, and one request of one with every check that holds for it
//! after a membership change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::membership::Members;
use crate::ctx::{APP_COOKIE, Ctx, Expect, Jar, STICKY, h};
use crate::drive::{self, Numbered};
use crate::http::Client;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Session {
    pub id: usize,
    /// A browser keeping the sticky cookie (and `app_session`); else an API client hashed by
    /// `x-user-id`, keeping no cookie.
    pub cookie: bool,
    pub key: String,
    pub jar: Jar,
    /// The backend (ip:port) that served it at the end of the last step.
    pub owner: String,
    pub count: u64,
    /// Requests the session made (answered), all steps: what the counter is with its state intact.
    pub total: u64,
    /// With in-memory state: the last count each backend gave this session.
    pub seen: BTreeMap<String, u64>,
    /// During a step: where it is served, how often the counter did not continue, sticky
    /// cookies received.
    #[serde(skip)]
    pub now_on: Option<String>,
    #[serde(skip)]
    pub lost: u64,
    #[serde(skip)]
    pub reissued: u64,
}

impl Numbered for Session {
    fn id(&self) -> usize {
        self.id
    }
}

impl Session {
    pub fn new(run: &str, id: usize) -> Session {
        let cookie = id.is_multiple_of(2);
        let key = if cookie { String::new() } else { format!("{run}-scale-u{id}") };
        Session { id, cookie, key, ..Session::default() }
    }

    fn request(&self) -> (Vec<(String, String)>, Expect) {
        if self.cookie { self.jar.request() } else { (vec![h("x-user-id", &self.key)], Expect::Hashed) }
    }

    fn kind(&self) -> &'static str {
        if self.cookie { "cookie" } else { "hashed" }
    }

    /// Where the last step served it becomes its owner.
    pub fn settle(&mut self) {
        if let Some(host) = self.now_on.take() {
            self.owner = host;
        }
    }
}

/// The membership change a step checks against (`None`: the first step, nothing changed).
pub(super) struct Change<'a> {
    pub remaining: &'a Members,
    pub added: &'a Members,
    pub now: &'a Members,
}

impl Change<'_> {
    /// Why `s` may not be answered from `host`, if it may not.
    fn forbids(&self, s: &Session, host: &str) -> Option<&'static str> {
        if !self.remaining.contains(&s.owner) {
            return (!self.now.contains(host))
                .then_some("its host was removed, it must move to a current member");
        }
        if host == s.owner || (!s.cookie && self.added.contains(host)) {
            None
        } else if s.cookie {
            Some("its host remains, a session with the sticky cookie must stay")
        } else {
            Some("its host remains, a hashed session may only move to an added host")
        }
    }
}

/// Sends every session `rounds` requests, interleaved, over THREADS keep-alive connections.
pub(super) fn drive(
    ctx: &Ctx,
    sessions: Vec<Session>,
    rounds: usize,
    change: Option<&Change>,
) -> Vec<Session> {
    let sessions =
        sessions.into_iter().map(|s| Session { now_on: None, lost: 0, reissued: 0, ..s }).collect();
    drive::rounds(ctx, sessions, rounds, &|client, s, round| step(ctx, client, s, round, change))
}

fn step(ctx: &Ctx, client: &mut Client, s: &mut Session, round: usize, change: Option<&Change>) {
    let (headers, expect) = s.request();
    let Some(seen) = ctx.answer(client, &headers, expect, || format!("session {} ({})", s.id, s.kind()))
    else {
        return;
    };
    let host = seen.address.clone();
    if s.cookie {
        if expect == Expect::New && (seen.srv.is_none() || seen.app.is_none()) {
            ctx.fail(format!("session {}: a new visitor got no {STICKY} or {APP_COOKIE} cookie", s.id));
        }
        if expect == Expect::Pinned && seen.srv.is_some() {
            s.reissued += 1;
        }
        s.jar.keep(&seen);
    }
    match (&s.now_on, change) {
        (None, None) if round == 0 => s.now_on = Some(host.clone()),
        (None, Some(c)) => {
            if let Some(why) = c.forbids(s, &host) {
                ctx.fail(format!("session {} ({}) went from {} to {host}: {why}", s.id, s.kind(), s.owner));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_allows_only_the_rings_minimal_movement() {
        let set = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Members>();
        let (remaining, added, now) = (set(&["a", "b"]), set(&["c"]), set(&["a", "b", "c"]));
        let change = Change { remaining: &remaining, added: &added, now: &now };
        let on = |cookie: bool, owner: &str| Session { cookie, owner: owner.into(), ..Session::default() };
        assert_eq!(change.forbids(&on(true, "a"), "a"), None);
        assert!(change.forbids(&on(true, "a"), "c").is_some());
        assert_eq!(change.forbids(&on(false, "a"), "c"), None);
        assert!(change.forbids(&on(false, "a"), "b").is_some());
        assert_eq!(change.forbids(&on(true, "gone"), "b"), None);
        assert!(change.forbids(&on(false, "gone"), "elsewhere").is_some());
    }
}
