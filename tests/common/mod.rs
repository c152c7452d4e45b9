//! Shared by the native test crates: a request made of header pairs, through the adapter that ships.
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

pub use session_router::request::HeaderPairs as Req;

pub fn req(pairs: &[(&str, &str)]) -> Req {
    Req::from_pairs(pairs.iter().copied())
}
pub mod bad_inputs;

/// A deterministic xorshift64 stream for randomized tests (no dependency, the same every run).
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
