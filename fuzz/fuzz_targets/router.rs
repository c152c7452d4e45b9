//! `router::decide` + `router::target_value`: the whole routing decision on arbitrary header
//! sets, against the example config and variants (idle timeout, drain, IPv6, base64, no
//! sticky cookie, 16 fallbacks; see `ROUTER_CONFIGS`), with arbitrary hosts down.
//!
//! Raw input: an HTTP/1-style header block, one `name: value` per line (names are lowercased
//! as Envoy stores them; a name may repeat). Pseudo-headers: `@config: <n>` picks the config,
//! `@source: <ip:port>` the client address, `@down: <i>,<j>` the hosts that are down,
//! `@now: <unix seconds>` the clock.
//!
//! Structured input: arbitrary headers from a vocabulary that reaches every source, plus
//! optionally a validly signed sticky cookie for a configured, removed or unknown host.
//!
//! Checks: the chosen host exists; it is up whenever some host can take sessions, and not
//! draining unless pinned there; the decision is deterministic and ignores any client copy of
//! `target.header`; an issued cookie verifies now, names the chosen host and carries the
//! session's point; the target header lists the chosen host first, then distinct hosts that
//! are up and not draining, at most `fallbacks` of them.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::config::Config;
use session_router::router::{Decision, Kind, decide, target_value};
use session_router::sticky::{self, Claims, Policy};
use session_router_fuzz::{NOW, ROUTER_CONFIGS, Req, SourceAddress, dispatch, ids, router_config};

#[derive(Arbitrary, Debug)]
enum Name {
    Cookie,
    Authorization,
    XToken,
    XUserId,
    Path,
    Target,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Pinned {
    /// Index of the host the cookie names; past the end: a host that is not configured.
    host: u8,
    session_id: [u8; 16],
    point: u64,
    expires_in: i16,
    refreshed_ago: i16,
    /// Other cookie pairs before it in the same field, or in a field of its own.
    before: Vec<u8>,
    own_field: bool,
}

#[derive(Arbitrary, Debug)]
struct Built {
    config: u8,
    headers: Vec<(Name, Vec<u8>)>,
    source: Option<String>,
    down: Vec<bool>,
    now_offset: u32,
    pinned: Option<Pinned>,
    ids: Vec<[u8; 16]>,
}

fn header_name(cfg: &Config, n: &Name) -> String {
    match n {
        Name::Cookie => "cookie".into(),
        Name::Authorization => "authorization".into(),
        Name::XToken => "x-token".into(),
        Name::XUserId => "x-user-id".into(),
        Name::Path => ":path".into(),
        Name::Target => cfg.target.header.clone(),
        Name::Other(s) => s.to_ascii_lowercase(),
    }
}

fn is_down(down: &[bool], h: usize) -> bool {
    down.get(h).copied().unwrap_or(false)
}

fn check(cfg: &Config, req: &Req, down: &[bool], now: u64, seeds: &[[u8; 16]]) {
    let n = cfg.hosts.len();
    let d: Decision = decide(cfg, req, down, now, &mut ids(seeds));
    assert!(d.host < n, "host {} of {n}", d.host);
    if let Kind::Hashed(i) = d.kind {
        assert!(i < cfg.sources.len());
    }
    let takes_new = |h: usize| !is_down(down, h) && !cfg.hosts[h].drain;
    let any_takes_new = (0..n).any(takes_new);
    if any_takes_new {
        assert!(!is_down(down, d.host), "{:?} chose host {} which is down ({down:?})", d.kind, d.host);
        if d.kind != Kind::Pinned {
            assert!(!cfg.hosts[d.host].drain, "a new or moved session on a draining host");
        }
    }

    // Deterministic, and blind to client copies of the target header.
    let again = decide(cfg, req, down, now, &mut ids(seeds));
    assert_eq!(d, again, "two runs disagree");
    let mut stripped = req.clone();
    stripped.headers.retain(|(name, _)| *name != cfg.target.header);
    if stripped.headers.len() != req.headers.len() {
        assert_eq!(
            decide(cfg, &stripped, down, now, &mut ids(seeds)),
            d,
            "a client's target header changed the decision"
        );
    }

    // An issued cookie verifies now and pins the chosen host at the session's point.
    if let Some(line) = &d.set_cookie {
        let sticky = cfg.sticky.as_ref().expect("a cookie without sticky_cookie");
        let value = line
            .strip_prefix(&format!("{}=", sticky.name))
            .and_then(|rest| rest.split(';').next())
            .expect("Set-Cookie starts with name=value");
        let policy =
            Policy { ttl_seconds: sticky.ttl_seconds, idle_timeout_seconds: sticky.idle_timeout_seconds };
        let claims = sticky::decode(&sticky.key, value.as_bytes(), policy, now)
            .unwrap_or_else(|e| panic!("issued cookie rejected at once: {e:?} ({line})"));
        assert_eq!(Some(claims.host), cfg.hosts[d.host].tag, "the cookie names another host");
        assert_eq!(claims.point, d.point);
        assert_eq!(claims.refreshed_at, now);
        let max_age = format!("Max-Age={}", claims.expires_at - now);
        assert!(line.contains(&max_age), "{line} lacks {max_age}");
        // Returning with it lands on the same host.
        let mut back = Req::from_pairs([("cookie", format!("{}={value}", sticky.name))]);
        back.headers.extend(req.headers.iter().filter(|(n, _)| n != "cookie").cloned());
        let next = decide(cfg, &back, down, now, &mut ids(seeds));
        assert_eq!((next.kind, next.host), (Kind::Pinned, d.host), "the issued cookie does not pin its host");
    }

    let value = target_value(cfg, &d, down);
    let listed: Vec<&str> = value.split(',').collect();
    assert_eq!(listed[0], cfg.hosts[d.host].header_value);
    assert!(listed.len() <= 1 + cfg.target.fallbacks as usize);
    let mut seen = std::collections::HashSet::new();
    for (i, v) in listed.iter().enumerate() {
        assert!(seen.insert(*v), "{v} listed twice in {value}");
        let h = cfg.hosts.iter().position(|h| h.header_value == *v).expect("a listed host is configured");
        if i > 0 {
            assert!(takes_new(h), "fallback {v} is down or draining");
        }
    }
}

fn raw(data: &[u8]) {
    let mut req = Req::default();
    let (mut config, mut down, mut now) = (0usize, Vec::new(), NOW);
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().skip(1).position(|&b| b == b':').map(|p| p + 1) else { continue };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        let text = String::from_utf8_lossy(&value).into_owned();
        match name.as_str() {
            "@config" => config = text.parse().unwrap_or(0),
            "@source" => req.source = SourceAddress::Known(text),
            "@down" => down = text.split(',').filter_map(|i| i.trim().parse::<usize>().ok()).collect(),
            "@now" => now = text.parse().unwrap_or(NOW),
            _ => req.headers.push((name, value)),
        }
    }
    let cfg = router_config(config);
    let mask: Vec<bool> = (0..cfg.hosts.len()).map(|i| down.contains(&i)).collect();
    check(cfg, &req, &mask, now, &[[7; 16]]);
    check(cfg, &req, &[], now, &[[7; 16]]);
}

fn structured(b: Built) {
    let cfg = router_config(usize::from(b.config) % ROUTER_CONFIGS.len());
    let now = NOW + u64::from(b.now_offset);
    let mut req =
        Req { source: b.source.map_or(SourceAddress::None, SourceAddress::Known), ..Req::default() };
    for (name, value) in b.headers.into_iter().take(24) {
        req.headers.push((header_name(cfg, &name), value));
    }
    if let (Some(p), Some(sticky)) = (b.pinned, &cfg.sticky) {
        let host = cfg.hosts.get(usize::from(p.host)).and_then(|h| h.tag).unwrap_or([p.host; 8]);
        let claims = Claims {
            session_id: p.session_id,
            point: p.point,
            host,
            expires_at: now.saturating_add_signed(i64::from(p.expires_in)),
            refreshed_at: now.saturating_add_signed(-i64::from(p.refreshed_ago)),
        };
        let pair = format!("{}={}", sticky.name, sticky::encode(&sticky.key, &claims));
        if p.own_field {
            req.headers.insert(0, ("cookie".into(), pair.into_bytes()));
        } else {
            let mut field = p.before;
            field.retain(|&b| b != b'\n');
            field.extend_from_slice(b"; ");
            field.extend_from_slice(pair.as_bytes());
            req.headers.push(("cookie".into(), field));
        }
    }
    let down: Vec<bool> = (0..cfg.hosts.len()).map(|i| b.down.get(i).copied().unwrap_or(false)).collect();
    check(cfg, &req, &down, now, &b.ids);
}

fuzz_target!(|data: &[u8]| dispatch(data, raw, structured));
