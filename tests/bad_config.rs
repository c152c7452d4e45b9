//! Malformed configurations (rows K1–K12): each is rejected with the field and value it names, and
//! none panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{Value, json};

use common::bad_inputs::*;
use session_router::config::{Config, ConfigError};
use session_router::router::{Decision, Kind};

// ---- configuration ----------------------------------------------------------------------------

/// A distinct unicast `ip:port` for host `i`.
fn host_address(i: usize) -> String {
    format!("10.{}.{}.{}:80", i / 250 / 250, i / 250 % 250, i % 250 + 1)
}

const MIN: &str = r#"{"hosts":[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"}],
    "sources":[{"type":"source_ip"}],
    "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
    "target":{"header":"x-envoy-original-dst-host"}}"#;

fn min() -> Value {
    serde_json::from_str(MIN).unwrap()
}

fn with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = min();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn env(var: &str) -> Option<String> {
    match var {
        "SR_SECRET" => Some("env-secret-0123456789abcdef0123456789".to_owned()),
        "SR_SHORT" => Some("short".to_owned()),
        _ => None,
    }
}

fn config_err(json: &[u8]) -> Result<ConfigError, String> {
    match Config::parse(json, env) {
        Ok(_) => Err("accepted".to_owned()),
        Err(e) => Ok(e),
    }
}

#[test]
fn k_rows_are_rejected_with_the_field_and_value() {
    assert!(Config::parse(MIN.as_bytes(), env).is_ok(), "the base config is valid");
    let bad_address = |a: &str| with(|v| v["hosts"][1]["address"] = json!(a));
    let host = |h: Value| with(|v| v["hosts"][1] = h);
    let weight = |w: Value| with(|v| v["hosts"][1]["weight"] = w);
    let sticky = |k: &str, x: Value| with(|v| v["sticky_cookie"][k] = x);
    let no_secret = |k: &str, x: Value| {
        with(|v| {
            v["sticky_cookie"].as_object_mut().unwrap().remove("secret");
            v["sticky_cookie"][k] = x;
        })
    };
    let source = |s: Value| with(|v| v["sources"] = json!([s]));
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(MIN.as_bytes());
    let hosts_10001: Vec<Value> = (0..10_001).map(|i| json!({"address": host_address(i)})).collect();
    let heavy: Vec<Value> =
        (0..20).map(|i| json!({"address": format!("10.0.1.{}:80", i + 1), "weight": 1000})).collect();
    let invalid_utf8 = MIN
        .replacen("srv", "s\u{1}v", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xff } else { b })
        .collect();
    let trailing = MIN.trim_end().strip_suffix('}').unwrap().to_owned() + ",}";
    let duplicate_key = MIN.replacen(r#""sources""#, r#""hosts":[{"address":"10.9.9.9:80"}],"sources""#, 1);

    // (row, input, expected field, expected substring of the reason)
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("K1 not JSON", b"hosts: [10.0.0.1:80]".to_vec(), "config", "not valid JSON"),
        ("K1 truncated", MIN.as_bytes()[..60].to_vec(), "config", "not valid JSON"),
        ("K1 BOM", bom, "config", "not valid JSON"),
        ("K1 trailing comma", trailing.into_bytes(), "config", "not valid JSON"),
        (
            "K1 trailing comma in hosts",
            MIN.replace(r#"80"}],"#, r#"80"},],"#).into_bytes(),
            "config",
            "not valid JSON",
        ),
        ("K1 invalid UTF-8", invalid_utf8, "config", "not valid JSON"),
        ("K2 zero bytes", b"".to_vec(), "config", "empty"),
        ("K2 whitespace", b" \n\t ".to_vec(), "config", "empty"),
        ("K2 {}", b"{}".to_vec(), "config", "missing field `hosts`"),
        ("K2 null", b"null".to_vec(), "config", "expected a JSON object"),
        ("K2 []", b"[]".to_vec(), "config", "expected a JSON object"),
        (
            "K2 no target",
            with(|v| _ = v.as_object_mut().unwrap().remove("target")),
            "config",
            "missing field `target`",
        ),
        ("K3 hosts []", with(|v| v["hosts"] = json!([])), "hosts", "empty"),
        ("K3 hosts null", with(|v| v["hosts"] = Value::Null), "hosts", "invalid type: null"),
        (
            "K3 no sources and no sticky cookie",
            with(|v| {
                v["sources"] = json!([]);
                v.as_object_mut().unwrap().remove("sticky_cookie");
            }),
            "sources",
            "is empty",
        ),
        ("K4 same address twice", bad_address("10.0.0.1:80"), "hosts[1].address", "10.0.0.1:80"),
        (
            "K4 same v6 address, two spellings",
            with(|v| v["hosts"] = json!([{"address":"[::1]:80"},{"address":"[0:0:0:0:0:0:0:1]:80"}])),
            "hosts[1].address",
            "[0:0:0:0:0:0:0:1]:80",
        ),
        (
            "K4 same id, different addresses",
            with(|v| {
                v["hosts"][0]["id"] = json!("web-a");
                v["hosts"][1]["id"] = json!("web-a");
            }),
            "hosts[1].id",
            "\"web-a\"",
        ),
        (
            "K4 id equal to another host's address",
            with(|v| v["hosts"][1]["id"] = json!("10.0.0.1:80")),
            "hosts[1].id",
            "10.0.0.1:80",
        ),
        ("K4 blank id", host(json!({"address":"10.0.0.2:80","id":"  "})), "hosts[1].id", "\"  \""),
        (
            "K4 id with a control char",
            host(json!({"address":"10.0.0.2:80","id":"a\nb"})),
            "hosts[1].id",
            "a\\nb",
        ),
        ("K5 weight 0", weight(json!(0)), "hosts[1].weight", "0 is not a positive integer"),
        (
            "K5 all weights 0",
            with(|v| {
                v["hosts"][0]["weight"] = json!(0);
                v["hosts"][1]["weight"] = json!(0);
            }),
            "hosts[0].weight",
            "0 is not",
        ),
        ("K5 negative weight", weight(json!(-1)), "hosts[1].weight", "-1"),
        ("K5 float weight", weight(json!(1.5)), "hosts[1].weight", "1.5"),
        ("K5 weight over u32", weight(json!(4_294_967_296u64)), "hosts[1].weight", "4294967296"),
        ("K5 weight over the cap", weight(json!(1001)), "hosts[1].weight", "1001"),
        ("K5 weight as string", weight(json!("1")), "hosts[1].weight", "invalid type: string"),
        ("K6 300.1.1.1:80", bad_address("300.1.1.1:80"), "hosts[1].address", "300.1.1.1:80"),
        ("K6 host:abc", bad_address("host:abc"), "hosts[1].address", "host:abc"),
        ("K6 :80", bad_address(":80"), "hosts[1].address", "\":80\""),
        ("K6 v6 without brackets", bad_address("::1:80"), "hosts[1].address", "::1:80"),
        ("K6 v6 without a port", bad_address("[::1]"), "hosts[1].address", "[::1]"),
        ("K6 no port", bad_address("10.0.0.2"), "hosts[1].address", "10.0.0.2"),
        ("K6 port 0", bad_address("10.0.0.2:0"), "hosts[1].address", "port 0"),
        ("K6 port 65536", bad_address("10.0.0.2:65536"), "hosts[1].address", "65536"),
        ("K6 unspecified", bad_address("0.0.0.0:80"), "hosts[1].address", "0.0.0.0:80"),
        ("K6 multicast", bad_address("224.0.0.1:80"), "hosts[1].address", "224.0.0.1:80"),
        ("K6 hostname", bad_address("localhost:80"), "hosts[1].address", "localhost:80"),
        ("K6 leading zeros", bad_address("010.0.0.2:80"), "hosts[1].address", "010.0.0.2:80"),
        ("K6 surrounding space", bad_address(" 10.0.0.2:80"), "hosts[1].address", " 10.0.0.2:80"),
        ("K6 empty", bad_address(""), "hosts[1].address", "\"\""),
        ("K6 list", bad_address("10.0.0.2:80,10.0.0.3:80"), "hosts[1].address", "10.0.0.2:80,10.0.0.3:80"),
        (
            "K7 misspelled root key",
            with(|v| v["cooke_name"] = json!("x")),
            "cooke_name",
            "unknown field `cooke_name`",
        ),
        (
            "K7 misspelled sticky key",
            sticky("ttl_second", json!(5)),
            "sticky_cookie.ttl_second",
            "unknown field",
        ),
        ("K7 misspelled host key", host(json!({"adress":"10.0.0.2:80"})), "hosts[1].adress", "unknown field"),
        (
            "K7 unknown source type",
            source(json!({"type":"cookies","name":"a"})),
            "sources[0].type",
            "unknown variant",
        ),
        ("K7 source without type", source(json!({"name":"a"})), "sources[0]", "type"),
        (
            "K7 extra field on a source",
            source(json!({"type":"source_ip","name":"x"})),
            "sources[0]",
            "unknown field `name`",
        ),
        ("K7 duplicate root key", duplicate_key.into_bytes(), "config", "duplicate field `hosts`"),
        (
            "K8 cookie source name with space",
            source(json!({"type":"cookie","name":"a b"})),
            "sources[0].name",
            "a b",
        ),
        (
            "K8 cookie source name with ';'",
            source(json!({"type":"cookie","name":"a;b"})),
            "sources[0].name",
            "a;b",
        ),
        (
            "K8 cookie source name with '='",
            source(json!({"type":"cookie","name":"a=b"})),
            "sources[0].name",
            "a=b",
        ),
        (
            "K8 empty cookie source name",
            source(json!({"type":"cookie","name":""})),
            "sources[0].name",
            "\"\"",
        ),
        ("K8 sticky name with space", sticky("name", json!("s rv")), "sticky_cookie.name", "s rv"),
        ("K8 sticky name non-ASCII", sticky("name", json!("srvé")), "sticky_cookie.name", "srvé"),
        (
            "K8 __Host- with a domain",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["domain"] = json!("example.com");
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Host- with path /app",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["path"] = json!("/app");
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Host- not secure",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Host-srv");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.name",
            "__Host-srv",
        ),
        (
            "K8 __Secure- not secure",
            with(|v| {
                v["sticky_cookie"]["name"] = json!("__Secure-srv");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.name",
            "__Secure-srv",
        ),
        (
            "K8 SameSite=None not secure",
            with(|v| {
                v["sticky_cookie"]["same_site"] = json!("None");
                v["sticky_cookie"]["secure"] = json!(false);
            }),
            "sticky_cookie.same_site",
            "secure",
        ),
        ("K8 path without /", sticky("path", json!("app")), "sticky_cookie.path", "\"app\""),
        ("K8 path with ;", sticky("path", json!("/a;Domain=evil")), "sticky_cookie.path", "/a;Domain=evil"),
        (
            "K8 domain with space",
            sticky("domain", json!("ex ample.com")),
            "sticky_cookie.domain",
            "ex ample.com",
        ),
        ("K8 domain with ;", sticky("domain", json!("a.com;Secure")), "sticky_cookie.domain", "a.com;Secure"),
        (
            "K8 header source 'cookie'",
            source(json!({"type":"header","name":"cookie"})),
            "sources[0].name",
            "cookie",
        ),
        (
            "K8 header source with space",
            source(json!({"type":"header","name":"x user"})),
            "sources[0].name",
            "x user",
        ),
        ("K8 target header Host", with(|v| v["target"]["header"] = json!("Host")), "target.header", "Host"),
        (
            "K9 no secret",
            with(|v| _ = v["sticky_cookie"].as_object_mut().unwrap().remove("secret")),
            "sticky_cookie",
            "secret",
        ),
        (
            "K9 31-byte secret",
            sticky("secret", json!("0123456789abcdef0123456789abcde")),
            "sticky_cookie.secret",
            "31 bytes",
        ),
        ("K9 empty secret", sticky("secret", json!("")), "sticky_cookie.secret", "0 bytes"),
        ("K9 secret not a string", sticky("secret", json!(12345)), "sticky_cookie.secret", "invalid type"),
        (
            "K9 secret_env unset",
            no_secret("secret_env", json!("SR_UNSET")),
            "sticky_cookie.secret_env",
            "SR_UNSET",
        ),
        (
            "K9 secret_env too short",
            no_secret("secret_env", json!("SR_SHORT")),
            "sticky_cookie.secret",
            "5 bytes",
        ),
        (
            "K9 both secret and secret_env",
            sticky("secret_env", json!("SR_SECRET")),
            "sticky_cookie",
            "not both",
        ),
        ("K10 ttl 0", sticky("ttl_seconds", json!(0)), "sticky_cookie.ttl_seconds", "0 is out of range"),
        ("K10 ttl negative", sticky("ttl_seconds", json!(-1)), "sticky_cookie.ttl_seconds", "-1"),
        (
            "K10 ttl 100 years",
            sticky("ttl_seconds", json!(3_155_760_000u64)),
            "sticky_cookie.ttl_seconds",
            "3155760000",
        ),
        (
            "K10 ttl 400 days + 1 s",
            sticky("ttl_seconds", json!(34_560_001)),
            "sticky_cookie.ttl_seconds",
            "34560001",
        ),
        ("K10 ttl float", sticky("ttl_seconds", json!(3600.5)), "sticky_cookie.ttl_seconds", "3600.5"),
        (
            "K10 idle 0",
            sticky("idle_timeout_seconds", json!(0)),
            "sticky_cookie.idle_timeout_seconds",
            "0 is out",
        ),
        (
            "K10 idle > ttl",
            sticky("idle_timeout_seconds", json!(3601)),
            "sticky_cookie.idle_timeout_seconds",
            "3601",
        ),
        (
            "K10 ring size 0",
            with(|v| v["vnodes_per_weight"] = json!(0)),
            "vnodes_per_weight",
            "0 is out of range",
        ),
        (
            "K10 ring size over the cap",
            with(|v| v["vnodes_per_weight"] = json!(4097)),
            "vnodes_per_weight",
            "4097",
        ),
        (
            "K10 too many ring points",
            with(|v| {
                v["hosts"] = json!(heavy);
                v["placement"] = json!({"algorithm": "ring"});
            }),
            "hosts",
            "5120000 ring points",
        ),
        (
            "K10 fallbacks over the cap",
            with(|v| v["target"]["fallbacks"] = json!(17)),
            "target.fallbacks",
            "17",
        ),
        (
            "K10 fallbacks with a single-address header",
            with(|v| v["target"]["fallbacks"] = json!(1)),
            "target.fallbacks",
            "x-envoy-original-dst-host",
        ),
        ("K11 10001 hosts", with(|v| v["hosts"] = json!(hosts_10001)), "hosts", "10001 hosts"),
        (
            "K every host draining",
            with(|v| {
                v["hosts"][0]["drain"] = json!(true);
                v["hosts"][1]["drain"] = json!(true);
            }),
            "hosts",
            "draining",
        ),
    ];
    let mut failures = Vec::new();
    for (id, input, field, reason) in &cases {
        match config_err(input) {
            Err(why) => failures.push(format!("{id}: {why}")),
            Ok(e) if e.field != *field || !e.reason.contains(reason) => failures.push(format!(
                "{id}: got {:?} / {:?}, want {field:?} containing {reason:?}",
                e.field, e.reason
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} K cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn k9_the_secret_is_never_echoed() {
    let secret = "S3CR3T-short-but-distinctive";
    let e = config_err(&with(|v| v["sticky_cookie"]["secret"] = json!(secret))).unwrap();
    assert_eq!(e.field, "sticky_cookie.secret");
    assert!(!e.to_string().contains(secret), "K9 the error echoes the secret: {e}");
    let ok = Config::parse(&with(|v| v["sticky_cookie"]["secret"] = json!("x".repeat(32))), env);
    assert!(ok.is_ok(), "K9 exactly 32 bytes is enough");
}

#[test]
fn k11_ten_thousand_hosts_are_bounded() {
    let hosts: Vec<Value> = (0..10_000).map(|i| json!({"address": host_address(i)})).collect();
    let json = with(|v| {
        v["hosts"] = json!(hosts);
        v["placement"] = json!({"algorithm": "ring"});
    });
    let started = std::time::Instant::now();
    let cfg = Config::parse(&json, env).expect("K11 10k hosts are accepted");
    let took = started.elapsed();
    assert_eq!(cfg.hosts.len(), 10_000);
    assert_eq!(cfg.placement.point_count(), 10_000 * 256, "K11 ring size");
    assert!(
        cfg.placement.memory_bytes() <= 2 * 10_000 * 256 * 8,
        "K11 ring memory {}",
        cfg.placement.memory_bytes()
    );
    assert!(took.as_secs() < 60, "K11 parse took {took:?}");
    let d =
        check(&cfg, "K11 routing on 10k hosts", &req().with_source("192.0.2.1:1"), &hashed(0, "192.0.2.1"));
    assert!(d.host < 10_000);
}

#[test]
fn k12_host_and_key_order_do_not_change_routing() {
    let a = r#"{"hosts":[{"address":"10.0.0.1:80","id":"web-c"},{"address":"10.0.0.2:80","id":"web-a","weight":2},
        {"address":"10.0.0.3:80","id":"web-b"}],
        "sources":[{"type":"header","name":"x-user-id"}],
        "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
        "target":{"header":"x-envoy-original-dst-host"}}"#;
    let b = r#"{"target":{"header":"x-envoy-original-dst-host"},
        "sticky_cookie":{"secret":"0123456789abcdef0123456789abcdef","ttl_seconds":3600,"name":"srv"},
        "sources":[{"name":"x-user-id","type":"header"}],
        "hosts":[{"id":"web-b","address":"10.0.0.3:80"},{"weight":2,"id":"web-a","address":"10.0.0.2:80"},
        {"id":"web-c","address":"10.0.0.1:80","weight":1}]}"#;
    let c = r#"{"hosts":[{"address":"10.0.0.2:80","id":"web-a","weight":2},{"address":"10.0.0.3:80","id":"web-b"},
        {"address":"10.0.0.1:80","id":"web-c"}],"sources":[{"type":"header","name":"x-user-id"}],
        "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"0123456789abcdef0123456789abcdef"},
        "target":{"header":"x-envoy-original-dst-host"},"placement":{"algorithm":"rendezvous"}}"#;
    let configs: Vec<Config> = [a, a, b, c].iter().map(|j| parse(j)).collect();
    for (i, cfg) in configs.iter().enumerate() {
        assert_eq!(cfg.placement, configs[0].placement, "K12 config #{i}: ring differs");
        let ids: Vec<&str> = cfg.hosts.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["web-a", "web-b", "web-c"], "K12 config #{i}: hosts sorted by id");
    }
    let address = |cfg: &Config, d: &Decision| cfg.hosts[d.host].address.to_string();
    let mut seen = std::collections::HashSet::new();
    for k in 0..1000 {
        let r = user(format!("user-{k}"));
        let first = run(&configs[0], &r, NOW);
        seen.insert(address(&configs[0], &first));
        for (i, cfg) in configs.iter().enumerate().skip(1) {
            let d = run(cfg, &r, NOW);
            assert_eq!(address(cfg, &d), address(&configs[0], &first), "K12 user-{k} moved in config #{i}");
        }
        // A cookie issued under one ordering pins to the same address under another.
        if k % 50 == 0 {
            let value = issued(&first);
            for (i, cfg) in configs.iter().enumerate() {
                let d = run(cfg, &cookie(format!("srv={value}")), NOW);
                assert_eq!(
                    (d.kind, address(cfg, &d)),
                    (Kind::Pinned, address(&configs[0], &first)),
                    "K12 #{i}"
                );
            }
        }
    }
    assert_eq!(seen.len(), 3, "K12 1000 keys reach every host");
    // Without ids the address is the id: reordering the host list changes nothing either.
    let fwd = base();
    let rev: Vec<&str> = HOSTS.iter().rev().copied().collect();
    let rev = parse(&config_json(&rev, SECRET, ""));
    assert_eq!(fwd.placement, rev.placement, "K12 reversed host list");
}

// ---- suspected bugs ---------------------------------------------------------------------------

/// K8 / C19: browsers match the `__Host-` and `__Secure-` prefixes case-insensitively (RFC 6265bis
/// cookie-prefix rules), so `__host-srv` with a Domain is silently dropped by the browser, exactly
/// like `__Host-srv`. The config check only looks for the exact-case prefix.
#[test]

fn k8_lowercase_host_prefix_with_domain_is_rejected() {
    let json = with(|v| {
        v["sticky_cookie"]["name"] = json!("__host-srv");
        v["sticky_cookie"]["domain"] = json!("example.com");
    });
    let e = config_err(&json).expect("K8 __host-srv with a domain should be rejected");
    assert_eq!(e.field, "sticky_cookie.name");
    let json = with(|v| {
        v["sticky_cookie"]["name"] = json!("__SECURE-srv");
        v["sticky_cookie"]["secure"] = json!(false);
    });
    let e = config_err(&json).expect("K8 __SECURE-srv without secure should be rejected");
    assert_eq!(e.field, "sticky_cookie.name");
}

/// K1: `Config::parse` reads one JSON value and ignores whatever follows it, so a config with
/// trailing garbage — or two concatenated documents, of which only the first is used — is accepted.
#[test]

fn k1_trailing_data_after_the_object_is_rejected() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("K1 two documents", [MIN, MIN].concat().into_bytes()),
        ("K1 trailing garbage", format!("{MIN} garbage").into_bytes()),
        ("K1 trailing bracket", format!("{MIN}]").into_bytes()),
        ("K1 trailing comma", format!("{MIN},").into_bytes()),
        ("K1 a second document is silently dropped", format!(r#"{MIN}{{"hosts":[]}}"#).into_bytes()),
    ];
    let mut accepted = Vec::new();
    for (id, json) in &cases {
        match config_err(json) {
            Ok(e) => assert_eq!(e.field, "config", "{id}"),
            Err(_) => accepted.push(*id),
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
}

/// K4: an IPv4-mapped IPv6 address is the same endpoint as the IPv4 one, but is not seen as a
/// duplicate, so one backend gets two hosts' share of the ring.
#[test]

fn k4_ipv4_mapped_duplicate_is_rejected() {
    let json = with(|v| v["hosts"][1]["address"] = json!("[::ffff:10.0.0.1]:80"));
    let e = config_err(&json).expect("K4 10.0.0.1:80 and [::ffff:10.0.0.1]:80 are one endpoint");
    assert_eq!(e.field, "hosts[1].address");
}

/// K9-style rows for `sticky_cookie.verify_secrets`, and J12-style rows for `leeway_seconds`.
#[test]
fn k9_verify_secrets_and_j12_leeway_reject_odd_values() {
    let sticky = |extra: &str| {
        let json = config_json(&HOSTS, SECRET, extra);
        Config::parse(json.as_bytes(), |v| (v == "EMPTY").then(String::new))
    };
    for (id, extra, field) in [
        ("K9 verify_secrets null entry", r#","verify_secrets":[null]"#, "sticky_cookie.verify_secrets[0]"),
        (
            "K9 verify secret not a string",
            r#","verify_secrets":[{"secret":123}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret empty",
            r#","verify_secrets":[{"secret":""}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret_env empty value",
            r#","verify_secrets":[{"secret_env":"EMPTY"}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify secret 31 bytes",
            r#","verify_secrets":[{"secret":"0123456789012345678901234567890"}]"#,
            "sticky_cookie.verify_secrets[0].secret",
        ),
        (
            "K9 verify_secrets an object",
            r#","verify_secrets":{"secret":"x"}"#,
            "sticky_cookie.verify_secrets",
        ),
    ] {
        let e = sticky(extra).expect_err(id);
        assert_eq!(e.field, field, "{id}: {e}");
    }
    // 32 bytes of multi-byte characters (11 characters) are enough: bytes are counted.
    sticky(r#","verify_secrets":[{"secret":"ééééééééééééééééé"}]"#).unwrap();
    let leeway = |v: &str| {
        let json = format!(
            r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"jwt","leeway_seconds":{v}}}],
            "target":{{"header":"x-gateway-destination-endpoint"}}}}"#
        );
        Config::parse(json.as_bytes(), |_| None)
    };
    for v in ["-1", "1.5", "\"60\"", "3601", "18446744073709551616", "3.7e3"] {
        let e = leeway(v).expect_err(v);
        assert!(e.field.starts_with("sources[0]"), "{v}: {e}");
    }
    leeway("0").unwrap();
    leeway("3600").unwrap();
}
