//! `health::Table`: the shared health table (decode / encode) and the passive and active
//! health operations every worker applies to it with compare-and-swap.
//!
//! Raw input: the table as stored in shared data (`id \t failures \t ejected_until_ms \t
//! ejections \t recovered \t probe_fails \t probe_oks \t probe_down` per line); it is decoded,
//! re-encoded, and read as the down set of configs of 1 to 12 hosts `h0`..`h11`.
//!
//! Structured input: a decoded starting table, a host count, a policy, and a sequence of
//! failures, successes, probe results, clock steps and encode/decode round trips.
//!
//! Checks: decoding never panics and `decode(encode(t)) == t`; `down_hosts` never marks more
//! than half the hosts, marks only hosts that are down, and marks nothing when more than half
//! are; an ejection never leaves more than half the hosts down; ejections last between
//! `ejection_ms` and `max_ejection_ms`; `success_changes == false` means `record_success`
//! changes nothing (the filter skips the shared-data write then); a success clears the
//! failure count; `next_change_ms` is in the future.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::config::Config;
use session_router::health::{Entry, Event, Table};
use session_router::outcome::{Passive, ProbeThresholds};
use session_router_fuzz::{MAX_HEALTH_HOSTS, dispatch, hosts_config};

#[derive(Arbitrary, Debug)]
enum Op {
    Failure {
        host: u8,
    },
    Success {
        host: u8,
    },
    Probe {
        host: u8,
        ok: bool,
    },
    Advance {
        ms: u32,
    },
    RoundTrip,
    /// A host id that is not (or no longer) configured.
    StrangerFailure,
    /// The lease holder drops entries of hosts that left the membership.
    Prune,
}

#[derive(Arbitrary, Debug)]
struct Built {
    initial: Vec<u8>,
    hosts: u8,
    consecutive: u8,
    ejection_s: u16,
    max_extra_s: u16,
    unhealthy: u8,
    healthy: u8,
    start: u32,
    ops: Vec<Op>,
}

const T0: u64 = 1_700_000_000_000;

fn entries(t: &Table) -> Vec<Entry> {
    // `Table` keeps its entries private; its encoding lists them all.
    String::from_utf8(t.encode())
        .expect("the encoding is UTF-8")
        .lines()
        .filter_map(|l| t.get(l.split('\t').next()?).cloned())
        .collect()
}

fn is_down(e: &Entry, now: u64) -> bool {
    e.ejected_until_ms > now || e.probe_down
}

/// Members of `cfg` that are down (entries of other ids do not count toward the half rule).
fn member_down(t: &Table, cfg: &Config, now: u64) -> usize {
    entries(t).iter().filter(|e| is_down(e, now) && cfg.host_by_id(&e.id).is_some()).count()
}

fn check_table(t: &Table, cfg: &Config, now: u64) {
    let again = Table::decode(&t.encode());
    assert_eq!(&again, t, "decode(encode(t)) != t");
    let n = cfg.hosts.len();
    let down_ids: Vec<usize> =
        (0..n).filter(|&i| t.get(&cfg.hosts[i].id).is_some_and(|e| is_down(e, now))).collect();
    match t.down_hosts(cfg, now) {
        Some(down) => {
            assert_eq!(down.len(), n);
            let marked: Vec<usize> = (0..n).filter(|&i| down[i]).collect();
            assert!(!marked.is_empty(), "Some(down) with nothing down");
            assert!(marked.len() * 2 <= n, "{} of {n} hosts marked down", marked.len());
            assert_eq!(marked, down_ids, "marked hosts differ from the hosts that are down");
        }
        None => assert!(
            down_ids.is_empty() || down_ids.len() * 2 > n,
            "down hosts {down_ids:?} of {n} not reported"
        ),
    }
    assert!(t.next_change_ms(now) > now || now == u64::MAX, "next change not in the future");
}

/// Whether the operations can produce this entry: not clean (clean entries are removed), an
/// ejection time or recovery only with an ejection count, probe passes only while probed down.
fn is_reachable(e: &Entry) -> bool {
    let clean = e.failures == 0 && e.ejections == 0 && e.probe_fails == 0 && !e.probe_down;
    !clean
        && (e.ejections > 0 || (e.ejected_until_ms == 0 && !e.recovered))
        && (e.probe_down || e.probe_oks == 0)
}

fn reachable(t: Table) -> Table {
    let text = String::from_utf8(t.encode()).expect("the encoding is UTF-8");
    let kept: String = text
        .lines()
        .filter(|l| l.split('\t').next().and_then(|id| t.get(id)).is_some_and(is_reachable))
        .map(|l| format!("{l}\n"))
        .collect();
    Table::decode(kept.as_bytes())
}

fn raw(data: &[u8]) {
    let t = Table::decode(data);
    let again = Table::decode(&t.encode());
    assert_eq!(again, t, "decode(encode(t)) != t");
    for n in 1..=MAX_HEALTH_HOSTS {
        for now in [0, T0, u64::MAX] {
            check_table(&t, hosts_config(n), now);
        }
    }
}

fn structured(b: Built) {
    let cfg = hosts_config(usize::from(b.hosts) % MAX_HEALTH_HOSTS + 1);
    let n = cfg.hosts.len();
    let ejection_ms = (u64::from(b.ejection_s) % 86_400 + 1) * 1000;
    let passive = Passive {
        consecutive_failures: u32::from(b.consecutive % 5) + 1,
        ejection_ms,
        max_ejection_ms: ejection_ms + u64::from(b.max_extra_s) * 1000,
    };
    let thresholds =
        ProbeThresholds { unhealthy: u32::from(b.unhealthy % 4) + 1, healthy: u32::from(b.healthy % 4) + 1 };
    let mut now = T0 + u64::from(b.start);
    // Start from a table the operations could have produced (a hand-written or corrupted
    // table may hold states no operation reaches; the raw mode covers those).
    let mut t = reachable(Table::decode(&b.initial));
    // Whether the table started within the "at most half down" rule (a decoded table may not).
    let mut sane = member_down(&t, cfg, now) * 2 <= n;
    check_table(&t, cfg, now);
    for op in b.ops.iter().take(64) {
        match *op {
            Op::Failure { host } => {
                let id = cfg.hosts[usize::from(host) % n].id.clone();
                let before = t.get(&id).cloned().unwrap_or_default();
                let event = t.record_failure_in(&id, now, &passive, cfg);
                assert!(
                    t.get(&id).is_none_or(|e| e.failures <= passive.consecutive_failures),
                    "the failure count went past the threshold"
                );
                if let Event::Ejected { until_ms, failures } = event {
                    assert!(!is_down(&before, now) || before.probe_down, "an ejected host ejected again");
                    assert!(failures >= passive.consecutive_failures);
                    assert!(until_ms > now);
                    assert!(until_ms - now >= passive.ejection_ms.min(passive.max_ejection_ms));
                    assert!(until_ms - now <= passive.max_ejection_ms, "ejected past max_ejection_ms");
                    let down = member_down(&t, cfg, now);
                    assert!(down * 2 <= n, "an ejection left {down} of {n} hosts down");
                    assert!(t.get(&id).is_some_and(|e| e.ejected_until_ms == until_ms && e.failures == 0));
                }
            }
            Op::Success { host } => {
                let id = cfg.hosts[usize::from(host) % n].id.clone();
                let before = t.clone();
                let changes = t.success_changes(&id, now, &passive);
                let event = t.record_success(&id, now, &passive);
                if !changes {
                    assert_eq!(t, before, "success_changes said no, record_success changed the table");
                    assert_eq!(event, Event::None);
                }
                assert!(t.get(&id).is_none_or(|e| e.failures == 0), "a success left failures counted");
                if event == Event::Recovered {
                    assert!(
                        t.get(&id).is_none_or(|e| e.ejected_until_ms <= now),
                        "recovered but still ejected"
                    );
                }
            }
            Op::Probe { host, ok } => {
                let id = cfg.hosts[usize::from(host) % n].id.clone();
                let event = t.record_probe(&id, ok, &thresholds);
                match event {
                    Event::ProbeDown => assert!(!ok && t.get(&id).is_some_and(|e| e.probe_down)),
                    Event::Recovered => assert!(ok && t.get(&id).is_none_or(|e| !e.probe_down)),
                    _ => {}
                }
                // Probes may take hosts out without the half rule; down_hosts then ignores them.
                sane = false;
            }
            Op::Advance { ms } => now = now.saturating_add(u64::from(ms)),
            Op::RoundTrip => t = Table::decode(&t.encode()),
            Op::StrangerFailure => {
                let _ = t.record_failure("not-configured", now, &passive, n);
            }
            Op::Prune => {
                t.retain_members(cfg);
                assert!(
                    entries(&t).iter().all(|e| cfg.host_by_id(&e.id).is_some()),
                    "a stranger survived pruning"
                );
            }
        }
        if sane {
            // Passive ejections alone never put more than half the members out.
            let down = member_down(&t, cfg, now);
            assert!(down * 2 <= n, "{down} of {n} hosts down by passive ejection");
        }
        check_table(&t, cfg, now);
    }
}

fuzz_target!(|data: &[u8]| dispatch(data, raw, structured));
