//! Ring properties: probes at the edges, balance, movement on add/remove, weights, order
//! independence, and a frozen placement table that every worker, replica and release must share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::Config;
use session_router::murmur3::hash64;
use session_router::ring::{Ring, RingError};

/// A config on the ring (the rendezvous table has its own tests in tests/placement.rs).
fn config(hosts: &str) -> Config {
    let json = format!(
        r#"{{"hosts":{hosts},"sources":[{{"type":"header","name":"x-user-id"}}],
            "target":{{"header":"x-envoy-original-dst-host"}},"placement":{{"algorithm":"ring"}}}}"#
    );
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

fn equal_hosts(n: usize) -> String {
    let hosts: Vec<String> =
        (0..n).map(|i| format!(r#"{{"address":"10.1.{}.{}:8080"}}"#, i / 200, i % 200 + 1)).collect();
    format!("[{}]", hosts.join(","))
}

fn keys(n: usize) -> Vec<u64> {
    (0..n).map(|k| hash64(format!("session-{k}").as_bytes())).collect()
}

fn owner_id(cfg: &Config, hash: u64) -> &str {
    &cfg.hosts[cfg.placement.owner(hash)].id
}

/// Position of host `id`'s `replica`-th point, as the ring module documents it.
fn point(id: &str, replica: u32) -> u64 {
    let mut bytes = id.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(&replica.to_le_bytes());
    hash64(&bytes) & !0xffff
}

#[test]
fn probes_at_zero_max_exact_point_and_after() {
    // Two hosts, one point each: "a" owns [after b's point .. a's point], "b" the rest.
    let ring = Ring::build([(&b"a"[..], 1), (&b"b"[..], 1)].into_iter()).unwrap();
    let (pa, pb) = (point("a", 0), point("b", 0));
    let (first, second) = if pa < pb { (0, 1) } else { (1, 0) };
    let (lo, hi) = (pa.min(pb), pa.max(pb));
    assert_eq!(ring.owner(0), first, "hash 0 belongs to the first point");
    assert_eq!(ring.owner(u64::MAX), first, "past the last point wraps to the first");
    assert_eq!(ring.owner(lo), first, "an exact point belongs to its host");
    assert_eq!(ring.owner(lo + 0x1_0000), second, "one position past a point goes clockwise");
    assert_eq!(ring.owner(hi), second);
    assert_eq!(ring.owner(hi + 0x1_0000), first);
}

#[test]
fn build_rejects_empty_and_pointless() {
    assert_eq!(Ring::build(std::iter::empty::<(&[u8], u32)>()), Err(RingError::NoHosts));
    assert_eq!(Ring::build([(&b"a"[..], 0)].into_iter()), Err(RingError::NoPoints(0)));
}

#[test]
fn spreads_keys_evenly() {
    let ks = keys(100_000);
    for (n, bound) in [(3, 1.12), (10, 1.15), (100, 1.3)] {
        let cfg = config(&equal_hosts(n));
        let mut counts = vec![0usize; n];
        for &k in &ks {
            counts[cfg.placement.owner(k)] += 1;
        }
        let mean = ks.len() as f64 / n as f64;
        let max = *counts.iter().max().unwrap() as f64;
        let min = *counts.iter().min().unwrap() as f64;
        println!("{n} hosts: max/mean {:.3}, min/mean {:.3}", max / mean, min / mean);
        assert!(max / mean <= bound, "{n} hosts: max/mean {:.3} > {bound}", max / mean);
        assert!(min / mean >= 2.0 - bound, "{n} hosts: min/mean {:.3}", min / mean);
    }
}

#[test]
fn adding_a_host_moves_only_keys_to_it_about_one_in_n_plus_one() {
    let ks = keys(50_000);
    for n in [3, 10, 50] {
        let before = config(&equal_hosts(n));
        let after = config(&equal_hosts(n + 1));
        let new_id = &after.hosts.iter().find(|h| !before.hosts.iter().any(|b| b.id == h.id)).unwrap().id;
        let mut moved = 0;
        for &k in &ks {
            let (a, b) = (owner_id(&before, k), owner_id(&after, k));
            if a != b {
                assert_eq!(b, new_id, "a key moved between two old hosts");
                moved += 1;
            }
        }
        let ratio = moved as f64 / (ks.len() as f64 / (n + 1) as f64);
        println!("{n}→{}: moved {moved}, {ratio:.3}× optimal", n + 1);
        assert!((0.75..=1.25).contains(&ratio), "{n}→{}: {ratio:.3}× optimal", n + 1);
    }
}

#[test]
fn removing_a_host_moves_only_its_keys_to_its_successor() {
    let ks = keys(50_000);
    let before = config(&equal_hosts(10));
    let gone = before.hosts[4].id.clone();
    let remaining: Vec<String> = before
        .hosts
        .iter()
        .filter(|h| h.id != gone)
        .map(|h| format!(r#"{{"address":"{}"}}"#, h.address))
        .collect();
    let after = config(&format!("[{}]", remaining.join(",")));
    for &k in &ks {
        let was = owner_id(&before, k);
        let now = owner_id(&after, k);
        if was == gone {
            let successor = before.placement.walk(k).nth(1).unwrap();
            assert_eq!(now, before.hosts[successor].id, "moved to its ring successor");
        } else {
            assert_eq!(now, was, "a key of a remaining host moved");
        }
    }
}

#[test]
fn weights_are_proportional() {
    let cfg = config(
        r#"[{"address":"10.0.0.1:80","weight":1},{"address":"10.0.0.2:80","weight":2},
            {"address":"10.0.0.3:80","weight":3}]"#,
    );
    let ks = keys(60_000);
    let mut counts = [0usize; 3];
    for &k in &ks {
        counts[cfg.placement.owner(k)] += 1;
    }
    for (i, h) in cfg.hosts.iter().enumerate() {
        let expected = ks.len() as f64 * f64::from(h.weight) / 6.0;
        let ratio = counts[i] as f64 / expected;
        assert!((0.9..=1.1).contains(&ratio), "{} weight {}: {ratio:.3}", h.id, h.weight);
    }
    assert_eq!(cfg.placement.point_count() as u32, 6 * cfg.vnodes_per_weight);
}

#[test]
fn host_order_in_config_does_not_matter() {
    let a = config(r#"[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"},{"address":"10.0.0.3:80"}]"#);
    let b = config(r#"[{"address":"10.0.0.3:80"},{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"}]"#);
    for k in keys(5_000) {
        assert_eq!(owner_id(&a, k), owner_id(&b, k));
    }
}

#[test]
fn a_host_keeps_its_sessions_when_its_address_changes_under_the_same_id() {
    let a = config(r#"[{"address":"10.0.0.1:80","id":"a"},{"address":"10.0.0.2:80","id":"b"}]"#);
    let b = config(r#"[{"address":"10.9.9.9:80","id":"a"},{"address":"10.0.0.2:80","id":"b"}]"#);
    for k in keys(5_000) {
        assert_eq!(owner_id(&a, k), owner_id(&b, k));
    }
}

#[test]
fn walk_yields_every_host_once_starting_with_the_owner() {
    let cfg = config(&equal_hosts(7));
    for k in keys(500) {
        let order: Vec<usize> = cfg.placement.walk(k).collect();
        assert_eq!(order[0], cfg.placement.owner(k));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..7).collect::<Vec<_>>());
    }
    let single = config(&equal_hosts(1));
    assert_eq!(single.placement.walk(42).collect::<Vec<_>>(), [0]);
}

#[test]
fn first_eligible_skips_and_gives_up_after_one_lap() {
    let cfg = config(&equal_hosts(5));
    for k in keys(200) {
        let owner = cfg.placement.owner(k);
        let next = cfg.placement.first_eligible(k, |h| h != owner).unwrap();
        assert_eq!(Some(next), cfg.placement.walk(k).nth(1));
        assert_eq!(cfg.placement.first_eligible(k, |_| false), None);
    }
}

/// Frozen placement. If this test fails, a change moved live sessions: every deployed proxy
/// would disagree with the new release. Change the ring only on purpose, with a new version.
#[test]
fn golden_placement() {
    let cfg = config(
        r#"[{"address":"10.0.0.11:8080"},{"address":"10.0.0.12:8080","weight":2},
            {"address":"10.0.0.13:8080"},{"address":"[2001:db8::1]:8080","id":"v6-host"}]"#,
    );
    let table = [
        ("alice", "10.0.0.13:8080"),
        ("bob", "10.0.0.12:8080"),
        ("carol", "10.0.0.13:8080"),
        ("dave", "10.0.0.12:8080"),
        ("user-1", "10.0.0.12:8080"),
        ("user-2", "10.0.0.11:8080"),
        ("user-3", "10.0.0.13:8080"),
        ("user-42", "10.0.0.11:8080"),
        ("session-0", "v6-host"),
        ("session-1", "10.0.0.11:8080"),
        ("session-2", "v6-host"),
        ("session-3", "10.0.0.11:8080"),
        ("session-4", "10.0.0.12:8080"),
        ("session-5", "10.0.0.11:8080"),
        ("€uro", "v6-host"),
        ("0", "10.0.0.12:8080"),
        ("1", "10.0.0.12:8080"),
    ];
    for (key, host) in table {
        assert_eq!(owner_id(&cfg, hash64(key.as_bytes())), host, "key {key:?}");
    }
}

/// The same table the Envoy integration test checks against the shipped `.wasm`
/// (tests/envoy/test_filter.py, GOLDEN): native and wasm builds must agree.
#[test]
fn golden_placement_shared_with_the_wasm_test() {
    let cfg = config(
        r#"[{"address":"127.0.0.1:18081","id":"backend-a"},{"address":"127.0.0.1:18082","id":"backend-b"},
            {"address":"127.0.0.1:18083","id":"backend-c"}]"#,
    );
    let table = [
        ("alice", "backend-b"),
        ("bob", "backend-b"),
        ("carol", "backend-c"),
        ("dave", "backend-a"),
        ("erin", "backend-a"),
        ("frank", "backend-c"),
        ("grace", "backend-c"),
        ("heidi", "backend-b"),
        ("ivan", "backend-c"),
        ("judy", "backend-b"),
    ];
    for (key, host) in table {
        assert_eq!(owner_id(&cfg, hash64(key.as_bytes())), host, "key {key:?}");
    }
}

#[test]
fn ring_memory_is_eight_bytes_a_point() {
    let cfg = config(&equal_hosts(1000));
    assert_eq!(cfg.placement.point_count(), 1000 * cfg.vnodes_per_weight as usize);
    assert!(cfg.placement.memory_bytes() <= 2 * 1024 * 1024, "{} bytes", cfg.placement.memory_bytes());
}
