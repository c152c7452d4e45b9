//! Configuration: the contract from the README parses; every error names field, value and why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::{Config, Encoding, SameSite, Source};
use session_router::placement::Algorithm;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn parse(json: &str) -> Result<Config, String> {
    Config::parse(json.as_bytes(), |var| (var == "SR_SECRET").then(|| SECRET.to_owned()))
        .map_err(|e| e.to_string())
}

fn with(hosts: &str, rest: &str) -> String {
    format!(r#"{{"hosts":{hosts},"target":{{"header":"x-envoy-original-dst-host"}}{rest}}}"#)
}

const HOSTS: &str = r#"[{"address":"10.0.0.11:8080"}]"#;
const SOURCES: &str = r#","sources":[{"type":"source_ip"}]"#;

#[test]
fn the_documented_contract_parses_with_its_defaults() {
    let cfg = parse(&format!(
        r#"{{
          "hosts": [
            {{"address": "10.0.0.11:8080", "weight": 1}},
            {{"address": "10.0.0.12:8080", "weight": 2}}
          ],
          "sources": [
            {{"type": "cookie", "name": "JSESSIONID"}},
            {{"type": "jwt", "claim": "sub"}},
            {{"type": "header", "name": "x-user-id"}},
            {{"type": "query", "name": "sid"}},
            {{"type": "source_ip"}}
          ],
          "sticky_cookie": {{"name": "srv", "ttl_seconds": 3600, "secret": "{SECRET}"}},
          "target": {{"header": "x-envoy-original-dst-host", "encoding": "plain"}}
        }}"#
    ))
    .unwrap();
    assert_eq!(cfg.hosts.len(), 2);
    // The default placement is the rendezvous table (README "Placement").
    assert_eq!(cfg.algorithm, Algorithm::Rendezvous);
    assert_eq!(cfg.placement.point_count(), session_router::rendezvous::SLOTS);
    assert_eq!(cfg.vnodes_per_weight, 256, "kept for the ring");
    assert_eq!(
        cfg.sources,
        [
            Source::Cookie { name: "JSESSIONID".into() },
            Source::Jwt {
                header: "authorization".into(),
                prefix: "Bearer ".into(),
                claim: "sub".into(),
                leeway_seconds: 60,
            },
            Source::Header { name: "x-user-id".into() },
            Source::Query { name: "sid".into() },
            Source::SourceIp,
        ]
    );
    let sticky = cfg.sticky.as_ref().unwrap();
    assert_eq!((sticky.path.as_str(), sticky.secure, sticky.http_only), ("/", true, true));
    assert_eq!(sticky.same_site, SameSite::Lax);
    assert_eq!(sticky.idle_timeout_seconds, None);
    assert_eq!(cfg.target.encoding, Encoding::Plain);
    assert_eq!(cfg.hosts[0].header_value, "10.0.0.11:8080");
}

#[test]
fn base64_encoding_and_ipv6_brackets() {
    let cfg = parse(
        r#"{"hosts":[{"address":"[2001:db8::7]:8443"}],"sources":[{"type":"source_ip"}],
            "target":{"header":"x-session-router-host","encoding":"base64"}}"#,
    )
    .unwrap();
    // base64("[2001:db8::7]:8443")
    assert_eq!(cfg.hosts[0].header_value, "WzIwMDE6ZGI4Ojo3XTo4NDQz");
}

#[test]
fn secret_from_the_proxy_environment() {
    let ok =
        parse(&with(HOSTS, r#","sticky_cookie":{"name":"srv","ttl_seconds":60,"secret_env":"SR_SECRET"}"#));
    assert!(ok.is_ok(), "{ok:?}");
    let missing =
        parse(&with(HOSTS, r#","sticky_cookie":{"name":"srv","ttl_seconds":60,"secret_env":"NOPE"}"#));
    assert_eq!(
        missing.unwrap_err(),
        r#"sticky_cookie.secret_env: "NOPE" is not set in the proxy's environment"#
    );
}

#[test]
fn errors_name_the_field_the_value_and_why() {
    let short = r#","sticky_cookie":{"name":"srv","ttl_seconds":60,"secret":"too short"}"#;
    let cases: Vec<(String, &str)> = vec![
        (
            with(r#"[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"},{"address":"10.0.0.0"}]"#, SOURCES),
            r#"hosts[2].address: "10.0.0.0" is not ip:port (IPv6 as [addr]:port)"#,
        ),
        (with(r#"[{"address":"10.0.0"}]"#, SOURCES), r#"hosts[0].address: "10.0.0" is not ip:port"#),
        (with(r#"[{"address":"backend:80"}]"#, SOURCES), r#"hosts[0].address: "backend:80" is not ip:port"#),
        (with(r#"[{"address":"2001:db8::1:80"}]"#, SOURCES), "hosts[0].address: \"2001:db8::1:80\" is not"),
        (with(r#"[{"address":"300.1.1.1:80"}]"#, SOURCES), "hosts[0].address: \"300.1.1.1:80\" is not"),
        (with(r#"[{"address":"10.0.0.1:0"}]"#, SOURCES), r#"hosts[0].address: "10.0.0.1:0" has port 0"#),
        (with(r#"[{"address":"10.0.0.1:65536"}]"#, SOURCES), "hosts[0].address: \"10.0.0.1:65536\" is not"),
        (with(r#"[{"address":"0.0.0.0:80"}]"#, SOURCES), "hosts[0].address: \"0.0.0.0:80\" is not a unicast"),
        (with(r#"[{"address":"[::ffff:224.0.0.1]:80"}]"#, SOURCES), "hosts[0].address: \"[::ffff:224.0.0.1]:80\" is not a"),
        (with(r#"[{"address":"[fe80::1%2]:80"}]"#, SOURCES), "hosts[0].address: \"[fe80::1%2]:80\" has an IPv6 zone"),
        (with("[]", SOURCES), "hosts: is empty"),
        (
            with(r#"[{"address":"10.0.0.1:80"},{"address":"10.0.0.1:80"}]"#, SOURCES),
            r#"hosts[1].address: "10.0.0.1:80" is listed twice"#,
        ),
        (
            with(r#"[{"address":"10.0.0.1:80","id":"a"},{"address":"10.0.0.2:80","id":"a"}]"#, SOURCES),
            r#"hosts[1].id: "a" is used by two hosts"#,
        ),
        (with(r#"[{"address":"10.0.0.1:80","weight":0}]"#, SOURCES), "hosts[0].weight: 0 is not a positive"),
        (with(r#"[{"address":"10.0.0.1:80","weight":1001}]"#, SOURCES), "hosts[0].weight: 1001 is not a"),
        (with(r#"[{"address":"10.0.0.1:80","weight":-1}]"#, SOURCES), "hosts[0].weight: invalid value: integer `-1`"),
        (with(r#"[{"address":"10.0.0.1:80","weight":1.5}]"#, SOURCES), "hosts[0].weight: invalid type: floating"),
        (
            with(r#"[{"address":"10.0.0.1:80","weight":4294967296}]"#, SOURCES),
            "hosts[0].weight: invalid value: integer `4294967296`",
        ),
        (with(r#"[{"address":"10.0.0.1:80","wieght":2}]"#, SOURCES), "hosts[0].wieght: unknown field `wieght`, expected one of `address`, `id`, `weight`"),
        (with(HOSTS, r#","sources":[{"type":"cookie","nmae":"x"}]"#), "sources[0]: unknown field `nmae`"),
        (with(HOSTS, r#","sources":[{"type":"cookies","name":"x"}]"#), "sources[0].type: unknown variant `cookies`, expected one of `cookie`, `jwt`"),
        (with(HOSTS, r#","sources":[{"type":"cookie","name":"a b"}]"#), "sources[0].name: \"a b\" is not a valid"),
        (with(HOSTS, r#","sources":[{"type":"header","name":"x:y"}]"#), "sources[0].name: \"x:y\" is not a valid"),
        (with(HOSTS, r#","sources":[{"type":"source_ip","name":"x"}]"#), "sources[0]: unknown field `name`"),
        (with(HOSTS, ""), "sources: is empty and no sticky_cookie is configured"),
        (with(HOSTS, short), "sticky_cookie.secret: is 9 bytes, at least 32 are required"),
        (
            with(HOSTS, r#","sticky_cookie":{"name":"srv","ttl_seconds":60}"#),
            "sticky_cookie: needs secret or secret_env",
        ),
        (
            with(HOSTS, &format!(r#","sticky_cookie":{{"name":"srv","ttl_seconds":0,"secret":"{SECRET}"}}"#)),
            "sticky_cookie.ttl_seconds: 0 is out of range",
        ),
        (
            with(HOSTS, &format!(r#","sticky_cookie":{{"name":"srv","ttl_seconds":3153600000,"secret":"{SECRET}"}}"#)),
            "sticky_cookie.ttl_seconds: 3153600000 is out of range",
        ),
        (
            with(
                HOSTS,
                &format!(
                    r#","sticky_cookie":{{"name":"srv","ttl_seconds":60,"idle_timeout_seconds":61,"secret":"{SECRET}"}}"#
                ),
            ),
            "sticky_cookie.idle_timeout_seconds: 61 is out of range",
        ),
        (
            with(HOSTS, &format!(r#","sticky_cookie":{{"name":"srv;","ttl_seconds":60,"secret":"{SECRET}"}}"#)),
            "sticky_cookie.name: \"srv;\" is not a valid cookie name",
        ),
        (
            with(
                HOSTS,
                &format!(r#","sticky_cookie":{{"name":"__Host-srv","ttl_seconds":60,"secret":"{SECRET}","path":"/app"}}"#),
            ),
            "sticky_cookie.name: \"__Host-srv\" requires secure: true, path \"/\" and no domain",
        ),
        (
            with(
                HOSTS,
                &format!(
                    r#","sticky_cookie":{{"name":"srv","ttl_seconds":60,"secret":"{SECRET}","same_site":"None","secure":false}}"#
                ),
            ),
            "sticky_cookie.same_site: None requires secure: true",
        ),
        (
            with(HOSTS, &format!(r#","sticky_cookie":{{"name":"srv","ttl_seconds":60,"secret":"{SECRET}","same_site":"lax"}}"#)),
            "sticky_cookie.same_site: unknown variant `lax`",
        ),
        (
            r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}],"target":{"header":"x-envoy-original-dst-host","fallbacks":2}}"#.into(),
            "target.fallbacks: 2 needs a header that takes a comma-separated list",
        ),
        (
            r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}],"target":{"header":"x-a","encoding":"hex"}}"#.into(),
            "target.encoding: unknown variant `hex`",
        ),
        (
            r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}],"target":{"header":"Host"}}"#.into(),
            "target.header: \"Host\" cannot be used here",
        ),
        (
            r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}]}"#.into(),
            "config: missing field `target`",
        ),
        ("{}".into(), "config: missing field `hosts`"),
        ("".into(), "config: is empty"),
        (" \n".into(), "config: is empty"),
        ("[]".into(), "config: invalid length 0, expected a JSON object with `hosts` and `target`"),
        ("not json".into(), "config: is not valid JSON: expected ident at line 1 column 2"),
        (r#"{"hosts":[}"#.into(), "config: is not valid JSON: expected value at line 1 column 11"),
        (with(HOSTS, SOURCES).replace('}', "},") + "", "config: is not valid JSON"),
        ("\u{feff}{}".into(), "config: is not valid JSON"),
        (with(HOSTS, &format!("{SOURCES},\"vnodes_per_weight\":0")), "vnodes_per_weight: 0 is out of range"),
        (
            with(r#"[{"address":"10.0.0.1:80","weight":1000},{"address":"10.0.0.2:80","weight":1000}]"#, &format!("{SOURCES},\"vnodes_per_weight\":4096")),
            "hosts: total weight × vnodes_per_weight = 8192000 ring points, more than 4000000",
        ),
        (with(HOSTS, &format!("{SOURCES},\"extra\":1")), "extra: unknown field `extra`, expected one of `hosts`, `sources`"),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(json, expected)| match parse(json) {
            Err(got) if got.starts_with(expected) => None,
            other => Some(format!("config {json}\n  expected: {expected}\n  got:      {other:?}")),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_secret_is_never_echoed_in_errors() {
    let json =
        with(HOSTS, r#","sticky_cookie":{"name":"srv","ttl_seconds":60,"secret":"hunter2-very-secret"}"#);
    let e = parse(&json).unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn ten_thousand_hosts_build_within_bounds() {
    let hosts: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"address":"10.{}.{}.{}:80"}}"#, i / 65536, i / 256 % 256, i % 256))
        .collect();
    let cfg = parse(&with(&format!("[{}]", hosts.join(",")), SOURCES)).unwrap();
    assert_eq!(cfg.hosts.len(), 10_000);
    let too_many: Vec<String> = (0..10_001)
        .map(|i| format!(r#"{{"address":"10.{}.{}.{}:80"}}"#, i / 65536, i / 256 % 256, i % 256))
        .collect();
    let e = parse(&with(&format!("[{}]", too_many.join(",")), SOURCES)).unwrap_err();
    assert!(e.starts_with("hosts: 10001 hosts, at most 10000"), "{e}");
}

/// Istio hands the filter `pluginConfig`, a protobuf Struct, whose numbers are doubles; tools that
/// serialize a Struct may write them as `256.0` or `3.6e3`. An integral double is the integer it
/// names, in every integer field; a fraction, a negative or an out-of-range value is still an error.
#[test]
fn integer_fields_accept_integral_doubles() {
    let config = |n: &dyn Fn(u64) -> String| {
        format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80","weight":{w}}},{{"address":"10.0.0.2:80"}}],
            "sources":[{{"type":"source_ip"}}],
            "sticky_cookie":{{"name":"srv","ttl_seconds":{ttl},"idle_timeout_seconds":{idle},"secret_env":"SR_SECRET"}},
            "target":{{"header":"x-gateway-destination-endpoint","fallbacks":{fb}}},
            "vnodes_per_weight":{vn},
            "health":{{"passive":{{"consecutive_failures":{cf},"ejection_seconds":{ej},"max_ejection_seconds":{mej}}},
                      "active":{{"cluster":"c","interval_ms":{iv},"timeout_ms":{to},"unhealthy_threshold":{ut},"healthy_threshold":{ht}}}}},
            "discovery":{{"type":"envoy_admin","cluster":"a","target_cluster":"b","interval_ms":{div}}}}}"#,
            w = n(1), // under discovery a static weight must be 1 (issue 12)
            ttl = n(3600),
            idle = n(600),
            fb = n(1),
            vn = n(256),
            cf = n(3),
            ej = n(10),
            mej = n(300),
            iv = n(1000),
            to = n(500),
            ut = n(2),
            ht = n(3),
            div = n(2000)
        )
    };
    let ints = parse(&config(&|v| v.to_string())).unwrap();
    for (style, render) in [
        ("256.0", &(|v: u64| format!("{v}.0")) as &dyn Fn(u64) -> String),
        ("2.56e2", &|v: u64| {
            format!("{}e{}", v as f64 / 10f64.powi(v.to_string().len() as i32 - 1), v.to_string().len() - 1)
        }),
        ("2560e-1", &|v: u64| format!("{}e-1", v * 10)),
    ] {
        let doubles = config(render);
        let got = parse(&doubles).unwrap_or_else(|e| panic!("{style} style rejected: {e}\n{doubles}"));
        assert_eq!(format!("{got:?}"), format!("{ints:?}"), "{style} style parses to a different config");
    }
    for (json, expected) in [
        (
            with(r#"[{"address":"10.0.0.1:80","weight":1.5}]"#, SOURCES),
            "hosts[0].weight: invalid type: floating point `1.5`",
        ),
        (
            with(r#"[{"address":"10.0.0.1:80","weight":-1.0}]"#, SOURCES),
            "hosts[0].weight: invalid value: floating point `-1.0`",
        ),
        (
            with(r#"[{"address":"10.0.0.1:80","weight":4294967296.0}]"#, SOURCES),
            "hosts[0].weight: invalid value: floating point `4294967296.0`",
        ),
        (with(r#"[{"address":"10.0.0.1:80","weight":1e400}]"#, SOURCES), "config: is not valid JSON"),
        (
            with(HOSTS, &format!("{SOURCES},\"vnodes_per_weight\":0.5")),
            "vnodes_per_weight: invalid type: floating point `0.5`",
        ),
        (
            with(HOSTS, &format!("{SOURCES},\"vnodes_per_weight\":0.0")),
            "vnodes_per_weight: 0 is out of range",
        ),
        (
            with(
                HOSTS,
                r#","sticky_cookie":{"name":"s","ttl_seconds":1.8446744073709552e19,"secret_env":"SR_SECRET"}"#,
            ),
            "sticky_cookie.ttl_seconds: invalid value: floating point `1.8446744073709552e+19`, expected u64",
        ),
        (
            with(HOSTS, &format!("{SOURCES},\"vnodes_per_weight\":\"256\"")),
            "vnodes_per_weight: invalid type: string \"256\", expected u32",
        ),
        (with(r#"[{"address":"10.0.0.1:80","weight":null}]"#, SOURCES), ""),
    ] {
        match parse(&json) {
            Err(got) => assert!(
                !expected.is_empty() && got.starts_with(expected),
                "{json}\n  expected: {expected}\n  got: {got}"
            ),
            Ok(_) => assert!(expected.is_empty(), "{json} accepted, expected {expected}"),
        }
    }
}

#[test]
fn new_integer_fields_accept_integral_doubles_too() {
    let json = r#"{"hosts":[{"address":"10.0.0.1:80"}],
        "sources":[{"type":"jwt","leeway_seconds":30.0}],
        "discovery":{"type":"envoy_admin","cluster":"a","target_cluster":"b","allowed_cidrs":["10.0.0.0/8"],
                     "denied_ports":[9901.0, 15000]},
        "target":{"header":"x-gateway-destination-endpoint"}}"#;
    Config::parse(json.as_bytes(), |_| None).unwrap();
    let bad = json.replace("9901.0", "9901.5");
    let e = Config::parse(bad.as_bytes(), |_| None).unwrap_err();
    assert!(e.field.starts_with("discovery"), "{e}");
    let bad = json.replace("30.0", "-30");
    let e = Config::parse(bad.as_bytes(), |_| None).unwrap_err();
    // Internally tagged (`type`): serde reports the source, the message names the value.
    assert!(e.field.starts_with("sources[0]") && e.reason.contains("-30"), "{e}");
}

#[test]
fn a_config_can_be_shared_across_threads() {
    // Its caches (verified cookies, remembered fallbacks) must not make it thread-bound: the
    // fuzz targets and native users keep configs in statics.
    fn shared<T: Send + Sync>() {}
    shared::<Config>();
}
