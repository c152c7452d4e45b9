//! The routing decision: sticky cookie, else the first source with a key, else a new session.
//! Pure: the request is read through [`RequestView`], time and randomness are passed in.

use std::borrow::Cow;

use crate::bounded::{self, BoundedLoad, Loads};
use crate::config::{Config, MAX_KEY_BYTES, Source};
use crate::murmur3::{hash64, murmur3_x64_128};
use crate::sticky::{self, Claims, Policy, Rejection, Verified};
use crate::{cookie, jwt, query};

/// At most this many sticky cookies of our name are tried per request.
const MAX_STICKY_CANDIDATES: usize = 4;
/// A sliding cookie is re-issued once this fraction (1/N) of the idle timeout has passed.
const REFRESH_FRACTION: u64 = 4;

/// What the router reads of a request. Header names are lowercase, as Envoy stores them.
pub trait RequestView {
    /// Every value of header `name`, in order (a header may repeat).
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
    /// The downstream client address, `ip:port` or `[ip6]:port`.
    fn source_address(&self) -> Option<String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A valid sticky cookie named a host that can serve.
    Pinned,
    /// A valid sticky cookie named a host that cannot serve; moved to its ring successor.
    Failover,
    /// Source `sources[i]` yielded the key.
    Hashed(usize),
    /// No key: a fresh random session id picked the host.
    New,
}

/// Bad input seen while deciding; each was treated as absent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejections {
    pub cookie: Option<Rejection>,
    pub jwt: Option<jwt::JwtError>,
    /// Other sources' bad input: conflicting duplicates, bad percent-encoding, oversized keys.
    pub other: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index into `Config::hosts`.
    pub host: usize,
    pub kind: Kind,
    /// Where on the ring the session sits (hash of its key or id).
    pub point: u64,
    /// `Set-Cookie` value to send back, when a sticky cookie must be issued or refreshed.
    pub set_cookie: Option<String>,
    pub rejected: Rejections,
    /// Bounded load moved this new binding past its first choice, which was over the bound.
    pub spilled_from: Option<usize>,
}

/// Which hosts may take traffic (see `health::Table::down_hosts`).
pub trait Health {
    /// May serve requests at all (pinned sessions included).
    fn is_up(&self, host: usize) -> bool;
}

/// Every host up: no health checking configured, or nothing known to be wrong.
pub struct AllUp;

impl Health for AllUp {
    fn is_up(&self, _host: usize) -> bool {
        true
    }
}

/// One flag per host (by index): `true` means down.
impl Health for [bool] {
    fn is_up(&self, host: usize) -> bool {
        !self.get(host).copied().unwrap_or(false)
    }
}

/// May take new sessions: up and not draining.
fn takes_new(cfg: &Config, health: &(impl Health + ?Sized), host: usize) -> bool {
    health.is_up(host) && cfg.hosts.get(host).is_some_and(|h| !h.drain)
}

/// Routes one request. `now` is Unix seconds; `random_id` yields 128 fresh random bits.
/// Bounded load, if configured, sees no load: see [`decide_with_load`].
pub fn decide(
    cfg: &Config,
    req: &impl RequestView,
    health: &(impl Health + ?Sized),
    now: u64,
    random_id: &mut dyn FnMut() -> [u8; 16],
) -> Decision {
    decide_with_load(cfg, req, health, &[] as &[u64], now, random_id)
}

/// [`decide`], with each host's requests in flight for `bounded_load`: a decision that creates a
/// binding (a new session; a hashed key when a sticky cookie will pin it) skips hosts over the
/// bound, in the key's preference order. A valid sticky cookie is never moved for load.
pub fn decide_with_load(
    cfg: &Config,
    req: &impl RequestView,
    health: &(impl Health + ?Sized),
    loads: &(impl Loads + ?Sized),
    now: u64,
    random_id: &mut dyn FnMut() -> [u8; 16],
) -> Decision {
    let mut rejected = Rejections::default();
    let takes_new = |h: usize| takes_new(cfg, health, h);

    if let Some((claims, verified)) = pinned_claims(cfg, req, now, &mut rejected) {
        // The tag is resolved under the key that verified the cookie (rotation).
        let pinned = cfg.host_by_tag_under(verified.key, claims.host);
        if let Some(host) = pinned.filter(|&h| health.is_up(h)) {
            // Verified by an older key (or form): re-signed with the signing key right away.
            let resign = verified.needs_resigning() || needs_refresh(cfg, &claims, now);
            let set_cookie = resign.then(|| issue(cfg, claims, host, now)).flatten();
            return Decision {
                host,
                kind: Kind::Pinned,
                point: claims.point,
                set_cookie,
                rejected,
                spilled_from: None,
            };
        }
        // The pinned host is down or no longer a member: move to the ring successor of the
        // session's point and re-pin there, so the session does not bounce back when the old
        // host returns, and every replica picks the same successor.
        match cfg.placement.first_eligible(claims.point, takes_new) {
            Some(next) => {
                let set_cookie = issue(cfg, claims, next, now);
                return Decision {
                    host: next,
                    kind: Kind::Failover,
                    point: claims.point,
                    set_cookie,
                    rejected,
                    spilled_from: None,
                };
            }
            // Nowhere to go: stay (Envoy answers 503) and issue nothing.
            None => {
                let host = pinned.unwrap_or_else(|| cfg.placement.owner(claims.point));
                return Decision {
                    host,
                    kind: Kind::Pinned,
                    point: claims.point,
                    set_cookie: None,
                    rejected,
                    spilled_from: None,
                };
            }
        }
    }

    let (point, session_id, kind) = match session_key(cfg, req, now, &mut rejected) {
        Some((i, key)) => {
            // The ring point stays murmur3(key); the cookie's session id is keyed (HMAC), so a
            // leaked cookie does not reveal the key (a client IP, a user id) offline.
            let (h1, _) = murmur3_x64_128(&key, 0);
            let id = cfg.sticky.as_ref().map_or([0; 16], |s| s.key.session_id(&key));
            (h1, id, Kind::Hashed(i))
        }
        None => {
            let id = random_id();
            (hash64(&id), id, Kind::New)
        }
    };
    let binds = kind == Kind::New || cfg.sticky.is_some();
    let steer = cfg.bounded_load.filter(|b| binds || b.spill_unpinned_keys);
    let (first, spilled_from) = match steer {
        Some(b) => match bounded_choice(cfg, &b, point, &takes_new, loads) {
            Some(p) => (Some(p.host), p.spilled_from),
            None => (None, None),
        },
        None => (cfg.placement.first_eligible(point, takes_new), None),
    };
    let Some(host) = first else {
        // No host can take the session (all down or draining): route by the placement so Envoy
        // answers, but pin nothing.
        return Decision {
            host: cfg.placement.owner(point),
            kind,
            point,
            set_cookie: None,
            rejected,
            spilled_from: None,
        };
    };
    let set_cookie = cfg.sticky.as_ref().and_then(|s| {
        let claims = Claims {
            session_id,
            point,
            host: [0; 8],
            expires_at: now.saturating_add(s.ttl_seconds),
            refreshed_at: now,
        };
        issue(cfg, claims, host, now)
    });
    Decision { host, kind, point, set_cookie, rejected, spilled_from }
}

/// The first host in the key's preference order (owner, then distinct successors) that takes new
/// sessions and has room under the bound. O(hosts): only decisions that create a binding pay it.
fn bounded_choice(
    cfg: &Config,
    b: &BoundedLoad,
    point: u64,
    takes_new: &impl Fn(usize) -> bool,
    loads: &(impl Loads + ?Sized),
) -> Option<bounded::Placed> {
    let (mut total, mut total_weight) = (0u64, 0u64);
    for (i, h) in cfg.hosts.iter().enumerate().filter(|&(i, _)| takes_new(i)) {
        total = total.saturating_add(loads.load(i));
        total_weight += u64::from(h.weight);
    }
    let weight = |h: usize| cfg.hosts.get(h).map_or(1, |h| u64::from(h.weight));
    bounded::place(b, cfg.placement.walk(point).filter(|&h| takes_new(h)), loads, total, total_weight, weight)
}

/// The `target.header` value: the chosen host, then up to `fallbacks` further distinct hosts
/// clockwise from the session's point that can take it.
/// Borrowed from the config, without an allocation, when there are no fallbacks.
pub fn target_value<'a>(cfg: &'a Config, d: &Decision, health: &(impl Health + ?Sized)) -> Cow<'a, str> {
    let first = cfg.hosts.get(d.host).map_or("", |h| h.header_value.as_str());
    if cfg.target.fallbacks == 0 {
        return Cow::Borrowed(first);
    }
    let mut value = first.to_owned();
    let fallbacks = cfg.placement.walk(d.point).filter(|&h| h != d.host && takes_new(cfg, health, h));
    for h in fallbacks.take(cfg.target.fallbacks as usize).filter_map(|h| cfg.hosts.get(h)) {
        value.push(',');
        value.push_str(&h.header_value);
    }
    Cow::Owned(value)
}

/// The first sticky cookie of our name that verifies under any key (the signing key first),
/// recording why others were rejected. It may name a host that is no longer configured: the
/// caller moves that session on.
fn pinned_claims(
    cfg: &Config,
    req: &impl RequestView,
    now: u64,
    rejected: &mut Rejections,
) -> Option<(Claims, Verified)> {
    let sticky = cfg.sticky.as_ref()?;
    let policy =
        Policy { ttl_seconds: sticky.ttl_seconds, idle_timeout_seconds: sticky.idle_timeout_seconds };
    for value in cookie::values(req.header_values("cookie"), &sticky.name).take(MAX_STICKY_CANDIDATES) {
        match sticky.verified.verify(value, policy, now) {
            Ok(found) => return Some(found),
            Err(why) => rejected.cookie = Some(why),
        }
    }
    None
}

fn needs_refresh(cfg: &Config, claims: &Claims, now: u64) -> bool {
    let idle = cfg.sticky.as_ref().and_then(|s| s.idle_timeout_seconds);
    idle.is_some_and(|idle| now.saturating_sub(claims.refreshed_at) >= idle / REFRESH_FRACTION)
}

/// Signs `claims` for `host`, keeping its session id, point and absolute expiry.
fn issue(cfg: &Config, mut claims: Claims, host: usize, now: u64) -> Option<String> {
    let sticky = cfg.sticky.as_ref()?;
    claims.host = cfg.hosts.get(host)?.tag?;
    claims.refreshed_at = now;
    let max_age = claims.expires_at.saturating_sub(now);
    Some(cookie::set_cookie(sticky, &sticky::encode(&sticky.key, &claims), max_age))
}

/// The first source, in config order, that yields a usable key.
fn session_key(
    cfg: &Config,
    req: &impl RequestView,
    now: u64,
    rejected: &mut Rejections,
) -> Option<(usize, Vec<u8>)> {
    cfg.sources.iter().enumerate().find_map(|(i, source)| {
        let key = match source {
            Source::Cookie { name } => unanimous(cookie::values(req.header_values("cookie"), name), rejected),
            Source::Header { name } => unanimous(req.header_values(name).map(<[u8]>::trim_ascii), rejected),
            Source::Query { name } => {
                match req.header_values(":path").next().map(|p| query::param(p, name)) {
                    Some(query::QueryValue::Found(v)) => Some(v),
                    Some(query::QueryValue::Malformed) => {
                        rejected.other += 1;
                        None
                    }
                    _ => None,
                }
            }
            Source::Jwt { header, prefix, claim, leeway_seconds } => {
                let token = req.header_values(header).find_map(|v| jwt::token(v, prefix))?;
                match jwt::claim_with_leeway(token, claim, now, *leeway_seconds) {
                    Ok(sub) => Some(sub.into_bytes()),
                    Err(e) => {
                        rejected.jwt = Some(e);
                        None
                    }
                }
            }
            Source::SourceIp => req.source_address().and_then(|a| client_ip(&a)).map(String::into_bytes),
        }?;
        if key.is_empty() {
            return None;
        }
        if key.len() > MAX_KEY_BYTES {
            rejected.other += 1;
            return None;
        }
        Some((i, key))
    })
}

/// All occurrences agree (or there is one): that value; conflicting duplicates are bad input.
fn unanimous<'a>(mut values: impl Iterator<Item = &'a [u8]>, rejected: &mut Rejections) -> Option<Vec<u8>> {
    let first = values.next()?;
    if values.any(|v| v != first) {
        rejected.other += 1;
        return None;
    }
    Some(first.to_vec())
}

/// The client IP of `ip:port`, `[ip6]:port`, or a bare IP, in canonical text form.
pub fn client_ip(address: &str) -> Option<String> {
    if let Ok(sa) = address.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_string());
    }
    address.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}
