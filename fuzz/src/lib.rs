//! Helpers shared by the fuzz targets.
//!
//! Every target reads its input in one of two ways, so the committed seeds stay readable:
//!
//! * **raw** (the input does not start with a NUL byte): the bytes as the parser would see them
//!   on the wire, in a small line-based format documented at the top of each target (a cookie
//!   header, a JWT, a path, a config document, a header block);
//! * **structured** (the input starts with `\0`): the rest is decoded with `arbitrary` into a
//!   generator that builds *valid* input plus mutations, so the checks can compare the parser
//!   against what it must answer, not only look for panics.

use std::sync::OnceLock;

use session_router::config::Config;

/// The clock the targets run at (Unix seconds), unless the input says otherwise.
pub const NOW: u64 = 1_700_000_000;

/// The demo secret of envoy/*.yaml: the committed sticky-cookie seeds are signed with it.
pub const SECRET: &str = "demo-secret-change-me-0123456789abcdef";

/// What `secret_env` reads in the config target.
pub const ENV_SECRET: &str = "fuzz-env-secret-0123456789abcdef0123456789";

pub enum Input<'a> {
    Raw(&'a [u8]),
    Structured(arbitrary::Unstructured<'a>),
}

pub fn input(data: &[u8]) -> Input<'_> {
    match data.split_first() {
        Some((0, rest)) => Input::Structured(arbitrary::Unstructured::new(rest)),
        _ => Input::Raw(data),
    }
}

/// `raw` on a raw input; `structured` on what a structured input builds (nothing when it builds
/// no `B`).
pub fn dispatch<'a, B: arbitrary::Arbitrary<'a>>(
    data: &'a [u8],
    raw: impl FnOnce(&'a [u8]),
    structured: impl FnOnce(B),
) {
    match input(data) {
        Input::Raw(r) => raw(r),
        Input::Structured(u) => {
            if let Ok(b) = B::arbitrary_take_rest(u) {
                structured(b);
            }
        }
    }
}

/// `line(n)` of a raw input, if present.
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').collect()
}

pub fn parse_u64(line: Option<&&[u8]>) -> Option<u64> {
    std::str::from_utf8(line?).ok()?.trim().parse().ok()
}

/// A request as the filter hands it to the router: the adapter that ships.
pub use session_router::request::{HeaderPairs as Req, SourceAddress};

/// Deterministic "random" session ids for `router::decide`.
pub fn ids(seeds: &[[u8; 16]]) -> impl FnMut() -> [u8; 16] + '_ {
    let mut n = 0usize;
    move || {
        n += 1;
        let mut id = seeds.get(n % seeds.len().max(1)).copied().unwrap_or([0x5a; 16]);
        id[15] ^= n as u8;
        id
    }
}

/// Percent-encodes `bytes` for a query string, choosing per byte (from `choices`) between the
/// literal byte (when that is unambiguous), `+` for a space, and `%XX` in either case.
pub fn pct_encode(bytes: &[u8], choices: &[u8]) -> String {
    let mut out = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let c = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let literal_ok = b.is_ascii_alphanumeric() || b"-._~!$'()*,;:@/".contains(&b);
        match (c % 3, b) {
            (0, _) if literal_ok => out.push(b as char),
            (1, b' ') => out.push('+'),
            (2, _) => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The router configurations the `router` target runs against: the shipped example and
/// variants that switch on every feature (idle timeout, drain, IPv6, base64, many fallbacks,
/// no sticky cookie, no sources).
pub const ROUTER_CONFIGS: [&str; 6] = [
    // 0: envoy/override_host.yaml
    r#"{"hosts":[{"address":"127.0.0.1:8081","weight":1},{"address":"127.0.0.1:8082","weight":1},
        {"address":"127.0.0.1:8083","weight":1}],
       "sources":[{"type":"cookie","name":"JSESSIONID"},{"type":"jwt","claim":"sub"},
        {"type":"header","name":"x-user-id"},{"type":"query","name":"sid"},{"type":"source_ip"}],
       "sticky_cookie":{"name":"srv","ttl_seconds":3600,"secret":"demo-secret-change-me-0123456789abcdef","secure":false},
       "target":{"header":"x-gateway-destination-endpoint","encoding":"plain","fallbacks":2},
       "health":{"passive":{"consecutive_failures":3,"ejection_seconds":10}}}"#,
    // 1: envoy/original_dst.yaml with an idle timeout, ids, weights, a draining host, IPv6
    r#"{"hosts":[{"address":"10.0.0.1:80","id":"backend-a","weight":3},{"address":"10.0.0.2:80","id":"backend-b"},
        {"address":"[2001:db8::1]:8080","id":"backend-c","weight":2},{"address":"10.0.0.4:80","id":"backend-d","drain":true},
        {"address":"10.0.0.5:80","id":"backend-e"}],
       "sources":[{"type":"jwt","claim":"tenant","header":"x-token","prefix":"JWT "},{"type":"query","name":"s id"},
        {"type":"cookie","name":"__Host-sess"}],
       "sticky_cookie":{"name":"__Host-srv","ttl_seconds":86400,"idle_timeout_seconds":600,
        "secret":"demo-secret-change-me-0123456789abcdef"},
       "target":{"header":"x-envoy-original-dst-host"},"vnodes_per_weight":64}"#,
    // 2: envoy/stateful_session.yaml without a sticky cookie
    r#"{"hosts":[{"address":"127.0.0.1:8081"},{"address":"127.0.0.1:8082"},{"address":"127.0.0.1:8083"}],
       "sources":[{"type":"header","name":"x-user-id"},{"type":"source_ip"}],
       "target":{"header":"x-session-router-host","encoding":"base64"}}"#,
    // 3: a sticky cookie and nothing else, one host
    r#"{"hosts":[{"address":"192.168.1.1:443"}],
       "sticky_cookie":{"name":"srv","ttl_seconds":1,"secret":"demo-secret-change-me-0123456789abcdef"},
       "target":{"header":"x-gateway-destination-endpoint","fallbacks":16}}"#,
    // 4: 20 hosts, 16 fallbacks, few vnodes
    r#"{"hosts":[{"address":"10.1.0.1:80"},{"address":"10.1.0.2:80"},{"address":"10.1.0.3:80"},{"address":"10.1.0.4:80"},
        {"address":"10.1.0.5:80"},{"address":"10.1.0.6:80"},{"address":"10.1.0.7:80"},{"address":"10.1.0.8:80"},
        {"address":"10.1.0.9:80"},{"address":"10.1.0.10:80"},{"address":"10.1.0.11:80","drain":true},
        {"address":"10.1.0.12:80"},{"address":"10.1.0.13:80"},{"address":"10.1.0.14:80"},{"address":"10.1.0.15:80"},
        {"address":"10.1.0.16:80"},{"address":"10.1.0.17:80"},{"address":"10.1.0.18:80"},{"address":"10.1.0.19:80"},
        {"address":"10.1.0.20:80","weight":7}],
       "sources":[{"type":"header","name":"x-user-id"},{"type":"cookie","name":"JSESSIONID"}],
       "sticky_cookie":{"name":"srv","ttl_seconds":34560000,"idle_timeout_seconds":4,
        "secret":"demo-secret-change-me-0123456789abcdef"},
       "target":{"header":"x-gateway-destination-endpoint","fallbacks":16},"vnodes_per_weight":4}"#,
    // 5: the source_ip source alone (IPv6 and IPv4-mapped client addresses)
    r#"{"hosts":[{"address":"[::1]:80"},{"address":"127.0.0.2:80"}],"sources":[{"type":"source_ip"}],
       "target":{"header":"x-gateway-destination-endpoint","fallbacks":1}}"#,
];

pub fn router_config(i: usize) -> &'static Config {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        ROUTER_CONFIGS
            .iter()
            .map(|json| match Config::parse(json.as_bytes(), |_| None) {
                Ok(c) => c,
                Err(e) => panic!("fuzz router config does not parse: {e}"),
            })
            .collect()
    });
    &all[i % all.len()]
}

/// A config of `n` hosts with ids `h0`..`h{n-1}` (for the health table target).
pub fn hosts_config(n: usize) -> &'static Config {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        (1..=MAX_HEALTH_HOSTS)
            .map(|n| {
                let hosts: Vec<String> = (0..n)
                    .map(|i| format!(r#"{{"address":"10.0.{}.{}:80","id":"h{i}"}}"#, i / 200, i % 200 + 1))
                    .collect();
                let json = format!(
                    r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x-user-id"}}],
                        "target":{{"header":"x-gateway-destination-endpoint"}},"vnodes_per_weight":1}}"#,
                    hosts.join(",")
                );
                match Config::parse(json.as_bytes(), |_| None) {
                    Ok(c) => c,
                    Err(e) => panic!("fuzz health config does not parse: {e}"),
                }
            })
            .collect()
    });
    &all[(n.clamp(1, MAX_HEALTH_HOSTS)) - 1]
}

pub const MAX_HEALTH_HOSTS: usize = 12;
