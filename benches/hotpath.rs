//! Native micro-benchmarks of the per-request path's pieces that the filter's hot path changed
//! (criterion): `cargo bench --bench hotpath`.
//!
//! - `request_view/all_pairs`: every pair of a typical request's serialized header map copied
//!   into [`HeaderPairs`] (one `String` and one `Vec` each), as the filter used to;
//!   `request_view/wanted_pairs`: only the pairs the configured sources read (here `cookie`), as
//!   it does now (`HeaderPairs::from_serialized_map`);
//! - `route/override_host_fb2`: the whole pure part of an override_host request with 2 fallbacks
//!   (the bench's variant e): wanted pairs, `decide`, `target_value`;
//! - `sticky_verify/cached_key`: one sticky cookie verified with the configuration's `CookieKey`
//!   (HMAC-SHA256 inner and outer states computed once per configuration);
//!   `sticky_verify/key_per_request`: the same with the key schedule redone for each request,
//!   what caching it saves.
//!
//! `cargo bench --bench hotpath -- --quick` gives rougher numbers in a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use session_router::config::Config;
use session_router::request::{HeaderPairs, serialize_map};
use session_router::router::{AllUp, decide, target_value};
use session_router::sticky::{self, Claims, CookieKey, Policy};

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// The headers Envoy holds for one of the bench's requests when the filter runs.
fn typical_request() -> Vec<u8> {
    serialize_map(&[
        (":authority", "127.0.0.1:17004"),
        (":path", "/"),
        (":method", "GET"),
        (":scheme", "http"),
        ("accept-encoding", "identity"),
        ("cookie", "sid=4f1c2a9e7b3d8c6a5e2f1b0c9d8e7f6a"),
        ("user-agent", "python-http-client"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0b1e4d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b"),
    ])
}

fn override_host_config() -> Config {
    let hosts: Vec<String> =
        (1..=10).map(|i| format!("{{\"address\": \"127.0.0.1:{}\"}}", 18000 + i)).collect();
    let json = format!(
        r#"{{"hosts": [{}], "sources": [{{"type": "cookie", "name": "sid"}}],
            "target": {{"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2}},
            "health": {{"passive": {{"consecutive_failures": 3, "ejection_seconds": 10}}}}}}"#,
        hosts.join(", ")
    );
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

fn bench_request_view(c: &mut Criterion) {
    let buf = typical_request();
    let mut g = c.benchmark_group("request_view");
    g.bench_function("all_pairs", |b| b.iter(|| HeaderPairs::from_serialized_map(black_box(&buf), |_| true)));
    g.bench_function("wanted_pairs", |b| {
        b.iter(|| HeaderPairs::from_serialized_map(black_box(&buf), |n| n == "cookie"))
    });
    g.finish();
}

fn bench_route(c: &mut Criterion) {
    let buf = typical_request();
    let cfg = override_host_config();
    let mut ids = || [7u8; 16];
    c.bench_function("route/override_host_fb2", |b| {
        b.iter(|| {
            let req = HeaderPairs::from_serialized_map(black_box(&buf), |n| n == "cookie");
            let d = decide(&cfg, &req, &AllUp, 0, &mut ids);
            target_value(&cfg, &d, &AllUp).len()
        })
    });
}

fn bench_sticky_verify(c: &mut Criterion) {
    let now = 1_700_000_000;
    let policy = Policy { ttl_seconds: 86_400, idle_timeout_seconds: None };
    let key = CookieKey::for_cookie(SECRET.as_bytes(), "srv");
    let claims =
        Claims { session_id: [3; 16], point: 42, host: [1; 8], expires_at: now + 3600, refreshed_at: now };
    let value = sticky::encode(&key, &claims);
    let mut g = c.benchmark_group("sticky_verify");
    g.bench_function("cached_key", |b| {
        b.iter(|| {
            sticky::verify(std::slice::from_ref(&key), black_box(value.as_bytes()), policy, now).is_ok()
        })
    });
    g.bench_function("key_per_request", |b| {
        b.iter(|| {
            let fresh = CookieKey::for_cookie(black_box(SECRET.as_bytes()), "srv");
            sticky::verify(std::slice::from_ref(&fresh), black_box(value.as_bytes()), policy, now).is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_request_view, bench_route, bench_sticky_verify);
criterion_main!(benches);
