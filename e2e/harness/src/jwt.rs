//! JWTs as a client sends them and as the application reads them: the `sub` claim decoded, not
//! verified (like the filter's `jwt` source).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Longer tokens are not read.
pub const MAX_TOKEN_BYTES: usize = 8192;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// base64url or standard base64, padding optional. `None` on anything else.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    URL.decode(text).or_else(|_| STANDARD.decode(text)).ok()
}

/// The string claim `claim` of a JWT's payload, decoded, not verified. `None` for anything
/// malformed.
pub fn jwt_claim(token: &str, claim: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = b64_decode(token.split('.').nth(1)?)?;
    let payload: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    payload.get(claim)?.as_str().map(str::to_string)
}

/// An unsigned-looking JWT (`alg` RS256, signature bytes that verify nothing) carrying `sub`
/// and `exp`, the way a client would send a real one.
pub fn make_jwt(sub: &str, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::json!({"sub": sub, "exp": exp}).to_string());
    format!("{header}.{payload}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64_decode(&URL_SAFE_NO_PAD.encode(&data)).unwrap(), data);
        }
        assert_eq!(URL_SAFE_NO_PAD.encode(b"\xfb\xff"), "-_8");
        assert_eq!(b64_decode("-_8=").unwrap(), b"\xfb\xff");
        assert_eq!(b64_decode("+/8").unwrap(), b"\xfb\xff");
        assert_eq!(b64_decode("a"), None);
        assert_eq!(b64_decode("a*b"), None);
    }

    #[test]
    fn jwt_sub_round_trips_and_garbage_is_none() {
        assert_eq!(jwt_claim(&make_jwt("user-7", 99), "sub").as_deref(), Some("user-7"));
        for bad in ["", "a", "a.b", "a.!!!.c", "a.bnVsbA.c", &"x".repeat(9000)] {
            assert_eq!(jwt_claim(bad, "sub"), None, "{bad}");
        }
    }
}
