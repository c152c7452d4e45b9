//! proxy-wasm glue: reads what the core asks for, calls it, applies its decision.
//! Host calls go through `proxy_wasm::hostcalls` so an error is handled, never unwrapped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

use crate::config::Config;
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

fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn property_string(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

pub struct Root {
    config: Option<Rc<Config>>,
    metrics: Metrics,
    health: Rc<RefCell<HealthView>>,
    /// Identifies this VM in the active-probe lease.
    lease_owner: u64,
    /// In-flight probes: call token → host index.
    probes: HashMap<u32, usize>,
}

impl Default for Root {
    fn default() -> Root {
        let id = random_id();
        Root {
            config: None,
            metrics: Metrics::default(),
            health: Rc::default(),
            lease_owner: u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]]),
            probes: HashMap::new(),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, _body: usize, _trailers: usize) {
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
    fn send_probes(&mut self, cfg: &Config) {
        let Some(active) = &cfg.health.active else { return };
        let now = now_ms();
        if !shared::hold_lease(self.lease_owner, now, active.interval_ms.saturating_mul(3)) {
            return;
        }
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
        let tick =
            config.health.active.as_ref().map_or(Duration::ZERO, |a| Duration::from_millis(a.interval_ms));
        if let Err(e) = hostcalls::set_tick_period(tick) {
            warn!("session-router: cannot set the probe interval: {e:?}");
        }
        self.config = Some(Rc::new(config));
        true
    }

    fn on_tick(&mut self) {
        if let Some(cfg) = self.config.clone() {
            self.send_probes(&cfg);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
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
        if checks_health && health.refresh(&cfg, now) {
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
