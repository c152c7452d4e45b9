//! The HTTP context: routes each request and learns from its outcome.

use std::cell::RefCell;
use std::rc::Rc;

use log::{debug, error, info};

use super::host::{self as hostcalls, Action, MapType};

use super::headers;
use super::log_limit::LogLimit;
use super::metrics::{HostMetrics, Metrics};
use super::shared::{self, HealthView};
use super::{mono_ms, now_ms, property_string, property_u64, random_id};
use crate::config::{Config, Source};
use crate::outcome::flags;
use crate::router::{self, Decision, Kind};

pub(super) struct Http {
    pub(super) config: Option<Rc<Config>>,
    pub(super) config_epoch: u64,
    pub(super) metrics: Metrics,
    pub(super) host_metrics: Rc<HostMetrics>,
    pub(super) health: Rc<RefCell<HealthView>>,
    pub(super) log_limit: Rc<RefCell<LogLimit>>,
    pub(super) decision: Option<Decision>,
    /// This worker's requests in flight per host, for bounded load (empty when it is off).
    pub(super) in_flight: Rc<InFlight>,
    /// The host this request counts against in `in_flight`, until it ends.
    pub(super) counted: Option<usize>,
}

/// Requests in flight per host index, as this worker sees them, for one config generation: a
/// request ends against the table it started in, so host indices never mix across configs.
#[derive(Default)]
pub(super) struct InFlight {
    loads: RefCell<Vec<u64>>,
    total: std::cell::Cell<u64>,
}

impl InFlight {
    pub(super) fn new(hosts: usize) -> InFlight {
        InFlight { loads: RefCell::new(vec![0; hosts]), total: Default::default() }
    }

    fn start(&self, host: usize) -> Option<usize> {
        let mut loads = self.loads.borrow_mut();
        let load = loads.get_mut(host)?;
        *load += 1;
        self.total.set(self.total.get() + 1);
        Some(host)
    }

    fn end(&self, host: usize) {
        if let Some(load) = self.loads.borrow_mut().get_mut(host) {
            *load = load.saturating_sub(1);
            self.total.set(self.total.get().saturating_sub(1));
        }
    }
}

impl Drop for Http {
    /// Envoy deletes the context when the stream ends, however it ends (done, reset, aborted).
    fn drop(&mut self) {
        if let Some(host) = self.counted.take() {
            self.in_flight.end(host);
        }
    }
}

/// Cookies and bearer tokens carry times: only they need the wall clock on the request path.
fn uses_wall_clock(cfg: &Config) -> bool {
    cfg.sticky.is_some() || cfg.sources.iter().any(|s| matches!(s, Source::Jwt { .. }))
}

/// The downstream address, read from Envoy only when a `client_ip` source is reached.
fn source_address() -> Option<String> {
    property_string(&["source", "address"])
}

impl Http {
    /// Session lifecycle and bad input, at most `LOG_LINES_PER_SECOND` lines per worker: a flood
    /// of garbage cookies must not flood the log (the counters still count every one).
    fn log_decision(&self, cfg: &Config, d: &Decision) {
        let noteworthy = d.kind == Kind::New
            || d.kind == Kind::Failover
            || d.rejected.cookie.is_some()
            || d.rejected.jwt.is_some()
            || d.rejected.other > 0;
        if !noteworthy || !self.log_limit.borrow_mut().allow(now_ms()) {
            return;
        }
        let host = cfg.hosts.get(d.host).map_or("?", |h| h.id.as_str());
        match d.kind {
            Kind::Failover => info!("session-router: session moved to host {host}: its host is down or gone"),
            Kind::New => debug!("session-router: new session on host {host}"),
            Kind::Pinned | Kind::Hashed(_) => {}
        }
        if let Some(why) = d.rejected.cookie {
            debug!("session-router: sticky cookie ignored: {}", why.as_str());
        }
        if let Some(why) = d.rejected.jwt {
            debug!("session-router: bearer token ignored: {}", why.as_str());
        }
        if d.rejected.other > 0 {
            debug!("session-router: {} malformed or conflicting session keys ignored", d.rejected.other);
        }
    }
}

impl Http {
    /// Fails the request closed: a local 503, never forwarded with the client's target header.
    fn refuse(&self, why: &str) -> Action {
        if self.log_limit.borrow_mut().allow(now_ms()) {
            error!("session-router: request refused with 503, not forwarded: {why}");
        }
        let headers = [("content-type", "text/plain"), ("x-session-router", "refused")];
        if let Err(e) = hostcalls::send_http_response(503, &headers, b"session-router: cannot route\n") {
            error!("session-router: cannot answer 503: {e:?}");
        }
        Action::Pause
    }
}

impl Http {
    pub(super) fn on_request_headers(&mut self) -> Action {
        #[cfg(feature = "fault-injection")]
        let fault =
            hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-session-router-test-fault")
                .ok()
                .flatten();
        #[cfg(feature = "fault-injection")]
        if fault.as_deref() == Some(b"panic") {
            #[allow(clippy::panic)]
            {
                panic!("fault injected by x-session-router-test-fault");
            }
        }
        let config = self.config.clone();
        #[cfg(feature = "fault-injection")]
        let config = config.filter(|_| fault.as_deref() != Some(b"no-config"));
        // Fail closed: without a configuration the client's copy of the target header would be
        // forwarded as it is (with ORIGINAL_DST, to any address the client names).
        let Some(cfg) = config else {
            return self.refuse("no usable configuration");
        };
        let request = headers::request(&cfg, source_address);
        // The wall clock is read only when something signed or dated is read or written.
        let now = if uses_wall_clock(&cfg) { now_ms() } else { 0 };
        let checks_health = cfg.health.passive.is_some() || cfg.health.active.is_some();
        let mut health = self.health.borrow_mut();
        // Every request: another worker's ejection applies at once. The clock is read only when
        // the table changed or a known ejection may have ended.
        if checks_health && health.refresh_with(&cfg, self.config_epoch, mono_ms) {
            self.metrics.healthy_hosts(&cfg, health.down());
        }
        // No flags (nothing known to be down) means every host is up.
        let down = health.down().unwrap_or(&[]);
        let decision = if cfg.bounded_load.is_some() {
            let loads = self.in_flight.loads.borrow();
            router::decide_with_load(&cfg, &request, down, loads.as_slice(), now / 1000, &mut random_id)
        } else {
            router::decide(&cfg, &request, down, now / 1000, &mut random_id)
        };
        let value = router::target_value(&cfg, &decision, down);
        drop(health);
        // Replaces every client-supplied copy of the header.
        let set = hostcalls::set_map_value(MapType::HttpRequestHeaders, &cfg.target.header, Some(&value));
        #[cfg(feature = "fault-injection")]
        let set = if fault.as_deref() == Some(b"set-fails") {
            Err(hostcalls::Status::InternalFailure)
        } else {
            set
        };
        if let Err(e) = set {
            // Fail closed: remove the client's copy if possible, and answer 503 either way.
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &cfg.target.header, None);
            return self.refuse(&format!("cannot set {}: {e:?}", cfg.target.header));
        }
        self.log_decision(&cfg, &decision);
        self.metrics.record(&decision);
        self.host_metrics.routed(decision.host);
        if cfg.bounded_load.is_some() {
            if let Some(from) = decision.spilled_from {
                self.host_metrics.spilled(from);
                self.metrics.spilled(self.in_flight.total.get());
            }
            self.counted = self.in_flight.start(decision.host);
        }
        self.decision = Some(decision);
        Action::Continue
    }

    pub(super) fn on_response_headers(&mut self) -> Action {
        // No backend address leaves in a response: Envoy's header-based stateful session writes
        // base64(upstream) into the response under the target header whenever it served another
        // host than the one requested (every failover). Removed in every mode; the filter sees the
        // response after that extension as long as it comes before it in `http_filters`.
        if let Some(cfg) = &self.config
            && let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, &cfg.target.header, None)
        {
            error!("session-router: cannot remove {} from the response: {e:?}", cfg.target.header);
        }
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

    pub(super) fn on_log(&mut self) {
        let (Some(cfg), Some(decision)) = (self.config.clone(), self.decision.take()) else { return };
        let Some(passive) = cfg.health.passive else { return };
        let policy = cfg.health.eject_on;
        let response_flags = property_u64(&["response", "flags"]).unwrap_or(0);
        // The status is only read when 5xx answers count (`eject_on` lists "5xx").
        let status = if policy.status_5xx {
            property_u64(&["response", "code"]).and_then(|c| u32::try_from(c).ok())
        } else {
            None
        };
        let host_failed = policy.is_failure(response_flags, status);
        // A failure the policy does not count (a timeout by default) is no proof of life either.
        let uncounted_failure = !host_failed && response_flags & flags::ANY_LOCAL_REPLY != 0;
        let fallback_counts = policy.fallback && cfg.target.fallbacks > 0;
        // Each property read costs Envoy an expression evaluation: the upstream address is only
        // needed to attribute a failure, to spot a fallback that served, or to clear a record.
        let needs_host = host_failed || fallback_counts || !self.health.borrow().table().is_empty();
        if !needs_host || uncounted_failure {
            return;
        }
        let Some(keys) = self.health.borrow().keys() else { return };
        let served = property_string(&["upstream", "address"]).and_then(|a| cfg.host_by_address(&a));
        // The clock only when something is recorded or a record may change: not on the common
        // path (a success of a host the table has no record of), where it would be one more host
        // call.
        let clock = std::cell::OnceCell::new();
        let now = || *clock.get_or_init(mono_ms);
        let mut failed = Vec::with_capacity(2);
        match served {
            Some(host) if host_failed => failed.push(host),
            Some(host) => {
                // Served by a later entry of the fallback list: the hosts before it failed.
                if host != decision.host && fallback_counts {
                    failed.push(decision.host);
                }
                let id = &cfg.hosts[host].id;
                let table = self.health.borrow();
                if table.table().get(id).is_some() && table.table().success_changes(id, now(), &passive) {
                    drop(table);
                    let now = now();
                    let event = shared::update_table(&keys, |t| t.record_success(id, now, &passive));
                    self.metrics.health_event(event);
                    shared::log_event(&cfg, host, event, now);
                }
            }
            None if host_failed => failed.push(decision.host),
            None => {}
        }
        for host in failed {
            let Some(id) = cfg.hosts.get(host).map(|h| h.id.as_str()) else { continue };
            let now = now();
            let event = shared::update_table(&keys, |t| t.record_failure_in(id, now, &passive, &cfg));
            self.metrics.health_event(event);
            shared::log_event(&cfg, host, event, now);
        }
    }
}
