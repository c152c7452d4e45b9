//! The bounded-load scenario's sessions: a new one's first request (where it lands is the binding
//! under test), then more with its cookie, which must land on the same host.

use std::time::Duration;

use crate::ctx::{Ctx, Expect, Jar, h};
use crate::drive::{Numbered, paced};
use crate::http::Client;

#[derive(Clone, Debug, Default)]
pub(super) struct Session {
    pub id: usize,
    /// `x-user-id` of an API client; `None` for a browser.
    pub user: Option<String>,
    pub jar: Jar,
    /// Where its first request landed.
    pub home: String,
    pub count: u64,
    /// Requests answered by another host than `home`.
    pub moved: u64,
    /// Requests whose counter was not the previous one plus one.
    pub lost: u64,
    /// Requests that did not answer 200.
    pub failed: u64,
}

impl Numbered for Session {
    fn id(&self) -> usize {
        self.id
    }
}

impl Session {
    pub fn new(ctx: &Ctx, id: usize, api: bool) -> Session {
        let user = api.then(|| format!("{}-bl-user{id}", ctx.run));
        Session { id, user, ..Session::default() }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = self.jar.header().into_iter().collect();
        if let Some(u) = &self.user {
            headers.push(h("x-user-id", u));
        }
        headers
    }
}

/// The first request of a new session: where it lands is the binding under test.
fn start(ctx: &Ctx, client: &mut Client, s: &mut Session) {
    let expect = if s.user.is_some() { Expect::Hashed } else { Expect::New };
    let Some(seen) = ctx.answer(client, &s.headers(), expect, || format!("new session {}", s.id)) else {
        s.failed += 1;
        return;
    };
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
    s.jar.keep(&seen);
    s.home = seen.backend;
    s.count = seen.count;
}

/// One more request with the session's cookie: it must land on `home` with the next count.
pub(super) fn again(ctx: &Ctx, client: &mut Client, s: &mut Session, when: &str) {
    if s.jar.srv.is_none() {
        return;
    }
    let Some(seen) = ctx.answer(client, &s.headers(), Expect::Pinned, || format!("session {} {when}", s.id))
    else {
        s.failed += 1;
        return;
    };
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
    s.jar.keep(&seen);
    s.count = seen.count;
}

/// New sessions: their first request, then two more with the cookie they got.
pub(super) fn arrive(
    ctx: &Ctx,
    sessions: Vec<Session>,
    threads: usize,
    pace: Duration,
    when: &str,
) -> Vec<Session> {
    paced(ctx, sessions, threads, pace, &|client, s| {
        start(ctx, client, s);
        for _ in 0..2 {
            again(ctx, client, s, when);
        }
    })
}

/// Every session once more with its cookie.
pub(super) fn once_more(ctx: &Ctx, sessions: Vec<Session>, threads: usize) -> Vec<Session> {
    paced(ctx, sessions, threads, Duration::ZERO, &|client, s| again(ctx, client, s, "at the end"))
}

/// `n` new sessions from `first_id`, every other one an API client.
pub(super) fn batch(ctx: &Ctx, first_id: usize, n: usize) -> Vec<Session> {
    (first_id..first_id + n).map(|id| Session::new(ctx, id, id % 2 == 1)).collect()
}
