//! Envoy's view of the scaled `backend` service and the filter's: the cluster's endpoints, the
//! filter's membership gauges, and waiting until both follow a change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Settings;
use crate::ctx::Ctx;
use crate::http;
use crate::observe::{envoy_live, filter_stats, healthz};

pub type Members = BTreeSet<String>;

/// The endpoints (ip:port) of the target cluster in Envoy's `/clusters?format=json`.
pub fn envoy_members(ctx: &Ctx, cluster: &str) -> Result<Members, String> {
    let r = http::get(&ctx.env.admin, "/clusters?format=json", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /clusters: {e}"))?;
    parse_members(&r.body, cluster).map_err(|e| format!("envoy admin /clusters: {e}"))
}

fn parse_members(body: &[u8], cluster: &str) -> Result<Members, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(clusters) = doc["cluster_statuses"].as_array() else {
        return Err("no cluster_statuses".into());
    };
    let Some(c) = clusters.iter().find(|c| c["name"].as_str() == Some(cluster)) else {
        return Err(format!("no cluster {cluster:?}"));
    };
    let mut members = Members::new();
    for h in c["host_statuses"].as_array().into_iter().flatten() {
        let sa = &h["address"]["socket_address"];
        if let (Some(ip), Some(port)) = (sa["address"].as_str(), sa["port_value"].as_u64()) {
            members.insert(format!("{ip}:{port}"));
        }
    }
    Ok(members)
}

/// The filter's `membership.generation` and `membership.hosts` gauges.
pub fn filter_membership(ctx: &Ctx) -> Result<(u64, u64), String> {
    let stats = filter_stats(ctx, "session_router.membership")?;
    match (stats.get("membership.generation"), stats.get("membership.hosts")) {
        (Some(g), Some(h)) => Ok((*g, *h)),
        _ => Err(format!("no session_router.membership gauges in /stats: {stats:?}")),
    }
}

/// Waits until Envoy's admin says LIVE.
pub fn wait_live(ctx: &Ctx, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match envoy_live(ctx) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("Envoy not LIVE after {timeout:?}: {last}"))
}

pub struct Followed {
    pub members: Members,
    pub generation: u64,
    /// Since the watch began: Envoy's cluster first had N endpoints; the filter had them too.
    pub envoy_after: Duration,
    pub filter_after: Duration,
    /// The same moments, Unix milliseconds (the runner relates them to `up --scale`).
    pub envoy_unix_ms: u128,
    pub filter_unix_ms: u128,
}

pub fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Waits until Envoy's cluster has `want` endpoints (any number ≥ 1 for `None`) and the filter's
/// membership has as many hosts at a generation above `after_generation`; then waits two poll
/// intervals more (every worker picks a new membership up within half a poll interval) and
/// checks that nothing changed meanwhile, else goes on waiting.
pub fn follow(
    ctx: &Ctx,
    s: &Settings,
    want: Option<usize>,
    after_generation: u64,
    started: Instant,
) -> Result<Followed, String> {
    let deadline = started + s.follow_timeout;
    let mut last_envoy: Option<usize> = None;
    let mut last_filter = (u64::MAX, u64::MAX);
    let mut envoy_at: Option<(Duration, u128)> = None;
    let mut last_error = String::new();
    while Instant::now() < deadline {
        let state = envoy_members(ctx, &s.cluster).and_then(|m| Ok((m, filter_membership(ctx)?)));
        let (members, (generation, hosts)) = match state {
            Ok(v) => v,
            Err(e) => {
                last_error = e;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let target = want.unwrap_or(members.len()).max(1);
        if last_envoy != Some(members.len()) {
            println!(
                "     +{:.2}s Envoy's {} cluster: {} endpoints",
                started.elapsed().as_secs_f64(),
                s.cluster,
                members.len()
            );
            last_envoy = Some(members.len());
        }
        if last_filter != (generation, hosts) {
            println!(
                "     +{:.2}s the filter: membership generation {generation}, {hosts} hosts",
                started.elapsed().as_secs_f64()
            );
            last_filter = (generation, hosts);
        }
        if members.len() == target {
            envoy_at.get_or_insert((started.elapsed(), unix_ms()));
        } else {
            envoy_at = None;
        }
        if let Some((envoy_after, envoy_unix_ms)) = envoy_at
            && hosts == target as u64
            && generation > after_generation
        {
            let (filter_after, filter_unix_ms) = (started.elapsed(), unix_ms());
            std::thread::sleep(Duration::from_millis(2 * s.poll_ms.max(100)));
            let again = envoy_members(ctx, &s.cluster)?;
            let (g2, h2) = filter_membership(ctx)?;
            if again == members && (g2, h2) == (generation, hosts) {
                return Ok(Followed {
                    members,
                    generation,
                    envoy_after,
                    filter_after,
                    envoy_unix_ms,
                    filter_unix_ms,
                });
            }
            println!("     membership changed while settling (generation {g2}, {h2} hosts): waiting on");
            continue;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!(
        "the membership did not reach {} hosts within {:?} (last seen: Envoy {last_envoy:?} endpoints, \
         filter generation/hosts {last_filter:?}{})",
        want.map_or("a stable number of".to_string(), |n| n.to_string()),
        s.follow_timeout,
        if last_error.is_empty() { String::new() } else { format!("; {last_error}") }
    ))
}

/// Every member answers its own `/healthz` with the expected state store; their names by address.
pub fn members_ready(
    ctx: &Ctx,
    members: &Members,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, String> {
    let deadline = Instant::now() + timeout;
    let mut names = BTreeMap::new();
    let mut last = String::new();
    while Instant::now() < deadline {
        let waiting: Vec<&String> = members.iter().filter(|a| !names.contains_key(*a)).collect();
        for addr in waiting {
            match healthz(addr, addr) {
                Ok(body) => {
                    let state = body["state"].as_str().unwrap_or("?");
                    if state != ctx.env.state {
                        return Err(format!(
                            "{addr} keeps its state in {state:?}, expected {}",
                            ctx.env.state
                        ));
                    }
                    names.insert(addr.clone(), body["backend"].as_str().unwrap_or("?").to_string());
                }
                Err(e) => last = e,
            }
        }
        if names.len() == members.len() {
            return Ok(names);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("backends not ready: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_clusters_json_gives_the_target_clusters_endpoints() {
        let body = br#"{"cluster_statuses":[{"name":"envoy_admin","host_statuses":[
              {"address":{"socket_address":{"address":"127.0.0.1","port_value":9901}}}]},
            {"name":"backends","host_statuses":[
              {"address":{"socket_address":{"address":"172.18.0.4","port_value":8080}},"hostname":"backend"},
              {"address":{"pipe":{"path":"/x"}}},
              {"address":{"socket_address":{"address":"172.18.0.3","port_value":8080}}}]}]}"#;
        let m = parse_members(body, "backends").unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), ["172.18.0.3:8080", "172.18.0.4:8080"]);
        assert!(parse_members(body, "nope").is_err());
        assert!(parse_members(b"{}", "backends").is_err());
        assert!(parse_members(b"{not json", "backends").is_err());
    }
}
