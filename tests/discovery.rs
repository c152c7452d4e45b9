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
    assert_eq!(m.diff(&next), (vec!["c"], vec!["a"]));
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
            decide(from, &Req::default().with("x-user", key.clone().into_bytes()), &AllUp, 0, &mut || {
                [0; 16]
            });
        let from_id = &from.hosts[first.host].id;
        if to.host_by_id(from_id).is_none() {
            on_removed += 1;
        }
        let cookie = first.set_cookie.unwrap().split(';').next().unwrap().to_owned();
        let pinned =
            decide(to, &Req::default().with("cookie", cookie.into_bytes()), &AllUp, 1, &mut || [0; 16]);
        let hashed = decide(to, &Req::default().with("x-user", key.into_bytes()), &AllUp, 1, &mut || [0; 16]);
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

// ---- Trust boundary (issue 13) and odd registry entries (issue 12 item 6) ----

fn consul_entry(id: &str, address: &str, port: u64) -> serde_json::Value {
    json!({"Node": {"Node": "n", "Address": "10.9.9.9"},
           "Service": {"ID": id, "Service": "web", "Address": address, "Port": port}})
}

fn seed(address: &str, id: &str) -> HostSpec {
    HostSpec { address: address.into(), id: Some(id.into()), weight: None, drain: false }
}

#[test]
fn one_odd_registry_entry_is_skipped_not_fatal() {
    let body = serde_json::to_vec(&json!([
        consul_entry("web-1", "10.2.0.1", 8080),
        consul_entry("bad\u{7}bell", "10.2.0.2", 8080),
        consul_entry("web-3", "10.2.0.3", 0),
        consul_entry("web-4", "10.2.0.4", 70000),
        consul_entry("web-5", "not-an-ip", 8080),
        consul_entry("web-6", "224.0.0.1", 8080),
        consul_entry("web-7", "255.255.255.255", 8080),
        consul_entry(&"x".repeat(300), "10.2.0.8", 8080),
        consul_entry("   ", "10.2.0.9", 8080),
        consul_entry("web-10", "10.2.0.10", 8080),
    ]))
    .unwrap();
    let specs = parse_consul(&body, &[]).unwrap();
    assert_eq!(ids(&specs), [("web-1", "10.2.0.1:8080", false), ("web-10", "10.2.0.10:8080", false)]);
    // And the result is a membership the filter accepts.
    base().with_hosts(specs).unwrap();
}

#[test]
fn a_registrant_squatting_a_configured_id_is_dropped_not_renamed() {
    let seeds = [seed("10.0.0.1:80", "backend-a"), seed("10.0.0.2:80", "backend-b")];
    // backend-a is present under its own address; a newcomer registers the name backend-a too,
    // and another claims backend-b while backend-b is momentarily absent.
    let body = serde_json::to_vec(&json!([
        consul_entry("backend-a", "10.0.0.1", 80),
        consul_entry("backend-a", "10.0.0.66", 80),
        consul_entry("backend-b", "10.0.0.67", 80),
        consul_entry("web-3", "10.0.0.3", 80),
    ]))
    .unwrap();
    let specs = parse_consul(&body, &seeds).unwrap();
    assert_eq!(ids(&specs), [("backend-a", "10.0.0.1:80", false), ("web-3", "10.0.0.3:80", false)]);
    // A name equal to another endpoint's address-derived id is not taken either.
    let body = serde_json::to_vec(&json!([
        {"Node": {"Address": "10.0.0.5"}, "Service": {"ID": "", "Address": "10.0.0.5", "Port": 80}},
        consul_entry("10.0.0.5:80", "10.0.0.99", 80),
    ]))
    .unwrap();
    let specs = parse_consul(&body, &seeds).unwrap();
    assert_eq!(ids(&specs), [("10.0.0.5:80", "10.0.0.5:80", false)]);
}

#[test]
fn ipv4_mapped_duplicates_are_one_endpoint() {
    let body = serde_json::to_vec(&json!([
        consul_entry("web-1", "10.2.0.1", 8080),
        consul_entry("web-1b", "::ffff:10.2.0.1", 8080),
    ]))
    .unwrap();
    let specs = parse_consul(&body, &[]).unwrap();
    assert_eq!(specs.len(), 1, "{specs:?}");
    base().with_hosts(specs).unwrap();
}

use session_router::discovery::{Admission, Cidr, SkipLog, SkipReason, read_consul, read_envoy_clusters};
use std::net::SocketAddr;

fn admission(cidrs: &[&str], ports: Option<&[u16]>) -> Admission {
    let allowed = cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect();
    let denied_ports = ports.map_or_else(|| Admission::default().denied_ports, <[u16]>::to_vec);
    Admission { allowed, denied_ports }
}

fn verdict(a: &Admission, address: &str) -> Result<(), SkipReason> {
    a.check(address.parse::<SocketAddr>().unwrap()).map(|_| ())
}

/// Link-local, metadata, loopback and private forms, natively only: no traffic leaves the process.
#[test]
fn special_addresses_are_refused_unless_listed() {
    use SkipReason::*;
    let open = Admission::default();
    for (address, why) in [
        ("127.0.0.1:8080", Loopback),
        ("127.1.2.3:80", Loopback),
        ("[::1]:80", Loopback),
        ("[::ffff:127.0.0.1]:80", Loopback),
        ("[64:ff9b::7f00:1]:80", Loopback),
        ("169.254.169.254:80", Metadata),
        ("[::ffff:169.254.169.254]:80", Metadata),
        ("[64:ff9b::a9fe:a9fe]:80", Metadata),
        ("[fd00:ec2::254]:80", Metadata),
        ("100.100.100.200:80", Metadata),
        ("169.254.10.1:80", LinkLocal),
        ("[fe80::1]:80", LinkLocal),
        ("[febf::1]:80", LinkLocal),
        ("[::ffff:169.254.0.1]:80", LinkLocal),
        ("10.0.0.1:9901", DeniedPort),
        ("10.0.0.1:15000", DeniedPort),
        ("127.0.0.1:9901", DeniedPort),
        ("10.0.0.1:0", BadEntry),
        ("0.0.0.0:80", BadEntry),
        ("[::]:80", BadEntry),
        ("224.0.0.1:80", BadEntry),
        ("[ff02::1]:80", BadEntry),
        ("255.255.255.255:80", BadEntry),
    ] {
        assert_eq!(verdict(&open, address), Err(why), "{address}");
    }
    // Ordinary unicast, private ranges included, is admitted when no allow-list is set.
    for address in
        ["10.0.0.1:80", "172.16.0.1:80", "192.168.1.1:80", "[fd00::1]:80", "100.64.0.1:80", "8.8.8.8:80"]
    {
        assert_eq!(verdict(&open, address), Ok(()), "{address}");
    }
    // A wide allow-list does not admit the special classes; listing them explicitly does.
    let wide = admission(&["0.0.0.0/0", "::/0"], None);
    assert_eq!(verdict(&wide, "127.0.0.1:80"), Err(Loopback));
    assert_eq!(verdict(&wide, "169.254.169.254:80"), Err(Metadata));
    assert_eq!(verdict(&wide, "[fe80::1]:80"), Err(LinkLocal));
    let link_local = admission(&["169.254.0.0/16"], None);
    assert_eq!(verdict(&link_local, "169.254.1.1:80"), Ok(()));
    assert_eq!(verdict(&link_local, "169.254.169.254:80"), Err(Metadata), "metadata needs its own /32");
    let lo = admission(&["127.0.0.1/32"], Some(&[]));
    assert_eq!(verdict(&lo, "127.0.0.1:9901"), Ok(()), "denied_ports: [] admits the admin port");
    assert_eq!(verdict(&lo, "[::ffff:127.0.0.1]:80"), Ok(()), "mapped form is the same address");
    assert_eq!(verdict(&lo, "127.0.0.2:80"), Err(Loopback));
    assert_eq!(verdict(&lo, "10.0.0.1:80"), Err(OutsideAllowed));
    // An allow-list of the backends' range refuses private addresses outside it.
    let tenant = admission(&["10.1.0.0/16", "fd00:1::/32"], None);
    assert_eq!(verdict(&tenant, "10.1.2.3:80"), Ok(()));
    assert_eq!(verdict(&tenant, "[fd00:1::5]:80"), Ok(()));
    for address in
        ["10.2.0.1:80", "192.168.0.1:80", "172.16.0.1:80", "[fd00:2::1]:80", "[::ffff:10.2.0.1]:80"]
    {
        assert_eq!(verdict(&tenant, address), Err(OutsideAllowed), "{address}");
    }
}

#[test]
fn cidrs_parse_strictly() {
    assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    assert_eq!(Cidr::parse("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
    assert_eq!(Cidr::parse("fd00::/8").unwrap().to_string(), "fd00::/8");
    assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    for (bad, why) in [
        ("10.0.0.1/8", "host bits set"),
        ("10.0.0.0/33", "prefix length"),
        ("fd00::/129", "prefix length"),
        ("10.0.0.0/", "prefix length"),
        ("10.0.0.0/-1", "prefix length"),
        ("10.0.0/8", "not an IP range"),
        ("", "not an IP range"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped"),
        ("example.com/24", "not an IP range"),
    ] {
        let e = Cidr::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

fn envoy_host(ip: &str, port: u16, hostname: &str) -> serde_json::Value {
    json!({"address": {"socket_address": {"address": ip, "port_value": port}},
           "health_status": {"eds_health_status": "HEALTHY"}, "hostname": hostname})
}

#[test]
fn discovered_hosts_outside_the_policy_are_skipped_with_a_reason() {
    let a = admission(&["10.0.0.0/24"], None);
    let seeds = [seed("10.0.0.1:80", "backend-a")];
    let body = serde_json::to_vec(&json!({"cluster_statuses": [{"name": "backends", "host_statuses": [
        envoy_host("10.0.0.1", 80, "a"),
        envoy_host("10.0.0.2", 80, "pod-2"),
        envoy_host("127.0.0.1", 9901, "admin"),
        envoy_host("127.0.0.1", 8080, "sidecar"),
        envoy_host("169.254.169.254", 80, "imds"),
        envoy_host("fe80::1", 80, ""),
        envoy_host("10.0.1.5", 80, "elsewhere"),
        envoy_host("10.0.0.3", 80, "backend-a"),
        envoy_host("10.0.0.4", 0, "zero"),
        {"address": {"pipe": {"path": "/tmp/x"}}},
    ]}]}))
    .unwrap();
    let answer = read_envoy_clusters(&body, "backends", &seeds, &a).unwrap();
    assert_eq!(ids(&answer.hosts), [("backend-a", "10.0.0.1:80", false), ("pod-2", "10.0.0.2:80", false)]);
    let mut reasons: Vec<(SkipReason, &str)> =
        answer.skipped.iter().map(|s| (s.reason, s.entry.split(' ').next().unwrap())).collect();
    reasons.sort();
    use SkipReason::*;
    assert_eq!(
        reasons,
        [
            (BadEntry, "10.0.0.4:0"),
            (BadEntry, "entry"),
            (DeniedPort, "127.0.0.1:9901"),
            (Metadata, "169.254.169.254:80"),
            (Loopback, "127.0.0.1:8080"),
            (LinkLocal, "[fe80::1]:80"),
            (OutsideAllowed, "10.0.1.5:80"),
            (IdCollision, "10.0.0.3:80"),
        ]
    );
    // Nothing admitted: the answer fails (the last good membership is kept) and says why.
    let body = serde_json::to_vec(&json!([
        consul_entry("x", "127.0.0.1", 80),
        consul_entry("y", "169.254.169.254", 80)
    ]))
    .unwrap();
    let e = read_consul(&body, &[], &a).unwrap_err();
    assert!(e.0.contains("no usable endpoints") && e.0.contains("1 metadata, 1 loopback"), "{e}");
}

#[test]
fn skips_are_reported_once_while_they_last() {
    let a = admission(&["10.0.0.0/24"], None);
    let body = |extra: &[(&str, &str)]| {
        let mut entries = vec![consul_entry("web-1", "10.0.0.1", 80)];
        entries.extend(extra.iter().map(|(id, ip)| consul_entry(id, ip, 80)));
        serde_json::to_vec(&entries).unwrap()
    };
    let mut log = SkipLog::default();
    let first = read_consul(&body(&[("evil", "127.0.0.1")]), &[], &a).unwrap();
    assert_eq!(log.news(&first.skipped).len(), 1);
    assert_eq!(log.news(&first.skipped).len(), 0, "the same skip again is not news");
    let second = read_consul(&body(&[("evil", "127.0.0.1"), ("meta", "169.254.169.254")]), &[], &a).unwrap();
    let news = log.news(&second.skipped);
    assert_eq!(news.len(), 1);
    assert_eq!(news[0].reason, SkipReason::Metadata);
    let gone = read_consul(&body(&[]), &[], &a).unwrap();
    assert!(log.news(&gone.skipped).is_empty());
    assert_eq!(log.news(&first.skipped).len(), 1, "back after leaving: news again");
}

/// One entry skipped for two reasons is two skips: each is news once, and each again after it
/// leaves and comes back, independently of the other.
#[test]
fn skip_log_tells_reasons_of_one_entry_apart() {
    let skip = |reason| session_router::discovery::Skipped { reason, entry: "10.0.0.9:80 (x)".into() };
    let (a, b) = (skip(SkipReason::IdCollision), skip(SkipReason::DeniedPort));
    let mut log = SkipLog::default();
    assert_eq!(log.news(&[a.clone(), b.clone(), a.clone()]), [a.clone(), b.clone()]);
    assert!(log.news(&[b.clone(), a.clone()]).is_empty());
    assert_eq!(log.news(std::slice::from_ref(&a)), [], "a stays");
    assert_eq!(log.news(&[a.clone(), b.clone()]), [b], "b left and came back");
}

#[test]
fn discovery_admission_config() {
    let cfg = |target: &str, disc: &str| {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"header","name":"x-user"}}],
            "target":{{"header":"{target}"}},"discovery":{disc}}}"#
        );
        Config::parse(json.as_bytes(), |_| None)
    };
    let admin = |extra: &str| {
        format!(r#"{{"type":"envoy_admin","cluster":"admin","target_cluster":"backends"{extra}}}"#)
    };
    let consul = |extra: &str| {
        format!(
            r#"{{"type":"json","cluster":"consul","path":"/v1/health/service/web","format":"consul"{extra}}}"#
        )
    };
    let odst = "x-envoy-original-dst-host";
    let ovh = "x-gateway-destination-endpoint";
    for disc in [admin(""), consul("")] {
        let e = cfg(odst, &disc).unwrap_err();
        assert_eq!(e.field, "discovery.allowed_cidrs");
        assert!(e.reason.contains("required"), "{e}");
        let d = cfg(ovh, &disc).unwrap().discovery.unwrap();
        assert_eq!(d.admission, Admission::default(), "no allow-list elsewhere, admin ports denied");
        assert_eq!(d.admission.denied_ports, [9901, 15000]);
    }
    let d = cfg(odst, &admin(r#","allowed_cidrs":["10.0.0.0/8","fd00::/8"],"denied_ports":[]"#))
        .unwrap()
        .discovery
        .unwrap();
    assert_eq!(d.admission.allowed.len(), 2);
    assert!(d.admission.denied_ports.is_empty());
    for (extra, field, why) in [
        (r#","allowed_cidrs":[]"#, "discovery.allowed_cidrs", "1 to"),
        (r#","allowed_cidrs":["10.0.0.1/8"]"#, "discovery.allowed_cidrs[0]", "host bits"),
        (r#","allowed_cidrs":["10.0.0.0/8","nope"]"#, "discovery.allowed_cidrs[1]", "not an IP range"),
        // Type errors inside the tagged `discovery` object are reported on `discovery`.
        (r#","allowed_cidrs":"10.0.0.0/8""#, "discovery", "sequence"),
        (r#","denied_ports":[0]"#, "discovery.denied_ports[0]", "not a port"),
        (r#","denied_ports":[70000]"#, "discovery", "u16"),
        (r#","allowed_cidr":["10.0.0.0/8"]"#, "discovery", "unknown field"),
    ] {
        for disc in [admin(extra), consul(extra)] {
            let e = cfg(ovh, &disc).unwrap_err();
            assert!(e.field.starts_with(field) && e.to_string().contains(why), "{extra}: {e}");
        }
    }
}

/// Found by the discovery fuzz target: a name of control characters, escaped for the log,
/// grew the log line to six times its cut length. Log text stays bounded whatever the name.
#[test]
fn skipped_entry_descriptions_stay_bounded_after_escaping() {
    let names = ["\u{5}".repeat(64), "\u{202e}".repeat(300), "é".repeat(300), "x".repeat(10_000)];
    for name in &names {
        let body = serde_json::to_vec(&json!([
            consul_entry("web-1", "10.0.0.1", 80),
            consul_entry(name, "127.0.0.1", 80),
            {"Service": {"ID": name, "Address": "nope", "Port": 80}},
            consul_entry(name, "10.0.0.2", 80),
        ]))
        .unwrap();
        let answer = read_consul(&body, &[], &Admission::default()).unwrap();
        assert_eq!(answer.skipped.len(), 3);
        for s in &answer.skipped {
            assert!(s.entry.len() <= 160 && !s.entry.chars().any(char::is_control), "{:?}", s.entry);
        }
    }
}
