//! Shared by the native test crates: a request made of header pairs, through the adapter that ships.
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

pub use session_router::request::HeaderPairs as Req;

pub fn req(pairs: &[(&str, &str)]) -> Req {
    Req::from_pairs(pairs.iter().copied())
}
pub mod bad_inputs;
