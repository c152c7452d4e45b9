//! Regression tests from the fuzz targets in fuzz/ (run them with `bash scripts/fuzz.sh`).
//!
//! Every crash or failed check a fuzz target finds becomes a test here, with the input that
//! found it, so it stays fixed without a nightly toolchain.
//!
//! Below them, the properties the fuzz targets check, pinned on a few inputs they found
//! interesting, so a regression shows up in `cargo test` before anyone fuzzes again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_router::config::Config;
use session_router::health::Table;
use session_router::jwt::{self, JwtError};
use session_router::outcome::Passive;
use session_router::query::{self, QueryValue};
use session_router::sticky::{self, Claims, CookieKey, Policy, Rejection};
use session_router::{cookie, murmur3::hash64, ring::Ring};

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"demo-secret-change-me-0123456789abcdef";

// ---- found by the fuzzers ---------------------------------------------------------------------

/// fuzz target `config`, artifact crash-c4a1caa4ce0767c630204d92180fa93be937b095 (structured
/// mode), minimized. A key that is the empty string is an unknown field, and it is rejected, but
/// the error's field path is empty, so the log line names no field:
/// `configuration rejected: : unknown field ``, expected one of ...`.
/// Expected: a field that says where (e.g. `config`, like other top-level errors).
#[test]
fn config_error_for_an_empty_key_names_a_field() {
    let json = br#"{"":0,"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}],
                    "target":{"header":"x-gateway-destination-endpoint"}}"#;
    let e = Config::parse(json, |_| None).expect_err("an unknown field is rejected");
    assert!(e.reason.contains("unknown field"), "{e:?}");
    assert!(!e.field.is_empty(), "the error names no field: {e:?} (logged as {:?})", e.to_string());
}

/// The same input one level down, which the fuzzer also reached: the path must at least name
/// the object the empty key is in.
#[test]
fn config_error_for_a_nested_empty_key_names_its_object() {
    let json = br#"{"hosts":[{"address":"10.0.0.1:80","":1}],"sources":[{"type":"source_ip"}],
                    "target":{"header":"x-gateway-destination-endpoint"}}"#;
    let e = Config::parse(json, |_| None).expect_err("an unknown field is rejected");
    assert!(e.field.starts_with("hosts[0]"), "{e:?}");
}

/// fuzz target `health_table` (structured mode, decoded starting table). The filter skips the
/// shared-data write after a successful request when `success_changes` is false (README: "a lost
/// race drops an update"; src/filter.rs `on_log`), which relies on `record_success` then being a
/// no-op. For an entry that carries nothing to remember — all zeros, which no operation leaves
/// behind (clean entries are removed) but a table written by hand, by another build or by a
/// corrupted write can hold — `success_changes` says false while `record_success` removes the
/// entry. Low impact: such an entry is never "down", it only lingers in the table (so workers
/// keep decoding a non-empty table). Expected: decode drops clean entries, or the two agree.
#[test]
fn health_success_changes_agrees_with_record_success_on_a_clean_entry() {
    let passive = Passive { consecutive_failures: 3, ejection_ms: 10_000, max_ejection_ms: 300_000 };
    let mut table = Table::decode(b"h0\t0\t0\t0\t0\t0\t0\t0\n");
    let before = table.clone();
    let changes = table.success_changes("h0", NOW * 1000, &passive);
    table.record_success("h0", NOW * 1000, &passive);
    assert_eq!(changes, table != before, "success_changes={changes}, table changed={}", table != before);
}

// ---- properties the fuzz targets check, on inputs they found interesting ----------------------

fn key() -> CookieKey {
    CookieKey::new(SECRET)
}

fn valid_cookie() -> (String, Claims) {
    let claims = Claims {
        session_id: *b"0123456789abcdef",
        point: 0x1234_5678_9abc_def0,
        host: [7; 8],
        expires_at: NOW + 3600,
        refreshed_at: NOW,
    };
    (sticky::encode(&key(), &claims), claims)
}

const POLICY: Policy = Policy { ttl_seconds: 3600, idle_timeout_seconds: None };

/// `sticky_cookie`: a verified cookie has exactly one spelling. Changing any one character to
/// any other base64url character — including the last one, whose low bits are padding — is
/// rejected as malformed or badly signed, never accepted.
#[test]
fn sticky_cookie_every_one_character_change_is_rejected() {
    let (value, claims) = valid_cookie();
    assert_eq!(sticky::decode(&key(), value.as_bytes(), POLICY, NOW), Ok(claims));
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..value.len() {
        for &c in alphabet {
            let mut m = value.clone().into_bytes();
            if m[i] == c {
                continue;
            }
            m[i] = c;
            let got = sticky::decode(&key(), &m, POLICY, NOW);
            assert!(
                matches!(got, Err(Rejection::Malformed | Rejection::BadSignature)),
                "position {i} → {}: {got:?}",
                c as char
            );
        }
    }
}

/// `sticky_cookie`: a forged cookie is rejected for its signature before its times are looked
/// at, so a tampered expiry cannot even tell an attacker "expired" from "bad signature".
#[test]
fn sticky_cookie_times_are_judged_only_after_the_signature() {
    let (value, _) = valid_cookie();
    let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
    raw[33..41].copy_from_slice(&(NOW - 10).to_be_bytes()); // expires_at in the past
    let forged = URL_SAFE_NO_PAD.encode(&raw);
    assert_eq!(sticky::decode(&key(), forged.as_bytes(), POLICY, NOW), Err(Rejection::BadSignature));
    // Quoted, padded or in the standard alphabet: malformed, not another spelling.
    for v in [format!("\"{value}\""), format!("{value}="), value.replace('-', "+").replace('_', "/")] {
        if v != value {
            assert!(sticky::decode(&key(), v.as_bytes(), POLICY, NOW).is_err(), "{v}");
        }
    }
}

/// `cookie_header`: our cookie hidden among others and split over several fields (HTTP/2) is
/// found exactly once, quotes removed; pairs that only look like it are not.
#[test]
fn cookie_found_once_among_lookalikes() {
    let headers: [&[u8]; 3] = [b"srvx=1; xsrv=2; =srv", b" srv = \"abc\" ;a=\"srv=no", b"SRV=3; srv"];
    let found: Vec<&[u8]> = cookie::values(headers.into_iter(), "srv").collect();
    assert_eq!(found, [b"abc".as_slice()]);
}

/// `jwt`: a claim name written with a JSON escape is the same name, so `{"sub":..,"s\u0075b":..}`
/// is a duplicate claim and rejected, not resolved by position.
#[test]
fn jwt_escaped_duplicate_claim_is_rejected() {
    let token = |payload: &str| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload));
    assert_eq!(
        jwt::claim(token(r#"{"sub":"a","s\u0075b":"b"}"#).as_bytes(), "sub", NOW),
        Err(JwtError::Json)
    );
    assert_eq!(jwt::claim(token(r#"{"s\u0075b":"a"}"#).as_bytes(), "sub", NOW), Ok("a".into()));
    // The claim may itself be called "exp": it is then the claim, not an expiry.
    assert_eq!(jwt::claim(token(r#"{"exp":"x"}"#).as_bytes(), "exp", NOW), Ok("x".into()));
    // A fractional exp is compared as a number.
    let t = token(&format!(r#"{{"sub":"a","exp":{}.5}}"#, NOW));
    assert_eq!(jwt::claim(t.as_bytes(), "sub", NOW), Ok("a".into()));
    assert_eq!(jwt::claim(t.as_bytes(), "sub", NOW + 1), Err(JwtError::Expired));
    // The scheme is case-insensitive; spaces and tabs around the token are trimmed.
    assert_eq!(jwt::token(b"bEARER \t x.y.z \t", "Bearer "), Some(b"x.y.z".as_slice()));
}

/// `query`: a parameter whose name and value are percent-encoded in mixed ways (literal, `+`,
/// `%xx`, `%XX`), first in the query and followed by anything, decodes to the original bytes.
#[test]
fn query_mixed_encodings_round_trip() {
    let path = b"/a/b?s%69%44=%e2%82%ACa+b%2B%25&sid=other#frag";
    assert_eq!(query::param(path, "siD"), QueryValue::Found("€a b+%".as_bytes().to_vec()));
    assert_eq!(query::param(b"/?sid=%f0%9f%98&x=%zz", "sid"), QueryValue::Found(vec![0xf0, 0x9f, 0x98]));
}

/// `health_table`: the table survives encode/decode exactly, including ids with characters
/// that only look special (a carriage return inside the id, non-UTF-8 bytes).
#[test]
fn health_table_round_trips() {
    let raw: &[u8] = b"a\rb\t1\t0\t0\t0\t0\t0\t0\n\xff\xfe\t2\t5\t1\t1\t0\t0\t0\r\nh9\t+3\t0\t0\t2\t0\t1\t1";
    let t = Table::decode(raw);
    assert_eq!(Table::decode(&t.encode()), t);
    assert!(t.get("a\rb").is_some());
    assert_eq!(t.get("h9").map(|e| (e.failures, e.recovered, e.probe_down)), Some((3, false, true)));
}

/// `ring`: the owner of a key is the first point clockwise exactly as README "The ring"
/// specifies, including for duplicate ids (ties go to the lower index), and `walk` visits every
/// host once starting at the owner.
#[test]
fn ring_matches_the_readme_spec_with_duplicate_ids() {
    let hosts: [(&[u8], u32); 3] = [(b"same", 3), (b"same", 3), (b"other", 1)];
    let ring = Ring::build(hosts.iter().copied()).unwrap();
    let mut points: Vec<(u64, usize)> = Vec::new();
    for (i, (id, n)) in hosts.iter().enumerate() {
        for r in 0..*n {
            let mut bytes = id.to_vec();
            bytes.push(0);
            bytes.extend_from_slice(&r.to_le_bytes());
            points.push((hash64(&bytes) & !0xffff, i));
        }
    }
    points.sort();
    for key in [0, 1, u64::MAX, 0xffff, 0x1_0000, hash64(b"k"), points[2].0, points[2].0 + 1] {
        let masked = key & !0xffff;
        let want = points.iter().find(|(p, _)| *p >= masked).unwrap_or(&points[0]).1;
        assert_eq!(ring.owner(key), want, "key {key:#x}");
        let walked: Vec<usize> = ring.walk(key).collect();
        assert_eq!(walked[0], want);
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
    }
}
