//! `Config::parse`: the filter's JSON configuration, validated and compiled with its ring.
//!
//! Raw input: the JSON document itself (the seeds are the configs of README.md and envoy/).
//! Structured input: a document generated field by field (every field, plausible and
//! implausible values, unknown fields, wrong types), so validation is exercised past the JSON
//! syntax. `secret_env` reads `SESSION_ROUTER_SECRET` (set) or anything else (unset).
//!
//! Checks on every accepted config: hosts non-empty and sorted by unique id, the ring holds
//! `Σ weight × vnodes` points for exactly those hosts, every host is found by its id, its
//! address and its cookie tag under every key (signing and verify-only), header values match the
//! encoding, ORIGINAL_DST discovery has an allow-list, and limits hold. On every rejection: the
//! error names a field and never echoes a cookie secret (signing or verify-only).

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use session_router::config::{
    Config, Encoding, MAX_FALLBACKS, MAX_JWT_LEEWAY_SECONDS, MAX_RING_POINTS, MAX_TTL_SECONDS,
    MAX_VERIFY_SECRETS, MAX_VNODES_PER_WEIGHT, MAX_WEIGHT, MIN_SECRET_BYTES,
};
use session_router_fuzz::{ENV_SECRET, Input, input};

#[derive(Arbitrary, Debug)]
enum Str {
    Good(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Num {
    Small(u8),
    Any(u64),
    Negative(i32),
    Float(f32),
    Text(u8),
}

impl Num {
    fn value(&self) -> Value {
        match self {
            Num::Small(n) => json!(n),
            Num::Any(n) => json!(n),
            Num::Negative(n) => json!(n),
            Num::Float(f) => json!(f),
            Num::Text(n) => json!(n.to_string()),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Host {
    address: Str,
    id: Option<Str>,
    weight: Option<Num>,
    drain: Option<bool>,
}

#[derive(Arbitrary, Debug)]
enum Source {
    Cookie(Str),
    Jwt { claim: Option<Str>, header: Option<Str>, prefix: Option<Str>, leeway: Option<Num> },
    Header(Str),
    Query(Str),
    ClientIp,
    Unknown(String),
}

#[derive(Arbitrary, Debug)]
struct Sticky {
    name: Str,
    ttl: Num,
    idle: Option<Num>,
    secret: Option<Str>,
    secret_env: Option<Str>,
    path: Option<Str>,
    domain: Option<Str>,
    secure: Option<bool>,
    http_only: Option<bool>,
    same_site: Option<Str>,
    /// `verify_secrets`: (secret, secret_env) per entry.
    verify: Option<Vec<(Option<Str>, Option<Str>)>>,
}

#[derive(Arbitrary, Debug)]
struct Discovery {
    envoy_admin: bool,
    cluster: Str,
    allowed_cidrs: Option<Vec<Str>>,
    denied_ports: Option<Vec<Num>>,
}

#[derive(Arbitrary, Debug)]
struct Active {
    cluster: Str,
    path: Option<Str>,
    interval: Option<Num>,
    timeout: Option<Num>,
    unhealthy: Option<Num>,
    healthy: Option<Num>,
}

#[derive(Arbitrary, Debug)]
struct Health {
    passive: Option<(Num, Num, Option<Num>)>,
    active: Option<Active>,
}

#[derive(Arbitrary, Debug)]
struct Doc {
    hosts: Vec<Host>,
    sources: Option<Vec<Source>>,
    sticky: Option<Sticky>,
    target: Option<(Str, Option<Str>, Option<Num>)>,
    vnodes: Option<Num>,
    health: Option<Health>,
    unknown: Option<(String, Num)>,
    discovery: Option<Discovery>,
}

const ADDRESSES: &[&str] = &[
    "10.0.0.1:8080",
    "10.0.0.2:8080",
    "127.0.0.1:8081",
    "[2001:db8::1]:443",
    "[::ffff:10.0.0.1]:8080",
    "10.0.0.1:0",
    "0.0.0.0:80",
    "224.0.0.1:80",
    "10.0.0",
    "backend:80",
    "[fe80::1%eth0]:80",
    "10.0.0.3:65535",
    "[::1]:1",
];
const NAMES: &[&str] =
    &["srv", "JSESSIONID", "__Host-srv", "__Secure-srv", "__host-x", "sess id", "", "x-user-id", "sid"];
const HEADERS: &[&str] = &[
    "x-gateway-destination-endpoint",
    "x-envoy-original-dst-host",
    "x-session-router-host",
    "X-User-Id",
    "cookie",
    "Host",
    "bad header",
    "",
    "authorization",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "127.0.0.1/32",
    "127.0.0.1",
    "fd00::/8",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.1/8",
    "10.0.0.0/33",
    "::ffff:10.0.0.0/104",
    "169.254.169.254/32",
    "",
    "10.0.0.0/8 ",
];
const MISC: &[&str] =
    &["/", "/healthz", "relative", "example.com", "sub", "Bearer ", "Lax", "None", "Strict", "lax"];

fn pick(s: &Str, good: &[&str]) -> Value {
    match s {
        Str::Good(i) => json!(good[usize::from(*i) % good.len()]),
        Str::Any(s) => json!(s),
    }
}

fn secret(s: &Str) -> Value {
    match s {
        Str::Good(i) => json!(
            ["demo-secret-change-me-0123456789abcdef", "short", "x".repeat(32).as_str()][usize::from(*i) % 3]
        ),
        Str::Any(s) => json!(s),
    }
}

fn document(d: &Doc) -> Value {
    let mut doc = Map::new();
    let hosts: Vec<Value> = d
        .hosts
        .iter()
        .take(24)
        .map(|h| {
            let mut o = Map::new();
            o.insert("address".into(), pick(&h.address, ADDRESSES));
            if let Some(id) = &h.id {
                o.insert("id".into(), pick(id, &["backend-a", "backend-b", " ", "a\tb"]));
            }
            if let Some(w) = &h.weight {
                o.insert("weight".into(), w.value());
            }
            if let Some(drain) = h.drain {
                o.insert("drain".into(), json!(drain));
            }
            Value::Object(o)
        })
        .collect();
    doc.insert("hosts".into(), Value::Array(hosts));
    if let Some(sources) = &d.sources {
        let s: Vec<Value> = sources
            .iter()
            .take(8)
            .map(|s| match s {
                Source::Cookie(n) => json!({"type": "cookie", "name": pick(n, NAMES)}),
                Source::Jwt { claim, header, prefix, leeway } => {
                    let mut o = Map::new();
                    if let Some(l) = leeway {
                        o.insert("leeway_seconds".into(), l.value());
                    }
                    o.insert("type".into(), json!("jwt"));
                    if let Some(c) = claim {
                        o.insert("claim".into(), pick(c, MISC));
                    }
                    if let Some(h) = header {
                        o.insert("header".into(), pick(h, HEADERS));
                    }
                    if let Some(p) = prefix {
                        o.insert("prefix".into(), pick(p, MISC));
                    }
                    Value::Object(o)
                }
                Source::Header(n) => json!({"type": "header", "name": pick(n, HEADERS)}),
                Source::Query(n) => json!({"type": "query", "name": pick(n, NAMES)}),
                Source::ClientIp => json!({"type": "source_ip"}),
                Source::Unknown(t) => json!({"type": t}),
            })
            .collect();
        doc.insert("sources".into(), Value::Array(s));
    }
    if let Some(s) = &d.sticky {
        let mut o = Map::new();
        o.insert("name".into(), pick(&s.name, NAMES));
        o.insert("ttl_seconds".into(), s.ttl.value());
        if let Some(i) = &s.idle {
            o.insert("idle_timeout_seconds".into(), i.value());
        }
        if let Some(x) = &s.secret {
            o.insert("secret".into(), secret(x));
        }
        if let Some(x) = &s.secret_env {
            o.insert("secret_env".into(), pick(x, &["SESSION_ROUTER_SECRET", "UNSET_VAR"]));
        }
        if let Some(x) = &s.path {
            o.insert("path".into(), pick(x, MISC));
        }
        if let Some(x) = &s.domain {
            o.insert("domain".into(), pick(x, MISC));
        }
        if let Some(x) = s.secure {
            o.insert("secure".into(), json!(x));
        }
        if let Some(x) = s.http_only {
            o.insert("http_only".into(), json!(x));
        }
        if let Some(x) = &s.same_site {
            o.insert("same_site".into(), pick(x, MISC));
        }
        if let Some(v) = &s.verify {
            let keys: Vec<Value> = v
                .iter()
                .take(6)
                .map(|(secret_v, env_v)| {
                    let mut k = Map::new();
                    if let Some(x) = secret_v {
                        k.insert("secret".into(), secret(x));
                    }
                    if let Some(x) = env_v {
                        k.insert("secret_env".into(), pick(x, &["SESSION_ROUTER_SECRET", "UNSET_VAR"]));
                    }
                    Value::Object(k)
                })
                .collect();
            o.insert("verify_secrets".into(), Value::Array(keys));
        }
        doc.insert("sticky_cookie".into(), Value::Object(o));
    }
    if let Some((header, encoding, fallbacks)) = &d.target {
        let mut o = Map::new();
        o.insert("header".into(), pick(header, HEADERS));
        if let Some(e) = encoding {
            o.insert("encoding".into(), pick(e, &["plain", "base64", "Plain"]));
        }
        if let Some(f) = fallbacks {
            o.insert("fallbacks".into(), f.value());
        }
        doc.insert("target".into(), Value::Object(o));
    }
    if let Some(v) = &d.vnodes {
        doc.insert("vnodes_per_weight".into(), v.value());
    }
    if let Some(h) = &d.health {
        let mut o = Map::new();
        if let Some((c, e, m)) = &h.passive {
            let mut p = Map::new();
            p.insert("consecutive_failures".into(), c.value());
            p.insert("ejection_seconds".into(), e.value());
            if let Some(m) = m {
                p.insert("max_ejection_seconds".into(), m.value());
            }
            o.insert("passive".into(), Value::Object(p));
        }
        if let Some(Active { cluster, path, interval, timeout, unhealthy, healthy }) = &h.active {
            let mut a = Map::new();
            a.insert("cluster".into(), pick(cluster, &["backends", ""]));
            if let Some(p) = path {
                a.insert("path".into(), pick(p, MISC));
            }
            for (k, v) in [
                ("interval_ms", interval),
                ("timeout_ms", timeout),
                ("unhealthy_threshold", unhealthy),
                ("healthy_threshold", healthy),
            ] {
                if let Some(v) = v {
                    a.insert(k.into(), v.value());
                }
            }
            o.insert("active".into(), Value::Object(a));
        }
        doc.insert("health".into(), Value::Object(o));
    }
    if let Some(disc) = &d.discovery {
        let mut o = Map::new();
        if disc.envoy_admin {
            o.insert("type".into(), json!("envoy_admin"));
            o.insert("target_cluster".into(), json!("backends"));
        } else {
            o.insert("type".into(), json!("json"));
            o.insert("path".into(), json!("/v1/health/service/web"));
            o.insert("format".into(), json!("consul"));
        }
        o.insert("cluster".into(), pick(&disc.cluster, &["consul", "envoy_admin", ""]));
        if let Some(c) = &disc.allowed_cidrs {
            o.insert(
                "allowed_cidrs".into(),
                Value::Array(c.iter().take(8).map(|c| pick(c, CIDRS)).collect()),
            );
        }
        if let Some(p) = &disc.denied_ports {
            o.insert("denied_ports".into(), Value::Array(p.iter().take(8).map(Num::value).collect()));
        }
        doc.insert("discovery".into(), Value::Object(o));
    }
    if let Some((k, v)) = &d.unknown {
        doc.insert(k.clone(), v.value());
    }
    Value::Object(doc)
}

fn env(var: &str) -> Option<String> {
    (var == "SESSION_ROUTER_SECRET").then(|| ENV_SECRET.to_owned())
}

fn check(json: &[u8]) {
    match Config::parse(json, env) {
        Ok(cfg) => check_config(&cfg),
        Err(e) => {
            // Known bug, tests/fuzz_regressions.rs `config_error_for_an_empty_key_names_a_field`:
            // an unknown field named "" is reported with an empty field path. Tolerated here
            // so the target keeps fuzzing past it.
            let known_empty_key = e.field.is_empty() && e.reason.starts_with("unknown field ``");
            assert!(
                (!e.field.is_empty() || known_empty_key) && !e.reason.is_empty(),
                "an error without a field or reason: {e:?} for {}",
                String::from_utf8_lossy(json)
            );
            let message = e.to_string();
            assert!(!message.contains(ENV_SECRET), "the error echoes the secret: {message}");
            // An inline secret (long enough to be unmistakable, and written once) is not echoed.
            if let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(json)
                && let Some(Value::String(secret)) = doc.get("sticky_cookie").and_then(|s| s.get("secret"))
                && secret.len() >= 12
                && String::from_utf8_lossy(json).matches(secret.as_str()).count() == 1
            {
                assert!(!message.contains(secret.as_str()), "the error echoes the secret: {message}");
            }
            // Nor is a verify-only secret.
            if let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(json)
                && let Some(Value::Array(keys)) =
                    doc.get("sticky_cookie").and_then(|s| s.get("verify_secrets"))
            {
                for key in keys {
                    if let Some(Value::String(secret)) = key.get("secret")
                        && secret.len() >= 12
                        && String::from_utf8_lossy(json).matches(secret.as_str()).count() == 1
                    {
                        assert!(
                            !message.contains(secret.as_str()),
                            "the error echoes a verify secret: {message}"
                        );
                    }
                }
            }
        }
    }
}

fn check_config(cfg: &Config) {
    let n = cfg.hosts.len();
    assert!(n >= 1);
    assert!(cfg.hosts.windows(2).all(|w| w[0].id < w[1].id), "hosts not sorted by unique id");
    assert!(cfg.vnodes_per_weight >= 1 && cfg.vnodes_per_weight <= MAX_VNODES_PER_WEIGHT);
    assert!(cfg.sticky.is_some() || !cfg.sources.is_empty());
    assert!(cfg.target.fallbacks <= MAX_FALLBACKS);
    assert!(!cfg.hosts.iter().all(|h| h.drain), "every host draining");
    assert_eq!(cfg.placement.host_count(), n);
    assert_eq!(cfg.placement.algorithm(), cfg.algorithm);
    if cfg.algorithm == session_router::placement::Algorithm::Ring {
        let points: u64 =
            cfg.hosts.iter().map(|h| u64::from(h.weight) * u64::from(cfg.vnodes_per_weight)).sum();
        assert_eq!(cfg.placement.point_count() as u64, points);
        assert!(points <= MAX_RING_POINTS);
    } else {
        let weight: u64 = cfg.hosts.iter().map(|h| u64::from(h.weight)).sum();
        assert!(weight <= session_router::rendezvous::MAX_REPLICAS);
    }
    for (i, h) in cfg.hosts.iter().enumerate() {
        assert!(h.weight >= 1 && h.weight <= MAX_WEIGHT);
        assert!(h.address.port() != 0);
        assert_eq!(cfg.host_by_id(&h.id), Some(i));
        assert_eq!(cfg.host_by_address(&h.address.to_string()), Some(i));
        let plain = h.address.to_string();
        match cfg.target.encoding {
            Encoding::Plain => assert_eq!(h.header_value, plain),
            Encoding::Base64 => assert_eq!(h.header_value, STANDARD.encode(&plain)),
        }
        match (&cfg.sticky, h.tag) {
            (Some(s), Some(tag)) => {
                assert_eq!(cfg.host_by_tag(tag), Some(i));
                // Under every key (rotation), the host is found by that key's tag.
                for (k, key) in s.keys.iter().enumerate() {
                    assert_eq!(cfg.host_by_tag_under(k, key.host_tag(h.id.as_bytes())), Some(i));
                }
            }
            (None, None) => {}
            _ => panic!("host tag present without a sticky cookie, or missing with one"),
        }
    }
    if let Some(s) = &cfg.sticky {
        assert!(s.ttl_seconds >= 1 && s.ttl_seconds <= MAX_TTL_SECONDS);
        assert!(s.idle_timeout_seconds.is_none_or(|i| i >= 1 && i <= s.ttl_seconds));
        assert!(s.path.starts_with('/'));
        assert!(!s.keys.is_empty() && s.keys.len() <= 1 + MAX_VERIFY_SECRETS);
    }
    if let Some(d) = &cfg.discovery {
        // ORIGINAL_DST connects wherever discovery says: an allow-list is required there.
        if cfg.target.header == "x-envoy-original-dst-host" {
            assert!(!d.admission.allowed.is_empty(), "original_dst discovery without an allow-list");
        }
        assert!(d.admission.denied_ports.iter().all(|&p| p != 0));
    }
    for s in &cfg.sources {
        if let session_router::config::Source::Jwt { leeway_seconds, .. } = s {
            assert!(*leeway_seconds <= MAX_JWT_LEEWAY_SECONDS);
        }
    }
    let _ = MIN_SECRET_BYTES;
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => check(raw),
        Input::Structured(u) => {
            let Ok(d) = Doc::arbitrary_take_rest(u) else { return };
            let json = serde_json::to_vec(&document(&d)).expect("a Value serializes");
            check(&json);
        }
    }
});
