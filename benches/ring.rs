//! Native micro-benchmarks of the routing core (criterion): `cargo bench --bench ring`.
//!
//! - `hash_lookup/N`: murmur3 of a 16–32 byte session key plus `Ring::owner`, N equal hosts at
//!   the default `vnodes_per_weight` (the per-request ring cost);
//! - `lookup/N`: `Ring::owner` of a precomputed hash alone; `murmur3/L`: the hash alone;
//! - `ring_build/N`: `Ring::build` for N equal hosts; `config_compile/N`: the whole
//!   `Config::parse` (JSON, validation, host tags, ring) as `on_configure` runs it;
//! - `decide/*`: the full `router::decide` (+ `target_value` where named) for a header-keyed
//!   request, a request carrying a valid sticky cookie (HMAC verify), and a new session (random
//!   id, HMAC sign, `Set-Cookie` formatting); `request_view` is the header copy the filter makes
//!   before deciding (what `get_map_bytes` hands back: one `String` and one `Vec` per header).
//!
//! - `rdv_hash_lookup/N`, `rdv_lookup/N`: the same for the rendezvous table (`Rendezvous::owner`);
//!   `rdv_hash_lookup_fb2/N`: hash + owner + the first 2 fallbacks (`walk(..).take(3)`), the whole
//!   placement work of an override_host request with 2 fallbacks (4,096 keys in turn: most
//!   slots' next two hosts are remembered in the VM's fallback cache, 65,536 entries);
//!   `rdv_hash_lookup_fb2_cold/N`: the same for keys never seen recently (every host scored,
//!   but for the 1 in 16 whose entry happens to hold their slot); `rdv_hash_lookup_fb2_warm/N`:
//!   for 64 keys in turn (always remembered);
//! - `rdv_build/N`: `Rendezvous::build` from scratch; `rdv_add/N`, `rdv_remove/N`: a membership
//!   change (one host added, one removed) from the previous table, as discovery does it.
//!
//! Ring and table memory (`memory_bytes`), the rendezvous fallback cache every table of a VM
//! shares, and point counts are printed before the timings.
//! `cargo bench --bench ring -- --quick` gives rougher numbers in a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use session_router::config::{Config, DEFAULT_VNODES_PER_WEIGHT};
use session_router::murmur3::hash64;
use session_router::rendezvous::Rendezvous;
use session_router::request::HeaderPairs;
use session_router::ring::Ring;
use session_router::router::{AllUp, decide, target_value};

const HOST_COUNTS: [usize; 3] = [10, 100, 1000];
const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

/// Deterministic 16–32 byte keys (hex of a splitmix64 stream), like session ids and user ids.
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut state = 0x5eed_u64;
    (0..n)
        .map(|i| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let hex = format!("{z:016x}{:016x}", z.rotate_left(17) ^ state);
            hex.as_bytes()[..16 + i % 17].to_vec()
        })
        .collect()
}

fn host_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)).collect();
    ids.sort();
    ids
}

fn ring(n: usize) -> Ring {
    let ids = host_ids(n);
    Ring::build(ids.iter().map(|id| (id.as_bytes(), DEFAULT_VNODES_PER_WEIGHT))).unwrap()
}

fn rendezvous(n: usize) -> Rendezvous {
    let ids = host_ids(n);
    Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1))).unwrap()
}

fn config_json(n: usize, sticky: bool, fallbacks: u32) -> String {
    let hosts: Vec<String> = host_ids(n).iter().map(|a| format!(r#"{{"address":"{a}"}}"#)).collect();
    let sticky = if sticky {
        format!(r#","sticky_cookie":{{"name":"srv","ttl_seconds":3600,"secret":"{SECRET}","secure":false}}"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x-user-id"}}]{sticky},
            "target":{{"header":"x-gateway-destination-endpoint","fallbacks":{fallbacks}}}}}"#,
        hosts.join(",")
    )
}

fn config(n: usize, sticky: bool, fallbacks: u32) -> Config {
    Config::parse(config_json(n, sticky, fallbacks).as_bytes(), |_| None).unwrap()
}

/// A typical small request (what wrk sends plus a session key), as `(name, value)` pairs.
fn request_pairs(extra: (&str, &str)) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        (":authority", "bench.local".to_owned()),
        (":path", "/".to_owned()),
        (":method", "GET".to_owned()),
        (":scheme", "http".to_owned()),
        ("user-agent", "wrk".to_owned()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-request-id", "6d3f1c52-8f0a-4d1e-9b7a-2f4c8e1a0b3d".to_owned()),
    ];
    pairs.insert(4, (if extra.0 == "cookie" { "cookie" } else { "x-user-id" }, extra.1.to_owned()));
    pairs
}

/// The request as the filter holds it: every header pair, owned, and the downstream address.
fn req(pairs: &[(&str, String)]) -> HeaderPairs {
    HeaderPairs::from_pairs(pairs.iter().map(|(n, v)| (*n, v.as_str()))).with_source("127.0.0.1:40000")
}

fn counter_ids() -> impl FnMut() -> [u8; 16] {
    let mut n = 0u128;
    move || {
        n += 1;
        n.to_le_bytes()
    }
}

const NOW: u64 = 1_800_000_000;

fn print_memory() {
    println!("ring memory at vnodes_per_weight = {DEFAULT_VNODES_PER_WEIGHT} (Ring::memory_bytes):");
    for n in HOST_COUNTS {
        let r = ring(n);
        println!(
            "  ring_memory/{n:<5} {:>9} points {:>10} bytes ({:.1} KiB)",
            r.point_count(),
            r.memory_bytes(),
            r.memory_bytes() as f64 / 1024.0
        );
    }
    println!("rendezvous table memory (Rendezvous::memory_bytes), and with the per-VM fallback cache:");
    for n in HOST_COUNTS {
        let r = rendezvous(n);
        r.walk(0).take(3).count(); // allocates the cache (once per process)
        let with_cache = r.memory_bytes() + Rendezvous::fallback_cache_bytes();
        println!(
            "  rdv_memory/{n:<5} {:>10} bytes ({:.1} KiB), {with_cache:>10} bytes ({:.1} KiB) with the cache",
            r.memory_bytes(),
            r.memory_bytes() as f64 / 1024.0,
            with_cache as f64 / 1024.0
        );
    }
}

/// One group over [`HOST_COUNTS`]: `route(&build(n), k)` for the keys in turn (4,096 of them).
fn lookup_group<P, R>(
    c: &mut Criterion,
    name: &str,
    build: impl Fn(usize) -> P,
    route: impl Fn(&P, usize) -> R,
) {
    lookup_group_over(c, name, 4096, build, route);
}

/// [`lookup_group`] over `keys` keys in turn (a power of two).
fn lookup_group_over<P, R>(
    c: &mut Criterion,
    name: &str,
    keys: usize,
    build: impl Fn(usize) -> P,
    route: impl Fn(&P, usize) -> R,
) {
    let mut g = c.benchmark_group(name);
    for n in HOST_COUNTS {
        let placement = build(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut k = 0usize;
            b.iter(|| {
                k = (k + 1) & (keys - 1);
                route(&placement, k)
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    print_memory();
    let keys = keys(4096);

    let mut g = c.benchmark_group("murmur3");
    for len in [16usize, 32] {
        let key = &keys.iter().find(|k| k.len() == len).unwrap()[..];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(format!("{len}B")), key, |b, key| {
            b.iter(|| hash64(black_box(key)))
        });
    }
    g.finish();

    lookup_group(c, "hash_lookup", ring, |r, k| r.owner(hash64(black_box(&keys[k]))));

    let hashes: Vec<u64> = keys.iter().map(|k| hash64(k)).collect();
    lookup_group(c, "lookup", ring, |r, k| r.owner(black_box(hashes[k])));

    lookup_group(c, "rdv_hash_lookup", rendezvous, |r, k| r.owner(hash64(black_box(&keys[k]))));

    lookup_group(c, "rdv_lookup", rendezvous, |r, k| r.owner(black_box(hashes[k])));

    lookup_group(c, "rdv_hash_lookup_fb2", rendezvous, |r, k| {
        r.walk(hash64(black_box(&keys[k]))).take(3).fold(0, |a, h| a ^ h)
    });

    // The same with a key no recent request had: 2^20 distinct keys in turn, so the VM's memory
    // of walked slots (65,536 entries, 16 slots to an entry) holds the slot only by chance (1 in
    // 16): every host is scored.
    let cold: Vec<u64> = (0..1u64 << 20).map(|i| hash64(&i.to_le_bytes())).collect();
    // And with keys walked moments ago (64 in turn, as a few active sessions' requests): every
    // lookup finds its slot's next two hosts remembered.
    for (name, keys) in [("rdv_hash_lookup_fb2_cold", 1 << 20), ("rdv_hash_lookup_fb2_warm", 64)] {
        lookup_group_over(c, name, keys, rendezvous, |r, k| {
            r.walk(black_box(cold[k])).take(3).fold(0, |a, h| a ^ h)
        });
    }

    lookup_group(c, "ring_hash_lookup_fb2", ring, |r, k| {
        r.walk(hash64(black_box(&keys[k]))).take(3).fold(0, |a, h| a ^ h)
    });

    let mut g = c.benchmark_group("rdv_build");
    g.sample_size(10);
    for n in HOST_COUNTS {
        let ids = host_ids(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1))).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rdv_membership");
    g.sample_size(10);
    for n in HOST_COUNTS {
        let ids = host_ids(n);
        let base = rendezvous(n);
        let mut added = ids.clone();
        added.push("10.9.9.9:8080".to_owned());
        added.sort();
        let removed: Vec<String> = ids[1..].to_vec();
        g.bench_function(BenchmarkId::new("add", n), |b| {
            b.iter(|| base.rebuild(added.iter().map(|id| (id.as_bytes(), 1))).unwrap())
        });
        g.bench_function(BenchmarkId::new("remove", n), |b| {
            b.iter(|| base.rebuild(removed.iter().map(|id| (id.as_bytes(), 1))).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ring_build");
    for n in HOST_COUNTS {
        let ids = host_ids(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| Ring::build(ids.iter().map(|id| (id.as_bytes(), DEFAULT_VNODES_PER_WEIGHT))).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("config_compile");
    for n in HOST_COUNTS {
        let json = config_json(n, true, 2);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| Config::parse(black_box(json.as_bytes()), |_| None).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("decide");
    // Header-keyed: the pure hash path (no sticky cookie configured), 10 hosts.
    let plain = config(10, false, 0);
    let plain_fb = config(10, false, 2);
    let header_req = req(&request_pairs(("x-user-id", "user-4f2a9c1e7b3d5a60")));
    g.bench_function("header_key", |b| {
        let mut ids = counter_ids();
        b.iter(|| decide(&plain, black_box(&header_req), &AllUp, NOW, &mut ids))
    });
    g.bench_function("header_key+target_fb2", |b| {
        let mut ids = counter_ids();
        b.iter(|| {
            let d = decide(&plain_fb, black_box(&header_req), &AllUp, NOW, &mut ids);
            target_value(&plain_fb, &d, &AllUp)
        })
    });

    // Sticky: a valid cookie minted by the same config, verified and pinned.
    let sticky = config(10, true, 2);
    let minted = decide(&sticky, &req(&request_pairs(("cookie", "a=b"))), &AllUp, NOW, &mut counter_ids());
    let set_cookie = minted.set_cookie.expect("a new session gets a cookie");
    let value = set_cookie.split(';').next().unwrap().to_owned(); // "srv=…"
    let sticky_req = req(&request_pairs(("cookie", &value)));
    assert!(decide(&sticky, &sticky_req, &AllUp, NOW, &mut counter_ids()).set_cookie.is_none());
    g.bench_function("sticky_verify", |b| {
        let mut ids = counter_ids();
        b.iter(|| decide(&sticky, black_box(&sticky_req), &AllUp, NOW, &mut ids))
    });
    g.bench_function("sticky_verify+target_fb2", |b| {
        let mut ids = counter_ids();
        b.iter(|| {
            let d = decide(&sticky, black_box(&sticky_req), &AllUp, NOW, &mut ids);
            target_value(&sticky, &d, &AllUp)
        })
    });
    // New session: no key, no cookie: random id, ring, HMAC sign, Set-Cookie string.
    let new_req = req(&request_pairs(("cookie", "theme=dark")));
    g.bench_function("new_session_issue", |b| {
        let mut ids = counter_ids();
        b.iter(|| decide(&sticky, black_box(&new_req), &AllUp, NOW, &mut ids))
    });
    // The header copy the filter makes per request before `decide` runs.
    let pairs = request_pairs(("x-user-id", "user-4f2a9c1e7b3d5a60"));
    g.bench_function("request_view", |b| b.iter(|| req(black_box(&pairs))));
    g.finish();
}

fn quick() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2))
}

criterion_group! { name = ring_benches; config = quick(); targets = benches }
criterion_main!(ring_benches);
