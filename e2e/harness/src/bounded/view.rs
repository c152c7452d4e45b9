//! What the bounded-load scenario reads from Envoy and sets on the slow backend.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Settings;
use crate::ctx::Ctx;
use crate::http;
use crate::observe::backend_stats;

/// The filter's host metric name: every character outside `[A-Za-z0-9_-]` becomes `_`.
pub(super) fn metric_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// Envoy's worker count (`--concurrency`, from `/server_info`).
pub(super) fn workers(ctx: &Ctx) -> Result<u64, String> {
    let r = http::get(&ctx.env.admin, "/server_info", Duration::from_secs(3))
        .map_err(|e| format!("envoy admin /server_info: {e}"))?;
    let v: Value = r.json()?;
    v["command_line_options"]["concurrency"]
        .as_u64()
        .ok_or_else(|| "no command_line_options.concurrency in /server_info".into())
}

/// The `factor` of the filter's `bounded_load`, as Envoy runs it (`/config_dump`).
pub(super) fn bounded_factor(ctx: &Ctx) -> Result<String, String> {
    let r = http::get(&ctx.env.admin, "/config_dump", Duration::from_secs(5))
        .map_err(|e| format!("envoy admin /config_dump: {e}"))?;
    let text = String::from_utf8_lossy(&r.body);
    let rest = text
        .split_once("bounded_load")
        .map(|(_, rest)| rest)
        .ok_or("Envoy runs the filter without bounded_load (ENVOY_CONFIG=./envoy/envoy-bounded.yaml?)")?;
    let after = rest.split_once("factor").map(|(_, r)| r).ok_or("bounded_load without a factor")?;
    let factor: String = after
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if factor.is_empty() { Err("bounded_load: no factor value".into()) } else { Ok(factor) }
}

/// Connections each Envoy worker has accepted on the listener.
pub(super) fn connections_per_worker(ctx: &Ctx) -> String {
    let Ok(r) = http::get(&ctx.env.admin, "/stats?filter=downstream_cx_total", Duration::from_secs(3)) else {
        return "?".into();
    };
    let text = String::from_utf8_lossy(&r.body);
    let per: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("listener.0.0.0.0_10000.worker_"))
        .filter_map(|l| {
            let (name, v) = l.split_once(": ")?;
            let worker =
                name.strip_prefix("listener.0.0.0.0_10000.")?.strip_suffix(".downstream_cx_total")?;
            Some(format!("{worker} {}", v.trim()))
        })
        .collect();
    if per.is_empty() { "?".into() } else { per.join(", ") }
}

/// Makes the slow backend answer after `ms` (0: at once), on its own address.
pub(super) fn set_slow(s: &Settings, ms: u64) -> Result<(), String> {
    let r = http::get(&s.slow_addr, &format!("/admin/slow?ms={ms}"), Duration::from_secs(3))
        .map_err(|e| format!("{} /admin/slow: {e}", s.slow))?;
    let v = r.json()?;
    if r.status != 200 || v["slow_ms"].as_u64() != Some(ms) {
        return Err(format!("{} /admin/slow?ms={ms}: HTTP {} {:?}", s.slow, r.status, v["slow_ms"].as_u64()));
    }
    Ok(())
}

/// Polls the slow backend's own `in_flight` until `ok` holds; returns the last value seen.
pub(super) fn wait_in_flight(
    s: &Settings,
    ok: impl Fn(u64) -> bool,
    within: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    loop {
        let n = backend_stats(&s.slow_addr)?["in_flight"].as_u64().ok_or("no in_flight in /admin/stats")?;
        if ok(n) {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(format!("{} has {n} requests in flight after {within:?}", s.slow));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_ids_follow_the_filter() {
        assert_eq!(metric_id("backend-2"), "backend-2");
        assert_eq!(metric_id("10.0.0.1:8080"), "10_0_0_1_8080");
    }
}
