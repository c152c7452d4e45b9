//! The filter's metrics (README "Metrics" lists them): defined once per VM; Envoy shares a
//! metric across workers by name and files it under `wasmcustom.`.

use super::host::{self as hostcalls, MetricType};
use log::warn;

use crate::config::Config;
use crate::health::Event;
use crate::metric_names::{MAX_HOST_COUNTERS, host_metric_names};
use crate::router::{Decision, Kind};

const UNDEFINED: u32 = u32::MAX;

#[derive(Clone, Copy)]
pub struct Metrics {
    pinned: u32,
    hashed: u32,
    new: u32,
    failover: u32,
    cookies_issued: u32,
    cookies_rejected: u32,
    jwt_rejected: u32,
    input_rejected: u32,
    ejections: u32,
    recoveries: u32,
    probes_sent: u32,
    probes_failed: u32,
    healthy_hosts: u32,
    generation: u32,
    hosts: u32,
    polls_failed: u32,
    spilled: u32,
    spill_in_flight: u32,
    table_entries: u32,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            pinned: UNDEFINED,
            hashed: UNDEFINED,
            new: UNDEFINED,
            failover: UNDEFINED,
            cookies_issued: UNDEFINED,
            cookies_rejected: UNDEFINED,
            jwt_rejected: UNDEFINED,
            input_rejected: UNDEFINED,
            ejections: UNDEFINED,
            recoveries: UNDEFINED,
            probes_sent: UNDEFINED,
            probes_failed: UNDEFINED,
            healthy_hosts: UNDEFINED,
            generation: UNDEFINED,
            hosts: UNDEFINED,
            polls_failed: UNDEFINED,
            spilled: UNDEFINED,
            spill_in_flight: UNDEFINED,
            table_entries: UNDEFINED,
        }
    }
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or_else(|e| {
        warn!("session-router: cannot define metric {name}: {e:?}");
        UNDEFINED
    })
}

fn add(id: u32, n: u64) {
    if id != UNDEFINED && n > 0 {
        let _ = hostcalls::increment_metric(id, n as i64);
    }
}

impl Metrics {
    pub fn define() -> Metrics {
        let counter = |name| define(MetricType::Counter, name);
        Metrics {
            pinned: counter("session_router.decision.pinned"),
            hashed: counter("session_router.decision.hashed"),
            new: counter("session_router.decision.new"),
            failover: counter("session_router.decision.failover"),
            cookies_issued: counter("session_router.cookie.issued"),
            cookies_rejected: counter("session_router.cookie.rejected"),
            jwt_rejected: counter("session_router.jwt.rejected"),
            input_rejected: counter("session_router.input.rejected"),
            ejections: counter("session_router.health.ejections"),
            recoveries: counter("session_router.health.recoveries"),
            probes_sent: counter("session_router.health.probes_sent"),
            probes_failed: counter("session_router.health.probes_failed"),
            healthy_hosts: define(MetricType::Gauge, "session_router.health.healthy_hosts"),
            generation: define(MetricType::Gauge, "session_router.membership.generation"),
            hosts: define(MetricType::Gauge, "session_router.membership.hosts"),
            polls_failed: counter("session_router.membership.polls_failed"),
            spilled: counter("session_router.bounded_load.spilled"),
            spill_in_flight: define(MetricType::Gauge, "session_router.bounded_load.in_flight"),
            table_entries: define(MetricType::Gauge, "session_router.health.table_entries"),
        }
    }

    pub fn record(&self, d: &Decision) {
        let kind = match d.kind {
            Kind::Pinned => self.pinned,
            Kind::Failover => self.failover,
            Kind::Hashed(_) => self.hashed,
            Kind::New => self.new,
        };
        add(kind, 1);
        add(self.cookies_rejected, u64::from(d.rejected.cookie.is_some()));
        add(self.jwt_rejected, u64::from(d.rejected.jwt.is_some()));
        add(self.input_rejected, u64::from(d.rejected.other));
    }

    pub fn cookie_issued(&self) {
        add(self.cookies_issued, 1);
    }

    pub fn probe_sent(&self) {
        add(self.probes_sent, 1);
    }

    pub fn probe_failed(&self) {
        add(self.probes_failed, 1);
    }

    pub fn health_event(&self, event: Event) {
        match event {
            Event::Ejected { .. } | Event::ProbeDown => add(self.ejections, 1),
            Event::Recovered => add(self.recoveries, 1),
            Event::EjectionRefused | Event::None => {}
        }
    }

    /// Hosts that may serve, as this worker last saw them.
    pub fn healthy_hosts(&self, cfg: &Config, down: Option<&[bool]>) {
        if self.healthy_hosts != UNDEFINED {
            let down = down.map_or(0, |d| d.iter().filter(|&&d| d).count());
            let _ = hostcalls::record_metric(self.healthy_hosts, (cfg.hosts.len() - down) as u64);
        }
    }

    /// A new binding spilled past its first choice; `in_flight` is the worker's load the bound saw.
    pub fn spilled(&self, in_flight: u64) {
        add(self.spilled, 1);
        if self.spill_in_flight != UNDEFINED {
            let _ = hostcalls::record_metric(self.spill_in_flight, in_flight);
        }
    }

    /// Entries of the shared health table, as the lease holder last saw it after pruning.
    pub fn table_entries(&self, n: usize) {
        if self.table_entries != UNDEFINED {
            let _ = hostcalls::record_metric(self.table_entries, n as u64);
        }
    }

    pub fn poll_failed(&self) {
        add(self.polls_failed, 1);
    }

    /// The membership generation this worker routes with, and its host count.
    pub fn membership(&self, generation: u64, hosts: usize) {
        for (id, value) in [(self.generation, generation), (self.hosts, hosts as u64)] {
            if id != UNDEFINED {
                let _ = hostcalls::record_metric(id, value);
            }
        }
    }
}

/// Per-host counters, `session_router.host.<id>.routed`: the id with every character outside
/// `[A-Za-z0-9_-]` replaced by `_`, so one `stats_tags` rule can turn it into a label (README).
#[derive(Default)]
pub struct HostMetrics {
    routed: Vec<u32>,
    /// `session_router.host.<id>.spilled`: new bindings bounded load moved off this host.
    spilled: Vec<u32>,
}

thread_local! {
    /// Names this VM has defined, with their ids (a wasm VM is single-threaded).
    static DEFINED: std::cell::RefCell<std::collections::HashMap<String, u32>> = Default::default();
}

/// The per-host counter `name`, defined once per VM, at most [`MAX_HOST_COUNTERS`] of them.
fn defined_counter(name: String) -> u32 {
    DEFINED.with(|defined| {
        let mut defined = defined.borrow_mut();
        if let Some(&id) = defined.get(&name) {
            return id;
        }
        if defined.len() >= MAX_HOST_COUNTERS {
            if defined.len() == MAX_HOST_COUNTERS {
                warn!(
                    "session-router: {MAX_HOST_COUNTERS} per-host counters defined; hosts new from now on are not counted per host"
                );
                defined.insert(String::new(), UNDEFINED);
            }
            return UNDEFINED;
        }
        let id = define(MetricType::Counter, &name);
        defined.insert(name, id);
        id
    })
}

impl HostMetrics {
    pub fn define(cfg: &Config) -> HostMetrics {
        let ids: Vec<&str> = cfg.hosts.iter().map(|h| h.id.as_str()).collect();
        let names = host_metric_names(&ids);
        let (mut routed, mut spilled) = (Vec::with_capacity(names.len()), Vec::new());
        for name in names {
            if cfg.bounded_load.is_some() {
                spilled.push(defined_counter(format!(
                    "{}.spilled",
                    name.strip_suffix(".routed").unwrap_or(&name)
                )));
            }
            routed.push(defined_counter(name));
        }
        HostMetrics { routed, spilled }
    }

    pub fn routed(&self, host: usize) {
        add(self.routed.get(host).copied().unwrap_or(UNDEFINED), 1);
    }

    pub fn spilled(&self, host: usize) {
        add(self.spilled.get(host).copied().unwrap_or(UNDEFINED), 1);
    }
}
