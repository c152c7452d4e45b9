//! Regression suite for the malformed inputs listed in the shared BAD_INPUTS.md list (Envoy, HAProxy, OWASP, RFC 8725): cookie rows
//! C1–C20, JWT rows J1–J15, header rows H1–H8 and configuration rows K1–K12. Every case names
//! its row id in its label; every case runs in-process, so a panic anywhere fails the suite.
//!
//! Request cases assert the exact outcome of `router::decide`: the kind, the session key that was
//! hashed (via the ring point), that the host is the ring owner of that point, which rejection was
//! recorded, and that a fresh sticky cookie was issued that pins back to the same host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use session_router::config::{Config, ConfigError, MAX_KEY_BYTES, Source};
use session_router::jwt::{JwtError, MAX_TOKEN_BYTES};
use session_router::murmur3::{hash64, murmur3_x64_128};
use session_router::router::{AllUp, Decision, Kind, Rejections, RequestView, decide, target_value};
use session_router::sticky::{self, Claims, ENCODED_LEN, MAX_SKEW_SECONDS, Rejection};

// ---- fixtures ---------------------------------------------------------------------------------

const NOW: u64 = 1_700_000_000;
const TTL: u64 = 3600;
const POLICY: sticky::Policy = sticky::Policy { ttl_seconds: TTL, idle_timeout_seconds: None };
const IDLE: u64 = 600;
const SECRET: &str = "bad-inputs-secret-0123456789abcdef0123";
const OTHER_SECRET: &str = "another-secret-entirely-0123456789abcdef";
const RANDOM_ID: [u8; 16] = [0x5a; 16];
const HOSTS: [&str; 3] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
const HOSTS4: [&str; 4] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"];

/// Source indices in `SOURCES` order.
const COOKIE: usize = 0;
const JWT: usize = 1;
const HEADER: usize = 2;
const QUERY: usize = 3;
const IP: usize = 4;
// `leeway_seconds: 0`: the J12 rows check expiry to the second (the default 60 s leeway is
// checked in tests/trust.rs).
const SOURCES: &str = r#"[{"type":"cookie","name":"JSESSIONID"},{"type":"jwt","claim":"sub","leeway_seconds":0},
    {"type":"header","name":"x-user-id"},{"type":"query","name":"sid"},{"type":"source_ip"}]"#;

fn config_json(hosts: &[&str], secret: &str, sticky_extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|a| format!(r#"{{"address":"{a}"}}"#)).collect();
    format!(
        r#"{{"hosts":[{}],"sources":{SOURCES},
            "sticky_cookie":{{"name":"srv","ttl_seconds":{TTL},"secret":"{secret}"{sticky_extra}}},
            "target":{{"header":"x-envoy-original-dst-host"}},
            "placement":{{"algorithm":"ring"}}}}"#,
        hosts.join(",")
    )
}

fn parse(json: &str) -> Config {
    Config::parse(json.as_bytes(), |_| None).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

fn base() -> Config {
    parse(&config_json(&HOSTS, SECRET, ""))
}

fn idle_config() -> Config {
    parse(&config_json(&HOSTS, SECRET, &format!(r#","idle_timeout_seconds":{IDLE}"#)))
}

#[derive(Clone, Default)]
struct Req {
    headers: Vec<(String, Vec<u8>)>,
    src: Option<String>,
}

impl RequestView for Req {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
    fn source_address(&self) -> Option<String> {
        self.src.clone()
    }
}

impl Req {
    fn h(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }
    fn src(mut self, address: &str) -> Req {
        self.src = Some(address.to_owned());
        self
    }
}

fn req() -> Req {
    Req::default()
}

fn cookie(value: impl AsRef<[u8]>) -> Req {
    req().h("cookie", value)
}

fn path(p: impl AsRef<[u8]>) -> Req {
    req().h(":path", p)
}

fn user(v: impl AsRef<[u8]>) -> Req {
    req().h("x-user-id", v)
}

// ---- JWT builders -----------------------------------------------------------------------------

fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const JWT_HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

fn jwt_parts(header: &str, payload: &[u8], signature: &str) -> String {
    format!("{}.{}.{signature}", b64u(header.as_bytes()), b64u(payload))
}

fn jwt(payload: &str) -> String {
    jwt_parts(JWT_HEADER, payload.as_bytes(), "sig")
}

trait WithAuth {
    fn auth(self, value: impl AsRef<[u8]>) -> Req;
    fn bearer(self, payload: &str) -> Req;
}

impl WithAuth for Req {
    fn auth(self, value: impl AsRef<[u8]>) -> Req {
        self.h("authorization", value)
    }
    fn bearer(self, payload: &str) -> Req {
        self.auth(format!("Bearer {}", jwt(payload)))
    }
}

fn auth(value: impl AsRef<[u8]>) -> Req {
    req().auth(value)
}

fn bearer(payload: &str) -> Req {
    req().bearer(payload)
}

/// Adds `x-user-id: fb`, the key used when the JWT is rejected.
fn fb(r: Req) -> Req {
    r.h("x-user-id", "fb")
}

const ALICE: &str = r#"{"sub":"alice"}"#;

/// Routed by the token's `sub`.
fn alice() -> Want {
    hashed(JWT, "alice")
}

/// The token was not used: routed by `x-user-id: fb`.
fn fell() -> Want {
    hashed(HEADER, "fb")
}

// ---- expectations -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Want {
    kind: Kind,
    /// The session key whose murmur3 is the decision's point (`None` for a new session).
    key: Option<Vec<u8>>,
    rejected: Rejections,
}

fn hashed(source: usize, key: impl AsRef<[u8]>) -> Want {
    Want { kind: Kind::Hashed(source), key: Some(key.as_ref().to_vec()), rejected: Rejections::default() }
}

fn new_session() -> Want {
    Want { kind: Kind::New, key: None, rejected: Rejections::default() }
}

impl Want {
    fn cookie(mut self, why: Rejection) -> Want {
        self.rejected.cookie = Some(why);
        self
    }
    fn jwt(mut self, why: JwtError) -> Want {
        self.rejected.jwt = Some(why);
        self
    }
    fn other(mut self, n: u32) -> Want {
        self.rejected.other = n;
        self
    }
}

fn run(cfg: &Config, r: &Req, now: u64) -> Decision {
    decide(cfg, r, &AllUp, now, &mut || RANDOM_ID)
}

/// The sticky cookie value in a decision's `Set-Cookie` (between `srv=` and `;`).
fn issued(d: &Decision) -> String {
    let line = d.set_cookie.as_deref().expect("a Set-Cookie");
    let value = line.strip_prefix("srv=").unwrap_or_else(|| panic!("{line:?} is not the srv cookie"));
    value.split(';').next().unwrap().to_owned()
}

/// Decides `r` at `NOW` and asserts every observable part of the outcome against `want`.
fn check(cfg: &Config, id: &str, r: &Req, want: &Want) -> Decision {
    let d = run(cfg, r, NOW);
    assert_eq!(d.kind, want.kind, "{id}: kind");
    assert_eq!(d.rejected, want.rejected, "{id}: rejections");
    assert!(d.host < cfg.hosts.len(), "{id}: host index {} out of range", d.host);
    match (&want.key, want.kind) {
        (Some(key), _) => {
            let expected = murmur3_x64_128(key, 0).0;
            assert_eq!(d.point, expected, "{id}: the hashed key is not {:?}", String::from_utf8_lossy(key));
        }
        (None, Kind::New) => assert_eq!(d.point, hash64(&RANDOM_ID), "{id}: a new session's point"),
        _ => {}
    }
    if matches!(d.kind, Kind::Hashed(_) | Kind::New) {
        assert_eq!(d.host, cfg.placement.owner(d.point), "{id}: not the ring owner of the point");
        // A fresh cookie is issued, and it pins the session back to the same host.
        let value = issued(&d);
        let back = run(cfg, &cookie(format!("srv={value}")), NOW + 1);
        assert_eq!((back.kind, back.host), (Kind::Pinned, d.host), "{id}: the issued cookie does not pin");
    }
    // The target header only ever names a configured host.
    let target = target_value(cfg, &d, &AllUp);
    assert!(cfg.hosts.iter().any(|h| h.header_value == target), "{id}: target {target:?} not configured");
    d
}

fn check_all(cfg: &Config, cases: &[(&str, Req, Want)]) {
    for (id, r, want) in cases {
        check(cfg, id, r, want);
    }
}

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
        many_fields = many_fields.h("cookie", format!("c{i}=v"));
    }
    many_fields = many_fields.h("cookie", "JSESSIONID=field150");

    let cases = vec![
        ("C1 no cookie header, nothing else", req(), new_session()),
        ("C1 no cookie header, source address", req().src("192.0.2.7:40000"), hashed(IP, "192.0.2.7")),
        ("C2 empty cookie header", cookie(""), new_session()),
        ("C2 empty cookie header, JWT", cookie("").bearer(ALICE), alice()),
        ("C3 empty value falls through", cookie("JSESSIONID=").bearer(ALICE), alice()),
        ("C3 empty quoted value", cookie(r#"JSESSIONID="""#).bearer(ALICE), alice()),
        ("C4 no '='", cookie("JSESSIONID"), new_session()),
        ("C4 no '=' then header", user("u1").h("cookie", "JSESSIONID; a=1"), hashed(HEADER, "u1")),
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
            cookie("a=1; b=2").h("cookie", "JSESSIONID=split"),
            hashed(COOKIE, "split"),
        ),
        (
            "C7 conflict across two fields",
            cookie("JSESSIONID=x").h("cookie", "JSESSIONID=y").bearer(ALICE),
            alice().other(1),
        ),
        (
            "C7 agreement across two fields",
            cookie("JSESSIONID=x").h("cookie", "JSESSIONID=x"),
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

// ---- JWT --------------------------------------------------------------------------------------

#[test]
fn jwt_rows() {
    use JwtError::*;
    let cfg = base();
    let valid = jwt(ALICE);
    let payload = b64u(ALICE.as_bytes());
    let header = b64u(JWT_HEADER.as_bytes());
    let with_payload = |p: &str| auth(format!("Bearer {header}.{p}.sig"));
    let with_header = |h: &str| auth(format!("Bearer {}", jwt_parts(h, ALICE.as_bytes(), "s")));
    let with_sig = |s: &str| auth(format!("Bearer {}", jwt_parts(JWT_HEADER, ALICE.as_bytes(), s)));
    let sub = |s: &str| bearer(&format!(r#"{{"sub":"{s}"}}"#));
    let exp = |e: &str| bearer(&format!(r#"{{"sub":"alice","exp":{e}}}"#));
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let padded = base64::engine::general_purpose::URL_SAFE.encode(br#"{"sub":"pad"}"#);

    let cases = vec![
        // J1: scheme parsing; schemes are case-insensitive.
        ("J1 'Bearer' without a token", fb(auth("Bearer")), fell()),
        ("J1 'Bearer' and spaces", fb(auth("Bearer    ")), fell()),
        ("J1 lowercase scheme", auth(format!("bearer {valid}")), alice()),
        ("J1 uppercase scheme", auth(format!("BEARER {valid}")), alice()),
        ("J1 two spaces before the token", auth(format!("Bearer  {valid}")), alice()),
        ("J1 trailing whitespace", auth(format!("Bearer {valid}  ")), alice()),
        ("J1 Basic scheme", fb(auth("Basic dXNlcjpwYXNz")), fell()),
        ("J1 other scheme", fb(auth(format!("Token {valid}"))), fell()),
        ("J1 token without a scheme", fb(auth(&valid)), fell()),
        ("J1 Basic first, Bearer second", auth("Basic dXNlcjpwYXNz").bearer(ALICE), alice()),
        // J2
        ("J2 empty authorization header", fb(auth("")), fell()),
        // J3: segment count.
        ("J3 one segment", fb(auth("Bearer abc")), fell().jwt(Segments)),
        ("J3 two segments", fb(auth("Bearer a.b")), fell().jwt(Segments)),
        ("J3 four segments", fb(auth("Bearer a.b.c.d")), fell().jwt(Segments)),
        ("J3 JWE, five segments", fb(auth("Bearer aaa.bbb.ccc.ddd.eee")), fell().jwt(Segments)),
        ("J3 valid token plus a trailing dot", fb(auth(format!("Bearer {valid}."))), fell().jwt(Segments)),
        ("J3 three empty segments", fb(auth("Bearer ..")), fell().jwt(Json)),
        // J4: size cap before decoding.
        ("J4 10240-char token", fb(auth(format!("Bearer {}", "a".repeat(10_240)))), fell().jwt(TooLarge)),
        ("J4 well-formed token over 8 KiB", fb(sub(&"p".repeat(7000))), fell().jwt(TooLarge)),
        // J5: base64url.
        (
            "J5 '+' inside the payload",
            fb(with_payload(&format!("{}+{}", &payload[..4], &payload[4..]))),
            fell().jwt(Base64),
        ),
        (
            "J5 '=' inside the payload",
            fb(with_payload(&format!("{}={}", &payload[..4], &payload[4..]))),
            fell().jwt(Base64),
        ),
        ("J5 trailing junk", fb(with_payload(&format!("{payload}!!"))), fell().jwt(Base64)),
        (
            "J5 '+/' alphabet",
            fb(with_payload(&STANDARD_NO_PAD.encode(br#"{"sub":"a>>?"}"#))),
            fell().jwt(Base64),
        ),
        ("J5 padded payload is tolerated", with_payload(&padded), hashed(JWT, "pad")),
        ("J5 over-padded payload", fb(with_payload(&format!("{padded}=="))), fell().jwt(Base64)),
        // J6, J7: JSON.
        ("J6 payload not JSON", fb(with_payload(&b64u(b"this is not a json"))), fell().jwt(Json)),
        ("J7 payload []", fb(bearer("[]")), fell().jwt(Json)),
        ("J7 payload string", fb(bearer(r#""str""#)), fell().jwt(Json)),
        ("J7 payload number", fb(bearer("123")), fell().jwt(Json)),
        ("J7 payload null", fb(bearer("null")), fell().jwt(Json)),
        ("J7 payload empty", fb(bearer("")), fell().jwt(Json)),
        ("J7 data after the object", fb(bearer(r#"{"sub":"alice"} {}"#)), fell().jwt(Json)),
        ("J7 trailing whitespace is fine", bearer("{\"sub\":\"alice\"}\n "), alice()),
        // J8: alg is ignored (decoded, never verified).
        ("J8 alg none", with_header(r#"{"alg":"none"}"#), alice()),
        ("J8 alg missing", with_header("{}"), alice()),
        ("J8 alg 256", with_header(r#"{"alg":256}"#), alice()),
        ("J8 alg InvalidAlg", with_header(r#"{"alg":"InvalidAlg"}"#), alice()),
        // J9: the claim's type.
        ("J9 sub missing", fb(bearer(r#"{"iss":"x"}"#)), fell().jwt(ClaimMissing)),
        ("J9 sub only in a nested object", fb(bearer(r#"{"x":{"sub":"alice"}}"#)), fell().jwt(ClaimMissing)),
        ("J9 sub null", fb(bearer(r#"{"sub":null}"#)), fell().jwt(ClaimNotString)),
        ("J9 sub number", fb(bearer(r#"{"sub":123456}"#)), fell().jwt(ClaimNotString)),
        ("J9 sub array", fb(bearer(r#"{"sub":["alice"]}"#)), fell().jwt(ClaimNotString)),
        ("J9 sub object", fb(bearer(r#"{"sub":{"id":"alice"}}"#)), fell().jwt(ClaimNotString)),
        ("J9 sub bool", fb(bearer(r#"{"sub":true}"#)), fell().jwt(ClaimNotString)),
        // J10: the claim's value.
        ("J10 sub empty falls through", fb(sub("")), fell()),
        ("J10 sub 5000 chars is over the key cap", fb(sub(&"s".repeat(5000))), fell().other(1)),
        ("J10 sub 8000 chars: token too large", fb(sub(&"s".repeat(8000))), fell().jwt(TooLarge)),
        ("J10 sub with NUL", sub(r"a\u0000b"), hashed(JWT, b"a\0b")),
        ("J10 sub with CRLF", sub(r"a\r\nb"), hashed(JWT, "a\r\nb")),
        ("J10 sub emoji", sub(r"\ud83d\ude00"), hashed(JWT, "😀")),
        ("J10 sub RTL override", sub(r"a\u202eb"), hashed(JWT, "a\u{202e}b")),
        ("J10 sub lone surrogate", fb(sub(r"\ud800")), fell().jwt(Json)),
        // J11: duplicate names are rejected, not guessed.
        ("J11 duplicate sub", fb(bearer(r#"{"sub":"a","sub":"b"}"#)), fell().jwt(Json)),
        ("J11 duplicate sub, same value", fb(bearer(r#"{"sub":"a","sub":"a"}"#)), fell().jwt(Json)),
        ("J11 duplicate sub via an escape", fb(bearer(r#"{"sub":"a","s\u0075b":"b"}"#)), fell().jwt(Json)),
        ("J11 duplicate exp", fb(bearer(r#"{"sub":"a","exp":9999999999,"exp":1}"#)), fell().jwt(Json)),
        // J12: time claims.
        ("J12 exp in the past", fb(exp(&(NOW - 1).to_string())), fell().jwt(Expired)),
        ("J12 exp equal to now", fb(exp(&NOW.to_string())), fell().jwt(Expired)),
        ("J12 exp in the future", exp(&(NOW + 1).to_string()), alice()),
        ("J12 exp as string", fb(exp(r#""9999999999""#)), fell().jwt(BadExp)),
        ("J12 exp null", fb(exp("null")), fell().jwt(BadExp)),
        ("J12 exp negative", fb(exp("-1")), fell().jwt(Expired)),
        ("J12 exp 2.001e+206", exp("2.001e+206"), alice()),
        ("J12 exp 1234.5678", fb(exp("1234.5678")), fell().jwt(Expired)),
        ("J12 exp beyond u64", exp("99999999999999999999999"), alice()),
        ("J12 exp out of f64 range", fb(exp("1e400")), fell().jwt(Json)),
        ("J12 nbf in the future is not checked", bearer(r#"{"sub":"alice","nbf":9999999999}"#), alice()),
        // J13: nesting and big literals; no recursion blow-up either way.
        ("J13 10k '[' is over the size cap", fb(bearer(&"[".repeat(10_000))), fell().jwt(TooLarge)),
        (
            "J13 3000-deep array in another claim",
            bearer(&format!(r#"{{"x":{},"sub":"alice"}}"#, nested(3000))),
            alice(),
        ),
        (
            "J13 3000-deep array as sub",
            fb(bearer(&format!(r#"{{"sub":{}}}"#, nested(3000)))),
            fell().jwt(Json),
        ),
        ("J13 3000-digit number", bearer(&format!(r#"{{"sub":"alice","n":{}}}"#, "9".repeat(3000))), alice()),
        // J14: the signature is never decoded.
        ("J14 signature not base64", with_sig("inv@lid!signature"), alice()),
        ("J14 empty signature", with_sig(""), alice()),
        ("J14 header segment not base64", auth(format!("Bearer %%%.{payload}.sig")), alice()),
        // J15: precedence is config order; within the JWT source, the first token.
        ("J15 cookie before JWT", cookie("JSESSIONID=bob").bearer(ALICE), hashed(COOKIE, "bob")),
        ("J15 two bearer tokens: the first is used", bearer(ALICE).bearer(r#"{"sub":"mallory"}"#), alice()),
        (
            "J15 a bad first token hides a good second",
            fb(auth("Bearer a.b").bearer(ALICE)),
            fell().jwt(Segments),
        ),
    ];
    check_all(&cfg, &cases);
}

#[test]
fn j4_token_length_boundary() {
    // The longest well-formed token at or under MAX_TOKEN_BYTES is used; the next one is not.
    let cfg = base();
    let token = |n: usize| jwt(&format!(r#"{{"sub":"alice","p":"{}"}}"#, "p".repeat(n)));
    let n = (0..8192).rev().find(|&n| token(n).len() <= MAX_TOKEN_BYTES).unwrap();
    let (fits, over) = (token(n), token(n + 1));
    assert!(fits.len() <= MAX_TOKEN_BYTES && over.len() > MAX_TOKEN_BYTES);
    check(&cfg, "J4 at the cap", &req().auth(format!("Bearer {fits}")), &alice());
    let r = fb(req().auth(format!("Bearer {over}")));
    check(&cfg, "J4 over the cap", &r, &fell().jwt(JwtError::TooLarge));
}

// ---- headers ----------------------------------------------------------------------------------

#[test]
fn header_rows() {
    let cfg = base();
    let at_cap = "u".repeat(MAX_KEY_BYTES);
    let cases = vec![
        (
            "H1 spoofed target header",
            req().h("x-envoy-original-dst-host", "169.254.169.254:80"),
            new_session(),
        ),
        (
            "H2 spoofed target header three times",
            req()
                .h("x-envoy-original-dst-host", "169.254.169.254:80")
                .h("x-envoy-original-dst-host", "127.0.0.1:15000")
                .h("x-envoy-original-dst-host", "[::1]:15000"),
            new_session(),
        ),
        ("H3 spoofed claim header without a JWT", req().h("x-jwt-claim-sub", "admin"), new_session()),
        ("H4 leading and trailing whitespace", user("  u1 \t"), hashed(HEADER, "u1")),
        ("H4 trailing CRLF", user("u1\r\n"), hashed(HEADER, "u1")),
        ("H4 NUL inside", user(b"a\0b"), hashed(HEADER, b"a\0b")),
        ("H4 obs-fold inside", user("a\r\n b"), hashed(HEADER, "a\r\n b")),
        ("H4 duplicates equal after trimming", user(" u1").h("x-user-id", "u1 "), hashed(HEADER, "u1")),
        ("H6 comma-separated list is one key", user("a,b"), hashed(HEADER, "a,b")),
        ("H conflicting duplicates", user("a").h("x-user-id", "b"), new_session().other(1)),
        (
            "H conflicting duplicates fall through to the query",
            user("a").h("x-user-id", "b").h(":path", "/?sid=q1"),
            hashed(QUERY, "q1").other(1),
        ),
        (
            "H three values, one differs",
            user("a").h("x-user-id", "a").h("x-user-id", "c").src("192.0.2.1:1"),
            hashed(IP, "192.0.2.1").other(1),
        ),
        ("H agreeing duplicates", user("a").h("x-user-id", "a"), hashed(HEADER, "a")),
        ("H whitespace only", user("   \t "), new_session()),
        ("H empty value", user(""), new_session()),
        ("H 5000-byte value", user("u".repeat(5000)), new_session().other(1)),
        ("H value exactly at the cap", user(&at_cap), hashed(HEADER, &at_cap)),
        ("H value one over the cap", user("u".repeat(MAX_KEY_BYTES + 1)), new_session().other(1)),
        ("H7 mixed-case name is a different header", req().h("X-User-Id", "u1"), new_session()),
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
        for r in [req().h("x-envoy-original-dst-host", s), cookie(format!("srv={s}")), user(s)] {
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
        ("Q %zz, then source ip", path("/?sid=%zz").src("192.0.2.9:1"), hashed(IP, "192.0.2.9").other(1)),
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
        ("IP v4 with port", req().src("10.1.2.3:5555"), hashed(IP, "10.1.2.3")),
        ("IP v6 with port", req().src("[::1]:15000"), hashed(IP, "::1")),
        ("IP v6 canonicalised", req().src("[0:0:0:0:0:0:0:1]:1"), hashed(IP, "::1")),
        ("IP bare v4", req().src("10.1.2.3"), hashed(IP, "10.1.2.3")),
        ("IP garbage", req().src("not-an-ip"), new_session()),
        ("IP empty", req().src(""), new_session()),
        ("IP unclosed bracket", req().src("[::1:80"), new_session()),
        ("IP pipe path", req().src("unix:/tmp/envoy.sock"), new_session()),
    ];
    check_all(&cfg, &cases);
}

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
        let d = run(&cfg, &cookie(format!("srv={a}")).h("x-user-id", "u1"), NOW);
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
    for request in [cookie(format!("srv={stale}")), cookie(format!("srv={stale}")).h("x-user-id", "u1")] {
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
    pinned("C7 sticky cookie in a second field", cookie("a=1").h("cookie", format!("srv={value}")), None);
    pinned(
        "C6 tampered, then valid",
        cookie(format!("srv={bad}; srv={value}")),
        Some(Rejection::BadSignature),
    );
    pinned("C6 valid, then tampered", cookie(format!("srv={value}; srv={bad}")), None);
    pinned("C6 same valid cookie twice", cookie(format!("srv={value}; srv={value}")), None);
    pinned(
        "C6 tampered in one field, valid in another",
        cookie(format!("srv={bad}")).h("cookie", format!("srv={value}")),
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

// ---- configuration ----------------------------------------------------------------------------

/// A distinct unicast `ip:port` for host `i`.
fn host_address(i: usize) -> String {
    format!("10.{}.{}.{}:80", i / 250 / 250, i / 250 % 250, i % 250 + 1)
}

const MIN: &str = r#"{"hosts":[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"}],
    "sources":[{"type":"source_ip"}],
    "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
    "target":{"header":"x-envoy-original-dst-host"}}"#;

fn min() -> Value {
    serde_json::from_str(MIN).unwrap()
}

fn with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = min();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn env(var: &str) -> Option<String> {
    match var {
        "SR_SECRET" => Some("env-secret-0123456789abcdef0123456789".to_owned()),
        "SR_SHORT" => Some("short".to_owned()),
        _ => None,
    }
}

fn config_err(json: &[u8]) -> Result<ConfigError, String> {
    match Config::parse(json, env) {
        Ok(_) => Err("accepted".to_owned()),
        Err(e) => Ok(e),
    }
}

#[test]
fn k_rows_are_rejected_with_the_field_and_value() {
    assert!(Config::parse(MIN.as_bytes(), env).is_ok(), "the base config is valid");
    let bad_address = |a: &str| with(|v| v["hosts"][1]["address"] = json!(a));
    let host = |h: Value| with(|v| v["hosts"][1] = h);
    let weight = |w: Value| with(|v| v["hosts"][1]["weight"] = w);
    let sticky = |k: &str, x: Value| with(|v| v["sticky_cookie"][k] = x);
    let no_secret = |k: &str, x: Value| {
        with(|v| {
            v["sticky_cookie"].as_object_mut().unwrap().remove("secret");
            v["sticky_cookie"][k] = x;
        })
    };
    let source = |s: Value| with(|v| v["sources"] = json!([s]));
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(MIN.as_bytes());
    let hosts_10001: Vec<Value> = (0..10_001).map(|i| json!({"address": host_address(i)})).collect();
    let heavy: Vec<Value> =
        (0..20).map(|i| json!({"address": format!("10.0.1.{}:80", i + 1), "weight": 1000})).collect();
    let invalid_utf8 = MIN
        .replacen("srv", "s\u{1}v", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    let trailing = MIN.trim_end().strip_suffix('}').unwrap().to_owned() + ",}";
    let duplicate_key = MIN.replacen(r#""sources""#, r#""hosts":[{"address":"10.9.9.9:80"}],"sources""#, 1);

    // (row, input, expected field, expected substring of the reason)
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("K1 not JSON", b"hosts: [10.0.0.1:80]".to_vec(), "config", "not valid JSON"),
        ("K1 truncated", MIN.as_bytes()[..60].to_vec(), "config", "not valid JSON"),
        ("K1 BOM", bom, "config", "not valid JSON"),
        ("K1 trailing comma", trailing.into_bytes(), "config", "not valid JSON"),
        (
            "K1 trailing comma in hosts",
            MIN.replace(r#"80"}],"#, r#"80"},],"#).into_bytes(),
            "config",
            "not valid JSON",
        ),
        ("K1 invalid UTF-8", invalid_utf8, "config", "not valid JSON"),
        ("K2 zero bytes", b"".to_vec(), "config", "empty"),
        ("K2 whitespace", b" \n\t ".to_vec(), "config", "empty"),
        ("K2 {}", b"{}".to_vec(), "config", "missing field `hosts`"),
        ("K2 null", b"null".to_vec(), "config", "expected a JSON object"),
        ("K2 []", b"[]".to_vec(), "config", "expected a JSON object"),
        (
            "K2 no target",
            with(|v| _ = v.as_object_mut().unwrap().remove("target")),
            "config",
            "missing field `target`",
        ),
        ("K3 hosts []", with(|v| v["hosts"] = json!([])), "hosts", "empty"),
        ("K3 hosts null", with(|v| v["hosts"] = Value::Null), "hosts", "invalid type: null"),
        (
            "K3 no sources and no sticky cookie",
            with(|v| {
                v["sources"] = json!([]);
                v.as_object_mut().unwrap().remove("sticky_cookie");
            }),
            "sources",
            "is empty",
        ),
        ("K4 same address twice", bad_address("10.0.0.1:80"), "hosts[1].address", "10.0.0.1:80"),
        (
            "K4 same v6 address, two spellings",
            with(|v| v["hosts"] = json!([{"address":"[::1]:80"},{"address":"[0:0:0:0:0:0:0:1]:80"}])),
            "hosts[1].address",
            "[0:0:0:0:0:0:0:1]:80",
        ),
        (
            "K4 same id, different addresses",
            with(|v| {
                v["hosts"][0]["id"] = json!("web-a");
                v["hosts"][1]["id"] = json!("web-a");
            }),
            "hosts[1].id",
            "\"web-a\"",
        ),
        (
            "K4 id equal to another host's address",
            with(|v| v["hosts"][1]["id"] = json!("10.0.0.1:80")),
            "hosts[1].id",
            "10.0.0.1:80",
        ),
        ("K4 blank id", host(json!({"address":"10.0.0.2:80","id":"  "})), "hosts[1].id", "\"  \""),
        (
            "K4 id with a control char",
            host(json!({"address":"10.0.0.2:80","id":"a\nb"})),
            "hosts[1].id",
            "a\\nb",
        ),
        ("K5 weight 0", weight(json!(0)), "hosts[1].weight", "0 is not a positive integer"),
        (
            "K5 all weights 0",
            with(|v| {
                v["hosts"][0]["weight"] = json!(0);
                v["hosts"][1]["weight"] = json!(0);
            }),
            "hosts[0].weight",
            "0 is not",
        ),
        ("K5 negative weight", weight(json!(-1)), "hosts[1].weight", "-1"),
        ("K5 float weight", weight(json!(1.5)), "hosts[1].weight", "1.5"),
        ("K5 weight over u32", weight(json!(4_294_967_296u64)), "hosts[1].weight", "4294967296"),
        ("K5 weight over the cap", weight(json!(1001)), "hosts[1].weight", "1001"),
        ("K5 weight as string", weight(json!("1")), "hosts[1].weight", "invalid type: string"),
        ("K6 300.1.1.1:80", bad_address("300.1.1.1:80"), "hosts[1].address", "300.1.1.1:80"),
        ("K6 host:abc", bad_address("host:abc"), "hosts[1].address", "host:abc"),
        ("K6 :80", bad_address(":80"), "hosts[1].address", "\":80\""),
        ("K6 v6 without brackets", bad_address("::1:80"), "hosts[1].address", "::1:80"),
        ("K6 v6 without a port", bad_address("[::1]"), "hosts[1].address", "[::1]"),
        ("K6 no port", bad_address("10.0.0.2"), "hosts[1].address", "10.0.0.2"),
        ("K6 port 0", bad_address("10.0.0.2:0"), "hosts[1].address", "port 0"),
        ("K6 port 65536", bad_address("10.0.0.2:65536"), "hosts[1].address", "65536"),
        ("K6 unspecified", bad_address("0.0.0.0:80"), "hosts[1].address", "0.0.0.0:80"),
        ("K6 multicast", bad_address("224.0.0.1:80"), "hosts[1].address", "224.0.0.1:80"),
        ("K6 hostname", bad_address("localhost:80"), "hosts[1].address", "localhost:80"),
        ("K6 leading zeros", bad_address("010.0.0.2:80"), "hosts[1].address", "010.0.0.2:80"),
        ("K6 surrounding space", bad_address(" 10.0.0.2:80"), "hosts[1].address", " 10.0.0.2:80"),
        ("K6 empty", bad_address(""), "hosts[1].address", "\"\""),
        ("K6 list", bad_address("10.0.0.2:80,10.0.0.3:80"), "hosts[1].address", "10.0.0.2:80,10.0.0.3:80"),
        (
            "K7 misspelled root key",
            with(|v| v["cooke_name"] = json!("x")),
            "cooke_name",
            "unknown field `cooke_name`",
        ),
        (
            "K7 misspelled sticky key",
            sticky("ttl_second", json!(5)),
            "sticky_cookie.ttl_second",
            "unknown field",
        ),
        ("K7 misspelled host key", host(json!({"adress":"10.0.0.2:80"})), "hosts[1].adress", "unknown field"),
        (
            "K7 unknown source type",
            source(json!({"type":"cookies","name":"a"})),
            "sources[0].type",
            "unknown variant",
        ),
        ("K7 source without type", source(json!({"name":"a"})), "sources[0]", "type"),
        (
            "K7 extra field on a source",
            source(json!({"type":"source_ip","name":"x"})),
            "sources[0]",
            "unknown field `name`",
        ),
        ("K7 duplicate root key", duplicate_key.into_bytes(), "config", "duplicate field `hosts`"),
        (
            "K8 cookie source name with space",
            source(json!({"type":"cookie","name":"a b"})),
            "sources[0].name",
            "a b",
        ),
        (
            "K8 cookie source name with ';'",
            source(json!({"type":"cookie","name":"a;b"})),
            "sources[0].name",
            "a;b",
        ),
        (
            "K8 cookie source name with '='",
            source(json!({"type":"cookie","name":"a=b"})),
            "sources[0].name",
            "a=b",
        ),
        (
            "K8 empty cookie source name",
            source(json!({"type":"cookie","name":""})),
            "sources[0].name",
            "\"\"",
        ),
        ("K8 sticky name with space", sticky("name", json!("s rv")), "sticky_cookie.name", "s rv"),
        ("K8 sticky name non-ASCII", sticky("name", json!("srvé")), "sticky_cookie.name", "srvé"),
        (
            "K8 __Host- with a domain",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["domain"] = json!("example.com");
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Host- with path /app",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["path"] = json!("/app");
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Host- not secure",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Secure- not secure",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Secure-srv");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.name",
            "__Secure-srv",
        ),
        (
            "K8 SameSite=None not secure",
            with(|v| {
                v["sticky_cookie"]["same_site"] = json!("None");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.same_site",
            "secure",
        ),
        ("K8 path without /", sticky("path", json!("app")), "sticky_cookie.path", "\"app\""),
        ("K8 path with ;", sticky("path", json!("/a;Domain=evil")), "sticky_cookie.path", "/a;Domain=evil"),
        (
            "K8 domain with space",
            sticky("domain", json!("ex ample.com")),
            "sticky_cookie.domain",
            "ex ample.com",
        ),
        ("K8 domain with ;", sticky("domain", json!("a.com;Secure")), "sticky_cookie.domain", "a.com;Secure"),
        (
            "K8 header source 'cookie'",
            source(json!({"type":"header","name":"cookie"})),
            "sources[0].name",
            "cookie",
        ),
        (
            "K8 header source with space",
            source(json!({"type":"header","name":"x user"})),
            "sources[0].name",
            "x user",
        ),
        ("K8 target header Host", with(|v| v["target"]["header"] = json!("Host")), "target.header", "Host"),
        (
            "K9 no secret",
            with(|v| _ = v["sticky_cookie"].as_object_mut().unwrap().remove("secret")),
            "sticky_cookie",
            "secret",
        ),
        (
            "K9 31-byte secret",
            sticky("secret", json!("0123456789abcdef0123456789abcde")),
            "sticky_cookie.secret",
            "31 bytes",
        ),
        ("K9 empty secret", sticky("secret", json!("")), "sticky_cookie.secret", "0 bytes"),
        ("K9 secret not a string", sticky("secret", json!(12345)), "sticky_cookie.secret", "invalid type"),
        (
            "K9 secret_env unset",
            no_secret("secret_env", json!("SR_UNSET")),
            "sticky_cookie.secret_env",
            "SR_UNSET",
        ),
        (
            "K9 secret_env too short",
            no_secret("secret_env", json!("SR_SHORT")),
            "sticky_cookie.secret",
            "5 bytes",
        ),
        (
            "K9 both secret and secret_env",
            sticky("secret_env", json!("SR_SECRET")),
            "sticky_cookie",
            "not both",
        ),
        ("K10 ttl 0", sticky("ttl_seconds", json!(0)), "sticky_cookie.ttl_seconds", "0 is out of range"),
        ("K10 ttl negative", sticky("ttl_seconds", json!(-1)), "sticky_cookie.ttl_seconds", "-1"),
        (
            "K10 ttl 100 years",
            sticky("ttl_seconds", json!(3_155_760_000u64)),
            "sticky_cookie.ttl_seconds",
            "3155760000",
        ),
        (
            "K10 ttl 400 days + 1 s",
            sticky("ttl_seconds", json!(34_560_001)),
            "sticky_cookie.ttl_seconds",
            "34560001",
        ),
        ("K10 ttl float", sticky("ttl_seconds", json!(3600.5)), "sticky_cookie.ttl_seconds", "3600.5"),
        (
            "K10 idle 0",
            sticky("idle_timeout_seconds", json!(0)),
            "sticky_cookie.idle_timeout_seconds",
            "0 is out",
        ),
        (
            "K10 idle > ttl",
            sticky("idle_timeout_seconds", json!(3601)),
            "sticky_cookie.idle_timeout_seconds",
            "3601",
        ),
        (
            "K10 ring size 0",
            with(|v| v["vnodes_per_weight"] = json!(0)),
            "vnodes_per_weight",
            "0 is out of range",
        ),
        (
            "K10 ring size over the cap",
            with(|v| v["vnodes_per_weight"] = json!(4097)),
            "vnodes_per_weight",
            "4097",
        ),
        (
            "K10 too many ring points",
            with(|v| {
                v["hosts"] = json!(heavy);
                v["placement"] = json!({"algorithm": "ring"});
            }),
            "hosts",
            "5120000 ring points",
        ),
        (
            "K10 fallbacks over the cap",
            with(|v| v["target"]["fallbacks"] = json!(17)),
            "target.fallbacks",
            "17",
        ),
        (
            "K10 fallbacks with a single-address header",
            with(|v| v["target"]["fallbacks"] = json!(1)),
            "target.fallbacks",
            "x-envoy-original-dst-host",
        ),
        ("K11 10001 hosts", with(|v| v["hosts"] = json!(hosts_10001)), "hosts", "10001 hosts"),
        (
            "K every host draining",
            with(|v| {
                v["hosts"][0]["drain"] = json!(true);
                v["hosts"][1]["drain"] = json!(true);
            }),
            "hosts",
            "draining",
        ),
    ];
    let mut failures = Vec::new();
    for (id, input, field, reason) in &cases {
        match config_err(input) {
            Err(why) => failures.push(format!("{id}: {why}")),
            Ok(e) if e.field != *field || !e.reason.contains(reason) => failures.push(format!(
                "{id}: got {:?} / {:?}, want {field:?} containing {reason:?}",
                e.field, e.reason
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} K cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn k9_the_secret_is_never_echoed() {
    let secret = "S3CR3T-short-but-distinctive";
    let e = config_err(&with(|v| v["sticky_cookie"]["secret"] = json!(secret))).unwrap();
    assert_eq!(e.field, "sticky_cookie.secret");
    assert!(!e.to_string().contains(secret), "K9 the error echoes the secret: {e}");
    let ok = Config::parse(&with(|v| v["sticky_cookie"]["secret"] = json!("x".repeat(32))), env);
    assert!(ok.is_ok(), "K9 exactly 32 bytes is enough");
}

#[test]
fn k11_ten_thousand_hosts_are_bounded() {
    let hosts: Vec<Value> = (0..10_000).map(|i| json!({"address": host_address(i)})).collect();
    let json = with(|v| {
        v["hosts"] = json!(hosts);
        v["placement"] = json!({"algorithm": "ring"});
    });
    let started = std::time::Instant::now();
    let cfg = Config::parse(&json, env).expect("K11 10k hosts are accepted");
    let took = started.elapsed();
    assert_eq!(cfg.hosts.len(), 10_000);
    assert_eq!(cfg.placement.point_count(), 10_000 * 256, "K11 ring size");
    assert!(
        cfg.placement.memory_bytes() <= 2 * 10_000 * 256 * 8,
        "K11 ring memory {}",
        cfg.placement.memory_bytes()
    );
    assert!(took.as_secs() < 60, "K11 parse took {took:?}");
    let d = check(&cfg, "K11 routing on 10k hosts", &req().src("192.0.2.1:1"), &hashed(0, "192.0.2.1"));
    assert!(d.host < 10_000);
}

#[test]
fn k12_host_and_key_order_do_not_change_routing() {
    let a = r#"{"hosts":[{"address":"10.0.0.1:80","id":"web-c"},{"address":"10.0.0.2:80","id":"web-a","weight":2},
        {"address":"10.0.0.3:80","id":"web-b"}],
        "sources":[{"type":"header","name":"x-user-id"}],
        "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
        "target":{"header":"x-envoy-original-dst-host"}}"#;
    let b = r#"{"target":{"header":"x-envoy-original-dst-host"},
        "sticky_cookie":{"secret":"0123456789abcdef0123456789abcdef","ttl_seconds":3600,"name":"srv"},
        "sources":[{"name":"x-user-id","type":"header"}],
        "hosts":[{"id":"web-b","address":"10.0.0.3:80"},{"weight":2,"id":"web-a","address":"10.0.0.2:80"},
        {"id":"web-c","address":"10.0.0.1:80","weight":1}]}"#;
    let c = r#"{"hosts":[{"address":"10.0.0.2:80","id":"web-a","weight":2},{"address":"10.0.0.3:80","id":"web-b"},
        {"address":"10.0.0.1:80","id":"web-c"}],"sources":[{"type":"header","name":"x-user-id"}],
        "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
        "target":{"header":"x-envoy-original-dst-host"},"placement":{"algorithm":"rendezvous"}}"#;
    let configs: Vec<Config> = [a, a, b, c].iter().map(|j| parse(j)).collect();
    for (i, cfg) in configs.iter().enumerate() {
        assert_eq!(cfg.placement, configs[0].placement, "K12 config #{i}: ring differs");
        let ids: Vec<&str> = cfg.hosts.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["web-a", "web-b", "web-c"], "K12 config #{i}: hosts sorted by id");
    }
    let address = |cfg: &Config, d: &Decision| cfg.hosts[d.host].address.to_string();
    let mut seen = std::collections::HashSet::new();
    for k in 0..1000 {
        let r = user(format!("user-{k}"));
        let first = run(&configs[0], &r, NOW);
        seen.insert(address(&configs[0], &first));
        for (i, cfg) in configs.iter().enumerate().skip(1) {
            let d = run(cfg, &r, NOW);
            assert_eq!(address(cfg, &d), address(&configs[0], &first), "K12 user-{k} moved in config #{i}");
        }
        // A cookie issued under one ordering pins to the same address under another.
        if k % 50 == 0 {
            let value = issued(&first);
            for (i, cfg) in configs.iter().enumerate() {
                let d = run(cfg, &cookie(format!("srv={value}")), NOW);
                assert_eq!(
                    (d.kind, address(cfg, &d)),
                    (Kind::Pinned, address(&configs[0], &first)),
                    "K12 #{i}"
                );
            }
        }
    }
    assert_eq!(seen.len(), 3, "K12 1000 keys reach every host");
    // Without ids the address is the id: reordering the host list changes nothing either.
    let fwd = base();
    let rev: Vec<&str> = HOSTS.iter().rev().copied().collect();
    let rev = parse(&config_json(&rev, SECRET, ""));
    assert_eq!(fwd.placement, rev.placement, "K12 reversed host list");
}

// ---- suspected bugs ---------------------------------------------------------------------------

/// K8 / C19: browsers match the `__Host-` and `__Secure-` prefixes case-insensitively (RFC 6265bis
/// cookie-prefix rules), so `__host-srv` with a Domain is silently dropped by the browser, exactly
/// like `__Host-srv`. The config check only looks for the exact-case prefix.
#[test]

fn k8_lowercase_host_prefix_with_domain_is_rejected() {
    let json = with(|v| {
        v["sticky_cookie"]["name"] = json!("__host-srv");
        v["sticky_cookie"]["domain"] = json!("example.com");
    });
    let e = config_err(&json).expect("K8 __host-srv with a domain should be rejected");
    assert_eq!(e.field, "sticky_cookie.name");
    let json = with(|v| {
        v["sticky_cookie"]["name"] = json!("__SECURE-srv");
        v["sticky_cookie"]["secure"] = json!(false);
    });
    let e = config_err(&json).expect("K8 __SECURE-srv without secure should be rejected");
    assert_eq!(e.field, "sticky_cookie.name");
}

/// K1: `Config::parse` reads one JSON value and ignores whatever follows it, so a config with
/// trailing garbage — or two concatenated documents, of which only the first is used — is accepted.
#[test]

fn k1_trailing_data_after_the_object_is_rejected() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("K1 two documents", [MIN, MIN].concat().into_bytes()),
        ("K1 trailing garbage", format!("{MIN} garbage").into_bytes()),
        ("K1 trailing bracket", format!("{MIN}]").into_bytes()),
        ("K1 trailing comma", format!("{MIN},").into_bytes()),
        ("K1 a second document is silently dropped", format!(r#"{MIN}{{"hosts":[]}}"#).into_bytes()),
    ];
    let mut accepted = Vec::new();
    for (id, json) in &cases {
        match config_err(json) {
            Ok(e) => assert_eq!(e.field, "config", "{id}"),
            Err(_) => accepted.push(*id),
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// K4: an IPv4-mapped IPv6 address is the same endpoint as the IPv4 one, but is not seen as a
/// duplicate, so one backend gets two hosts' share of the ring.
#[test]

fn k4_ipv4_mapped_duplicate_is_rejected() {
    let json = with(|v| v["hosts"][1]["address"] = json!("[::ffff:10.0.0.1]:80"));
    let e = config_err(&json).expect("K4 10.0.0.1:80 and [::ffff:10.0.0.1]:80 are one endpoint");
    assert_eq!(e.field, "hosts[1].address");
}

// ---- issue 13: trust-boundary inputs (discovery answers, rotation keys, leeway) -------------------

use session_router::discovery::{Admission, Cidr, SkipReason, read_consul, read_envoy_clusters};

/// A discovery config with `extra` inside the `discovery` object; ORIGINAL_DST target (so an
/// allow-list is required unless `extra` has one).
fn discovery_json(extra: &str) -> String {
    format!(
        r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"header","name":"x"}}],
        "target":{{"header":"x-envoy-original-dst-host"}},
        "discovery":{{"type":"json","cluster":"c","path":"/v1","format":"consul"{extra}}}}}"#
    )
}

/// K6/K7-style rows for `discovery.allowed_cidrs` / `denied_ports`: each rejected with its field.
#[test]
fn k_discovery_admission_fields_reject_odd_values() {
    let many: Vec<String> = (0..1025).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
    for (id, extra, field) in [
        ("K missing allow-list in original_dst", String::new(), "discovery.allowed_cidrs"),
        ("K allow-list null", r#","allowed_cidrs":null"#.into(), "discovery.allowed_cidrs"),
        ("K empty allow-list", r#","allowed_cidrs":[]"#.into(), "discovery.allowed_cidrs"),
        ("K leading space", r#","allowed_cidrs":[" 10.0.0.0/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K trailing space", r#","allowed_cidrs":["10.0.0.0/8 "]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K two slashes", r#","allowed_cidrs":["10.0.0.0/8/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K v6 zone", r#","allowed_cidrs":["fe80::%eth0/10"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K bracketed v6", r#","allowed_cidrs":["[fd00::]/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K non-ASCII", r#","allowed_cidrs":["１0.0.0.0/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K NUL", r#","allowed_cidrs":["10.0.0.0/8\u0000"]"#.into(), "discovery.allowed_cidrs[0]"),
        (
            "K mapped v4 range",
            r#","allowed_cidrs":["::ffff:127.0.0.0/104"]"#.into(),
            "discovery.allowed_cidrs[0]",
        ),
        ("K 1025 ranges", format!(r#","allowed_cidrs":[{}]"#, many.join(",")), "discovery.allowed_cidrs"),
        (
            "K port 0 denied",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[0]"#.into(),
            "discovery.denied_ports[0]",
        ),
        (
            "K port as string",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":["9901"]"#.into(),
            "discovery",
        ),
        ("K negative port", r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[-1]"#.into(), "discovery"),
        (
            "K fractional port",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[9901.5]"#.into(),
            "discovery",
        ),
    ] {
        let json = discovery_json(&extra);
        let e = Config::parse(json.as_bytes(), |_| None).expect_err(id);
        assert_eq!(e.field, field, "{id}: {e}");
    }
    // The documented forms are accepted.
    for extra in [
        r#","allowed_cidrs":["10.0.0.0/8","fd00::/8","127.0.0.1","::1","0.0.0.0/0"]"#,
        r#","allowed_cidrs":["10.0.0.0/08"],"denied_ports":[65535,1]"#,
    ] {
        Config::parse(discovery_json(extra).as_bytes(), |_| None).unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
}

/// Odd registry entries: each costs only itself, never a panic, never the whole answer, and never
/// an id that would break the membership record (tab, newline) or a configured host's id.
#[test]
fn discovery_answers_with_hostile_entries_keep_the_good_ones() {
    let admission = Admission { allowed: vec![Cidr::parse("10.0.0.0/8").unwrap()], denied_ports: vec![9901] };
    let good = json!({"Service": {"ID": "web-1", "Address": "10.0.0.1", "Port": 80}});
    let hostile = [
        json!({"Service": {"ID": "tab\there", "Address": "10.0.0.2", "Port": 80}}),
        json!({"Service": {"ID": "line\nbreak", "Address": "10.0.0.3", "Port": 80}}),
        json!({"Service": {"ID": "nul\u{0}", "Address": "10.0.0.4", "Port": 80}}),
        json!({"Service": {"ID": "x".repeat(100_000), "Address": "10.0.0.5", "Port": 80}}),
        json!({"Service": {"ID": "rtl\u{202e}", "Address": "10.0.0.6", "Port": 80}}),
        json!({"Service": {"ID": 7, "Address": "10.0.0.7", "Port": 80}}),
        json!({"Service": {"ID": "web-8", "Address": "10.0.0.8", "Port": "80"}}),
        json!({"Service": {"ID": "web-9", "Address": "10.0.0.9", "Port": -1}}),
        json!({"Service": {"ID": "web-10", "Address": "10.0.0.10", "Port": 1e3}}),
        json!({"Service": {"ID": "web-11", "Address": "10.0.0.11:80", "Port": 80}}),
        json!({"Service": {"ID": "web-12", "Address": "[10.0.0.12]", "Port": 80}}),
        json!({"Service": {"ID": "web-13", "Address": "fe80::1%eth0", "Port": 80}}),
        json!({"Service": {"ID": "web-14", "Address": "169.254.169.254", "Port": 80}}),
        json!({"Service": {"ID": "web-15", "Address": "::ffff:127.0.0.1", "Port": 80}}),
        json!({"Service": {"ID": "web-16", "Address": "10.0.0.16", "Port": 9901}}),
        json!({"Service": {"ID": "web-17", "Address": "192.168.0.1", "Port": 80}}),
        json!({"Service": {"ID": "10.0.0.1:80", "Address": "10.0.0.18", "Port": 80}}),
        json!({"Service": null}),
        json!([]),
        json!("string"),
    ];
    let mut entries = vec![good];
    entries.extend(hostile.iter().cloned());
    let body = serde_json::to_vec(&entries).unwrap();
    let answer = read_consul(&body, &[], &admission).unwrap();
    let ids: Vec<_> = answer.hosts.iter().map(|h| (h.id.clone().unwrap(), h.address.clone())).collect();
    // rtl and the numeric-ID entry have no control characters / no name: kept (by name / address).
    assert_eq!(
        ids,
        [
            ("web-1".to_owned(), "10.0.0.1:80".to_owned()),
            ("rtl\u{202e}".to_owned(), "10.0.0.6:80".to_owned()),
            ("10.0.0.7:80".to_owned(), "10.0.0.7:80".to_owned()),
        ]
    );
    let count = |r: SkipReason| answer.skipped.iter().filter(|s| s.reason == r).count();
    assert_eq!(count(SkipReason::BadEntry), 13, "{:?}", answer.skipped);
    assert_eq!(count(SkipReason::Metadata), 1);
    assert_eq!(count(SkipReason::Loopback), 1);
    assert_eq!(count(SkipReason::DeniedPort), 1);
    assert_eq!(count(SkipReason::OutsideAllowed), 1);
    assert_eq!(count(SkipReason::IdCollision), 1);
    assert!(answer.skipped.iter().all(|s| s.entry.len() < 200), "log lines stay bounded");
    assert!(answer.skipped.iter().all(|s| !s.entry.contains(['\t', '\n', '\0'])), "log lines are escaped");
    // The admitted set is a membership the filter accepts.
    let cfg =
        Config::parse(discovery_json(r#","allowed_cidrs":["10.0.0.0/8"]"#).as_bytes(), |_| None).unwrap();
    cfg.with_hosts(answer.hosts).unwrap();
    // A huge all-hostile answer fails as a whole (last good membership kept), without a panic.
    let flood: Vec<_> = (0..20_000)
        .map(|i| json!({"Service": {"ID": format!("l{i}"), "Address": "127.0.0.1", "Port": 1 + i % 60000}}))
        .collect();
    let e = read_consul(&serde_json::to_vec(&flood).unwrap(), &[], &admission).unwrap_err();
    assert!(e.0.contains("20000 skipped: 1 denied_port, 19999 loopback"), "{e}");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(read_envoy_clusters(nested.as_bytes(), "b", &[], &admission).is_err());
}

/// K9-style rows for `sticky_cookie.verify_secrets`, and J12-style rows for `leeway_seconds`.
#[test]
fn k9_verify_secrets_and_j12_leeway_reject_odd_values() {
    let sticky = |extra: &str| {
        let json = config_json(&HOSTS, SECRET, extra);
        Config::parse(json.as_bytes(), |v| (v == "EMPTY").then(String::new))
    };
    for (id, extra, field) in [
        ("K9 verify_secrets null entry", r#","verify_secrets":[null]"#, "sticky_cookie.verify_secrets[0]"),
        (
            "K9 verify secret not a string",
            r#","verify_secrets":[{"secret":123}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret empty",
            r#","verify_secrets":[{"secret":""}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret_env empty value",
            r#","verify_secrets":[{"secret_env":"EMPTY"}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret 31 bytes",
            r#","verify_secrets":[{"secret":"0123456789012345678901234567890"}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify_secrets an object",
            r#","verify_secrets":{"secret":"x"}"#,
            "sticky_cookie.verify_secrets",
        ),
    ] {
        let e = sticky(extra).expect_err(id);
        assert_eq!(e.field, field, "{id}: {e}");
    }
    // 32 bytes of multi-byte characters (11 characters) are enough: bytes are counted.
    sticky(r#","verify_secrets":[{"secret":"ééééééééééééééééé"}]"#).unwrap();
    let leeway = |v: &str| {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"jwt","leeway_seconds":{v}}}],
            "target":{{"header":"x-gateway-destination-endpoint"}}}}"#
        );
        Config::parse(json.as_bytes(), |_| None)
    };
    for v in ["-1", "1.5", "\"60\"", "3601", "18446744073709551616", "3.7e3"] {
        let e = leeway(v).expect_err(v);
        assert!(e.field.starts_with("sources[0]"), "{v}: {e}");
    }
    leeway("0").unwrap();
    leeway("3600").unwrap();
}
