//! Issue 12 item 2: shared-data keys and records are scoped to the plugin and its membership
//! source, so two session-router filters in one Envoy never share state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::Config;
use session_router::scope::Keys;

fn cfg(hosts: &[(&str, &str)], discovery: &str) -> (Config, Vec<u8>) {
    let hosts: Vec<String> =
        hosts.iter().map(|(a, id)| format!(r#"{{"address":"{a}","id":"{id}"}}"#)).collect();
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x"}}],"target":{{"header":"x-gateway-destination-endpoint"}}{discovery}}}"#,
        hosts.join(",")
    );
    (Config::parse(json.as_bytes(), |_| None).unwrap(), json.into_bytes())
}

fn keys(name: &str, root: &str, c: &(Config, Vec<u8>)) -> Keys {
    Keys::new(name, root, &c.0, &c.1)
}

fn admin(cluster: &str) -> String {
    format!(r#","discovery":{{"type":"envoy_admin","cluster":"envoy_admin","target_cluster":"{cluster}"}}"#)
}

#[test]
fn two_filters_with_one_vm_id_get_disjoint_keys() {
    let a = cfg(&[("10.0.0.1:80", "a")], &admin("backends_a"));
    let b = cfg(&[("10.0.0.2:80", "b")], &admin("backends_b"));
    // Same plugin name and root id (two listeners copying one example): the discovery source
    // alone keeps them apart.
    let (ka, kb) =
        (keys("session_router", "session_router", &a), keys("session_router", "session_router", &b));
    for (x, y) in [(&ka.health, &kb.health), (&ka.membership, &kb.membership), (&ka.lease, &kb.lease)] {
        assert_ne!(x, y);
    }
    assert_ne!(ka.generation, kb.generation);
    assert_ne!(ka.health_changed, kb.health_changed);
    // Within one scope every key is its own (the change signal is not the table).
    let all = [&ka.health, &ka.health_changed, &ka.membership, &ka.generation, &ka.lease];
    for (i, x) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|y| x != y), "{x} is used twice");
    }
    // Two Istio WasmPlugins (names differ), same settings: apart too.
    assert_ne!(keys("ns.one", "r", &a).health, keys("ns.two", "r", &a).health);
    assert_ne!(keys("p", "root-1", &a).health, keys("p", "root-2", &a).health);
    // Static hosts: the host ids are the membership source.
    let s1 = cfg(&[("10.0.0.1:80", "a")], "");
    let s2 = cfg(&[("10.0.0.2:80", "b")], "");
    assert_ne!(keys("p", "r", &s1).health, keys("p", "r", &s2).health);
    assert!(ka.health.starts_with("session_router.v2."), "{}", ka.health);
}

#[test]
fn the_same_filter_keeps_its_keys_across_reloads_that_keep_its_source() {
    // A reload of a discovery config that only changes the seed or the interval keeps the
    // membership and health table (the lease is per exact config).
    let one = cfg(&[("10.0.0.1:80", "a")], &admin("backends"));
    let two = cfg(&[("10.0.0.9:80", "z")], &admin("backends").replace('}', r#","interval_ms":500}"#));
    let (k1, k2) = (keys("p", "r", &one), keys("p", "r", &two));
    assert_eq!((&k1.health, &k1.membership), (&k2.health, &k2.membership));
    assert_ne!(k1.lease, k2.lease);
    // A reload that changes target_cluster starts from the seed, not the previous membership.
    let other = cfg(&[("10.0.0.1:80", "a")], &admin("other"));
    assert_ne!(k1.membership, keys("p", "r", &other).membership);
    // Static hosts in another order: the same scope.
    let ab = cfg(&[("10.0.0.1:80", "a"), ("10.0.0.2:80", "b")], "");
    let ba = cfg(&[("10.0.0.2:80", "b"), ("10.0.0.1:80", "a")], "");
    assert_eq!(keys("p", "r", &ab).health, keys("p", "r", &ba).health);
}

#[test]
fn records_carry_their_scope_and_foreign_ones_are_ignored() {
    let a = keys("p", "r", &cfg(&[("10.0.0.1:80", "a")], &admin("x")));
    let b = keys("p", "r", &cfg(&[("10.0.0.1:80", "a")], &admin("y")));
    let sealed = a.seal(b"7\nrecord");
    assert_eq!(a.open(&sealed), Some(&b"7\nrecord"[..]));
    assert_eq!(b.open(&sealed), None, "another scope's record");
    assert_eq!(a.open(b"7\nh0\t10.0.0.1:80\t1\t0\n"), None, "a record of the old, unscoped format");
    assert_eq!(a.open(b""), None);
    assert_eq!(a.open(&a.seal(b"")), Some(&b""[..]));
}
