//! Membership from a discovery source: Envoy's own view of a cluster (`/clusters?format=json`)
//! or a Consul-style registry, parsed into host specs; and the membership record published to
//! every worker through shared data, with a generation number.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::config::{HostSpec, MAX_CONFIG_HOSTS, MAX_WEIGHT};

/// Answers larger than this are not parsed (a registry gone wrong must not eat the VM's memory).
pub const MAX_BODY_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError(pub String);

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(why: impl Into<String>) -> Result<T, DiscoveryError> {
    Err(DiscoveryError(why.into()))
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

/// Endpoints of `target_cluster` in Envoy's `/clusters?format=json`. Hosts Envoy considers
/// unhealthy (EDS status, failed active check, outlier ejection) are left out; draining ones are
/// kept as draining (they keep their pinned sessions).
pub fn parse_envoy_clusters(
    body: &[u8],
    target_cluster: &str,
    seeds: &[HostSpec],
) -> Result<Vec<HostSpec>, DiscoveryError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| DiscoveryError(format!("not JSON: {e}")))?;
    let Some(clusters) = doc.get("cluster_statuses").and_then(Value::as_array) else {
        return fail("no cluster_statuses array");
    };
    let Some(cluster) =
        clusters.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(target_cluster))
    else {
        return fail(format!("cluster {target_cluster:?} not found"));
    };
    let hosts = cluster.get("host_statuses").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut endpoints = Vec::new();
    for h in hosts {
        let sa = h.pointer("/address/socket_address");
        let ip =
            sa.and_then(|s| s.get("address")).and_then(Value::as_str).and_then(|a| a.parse::<IpAddr>().ok());
        let port =
            sa.and_then(|s| s.get("port_value")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let (Some(ip), Some(port)) = (ip, port) else { continue };
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
        endpoints.push(Endpoint {
            address: SocketAddr::new(ip, port),
            name: h.get("hostname").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned),
            weight: weight(h.get("weight")),
            drain: eds == "DRAINING" || flag("pending_dynamic_removal"),
        });
    }
    finish(endpoints, seeds)
}

/// Instances in Consul's `/v1/health/service/<name>` answer (ask with `?passing`).
pub fn parse_consul(body: &[u8], seeds: &[HostSpec]) -> Result<Vec<HostSpec>, DiscoveryError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| DiscoveryError(format!("not JSON: {e}")))?;
    let Some(entries) = doc.as_array() else {
        return fail("not a JSON array of service entries");
    };
    let mut endpoints = Vec::new();
    for e in entries {
        let service = e.get("Service");
        let addr = service
            .and_then(|s| s.get("Address"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .or_else(|| e.pointer("/Node/Address").and_then(Value::as_str));
        let ip = addr.and_then(|a| a.parse::<IpAddr>().ok());
        let port =
            service.and_then(|s| s.get("Port")).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let (Some(ip), Some(port)) = (ip, port) else { continue };
        if port == 0 {
            continue;
        }
        endpoints.push(Endpoint {
            address: SocketAddr::new(ip, port),
            name: service
                .and_then(|s| s.get("ID"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            weight: weight(service.and_then(|s| s.pointer("/Weights/Passing"))),
            drain: false,
        });
    }
    finish(endpoints, seeds)
}

/// Assigns stable ids: a configured host's `id` for its address; else the endpoint's own name
/// (hostname, service id) when no other endpoint shares it; else the address.
fn finish(mut endpoints: Vec<Endpoint>, seeds: &[HostSpec]) -> Result<Vec<HostSpec>, DiscoveryError> {
    endpoints.sort_by_key(|e| e.address);
    endpoints.dedup_by_key(|e| e.address);
    if endpoints.is_empty() {
        return fail("no usable endpoints (empty answer)");
    }
    if endpoints.len() > MAX_CONFIG_HOSTS {
        return fail(format!("{} endpoints, at most {MAX_CONFIG_HOSTS} are supported", endpoints.len()));
    }
    let configured: HashMap<SocketAddr, &str> =
        seeds.iter().filter_map(|s| Some((s.address.parse().ok()?, s.id.as_deref()?))).collect();
    let mut name_count: HashMap<&str, usize> = HashMap::new();
    for e in &endpoints {
        if let Some(n) = &e.name {
            *name_count.entry(n.as_str()).or_default() += 1;
        }
    }
    let mut specs: Vec<HostSpec> = endpoints
        .iter()
        .map(|e| {
            let id = configured
                .get(&e.address)
                .map(|id| (*id).to_owned())
                .or_else(|| {
                    e.name.clone().filter(|n| name_count.get(n.as_str()) == Some(&1) && n.len() <= 256)
                })
                .unwrap_or_else(|| e.address.to_string());
            HostSpec { address: e.address.to_string(), id: Some(id), weight: Some(e.weight), drain: e.drain }
        })
        .collect();
    // An id taken from a name must not collide with another host's address-derived id.
    let mut seen = std::collections::HashSet::new();
    for s in &mut specs {
        if !seen.insert(s.id.clone()) {
            s.id = Some(s.address.clone());
        }
    }
    if specs.iter().all(|s| s.drain) {
        return fail("every endpoint is draining");
    }
    Ok(specs)
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
        let hosts = lines
            .map(|line| {
                let mut f = line.split('\t');
                let (id, address, weight, drain) = (f.next()?, f.next()?, f.next()?, f.next()?);
                Some(HostSpec {
                    address: address.to_owned(),
                    id: Some(id.to_owned()),
                    weight: Some(weight.parse().ok()?),
                    drain: drain == "1",
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Membership { generation, hosts })
    }

    /// Ids added and removed going from `self` to `next`, for the change log line.
    pub fn diff(&self, next: &[HostSpec]) -> (Vec<String>, Vec<String>) {
        let ids = |hosts: &[HostSpec]| -> Vec<String> { hosts.iter().filter_map(|h| h.id.clone()).collect() };
        let (old, new) = (ids(&self.hosts), ids(next));
        let added = new.iter().filter(|id| !old.contains(id)).cloned().collect();
        let removed = old.iter().filter(|id| !new.contains(id)).cloned().collect();
        (added, removed)
    }
}
