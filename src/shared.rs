//! Host glue for proxy-wasm shared data: the health table every worker VM reads and updates
//! with compare-and-swap, and the lease that elects one worker to send active probes.

use log::{debug, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::clock::{Lease, Now};
use crate::config::{Config, HostSpec};
use crate::discovery::Membership;
use crate::health::{Event, Table};

pub const HEALTH_KEY: &str = "session_router.health.v1";
const LEASE_KEY: &str = "session_router.lease.v1";
pub const MEMBERSHIP_KEY: &str = "session_router.membership.v1";
/// A contended update is retried this often, then dropped: never fail a request over it.
const CAS_RETRIES: usize = 8;

/// This worker's cached view of the shared health table.
#[derive(Default)]
pub struct HealthView {
    cas: Option<u32>,
    table: Table,
    /// Per host index, `true` = down; `None` = all may serve.
    down: Option<Vec<bool>>,
    /// When `down` must be recomputed even if the table did not change (an ejection ends).
    valid_until_ms: u64,
    /// The config `down` was computed for (host indices change with the config).
    config_epoch: u64,
}

impl HealthView {
    /// Refreshes from shared data (one host call; zero bytes while every host is healthy).
    /// Returns whether the set of down hosts was recomputed.
    pub fn refresh(&mut self, cfg: &Config, config_epoch: u64, now_ms: u64) -> bool {
        let (bytes, cas) = match hostcalls::get_shared_data(HEALTH_KEY) {
            Ok(r) => r,
            Err(e) => {
                debug!("session-router: cannot read health table: {e:?}");
                return false;
            }
        };
        if cas == self.cas && now_ms < self.valid_until_ms && self.config_epoch == config_epoch {
            return false;
        }
        self.table = Table::decode(bytes.as_deref().unwrap_or_default());
        self.cas = cas;
        self.down = self.table.down_hosts(cfg, now_ms);
        self.valid_until_ms = self.table.next_change_ms(now_ms);
        self.config_epoch = config_epoch;
        true
    }

    pub fn down(&self) -> Option<&[bool]> {
        self.down.as_deref()
    }

    pub fn table(&self) -> &Table {
        &self.table
    }
}

/// Applies `change` to the shared table with compare-and-swap, retrying on contention.
/// Returns the change's event, or `Event::None` if every attempt lost the race.
pub fn update_table(change: impl Fn(&mut Table) -> Event) -> Event {
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = match hostcalls::get_shared_data(HEALTH_KEY) {
            Ok(r) => r,
            Err(e) => {
                warn!("session-router: cannot read health table: {e:?}");
                return Event::None;
            }
        };
        let mut table = Table::decode(bytes.as_deref().unwrap_or_default());
        let before = table.clone();
        let event = change(&mut table);
        if table == before {
            return event;
        }
        match hostcalls::set_shared_data(HEALTH_KEY, Some(&table.encode()), cas) {
            Ok(()) => return event,
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                warn!("session-router: cannot write health table: {e:?}");
                return Event::None;
            }
        }
    }
    debug!("session-router: health update dropped after {CAS_RETRIES} contended attempts");
    Event::None
}

/// Drops the entries of hosts that left the membership (`cfg` is the lease holder's current
/// one), so the table stays bounded through rolling deploys. Returns the table's size after.
pub fn prune_table(cfg: &Config) -> Option<usize> {
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = hostcalls::get_shared_data(HEALTH_KEY).ok()?;
        let mut table = Table::decode(bytes.as_deref().unwrap_or_default());
        let dropped = table.retain_members(cfg);
        if dropped == 0 {
            return Some(table.len());
        }
        match hostcalls::set_shared_data(HEALTH_KEY, Some(&table.encode()), cas) {
            Ok(()) => {
                debug!("session-router: health table: {dropped} entries of departed hosts dropped");
                return Some(table.len());
            }
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                warn!("session-router: cannot write health table: {e:?}");
                return None;
            }
        }
    }
    None
}

/// Logs a health event once, from the worker that caused it.
pub fn log_event(cfg: &Config, host: usize, event: Event, now_ms: u64) {
    let Some(h) = cfg.hosts.get(host) else { return };
    match event {
        Event::Ejected { until_ms, failures } => warn!(
            "session-router: host {} ({}) ejected for {}s after {failures} consecutive failures",
            h.id,
            h.address,
            until_ms.saturating_sub(now_ms).div_ceil(1000)
        ),
        Event::EjectionRefused => {
            warn!(
                "session-router: host {} ({}) failing but not ejected: half the hosts are down",
                h.id, h.address
            )
        }
        Event::ProbeDown => warn!("session-router: host {} ({}) failed its health checks", h.id, h.address),
        Event::Recovered => info!("session-router: host {} ({}) recovered", h.id, h.address),
        Event::None => {}
    }
}

/// The membership published by the polling worker, if any.
pub fn read_membership() -> Option<(Membership, Option<u32>)> {
    let (bytes, cas) = hostcalls::get_shared_data(MEMBERSHIP_KEY).ok()?;
    Some((Membership::decode(&bytes?)?, cas))
}

/// Publishes `hosts` as the next generation unless they are what is published already.
/// Returns the new membership and the previous one, when it changed.
pub fn publish_membership(hosts: Vec<HostSpec>) -> Option<(Membership, Membership)> {
    for _ in 0..CAS_RETRIES {
        let (current, cas) = match hostcalls::get_shared_data(MEMBERSHIP_KEY) {
            Ok((bytes, cas)) => (bytes.as_deref().and_then(Membership::decode).unwrap_or_default(), cas),
            Err(e) => {
                warn!("session-router: cannot read membership: {e:?}");
                return None;
            }
        };
        if current.hosts == hosts {
            return None;
        }
        let next = Membership { generation: current.generation + 1, hosts: hosts.clone() };
        match hostcalls::set_shared_data(MEMBERSHIP_KEY, Some(&next.encode()), cas) {
            Ok(()) => return Some((next, current)),
            Err(Status::CasMismatch) => continue,
            Err(e) => {
                warn!("session-router: cannot publish membership: {e:?}");
                return None;
            }
        }
    }
    None
}

/// Takes or renews the lease (active probes, discovery polls) for `ttl_ms` of monotonic time;
/// true while this worker holds it, so N workers do not do N times the work.
pub fn hold_lease(owner: u64, now: Now, ttl_ms: u64) -> bool {
    let Ok((bytes, cas)) = hostcalls::get_shared_data(LEASE_KEY) else { return false };
    let current = bytes.as_deref().and_then(Lease::decode);
    let Some(next) = Lease::claim(current, owner, now, ttl_ms) else { return false };
    hostcalls::set_shared_data(LEASE_KEY, Some(&next.encode()), cas).is_ok()
}
