//! Session keys from JWT claims. The payload is decoded, NOT verified: verification belongs to
//! Envoy's `jwt_authn` filter or Istio's `RequestAuthentication`, which run before this filter.

use crate::b64::{self, Alphabet, Padding};

use crate::json::Value;

/// Tokens longer than this are rejected before any decoding (Envoy's tests use 10 KiB tokens).
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    /// Not three dot-separated segments (JWE has five).
    Segments,
    Base64,
    /// Payload not a JSON object, or a claim/`exp` given twice.
    Json,
    /// The claim is missing or not a string.
    ClaimMissing,
    ClaimNotString,
    /// `exp` is not a number.
    BadExp,
    Expired,
}

impl JwtError {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtError::TooLarge => "token too large",
            JwtError::Segments => "not three segments",
            JwtError::Base64 => "payload not base64url",
            JwtError::Json => "payload not a JSON object",
            JwtError::ClaimMissing => "claim missing",
            JwtError::ClaimNotString => "claim not a string",
            JwtError::BadExp => "exp not a number",
            JwtError::Expired => "expired",
        }
    }
}

/// The token after `prefix` in an `Authorization`-style header value. `None` when the header
/// does not carry this scheme (compared case-insensitively, as HTTP auth schemes are).
pub fn token<'a>(header_value: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let p = prefix.as_bytes();
    let (head, rest) = (header_value.get(..p.len())?, header_value.get(p.len()..)?);
    if !head.eq_ignore_ascii_case(p) {
        return None;
    }
    let rest = rest.trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

/// The string value of `claim` in the token's payload, if the token is well formed and its
/// `exp` (when present) is after `now`.
pub fn claim(token: &[u8], claim: &str, now: u64) -> Result<String, JwtError> {
    claim_with_leeway(token, claim, now, 0)
}

/// [`claim`], with `exp` honoured until `exp + leeway_seconds` (clock skew between the issuer and
/// this proxy; Envoy's `jwt_authn` allows 60 s).
pub fn claim_with_leeway(
    token: &[u8],
    claim: &str,
    now: u64,
    leeway_seconds: u64,
) -> Result<String, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Segments);
    };
    // base64url as RFC 7515 writes it, tolerating the padding some issuers add.
    let json = b64::decode(Alphabet::UrlSafe, Padding::Optional, payload).ok_or(JwtError::Base64)?;
    let found = read_payload(&json, claim).ok_or(JwtError::Json)?;
    match found.exp {
        Some(Exp::Number(exp)) if exp + leeway_seconds as f64 <= now as f64 => return Err(JwtError::Expired),
        Some(Exp::Invalid) => return Err(JwtError::BadExp),
        _ => {}
    }
    match found.value {
        Some(ClaimValue::String(s)) => Ok(s),
        Some(ClaimValue::Other) => Err(JwtError::ClaimNotString),
        None => Err(JwtError::ClaimMissing),
    }
}

enum ClaimValue {
    String(String),
    Other,
}

enum Exp {
    Number(f64),
    Invalid,
}

struct Found {
    value: Option<ClaimValue>,
    exp: Option<Exp>,
}

/// Reads one object, keeping only `claim` and `exp`; a duplicate of either is an error
/// (RFC 7519 §4: a parser may reject duplicate names, and for routing it must not guess).
fn read_payload(json: &[u8], claim: &str) -> Option<Found> {
    let members = crate::json::object_members(json, &|key| key == claim || key == "exp").ok()?;
    let mut found = Found { value: None, exp: None };
    for (key, v) in members {
        if key == claim {
            if found.value.is_some() {
                return None;
            }
            found.value = Some(match v {
                Value::String(s) => ClaimValue::String(s),
                _ => ClaimValue::Other,
            });
        } else if key == "exp" {
            if found.exp.is_some() {
                return None;
            }
            found.exp = Some(match v.as_f64() {
                Some(n) => Exp::Number(n),
                None => Exp::Invalid,
            });
        }
    }
    Some(found)
}
