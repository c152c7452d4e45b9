//! The root context: configuration, membership, active probes and discovery polls.

use std::cell::RefCell;
use std::rc::Rc;

use log::{debug, error, info, warn};

use super::host::{self as hostcalls, BufferType, MapType};

use super::http::{Http, InFlight};
use super::log_limit::LogLimit;
use super::metrics::{HostMetrics, Metrics};
use super::shared::{self, HealthView};
use super::{VERSION, mono_ms, now, property_string, random_id, tick_ms};
use crate::clock::{Every, Now};
use crate::config::{Config, DiscoverySource, HostSpec, RegistryFormat};
use crate::discovery::{self, MAX_BODY_BYTES};
use crate::health::ProbesInFlight;
use crate::scope::Keys;

pub struct Root {
    /// The plugin configuration as pushed, with its static hosts (the seed and fallback).
    base: Option<Rc<Config>>,
    /// What requests use: `base`, or `base` over the discovered membership.
    config: Option<Rc<Config>>,
    /// Bumped whenever `config` changes, so cached per-host state is recomputed.
    config_epoch: u64,
    /// Membership generation applied to `config` (0: the static hosts).
    generation: u64,
    /// The hosts of that generation, to skip rebuilding when a poll brings the same answer.
    applied_hosts: Option<Vec<HostSpec>>,
    /// This configuration's shared-data keys (scoped to the plugin and membership source).
    keys: Option<Rc<Keys>>,
    metrics: Metrics,
    host_metrics: Rc<HostMetrics>,
    health: Rc<RefCell<HealthView>>,
    log_limit: Rc<RefCell<LogLimit>>,
    /// Requests in flight per host for bounded load, one table per config.
    in_flight: Rc<InFlight>,
    /// Identifies this VM in the lease.
    lease_owner: u64,
    /// In-flight probes: call token → host id.
    probes: ProbesInFlight,
    /// In-flight discovery polls (one per interval, each bounded by its timeout: a few).
    polls: Vec<u32>,
    /// Probe and poll schedules, on the monotonic clock.
    probe_every: Every,
    poll_every: Every,
}

impl Default for Root {
    fn default() -> Root {
        let id = random_id();
        Root {
            base: None,
            config: None,
            config_epoch: 0,
            generation: 0,
            applied_hosts: None,
            keys: None,
            metrics: Metrics::default(),
            host_metrics: Rc::default(),
            health: Rc::default(),
            log_limit: Rc::default(),
            in_flight: Rc::default(),
            lease_owner: u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]]),
            probes: ProbesInFlight::default(),
            polls: Vec::new(),
            probe_every: Every::default(),
            poll_every: Every::default(),
        }
    }
}

impl Root {
    pub(super) fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if let Some(i) = self.polls.iter().position(|&t| t == token) {
            self.polls.swap_remove(i);
            self.on_poll_response(body_size);
            return;
        }
        let Some(id) = self.probes.answered(token) else { return };
        let (Some(cfg), Some(active)) =
            (self.config.clone(), self.config.as_ref().and_then(|c| c.health.active.clone()))
        else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        let ok = status.as_deref().is_some_and(|s| s.starts_with('2'));
        if !ok {
            self.metrics.probe_failed();
            debug!("session-router: probe of host {id} failed: status {status:?}");
        }
        // Attributed by id: the membership may have changed since the probe went out.
        let Some(host) = cfg.host_by_id(&id) else { return };
        let Some(keys) = self.keys.clone() else { return };
        let event = shared::update_table(&keys, |t| t.record_probe_in(&id, ok, &active.thresholds, &cfg));
        self.metrics.health_event(event);
        shared::log_event(&cfg, host, event, mono_ms());
    }
}

impl Root {
    fn set_config(&mut self, config: Rc<Config>) {
        self.host_metrics = Rc::new(HostMetrics::define(&config));
        let counted = if config.bounded_load.is_some() { config.hosts.len() } else { 0 };
        self.in_flight = Rc::new(InFlight::new(counted));
        self.config = Some(config);
        self.config_epoch += 1;
    }

    /// Switches to the membership the polling worker published, if it is newer than ours.
    fn apply_membership(&mut self) {
        let Some(base) = self.base.clone().filter(|b| b.discovery.is_some()) else { return };
        let Some(keys) = self.keys.clone() else { return };
        // One small read per tick; the host list is only read when its generation moved.
        if shared::read_generation(&keys) == self.generation {
            return;
        }
        let Some(membership) = shared::read_membership(&keys) else { return };
        if membership.generation == self.generation {
            return;
        }
        // From the placement in use: a membership change costs what it moves (README "Placement").
        let applied = match &self.config {
            Some(current) => base.with_hosts_after(membership.hosts.clone(), current),
            None => base.with_hosts(membership.hosts.clone()),
        };
        match applied {
            Ok(config) => {
                self.metrics.membership(membership.generation, config.hosts.len());
                self.set_config(Rc::new(config));
                self.generation = membership.generation;
                self.applied_hosts = Some(membership.hosts);
            }
            Err(e) => {
                warn!("session-router: membership generation {} not applied: {e}", membership.generation);
                self.generation = membership.generation;
            }
        }
    }

    fn poll_membership(&mut self, base: &Config, now: Now) {
        let Some(discovery) = &base.discovery else { return };
        if !self.poll_every.due(now, discovery.interval_ms) {
            return;
        }
        let (path, authority) = match &discovery.source {
            DiscoverySource::EnvoyAdmin { .. } => ("/clusters?format=json", "envoy-admin"),
            DiscoverySource::Registry { path, authority, .. } => {
                (path.as_str(), authority.as_deref().unwrap_or(discovery.cluster.as_str()))
            }
        };
        let headers = [(":method", "GET"), (":path", path), (":authority", authority)];
        let timeout = discovery.interval_ms.clamp(100, 5000) as u32;
        match hostcalls::dispatch_http_call(&discovery.cluster, &headers, timeout) {
            Ok(token) => {
                self.polls.push(token);
            }
            Err(e) => self.poll_failed(&format!("cannot call cluster {}: {e:?}", discovery.cluster)),
        }
    }

    fn poll_failed(&self, why: &str) {
        self.metrics.poll_failed();
        warn!("session-router: discovery poll failed, keeping the last good membership: {why}");
    }

    fn on_poll_response(&mut self, body_size: usize) {
        let Some(base) = self.base.clone() else { return };
        let Some(discovery) = &base.discovery else { return };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        if status.as_deref() != Some("200") {
            return self
                .poll_failed(&format!("status {}", status.as_deref().unwrap_or("none (timeout or reset)")));
        }
        if body_size > MAX_BODY_BYTES {
            return self.poll_failed(&format!("answer of {body_size} bytes is over {MAX_BODY_BYTES}"));
        }
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten();
        let mut seeds = Vec::with_capacity(base.hosts.len());
        for h in &base.hosts {
            seeds.push(HostSpec {
                address: h.address.to_string(),
                id: Some(h.id.clone()),
                weight: None,
                drain: false,
            });
        }
        let body = body.unwrap_or_default();
        let admission = &discovery.admission;
        let parsed = match &discovery.source {
            DiscoverySource::EnvoyAdmin { target_cluster } => {
                discovery::read_envoy_clusters(&body, target_cluster, &seeds, admission)
            }
            DiscoverySource::Registry { format: RegistryFormat::Consul, .. } => {
                discovery::read_consul(&body, &seeds, admission)
            }
        };
        // Entries left out (allow-list, bad entries, id collisions): counted and logged once each.
        let parsed = parsed.map(|answer| {
            super::skipped::report(&answer.skipped);
            answer.hosts
        });
        // The same answer as the membership in use: nothing to validate, rebuild or publish.
        if let Ok(hosts) = &parsed
            && self.applied_hosts.as_ref() == Some(hosts)
        {
            return;
        }
        let Some(keys) = self.keys.clone() else { return };
        // Compiled once: the config that validates the answer is the one this worker applies.
        let built = parsed.and_then(|hosts| {
            let config = match &self.config {
                Some(current) => base.with_hosts_after(hosts.clone(), current),
                None => base.with_hosts(hosts.clone()),
            };
            config.map(|c| (hosts, c)).map_err(|e| discovery::DiscoveryError(e.to_string()))
        });
        let (hosts, config) = match built {
            Ok(built) => built,
            Err(e) => return self.poll_failed(&e.0),
        };
        if let Some((next, previous)) = shared::publish_membership(&keys, hosts) {
            let (added, removed) = previous.diff(&next.hosts);
            info!(
                "session-router: membership generation {}: {} hosts, added [{}], removed [{}]",
                next.generation,
                next.hosts.len(),
                added.join(", "),
                removed.join(", ")
            );
            if next.generation > self.generation {
                self.metrics.membership(next.generation, config.hosts.len());
                self.set_config(Rc::new(config));
                self.generation = next.generation;
                self.applied_hosts = Some(next.hosts);
            }
        }
    }

    fn send_probes(&mut self, cfg: &Config, now: Now) {
        let Some(active) = &cfg.health.active else { return };
        if !self.probe_every.due(now, active.interval_ms) {
            return;
        }
        let timeout = u32::try_from(active.timeout_ms).unwrap_or(u32::MAX);
        for host in &cfg.hosts {
            // Plain ip:port, whatever the target encoding: what the probe cluster reads.
            let (header, address) = active.probe_header(host);
            let authority = active.authority.as_deref().unwrap_or(&address);
            let headers = [
                (":method", "GET"),
                (":path", active.path.as_str()),
                (":authority", authority),
                (header, address.as_str()),
                ("user-agent", "session-router-probe"),
            ];
            match hostcalls::dispatch_http_call(&active.cluster, &headers, timeout) {
                Ok(token) => {
                    self.probes.sent(token, &host.id);
                    self.metrics.probe_sent();
                }
                Err(e) => {
                    warn!(
                        "session-router: cannot probe {} through cluster {}: {e:?}",
                        host.id, active.cluster
                    );
                    self.metrics.probe_failed();
                }
            }
        }
    }
}

impl Root {
    pub(super) fn on_configure(&mut self, size: usize) -> bool {
        super::follow_host_log_level();
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                error!("session-router: cannot read plugin configuration: {e:?}");
                return false;
            }
        };
        let config = match Config::parse(&bytes, super::env_var) {
            Ok(c) => c,
            Err(e) => {
                error!("session-router v{VERSION}: configuration rejected: {e}");
                return false;
            }
        };
        let sources: Vec<&str> = config.sources.iter().map(|s| s.kind()).collect();
        info!(
            "session-router v{VERSION}: {} hosts, placement {} ({} points), sources [{}], target {} ({:?}, {} fallbacks), sticky cookie {}, health {}",
            config.hosts.len(),
            config.algorithm.name(),
            config.placement.point_count(),
            sources.join(", "),
            config.target.header,
            config.target.encoding,
            config.target.fallbacks,
            config.sticky.as_ref().map_or("off", |s| s.name.as_str()),
            match (&config.health.passive, &config.health.active) {
                (None, None) => "off",
                (Some(_), None) => "passive",
                (None, Some(_)) => "active",
                (Some(_), Some(_)) => "passive+active",
            }
        );
        debug!("session-router: clocks: monotonic {} ms, wall {} ms", mono_ms(), super::now_ms());
        self.metrics = Metrics::define();
        // Ticks drive probes and polls (by whichever worker holds the lease) and, in every worker,
        // picking up a newly published membership within half a poll interval.
        let tick = tick_ms(&config).map_or(0, |ms| u32::try_from(ms).unwrap_or(u32::MAX));
        if let Err(e) = hostcalls::set_tick_period_ms(tick) {
            warn!("session-router: cannot set the tick period: {e:?}");
        }
        let plugin_name = property_string(&["plugin_name"]).unwrap_or_default();
        let root_id = property_string(&["plugin_root_id"]).unwrap_or_default();
        let keys = Rc::new(Keys::new(&plugin_name, &root_id, &config, &bytes));
        debug!(
            "session-router: plugin {plugin_name:?} root_id {root_id:?}: shared-data scope {}",
            keys.scope
        );
        shared::init(&keys);
        self.health.borrow_mut().set_keys(keys.clone());
        self.keys = Some(keys);
        let config = Rc::new(config);
        self.base = Some(config.clone());
        self.set_config(config);
        self.generation = 0;
        self.applied_hosts = None;
        // A reload keeps following the discovered membership, not the seed list.
        self.apply_membership();
        if let Some(cfg) = &self.config {
            self.metrics.membership(self.generation, cfg.hosts.len());
        }
        true
    }

    pub(super) fn on_tick(&mut self) {
        self.apply_membership();
        let (Some(base), Some(cfg)) = (self.base.clone(), self.config.clone()) else { return };
        let Some(keys) = self.keys.clone() else { return };
        let now = now();
        // Keeps an idle worker's view (and its healthy_hosts gauge) current too.
        if cfg.health.passive.is_some() || cfg.health.active.is_some() {
            let mut health = self.health.borrow_mut();
            if health.refresh(&cfg, self.config_epoch, now.mono_ms) {
                self.metrics.healthy_hosts(&cfg, health.down());
            }
        }
        let lease_ms = tick_ms(&base).unwrap_or(1000).saturating_mul(6);
        if !shared::hold_lease(&keys, self.lease_owner, now, lease_ms) {
            return;
        }
        self.poll_membership(&base, now);
        self.send_probes(&cfg, now);
        if (cfg.health.passive.is_some() || cfg.health.active.is_some())
            && let Some(entries) = shared::prune_table(&keys, &cfg)
        {
            self.metrics.table_entries(entries);
        }
    }

    /// A stream's context, with this root's current configuration and per-VM state.
    pub(super) fn new_http(&self) -> Http {
        Http {
            config: self.config.clone(),
            config_epoch: self.config_epoch,
            metrics: self.metrics,
            host_metrics: self.host_metrics.clone(),
            health: self.health.clone(),
            log_limit: self.log_limit.clone(),
            decision: None,
            in_flight: self.in_flight.clone(),
            counted: None,
        }
    }
}
