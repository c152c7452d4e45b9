//! Membership from a discovery source: Envoy's own view of a cluster (`/clusters?format=json`)
//! or a Consul-style registry, parsed into host specs; and the membership record published to
//! every worker through shared data, with a generation number.
//!
//! Discovery is a trust boundary: whoever can register an instance (or get an endpoint into
//! `target_cluster`) chooses addresses Envoy will connect to with users' requests. Every entry
//! passes [`Admission`] (allow-list, loopback / link-local / metadata refusal, denied ports);
//! an entry that fails it, or is malformed, or claims someone else's id, is skipped and
//! reported ([`Skipped`]) — never fatal to the rest of the answer, never renamed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::Names;
use crate::json::Value;

pub use crate::admission::{
    Admission, Cidr, DEFAULT_DENIED_PORTS, MAX_ADMISSION_ENTRIES, SkipReason, Skipped, canonical,
};
use crate::config::{HostSpec, MAX_CONFIG_HOSTS, MAX_WEIGHT};

/// Answers larger than this are not parsed (a registry gone wrong must not eat the VM's memory).
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// At most this many distinct skipped entries are remembered for "log once" (bounded memory).
const MAX_REMEMBERED_SKIPS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError(pub String);

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(why: impl Into<String>) -> Result<T, DiscoveryError> {
    Err(DiscoveryError(why.into()))
}

/// A discovered name for the log: escaped, then cut to at most 64 bytes, so a line stays short
/// whatever the registry wrote (escaping alone can grow a name tenfold).
fn quoted(name: &str) -> String {
    const MAX: usize = 64;
    let mut escaped = String::new();
    for c in name.chars().take(MAX) {
        for e in c.escape_debug() {
            escaped.push(e);
        }
    }
    let mut cut = escaped.len().min(MAX);
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    let more = if cut < escaped.len() || name.chars().nth(MAX).is_some() { "…" } else { "" };
    format!("\"{}{more}\"", escaped.get(..cut).unwrap_or_default())
}

/// A name usable as a host id: the same rules as a configured `hosts[i].id`.
fn good_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
}

/// What a poll yielded: the admitted hosts, and every entry left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub hosts: Vec<HostSpec>,
    pub skipped: Vec<Skipped>,
}

/// A discovered endpoint before ids are assigned.
struct Endpoint {
    address: SocketAddr,
    name: Option<String>,
    weight: u32,
    drain: bool,
}

fn weight(v: Option<&Value>) -> u32 {
    v.and_then(Value::as_u64).map_or(1, |w| w.clamp(1, u64::from(MAX_WEIGHT)) as u32)
}

/// Collects endpoints, checking each against the admission policy as it comes.
struct Collector<'a> {
    admission: &'a Admission,
    endpoints: Vec<Endpoint>,
    skipped: Vec<Skipped>,
}

impl Collector<'_> {
    fn skip(&mut self, reason: SkipReason, entry: String) {
        self.skipped.push(Skipped { reason, entry });
    }

    /// `position` names the entry when it has no usable address.
    fn add(
        &mut self,
        position: usize,
        address: Option<SocketAddr>,
        name: Option<&str>,
        weight: u32,
        drain: bool,
    ) {
        let name = name.filter(|n| !n.is_empty());
        let describe = |what: &str| match name {
            Some(n) => format!("{what} ({})", quoted(n)),
            None => what.to_owned(),
        };
        let Some(address) = address else {
            return self.skip(SkipReason::BadEntry, describe(&format!("entry {position}")));
        };
        let address = match self.admission.check(address) {
            Ok(a) => a,
            Err(reason) => return self.skip(reason, describe(&canonical(address).to_string())),
        };
        if name.is_some_and(|n| !good_name(n)) {
            return self.skip(SkipReason::BadEntry, describe(&address.to_string()));
        }
        self.endpoints.push(Endpoint { address, name: name.map(str::to_owned), weight, drain });
    }
}

/// Endpoints of `target_cluster` in Envoy's `/clusters?format=json`, with the default
/// [`Admission`] (see [`read_envoy_clusters`]).
pub fn parse_envoy_clusters(
    body: &[u8],
    target_cluster: &str,
    seeds: &[HostSpec],
) -> Result<Vec<HostSpec>, DiscoveryError> {
    read_envoy_clusters(body, target_cluster, seeds, &Admission::default()).map(|a| a.hosts)
}

/// Endpoints of `target_cluster` in Envoy's `/clusters?format=json`. Hosts Envoy considers
/// unhealthy (EDS status, failed active check, outlier ejection) are left out; draining ones are
/// kept as draining (they keep their pinned sessions).
pub fn read_envoy_clusters(
    body: &[u8],
    target_cluster: &str,
    seeds: &[HostSpec],
    admission: &Admission,
) -> Result<Answer, DiscoveryError> {
    let doc: Value = crate::json::parse(body).map_err(|e| DiscoveryError(format!("not JSON: {e}")))?;
    let Some(clusters) = doc.get("cluster_statuses").and_then(Value::as_array) else {
        return fail("no cluster_statuses array");
    };
    let Some(cluster) =
        clusters.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(target_cluster))
    else {
        return fail(format!("cluster {target_cluster:?} not found"));
    };
    let hosts = cluster.get("host_statuses").and_then(Value::as_array).unwrap_or_default();
    let mut c = Collector { admission, endpoints: Vec::new(), skipped: Vec::new() };
    for (i, h) in hosts.iter().enumerate() {
        let health = h.get("health_status");
        let flag = |name: &str| health.and_then(|s| s.get(name)).and_then(Value::as_bool).unwrap_or(false);
        let eds =
            health.and_then(|s| s.get("eds_health_status")).and_then(Value::as_str).unwrap_or("HEALTHY");
        if matches!(eds, "UNHEALTHY" | "TIMEOUT")
            || flag("failed_active_health_check")
            || flag("failed_outlier_check")
            || flag("excluded_via_immediate_hc_fail")
        {
            continue;
        }
        let sa = h.get("address").and_then(|a| a.get("socket_address"));
        let ip =
            sa.and_then(|s| s.get("address")).and_then(Value::as_str).and_then(|a| a.parse::<IpAddr>().ok());
        let port =
            sa.and_then(|s| s.get("port_value")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let address = ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port));
        let name = h.get("hostname").and_then(Value::as_str);
        let drain = eds == "DRAINING" || flag("pending_dynamic_removal");
        c.add(i, address, name, weight(h.get("weight")), drain);
    }
    finish(c, seeds)
}

/// Instances in Consul's `/v1/health/service/<name>` answer, with the default [`Admission`]
/// (see [`read_consul`]).
pub fn parse_consul(body: &[u8], seeds: &[HostSpec]) -> Result<Vec<HostSpec>, DiscoveryError> {
    read_consul(body, seeds, &Admission::default()).map(|a| a.hosts)
}

/// Instances in Consul's `/v1/health/service/<name>` answer (ask with `?passing`).
pub fn read_consul(body: &[u8], seeds: &[HostSpec], admission: &Admission) -> Result<Answer, DiscoveryError> {
    let doc: Value = crate::json::parse(body).map_err(|e| DiscoveryError(format!("not JSON: {e}")))?;
    let Some(entries) = doc.as_array() else {
        return fail("not a JSON array of service entries");
    };
    let mut c = Collector { admission, endpoints: Vec::new(), skipped: Vec::new() };
    for (i, e) in entries.iter().enumerate() {
        let service = e.get("Service");
        let addr = service
            .and_then(|s| s.get("Address"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .or_else(|| e.get("Node").and_then(|n| n.get("Address")).and_then(Value::as_str));
        let ip = addr.and_then(|a| a.parse::<IpAddr>().ok());
        let port =
            service.and_then(|s| s.get("Port")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let address = ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port));
        let name = service.and_then(|s| s.get("ID")).and_then(Value::as_str);
        c.add(
            i,
            address,
            name,
            weight(service.and_then(|s| s.get("Weights")).and_then(|w| w.get("Passing"))),
            false,
        );
    }
    finish(c, seeds)
}

/// Assigns stable ids: a configured host's `id` for its address; else the endpoint's own name
/// (hostname, service id) when no other endpoint shares it; else the address. A configured id
/// always stays with its configured address: an endpoint elsewhere whose name is a configured id,
/// or another endpoint's address, is dropped (counted), never renamed.
fn finish(c: Collector<'_>, seeds: &[HostSpec]) -> Result<Answer, DiscoveryError> {
    let Collector { mut endpoints, mut skipped, .. } = c;
    crate::order::sort_by(&mut endpoints, &|a, b| a.address.cmp(&b.address));
    endpoints.dedup_by_key(|e| e.address);
    // Configured address (canonical) → index of its seed.
    let mut configured = Names::new();
    for (i, s) in seeds.iter().enumerate() {
        if let Ok(address) = s.address.parse::<SocketAddr>() {
            configured.insert(canonical(address).to_string(), i as u32);
        }
    }
    let mut configured_ids = Names::new();
    for s in seeds {
        configured_ids.insert(s.id.as_deref().unwrap_or(&s.address).to_owned(), 0);
    }
    let mut addresses = Names::new();
    for e in &endpoints {
        addresses.insert(e.address.to_string(), 0);
    }
    let mut name_count = Names::new();
    for e in &endpoints {
        if let Some(n) = &e.name {
            let count = name_count.entry(n.clone()).or_default();
            *count = count.saturating_add(1);
        }
    }
    let mut taken = Names::new();
    let mut specs = Vec::with_capacity(endpoints.len());
    for e in &endpoints {
        let address = e.address.to_string();
        let seed = configured.get(&address).and_then(|&i| seeds.get(i as usize));
        let id = if let Some(seed) = seed {
            seed.id.as_deref().unwrap_or(&seed.address).to_owned()
        } else {
            let unique_name = e.name.as_deref().filter(|n| name_count.get(*n) == Some(&1));
            let id = unique_name.unwrap_or(&address);
            // A name that is a configured id squats it even when shared (the configured host
            // itself may carry that name too).
            let squats = e.name.as_deref().is_some_and(|n| configured_ids.contains_key(n));
            let someone_elses =
                squats || configured_ids.contains_key(id) || (id != address && addresses.contains_key(id));
            if someone_elses {
                let name = e.name.as_deref().unwrap_or(id);
                let name = quoted(name);
                skipped
                    .push(Skipped { reason: SkipReason::IdCollision, entry: format!("{address} ({name})") });
                continue;
            }
            id.to_owned()
        };
        if taken.insert(id.clone(), 0).is_some() {
            skipped.push(Skipped {
                reason: SkipReason::IdCollision,
                entry: format!("{address} ({})", quoted(&id)),
            });
            continue;
        }
        specs.push(HostSpec { address, id: Some(id), weight: Some(e.weight), drain: e.drain });
    }
    if specs.is_empty() {
        let why = summary(&skipped);
        return fail(format!("no usable endpoints (empty answer{why})"));
    }
    if specs.len() > MAX_CONFIG_HOSTS {
        return fail(format!("{} endpoints, at most {MAX_CONFIG_HOSTS} are supported", specs.len()));
    }
    if specs.iter().all(|s| s.drain) {
        return fail("every endpoint is draining");
    }
    Ok(Answer { hosts: specs, skipped })
}

/// `; 3 skipped: 2 loopback, 1 bad_entry`, or nothing when none was.
pub fn summary(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let mut out = format!("; {} skipped: ", skipped.len());
    let mut first = true;
    for r in SkipReason::ALL {
        let n = skipped.iter().filter(|s| s.reason == r).count();
        if n > 0 {
            out.push_str(if first { "" } else { ", " });
            out.push_str(&format!("{n} {}", r.as_str()));
            first = false;
        }
    }
    out
}

/// Remembers which entries were skipped by the previous poll, so each is counted and logged
/// once while it stays in the answers (again if it leaves and comes back). Bounded.
#[derive(Debug, Default)]
pub struct SkipLog {
    /// Entry → the reasons (one bit each) it was skipped for.
    seen: Names,
}

impl SkipLog {
    /// The entries of `skipped` that the previous call did not report.
    pub fn news(&mut self, skipped: &[Skipped]) -> Vec<Skipped> {
        let mut fresh = Vec::new();
        let mut now = Names::with_capacity(skipped.len().min(MAX_REMEMBERED_SKIPS));
        for s in skipped {
            let bit = 1u32 << (s.reason as u32);
            let known = |m: &Names| m.get(&s.entry).is_some_and(|&bits| bits & bit != 0);
            if !known(&self.seen) && !known(&now) {
                fresh.push(s.clone());
            }
            if let Some(bits) = now.get_mut(&s.entry) {
                *bits |= bit;
            } else if now.len() < MAX_REMEMBERED_SKIPS {
                now.insert(s.entry.clone(), bit);
            }
        }
        self.seen = now;
        fresh
    }
}

/// The membership every worker applies: generation, then one host per line
/// (`id \t address \t weight \t drain`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub generation: u64,
    pub hosts: Vec<HostSpec>,
}

impl Membership {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}\n", self.generation);
        for h in &self.hosts {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                h.id.as_deref().unwrap_or(&h.address),
                h.address,
                h.weight.unwrap_or(1),
                u8::from(h.drain)
            ));
        }
        out.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Membership> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        let generation = lines.next()?.parse().ok()?;
        let mut hosts = Vec::new();
        for line in lines {
            let mut f = line.split('\t');
            let (id, address, weight, drain) = (f.next()?, f.next()?, f.next()?, f.next()?);
            hosts.push(HostSpec {
                address: address.to_owned(),
                id: Some(id.to_owned()),
                weight: Some(weight.parse().ok()?),
                drain: drain == "1",
            });
        }
        Some(Membership { generation, hosts })
    }

    /// Ids added and removed going from `self` to `next`, for the change log line.
    pub fn diff<'a>(&'a self, next: &'a [HostSpec]) -> (Vec<&'a str>, Vec<&'a str>) {
        // Ids of `from` not among those of `other`, in `from`'s order.
        let missing = |from: &'a [HostSpec], other: &[HostSpec]| {
            let mut out = Vec::new();
            for id in from.iter().filter_map(|h| h.id.as_deref()) {
                if !other.iter().any(|h| h.id.as_deref() == Some(id)) {
                    out.push(id);
                }
            }
            out
        };
        (missing(next, &self.hosts), missing(&self.hosts, next))
    }
}
