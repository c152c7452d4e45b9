//! Where a filter's shared state lives. Envoy's shared data is one key space per VM id, and
//! every shipped config uses `vm_id: session_router`, so two session-router filters in one
//! Envoy (two listeners, two Istio `WasmPlugin`s) would otherwise share one membership, one
//! health table and one lease.
//!
//! Keys are scoped to the plugin (its `name` and `root_id`) and to its membership source (the
//! discovery settings, or the static host ids when there is no discovery); the lease also to
//! the whole configuration, so two different configs never starve each other's probes. Every
//! record starts with its scope, so a record of another scope (a hash collision, a stale key
//! format) is ignored, never applied.

use crate::config::{Config, DiscoverySource};
use crate::murmur3::murmur3_x64_128;

/// The shared-data keys of one filter configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The record tag (16 hex digits) every record starts with.
    pub scope: String,
    pub health: String,
    /// Empty, rewritten after every write of `health`: its compare-and-swap value, which Envoy
    /// returns without copying any data into the VM, tells a worker whether to read the table.
    pub health_changed: String,
    pub membership: String,
    /// The membership's generation alone, so workers check it without decoding the hosts.
    pub generation: String,
    pub lease: String,
}

const PREFIX: &str = "session_router.v2";

fn hex(bytes: &[u8]) -> String {
    format!("{:016x}", murmur3_x64_128(bytes, 0).0)
}

/// What decides which hosts a configuration routes to: its discovery source, else its hosts.
pub fn membership_source(cfg: &Config) -> String {
    match &cfg.discovery {
        Some(d) => match &d.source {
            DiscoverySource::EnvoyAdmin { target_cluster } => {
                format!("envoy_admin\0{}\0{target_cluster}", d.cluster)
            }
            DiscoverySource::Registry { path, format, authority } => {
                format!("json\0{}\0{path}\0{format:?}\0{}", d.cluster, authority.as_deref().unwrap_or(""))
            }
        },
        None => {
            let mut source = "static".to_owned();
            for h in &cfg.hosts {
                source.push('\0');
                source.push_str(&h.id);
            }
            source
        }
    }
}

impl Keys {
    /// `plugin_name` and `root_id` as Envoy reports them (`plugin_name`, `plugin_root_id`
    /// properties); `config` is the configuration's bytes as pushed.
    pub fn new(plugin_name: &str, root_id: &str, cfg: &Config, config: &[u8]) -> Keys {
        let scope = hex(format!("{plugin_name}\0{root_id}\0{}", membership_source(cfg)).as_bytes());
        let lease = hex(&[scope.as_bytes(), b"\0", config].concat());
        Keys {
            health: format!("{PREFIX}.{scope}.health"),
            health_changed: format!("{PREFIX}.{scope}.health.changed"),
            membership: format!("{PREFIX}.{scope}.membership"),
            generation: format!("{PREFIX}.{scope}.generation"),
            lease: format!("{PREFIX}.{scope}.lease.{lease}"),
            scope,
        }
    }

    /// `record` prefixed with this scope's tag line.
    pub fn seal(&self, record: &[u8]) -> Vec<u8> {
        [self.scope.as_bytes(), b"\n", record].concat()
    }

    /// The record inside `bytes` if it carries this scope's tag; `None` for a foreign or
    /// stale record (which the caller treats as absent).
    pub fn open<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let rest = bytes.strip_prefix(self.scope.as_bytes())?;
        rest.strip_prefix(b"\n")
    }
}
