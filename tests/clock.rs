//! Issue 12 item 4: schedules and leases run on the monotonic clock, so a wall-clock step (an
//! NTP correction, a VM resumed) neither stalls probes and polls nor keeps a dead worker's lease.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::clock::{Every, Lease, Now};
use session_router::config::Config;
use session_router::health::{Event, Table};
use session_router::outcome::Passive;

const HOUR: u64 = 3_600_000;
const WALL0: u64 = 1_760_000_000_000;
const INTERVAL: u64 = 1000;
const TTL: u64 = 6000;

/// Wall time at monotonic `t`: stepped back an hour at 10 s and forward two hours at 30 s.
fn wall(t: u64) -> u64 {
    match t {
        t if t < 10_000 => WALL0 + t,
        t if t < 30_000 => WALL0 + t - HOUR,
        t => WALL0 + t + HOUR,
    }
}

struct Worker {
    owner: u64,
    probes: Every,
    probe_times: Vec<u64>,
}

/// Two workers tick every 100 ms against one shared lease; worker 1 dies at 40 s.
#[test]
fn wall_clock_steps_stall_neither_schedules_nor_leases() {
    let mut lease: Option<Lease> = None;
    let mut workers: Vec<Worker> =
        (1..=2).map(|owner| Worker { owner, probes: Every::default(), probe_times: vec![] }).collect();
    let mut holders = vec![];
    for t in (0..60_000).step_by(100) {
        let now = Now { wall_ms: wall(t), mono_ms: 5_000_000 + t };
        for w in &mut workers {
            if w.owner == 1 && t >= 40_000 {
                continue; // dead
            }
            let Some(next) = Lease::claim(lease, w.owner, now, TTL) else { continue };
            lease = Some(Lease::decode(&next.encode()).unwrap());
            holders.push((t, w.owner));
            if w.probes.due(now, INTERVAL) {
                w.probe_times.push(t);
            }
        }
    }
    // Worker 1 holds the lease until it dies; nobody else probes meanwhile.
    assert!(workers[1].probe_times.iter().all(|&t| t >= 40_000), "{:?}", workers[1].probe_times);
    let mut times: Vec<u64> = workers.iter().flat_map(|w| w.probe_times.clone()).collect();
    times.sort_unstable();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().copied().max().unwrap();
    // The only long gap is the dead worker's lease running out (TTL), never an hour.
    assert!(longest <= TTL + INTERVAL, "probes stalled for {longest} ms: {times:?}");
    assert!(times.len() >= 50, "{} probe rounds in 60 s", times.len());
    // Worker 2 takes over within the TTL of worker 1's death, although wall time jumped.
    let takeover = holders.iter().find(|&&(t, o)| o == 2 && t >= 40_000).unwrap().0;
    assert!((40_000..=40_000 + TTL).contains(&takeover), "taken over at {takeover}");
}

#[test]
fn a_foreign_or_stale_lease_that_runs_too_long_is_taken_over() {
    let now = Now { wall_ms: WALL0, mono_ms: 1_000 };
    // Written against the wall clock by an older build: ends in 55 years of monotonic time.
    let stale = Lease { owner: 9, until_ms: WALL0 };
    assert_eq!(Lease::claim(Some(stale), 1, now, TTL), Some(Lease { owner: 1, until_ms: 1_000 + TTL }));
    let live = Lease { owner: 9, until_ms: 1_000 + TTL };
    assert_eq!(Lease::claim(Some(live), 1, now, TTL), None);
    assert_eq!(Lease::decode(b"garbage"), None);
    assert_eq!(Lease::decode(b"1:x"), None);
}

/// Ejections are monotonic deadlines: a wall step back an hour does not stretch one.
#[test]
fn an_ejection_lasts_its_time_whatever_the_wall_clock_does() {
    let cfg = Config::parse(
        br#"{"hosts":[{"address":"10.0.0.1:80","id":"a"},{"address":"10.0.0.2:80","id":"b"}],
            "sources":[{"type":"header","name":"x"}],"target":{"header":"x-envoy-original-dst-host"}}"#,
        |_| None,
    )
    .unwrap();
    let p = Passive { consecutive_failures: 1, ejection_ms: 10_000, max_ejection_ms: 10_000 };
    let mut t = Table::default();
    let mono = 42_000;
    assert!(matches!(t.record_failure_in("a", mono, &p, &cfg), Event::Ejected { .. }));
    let mut every = Every::default();
    assert!(every.due(Now { wall_ms: WALL0, mono_ms: mono }, INTERVAL));
    // An hour back on the wall clock, 10 s later on the monotonic one: the ejection is over and
    // the schedule is due again.
    let later = Now { wall_ms: WALL0 - HOUR + 10_000, mono_ms: mono + 10_000 };
    assert_eq!(t.down_hosts(&cfg, later.mono_ms), None);
    assert!(every.due(later, INTERVAL));
}
