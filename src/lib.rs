//! session-router: session-aware routing for Envoy and Istio as a proxy-wasm HTTP filter.
//!
//! The pure core ([`config`], [`ring`], [`router`], [`sticky`], [`cookie`], [`jwt`], [`query`],
//! [`murmur3`]) never calls proxy-wasm and is tested natively; [`filter`] is the host glue.

pub mod bounded;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod discovery;
pub mod filter;
pub mod health;
pub mod jwt;
pub mod metrics;
pub mod murmur3;
pub mod placement;
pub mod query;
pub mod rendezvous;
pub mod ring;
pub mod router;
pub mod scope;
pub mod shared;
pub mod sticky;
