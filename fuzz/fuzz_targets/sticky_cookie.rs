//! `sticky::decode`: the signed sticky-cookie value (base64url of version, session id, ring
//! point, host tag, expiry, refresh time and a truncated HMAC-SHA256).
//!
//! Raw input: line 1 is the cookie value; optional lines 2–4 are `now`, `ttl_seconds` and
//! `idle_timeout_seconds` (defaults: NOW, 3600, none). The key is the demo secret of
//! envoy/*.yaml, which the committed seeds are signed with. Anything that verifies must
//! re-encode to exactly the same value (one valid spelling per cookie) and obey its policy.
//!
//! Structured input: a valid cookie is encoded from arbitrary claims and policy; decoding it
//! must give exactly what the documented rules say (expired, from the future, idle, or the
//! claims back). Then it is mutated (flipped, dropped, inserted, swapped characters,
//! truncated, extended, re-padded) and every mutation that changes the value must be rejected
//! as malformed or badly signed — never accepted, never judged on its (forged) times.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::sticky::{self, Claims, CookieKey, ENCODED_LEN, MAX_SKEW_SECONDS, Policy, Rejection};
use session_router_fuzz::{Input, NOW, SECRET, input, lines, parse_u64};

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Arbitrary, Debug)]
enum Mutation {
    Replace { at: u16, with: u8 },
    ReplaceAny { at: u16, with: u8 },
    Remove { at: u16 },
    Insert { at: u16, byte: u8 },
    Swap { a: u16, b: u16 },
    Truncate { len: u16 },
    Pad,
    Append(Vec<u8>),
    Quote,
}

#[derive(Arbitrary, Debug)]
struct Valid {
    session_id: [u8; 16],
    point: u64,
    host: [u8; 8],
    /// Expiry and refresh time relative to `now` (seconds, either way).
    expires_in: i32,
    refreshed_ago: i32,
    ttl: u32,
    idle: Option<u32>,
    now_offset: u32,
    other_secret: bool,
    mutations: Vec<Mutation>,
}

fn key() -> CookieKey {
    CookieKey::new(SECRET.as_bytes())
}

/// The documented decision for an authentic cookie (see sticky.rs and README "sticky_cookie").
fn expected(c: &Claims, policy: Policy, now: u64) -> Result<Claims, Rejection> {
    if c.expires_at <= now {
        return Err(Rejection::Expired);
    }
    let horizon = now.saturating_add(MAX_SKEW_SECONDS);
    if c.expires_at > horizon.saturating_add(policy.ttl_seconds) || c.refreshed_at > horizon {
        return Err(Rejection::FromTheFuture);
    }
    if let Some(idle) = policy.idle_timeout_seconds
        && now.saturating_sub(c.refreshed_at) >= idle
    {
        return Err(Rejection::Idle);
    }
    Ok(*c)
}

fn check_verified(key: &CookieKey, value: &[u8], policy: Policy, now: u64) {
    if let Ok(c) = sticky::decode(key, value, policy, now) {
        assert_eq!(sticky::encode(key, &c).as_bytes(), value, "a verified cookie has one spelling");
        assert_eq!(expected(&c, policy, now), Ok(c), "accepted against its policy");
    }
}

fn apply(value: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: u16, len: usize| usize::from(at) % len.max(1);
    match *m {
        Mutation::Replace { at, with } if !value.is_empty() => {
            let i = pos(at, value.len());
            value[i] = ALPHABET[usize::from(with) % ALPHABET.len()];
        }
        Mutation::ReplaceAny { at, with } if !value.is_empty() => {
            let i = pos(at, value.len());
            value[i] = with;
        }
        Mutation::Remove { at } if !value.is_empty() => {
            let i = pos(at, value.len());
            value.remove(i);
        }
        Mutation::Insert { at, byte } => {
            let i = pos(at, value.len() + 1);
            value.insert(i, byte);
        }
        Mutation::Swap { a, b } if !value.is_empty() => {
            let (a, b) = (pos(a, value.len()), pos(b, value.len()));
            value.swap(a, b);
        }
        Mutation::Truncate { len } => value.truncate(usize::from(len) % (value.len() + 1)),
        Mutation::Pad => value.push(b'='),
        Mutation::Append(ref more) => value.extend_from_slice(more),
        Mutation::Quote => {
            value.insert(0, b'"');
            value.push(b'"');
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    match input(data) {
        Input::Raw(raw) => {
            let l = lines(raw);
            let now = parse_u64(l.get(1)).unwrap_or(NOW);
            let ttl = parse_u64(l.get(2)).unwrap_or(3600);
            let idle = parse_u64(l.get(3));
            let policy = Policy { ttl_seconds: ttl, idle_timeout_seconds: idle };
            check_verified(&key, l[0], policy, now);
            check_verified(&key, raw, policy, now);
            // The value as it would arrive with the default policy, and with another key.
            let default = Policy { ttl_seconds: 3600, idle_timeout_seconds: None };
            check_verified(&key, l[0], default, NOW);
            let other = CookieKey::new(b"another-secret-entirely-0123456789abcdef");
            assert!(
                sticky::decode(&other, l[0], default, NOW).is_err()
                    || sticky::decode(&key, l[0], default, NOW).is_err(),
                "one value verified under two keys"
            );
        }
        Input::Structured(u) => {
            let Ok(v) = Valid::arbitrary_take_rest(u) else { return };
            let now = NOW + u64::from(v.now_offset);
            let claims = Claims {
                session_id: v.session_id,
                point: v.point,
                host: v.host,
                expires_at: now.saturating_add_signed(i64::from(v.expires_in)),
                refreshed_at: now.saturating_add_signed(-i64::from(v.refreshed_ago)),
            };
            let policy =
                Policy { ttl_seconds: u64::from(v.ttl), idle_timeout_seconds: v.idle.map(u64::from) };
            let value = sticky::encode(&key, &claims);
            assert_eq!(value.len(), ENCODED_LEN);
            assert!(value.bytes().all(|b| ALPHABET.contains(&b)), "not base64url: {value}");
            assert_eq!(sticky::decode(&key, value.as_bytes(), policy, now), expected(&claims, policy, now));
            if v.other_secret {
                let other = CookieKey::new(b"another-secret-entirely-0123456789abcdef");
                assert_eq!(
                    sticky::decode(&other, value.as_bytes(), policy, now),
                    Err(Rejection::BadSignature)
                );
            }
            let mut mutated = value.clone().into_bytes();
            for m in v.mutations.iter().take(16) {
                apply(&mut mutated, m);
                let got = sticky::decode(&key, &mutated, policy, now);
                if mutated == value.as_bytes() {
                    assert_eq!(got, expected(&claims, policy, now));
                } else {
                    assert!(
                        matches!(got, Err(Rejection::Malformed | Rejection::BadSignature)),
                        "mutated cookie {:?} (from {value}) gave {got:?}",
                        String::from_utf8_lossy(&mutated)
                    );
                }
            }
        }
    }
});
