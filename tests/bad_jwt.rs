//! Malformed JWTs (rows J1–J15): each asserts the exact outcome of `router::decide` (see
//! `common::bad_inputs::check`) and which rejection was recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use common::bad_inputs::*;
use session_router::jwt::{JwtError, MAX_TOKEN_BYTES};

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
