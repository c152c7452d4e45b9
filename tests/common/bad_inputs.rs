//! Fixtures of the malformed-input suites (`tests/bad_*.rs`): one config, the ids of its key
//! sources, request and JWT builders, and `check`, which asserts every observable part of a
//! routing decision.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use session_router::config::Config;
use session_router::jwt::JwtError;
use session_router::murmur3::{hash64, murmur3_x64_128};
use session_router::router::{AllUp, Decision, Kind, Rejections, decide, target_value};
use session_router::sticky::{self, Rejection};

pub use super::Req;

// ---- the config ---------------------------------------------------------------------------------

pub const NOW: u64 = 1_700_000_000;
pub const TTL: u64 = 3600;
pub const POLICY: sticky::Policy = sticky::Policy { ttl_seconds: TTL, idle_timeout_seconds: None };
pub const IDLE: u64 = 600;
pub const SECRET: &str = "bad-inputs-secret-0123456789abcdef0123";
pub const OTHER_SECRET: &str = "another-secret-entirely-0123456789abcdef";
pub const RANDOM_ID: [u8; 16] = [0x5a; 16];
pub const HOSTS: [&str; 3] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];
pub const HOSTS4: [&str; 4] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"];

/// Source indices in `SOURCES` order.
pub const COOKIE: usize = 0;
pub const JWT: usize = 1;
pub const HEADER: usize = 2;
pub const QUERY: usize = 3;
pub const IP: usize = 4;
// `leeway_seconds: 0`: the J12 rows check expiry to the second (the default 60 s leeway is
// checked in tests/trust.rs).
pub const SOURCES: &str = r#"[{"type":"cookie","name":"JSESSIONID"},{"type":"jwt","claim":"sub","leeway_seconds":0},
    {"type":"header","name":"x-user-id"},{"type":"query","name":"sid"},{"type":"source_ip"}]"#;

pub fn config_json(hosts: &[&str], secret: &str, sticky_extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|a| format!(r#"{{"address":"{a}"}}"#)).collect();
    format!(
        r#"{{"hosts":[{}],"sources":{SOURCES},
            "sticky_cookie":{{"name":"srv","ttl_seconds":{TTL},"secret":"{secret}"{sticky_extra}}},
            "target":{{"header":"x-envoy-original-dst-host"}},
            "placement":{{"algorithm":"ring"}}}}"#,
        hosts.join(",")
    )
}

pub fn parse(json: &str) -> Config {
    Config::parse(json.as_bytes(), |_| None).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

pub fn base() -> Config {
    parse(&config_json(&HOSTS, SECRET, ""))
}

pub fn idle_config() -> Config {
    parse(&config_json(&HOSTS, SECRET, &format!(r#","idle_timeout_seconds":{IDLE}"#)))
}

/// An empty request (no headers, no downstream address).
pub fn req() -> Req {
    Req::default()
}

pub fn cookie(value: impl AsRef<[u8]>) -> Req {
    req().with("cookie", value)
}

pub fn path(p: impl AsRef<[u8]>) -> Req {
    req().with(":path", p)
}

pub fn user(v: impl AsRef<[u8]>) -> Req {
    req().with("x-user-id", v)
}

// ---- JWT builders -----------------------------------------------------------------------------

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub const JWT_HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

pub fn jwt_parts(header: &str, payload: &[u8], signature: &str) -> String {
    format!("{}.{}.{signature}", b64u(header.as_bytes()), b64u(payload))
}

pub fn jwt(payload: &str) -> String {
    jwt_parts(JWT_HEADER, payload.as_bytes(), "sig")
}

pub trait WithAuth {
    fn auth(self, value: impl AsRef<[u8]>) -> Req;
    fn bearer(self, payload: &str) -> Req;
}

impl WithAuth for Req {
    fn auth(self, value: impl AsRef<[u8]>) -> Req {
        self.with("authorization", value)
    }
    fn bearer(self, payload: &str) -> Req {
        self.auth(format!("Bearer {}", jwt(payload)))
    }
}

pub fn auth(value: impl AsRef<[u8]>) -> Req {
    req().auth(value)
}

pub fn bearer(payload: &str) -> Req {
    req().bearer(payload)
}

/// Adds `x-user-id: fb`, the key used when the JWT is rejected.
pub fn fb(r: Req) -> Req {
    r.with("x-user-id", "fb")
}

pub const ALICE: &str = r#"{"sub":"alice"}"#;

/// Routed by the token's `sub`.
pub fn alice() -> Want {
    hashed(JWT, "alice")
}

/// The token was not used: routed by `x-user-id: fb`.
pub fn fell() -> Want {
    hashed(HEADER, "fb")
}

// ---- expectations -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Want {
    pub kind: Kind,
    /// The session key whose murmur3 is the decision's point (`None` for a new session).
    pub key: Option<Vec<u8>>,
    pub rejected: Rejections,
}

pub fn hashed(source: usize, key: impl AsRef<[u8]>) -> Want {
    Want { kind: Kind::Hashed(source), key: Some(key.as_ref().to_vec()), rejected: Rejections::default() }
}

pub fn new_session() -> Want {
    Want { kind: Kind::New, key: None, rejected: Rejections::default() }
}

impl Want {
    pub fn cookie(mut self, why: Rejection) -> Want {
        self.rejected.cookie = Some(why);
        self
    }
    pub fn jwt(mut self, why: JwtError) -> Want {
        self.rejected.jwt = Some(why);
        self
    }
    pub fn other(mut self, n: u32) -> Want {
        self.rejected.other = n;
        self
    }
}

pub fn run(cfg: &Config, r: &Req, now: u64) -> Decision {
    decide(cfg, r, &AllUp, now, &mut || RANDOM_ID)
}

/// The sticky cookie value in a decision's `Set-Cookie` (between `srv=` and `;`).
pub fn issued(d: &Decision) -> String {
    let line = d.set_cookie.as_deref().expect("a Set-Cookie");
    let value = line.strip_prefix("srv=").unwrap_or_else(|| panic!("{line:?} is not the srv cookie"));
    value.split(';').next().unwrap().to_owned()
}

/// Decides `r` at `NOW` and asserts every observable part of the outcome against `want`.
pub fn check(cfg: &Config, id: &str, r: &Req, want: &Want) -> Decision {
    let d = run(cfg, r, NOW);
    assert_eq!(d.kind, want.kind, "{id}: kind");
    assert_eq!(d.rejected, want.rejected, "{id}: rejections");
    assert!(d.host < cfg.hosts.len(), "{id}: host index {} out of range", d.host);
    match (&want.key, want.kind) {
        (Some(key), _) => {
            let expected = murmur3_x64_128(key, 0).0;
            assert_eq!(d.point, expected, "{id}: the hashed key is not {:?}", String::from_utf8_lossy(key));
        }
        (None, Kind::New) => assert_eq!(d.point, hash64(&RANDOM_ID), "{id}: a new session's point"),
        _ => {}
    }
    if matches!(d.kind, Kind::Hashed(_) | Kind::New) {
        assert_eq!(d.host, cfg.placement.owner(d.point), "{id}: not the ring owner of the point");
        // A fresh cookie is issued, and it pins the session back to the same host.
        let value = issued(&d);
        let back = run(cfg, &cookie(format!("srv={value}")), NOW + 1);
        assert_eq!((back.kind, back.host), (Kind::Pinned, d.host), "{id}: the issued cookie does not pin");
    }
    // The target header only ever names a configured host.
    let target = target_value(cfg, &d, &AllUp);
    assert!(cfg.hosts.iter().any(|h| h.header_value == target), "{id}: target {target:?} not configured");
    d
}

pub fn check_all(cfg: &Config, cases: &[(&str, Req, Want)]) {
    for (id, r, want) in cases {
        check(cfg, id, r, want);
    }
}
