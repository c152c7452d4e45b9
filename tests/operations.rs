//! Issue 12 item 8, the lesser operations defects: config validation that refuses settings
//! which would silently misbehave, and per-host counter names that never collide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::Config;
use session_router::metric_names::host_metric_names;

fn parse(json: &str) -> Result<Config, session_router::config::ConfigError> {
    Config::parse(json.as_bytes(), |_| None)
}

const DISCOVERY: &str =
    r#""discovery":{"type":"envoy_admin","cluster":"envoy_admin","target_cluster":"backends"}"#;

fn with_hosts(hosts: &str, extra: &str) -> String {
    format!(
        r#"{{"hosts":{hosts},"sources":[{{"type":"header","name":"x"}}],"target":{{"header":"x-gateway-destination-endpoint"}}{extra}}}"#
    )
}

#[test]
fn static_drain_and_weight_are_refused_under_discovery() {
    let e = parse(&with_hosts(
        r#"[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80","drain":true}]"#,
        &format!(",{DISCOVERY}"),
    ))
    .unwrap_err();
    assert_eq!(e.field, "hosts[1].drain");
    assert!(e.reason.contains("under discovery"), "{e}");
    let e = parse(&with_hosts(r#"[{"address":"10.0.0.1:80","weight":3}]"#, &format!(",{DISCOVERY}")))
        .unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.starts_with("3 has no lasting effect")),
        ("hosts[0].weight", true),
        "{e}"
    );
    // Weight 1 is the default and means nothing more; without discovery both are honoured.
    parse(&with_hosts(r#"[{"address":"10.0.0.1:80","weight":1}]"#, &format!(",{DISCOVERY}"))).unwrap();
    let c = parse(&with_hosts(
        r#"[{"address":"10.0.0.1:80","weight":3},{"address":"10.0.0.2:80","drain":true}]"#,
        "",
    ))
    .unwrap();
    assert_eq!((c.hosts[0].weight, c.hosts[1].drain), (3, true));
}

#[test]
fn an_idle_timeout_below_four_seconds_is_refused() {
    let sticky = |idle: u64| {
        with_hosts(
            r#"[{"address":"10.0.0.1:80"}]"#,
            &format!(
                r#","sticky_cookie":{{"name":"srv","ttl_seconds":3600,"idle_timeout_seconds":{idle},"secret":"0123456789abcdef0123456789abcdef"}}"#
            ),
        )
    };
    for idle in 1..4 {
        let e = parse(&sticky(idle)).unwrap_err();
        assert_eq!(e.field, "sticky_cookie.idle_timeout_seconds");
        assert!(e.reason.contains("every response would set a cookie"), "{e}");
    }
    parse(&sticky(4)).unwrap();
}

#[test]
fn per_host_counter_names_never_collide() {
    let names = host_metric_names(&["a.b", "a_b", "a:b", "10.0.0.1:8080", "pod-1"]);
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    assert_eq!(names[1], "session_router.host.a_b.routed", "the id that needs no replacement keeps its name");
    assert!(names[0].starts_with("session_router.host.a_b_") && names[0].ends_with(".routed"), "{names:?}");
    // Without a collision the documented names stay as they were.
    assert_eq!(names[3], "session_router.host.10_0_0_1_8080.routed");
    assert_eq!(names[4], "session_router.host.pod-1.routed");
    // Deterministic: every worker and replica names a host's counter alike.
    assert_eq!(host_metric_names(&["a.b", "a_b"]), host_metric_names(&["a.b", "a_b"]));
}
