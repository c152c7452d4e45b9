//! The JSON document exactly as written, read with serde's rules for these types as they were
//! derived before: unknown fields refused everywhere, so a typo is an error that names the field,
//! never an option silently ignored; a repeated key is an error; `null` is an absent option.

use super::read::{boolean, double, int, list, object, opt, required, string, tag, variant};
use super::{ConfigError, Encoding, RegistryFormat, SameSite};
use crate::json::Value;

pub(super) struct RawConfig {
    pub(super) hosts: Vec<HostSpec>,
    pub(super) sources: Vec<RawSource>,
    pub(super) sticky_cookie: Option<RawSticky>,
    pub(super) target: RawTarget,
    pub(super) vnodes_per_weight: Option<u32>,
    pub(super) health: Option<RawHealth>,
    pub(super) discovery: Option<RawDiscovery>,
    pub(super) bounded_load: Option<RawBoundedLoad>,
    pub(super) placement: Option<RawPlacement>,
}

pub(super) struct RawBoundedLoad {
    pub(super) factor: f64,
    /// `factor` as written, for messages.
    pub(super) factor_text: String,
    pub(super) spill_unpinned_keys: Option<bool>,
}

pub(super) struct RawPlacement {
    pub(super) algorithm: RawAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawAlgorithm {
    Ring,
    Rendezvous,
}

pub(super) struct RawHealth {
    pub(super) passive: Option<RawPassive>,
    pub(super) active: Option<RawActive>,
}

pub(super) struct RawPassive {
    pub(super) consecutive_failures: u32,
    pub(super) ejection_seconds: u64,
    pub(super) max_ejection_seconds: Option<u64>,
    pub(super) eject_on: Option<Vec<String>>,
}

pub(super) struct RawActive {
    pub(super) cluster: String,
    pub(super) path: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) interval_ms: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) unhealthy_threshold: Option<u32>,
    pub(super) healthy_threshold: Option<u32>,
    pub(super) header: Option<String>,
}

/// One host as configured (`hosts[i]`) or as discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub address: String,
    pub id: Option<String>,
    pub weight: Option<u32>,
    pub drain: bool,
}

pub(super) enum RawDiscovery {
    EnvoyAdmin {
        cluster: String,
        target_cluster: String,
        interval_ms: Option<u64>,
        allowed_cidrs: Option<Vec<String>>,
        denied_ports: Option<Vec<u16>>,
    },
    Json {
        cluster: String,
        path: String,
        format: RegistryFormat,
        authority: Option<String>,
        interval_ms: Option<u64>,
        allowed_cidrs: Option<Vec<String>>,
        denied_ports: Option<Vec<u16>>,
    },
}

pub(super) enum RawSource {
    Cookie { name: String },
    Jwt { claim: Option<String>, header: Option<String>, prefix: Option<String>, leeway_seconds: Option<u64> },
    Header { name: String },
    Query { name: String },
    SourceIp {},
}

pub(super) struct RawSticky {
    pub(super) name: String,
    pub(super) ttl_seconds: u64,
    pub(super) idle_timeout_seconds: Option<u64>,
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
    pub(super) verify_secrets: Option<Vec<RawSecret>>,
    pub(super) path: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) secure: Option<bool>,
    pub(super) http_only: Option<bool>,
    pub(super) same_site: Option<SameSite>,
}

/// A verify-only key (`sticky_cookie.verify_secrets[i]`), inline or from the environment.
pub(super) struct RawSecret {
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
}

pub(super) struct RawTarget {
    pub(super) header: String,
    pub(super) encoding: Option<Encoding>,
    pub(super) fallbacks: Option<u32>,
}

// ---- reading the document: serde's rules for these types, written out ----------------------

/// The whole document. Members are read in document order, so the first problem in the text is
/// the one reported; then missing fields, in declaration order.
pub(super) fn read_config(v: &Value) -> Result<RawConfig, ConfigError> {
    const FIELDS: &[&str] = &[
        "hosts",
        "sources",
        "sticky_cookie",
        "target",
        "vnodes_per_weight",
        "health",
        "discovery",
        "bounded_load",
        "placement",
    ];
    let (mut hosts, mut sources, mut sticky_cookie, mut target) = (None, Vec::new(), None, None);
    let (mut vnodes_per_weight, mut health, mut discovery) = (None, None, None);
    let (mut bounded_load, mut placement) = (None, None);
    object(v, "", "a JSON object with `hosts` and `target`", FIELDS, false, &mut |i, v, at| {
        match i {
            0 => hosts = Some(list(v, at, false, &read_host)?),
            1 => sources = list(v, at, false, &read_source)?,
            2 => sticky_cookie = opt(v, at, read_sticky)?,
            3 => target = Some(read_target(v, at)?),
            4 => vnodes_per_weight = opt(v, at, int)?,
            5 => health = opt(v, at, read_health)?,
            6 => discovery = opt(v, at, read_discovery)?,
            7 => bounded_load = opt(v, at, read_bounded_load)?,
            _ => placement = opt(v, at, read_placement)?,
        }
        Ok(())
    })?;
    Ok(RawConfig {
        hosts: required(hosts, "", "hosts")?,
        sources,
        sticky_cookie,
        target: required(target, "", "target")?,
        vnodes_per_weight,
        health,
        discovery,
        bounded_load,
        placement,
    })
}

fn read_host(v: &Value, path: &str) -> Result<HostSpec, ConfigError> {
    let (mut address, mut id, mut weight, mut drain) = (None, None, None, false);
    object(v, path, "struct HostSpec", &["address", "id", "weight", "drain"], false, &mut |i, v, at| {
        match i {
            0 => address = Some(string(v, at)?),
            1 => id = opt(v, at, string)?,
            2 => weight = opt(v, at, int)?,
            _ => drain = boolean(v, at)?,
        }
        Ok(())
    })?;
    Ok(HostSpec { address: required(address, path, "address")?, id, weight, drain })
}

fn read_bounded_load(v: &Value, path: &str) -> Result<RawBoundedLoad, ConfigError> {
    let (mut factor, mut spill_unpinned_keys) = (None, None);
    let fields = &["factor", "spill_unpinned_keys"];
    object(v, path, "struct RawBoundedLoad", fields, false, &mut |i, v, at| {
        match i {
            0 => factor = Some(double(v, at)?),
            _ => spill_unpinned_keys = opt(v, at, boolean)?,
        }
        Ok(())
    })?;
    let (factor, factor_text) = required(factor, path, "factor")?;
    Ok(RawBoundedLoad { factor, factor_text, spill_unpinned_keys })
}

fn read_placement(v: &Value, path: &str) -> Result<RawPlacement, ConfigError> {
    let mut algorithm = None;
    object(v, path, "struct RawPlacement", &["algorithm"], false, &mut |_, v, at| {
        let i = variant(v, at, &["ring", "rendezvous"])?;
        algorithm = Some(if i == 0 { RawAlgorithm::Ring } else { RawAlgorithm::Rendezvous });
        Ok(())
    })?;
    Ok(RawPlacement { algorithm: required(algorithm, path, "algorithm")? })
}

fn read_health(v: &Value, path: &str) -> Result<RawHealth, ConfigError> {
    let (mut passive, mut active) = (None, None);
    object(v, path, "struct RawHealth", &["passive", "active"], false, &mut |i, v, at| {
        match i {
            0 => passive = opt(v, at, read_passive)?,
            _ => active = opt(v, at, read_active)?,
        }
        Ok(())
    })?;
    Ok(RawHealth { passive, active })
}

fn read_passive(v: &Value, path: &str) -> Result<RawPassive, ConfigError> {
    let fields = &["consecutive_failures", "ejection_seconds", "max_ejection_seconds", "eject_on"];
    let (mut consecutive_failures, mut ejection_seconds, mut max_ejection_seconds) = (None, None, None);
    let mut eject_on = None;
    object(v, path, "struct RawPassive", fields, false, &mut |i, v, at| {
        match i {
            0 => consecutive_failures = Some(int(v, at)?),
            1 => ejection_seconds = Some(int(v, at)?),
            2 => max_ejection_seconds = opt(v, at, int)?,
            _ => eject_on = opt(v, at, |v, at| list(v, at, false, &string))?,
        }
        Ok(())
    })?;
    Ok(RawPassive {
        consecutive_failures: required(consecutive_failures, path, "consecutive_failures")?,
        ejection_seconds: required(ejection_seconds, path, "ejection_seconds")?,
        max_ejection_seconds,
        eject_on,
    })
}

fn read_active(v: &Value, path: &str) -> Result<RawActive, ConfigError> {
    let fields = &[
        "cluster",
        "path",
        "authority",
        "interval_ms",
        "timeout_ms",
        "unhealthy_threshold",
        "healthy_threshold",
        "header",
    ];
    let (mut cluster, mut probe_path, mut authority, mut header) = (None, None, None, None);
    let (mut interval_ms, mut timeout_ms, mut unhealthy_threshold, mut healthy_threshold) =
        (None, None, None, None);
    object(v, path, "struct RawActive", fields, false, &mut |i, v, at| {
        match i {
            0 => cluster = Some(string(v, at)?),
            1 => probe_path = opt(v, at, string)?,
            2 => authority = opt(v, at, string)?,
            3 => interval_ms = opt(v, at, int)?,
            4 => timeout_ms = opt(v, at, int)?,
            5 => unhealthy_threshold = opt(v, at, int)?,
            6 => healthy_threshold = opt(v, at, int)?,
            _ => header = opt(v, at, string)?,
        }
        Ok(())
    })?;
    Ok(RawActive {
        cluster: required(cluster, path, "cluster")?,
        path: probe_path,
        authority,
        interval_ms,
        timeout_ms,
        unhealthy_threshold,
        healthy_threshold,
        header,
    })
}

/// `discovery`, an internally tagged enum: as serde reported them, errors inside it name
/// `discovery` itself, except an unknown `type`.
fn read_discovery(v: &Value, path: &str) -> Result<RawDiscovery, ConfigError> {
    let json = tag(v, path, "RawDiscovery", &["envoy_admin", "json"])? == 1;
    let fields: &[&str] = if json {
        &["cluster", "path", "format", "authority", "interval_ms", "allowed_cidrs", "denied_ports"]
    } else {
        &["cluster", "target_cluster", "interval_ms", "allowed_cidrs", "denied_ports"]
    };
    let (mut cluster, mut target_cluster, mut registry_path, mut format) = (None, None, None, None);
    let (mut authority, mut interval_ms, mut allowed_cidrs, mut denied_ports) = (None, None, None, None);
    let expecting =
        if json { "struct variant RawDiscovery::Json" } else { "struct variant RawDiscovery::EnvoyAdmin" };
    object(v, path, expecting, fields, true, &mut |i, v, at| {
        match fields.get(i).copied().unwrap_or_default() {
            "cluster" => cluster = Some(string(v, at)?),
            "target_cluster" => target_cluster = Some(string(v, at)?),
            "path" => registry_path = Some(string(v, at)?),
            "format" => format = Some(variant(v, at, &["consul"]).map(|_| RegistryFormat::Consul)?),
            "authority" => authority = opt(v, at, string)?,
            "interval_ms" => interval_ms = opt(v, at, int)?,
            "allowed_cidrs" => allowed_cidrs = opt(v, at, |v, at| list(v, at, true, &string))?,
            _ => denied_ports = opt(v, at, |v, at| list(v, at, true, &int))?,
        }
        Ok(())
    })?;
    let cluster = required(cluster, path, "cluster")?;
    Ok(if json {
        RawDiscovery::Json {
            cluster,
            path: required(registry_path, path, "path")?,
            format: required(format, path, "format")?,
            authority,
            interval_ms,
            allowed_cidrs,
            denied_ports,
        }
    } else {
        RawDiscovery::EnvoyAdmin {
            cluster,
            target_cluster: required(target_cluster, path, "target_cluster")?,
            interval_ms,
            allowed_cidrs,
            denied_ports,
        }
    })
}

/// `sources[i]`, an internally tagged enum: errors inside name `sources[i]` (see
/// [`read_discovery`]).
fn read_source(v: &Value, path: &str) -> Result<RawSource, ConfigError> {
    let kind = tag(v, path, "RawSource", &["cookie", "jwt", "header", "query", "source_ip"])?;
    let fields: &[&str] = match kind {
        1 => &["claim", "header", "prefix", "leeway_seconds"],
        4 => &[],
        _ => &["name"],
    };
    let (mut name, mut claim, mut header, mut prefix, mut leeway_seconds) = (None, None, None, None, None);
    object(v, path, "struct variant", fields, true, &mut |i, v, at| {
        match fields.get(i).copied().unwrap_or_default() {
            "name" => name = Some(string(v, at)?),
            "claim" => claim = opt(v, at, string)?,
            "header" => header = opt(v, at, string)?,
            "prefix" => prefix = opt(v, at, string)?,
            _ => leeway_seconds = opt(v, at, int)?,
        }
        Ok(())
    })?;
    Ok(match kind {
        0 => RawSource::Cookie { name: required(name, path, "name")? },
        1 => RawSource::Jwt { claim, header, prefix, leeway_seconds },
        2 => RawSource::Header { name: required(name, path, "name")? },
        3 => RawSource::Query { name: required(name, path, "name")? },
        _ => RawSource::SourceIp {},
    })
}

fn read_sticky(v: &Value, path: &str) -> Result<RawSticky, ConfigError> {
    let fields = &[
        "name",
        "ttl_seconds",
        "idle_timeout_seconds",
        "secret",
        "secret_env",
        "verify_secrets",
        "path",
        "domain",
        "secure",
        "http_only",
        "same_site",
    ];
    let (mut name, mut ttl_seconds, mut idle_timeout_seconds, mut secret) = (None, None, None, None);
    let (mut secret_env, mut verify_secrets, mut cookie_path, mut domain) = (None, None, None, None);
    let (mut secure, mut http_only, mut same_site) = (None, None, None);
    object(v, path, "struct RawSticky", fields, false, &mut |i, v, at| {
        match i {
            0 => name = Some(string(v, at)?),
            1 => ttl_seconds = Some(int(v, at)?),
            2 => idle_timeout_seconds = opt(v, at, int)?,
            3 => secret = opt(v, at, string)?,
            4 => secret_env = opt(v, at, string)?,
            5 => verify_secrets = opt(v, at, |v, at| list(v, at, false, &read_secret))?,
            6 => cookie_path = opt(v, at, string)?,
            7 => domain = opt(v, at, string)?,
            8 => secure = opt(v, at, boolean)?,
            9 => http_only = opt(v, at, boolean)?,
            _ => {
                const SAME_SITE: [SameSite; 3] = [SameSite::Strict, SameSite::Lax, SameSite::None];
                let i = opt(v, at, |v, at| variant(v, at, &["Strict", "Lax", "None"]))?;
                same_site = i.and_then(|i| SAME_SITE.get(i).copied());
            }
        }
        Ok(())
    })?;
    Ok(RawSticky {
        name: required(name, path, "name")?,
        ttl_seconds: required(ttl_seconds, path, "ttl_seconds")?,
        idle_timeout_seconds,
        secret,
        secret_env,
        verify_secrets,
        path: cookie_path,
        domain,
        secure,
        http_only,
        same_site,
    })
}

fn read_secret(v: &Value, path: &str) -> Result<RawSecret, ConfigError> {
    let (mut secret, mut secret_env) = (None, None);
    object(v, path, "struct RawSecret", &["secret", "secret_env"], false, &mut |i, v, at| {
        match i {
            0 => secret = opt(v, at, string)?,
            _ => secret_env = opt(v, at, string)?,
        }
        Ok(())
    })?;
    Ok(RawSecret { secret, secret_env })
}

fn read_target(v: &Value, path: &str) -> Result<RawTarget, ConfigError> {
    let (mut header, mut encoding, mut fallbacks) = (None, None, None);
    object(v, path, "struct RawTarget", &["header", "encoding", "fallbacks"], false, &mut |i, v, at| {
        match i {
            0 => header = Some(string(v, at)?),
            1 => {
                let i = opt(v, at, |v, at| variant(v, at, &["plain", "base64"]))?;
                encoding = i.map(|i| if i == 0 { Encoding::Plain } else { Encoding::Base64 });
            }
            _ => fallbacks = opt(v, at, int)?,
        }
        Ok(())
    })?;
    Ok(RawTarget { header: required(header, path, "header")?, encoding, fallbacks })
}
