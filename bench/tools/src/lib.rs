//! Shared by the bench helpers: the session keys every measurement uses.

/// splitmix64: a fixed, well-mixed stream, so every run and every tool sees the same keys.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Session key number `k`: 16 to 32 lowercase hex characters (a cookie-safe token, like the
/// session ids application servers issue). Key `k` is the same in every tool and run.
pub fn session_key(k: u64) -> String {
    let a = splitmix(k.wrapping_mul(2));
    let b = splitmix(k.wrapping_mul(2) + 1);
    let hex = format!("{a:016x}{b:016x}");
    let len = 16 + (splitmix(!k) % 17) as usize;
    hex[..len].to_owned()
}
