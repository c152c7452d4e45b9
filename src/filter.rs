//! proxy-wasm glue: reads what the core asks for, calls it, applies its decision.
//! Host calls go through `proxy_wasm::hostcalls` so an error is handled, never unwrapped.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

use crate::config::{Config, DiscoverySource, HostSpec, RegistryFormat};
use crate::discovery::{self, MAX_BODY_BYTES};
use crate::health::flags;
use crate::metrics::Metrics;
use crate::murmur3::murmur3_x64_128;
use crate::router::{self, AllUp, Decision, RequestView};
use crate::shared::{self, HealthView};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits from the host (WASI `random_get`). Should that ever fail, a hash of the
/// time and a counter still gives a unique, well-spread id; it is logged.
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut id) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        warn!("session-router: random source failed ({e}); deriving a session id");
        let seed = [now_ms().to_le_bytes(), COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes()].concat();
        let (a, b) = murmur3_x64_128(&seed, 0);
        id[..8].copy_from_slice(&a.to_le_bytes());
        id[8..].copy_from_slice(&b.to_le_bytes());
    }
    id
}

/// The tick period: the shortest of the probe interval and half the poll interval.
fn tick_ms(cfg: &Config) -> Option<u64> {
    let probe = cfg.health.active.as_ref().map(|a| a.interval_ms);
    let poll = cfg.discovery.as_ref().map(|d| d.interval_ms / 2);
    probe.into_iter().chain(poll).min().map(|ms| ms.max(50))
}

fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn property_string(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

pub struct Root {
    /// The plugin configuration as pushed, with its static hosts (the seed and fallback).
    base: Option<Rc<Config>>,
    /// What requests use: `base`, or `base` over the discovered membership.
    config: Option<Rc<Config>>,
    /// Bumped whenever `config` changes, so cached per-host state is recomputed.
    config_epoch: u64,
    /// Membership generation applied to `config` (0: the static hosts).
    generation: u64,
    metrics: Metrics,
    health: Rc<RefCell<HealthView>>,
    /// Identifies this VM in the lease.
    lease_owner: u64,
    /// In-flight probes: call token → host index.
    probes: HashMap<u32, usize>,
    /// In-flight discovery polls.
    polls: HashSet<u32>,
    next_probe_ms: u64,
    next_poll_ms: u64,
}

impl Default for Root {
    fn default() -> Root {
        let id = random_id();
        Root {
            base: None,
            config: None,
            config_epoch: 0,
            generation: 0,
            metrics: Metrics::default(),
            health: Rc::default(),
            lease_owner: u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]]),
            probes: HashMap::new(),
            polls: HashSet::new(),
            next_probe_ms: 0,
            next_poll_ms: 0,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if self.polls.remove(&token) {
            self.on_poll_response(body_size);
            return;
        }
        let Some(host) = self.probes.remove(&token) else { return };
        let (Some(cfg), Some(active)) =
            (self.config.clone(), self.config.as_ref().and_then(|c| c.health.active.clone()))
        else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
        let ok = status.as_deref().is_some_and(|s| s.starts_with('2'));
        if !ok {
            self.metrics.probe_failed();
            debug!("session-router: probe of host {host} failed: status {status:?}");
        }
        let Some(id) = cfg.hosts.get(host).map(|h| h.id.clone()) else { return };
        let event = shared::update_table(|t| t.record_probe(&id, ok, &active.thresholds));
        self.metrics.health_event(event);
        shared::log_event(&cfg, host, event, now_ms());
    }
}

impl Root {
    fn set_config(&mut self, config: Config) {
        self.config = Some(Rc::new(config));
        self.config_epoch += 1;
    }

    /// Switches to the membership the polling worker published, if it is newer than ours.
    fn apply_membership(&mut self) {
        let Some(base) = self.base.clone().filter(|b| b.discovery.is_some()) else { return };
        let Some((membership, _)) = shared::read_membership() else { return };
        if membership.generation == self.generation {
            return;
        }
        match base.with_hosts(membership.hosts) {
            Ok(config) => {
                self.metrics.membership(membership.generation, config.hosts.len());
                self.set_config(config);
                self.generation = membership.generation;
            }
            Err(e) => {
                warn!("session-router: membership generation {} not applied: {e}", membership.generation);
                self.generation = membership.generation;
            }
        }
    }

    fn poll_membership(&mut self, base: &Config, now: u64) {
        let Some(discovery) = &base.discovery else { return };
        if now < self.next_poll_ms {
            return;
        }
        self.next_poll_ms = now + discovery.interval_ms;
        let (path, authority) = match &discovery.source {
            DiscoverySource::EnvoyAdmin { .. } => ("/clusters?format=json", "envoy-admin"),
            DiscoverySource::Registry { path, authority, .. } => {
                (path.as_str(), authority.as_deref().unwrap_or(discovery.cluster.as_str()))
            }
        };
        let headers = vec![(":method", "GET"), (":path", path), (":authority", authority)];
        let timeout = Duration::from_millis(discovery.interval_ms.clamp(100, 5000));
        match hostcalls::dispatch_http_call(&discovery.cluster, headers, None, vec![], timeout) {
            Ok(token) => {
                self.polls.insert(token);
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
        let seeds: Vec<HostSpec> = base
            .hosts
            .iter()
            .map(|h| HostSpec {
                address: h.address.to_string(),
                id: Some(h.id.clone()),
                weight: None,
                drain: false,
            })
            .collect();
        let body = body.unwrap_or_default();
        let parsed = match &discovery.source {
            DiscoverySource::EnvoyAdmin { target_cluster } => {
                discovery::parse_envoy_clusters(&body, target_cluster, &seeds)
            }
            DiscoverySource::Registry { format: RegistryFormat::Consul, .. } => {
                discovery::parse_consul(&body, &seeds)
            }
        };
        let hosts = match parsed.and_then(|hosts| match base.with_hosts(hosts.clone()) {
            Ok(_) => Ok(hosts),
            Err(e) => Err(discovery::DiscoveryError(e.to_string())),
        }) {
            Ok(hosts) => hosts,
            Err(e) => return self.poll_failed(&e.0),
        };
        if let Some((next, previous)) = shared::publish_membership(hosts) {
            let (added, removed) = previous.diff(&next.hosts);
            info!(
                "session-router: membership generation {}: {} hosts, added [{}], removed [{}]",
                next.generation,
                next.hosts.len(),
                added.join(", "),
                removed.join(", ")
            );
            self.apply_membership();
        }
    }

    fn send_probes(&mut self, cfg: &Config, now: u64) {
        let Some(active) = &cfg.health.active else { return };
        if now < self.next_probe_ms {
            return;
        }
        self.next_probe_ms = now + active.interval_ms;
        let timeout = Duration::from_millis(active.timeout_ms);
        for (i, host) in cfg.hosts.iter().enumerate() {
            let address = host.address.to_string();
            let authority = active.authority.as_deref().unwrap_or(&address);
            let headers = vec![
                (":method", "GET"),
                (":path", active.path.as_str()),
                (":authority", authority),
                (cfg.target.header.as_str(), host.header_value.as_str()),
                ("user-agent", "session-router-probe"),
            ];
            match hostcalls::dispatch_http_call(&active.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    self.probes.insert(token, i);
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

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                error!("session-router: cannot read plugin configuration: {e:?}");
                return false;
            }
        };
        let config = match Config::parse(&bytes, |var| std::env::var(var).ok()) {
            Ok(c) => c,
            Err(e) => {
                error!("session-router v{VERSION}: configuration rejected: {e}");
                return false;
            }
        };
        let sources: Vec<&str> = config.sources.iter().map(|s| s.kind()).collect();
        info!(
            "session-router v{VERSION}: {} hosts, {} ring points, sources [{}], target {} ({:?}, {} fallbacks), sticky cookie {}, health {}",
            config.hosts.len(),
            config.ring.point_count(),
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
        self.metrics = Metrics::define();
        // Ticks drive probes and polls (by whichever worker holds the lease) and, in every worker,
        // picking up a newly published membership within half a poll interval.
        let tick = tick_ms(&config).map_or(Duration::ZERO, Duration::from_millis);
        if let Err(e) = hostcalls::set_tick_period(tick) {
            warn!("session-router: cannot set the tick period: {e:?}");
        }
        let config = Rc::new(config);
        self.base = Some(config.clone());
        self.config = Some(config);
        self.config_epoch += 1;
        self.generation = 0;
        // A reload keeps following the discovered membership, not the seed list.
        self.apply_membership();
        if let Some(cfg) = &self.config {
            self.metrics.membership(self.generation, cfg.hosts.len());
        }
        true
    }

    fn on_tick(&mut self) {
        self.apply_membership();
        let (Some(base), Some(cfg)) = (self.base.clone(), self.config.clone()) else { return };
        let now = now_ms();
        let lease_ms = tick_ms(&base).unwrap_or(1000).saturating_mul(6);
        if !shared::hold_lease(self.lease_owner, now, lease_ms) {
            return;
        }
        self.poll_membership(&base, now);
        self.send_probes(&cfg, now);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
            config_epoch: self.config_epoch,
            metrics: self.metrics,
            health: self.health.clone(),
            decision: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: Option<Rc<Config>>,
    config_epoch: u64,
    metrics: Metrics,
    health: Rc<RefCell<HealthView>>,
    decision: Option<Decision>,
}

impl Context for Http {}

/// The request as the router sees it: every header pair, fetched in one host call.
struct Request {
    headers: Vec<(String, Vec<u8>)>,
}

impl RequestView for Request {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    fn source_address(&self) -> Option<String> {
        property_string(&["source", "address"])
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        let request =
            Request { headers: hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default() };
        #[cfg(feature = "fault-injection")]
        if request.header_values("x-session-router-test-fault").any(|v| v == b"panic") {
            #[allow(clippy::panic)]
            {
                panic!("fault injected by x-session-router-test-fault");
            }
        }
        let now = now_ms();
        let checks_health = cfg.health.passive.is_some() || cfg.health.active.is_some();
        let mut health = self.health.borrow_mut();
        if checks_health && health.refresh(&cfg, self.config_epoch, now) {
            self.metrics.healthy_hosts(&cfg, health.down());
        }
        let down = health.down();
        let (decision, value) = match down {
            Some(down) => {
                let d = router::decide(&cfg, &request, down, now / 1000, &mut random_id);
                let v = router::target_value(&cfg, &d, down);
                (d, v)
            }
            None => {
                let d = router::decide(&cfg, &request, &AllUp, now / 1000, &mut random_id);
                let v = router::target_value(&cfg, &d, &AllUp);
                (d, v)
            }
        };
        drop(health);
        // Replaces every client-supplied copy of the header.
        if let Err(e) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, &cfg.target.header, Some(&value))
        {
            error!("session-router: cannot set {}: {e:?}", cfg.target.header);
        }
        if let Some(why) = decision.rejected.cookie {
            debug!("session-router: sticky cookie ignored: {}", why.as_str());
        }
        if let Some(why) = decision.rejected.jwt {
            debug!("session-router: JWT ignored: {}", why.as_str());
        }
        self.metrics.record(&decision);
        self.decision = Some(decision);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(cookie) = self.decision.as_mut().and_then(|d| d.set_cookie.take()) else {
            return Action::Continue;
        };
        // No cookie on a reply Envoy made because no upstream answered: a dead backend must not
        // cause a storm of new sessions.
        if property_u64(&["response", "flags"]).is_some_and(|f| f & flags::HOST_FAILURE != 0) {
            return Action::Continue;
        }
        if let Err(e) = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie) {
            error!("session-router: cannot add set-cookie: {e:?}");
        } else {
            self.metrics.cookie_issued();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(cfg), Some(decision)) = (self.config.clone(), self.decision.take()) else { return };
        let Some(passive) = cfg.health.passive else { return };
        let served = property_string(&["upstream", "address"]).and_then(|a| cfg.host_by_address(&a));
        let response_flags = property_u64(&["response", "flags"]).unwrap_or(0);
        let now = now_ms();
        let n = cfg.hosts.len();
        let mut failed = Vec::with_capacity(2);
        match served {
            Some(host) if response_flags & flags::HOST_FAILURE != 0 => failed.push(host),
            Some(host) => {
                // Served by a later entry of the fallback list: the hosts before it failed.
                if host != decision.host && cfg.target.fallbacks > 0 {
                    failed.push(decision.host);
                }
                let id = &cfg.hosts[host].id;
                if self.health.borrow().table().success_changes(id, now, &passive) {
                    let event = shared::update_table(|t| t.record_success(id, now, &passive));
                    self.metrics.health_event(event);
                    shared::log_event(&cfg, host, event, now);
                }
            }
            None if response_flags & flags::HOST_FAILURE != 0 => failed.push(decision.host),
            None => {}
        }
        for host in failed {
            let Some(id) = cfg.hosts.get(host).map(|h| h.id.as_str()) else { continue };
            let event = shared::update_table(|t| t.record_failure(id, now, &passive, n));
            self.metrics.health_event(event);
            shared::log_event(&cfg, host, event, now);
        }
    }
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}
