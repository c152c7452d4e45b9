//! session-router: session-aware routing for Envoy and Istio as a proxy-wasm HTTP filter.
//!
//! Everything outside [`filter`] is the pure core: it never calls proxy-wasm, takes time and
//! randomness as arguments, and is tested natively. [`filter`] is the host glue: it reads what the
//! core asks for, calls it and applies its decisions. `scripts/check-layering.py` (run by
//! `scripts/test.sh`) fails when core code names proxy-wasm or the core's imports form a cycle.

/// The map type of every configure-time set and count (string keys, `u32` values; a set is the
/// keys). Each `HashMap` or `HashSet` of another key or value type links its own copy of the hash
/// table's code into the module (1.5–2 KiB of wasm each), so the core uses this one.
pub(crate) type Names = std::collections::HashMap<String, u32>;

pub mod admission;
pub mod b64;
pub mod bounded;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod decimal;
pub mod discovery;
pub mod filter;
pub mod health;
pub mod json;
pub mod jwt;
pub mod metric_names;
pub mod murmur3;
pub mod order;
pub mod outcome;
pub mod placement;
pub mod query;
pub mod rendezvous;
pub mod request;
pub mod ring;
pub mod router;
pub mod scope;
pub mod sha256;
pub mod sticky;
