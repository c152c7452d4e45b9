//! `discovery::read_consul` / `read_envoy_clusters`: a registry answer or an Envoy admin listing
//! into a membership, through the admission policy (allow-list, special addresses, denied ports)
//! and the id rules (configured ids win, squatters dropped).
//!
//! Raw input: the answer body, parsed both as Consul and as `/clusters?format=json` (cluster
//! `backends`). Structured input: a Consul answer generated entry by entry (addresses from every
//! class, names with control characters, squatted ids, odd ports and weights).
//!
//! Checks, whatever the input: no panic; every admitted host passes the admission policy, has a
//! unique id without control characters, and a configured id only at its configured address; an
//! accepted answer is a membership the filter applies (`Config::with_hosts` succeeds: one bad
//! entry never fails the whole answer); every skipped entry's log text is bounded and escaped.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use session_router::config::{Config, HostSpec};
use session_router::discovery::{Admission, Answer, Cidr, DiscoveryError, read_consul, read_envoy_clusters};
use session_router_fuzz::{Input, input};

const ADDRESSES: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.1.0.1",
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "::ffff:127.0.0.1",
    "169.254.169.254",
    "fd00:ec2::254",
    "100.100.100.200",
    "169.254.1.1",
    "fe80::1",
    "64:ff9b::7f00:1",
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "fd00::1",
    "192.168.0.1",
    "::ffff:10.0.0.1",
    "example.com",
    "",
    "10.0.0.1:80",
];
const NAMES: &[&str] = &["backend-a", "backend-b", "web-1", "10.0.0.1:80", "a\tb", "x\ny", " ", "", "web-1"];

#[derive(Arbitrary, Debug)]
struct Entry {
    address: (u8, Option<String>),
    port: (u16, bool),
    name: Option<(u8, Option<String>)>,
    weight: Option<i64>,
}

fn seeds() -> &'static [HostSpec] {
    static SEEDS: OnceLock<Vec<HostSpec>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            HostSpec {
                address: "10.0.0.1:80".into(),
                id: Some("backend-a".into()),
                weight: None,
                drain: false,
            },
            HostSpec {
                address: "10.0.0.9:80".into(),
                id: Some("backend-b".into()),
                weight: None,
                drain: false,
            },
        ]
    })
}

fn admission() -> &'static Admission {
    static A: OnceLock<Admission> = OnceLock::new();
    A.get_or_init(|| Admission {
        allowed: ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
            .iter()
            .filter_map(|c| Cidr::parse(c).ok())
            .collect(),
        denied_ports: vec![9901, 15000],
    })
}

fn base() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let json = r#"{"hosts":[{"address":"10.0.0.1:80","id":"backend-a"},{"address":"10.0.0.9:80","id":"backend-b"}],
            "sticky_cookie":{"name":"srv","ttl_seconds":60,"secret":"fuzz-discovery-secret-0123456789abcdef"},
            "target":{"header":"x-envoy-original-dst-host"},"vnodes_per_weight":4,
            "discovery":{"type":"json","cluster":"c","path":"/v1","format":"consul","allowed_cidrs":["10.0.0.0/8","127.0.0.1/32","fd00::/8"]}}"#;
        Config::parse(json.as_bytes(), |_| None).expect("the base config parses")
    })
}

fn check(result: Result<Answer, DiscoveryError>) {
    let Ok(answer) = result else { return };
    assert!(!answer.hosts.is_empty());
    let mut ids = std::collections::HashSet::new();
    for h in &answer.hosts {
        let address: SocketAddr = h.address.parse().expect("an admitted address parses");
        assert_eq!(admission().check(address), Ok(address), "{address} admitted against the policy");
        let id = h.id.as_deref().expect("every host has an id");
        assert!(ids.insert(id.to_owned()), "duplicate id {id:?}");
        assert!(!id.chars().any(char::is_control) && !id.trim().is_empty() && id.len() <= 256, "{id:?}");
        for s in seeds() {
            if s.id.as_deref() == Some(id) {
                assert_eq!(s.address, h.address, "configured id {id:?} taken by {}", h.address);
            }
        }
    }
    for s in &answer.skipped {
        assert!(s.entry.len() < 200 && !s.entry.chars().any(char::is_control), "{:?}", s.entry);
    }
    if let Err(e) = base().with_hosts(answer.hosts) {
        panic!("an accepted answer the filter cannot apply: {e}");
    }
}

fn consul(entries: &[Entry]) -> Vec<u8> {
    let doc: Vec<Value> = entries
        .iter()
        .take(64)
        .map(|e| {
            let address = match &e.address {
                (_, Some(any)) => any.clone(),
                (i, None) => ADDRESSES[usize::from(*i) % ADDRESSES.len()].to_owned(),
            };
            let port = match e.port {
                (_, true) => json!(e.port.0),
                (p, false) => json!([80, 0, 9901, 15000, 8080][usize::from(p) % 5]),
            };
            let mut service = json!({"Address": address, "Port": port});
            if let Some((i, any)) = &e.name {
                service["ID"] =
                    json!(any.clone().unwrap_or_else(|| NAMES[usize::from(*i) % NAMES.len()].to_owned()));
            }
            if let Some(w) = e.weight {
                service["Weights"] = json!({"Passing": w});
            }
            json!({"Node": {"Address": "10.0.0.250"}, "Service": service})
        })
        .collect();
    serde_json::to_vec(&doc).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => {
            check(read_consul(raw, seeds(), admission()));
            check(read_envoy_clusters(raw, "backends", seeds(), admission()));
        }
        Input::Structured(mut u) => {
            let Ok(entries) = Vec::<Entry>::arbitrary(&mut u) else { return };
            check(read_consul(&consul(&entries), seeds(), admission()));
        }
    }
});
