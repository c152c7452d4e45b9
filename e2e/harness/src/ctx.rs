//! One run of the driver: its settings, its tallies and failures, and one request through Envoy
//! with the checks that hold for every answer.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::http::{Client, Response};

pub const TIMEOUT: Duration = Duration::from_secs(20);
pub const TARGET_HEADER: &str = "x-gateway-destination-endpoint";
pub const STICKY: &str = "srv";
pub const APP_COOKIE: &str = "app_session";
const MAX_PRINTED_FAILURES: u64 = 25;

/// A header pair.
pub fn h(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The decision the filter must take for a request, known from what the driver puts in it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Expect {
    /// No valid sticky cookie and no key: `decision.new`.
    New,
    /// A key from `sources`: `decision.hashed`.
    Hashed,
    /// A valid sticky cookie: `decision.pinned`, or `decision.failover` when its host is down.
    Pinned,
}

#[derive(Default)]
pub struct Tally {
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

/// A snapshot of the tally.
#[derive(Clone, Copy, Default, Debug)]
pub struct TallyNow {
    pub sent: u64,
    pub not_ok: u64,
    pub io_errors: u64,
    pub new: u64,
    pub hashed: u64,
    pub pinned: u64,
    pub bad_cookie: u64,
    pub srv_issued: u64,
    pub srv_on_pinned: u64,
}

impl Tally {
    pub fn now(&self) -> TallyNow {
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

impl TallyNow {
    /// Requests since `earlier` that did not answer 200 or did not answer at all.
    pub fn failed_since(&self, earlier: &TallyNow) -> u64 {
        (self.not_ok - earlier.not_ok) + (self.io_errors - earlier.io_errors)
    }
}

/// One request's answer, as the backend described it.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub status: u16,
    pub backend: String,
    pub address: String,
    pub count: u64,
    pub new_session: bool,
    pub target: String,
    pub srv: Option<String>,
    pub srv_line: Option<String>,
    pub app: Option<String>,
}

/// The cookies a browser keeps: the filter's sticky cookie and the application's own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Jar {
    pub srv: Option<String>,
    pub app: Option<String>,
}

impl Jar {
    /// The `cookie` header the browser sends, if it has any cookie.
    pub fn header(&self) -> Option<(String, String)> {
        let cookies: Vec<String> = [(STICKY, &self.srv), (APP_COOKIE, &self.app)]
            .into_iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
            .collect();
        (!cookies.is_empty()).then(|| h("cookie", cookies.join("; ")))
    }

    /// The browser's request and the decision it must cause: pinned once it has a sticky cookie.
    pub fn request(&self) -> (Vec<(String, String)>, Expect) {
        let expect = if self.srv.is_some() { Expect::Pinned } else { Expect::New };
        (self.header().into_iter().collect(), expect)
    }

    /// Keeps the cookies an answer sets.
    pub fn keep(&mut self, seen: &Seen) {
        if seen.srv.is_some() {
            self.srv.clone_from(&seen.srv);
        }
        if seen.app.is_some() {
            self.app.clone_from(&seen.app);
        }
    }
}

pub struct Ctx {
    pub env: Env,
    /// A random tag of this run, in every key it sends.
    pub run: String,
    pub tally: Tally,
    pub failures: AtomicU64,
    /// Addresses the target header may name.
    pub configured: HashSet<String>,
    /// Addresses of backends stopped by the runner.
    pub down: HashSet<String>,
    log: Mutex<()>,
}

impl Ctx {
    pub fn new(env: Env) -> Ctx {
        let run = format!("{:08x}", RandomState::new().hash_one(unix_now()) as u32);
        let configured = env.backends.iter().map(|(_, a)| a.clone()).collect();
        Ctx {
            env,
            run,
            tally: Tally::default(),
            failures: AtomicU64::new(0),
            configured,
            down: HashSet::new(),
            log: Mutex::new(()),
        }
    }

    pub fn fail(&self, msg: impl AsRef<str>) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n <= MAX_PRINTED_FAILURES {
            let _guard = self.log.lock();
            println!("FAIL {}", msg.as_ref());
        } else if n == MAX_PRINTED_FAILURES + 1 {
            println!("FAIL … (further failures counted, not printed)");
        }
    }

    pub fn check(&self, ok: bool, what: &str, detail: impl AsRef<str>) -> bool {
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
    pub fn send(
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

    /// A session's request to `/`: the answer when it is a 200, else a failure named after `who`.
    pub fn answer(
        &self,
        client: &mut Client,
        headers: &[(String, String)],
        expect: Expect,
        who: impl Fn() -> String,
    ) -> Option<Seen> {
        match self.send(client, "/", headers, expect, false) {
            Ok(seen) if seen.status == 200 => Some(seen),
            Ok(seen) => {
                self.fail(format!("{}: HTTP {} from {:?}", who(), seen.status, seen.backend));
                None
            }
            Err(e) => {
                self.fail(format!("{}: {e}", who()));
                None
            }
        }
    }

    fn read(&self, response: &Response) -> Seen {
        let body = response.json().unwrap_or_default();
        let text = |key: &str| body[key].as_str().unwrap_or("").to_string();
        let mut seen = Seen {
            status: response.status,
            backend: text("backend"),
            address: text("address"),
            count: body["count"].as_u64().unwrap_or(0),
            new_session: body["new_session"].as_bool().unwrap_or(false),
            target: text("target_header"),
            srv: response.set_cookie(STICKY),
            srv_line: response.set_cookie_line(STICKY).map(str::to_string),
            app: response.set_cookie(APP_COOKIE),
        };
        if response.status == 200 && body["target_header_copies"].as_u64() != Some(1) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jar_sends_what_it_kept() {
        let mut jar = Jar::default();
        assert_eq!(jar.request(), (vec![], Expect::New));
        jar.keep(&Seen { app: Some("a1".into()), ..Seen::default() });
        assert_eq!(jar.request(), (vec![h("cookie", "app_session=a1")], Expect::New));
        jar.keep(&Seen { srv: Some("s1".into()), ..Seen::default() });
        assert_eq!(jar.request(), (vec![h("cookie", "srv=s1; app_session=a1")], Expect::Pinned));
    }
}
