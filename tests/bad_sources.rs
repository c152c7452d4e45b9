//! Malformed inputs to the key sources other than the JWT: the `JSESSIONID` cookie (rows C1–C20),
//! headers (H1–H8), the query string and the downstream address. Every case runs in-process, so a
//! panic anywhere fails the suite; each asserts the exact outcome of `router::decide` (see
//! `common::bad_inputs::check`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::bad_inputs::*;
use session_router::config::{MAX_KEY_BYTES, Source};
use session_router::router::{AllUp, target_value};

// ---- cookies: the JSESSIONID source -----------------------------------------------------------

#[test]
fn cookie_source_rows() {
    let cfg = base();
    let many: String = (0..200).map(|i| format!("c{i}=v{i}; ")).collect::<String>() + "JSESSIONID=last";
    let many_dups: String = (0..200).map(|i| format!("JSESSIONID=v{i}")).collect::<Vec<_>>().join("; ");
    let mut big = String::new();
    let mut i = 0;
    while big.len() < 60 * 1024 - 100 {
        big.push_str(&format!("c{i}={}; ", "x".repeat(64)));
        i += 1;
    }
    let just_under_60k = big.clone() + "JSESSIONID=deep";
    assert!(just_under_60k.len() < 60 * 1024 && just_under_60k.len() > 59 * 1024);
    let huge_value = format!("JSESSIONID={}", "k".repeat(60 * 1024));
    let at_cap = "k".repeat(MAX_KEY_BYTES);
    let over_cap = "k".repeat(MAX_KEY_BYTES + 1);
    let mut many_fields = req();
    for i in 0..150 {
        many_fields = many_fields.with("cookie", format!("c{i}=v"));
    }
    many_fields = many_fields.with("cookie", "JSESSIONID=field150");

    let cases = vec![
        ("C1 no cookie header, nothing else", req(), new_session()),
        (
            "C1 no cookie header, source address",
            req().with_source("192.0.2.7:40000"),
            hashed(IP, "192.0.2.7"),
        ),
        ("C2 empty cookie header", cookie(""), new_session()),
        ("C2 empty cookie header, JWT", cookie("").bearer(ALICE), alice()),
        ("C3 empty value falls through", cookie("JSESSIONID=").bearer(ALICE), alice()),
        ("C3 empty quoted value", cookie(r#"JSESSIONID="""#).bearer(ALICE), alice()),
        ("C4 no '='", cookie("JSESSIONID"), new_session()),
        ("C4 no '=' then header", user("u1").with("cookie", "JSESSIONID; a=1"), hashed(HEADER, "u1")),
        ("C5 empty name", cookie("=abc"), new_session()),
        ("C5 empty names", cookie("=; =abc; ="), new_session()),
        ("C6 conflicting duplicates", cookie("JSESSIONID=a; JSESSIONID=b"), new_session().other(1)),
        (
            "C6 conflicting duplicates, JWT",
            cookie("JSESSIONID=a; JSESSIONID=b").bearer(ALICE),
            alice().other(1),
        ),
        ("C6 duplicate empty and set", cookie("JSESSIONID=; JSESSIONID=a"), new_session().other(1)),
        ("C6 agreeing duplicates", cookie("JSESSIONID=a; x=1; JSESSIONID=a"), hashed(COOKIE, "a")),
        ("C6 200 conflicting duplicates", cookie(&many_dups), new_session().other(1)),
        (
            "C7 split over two fields",
            cookie("a=1; b=2").with("cookie", "JSESSIONID=split"),
            hashed(COOKIE, "split"),
        ),
        (
            "C7 conflict across two fields",
            cookie("JSESSIONID=x").with("cookie", "JSESSIONID=y").bearer(ALICE),
            alice().other(1),
        ),
        (
            "C7 agreement across two fields",
            cookie("JSESSIONID=x").with("cookie", "JSESSIONID=x"),
            hashed(COOKIE, "x"),
        ),
        ("C8 200 cookies", cookie(&many), hashed(COOKIE, "last")),
        ("C9 cookie header just under 60 KiB", cookie(&just_under_60k), hashed(COOKIE, "deep")),
        ("C9 60 KiB value is over the key cap", cookie(&huge_value).bearer(ALICE), alice().other(1)),
        ("C9 value exactly at the key cap", cookie(format!("JSESSIONID={at_cap}")), hashed(COOKIE, &at_cap)),
        ("C9 value one byte over the cap", cookie(format!("JSESSIONID={over_cap}")), new_session().other(1)),
        ("C10 151 cookie header fields", many_fields, hashed(COOKIE, "field150")),
        ("C11 quoted value is unwrapped", cookie(r#"JSESSIONID="quoted""#), hashed(COOKIE, "quoted")),
        ("C11 unterminated quote", cookie(r#"JSESSIONID="unterminated"#).bearer(ALICE), alice()),
        ("C11 unopened quote", cookie(r#"JSESSIONID=unopened""#).bearer(ALICE), alice()),
        (
            "C17 raw address as session key",
            cookie("JSESSIONID=169.254.169.254:80"),
            hashed(COOKIE, "169.254.169.254:80"),
        ),
        (
            "C17 raw v6 address as session key",
            cookie("JSESSIONID=[::1]:15000"),
            hashed(COOKIE, "[::1]:15000"),
        ),
        ("C18 ';' ends the value", cookie("JSESSIONID=a;b=c"), hashed(COOKIE, "a")),
        ("C18 ',' is part of the value", cookie("JSESSIONID=a,b"), hashed(COOKIE, "a,b")),
        ("C18 inner space kept", cookie("JSESSIONID=a b"), hashed(COOKIE, "a b")),
        ("C18 inner tab kept, outer trimmed", cookie("JSESSIONID=\ta\tb\t"), hashed(COOKIE, "a\tb")),
        ("C18 UTF-8", cookie("JSESSIONID=Grüße☃"), hashed(COOKIE, "Grüße☃")),
        ("C18 invalid UTF-8", cookie(b"JSESSIONID=\xff\xfe\x80"), hashed(COOKIE, b"\xff\xfe\x80")),
        ("C18 %00 is not decoded", cookie("JSESSIONID=%00"), hashed(COOKIE, "%00")),
        ("C18 %0d%0a is not decoded", cookie("JSESSIONID=a%0d%0ab"), hashed(COOKIE, "a%0d%0ab")),
        ("C18 raw NUL", cookie(b"JSESSIONID=a\0b"), hashed(COOKIE, b"a\0b")),
        ("C18 raw CRLF inside", cookie(b"JSESSIONID=a\r\nb"), hashed(COOKIE, b"a\r\nb")),
        (
            "C19 case variants and prefix spoofing",
            cookie("jsessionid=x; Jsessionid=y; JSESSIONID_=z; __Host-JSESSIONID=w; __host-jsessionid=v"),
            new_session(),
        ),
        (
            "C19 lowercase variant beside the real one",
            cookie("jsessionid=x; JSESSIONID=real"),
            hashed(COOKIE, "real"),
        ),
        ("C20 client-sent attributes", cookie("JSESSIONID=x; Path=/; Secure"), hashed(COOKIE, "x")),
        (
            "C20 more client-sent attributes",
            cookie("JSESSIONID=x; Path=/; Domain=evil.example; HttpOnly; Max-Age=0; SameSite=None"),
            hashed(COOKIE, "x"),
        ),
        ("C20 '=' inside the value", cookie("JSESSIONID=a=b=c"), hashed(COOKIE, "a=b=c")),
    ];
    check_all(&cfg, &cases);
}

// ---- headers ----------------------------------------------------------------------------------

#[test]
fn header_rows() {
    let cfg = base();
    let at_cap = "u".repeat(MAX_KEY_BYTES);
    let cases = vec![
        (
            "H1 spoofed target header",
            req().with("x-envoy-original-dst-host", "169.254.169.254:80"),
            new_session(),
        ),
        (
            "H2 spoofed target header three times",
            req()
                .with("x-envoy-original-dst-host", "169.254.169.254:80")
                .with("x-envoy-original-dst-host", "127.0.0.1:15000")
                .with("x-envoy-original-dst-host", "[::1]:15000"),
            new_session(),
        ),
        ("H3 spoofed claim header without a JWT", req().with("x-jwt-claim-sub", "admin"), new_session()),
        ("H4 leading and trailing whitespace", user("  u1 \t"), hashed(HEADER, "u1")),
        ("H4 trailing CRLF", user("u1\r\n"), hashed(HEADER, "u1")),
        ("H4 NUL inside", user(b"a\0b"), hashed(HEADER, b"a\0b")),
        ("H4 obs-fold inside", user("a\r\n b"), hashed(HEADER, "a\r\n b")),
        ("H4 duplicates equal after trimming", user(" u1").with("x-user-id", "u1 "), hashed(HEADER, "u1")),
        ("H6 comma-separated list is one key", user("a,b"), hashed(HEADER, "a,b")),
        ("H conflicting duplicates", user("a").with("x-user-id", "b"), new_session().other(1)),
        (
            "H conflicting duplicates fall through to the query",
            user("a").with("x-user-id", "b").with(":path", "/?sid=q1"),
            hashed(QUERY, "q1").other(1),
        ),
        (
            "H three values, one differs",
            user("a").with("x-user-id", "a").with("x-user-id", "c").with_source("192.0.2.1:1"),
            hashed(IP, "192.0.2.1").other(1),
        ),
        ("H agreeing duplicates", user("a").with("x-user-id", "a"), hashed(HEADER, "a")),
        ("H whitespace only", user("   \t "), new_session()),
        ("H empty value", user(""), new_session()),
        ("H 5000-byte value", user("u".repeat(5000)), new_session().other(1)),
        ("H value exactly at the cap", user(&at_cap), hashed(HEADER, &at_cap)),
        ("H value one over the cap", user("u".repeat(MAX_KEY_BYTES + 1)), new_session().other(1)),
        ("H7 mixed-case name is a different header", req().with("X-User-Id", "u1"), new_session()),
    ];
    check_all(&cfg, &cases);
}

#[test]
fn h7_configured_header_names_are_lowercased() {
    let json = config_json(&HOSTS, SECRET, "").replace(r#""name":"x-user-id""#, r#""name":"X-User-Id""#);
    let cfg = parse(&json);
    assert_eq!(cfg.sources[HEADER], Source::Header { name: "x-user-id".to_owned() }, "H7");
    check(&cfg, "H7 lowercased config name", &user("u1"), &hashed(HEADER, "u1"));
}

#[test]
fn h1_target_never_echoes_client_input() {
    let cfg = base();
    let configured: Vec<&str> = cfg.hosts.iter().map(|h| h.header_value.as_str()).collect();
    assert_eq!(configured, HOSTS, "hosts sorted by id (= address)");
    let spoof = ["169.254.169.254:80", "127.0.0.1:15000", "10.0.0.1:8080,10.0.0.2:8080", "10.0.0.9:80"];
    for s in spoof {
        for r in [req().with("x-envoy-original-dst-host", s), cookie(format!("srv={s}")), user(s)] {
            let d = run(&cfg, &r, NOW);
            let t = target_value(&cfg, &d, &AllUp);
            assert!(configured.contains(&t.as_ref()), "H1/H5/H6: {s:?} produced target {t:?}");
        }
    }
}

// ---- query ------------------------------------------------------------------------------------

#[test]
fn query_rows() {
    let cfg = base();
    let cases = vec![
        ("Q %zz", path("/?sid=%zz"), new_session().other(1)),
        (
            "Q %zz, then source ip",
            path("/?sid=%zz").with_source("192.0.2.9:1"),
            hashed(IP, "192.0.2.9").other(1),
        ),
        ("Q %4", path("/?sid=%4"), new_session().other(1)),
        ("Q trailing %", path("/?sid=abc%"), new_session().other(1)),
        ("Q %%", path("/?sid=%%41"), new_session().other(1)),
        ("Q malformed first occurrence wins", path("/?sid=%zz&sid=ok"), new_session().other(1)),
        ("Q malformed other name is skipped", path("/?a%zz=1&sid=ok"), hashed(QUERY, "ok")),
        ("Q '+' is a space", path("/?sid=a+b"), hashed(QUERY, "a b")),
        ("Q %2B is a plus", path("/?sid=a%2Bb"), hashed(QUERY, "a+b")),
        ("Q %00", path("/?sid=%00"), hashed(QUERY, [0u8])),
        ("Q %0d%0a", path("/?sid=a%0d%0ab"), hashed(QUERY, "a\r\nb")),
        ("Q truncated UTF-8", path("/?sid=%E2%82"), hashed(QUERY, [0xe2u8, 0x82])),
        ("Q repeated name, first wins", path("/?sid=first&sid=second"), hashed(QUERY, "first")),
        ("Q empty value is absent", path("/?sid="), new_session()),
        ("Q name without '='", path("/?sid"), new_session()),
        ("Q empty first value is not skipped", path("/?sid=&sid=x"), new_session()),
        ("Q encoded name", path("/?s%69d=v"), hashed(QUERY, "v")),
        ("Q name is case-sensitive", path("/?SID=x"), new_session()),
        ("Q after a fragment", path("/#?sid=x"), new_session()),
        ("Q fragment ends the value", path("/?sid=x#y"), hashed(QUERY, "x")),
        ("Q 5000-byte value", path(format!("/?sid={}", "q".repeat(5000))), new_session().other(1)),
        ("Q no :path", req(), new_session()),
    ];
    check_all(&cfg, &cases);
}

#[test]
fn source_ip_rows() {
    let cfg = base();
    let cases = vec![
        ("IP v4 with port", req().with_source("10.1.2.3:5555"), hashed(IP, "10.1.2.3")),
        ("IP v6 with port", req().with_source("[::1]:15000"), hashed(IP, "::1")),
        ("IP v6 canonicalised", req().with_source("[0:0:0:0:0:0:0:1]:1"), hashed(IP, "::1")),
        ("IP bare v4", req().with_source("10.1.2.3"), hashed(IP, "10.1.2.3")),
        ("IP garbage", req().with_source("not-an-ip"), new_session()),
        ("IP empty", req().with_source(""), new_session()),
        ("IP unclosed bracket", req().with_source("[::1:80"), new_session()),
        ("IP pipe path", req().with_source("unix:/tmp/envoy.sock"), new_session()),
    ];
    check_all(&cfg, &cases);
}
