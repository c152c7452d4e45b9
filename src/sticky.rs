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
//! | 16    | HMAC-SHA256(secret, "cookie-name\0" ‖ len(name) u16 BE ‖ name ‖ all of the above), first 16 bytes |
//!
//! The host tag reveals nothing of the address without the secret; the MAC covers every byte and
//! the cookie's name (a value cannot be replayed under another cookie name sharing the secret);
//! it is compared in constant time ([`ct_eq`]). Cookies signed before the MAC
//! named the cookie (`"cookie\0" ‖ body`, the only form of a key made with [`CookieKey::new`])
//! still verify under a named key and are re-issued in the new form on their next response.
//!
//! Several keys verify (rotation: the signing key, then verify-only keys); a cookie's host tag is
//! looked up under the key that verified it.

use crate::b64::{self, Alphabet, Padding};
use crate::sha256::{HmacSha256, ct_eq};

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const BODY_BYTES: usize = 1 + 16 + 8 + 8 + 8 + 8;
pub const COOKIE_BYTES: usize = BODY_BYTES + MAC_BYTES;
/// Length of the encoded value; anything else is rejected before decoding.
pub const ENCODED_LEN: usize = (COOKIE_BYTES * 4).div_ceil(3);
/// Clock skew tolerated between proxies for times carried in a cookie.
pub const MAX_SKEW_SECONDS: u64 = 60;

pub type HostTag = [u8; 8];

/// The cookie secret, pre-keyed once per configuration, and the cookie name its MACs cover.
#[derive(Clone)]
pub struct CookieKey {
    mac: HmacSha256,
    /// `Some(name)`: MACs name the cookie; `None`: the unnamed form only.
    name: Option<Vec<u8>>,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key whose MACs do not name the cookie (the form before names were bound).
    pub fn new(secret: &[u8]) -> CookieKey {
        CookieKey { mac: HmacSha256::new(secret), name: None }
    }

    /// A key for the cookie called `name`: its MACs cover the name.
    pub fn for_cookie(secret: &[u8], name: &str) -> CookieKey {
        CookieKey { name: Some(name.as_bytes().to_vec()), ..CookieKey::new(secret) }
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(data);
        mac
    }

    /// The MAC of a cookie body: named when the key has a name, else the unnamed form.
    fn body_mac(&self, body: &[u8], named: bool) -> HmacSha256 {
        match (&self.name, named) {
            (Some(name), true) => {
                let mut mac = self.mac.clone();
                mac.update(b"cookie-name\0");
                mac.update(&(name.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
                mac.update(name);
                mac.update(body);
                mac
            }
            _ => self.mac(b"cookie\0", body),
        }
    }

    pub fn host_tag(&self, host_id: &[u8]) -> HostTag {
        let digest = self.mac(b"host\0", host_id).finalize();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        tag
    }

    /// The session id of a hashed session: keyed, so a leaked cookie does not reveal the key it
    /// was hashed from (a client IP or a user id) to anyone without the secret.
    pub fn session_id(&self, session_key: &[u8]) -> [u8; 16] {
        let digest = self.mac(b"session\0", session_key).finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        id
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
    let digest = key.body_mac(body, true).finalize();
    tag.copy_from_slice(digest.get(..MAC_BYTES).unwrap_or(&[0; MAC_BYTES]));
    b64::encode(Alphabet::UrlSafe, false, &raw)
}

/// The lifetime policy a cookie is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl_seconds: u64,
    pub idle_timeout_seconds: Option<u64>,
}

/// Which key verified a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index into the keys tried (0: the signing key).
    pub key: usize,
    /// Signed in the unnamed form by a key that now names the cookie.
    pub legacy: bool,
}

impl Verified {
    /// Re-issue it with the signing key in the current form on its next response.
    pub fn needs_resigning(&self) -> bool {
        self.key != 0 || self.legacy
    }
}

/// Decodes and verifies a cookie value at time `now` (Unix seconds).
pub fn decode(key: &CookieKey, value: &[u8], policy: Policy, now: u64) -> Result<Claims, Rejection> {
    verify(std::slice::from_ref(key), value, policy, now).map(|(claims, _)| claims)
}

/// Decodes a cookie value and verifies it under any of `keys` (the signing key first).
pub fn verify(
    keys: &[CookieKey],
    value: &[u8],
    policy: Policy,
    now: u64,
) -> Result<(Claims, Verified), Rejection> {
    let (claims, verified) = authenticate(keys, value)?;
    check_lifetime(claims, policy, now).map(|c| (c, verified))
}

/// The claims of a cookie value whose MAC verifies under one of `keys`, whatever its times.
fn authenticate(keys: &[CookieKey], value: &[u8]) -> Result<(Claims, Verified), Rejection> {
    let raw = decode_raw(value)?;
    let verified = authenticate_raw(keys, &raw)?;
    Ok((claims_of(&raw), verified))
}

/// The cookie's bytes, from its base64url text: `Malformed` for a wrong length, a non-canonical
/// or invalid encoding, or an unknown version.
fn decode_raw(value: &[u8]) -> Result<[u8; COOKIE_BYTES], Rejection> {
    if value.len() != ENCODED_LEN {
        return Err(Rejection::Malformed);
    }
    let mut raw = [0u8; COOKIE_BYTES];
    if b64::decode_into(Alphabet::UrlSafe, Padding::None, value, &mut raw) != Some(COOKIE_BYTES) {
        return Err(Rejection::Malformed);
    }
    if raw.first() != Some(&VERSION) {
        return Err(Rejection::Malformed);
    }
    Ok(raw)
}

/// Which of `keys` signed these cookie bytes (their MAC, in constant time).
fn authenticate_raw(keys: &[CookieKey], raw: &[u8; COOKIE_BYTES]) -> Result<Verified, Rejection> {
    let (body, tag) = raw.split_at(BODY_BYTES);
    keys.iter()
        .enumerate()
        .find_map(|(i, key)| {
            let signs = |named: bool| {
                ct_eq(key.body_mac(body, named).finalize().get(..MAC_BYTES).unwrap_or(&[]), tag)
            };
            if signs(true) {
                return Some(Verified { key: i, legacy: false });
            }
            let legacy = key.name.is_some() && signs(false);
            legacy.then_some(Verified { key: i, legacy: true })
        })
        .ok_or(Rejection::BadSignature)
}

/// The claims the cookie bytes carry.
fn claims_of(raw: &[u8; COOKIE_BYTES]) -> Claims {
    let mut session_id = [0u8; 16];
    session_id.copy_from_slice(raw.get(1..17).unwrap_or(&[0; 16]));
    let mut host = [0u8; 8];
    host.copy_from_slice(raw.get(25..33).unwrap_or(&[0; 8]));
    Claims {
        session_id,
        point: be_u64(raw, 17),
        host,
        expires_at: be_u64(raw, 33),
        refreshed_at: be_u64(raw, 41),
    }
}

/// Whether authenticated `claims` are still good at `now` under `policy`.
fn check_lifetime(claims: Claims, policy: Policy, now: u64) -> Result<Claims, Rejection> {
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

/// Entries of [`VerifiedCookies`]: a power of two.
pub const VERIFIED_COOKIES: usize = 1024;

/// Cookies this worker authenticated recently, by their exact bytes, so a session's later
/// requests skip the MAC (three SHA-256 compressions, most of a pinned request's own cost in the
/// VM). Only cookies whose MAC verified are stored, each compared in full on lookup, so an entry
/// answers only for the very bytes that were verified; the lifetime is checked against `now` on
/// every use, exactly as [`verify`] does. Direct-mapped by MAC bytes, [`VERIFIED_COOKIES`]
/// entries of 67 bytes (67 KiB, allocated on first use: small, as a reload briefly holds two
/// configurations and wasm memory never shrinks); one per configuration, bound to its
/// keys, so a new secret starts empty (and so does a membership change's copy of the
/// configuration).
pub struct VerifiedCookies {
    /// The keys every entry was verified under (the table answers for these keys only).
    keys: Vec<CookieKey>,
    /// A lock that is never contended in a wasm VM (one thread); natively it keeps `Config` `Sync`.
    slots: std::sync::Mutex<Vec<Entry>>,
    hits: std::sync::atomic::AtomicU64,
}

/// The cookie's bytes, and which key verified them (`key` = `u8::MAX`: an empty entry).
#[derive(Clone, Copy)]
struct Entry {
    raw: [u8; COOKIE_BYTES],
    key: u8,
    legacy: bool,
}

const EMPTY_ENTRY: Entry = Entry { raw: [0; COOKIE_BYTES], key: u8::MAX, legacy: false };

impl Clone for VerifiedCookies {
    /// A copy starts empty: entries are an optimisation, never state.
    fn clone(&self) -> VerifiedCookies {
        VerifiedCookies::new(self.keys.clone())
    }
}

impl std::fmt::Debug for VerifiedCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCookies").field("hits", &self.hits()).finish_non_exhaustive()
    }
}

impl VerifiedCookies {
    /// An empty table for cookies verified under `keys` (the signing key first).
    pub fn new(keys: Vec<CookieKey>) -> VerifiedCookies {
        VerifiedCookies { keys, slots: Default::default(), hits: Default::default() }
    }

    /// [`verify`] under this table's keys, answered from the entries when these exact cookie
    /// bytes were authenticated before.
    pub fn verify(&self, value: &[u8], policy: Policy, now: u64) -> Result<(Claims, Verified), Rejection> {
        let raw = decode_raw(value)?;
        // MAC bytes: uniform for every cookie that can be stored.
        let tail = u64::from_le_bytes(raw[COOKIE_BYTES - 8..].try_into().unwrap_or([0; 8]));
        let index = (tail % VERIFIED_COOKIES as u64) as usize;
        // Compared in constant time, as the MAC is: a client picks the entry its bytes meet.
        let hit = self.slots().get(index).filter(|e| e.key != u8::MAX && same_bytes(&e.raw, &raw)).copied();
        let verified = match hit {
            Some(e) => {
                self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Verified { key: usize::from(e.key), legacy: e.legacy }
            }
            None => {
                let verified = authenticate_raw(&self.keys, &raw)?;
                let mut slots = self.slots();
                if slots.is_empty() {
                    slots.resize(VERIFIED_COOKIES, EMPTY_ENTRY);
                }
                if let (Some(slot), Ok(key)) = (slots.get_mut(index), u8::try_from(verified.key)) {
                    *slot = Entry { raw, key, legacy: verified.legacy };
                }
                verified
            }
        };
        check_lifetime(claims_of(&raw), policy, now).map(|c| (c, verified))
    }

    /// Lookups answered without a MAC so far (for tests and benchmarks).
    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The entries (a panic elsewhere while they were held leaves them as they were: every
    /// entry is whole, written in one assignment).
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether two cookies' bytes are equal, in time that does not depend on where they differ.
fn same_bytes(a: &[u8; COOKIE_BYTES], b: &[u8; COOKIE_BYTES]) -> bool {
    ct_eq(a, b)
}
