//! Filter configuration: raw structs that mirror the JSON exactly (unknown fields refused),
//! validated and compiled into the runtime [`Config`] with its ring, or rejected with an error
//! that names the field, the value and why.

use std::fmt;
use std::net::SocketAddr;

mod compile;
mod health;
mod raw;
mod read;
mod sticky_cookie;

use crate::order::sort_by;
pub use raw::HostSpec;

use crate::bounded::BoundedLoad;
use crate::outcome::{EjectOn, Passive, ProbeThresholds};
use crate::placement::{Algorithm, Placement};
use crate::rendezvous::Rendezvous;
use crate::ring::Ring;
use crate::sticky::{CookieKey, HostTag};

/// Ring points per unit of weight: 256 spreads 10 hosts within ~9% of the mean and keeps a
/// 1000-host ring at 2 MiB (`cargo run --release --example spread` prints the trade-off).
pub const DEFAULT_VNODES_PER_WEIGHT: u32 = 256;
/// Placement when the config names none (and sets no `vnodes_per_weight`): README "Placement".
pub const DEFAULT_ALGORITHM: Algorithm = Algorithm::Rendezvous;
/// Upper bounds that keep the ring's build time and memory bounded whatever the config says.
pub const MAX_VNODES_PER_WEIGHT: u32 = 4096;
pub const MAX_WEIGHT: u32 = 1000;
pub const MAX_RING_POINTS: u64 = 4_000_000;
pub const MAX_CONFIG_HOSTS: usize = 10_000;
/// HMAC-SHA256 keys shorter than the hash output weaken it (RFC 2104 §3).
pub const MIN_SECRET_BYTES: usize = 32;
/// Verify-only keys accepted at once (a rotation needs one).
pub const MAX_VERIFY_SECRETS: usize = 4;
/// Browsers cap `Max-Age` at 400 days (RFC 6265bis); a longer lifetime would be silently cut.
pub const MAX_TTL_SECONDS: u64 = 400 * 24 * 3600;
pub const MAX_FALLBACKS: u32 = 16;
/// Largest session key taken from any source; longer values are bad input.
pub const MAX_KEY_BYTES: usize = 4096;
/// `bounded_load.factor` range: above 1 (a bound of exactly the mean cannot be met by every host at
/// once) and at most 10 (beyond that the bound never binds).
pub const MAX_BALANCE_FACTOR: f64 = 10.0;
/// The factor is kept in thousandths: 1.001 is the smallest bound above the mean.
pub const MIN_BALANCE_FACTOR: f64 = 1.001;
/// JWT `exp` leeway: Envoy's `jwt_authn` default, and the most accepted.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 60;
pub const MAX_JWT_LEEWAY_SECONDS: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `hosts[2].address`, `sticky_cookie.secret`, or `config` for the whole document.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `ip:port`, as ORIGINAL_DST and the override_host policy read it.
    Plain,
    /// Standard base64 of `ip:port`, as `envoy.http.stateful_session.header` reads it.
    Base64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Cookie {
        name: String,
    },
    /// `leeway_seconds`: a token is used until `exp + leeway` (clock skew between issuer and proxy).
    Jwt {
        header: String,
        prefix: String,
        claim: String,
        leeway_seconds: u64,
    },
    Header {
        name: String,
    },
    Query {
        name: String,
    },
    SourceIp,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Cookie { .. } => "cookie",
            Source::Jwt { .. } => "jwt",
            Source::Header { .. } => "header",
            Source::Query { .. } => "query",
            Source::SourceIp => "source_ip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Host {
    /// Stable identity hashed onto the ring: the config `id`, else the address as written.
    pub id: String,
    pub address: SocketAddr,
    pub weight: u32,
    /// `target.header` value naming this host alone, encoded once at configure time.
    pub header_value: String,
    /// Opaque tag naming this host inside sticky cookies (keyed by the cookie secret).
    pub tag: Option<HostTag>,
    /// Keeps serving its pinned sessions, takes no new ones.
    pub drain: bool,
}

#[derive(Debug, Clone)]
pub struct Sticky {
    pub name: String,
    pub ttl_seconds: u64,
    pub idle_timeout_seconds: Option<u64>,
    /// Signs new cookies and verifies.
    pub key: CookieKey,
    /// Every key that verifies: `key` first, then the verify-only keys (`verify_secrets`, for
    /// rotation), whose cookies are re-signed with `key`.
    pub keys: Vec<CookieKey>,
    pub path: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    /// This worker's recently verified cookie values (starts empty with every configuration).
    pub verified: crate::sticky::VerifiedCookies,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub header: String,
    pub encoding: Encoding,
    pub fallbacks: u32,
}

#[derive(Debug, Clone)]
pub struct ActiveHealth {
    pub cluster: String,
    pub path: String,
    /// `:authority` of probes; the probed host's address when unset.
    pub authority: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub thresholds: ProbeThresholds,
    /// The header naming the probed host, always as plain `ip:port`: `health.active.header`,
    /// else `target.header` when its encoding is plain, else `x-envoy-original-dst-host` (a
    /// stateful-session target is base64, which no ORIGINAL_DST probe cluster reads).
    pub header: String,
}

impl ActiveHealth {
    /// The header a probe of `host` carries: (name, plain `ip:port`).
    pub fn probe_header(&self, host: &Host) -> (&str, String) {
        (self.header.as_str(), host.address.to_string())
    }
}

#[derive(Debug, Clone, Default)]
pub struct HealthConfig {
    pub passive: Option<Passive>,
    pub active: Option<ActiveHealth>,
    /// What counts as a host failure for `passive` (`health.passive.eject_on`).
    pub eject_on: EjectOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFormat {
    /// Consul's `/v1/health/service/<name>` answer.
    Consul,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySource {
    /// Envoy's own `/clusters?format=json`, read through `cluster` (which reaches the admin
    /// listener), for the endpoints of `target_cluster`.
    EnvoyAdmin { target_cluster: String },
    /// A registry's HTTP API.
    Registry { path: String, format: RegistryFormat, authority: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub cluster: String,
    pub source: DiscoverySource,
    pub interval_ms: u64,
    /// Which discovered addresses may join (`allowed_cidrs`, `denied_ports`).
    pub admission: crate::admission::Admission,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Sorted by id, so a host's index (its placement index) does not depend on config order.
    pub hosts: Vec<Host>,
    /// Where sessions go: the ring or the rendezvous table (`placement.algorithm`).
    pub placement: Placement,
    pub algorithm: Algorithm,
    pub sources: Vec<Source>,
    pub sticky: Option<Sticky>,
    pub target: Target,
    pub vnodes_per_weight: u32,
    pub health: HealthConfig,
    pub discovery: Option<Discovery>,
    /// Steers new bindings away from hosts over `⌈factor × mean⌉` requests in flight.
    pub bounded_load: Option<BoundedLoad>,
    /// `(tag, host index)` sorted by tag, for pinned lookups in O(log n).
    tags: Vec<(HostTag, usize)>,
    /// The same under each verify-only key, in `sticky.keys[1..]` order.
    verify_tags: Vec<Vec<(HostTag, usize)>>,
    /// `(address, host index)` sorted by address, to attribute a response to its host.
    addresses: Vec<(SocketAddr, usize)>,
}

impl Config {
    /// The host a sticky cookie's tag names, if it is still configured.
    pub fn host_by_tag(&self, tag: HostTag) -> Option<usize> {
        let i = self.tags.binary_search_by(|(t, _)| t.cmp(&tag)).ok()?;
        self.tags.get(i).map(|&(_, host)| host)
    }

    /// The host a sticky cookie's tag names under the key that verified it (0: the signing key,
    /// `k`: `sticky.keys[k]`).
    pub fn host_by_tag_under(&self, key: usize, tag: HostTag) -> Option<usize> {
        let table = match key {
            0 => &self.tags,
            k => self.verify_tags.get(k - 1)?,
        };
        let i = table.binary_search_by(|(t, _)| t.cmp(&tag)).ok()?;
        table.get(i).map(|&(_, host)| host)
    }

    /// The host with this id (hosts are sorted by id).
    pub fn host_by_id(&self, id: &str) -> Option<usize> {
        self.hosts.binary_search_by(|h| h.id.as_str().cmp(id)).ok()
    }

    /// The host at this `ip:port`, e.g. Envoy's `upstream.address`.
    pub fn host_by_address(&self, address: &str) -> Option<usize> {
        let address: SocketAddr = address.parse().ok()?;
        let i = self.addresses.binary_search_by(|(a, _)| a.cmp(&address)).ok()?;
        self.addresses.get(i).map(|&(_, host)| host)
    }

    /// Parses, validates and compiles a configuration. `env` reads the proxy's environment
    /// (for `sticky_cookie.secret_env`).
    pub fn parse(json: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(err("config", "is empty; a JSON object with `hosts` and `target` is required"));
        }
        let doc = crate::json::parse(json).map_err(|e| err("config", format!("is not valid JSON: {e}")))?;
        let raw = raw::read_config(&doc).map_err(|mut e| {
            // A value misplaced under a secret field may be a secret: never echo it.
            // (A byte-window search: `str::contains` with a string pattern links the two-way
            // searcher into the module, 1.5 KiB for this one line.)
            if e.field.as_bytes().windows(6).any(|w| w == b"secret")
                && let (Some(a), Some(b)) = (e.reason.find('"'), e.reason.rfind('"'))
                && b > a
            {
                e.reason.replace_range(a..=b, "(value not shown)");
            }
            e
        })?;
        drop(doc);
        compile::compile(raw, &env)
    }
}

impl Config {
    /// The same settings over another set of hosts (a discovered membership). Hosts keep their
    /// ring points and cookie tags as long as they keep their ids.
    pub fn with_hosts(&self, hosts: Vec<HostSpec>) -> Result<Config, ConfigError> {
        let mut config = self.settings();
        config.set_hosts(hosts)?;
        Ok(config)
    }

    /// These settings with no hosts: what [`Config::with_hosts`] starts from. (Not a clone: the
    /// hosts, their tables and the placement would be copied only to be replaced.)
    fn settings(&self) -> Config {
        Config {
            hosts: Vec::new(),
            placement: Placement::empty(),
            algorithm: self.algorithm,
            sources: self.sources.clone(),
            sticky: self.sticky.clone(),
            target: self.target.clone(),
            vnodes_per_weight: self.vnodes_per_weight,
            health: self.health.clone(),
            discovery: self.discovery.clone(),
            bounded_load: self.bounded_load,
            tags: Vec::new(),
            verify_tags: Vec::new(),
            addresses: Vec::new(),
        }
    }

    /// The same settings over another set of hosts, with the placement computed from
    /// `previous` (the config in use) when it uses the same algorithm: a membership change then
    /// costs what it moves. The result is the same as [`Config::with_hosts`].
    pub fn with_hosts_after(&self, hosts: Vec<HostSpec>, previous: &Config) -> Result<Config, ConfigError> {
        let mut config = self.settings();
        if previous.algorithm == self.algorithm {
            config.placement = previous.placement.clone();
        }
        config.set_hosts(hosts)?;
        Ok(config)
    }

    /// Whether [`Config::with_hosts`] would accept `hosts`, without building the placement.
    pub fn check_hosts(&self, hosts: Vec<HostSpec>) -> Result<(), ConfigError> {
        self.prepare_hosts(hosts).map(|_| ())
    }

    fn prepare_hosts(&self, specs: Vec<HostSpec>) -> Result<Vec<Host>, ConfigError> {
        let mut hosts = compile::compile_hosts(specs, &self.target, self.sticky.as_ref())?;
        sort_by(&mut hosts, &|a, b| a.id.cmp(&b.id));
        let vnodes = self.vnodes_per_weight;
        let total: u64 = hosts.iter().map(|h| u64::from(h.weight) * u64::from(vnodes)).sum();
        if self.algorithm == Algorithm::Ring && total > MAX_RING_POINTS {
            return Err(err(
                "hosts",
                format!(
                    "total weight × vnodes_per_weight = {total} ring points, more than {MAX_RING_POINTS}"
                ),
            ));
        }
        let weight: u64 = hosts.iter().map(|h| u64::from(h.weight)).sum();
        if self.algorithm == Algorithm::Rendezvous && weight > crate::rendezvous::MAX_REPLICAS {
            return Err(err("hosts", crate::rendezvous::RendezvousError::TooMuchWeight(weight).to_string()));
        }
        if hosts.iter().all(|h| h.drain) {
            return Err(err("hosts", "every host is draining, so no new session could start"));
        }
        Ok(hosts)
    }

    fn set_hosts(&mut self, specs: Vec<HostSpec>) -> Result<(), ConfigError> {
        let hosts = self.prepare_hosts(specs)?;
        let vnodes = self.vnodes_per_weight;
        self.placement = match self.algorithm {
            // Bounded above: weight ≤ MAX_WEIGHT and vnodes ≤ MAX_VNODES_PER_WEIGHT, so this cannot overflow.
            Algorithm::Ring => Placement::Ring(
                Ring::build(hosts.iter().map(|h| (h.id.as_bytes(), h.weight * vnodes)))
                    .map_err(|e| err("hosts", e.to_string()))?,
            ),
            // From the previous table when there is one: a membership change then costs what it
            // moves, and gives exactly the table a full build would.
            Algorithm::Rendezvous => {
                let spec = hosts.iter().map(|h| (h.id.as_bytes(), h.weight));
                let table = match &self.placement {
                    Placement::Rendezvous(old) => old.rebuild(spec).map(|(t, _)| t),
                    Placement::Ring(_) => Rendezvous::build(spec),
                };
                Placement::Rendezvous(table.map_err(|e| err("hosts", e.to_string()))?)
            }
        };
        // Loops rather than iterator chains: each chain links its own adapters into the module.
        let mut tags = Vec::with_capacity(hosts.len());
        let mut addresses = Vec::with_capacity(hosts.len());
        for (i, h) in hosts.iter().enumerate() {
            if let Some(tag) = h.tag {
                tags.push((tag, i));
            }
            addresses.push((h.address, i));
        }
        sort_by(&mut tags, &Ord::cmp);
        sort_by(&mut addresses, &Ord::cmp);
        let mut verify_tags = Vec::new();
        for key in self.sticky.iter().flat_map(|s| s.keys.iter().skip(1)) {
            let mut t = Vec::with_capacity(hosts.len());
            for (i, h) in hosts.iter().enumerate() {
                t.push((key.host_tag(h.id.as_bytes()), i));
            }
            sort_by(&mut t, &Ord::cmp);
            verify_tags.push(t);
        }
        self.tags = tags;
        self.verify_tags = verify_tags;
        self.addresses = addresses;
        self.hosts = hosts;
        Ok(())
    }
}
