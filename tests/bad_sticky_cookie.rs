//! Malformed, forged, expired and misplaced sticky cookies (rows C6–C19): each is rejected for the
//! right reason, the request routed as if it had none, and a fresh cookie issued that pins back to
//! the same host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use common::bad_inputs::*;
use session_router::config::Config;
use session_router::router::{AllUp, Kind, Rejections, decide, target_value};
use session_router::sticky::{self, Claims, ENCODED_LEN, MAX_SKEW_SECONDS, Rejection};

// ---- the sticky cookie ------------------------------------------------------------------------

/// A valid sticky cookie value issued at `at`, and the host it pins.
fn valid_cookie(cfg: &Config, at: u64) -> (String, usize) {
    let d = decide(cfg, &req(), &AllUp, at, &mut || RANDOM_ID);
    (issued(&d), d.host)
}

/// Length of the signed part of a sticky cookie (the MAC is its last 16 bytes).
const BODY: usize = sticky::COOKIE_BYTES - 16;

fn raw(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()
}

/// `srv=value` must be rejected for `why`, the request routed as a new session, and a fresh cookie
/// (a different value) issued.
fn rejected_and_replaced(cfg: &Config, id: &str, value: &str, why: Rejection) {
    let d = check(cfg, id, &cookie(format!("srv={value}")), &new_session().cookie(why));
    assert_ne!(issued(&d), value, "{id}: the rejected cookie was re-issued as is");
}

fn rejected_as_either(cfg: &Config, id: &str, value: &str) {
    let d = run(cfg, &cookie(format!("srv={value}")), NOW);
    assert!(
        matches!(d.rejected.cookie, Some(Rejection::BadSignature | Rejection::Malformed)),
        "{id}: {:?}",
        d.rejected
    );
    check(cfg, id, &cookie(format!("srv={value}")), &new_session().cookie(d.rejected.cookie.unwrap()));
}

#[test]
fn c14_every_bit_flip_is_rejected_and_replaced() {
    let cfg = base();
    let (value, host) = valid_cookie(&cfg, NOW);
    assert_eq!(value.len(), ENCODED_LEN);
    let pinned = run(&cfg, &cookie(format!("srv={value}")), NOW);
    assert_eq!((pinned.kind, pinned.host, &pinned.set_cookie), (Kind::Pinned, host, &None), "C14 baseline");
    let bytes = raw(&value);
    assert_eq!(bytes.len(), sticky::COOKIE_BYTES);
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            // Byte 0 is the version; every other byte is covered by the MAC.
            let why = if i == 0 { Rejection::Malformed } else { Rejection::BadSignature };
            rejected_and_replaced(&cfg, &format!("C14 byte {i} bit {bit}"), &b64u(&b), why);
        }
    }
}

/// The same bytes with the unused low bits of the last character set: decodes only leniently.
fn non_canonical(value: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = value.as_bytes()[value.len() - 1];
    let i = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(i & 0b11, 0, "a 65-byte value leaves 2 zero bits in its last character");
    format!("{}{}", &value[..value.len() - 1], ALPHABET[i | 1] as char)
}

#[test]
fn c14_every_character_substitution_is_rejected() {
    let cfg = base();
    let (value, _) = valid_cookie(&cfg, NOW);
    for (i, c) in value.char_indices() {
        for sub in ['A', 'z', '-', '_'] {
            if sub == c {
                continue;
            }
            let mut v = value.clone();
            v.replace_range(i..=i, &sub.to_string());
            let id = format!("C14 char {i} {c:?}->{sub:?}");
            // Chars 0–1 carry the version byte; the last one carries 4 bits and 2 that must be 0.
            if i >= 2 && i + 1 < value.len() {
                rejected_and_replaced(&cfg, &id, &v, Rejection::BadSignature);
            } else {
                rejected_as_either(&cfg, &id, &v);
            }
        }
    }
}

#[test]
fn c12_c13_truncations_and_wrong_lengths() {
    let cfg = base();
    let (value, _) = valid_cookie(&cfg, NOW);
    for n in 0..value.len() {
        rejected_and_replaced(&cfg, &format!("C12 truncated to {n}"), &value[..n], Rejection::Malformed);
    }
    for n in 1..value.len() {
        rejected_and_replaced(&cfg, &format!("C12 first {n} cut"), &value[n..], Rejection::Malformed);
    }
    let bytes = raw(&value);
    let cases = [
        ("C12 one extra char", format!("{value}A")),
        ("C12 four extra chars", format!("{value}AAAA")),
        ("C13 one byte short", b64u(&bytes[..bytes.len() - 1])),
        ("C13 one byte long", b64u(&[bytes.as_slice(), &[0]].concat())),
        ("C12 non-canonical trailing bits", non_canonical(&value)),
        ("C13 doubled", value.repeat(2)),
        ("C13 right length, non-alphabet", "*".repeat(ENCODED_LEN)),
        ("C13 right length of 'A's: version 0", "A".repeat(ENCODED_LEN)),
        ("C13 version 2 without a valid MAC", b64u(&[&[2u8], &bytes[1..]].concat())),
        ("C13 version 0xff", b64u(&[&[0xffu8], &bytes[1..]].concat())),
    ];
    for (id, v) in &cases {
        rejected_and_replaced(&cfg, id, v, Rejection::Malformed);
    }
    let mut garbage: Vec<u8> =
        (0..sticky::COOKIE_BYTES as u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    garbage[0] = 1;
    rejected_and_replaced(
        &cfg,
        "C13 right length and version, garbage",
        &b64u(&garbage),
        Rejection::BadSignature,
    );
    rejected_and_replaced(
        &cfg,
        "C13 MAC zeroed",
        &b64u(&[&bytes[..BODY], &[0u8; 16][..]].concat()),
        Rejection::BadSignature,
    );
    rejected_and_replaced(&cfg, "C13 MAC removed", &b64u(&bytes[..BODY]), Rejection::Malformed);
}

/// Recomputes the MAC the way `sticky.rs` documents it (it names the cookie, `srv` here), to
/// forge structurally odd but signed values.
fn sign(secret: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"cookie-name\0");
    mac.update(&3u16.to_be_bytes());
    mac.update(b"srv");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    [body, &tag[..16]].concat()
}

#[test]
fn c13_wrong_version_with_a_valid_mac() {
    let cfg = base();
    let (value, _) = valid_cookie(&cfg, NOW);
    let bytes = raw(&value);
    assert_eq!(b64u(&sign(SECRET, &bytes[..BODY])), value, "the forging helper reproduces a real cookie");
    for version in [0u8, 2, 0x81, 0xff] {
        let forged = sign(SECRET, &[&[version], &bytes[1..BODY]].concat());
        rejected_and_replaced(
            &cfg,
            &format!("C13 version {version}, signed"),
            &b64u(&forged),
            Rejection::Malformed,
        );
    }
}

/// A sticky cookie value containing `-` or `_`, so an alphabet swap changes it.
fn cookie_with_url_chars(cfg: &Config) -> String {
    (0u8..=255)
        .map(|n| issued(&decide(cfg, &req(), &AllUp, NOW, &mut || [n; 16])))
        .find(|v| v.contains(['-', '_']))
        .expect("some cookie uses - or _")
}

#[test]
fn c12_alphabet_padding_and_whitespace() {
    let cfg = base();
    let value = cookie_with_url_chars(&cfg);
    let standard = STANDARD_NO_PAD.encode(raw(&value));
    assert_ne!(standard, value);
    let mid = ENCODED_LEN / 2;
    let malformed = [
        ("C12 +/ alphabet", standard.clone()),
        ("C12 +/ alphabet, padded", base64::engine::general_purpose::STANDARD.encode(raw(&value))),
        ("C12 '=' padding added", format!("{value}=")),
        ("C12 '==' padding added", format!("{value}==")),
        ("C12 last two chars replaced by '=='", format!("{}==", &value[..ENCODED_LEN - 2])),
        ("C12 space inserted", format!("{} {}", &value[..mid], &value[mid..])),
        ("C12 space replacing a char", format!("{} {}", &value[..mid], &value[mid + 1..])),
        ("C12 tab replacing a char", format!("{}\t{}", &value[..mid], &value[mid + 1..])),
        ("C12 percent-encoded '-'/'_'", value.replace('-', "%2D").replace('_', "%5F")),
        ("C12 lowercased", value.to_lowercase()),
    ];
    for (id, v) in &malformed {
        if v != &value {
            rejected_as_either(&cfg, id, v);
        }
    }
    for (id, v) in &malformed[..5] {
        rejected_and_replaced(&cfg, id, v, Rejection::Malformed);
    }
    // Whitespace around the value and DQUOTEs are how cookies are written: still valid.
    let host = run(&cfg, &cookie(format!("srv={value}")), NOW).host;
    for (id, header) in [
        ("C11 quoted sticky cookie", format!("srv=\"{value}\"")),
        ("C12 surrounding whitespace", format!("srv= \t{value} \t")),
        ("C20 with client attributes", format!("srv={value}; Path=/; Secure")),
        ("C8 among 200 cookies", format!("{}srv={value}", "c=v; ".repeat(200))),
    ] {
        let d = run(&cfg, &cookie(&header), NOW);
        assert_eq!((d.kind, d.host, d.rejected), (Kind::Pinned, host, Rejections::default()), "{id}");
    }
    let unterminated = run(&cfg, &cookie(format!("srv=\"{value}")), NOW);
    assert_eq!((unterminated.kind, unterminated.rejected.cookie), (Kind::New, None), "C11 unterminated");
}

#[test]
fn c17_raw_addresses_in_the_sticky_cookie() {
    let cfg = base();
    for a in ["10.0.0.1:8080", "169.254.169.254:80", "[::1]:15000", "127.0.0.1:15000", "10.0.0.2"] {
        rejected_and_replaced(&cfg, &format!("C17 {a}"), a, Rejection::Malformed);
        rejected_and_replaced(
            &cfg,
            &format!("C17 base64url of {a}"),
            &b64u(a.as_bytes()),
            Rejection::Malformed,
        );
        let d = run(&cfg, &cookie(format!("srv={a}")).with("x-user-id", "u1"), NOW);
        assert_eq!(
            (d.kind, d.rejected.cookie),
            (Kind::Hashed(HEADER), Some(Rejection::Malformed)),
            "C17 {a}"
        );
        assert_ne!(target_value(&cfg, &d, &AllUp), a, "C17 {a} used as a destination");
    }
}

#[test]
fn c14_cookie_signed_with_another_secret() {
    let cfg = base();
    let other = parse(&config_json(&HOSTS, OTHER_SECRET, ""));
    for n in 0..20u8 {
        let value = issued(&decide(&other, &req(), &AllUp, NOW, &mut || [n; 16]));
        rejected_and_replaced(&cfg, &format!("C14 other secret #{n}"), &value, Rejection::BadSignature);
    }
}

#[test]
fn c15_expired_idle_and_future_cookies() {
    let cfg = base();
    let (value, host) = valid_cookie(&cfg, NOW);
    let at = |now: u64| run(&cfg, &cookie(format!("srv={value}")), now);
    assert_eq!((at(NOW + TTL - 1).kind, at(NOW + TTL - 1).host), (Kind::Pinned, host), "C15 last second");
    for now in [NOW + TTL, NOW + TTL + 1, NOW + 10 * TTL, u64::MAX] {
        let d = at(now);
        assert_eq!(
            (d.kind, d.rejected.cookie),
            (Kind::New, Some(Rejection::Expired)),
            "C15 expired at {now}"
        );
        assert!(d.set_cookie.is_some() && issued(&d) != value, "C15 expired cookie not replaced at {now}");
    }
    // Issued by a proxy whose clock runs ahead: tolerated up to MAX_SKEW_SECONDS.
    let (ahead, ahead_host) = valid_cookie(&cfg, NOW + MAX_SKEW_SECONDS);
    let d = run(&cfg, &cookie(format!("srv={ahead}")), NOW);
    assert_eq!((d.kind, d.host), (Kind::Pinned, ahead_host), "C15 issued {MAX_SKEW_SECONDS} s ahead");
    let (future, _) = valid_cookie(&cfg, NOW + MAX_SKEW_SECONDS + 1);
    rejected_and_replaced(&cfg, "C15 issued 61 s in the future", &future, Rejection::FromTheFuture);
    let (far, _) = valid_cookie(&cfg, NOW + 86_400);
    rejected_and_replaced(&cfg, "C15 issued a day in the future", &far, Rejection::FromTheFuture);
}

#[test]
fn c15_forged_lifetimes_with_a_valid_mac() {
    let cfg = base();
    let key = &cfg.sticky.as_ref().unwrap().key;
    let tag = cfg.hosts[1].tag.unwrap();
    let claims = |expires_at: u64, refreshed_at: u64| Claims {
        session_id: [9; 16],
        point: 42,
        host: tag,
        expires_at,
        refreshed_at,
    };
    let ok = sticky::encode(key, &claims(NOW + TTL, NOW));
    let d = run(&cfg, &cookie(format!("srv={ok}")), NOW);
    assert_eq!((d.kind, d.host, d.point), (Kind::Pinned, 1, 42), "C15 forged baseline");
    let cases = [
        ("C15 expires 10 × ttl ahead", claims(NOW + 10 * TTL, NOW), Rejection::FromTheFuture),
        (
            "C15 expires just past ttl + skew",
            claims(NOW + TTL + MAX_SKEW_SECONDS + 1, NOW),
            Rejection::FromTheFuture,
        ),
        ("C15 expires u64::MAX", claims(u64::MAX, NOW), Rejection::FromTheFuture),
        ("C15 refreshed u64::MAX", claims(NOW + TTL, u64::MAX), Rejection::FromTheFuture),
        ("C15 expires 0", claims(0, 0), Rejection::Expired),
        ("C15 expires now", claims(NOW, NOW - TTL), Rejection::Expired),
    ];
    for (id, c, why) in cases {
        rejected_and_replaced(&cfg, id, &sticky::encode(key, &c), why);
    }
    let edge = sticky::encode(key, &claims(NOW + TTL + MAX_SKEW_SECONDS, NOW + MAX_SKEW_SECONDS));
    assert_eq!(run(&cfg, &cookie(format!("srv={edge}")), NOW).kind, Kind::Pinned, "C15 at the skew edge");
}

#[test]
fn c15_idle_timeout() {
    let cfg = idle_config();
    let (value, host) = valid_cookie(&cfg, NOW);
    let at = |now: u64| run(&cfg, &cookie(format!("srv={value}")), now);
    // Within the idle timeout: pinned, and refreshed once a quarter of it has passed.
    let fresh = at(NOW + 1);
    assert_eq!((fresh.kind, fresh.host, &fresh.set_cookie), (Kind::Pinned, host, &None), "C15 fresh");
    let late = at(NOW + IDLE - 1);
    assert_eq!((late.kind, late.host), (Kind::Pinned, host), "C15 idle-1");
    let refreshed = issued(&late);
    assert_ne!(refreshed, value, "C15 a sliding cookie is refreshed");
    let slid = run(&cfg, &cookie(format!("srv={refreshed}")), NOW + IDLE + 100);
    assert_eq!(
        (slid.kind, slid.host),
        (Kind::Pinned, host),
        "C15 refreshed cookie outlives the old idle window"
    );
    for now in [NOW + IDLE, NOW + IDLE + 1, NOW + TTL - 1] {
        let d = at(now);
        assert_eq!(
            (d.kind, d.rejected.cookie),
            (Kind::New, Some(Rejection::Idle)),
            "C15 idle at +{}",
            now - NOW
        );
        assert!(issued(&d) != value, "C15 idle cookie replaced");
    }
    // The idle window never extends the absolute lifetime.
    let mut current = value.clone();
    let mut now = NOW;
    while now + IDLE / 2 < NOW + TTL {
        now += IDLE / 2;
        let d = run(&cfg, &cookie(format!("srv={current}")), now);
        assert_eq!(d.kind, Kind::Pinned, "C15 sliding at +{}", now - NOW);
        current = d.set_cookie.as_ref().map_or(current, |_| issued(&d));
    }
    let end = run(&cfg, &cookie(format!("srv={current}")), NOW + TTL);
    assert_eq!(end.rejected.cookie, Some(Rejection::Expired), "C15 absolute expiry despite refreshes");
}

#[test]
fn c16_cookie_for_a_host_no_longer_configured() {
    let four = parse(&config_json(&HOSTS4, SECRET, ""));
    let cfg = base();
    let mut stale = None;
    let mut kept = None;
    for n in 0..=255u8 {
        let d = decide(&four, &req(), &AllUp, NOW, &mut || [n; 16]);
        let address = four.hosts[d.host].address.to_string();
        if address == "10.0.0.4:8080" {
            stale.get_or_insert(issued(&d));
        } else {
            kept.get_or_insert((issued(&d), address));
        }
    }
    let stale = stale.expect("some session on 10.0.0.4");
    // Validly signed for a host that left: the session moves to the ring successor of its point
    // (what every replica computes), keeps its id and expiry, and is re-pinned there.
    let claims = sticky::decode(&cfg.sticky.as_ref().unwrap().key, stale.as_bytes(), POLICY, NOW).unwrap();
    for request in [cookie(format!("srv={stale}")), cookie(format!("srv={stale}")).with("x-user-id", "u1")] {
        let d = run(&cfg, &request, NOW);
        assert_eq!((d.kind, d.rejected.cookie), (Kind::Failover, None), "C16 host removed");
        assert_eq!(d.host, cfg.placement.owner(claims.point), "C16 moves to the ring successor");
        let moved =
            sticky::decode(&cfg.sticky.as_ref().unwrap().key, issued(&d).as_bytes(), POLICY, NOW).unwrap();
        assert_eq!(
            (moved.session_id, moved.point, moved.expires_at),
            (claims.session_id, claims.point, claims.expires_at),
            "C16 same session"
        );
        assert_eq!(cfg.host_by_tag(moved.host), Some(d.host));
    }
    // Sessions on hosts that remain are not disturbed.
    let (value, address) = kept.unwrap();
    let d = run(&cfg, &cookie(format!("srv={value}")), NOW);
    assert_eq!((d.kind, cfg.hosts[d.host].address.to_string()), (Kind::Pinned, address), "C16 kept host");
    // A validly signed tag that names no host at all is handled the same way.
    let key = &cfg.sticky.as_ref().unwrap().key;
    let c =
        Claims { session_id: [1; 16], point: 7, host: [0xab; 8], expires_at: NOW + TTL, refreshed_at: NOW };
    let d = run(&cfg, &cookie(format!("srv={}", sticky::encode(key, &c))), NOW);
    assert_eq!((d.kind, d.host), (Kind::Failover, cfg.placement.owner(7)), "C16 unknown tag");
}

#[test]
fn c6_c7_c19_sticky_cookie_occurrences() {
    let cfg = base();
    let (value, host) = valid_cookie(&cfg, NOW);
    let mut bad = raw(&value);
    bad[30] ^= 1;
    let bad = b64u(&bad);
    let pinned = |id: &str, r: Req, rejection: Option<Rejection>| {
        let d = run(&cfg, &r, NOW);
        assert_eq!((d.kind, d.host, d.rejected.cookie), (Kind::Pinned, host, rejection), "{id}");
    };
    pinned("C7 sticky cookie in a second field", cookie("a=1").with("cookie", format!("srv={value}")), None);
    pinned(
        "C6 tampered, then valid",
        cookie(format!("srv={bad}; srv={value}")),
        Some(Rejection::BadSignature),
    );
    pinned("C6 valid, then tampered", cookie(format!("srv={value}; srv={bad}")), None);
    pinned("C6 same valid cookie twice", cookie(format!("srv={value}; srv={value}")), None);
    pinned(
        "C6 tampered in one field, valid in another",
        cookie(format!("srv={bad}")).with("cookie", format!("srv={value}")),
        Some(Rejection::BadSignature),
    );
    // Only a bounded number of candidates is verified per request.
    let flood = format!("{}srv={value}", format!("srv={bad}; ").repeat(50));
    let d = run(&cfg, &cookie(&flood), NOW);
    assert_eq!(
        (d.kind, d.rejected.cookie),
        (Kind::New, Some(Rejection::BadSignature)),
        "C8 50 forged candidates"
    );
    for name in ["SRV", "Srv", "__Host-srv", "__host-srv", "srv_", " srv x"] {
        let d = run(&cfg, &cookie(format!("{name}={value}")), NOW);
        assert_eq!((d.kind, d.rejected.cookie), (Kind::New, None), "C19 {name:?} is another cookie");
    }
    // A tampered sticky cookie does not hide the other sources.
    let d = check(
        &cfg,
        "C14 tampered sticky + JSESSIONID",
        &cookie(format!("srv={bad}; JSESSIONID=j1")),
        &hashed(COOKIE, "j1").cookie(Rejection::BadSignature),
    );
    assert_ne!(issued(&d), bad);
}

#[test]
fn extreme_clocks_do_not_panic() {
    let cfg = idle_config();
    let (value, _) = valid_cookie(&cfg, NOW);
    for now in [0, 1, MAX_SKEW_SECONDS, u64::MAX - 1, u64::MAX] {
        for r in [req(), cookie(format!("srv={value}")), req().bearer(r#"{"sub":"a","exp":1e300}"#)] {
            let d = decide(&cfg, &r, &AllUp, now, &mut || RANDOM_ID);
            assert!(d.host < cfg.hosts.len(), "now={now}");
        }
        let (v, h) = valid_cookie(&cfg, now);
        let d = run(&cfg, &cookie(format!("srv={v}")), now);
        if now < u64::MAX {
            assert_eq!((d.kind, d.host), (Kind::Pinned, h), "a cookie issued at {now} pins at {now}");
        }
    }
}
