//! Trust-boundary inputs of discovery: odd `allowed_cidrs` / `denied_ports` values, and registry
//! answers with hostile entries (each costs only itself, never a panic).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::json;

use session_router::config::Config;
use session_router::discovery::{Admission, Cidr, SkipReason, read_consul, read_envoy_clusters};

/// A discovery config with `extra` inside the `discovery` object; ORIGINAL_DST target (so an
/// allow-list is required unless `extra` has one).
fn discovery_json(extra: &str) -> String {
    format!(
        r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"header","name":"x"}}],
        "target":{{"header":"x-envoy-original-dst-host"}},
        "discovery":{{"type":"json","cluster":"c","path":"/v1","format":"consul"{extra}}}}}"#
    )
}

/// K6/K7-style rows for `discovery.allowed_cidrs` / `denied_ports`: each rejected with its field.
#[test]
fn k_discovery_admission_fields_reject_odd_values() {
    let many: Vec<String> = (0..1025).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
    for (id, extra, field) in [
        ("K missing allow-list in original_dst", String::new(), "discovery.allowed_cidrs"),
        ("K allow-list null", r#","allowed_cidrs":null"#.into(), "discovery.allowed_cidrs"),
        ("K empty allow-list", r#","allowed_cidrs":[]"#.into(), "discovery.allowed_cidrs"),
        ("K leading space", r#","allowed_cidrs":[" 10.0.0.0/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K trailing space", r#","allowed_cidrs":["10.0.0.0/8 "]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K two slashes", r#","allowed_cidrs":["10.0.0.0/8/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K v6 zone", r#","allowed_cidrs":["fe80::%eth0/10"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K bracketed v6", r#","allowed_cidrs":["[fd00::]/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K non-ASCII", r#","allowed_cidrs":["１0.0.0.0/8"]"#.into(), "discovery.allowed_cidrs[0]"),
        ("K NUL", r#","allowed_cidrs":["10.0.0.0/8\u0000"]"#.into(), "discovery.allowed_cidrs[0]"),
        (
            "K mapped v4 range",
            r#","allowed_cidrs":["::ffff:127.0.0.0/104"]"#.into(),
            "discovery.allowed_cidrs[0]",
        ),
        ("K 1025 ranges", format!(r#","allowed_cidrs":[{}]"#, many.join(",")), "discovery.allowed_cidrs"),
        (
            "K port 0 denied",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[0]"#.into(),
            "discovery.denied_ports[0]",
        ),
        (
            "K port as string",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":["9901"]"#.into(),
            "discovery",
        ),
        ("K negative port", r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[-1]"#.into(), "discovery"),
        (
            "K fractional port",
            r#","allowed_cidrs":["10.0.0.0/8"],"denied_ports":[9901.5]"#.into(),
            "discovery",
        ),
    ] {
        let json = discovery_json(&extra);
        let e = Config::parse(json.as_bytes(), |_| None).expect_err(id);
        assert_eq!(e.field, field, "{id}: {e}");
    }
    // The documented forms are accepted.
    for extra in [
        r#","allowed_cidrs":["10.0.0.0/8","fd00::/8","127.0.0.1","::1","0.0.0.0/0"]"#,
        r#","allowed_cidrs":["10.0.0.0/08"],"denied_ports":[65535,1]"#,
    ] {
        Config::parse(discovery_json(extra).as_bytes(), |_| None).unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
}

/// Odd registry entries: each costs only itself, never a panic, never the whole answer, and never
/// an id that would break the membership record (tab, newline) or a configured host's id.
#[test]
fn discovery_answers_with_hostile_entries_keep_the_good_ones() {
    let admission = Admission { allowed: vec![Cidr::parse("10.0.0.0/8").unwrap()], denied_ports: vec![9901] };
    let good = json!({"Service": {"ID": "web-1", "Address": "10.0.0.1", "Port": 80}});
    let hostile = [
        json!({"Service": {"ID": "tab\there", "Address": "10.0.0.2", "Port": 80}}),
        json!({"Service": {"ID": "line\nbreak", "Address": "10.0.0.3", "Port": 80}}),
        json!({"Service": {"ID": "nul\u{0}", "Address": "10.0.0.4", "Port": 80}}),
        json!({"Service": {"ID": "x".repeat(100_000), "Address": "10.0.0.5", "Port": 80}}),
        json!({"Service": {"ID": "rtl\u{202e}", "Address": "10.0.0.6", "Port": 80}}),
        json!({"Service": {"ID": 7, "Address": "10.0.0.7", "Port": 80}}),
        json!({"Service": {"ID": "web-8", "Address": "10.0.0.8", "Port": "80"}}),
        json!({"Service": {"ID": "web-9", "Address": "10.0.0.9", "Port": -1}}),
        json!({"Service": {"ID": "web-10", "Address": "10.0.0.10", "Port": 1e3}}),
        json!({"Service": {"ID": "web-11", "Address": "10.0.0.11:80", "Port": 80}}),
        json!({"Service": {"ID": "web-12", "Address": "[10.0.0.12]", "Port": 80}}),
        json!({"Service": {"ID": "web-13", "Address": "fe80::1%eth0", "Port": 80}}),
        json!({"Service": {"ID": "web-14", "Address": "169.254.169.254", "Port": 80}}),
        json!({"Service": {"ID": "web-15", "Address": "::ffff:127.0.0.1", "Port": 80}}),
        json!({"Service": {"ID": "web-16", "Address": "10.0.0.16", "Port": 9901}}),
        json!({"Service": {"ID": "web-17", "Address": "192.168.0.1", "Port": 80}}),
        json!({"Service": {"ID": "10.0.0.1:80", "Address": "10.0.0.18", "Port": 80}}),
        json!({"Service": null}),
        json!([]),
        json!("string"),
    ];
    let mut entries = vec![good];
    entries.extend(hostile.iter().cloned());
    let body = serde_json::to_vec(&entries).unwrap();
    let answer = read_consul(&body, &[], &admission).unwrap();
    let ids: Vec<_> = answer.hosts.iter().map(|h| (h.id.clone().unwrap(), h.address.clone())).collect();
    // rtl and the numeric-ID entry have no control characters / no name: kept (by name / address).
    assert_eq!(
        ids,
        [
            ("web-1".to_owned(), "10.0.0.1:80".to_owned()),
            ("rtl\u{202e}".to_owned(), "10.0.0.6:80".to_owned()),
            ("10.0.0.7:80".to_owned(), "10.0.0.7:80".to_owned()),
        ]
    );
    let count = |r: SkipReason| answer.skipped.iter().filter(|s| s.reason == r).count();
    assert_eq!(count(SkipReason::BadEntry), 13, "{:?}", answer.skipped);
    assert_eq!(count(SkipReason::Metadata), 1);
    assert_eq!(count(SkipReason::Loopback), 1);
    assert_eq!(count(SkipReason::DeniedPort), 1);
    assert_eq!(count(SkipReason::OutsideAllowed), 1);
    assert_eq!(count(SkipReason::IdCollision), 1);
    assert!(answer.skipped.iter().all(|s| s.entry.len() < 200), "log lines stay bounded");
    assert!(answer.skipped.iter().all(|s| !s.entry.contains(['\t', '\n', '\0'])), "log lines are escaped");
    // The admitted set is a membership the filter accepts.
    let cfg =
        Config::parse(discovery_json(r#","allowed_cidrs":["10.0.0.0/8"]"#).as_bytes(), |_| None).unwrap();
    cfg.with_hosts(answer.hosts).unwrap();
    // A huge all-hostile answer fails as a whole (last good membership kept), without a panic.
    let flood: Vec<_> = (0..20_000)
        .map(|i| json!({"Service": {"ID": format!("l{i}"), "Address": "127.0.0.1", "Port": 1 + i % 60000}}))
        .collect();
    let e = read_consul(&serde_json::to_vec(&flood).unwrap(), &[], &admission).unwrap_err();
    assert!(e.0.contains("20000 skipped: 1 denied_port, 19999 loopback"), "{e}");
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(read_envoy_clusters(nested.as_bytes(), "b", &[], &admission).is_err());
}
