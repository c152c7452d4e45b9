//! Discovery answers (Envoy admin, Consul) into memberships, and how many sessions move when the
//! membership scales up and down: cookie-pinned sessions and hashed sessions separately.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use session_router::config::{Config, HostSpec};
use session_router::discovery::{Membership, parse_consul, parse_envoy_clusters};
mod common;

use common::Req;
use session_router::router::{AllUp, Kind, decide};

fn host(address: &str, hostname: &str, eds: &str) -> serde_json::Value {
    let (ip, port) = address.rsplit_once(':').unwrap();
    let ip = ip.trim_start_matches('[').trim_end_matches(']'); // Envoy writes IPv6 bare
    json!({"address": {"socket_address": {"address": ip, "port_value": port.parse::<u16>().unwrap()}},
           "stats": [{"name": "cx_total", "value": 3}], "health_status": {"eds_health_status": eds},
           "weight": 1, "locality": {}, "hostname": hostname})
}

fn clusters(hosts: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"cluster_statuses": [
        {"name": "admin", "host_statuses": [host("127.0.0.1:9901", "", "HEALTHY")]},
        {"name": "backends", "host_statuses": hosts}]}))
    .unwrap()
}

fn ids(specs: &[HostSpec]) -> Vec<(&str, &str, bool)> {
    specs.iter().map(|s| (s.id.as_deref().unwrap(), s.address.as_str(), s.drain)).collect()
}

#[test]
fn envoy_admin_clusters_become_hosts_with_stable_ids() {
    let seeds =
        [HostSpec { address: "10.0.0.1:80".into(), id: Some("web-a".into()), weight: None, drain: false }];
    let body = clusters(vec![
        host("10.0.0.1:80", "pod-1.web", "HEALTHY"),
        host("10.0.0.2:80", "pod-2.web", "HEALTHY"),
        host("10.0.0.3:80", "pod-3.web", "DRAINING"),
        host("10.0.0.4:80", "pod-4.web", "UNHEALTHY"),
        host("10.0.0.5:80", "", "TIMEOUT"),
        host("[2001:db8::6]:80", "", "DEGRADED"),
    ]);
    let specs = parse_envoy_clusters(&body, "backends", &seeds).unwrap();
    assert_eq!(
        ids(&specs),
        [
            ("web-a", "10.0.0.1:80", false),                 // the configured id wins
            ("pod-2.web", "10.0.0.2:80", false),             // the endpoint's hostname
            ("pod-3.web", "10.0.0.3:80", true),              // draining: keeps its pinned sessions
            ("[2001:db8::6]:80", "[2001:db8::6]:80", false), // no hostname: the address
        ]
    );
    // STRICT_DNS gives every endpoint the same hostname: not an identity, so addresses are used.
    let dns =
        clusters(vec![host("10.0.0.1:80", "backend", "HEALTHY"), host("10.0.0.2:80", "backend", "HEALTHY")]);
    let specs = parse_envoy_clusters(&dns, "backends", &[]).unwrap();
    assert_eq!(ids(&specs), [("10.0.0.1:80", "10.0.0.1:80", false), ("10.0.0.2:80", "10.0.0.2:80", false)]);
}

#[test]
fn envoy_admin_answers_that_keep_the_last_good_membership() {
    for (body, why) in [
        (b"not json".to_vec(), "not JSON"),
        (b"{}".to_vec(), "no cluster_statuses"),
        (serde_json::to_vec(&json!({"cluster_statuses": []})).unwrap(), "not found"),
        (clusters(vec![]), "no usable endpoints"),
        (clusters(vec![host("10.0.0.4:80", "x", "UNHEALTHY")]), "no usable endpoints"),
        (clusters(vec![json!({"address": {"pipe": {"path": "/tmp/x"}}})]), "no usable endpoints"),
        (clusters(vec![host("10.0.0.3:80", "x", "DRAINING")]), "every endpoint is draining"),
    ] {
        let e = parse_envoy_clusters(&body, "backends", &[]).unwrap_err();
        assert!(e.0.contains(why), "{why}: {e}");
    }
}

#[test]
fn consul_health_answers() {
    let body = serde_json::to_vec(&json!([
        {"Node": {"Node": "n1", "Address": "10.1.0.1"},
         "Service": {"ID": "web-1", "Service": "web", "Address": "10.2.0.1", "Port": 8080, "Weights": {"Passing": 3, "Warning": 1}},
         "Checks": [{"Status": "passing"}]},
        {"Node": {"Node": "n2", "Address": "10.1.0.2"},
         "Service": {"ID": "web-2", "Service": "web", "Address": "", "Port": 8080}},
        {"Node": {"Node": "n3", "Address": "consul-node-3"},
         "Service": {"ID": "web-3", "Service": "web", "Address": "", "Port": 8080}},
        {"Service": {"ID": "web-4", "Address": "10.2.0.4", "Port": 0}},
        {"Service": "garbage"},
        7
    ]))
    .unwrap();
    let specs = parse_consul(&body, &[]).unwrap();
    assert_eq!(ids(&specs), [("web-2", "10.1.0.2:8080", false), ("web-1", "10.2.0.1:8080", false)]);
    assert_eq!(specs[1].weight, Some(3));
    for (body, why) in [
        (&b"[]"[..], "no usable endpoints"),
        (b"{\"Service\":{}}", "not a JSON array"),
        (b"[{\"Service\":", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
    ] {
        let e = parse_consul(body, &[]).unwrap_err();
        assert!(e.0.contains(why), "{why}: {e}");
    }
}

#[test]
fn membership_records_round_trip_and_reject_garbage() {
    let m = Membership {
        generation: 7,
        hosts: vec![
            HostSpec { address: "10.0.0.1:80".into(), id: Some("a".into()), weight: Some(2), drain: false },
            HostSpec { address: "[::1]:80".into(), id: Some("b".into()), weight: Some(1), drain: true },
        ],
    };
    assert_eq!(Membership::decode(&m.encode()), Some(m.clone()));
    assert_eq!(Membership::decode(b"x\n"), None);
    assert_eq!(Membership::decode(b"3\na\tb\n"), None);
    assert_eq!(Membership::decode(b""), None);
    let next = vec![m.hosts[1].clone(), HostSpec { id: Some("c".into()), ..m.hosts[0].clone() }];
    assert_eq!(m.diff(&next), (vec!["c".to_owned()], vec!["a".to_owned()]));
}

fn base() -> Config {
    let json = r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"header","name":"x-user"}],
        "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
        "target":{"header":"x-gateway-destination-endpoint","fallbacks":1}}"#;
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

fn members(n: usize) -> Vec<HostSpec> {
    (0..n)
        .map(|i| HostSpec {
            address: format!("10.0.1.{}:80", i + 1),
            id: Some(format!("pod-{i}")),
            weight: None,
            drain: false,
        })
        .collect()
}

/// Moves as a fraction of sessions: (sessions with a cookie, hashed sessions without one).
fn movement(from: &Config, to: &Config, sessions: usize) -> (f64, f64, usize) {
    let (mut pinned_moved, mut hashed_moved, mut on_removed) = (0, 0, 0);
    for k in 0..sessions {
        let key = format!("user-{k}");
        let first =
            decide(from, &Req(vec![("x-user".into(), key.clone().into_bytes())]), &AllUp, 0, &mut || [0; 16]);
        let from_id = &from.hosts[first.host].id;
        if to.host_by_id(from_id).is_none() {
            on_removed += 1;
        }
        let cookie = first.set_cookie.unwrap().split(';').next().unwrap().to_owned();
        let pinned =
            decide(to, &Req(vec![("cookie".into(), cookie.into_bytes())]), &AllUp, 1, &mut || [0; 16]);
        let hashed = decide(to, &Req(vec![("x-user".into(), key.into_bytes())]), &AllUp, 1, &mut || [0; 16]);
        if &to.hosts[pinned.host].id != from_id {
            pinned_moved += 1;
            assert_eq!(pinned.kind, Kind::Failover);
        }
        if &to.hosts[hashed.host].id != from_id {
            hashed_moved += 1;
        }
    }
    (pinned_moved as f64 / sessions as f64, hashed_moved as f64 / sessions as f64, on_removed)
}

#[test]
fn scale_up_moves_no_cookie_session_and_the_optimal_share_of_hashed_ones() {
    let n = 3;
    let three = base().with_hosts(members(n)).unwrap();
    let five = base().with_hosts(members(n + 2)).unwrap();
    let (pinned, hashed, _) = movement(&three, &five, 20_000);
    let optimal = 2.0 / (n + 2) as f64;
    println!(
        "scale-up 3→5: cookie sessions moved {pinned:.4}, hashed moved {hashed:.4} (optimal {optimal:.4}, {:.2}×)",
        hashed / optimal
    );
    assert_eq!(pinned, 0.0, "a session with a valid cookie moved on scale-up");
    assert!((hashed / optimal - 1.0).abs() < 0.15, "hashed sessions moved {hashed:.4}, optimal {optimal:.4}");
}

#[test]
fn scale_down_moves_only_the_removed_hosts_sessions() {
    let five = base().with_hosts(members(5)).unwrap();
    let three = base().with_hosts(members(3)).unwrap();
    let sessions = 20_000;
    let (pinned, hashed, on_removed) = movement(&five, &three, sessions);
    let share = on_removed as f64 / sessions as f64;
    println!(
        "scale-down 5→3: removed hosts held {share:.4}; cookie sessions moved {pinned:.4}, hashed moved {hashed:.4}"
    );
    assert_eq!(pinned, share, "exactly the removed hosts' cookie sessions moved");
    assert_eq!(hashed, share, "exactly the removed hosts' hashed sessions moved");
}

#[test]
fn a_reload_that_keeps_the_hosts_moves_nothing() {
    let a = base().with_hosts(members(4)).unwrap();
    let mut reordered = members(4);
    reordered.reverse();
    let b = base().with_hosts(reordered).unwrap();
    let (pinned, hashed, _) = movement(&a, &b, 5_000);
    assert_eq!((pinned, hashed), (0.0, 0.0));
}
