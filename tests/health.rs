//! Passive ejection, active probe thresholds, the at-most-half rule and the shared encoding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::config::Config;
use session_router::health::{Event, Table};
use session_router::outcome::{Passive, ProbeThresholds};

const P: Passive = Passive { consecutive_failures: 3, ejection_ms: 10_000, max_ejection_ms: 25_000 };
const T: ProbeThresholds = ProbeThresholds { unhealthy: 2, healthy: 2 };

/// Hosts with ids `ids` at 10.0.`net`.1, .2, …
fn hosts_at(net: u8, ids: &[&str]) -> Config {
    let hosts: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| format!(r#"{{"address":"10.0.{net}.{}:80","id":"{id}"}}"#, i + 1))
        .collect();
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"header","name":"x"}}],"target":{{"header":"x-envoy-original-dst-host"}}}}"#,
        hosts.join(",")
    );
    Config::parse(json.as_bytes(), |_| None).unwrap()
}

/// `n` hosts h0, h1, … at 10.0.0.1, .2, …
fn config(n: usize) -> Config {
    let ids: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
    hosts_at(0, &ids.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn ejects_after_consecutive_failures_and_a_success_resets_the_count() {
    let mut t = Table::default();
    assert_eq!(t.record_failure("h0", 0, &P, 4), Event::None);
    assert_eq!(t.record_failure("h0", 0, &P, 4), Event::None);
    assert!(t.success_changes("h0", 0, &P));
    assert_eq!(t.record_success("h0", 0, &P), Event::None);
    assert!(t.is_empty(), "a success forgets failures: {t:?}");
    assert_eq!(t.record_failure("h0", 0, &P, 4), Event::None);
    assert_eq!(t.record_failure("h0", 0, &P, 4), Event::None);
    assert_eq!(t.record_failure("h0", 5, &P, 4), Event::Ejected { until_ms: 10_005, failures: 3 });
    assert_eq!(t.record_failure("h0", 6, &P, 4), Event::None, "no double ejection");
    let cfg = config(4);
    assert_eq!(t.down_hosts(&cfg, 10_004), Some(vec![true, false, false, false]));
    assert_eq!(t.down_hosts(&cfg, 10_005), None, "the ejection ends by itself");
    assert_eq!(t.next_change_ms(0), 10_005);
}

#[test]
fn repeated_ejections_grow_up_to_the_cap_and_are_forgotten_after_healthy_service() {
    let mut t = Table::default();
    let mut now = 0;
    let mut lengths = vec![];
    for _ in 0..4 {
        for _ in 0..3 {
            if let Event::Ejected { until_ms, .. } = t.record_failure("h0", now, &P, 4) {
                lengths.push(until_ms - now);
                now = until_ms;
            }
        }
    }
    assert_eq!(lengths, [10_000, 20_000, 25_000, 25_000]);
    assert_eq!(t.record_success("h0", now, &P), Event::Recovered);
    assert_eq!(t.record_success("h0", now + 1, &P), Event::None, "recovery is reported once");
    assert!(!t.success_changes("h0", now + 1, &P), "no shared-data write per success after recovery");
    assert!(t.success_changes("h0", now + P.max_ejection_ms, &P));
    t.record_success("h0", now + P.max_ejection_ms, &P);
    assert!(t.is_empty(), "{t:?}");
}

#[test]
fn a_success_on_an_ejected_host_is_proof_of_life() {
    let mut t = Table::default();
    for _ in 0..3 {
        t.record_failure("h1", 0, &P, 4);
    }
    assert_eq!(t.record_success("h1", 100, &P), Event::Recovered);
    assert_eq!(t.down_hosts(&config(4), 101), None);
}

#[test]
fn never_more_than_half_the_hosts_are_down() {
    let cfg = config(4);
    let mut t = Table::default();
    for id in ["h0", "h1", "h2"] {
        for _ in 0..2 {
            t.record_failure(id, 0, &P, 4);
        }
    }
    assert!(matches!(t.record_failure("h0", 0, &P, 4), Event::Ejected { .. }));
    assert!(matches!(t.record_failure("h1", 0, &P, 4), Event::Ejected { .. }));
    assert_eq!(t.record_failure("h2", 0, &P, 4), Event::EjectionRefused);
    assert_eq!(t.down_hosts(&cfg, 1), Some(vec![true, true, false, false]));
    // Probes can mark a third host down; then more than half is down: route as if all were up.
    t.record_probe("h3", false, &T);
    assert_eq!(t.record_probe("h3", false, &T), Event::ProbeDown);
    assert_eq!(t.down_hosts(&cfg, 1), None);
}

#[test]
fn probes_need_thresholds_in_a_row() {
    let mut t = Table::default();
    assert_eq!(t.record_probe("h0", true, &T), Event::None);
    assert!(t.is_empty(), "a passing probe of a healthy host writes nothing");
    assert_eq!(t.record_probe("h0", false, &T), Event::None);
    assert_eq!(t.record_probe("h0", true, &T), Event::None, "a pass breaks the streak");
    assert_eq!(t.record_probe("h0", false, &T), Event::None);
    assert_eq!(t.record_probe("h0", false, &T), Event::ProbeDown);
    assert_eq!(t.record_probe("h0", false, &T), Event::None);
    assert_eq!(t.down_hosts(&config(3), 0), Some(vec![true, false, false]));
    assert_eq!(t.record_probe("h0", true, &T), Event::None);
    assert_eq!(t.record_probe("h0", true, &T), Event::Recovered);
    assert!(t.is_empty());
}

#[test]
fn encoding_round_trips_and_garbage_is_dropped() {
    let mut t = Table::default();
    for _ in 0..3 {
        t.record_failure("h0", 7, &P, 4);
    }
    t.record_failure("h1", 7, &P, 4);
    t.record_probe("h2", false, &T);
    let bytes = t.encode();
    assert_eq!(Table::decode(&bytes), t);
    let mut noisy = b"garbage\n\t\t\nh9\t1\t2\n\xff\xfe\n".to_vec();
    noisy.extend_from_slice(&bytes);
    noisy.extend_from_slice(b"h1\tNaN\t0\t0\t0\t0\t0\t0\n");
    assert_eq!(Table::decode(&noisy), t);
    // A line that is not UTF-8 is dropped whole; CRLF line ends read as LF.
    assert!(Table::decode(b"h\xff9\t1\t0\t0\t0\t0\t0\t0\n").is_empty());
    let crlf = String::from_utf8(bytes.clone()).unwrap().replace('\n', "\r\n");
    assert_eq!(Table::decode(crlf.as_bytes()), t);
    assert_eq!(Table::default().encode(), b"");
    // Hosts the config no longer has are ignored.
    assert_eq!(Table::decode(b"gone\t0\t99\t1\t0\t0\t0\t0\n").down_hosts(&config(2), 0), None);
}

/// Hosts with ids `ids` at 10.0.1.1, .2, …
fn config_ids(ids: &[&str]) -> Config {
    hosts_at(1, ids)
}

/// Issue 12 item 1: a rolling deploy leaves the entries of replaced pods behind (they failed
/// their probes, then left). They must not count toward the at-most-half rule, and the lease
/// holder's pruning must drop them.
#[test]
fn departed_hosts_never_count_toward_the_half_rule_and_are_pruned() {
    let mut t = Table::default();
    // Two pods fail their probes and are replaced: 4 members before and after.
    for id in ["old-1", "old-2"] {
        t.record_probe(id, false, &T);
        assert_eq!(t.record_probe(id, false, &T), Event::ProbeDown);
        t.record_failure(id, 0, &P, 4);
    }
    let now = config_ids(&["a", "b", "new-1", "new-2"]);
    for _ in 0..2 {
        assert_eq!(t.record_failure_in("a", 1, &P, &now), Event::None);
    }
    assert!(
        matches!(t.record_failure_in("a", 1, &P, &now), Event::Ejected { .. }),
        "one member of four may be ejected whatever departed hosts left behind: {t:?}"
    );
    assert_eq!(t.down_hosts(&now, 2), Some(vec![true, false, false, false]));
    assert_eq!(t.len(), 3);
    assert_eq!(t.retain_members(&now), 2, "the two departed pods are pruned");
    assert_eq!(t.len(), 1);
    assert!(t.get("old-1").is_none() && t.get("old-2").is_none());
    assert!(t.get("a").is_some(), "members keep their state");
}

/// Twenty replacements, each failing its probes before it leaves: passive ejection still works
/// as on day one and the table holds only current members.
#[test]
fn twenty_replacements_leave_ejection_working_and_the_table_bounded() {
    let mut t = Table::default();
    let mut ids: Vec<String> = (0..4).map(|i| format!("pod-{i}")).collect();
    for round in 0..20 {
        let leaving = ids.remove(0);
        t.record_probe(&leaving, false, &T);
        t.record_probe(&leaving, false, &T);
        ids.push(format!("pod-{}", round + 4));
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        t.retain_members(&config_ids(&refs));
        assert!(t.len() <= 4, "round {round}: {} entries", t.len());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let cfg = config_ids(&refs);
    let victim = refs[1];
    let events: Vec<Event> = (0..3).map(|_| t.record_failure_in(victim, 5, &P, &cfg)).collect();
    assert!(matches!(events[2], Event::Ejected { .. }), "{events:?}");
}

/// Issue 12 item 8: after `EjectionRefused` the failure count stops at the threshold, so a
/// failing request no longer changes the table (no shared-data write per request), and the
/// refusal is reported once, not per request.
#[test]
fn failure_counts_stop_at_the_threshold_when_ejection_is_refused() {
    let cfg = config(2);
    let mut t = Table::default();
    for _ in 0..3 {
        t.record_failure_in("h0", 0, &P, &cfg);
    }
    assert!(t.down_hosts(&cfg, 1).is_some(), "h0 is ejected");
    for _ in 0..2 {
        t.record_failure_in("h1", 1, &P, &cfg);
    }
    assert_eq!(t.record_failure_in("h1", 1, &P, &cfg), Event::EjectionRefused);
    let settled = t.clone();
    for _ in 0..50 {
        assert_eq!(t.record_failure_in("h1", 2, &P, &cfg), Event::None, "reported once");
    }
    assert_eq!(t, settled, "no change, so no shared-data write, per failing request");
    assert_eq!(t.get("h1").unwrap().failures, P.consecutive_failures);
    // Once h0 is back, h1's next failure ejects it at once.
    assert_eq!(t.record_success("h0", 3, &P), Event::Recovered);
    assert!(matches!(t.record_failure_in("h1", 4, &P, &cfg), Event::Ejected { .. }));
}

/// Answers in any order find their probe; a token sent again names the host it was sent to last.
#[test]
fn probes_in_flight_answer_in_any_order() {
    use session_router::health::ProbesInFlight;
    let mut probes = ProbesInFlight::default();
    for (token, id) in [(7, "a"), (9, "b"), (8, "c"), (9, "d")] {
        probes.sent(token, id);
    }
    assert_eq!(probes.len(), 3);
    assert_eq!(probes.answered(8).as_deref(), Some("c"));
    assert_eq!(probes.answered(9).as_deref(), Some("d"));
    assert_eq!(probes.answered(9), None);
    assert_eq!(probes.answered(7).as_deref(), Some("a"));
    assert!(probes.is_empty());
}

/// Issue 12 item 3: a probe's answer lands on the host it was sent to, even when the membership
/// changed in between (indices shift, ids do not), and a departed host's answer is dropped.
#[test]
fn probe_answers_are_attributed_by_host_id_across_a_membership_change() {
    use session_router::health::ProbesInFlight;
    let before = config_ids(&["b", "c", "d"]);
    let mut probes = ProbesInFlight::default();
    for (token, host) in before.hosts.iter().enumerate() {
        probes.sent(token as u32 + 10, &host.id);
    }
    // The poll answered in the same tick: "a" joined (shifting every index), "d" left.
    let after = config_ids(&["a", "b", "c"]);
    let mut t = Table::default();
    for token in [10, 11, 12] {
        let id = probes.answered(token).unwrap();
        // "c" (index 1 before, index 2 after) and the departed "d" fail their probes.
        let ok = id != "c" && id != "d";
        t.record_probe_in(&id, ok, &T, &after);
        t.record_probe_in(&id, ok, &T, &after);
    }
    assert!(probes.is_empty());
    assert_eq!(probes.answered(11), None, "an answer is taken once");
    assert_eq!(
        t.down_hosts(&after, 0),
        Some(vec![false, false, true]),
        "c is down, not whoever took its index"
    );
    assert!(t.get("d").is_none(), "the answer of a host that left is dropped");
    assert!(t.get("a").is_none() && t.get("b").is_none());
}

/// Issue 12 item 5: by default only connection-level failures count; timeouts and 5xx are
/// opt-in through `health.passive.eject_on`.
#[test]
fn failure_policy_counts_connection_failures_by_default_and_timeouts_and_5xx_on_request() {
    use session_router::outcome::{EjectOn, flags};
    let default = EjectOn::default();
    for f in [
        flags::UPSTREAM_CONNECTION_FAILURE,
        flags::UPSTREAM_REMOTE_RESET,
        flags::UPSTREAM_CONNECTION_TERMINATION,
        flags::UPSTREAM_OVERFLOW,
    ] {
        assert!(default.is_failure(f, None), "flag {f:#x}");
    }
    assert!(!default.is_failure(flags::UPSTREAM_REQUEST_TIMEOUT, Some(504)), "UT is opt-in");
    assert!(!default.is_failure(0, Some(503)), "an application 5xx is opt-in");
    assert!(default.fallback);
    let all = EjectOn::parse(&["timeout", "5xx"]).unwrap();
    assert!(all.is_failure(flags::UPSTREAM_REQUEST_TIMEOUT, None));
    assert!(all.is_failure(0, Some(500)));
    assert!(!all.is_failure(0, Some(404)));
    assert!(!all.is_failure(flags::UPSTREAM_CONNECTION_FAILURE, Some(503)), "not listed");
    assert!(!all.fallback, "a request served by a fallback counts only when listed");
    assert_eq!(EjectOn::parse(&["timeouts"]), Err("timeouts".to_owned()));

    let cfg = |eject_on: &str| {
        Config::parse(
            format!(
                r#"{{"hosts":[{{"address":"10.0.0.1:80"}}],"sources":[{{"type":"header","name":"x"}}],
                "target":{{"header":"x-envoy-original-dst-host"}},
                "health":{{"passive":{{"consecutive_failures":3,"ejection_seconds":10{eject_on}}}}}}}"#
            )
            .as_bytes(),
            |_| None,
        )
    };
    assert_eq!(cfg("").unwrap().health.eject_on, default);
    assert_eq!(cfg(r#","eject_on":["timeout","5xx"]"#).unwrap().health.eject_on, all);
    let e = cfg(r#","eject_on":["reset","slow"]"#).unwrap_err();
    assert_eq!(e.field, "health.passive.eject_on[1]");
    assert!(e.reason.contains(r#""slow" is not one of"#), "{e}");
    let e = cfg(r#","eject_on":[]"#).unwrap_err();
    assert_eq!(e.field, "health.passive.eject_on");
    let e = cfg(r#","eject_on":["reset","reset"]"#).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("health.passive.eject_on[1]", r#""reset" is listed twice"#)
    );
}

/// Issue 12 item 7: probes carry plain `ip:port` in a header an ORIGINAL_DST probe cluster
/// reads, in every target mode (a stateful-session target is base64, which it does not read).
#[test]
fn probes_name_their_host_in_plain_ip_port_in_every_target_mode() {
    let cfg = |target: &str, active_header: &str| {
        Config::parse(
            format!(
                r#"{{"hosts":[{{"address":"[::1]:8081","id":"a"}}],"sources":[{{"type":"header","name":"x"}}],
                "target":{target},"health":{{"active":{{"cluster":"probes"{active_header}}}}}}}"#
            )
            .as_bytes(),
            |_| None,
        )
    };
    let probe = |c: Config| {
        let active = c.health.active.clone().unwrap();
        let (name, value) = active.probe_header(&c.hosts[0]);
        (name.to_owned(), value)
    };
    let plain = ("x-gateway-destination-endpoint".to_owned(), "[::1]:8081".to_owned());
    assert_eq!(
        probe(cfg(r#"{"header":"x-gateway-destination-endpoint","fallbacks":1}"#, "").unwrap()),
        plain
    );
    let odst = ("x-envoy-original-dst-host".to_owned(), "[::1]:8081".to_owned());
    assert_eq!(probe(cfg(r#"{"header":"x-envoy-original-dst-host"}"#, "").unwrap()), odst);
    let stateful = cfg(r#"{"header":"x-session-router-host","encoding":"base64"}"#, "").unwrap();
    assert_ne!(stateful.hosts[0].header_value, "[::1]:8081", "requests carry base64");
    assert_eq!(probe(stateful), odst, "probes carry plain ip:port for an ORIGINAL_DST probe cluster");
    let explicit =
        cfg(r#"{"header":"x-session-router-host","encoding":"base64"}"#, r#","header":"X-Probe-Host""#);
    assert_eq!(probe(explicit.unwrap()), ("x-probe-host".to_owned(), "[::1]:8081".to_owned()));
    let e = cfg(r#"{"header":"x-envoy-original-dst-host"}"#, r#","header":"bad header""#).unwrap_err();
    assert_eq!(e.field, "health.active.header");
}
