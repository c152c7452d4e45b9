//! The end-to-end harness: `backend` (a fake stateful application server) and `e2e` (the
//! driver), both thin binaries over this library. It talks to the stack only from outside:
//! Envoy's listener and admin port, and the backends' own `/admin/*` (never through Envoy).
//!
//! - [`http`]: just enough HTTP/1.1 (a bounded server side for the backend, a keep-alive client)
//! - [`jwt`]: the tokens the driver sends and the backend reads
//! - [`env`]: the driver's settings; [`ctx`]: one run's context, one request through Envoy and
//!   what it must have caused
//! - [`observe`]: what Envoy and the backends report (counters, stats, readiness)
//! - [`drive`]: sessions over parallel keep-alive connections; [`state`]: the file between two
//!   invocations
//! - the scenarios: [`failover`] (with [`probes`], its checks of single requests), [`scale`] and
//!   [`bounded`]

pub mod bounded;
pub mod ctx;
pub mod drive;
pub mod env;
pub mod failover;
pub mod http;
pub mod jwt;
pub mod observe;
pub mod probes;
pub mod scale;
pub mod state;
