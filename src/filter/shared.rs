//! Host glue for proxy-wasm shared data: the health table every worker VM reads and updates
//! with compare-and-swap, the published membership, and the lease that elects one worker to
//! send active probes and discovery polls. Every key and record is scoped to one filter
//! configuration ([`crate::scope`]).
//!
//! Envoy's shared data has no "create if absent": a write with CAS 0 (what proxy-wasm sends
//! for a missing key) is unconditional, so two workers that both find a key missing would both
//! win. Keys are therefore created empty when a configuration is applied ([`init`]), before
//! traffic, and writers never put data into a missing key: they create it empty and retry with
//! the CAS value that gives them.

use std::rc::Rc;

use super::host::{self as hostcalls, Status};
use log::{debug, info, warn};

use crate::clock::{Lease, Now};
use crate::config::{Config, HostSpec};
use crate::discovery::Membership;
use crate::health::{Event, Table};
use crate::scope::Keys;

/// A contended update is retried this often, then dropped: never fail a request over it.
const CAS_RETRIES: usize = 8;

/// Reads `key`: its record (when it carries this scope's tag, else empty) and its CAS value.
/// `Ok(None)` when the key does not exist yet.
fn read(keys: &Keys, key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let (bytes, cas) = hostcalls::get_shared_data(key)?;
    let Some(cas) = cas else { return Ok(None) };
    let record = bytes.as_deref().and_then(|b| keys.open(b)).map(<[u8]>::to_vec).unwrap_or_default();
    Ok(Some((record, cas)))
}

/// Creates `key` holding an empty record of this scope, if it does not exist.
fn create(keys: &Keys, key: &str) {
    if let Ok((_, None)) = hostcalls::get_shared_data(key)
        && let Err(e) = hostcalls::set_shared_data(key, Some(&keys.seal(b"")), None)
    {
        warn!("session-router: cannot create shared data {key}: {e:?}");
    }
}

/// Creates this configuration's keys (empty) so later writes are compare-and-swap.
pub fn init(keys: &Keys) {
    for key in [&keys.health, &keys.membership, &keys.generation, &keys.lease] {
        create(keys, key);
    }
    signal_health_changed(keys);
}

/// Bumps the compare-and-swap value of `keys.health_changed` (an empty value, written
/// unconditionally: only its CAS value carries meaning). A VM of an older release sharing these
/// keys (a rolling plugin upgrade) writes the table without it: workers of this release then see
/// those writes on their next tick, when the table itself is read.
fn signal_health_changed(keys: &Keys) {
    if let Err(e) = hostcalls::set_shared_data(&keys.health_changed, None, None) {
        warn!("session-router: cannot signal a health table change: {e:?}");
    }
}

/// The CAS value of `keys.health_changed`: one host call that copies no data into the VM.
/// `None` when the key does not exist or the host answers with an error (the caller then reads
/// the table itself).
fn health_signal(keys: &Keys) -> Option<u32> {
    match hostcalls::get_shared_data(&keys.health_changed) {
        Ok((_, cas)) => cas,
        Err(_) => None,
    }
}

/// Writes `record` to `key` if it still has CAS value `cas`; a write of the health table is
/// then signalled to every worker through `keys.health_changed`.
fn write(keys: &Keys, key: &str, record: &[u8], cas: u32) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(&keys.seal(record)), Some(cas))?;
    if key == keys.health {
        signal_health_changed(keys);
    }
    Ok(())
}

/// This worker's cached view of the shared health table.
#[derive(Default)]
pub struct HealthView {
    /// The keys of the configuration in use (set by the root context on configure).
    keys: Option<Rc<Keys>>,
    cas: Option<u32>,
    /// The `health_changed` CAS value seen just before the table was last read; `None` until
    /// the table has been read (or when the signal cannot be read: then every refresh reads it).
    signal: Option<u32>,
    table: Table,
    /// Per host index, `true` = down; `None` = all may serve.
    down: Option<Vec<bool>>,
    /// When `down` must be recomputed even if the table did not change (an ejection ends).
    valid_until_ms: u64,
    /// The config `down` was computed for (host indices change with the config).
    config_epoch: u64,
}

impl HealthView {
    /// Refreshes from the shared table itself (the tick's case: a safety net that does not
    /// depend on the change signal). Returns whether the set of down hosts was recomputed.
    pub fn refresh(&mut self, cfg: &Config, config_epoch: u64, now_ms: u64) -> bool {
        self.signal = None;
        self.refresh_with(cfg, config_epoch, || now_ms)
    }

    /// The request path's refresh, on every request so an ejection by any worker applies to the
    /// next request everywhere: one host call that copies nothing into the VM (the change
    /// signal's CAS value) while the table is unchanged, the table itself only after a write.
    /// The clock is read only when the answer depends on it: the table changed, or an ejection
    /// in it may have ended.
    pub fn refresh_with(&mut self, cfg: &Config, config_epoch: u64, now_ms: impl FnOnce() -> u64) -> bool {
        let Some(keys) = self.keys.clone() else { return false };
        // Read before the table: a write after this read is seen by the next refresh.
        let signal = health_signal(&keys);
        if signal.is_some() && signal == self.signal && self.config_epoch == config_epoch {
            if self.valid_until_ms == u64::MAX {
                return false;
            }
            let now_ms = now_ms();
            if now_ms < self.valid_until_ms {
                return false;
            }
            self.down = self.table.down_hosts(cfg, now_ms);
            self.valid_until_ms = self.table.next_change_ms(now_ms);
            return true;
        }
        let (record, cas) = match read(&keys, &keys.health) {
            Ok(Some((record, cas))) => (record, Some(cas)),
            Ok(None) => (Vec::new(), None),
            Err(e) => {
                debug!("session-router: cannot read health table: {e:?}");
                return false;
            }
        };
        self.signal = signal;
        let same = cas == self.cas && self.config_epoch == config_epoch;
        if same && self.valid_until_ms == u64::MAX {
            return false;
        }
        let now_ms = now_ms();
        if same && now_ms < self.valid_until_ms {
            return false;
        }
        self.table = Table::decode(&record);
        self.cas = cas;
        self.down = self.table.down_hosts(cfg, now_ms);
        self.valid_until_ms = self.table.next_change_ms(now_ms);
        self.config_epoch = config_epoch;
        true
    }

    /// Switches to another configuration's keys (its cached table is dropped).
    pub fn set_keys(&mut self, keys: Rc<Keys>) {
        *self = HealthView { keys: Some(keys), ..HealthView::default() };
    }

    pub fn keys(&self) -> Option<Rc<Keys>> {
        self.keys.clone()
    }

    pub fn down(&self) -> Option<&[bool]> {
        self.down.as_deref()
    }

    pub fn table(&self) -> &Table {
        &self.table
    }
}

/// What a compare-and-swap update does with the record it read.
enum Step<T> {
    /// Nothing to write; the update is done.
    Keep(T),
    /// Write this record (if no other writer got there first).
    Write(Vec<u8>, T),
}

/// The one read-modify-write of a shared-data `key`: reads it (creating it when absent), lets
/// `change` decide from the current record, writes with compare-and-swap and retries when
/// another worker wrote in between. `None`: reading or writing failed, or every attempt lost.
fn cas_update<T>(keys: &Keys, key: &str, what: &str, mut change: impl FnMut(&[u8]) -> Step<T>) -> Option<T> {
    for _ in 0..CAS_RETRIES {
        let (record, cas) = match read(keys, key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                create(keys, key);
                continue;
            }
            Err(e) => {
                warn!("session-router: cannot read {what}: {e:?}");
                return None;
            }
        };
        match change(&record) {
            Step::Keep(done) => return Some(done),
            Step::Write(next, done) => match write(keys, key, &next, cas) {
                Ok(()) => return Some(done),
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    warn!("session-router: cannot write {what}: {e:?}");
                    return None;
                }
            },
        }
    }
    debug!("session-router: {what} update dropped after {CAS_RETRIES} contended attempts");
    None
}

/// Applies `change` to the shared table. Returns the change's event, or `Event::None` if the
/// update could not be written.
pub fn update_table(keys: &Keys, change: impl Fn(&mut Table) -> Event) -> Event {
    cas_update(keys, &keys.health, "health table", |record| {
        let mut table = Table::decode(record);
        let before = table.clone();
        let event = change(&mut table);
        if table == before { Step::Keep(event) } else { Step::Write(table.encode(), event) }
    })
    .unwrap_or(Event::None)
}

/// Drops the entries of hosts that left the membership (`cfg` is the lease holder's current
/// one), so the table stays bounded through rolling deploys. Returns the table's size after.
pub fn prune_table(keys: &Keys, cfg: &Config) -> Option<usize> {
    let (len, dropped) = cas_update(keys, &keys.health, "health table", |record| {
        let mut table = Table::decode(record);
        let dropped = table.retain_members(cfg);
        if dropped == 0 {
            Step::Keep((table.len(), 0))
        } else {
            Step::Write(table.encode(), (table.len(), dropped))
        }
    })?;
    if dropped > 0 {
        debug!("session-router: health table: {dropped} entries of departed hosts dropped");
    }
    Some(len)
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

/// The generation of the published membership (0: none yet), read from its own small key so
/// a worker's tick does not copy and decode the whole host list to compare it.
pub fn read_generation(keys: &Keys) -> u64 {
    read(keys, &keys.generation)
        .ok()
        .flatten()
        .and_then(|(record, _)| std::str::from_utf8(&record).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// The membership published by the polling worker, if any.
pub fn read_membership(keys: &Keys) -> Option<Membership> {
    let (record, _) = read(keys, &keys.membership).ok()??;
    Membership::decode(&record)
}

/// Publishes `hosts` as the next generation unless they are what is published already.
/// Returns the new membership and the previous one, when it changed.
pub fn publish_membership(keys: &Keys, hosts: Vec<HostSpec>) -> Option<(Membership, Membership)> {
    let changed = cas_update(keys, &keys.membership, "membership", |record| {
        let current = Membership::decode(record).unwrap_or_default();
        if current.hosts == hosts {
            return Step::Keep(None);
        }
        let next = Membership { generation: current.generation + 1, hosts: hosts.clone() };
        Step::Write(next.encode(), Some((next, current)))
    })??;
    publish_generation(keys, changed.0.generation);
    Some(changed)
}

/// Raises the generation key to `generation` (never lowers it: a slower publisher of an older
/// generation must not hide a newer one).
fn publish_generation(keys: &Keys, generation: u64) {
    cas_update(keys, &keys.generation, "generation", |record| {
        let current: u64 = std::str::from_utf8(record).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if current >= generation {
            Step::Keep(())
        } else {
            Step::Write(generation.to_string().into_bytes(), ())
        }
    });
}

/// Takes or renews the lease (active probes, discovery polls) for `ttl_ms` of monotonic time;
/// true while this worker holds it, so N workers do not do N times the work.
pub fn hold_lease(keys: &Keys, owner: u64, now: Now, ttl_ms: u64) -> bool {
    let Ok(Some((record, cas))) = read(keys, &keys.lease) else {
        create(keys, &keys.lease);
        return false;
    };
    let Some(next) = Lease::claim(Lease::decode(&record), owner, now, ttl_ms) else { return false };
    write(keys, &keys.lease, &next.encode(), cas).is_ok()
}
