//! Trust boundaries (issue 13), natively: secret rotation across a fleet, the MAC naming the
//! cookie, keyed session ids for hashed sessions, and the rotation config's errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Req, req};
use session_router::config::Config;
use session_router::murmur3::murmur3_x64_128;
use session_router::router::{AllUp, Decision, Kind, decide};
use session_router::sticky::{self, Claims, CookieKey, Policy, Rejection};

const OLD: &str = "old-secret-0123456789abcdef0123456789";
const NEW: &str = "new-secret-0123456789abcdef0123456789";
const NOW: u64 = 1_700_000_000;
const POLICY: Policy = Policy { ttl_seconds: 3600, idle_timeout_seconds: None };

fn config(sticky: &str) -> Config {
    let hosts: Vec<String> =
        (0..5).map(|i| format!(r#"{{"address":"10.0.0.{}:80","id":"h{i}"}}"#, i + 1)).collect();
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x-user"}}],
        "sticky_cookie":{{"name":"srv","ttl_seconds":3600,{sticky}}},
        "target":{{"header":"x-gateway-destination-endpoint"}}}}"#,
        hosts.join(",")
    );
    Config::parse(json.as_bytes(), |var| (var == "NEW_KEY").then(|| NEW.to_owned())).unwrap()
}

fn cookie_value(d: &Decision) -> Option<String> {
    let line = d.set_cookie.as_deref()?;
    Some(line.strip_prefix("srv=")?.split(';').next()?.to_owned())
}

/// The claims of the sticky cookie `d` issued, decoded with `cfg`'s signing key at `NOW`.
fn claims_of(cfg: &Config, d: &Decision) -> Claims {
    sticky::decode(&cfg.sticky.as_ref().unwrap().key, cookie_value(d).unwrap().as_bytes(), POLICY, NOW)
        .unwrap()
}

fn with_cookie(value: &str) -> Req {
    req(&[("cookie", &format!("srv={value}"))])
}

/// The fleet's three steps, each rolled out replica by replica: a session meets old and new
/// replicas in turn. No session moves, no cookie is rejected, and every cookie ends up signed
/// with the new key.
#[test]
fn three_step_rotation_moves_no_session_and_rejects_no_cookie() {
    let start = config(&format!(r#""secret":"{OLD}""#));
    let step1 = config(&format!(r#""secret":"{OLD}","verify_secrets":[{{"secret_env":"NEW_KEY"}}]"#));
    let step2 = config(&format!(r#""secret_env":"NEW_KEY","verify_secrets":[{{"secret":"{OLD}"}}]"#));
    let step3 = config(r#""secret_env":"NEW_KEY""#);
    // Two replicas; during each roll-out one runs the previous step and one the next.
    let phases = [
        [&start, &start],
        [&step1, &start],
        [&step1, &step1],
        [&step2, &step1],
        [&step2, &step2],
        [&step3, &step2],
        [&step3, &step3],
    ];
    let sessions = 1000;
    let mut jar: Vec<(String, usize)> = (0..sessions)
        .map(|i| {
            let d = decide(&start, &Req::default(), &AllUp, NOW, &mut || {
                [i as u8, (i >> 8) as u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
            });
            (cookie_value(&d).unwrap(), d.host)
        })
        .collect();
    let (mut moved, mut rejected, mut resigned) = (0, 0, 0);
    for (p, replicas) in phases.iter().enumerate() {
        for round in 0..2 {
            for (i, (value, host)) in jar.iter_mut().enumerate() {
                let cfg = replicas[(i + round + p) % 2];
                let d = decide(cfg, &with_cookie(value), &AllUp, NOW + p as u64, &mut || [0; 16]);
                moved += usize::from(cfg.hosts[d.host].id != start.hosts[*host].id || d.kind != Kind::Pinned);
                rejected += usize::from(d.rejected.cookie.is_some());
                if let Some(v) = cookie_value(&d) {
                    resigned += 1;
                    *value = v;
                }
            }
        }
    }
    let new_only = CookieKey::for_cookie(NEW.as_bytes(), "srv");
    let old_only = CookieKey::for_cookie(OLD.as_bytes(), "srv");
    let on_new =
        jar.iter().filter(|(v, _)| sticky::decode(&new_only, v.as_bytes(), POLICY, NOW + 9).is_ok()).count();
    let on_old =
        jar.iter().filter(|(v, _)| sticky::decode(&old_only, v.as_bytes(), POLICY, NOW + 9).is_ok()).count();
    println!(
        "rotation: {sessions} sessions, 7 phases × 2 rounds: moved {moved}, rejected {rejected}, re-signed {resigned}, signed with the new key at the end {on_new}"
    );
    assert_eq!((moved, rejected), (0, 0));
    assert_eq!((on_new, on_old), (sessions, 0));
}

#[test]
fn a_cookie_verified_by_a_verify_only_key_is_resolved_under_that_key_and_re_signed() {
    let old = config(&format!(r#""secret":"{OLD}""#));
    let rotated = config(&format!(r#""secret":"{NEW}","verify_secrets":[{{"secret":"{OLD}"}}]"#));
    for n in 0..50u8 {
        let first = decide(&old, &Req::default(), &AllUp, NOW, &mut || [n; 16]);
        let value = cookie_value(&first).unwrap();
        let d = decide(&rotated, &with_cookie(&value), &AllUp, NOW + 1, &mut || [0; 16]);
        assert_eq!(
            (d.kind, rotated.hosts[d.host].id.as_str()),
            (Kind::Pinned, old.hosts[first.host].id.as_str())
        );
        let fresh = cookie_value(&d).expect("re-signed with the signing key");
        let again = decide(&rotated, &with_cookie(&fresh), &AllUp, NOW + 2, &mut || [0; 16]);
        assert_eq!(
            (again.kind, again.host, again.set_cookie),
            (Kind::Pinned, d.host, None),
            "signed with the current key: not re-issued"
        );
        // Without the verify-only key the old cookie is foreign.
        let strict = config(&format!(r#""secret":"{NEW}""#));
        let d = decide(&strict, &with_cookie(&value), &AllUp, NOW + 1, &mut || [0; 16]);
        assert_eq!(d.rejected.cookie, Some(Rejection::BadSignature));
    }
}

#[test]
fn the_mac_names_the_cookie() {
    let srv = config(&format!(r#""secret":"{OLD}""#));
    let value = cookie_value(&decide(&srv, &Req::default(), &AllUp, NOW, &mut || [1; 16])).unwrap();
    let other_json = format!(
        r#"{{"hosts":[{}],"sources":[],"sticky_cookie":{{"name":"other","ttl_seconds":3600,"secret":"{OLD}"}},
        "target":{{"header":"x-gateway-destination-endpoint"}}}}"#,
        (0..5)
            .map(|i| format!(r#"{{"address":"10.0.0.{}:80","id":"h{i}"}}"#, i + 1))
            .collect::<Vec<_>>()
            .join(",")
    );
    let other = Config::parse(other_json.as_bytes(), |_| None).unwrap();
    let d = decide(&other, &req(&[("cookie", &format!("other={value}"))]), &AllUp, NOW, &mut || [2; 16]);
    assert_eq!(
        (d.kind, d.rejected.cookie),
        (Kind::New, Some(Rejection::BadSignature)),
        "replayed under another name"
    );
    let named = CookieKey::for_cookie(OLD.as_bytes(), "srv");
    assert!(sticky::decode(&named, value.as_bytes(), POLICY, NOW).is_ok());
    assert_eq!(
        sticky::decode(&CookieKey::for_cookie(OLD.as_bytes(), "sr"), value.as_bytes(), POLICY, NOW),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn cookies_signed_before_the_mac_named_the_cookie_are_honoured_and_re_signed() {
    let cfg = config(&format!(r#""secret":"{OLD}""#));
    let issued = decide(&cfg, &Req::default(), &AllUp, NOW, &mut || [3; 16]);
    let claims = claims_of(&cfg, &issued);
    // The same claims in the unnamed form, as the previous release signed them.
    let legacy = sticky::encode(&CookieKey::new(OLD.as_bytes()), &claims);
    let d = decide(&cfg, &with_cookie(&legacy), &AllUp, NOW + 1, &mut || [0; 16]);
    assert_eq!((d.kind, d.host, d.rejected.cookie), (Kind::Pinned, issued.host, None));
    let fresh = cookie_value(&d).expect("re-signed in the named form");
    assert_ne!(fresh, legacy);
    let (_, verified) =
        sticky::verify(&cfg.sticky.as_ref().unwrap().keys, fresh.as_bytes(), POLICY, NOW + 1).unwrap();
    assert!(!verified.needs_resigning());
    // The unnamed form under a different secret is still foreign.
    let foreign = sticky::encode(&CookieKey::new(NEW.as_bytes()), &claims);
    let d = decide(&cfg, &with_cookie(&foreign), &AllUp, NOW + 1, &mut || [0; 16]);
    assert_eq!(d.rejected.cookie, Some(Rejection::BadSignature));
}

#[test]
fn hashed_sessions_carry_a_keyed_session_id_at_the_murmur3_point() {
    let a = config(&format!(r#""secret":"{OLD}""#));
    let b = config(&format!(r#""secret":"{NEW}""#));
    for user in ["10.1.2.3", "42", "alice"] {
        let r = req(&[("x-user", user)]);
        let (da, db) =
            (decide(&a, &r, &AllUp, NOW, &mut || [0; 16]), decide(&b, &r, &AllUp, NOW, &mut || [0; 16]));
        let (h1, h2) = murmur3_x64_128(user.as_bytes(), 0);
        assert_eq!(
            (da.point, db.point, da.host),
            (h1, h1, db.host),
            "placement is the unkeyed murmur3 point"
        );
        let (ca, cb) = (claims_of(&a, &da), claims_of(&b, &db));
        let unkeyed: Vec<u8> = [h1.to_be_bytes(), h2.to_be_bytes()].concat();
        assert_ne!(ca.session_id.to_vec(), unkeyed, "{user}: recoverable offline from the cookie");
        assert_ne!(ca.session_id, cb.session_id, "{user}: the id depends on the secret");
        assert_eq!(ca.session_id, CookieKey::for_cookie(OLD.as_bytes(), "srv").session_id(user.as_bytes()));
        assert_eq!(ca.point, h1);
    }
}

#[test]
fn verify_secrets_config_errors() {
    let parse = |sticky: &str| {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sticky_cookie":{{"name":"srv","ttl_seconds":60,{sticky}}},
            "target":{{"header":"x-gateway-destination-endpoint"}}}}"#
        );
        Config::parse(json.as_bytes(), |var| (var == "SET").then(|| NEW.to_owned()))
    };
    let ok = parse(&format!(r#""secret":"{OLD}","verify_secrets":[{{"secret_env":"SET"}}]"#)).unwrap();
    assert_eq!(ok.sticky.unwrap().keys.len(), 2);
    assert_eq!(
        parse(&format!(r#""secret":"{OLD}","verify_secrets":[]"#)).unwrap().sticky.unwrap().keys.len(),
        1
    );
    let five: Vec<String> = (0..5).map(|i| format!(r#"{{"secret":"{i}{NEW}"}}"#)).collect();
    for (sticky, field, why) in [
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secret":"short"}}]"#),
            "sticky_cookie.verify_secrets[0].secret",
            "is 5 bytes, at least 32",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{}}]"#),
            "sticky_cookie.verify_secrets[0]",
            "needs secret or secret_env",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secret":"{NEW}","secret_env":"SET"}}]"#),
            "sticky_cookie.verify_secrets[0]",
            "not both",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secret_env":"UNSET"}}]"#),
            "sticky_cookie.verify_secrets[0].secret_env",
            "\"UNSET\" is not set",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secret":"{OLD}"}}]"#),
            "sticky_cookie.verify_secrets[0]",
            "is the signing key",
        ),
        (
            format!(r#""secret_env":"SET","verify_secrets":[{{"secret":"{NEW}"}}]"#),
            "sticky_cookie.verify_secrets[0]",
            "is the signing key",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secret":"{NEW}"}},{{"secret_env":"SET"}}]"#),
            "sticky_cookie.verify_secrets[1]",
            "repeats",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{}]"#, five.join(",")),
            "sticky_cookie.verify_secrets",
            "at most 4",
        ),
        (
            format!(r#""secret":"{OLD}","verify_secrets":[{{"secrets":"{NEW}"}}]"#),
            "sticky_cookie.verify_secrets[0]",
            "unknown field",
        ),
        (format!(r#""secret":"{OLD}","verify_secrets":"{NEW}""#), "sticky_cookie.verify_secrets", "sequence"),
    ] {
        let e = parse(&sticky).unwrap_err();
        assert!(e.field.starts_with(field) && e.reason.contains(why), "{sticky}: {e}");
        assert!(!e.to_string().contains(OLD) && !e.to_string().contains(NEW), "a secret was echoed: {e}");
    }
}

fn bearer(payload: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("Bearer {}.{}.sig", b64.encode(r#"{"alg":"none"}"#), b64.encode(payload))
}

fn jwt_config(source_extra: &str) -> Result<Config, session_router::config::ConfigError> {
    let json = format!(
        r#"{{"hosts":[{{"address":"10.0.0.1:80"}},{{"address":"10.0.0.2:80"}}],
        "sources":[{{"type":"jwt"{source_extra}}}],"target":{{"header":"x-gateway-destination-endpoint"}}}}"#
    );
    Config::parse(json.as_bytes(), |_| None)
}

#[test]
fn jwt_exp_has_a_configurable_leeway_defaulting_to_60_seconds() {
    use session_router::jwt::JwtError;
    let token = |exp: u64| bearer(&format!(r#"{{"sub":"alice","exp":{exp}}}"#));
    let kind = |cfg: &Config, exp: u64| {
        let d = decide(cfg, &req(&[("authorization", &token(exp))]), &AllUp, NOW, &mut || [0; 16]);
        (d.kind, d.rejected.jwt)
    };
    let default = jwt_config("").unwrap();
    assert_eq!(kind(&default, NOW - 59), (Kind::Hashed(0), None), "within jwt_authn's 60 s");
    assert_eq!(kind(&default, NOW - 60), (Kind::New, Some(JwtError::Expired)));
    let strict = jwt_config(r#","leeway_seconds":0"#).unwrap();
    assert_eq!(kind(&strict, NOW + 1), (Kind::Hashed(0), None));
    assert_eq!(kind(&strict, NOW), (Kind::New, Some(JwtError::Expired)));
    let wide = jwt_config(r#","leeway_seconds":3600"#).unwrap();
    assert_eq!(kind(&wide, NOW - 3599), (Kind::Hashed(0), None));
    assert_eq!(kind(&wide, NOW - 3600), (Kind::New, Some(JwtError::Expired)));
    for (extra, why) in [
        (r#","leeway_seconds":3601"#, "out of range 0..=3600"),
        (r#","leeway_seconds":-1"#, "invalid value"),
        (r#","leeway_seconds":"60""#, "invalid type"),
    ] {
        let e = jwt_config(extra).unwrap_err();
        assert!(e.to_string().contains(why) && e.field.starts_with("sources[0]"), "{extra}: {e}");
    }
}

#[test]
fn verified_cookies_answer_exactly_as_verify_does() {
    // The per-configuration cache of authenticated values: a hit skips the MAC, never the
    // lifetime checks, and answers only for the exact bytes that were verified.
    let idle = Policy { ttl_seconds: 3600, idle_timeout_seconds: Some(600) };
    let keys = [CookieKey::for_cookie(NEW.as_bytes(), "srv"), CookieKey::for_cookie(OLD.as_bytes(), "srv")];
    let claims = |i: u8| Claims {
        session_id: [i; 16],
        point: u64::from(i) << 40,
        host: [i; 8],
        expires_at: NOW + 3000,
        refreshed_at: NOW,
    };
    let cache = sticky::VerifiedCookies::new(keys.to_vec());
    let mut values: Vec<String> =
        (0..40).map(|i| sticky::encode(&keys[usize::from(i % 2)], &claims(i))).collect();
    // Tampered copies of valid values: every byte position, including the MAC characters the
    // cache indexes by, so some share an entry with their original.
    let original = values[0].clone();
    for at in [0, 10, 40, 80, 84, 86] {
        let mut v = original.clone().into_bytes();
        v[at] = if v[at] == b'A' { b'B' } else { b'A' };
        values.push(String::from_utf8(v).unwrap());
    }
    values.push("short".to_owned());
    let mut hits_expected = 0;
    for round in 0..3 {
        for now in [NOW, NOW + 599, NOW + 600, NOW + 3000, NOW - 61] {
            for v in &values {
                let want = sticky::verify(&keys, v.as_bytes(), idle, now);
                let got = cache.verify(v.as_bytes(), idle, now);
                assert_eq!(got, want, "round {round}, now {now}, value {v}");
            }
        }
        // After the first pass every valid value is stored (two of the 40 may share an entry and
        // evict each other): later passes are answered without the MAC.
        if round > 0 {
            hits_expected += 1;
        }
    }
    assert!(cache.hits() >= hits_expected * 5 * 30, "{} hits", cache.hits());
    // A tampered value is never a hit: each is authenticated and rejected every time.
    let before = cache.hits();
    for v in &values[40..46] {
        let got = cache.verify(v.as_bytes(), idle, NOW);
        assert!(got.is_err(), "{v}");
        assert_eq!(got, sticky::verify(&keys, v.as_bytes(), idle, NOW));
    }
    assert_eq!(cache.hits(), before);
}

#[test]
fn a_new_configuration_starts_with_no_verified_cookies() {
    // Verify-only keys removed by a reload: a value verified under the old configuration must be
    // authenticated again under the new one (and fail), not answered from a stale entry.
    let with_old = config(&format!(r#""secret_env":"NEW_KEY","verify_secrets":[{{"secret":"{OLD}"}}]"#));
    let old_signed = sticky::encode(&CookieKey::for_cookie(OLD.as_bytes(), "srv"), &{
        let d = decide(&with_old, &Req::default(), &AllUp, NOW, &mut || [7; 16]);
        claims_of(&with_old, &d)
    });
    // (Its host tag was made under the signing key, so the session moves; the value verifies.)
    for now in [NOW + 1, NOW + 2] {
        let d = decide(&with_old, &with_cookie(&old_signed), &AllUp, now, &mut || [0; 16]);
        assert_eq!(d.rejected.cookie, None);
    }
    assert!(with_old.sticky.as_ref().unwrap().verified.hits() >= 1);
    let new_only = config(r#""secret_env":"NEW_KEY""#);
    let d = decide(&new_only, &with_cookie(&old_signed), &AllUp, NOW + 3, &mut || [0; 16]);
    assert_eq!(d.rejected.cookie, Some(Rejection::BadSignature));
    let copied = with_old.clone();
    assert_eq!(copied.sticky.as_ref().unwrap().verified.hits(), 0, "a copy starts empty");
}
