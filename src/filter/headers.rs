//! Reading the request headers the configured sources need, and nothing else.
//!
//! One `proxy_get_header_map_pairs` call copies every pair (Envoy's `get_header_map_value`
//! returns only the first value of a repeated header, and the router must see every value to
//! refuse conflicting duplicates); only the wanted pairs are then copied out of that buffer into
//! [`HeaderPairs`], instead of two allocations per pair for all of them.

use crate::config::{Config, Source};
use crate::request::HeaderPairs;

/// Whether a request header named `name` (lowercase) can matter to `cfg`'s decision.
pub(super) fn wanted(cfg: &Config, name: &str) -> bool {
    if name == "cookie" && cfg.sticky.is_some() {
        return true;
    }
    cfg.sources.iter().any(|s| match s {
        Source::Cookie { .. } => name == "cookie",
        Source::Header { name: n } => n == name,
        Source::Query { .. } => name == ":path",
        Source::Jwt { header, .. } => header == name,
        Source::SourceIp => false,
    })
}

/// The request as the router reads it: the wanted header pairs, in order, and the downstream
/// address read on demand.
pub(super) fn request(cfg: &Config, source: fn() -> Option<String>) -> HeaderPairs {
    let buf = raw_request_pairs().unwrap_or_default();
    HeaderPairs::from_serialized_map(&buf, |name| wanted(cfg, name)).with_lazy_source(source)
}

/// The serialized request header pairs (one host call), or `None` on any error: the request is
/// then routed as one without headers, never failed.
fn raw_request_pairs() -> Option<Vec<u8>> {
    super::host::get_map_pairs(super::host::MapType::HttpRequestHeaders).ok().flatten()
}
