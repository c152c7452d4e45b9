//! `jwt::token` (the token after the `Bearer ` scheme) and `jwt::claim` (payload decoding and
//! claim extraction, with `exp` and duplicate checks). Tokens are decoded, not verified.
//!
//! Raw input: line 1 is the header value (`Bearer <token>`); optional line 2 the claim name
//! (default `sub`), line 3 `now`.
//!
//! Structured input: a token is built from an arbitrary JSON object (string / number / other
//! claims, `exp` of any type, duplicate names, escaped names), with or without padding, under
//! a prefix in any letter case with extra spaces; `claim` must answer exactly what the
//! documented rules say: too large, not JSON / duplicate, expired, bad `exp`, missing, not a
//! string, or the string.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use session_router::jwt::{self, JwtError, MAX_TOKEN_BYTES};
use session_router_fuzz::{Input, NOW, input, lines, parse_u64};

#[derive(Arbitrary, Debug)]
enum Json {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Array(Vec<String>),
    Object(Vec<(String, String)>),
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Str(s) => Value::from(s.as_str()),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Value::from(*f),
            Json::Bool(b) => Value::from(*b),
            Json::Null => Value::Null,
            Json::Array(a) => Value::from(a.clone()),
            Json::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Name {
    Claim,
    Exp,
    /// The claim's name with one character written as a JSON `\u` escape.
    EscapedClaim(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Built {
    claim: String,
    entries: Vec<(Name, Json)>,
    header_segment: Vec<u8>,
    signature: Vec<u8>,
    padded: bool,
    prefix_case: u64,
    spaces: (u8, u8),
    now_offset: i32,
}

/// JSON text for a key, with character `i` written as `\uXXXX` (a different spelling of the
/// same name).
fn escaped_key(name: &str, i: u8) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.is_empty() {
        return "\"\"".to_owned();
    }
    let at = usize::from(i) % chars.len();
    let mut out = String::from("\"");
    for (j, c) in chars.iter().enumerate() {
        if j == at {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            let quoted = Value::from(c.to_string()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
    out.push('"');
    out
}

/// What `jwt::claim` must answer for a payload of these (name, value) entries.
fn expected(claim: &str, entries: &[(String, Value)], now: u64) -> Result<String, JwtError> {
    let mut value = None;
    let mut exp = None;
    for (k, v) in entries {
        if k == claim {
            if value.is_some() {
                return Err(JwtError::Json);
            }
            value = Some(v.clone());
        } else if k == "exp" {
            if exp.is_some() {
                return Err(JwtError::Json);
            }
            exp = Some(v.as_f64());
        }
    }
    match exp {
        Some(Some(e)) if e <= now as f64 => return Err(JwtError::Expired),
        Some(None) => return Err(JwtError::BadExp),
        _ => {}
    }
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(JwtError::ClaimNotString),
        None => Err(JwtError::ClaimMissing),
    }
}

fn check_token(header: &[u8], prefix: &str) {
    if let Some(t) = jwt::token(header, prefix) {
        assert!(!t.is_empty());
        assert_eq!(t, t.trim_ascii(), "token not trimmed");
        assert!(header[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()));
    }
}

fn check_claim(token: &[u8], claim: &str, now: u64) {
    let got = jwt::claim(token, claim, now);
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(got, Err(JwtError::TooLarge));
    }
    if got.is_ok() {
        assert_eq!(token.iter().filter(|&&b| b == b'.').count(), 2, "accepted without three segments");
    }
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => {
            let l = lines(raw);
            let claim =
                l.get(1).and_then(|c| std::str::from_utf8(c).ok()).filter(|c| !c.is_empty()).unwrap_or("sub");
            let now = parse_u64(l.get(2)).unwrap_or(NOW);
            for prefix in ["Bearer ", "", "JWT ", "bearer"] {
                check_token(l[0], prefix);
            }
            if let Some(token) = jwt::token(l[0], "Bearer ") {
                check_claim(token, claim, now);
            }
            check_claim(l[0], claim, now);
            check_claim(raw, "sub", now);
        }
        Input::Structured(u) => {
            let Ok(b) = Built::arbitrary_take_rest(u) else { return };
            let now = NOW.saturating_add_signed(i64::from(b.now_offset));
            let claim = if b.claim.is_empty() { "sub".to_owned() } else { b.claim.clone() };
            let mut text = String::from("{");
            let mut entries = Vec::new();
            for (i, (name, json)) in b.entries.iter().take(32).enumerate() {
                let (key_text, key) = match name {
                    Name::Claim => (Value::from(claim.as_str()).to_string(), claim.clone()),
                    Name::Exp => ("\"exp\"".to_owned(), "exp".to_owned()),
                    Name::EscapedClaim(at) => (escaped_key(&claim, *at), claim.clone()),
                    Name::Other(s) => (Value::from(s.as_str()).to_string(), s.clone()),
                };
                let value_text = json.value().to_string();
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&key_text);
                text.push(':');
                text.push_str(&value_text);
                // The value as the parser will read it back (float parsing may round).
                let parsed: Value =
                    serde_json::from_str(&value_text).expect("serde_json reads its own output");
                entries.push((key, parsed));
            }
            text.push('}');
            let payload = if b.padded { URL_SAFE.encode(&text) } else { URL_SAFE_NO_PAD.encode(&text) };
            let header = URL_SAFE_NO_PAD.encode(&b.header_segment);
            let signature: String = URL_SAFE_NO_PAD.encode(&b.signature);
            let token = format!("{header}.{payload}.{signature}");
            let want = if token.len() > MAX_TOKEN_BYTES {
                Err(JwtError::TooLarge)
            } else {
                expected(&claim, &entries, now)
            };
            let got = jwt::claim(token.as_bytes(), &claim, now);
            assert_eq!(got, want, "payload {text}");

            // The same token behind an `Authorization` scheme written in any letter case.
            let prefix: String = "Bearer "
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if b.prefix_case >> i & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                })
                .collect();
            let value = format!(
                "{prefix}{}{token}{}",
                " ".repeat(usize::from(b.spaces.0 % 4)),
                "\t".repeat(usize::from(b.spaces.1 % 3))
            );
            assert_eq!(jwt::token(value.as_bytes(), "Bearer "), Some(token.as_bytes()));
            check_token(value.as_bytes(), "Bearer ");
        }
    }
});
