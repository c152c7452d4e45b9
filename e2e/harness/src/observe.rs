//! What Envoy and the backends report: the filter's counters and gauges, the backends' own
//! request counts, readiness; and the checks that they moved as the requests sent say.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::ctx::{Ctx, TIMEOUT, TallyNow};
use crate::http;

/// Named numbers: counters or gauges.
pub type Counters = BTreeMap<String, u64>;

/// Application requests each backend has answered, by name; `None` for one that did not answer.
pub type Served = BTreeMap<String, Option<u64>>;

/// How much `name` grew from `a` to `b` (0 when it did not, or is missing).
pub fn stat_delta(a: &Counters, b: &Counters, name: &str) -> u64 {
    b.get(name).copied().unwrap_or(0).saturating_sub(a.get(name).copied().unwrap_or(0))
}

/// The growth of the filter's Prometheus counter `session_router_{name}`.
pub fn delta(before: &Counters, after: &Counters, name: &str) -> u64 {
    stat_delta(before, after, &format!("session_router_{name}"))
}

/// The filter's counters from Envoy's `/stats/prometheus`.
pub fn scrape(ctx: &Ctx) -> Result<Counters, String> {
    let r =
        http::get(&ctx.env.admin, "/stats/prometheus", TIMEOUT).map_err(|e| format!("envoy admin: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    let mut counters = Counters::new();
    for line in text.lines().filter(|l| l.starts_with("session_router_")) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            counters.insert(name.to_string(), v as u64);
        }
    }
    if counters.is_empty() {
        return Err("no session_router_* counters in /stats/prometheus".into());
    }
    Ok(counters)
}

/// `wasmcustom.session_router.*` from Envoy's `/stats?filter=…`, names without that prefix.
pub fn filter_stats(ctx: &Ctx, filter: &str) -> Result<Counters, String> {
    let r = http::get(&ctx.env.admin, &format!("/stats?filter={filter}"), Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /stats: {e}"))?;
    Ok(parse_filter_stats(&String::from_utf8_lossy(&r.body)))
}

fn parse_filter_stats(text: &str) -> Counters {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.strip_prefix("wasmcustom.session_router.")?.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// One look at Envoy's `/ready`: `Ok` once it says LIVE.
pub fn envoy_live(ctx: &Ctx) -> Result<(), String> {
    match http::get(&ctx.env.admin, "/ready", Duration::from_secs(2)) {
        Ok(r) if String::from_utf8_lossy(&r.body).trim() == "LIVE" => Ok(()),
        Ok(r) => Err(format!("/ready: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body).trim())),
        Err(e) => Err(format!("envoy admin {}: {e}", ctx.env.admin)),
    }
}

/// A backend's own `/healthz` (`name` names it in the error): its JSON when it answers 200.
pub fn healthz(name: &str, addr: &str) -> Result<Value, String> {
    match http::get(addr, "/healthz", Duration::from_secs(2)) {
        Ok(r) if r.status == 200 => Ok(r.json().unwrap_or_default()),
        Ok(r) => Err(format!("{name} /healthz: HTTP {} {}", r.status, String::from_utf8_lossy(&r.body))),
        Err(e) => Err(format!("{name} {addr}: {e}")),
    }
}

/// A backend's own `/admin/stats`.
pub fn backend_stats(addr: &str) -> Result<Value, String> {
    let r = http::get(addr, "/admin/stats", Duration::from_secs(3)).map_err(|e| format!("{addr}: {e}"))?;
    r.json().map_err(|e| format!("{addr}: /admin/stats: {e}"))
}

/// Application requests each backend (name, ip:port) has answered; `None` for one that does not
/// answer.
pub fn requests_at<'a>(backends: impl IntoIterator<Item = (&'a str, &'a str)>) -> Served {
    backends
        .into_iter()
        .map(|(name, addr)| (name.to_string(), backend_stats(addr).ok().and_then(|v| v["requests"].as_u64())))
        .collect()
}

/// [`requests_at`] the configured backends and the outsider, by name.
pub fn requests_by_backend(ctx: &Ctx) -> Served {
    let (name, addr) = &ctx.env.outsider;
    requests_at(
        ctx.env.backends.iter().chain([&(name.clone(), addr.clone())]).map(|(n, a)| (n.as_str(), a.as_str())),
    )
}

/// The filter's counters moved exactly as the requests sent say they must.
pub fn check_counters(
    ctx: &Ctx,
    phase: &str,
    c0: &Counters,
    c1: &Counters,
    t0: TallyNow,
    t1: TallyNow,
    ejections_ok: &dyn Fn(u64) -> bool,
) {
    let d = |n| delta(c0, c1, n);
    let sent = |f: fn(&TallyNow) -> u64| f(&t1) - f(&t0);
    let (new, hashed, pinned, failover) =
        (d("decision_new"), d("decision_hashed"), d("decision_pinned"), d("decision_failover"));
    let expected_failover = sent(|t| t.srv_on_pinned);
    let rows = [
        ("decision_new", new, sent(|t| t.new)),
        ("decision_hashed", hashed, sent(|t| t.hashed)),
        ("decision_pinned + decision_failover", pinned + failover, sent(|t| t.pinned)),
        ("decision_failover", failover, expected_failover),
        ("cookie_issued", d("cookie_issued"), sent(|t| t.srv_issued)),
        ("cookie_rejected", d("cookie_rejected"), sent(|t| t.bad_cookie)),
        ("jwt_rejected", d("jwt_rejected"), 0),
        ("input_rejected", d("input_rejected"), 0),
    ];
    let mut detail = String::new();
    let mut ok = true;
    for (name, got, want) in rows {
        let _ = write!(
            detail,
            "{name} {got}{}",
            if got == want { String::new() } else { format!(" (sent {want})") }
        );
        detail.push_str(", ");
        ok &= got == want;
    }
    let ejections = d("health_ejections");
    let _ = write!(detail, "health_ejections {ejections}");
    ok &= ejections_ok(ejections);
    ctx.check(ok, &format!("{phase}: Envoy /stats/prometheus counters match the requests sent"), detail);
}

/// Every request sent since `r0` reached exactly one backend, once: the backends' own counts
/// (from `r0` to `r1`) add up to `sent`. `skip` is left out (the outsider); a backend that
/// answered neither time is counted as stopped when `stopped_ok`, else it is a failure.
pub fn check_served(
    ctx: &Ctx,
    phase: &str,
    (r0, r1): (&Served, &Served),
    sent: u64,
    skip: Option<&str>,
    stopped_ok: bool,
) {
    let mut served = 0;
    let mut parts = Vec::new();
    for (name, before) in r0.iter().filter(|(n, _)| Some(n.as_str()) != skip) {
        match (before, r1.get(name).copied().flatten()) {
            (Some(b), Some(a)) => {
                served += a - b;
                parts.push(format!("{name} {}", a - b));
            }
            (None, None) if stopped_ok => parts.push(format!("{name} stopped")),
            (b, a) => ctx.fail(format!("{phase}: {name} /admin/stats {b:?} → {a:?}")),
        }
    }
    ctx.check(
        served == sent,
        &format!("{phase}: every request reached exactly one backend, once"),
        format!("{served} served for {sent} sent ({})", parts.join(", ")),
    );
}

/// [`check_served`] over the configured backends (one may be stopped), then [`check_outsider`].
pub fn check_backend_requests(ctx: &Ctx, phase: &str, r0: &Served, sent: u64) {
    let r1 = requests_by_backend(ctx);
    check_served(ctx, phase, (r0, &r1), sent, Some(&ctx.env.outsider.0), true);
    check_outsider(ctx, phase);
}

/// The outsider (an endpoint of Envoy's cluster that is not a filter host) was never reached.
pub fn check_outsider(ctx: &Ctx, phase: &str) {
    let (name, addr) = &ctx.env.outsider;
    match backend_stats(addr) {
        Ok(v) => {
            let requests = v["requests"].as_u64();
            let healthz = v["healthz"].as_u64();
            let show = |n: Option<u64>| n.map_or("?".into(), |n| n.to_string());
            ctx.check(
                requests == Some(0) && healthz == Some(0),
                &format!("{phase}: the {name} at {addr}, not in the filter's hosts, was never reached"),
                format!("its own /admin/stats: requests {}, health checks {}", show(requests), show(healthz)),
            );
        }
        Err(e) => ctx.fail(format!("{phase}: {name} stats: {e}")),
    }
}

/// Waits until Envoy is LIVE, every backend but `skip` answers `/healthz` (and keeps its state
/// where STATE says), and the outsider answers.
pub fn wait_ready(ctx: &Ctx, skip: Option<&str>) -> bool {
    let deadline = std::time::Instant::now() + ctx.env.ready_timeout;
    let mut last = String::new();
    let mut backends: Vec<(String, String)> =
        ctx.env.backends.iter().filter(|(n, _)| Some(n.as_str()) != skip).cloned().collect();
    while std::time::Instant::now() < deadline {
        let envoy_live = envoy_live(ctx).map_err(|e| last = e).is_ok();
        backends.retain(|(name, addr)| match healthz(name, addr) {
            Ok(body) => {
                let state = body["state"].as_str();
                if state != Some(ctx.env.state.as_str()) {
                    ctx.fail(format!(
                        "{name} keeps its state in {state:?}, expected STATE={}",
                        ctx.env.state
                    ));
                }
                false
            }
            Err(e) => {
                last = e;
                true
            }
        });
        let outsider_up = backend_stats(&ctx.env.outsider.1).is_ok();
        if envoy_live && backends.is_empty() && outsider_up {
            return true;
        }
        if !outsider_up {
            last = format!("{} {} not answering", ctx.env.outsider.0, ctx.env.outsider.1);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ctx.fail(format!("stack not ready after {:?}: {last}", ctx.env.ready_timeout));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_deltas_never_underflow() {
        let a: Counters = [("x".to_string(), 5)].into();
        let b: Counters = [("x".to_string(), 7)].into();
        assert_eq!(stat_delta(&a, &b, "x"), 2);
        assert_eq!(stat_delta(&b, &a, "x"), 0);
        assert_eq!(stat_delta(&a, &b, "missing"), 0);
        let c: Counters = [("session_router_x".to_string(), 9)].into();
        assert_eq!(delta(&a, &c, "x"), 9);
    }

    #[test]
    fn filter_stats_keep_the_filters_own_names() {
        let text = "wasmcustom.session_router.membership.hosts: 5\n\
                    wasmcustom.session_router.bounded_load.spilled: 12\n\
                    cluster.backends.upstream_rq_total: 7\n\
                    wasmcustom.session_router.broken: x\n";
        let stats = parse_filter_stats(text);
        assert_eq!(
            stats.into_iter().collect::<Vec<_>>(),
            [("bounded_load.spilled".to_string(), 12), ("membership.hosts".to_string(), 5)]
        );
    }
}
