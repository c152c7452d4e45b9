//! Host health shared by every worker: passive outlier ejection from request outcomes and
//! optional active probes, kept as one small table in proxy-wasm shared data.
//!
//! The table lists only hosts with something to remember (failures, an ejection, probe state);
//! when every host is healthy it is empty, so the request path reads only the record's scope tag.
//! It is keyed by host id, so it survives config reloads that keep the membership source
//! ([`crate::scope`]); the lease holder drops the entries of hosts that left
//! ([`Table::retain_members`]), so it stays bounded by the membership. Times are monotonic
//! milliseconds ([`crate::clock`]). Encoding: one line per host,
//! `id \t failures \t ejected_until_ms \t ejections \t recovered \t probe_fails \t probe_oks \t probe_down \n`;
//! a line that does not parse is dropped (a bad table can cost memory of a failure, never a panic).

use crate::config::Config;
use crate::outcome::{Passive, ProbeThresholds};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// Consecutive host failures since the last success.
    pub failures: u32,
    /// End of the latest passive ejection (0: never ejected or forgotten).
    pub ejected_until_ms: u64,
    /// Ejections in a row, for the growing ejection time.
    pub ejections: u32,
    /// The latest ejection has been followed by a success (its recovery was reported).
    pub recovered: bool,
    pub probe_fails: u32,
    pub probe_oks: u32,
    pub probe_down: bool,
}

impl Entry {
    fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms > now_ms
    }

    fn is_down(&self, now_ms: u64) -> bool {
        self.is_ejected(now_ms) || self.probe_down
    }

    /// The ejection count is forgotten once the host has served for `max_ejection_ms` after it.
    fn may_forget_ejection(&self, now_ms: u64, policy: &Passive) -> bool {
        self.recovered && now_ms >= self.ejected_until_ms.saturating_add(policy.max_ejection_ms)
    }

    fn is_clean(&self) -> bool {
        self.failures == 0 && self.ejections == 0 && self.probe_fails == 0 && !self.probe_down
    }
}

/// What a change did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    /// Passively ejected until this time (ms), after this many failures in a row.
    Ejected {
        until_ms: u64,
        failures: u32,
    },
    /// Would have been ejected, but at most half the hosts may be down.
    EjectionRefused,
    /// Served (or answered a probe) again after an ejection or a failed probe streak.
    Recovered,
    /// Failed `unhealthy` probes in a row.
    ProbeDown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    entries: Vec<Entry>,
}

impl Table {
    pub fn decode(bytes: &[u8]) -> Table {
        // Line by line; a line that is not UTF-8 (the table is only ever written by
        // `encode`) is dropped like any other malformed line.
        let mut entries = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(entry) = std::str::from_utf8(line).ok().and_then(parse_line) {
                entries.push(entry);
            }
        }
        crate::order::sort_by(&mut entries, &|a, b| a.id.cmp(&b.id));
        entries.dedup_by(|a, b| a.id == b.id);
        Table { entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                e.id,
                e.failures,
                e.ejected_until_ms,
                e.ejections,
                u8::from(e.recovered),
                e.probe_fails,
                e.probe_oks,
                u8::from(e.probe_down)
            ));
        }
        out.into_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.position(id).ok().and_then(|i| self.entries.get(i))
    }

    fn position(&self, id: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.id.as_str().cmp(id))
    }

    fn update(&mut self, id: &str, f: impl FnOnce(&mut Entry) -> Event) -> Event {
        let i = match self.position(id) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, Entry { id: id.to_owned(), ..Entry::default() });
                i
            }
        };
        let Some(entry) = self.entries.get_mut(i) else {
            return Event::None;
        };
        let event = f(entry);
        if entry.is_clean() {
            self.entries.remove(i);
        }
        event
    }

    /// A request to host `id` failed at the host (see [`flags::HOST_FAILURE`]), with
    /// `host_count` hosts configured and every down entry of the table counted as one of them.
    /// Prefer [`Table::record_failure_in`], which counts only members.
    pub fn record_failure(&mut self, id: &str, now_ms: u64, policy: &Passive, host_count: usize) -> Event {
        let down = self.entries.iter().filter(|e| e.is_down(now_ms)).count();
        self.apply_failure(id, now_ms, policy, down, host_count)
    }

    /// Number of hosts the table remembers something about.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops the entries of hosts that are not in `cfg` (they left the membership): run by the
    /// lease holder, so the table stays bounded and departed hosts never count as down.
    /// Returns how many were dropped.
    pub fn retain_members(&mut self, cfg: &Config) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| cfg.host_by_id(&e.id).is_some());
        before - self.entries.len()
    }

    /// A request to host `id`, a member of `cfg`, failed at the host. Only members of `cfg`
    /// count toward the at-most-half rule: entries left behind by hosts that departed (a rolling
    /// deploy) never block an ejection.
    pub fn record_failure_in(&mut self, id: &str, now_ms: u64, policy: &Passive, cfg: &Config) -> Event {
        let down =
            self.entries.iter().filter(|e| e.is_down(now_ms) && cfg.host_by_id(&e.id).is_some()).count();
        self.apply_failure(id, now_ms, policy, down, cfg.hosts.len())
    }

    fn apply_failure(
        &mut self,
        id: &str,
        now_ms: u64,
        policy: &Passive,
        down: usize,
        host_count: usize,
    ) -> Event {
        self.update(id, |e| {
            if e.is_ejected(now_ms) {
                return Event::None;
            }
            // The count stops at the threshold: once an ejection is refused, further failures
            // change nothing (no shared-data write per failing request) and are reported once.
            let first_refusal = e.failures < policy.consecutive_failures;
            e.failures = e.failures.saturating_add(1).min(policy.consecutive_failures);
            if e.failures < policy.consecutive_failures {
                return Event::None;
            }
            if (down + 1) * 2 > host_count {
                return if first_refusal { Event::EjectionRefused } else { Event::None };
            }
            let failures = e.failures;
            // Grows with each ejection in a row, as Envoy's outlier detection does, up to the cap.
            let ms =
                policy.ejection_ms.saturating_mul(u64::from(e.ejections) + 1).min(policy.max_ejection_ms);
            e.ejected_until_ms = now_ms.saturating_add(ms);
            e.ejections = e.ejections.saturating_add(1);
            e.recovered = false;
            e.failures = 0;
            Event::Ejected { until_ms: e.ejected_until_ms, failures }
        })
    }

    /// Whether a success for `id` would change the table: callers skip the shared-data write
    /// when it would not, which is nearly always.
    pub fn success_changes(&self, id: &str, now_ms: u64, policy: &Passive) -> bool {
        self.get(id).is_some_and(|e| {
            e.is_clean()
                || e.failures > 0
                || (e.ejections > 0 && !e.recovered)
                || (e.ejections > 0 && e.may_forget_ejection(now_ms, policy))
        })
    }

    /// A request to host `id` succeeded.
    pub fn record_success(&mut self, id: &str, now_ms: u64, policy: &Passive) -> Event {
        if self.position(id).is_err() {
            return Event::None;
        }
        self.update(id, |e| {
            e.failures = 0;
            let mut event = Event::None;
            if e.ejections > 0 && !e.recovered {
                // A success is proof of life, even before the ejection time is up.
                e.ejected_until_ms = e.ejected_until_ms.min(now_ms);
                e.recovered = true;
                event = Event::Recovered;
            }
            if e.may_forget_ejection(now_ms, policy) {
                e.ejections = 0;
                e.ejected_until_ms = 0;
                e.recovered = false;
            }
            event
        })
    }

    /// An active probe of host `id` finished.
    pub fn record_probe(&mut self, id: &str, ok: bool, t: &ProbeThresholds) -> Event {
        if ok && self.position(id).is_err() {
            return Event::None;
        }
        self.update(id, |e| {
            if ok {
                e.probe_fails = 0;
                if !e.probe_down {
                    return Event::None;
                }
                e.probe_oks = e.probe_oks.saturating_add(1);
                if e.probe_oks < t.healthy {
                    return Event::None;
                }
                e.probe_down = false;
                e.probe_oks = 0;
                Event::Recovered
            } else {
                e.probe_oks = 0;
                e.probe_fails = e.probe_fails.saturating_add(1);
                if e.probe_down || e.probe_fails < t.unhealthy {
                    return Event::None;
                }
                e.probe_down = true;
                Event::ProbeDown
            }
        })
    }

    /// An active probe of host `id` finished, with `cfg` the membership now in use: the answer
    /// of a host that left since the probe was sent is dropped (it would only grow the table).
    pub fn record_probe_in(&mut self, id: &str, ok: bool, t: &ProbeThresholds, cfg: &Config) -> Event {
        if cfg.host_by_id(id).is_none() {
            return Event::None;
        }
        self.record_probe(id, ok, t)
    }

    /// The next time (ms) an ejection ends, after which `down_hosts` changes by itself.
    pub fn next_change_ms(&self, now_ms: u64) -> u64 {
        self.entries.iter().map(|e| e.ejected_until_ms).filter(|&t| t > now_ms).min().unwrap_or(u64::MAX)
    }

    /// Which of `cfg.hosts` are down now; `None` when all may serve. When more than half would be
    /// down, none is treated as down: routing as if all were healthy beats piling every session
    /// onto a few survivors because of a shared failure (or a broken health check).
    pub fn down_hosts(&self, cfg: &Config, now_ms: u64) -> Option<Vec<bool>> {
        let mut down = vec![false; cfg.hosts.len()];
        let mut count = 0;
        for e in self.entries.iter().filter(|e| e.is_down(now_ms)) {
            if let Some(i) = cfg.host_by_id(&e.id) {
                down[i] = true;
                count += 1;
            }
        }
        (count > 0 && count * 2 <= cfg.hosts.len()).then_some(down)
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split('\t');
    let entry = Entry {
        id: f.next().filter(|id| !id.is_empty())?.to_owned(),
        failures: f.next()?.parse().ok()?,
        ejected_until_ms: f.next()?.parse().ok()?,
        ejections: f.next()?.parse().ok()?,
        recovered: f.next()? == "1",
        probe_fails: f.next()?.parse().ok()?,
        probe_oks: f.next()?.parse().ok()?,
        probe_down: f.next()? == "1",
    };
    f.next().is_none().then_some(entry)
}

/// Active probes in flight, by the call token Envoy returned. Each remembers the *id* of the
/// host it probed, never an index into the host list: a membership change between the probe
/// and its answer (polls and probes go out in the same tick) shifts indices, not ids.
#[derive(Debug, Default)]
pub struct ProbesInFlight {
    /// (token, host id), in the order sent: answers mostly come back in that order, and there
    /// are at most as many as hosts.
    by_token: Vec<(u32, String)>,
    /// The highest token sent so far: a token above it is held by no probe.
    highest: Option<u32>,
}

impl ProbesInFlight {
    pub fn sent(&mut self, token: u32, id: &str) {
        // Envoy's tokens increase, so only one that does not is looked for among those held.
        if self.highest.replace(token.max(self.highest.unwrap_or(0))).is_some_and(|h| token <= h)
            && let Some(slot) = self.by_token.iter_mut().find(|(t, _)| *t == token)
        {
            slot.1 = id.to_owned();
            return;
        }
        self.by_token.push((token, id.to_owned()));
    }

    /// The id of the host the probe with this token went to; `None` if it is no probe of ours.
    pub fn answered(&mut self, token: u32) -> Option<String> {
        let at = self.by_token.iter().position(|(t, _)| *t == token)?;
        Some(self.by_token.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}
