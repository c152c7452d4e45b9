//! The JSON document exactly as written: `deny_unknown_fields` everywhere, so a typo is an
//! error that names the field, never an option silently ignored.

use serde::Deserialize;

use super::{Encoding, RegistryFormat, SameSite};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a JSON object with `hosts` and `target`")]
pub(super) struct RawConfig {
    pub(super) hosts: Vec<HostSpec>,
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
    #[serde(default)]
    pub(super) sticky_cookie: Option<RawSticky>,
    pub(super) target: RawTarget,
    #[serde(default)]
    pub(super) vnodes_per_weight: Option<u32>,
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) discovery: Option<RawDiscovery>,
    #[serde(default)]
    pub(super) placement: Option<RawPlacement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlacement {
    pub(super) algorithm: RawAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAlgorithm {
    Ring,
    Rendezvous,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    #[serde(default)]
    pub(super) passive: Option<RawPassive>,
    #[serde(default)]
    pub(super) active: Option<RawActive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPassive {
    pub(super) consecutive_failures: u32,
    pub(super) ejection_seconds: u64,
    #[serde(default)]
    pub(super) max_ejection_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActive {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default)]
    pub(super) interval_ms: Option<u64>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) unhealthy_threshold: Option<u32>,
    #[serde(default)]
    pub(super) healthy_threshold: Option<u32>,
}

/// One host as configured (`hosts[i]`) or as discovered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub address: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub drain: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawDiscovery {
    EnvoyAdmin {
        cluster: String,
        target_cluster: String,
        #[serde(default)]
        interval_ms: Option<u64>,
    },
    Json {
        cluster: String,
        path: String,
        format: RegistryFormat,
        #[serde(default)]
        authority: Option<String>,
        #[serde(default)]
        interval_ms: Option<u64>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawSource {
    Cookie {
        name: String,
    },
    Jwt {
        #[serde(default)]
        claim: Option<String>,
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        prefix: Option<String>,
    },
    Header {
        name: String,
    },
    Query {
        name: String,
    },
    SourceIp {},
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    pub(super) name: String,
    pub(super) ttl_seconds: u64,
    #[serde(default)]
    pub(super) idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(super) secret: Option<String>,
    #[serde(default)]
    pub(super) secret_env: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) secure: Option<bool>,
    #[serde(default)]
    pub(super) http_only: Option<bool>,
    #[serde(default)]
    pub(super) same_site: Option<SameSite>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) header: String,
    #[serde(default)]
    pub(super) encoding: Option<Encoding>,
    #[serde(default)]
    pub(super) fallbacks: Option<u32>,
}
