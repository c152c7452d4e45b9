//! The sticky cookie codec: an opaque, HMAC-SHA256-signed value naming a host by a keyed tag.
//!
//! Layout before base64url (no padding), 65 bytes in all (87 characters):
//!
//! | bytes | field                                                                 |
//! |-------|-----------------------------------------------------------------------|
//! | 1     | version (`1`)                                                         |
//! | 16    | session id (random for a new session)                                 |
//! | 8     | ring point of the session (where failover walks from), big-endian    |
//! | 8     | host tag: HMAC(secret, "host\0" ‖ host id), first 8 bytes              |
//! | 8     | expires at, Unix seconds, big-endian (absolute lifetime)              |
//! | 8     | refreshed at, Unix seconds, big-endian (for the idle timeout)         |
//! | 16    | HMAC-SHA256(secret, "cookie\0" ‖ all of the above), first 16 bytes    |
//!
//! The host tag reveals nothing of the address without the secret; the MAC covers every byte;
//! it is compared in constant time (`Mac::verify_truncated_left`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const BODY_BYTES: usize = 1 + 16 + 8 + 8 + 8 + 8;
pub const COOKIE_BYTES: usize = BODY_BYTES + MAC_BYTES;
/// Length of the encoded value; anything else is rejected before decoding.
pub const ENCODED_LEN: usize = (COOKIE_BYTES * 4).div_ceil(3);
/// Clock skew tolerated between proxies for times carried in a cookie.
pub const MAX_SKEW_SECONDS: u64 = 60;

pub type HostTag = [u8; 8];

/// The cookie secret, pre-keyed once per configuration.
#[derive(Clone)]
pub struct CookieKey(Hmac<Sha256>);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    pub fn new(secret: &[u8]) -> CookieKey {
        // HMAC accepts keys of any length; the error arm cannot happen.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        CookieKey(mac)
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(domain);
        mac.update(data);
        mac
    }

    pub fn host_tag(&self, host_id: &[u8]) -> HostTag {
        let digest = self.mac(b"host\0", host_id).finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        tag
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub session_id: [u8; 16],
    pub point: u64,
    pub host: HostTag,
    pub expires_at: u64,
    pub refreshed_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Wrong length, not base64url, or an unknown version.
    Malformed,
    /// The MAC does not verify: tampered, truncated, or signed with another secret.
    BadSignature,
    /// Past its absolute lifetime.
    Expired,
    /// Not refreshed within the idle timeout.
    Idle,
    /// Times further in the future than this configuration could have issued.
    FromTheFuture,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad signature",
            Rejection::Expired => "expired",
            Rejection::Idle => "idle timeout",
            Rejection::FromTheFuture => "times from the future",
        }
    }
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_be_bytes(b)
}

pub fn encode(key: &CookieKey, c: &Claims) -> String {
    let mut raw = [0u8; COOKIE_BYTES];
    let (body, tag) = raw.split_at_mut(BODY_BYTES);
    body[0] = VERSION;
    body[1..17].copy_from_slice(&c.session_id);
    body[17..25].copy_from_slice(&c.point.to_be_bytes());
    body[25..33].copy_from_slice(&c.host);
    body[33..41].copy_from_slice(&c.expires_at.to_be_bytes());
    body[41..49].copy_from_slice(&c.refreshed_at.to_be_bytes());
    let digest = key.mac(b"cookie\0", body).finalize().into_bytes();
    tag.copy_from_slice(digest.get(..MAC_BYTES).unwrap_or(&[0; MAC_BYTES]));
    URL_SAFE_NO_PAD.encode(raw)
}

/// The lifetime policy a cookie is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl_seconds: u64,
    pub idle_timeout_seconds: Option<u64>,
}

/// Decodes and verifies a cookie value at time `now` (Unix seconds).
pub fn decode(key: &CookieKey, value: &[u8], policy: Policy, now: u64) -> Result<Claims, Rejection> {
    if value.len() != ENCODED_LEN {
        return Err(Rejection::Malformed);
    }
    let mut raw = [0u8; COOKIE_BYTES];
    match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
        Ok(COOKIE_BYTES) => {}
        _ => return Err(Rejection::Malformed),
    }
    let (body, tag) = raw.split_at(BODY_BYTES);
    if body.first() != Some(&VERSION) {
        return Err(Rejection::Malformed);
    }
    key.mac(b"cookie\0", body).verify_truncated_left(tag).map_err(|_| Rejection::BadSignature)?;
    let mut session_id = [0u8; 16];
    session_id.copy_from_slice(body.get(1..17).unwrap_or(&[0; 16]));
    let mut host = [0u8; 8];
    host.copy_from_slice(body.get(25..33).unwrap_or(&[0; 8]));
    let claims = Claims {
        session_id,
        point: be_u64(body, 17),
        host,
        expires_at: be_u64(body, 33),
        refreshed_at: be_u64(body, 41),
    };
    if claims.expires_at <= now {
        return Err(Rejection::Expired);
    }
    let horizon = now.saturating_add(MAX_SKEW_SECONDS);
    if claims.expires_at > horizon.saturating_add(policy.ttl_seconds) || claims.refreshed_at > horizon {
        return Err(Rejection::FromTheFuture);
    }
    if let Some(idle) = policy.idle_timeout_seconds
        && now.saturating_sub(claims.refreshed_at) >= idle
    {
        return Err(Rejection::Idle);
    }
    Ok(claims)
}
