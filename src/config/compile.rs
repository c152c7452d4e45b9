//! Validation and compilation of the raw document into the runtime [`Config`], with errors that
//! name the field, the value and why.

use std::net::SocketAddr;

use super::health::compile_health;
use super::raw::*;
use super::sticky_cookie::{check_cookie_name, compile_sticky};
use super::*;
use crate::Names;
use crate::bounded::FACTOR_SCALE;
use crate::placement::{Algorithm, Placement};
use crate::ring::MAX_HOSTS;

pub(super) fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let vnodes = raw.vnodes_per_weight.unwrap_or(DEFAULT_VNODES_PER_WEIGHT);
    if vnodes == 0 || vnodes > MAX_VNODES_PER_WEIGHT {
        return Err(err(
            "vnodes_per_weight",
            format!("{vnodes} is out of range 1..={MAX_VNODES_PER_WEIGHT}"),
        ));
    }
    let algorithm = match (raw.placement.map(|p| p.algorithm), raw.vnodes_per_weight) {
        (Some(RawAlgorithm::Ring), _) => Algorithm::Ring,
        (Some(RawAlgorithm::Rendezvous), Some(v)) => {
            return Err(err(
                "vnodes_per_weight",
                format!("{v} applies to the ring only, and placement.algorithm is \"rendezvous\""),
            ));
        }
        (Some(RawAlgorithm::Rendezvous), None) => Algorithm::Rendezvous,
        // A config that tunes the ring keeps the ring (README "Placement", upgrading).
        (None, Some(_)) => Algorithm::Ring,
        (None, None) => DEFAULT_ALGORITHM,
    };
    let target = compile_target(raw.target)?;
    let sticky = raw.sticky_cookie.map(|s| compile_sticky(s, env)).transpose()?;
    let mut sources = Vec::with_capacity(raw.sources.len());
    for (i, s) in raw.sources.into_iter().enumerate() {
        sources.push(compile_source(i, s)?);
    }
    if sources.is_empty() && sticky.is_none() {
        return Err(err(
            "sources",
            "is empty and no sticky_cookie is configured, so no request could ever stick to a host",
        ));
    }
    let mut health = raw.health.map(compile_health).transpose()?.unwrap_or_default();
    if let Some(active) = &mut health.active
        && active.header.is_empty()
    {
        active.header = match target.encoding {
            Encoding::Plain => target.header.clone(),
            Encoding::Base64 => "x-envoy-original-dst-host".to_owned(),
        };
    }
    let discovery = raw.discovery.map(|d| compile_discovery(d, &target)).transpose()?;
    let bounded_load = raw.bounded_load.map(compile_bounded_load).transpose()?;
    if discovery.is_some() {
        check_seed_hosts(&raw.hosts)?;
    }
    let mut config = Config {
        hosts: Vec::new(),
        placement: Placement::empty(),
        algorithm,
        sources,
        sticky,
        target,
        vnodes_per_weight: vnodes,
        health,
        discovery,
        bounded_load,
        tags: Vec::new(),
        verify_tags: Vec::new(),
        addresses: Vec::new(),
    };
    config.set_hosts(raw.hosts)?;
    Ok(config)
}

fn compile_discovery(raw: RawDiscovery, target: &Target) -> Result<Discovery, ConfigError> {
    let (cluster, interval_ms, source, allowed_cidrs, denied_ports) = match raw {
        RawDiscovery::EnvoyAdmin { cluster, target_cluster, interval_ms, allowed_cidrs, denied_ports } => {
            if target_cluster.is_empty() {
                return Err(err("discovery.target_cluster", "must not be empty"));
            }
            (
                cluster,
                interval_ms,
                DiscoverySource::EnvoyAdmin { target_cluster },
                allowed_cidrs,
                denied_ports,
            )
        }
        RawDiscovery::Json { cluster, path, format, authority, interval_ms, allowed_cidrs, denied_ports } => {
            if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ' ') {
                return Err(err(
                    "discovery.path",
                    format!("{path:?} must start with / and contain no spaces"),
                ));
            }
            let source = DiscoverySource::Registry { path, format, authority };
            (cluster, interval_ms, source, allowed_cidrs, denied_ports)
        }
    };
    if cluster.is_empty() || cluster.len() > 256 {
        return Err(err("discovery.cluster", format!("{cluster:?} must be 1 to 256 bytes")));
    }
    let interval_ms = interval_ms.unwrap_or(1000);
    if !(100..=3_600_000).contains(&interval_ms) {
        return Err(err("discovery.interval_ms", format!("{interval_ms} is out of range 100..=3600000")));
    }
    let admission = compile_admission(allowed_cidrs, denied_ports, target)?;
    Ok(Discovery { cluster, source, interval_ms, admission })
}

/// `discovery.allowed_cidrs` and `discovery.denied_ports`. The allow-list is required when the
/// target is an ORIGINAL_DST cluster: it connects to whatever address discovery admits.
fn compile_admission(
    allowed_cidrs: Option<Vec<String>>,
    denied_ports: Option<Vec<u16>>,
    target: &Target,
) -> Result<crate::admission::Admission, ConfigError> {
    use crate::admission::{Admission, Cidr, MAX_ADMISSION_ENTRIES};
    let mut admission = Admission::default();
    match allowed_cidrs {
        None if target.header == "x-envoy-original-dst-host" => {
            return Err(err(
                "discovery.allowed_cidrs",
                "is required when target.header is x-envoy-original-dst-host: an ORIGINAL_DST cluster \
                 connects to any address discovery admits (list the backends' ranges, e.g. [\"10.0.0.0/8\"])",
            ));
        }
        None => {}
        Some(list) if list.is_empty() || list.len() > MAX_ADMISSION_ENTRIES => {
            return Err(err(
                "discovery.allowed_cidrs",
                format!(
                    "has {} entries; list 1 to {MAX_ADMISSION_ENTRIES} ranges (leave it out to admit any \
                     address outside loopback, link-local and metadata)",
                    list.len()
                ),
            ));
        }
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                let cidr = Cidr::parse(c).map_err(|why| err(format!("discovery.allowed_cidrs[{i}]"), why))?;
                admission.allowed.push(cidr);
            }
        }
    }
    if let Some(ports) = denied_ports {
        if ports.len() > MAX_ADMISSION_ENTRIES {
            return Err(err(
                "discovery.denied_ports",
                format!("has {} entries, at most {MAX_ADMISSION_ENTRIES}", ports.len()),
            ));
        }
        if let Some(i) = ports.iter().position(|&p| p == 0) {
            return Err(err(format!("discovery.denied_ports[{i}]"), "0 is not a port"));
        }
        admission.denied_ports = ports;
    }
    Ok(admission)
}

/// Under discovery the static hosts are only the seed, used until the first poll succeeds:
/// weights and draining come from the discovered membership, so a static `weight` or `drain`
/// would apply for a moment and then silently stop. Rejected rather than half-applied.
fn check_seed_hosts(hosts: &[HostSpec]) -> Result<(), ConfigError> {
    for (i, h) in hosts.iter().enumerate() {
        if h.drain {
            return Err(err(
                format!("hosts[{i}].drain"),
                "true has no lasting effect under discovery (draining comes from the discovered membership); remove it",
            ));
        }
        if let Some(w) = h.weight
            && w != 1
        {
            return Err(err(
                format!("hosts[{i}].weight"),
                format!(
                    "{w} has no lasting effect under discovery (weights come from the discovered membership); remove it"
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn compile_hosts(
    raw: Vec<HostSpec>,
    target: &Target,
    sticky: Option<&Sticky>,
) -> Result<Vec<Host>, ConfigError> {
    if raw.is_empty() {
        return Err(err("hosts", "is empty; at least one host is required"));
    }
    if raw.len() > MAX_CONFIG_HOSTS.min(MAX_HOSTS) {
        return Err(err("hosts", format!("{} hosts, at most {MAX_CONFIG_HOSTS} are supported", raw.len())));
    }
    // Sets (the module's one map type, crate::Names): canonical addresses, ids, cookie tags.
    let mut addresses = Names::new();
    let mut ids = Names::new();
    let mut tags = Names::new();
    let mut hosts = Vec::with_capacity(raw.len());
    for (i, h) in raw.into_iter().enumerate() {
        let address = parse_address(&h.address)
            .map_err(|why| err(format!("hosts[{i}].address"), format!("{:?} {why}", h.address)))?;
        // `[::ffff:10.0.0.1]:80` is `10.0.0.1:80`: the same backend listed twice.
        let canonical = SocketAddr::new(address.ip().to_canonical(), address.port());
        if addresses.insert(canonical.to_string(), 0).is_some() {
            return Err(err(format!("hosts[{i}].address"), format!("{:?} is listed twice", h.address)));
        }
        let id = match h.id {
            Some(id) if id.trim().is_empty() || id.len() > 256 || id.chars().any(char::is_control) => {
                return Err(err(
                    format!("hosts[{i}].id"),
                    format!("{id:?} must be 1 to 256 bytes, not blank, without control characters"),
                ));
            }
            Some(id) => id,
            None => h.address.clone(),
        };
        if ids.insert(id.clone(), 0).is_some() {
            return Err(err(format!("hosts[{i}].id"), format!("{id:?} is used by two hosts")));
        }
        let weight = h.weight.unwrap_or(1);
        if weight == 0 || weight > MAX_WEIGHT {
            return Err(err(
                format!("hosts[{i}].weight"),
                format!("{weight} is not a positive integer up to {MAX_WEIGHT}"),
            ));
        }
        let plain = address.to_string();
        let header_value = match target.encoding {
            Encoding::Plain => plain,
            Encoding::Base64 => crate::b64::encode(crate::b64::Alphabet::Standard, true, plain.as_bytes()),
        };
        let tag = sticky.map(|s| s.key.host_tag(id.as_bytes()));
        if let Some(tag) = tag
            && tags.insert(crate::b64::encode(crate::b64::Alphabet::Standard, false, &tag), 0).is_some()
        {
            return Err(err(
                format!("hosts[{i}].id"),
                "cookie tag collides with another host's; pick another id",
            ));
        }
        hosts.push(Host { id, address, weight, header_value, tag, drain: h.drain });
    }
    Ok(hosts)
}

/// `ip:port` with a literal IPv4 or bracketed IPv6 address and a non-zero port.
fn parse_address(s: &str) -> Result<SocketAddr, &'static str> {
    let addr: SocketAddr = s.parse().map_err(|_| "is not ip:port (IPv6 as [addr]:port)")?;
    if addr.port() == 0 {
        return Err("has port 0");
    }
    let ip = addr.ip().to_canonical();
    if ip.is_unspecified() || ip.is_multicast() {
        return Err("is not a unicast address");
    }
    // `[fe80::1%2]:80`: Envoy's endpoints carry no zone, so such a header would match none.
    if let SocketAddr::V6(v6) = addr
        && (v6.scope_id() != 0 || v6.flowinfo() != 0)
    {
        return Err("has an IPv6 zone index, which Envoy endpoints do not carry");
    }
    Ok(addr)
}

/// Whether `name` is an RFC 9110 token (header and cookie names), 1 to 256 bytes. Bytes, not
/// chars: a string pattern (`"…".contains(c)`) links the two-way searcher into the module.
pub(super) fn is_token(name: &str) -> bool {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    (1..=256).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
}

/// HTTP header field names: RFC 9110 tokens, lowercase as Envoy stores them.
pub(super) fn check_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if !is_token(name) {
        return Err(err(field, format!("{name:?} is not a valid header name")));
    }
    let lower = name.to_ascii_lowercase();
    if matches!(lower.as_str(), "host" | "content-length" | "transfer-encoding" | "connection" | "cookie") {
        return Err(err(field, format!("{name:?} cannot be used here")));
    }
    Ok(lower)
}

fn compile_target(raw: RawTarget) -> Result<Target, ConfigError> {
    let header = check_header_name("target.header", &raw.header)?;
    let encoding = raw.encoding.unwrap_or(Encoding::Plain);
    let fallbacks = raw.fallbacks.unwrap_or(0);
    if fallbacks > MAX_FALLBACKS {
        return Err(err("target.fallbacks", format!("{fallbacks} is more than {MAX_FALLBACKS}")));
    }
    if fallbacks > 0 && (encoding != Encoding::Plain || header == "x-envoy-original-dst-host") {
        return Err(err(
            "target.fallbacks",
            format!(
                "{fallbacks} needs a header that takes a comma-separated list \
                 (plain encoding, e.g. x-gateway-destination-endpoint); {header:?} takes one address"
            ),
        ));
    }
    Ok(Target { header, encoding, fallbacks })
}

fn compile_source(i: usize, raw: RawSource) -> Result<Source, ConfigError> {
    let field = |name: &str| format!("sources[{i}].{name}");
    Ok(match raw {
        RawSource::Cookie { name } => {
            check_cookie_name(&field("name"), &name)?;
            Source::Cookie { name }
        }
        RawSource::Jwt { claim, header, prefix, leeway_seconds } => {
            let claim = claim.unwrap_or_else(|| "sub".to_owned());
            if claim.is_empty() || claim.len() > 256 {
                return Err(err(field("claim"), format!("{claim:?} must be 1 to 256 bytes")));
            }
            let header = match header {
                Some(h) => check_header_name(&field("header"), &h)?,
                None => "authorization".to_owned(),
            };
            let prefix = prefix.unwrap_or_else(|| "Bearer ".to_owned());
            if prefix.len() > 64 || prefix.chars().any(|c| c.is_control()) {
                return Err(err(
                    field("prefix"),
                    format!("{prefix:?} must be up to 64 printable characters"),
                ));
            }
            let leeway_seconds = leeway_seconds.unwrap_or(DEFAULT_JWT_LEEWAY_SECONDS);
            if leeway_seconds > MAX_JWT_LEEWAY_SECONDS {
                return Err(err(
                    field("leeway_seconds"),
                    format!("{leeway_seconds} is out of range 0..={MAX_JWT_LEEWAY_SECONDS}"),
                ));
            }
            Source::Jwt { header, prefix, claim, leeway_seconds }
        }
        RawSource::Header { name } => Source::Header { name: check_header_name(&field("name"), &name)? },
        RawSource::Query { name } => {
            if name.is_empty() || name.len() > 256 {
                return Err(err(field("name"), format!("{name:?} must be 1 to 256 bytes")));
            }
            Source::Query { name }
        }
        RawSource::SourceIp {} => Source::SourceIp,
    })
}

fn compile_bounded_load(raw: RawBoundedLoad) -> Result<BoundedLoad, ConfigError> {
    let f = raw.factor;
    // In thousandths, so every worker and replica computes the same bound without floats.
    let milli = (f * FACTOR_SCALE as f64).round();
    if !f.is_finite()
        || !(MIN_BALANCE_FACTOR..=MAX_BALANCE_FACTOR).contains(&f)
        || milli <= FACTOR_SCALE as f64
    {
        return Err(err(
            "bounded_load.factor",
            // The bounds as literals: formatting a double would link float printing into the module.
            format!("{} is out of range 1.001..=10", raw.factor_text),
        ));
    }
    Ok(BoundedLoad {
        factor_milli: milli as u64,
        spill_unpinned_keys: raw.spill_unpinned_keys.unwrap_or(false),
    })
}
