//! Routing decisions around failure: failover of pinned sessions without flapping, drain,
//! all hosts down, fallback lists, and which sessions move when one host dies — each run once
//! per placement (`mod ring`, `mod rendezvous` at the end).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::Config;
mod common;

use common::req;
use session_router::router::{AllUp, Decision, Kind, decide, target_value};

const NOW: u64 = 1_700_000_000;

thread_local! {
    /// The placement the current test runs against (each test runs on its own thread).
    static PLACEMENT: std::cell::Cell<&'static str> = const { std::cell::Cell::new("ring") };
}

fn config(n: usize, extra_host: &str, target: &str) -> Config {
    let hosts: Vec<String> =
        (0..n).map(|i| format!(r#"{{"address":"10.0.0.{}:80","id":"h{i}"{extra_host}}}"#, i + 1)).collect();
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x-user"}}],
            "sticky_cookie":{{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"}},
            "target":{target},"placement":{{"algorithm":"{}"}}}}"#,
        hosts.join(","),
        PLACEMENT.get()
    );
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

fn plain(n: usize) -> Config {
    config(n, "", r#"{"header":"x-envoy-original-dst-host"}"#)
}

fn counter_ids() -> impl FnMut() -> [u8; 16] {
    let mut n = 0u128;
    move || {
        n += 1;
        n.to_le_bytes()
    }
}

fn cookie_of(d: &Decision) -> String {
    let line = d.set_cookie.as_ref().expect("a cookie");
    line.split(';').next().unwrap().to_owned()
}

fn down(n: usize, which: &[usize]) -> Vec<bool> {
    (0..n).map(|i| which.contains(&i)).collect()
}

fn a_pinned_session_fails_over_to_its_successor_and_does_not_flap_back() {
    let cfg = plain(5);
    let mut ids = counter_ids();
    let first = decide(&cfg, &req(&[]), &AllUp, NOW, &mut ids);
    let cookie = cookie_of(&first);
    let dead = down(5, &[first.host]);
    let moved = decide(&cfg, &req(&[("cookie", &cookie)]), dead.as_slice(), NOW + 1, &mut ids);
    assert_eq!(moved.kind, Kind::Failover);
    assert_eq!(Some(moved.host), cfg.placement.walk(first.point).nth(1), "the ring successor");
    let new_cookie = cookie_of(&moved);
    assert_ne!(new_cookie, cookie);
    // The old host is back: the re-pinned session stays where it moved.
    let later = decide(&cfg, &req(&[("cookie", &new_cookie)]), &AllUp, NOW + 2, &mut ids);
    assert_eq!((later.kind, later.host, later.set_cookie), (Kind::Pinned, moved.host, None));
    // Every replica makes the same choice for the same cookie.
    let again = decide(&cfg, &req(&[("cookie", &cookie)]), dead.as_slice(), NOW + 1, &mut counter_ids());
    assert_eq!(again.host, moved.host);
}

fn when_a_host_dies_only_its_sessions_move() {
    let cfg = plain(6);
    let dead_host = 2;
    let dead = down(6, &[dead_host]);
    let mut moved = 0;
    for k in 0..3000 {
        let key = format!("user-{k}");
        let before = decide(&cfg, &req(&[("x-user", &key)]), &AllUp, NOW, &mut counter_ids());
        let after = decide(&cfg, &req(&[("x-user", &key)]), dead.as_slice(), NOW, &mut counter_ids());
        if before.host == dead_host {
            assert_eq!(Some(after.host), cfg.placement.walk(before.point).nth(1));
            moved += 1;
        } else {
            assert_eq!(after.host, before.host, "{key} moved though its host lives");
        }
    }
    assert!((300..=700).contains(&moved), "{moved} of 3000 were on one of six hosts");
}

fn a_draining_host_keeps_its_pinned_sessions_and_gets_no_new_ones() {
    let open = plain(3);
    let mut ids = counter_ids();
    let pinned = (0..100)
        .map(|_| decide(&open, &req(&[]), &AllUp, NOW, &mut ids))
        .find(|d| open.hosts[d.host].id == "h1")
        .unwrap();
    let draining = {
        let json = r#"{"hosts":[{"address":"10.0.0.1:80","id":"h0"},{"address":"10.0.0.2:80","id":"h1","drain":true},
            {"address":"10.0.0.3:80","id":"h2"}],"sources":[{"type":"header","name":"x-user"}],
            "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
            "target":{"header":"x-envoy-original-dst-host"}}"#;
        Config::parse(json.as_bytes(), |_| None).unwrap()
    };
    let kept = decide(&draining, &req(&[("cookie", &cookie_of(&pinned))]), &AllUp, NOW, &mut ids);
    assert_eq!((kept.kind, draining.hosts[kept.host].id.as_str()), (Kind::Pinned, "h1"));
    for k in 0..500 {
        let d = decide(&draining, &req(&[("x-user", &format!("u{k}"))]), &AllUp, NOW, &mut ids);
        assert_ne!(draining.hosts[d.host].id, "h1", "a new session went to a draining host");
        let n = decide(&draining, &req(&[]), &AllUp, NOW, &mut ids);
        assert_ne!(draining.hosts[n.host].id, "h1");
    }
    let all = r#"{"hosts":[{"address":"10.0.0.1:80","drain":true}],"sources":[{"type":"source_ip"}],"target":{"header":"x"}}"#;
    assert!(
        Config::parse(all.as_bytes(), |_| None).unwrap_err().to_string().contains("every host is draining")
    );
}

fn all_hosts_down_routes_by_the_ring_and_issues_no_cookie() {
    let cfg = plain(3);
    let all_down = down(3, &[0, 1, 2]);
    let mut ids = counter_ids();
    for k in 0..50 {
        let d = decide(&cfg, &req(&[("x-user", &format!("u{k}"))]), all_down.as_slice(), NOW, &mut ids);
        assert_eq!(d.set_cookie, None);
        assert_eq!(d.host, cfg.placement.owner(d.point));
        let n = decide(&cfg, &req(&[]), all_down.as_slice(), NOW, &mut ids);
        assert_eq!(n.set_cookie, None, "no storm of new cookies");
    }
    let pinned = decide(&cfg, &req(&[]), &AllUp, NOW, &mut ids);
    let stuck = decide(&cfg, &req(&[("cookie", &cookie_of(&pinned))]), all_down.as_slice(), NOW, &mut ids);
    assert_eq!((stuck.host, stuck.set_cookie), (pinned.host, None));
}

fn fallback_lists_are_distinct_successors_skipping_down_hosts() {
    let cfg = config(5, "", r#"{"header":"x-gateway-destination-endpoint","fallbacks":2}"#);
    let mut ids = counter_ids();
    for k in 0..200 {
        let d = decide(&cfg, &req(&[("x-user", &format!("u{k}"))]), &AllUp, NOW, &mut ids);
        let value = target_value(&cfg, &d, &AllUp);
        let expected: Vec<String> =
            cfg.placement.walk(d.point).take(3).map(|h| cfg.hosts[h].address.to_string()).collect();
        assert_eq!(value, expected.join(","));
        let dead = down(5, &[cfg.placement.walk(d.point).nth(1).unwrap()]);
        let d2 = decide(&cfg, &req(&[("x-user", &format!("u{k}"))]), dead.as_slice(), NOW, &mut ids);
        let value = target_value(&cfg, &d2, dead.as_slice());
        let expected: Vec<String> = cfg
            .placement
            .walk(d.point)
            .filter(|&h| !dead[h])
            .take(3)
            .map(|h| cfg.hosts[h].address.to_string())
            .collect();
        assert_eq!(value, expected.join(","));
    }
    let two = config(2, "", r#"{"header":"x-gateway-destination-endpoint","fallbacks":5}"#);
    let d = decide(&two, &req(&[]), &AllUp, NOW, &mut ids);
    assert_eq!(target_value(&two, &d, &AllUp).split(',').count(), 2, "never more than the hosts");
}

fn no_down_flags_means_every_host_is_up() {
    // The glue passes an empty flag slice when nothing is known to be down.
    let cfg = config(5, "", r#"{"header":"x-gateway-destination-endpoint","fallbacks":2}"#);
    let none: &[bool] = &[];
    for k in 0..200 {
        let r = req(&[("x-user", &format!("u{k}"))]);
        let a = decide(&cfg, &r, &AllUp, NOW, &mut counter_ids());
        let b = decide(&cfg, &r, none, NOW, &mut counter_ids());
        assert_eq!(a, b);
        assert_eq!(target_value(&cfg, &a, &AllUp), target_value(&cfg, &b, none));
    }
}

mod ring {
    #[test]
    fn a_pinned_session_fails_over_to_its_successor_and_does_not_flap_back() {
        super::PLACEMENT.set("ring");
        super::a_pinned_session_fails_over_to_its_successor_and_does_not_flap_back();
    }
    #[test]
    fn when_a_host_dies_only_its_sessions_move() {
        super::PLACEMENT.set("ring");
        super::when_a_host_dies_only_its_sessions_move();
    }
    #[test]
    fn a_draining_host_keeps_its_pinned_sessions_and_gets_no_new_ones() {
        super::PLACEMENT.set("ring");
        super::a_draining_host_keeps_its_pinned_sessions_and_gets_no_new_ones();
    }
    #[test]
    fn all_hosts_down_routes_by_the_ring_and_issues_no_cookie() {
        super::PLACEMENT.set("ring");
        super::all_hosts_down_routes_by_the_ring_and_issues_no_cookie();
    }
    #[test]
    fn fallback_lists_are_distinct_successors_skipping_down_hosts() {
        super::PLACEMENT.set("ring");
        super::fallback_lists_are_distinct_successors_skipping_down_hosts();
    }
    #[test]
    fn no_down_flags_means_every_host_is_up() {
        super::PLACEMENT.set("ring");
        super::no_down_flags_means_every_host_is_up();
    }
}

mod rendezvous {
    #[test]
    fn a_pinned_session_fails_over_to_its_successor_and_does_not_flap_back() {
        super::PLACEMENT.set("rendezvous");
        super::a_pinned_session_fails_over_to_its_successor_and_does_not_flap_back();
    }
    #[test]
    fn when_a_host_dies_only_its_sessions_move() {
        super::PLACEMENT.set("rendezvous");
        super::when_a_host_dies_only_its_sessions_move();
    }
    #[test]
    fn a_draining_host_keeps_its_pinned_sessions_and_gets_no_new_ones() {
        super::PLACEMENT.set("rendezvous");
        super::a_draining_host_keeps_its_pinned_sessions_and_gets_no_new_ones();
    }
    #[test]
    fn all_hosts_down_routes_by_the_ring_and_issues_no_cookie() {
        super::PLACEMENT.set("rendezvous");
        super::all_hosts_down_routes_by_the_ring_and_issues_no_cookie();
    }
    #[test]
    fn fallback_lists_are_distinct_successors_skipping_down_hosts() {
        super::PLACEMENT.set("rendezvous");
        super::fallback_lists_are_distinct_successors_skipping_down_hosts();
    }
    #[test]
    fn no_down_flags_means_every_host_is_up() {
        super::PLACEMENT.set("rendezvous");
        super::no_down_flags_means_every_host_is_up();
    }
}
