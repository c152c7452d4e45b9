//! Discovered entries left out of the membership (`discovery::Skipped`): one counter per reason,
//! `session_router.discovery.skipped.<reason>`, and one log line per entry, both once while the
//! entry stays in the answers (again if it leaves and comes back).

use std::cell::RefCell;
use std::collections::HashMap;

use super::host::{self as hostcalls, MetricType};
use log::warn;

use crate::discovery::{SkipLog, SkipReason, Skipped};

/// Log lines per poll; the rest are summed up in one line (the counters count every one).
const MAX_LINES: usize = 16;

thread_local! {
    static SKIPS: RefCell<SkipLog> = RefCell::new(SkipLog::default());
    /// By metric name (the same map type as the per-host counters', so one in the module).
    static COUNTERS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

pub(super) fn metric_name(reason: SkipReason) -> String {
    format!("session_router.discovery.skipped.{}", reason.as_str())
}

fn count(reason: SkipReason) {
    COUNTERS.with(|c| {
        let mut c = c.borrow_mut();
        let name = metric_name(reason);
        let id = match c.get(&name) {
            Some(&id) => id,
            None => match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => *c.entry(name).or_insert(id),
                Err(e) => {
                    warn!("session-router: cannot define metric {name}: {e:?}");
                    return;
                }
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    });
}

/// Counts and logs the entries of this poll's answer that were not skipped by the previous one.
pub(super) fn report(skipped: &[Skipped]) {
    let news = SKIPS.with(|s| s.borrow_mut().news(skipped));
    for (i, s) in news.iter().enumerate() {
        count(s.reason);
        if i < MAX_LINES {
            warn!("session-router: discovered endpoint {} left out: {}", s.entry, why(s.reason));
        }
    }
    if news.len() > MAX_LINES {
        warn!("session-router: {} more discovered endpoints left out", news.len() - MAX_LINES);
    }
}

fn why(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::BadEntry => "bad_entry (not a unicast ip:port, or a name with control characters)",
        SkipReason::DeniedPort => "denied_port (in discovery.denied_ports)",
        SkipReason::Metadata => "metadata (a cloud metadata address; list it in allowed_cidrs to admit it)",
        SkipReason::Loopback => "loopback (list it in discovery.allowed_cidrs to admit it)",
        SkipReason::LinkLocal => "link_local (list it in discovery.allowed_cidrs to admit it)",
        SkipReason::OutsideAllowed => "outside_allowed (not in discovery.allowed_cidrs)",
        SkipReason::IdCollision => {
            "id_collision (its name is a configured host's id or another endpoint's address)"
        }
    }
}
