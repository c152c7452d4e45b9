//! Shared code of the harness binaries: `backend` (a fake stateful application server) and
//! `e2e` (the end-to-end driver). std only.

pub mod http;
pub mod json;

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn b64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// base64url or standard base64, padding optional. `None` on any other character.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character carries fewer than 8 bits: not valid base64.
    (bits < 6).then_some(out)
}

/// The string claim `claim` of a JWT's payload, decoded, not verified (like the filter's `jwt`
/// source). `None` for anything malformed.
pub fn jwt_claim(token: &str, claim: &str) -> Option<String> {
    if token.len() > 8192 {
        return None;
    }
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    let payload = b64_decode(payload)?;
    json::parse(&payload).ok()?.str_of(claim).map(str::to_string)
}

/// An unsigned-looking JWT (`alg` RS256, signature bytes that verify nothing) carrying `sub`
/// and `exp`, the way a client would send a real one.
pub fn make_jwt(sub: &str, exp: u64) -> String {
    let header = b64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64url_encode(format!(r#"{{"sub":{},"exp":{exp}}}"#, json::quote(sub)).as_bytes());
    format!("{header}.{payload}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64_decode(&b64url_encode(&data)).unwrap(), data);
        }
        assert_eq!(b64url_encode(b"\xfb\xff"), "-_8");
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
