//! Bounded load over simulated traces: new bindings respect ⌈c × mean⌉, pinned sessions never
//! move, uniform keys barely spill, and the same trace always gives the same placements.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::VecDeque;

use common::req;
use session_router::config::Config;
use session_router::router::{AllUp, Kind, decide, decide_with_load};

const NOW: u64 = 1_700_000_000;
const HOSTS: usize = 10;

fn config(bounded: &str, sticky: bool) -> Config {
    let hosts: Vec<String> =
        (0..HOSTS).map(|i| format!(r#"{{"address":"10.0.0.{}:80","id":"h{i}"}}"#, i + 1)).collect();
    let sticky = if sticky {
        r#""sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},"#
    } else {
        ""
    };
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x-user"}}],{sticky}
            {bounded}"target":{{"header":"x-gateway-destination-endpoint","fallbacks":2}}}}"#,
        hosts.join(",")
    );
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

fn ids() -> impl FnMut() -> [u8; 16] {
    let mut n = 0u128;
    move || {
        n += 1;
        n.to_le_bytes()
    }
}

/// A small deterministic generator (SplitMix64), so traces are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Keys whose unloaded owner is host `owner`.
fn keys_owned_by(cfg: &Config, owner: usize, n: usize) -> Vec<String> {
    (0..)
        .map(|k| format!("hot-{k}"))
        .filter(|k| decide(cfg, &req(&[("x-user", k)]), &AllUp, NOW, &mut ids()).host == owner)
        .take(n)
        .collect()
}

struct Outcome {
    placements: Vec<usize>,
    spills: usize,
    worst_excess: i64,
}

/// `steps` new bindings; each holds its host for `duration` steps. `hot_share` percent of the keys
/// are drawn from keys the ring gives to host 0. After every step, every host's in-flight count is
/// compared with ⌈c × mean⌉ + 1; `worst_excess` is the largest overshoot (≤ 0 when it holds).
fn trace(cfg: &Config, steps: usize, duration: usize, hot_share: u64, seed: u64) -> Outcome {
    let hot = keys_owned_by(cfg, 0, 200);
    let mut rng = Rng(seed);
    let mut loads = vec![0u64; HOSTS];
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut out = Outcome { placements: Vec::new(), spills: 0, worst_excess: i64::MIN };
    let factor_milli = cfg.bounded_load.map_or(1000, |b| b.factor_milli);
    for _ in 0..steps {
        if in_flight.len() == duration {
            let done = in_flight.pop_front().unwrap();
            loads[done] -= 1;
        }
        let key = if rng.next() % 100 < hot_share {
            hot[(rng.next() % hot.len() as u64) as usize].clone()
        } else {
            format!("user-{}", rng.next())
        };
        let d = decide_with_load(cfg, &req(&[("x-user", &key)]), &AllUp, loads.as_slice(), NOW, &mut ids());
        assert_eq!(d.kind, Kind::Hashed(0));
        out.spills += usize::from(d.spilled_from.is_some());
        loads[d.host] += 1;
        in_flight.push_back(d.host);
        out.placements.push(d.host);
        let total: u64 = loads.iter().sum();
        let bound = (factor_milli * total).div_ceil(1000 * HOSTS as u64) + 1;
        let max = *loads.iter().max().unwrap();
        out.worst_excess = out.worst_excess.max(max as i64 - bound as i64);
    }
    out
}

const C125: &str = r#""bounded_load":{"factor":1.25},"#;

#[test]
fn a_hot_key_set_never_pushes_a_host_past_the_bound() {
    let cfg = config(C125, true);
    let out = trace(&cfg, 20_000, 500, 20, 7);
    assert!(out.worst_excess <= 0, "a host went {} over ⌈1.25 × mean⌉ + 1", out.worst_excess);
    assert!(out.spills > 1000, "20% hot keys on one of 10 hosts must spill: {}", out.spills);
    // Without the bound, the same trace piles onto host 0 (~28% of all bindings).
    let unbounded = trace(&config("", true), 20_000, 500, 20, 7);
    assert!(unbounded.worst_excess > 20, "the skew is real: {}", unbounded.worst_excess);
    assert_eq!(unbounded.spills, 0);
}

#[test]
fn uniform_keys_barely_spill() {
    let out = trace(&config(C125, true), 20_000, 1000, 0, 11);
    assert!(out.worst_excess <= 0);
    assert!(out.spills * 100 < 20_000, "{} spills of 20000 (≥ 1%)", out.spills);
}

#[test]
fn the_same_trace_gives_the_same_placements() {
    let cfg = config(C125, true);
    let a = trace(&cfg, 5_000, 300, 20, 3);
    let b = trace(&cfg, 5_000, 300, 20, 3);
    assert_eq!(a.placements, b.placements);
    assert!(a.spills > 0);
}

#[test]
fn a_spill_goes_to_the_next_choice_in_fallback_order() {
    let cfg = config(C125, true);
    let key = "alice";
    let d0 = decide(&cfg, &req(&[("x-user", key)]), &AllUp, NOW, &mut ids());
    let order: Vec<usize> = cfg.placement.walk(d0.point).collect();
    assert_eq!(order[0], d0.host);
    // Its first two choices full, everyone else idle.
    let mut loads = vec![0u64; HOSTS];
    loads[order[0]] = 10;
    loads[order[1]] = 10;
    let d = decide_with_load(&cfg, &req(&[("x-user", key)]), &AllUp, loads.as_slice(), NOW, &mut ids());
    assert_eq!((d.host, d.spilled_from), (order[2], Some(order[0])));
    // The cookie it gets pins it where it landed.
    let cookie = d.set_cookie.as_ref().unwrap().split(';').next().unwrap().to_owned();
    let next = decide(&cfg, &req(&[("cookie", &cookie), ("x-user", key)]), &AllUp, NOW + 1, &mut ids());
    assert_eq!((next.kind, next.host), (Kind::Pinned, order[2]));
}

#[test]
fn pinned_sessions_never_spill() {
    let cfg = config(C125, true);
    let mut idgen = ids();
    for k in 0..200 {
        let key = format!("pinned-{k}");
        let first = decide(&cfg, &req(&[("x-user", &key)]), &AllUp, NOW, &mut idgen);
        let cookie = first.set_cookie.as_ref().unwrap().split(';').next().unwrap().to_owned();
        // Its host is massively overloaded; the cookie still wins.
        let mut loads = vec![0u64; HOSTS];
        loads[first.host] = 1_000;
        let d = decide_with_load(
            &cfg,
            &req(&[("cookie", &cookie)]),
            &AllUp,
            loads.as_slice(),
            NOW + 1,
            &mut idgen,
        );
        assert_eq!((d.kind, d.host, d.spilled_from), (Kind::Pinned, first.host, None));
    }
}

#[test]
fn without_a_sticky_cookie_hashed_keys_are_not_steered_unless_asked() {
    let safe = config(C125, false);
    let d0 = decide(&safe, &req(&[("x-user", "bob")]), &AllUp, NOW, &mut ids());
    let mut loads = vec![0u64; HOSTS];
    loads[d0.host] = 1_000;
    let d = decide_with_load(&safe, &req(&[("x-user", "bob")]), &AllUp, loads.as_slice(), NOW, &mut ids());
    assert_eq!((d.host, d.spilled_from), (d0.host, None), "a hashed key without a cookie stays put");
    // New sessions (no key) are still steered: nothing pins them anyway.
    let n = decide_with_load(&safe, &req(&[]), &AllUp, loads.as_slice(), NOW, &mut ids());
    assert_eq!(n.kind, Kind::New);
    assert_ne!(n.host, d0.host);

    let opted = config(r#""bounded_load":{"factor":1.25,"spill_unpinned_keys":true},"#, false);
    let d = decide_with_load(&opted, &req(&[("x-user", "bob")]), &AllUp, loads.as_slice(), NOW, &mut ids());
    assert_eq!(d.spilled_from, Some(d0.host));
}

#[test]
fn drained_and_down_hosts_stay_excluded_from_spills() {
    let cfg = config(C125, true);
    let d0 = decide(&cfg, &req(&[("x-user", "carol")]), &AllUp, NOW, &mut ids());
    let order: Vec<usize> = cfg.placement.walk(d0.point).collect();
    let mut loads = vec![0u64; HOSTS];
    loads[order[0]] = 10;
    // Its second choice is down: the spill skips it.
    let down: Vec<bool> = (0..HOSTS).map(|h| h == order[1]).collect();
    let d = decide_with_load(
        &cfg,
        &req(&[("x-user", "carol")]),
        down.as_slice(),
        loads.as_slice(),
        NOW,
        &mut ids(),
    );
    assert_eq!((d.host, d.spilled_from), (order[2], Some(order[0])));
}

#[test]
fn factor_must_be_above_one_and_finite() {
    for bad in ["1", "1.0", "0.5", "1.0004", "1.0009", "-2", "11", "10.01"] {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"source_ip"}}],
                "bounded_load":{{"factor":{bad}}},"target":{{"header":"x-envoy-original-dst-host"}}}}"#
        );
        let e = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert_eq!(e.field, "bounded_load.factor", "{bad}: {e}");
    }
    let ok = config(r#""bounded_load":{"factor":1.5},"#, true);
    assert_eq!(ok.bounded_load.unwrap().factor_milli, 1500);
    assert!(!ok.bounded_load.unwrap().spill_unpinned_keys);
}

/// Envoy spreads connections over W workers, each counting only its own requests in flight. Each
/// worker keeps its hosts within ⌈c × its mean⌉, so summed over workers a host carries at most
/// c × mean + W: the global bound loosens by one request per worker (README "Bounded load").
#[test]
fn w_workers_keep_the_global_load_within_c_times_mean_plus_w() {
    let cfg = config(C125, true);
    let hot = keys_owned_by(&cfg, 0, 200);
    for workers in [1usize, 2, 4, 8] {
        let mut rng = Rng(99);
        let mut loads = vec![vec![0u64; HOSTS]; workers];
        let mut in_flight: VecDeque<(usize, usize)> = VecDeque::new();
        let mut worst = i64::MIN;
        for step in 0..20_000 {
            if in_flight.len() == 600 {
                let (w, h) = in_flight.pop_front().unwrap();
                loads[w][h] -= 1;
            }
            let w = step % workers;
            let key = if rng.next() % 100 < 20 {
                hot[(rng.next() % hot.len() as u64) as usize].clone()
            } else {
                format!("user-{}", rng.next())
            };
            let d = decide_with_load(
                &cfg,
                &req(&[("x-user", &key)]),
                &AllUp,
                loads[w].as_slice(),
                NOW,
                &mut ids(),
            );
            loads[w][d.host] += 1;
            in_flight.push_back((w, d.host));
            let global: Vec<u64> = (0..HOSTS).map(|h| loads.iter().map(|l| l[h]).sum()).collect();
            let total: u64 = global.iter().sum();
            let bound = (1250 * total).div_ceil(1000 * HOSTS as u64);
            worst = worst.max(*global.iter().max().unwrap() as i64 - bound as i64);
        }
        println!("{workers} workers: the busiest host peaked {worst} over ⌈1.25 × mean⌉");
        assert!(worst <= workers as i64, "{workers} workers: {worst} over ⌈c × mean⌉");
    }
}

#[test]
fn malformed_bounded_load_configs_are_errors_naming_the_field() {
    let cases = [
        (r#"{"factor":"1.5"}"#, "bounded_load.factor"),
        (r#"{"factor":null}"#, "bounded_load.factor"),
        (r#"{"factor":true}"#, "bounded_load.factor"),
        (r#"{"factor":[1.5]}"#, "bounded_load.factor"),
        (r#"{"factor":1.5,"spill_unpinned_keys":"yes"}"#, "bounded_load.spill_unpinned_keys"),
        (r#"{"factor":1.5,"extra":1}"#, "bounded_load.extra"),
        (r#"{}"#, "bounded_load"),
        (r#"1.25"#, "bounded_load"),
        (r#"[]"#, "bounded_load"),
    ];
    for (value, field) in cases {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"source_ip"}}],
                "bounded_load":{value},"target":{{"header":"x-envoy-original-dst-host"}}}}"#
        );
        let e = Config::parse(json.as_bytes(), |_| None).unwrap_err();
        assert_eq!(e.field, field, "{value}: {e}");
    }
}
