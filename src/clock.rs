//! Time as the filter uses it. Wall-clock time only where a timestamp leaves the process
//! (sticky cookies, JWT `exp`); a monotonic clock for everything that measures intervals and
//! is shared between workers: probe and poll schedules, the lease, ejections. An NTP step of the
//! wall clock then neither stalls probes and polls, nor stretches an ejection, nor keeps a dead
//! worker's lease alive.
//!
//! The monotonic clock is Envoy's (WASI `clock_time_get(MONOTONIC)`, which Envoy answers from
//! its steady clock, `CLOCK_MONOTONIC` on Linux): one clock for every worker VM of the process,
//! so a lease or ejection deadline written by one worker means the same instant to the others.
//! Shared data lives and dies with the process, so its records never outlive that clock.

/// One reading of both clocks, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix time: only for timestamps that leave the process.
    pub wall_ms: u64,
    /// Monotonic time (unspecified origin, shared by every worker of one Envoy).
    pub mono_ms: u64,
}

/// A periodic duty (probes, discovery polls), scheduled on the monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Every {
    next_ms: u64,
}

impl Every {
    /// Whether the duty is due now; if so, the next one is `interval_ms` later.
    pub fn due(&mut self, now: Now, interval_ms: u64) -> bool {
        if now.mono_ms < self.next_ms {
            return false;
        }
        self.next_ms = now.mono_ms.saturating_add(interval_ms);
        true
    }
}

/// The lease that elects one worker for probes and polls: `owner:until_ms`, monotonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub until_ms: u64,
}

impl Lease {
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let (owner, until) = std::str::from_utf8(bytes).ok()?.split_once(':')?;
        Some(Lease { owner: owner.parse().ok()?, until_ms: until.parse().ok()? })
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{}:{}", self.owner, self.until_ms).into_bytes()
    }

    /// The record `owner` writes to take or renew the lease for `ttl_ms`, or `None` while
    /// another owner's lease is still running. A lease that claims to run for longer than
    /// `ttl_ms` from now was not written against this clock (a stale or foreign record) and is
    /// taken over.
    pub fn claim(current: Option<Lease>, owner: u64, now: Now, ttl_ms: u64) -> Option<Lease> {
        if let Some(l) = current
            && l.owner != owner
            && l.until_ms > now.mono_ms
            && l.until_ms <= now.mono_ms.saturating_add(ttl_ms)
        {
            return None;
        }
        Some(Lease { owner, until_ms: now.mono_ms.saturating_add(ttl_ms) })
    }
}
